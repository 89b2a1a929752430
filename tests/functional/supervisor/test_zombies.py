"""No zombie after 100 kill/restart cycles, and no worker outlives a
supervisor killed with SIGKILL (PR_SET_PDEATHSIG)."""
import os
import signal
import time

from lib.harness import wait_for, zombies_of
from lib.supervisor_fixtures import (  # noqa: F401
    alive, log_lines, sup_config, wait_workers, workers)


def test_no_zombie_after_100_kill_cycles(tmp_path, redis_tcp, digestd_factory):
    text, _ = sup_config(tmp_path, redis_tcp,
                         {"priority": {"workers": 2}, "standard": {"workers": 2}},
                         supervisor="restart_backoff_min = 5ms\nrestart_backoff_max = 50ms")
    d = digestd_factory(text).start()
    killed = set()
    for i in range(100):
        ws = wait_workers(d, 2, "priority", timeout=10, exclude=killed)
        victim = sorted(ws)[i % 2]
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
    wait_workers(d, 2, "priority", timeout=10, exclude=killed)
    wait_workers(d, 2, "standard", timeout=5)
    time.sleep(0.3)
    assert zombies_of(d.pid()) == []
    assert not any(alive(p) for p in killed)
    assert len(log_lines(d, "worker exited", reason="crash")) == 100
    # The other pool was not disturbed.
    assert not log_lines(d, "worker exited", pool="standard")
    assert d.http_status("/readyz") == 200
    assert d.stop() == 0
    assert zombies_of(d.pid()) == []


def test_no_worker_outlives_a_killed_supervisor(tmp_path, redis_tcp, digestd_factory):
    text, _ = sup_config(tmp_path, redis_tcp,
                         {"priority": {"workers": 3}, "standard": {"workers": 2}})
    d = digestd_factory(text).start()
    pids = list(wait_workers(d, 3, "priority")) + list(wait_workers(d, 2, "standard"))
    os.kill(d.pid(), signal.SIGKILL)
    d.proc.wait(timeout=5)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=3,
             what="workers gone with their supervisor")
