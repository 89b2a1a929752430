#!/usr/bin/env python3
"""End to end: seeded data, digestd with two pools (priority, standard)
timed from `digestctl schedule` to the last email accepted, against two
sinks on loopback:

- postfix's smtp-sink, which accepts everything at once (no CHUNKING);
- a real postfix (smtpd with PIPELINING and CHUNKING, the queue on tmpfs,
  the discard transport), the relay digestd sends to in production.

Against each sink, the SMTP ceiling: postfix's smtp-source sending as many
messages of the same size on the wire with as many sessions (it sends
DATA and waits for each of MAIL, RCPT, DATA and the end of data).  The
runs alternate, digestd then the ceiling, --rounds times per sink, so that
other work on the machine weighs on both alike; the medians are the
figures, every run's are kept.

Each digestd run has its own Redis, seeded the same.  CPU is the
difference between samples taken at `digestctl schedule` and at the end:
each worker's /proc/<pid>/stat (no worker was replaced in the run, which
the report checks through digest_worker_restarts_total), the supervisor,
Redis and the sink (smtp-sink's process; postfix's whole process tree,
sampled again once its queue is empty, since what it queued it still has
to deliver).  The same run gives the Redis cost (INFO stats and
commandstats before and after).

    bench/bench_e2e.py [--groups N] [--members M] [--posts P]
                       [--workers W] [--rounds R] [--no-relay] [--out FILE]
"""
import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import (BUILD, ROOT, PostfixRelay, PostfixSink, RedisServer,
                      SMTP_SOURCE, Digestd, children, cmdline, digestctl,
                      digestd_config, metric_sum, out_path, override,
                      parse_metrics, proc_cpu, redis_counters, wait_for,
                      write_json)


def cpu_s(pid):
    """User + system CPU of pid, seconds (None when it is gone)."""
    try:
        c = proc_cpu(pid)
    except OSError:
        return None
    return c["utime"] + c["stime"]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def sent_by_pool(text):
    """{pool: emails sent} of a /metrics text."""
    out = {}
    for (n, lab), v in parse_metrics(text).items():
        lab = dict(lab)
        if n == "digest_emails_total" and lab.get("result") == "sent":
            out[lab.get("pool", "?")] = out.get(lab.get("pool", "?"), 0) + v
    return out


