"""A worker that exceeds its memory_limit (a group of 100,000 members read
in one batch: batch_size too large for the pool's memory_limit) exits with
the OOM code and is replaced as `oom`; the job is dead-lettered after
max_attempts with reason oom; the other pool keeps working."""
import pytest

from lib.harness import ASAN, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    BIG_BATCH, checkpoint, dead_letters, enqueue, job_fields, log_lines,
    queue_state, restarts, seed_big_group, seed_group, sup_config,
    wait_workers, workers)

pytestmark = pytest.mark.skipif(
    ASAN, reason="no data limit can be set under the sanitizer's shadow memory")


def test_worker_over_memory_limit_is_oom_and_job_dead_lettered(tmp_path, redis_tcp,
                                                               digestd_factory):
    r = redis_tcp.client()
    huge = seed_big_group(r, 1)
    small = seed_group(r, 2, members=3, posts=2)
    text, _ = sup_config(
        tmp_path, redis_tcp,
        {"big": {"queue": "priority", "workers": 1, "memory_limit": "16M"},
         "standard": {"workers": 1, "memory_limit": "64M"}},
        digest="batch_size = %d" % BIG_BATCH,
        extra="[queue]\nmax_attempts = 2\n")
    d = digestd_factory(text).start()
    (std_worker,) = wait_workers(d, 1, "standard")

    big_job = job_fields(1, huge)
    enqueue(r, "priority", big_job)
    small_job = job_fields(2, small)

    # attempts 1 and 2 die of memory; the third delivery dead-letters it.
    wait_for(lambda: len(dead_letters(r)) == 1, timeout=40, what="dead letter")
    (dl_id, dl) = dead_letters(r)[0]
    assert dl["job_id"] == big_job["job_id"]
    assert dl["reason"] == "oom", dl
    # The checkpoint is marked dead just after the dead letter is written.
    wait_for(lambda: checkpoint(r, big_job["job_id"]).get("state") == "dead",
             timeout=10, what="checkpoint dead")
    assert len(log_lines(d, "worker exited", reason="oom")) == 2, d.log()
    wait_for(lambda: restarts(d, "big", "oom") == 2, timeout=3, what="oom counted")
    assert restarts(d, "big", "crash") == 0
    assert queue_state(r, "priority") == (0, 0)

    # The other pool was never touched and still runs jobs.
    enqueue(r, "standard", small_job)
    wait_for(lambda: checkpoint(r, small_job["job_id"]).get("state") == "done",
             timeout=15, what="standard job done")
    assert std_worker in workers(d, "standard")
    assert restarts(d, "standard", "oom") == 0
    # And the big pool still has a live worker after the poison job left.
    wait_workers(d, 1, "big")
