#!/usr/bin/env python3
"""Scrape benchmark (issue 7 item 6): how long /metrics takes at 64 workers
with every metric populated, against Python's prometheus_client in
multiprocess mode serving the same series shape from 64 processes, both
measured by the same client code; and what one increment costs a worker
(build/bench/bench_metrics) against prometheus_client's multiprocess
Counter.inc and Histogram.observe.

    /usr/bin/python3 bench/scrape_bench.py [--quick] [--scrapes N] [--out PATH]

Writes JSON to --out (default bench/results/scrape.json) and a short
summary to bench/results/scrape.md.  Needs `make all build/bench/bench_metrics`.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from lib.harness import Digestd, RedisServer, free_port, kill_pid, wait_for  # noqa: E402
from lib.pipeline_data import Data, SECRET, UNSUB_URL, enqueue, job_state, window  # noqa: E402

BUILD = os.environ.get("DIGESTD_BUILD", "build")
BENCH_METRICS = os.path.join(ROOT, BUILD, "bench", "bench_metrics")
PY = "/usr/bin/python3"
POOLS = ("priority", "standard")

# The Python side: one writer per worker, the same families, labels and
# buckets as digestd's /metrics.
WRITER = r"""
import random, sys
from prometheus_client import Counter, Gauge, Histogram
pool = sys.argv[1]
rnd = random.Random(int(sys.argv[2]))
def counter(name, labels, values):
    c = Counter(name, name + " help", ["pool"] + labels)
    def walk(prefix, rest):
        if not rest:
            c.labels(pool, *prefix).inc(rnd.randint(1, 1000))
            return
        for v in rest[0]:
            walk(prefix + [v], rest[1:])
    walk([], values)
T = ["smtp", "amqp", "maildir"]
counter("digest_jobs_total", ["result"], [["ok", "failed", "retried", "dead_lettered"]])
counter("digest_emails_total", ["transport", "result"], [T, ["sent", "deferred", "rejected"]])
counter("digest_recipients_skipped_total", ["reason"],
        [["inactive", "opted_out", "no_email", "nothing_new", "already_sent"]])
counter("digest_redis_errors_total", [], [])
counter("digest_transport_errors_total", ["transport"], [T])
counter("digest_worker_restarts_total", ["reason"],
        [["crash", "oom", "stall", "recycle", "reload"]])
H = {
 "digest_job_duration_seconds": [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
 "digest_job_queue_wait_seconds": [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 86400],
 "digest_email_delay_seconds": [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 129600, 172800],
}
for name, b in H.items():
    h = Histogram(name, name + " help", ["pool"], buckets=b)
    for _ in range(50):
        h.labels(pool).observe(rnd.uniform(0, b[-1] * 1.2))
w = Gauge("digest_workers", "workers", ["pool", "state"], multiprocess_mode="livesum")
for s in ("starting", "idle", "busy", "draining"):
    w.labels(pool, s).set(1 if s == "busy" else 0)
Gauge("digest_worker_memory_bytes", "rss", ["pool"],
      multiprocess_mode="max").labels(pool).set(rnd.randint(10**7, 10**8))
print("ready", flush=True)
sys.stdin.read()
"""

SERVER = r"""
import sys
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
reg = CollectorRegistry()
MultiProcessCollector(reg)
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=reg)
print("ready", flush=True)
sys.stdin.read()
"""

# What one increment costs in prometheus_client's multiprocess mode (an
# mmap'd file per process, under a lock).
PY_MICRO = r"""
import json, sys, time
from prometheus_client import Counter, Histogram
n = int(sys.argv[1])
c = Counter("x_total", "x", ["pool", "result"]).labels("standard", "sent")
h = Histogram("y_seconds", "y", ["pool"],
              buckets=[60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 129600, 172800]).labels("standard")
t = time.process_time_ns()
for _ in range(n):
    c.inc()
inc = (time.process_time_ns() - t) / n
vals = [(i * 7919) % 250000 for i in range(4096)]
t = time.process_time_ns()
for i in range(n):
    h.observe(vals[i & 4095])
