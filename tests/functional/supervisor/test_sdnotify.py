"""systemd notify without libsystemd: MAINPID and READY=1 once every pool
has a ready worker, RELOADING=1 then READY=1 around a reload, STOPPING=1
on drain, WATCHDOG=1 at half of WATCHDOG_USEC; abstract sockets too."""
import os
import signal
import socket

from lib.harness import wait_for
from lib.supervisor_fixtures import sup_config, wait_workers  # noqa: F401


def _listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.1)
    return s


def _drain(s, got):
    while True:
        try:
            got.append(s.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return got


def _run(tmp_path, redis_tcp, digestd_factory, addr, bind):
    got = []
    s = _listen(bind)
    try:
        text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}})
        d = digestd_factory(text, env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "400000"})
        d.start()
        wait_for(lambda: any("READY=1" in m for m in _drain(s, got)), timeout=5,
                 what="READY=1")
        assert any(m == "MAINPID=%d" % d.pid() for m in got), got
        # Watchdog pings every 200 ms.
        n = sum(m == "WATCHDOG=1" for m in got)
        wait_for(lambda: sum(m == "WATCHDOG=1" for m in _drain(s, got)) >= n + 3,
                 timeout=3, what="watchdog pings")
        d.signal(signal.SIGHUP)
        wait_for(lambda: any(m.startswith("RELOADING=1") for m in _drain(s, got)),
                 timeout=5, what="RELOADING=1")
        i = max(k for k, m in enumerate(got) if m.startswith("RELOADING=1"))
        wait_for(lambda: any("READY=1" in m for m in _drain(s, got)[i + 1:]), timeout=5,
                 what="READY=1 after reload")
        assert d.stop() == 0
        _drain(s, got)
        assert "STOPPING=1" in got
    finally:
        s.close()
    return got


def test_notify_socket_path(tmp_path, redis_tcp, digestd_factory):
    path = str(tmp_path / "notify.sock")
    _run(tmp_path, redis_tcp, digestd_factory, path, path)


def test_notify_abstract_socket(tmp_path, redis_tcp, digestd_factory):
    name = "digestd-test-%d" % os.getpid()
    _run(tmp_path, redis_tcp, digestd_factory, "@" + name, "\0" + name)
