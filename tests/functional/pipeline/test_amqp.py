"""The whole pipeline on the AMQP backend against the session's
rabbitmq-server: the same dataset gives the same emails as on the Redis
backend, and a job body that does not decode is dead-lettered with its
reason while the worker carries on."""
import json
import os

from lib.amqp_util import (
    config, drain_queue, maildir_ids, now_for_tests, publish, scheduled,
    start_digestd, wait_all_done)
from lib.harness import TcpRedis, digestctl, metric_sum, wait_for


def run_backend(factory, tmp_path, rabbit, vhost, backend, now):
    """Seed, schedule and run one backend to the end; its maildir's ids."""
    d = tmp_path / backend
    d.mkdir()
    srv = TcpRedis(d / "redis").start()
    try:
        cfg = config(d, srv, rabbit, vhost, backend=backend, workers=2,
                     pools=("priority", "standard"), maildir=str(d / "outbox"))
        digestctl(cfg, "seed", "--groups", "12", "--members", "900", "--posts", "120",
                  "--seed", "7", "--now", str(now))
        n = scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                                str(now)).stdout)
        assert n > 0
        proc = start_digestd(factory, cfg)
        wait_all_done(srv.client(), n, timeout=120, d=proc)
        assert proc.stop() == 0, proc.log()[-3000:]
        return maildir_ids(str(d / "outbox")), n
    finally:
        srv.stop()


def test_same_emails_as_redis_backend(tmp_path, rabbitmq, vhost, digestd_factory):
    now = now_for_tests()
    redis_ids, n_redis = run_backend(digestd_factory, tmp_path, rabbitmq, vhost,
                                     "redis", now)
    amqp_ids, n_amqp = run_backend(digestd_factory, tmp_path, rabbitmq, vhost,
                                   "amqp", now)
    assert n_redis == n_amqp
    assert len(redis_ids) > 100, "the dataset should produce real mail"
    # Same messages (Message-ID and recipient), none twice on either side.
    assert len(set(redis_ids)) == len(redis_ids)
    assert len(set(amqp_ids)) == len(amqp_ids)
    assert set(amqp_ids) == set(redis_ids)
    # Every job was acknowledged: nothing left on the broker.
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert drain_queue(rabbitmq, vhost, "digest.priority") == []
    assert drain_queue(rabbitmq, vhost, "digest.dlq") == []


def test_bad_bodies_are_dead_lettered(tmp_path, redis_tcp, rabbitmq, vhost,
                                      digestd_factory):
    from lib.amqp_util import expected_pairs, write_groups
    now = now_for_tests()
    end = now - now % 86400
    r = redis_tcp.client()
    groups = {5: list(range(100, 110))}
    write_groups(r, groups, end)
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost)
    digestctl(cfg, "stats")               # declares the queues
    publish(rabbitmq, vhost, "digest.standard", b"this is not json")
    publish(rabbitmq, vhost, "digest.standard",
            json.dumps({"job_id": "daily.1.5.0", "period": "daily"}).encode())
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = start_digestd(digestd_factory, cfg)
    wait_all_done(r, 1, timeout=60, d=d)
    got = maildir_ids(os.path.join(str(tmp_path), "outbox"))
    assert set(got) == expected_pairs(groups, end) and len(got) == 10

    letters = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(
        drain_queue(rabbitmq, vhost, "digest.dlq")), timeout=10, what="2 dead letters")
    bodies = {}
    for props, body in letters:
        h = props.headers
        assert h["x-digest-queue"] == "standard", h
        assert h["x-digest-reason"], h
        assert "x-digest-attempts" in h
        assert props.delivery_mode == 2
        bodies[body] = h["x-digest-reason"]
    assert set(bodies) == {b"this is not json",
                           json.dumps({"job_id": "daily.1.5.0", "period": "daily"}).encode()}
    # A job is counted just after its checkpoint says done.
    wait_for(lambda: metric_sum(d.metrics(), "digest_jobs_total", result="ok") >= 1,
             timeout=10, what="the job counted")
    m = d.metrics()
    assert metric_sum(m, "digest_jobs_total", result="dead_lettered") == 2
    assert metric_sum(m, "digest_jobs_total", result="ok") == 1
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert d.stop() == 0
