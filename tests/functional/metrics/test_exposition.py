"""/metrics on a running digestd: promtool accepts the text
format without a complaint, the OpenMetrics body passes prometheus_client's
parser, every series is there from the first scrape, none twice; the
queue gauges come from the sampler; /healthz, /readyz, /status and the
refusals of the endpoint.
"""
import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error

import pytest

from lib.harness import Digestd, wait_for
from lib.metrics_util import (CT_OM, CT_TEXT, HISTOGRAMS, OM_ACCEPT, expected_series,
                          fetch, samples, series_keys, start_digestd,
                          stop_digestd, two_pool_config)
from lib.pipeline_data import enqueue_on, window

POOLS = ["priority", "standard"]


@pytest.fixture
def digestd(tmp_path, redis_tcp):
    cfg = two_pool_config(tmp_path, redis_tcp)
    d = start_digestd(tmp_path, cfg)
    try:
        yield d
    finally:
        stop_digestd(d)


def test_first_scrape_has_every_series_once(tmp_path, redis_tcp):
    # Scrape as soon as the loop answers, before any worker is ready.
    cfg = two_pool_config(tmp_path, redis_tcp)
    d = start_digestd(tmp_path, cfg, wait_ready=False)
    try:
        code, headers, text = fetch(d.port)
        assert code == 200
        assert headers["Content-Type"] == CT_TEXT
        keys = series_keys(text)
        assert len(keys) == len(set(keys)), "duplicate series"
        missing = expected_series(POOLS, POOLS) - set(keys)
        assert not missing, sorted(missing)[:10]
        for name, labels, value in samples(text):
            if name.endswith("_total") or name.endswith("_bucket"):
                assert value >= 0
        # Every histogram has all its buckets, cumulative, +Inf == _count.
        got = samples(text)
        for h in HISTOGRAMS:
            for p in POOLS:
                b = [(l["le"], v) for n, l, v in got
                     if n == h + "_bucket" and l["pool"] == p]
                assert len(b) == 13, b
                assert b[-1][0] == "+Inf"
                vals = [v for _, v in b]
                assert vals == sorted(vals)
                count = [v for n, l, v in got if n == h + "_count" and l["pool"] == p]
                assert count == [vals[-1]]
    finally:
        stop_digestd(d)


def test_promtool_check_metrics(digestd):
    _, headers, text = fetch(digestd.port)
    assert headers["Content-Type"] == CT_TEXT
    p = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def test_openmetrics_parser(digestd):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    _, headers, text = fetch(digestd.port, headers={"Accept": OM_ACCEPT})
    assert headers["Content-Type"] == CT_OM
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # OpenMetrics names counter families without _total.
    assert fams["digest_jobs"].type == "counter"
    assert fams["digest_worker_restarts"].type == "counter"
    assert fams["process_cpu_seconds"].type == "counter"
    assert fams["digest_job_duration_seconds"].type == "histogram"
    assert fams["digest_build_info"].type == "gauge"
    got = set()
    for f in fams.values():
        for s in f.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in got, "duplicate %s" % (key,)
            got.add(key)
    missing = expected_series(POOLS, POOLS) - got
    assert not missing, sorted(missing)[:10]
    # The same numbers as the text format (nothing moves on an idle daemon
    # but the process figures and the sampler's timestamp).
    _, _, plain = fetch(digestd.port)
    t = {(n, frozenset(l.items())): v for n, l, v in samples(plain)}
    for (name, labels), v in t.items():
        if name.startswith("digest_jobs") or name.startswith("digest_emails"):
            assert (name, labels) in got


def test_sampler_publishes_queue_gauges(tmp_path, backend):
    """The queue gauges as the sampler reads them from the backend: on
    Redis depth and pending from the stream; on AMQP the depth from the
    broker's ready count, and pending unknown to AMQP 0-9-1 and so NaN
    (never a made-up 0).  The body still passes promtool."""
    r = backend.r
    cfg = two_pool_config(tmp_path, backend.redis, backend=backend)
    backend.prepare(cfg)
    digestd = start_digestd(tmp_path, cfg)
    try:
        check_queue_gauges(backend, r, digestd)
    finally:
        stop_digestd(digestd)


