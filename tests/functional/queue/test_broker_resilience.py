"""The AMQP backend under failure, against the session's rabbitmq-server:
a broker restart during a run, a job longer than three heartbeat
intervals (which must not be redelivered while it runs), /readyz while
the broker is down, and a drain that gives the job in hand back.  (A
worker killed mid-job, the same on both backends: supervisor/test_crash.py.)"""
import time

from lib.amqp_util import (
    config,
    drain_queue,
    expected_pairs,
    now_for_tests,
    queue_counts,
    rabbit_log,
    scheduled,
    start_digestd,
    wait_all_done,
    worker_pids,
    write_groups,
)
from lib.harness import digestctl, metric_sum, wait_for


def setup_groups(r, groups):
    now = now_for_tests()
    end = now - now % 86400
    write_groups(r, groups, end)
    return now, end


def test_broker_restart_nothing_lost(tmp_path, redis_tcp, rabbitmq, vhost, smtp_sink,
                                     digestd_factory):
    r = redis_tcp.client()
    groups = {g: list(range(1000 * g, 1000 * g + 30)) for g in range(1, 7)}
    now, end = setup_groups(r, groups)
    smtp_sink.delay = 0.05
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="smtp", sink=smtp_sink,
                 workers=2, batch=5, per_session=5, heartbeat="5s")
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 6
    d = start_digestd(digestd_factory, cfg)
    wait_for(lambda: smtp_sink.count() >= 15, timeout=60, what="15 emails")

    rabbitmq._stop_node()
    try:
        # While the broker is down, every worker is back to "starting",
        # retrying with backoff, and none has crashed.
        wait_for(lambda: workers_states(d) == {"starting"}, timeout=20,
                 what="workers starting while the broker is down")
        pids = set(worker_pids(d))
        time.sleep(2.0)
        assert set(worker_pids(d)) == pids and not d.exited()
    finally:
        if rabbitmq.proc is None:
            rabbitmq.start()
    wait_for(lambda: workers_states(d) <= {"idle", "busy"}, timeout=30,
             what="workers back after the broker restart")

    wait_all_done(r, 6, timeout=120, d=d)
    got = smtp_sink.ids()
    want = expected_pairs(groups, end)
    assert set(got) == want, "lost: %s" % sorted(want - set(got))[:5]
    # At most the message in flight per worker and job cut off.
    print("measured: %d emails for %d members, %d duplicate(s) across the restart"
          % (len(got), len(want), len(got) - len(set(got))))
    assert len(got) - len(set(got)) <= 4
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert drain_queue(rabbitmq, vhost, "digest.dlq") == []
    log = d.log()
    assert "reconnecting" in log or "connection lost" in log
    # Reconnected in place: no worker was replaced.
    assert metric_sum(d.metrics(), "digest_worker_restarts_total") == 0
    assert d.stop() == 0


def test_long_job_not_redelivered(tmp_path, redis_tcp, rabbitmq, vhost, smtp_sink,
                                  digestd_factory):
    r = redis_tcp.client()
    groups = {9: list(range(100, 115))}
    now, end = setup_groups(r, groups)
    # 15 emails at 0.7 s each: over 10 s, more than 3 x 2 s heartbeats,
    # with the worker inside SMTP nearly all of the time.
    smtp_sink.delay = 0.7
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="smtp", sink=smtp_sink,
                 heartbeat="2s")
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    log_at = len(rabbit_log(rabbitmq))
    d = start_digestd(digestd_factory, cfg)
    wait_for(lambda: smtp_sink.count() >= 1, timeout=30, what="the first email")
    t0 = time.monotonic()
    before = {c["name"] for c in rabbitmq.connections(vhost)
              if c["connection_name"].startswith("digestd worker")}
    assert len(before) == 1
    cps = wait_all_done(r, 1, timeout=60, d=d)
    took = time.monotonic() - t0
    print("measured: the job ran %.1f s with 2 s heartbeats" % took)
    assert took > 7.0, "the job should outlast three heartbeat intervals (%.1fs)" % took
    cp = cps["daily.%d.9.0" % end]
    assert int(cp["attempts"]) == 1, cp
    got = smtp_sink.ids()
    assert sorted(got) == sorted(expected_pairs(groups, end)), "duplicates or losses"
    # The same connection, still open: the broker never dropped it.
    after = {c["name"] for c in rabbitmq.connections(vhost)
             if c["connection_name"].startswith("digestd worker")}
    assert after == before
    assert "missed heartbeats" not in rabbit_log(rabbitmq)[log_at:]
    assert "connection lost" not in d.log() and "already done" not in d.log()
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert d.stop() == 0


def workers_states(d):
    return {w["state"] for w in d.status()["workers"]}


def test_readyz_not_ready_while_broker_down(tmp_path, redis_tcp, rabbitmq, vhost,
                                            digestd_factory):
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, workers=2)
    d = start_digestd(digestd_factory, cfg)
    assert d.http_status("/readyz") == 200
    rabbitmq._stop_node()
    try:
        wait_for(lambda: workers_states(d) == {"starting"}, timeout=20,
                 what="workers starting while the broker is down")
        wait_for(lambda: d.http_status("/readyz") == 503, timeout=10,
                 what="/readyz 503 while no worker is connected")
    finally:
        if rabbitmq.proc is None:
            rabbitmq.start()
    wait_for(lambda: d.http_status("/readyz") == 200, timeout=30,
             what="/readyz 200 once the workers are back")
    assert metric_sum(d.metrics(), "digest_worker_restarts_total") == 0
    assert d.stop() == 0


def test_drain_gives_the_job_back(tmp_path, redis_tcp, rabbitmq, vhost, smtp_sink,
                                  digestd_factory):
    r = redis_tcp.client()
    groups = {4: list(range(100, 140))}
    now, end = setup_groups(r, groups)
    smtp_sink.delay = 0.1
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="smtp", sink=smtp_sink,
                 batch=5, per_session=5)
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = start_digestd(digestd_factory, cfg)
    wait_for(lambda: smtp_sink.count() >= 10, timeout=60, what="10 emails")
    assert d.stop() == 0
    at_stop = smtp_sink.count()
    assert at_stop < 40
    # Checkpointed and given back: the job waits on its queue again.
    job = "daily.%d.4.0" % end
    assert r.hget("digest:job:" + job, "state") != "done"
    wait_for(lambda: (queue_counts(rabbitmq, vhost, "digest.standard") or (0,))[0] == 1,
             timeout=10, what="the job back on digest.standard")

    d2 = start_digestd(digestd_factory, cfg)
    wait_all_done(r, 1, timeout=60, d=d2)
    got = smtp_sink.ids()
    assert set(got) == expected_pairs(groups, end)
    assert len(got) - len(set(got)) <= 1
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert drain_queue(rabbitmq, vhost, "digest.dlq") == []
    assert d2.stop() == 0
