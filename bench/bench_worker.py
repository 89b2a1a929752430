#!/usr/bin/env python3
"""digestd's own CPU per email, apart from the SMTP library: seeded data
on a private redis-server, `digestctl schedule --period daily`, then
build/bench/bench_worker runs every queued job through the worker's job
path (digest_run) with a transport that accepts and discards.  Then the
same run under `perf record -g` when perf works: the attribution (top
functions, self and total), the folded stacks and a flame graph SVG, in
bench/results/ (worker-flame.svg, worker-folded.txt).

    /usr/bin/python3 bench/bench_worker.py [--groups N] [--members N]
        [--posts N] [--rounds N] [--no-perf] [--out PATH]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from benchlib import (BUILD, RedisServer, digestctl, digestd_config,  # noqa: E402
                      out_path, write_json)
import flame  # noqa: E402

OUT = os.path.join(HERE, "results")
EXE = os.path.join(ROOT, BUILD, "bench", "bench_worker")


def logfmt(line):
    res = {}
    for kv in line.split():
        k, v = kv.split("=", 1)
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    return res


def perf_works():
    try:
        return subprocess.run(["perf", "record", "-q", "-e", "cpu-clock",
                               "-o", "/dev/null", "true"],
                              capture_output=True, timeout=20).returncode == 0
    except Exception:
        return False


def run_bench(cfg, rounds, prefix=()):
    p = subprocess.run(list(prefix) + [EXE, "-c", cfg, "-r", str(rounds)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("bench_worker: exit %d: %s" % (
            p.returncode, (p.stderr or p.stdout)[-1500:]))
    lines = p.stdout.strip().splitlines()
    sys.stdout.write(p.stdout)
    res = logfmt(lines[-1])
    res["output"] = lines[:-1]
    return res


def profile(cfg, rounds, tmp):
    """perf record -g of one more run; the attribution and the graph."""
    data = os.path.join(tmp, "perf-worker.data")
    run_bench(cfg, rounds, ["perf", "record", "-q", "-e", "cpu-clock",
                            "-F", "2999", "--call-graph", "dwarf,16384",
                            "-o", data, "--"])
    p = subprocess.run(["perf", "script", "-i", data, "-F",
                        "comm,tid,time,event,ip,sym,dso"],
                       capture_output=True, text=True, timeout=600)
    stacks = flame.fold(p.stdout)
    # The job path as measured: a worker's start, run and finish of each
    # job; the set-up (config, connect, XRANGE) is not in it.
    job = {k: v for k, v in stacks.items()
           if any(f in ("digest_run", "checkpoint_start", "checkpoint_finish")
                  for f in k.split(";"))}
    folded = os.path.join(OUT, "worker-folded.txt")
    svg = os.path.join(OUT, "worker-flame.svg")
    flame.write_folded(job, folded)
    flame.write_svg(job, svg, "bench_worker: the job path, discarding "
                    "transport")
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "-g", "none", "--sort", "dso,sym",
                          "--percent-limit", "0.5"],
                         capture_output=True, text=True, timeout=300)
    rows = [l.rstrip() for l in rep.stdout.splitlines()
            if l.strip() and not l.startswith("#")]
    return {"samples": sum(stacks.values()),
            "job_samples": sum(job.values()),
            "self": [[s, round(x * 100, 2)] for s, x in flame.top_self(job, 30)],
            "total": [[s, round(x * 100, 2)] for s, x in
                      flame.top_total(job, 40)],
            "by_symbol": rows[:40],
            "folded": os.path.relpath(folded, ROOT),
            "svg": os.path.relpath(svg, ROOT)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--members", type=int, default=30000)
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = out_path(os.path.join(OUT, "worker.json"))
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="digestd-bench-worker-")
    redis = RedisServer(os.path.join(tmp, "redis")).start()
    res = {"params": vars(args)}
    try:
        cfg = digestd_config(tmp, redis, {"priority": {"workers": 1},
                                          "standard": {"workers": 1}})
        t = time.monotonic()
        p = digestctl(cfg, "seed", "--groups", str(args.groups), "--members",
                      str(args.members), "--posts", str(args.posts),
                      "--seed", "7", timeout=600)
        res["seed"] = {"seconds": time.monotonic() - t,
                       "output": p.stdout.strip().splitlines()}
        p = digestctl(cfg, "schedule", "--period", "daily")
        res["schedule_output"] = p.stdout.strip().splitlines()
        res["worker"] = run_bench(cfg, args.rounds)
        if not args.no_perf and perf_works():
            res["profile"] = profile(cfg, 1, tmp)
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(out, res)


if __name__ == "__main__":
    main()
