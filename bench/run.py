#!/usr/bin/env python3
"""make bench: run every benchmark of bench/ in one go on this machine and
write the report to bench/results/: REPORT.md (the figures against their
targets), results.json (everything measured, raw), bench.png (gnuplot,
from bench/plot.gp) and, for each target missed, the profile that explains
it.

    /usr/bin/python3 bench/run.py [--quick] [--only NAME,...]

--quick runs smaller sizes (a smoke test of the runner, minutes less);
--only runs some of: render, checkpoint, smtp, worker, e2e, amqp,
amqp_e2e, memory, supervisor, scrape, profile;
--report writes REPORT.md and the plot again from results.json.
Each benchmark runs in its own process with a time limit, so one that
fails is reported as failed and the others still run.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("DIGESTD_BUILD", "build")
OUT = os.path.join(HERE, "results")
PY = sys.executable or "/usr/bin/python3"

TARGETS = {
    "e2e_ratio": (">=", 0.9, "digestd / smtp-source, smtp-sink (medians)"),
    "e2e_relay_ratio": (">=", 1.2, "digestd / smtp-source, postfix relay "
                        "with CHUNKING (medians)"),
    "worker_cpu_us": ("<=", 15.0, "worker CPU per email (us)"),
    "amqp_cpu_us": ("<=", 15.0, "AMQP transport CPU per email (us)"),
    "amqp_e2e_cpu_us": ("<=", 15.0,
                        "worker CPU per email, AMQP end to end (us)"),
    "render_per_core": (">=", 20000, "render, emails/s per core"),
    "redis_rtt_per_email": ("<=", 1.05, "Redis round trips per email"),
    "worker_hwm_mb": ("<=", 16.0, "worker peak RSS, 1M-member group (MB)"),
    "supervisor_hwm_mb": ("<=", 8.0, "supervisor peak RSS, 64 workers (MB)"),
    "fork_p99_ms": ("<=", 2.0, "death to fork p99 (ms)"),
    "ready_p99_ms": ("<=", 100.0, "death to ready p99 (ms)"),
    "scrape_p99_ms": ("<=", 5.0, "/metrics p99 at 64 workers (ms)"),
    "scrape_speedup": (">=", 10.0, "/metrics vs prometheus_client multiprocess"),
    "smtp_path_ratio": ("<=", 1.1, "SMTP path / libESMTP alone"),
    "own_cpu_us": ("<=", 8.0, "digestd's own CPU per email (us)"),
    "cursor_write_us": ("<=", 1.0, "per-message cursor write CPU (us)"),
}


# The regression guard: make bench fails (after writing the report) when
# /metrics or a worker's replacement is more than REGRESSION_FACTOR times
# slower at p99 than these, the figures of the make bench run of
# 2026-11-29 on the 2-core bench machine (bench/results/REPORT.md of
# commit 8fb6808: /metrics p99 0.90 ms at 64 workers, death to fork p99
# 1.37 ms).
SCRAPE_P99_BASELINE_MS = 0.9
FORK_P99_BASELINE_MS = 1.4
REGRESSION_FACTOR = 1.5
GUARDS = {
    "scrape_p99_ms": SCRAPE_P99_BASELINE_MS,
    "fork_p99_ms": FORK_P99_BASELINE_MS,
}


# The commit whose figures the baselines are.  A machine slower than the
# one that set them (another VM, a noisy neighbour) moves the old code as
# much as the new: when a guarded figure is past its fixed baseline, that
# commit is built and measured in the same run, and the guard compares
# with what it does here and now.
GUARD_REFERENCE = "8fb6808"


def regressions(f, ref=None):
    """[(target, measured, baseline)] for each guarded figure above
    REGRESSION_FACTOR times its baseline (the reference commit's figure
    measured in this run, when there is one, else the fixed one); one not
    measured is not one."""
    out = []
    for k, base in GUARDS.items():
        v = f.get(k)
        if ref and ref.get(k) is not None:
            base = max(base, ref[k])
            v = ref.get("again", {}).get(k, v)
        if v is not None and v > base * REGRESSION_FACTOR:
            out.append((k, v, base))
    return out


def guard_reference(quick):
    """{fork_p99_ms, scrape_p99_ms} of GUARD_REFERENCE, built in a scratch
    worktree and measured by its own benchmarks; {"error": ...} when it
    cannot be."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix="digestd-ref-")
    wt = os.path.join(tmp, "tree")
    out = {"commit": GUARD_REFERENCE}
    try:
        subprocess.run(["git", "worktree", "add", "-q", "--detach", wt,
                        GUARD_REFERENCE], cwd=ROOT, check=True,
                       capture_output=True, timeout=120)
        subprocess.run(["make", "-j%d" % (os.cpu_count() or 2), "all",
                        "build/bench/bench_metrics"], cwd=wt,
                       check=True, capture_output=True, timeout=900)
        for name, script, a in (
                ("supervisor", "bench_supervisor.py",
                 ["--kills", "100", "--stalls", "2"] if quick else []),
                ("scrape", "scrape_bench.py", ["--quick"] if quick else [])):
            path = os.path.join(tmp, name + ".json")
            subprocess.run([PY, os.path.join(wt, "bench", script)] + a +
                           ["--out", path], cwd=wt, check=True,
                           capture_output=True, timeout=420)
            with open(path) as fp:
                out[name] = json.load(fp)
        g = figures({"supervisor": out["supervisor"],
                     "scrape": out["scrape"]})
        out["fork_p99_ms"] = g["fork_p99_ms"]
        out["scrape_p99_ms"] = g["scrape_p99_ms"]
        # This tree's again, right after, so that both meet the same
        # machine: the guard judges these against the reference's.
        for name, script, a in (
                ("supervisor", "bench_supervisor.py",
                 ["--kills", "100", "--stalls", "2"] if quick else []),
                ("scrape", "scrape_bench.py", ["--quick"] if quick else [])):
            path = os.path.join(tmp, "again-" + name + ".json")
            subprocess.run([PY, os.path.join(HERE, script)] + a +
                           ["--out", path], cwd=ROOT, check=True,
                           capture_output=True, timeout=420)
            with open(path) as fp:
                out["again_" + name] = json.load(fp)
        g = figures({"supervisor": out["again_supervisor"],
                     "scrape": out["again_scrape"]})
        out["again"] = {"fork_p99_ms": g["fork_p99_ms"],
                        "scrape_p99_ms": g["scrape_p99_ms"]}
    except (subprocess.SubprocessError, OSError, ValueError, KeyError) as ex:
        out["error"] = str(ex)[-500:]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt],
                       cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def log(msg):
    print("bench: " + msg, flush=True)