def run_digestd(args, tmp, sink, n):
    """One digestd run against sink: its own Redis, seeded, digestd
    started, the schedule, the wait for the last email.  Returns (the
    run's figures, the Redis server, still running: the ceiling run that
    follows reports its CPU too)."""
    rdir = os.path.join(tmp, "run%d" % n)
    os.makedirs(rdir)
    redis = RedisServer(os.path.join(rdir, "redis")).start()
    d = None
    res = {}
    try:
        pools = {"priority": {"workers": args.workers},
                 "standard": {"workers": args.workers}}
        extra = sink.section(args.session)
        extra += ("[schedule]\nshard_size = %d\npriority_threshold = %s\n"
                  % (args.shard_size, args.priority_threshold))
        cfg = digestd_config(rdir, redis, pools, extra=extra)
        with open(cfg) as f:
            text = override(f.read(), "transport", "type = smtp")
        with open(cfg, "w") as f:
            f.write(text)

        t = time.monotonic()
        g, m, ps = data_for(args, sink)
        p = digestctl(cfg, "seed", "--groups", str(g), "--members", str(m),
                      "--posts", str(ps), "--seed", "7", timeout=600)
        res["seed"] = {"seconds": time.monotonic() - t,
                       "output": p.stdout.strip().splitlines()}

        d = Digestd(cfg, rdir).start(timeout=30)
        sup = d.pid()
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == 2 * args.workers,
                 timeout=30, what="workers idle")
        r = redis.client()
        before = redis_counters(r)
        sink_before = sink.rchar()
        base = emails_sent(d)

        perf = pstat = None
        if args.perf and n == 0:
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

        # CPU at schedule time: the run's figures are differences from
        # here, whatever start-up, seeding or idle polling cost before.
        workers0 = {w["pid"]: (w["pool"], cpu_s(w["pid"]))
                    for w in d.status()["workers"]}
        helpers0 = {c: cpu_s(c) for c in children(sup) if c not in workers0}
        sup0, redis0 = cpu_s(sup), cpu_s(redis.proc.pid)
        sink0 = sink.cpu_seconds()
        base_pool = sent_by_pool(d.metrics())

        t0 = time.monotonic()
        p = digestctl(cfg, "schedule", "--period", "daily")
        t_sched = time.monotonic() - t0
        mid = redis_counters(r)
        res["schedule_output"] = p.stdout.strip().splitlines()

        # Poll the counters: the end is the first poll that sees the final
        # count, once both queues are empty and every worker idle.  Each
        # pool's last change tells whether its sessions were busy to the
        # end or idle while the other pool finished.
        last, last_change = base, t0
        pool_last = dict(base_pool)
        pool_change = {k: t0 for k in pool_last}
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            byp = sent_by_pool(d.metrics())
            tn = time.monotonic()
            for k, v in byp.items():
                if v != pool_last.get(k):
                    pool_last[k], pool_change[k] = v, tn
            total = sum(byp.values())
            if total != last:
                last, last_change = total, tn
            if tn - last_change > 1.0:
                st = d.status()
                if all(w["state"] == "idle" for w in st["workers"]):
                    if queue_depth(r) == 0:
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

        # The workers are idle now: their CPU before the drain.
        wcpu, per_pool = 0.0, {}
        for w in d.status()["workers"]:
            c1 = cpu_s(w["pid"])
            c0 = workers0.get(w["pid"], (None, 0.0))[1]
            delta = (c1 or 0.0) - (c0 or 0.0)
            wcpu += delta
            per_pool.setdefault(w["pool"], []).append(round(delta, 3))
        hcpu = 0.0
        for c, c0 in helpers0.items():
            c1 = cpu_s(c)
            if c1 is not None and c0 is not None:
                hcpu += c1 - c0
        sup1, redis1 = cpu_s(sup), cpu_s(redis.proc.pid)
        sink1 = sink.cpu_seconds()
        after = redis_counters(r)
        text = d.metrics()
        byp = sent_by_pool(text)
        res["digestd"] = {
            "sink": sink.name,
            "emails": sent,
            "seconds": elapsed,
            "schedule_seconds": t_sched,
            "emails_per_sec": sent / elapsed,
            "workers": 2 * args.workers,
            "worker_cpu_seconds": wcpu,
            "worker_cpu_us_per_email": wcpu / sent * 1e6,
            "worker_cpu_by_pool": per_pool,
            "pool_emails": {k: int(v - base_pool.get(k, 0))
                            for k, v in byp.items()},
            "pool_last_email_seconds": {k: round(v - t0, 3)
                                        for k, v in pool_change.items()},
            "supervisor_cpu_seconds": sup1 - sup0,
            "helpers_cpu_seconds": hcpu,
            "helpers": [cmdline(c).strip() for c in helpers0],
            "redis_cpu_seconds": redis1 - redis0,
            "sink_cpu_seconds": sink1 - sink0,
            "skipped": metric_sum(text, "digest_recipients_skipped_total"),
            "deferred": metric_sum(text, "digest_emails_total",
                                   result="deferred"),
            "rejected": metric_sum(text, "digest_emails_total",
                                   result="rejected"),
            "restarts": metric_sum(text, "digest_worker_restarts_total"),
            "jobs_ok": metric_sum(text, "digest_jobs_total", result="ok"),
        }
        res["digestd"]["wire_bytes_per_email"] = \
            (sink.rchar() - sink_before) / sent
        # What the relay queued it still delivers: its CPU until the
        # queue is empty belongs to this run.
        res["digestd"]["sink_drain_seconds"] = sink.wait_drained()
        res["digestd"]["sink_cpu_to_drain_seconds"] = \
            sink.cpu_seconds() - sink0
        res["redis"] = redis_cost(before, mid, after, sent)

        d.stop(timeout=60)
        res["digestd"]["drain_exit"] = d.proc.returncode
        return res, redis
    except BaseException:
        redis.stop()
        raise
    finally:
        if d is not None:
            d.kill()


