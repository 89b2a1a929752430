"""A worker that stops heartbeating (SIGSTOP) is SIGKILLed and replaced
within stall_timeout + 1 s, counted as `stall`."""
import os
import signal
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    alive, log_lines, proc_state, restarts, sup_config, wait_workers, workers)


def test_sigstop_worker_replaced_as_stall(tmp_path, redis_tcp, digestd_factory):
    text, _ = sup_config(tmp_path, redis_tcp,
                         {"priority": {"workers": 2}, "standard": {"workers": 1}},
                         supervisor="stall_timeout = 2s")
    d = digestd_factory(text).start()
    ws = wait_workers(d, 2, "priority")
    victim = sorted(ws)[0]
    others = set(workers(d)) - {victim}

    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    wait_for(lambda: proc_state(victim) == "T", timeout=2, what="stopped")
    # Replaced within stall_timeout + 1 s: gone, and a new ready worker.
    wait_for(lambda: not alive(victim), timeout=4, interval=0.01, what="stalled worker killed")
    wait_workers(d, 2, "priority", timeout=3, exclude={victim})
    elapsed = time.monotonic() - t0
    # stall_timeout runs from the last heartbeat, not from the SIGSTOP: an
    # idle worker beats once a fetch (1 s), so its last beat may be up to a
    # second old when it is stopped.
    assert 0.9 <= elapsed <= 3.0, elapsed

    # The others were left alone.
    assert all(alive(p) for p in others)
    lines = log_lines(d, "worker exited", reason="stall", worker=victim)
    assert lines, d.log()
    assert log_lines(d, "worker stalled: SIGKILL", worker=victim)
    wait_for(lambda: restarts(d, "priority", "stall") == 1, timeout=3, what="stall counted")
    assert restarts(d, "priority", "crash") == 0
    assert d.http_status("/readyz") == 200
