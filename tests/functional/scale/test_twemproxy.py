"""A sharded activity store: three redis-servers behind twemproxy
(nutcracker, ketama), the dataset written through the proxy, digestd's
[redis] on the proxy and [queue_redis] on a plain redis-server (the proxy
routes no stream commands).  The emails are exactly those one plain Redis
gives, and the proxy refuses nothing digestd or digestctl sends.
"""
import json

import pytest

from lib.harness import Digestd, SmtpSink, TcpRedis, digestctl
from lib.scale_util import Nutcracker, config, wait_settled

SEED = ("seed", "--groups", "15", "--members", "1500", "--posts", "120",
        "--seed", "11")


@pytest.fixture
def cluster(tmp_path):
    """Three shards behind nutcracker, and a queue Redis."""
    started = []
    try:
        shards = [TcpRedis(tmp_path / ("shard%d" % i)).start() for i in range(3)]
        started += shards
        queue = TcpRedis(tmp_path / "queue").start()
        started.append(queue)
        proxy = Nutcracker(tmp_path / "proxy", shards).start()
        started.append(proxy)
        yield shards, proxy, queue
    finally:
        for s in reversed(started):
            s.stop()


def run(tmp_path, redis_sect, queue_sect, q, name):
    """seed, schedule both periods, digestd to an SMTP sink until drained;
    returns the sorted (Message-ID, recipient) pairs and the schedule
    records."""
    sink = SmtpSink().start()
    try:
        cfg = config(tmp_path, redis_sect, queue_sect, pools=("priority", "standard"),
                     sink=sink, name=name)
        digestctl(cfg, *SEED)
        digestctl(cfg, "schedule", "--period", "daily")
        digestctl(cfg, "schedule", "--period", "weekly")
        d = Digestd(cfg, tmp_path).start()
        try:
            wait_settled(q, [d], timeout=180)
            log = d.log()
        finally:
            assert d.stop() == 0
        st = json.loads(digestctl(cfg, "stats", "--json").stdout)
        # One group by hand, as an operator would: it reads the group's
        # posts and members through the same [redis].
        out = digestctl(cfg, "enqueue", "--group", "2", "--period", "daily",
                        "--queue", "standard", check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        pairs = []
        with sink.lock:
            msgs = list(sink.messages)
        import email
        import email.policy
        for _, rcpt, raw in msgs:
            m = email.message_from_bytes(raw, policy=email.policy.default)
            pairs.append((m["Message-ID"], rcpt))
        return sorted(pairs), st, log
    finally:
        sink.stop()


def test_sharded_store_gives_the_same_emails(tmp_path, cluster):
    shards, proxy, queue = cluster

    plain = TcpRedis(tmp_path / "plain").start()
    plain_q = TcpRedis(tmp_path / "plain-queue").start()
    try:
        want, want_st, _ = run(tmp_path, plain.config_section(),
                               plain_q.config_section("queue_redis"), plain_q.client(),
                               "plain.conf")
    finally:
        plain_q.stop()
        plain.stop()
    assert len(want) > 50, "too few emails to compare: %d" % len(want)

    got, got_st, log = run(tmp_path, "[redis]\nhost = 127.0.0.1\nport = %d\n"
                           "timeout = 2s\n" % proxy.port,
                           queue.config_section("queue_redis"), queue.client(),
                           "proxy.conf")

    # The data really is sharded: every shard holds part of it, and no
    # digestd key reached them.
    sizes = [s.client().dbsize() for s in shards]
    assert all(n > 0 for n in sizes), sizes
    for s in shards:
        assert not list(s.client().scan_iter(match="*digest:*"))

    assert len(got) == len(set(got)), "duplicate emails through the proxy"
    assert got == want
    for period in ("daily", "weekly"):
        for k in ("jobs_priority", "jobs_standard", "groups"):
            assert got_st["schedule"][period][k] == want_st["schedule"][period][k], \
                (period, k, got_st["schedule"], want_st["schedule"])

    # Nothing digestd or digestctl sent was refused by the proxy.
    errs = proxy.errors()
    assert not errs, "nutcracker refused requests:\n" + "\n".join(errs[:20])
    # The log does tell of a refused command: one digestd must never send.
    import socket
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as c:
        c.sendall(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")
        assert c.recv(64) == b"", "nutcracker answered KEYS"
    from lib.harness import wait_for
    wait_for(lambda: proxy.errors(), timeout=5, what="nutcracker logs KEYS")
    assert "keys" in proxy.errors()[0].lower()

    bad = [l for l in log.splitlines() if "level=error" in l or "level=warn" in l]
    assert not bad, "\n".join(bad[:20])