def data_for(args, sink):
    """(groups, members, posts) of the data seeded for runs to sink."""
    if sink.name == "postfix" and args.relay_data:
        return tuple(int(x) for x in args.relay_data.split(","))
    return args.groups, args.members, args.posts


def emails_sent(d):
    return metric_sum(d.metrics(), "digest_emails_total", result="sent")


def redis_cost(before, mid, after, sent):
    calls = {k: after["calls"].get(k, 0) - before["calls"].get(k, 0)
             for k in after["calls"]}
    # Our own INFO calls (two per snapshot, and the depth checks) are
    # not digestd's: take them out.
    own_info = calls.get("info", 0)
    # (Redis 7 names subcommands: xinfo|groups.)
    own_x = sum(v for k, v in calls.items() if k.split("|")[0] == "xinfo")
    cmds = after["commands"] - before["commands"] - own_info - own_x
    reads = after["reads"] - before["reads"] - own_info - own_x
    sched_info = mid["calls"].get("info", 0) - before["calls"].get("info", 0)
    return {
        "schedule_commands": mid["commands"] - before["commands"] - sched_info,
        "schedule_reads": mid["reads"] - before["reads"] - sched_info,
        "commands": cmds,
        "reads": reads,
        "commands_per_email": cmds / sent,
        "reads_per_email": reads / sent,
        # Each email sent costs one progress write that nobody waits for
        # (its reply is read with the flush's): a read for Redis, not a
        # round trip for the worker.
        "round_trips_per_email": max(0, reads - sent) / sent,
        "calls": {k: v for k, v in sorted(calls.items())
                  if v and k != "info" and k.split("|")[0] != "xinfo"},
        "note": "reads = total_reads_processed (reads from client "
                "sockets); round trips = reads less one unwaited progress "
                "write per email sent; includes digestctl schedule and "
                "the queue sampler",
    }


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


def queue_depth(r):
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


def source_overhead(sink):
    """smtp-source's -l is the body: its envelope and header bytes on the
    wire beyond it, from a short run to the sink (which counts what it
    reads: postfix's smtpd also its own lookups, so that digestd's bytes
    and smtp-source's are counted alike)."""
    b0 = sink.rchar()
    smtp_source(sink, 200, 1, 1000)
    sink.wait_drained()
    return (sink.rchar() - b0) / 200 - 1000


def ceiling(sink, n, sessions, length, redis):
    """smtp-source to sink: n messages of body length, with sessions; the
    sink's CPU (to its queue's drain) and the idle Redis's over it."""
    b0 = sink.rchar()
    c0, r0 = sink.cpu_seconds(), cpu_s(redis.proc.pid)
    took, cpu = smtp_source(sink, n, sessions, length)
    c1, r1 = sink.cpu_seconds(), cpu_s(redis.proc.pid)
    out = {"sink": sink.name, "emails": n, "sessions": sessions,
           "body_bytes": length,
           "client_cpu_us_per_email": cpu / n * 1e6,
           "sink_cpu_seconds": c1 - c0,
           "redis_cpu_seconds": r1 - r0,
           "seconds": took, "emails_per_sec": n / took}
    out["wire_bytes_per_email"] = (sink.rchar() - b0) / n
    out["sink_drain_seconds"] = sink.wait_drained()
    out["sink_cpu_to_drain_seconds"] = sink.cpu_seconds() - c0
    return out


