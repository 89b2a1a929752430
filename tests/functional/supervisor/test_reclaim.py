"""visibility_timeout is the fallback for a whole instance that died: its
pending entries are reclaimed (XAUTOCLAIM) by another instance's idle
worker once idle that long; while a job runs, its worker keeps the entry's
idle time fresh (XCLAIM JUSTID), so no reclaim takes a live job."""
import time

from lib.harness import SmtpSink, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, enqueue, ensure_stream, job_fields, seed_group, sup_config,
    wait_queue_state, wait_workers)


def test_abandoned_entry_is_reclaimed_after_visibility_timeout(tmp_path, redis_tcp,
                                                               digestd_factory):
    r = redis_tcp.client()
    uids = seed_group(r, 91, members=3)
    f = job_fields(91, uids)
    enqueue(r, "priority", f)
    # Another instance took it and died: pending under its consumer name.
    got = r.xreadgroup("digestd", "deadhost:1:priority#0", {"digest:q:priority": ">"},
                       count=1)
    assert got and got[0][1][0][1]["job_id"] == f["job_id"]
    t_taken = time.monotonic()

    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                         extra="[queue]\nvisibility_timeout = 2s\n")
    digestd_factory(text).start()
    wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=15,
             what="reclaimed job done")
    assert time.monotonic() - t_taken >= 2.0
    assert checkpoint(r, f["job_id"])["attempts"] == "1"
    wait_queue_state(r, "priority", (0, 0))


def test_long_running_job_is_not_reclaimed(tmp_path, redis_tcp, digestd_factory):
    sink = SmtpSink(delay=0.5).start()
    try:
        r = redis_tcp.client()
        uids = seed_group(r, 92, members=16)
        f = job_fields(92, uids)
        text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}},
                             smtp=sink, digest="batch_size = 1",
                             extra="[queue]\nvisibility_timeout = 1s\n")
        d = digestd_factory(text).start()
        wait_workers(d, 2, "priority")
        enqueue(r, "priority", f)
        # The job runs ~8 s, eight times the visibility timeout; the idle
        # worker scans for abandoned entries (every 5 s) but must not take it.
        wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=20,
                 what="job done")
        cp = checkpoint(r, f["job_id"])
        assert cp["attempts"] == "1", cp
        rc = sink.recipients()
        assert len(rc) == len(set(rc)) == 16
        wait_queue_state(r, "priority", (0, 0))
    finally:
        sink.stop()