def check_queue_gauges(backend, r, digestd):
    st = digestd.status()
    pids = [w["pid"] for w in st["workers"] if w["pool"] == "priority"]
    assert len(pids) == 1
    # A stopped worker takes nothing (at most the one its blocked read or
    # its prefetch of 1 already holds), so the jobs wait in the queue for
    # the sampler to see.
    os.kill(pids[0], signal.SIGSTOP)
    try:
        ws, we = window()
        t0 = time.time()
        for gid in range(1, 6):
            enqueue_on(backend, 900000 + gid, "daily", ws, we, queue="priority")
        backend.add_dead_letter({"job_id": "x", "reason": "test"})
        r.hset("digest:sched:daily", mapping={
            "start": "1764374300.5", "end": "1764374400.25", "status": "ok",
            "last_success": "1764374400.25"})
        r.hset("digest:sched:weekly", mapping={
            "start": "1", "end": "2", "status": "failed"})

        def sampled():
            m = {(n, tuple(sorted(l.items()))): v
                 for n, l, v in samples(fetch(digestd.port)[2])}
            depth = m[("digest_queue_depth", (("queue", "priority"),))]
            pending = m[("digest_queue_pending", (("queue", "priority"),))]
            if backend.name == "redis":
                ok = depth + pending == 5
            else:
                ok = depth >= 4
            if ok and m[("digest_dead_letters", ())] == 1:
                return m
            return None

        # The sampler runs every 5 s.
        m = wait_for(sampled, timeout=15, interval=0.25, what="sampled gauges")
        pending = m[("digest_queue_pending", (("queue", "priority"),))]
        if backend.name == "redis":
            oldest = m[("digest_queue_oldest_enqueued_timestamp_seconds",
                        (("queue", "priority"),))]
            assert t0 - 1 <= oldest <= time.time()
        else:
            assert m[("digest_queue_depth", (("queue", "priority"),))] in (4, 5)
            assert pending != pending, "pending should be NaN on AMQP, got %r" % pending
        assert m[("digest_schedule_last_success_timestamp_seconds",
                  (("period", "daily"),))] == 1764374400.25
        assert m[("digest_schedule_last_success_timestamp_seconds",
                  (("period", "weekly"),))] == 0
        assert m[("digest_queue_depth", (("queue", "standard"),))] == 0
        assert m[("digest_queue_sampled_timestamp_seconds", ())] >= t0 - 6
        s = digestd.status()
        if backend.name == "redis":
            assert s["queues"]["priority"]["depth"] + \
                s["queues"]["priority"]["pending"] == 5
        else:
            assert s["queues"]["priority"]["pending"] is None
        assert s["dead_letters"] == 1
        body = fetch(digestd.port)[2]
        p = subprocess.run(["promtool", "check", "metrics"], input=body,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), \
            p.stdout + p.stderr
    finally:
        os.kill(pids[0], signal.SIGCONT)
    # The sampler is a child of its own, not the supervisor's loop: it has
    # its own title, and the loop kept answering while it worked.
    kids = digestd.children()
    titles = []
    for pid in kids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                titles.append(f.read().decode("utf-8", "replace"))
        except OSError:
            pass
    assert any("digestd: sampler" in t for t in titles), titles


def test_sampler_respawned_after_kill(digestd):
    def sampler_pid():
        for pid in digestd.children():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"digestd: sampler" in f.read():
                        return pid
            except OSError:
                pass
        return None

    pid = wait_for(sampler_pid, timeout=10, what="sampler")
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (sampler_pid() or pid) != pid and sampler_pid(),
                   timeout=10, what="a new sampler")
    assert new != pid
    assert "sampler" in digestd.log()


def test_health_ready_status(digestd):
    assert fetch(digestd.port, "/healthz")[0] == 200
    assert fetch(digestd.port, "/readyz")[0] == 200

    # /readyz needs one ready worker per pool, not all of them: the others
    # may still be starting.  With no job queued, each becomes idle.
    def all_idle():
        code, headers, body = fetch(digestd.port, "/status")
        st = json.loads(body)
        if all(w["state"] == "idle" for w in st["workers"]):
            return code, headers, body
        return None

    code, headers, body = wait_for(all_idle, timeout=30, what="every worker idle")
    assert headers["Content-Type"].startswith("application/json")
    st = json.loads(body)
    assert set(st["pools"]) == set(POOLS)
    assert len(st["workers"]) == 3
    for w in st["workers"]:
        assert set(w) >= {"pool", "slot", "pid", "state", "job",
                          "job_started_at", "jobs_done", "rss_bytes"}
        assert w["state"] == "idle"
        assert w["job"] is None and w["job_started_at"] is None
        assert w["rss_bytes"] > 0
        assert w["pool"] in POOLS
    assert sorted(w["slot"] for w in st["workers"] if w["pool"] == "standard") == [0, 1]
    assert st["ready"] is True
    # Nothing secret: the HMAC key and the config's values are not shown.
    assert "test-secret" not in body
    code, headers, html = fetch(digestd.port, "/status?html")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "<table>" in html and "standard" in html
    assert "test-secret" not in html


