"""The two queue backends agree: the whole pipeline run on the Redis
backend and on the AMQP backend (against the session's rabbitmq-server)
over the same seeded dataset gives the same emails, each once."""
from lib.amqp_util import (
    config, drain_queue, maildir_ids, now_for_tests, scheduled, start_digestd,
    wait_all_done)
from lib.harness import TcpRedis, digestctl


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
