#!/usr/bin/env python3
"""Measure worker replacement latency: SIGKILL a worker, then read from
digestd's debug log when the supervisor reaped it, forked the replacement
and saw it ready.  The log's mono_ns is CLOCK_MONOTONIC, the same clock as
time.monotonic_ns() here, so kill-to-fork and kill-to-ready are measured
from the moment of the kill.

Each kill takes the oldest worker of many, so that every slot has run longer
than the backoff's healthy threshold when it is killed again: the figures
are the restart path itself, with no backoff delay in them.

    /usr/bin/python3 tests/functional/lib/supervisor_latency.py [KILLS]
"""
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import pathlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lib.harness import Digestd, TcpRedis, wait_for, write_config  # noqa: E402
from lib.supervisor_fixtures import alive, sup_config, workers  # noqa: E402

WORKERS = 40
PACE = 1.2 / WORKERS     # each slot is killed again after ~1.2 s


def parse(log):
    ev = {}
    for line in log.splitlines():
        m = re.search(r'msg="?(worker started|worker ready|worker exited)', line)
        if not m:
            continue
        kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        ev.setdefault(m.group(1), []).append(
            (int(kv["sb_slot"]), int(kv["worker"]), int(kv["mono_ns"])))
    return ev


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="digestd-latency-"))
    srv = TcpRedis(tmp / "redis").start()
    d = None
    try:
        text, _ = sup_config(tmp, srv, {"priority": {"workers": WORKERS}},
                             supervisor="log_level = debug\nrestart_backoff_min = 10ms\n"
                                        "restart_backoff_max = 1s")
        d = Digestd(write_config(tmp, text), tmp).start()
        wait_for(lambda: len(workers(d)) == WORKERS, timeout=30, what="workers")
        time.sleep(1.2)
        killed = []
        dead = set()
        for i in range(kills):
            # The oldest worker (pids grow): it has run ~WORKERS * PACE.
            victim = min(p for p in workers(d) if p not in dead)
            t = time.monotonic_ns()
            os.kill(victim, signal.SIGKILL)
            killed.append((victim, t))
            dead.add(victim)
            time.sleep(PACE)
        wait_for(lambda: len([p for p in workers(d) if alive(p)]) == WORKERS, timeout=30,
                 what="all replaced")
        time.sleep(0.5)
        ev = parse(d.log())
        exited = {pid: (slot, ns) for slot, pid, ns in ev.get("worker exited", [])}
        started = ev.get("worker started", [])
        ready = {pid: ns for slot, pid, ns in ev.get("worker ready", [])}
        reap, fork, rdy = [], [], []
        for victim, t in killed:
            if victim not in exited:
                continue
            slot, reaped = exited[victim]
            nxt = [(ns, pid) for s, pid, ns in started if s == slot and ns >= reaped]
            if not nxt:
                continue
            fns, npid = min(nxt)
            reap.append((reaped - t) / 1e3)
            fork.append((fns - t) / 1e3)
            if npid in ready:
                rdy.append((ready[npid] - t) / 1e3)
        print("kills: %d, measured: %d (fork) %d (ready)" % (kills, len(fork), len(rdy)))
        for name, xs in (("kill to reap", reap), ("kill to fork", fork),
                         ("kill to ready", rdy)):
            print("%-14s us: median %7.0f  p90 %7.0f  p99 %7.0f  max %7.0f  mean %7.0f" % (
                name, statistics.median(xs), pct(xs, 90), pct(xs, 99), max(xs),
                statistics.mean(xs)))
    finally:
        if d is not None:
            d.stop()
            d.kill()
        srv.stop()


if __name__ == "__main__":
    main()
