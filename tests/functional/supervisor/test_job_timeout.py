"""A job that runs past its pool's job_timeout, though its worker still
heartbeats, gets the worker SIGKILLed (counted as `stall`); the job goes
back to the queue with last_error job_timeout and, past max_attempts, to
the dead letters."""
import time

from lib.harness import SmtpSink, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, dead_letters, enqueue, job_fields, log_lines, queue_state,
    restarts, seed_group, sup_config, wait_workers)


def test_job_over_job_timeout_is_killed_and_retried(tmp_path, redis_tcp, digestd_factory):
    sink = SmtpSink(delay=0.4).start()
    try:
        r = redis_tcp.client()
        uids = seed_group(r, 61, members=20)
        text, _ = sup_config(tmp_path, redis_tcp,
                             {"priority": {"workers": 1, "job_timeout": "1s"}},
                             smtp=sink, digest="batch_size = 1",
                             extra="[queue]\nmax_attempts = 2\n")
        d = digestd_factory(text).start()
        wait_workers(d, 1, "priority")
        f = job_fields(61, uids)
        t0 = time.monotonic()
        enqueue(r, "priority", f)
        wait_for(lambda: len(dead_letters(r)) == 1, timeout=20, what="dead letter")
        assert time.monotonic() - t0 < 8
        (_, dl), = dead_letters(r)
        assert dl["job_id"] == f["job_id"] and dl["reason"] == "job_timeout", dl
        assert len(log_lines(d, "job over job_timeout: SIGKILL")) == 2, d.log()
        assert len(log_lines(d, "worker exited", reason="stall")) == 2
        # Each attempt resumed from its checkpoint: at most one duplicate per kill.
        rc = sink.recipients()
        assert len(rc) - len(set(rc)) <= 2
        assert queue_state(r, "priority") == (0, 0)
        wait_for(lambda: restarts(d, "priority", "stall") == 2, timeout=3,
                 what="counted")
        wait_workers(d, 1, "priority")
    finally:
        sink.stop()
