"""End-to-end throughput, measured (run with DIGESTD_BENCH=1 and -s): 10
groups of 2,000 eligible members, 2 workers, to the SMTP sink and to a
maildir on tmpfs.  Prints emails/s, worker CPU per email and the workers'
peak RSS; asserts only that every member got exactly one email.

The SMTP sink is aiosmtpd in this Python process: it is usually what
limits the SMTP figure, and the print says how much CPU it used.
"""
import collections
import os
import resource
import shutil
import time

import pytest

from lib.harness import Digestd
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, rcpts, wait_done, window)

GROUPS, MEMBERS = 10, 2000

pytestmark = pytest.mark.skipif(not os.environ.get("DIGESTD_BENCH"),
                                reason="a measurement: DIGESTD_BENCH=1")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def seed(r, we):
    data = Data(r)
    pipe = r.pipeline(transaction=False)
    for g in range(1, GROUPS + 1):
        data.group(g, name="Group %d" % g)
        base = g * 1000000
        data.members(g, range(base, base + MEMBERS))
        for u in range(base, base + MEMBERS):
            pipe.hset("user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                              "name": "User %d" % u})
        for i in range(10):
            pid = g * 100 + i
            pipe.zadd("group:%d:posts" % g, {str(pid): we - 100 - i})
            pipe.hset("post:%d" % pid, mapping={
                "title": "Post %d of group %d" % (i, g),
                "url": "https://example.com/p/%d" % pid, "author_id": "1",
                "author_name": "Someone", "likes": str(i), "comments": "2",
                "excerpt": "Lorem ipsum dolor sit amet " * 8})
    pipe.execute()


@pytest.mark.parametrize("transport", ["smtp", "maildir"])
def test_pipeline_throughput(tmp_path, redis_tcp, smtp_sink, transport):
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    outbox = "/dev/shm/digestd-bench-%d" % os.getpid()
    shutil.rmtree(outbox, ignore_errors=True)
    cfg = config(tmp_path, redis_tcp, workers=2, memory_limit="32M",
                 sink=smtp_sink if transport == "smtp" else None, maildir=outbox)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        pids = [w["pid"] for w in d.status()["workers"]]
        c0 = sum(cpu_s(p) for p in pids)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        jids = [enqueue(r, g, "daily", ws, we) for g in range(1, GROUPS + 1)]
        for j in jids:
            wait_done(r, j, timeout=1200, d=d)
        took = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        wcpu = sum(cpu_s(p) for p in pids) - c0
        if transport == "smtp":
            got = collections.Counter(rcpts(smtp_sink))
        else:
            got = collections.Counter(os.listdir(os.path.join(outbox, "new")))
        n = sum(got.values())
        assert n == GROUPS * MEMBERS and max(got.values()) == 1
        print("\n%s: %d emails in %.2f s = %.0f emails/s with 2 workers; worker "
              "CPU %.0f us/email; peak RSS %s MiB; this process (sink) %.1f s CPU"
              % (transport, n, took, n / took, wcpu / n * 1e6,
                 ["%.1f" % vm_hwm_mib(p) for p in pids],
                 ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime))
    finally:
        d.kill()
        shutil.rmtree(outbox, ignore_errors=True)