obs = (time.process_time_ns() - t) / n
print(json.dumps({"inc_ns": inc, "observe_ns": obs, "iterations": n}))
"""


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(-(-p * len(xs) // 100)) - 1))
    return xs[k]


def scrape(port, n, warmup=20, path="/metrics"):
    """n scrapes, each on a fresh connection as a scraper without
    keep-alive would do, timing from connect to the last byte read."""
    lat = []
    size = 0
    for i in range(n + warmup):
        t = time.perf_counter_ns()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path, headers={"Accept": "text/plain;version=0.0.4"})
        r = c.getresponse()
        body = r.read()
        c.close()
        dt = time.perf_counter_ns() - t
        if r.status != 200:
            raise RuntimeError("scrape %d: HTTP %d" % (i, r.status))
        if i >= warmup:
            lat.append(dt / 1e6)
            size = len(body)
    series = sum(1 for l in body.decode().splitlines() if l and not l.startswith("#"))
    return {"scrapes": n, "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90),
            "p99_ms": pct(lat, 99), "max_ms": max(lat),
            "mean_ms": sum(lat) / len(lat), "body_bytes": size, "series": series}


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def digestd_side(tmp, n, workers_per_pool):
    redis = RedisServer(os.path.join(tmp, "redis"), port=free_port()).start()
    port = free_port()
    cfg = os.path.join(tmp, "digestd.conf")
    with open(cfg, "w") as f:
        f.write("""\
[supervisor]
listen = 127.0.0.1:{port}
log_level = warn
[redis]
host = 127.0.0.1
port = {rport}
[queue]
visibility_timeout = 1m
[pool.priority]
workers = {w}
[pool.standard]
workers = {w}
[digest]
from = Groups <digest@example.com>
unsubscribe_secret = {secret}
unsubscribe_url = {url}
large_group_threshold = 10
[transport]
type = maildir
[maildir]
path = {tmp}/outbox
""".format(port=port, rport=redis.port, w=workers_per_pool, secret=SECRET,
           url=UNSUB_URL, tmp=tmp))
    d = Digestd(cfg, tmp)
    try:
        d.start(timeout=120)
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == 2 * workers_per_pool,
                 timeout=120, interval=0.2, what="every worker idle")
        # Populate every kind of metric: sends, each skip reason, jobs,
        # and the three histograms, in both pools.
        r = redis.client()
        ws, we = window()
        data = Data(r)
        jobs = []
        for g in range(4 * workers_per_pool):
            gid = 500 + g
            data.group(gid, name="Bench %d" % g)
            uids = list(range(10000 + g * 40, 10000 + (g + 1) * 40))
            data.members(gid, uids)
            for k, u in enumerate(uids):
                f = {"email": "u%d@example.org" % u, "last_seen": str(we)}
                if k % 10 == 1:
                    f = {"name": "no mail"}
                elif k % 10 == 2:
                    f["digest"] = "off"
                elif k % 10 == 3:
                    f["last_seen"] = "1"
                data.user(u, **f)
            data.post(gid, 70000 + g, we - 60, title="Post", author_id=uids[4])
            jobs.append(enqueue(r, gid, "daily", ws, we,
                                queue=POOLS[g % 2]))
        wait_for(lambda: all(job_state(r, j).get("state") == "done" for j in jobs),
                 timeout=300, interval=0.5, what="populating jobs done")
        body = d.metrics()
        zero_hist = [l for l in body.splitlines()
                     if l.startswith("digest_job_duration_seconds_count") and l.endswith(" 0")]
        if zero_hist:
            raise RuntimeError("metrics not populated: %s" % zero_hist)
        cpu0 = cpu_of(d.pid())
        res = scrape(d.port, n)
        res["supervisor_cpu_ms_per_scrape"] = (cpu_of(d.pid()) - cpu0) * 1000 / (n + 20)
        res["workers"] = 2 * workers_per_pool
        return res
    finally:
        try:
            d.stop(timeout=60)
        finally:
            d.kill()
            redis.stop()


def python_side(tmp, n, nproc):
    mp = os.path.join(tmp, "multiproc")
    os.makedirs(mp)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=mp)
    procs = []
    server = None
    try:
        for i in range(nproc):
            p = subprocess.Popen([PY, "-c", WRITER, POOLS[i % 2], str(i)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(p)
        for p in procs:
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError("a writer failed")
        port = free_port()
        server = subprocess.Popen([PY, "-c", SERVER, str(port)], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("the python server failed")
        cpu0 = cpu_of(server.pid)
        res = scrape(port, n)
        res["server_cpu_ms_per_scrape"] = (cpu_of(server.pid) - cpu0) * 1000 / (n + 20)
        res["processes"] = nproc
        res["files"] = len(os.listdir(mp))
        return res
    finally:
        for p in procs + ([server] if server else []):
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in procs + ([server] if server else []):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_pid(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def micro(iterations):
    out = subprocess.run([BENCH_METRICS, "-n", str(iterations)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out)


def python_micro(tmp, iterations):
    mp = os.path.join(tmp, "micro")
    os.makedirs(mp)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=mp)
    out = subprocess.run([PY, "-c", PY_MICRO, str(iterations)], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer scrapes")
    ap.add_argument("--scrapes", type=int, default=None)
    ap.add_argument("--python-scrapes", type=int, default=None)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scrape.json"))
    a = ap.parse_args()
    n = a.scrapes or (500 if a.quick else 3000)
    npy = a.python_scrapes or (100 if a.quick else 500)
    if not os.path.exists(BENCH_METRICS):
        sys.exit("build %s first (make build/bench/bench_metrics)" % BENCH_METRICS)
    tmp = tempfile.mkdtemp(prefix="digestd-scrape-")
    try:
        res = {"load_before": os.getloadavg()[0]}
        res["micro"] = micro(20000000 if a.quick else 200000000)
        res["python_micro"] = python_micro(tmp, 100000 if a.quick else 500000)
        res["digestd"] = digestd_side(tmp, n, a.workers // 2)
        res["python"] = python_side(tmp, npy, a.workers)
        dd, py = res["digestd"], res["python"]
        res["speedup_p50"] = py["p50_ms"] / dd["p50_ms"]
        res["speedup_p99"] = py["p99_ms"] / dd["p99_ms"]
        res["inc_speedup"] = res["python_micro"]["inc_ns"] / res["micro"]["metric_inc_ns"]
        res["observe_speedup"] = (res["python_micro"]["observe_ns"] /
                                  res["micro"]["metric_observe_ns"])
        res["targets"] = {"p99_ms<=5": dd["p99_ms"] <= 5.0,
                          "speedup>=10": res["speedup_p99"] >= 10.0}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
        f.write("\n")
    md = os.path.join(os.path.dirname(os.path.abspath(a.out)), "scrape.md")
    with open(md, "w") as f:
        f.write("""# /metrics scrape benchmark

