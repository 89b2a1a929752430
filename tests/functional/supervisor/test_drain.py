"""SIGTERM while jobs run: workers checkpoint and give their jobs back,
digestd exits 0, and no job is lost: a new digestd finishes them from
their checkpoints, every member mailed."""
import signal
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, enqueue, job_fields, log_lines, queue_state, seed_group,
    sup_config, wait_queue_state, wait_workers, workers)


def test_sigterm_drains_and_loses_no_job(tmp_path, redis_tcp, slow_sink, digestd_factory):
    r = redis_tcp.client()
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}},
                         smtp=slow_sink, digest="batch_size = 2")
    d = digestd_factory(text).start()
    wait_workers(d, 2, "priority")
    jobs = []
    for gid in (21, 22, 23):
        uids = seed_group(r, gid, members=10)
        jobs.append((job_fields(gid, uids), uids))
        enqueue(r, "priority", jobs[-1][0])
    wait_for(lambda: sum("job=" in t for t in workers(d, "priority").values()) == 2,
             timeout=10, what="two jobs running")
    wait_for(lambda: slow_sink.count() >= 3, timeout=10, what="mail flowing")

    pids = set(workers(d))
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=15) == 0
    assert time.monotonic() - t0 < 5       # no drain_timeout needed
    assert not log_lines(d, "drain_timeout reached: SIGKILL")
    for p in pids:
        assert not __import__("os").path.exists("/proc/%d" % p) or \
            open("/proc/%d/stat" % p).read().split(")")[1].split()[0] == "Z"

    # Nothing is left pending: jobs were done or given back.
    depth, pending = queue_state(r, "priority")
    assert pending == 0
    assert depth >= 1
    for fields, _ in jobs:
        assert checkpoint(r, fields["job_id"]).get("state") in (None, "running", "done")

    # A new instance finishes them; nobody is missed.
    d2 = digestd_factory(text).start()
    for fields, _ in jobs:
        wait_for(lambda: checkpoint(r, fields["job_id"]).get("state") == "done",
                 timeout=40, what="job %s done" % fields["job_id"])
    got = set(slow_sink.recipients())
    assert got == {"u%d@example.org" % u for _, uids in jobs for u in uids}
    wait_queue_state(r, "priority", (0, 0))
    assert d2.stop() == 0
