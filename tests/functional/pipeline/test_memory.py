"""Memory bounded by the batch, never by the group: a group of
200,000 members (DIGESTD_BIG_GROUP=1000000 for the full run) completes in
a worker under memory_limit = 32M, with no OOM restart, and the worker's
peak RSS (VmHWM) is reported.

One member in 100 has an address and a recent last_seen; the others have
no user hash, so the walk covers every member while the sink only takes
the emails.
"""
import os
import time

import pytest

from lib.harness import ASAN, Digestd, metric_sum
from lib.pipeline_data import Data, config, enqueue, rcpts, wait_done, window

N = int(os.environ.get("DIGESTD_BIG_GROUP", "200000"))


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.mark.skipif(ASAN, reason="the sanitizer's shadow memory and quarantine dwarf the figure measured")
@pytest.mark.slow
def test_pipeline_big_group_under_32m(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    data = Data(r)
    data.group(7, name="Huge group")
    data.members(7, range(1, N + 1))
    pipe = r.pipeline(transaction=False)
    eligible = []
    for u in range(100, N + 1, 100):
        pipe.hset("user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                          "last_seen": str(we - 3600)})
        eligible.append("u%d@example.org" % u)
    pipe.execute()
    for i in range(20):
        data.post(7, 70000 + i, we - 100 - i, title="Post %d" % i,
                  excerpt="x" * 500, author_id=1, likes=i)

    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, memory_limit="32M",
                 large=10000)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        t0 = time.monotonic()
        st = wait_done(r, enqueue(r, 7, "daily", ws, we), timeout=600, d=d)
        took = time.monotonic() - t0
        assert int(st["sent"]) == len(eligible), st
        assert sorted(rcpts(smtp_sink)) == sorted(eligible)
        text = d.metrics()
        assert metric_sum(text, "digest_worker_restarts_total") == 0
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="no_email") == N - len(eligible)
        pids = [w["pid"] for w in d.status()["workers"] if w.get("pid")]
        assert len(pids) == 1
        peak = vm_hwm(pids[0])
        print("\nbig group: %d members, %d emails in %.1f s; worker peak RSS "
              "%.1f MiB under memory_limit 32M" % (N, len(eligible), took,
                                                   peak / 1048576.0))
        assert peak < 32 * 1048576
    finally:
        d.kill()


@pytest.mark.skipif(ASAN, reason="the sanitizer's shadow memory and quarantine dwarf the figure measured")
@pytest.mark.slow
def test_pipeline_full_batches_under_32m(tmp_path, redis_tcp, smtp_sink):
    """Every member eligible, so each batch of 500 is rendered and held by
    the SMTP transport at once (one session of 500): still under 32M."""
    r = redis_tcp.client()
    ws, we = window()
    n = 5000
    data = Data(r)
    data.group(8, name="Everyone reads")
    data.members(8, range(1, n + 1))
    pipe = r.pipeline(transaction=False)
    for u in range(1, n + 1):
        pipe.hset("user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                          "name": "User %d" % u})
    pipe.execute()
    for i in range(10):
        data.post(8, 80000 + i, we - 100 - i, title="Post %d" % i,
                  excerpt="Lorem ipsum dolor sit amet " * 12, author_id=n + 1,
                  likes=i)
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, memory_limit="32M",
                 batch=500, per_session=500)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        st = wait_done(r, enqueue(r, 8, "daily", ws, we), timeout=300, d=d)
        assert int(st["sent"]) == n
        assert smtp_sink.count() == n
        assert metric_sum(d.metrics(), "digest_worker_restarts_total") == 0
        pid = [w["pid"] for w in d.status()["workers"] if w.get("pid")][0]
        peak = vm_hwm(pid)
        print("\nfull batches: %d emails; worker peak RSS %.1f MiB" % (n, peak / 1048576.0))
        assert peak < 32 * 1048576
    finally:
        d.kill()
