#!/usr/bin/env python3
"""End to end: seeded data, digestd with two pools (priority, standard)
against postfix's smtp-sink on loopback, timed from `digestctl schedule` to
the last email accepted; then, in the same run, the SMTP ceiling: postfix's
smtp-source sending as many messages of the same size on the wire to the
same sink with as many sessions.  The same run gives the Redis cost
(INFO stats and commandstats before and after) and the workers' CPU per
email (each worker's /proc/<pid>/stat sampled once the queues are empty,
before the drain: no worker was replaced in the run, which the report
checks through digest_worker_restarts_total).

    bench/bench_e2e.py [--groups N] [--members M] [--posts P]
                       [--workers W] [--out FILE]
"""
import argparse
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time

from benchlib import (BUILD, ROOT, PostfixSink, RedisServer, SMTP_SOURCE, Digestd,
                      digestctl, digestd_config, metric_sum, override,
                      out_path, proc_cpu, redis_counters, wait_for,
                      write_json, children, cmdline)


def emails_sent(d):
    return metric_sum(d.metrics(), "digest_emails_total", result="sent")


def run_digestd(args, tmp, res):
    redis = RedisServer(os.path.join(tmp, "redis")).start()
    sink = PostfixSink().start()
    d = None
    try:
        pools = {"priority": {"workers": args.workers},
                 "standard": {"workers": args.workers}}
        cfg = digestd_config(tmp, redis, pools,
                             extra=sink.section(args.session))
        with open(cfg) as f:
            text = override(f.read(), "transport", "type = smtp")
        with open(cfg, "w") as f:
            f.write(text)

        t = time.monotonic()
        p = digestctl(cfg, "seed", "--groups", str(args.groups), "--members",
                      str(args.members), "--posts", str(args.posts),
                      "--seed", "7", timeout=600)
        res["seed"] = {"seconds": time.monotonic() - t,
                       "output": p.stdout.strip().splitlines()}

        d = Digestd(cfg, tmp).start(timeout=30)
        sup = d.pid()
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == 2 * args.workers,
                 timeout=30, what="workers idle")
        r = redis.client()
        before = redis_counters(r)
        sink_before = sink.rchar()
        sink_cpu0 = sink.cpu()
        sup_cpu0 = proc_cpu(sup)
        base = emails_sent(d)

        perf = None
        if args.perf:
            wp = [str(w["pid"]) for w in d.status()["workers"]]
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                 "-o", args.perf, "-p", ",".join(wp)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # And what the workers ask of the kernel, counted.
            pstat = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-o", args.perf + ".stat", "-e",
                 ",".join(PERF_STAT_EVENTS), "-p", ",".join(wp)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)

        t0 = time.monotonic()
        p = digestctl(cfg, "schedule", "--period", "daily")
        t_sched = time.monotonic() - t0
        mid = redis_counters(r)
        res["schedule_output"] = p.stdout.strip().splitlines()

        # Poll the counter: the end is the first poll that sees the final
        # count, once both queues are empty and every worker idle.
        last, last_change = base, t0
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            n = emails_sent(d)
            tn = time.monotonic()
            if n != last:
                last, last_change = n, tn
            if tn - last_change > 1.0:
                st = d.status()
                if all(w["state"] == "idle" for w in st["workers"]):
                    q = redis_counters_free_depth(r)
                    if q == 0:
                        break
            time.sleep(0.02)
        else:
            raise RuntimeError("digestd did not finish in %ds" % args.timeout)
        elapsed = last_change - t0
        if perf is not None:
            for pp in (perf, pstat):
                pp.send_signal(signal.SIGINT)
                pp.wait(timeout=60)
            res["perf_stat"] = read_perf_stat(args.perf + ".stat")
        sent = int(last - base)

        # Every worker's own CPU, before the drain (they are idle now).
        wcpu = 0.0
        wpids = [w["pid"] for w in d.status()["workers"]]
        for pid in wpids:
            c = proc_cpu(pid)
            wcpu += c["utime"] + c["stime"]
        helpers = [(c, cmdline(c)) for c in children(sup) if c not in wpids]
        sup_cpu1 = proc_cpu(sup)
        after = redis_counters(r)
        sink_bytes = sink.rchar() - sink_before
        sink_cpu1 = sink.cpu()
        text = d.metrics()
        res["digestd"] = {
            "emails": sent,
            "seconds": elapsed,
            "schedule_seconds": t_sched,
            "emails_per_sec": sent / elapsed,
            "workers": 2 * args.workers,
            "worker_cpu_seconds": wcpu,
            "worker_cpu_us_per_email": wcpu / sent * 1e6,
            "supervisor_cpu_seconds": (sup_cpu1["utime"] + sup_cpu1["stime"]
                                       - sup_cpu0["utime"] - sup_cpu0["stime"]),
            "sink_cpu_seconds": (sink_cpu1["utime"] + sink_cpu1["stime"]
                                 - sink_cpu0["utime"] - sink_cpu0["stime"]),
            "wire_bytes_per_email": sink_bytes / sent,
            "skipped": metric_sum(text, "digest_recipients_skipped_total"),
            "deferred": metric_sum(text, "digest_emails_total", result="deferred"),
            "rejected": metric_sum(text, "digest_emails_total", result="rejected"),
            "restarts": metric_sum(text, "digest_worker_restarts_total"),
            "jobs_ok": metric_sum(text, "digest_jobs_total", result="ok"),
            "helpers": [h[1] for h in helpers],
        }
        calls = {k: after["calls"].get(k, 0) - before["calls"].get(k, 0)
                 for k in after["calls"]}
        # Our own INFO calls (two per snapshot, and the depth checks) are
        # not digestd's: take them out.
        own_info = calls.get("info", 0)
        own_x = calls.get("xinfo", 0)
        cmds = after["commands"] - before["commands"] - own_info - own_x
        reads = after["reads"] - before["reads"] - own_info - own_x
        sched_info = mid["calls"].get("info", 0) - before["calls"].get("info", 0)
        res["redis"] = {
            "schedule_commands": mid["commands"] - before["commands"] - sched_info,
            "schedule_reads": mid["reads"] - before["reads"] - sched_info,
            "commands": cmds,
            "reads": reads,
            "commands_per_email": cmds / sent,
            "round_trips_per_email": reads / sent,
            "calls": {k: v for k, v in sorted(calls.items())
                      if v and k not in ("info", "xinfo")},
            "note": "reads = total_reads_processed (reads from client "
                    "sockets), a stand-in for round trips; includes "
                    "digestctl schedule and the queue sampler",
        }

        d.stop(timeout=60)
        res["digestd"]["drain_exit"] = d.proc.returncode
        res["digestd"]["note"] = ("worker CPU from each worker's "
                                  "/proc/<pid>/stat before the drain")

        # The ceiling: same sink, same sessions, same bytes on the wire.
        # Twice, the best kept: the ratio is then never flattered by a
        # ceiling run that other work on the machine slowed down.
        runs = [ceiling(sink, sent, 2 * args.workers, sink_bytes / sent)
                for _ in range(2)]
        res["ceiling"] = max(runs, key=lambda c: c["emails_per_sec"])
        res["ceiling"]["runs_emails_per_sec"] = [c["emails_per_sec"]
                                                 for c in runs]
        res["libesmtp"] = libesmtp_floor(
            sink, min(sent, 40000),
            max(1, int(round(sent / max(1, res["digestd"]["jobs_ok"])))),
            res["ceiling"]["body_bytes"])
        res["ratio"] = (res["digestd"]["emails_per_sec"]
                        / res["ceiling"]["emails_per_sec"])
    finally:
        if d is not None:
            d.kill()
        sink.stop()
        redis.stop()