def pick_median(runs):
    """The run whose emails/s is the median (the lower middle one for an
    even count)."""
    s = sorted(runs, key=lambda x: x["emails_per_sec"])
    return s[(len(s) - 1) // 2]


def bench_sink(args, tmp, sink, out, seq):
    """--rounds alternations of a digestd run and a ceiling run against
    sink; out gets every run and the medians."""
    out["ehlo"] = sink.ehlo()
    body = {"overhead": source_overhead(sink)}
    out["source_overhead_bytes"] = body["overhead"]
    runs, ceils = [], []
    for i in range(args.rounds):
        res, redis = run_digestd(args, tmp, sink, seq[0])
        seq[0] += 1
        try:
            dd = res["digestd"]
            runs.append(res)
            length = max(1, int(round(dd["wire_bytes_per_email"]
                                      - body["overhead"])))
            c = ceiling(sink, dd["emails"], dd["workers"], length, redis)
            ceils.append(c)
        finally:
            redis.stop()
        print("e2e: %s round %d: digestd %.0f emails/s (%d in %.2fs, worker "
              "CPU %.1f us/email), smtp-source %.0f emails/s" % (
                  sink.name, i + 1, dd["emails_per_sec"], dd["emails"],
                  dd["seconds"], dd["worker_cpu_us_per_email"],
                  c["emails_per_sec"]), flush=True)
    md = pick_median([r["digestd"] for r in runs])
    mi = [r["digestd"] for r in runs].index(md)
    mc = pick_median(ceils)
    out["digestd_runs"] = [r["digestd"] for r in runs]
    out["ceiling_runs"] = ceils
    out["digestd"] = md
    out["ceiling"] = mc
    out["redis"] = runs[mi]["redis"]
    out["seed"] = runs[0]["seed"]
    out["schedule_output"] = runs[0]["schedule_output"]
    if "perf_stat" in runs[0]:
        out["perf_stat"] = runs[0]["perf_stat"]
    out["medians"] = {
        "digestd_emails_per_sec": median([r["emails_per_sec"]
                                          for r in out["digestd_runs"]]),
        "ceiling_emails_per_sec": median([c["emails_per_sec"]
                                          for c in ceils]),
        "worker_cpu_us_per_email": median([r["worker_cpu_us_per_email"]
                                           for r in out["digestd_runs"]]),
        "digestd_sink_cpu_us_per_email": median(
            [r["sink_cpu_to_drain_seconds"] / r["emails"] * 1e6
             for r in out["digestd_runs"]]),
        "ceiling_sink_cpu_us_per_email": median(
            [c["sink_cpu_to_drain_seconds"] / c["emails"] * 1e6
             for c in ceils]),
        "digestd_redis_cpu_us_per_email": median(
            [r["redis_cpu_seconds"] / r["emails"] * 1e6
             for r in out["digestd_runs"]]),
        "ceiling_redis_cpu_us_per_email": median(
            [c["redis_cpu_seconds"] / c["emails"] * 1e6 for c in ceils]),
        "client_cpu_us_per_email": median([c["client_cpu_us_per_email"]
                                           for c in ceils]),
    }
    m = out["medians"]
    out["ratio"] = m["digestd_emails_per_sec"] / m["ceiling_emails_per_sec"]
    out["ratios"] = [r["emails_per_sec"] / c["emails_per_sec"]
                     for r, c in zip(out["digestd_runs"], ceils)]


# Why the schedule settings of the bench are what they are (the report
# quotes it).
SHARD_NOTE = (
    "shard_size = %d: the seeded groups run from a dozen members to about "
    "24,000 (a 15,000-email job with the default of 50,000, which kept one "
    "worker busy for seconds after the others had nothing left). At 1,000 "
    "members a job is at most about 650 emails, half a second of one "
    "worker: the tail of the run is that at worst. Smaller shards would "
    "add jobs (a Redis read of the job and an SMTP session each, the cost "
    "that already makes the standard pool's small jobs dearer per email) "
    "for a tail already shorter than the end's detection. priority_threshold "
    "= %s: each pool has its 2 workers, so each queue must hold the same "
    "work, not the same emails: at the default (50) the priority queue "
    "holds three quarters of the emails and the standard pool's workers "
    "would idle for the last third of the run; this threshold leaves "
    "priority a little over half of the emails, which with standard's "
    "dearer small jobs ends both pools together on the full data.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--members", type=int, default=200000)
    ap.add_argument("--posts", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2, help="per pool")
    ap.add_argument("--session", type=int, default=500)
    ap.add_argument("--shard-size", type=int, default=1000,
                    help="schedule.shard_size: members per job")
    ap.add_argument("--priority-threshold", default="400",
                    help="schedule.priority_threshold")
    ap.add_argument("--rounds", type=int, default=3,
                    help="digestd/ceiling alternations per sink")
    ap.add_argument("--relay-data", help="GROUPS,MEMBERS,POSTS seeded for "
                    "the relay's runs (default: the same as smtp-sink's)")
    ap.add_argument("--no-relay", action="store_true",
                    help="smtp-sink only, no postfix relay")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--budget", type=int, default=0,
                    help="seconds: past them, stop everything and fail "
                    "(before a caller's own time limit kills us, leaving "
                    "postfix's master running)")
    ap.add_argument("--perf", help="perf record the workers of the first "
                    "run to this file (one round, smtp-sink only)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.perf:
        args.rounds, args.no_relay = 1, True

    # Whatever ends the run, the finally clauses stop every server.
    def over(signum, frame):
        raise RuntimeError("over budget (%d s)" % args.budget)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    if args.budget:
        signal.signal(signal.SIGALRM, over)
        signal.alarm(args.budget)
    tmp = tempfile.mkdtemp(prefix="digestd-bench-e2e-")
    res = {"params": vars(args), "sinks": {}}
    seq = [0]
    try:
        sink = PostfixSink().start()
        try:
            res["sinks"]["smtp-sink"] = out = {}
            bench_sink(args, tmp, sink, out, seq)
            dd = out["digestd"]
            res["libesmtp"] = libesmtp_floor(
                sink, min(dd["emails"], 40000),
                max(1, int(round(dd["emails"] / max(1, dd["jobs_ok"])))),
                out["ceiling"]["body_bytes"])
        finally:
            sink.stop()
        if args.no_relay:
            res["sinks"]["postfix"] = {"error": "not run (--no-relay)"}
        elif os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
            res["sinks"]["postfix"] = {
                "error": "not run: postfix's master needs root and "
                         "/usr/sbin/postfix"}
        else:
            # Each daemon serves up to max_use clients before it exits
            # (100 by default): at thousands of messages a second that is
            # a fork and exec of cleanup, trivial-rewrite and discard every
            # few milliseconds, which would make the relay's CPU mostly
            # process churn.  A relay under steady load is tuned so.
            # Its smtpd processes must also live through the whole bench
            # (max_idle): what they read is the bytes on the wire.
            relay = PostfixRelay(main={"max_use": "100000",
                                       "max_idle": "3600s"})
            res["sinks"]["postfix"] = out = {}
            try:
                relay.start()
                bench_sink(args, tmp, relay, out, seq)
            except Exception as ex:
                # smtp-sink's figures stand without the relay's.
                out.clear()
                out["error"] = "%s: %s" % (type(ex).__name__, ex)
            finally:
                relay.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res["shard_note"] = SHARD_NOTE % (args.shard_size,
                                      args.priority_threshold)
    # The smtp-sink figures at the top, as before: the median runs.
    ss = res["sinks"]["smtp-sink"]
    for k in ("digestd", "ceiling", "redis", "seed", "schedule_output",
              "perf_stat", "ratio"):
        if k in ss:
            res[k] = ss[k]
    for name, s in res["sinks"].items():
        if "ratio" not in s:
            print("e2e: %s: %s" % (name, s.get("error")))
            continue
        m = s["medians"]
        print("e2e: %s, medians of %d: digestd %.0f emails/s, smtp-source "
              "%.0f emails/s (%d sessions): ratio %.2f (runs: %s); worker "
              "CPU %.1f us/email, sink %.1f / %.1f us/email, redis %.1f "
              "us/email" % (
                  name, args.rounds, m["digestd_emails_per_sec"],
                  m["ceiling_emails_per_sec"], s["ceiling"]["sessions"],
                  s["ratio"], " ".join("%.2f" % x for x in s["ratios"]),
                  m["worker_cpu_us_per_email"],
                  m["digestd_sink_cpu_us_per_email"],
                  m["ceiling_sink_cpu_us_per_email"],
                  m["digestd_redis_cpu_us_per_email"]))
    if "us_per_message" in res.get("libesmtp", {}):
        print("e2e: libESMTP alone (bench_smtp, %d per session): %.2f us "
              "CPU per message" % (res["libesmtp"]["per_session"],
                                   res["libesmtp"]["us_per_message"]))
    write_json(out_path(args.out or "bench-e2e.json"), res)


if __name__ == "__main__":
    main()