{w} workers (2 pools), every metric populated; {n} scrapes of digestd,
{npy} of prometheus_client {pyv} multiprocess mode ({procs} writer processes,
MultiProcessCollector behind start_http_server), same client (a fresh
connection per scrape, timed to the last byte).  Load average before: {load:.1f}
on {cpus} CPUs.

| | p50 ms | p90 ms | p99 ms | max ms | body bytes | series | server CPU ms/scrape |
| --- | --- | --- | --- | --- | --- | --- | --- |
| digestd | {d[p50_ms]:.3f} | {d[p90_ms]:.3f} | {d[p99_ms]:.3f} | {d[max_ms]:.3f} | {d[body_bytes]} | {d[series]} | {d[supervisor_cpu_ms_per_scrape]:.3f} |
| prometheus_client | {p[p50_ms]:.3f} | {p[p90_ms]:.3f} | {p[p99_ms]:.3f} | {p[max_ms]:.3f} | {p[body_bytes]} | {p[series]} | {p[server_cpu_ms_per_scrape]:.3f} |

Speed-up: {s50:.1f}x at p50, {s99:.1f}x at p99 (target: p99 <= 5 ms, >= 10x).

Per increment (CPU time): digestd metric_inc {mi:.2f} ns, metric_observe
{mo:.2f} ns; prometheus_client multiprocess Counter.inc {pi:.0f} ns,
Histogram.observe {po:.0f} ns.  Formatting the body in process: {fmt:.0f} us,
snapshot {snap:.0f} us.

Reproduce: `make all build/bench/bench_metrics && /usr/bin/python3 bench/scrape_bench.py`
""".format(w=dd["workers"], n=dd["scrapes"], npy=py["scrapes"], procs=py["processes"],
           pyv=py_version(), load=res["load_before"], cpus=os.cpu_count(), d=dd, p=py,
           s50=res["speedup_p50"], s99=res["speedup_p99"],
           mi=res["micro"]["metric_inc_ns"], mo=res["micro"]["metric_observe_ns"],
           pi=res["python_micro"]["inc_ns"], po=res["python_micro"]["observe_ns"],
           fmt=res["micro"]["format_text_us"], snap=res["micro"]["snapshot_us"]))
    print(json.dumps({k: res[k] for k in ("speedup_p50", "speedup_p99", "targets")}))
    print("digestd p50 %.3f ms p99 %.3f ms; python p50 %.3f ms p99 %.3f ms" % (
        dd["p50_ms"], dd["p99_ms"], py["p50_ms"], py["p99_ms"]))


def py_version():
    try:
        from importlib.metadata import version
        return version("prometheus_client")
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
