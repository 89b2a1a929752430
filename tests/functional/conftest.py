"""Every fixture of the functional tests, for every folder: real servers
on free ports or unix sockets in a temp dir (from tests/functional/lib),
and the real digestd / digestctl binaries.

Every server started here is stopped by pid when its fixture ends.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from lib.backends import NAMES as BACKENDS  # noqa: E402
from lib.harness import (  # noqa: E402
    Digestd,
    RedisServer,
    SmtpSink,
    TcpRedis,
    write_config,
)


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on a unix socket in tmp_path."""
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def redis_tcp(tmp_path):
    """A private redis-server on a loopback port (and a unix socket in
    tmp_path); configs reach it over TCP."""
    srv = TcpRedis(tmp_path / "redis-tcp").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def smtp_sink():
    """An aiosmtpd sink on 127.0.0.1 that stores every message it accepts;
    set .delay to make each DATA reply slow."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def slow_sink():
    """An SMTP sink that takes 0.2 s per message, so that a job is still
    running when a test kills or stops its worker."""
    sink = SmtpSink(delay=0.2)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def digestd_factory(tmp_path):
    """Start digestd processes with a config; all are stopped at the end."""
    started = []

    def make(config_text=None, config_path=None, **kw):
        if config_path is None:
            config_path = write_config(tmp_path, config_text)
        d = Digestd(config_path, tmp_path, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        d.kill()


@pytest.fixture(scope="session")
def rabbitmq():
    """One rabbitmq-server for the whole session, or for each pytest-xdist
    worker (a boot takes 7 s of CPU), with a TLS listener for the amqps://
    tests."""
    from lib.harness import RabbitServer

    srv = RabbitServer(tls=True)
    try:
        srv.start()
    except Exception as e:  # pragma: no cover - environment problem
        why = srv.log_tail()
        srv.stop()
        pytest.fail("rabbitmq-server did not start: %s\n%s" % (e, why))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def vhost(rabbitmq):
    """A fresh vhost of the session's broker: the test's own queues,
    exchanges and dead letters."""
    name = rabbitmq.vhost("t")
    yield name
    rabbitmq.drop_vhost(name)


@pytest.fixture(params=BACKENDS)
def backend(request, redis_tcp):
    """The queue backend of this run of the test (redis, then amqp;
    lib.backends.only() narrows it), a lib.backends object: its config
    overrides, enqueue, dead letters, queue depth.  The queue Redis is
    redis_tcp; on amqp the queues are in a fresh vhost of the session's
    broker, which is started only for the tests that run on amqp."""
    from lib import backends

    if request.param == "redis":
        yield backends.make("redis", redis_tcp)
        return
    rabbit = request.getfixturevalue("rabbitmq")
    name = request.getfixturevalue("vhost")
    yield backends.make("amqp", redis_tcp, rabbit, name)
