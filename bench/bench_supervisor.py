#!/usr/bin/env python3
"""Supervisor: how fast a killed worker is replaced, and how fast a stalled
one is found, by digestd and by Debian's php-fpm (pm = static) measured
with the same code.

Kill test: SIGKILL the oldest worker, then poll the master's
/proc/<pid>/task/<pid>/children until a new pid appears (death to fork);
for digestd, then poll GET /status until that pid is idle (death to
ready).  The victim is always the oldest worker and is only killed once it
has run longer than the restart backoff's healthy threshold, so what is
measured is the restart path, with no backoff delay in it.

Stall test (digestd): SIGSTOP a worker; time until the supervisor's
replacement appears, with stall_timeout known.

    bench/bench_supervisor.py [--kills N] [--workers W] [--out FILE]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import (Digestd, RedisServer, children, cmdline,
                      digestd_config, out_path, summary, wait_for,
                      write_json)

PHP_FPM = "/usr/sbin/php-fpm8.2"
HEALTHY_S = 1.15        # restart_backoff_max = 1s: a run of 1s is healthy
STALL_TIMEOUT_MS = 2000


def kill_test(master, nkills, workers_fn, ready_fn=None, min_age=HEALTHY_S,
              budget=120.0):
    """SIGKILL the oldest worker nkills times; returns {fork_us, ready_us,
    pairs: [(kill ns, new worker pid)]} (ready only with ready_fn).

    Without ready_fn every new child is a worker (php-fpm).  With it, a
    new child may be another helper (digestd forks a requeue child when a
    worker dies), so the replacement is the new pid that ready_fn(known)
    reports idle, and its fork time the moment its pid was first seen.
    """
    born = {p: time.monotonic() - 10 for p in workers_fn()}
    fork, ready, pairs = [], [], []
    end = time.monotonic() + budget
    for _ in range(nkills):
        if time.monotonic() > end:
            break
        victim = min(born, key=lambda p: (born[p], p))
        wait = born[victim] + min_age - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        before = set(children(master))
        known = set(born)
        t0 = time.monotonic_ns()
        os.kill(victim, signal.SIGKILL)
        seen = {}
        limit = t0 + 5 * 10**9
        while time.monotonic_ns() < limit:
            tn = time.monotonic_ns()
            for p in set(children(master)) - before:
                seen.setdefault(p, tn)
            if seen:
                break
            # Yield the core: on two cores a spinning poller would delay
            # the very fork it waits for.
            time.sleep(0.0001)
        del born[victim]
        if not seen:
            continue
        new = min(seen, key=seen.get)
        if ready_fn is not None:
            new = None
            limit = time.monotonic_ns() + 5 * 10**9
            while time.monotonic_ns() < limit:
                tn = time.monotonic_ns()
                for p in set(children(master)) - before:
                    seen.setdefault(p, tn)
                w = ready_fn(known)
                if w is not None:
                    ready.append((time.monotonic_ns() - t0) / 1000)
                    new = w
                    break
                time.sleep(0.0005)
            if new is None:
                continue
        if new in seen:
            fork.append((seen[new] - t0) / 1000)
        pairs.append((t0, new))
        born[new] = time.monotonic()
        # A worker that also died meanwhile, or the new one seen late.
        for p in set(workers_fn()) - set(born):
            born[p] = time.monotonic()
        kids = set(children(master))
        for p in list(born):
            if p not in kids:
                del born[p]
    return {"fork_us": fork, "ready_us": ready, "pairs": pairs}


def sched_latency(path, sup):
    """perf sched latency, per pid: the supervisor's row and the rows
    with the longest waits."""
    p = subprocess.run(["perf", "sched", "latency", "-i", path, "--pids",
                        "--sort", "max"], capture_output=True, text=True,
                       timeout=300)
    rows = [l.rstrip() for l in p.stdout.splitlines() if "|" in l and
            "Task" not in l]
    mine = [l for l in rows if re.search(r":%d\s*\|" % sup, l)]
    out = {"supervisor_row": mine[0].strip() if mine else None,
           "top_rows": [l.strip() for l in rows[:12]]}
    if mine:
        m = re.search(r"avg:\s*([\d.]+) ms \| max:\s*([\d.]+) ms", mine[0])
        sw = re.search(r"\|\s*(\d+)\s*\|", mine[0])
        if m:
            out["supervisor_avg_delay_ms"] = float(m.group(1))
            out["supervisor_max_delay_ms"] = float(m.group(2))
        if sw:
            out["supervisor_switches"] = int(sw.group(1))
    for junk in (path, path + ".old"):
        try:
            os.unlink(junk)
        except OSError:
            pass
    return out


def digestd_workers(d, sup):
    return [p for p in children(sup) if "worker" in cmdline(p)]


def new_idle_fn(d):
    """ready_fn for kill_test: the pid of an idle worker not in known."""
    def ready(known):
        try:
            for w in d.status()["workers"]:
                if w["pid"] not in known and w["state"] == "idle":
                    return w["pid"]
        except Exception:
            return None
        return None
    return ready


def idle_fn(d):
    def ready(pid):
        try:
            for w in d.status()["workers"]:
                if w["pid"] == pid:
                    return w["state"] == "idle"
        except Exception:
            return False
        return False
    return ready


def log_figures(text, since_ns, pairs):
    """From the supervisor's debug log, whose mono_ns is CLOCK_MONOTONIC
    like time.monotonic_ns() here: kill to fork and kill to ready with no
    polling in them, and reap to fork and reap to ready as the supervisor
    itself measures them."""
    fork_at, ready_at, rf, rr = {}, {}, [], []
    for line in text.splitlines():
        m = re.search(r"mono_ns=(\d+)", line)
        w = re.search(r"worker=(\d+)", line)
        if not m or not w or int(m.group(1)) < since_ns:
            continue
        m1 = re.search(r"death_to_fork_us=(\d+)", line)
        m2 = re.search(r"death_to_ready_us=(\d+)", line)
        if "worker started" in line:
            fork_at[int(w.group(1))] = int(m.group(1))
        if "worker ready" in line:
            ready_at[int(w.group(1))] = int(m.group(1))
        if m1:
            rf.append(int(m1.group(1)))
        if m2:
            rr.append(int(m2.group(1)))
    kf = [(fork_at[p] - t0) / 1000 for t0, p in pairs if p in fork_at]
    kr = [(ready_at[p] - t0) / 1000 for t0, p in pairs if p in ready_at]
    return kf, kr, rf, rr


def bench_digestd(args, tmp, res):
    redis = RedisServer(os.path.join(tmp, "redis")).start()
    d = None
    try:
        cfg = digestd_config(
            tmp, redis, {"priority": {"workers": args.workers}},
            supervisor="log_level = debug\nrestart_backoff_min = 10ms\n"
                       "restart_backoff_max = 1s\nstall_timeout = %dms\n"
                       % STALL_TIMEOUT_MS)
        d = Digestd(cfg, tmp).start(timeout=30)
        sup = d.pid()
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == args.workers,
                 timeout=30, what="workers idle")
        since = time.monotonic_ns()
        sched = None
        if args.sched:
            # The scheduler's view: how long the supervisor waited for a
            # core each time it was woken (perf sched, system-wide).
            sched = subprocess.Popen(
                ["perf", "sched", "record", "-o", args.sched],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        t = time.monotonic()
        try:
            k = kill_test(sup, args.kills, lambda: digestd_workers(d, sup),
                          ready_fn=new_idle_fn(d), budget=args.budget)
        finally:
            if sched is not None:
                sched.send_signal(signal.SIGINT)
                sched.wait(timeout=120)
        took = time.monotonic() - t
        if sched is not None:
            res["sched"] = sched_latency(args.sched, sup)
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == args.workers,
                 timeout=30, what="workers idle again")
        kf, kr, lf, lr = log_figures(d.log(), since, k["pairs"])
        res["digestd"] = {
            "workers": args.workers, "kills": len(k["fork_us"]),
            "seconds": took,
            "death_to_fork_us": summary(k["fork_us"]),
            "death_to_ready_us": summary(k["ready_us"]),
            "log_kill_to_fork_us": summary(kf),
            "log_kill_to_ready_us": summary(kr),
            "log_reap_to_fork_us": summary(lf),
            "log_reap_to_ready_us": summary(lr),
            "raw_fork_us": k["fork_us"], "raw_ready_us": k["ready_us"],
        }

        # Stall: SIGSTOP the oldest worker; the supervisor SIGKILLs it after
        # stall_timeout without a heartbeat and forks a replacement.
        st, failed = [], []
        for _ in range(args.stalls):
            known = {w["pid"] for w in d.status()["workers"]}
            victim = min(p for p in digestd_workers(d, sup) if p in known)
            t0 = time.monotonic_ns()
            os.kill(victim, signal.SIGSTOP)
            new = None
            limit = t0 + (STALL_TIMEOUT_MS + 10000) * 10**6
            # The replacement is the pid /status shows that it did not
            # before; a child seen in /proc may also be the sampler's.
            while time.monotonic_ns() < limit:
                try:
                    fresh = {w["pid"] for w in d.status()["workers"]} - known
                except Exception:
                    fresh = set()
                if fresh:
                    new = fresh.pop()
                    break
                time.sleep(0.002)
            if new is None:
                failed.append("no replacement for %d in %d ms" % (
                    victim, STALL_TIMEOUT_MS + 10000))
                os.kill(victim, signal.SIGKILL)
                continue
            st.append((time.monotonic_ns() - t0) / 1e6)
            try:
                wait_for(lambda: idle_fn(d)(new), timeout=10,
                         what="replacement")
            except AssertionError:
                failed.append("replacement %d of %d not idle in 10 s: %s" % (
                    new, victim, [w for w in d.status()["workers"]
                                  if w["pid"] == new]))
        res["stall"] = {"stall_timeout_ms": STALL_TIMEOUT_MS,
                        "detect_ms": summary(st),
                        "over_timeout_ms": summary(
                            [x - STALL_TIMEOUT_MS for x in st]),
                        "failed": failed, "raw_ms": st}
        d.stop(timeout=30)
    finally:
        if d is not None:
            d.kill()
        redis.stop()


PHP_CONF = """\
[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm.log
daemonize = no
emergency_restart_threshold = 0
process_control_timeout = 0

[bench]
user = nobody
group = nogroup
listen = {tmp}/php-fpm.sock
pm = static
pm.max_children = {workers}
"""


def bench_php(args, tmp, res):
    conf = os.path.join(tmp, "php-fpm.conf")
    with open(conf, "w") as f:
        f.write(PHP_CONF.format(tmp=tmp, workers=args.workers))
    proc = subprocess.Popen([PHP_FPM, "-F", "-y", conf, "-n"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        master = proc.pid
        wait_for(lambda: proc.poll() is not None or
                 len(children(master)) == args.workers,
                 timeout=30, what="php-fpm children")
        if proc.poll() is not None:
            with open(os.path.join(tmp, "php-fpm.log")) as f:
                raise RuntimeError("php-fpm exited: " + f.read())
        time.sleep(HEALTHY_S)
        t = time.monotonic()
        k = kill_test(master, args.kills, lambda: children(master),
                      budget=args.budget)
        res["php_fpm"] = {
            "workers": args.workers, "kills": len(k["fork_us"]),
            "seconds": time.monotonic() - t,
            "version": subprocess.run([PHP_FPM, "-v"], capture_output=True,
                                      text=True).stdout.splitlines()[0],
            "death_to_fork_us": summary(k["fork_us"]),
            "raw_fork_us": k["fork_us"],
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=40)
    ap.add_argument("--stalls", type=int, default=5)
    ap.add_argument("--budget", type=float, default=120.0,
                    help="seconds at most per kill test")
    ap.add_argument("--php", type=int, default=1,
                    help="0: digestd only")
    ap.add_argument("--sched", help="perf sched record the kill test "
                    "to this file and report the supervisor's waits")
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="digestd-bench-sup-")
    os.chmod(tmp, 0o755)
    res = {"params": vars(args)}
    # One part failing leaves the other's figures, and says why.
    try:
        parts = [("digestd", bench_digestd), ("php_fpm", bench_php)]
        for part, fn in parts[:2 if args.php else 1]:
            try:
                fn(args, tmp, res)
            except Exception as ex:
                res.setdefault("errors", {})[part] = repr(ex)
                print("supervisor %s: failed: %r" % (part, ex))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(out_path(args.out or "bench-supervisor.json"), res)
    if "errors" in res:
        sys.exit(1)
    for name in ("digestd", "php_fpm"):
        if name not in res:
            continue
        f = res[name]["death_to_fork_us"]
        print("supervisor %s: %d kills, death to fork p50 %.0f us p99 %.0f us"
              % (name, res[name]["kills"], f["p50"], f["p99"]))
    r = res["digestd"]["death_to_ready_us"]
    print("supervisor digestd: death to ready p50 %.0f us p99 %.0f us" % (
        r["p50"], r["p99"]))
    s = res["stall"]["detect_ms"]
    if s.get("n"):
        print("supervisor digestd: stall found and replaced in p50 %.0f ms "
              "(stall_timeout %d ms)" % (s["p50"], STALL_TIMEOUT_MS))
    if "sched" in res:
        print("supervisor digestd: waits for a core: %s" % (
            res["sched"].get("supervisor_row"),))


if __name__ == "__main__":
    main()
