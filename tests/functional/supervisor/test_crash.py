"""kill -9 a busy worker, on either queue backend: it is replaced, the
death is counted as `crash`, and its job goes back to the queue at once
and is processed again, resuming from its checkpoint, with every member
mailed."""
import os
import signal
import time

from lib import config as conf
from lib.amqp_util import (
    expected_pairs, now_for_tests, scheduled, wait_all_done, worker_pids,
    write_groups)
from lib.harness import digestctl, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    busy_worker, checkpoint, job_fields, log_lines, restarts, seed_group,
    sup_config, wait_workers, workers, alive)


def test_kill9_busy_worker_is_replaced_and_job_rerun(tmp_path, backend, slow_sink,
                                                     digestd_factory):
    r = backend.r
    uids = seed_group(r, 7, members=12)
    text, _ = sup_config(tmp_path, backend.redis, {"priority": {"workers": 1}},
                         smtp=slow_sink, digest="batch_size = 2",
                         overrides=backend.overrides())
    d = digestd_factory(text)
    backend.prepare(d.config_path)
    d.start()
    (old,) = wait_workers(d, 1, "priority")
    fields = job_fields(7, uids)
    backend.enqueue("priority", fields)

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
    if backend.name == "redis":
        # The supervisor gives a dead worker's stream entry back itself,
        # saying why; on AMQP the broker takes the message back when the
        # connection closes, and only the deliveries are counted
        # (docs/design.md#checkpoint).
        assert cp.get("last_error") == "crash", cp
    got = set(slow_sink.recipients())
    assert got == {"u%d@example.org" % u for u in uids}
    # At most the batch in flight is sent twice.
    assert len(slow_sink.recipients()) <= len(uids) + 2
    backend.wait_empty("priority")

    lines = log_lines(d, "worker exited", reason="crash", worker=old)
    assert lines and ("job=%s" % fields["job_id"]) in lines[0], d.log()
    assert "slot=" in lines[0]
    wait_for(lambda: restarts(d, "priority", "crash") == 1, timeout=3,
             what="crash counted")
    assert new[0] in workers(d, "priority")


def test_kill9_mid_job_resumes_from_checkpoint(tmp_path, backend, smtp_sink,
                                               digestd_factory):
    """The replacement (or another worker) takes the job again and resumes
    after the last member its checkpoint has, so a job killed a third of
    the way sends little twice."""
    r = backend.r
    groups = {7: list(range(100, 160))}
    now = now_for_tests()
    end = now - now % 86400
    write_groups(r, groups, end)
    smtp_sink.delay = 0.1
    cfg = conf.build(tmp_path, conf.merge(
        {"supervisor": {"drain_timeout": "20s", "stall_timeout": "30s",
                        "restart_backoff_max": "500ms"},
         "pool.standard": {"queue": "standard", "workers": 1,
                           "memory_limit": "256M"},
         "digest": {"batch_size": 5}},
        backend.overrides(3), conf.smtp(smtp_sink, 5)),
        sections=(backend.redis.config_section(),))
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = digestd_factory(config_path=cfg).start(timeout=30)
    wait_for(lambda: smtp_sink.count() >= 20, timeout=60, what="20 emails")
    (victim,) = worker_pids(d)
    os.kill(victim, signal.SIGKILL)
    at_kill = smtp_sink.count()
    assert at_kill < 60, "the job ended before the kill"

    cps = wait_all_done(r, 1, timeout=90, d=d)
    cp = cps["daily.%d.7.0" % end]
    got = smtp_sink.ids()
    want = expected_pairs(groups, end)
    assert set(got) == want, "lost: %s" % sorted(want - set(got))[:5]
    dups = len(got) - len(set(got))
    print("measured: killed after %d of 60 emails; %d delivered, %d duplicate(s)"
          % (at_kill, len(got), dups))
    assert dups <= 1, "duplicates: %d" % dups
    # The queue gave the job to the replacement, which resumed: two
    # deliveries, and the second did not start from the beginning.
    assert int(cp["attempts"]) == 2, cp
    assert len(got) < 60 + at_kill
    backend.wait_empty("standard")
    assert backend.dead_letter_count() == 0
    assert victim not in worker_pids(d)
    assert d.stop() == 0