PERF_STAT_EVENTS = [
    "cpu-clock", "context-switches", "raw_syscalls:sys_enter",
    "syscalls:sys_enter_write", "syscalls:sys_enter_writev",
    "syscalls:sys_enter_sendto", "syscalls:sys_enter_read",
    "syscalls:sys_enter_readv", "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_poll", "syscalls:sys_enter_ppoll",
    "syscalls:sys_enter_select", "syscalls:sys_enter_pselect6",
    "syscalls:sys_enter_connect", "syscalls:sys_enter_close",
]


def read_perf_stat(path):
    """{event: count} of perf stat -x , output."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and not line.startswith("#"):
                    try:
                        out[parts[2]] = float(parts[0])
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def redis_counters_free_depth(r):
    """Entries not yet acknowledged in both queues (XINFO GROUPS lag +
    pending)."""
    total = 0
    for q in ("priority", "standard"):
        key = "digest:q:%s" % q
        if not r.exists(key):
            continue
        for g in r.xinfo_groups(key):
            if g["name"] == "digestd":
                total += (g.get("lag") or 0) + g["pending"]
    return total


def smtp_source(sink, n, sessions, length):
    """Run smtp-source; (seconds, its CPU seconds)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(
        [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(n), "-l",
         str(length), "-f", "digest@example.com", "-t", "u@example.org",
         "-M", "bench.example.com", "127.0.0.1:%d" % sink.port],
        capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError("smtp-source: %s" % p.stderr)
    return took, (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)


def libesmtp_floor(sink, n, per, size):
    """build/bench/bench_smtp: libESMTP alone, one session of per messages
    at a time (a job's), the same size, to the same sink."""
    exe = os.path.join(ROOT, BUILD, "bench", "bench_smtp")
    p = subprocess.run([exe, "-p", str(sink.port), "-n", str(n), "-m",
                        str(per), "-s", str(size)], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        return {"error": p.stderr.strip()}
    out = {}
    for kv in p.stdout.strip().splitlines()[-1].split():
        k, v = kv.split("=", 1)
        out[k] = float(v) if k != "benchmark" else v
    return out


def ceiling(sink, n, sessions, wire_bytes):
    # smtp-source's -l is the body; find its envelope and header overhead
    # on the wire with a short run, then size the body to match digestd's.
    b0 = sink.rchar()
    smtp_source(sink, 200, 1, 1000)
    overhead = (sink.rchar() - b0) / 200 - 1000
    length = max(1, int(round(wire_bytes - overhead)))
    b0 = sink.rchar()
    c0 = sink.cpu()
    took, cpu = smtp_source(sink, n, sessions, length)
    c1 = sink.cpu()
    return {"emails": n, "sessions": sessions, "body_bytes": length,
            "client_cpu_us_per_email": cpu / n * 1e6,
            "sink_cpu_seconds": (c1["utime"] + c1["stime"] - c0["utime"]
                                 - c0["stime"]),
            "wire_bytes_per_email": (sink.rchar() - b0) / n,
            "seconds": took, "emails_per_sec": n / took}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--members", type=int, default=200000)
    ap.add_argument("--posts", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2, help="per pool")
    ap.add_argument("--session", type=int, default=500)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--perf", help="perf record the workers to this file")
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="digestd-bench-e2e-")
    res = {"params": vars(args)}
    try:
        run_digestd(args, tmp, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dd, c = res["digestd"], res["ceiling"]
    print("e2e: %d emails in %.2fs: %.0f emails/s; ceiling %.0f emails/s "
          "(smtp-source, %d sessions, %.0f bytes): ratio %.2f" % (
              dd["emails"], dd["seconds"], dd["emails_per_sec"],
              c["emails_per_sec"], c["sessions"], c["wire_bytes_per_email"],
              res["ratio"]))
    if "us_per_message" in res.get("libesmtp", {}):
        print("e2e: libESMTP alone (bench_smtp, %d per session): %.2f us "
              "CPU per message" % (res["libesmtp"]["per_session"],
                                   res["libesmtp"]["us_per_message"]))
    print("e2e: worker CPU %.2f us/email; redis %.3f round trips, %.3f "
          "commands per email" % (dd["worker_cpu_us_per_email"],
                                  res["redis"]["round_trips_per_email"],
                                  res["redis"]["commands_per_email"]))
    write_json(out_path(args.out or "bench-e2e.json"), res)


if __name__ == "__main__":
    main()