def run_json(name, argv, timeout):
    """Run one benchmark that writes JSON to --out; {} plus the error on
    failure."""
    path = os.path.join(OUT, name + ".json")
    t = time.monotonic()
    log("%s: %s" % (name, " ".join(os.path.relpath(a, ROOT)
                                    if a.startswith(ROOT) else a for a in argv)))
    try:
        os.unlink(path)     # never report an older run's figures
    except OSError:
        pass
    err = None
    try:
        p = subprocess.run(argv + ["--out", path], cwd=ROOT, timeout=timeout,
                           capture_output=True, text=True)
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            sys.stdout.write(p.stderr[-4000:])
            err = "exit %d: %s" % (p.returncode, (p.stderr.strip() or
                                                  p.stdout.strip())[-1500:])
    except subprocess.TimeoutExpired:
        err = "timed out after %ds" % timeout
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError):
        return {"error": err or "no results written"}
    if err:
        res["error"] = err
    res["wall_seconds"] = time.monotonic() - t
    return res


def bench_render(secs):
    exe = os.path.join(ROOT, BUILD, "bench", "bench_render")
    log("render: %s -s %d" % (os.path.relpath(exe, ROOT), secs))
    try:
        p = subprocess.run([exe, "-s", str(secs)], capture_output=True,
                           text=True, timeout=secs * 4 + 30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    if p.returncode != 0:
        return {"error": "exit %d: %s" % (p.returncode, p.stderr[-1000:])}
    sys.stdout.write(p.stdout)
    last = p.stdout.strip().splitlines()[-1]
    res = {}
    for kv in last.split():
        k, v = kv.split("=", 1)
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    res["output"] = p.stdout.strip().splitlines()
    with open(os.path.join(OUT, "render.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    return res


def bench_checkpoint(n):
    """The per-message checkpoint write (bench_checkpoint.c) against a
    private redis-server on a unix socket."""
    import shutil
    import tempfile
    exe = os.path.join(ROOT, BUILD, "bench", "bench_checkpoint")
    d = tempfile.mkdtemp(prefix="digestd-bench-cp-")
    sock = os.path.join(d, "redis.sock")
    srv = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock,
                            "--save", "", "--appendonly", "no", "--dir", d],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        log("checkpoint: %s -n %d" % (os.path.relpath(exe, ROOT), n))
        p = subprocess.run([exe, "-S", sock, "-n", str(n)], capture_output=True,
                           text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        srv.terminate()
        srv.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)
    if p.returncode != 0:
        return {"error": "exit %d: %s" % (p.returncode, p.stderr[-1000:])}
    sys.stdout.write(p.stdout)
    res = {}
    for kv in p.stdout.strip().splitlines()[-1].split():
        k, v = kv.split("=", 1)
        res[k] = float(v)
    res["output"] = p.stdout.strip().splitlines()[:2]
    return res


def own_why(r, missed):
    """For digestd's own CPU and the cursor write, when missed: where the
    time went, from bench_worker's attribution and bench_checkpoint's
    floor."""
    why = r.setdefault("why", {})
    pr = r.get("worker", {}).get("profile")
    if "own_cpu_us" in missed and pr:
        why["own_cpu_us"] = (
            "The functions the job path spends most on (share of its "
            "samples, on the stack): " + ", ".join([
                "%s %s%%" % (s, x) for s, x in pr["total"]
                if s not in ("main", "digest_run", "[[unknown]]",
                             "[unknown]")][:14]) +
            ". See worker-flame.svg.")
    cb = r.get("checkpoint", {})
    if "cursor_write_us" in missed and "floor_cpu_us" in cb:
        why["cursor_write_us"] = (
            "One write(2) per message is what bounds the duplicates; its "
            "floor here, the same bytes written straight to the socket, is "
            "%.2f us of CPU (to /dev/null %.2f us): the rest is the "
            "kernel's unix socket path and waking Redis." % (
                cb["floor_cpu_us"], cb["devnull_cpu_us"]))


def bench_smtp_path(quick):
    """digestd's SMTP path (transport_smtp_ops) against libESMTP alone,
    alternated in one process to one smtp-sink: bench_smtp -r.  Messages
    of a digest's size, as many per session as in an average job."""
    from benchlib import PostfixSink
    exe = os.path.join(ROOT, BUILD, "bench", "bench_smtp")
    argv = [exe, "-n", "2040" if quick else "6800", "-m", "68", "-s",
            "6312", "-r", "3" if quick else "7"]
    sink = PostfixSink()
    try:
        sink.start()
        argv[1:1] = ["-p", str(sink.port)]
        log("smtp: %s" % " ".join([os.path.relpath(exe, ROOT)] + argv[1:]))
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        sink.stop()
    if p.returncode != 0:
        return {"error": "exit %d: %s" % (p.returncode, p.stderr[-1000:])}
    sys.stdout.write(p.stdout)
    res = {}
    for kv in p.stdout.strip().splitlines()[-1].split():
        k, v = kv.split("=", 1)
        res[k] = float(v) if k != "benchmark" else v
    res["output"] = p.stdout.strip().splitlines()
    return res


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=10).stdout.strip().splitlines()[0]
        except Exception:
            return "?"
    commit = ver(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "kernel": platform.release(), "commit": commit,
            "redis": ver(["redis-server", "--version"]),
            "php_fpm": ver(["/usr/sbin/php-fpm8.2", "-v"]),
            "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC")}


def perf_works():
    try:
        p = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o",
                            "/dev/null", "true"], capture_output=True,
                           timeout=20)
        return p.returncode == 0
    except Exception:
        return False


def perf_report(data, lines=25):
    """The top of a perf profile by shared object and by symbol."""
    out = {}
    for key, sort in (("by_dso", "dso"), ("by_symbol", "dso,sym")):
        p = subprocess.run(["perf", "report", "-i", data, "--stdio",
                            "--no-children", "-g", "none", "--sort", sort],
                           capture_output=True, text=True, timeout=120)
        rows = [l.rstrip() for l in p.stdout.splitlines()
                if l.strip() and not l.startswith("#")]
        out[key] = rows[:lines]
    return out


