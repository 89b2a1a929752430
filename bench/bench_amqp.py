#!/usr/bin/env python3
"""The AMQP transport against a private rabbitmq-server on 127.0.0.1:
bench/bench_amqp.c publishes jobs of digest-sized emails through
transport_amqp_ops on one connection, a flush per digest.batch_size, each
email confirmed by the broker.  The exchange is bound to a durable queue
that keeps only its newest messages (x-max-length), so the broker holds
little however long the run.  The figure is the worker-side CPU per email
(the median of --runs runs) and the emails per second.

    bench/bench_amqp.py [--jobs J] [--per-job N] [--batch B] [--size S]
                        [--runs R] [--out FILE]
"""
import argparse
import os
import subprocess
import sys

from benchlib import BUILD, ROOT, out_path, write_json

sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
from lib.amqp_util import bind_outbox  # noqa: E402
from lib.harness import RabbitServer  # noqa: E402


def run_once(exe, url, a):
    p = subprocess.run([exe, "-u", url, "-e", "bench.out", "-k", "digest",
                        "-j", str(a.jobs), "-n", str(a.per_job),
                        "-b", str(a.batch), "-s", str(a.size)],
                       capture_output=True, text=True, timeout=600)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError("bench_amqp exit %d: %s" % (p.returncode,
                                                     p.stderr[-2000:]))
    res = {}
    for kv in p.stdout.strip().splitlines()[-1].split():
        k, v = kv.split("=", 1)
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--per-job", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=6300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    exe = os.path.join(ROOT, BUILD, "bench", "bench_amqp")
    rabbit = RabbitServer().start()
    try:
        bind_outbox(rabbit, "/", "bench.out", "digest", "bench.outbox",
                    arguments={"x-max-length": 2000})
        runs = [run_once(exe, rabbit.url("/"), a) for _ in range(a.runs)]
    finally:
        rabbit.stop()
    runs.sort(key=lambda r: r["us_per_email"])
    med = runs[len(runs) // 2]
    res = {"params": vars(a), "runs": runs,
           "us_per_email": med["us_per_email"],
           "emails_per_sec": med["emails_per_sec"],
           "emails": med["emails"], "bytes": med["bytes"],
           "seconds": med["seconds"], "cpu_seconds": med["cpu_seconds"]}
    write_json(out_path(a.out or "bench-amqp.json"), res)
    print("bench_amqp: median of %d runs: %.2f us CPU per email, %.0f "
          "emails/s" % (len(runs), res["us_per_email"],
                        res["emails_per_sec"]))


if __name__ == "__main__":
    main()