def test_refusals_and_head(digestd):
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(digestd.port, "/nope")
    assert e.value.code == 404
    req = urllib.request.Request(digestd.url("/metrics"), data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
    assert "GET" in e.value.headers["Allow"]
    req = urllib.request.Request(digestd.url("/metrics"), method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
        assert r.read() == b""


def test_slow_client_does_not_block_scrapes(digestd):
    # A client that sends half a request and stalls must not hold up the
    # loop: other scrapes are answered meanwhile.
    s = socket.create_connection(("127.0.0.1", digestd.port))
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        for _ in range(20):
            assert fetch(digestd.port, timeout=2)[0] == 200
        assert time.monotonic() - t0 < 5
    finally:
        s.close()


def test_ipv6_listen(tmp_path, redis_tcp):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no ::1")
    cfg = two_pool_config(tmp_path, redis_tcp)
    with open(cfg) as f:
        text = f.read()
    text = "\n".join("listen = [::1]:%d" % port if l.startswith("listen") else l
                     for l in text.splitlines()) + "\n"
    with open(cfg, "w") as f:
        f.write(text)
    d = Digestd(cfg, tmp_path)
    assert d.port == port
    d.start(wait_ready=False)
    try:
        def up():
            try:
                with urllib.request.urlopen("http://[::1]:%d/healthz" % port,
                                            timeout=1) as r:
                    return r.status == 200
            except Exception:
                return d.exited()
        wait_for(up, timeout=15, what="digestd on ::1")
        assert not d.exited(), d.log()
        with urllib.request.urlopen("http://[::1]:%d/metrics" % port, timeout=5) as r:
            assert b"digest_build_info" in r.read()
    finally:
        stop_digestd(d)


def test_stalled_client_is_dropped(digestd):
    # A client that never finishes its first request is dropped at the
    # request deadline, 5 s after its connection.
    s = socket.create_connection(("127.0.0.1", digestd.port))
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(20)
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        took = time.monotonic() - t0
        assert 3 <= took <= 10, took
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
    finally:
        s.close()


def test_process_metrics_are_the_supervisors(digestd):
    m = {n: v for n, l, v in samples(fetch(digestd.port)[2]) if n.startswith("process_")}
    pid = digestd.pid()
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    with open("/proc/stat") as f:
        btime = [int(l.split()[1]) for l in f if l.startswith("btime ")][0]
    start = btime + int(st[19]) / os.sysconf("SC_CLK_TCK")
    assert abs(m["process_start_time_seconds"] - start) < 0.05
    assert abs(m["process_start_time_seconds"] - time.time()) < 120
    nfds = len(os.listdir("/proc/%d/fd" % pid))
    assert abs(m["process_open_fds"] - nfds) <= 2, (m["process_open_fds"], nfds)
    rss = int(st[21]) * os.sysconf("SC_PAGE_SIZE")
    assert 0 < m["process_resident_memory_bytes"] < 10 * rss + 1
    assert m["process_virtual_memory_bytes"] >= m["process_resident_memory_bytes"]
    assert m["process_max_fds"] > 0
    assert m["process_cpu_seconds_total"] >= 0


def test_concurrent_scrapes(digestd):
    import threading

    errors = []
    bodies = []

    def worker(om):
        try:
            for _ in range(40):
                h = {"Accept": OM_ACCEPT} if om else {}
                code, headers, body = fetch(digestd.port, headers=h, timeout=10)
                assert code == 200
                assert headers["Content-Type"] == (CT_OM if om else CT_TEXT)
                assert body.endswith("# EOF\n") if om else "# EOF" not in body
                bodies.append(len(series_keys(body.replace("# EOF\n", ""))))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(bodies) == 320 and len(set(bodies)) == 1, set(bodies)