def figures(r):
    """{target: value} from the results (None when not measured)."""
    f = {k: None for k in TARGETS}
    e = r.get("e2e", {})
    ss = e.get("sinks", {}).get("smtp-sink", {})
    if "ratio" in ss:
        f["e2e_ratio"] = ss["ratio"]
        f["worker_cpu_us"] = ss["medians"]["worker_cpu_us_per_email"]
        f["redis_rtt_per_email"] = ss["redis"]["round_trips_per_email"]
    elif "ratio" in e:
        f["e2e_ratio"] = e["ratio"]
        f["worker_cpu_us"] = e["digestd"]["worker_cpu_us_per_email"]
        f["redis_rtt_per_email"] = e["redis"]["round_trips_per_email"]
    pf = e.get("sinks", {}).get("postfix", {})
    if "ratio" in pf and "CHUNKING" in pf.get("ehlo", []):
        f["e2e_relay_ratio"] = pf["ratio"]
    if "us_per_email" in r.get("amqp", {}):
        f["amqp_cpu_us"] = r["amqp"]["us_per_email"]
    if "worker_cpu_us_per_email" in r.get("amqp_e2e", {}):
        f["amqp_e2e_cpu_us"] = r["amqp_e2e"]["worker_cpu_us_per_email"]
    if "emails_per_sec" in r.get("render", {}):
        # One process on one core: emails per CPU second is per core.
        rr = r["render"]
        f["render_per_core"] = rr["emails"] / rr["cpu_seconds"]
    m = r.get("memory", {})
    if "worker" in m:
        f["worker_hwm_mb"] = m["worker"]["vm_hwm_kb"] / 1024
    if "supervisor" in m:
        f["supervisor_hwm_mb"] = m["supervisor"]["vm_hwm_kb"] / 1024
    s = r.get("supervisor", {})
    if "digestd" in s:
        kf = s["digestd"].get("log_kill_to_fork_us", {})
        kr = s["digestd"].get("death_to_ready_us", {})
        if kf.get("n"):
            f["fork_p99_ms"] = kf["p99"] / 1000
        if kr.get("n"):
            f["ready_p99_ms"] = kr["p99"] / 1000
    if "ratio" in r.get("smtp", {}):
        f["smtp_path_ratio"] = r["smtp"]["ratio"]
    sc = r.get("scrape", {})
    p99, speed = scrape_figures(sc)
    f["scrape_p99_ms"], f["scrape_speedup"] = p99, speed
    own_figures(r, f)
    return f


def own_figures(r, f):
    """digestd's own CPU per email (bench_worker, the job path with a
    discarding transport) and the per-message cursor write
    (bench_checkpoint)."""
    w = r.get("worker", {}).get("worker", {})
    if "us_per_email" in w:
        f["own_cpu_us"] = w["us_per_email"]
    cb = r.get("checkpoint", {})
    if "pipelined_cpu_us" in cb:
        f["cursor_write_us"] = cb["pipelined_cpu_us"]


def own_report(r, L):
    """The report's part on digestd's own CPU and its attribution."""
    wr = r.get("worker", {})
    w = wr.get("worker", {})
    L.append("### digestd's own CPU per email\n")
    if "us_per_email" not in w:
        L.append("Not measured: %s\n" % wr.get("error", "skipped"))
        return
    L.append("`%s/bench/bench_worker` (driven by `bench/bench_worker.py`): "
             "`digestctl seed --groups %d --members %d --posts %d`, the "
             "daily schedule, then every queued job run through the "
             "worker's job path (checkpoint_start, digest_run, "
             "checkpoint_finish: Redis reads, eligibility, render, the "
             "per-message checkpoint write, scoreboard, metrics) in one "
             "process, with a transport that accepts each message and "
             "discards it: what libESMTP and its syscalls cost is left "
             "out. %d jobs, %d emails (%d skipped) per round, %d rounds: "
             "**%.2f us of CPU per email** (the median round; best %.2f, "
             "worst %.2f; %.2f user and %.2f system over all), %.0f bytes "
             "per email.\n" % (
                 BUILD, wr["params"]["groups"], wr["params"]["members"],
                 wr["params"]["posts"], w["jobs"], w["emails"] / w["rounds"],
                 w["skipped"] / w["rounds"], w["rounds"], w["us_per_email"],
                 w["best_us"], w["worst_us"], w["user_us"], w["sys_us"],
                 w["avg_bytes"]))
    pr = wr.get("profile")
    if not pr:
        L.append("No profile: perf does not work here.\n")
        return
    L.append("perf record -g (cpu-clock, DWARF unwinding) of one more round, "
             "%d samples in the job path (checkpoint_start, digest_run, "
             "checkpoint_finish): the flame graph `%s`, the folded stacks "
             "`%s`. Where the time goes, as a share of the job path:\n" % (
                 pr["job_samples"], os.path.basename(pr["svg"]),
                 os.path.basename(pr["folded"])))
    L.append("| on the stack (total) | % | itself (self) | % |")
    L.append("| --- | --- | --- | --- |")
    tot = [t for t in pr["total"] if t[0] not in
           ("main", "digest_run", "[[unknown]]", "[unknown]")]
    for i in range(min(20, max(len(tot), len(pr["self"])))):
        a = tot[i] if i < len(tot) else ("", "")
        b = pr["self"][i] if i < len(pr["self"]) else ("", "")
        L.append("| %s | %s | %s | %s |" % (a[0], a[1], b[0], b[1]))
    L.append("")


def scrape_figures(sc):
    """digestd's /metrics p99 (ms) and its speed-up over the Python
    multiprocess collector, from scrape_bench.py's JSON, whatever nesting
    it chose."""
    def find(d, *names):
        if isinstance(d, dict):
            for k, v in d.items():
                if k in names and isinstance(v, (int, float)):
                    return v
            for v in d.values():
                x = find(v, *names)
                if x is not None:
                    return x
        return None
    dd = sc.get("digestd") if isinstance(sc.get("digestd"), dict) else None
    py = sc.get("python") if isinstance(sc.get("python"), dict) else None
    p99 = find(dd, "p99_ms") if dd else find(sc, "digestd_p99_ms")
    speed = find(sc, "speedup_p99", "speedup", "ratio_p99")
    if speed is None and dd and py:
        a, b = find(dd, "p99_ms"), find(py, "p99_ms")
        if a and b:
            speed = b / a
    return p99, speed


def met(key, v):
    if v is None:
        return None
    op, t, _ = TARGETS[key]
    return v >= t if op == ">=" else v <= t


def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return "{:,.0f}".format(v)
        return ("%%.%df" % nd) % v
    return str(v)


