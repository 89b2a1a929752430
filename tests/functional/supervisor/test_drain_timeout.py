"""A job that outlasts drain_timeout: at drain_timeout the worker gets
SIGKILL, its job goes back to the queue (by the supervisor, not after the
visibility timeout), and digestd still exits 0."""
import signal
import time

from lib.harness import SmtpSink, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    busy_worker, checkpoint, enqueue, job_fields, log_lines, queue_state,
    seed_group, sup_config, wait_workers)


def test_job_longer_than_drain_timeout_is_killed_and_requeued(tmp_path, redis_tcp,
                                                              digestd_factory):
    sink = SmtpSink(delay=4.0).start()
    try:
        r = redis_tcp.client()
        uids = seed_group(r, 31, members=4)
        text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                             smtp=sink, digest="batch_size = 1",
                             supervisor="drain_timeout = 1s\nstall_timeout = 30s")
        d = digestd_factory(text).start()
        (w,) = wait_workers(d, 1, "priority")
        fields = job_fields(31, uids)
        entry = enqueue(r, "priority", fields)
        wait_for(lambda: busy_worker(d, "priority") == w, timeout=10, what="job running")
        time.sleep(0.5)       # inside the first (4 s) SMTP exchange

        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
        elapsed = time.monotonic() - t0
        assert 0.9 <= elapsed < 4.0, elapsed
        assert log_lines(d, "drain_timeout reached: SIGKILL 1 worker(s)")
        assert log_lines(d, "worker exited", worker=w, status='"signal 9"')

        # Back in the queue at once: a new entry, nothing pending.
        entries = r.xrange("digest:q:priority")
        assert len(entries) == 2 and entries[0][0] == entry
        assert entries[1][1]["job_id"] == fields["job_id"]
        assert queue_state(r, "priority") == (1, 0)
        assert checkpoint(r, fields["job_id"]).get("last_error") == "drain_timeout"
    finally:
        sink.stop()
