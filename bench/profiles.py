"""For each target that bench/run.py found missed: the profile that
explains it and a short analysis, both put in the report.

- worker CPU per email and the end-to-end ratio: perf record (cpu-clock,
  a software event, so it works in a VM without hardware counters) of
  every worker during a smaller end-to-end run, reported by shared object
  and by symbol; addresses in stripped libraries (libesmtp) are named
  after the nearest exported symbol before them.
- Redis round trips: the per-job command table of the same run.
- fork and ready latencies: the supervisor's own log splits kill to reap
  (the kernel and the scheduler) from reap to fork (digestd), and perf
  sched record of a shorter kill test shows how long the supervisor
  waited for a core.
"""
import bisect
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")


def _dyn_symbols(lib):
    p = subprocess.run(["nm", "-D", "--defined-only", lib],
                       capture_output=True, text=True, timeout=30)
    syms = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return syms


def _name_addresses(rows, libs):
    """Replace 0x... in rows of a stripped library by symbol+offset."""
    cache = {}
    out = []
    for row in rows:
        m = re.search(r"(\S+\.so[.\d]*)\s+\[\.\]\s+(0x[0-9a-f]+)", row)
        if m and m.group(1) in libs:
            lib = libs[m.group(1)]
            if lib not in cache:
                cache[lib] = _dyn_symbols(lib)
            syms = cache[lib]
            addr = int(m.group(2), 16)
            i = bisect.bisect_right([a for a, _ in syms], addr) - 1
            if i >= 0:
                # Stripped: the nearest exported symbol before the address
                # only places it; the function itself may be a static one.
                row = row.replace(m.group(2), "%s (after %s)" % (
                    m.group(2), syms[i][1]))
        out.append(row)
    return out


def _perf_e2e(r, profiles, quick, log):
    from run import perf_report
    data = os.path.join(OUT, "perf-workers.data")
    path = os.path.join(OUT, "e2e-profiled.json")
    a = ["--groups", "500", "--members", "50000", "--posts", "5000"]
    log("profile: perf record of the workers over a smaller end-to-end run")
    p = subprocess.run([sys.executable, os.path.join(HERE, "bench_e2e.py")]
                       + a + ["--perf", data, "--out", path],
                       capture_output=True, text=True, timeout=400)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        return None, "perf run failed: %s" % p.stderr[-800:]
    rep = perf_report(data, lines=30)
    libs = {}
    for row in rep["by_symbol"]:
        m = re.search(r"(\S+\.so[.\d]*)\s+\[\.\]\s+0x", row)
        if m:
            for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
                cand = os.path.join(d, m.group(1))
                if os.path.exists(cand):
                    libs[m.group(1)] = cand
    rep["by_symbol"] = _name_addresses(rep["by_symbol"], libs)
    for junk in (data, data + ".stat", data + ".old"):
        try:
            os.unlink(junk)
        except OSError:
            pass
    with open(path) as f:
        run = json.load(f)
    return (rep, run), None


def _dso_share(rows, name):
    for row in rows:
        if name in row:
            m = re.match(r"\s*([\d.]+)%", row)
            if m:
                return float(m.group(1))
    return 0.0


