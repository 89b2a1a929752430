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
