"""A slot whose worker keeps dying right after start is restarted with an
exponential backoff (min doubling to max, with jitter), so the crash loop
neither spins the supervisor's CPU nor slows the other pool."""
import os
import re
import signal
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    alive, checkpoint, enqueue, job_fields, log_lines, seed_group, sup_config,
    wait_workers, workers)


def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def test_crash_loop_backs_off_and_spares_other_pool(tmp_path, redis_tcp, digestd_factory):
    r = redis_tcp.client()
    text, _ = sup_config(tmp_path, redis_tcp,
                         {"bad": {"workers": 1}, "standard": {"workers": 1}},
                         supervisor="restart_backoff_min = 50ms\nrestart_backoff_max = 2s")
    d = digestd_factory(text).start()
    cpu0 = _cpu_s(d.pid())
    killed = set()
    stamps = []
    for _ in range(8):
        (w,) = wait_workers(d, 1, "bad", timeout=5, exclude=killed)
        stamps.append(time.monotonic())
        os.kill(w, signal.SIGKILL)
        killed.add(w)
    # The other pool still takes and finishes jobs promptly.
    uids = seed_group(r, 81, members=3)
    f = job_fields(81, uids)
    t0 = time.monotonic()
    enqueue(r, "standard", f)
    wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=5,
             what="standard job done during the crash loop")
    assert time.monotonic() - t0 < 2.5

    # The last death is logged when the supervisor reaps it, which may come
    # after the other pool's job is done.
    def delays_logged():
        return [int(m) for m in re.findall(r'restarting bad#0 in (\d+) ms', d.log())]
    wait_for(lambda: len(delays_logged()) >= 7, timeout=5, what="7 restarts logged")
    delays = delays_logged()
    # First death restarts at once; then 50, 100, 200, ... 2000 (+/-25%,
    # in whole milliseconds: base - base/4 plus 0..base/2, as backoff.c does).
    # A worker that ran as long as the longest wait (2 s) would count as
    # healthy and reset the sequence: the max is far above the time the
    # test takes to see a worker and kill it, even on a loaded machine.
    assert len(delays) == 7, d.log()
    want = [50, 100, 200, 400, 800, 1600, 2000]
    for got, base in zip(delays, want):
        lo = base - base // 4
        assert lo <= got <= min(lo + base // 2, 2000), (delays, want)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps[-1] >= 1.19          # really waited out the 7th death's 1600 ms
    assert _cpu_s(d.pid()) - cpu0 < 1.0
    assert not log_lines(d, "worker exited", pool="standard")
