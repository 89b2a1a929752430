#!/usr/bin/env python3
"""End to end on the AMQP transport: seeded data in Redis, digestd with two
pools (priority, standard) on the redis queue backend publishing every
email to a private rabbitmq-server on 127.0.0.1 (transport.type = amqp),
timed from `digestctl schedule` to the last email counted sent.

The broker's exchange (amqp_out.exchange, durable, direct) is bound to a
durable queue that keeps only its newest messages (x-max-length), so the
broker holds little however long the run.  One broker serves every run;
each run has its own redis-server, seed and digestd.

CPU is measured as deltas over the run, which load from other work on the
machine does not inflate as it does wall time: each worker's
/proc/<pid>/stat utime + stime at `digestctl schedule` and once the queues
are empty (before the drain), with digest_worker_restarts_total checked to
be unchanged and the worker pids the same; the broker's beam.smp and the
redis-server likewise.  --runs runs, the median by worker CPU per email
reported, every run kept raw.

    bench/bench_e2e_amqp.py [--groups N] [--members M] [--posts P]
                            [--workers W] [--runs R] [--perf FILE]
                            [--call-graph fp|dwarf]
                            [--deadline S] [--out FILE]

Every process started here is stopped by pid, also on SIGTERM and when
--deadline passes (set below the caller's own time limit).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import (ROOT, Digestd, RedisServer, digestctl, digestd_config,
                      metric_sum, out_path, override, proc_cpu, proc_stat,
                      redis_counters, wait_for, write_json)

sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
from lib.amqp_util import bind_outbox, queue_counts  # noqa: E402
from lib.harness import RabbitServer  # noqa: E402

EXCHANGE = "bench.email"
ROUTING_KEY = "email"
OUTBOX = "bench.outbox"


class Stop(Exception):
    """SIGTERM or the deadline: unwind, stopping what was started."""


def on_signal(signum, frame):
    raise Stop("signal %d" % signum)


def cpu_s(pid):
    c = proc_cpu(pid)
    return c["utime"] + c["stime"]


def beam_pid(rabbit):
    """The broker's Erlang VM: the beam.smp in the session rabbitmq-server
    was started in (its own, by start_new_session)."""
    sid = rabbit.proc.pid
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if not f.read().startswith("beam"):
                    continue
            # stat(5) field 6 is the session id; index 0 is field 3.
            if int(proc_stat(int(d))[3]) == sid:
                return int(d)
        except (OSError, ValueError, IndexError):
            continue
    return None


def emails_sent(d):
    return metric_sum(d.metrics(), "digest_emails_total", result="sent")


def queue_depth(r):
    """Entries not yet acknowledged in both queues (lag + pending)."""
    total = 0
    for q in ("priority", "standard"):
        key = "digest:q:%s" % q
        if not r.exists(key):
            continue
        for g in r.xinfo_groups(key):
            if g["name"] == "digestd":
                total += (g.get("lag") or 0) + g["pending"]
    return total


def config(tmp, redis, rabbit, args):
    pools = {"priority": {"workers": args.workers},
             "standard": {"workers": args.workers}}
    extra = ("[queue]\nbackend = redis\n"
             "[amqp]\nurl = %s\n"
             "[amqp_out]\nexchange = %s\nrouting_key = %s\n" % (
                 rabbit.url("/"), EXCHANGE, ROUTING_KEY))
    # Generous stall and drain limits: the machine is shared and loaded.
    cfg = digestd_config(tmp, redis, pools, extra=extra,
                         supervisor="stall_timeout = 60s\n"
                         "drain_timeout = 60s\n")
    with open(cfg) as f:
        text = override(f.read(), "transport", "type = amqp")
    with open(cfg, "w") as f:
        f.write(text)
    return cfg


def one_run(args, rabbit, n, started):
    """One run on a fresh Redis and digestd; its figures."""
    tmp = tempfile.mkdtemp(prefix="digestd-bench-e2e-amqp-")
    started.append(("tmp", tmp))
    redis = RedisServer(os.path.join(tmp, "redis")).start()
    started.append(("redis", redis))
    res = {"run": n}
    cfg = config(tmp, redis, rabbit, args)
    t = time.monotonic()
    p = digestctl(cfg, "seed", "--groups", str(args.groups), "--members",
                  str(args.members), "--posts", str(args.posts), "--seed",
                  "7", timeout=600)
    res["seed"] = {"seconds": time.monotonic() - t,
                   "output": p.stdout.strip().splitlines()}

    d = Digestd(cfg, tmp)
    started.append(("digestd", d))
    d.start(timeout=60)
    nw = 2 * args.workers
    wait_for(lambda: sum(1 for w in d.status()["workers"]
                         if w["state"] == "idle") == nw,
             timeout=60, what="workers idle")
    r = redis.client()
    beam = beam_pid(rabbit)
    wpids = sorted(w["pid"] for w in d.status()["workers"])
    restarts0 = metric_sum(d.metrics(), "digest_worker_restarts_total")
    base = emails_sent(d)
    rc0 = redis_counters(r)

    perf = None
    if args.perf and n == 0:
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
             "--call-graph", args.call_graph, "-o", args.perf, "-p",
             ",".join(map(str, wpids))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(("popen", perf))
        time.sleep(1)

    load0 = os.getloadavg()
    w0 = {pid: cpu_s(pid) for pid in wpids}
    b0 = cpu_s(beam) if beam else None
    r0 = cpu_s(redis.proc.pid)
    s0 = cpu_s(d.pid())
    t0 = time.monotonic()
    p = digestctl(cfg, "schedule", "--period", "daily")
    res["schedule_seconds"] = time.monotonic() - t0
    res["schedule_output"] = p.stdout.strip().splitlines()

    # The end: the first poll that saw the final count, once the count
    # has not moved for a second, both queues are empty and every worker
    # is idle.
    last, last_change = base, t0
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        c = emails_sent(d)
        tn = time.monotonic()
        if c != last:
            last, last_change = c, tn
        if tn - last_change > 1.0 and queue_depth(r) == 0 and \
                all(w["state"] == "idle" for w in d.status()["workers"]):
            break
        time.sleep(0.02)
    else:
        raise RuntimeError("digestd did not finish in %ds" % args.timeout)
    elapsed = last_change - t0

    w1 = {}
    for pid in wpids:
        try:
            w1[pid] = cpu_s(pid)
        except OSError:
            w1[pid] = None
    b1 = cpu_s(beam) if beam else None
    r1 = cpu_s(redis.proc.pid)
    s1 = cpu_s(d.pid())
    load1 = os.getloadavg()
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=120)
    rc1 = redis_counters(r)
    text = d.metrics()
    now_pids = sorted(w["pid"] for w in d.status()["workers"])
    restarts = metric_sum(text, "digest_worker_restarts_total") - restarts0
    sent = int(last - base)
    if sent <= 0:
        raise RuntimeError("no email sent: %s" % d.log()[-3000:])
    wcpu = sum(w1[p] - w0[p] for p in wpids if w1[p] is not None)
    res.update({
        "emails": sent,
        "seconds": elapsed,
        "emails_per_sec": sent / elapsed,
        "workers": nw,
        "worker_cpu_seconds": wcpu,
        "worker_cpu_us_per_email": wcpu / sent * 1e6,
        "worker_cpu_per_worker": [round(w1[p] - w0[p], 3)
                                  if w1[p] is not None else None
                                  for p in wpids],
        "broker_cpu_seconds": (b1 - b0) if beam else None,
        "broker_cpu_us_per_email": (b1 - b0) / sent * 1e6 if beam else None,
        "redis_cpu_seconds": r1 - r0,
        "redis_cpu_us_per_email": (r1 - r0) / sent * 1e6,
        "supervisor_cpu_seconds": s1 - s0,
        "redis_commands_per_email": (rc1["commands"] - rc0["commands"]) / sent,
        "redis_reads_per_email": (rc1["reads"] - rc0["reads"]) / sent,
        "restarts": restarts,
        "workers_replaced": now_pids != wpids,
        "skipped": metric_sum(text, "digest_recipients_skipped_total"),
        "deferred": metric_sum(text, "digest_emails_total", result="deferred"),
        "rejected": metric_sum(text, "digest_emails_total", result="rejected"),
        "jobs_ok": metric_sum(text, "digest_jobs_total", result="ok"),
        "transport_errors": metric_sum(text, "digest_transport_errors_total"),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in load1],
    })
    res["drain_exit"] = d.stop(timeout=90)
    redis.stop()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--members", type=int, default=200000)
    ap.add_argument("--posts", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2, help="per pool")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=300,
                    help="per run, schedule to the last email")
    ap.add_argument("--deadline", type=int, default=1500,
                    help="the whole benchmark; then everything is stopped")
    ap.add_argument("--max-length", type=int, default=2000,
                    help="x-max-length of the queue bound to the exchange")
    ap.add_argument("--perf", help="perf record the first run's workers")
    ap.add_argument("--call-graph", default="fp",
                    help="perf's --call-graph: fp, or dwarf (the build "
                    "keeps no frame pointers; dwarf costs more)")
    ap.add_argument("--out")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.deadline)

    res = {"params": vars(args), "runs": []}
    started = []
    rabbit = None
    try:
        t = time.monotonic()
        rabbit = RabbitServer()
        started.append(("rabbit", rabbit))
        rabbit.start()
        res["broker_boot_seconds"] = time.monotonic() - t
        bind_outbox(rabbit, "/", EXCHANGE, ROUTING_KEY, OUTBOX,
                    arguments={"x-max-length": args.max_length})
        for n in range(args.runs):
            run = one_run(args, rabbit, n, started)
            res["runs"].append(run)
            print("e2e_amqp: run %d: %d emails in %.2fs, %.0f emails/s; "
                  "worker CPU %.2f us/email, broker %.2f, redis %.2f; "
                  "load %s" % (
                      n + 1, run["emails"], run["seconds"],
                      run["emails_per_sec"], run["worker_cpu_us_per_email"],
                      run["broker_cpu_us_per_email"] or -1,
                      run["redis_cpu_us_per_email"],
                      " ".join("%.1f" % x for x in run["loadavg_end"])),
                  flush=True)
        res["outbox"] = queue_counts(rabbit, "/", OUTBOX)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for kind, obj in reversed(started):
            try:
                if kind == "digestd":
                    obj.kill()
                elif kind in ("redis", "rabbit"):
                    obj.stop()
                elif kind == "popen" and obj.poll() is None:
                    obj.kill()
                    obj.wait(timeout=10)
                elif kind == "tmp":
                    shutil.rmtree(obj, ignore_errors=True)
            except Exception as e:  # keep stopping the others
                print("e2e_amqp: stopping %s: %s" % (kind, e),
                      file=sys.stderr)

    runs = sorted(res["runs"], key=lambda x: x["worker_cpu_us_per_email"])
    med = runs[len(runs) // 2]
    for k in ("emails", "seconds", "emails_per_sec", "worker_cpu_us_per_email",
              "broker_cpu_us_per_email", "redis_cpu_us_per_email",
              "restarts", "workers_replaced"):
        res[k] = med[k]
    res["median_run"] = med["run"]
    res["median_of"] = {k: sorted(x[k] for x in runs)[len(runs) // 2]
                        for k in ("emails_per_sec", "worker_cpu_us_per_email",
                                  "broker_cpu_us_per_email",
                                  "redis_cpu_us_per_email")
                        if all(x[k] is not None for x in runs)}
    res["note"] = ("CPU figures are deltas from `digestctl schedule` to the "
                   "end, before the drain; the top-level figures are those "
                   "of the run with the median worker CPU per email")
    write_json(out_path(args.out or "bench-e2e-amqp.json"), res)
    print("e2e_amqp: median of %d runs: %.2f us of worker CPU per email, "
          "%.0f emails/s (%d emails); broker %.2f us, redis %.2f us per "
          "email" % (len(runs), res["worker_cpu_us_per_email"],
                     res["emails_per_sec"], res["emails"],
                     res["broker_cpu_us_per_email"] or -1,
                     res["redis_cpu_us_per_email"]))
    bad = [x["run"] for x in runs if x["restarts"] or x["workers_replaced"]]
    if bad:
        print("e2e_amqp: workers replaced in run(s) %s: their CPU deltas "
              "miss the dead workers' share" % bad, file=sys.stderr)


if __name__ == "__main__":
    main()
