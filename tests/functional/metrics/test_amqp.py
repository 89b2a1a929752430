"""The sampler on the AMQP backend: queue depth from the broker's
ready count, pending unknown to AMQP 0-9-1 and so NaN (never a made-up
0), dead letters from digest.dlq; and the body still passes promtool.
A worker's failures to reach the broker count as broker errors, not Redis
errors (docs/design.md#metric-series).
"""
import os
import signal
import subprocess
import time

from lib.amqp_util import config
from lib.ctl_util import add_group
from lib.harness import Digestd, digestctl, free_port, metric, wait_for
from lib.metrics_util import fetch, samples, stop_digestd


def test_sampler_reads_the_broker(tmp_path, redis_tcp, rabbitmq, vhost):
    r = redis_tcp.client()
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, pools=("priority", "standard"))
    d = Digestd(cfg, tmp_path)
    d.start(timeout=60)
    try:
        pids = [w["pid"] for w in d.status()["workers"] if w["pool"] == "priority"]
        assert len(pids) == 1
        # A stopped consumer holds at most its prefetch (1); the rest wait.
        os.kill(pids[0], signal.SIGSTOP)
        try:
            now = int(time.time())
            for gid in range(1, 5):
                add_group(r, gid, range(10, 13), [(gid * 100, now - 100)])
                digestctl(cfg, "enqueue", "--group", str(gid), "--period", "daily",
                          "--queue", "priority")

            def sampled():
                m = {(n, tuple(sorted(l.items()))): v
                     for n, l, v in samples(fetch(d.port)[2])}
                depth = m[("digest_queue_depth", (("queue", "priority"),))]
                return m if depth >= 3 else None
            m = wait_for(sampled, timeout=20, interval=0.25, what="broker depth")
            assert m[("digest_queue_depth", (("queue", "priority"),))] in (3, 4)
            pending = m[("digest_queue_pending", (("queue", "priority"),))]
            assert pending != pending, "pending should be NaN on AMQP, got %r" % pending
            assert m[("digest_queue_depth", (("queue", "standard"),))] == 0
            assert m[("digest_dead_letters", ())] == 0
            assert m[("digest_queue_sampled_timestamp_seconds", ())] > 0
            st = d.status()
            assert st["queues"]["priority"]["pending"] is None
            body = fetch(d.port)[2]
            p = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), \
                p.stdout + p.stderr
        finally:
            os.kill(pids[0], signal.SIGCONT)
    finally:
        stop_digestd(d)


class RefusingBroker:
    """Stands for the rabbitmq fixture in config(): a broker URL on a port
    where nothing listens."""

    def __init__(self):
        self.port = free_port()

    def url(self, vhost):
        return "amqp://guest:guest@127.0.0.1:%d/" % self.port


def test_broker_errors_are_not_redis_errors(tmp_path, redis_tcp):
    """Workers that cannot reach the broker carrying their jobs count each
    failed attempt in digest_broker_errors_total{pool}; Redis answers all
    along, so digest_redis_errors_total stays 0."""
    cfg = config(tmp_path, redis_tcp, RefusingBroker(), "/")
    d = Digestd(cfg, tmp_path)
    d.start(wait_ready=False)
    try:
        def counted():
            if d.exited() or d.http_status("/metrics") != 200:
                return None
            text = d.metrics()
            n = metric(text, "digest_broker_errors_total", pool="standard")
            return text if n is not None and n >= 2 else None
        text = wait_for(counted, timeout=30, interval=0.25,
                        what="broker errors counted")
        assert metric(text, "digest_redis_errors_total", pool="standard") == 0
        assert d.http_status("/readyz") != 200
    finally:
        stop_digestd(d)
