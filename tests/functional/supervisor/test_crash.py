"""kill -9 a busy worker: it is replaced, the death is counted as `crash`,
and its job goes back to the queue at once and is processed again, with
every member mailed."""
import os
import signal
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    busy_worker, checkpoint, enqueue, job_fields, log_lines, restarts,
    seed_group, sup_config, wait_queue_state, wait_workers, workers, alive)


def test_kill9_busy_worker_is_replaced_and_job_rerun(tmp_path, redis_tcp, slow_sink,
                                                     digestd_factory):
    r = redis_tcp.client()
    uids = seed_group(r, 7, members=12)
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                         smtp=slow_sink, digest="batch_size = 2")
    d = digestd_factory(text).start()
    (old,) = wait_workers(d, 1, "priority")
    fields = job_fields(7, uids)
    enqueue(r, "priority", fields)

    wait_for(lambda: busy_worker(d, "priority") == old, timeout=10, what="job running")
    wait_for(lambda: slow_sink.count() >= 3, timeout=10, what="some mail sent")
    t_kill = time.monotonic()
    os.kill(old, signal.SIGKILL)

    # Replaced: a new worker, ready again.
    new = wait_for(lambda: [p for p in workers(d, "priority") if p != old and alive(p)],
                   timeout=5, what="replacement")
    assert time.monotonic() - t_kill < 5
    assert not alive(old)

    # The job comes back at once (not after visibility_timeout) and finishes.
    wait_for(lambda: checkpoint(r, fields["job_id"]).get("state") == "done",
             timeout=30, what="job done after the crash")
    cp = checkpoint(r, fields["job_id"])
    assert cp["attempts"] == "2", cp
    assert cp.get("last_error") == "crash", cp
    got = set(slow_sink.recipients())
    assert got == {"u%d@example.org" % u for u in uids}
    # At most the batch in flight is sent twice.
    assert len(slow_sink.recipients()) <= len(uids) + 2
    wait_queue_state(r, "priority", (0, 0))

    lines = log_lines(d, "worker exited", reason="crash", worker=old)
    assert lines and ("job=%s" % fields["job_id"]) in lines[0], d.log()
    assert "slot=" in lines[0]
    wait_for(lambda: restarts(d, "priority", "crash") == 1, timeout=3,
             what="crash counted")
    assert new[0] in workers(d, "priority")
