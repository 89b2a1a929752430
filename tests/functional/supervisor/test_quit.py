"""SIGQUIT: fast stop.  Every worker is SIGKILLed at once, the jobs they
held go back to the queue, and digestd exits 0."""
import signal
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    alive, busy_worker, checkpoint, enqueue, job_fields, log_lines,
    queue_state, seed_group, sup_config, wait_workers, workers)


def test_sigquit_kills_workers_and_requeues(tmp_path, redis_tcp, slow_sink, digestd_factory):
    r = redis_tcp.client()
    uids = seed_group(r, 71, members=20)
    text, _ = sup_config(tmp_path, redis_tcp,
                         {"priority": {"workers": 1}, "standard": {"workers": 2}},
                         smtp=slow_sink, digest="batch_size = 2")
    d = digestd_factory(text).start()
    (w,) = wait_workers(d, 1, "priority")
    pids = set(workers(d))
    f = job_fields(71, uids)
    enqueue(r, "priority", f)
    wait_for(lambda: busy_worker(d, "priority") == w, timeout=10, what="job running")

    t0 = time.monotonic()
    d.signal(signal.SIGQUIT)
    assert d.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 3
    assert not any(alive(p) for p in pids)
    assert log_lines(d, "fast stop: SIGKILL every worker")
    assert log_lines(d, "worker exited", worker=w, status='"signal 9"')
    # The job is back in its queue, waiting, with nothing pending.
    assert queue_state(r, "priority") == (1, 0)
    entries = r.xrange("digest:q:priority")
    assert entries[-1][1]["job_id"] == f["job_id"]
    assert checkpoint(r, f["job_id"]).get("last_error") == "stopped"