def explain(r, f, missed, profiles, quick=False, perf=True, log=print):
    why = r["why"]
    e = r.get("e2e", {})
    if ("worker_cpu_us" in missed or "e2e_ratio" in missed):
        if not perf:
            txt = ("perf cannot record here (perf record -e cpu-clock "
                   "failed), so no profile was taken.")
            res = None
        else:
            res, err = _perf_e2e(r, profiles, quick, log)
            txt = err or ""
        if res is not None:
            rep, run = res
            dso = rep["by_dso"]
            k, libc = _dso_share(dso, "kernel"), _dso_share(dso, "libc.so")
            esmtp = _dso_share(dso, "libesmtp")
            hired = _dso_share(dso, "libhiredis")
            ours = _dso_share(dso, "digestd")
            strcb = sum(float(re.match(r"\s*([\d.]+)%", row).group(1))
                        for row in rep["by_symbol"]
                        if "after _smtp_message_str_cb" in row
                        and re.match(r"\s*[\d.]+%", row))
            rd = run.get("redis", {})
            txt = (
                "Profile: `perf record -e cpu-clock -g` of the %d workers "
                "over a smaller end-to-end run (%d emails, %.1f us of worker "
                "CPU per email in that run, %.2f Redis round trips per "
                "email). Where the workers' CPU goes: kernel %.0f%%, libc "
                "%.0f%%, libesmtp %.0f%%, hiredis %.0f%%, digestd's own "
                "code %.0f%%. Rendering, the part that is ours (2 to 3 us "
                "per email, item 2), is a small share; the rest is the "
                "SMTP exchange, one transaction per email:\n\n"
                "- the kernel: socket writes, reads and polls, and the "
                "context switches of waiting for replies (its top symbol "
                "is `finish_task_switch`); counts below;\n"
                "- libesmtp: %.0f%% of all samples in one unexported "
                "function (placed after `_smtp_message_str_cb`; our "
                "transport already hands the message over in one piece "
                "with `smtp_set_messagecb`), whose code copies the message "
                "into a line buffer one byte at a time looking for CRLF: "
                "libesmtp's own line reader, which we cannot change from "
                "outside; much of libc's share (malloc/free, vfprintf) is "
                "libesmtp's per-message bookkeeping and hiredis's command "
                "formatting.\n\n"
                "There is no small fix in our code: what is left beyond "
                "the libESMTP floor measured below is rendering, the Redis "
                "reads of each batch and the checkpoint. Going lower means "
                "an SMTP writer of our own (pipelined commands and the "
                "message written in one piece on a TCP_NODELAY socket), "
                "which the design does not allow (it names libESMTP). "
                "The machine was also shared: the load average stood at "
                "%s during the run, so CPU time per email includes cache "
                "and scheduler interference." % (
                    run["digestd"]["workers"], run["digestd"]["emails"],
                    run["digestd"]["worker_cpu_us_per_email"],
                    rd.get("round_trips_per_email", 0), k, libc,
                    esmtp, hired, ours, strcb,
                    " ".join(r.get("load_before", []))))
            ps = run.get("perf_stat", {})
            n = float(run["digestd"]["emails"])
            jobs = max(1.0, run["digestd"]["jobs_ok"])

            def per(ev):
                return ps.get(ev, 0) / n
            if ps:
                txt += (
                    "\n\nCounted over the same run (perf stat on the "
                    "workers): %.1f syscalls per email, of which %.1f "
                    "write, %.1f read and %.1f poll, and %.1f context "
                    "switches per email; %.2f connect per job (about one "
                    "SMTP session per job)." % (
                        per("raw_syscalls:sys_enter"),
                        per("syscalls:sys_enter_write"),
                        per("syscalls:sys_enter_read"),
                        per("syscalls:sys_enter_poll"),
                        per("context-switches"),
                        ps.get("syscalls:sys_enter_connect", 0) / jobs))
            stat_rows = ["perf stat (workers), per email:"] + [
                "  %-34s %10.0f  %8.3f" % (k, v, v / n)
                for k, v in sorted(ps.items()) if k != "cpu-clock"]
            le = e.get("libesmtp", {})
            if "us_per_message" in le:
                wk = e["digestd"]["worker_cpu_us_per_email"]
                txt += (
                    "\n\nThe floor: libESMTP alone (bench/bench_smtp.c, "
                    "same sink, same size, %d messages per session, "
                    "nothing else) costs %.1f us of CPU per message here, "
                    "%.1f times the whole target, in the same run where a "
                    "worker spent %.1f us per email; smtp-source itself, "
                    "a C client with no library, spent %s us per message "
                    "in the ceiling run. As long as the transport is "
                    "libESMTP, 15 us per email cannot be reached "
                    "on this machine; what is ours is the other %.1f us." % (
                        le["per_session"], le["us_per_message"],
                        le["us_per_message"] / 15.0, wk,
                        "%.1f" % e["ceiling"]["client_cpu_us_per_email"]
                        if "client_cpu_us_per_email" in e.get("ceiling", {})
                        else "?",
                        max(0.0, wk - le["us_per_message"])))
            profiles["worker_cpu_us"] = (
                stat_rows + [""] +
                ["perf report --sort dso (workers, cpu-clock)"] + dso[:12] +
                ["", "perf report --sort dso,sym"] + rep["by_symbol"][:30])
        why["worker_cpu_us"] = txt
        if "e2e_ratio" in missed and "ratio" in e:
            dd, c = e["digestd"], e["ceiling"]
            why["e2e_ratio"] = (
                "digestd reached %.0f emails/s against smtp-source's %.0f "
                "on the same sink with %d sessions. On 2 cores, the %d "
                "workers, Redis, smtp-sink (%.1f s of CPU for digestd's "
                "run) and the rest of the machine share the CPU: the "
                "workers' %.1f s of CPU for %d emails (%.0f us each; see "
                "the worker CPU profile below the next heading) is what "
                "holds the rate down: smtp-source spends %s us of CPU per "
                "message, libESMTP alone %s (the floor, below)." % (
                    dd["emails_per_sec"], c["emails_per_sec"], c["sessions"],
                    dd["workers"], dd["sink_cpu_seconds"],
                    dd["worker_cpu_seconds"], dd["emails"],
                    dd["worker_cpu_us_per_email"],
                    "%.1f" % c["client_cpu_us_per_email"]
                    if "client_cpu_us_per_email" in c else "?",
                    "%.1f" % e["libesmtp"]["us_per_message"]
                    if "us_per_message" in e.get("libesmtp", {}) else "?"))
            if "worker_cpu_us" in profiles:
                profiles["e2e_ratio"] = ["see the worker CPU profile below"]

    if "redis_rtt_per_email" in missed and "redis" in e:
        rd, dd = e["redis"], e["digestd"]
        jobs = max(1, dd["jobs_ok"])
        sr = rd.get("schedule_reads", 0)
        wr = rd["reads"] - sr
        epj = dd["emails"] / jobs
        if wr / dd["emails"] >= 1.0:
            per_email = (
                "At least one read per email means a Redis read inside "
                "the per-message loop: the checkpoint saved as each "
                "message is confirmed (`digest_result_cb` -> `digest_save` "
                "-> `checkpoint_save`), on top of the per-job reads.")
        else:
            per_email = (
                "With reads fixed per job whatever its size, the ratio is "
                "set by emails per job: at %.1f reads per job, 1.05 needs "
                "%.0f emails per job." % (wr / jobs, (wr / jobs) / 1.05))
        why["redis_rtt_per_email"] = (
            "`digestctl schedule` made %d of the %d client reads (its "
            "commands are pipelined per page); the workers made the other "
            "%d for %d emails in %d jobs: %.3f per email, %.1f per job, "
            "with %.0f emails per job on average in this data (Zipf group "
            "sizes: most groups are small). From the code, a job's reads "
            "are: XREADGROUP (common/queue_redis.c); the checkpoint's "
            "HMGET and its begin pipeline (`checkpoint_load`, "
            "`checkpoint_begin`, common/checkpoint.c); in "
            "`activity_group` (worker/activity.c) the group pipeline "
            "(HMGET group, ZCARD, ZREVRANGEBYSCORE posts), the posts' "
            "ranking round (HMGET, HLEN) and their text round (HMGET); per "
            "batch in `activity_members` the members' ZRANGEBYSCORE, then "
            "in `activity_users` the users' HMGETs; the checkpoint as the "
            "transport confirms (`digest_save` -> `checkpoint_save`); `checkpoint_finish`; "
            "XACK. %s Merging what does not depend on an earlier reply "
            "(the checkpoint's HMGET with its begin pipeline, the first "
            "members' ZRANGEBYSCORE with the group pipeline, the posts' "
            "two rounds into one, the finish with the XACK on one "
            "connection) would save about four reads per job. Not changed "
            "here: it is the job path of worker/activity.c, worker/digest.c, "
            "common/checkpoint.c and common/queue_redis.c, and needs its "
            "own tests." % (
                sr, rd["reads"], wr, dd["emails"], jobs, wr / dd["emails"],
                wr / jobs, epj, per_email))

    s = r.get("supervisor", {}).get("digestd", {})
    if "fork_p99_ms" in missed and s and perf:
        path = os.path.join(OUT, "supervisor-sched.json")
        log("profile: perf sched record of a shorter kill test")
        p = subprocess.run(
            [sys.executable, os.path.join(HERE, "bench_supervisor.py"),
             "--kills", "300", "--stalls", "0", "--php", "0", "--sched",
             os.path.join(OUT, "sched.data"), "--out", path],
            capture_output=True, text=True, timeout=300)
        sys.stdout.write(p.stdout)
        try:
            with open(path) as f:
                sr = json.load(f)
        except (OSError, ValueError):
            sr = {}
        sc_ = sr.get("sched", {})
        if sc_.get("supervisor_row"):
            kf = sr["digestd"]["log_kill_to_fork_us"]
            profiles["fork_p99_ms"] = (
                ["perf sched latency --pids --sort max, during %d kills "
                 "(kill to fork p50 %.3f ms, p99 %.3f ms in that run)" % (
                     kf["n"], kf["p50"] / 1000, kf["p99"] / 1000),
                 "the supervisor:", "  " + sc_["supervisor_row"],
                 "the longest waits on the machine:"] +
                ["  " + x for x in sc_["top_rows"]])
            why["fork_p99_sched"] = (
                " The scheduler's record of a shorter kill test (perf sched, "
                "system-wide; the profile below): the supervisor was "
                "switched in %d times and waited for a core %.3f ms on "
                "average and up to %.3f ms after being woken, while its "
                "own work from reap to fork stays under a millisecond." % (
                    sc_.get("supervisor_switches", 0),
                    sc_.get("supervisor_avg_delay_ms", 0),
                    sc_.get("supervisor_max_delay_ms", 0)))
    if "fork_p99_ms" in missed and s:
        kf, rf = s["log_kill_to_fork_us"], s["log_reap_to_fork_us"]
        why["fork_p99_ms"] = (
            "digestd's own log splits the latency: reap to fork (digestd's "
            "code: SIGCHLD in the event loop, waitpid, requeue, fork) is "
            "p50 %.3f ms, p99 %.3f ms; kill to fork is p50 %.3f ms, p99 "
            "%.3f ms. The difference is the kernel delivering SIGCHLD and "
            "the scheduler giving the supervisor a core, on 2 cores shared "
            "by the %d workers, the benchmark's poller and other work "
            "(load average %s). php-fpm, measured by the same "
            "code in the same run, shows the same tail (table above). "
            "Nothing in digestd to fix: its own part is the reap-to-fork "
            "figure." % (
                rf["p50"] / 1000, rf["p99"] / 1000, kf["p50"] / 1000,
                kf["p99"] / 1000, s.get("workers", 0),
                " ".join(r.get("load_before", []))))
        why["fork_p99_ms"] += why.pop("fork_p99_sched", "")
    if "ready_p99_ms" in missed and s:
        why["ready_p99_ms"] = (
            "Ready includes the new worker's connection to Redis and its "
            "first XREADGROUP; see the kill to ready (log) row for the "
            "figure without polling.")
    sc = r.get("scrape", {})
    if "scrape_p99_ms" in missed and isinstance(sc.get("digestd"), dict):
        dd = sc["digestd"]
        mi = sc.get("micro", {})
        why["scrape_p99_ms"] = (
            "The supervisor spends %.2f ms of CPU per scrape on average "
            "(its utime + stime over the scrapes), and the formatting "
            "itself measures %s us for the text body and %s us for the "
            "snapshot of %s workers' cells in bench_metrics; p50 is %.3f "
            "ms. A p99 of %.3f ms is therefore time spent waiting for a "
            "core, not work: the supervisor, its 64 workers, the scraping "
            "client and the rest of the machine "
            "(load average %s before the run, %s after) share 2 cores. "
            "Nothing to fix in the exposition; the figure should be read "
            "on a machine that is not running other work." % (
                dd.get("supervisor_cpu_ms_per_scrape", 0),
                mi.get("format_text_us", "?"), mi.get("snapshot_us", "?"),
                mi.get("workers", "?"), dd.get("p50_ms", 0),
                dd.get("p99_ms", 0), " ".join(r.get("load_before", [])),
                " ".join(r.get("load_after", []))))
    if "scrape_speedup" in missed and isinstance(sc.get("digestd"), dict):
        dd, py = sc["digestd"], sc.get("python", {})
        dc = dd.get("supervisor_cpu_ms_per_scrape") or 0
        pc = py.get("server_cpu_ms_per_scrape") or 0
        why["scrape_speedup"] = (
            "The speed-up is taken at p99, the strictest reading: %.1fx. "
            "At p50 it is %.1fx, and in server CPU per scrape %.0fx "
            "(%.3f ms for digestd's supervisor, %.3f ms for "
            "prometheus_client's collector). digestd's p99 (%.3f ms) is "
            "%.0f times its p90 (%.3f ms) while its CPU per scrape stays "
            "at %.3f ms: its tail is waiting for a core on a shared "
            "2-core machine (load average %s before the run, %s after), "
            "which a 20 ms scrape of Python hardly notices in relative "
            "terms. Nothing to fix in the exposition: the p50 and CPU "
            "ratios are what the code does; the p99 ratio is what the "
            "machine allowed during this run." % (
                sc.get("speedup_p99") or 0, sc.get("speedup_p50") or 0,
                pc / dc if dc else 0, dc, pc, dd.get("p99_ms", 0),
                dd.get("p99_ms", 0) / max(1e-9, dd.get("p90_ms", 1)),
                dd.get("p90_ms", 0), dc,
                " ".join(r.get("load_before", [])),
                " ".join(r.get("load_after", []))))
    for k in missed:
        why.setdefault(k, "No profile was taken for this target: see the "
                          "raw figures in results.json.")
