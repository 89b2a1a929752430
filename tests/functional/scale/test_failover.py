"""Queue Redis failover through HAProxy: deploy/haproxy/haproxy.cfg passes
`haproxy -c`; with a copy of it on the test's ports in front of a primary
and its replica, the replica is promoted during a run (the old primary
stopped, then back as a replica), HAProxy follows the role, digestd
reconnects with backoff, /readyz says 503 during the outage and 200 after,
and no recipient is lost.
"""
import collections
import re
import shutil
import subprocess
import time

import pytest

from lib.harness import Digestd, SmtpSink, TcpRedis, digestctl, wait_for
from lib.scale_util import (
    HAPROXY_CFG, Haproxy, config, sink_pairs, unbounded_keys,
    wait_settled)

SEED = ("seed", "--groups", "12", "--members", "900", "--posts", "80",
        "--seed", "31")
POOLS = ("priority", "standard")
WORKERS = 2
BATCH = 10


def test_example_config_checks():
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    p = subprocess.run([exe, "-c", "-f", HAPROXY_CFG], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(HAPROXY_CFG) as f:
        text = f.read()
    assert re.search(r"^\s*mode tcp", text, re.M)
    assert "tcp-check send PING" in text and "expect string +PONG" in text
    assert "expect string role:master" in text


def link_up(replica):
    try:
        return replica.client().info("replication").get("master_link_status") == "up"
    except Exception:
        return False


def baseline(tmp_path):
    r = TcpRedis(tmp_path / "single").start()
    sink = SmtpSink().start()
    try:
        cfg = config(tmp_path, r.config_section(), pools=POOLS, workers=WORKERS,
                     sink=sink, name="single.conf")
        digestctl(cfg, *SEED)
        digestctl(cfg, "schedule", "--period", "daily")
        d = Digestd(cfg, tmp_path).start()
        try:
            wait_settled(r.client(), [d], timeout=120)
        finally:
            assert d.stop() == 0
        return sink_pairs(sink)
    finally:
        sink.stop()
        r.stop()


@pytest.fixture
def servers(tmp_path):
    started = []
    try:
        data = TcpRedis(tmp_path / "data").start()
        started.append(data)
        primary = TcpRedis(tmp_path / "a").start()
        started.append(primary)
        replica = TcpRedis(tmp_path / "b", extra=["--replicaof", "127.0.0.1",
                                                  str(primary.port)]).start()
        started.append(replica)
        wait_for(lambda: link_up(replica), timeout=10, what="replica in sync")
        proxy = Haproxy(tmp_path / "haproxy", primary.port, replica.port).start()
        started.append(proxy)
        yield data, primary, replica, proxy, started
    finally:
        for s in reversed(started):
            s.stop()


def test_replica_promoted_during_a_run(tmp_path, servers):
    want = baseline(tmp_path)
    assert len(want) > 50
    data, primary, replica, proxy, started = servers
    a_id = primary.client().info()["run_id"]
    b_id = replica.client().info()["run_id"]
    wait_for(lambda: proxy.role_via_proxy() == ("master", a_id), timeout=10,
             what="HAProxy on the primary")

    sink = SmtpSink(delay=0.03).start()
    d = None
    try:
        cfg = config(tmp_path, data.config_section(),
                     proxy.config_section("queue_redis"), pools=POOLS,
                     workers=WORKERS, sink=sink, visibility="3s", batch=BATCH)
        digestctl(cfg, *SEED)
        digestctl(cfg, "schedule", "--period", "daily")
        d = Digestd(cfg, tmp_path).start()
        wait_for(lambda: len(sink.messages) >= 30, timeout=30, what="a run under way")
        before = len(sink.messages)

        # The primary goes away (a clean stop: Redis waits for the replica
        # to catch up); nothing answers role:master for a while.
        primary.stop()
        wait_for(lambda: d.http_status("/readyz") == 503, timeout=15,
                 what="/readyz 503 while no primary answers")
        assert proxy.role_via_proxy() == (None, None)
        time.sleep(1.5)
        assert d.http_status("/readyz") == 503
        assert d.http_status("/healthz") == 200

        replica.client().replicaof("NO", "ONE")
        wait_for(lambda: proxy.role_via_proxy() == ("master", b_id), timeout=15,
                 what="HAProxy on the promoted replica")
        wait_for(lambda: d.http_status("/readyz") == 200, timeout=20,
                 what="/readyz 200 after the promotion")

        # The old primary comes back as a replica: HAProxy stays put.
        old = TcpRedis(primary.dir, extra=["--replicaof", "127.0.0.1",
                                           str(replica.port)])
        old.port = primary.port
        old.start()
        started.append(old)
        wait_for(lambda: link_up(old), timeout=10, what="old primary as a replica")
        time.sleep(1.5)
        assert proxy.role_via_proxy() == ("master", b_id)

        wait_settled(replica.client(), [d], timeout=180)
        text = d.metrics()
        log = d.log()
    finally:
        if d is not None:
            assert d.stop() == 0
        sink.stop()

    assert before < len(want), "the run was over before the failover"
    got = sink_pairs(sink)
    lost = set(want) - set(got)
    assert not lost, "%d recipients lost, e.g. %r" % (len(lost), sorted(lost)[:5])
    assert set(got) == set(want)
    # Duplicates: only from the jobs in hand when the primary went, and
    # at most one flush of each (min(batch_size, messages_per_session)
    # messages the server accepted before their checkpoint could be
    # written to the queue Redis that had just gone).
    dups = [k for k, n in collections.Counter(got).items() if n > 1]
    per_job = collections.Counter(mid.split("@")[0].rsplit(".", 1)[0] for mid, _ in dups)
    assert len(per_job) <= WORKERS * len(POOLS), per_job
    # More than a flush means the job ran twice: given back by its worker
    # after it reconnected while another worker had reclaimed its entry.
    assert all(n <= BATCH for n in per_job.values()), (per_job, [
        l for l in log.splitlines()
        if "given back after" in l or "reclaimed entry" in l])
    assert all(n == 2 for n in collections.Counter(got).values() if n > 1)

    # Reconnected with backoff, and said so.
    delays = [int(x) for x in re.findall(r"retrying in (\d+) ms", log)]
    assert delays and max(delays) > min(delays), delays
    assert re.search(r"connected after \d+ attempt", log)
    from lib.harness import metric_sum
    assert metric_sum(text, "digest_redis_errors_total") > 0
    assert replica.client().xlen("digest:dlq") == 0
    assert unbounded_keys(replica.client()) == []
    assert "Server redis-a is DOWN" in proxy.text() or "redis-a" in proxy.text()
