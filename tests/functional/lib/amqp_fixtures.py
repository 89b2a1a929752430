"""Fixtures of the AMQP tests, imported by the AMQP test modules: a
per-test vhost on the session's rabbitmq-server and a Redis on loopback
TCP.  Both are removed or stopped when the test ends."""
import pytest

from lib.amqp_util import SlowSmtpSink, TcpRedis


@pytest.fixture
def vhost(rabbitmq):
    """A fresh vhost: the test's own queues, exchanges and dead letters."""
    name = rabbitmq.vhost("t")
    yield name
    rabbitmq.drop_vhost(name)


@pytest.fixture
def redis_tcp(tmp_path):
    srv = TcpRedis(tmp_path / "redis").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def slow_sink():
    """An SMTP sink; set .delay to make each DATA reply slow."""
    sink = SlowSmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
