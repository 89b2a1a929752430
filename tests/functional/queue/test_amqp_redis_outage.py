"""AMQP backend, Redis away in the middle of a job: the worker cannot save
its progress, so it holds the unacknowledged job until Redis is back
instead of handing it to the broker (which would give it to another
worker at once, with a stale checkpoint).  Killed while it holds it, its
cursor survives in the supervisor: the next worker resumes there, and
nothing delivered is sent again."""
import os
import signal
import sys
import time

from lib.amqp_util import (
    config,
    expected_pairs,
    now_for_tests,
    scheduled,
    start_digestd,
    wait_all_done,
    worker_pids,
    write_groups,
)
from lib.harness import AofRedis, digestctl, metric_sum, wait_for


MEMBERS = list(range(100, 180))


def test_worker_killed_while_holding_a_job_for_redis(tmp_path, rabbitmq, vhost, smtp_sink,
                                                     digestd_factory):
    redis = AofRedis(tmp_path / "redis").start()
    try:
        r = redis.client()
        now = now_for_tests()
        end = now - now % 86400
        groups = {7: MEMBERS}
        write_groups(r, groups, end)
        smtp_sink.delay = 0.05
        cfg = config(tmp_path, redis, rabbitmq, vhost, transport="smtp", sink=smtp_sink,
                     batch=10, per_session=10)
        assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                                   str(now)).stdout) == 1
        d = start_digestd(digestd_factory, cfg)
        wait_for(lambda: smtp_sink.count() >= 20, timeout=60, what="20 emails")
        redis.proc.kill()
        redis.proc.wait(timeout=10)
        wait_for(lambda: "holding the job until Redis" in d.log(), timeout=30,
                 what="the worker holding its job")
        # Whatever the flush in progress delivered is now only in memory
        # and in the worker's slot.
        time.sleep(1.0)
        at_kill = smtp_sink.count()
        (victim,) = worker_pids(d)
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.0)
        redis.start()
        r = redis.client()
        wait_all_done(r, 1, timeout=90, d=d)
        got = smtp_sink.ids()
        want = expected_pairs(groups, end)
        assert set(got) == want, "lost: %s" % sorted(want - set(got))[:5]
        dups = len(got) - len(set(got))
        print("measured: killed holding the job after %d of %d emails; %d duplicate(s)"
              % (at_kill, len(MEMBERS), dups))
        assert at_kill < len(MEMBERS), "the job ended before the kill"
        assert dups <= 1, "duplicates: %d" % dups
        # The next worker resumed where the dead one stopped (starting over
        # would have sent its emails twice); whichever way its cursor came
        # through, the counters agree with the sink, less at most the one
        # email the victim had sent but not yet counted.
        sent = metric_sum(d.metrics(), "digest_emails_total", result="sent")
        assert len(got) - 1 <= sent <= len(got), (sent, len(got))
        assert d.stop() == 0
    finally:
        redis.stop()


def test_job_of_a_killed_holder_waits_for_its_cursor(tmp_path, rabbitmq, vhost, smtp_sink,
                                                     digestd_factory):
    """The broker hands the job of a worker killed while holding it to
    another instance's idle workers at once: the one that takes it must
    not go on from the checkpoint before the dead worker's supervisor has
    saved the cursor from its slot (docs/design.md#jobs).

    The victim's supervisor is stopped across the kill, which stands for a
    save that comes late (its requeue child retrying while Redis comes
    back): the other instance has the job, and Redis, first."""
    redis = AofRedis(tmp_path / "redis").start()
    a_sup = None
    try:
        r = redis.client()
        now = now_for_tests()
        end = now - now % 86400
        groups = {7: list(range(100, 240))}
        write_groups(r, groups, end)
        smtp_sink.delay = 0.05
        common = dict(transport="smtp", sink=smtp_sink, batch=10, per_session=10)
        cfg_a = config(tmp_path, redis, rabbitmq, vhost, workers=1, name="a.conf", **common)
        cfg_b = config(tmp_path, redis, rabbitmq, vhost, workers=3, name="b.conf", **common)
        assert scheduled(digestctl(cfg_a, "schedule", "--period", "daily", "--now",
                                   str(now)).stdout) == 1
        a = start_digestd(digestd_factory, cfg_a)
        wait_for(lambda: smtp_sink.count() >= 20, timeout=60, what="20 emails")
        b = start_digestd(digestd_factory, cfg_b)
        redis.proc.kill()
        redis.proc.wait(timeout=10)
        wait_for(lambda: "holding the job until Redis" in a.log(), timeout=30,
                 what="the worker holding its job")
        # The flush in progress ends; what it delivered is only in the
        # worker's memory and its slot.
        time.sleep(1.0)
        at_kill = smtp_sink.count()
        (victim,) = worker_pids(a)
        a_sup = a.proc.pid
        os.kill(a_sup, signal.SIGSTOP)
        os.kill(victim, signal.SIGKILL)
        redis.start()
        r = redis.client()
        # One of b's workers has the redelivered job in hand; only then
        # does a's supervisor go on.
        wait_for(lambda: any(w.get("job") for w in b.status()["workers"]),
                 timeout=60, what="the job in hand in the other instance")
        os.kill(a_sup, signal.SIGCONT)
        a_sup = None
        wait_all_done(r, 1, timeout=90, d=b)
        got = smtp_sink.ids()
        want = expected_pairs(groups, end)
        assert set(got) == want, "lost: %s" % sorted(want - set(got))[:5]
        dups = len(got) - len(set(got))
        print("measured: killed holding the job after %d of %d emails; %d duplicate(s)"
              % (at_kill, len(groups[7]), dups))
        assert at_kill < len(groups[7]), "the job ended before the kill"
        assert dups <= 1, "duplicates: %d" % dups
        assert a.stop() == 0
        assert b.stop() == 0
    finally:
        if a_sup is not None:
            os.kill(a_sup, signal.SIGCONT)
        redis.stop()