def plot(r):
    """Data files for bench/plot.gp, then gnuplot to bench.png."""
    e, s = r.get("e2e", {}), r.get("supervisor", {})
    with open(os.path.join(OUT, "throughput.dat"), "w") as f:
        f.write("# what emails_per_sec\n")
        for name, s in sorted(e.get("sinks", {}).items(), reverse=True):
            if "medians" in s:
                m = s["medians"]
                f.write('"digestd, %s" %.1f\n' % (
                    name, m["digestd_emails_per_sec"]))
                f.write('"smtp-source, %s" %.1f\n' % (
                    name, m["ceiling_emails_per_sec"]))
    have_cdf = 1 if s.get("digestd", {}).get("raw_fork_us") and \
        s.get("php_fpm", {}).get("raw_fork_us") else 0
    for name, key, col in (("digestd", "raw_fork_us", "fork"),
                           ("php_fpm", "raw_fork_us", "fork"),
                           ("digestd", "raw_ready_us", "ready")):
        xs = sorted(s.get(name, {}).get(key, []))
        with open(os.path.join(OUT, "cdf_%s_%s.dat" % (name, col)), "w") as f:
            f.write("# latency_ms fraction\n")
            for i, x in enumerate(xs):
                f.write("%.4f %.5f\n" % (x / 1000, (i + 1) / len(xs)))
    try:
        p = subprocess.run(["gnuplot", "-e", "outdir='%s'; have_cdf=%d" % (
                            OUT, have_cdf),
                            os.path.join(HERE, "plot.gp")],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return "gnuplot: " + p.stderr
    except OSError as ex:
        return "gnuplot: %s" % ex
    return None


def report_e2e(L, e):
    """Section 1: digestd and smtp-source against each sink, medians of
    the alternated runs, every run's figures, the CPU of each part."""
    ss = e.get("sinks", {}).get("smtp-sink", {})
    if "ratio" not in ss:
        L.append("Not measured: %s\n" % (ss.get("error") or
                                          e.get("error", "skipped")))
        return
    pr, sd = e["params"], ss.get("seed", {})
    dd0 = ss["digestd"]
    L.append("Data: `digestctl seed --groups %d --members %d --posts %d` "
             "(%s). digestd: pools priority and standard, %d workers each, "
             "%d messages per SMTP session, Redis on a unix socket; "
             "`schedule.shard_size = %d`, `schedule.priority_threshold = "
             "%s`. Timed from `digestctl schedule` to the last email "
             "accepted. The ceiling: postfix's `smtp-source -d` with as many "
             "sessions as workers, the same number of messages and the same "
             "bytes on the wire (it sends DATA and waits for each of MAIL, "
             "RCPT, DATA and the end of data). The runs alternate, digestd "
             "then smtp-source, %d times per sink, so that other work on the "
             "machine weighs on both; the figures are the medians. Each "
             "digestd run has its own Redis, seeded alike.%s\n" % (
                 pr["groups"], pr["members"], pr["posts"],
                 "; ".join(sd.get("output", [])[:1]), pr["workers"],
                 pr["session"], pr.get("shard_size", 0),
                 pr.get("priority_threshold", "?"), pr.get("rounds", 1),
                 " The relay's runs seed smaller data, `--groups %s "
                 "--members %s --posts %s` (it spends about a millisecond "
                 "of CPU per message)." % tuple(pr["relay_data"].split(","))
                 if pr.get("relay_data") else ""))
    L.append("CPU is each process's user + system time sampled when "
             "`digestctl schedule` starts and again at the end, the "
             "difference divided by the emails: the workers' (from "
             "/proc/<pid>/stat, before the drain), Redis's, the sink's: "
             "smtp-sink's one process, or postfix's whole tree under its "
             "master (smtpd, cleanup, trivial-rewrite, qmgr, discard, "
             "postlogd, with the exited ones through the master's cutime), "
             "sampled once its queue is empty, since what it took it still "
             "delivers. For smtp-source, its own CPU (the client column).\n")
    L.append("| sink | EHLO | digestd emails/s | smtp-source emails/s | "
             "ratio (per round) | worker us/email | client us/email "
             "(smtp-source) | sink us/email, digestd / smtp-source | "
             "Redis us/email, digestd / smtp-source |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in e.get("sinks", {}).items():
        if "medians" not in s:
            L.append("| %s | | not measured: %s | | | | | | |" % (
                name, s.get("error", "?")))
            continue
        m = s["medians"]
        kw = [k for k in ("PIPELINING", "CHUNKING") if k in s.get("ehlo", [])]
        L.append("| %s | %s | %s | %s | **%.2f** (%s) | %.1f | %.1f | "
                 "%.0f / %.0f | %.1f / %.1f |" % (
                     name, " ".join(kw) or "neither",
                     fmt(m["digestd_emails_per_sec"], 0),
                     fmt(m["ceiling_emails_per_sec"], 0), s["ratio"],
                     " ".join("%.2f" % x for x in s["ratios"]),
                     m["worker_cpu_us_per_email"],
                     m["client_cpu_us_per_email"],
                     m["digestd_sink_cpu_us_per_email"],
                     m["ceiling_sink_cpu_us_per_email"],
                     m["digestd_redis_cpu_us_per_email"],
                     m["ceiling_redis_cpu_us_per_email"]))
    L.append("\nEvery run, in the order run:\n")
    L.append("| sink | run | emails | seconds | emails/s | worker CPU s | "
             "supervisor CPU s | Redis CPU s | sink CPU s (to its drain) | "
             "each pool: emails, last email at s | restarts |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
             "| --- |")
    for name, s in e.get("sinks", {}).items():
        for i, (d, c) in enumerate(zip(s.get("digestd_runs", []),
                                       s.get("ceiling_runs", []))):
            pools = ", ".join("%s %d at %.2f" % (
                p, d["pool_emails"].get(p, 0), t) for p, t in
                sorted(d.get("pool_last_email_seconds", {}).items()))
            L.append("| %s | digestd %d | %d | %.2f | %s | %.2f | %.2f | "
                     "%.2f | %.2f (%.2f) | %s | %d |" % (
                         name, i + 1, d["emails"], d["seconds"],
                         fmt(d["emails_per_sec"], 0), d["worker_cpu_seconds"],
                         d["supervisor_cpu_seconds"], d["redis_cpu_seconds"],
                         d["sink_cpu_seconds"],
                         d["sink_cpu_to_drain_seconds"], pools,
                         d["restarts"]))
            L.append("| %s | smtp-source %d | %d | %.2f | %s | (client "
                     "%.1f us/email) | | %.2f | %.2f (%.2f) | %d sessions, "
                     "-l %d | |" % (
                         name, i + 1, c["emails"], c["seconds"],
                         fmt(c["emails_per_sec"], 0),
                         c["client_cpu_us_per_email"], c["redis_cpu_seconds"],
                         c["sink_cpu_seconds"], c["sink_cpu_to_drain_seconds"],
                         c["sessions"], c["body_bytes"]))
    L.append("\nOn the wire: %.0f bytes per email from digestd (smtp-sink "
             "counts what it reads; through the relay, its smtpd "
             "processes' reads), as many from smtp-source. Skipped "
             "recipients %d, deferred %d, rejected %d, jobs %d (median "
             "smtp-sink run). Worker restarts must be 0 for the CPU "
             "figures to hold (a replaced worker's CPU is lost).\n" % (
                 dd0.get("wire_bytes_per_email", 0), dd0["skipped"],
                 dd0["deferred"], dd0["rejected"], dd0["jobs_ok"]))
    L.append("Shards: a group of more than `shard_size` members is several "
             "jobs, so no one job holds a worker while the others are idle "
             "at the end; the two pools' last emails above (within a "
             "fraction of a second of each other when both pools' "
             "sessions stay busy to the end) show the balance. %s\n" %
             e.get("shard_note", ""))
    le = e.get("libesmtp", {})
    if "us_per_message" in le:
        L.append("The SMTP library's own floor, `%s/bench/bench_smtp` "
                 "(libESMTP alone, smtp-sink, %d-byte messages, %d per "
                 "session as in an average job, TCP_NODELAY as in the "
                 "transport, no rendering, no Redis): %d messages in "
                 "%.2f s, **%.1f us of CPU per message**.\n" % (
                     BUILD, le["bytes"], le["per_session"],
                     le["messages"], le["seconds"], le["us_per_message"]))


def relay_why(e):
    """What the relay's runs measured, as the reason its ratio is what it
    is: the CPU each side and the relay spent per email."""
    s = e["sinks"]["postfix"]
    m = s["medians"]
    return ("Measured through the relay (medians of %d rounds): digestd "
            "%s emails/s, smtp-source %s. postfix spent %.0f us of CPU per "
            "email taking digestd's mail and %.0f us taking smtp-source's "
            "(its whole process tree, to its queue's drain), digestd's "
            "workers %.0f us and Redis %.0f us per email against "
            "smtp-source's %.0f us, all on the same 2 cores: the relay "
            "takes the most, and the client that costs the machine less CPU "
            "per email leaves it more; digestd also opens an SMTP session "
            "per job (%d jobs) where smtp-source keeps %d for the whole "
            "run. CHUNKING spares digestd one wait per message, but "
            "libESMTP still waits for MAIL and for the last chunk's "
            "reply." % (
                len(s["digestd_runs"]), fmt(m["digestd_emails_per_sec"], 0),
                fmt(m["ceiling_emails_per_sec"], 0),
                m["digestd_sink_cpu_us_per_email"],
                m["ceiling_sink_cpu_us_per_email"],
                m["worker_cpu_us_per_email"],
                m["digestd_redis_cpu_us_per_email"],
                m["client_cpu_us_per_email"], s["digestd"]["jobs_ok"],
                s["ceiling"]["sessions"]))


def report_amqp_e2e(ae, L):
    """The AMQP end-to-end subsection (bench/bench_e2e_amqp.py)."""
    L.append("### AMQP end to end\n")
    if "worker_cpu_us_per_email" not in ae:
        L.append("Not measured: %s\n" % ae.get("error", "skipped"))
        return
    p = ae["params"]
    L.append("`bench/bench_e2e_amqp.py`: `digestctl seed --groups %d "
             "--members %d --posts %d`, digestd with pools priority and "
             "standard (%d workers in all), queue backend redis, "
             "transport.type = amqp to a private rabbitmq-server on "
             "127.0.0.1 (durable queue bound to the exchange, x-max-length "
             "%d); timed from `digestctl schedule` to the last email "
             "counted sent. CPU as deltas over the run (/proc utime + "
             "stime at schedule and at the end, before the drain). Median "
             "run by worker CPU: **%.1f us of worker CPU per email**, %s "
             "emails/s, %d emails; broker (beam.smp) %.1f us and "
             "redis-server %.1f us of CPU per email.\n" % (
                 p["groups"], p["members"], p["posts"], 2 * p["workers"],
                 p["max_length"], ae["worker_cpu_us_per_email"],
                 fmt(ae["emails_per_sec"]), ae["emails"],
                 ae["broker_cpu_us_per_email"] or 0,
                 ae["redis_cpu_us_per_email"]))
    L.append("| run | emails | seconds | emails/s | worker us/email | "
             "broker us/email | redis us/email | restarts | load (end) |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for x in ae["runs"]:
        L.append("| %d | %d | %.2f | %s | %.1f | %.1f | %.1f | %d | %s |" % (
            x["run"] + 1, x["emails"], x["seconds"],
            fmt(x["emails_per_sec"]), x["worker_cpu_us_per_email"],
            x["broker_cpu_us_per_email"] or 0, x["redis_cpu_us_per_email"],
            x["restarts"] + (1 if x["workers_replaced"] else 0),
            " ".join("%.1f" % v for v in x["loadavg_end"])))
    L.append("")


def report(r, f, profiles, started, took):
    m = r["machine"]
    L = []
    L.append("# digestd benchmarks\n")
    L.append("`make bench` on %s, %d cores (%s), %s, Linux %s, commit %s, "
             "%s; whole run %.0f s. Load average before: %s, after: %s "
             "(other work shared the machine)." % (
                 m["cpu"], m["cores"], m["memory"], m["redis"], m["kernel"],
                 m["commit"], m["date"], took, " ".join(r["load_before"]),
                 " ".join(r["load_after"])))
    L.append("\nEvery figure below comes from this one run; the raw data is "
             "in `results.json` (and one JSON per benchmark), the plot in "
             "`bench.png`.\n")
    L.append("## Targets\n")
    L.append("| # | what | measured | target | met |")
    L.append("| --- | --- | --- | --- | --- |")
    num = {"own_cpu_us": 2, "cursor_write_us": 2,
           "e2e_ratio": 1, "e2e_relay_ratio": 1, "worker_cpu_us": 1,
           "amqp_cpu_us": 1, "amqp_e2e_cpu_us": 1, "render_per_core": 2,
           "redis_rtt_per_email": 3, "worker_hwm_mb": 4,
           "supervisor_hwm_mb": 4, "fork_p99_ms": 5, "ready_p99_ms": 5,
           "scrape_p99_ms": 6, "scrape_speedup": 6, "smtp_path_ratio": 1}
    for k, (op, t, what) in TARGETS.items():
        ok = met(k, f[k])
        L.append("| %s | %s | %s | %s %s | %s |" % (
            num.get(k, ""), what, fmt(f[k]), op, fmt(float(t)),
            "n/a" if ok is None else ("yes" if ok else "**no**")))

    e = r.get("e2e", {})
    L.append("\n## 1. End to end\n")
    report_e2e(L, e)
    ref = r.get("guard_reference")
    g = regressions(f, ref)
    L.append("### Regression guard\n")
    L.append("/metrics p99 against %.1f ms and death-to-fork p99 against "
             "%.1f ms (the figures of the run that set them, commit %s), "
             "at most %.1fx each%s: %s.\n" % (
                 SCRAPE_P99_BASELINE_MS, FORK_P99_BASELINE_MS,
                 GUARD_REFERENCE, REGRESSION_FACTOR,
                 "" if not ref else
                 (" (past them, commit %s was then built and measured on "
                  "this machine: death to fork p99 %s ms, "
                  "/metrics p99 %s ms; then this tree again, right after: "
                  "%s ms and %s ms; the guard compares these with the larger "
                  "baseline of each)" % (
                      GUARD_REFERENCE, fmt(ref.get("fork_p99_ms")),
                      fmt(ref.get("scrape_p99_ms")),
                      fmt(ref.get("again", {}).get("fork_p99_ms")),
                      fmt(ref.get("again", {}).get("scrape_p99_ms")))
                  if "error" not in ref else
                  " (commit %s could not be measured here: %s)" % (
                      GUARD_REFERENCE, ref["error"][-200:])),
                 "; ".join("**%s %.2f ms, above %.2f ms**" % (
                     TARGETS[k][2], v, b * REGRESSION_FACTOR)
                     for k, v, b in g) if g else
                 "within (%s)" % ", ".join(
                     "%s %s ms" % (k, fmt(f.get(k))) for k in GUARDS)))
    am = r.get("amqp", {})
    L.append("### The AMQP transport\n")
    if "us_per_email" in am:
        ap = am["params"]
        L.append("`%s/bench/bench_amqp` (driven by `bench/bench_amqp.py`): "
                 "the amqp transport alone, one connection for %d jobs of "
                 "%d emails of %d bytes, a flush (and a round of publisher "
                 "confirms) every %d, to a private rabbitmq-server on "
                 "127.0.0.1 (durable exchange and queue, persistent "
                 "messages): **%.2f us of worker CPU per email**, %s "
                 "emails/s (median of %d runs).\n" % (
                     BUILD, ap["jobs"], ap["per_job"], am["bytes"],
                     ap["batch"], am["us_per_email"],
                     fmt(am["emails_per_sec"]), len(am["runs"])))
    else:
        L.append("Not measured: %s\n" % am.get("error", "skipped"))
    report_amqp_e2e(r.get("amqp_e2e", {}), L)

    rr = r.get("render", {})
    L.append("## 2. Render\n")
    if "emails" in rr:
        L.append("`%s/bench/bench_render -s %d`: %s\n" % (
            BUILD, round(rr.get("seconds", 0)), "; ".join(
            x.strip() for x in rr["output"][:2])))
    else:
        L.append("Not measured: %s\n" % rr.get("error", "skipped"))

    cb = r.get("checkpoint", {})
    L.append("### The per-message checkpoint write\n")
    if "pipelined_cpu_us" in cb:
        L.append("`%s/bench/bench_checkpoint`: after each message the worker "
                 "sends the job's cursor to the queue Redis without waiting "
                 "(one write), reading the replies back once per flush: "
                 "**%.2f us of CPU** per message (%.2f us wall), against "
                 "%.2f us CPU and %.2f us wall for a round trip per message. "
                 "This is what bounds a whole instance lost to one duplicate "
                 "per job in hand.\n" % (
                     BUILD, cb["pipelined_cpu_us"], cb["pipelined_wall_us"],
                     cb["sync_cpu_us"], cb["sync_wall_us"]))
        if "floor_cpu_us" in cb:
            L.append("The floor under it: write(2) of the same %d-byte "
                     "command straight to the socket, replies read the same "
                     "way, %.2f us of CPU (%.2f us wall); write(2) of as "
                     "many bytes to /dev/null, %.2f us.\n" % (
                         cb["cmd_bytes"], cb["floor_cpu_us"],
                         cb["floor_wall_us"], cb["devnull_cpu_us"]))
    else:
        L.append("Not measured: %s\n" % cb.get("error", "skipped"))
    own_report(r, L)

    sp = r.get("smtp", {})
    L.append("### The SMTP path against libESMTP alone\n")
    if "ratio" in sp:
        L.append("`%s/bench/bench_smtp -r %d`: %d rounds, each sending %d "
                 "messages of %d bytes, %d per session, to one `smtp-sink` "
                 "three ways in turn: libESMTP alone, digestd's transport "
                 "(open once, then send and flush per session, each message "
                 "placed in the transport's buffer as the worker renders "
                 "it), and libESMTP alone with TCP_CORK around each body. "
                 "Medians of CPU per message (utime + stime): libESMTP "
                 "alone **%.1f us**, the transport **%.1f us**, ratio "
                 "**%.3f** (median of the rounds' own ratios %.3f); "
                 "libESMTP alone corked %.1f us.\n" % (
                     BUILD, sp["rounds"], sp["rounds"], sp["messages"],
                     sp["bytes"], sp["per_session"], sp["alone_us"], sp["path_us"], sp["ratio"],
                     sp["round_ratio"], sp["alone_corked_us"]))
    else:
        L.append("Not measured: %s\n" % sp.get("error", "skipped"))

    L.append("## 3. Redis cost\n")
    if "redis" in e:
        rd, dd = e["redis"], e["digestd"]
        L.append("INFO stats before and after the end-to-end run (the "
                 "median one against smtp-sink; our own "
                 "INFO and XINFO calls taken out): %d commands, %d client "
                 "reads (total_reads_processed) for %d emails in %d jobs: "
                 "%.3f commands and %.3f reads per email; less the one "
                 "progress write per email sent, which no worker waits "
                 "for (its reply is read with the flush's), **%.3f round "
                 "trips per email**, %.1f reads per job. It includes "
                 "`digestctl schedule` (%s reads) and the queue "
                 "sampler.\n" % (
                     rd["commands"], rd["reads"], dd["emails"],
                     dd["jobs_ok"], rd["commands_per_email"],
                     rd.get("reads_per_email", rd["round_trips_per_email"]),
                     rd["round_trips_per_email"],
                     rd["reads"] / max(1, dd["jobs_ok"]),
                     rd.get("schedule_reads", "?")))
        L.append("| command | calls | per email | per job |")
        L.append("| --- | --- | --- | --- |")
        for k, v in sorted(rd["calls"].items(), key=lambda kv: -kv[1]):
            L.append("| %s | %d | %.3f | %.2f |" % (
                k, v, v / dd["emails"], v / max(1, dd["jobs_ok"])))
        L.append("")
    else:
        L.append("Not measured.\n")

    mm = r.get("memory", {})
    L.append("## 4. Memory\n")
    if "worker" in mm:
        w = mm["worker"]
        L.append("Worker: one job walks a %d-member group (every member "
                 "with a user hash; one in %d takes the daily digest) under "
                 "memory_limit = 32M: %d emails sent, %d skipped, %d "
                 "restarts (%d OOM), in %.1f s; **VmHWM %.1f MB**.\n" % (
                     w["members"], mm["params"]["every"], w["emails_sent"],
                     w["skipped"], w["restarts"], w["oom_restarts"],
                     w["seconds"], w["vm_hwm_kb"] / 1024))
    if "supervisor" in mm:
        s = mm["supervisor"]
        L.append("Supervisor with %d workers after 60 scrapes of /metrics "
                 "and /status and 16 workers killed and replaced: **VmHWM "
                 "%.1f MB** (anonymous %.1f MB, file %.1f MB, shared %.1f "
                 "MB).\n" % (s["workers"], s["vm_hwm_kb"] / 1024,
                             s["rss_anon_kb"] / 1024, s["rss_file_kb"] / 1024,
                             s["rss_shmem_kb"] / 1024))
    if "error" in mm:
        L.append("Failed: %s\n" % mm["error"])

    s = r.get("supervisor", {})
    L.append("## 5. Supervisor\n")
    if "digestd" in s:
        d, p = s["digestd"], s.get("php_fpm", {})
        L.append("%d SIGKILLs of the oldest of %d workers (each older than "
                 "the backoff's healthy threshold), same harness for both: "
                 "the new pid is seen in /proc/<master>/task/<master>/"
                 "children (polled every 0.1 ms), digestd's readiness in "
                 "GET /status, which also tells digestd's replacement "
                 "worker from the requeue helper it forks at a death. digestd's debug log gives the same events on "
                 "CLOCK_MONOTONIC with no polling in them.\n" % (
                     d["kills"], d["workers"]))
        L.append("| latency (ms) | p50 | p90 | p99 | max | n |")
        L.append("| --- | --- | --- | --- | --- | --- |")

        def row(name, sm):
            if not sm or not sm.get("n"):
                L.append("| %s | n/a | | | | |" % name)
                return
            L.append("| %s | %.3f | %.3f | %.3f | %.3f | %d |" % (
                name, sm["p50"] / 1000, sm["p90"] / 1000, sm["p99"] / 1000,
                sm["max"] / 1000, sm["n"]))
        row("digestd: kill to new pid seen (polled)", d["death_to_fork_us"])
        row("php-fpm: kill to new pid seen (polled)", p.get("death_to_fork_us"))
        row("digestd: kill to fork (log)", d["log_kill_to_fork_us"])
        row("digestd: reap to fork (log)", d["log_reap_to_fork_us"])
        row("digestd: kill to ready (/status idle, polled)", d["death_to_ready_us"])
        row("digestd: kill to ready (log)", d["log_kill_to_ready_us"])
        st = s.get("stall", {})
        if st.get("detect_ms", {}).get("n"):
            L.append("\nStall: SIGSTOP of a worker to its replacement's fork, "
                     "stall_timeout = %d ms: p50 %.0f ms, max %.0f ms over "
                     "%d trials. The timeout runs from the last heartbeat, "
                     "which precedes the SIGSTOP by up to a heartbeat "
                     "period, and is checked at each supervisor tick: "
                     "hence figures on either side of it.\n"
                     % (st["stall_timeout_ms"], st["detect_ms"]["p50"],
                        st["detect_ms"]["max"], st["detect_ms"]["n"]))
        if s.get("error"):
            L.append("Errors in this part: %s\n" % s["error"])
        L.append("php-fpm: %s, pm = static, pm.max_children = %d, on a "
                 "unix socket in a temp dir.\n" % (
                     p.get("version", "?"), p.get("workers", 0)))
    else:
        L.append("Not measured: %s\n" % s.get("error", "skipped"))

    sc = r.get("scrape", {})
    L.append("## 6. Scrape\n")
    if sc and "error" not in sc and isinstance(sc.get("digestd"), dict):
        dd, py = sc["digestd"], sc.get("python", {})
        L.append("`bench/scrape_bench.py` (its own summary: `scrape.md`): "
                 "GET /metrics from digestd with %s workers and every "
                 "metric populated, against prometheus_client's "
                 "multiprocess collector over %s processes with the same "
                 "series shape, by the same client code.\n" % (
                     dd.get("workers", "?"), py.get("processes", "?")))
        L.append("| /metrics | p50 ms | p90 ms | p99 ms | max ms | scrapes "
                 "| series | bytes | server CPU ms/scrape |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, x, cpu in (("digestd", dd, "supervisor_cpu_ms_per_scrape"),
                             ("prometheus_client multiprocess", py,
                              "server_cpu_ms_per_scrape")):
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt(x.get("p50_ms"), 3), fmt(x.get("p90_ms"), 3),
                fmt(x.get("p99_ms"), 3), fmt(x.get("max_ms"), 3),
                x.get("scrapes", "?"), x.get("series", "?"),
                x.get("body_bytes", "?"), fmt(x.get(cpu), 3)))
        L.append("\nSpeed-up: %s at p50, %s at p99." % (
            fmt(sc.get("speedup_p50"), 1), fmt(sc.get("speedup_p99"), 1)))
        mi, pm = sc.get("micro", {}), sc.get("python_micro", {})
        if mi and pm:
            L.append(" Per update in a worker: metric_inc %s ns and "
                     "metric_observe %s ns, against %s ns and %s ns for "
                     "prometheus_client's multiprocess Counter.inc and "
                     "Histogram.observe." % (
                         fmt(mi.get("metric_inc_ns"), 2),
                         fmt(mi.get("metric_observe_ns"), 2),
                         fmt(pm.get("inc_ns"), 0), fmt(pm.get("observe_ns"), 0)))
        L.append("")
    elif sc and "error" not in sc:
        L.append("From `bench/scrape_bench.py`:\n")
        L.append("```")
        L.append(json.dumps({k: v for k, v in sc.items()
                             if not k.startswith("raw")}, indent=1,
                            sort_keys=True)[:4000])
        L.append("```\n")
    else:
        L.append("Not measured: %s\n" % sc.get("error", "skipped"))

    L.append("## 7. Targets missed, and why\n")
    missed = [k for k in TARGETS if met(k, f[k]) is False]
    if not missed:
        L.append("None.\n")
    for k in missed:
        L.append("### %s: %s (target %s %s)\n" % (
            TARGETS[k][2], fmt(f[k]), TARGETS[k][0], fmt(float(TARGETS[k][1]))))
        L.append(r.get("why", {}).get(k, "No analysis recorded.") + "\n")
        if k in profiles:
            L.append("```")
            L.extend(profiles[k])
            L.append("```\n")

    L.append("## Reproduce\n")
    L.append("```sh\nmake bench                      # everything, about "
             "%d minutes here\n/usr/bin/python3 bench/run.py --only e2e   # one part\n"
             "/usr/bin/python3 bench/bench_e2e.py --help\n```\n" % max(1, round(took / 60)))
    with open(os.path.join(OUT, "REPORT.md"), "w") as fp:
        fp.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only",
                    default="render,checkpoint,smtp,worker,e2e,amqp,"
                    "amqp_e2e,memory,supervisor,scrape,profile")
    ap.add_argument("--report", action="store_true",
                    help="write REPORT.md and the plot again from "
                    "results.json, measuring nothing")
    args = ap.parse_args()
    if args.report:
        with open(os.path.join(OUT, "results.json")) as fp:
            r = json.load(fp)
        f = figures(r)
        err = plot(r)
        if err:
            log(err)
        report(r, f, r.get("profiles", {}), 0, r["seconds"])
        log("report written again from results.json")
        return
    only = set(args.only.split(","))
    os.makedirs(OUT, exist_ok=True)
    started = time.monotonic()
    r = {"machine": machine(), "load_before": loadavg(), "quick": args.quick}
    q = args.quick

    if "render" in only:
        r["render"] = bench_render(1 if q else 3)
    if "checkpoint" in only:
        r["checkpoint"] = bench_checkpoint(50000 if q else 200000)
    if "smtp" in only:
        r["smtp"] = bench_smtp_path(q)
    if "worker" in only:
        a = ["--groups", "100", "--members", "10000", "--posts", "1000",
             "--rounds", "3"] if q else []
        r["worker"] = run_json("worker", [PY, os.path.join(HERE,
                                                           "bench_worker.py")]
                               + a, 600)
    if "e2e" in only:
        # The quick data's groups are smaller: a lower threshold gives its
        # priority queue the same share of the work (bench_e2e.SHARD_NOTE).
        a = ["--groups", "500", "--members", "50000", "--posts", "5000",
             "--priority-threshold", "300"] if q \
            else ["--groups", "2000", "--members", "200000", "--posts", "20000",
                  # The relay takes about 1 ms of CPU a message: its
                  # three rounds on the quick data keep the run in minutes.
                  "--relay-data", "500,50000,5000"]
        # Three rounds of digestd and smtp-source against each of the two
        # sinks; the postfix relay takes about 1 ms of CPU per message.
        limit = 900 if q else 1800
        r["e2e"] = run_json("e2e", [PY, os.path.join(HERE, "bench_e2e.py")]
                            + a + ["--budget", str(limit - 60)], limit)
    if "amqp" in only:
        a = ["--jobs", "4", "--runs", "1"] if q else []
        r["amqp"] = run_json("amqp", [PY, os.path.join(HERE, "bench_amqp.py")] + a, 600)
    if "amqp_e2e" in only:
        a = ["--groups", "500", "--members", "50000", "--posts", "5000",
             "--deadline", "540"] if q else ["--deadline", "1140"]
        r["amqp_e2e"] = run_json("amqp_e2e", [PY, os.path.join(
            HERE, "bench_e2e_amqp.py")] + a, 600 if q else 1200)
    if "memory" in only:
        a = ["--members", "100000"] if q else []
        r["memory"] = run_json("memory", [PY, os.path.join(HERE, "bench_memory.py")] + a, 420)
    if "supervisor" in only:
        a = ["--kills", "100", "--stalls", "2"] if q else []
        r["supervisor"] = run_json("supervisor",
                                   [PY, os.path.join(HERE, "bench_supervisor.py")] + a, 420)
    if "scrape" in only:
        sb = os.path.join(HERE, "scrape_bench.py")
        if os.path.exists(sb):
            a = ["--quick"] if q else []
            r["scrape"] = run_json("scrape", [PY, sb] + a, 300)
        else:
            r["scrape"] = {"error": "bench/scrape_bench.py is missing"}

    r["load_after"] = loadavg()
    f = figures(r)
    r["figures"] = f
    r["why"] = {}
    profiles = {}
    missed = [k for k in TARGETS if met(k, f[k]) is False]
    if "profile" in only and missed:
        from profiles import explain
        explain(r, f, missed, profiles, quick=q, perf=perf_works(), log=log)
    own_why(r, missed)

    if regressions(f):
        log("guard: past the fixed baselines; measuring %s here" %
            GUARD_REFERENCE)
        r["guard_reference"] = guard_reference(q)

    if "e2e_relay_ratio" in missed:
        r["why"].setdefault("e2e_relay_ratio", relay_why(r["e2e"]))

    took = time.monotonic() - started
    r["seconds"] = took
    err = plot(r)
    if err:
        log(err)
    report(r, f, profiles, started, took)
    r["profiles"] = profiles
    with open(os.path.join(OUT, "results.json"), "w") as fp:
        json.dump(r, fp, indent=1, sort_keys=True)
        fp.write("\n")
    log("report: %s (%.0f s)" % (os.path.relpath(os.path.join(OUT, "REPORT.md"),
                                                 ROOT), took))
    for k in TARGETS:
        ok = met(k, f[k])
        log("%-45s %12s  %s" % (TARGETS[k][2], fmt(f[k]),
                                "n/a" if ok is None else ("ok" if ok else "MISSED")))
    g = regressions(f, r.get("guard_reference"))
    for k, v, base in g:
        log("REGRESSION: %s %.2f ms, above %.1f x %.2f ms" % (
            TARGETS[k][2], v, REGRESSION_FACTOR, base))
    if g:
        sys.exit(1)


if __name__ == "__main__":
    main()
