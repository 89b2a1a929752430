"""Start-up: a SIGHUP (or several) during start-up is kept for the loop,
never fatal; `digestd -t` checks a file with no server and exits 0 or 1;
-v; a port in use and an unknown user exit 2; a bad config exits 1."""
import os
import signal
import socket
import subprocess
import time

from lib.harness import DIGESTD, free_port, wait_for, write_config
from lib.supervisor_fixtures import (  # noqa: F401
    log_lines, sup_config, wait_workers, workers)


def _sig_held(pid):
    """SigBlk | SigCgt of pid: SIGHUP is blocked or caught, not fatal."""
    out = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("SigBlk:", "SigCgt:")):
                    out |= int(line.split()[1], 16)
    except OSError:
        return 0
    return out


def test_sighup_during_startup_is_not_fatal(tmp_path, redis_tcp, digestd_factory):
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}})
    d = digestd_factory(text)
    d.start(wait_ready=False)
    pid = d.pid()
    # As soon as main() has blocked (then caught) SIGHUP, before the loop runs.
    wait_for(lambda: _sig_held(pid) & (1 << (signal.SIGHUP - 1)) or d.exited(),
             timeout=5, interval=0.0005, what="signals blocked")
    for _ in range(3):
        os.kill(pid, signal.SIGHUP)
    wait_for(lambda: d.http_status("/readyz") == 200 or d.exited(), timeout=15,
             what="ready")
    assert not d.exited(), d.log()
    wait_for(lambda: log_lines(d, "configuration reloaded: 1 pool(s)"), timeout=5,
             what="the early SIGHUP handled by the loop")
    wait_workers(d, 2, "priority")
    assert d.stop() == 0


def _run(*args):
    return subprocess.run([DIGESTD] + list(args), capture_output=True, text=True, timeout=20)


def test_config_check_exit_codes(tmp_path):
    # No server runs: -t must not need one.
    text = """[supervisor]
listen = 127.0.0.1:1
[redis]
host = 127.0.0.1
port = 1
[digest]
unsubscribe_secret = startup-secret-0123456789abcdef01
[pool.priority]
workers = 2
"""
    good = write_config(tmp_path, text, "good.conf")
    p = _run("-t", "-c", good)
    assert p.returncode == 0, p.stderr
    assert "successful" in p.stdout

    bad = write_config(tmp_path, text.replace("workers = 2", "workers = lots"), "bad.conf")
    p = _run("-t", "-c", bad)
    assert p.returncode == 1
    assert "bad.conf:9" in p.stderr and "workers" in p.stderr

    missing = write_config(tmp_path, text.replace("unsubscribe_secret = startup-secret-0123456789abcdef01\n", ""), "m.conf")
    p = _run("-t", "-c", missing)
    assert p.returncode == 1
    assert "unsubscribe_secret" in p.stderr and "required" in p.stderr
    assert _run("-t", "-c", str(tmp_path / "nope.conf")).returncode == 1

    # Starting for real with a bad file: 1 too.
    assert _run("-c", bad).returncode == 1
    p = _run("-v")
    assert p.returncode == 0 and p.stdout.startswith("digestd ")
    assert _run("-h").returncode == 0
    assert _run().returncode == 1


def test_port_in_use_and_unknown_user_exit_2(tmp_path, redis_tcp):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}}, port=port)
        path = write_config(tmp_path, text, "busy.conf")
        p = subprocess.run([DIGESTD, "-c", path], capture_output=True, text=True,
                           timeout=20, cwd=str(tmp_path))
        assert p.returncode == 2, p.stderr

    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                         supervisor="user = no-such-user-digestd")
    path = write_config(tmp_path, text, "user.conf")
    p = subprocess.run([DIGESTD, "-c", path], capture_output=True, text=True,
                       timeout=20, cwd=str(tmp_path))
    assert p.returncode == 2, p.stderr
    assert "no-such-user-digestd" in p.stderr


def test_user_drops_privileges_after_binding(tmp_path, redis_tcp, digestd_factory):
    import pwd

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to change user")
    nobody = pwd.getpwnam("nobody")
    os.chmod(str(tmp_path), 0o755)
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}},
                         supervisor="user = nobody")
    d = digestd_factory(text).start()
    ws = wait_workers(d, 2, "priority")

    def uids(pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return set(int(x) for x in line.split()[1:])
    assert uids(d.pid()) == {nobody.pw_uid}
    for p in ws:
        assert uids(p) == {nobody.pw_uid}
    assert d.http_status("/healthz") == 200
    assert d.stop() == 0
