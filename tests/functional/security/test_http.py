"""The HTTP endpoint against hostile clients: idle connections past
`http_max_connections` do not starve /healthz; a client trickling its
request is cut at the request deadline, also on a kept-alive connection;
with few file descriptors (`ulimit -n 128`, or none left at all) the
supervisor neither spins nor floods its log; and /status answers only
loopback peers when `listen` is not a loopback address.

Every client socket is closed at the end, every loop is bounded, and all
traffic stays on this machine (loopback, or the machine's own address).
"""
import os
import resource
import select
import socket
import subprocess
import time

import pytest

from lib.harness import DIGESTD, Digestd, wait_for
from lib.supervisor_fixtures import sup_config  # noqa: F401

CLK_TCK = os.sysconf("SC_CLK_TCK")


class LimitedDigestd(Digestd):
    """A Digestd started with RLIMIT_NOFILE set to nofile before exec."""

    def __init__(self, config_path, tmp_path, nofile):
        super().__init__(config_path, tmp_path)
        self.nofile = nofile

    def start(self, wait_ready=True, timeout=15):
        nofile = self.nofile

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DIGESTD, "-c", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.tmp, preexec_fn=limit)
        if wait_ready:
            wait_for(lambda: self.http_status("/readyz") == 200 or self.exited(),
                     timeout=timeout, what="digestd /readyz")
            assert not self.exited(), "digestd exited: %s" % self.log()
        return self


@pytest.fixture
def clients():
    """A list for client sockets; every one is closed at the end."""
    socks = []
    yield socks
    for s in socks:
        s.close()


def open_idle(socks, n, host="127.0.0.1", port=None):
    """Start n connections that will never send a byte (non-blocking)."""
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        socks.append(s)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass


def get(port, path, host="127.0.0.1", source=None, timeout=1.0):
    """(status, seconds) of GET path on a fresh connection, or (None,
    seconds) when no whole status line came within timeout."""
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                      socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        try:
            s.connect((host, port))
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while b"\r\n" not in data:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    break
                s.settimeout(left)
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None, time.monotonic() - t0
        line = data.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or b"\r\n" not in data:
            return None, time.monotonic() - t0
        return int(line[1]), time.monotonic() - t0
    finally:
        s.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def server_conns(pid, port):
    """TCP connections the process pid holds at one instant on its local
    port (not the listener).  Reading /proc is not atomic: a socket listed
    both before and after the read of the TCP table was open during all of
    it, so only those are counted, and each once (the table, read in
    pieces while it changes, may show a row twice)."""
    before = _socket_inodes(pid)
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                rows += [line.split() for line in f]
        except FileNotFoundError:
            pass
    held = before & _socket_inodes(pid)
    return len({p[9] for p in rows
                if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] != "0A"
                and p[9] in held})


def closed_by_peer(s, timeout):
    """True once the server has closed s (EOF or reset) within timeout."""
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        return False
    try:
        return s.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_connections_past_the_cap_leave_healthz_alone(
        tmp_path, redis_tcp, digestd_factory, clients):
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}})
    d = digestd_factory(text).start()
    open_idle(clients, 300, port=port)
    # Past the cap the rest wait in the backlog.  A burst can still
    # outrun the accepts, and the kernel then drops handshakes that the
    # clients resend a second later: let those land first.
    time.sleep(1.5)
    status, took = get(port, "/healthz")
    assert status == 200 and took < 1.0, (status, took)
    # The default cap is 256, however many clients try.
    for _ in range(5):
        assert server_conns(d.pid(), port) <= 256
        time.sleep(0.1)
    assert d.http("/metrics")[0] == 200


def test_connections_beyond_the_cap_wait_and_healthz_answers(
        tmp_path, redis_tcp, digestd_factory, clients):
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                            supervisor="http_max_connections = 8")
    d = digestd_factory(text).start()
    open_idle(clients, 24, port=port)
    time.sleep(0.3)
    seen = []
    for _ in range(10):
        seen.append(server_conns(d.pid(), port))
        time.sleep(0.05)
    assert max(seen) <= 8, seen
    # Eight clients at once, each with a whole request: each is answered
    # even though idle connections hold every place.
    probes = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        clients.append(s)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        probes.append(s)
    deadline = time.monotonic() + 2.0
    answers = []
    for s in probes:
        data = b""
        while b"\r\n" not in data and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        answers.append(data.split(b"\r\n", 1)[0])
    assert answers == [b"HTTP/1.1 200 OK"] * 8, answers
    assert max(server_conns(d.pid(), port) for _ in range(5)) <= 8
    # Once the idle clients are gone everything is as before.
    for s in clients:
        s.close()
    del clients[:]
    status, took = get(port, "/healthz")
    assert status == 200 and took < 1.0, (status, took)


def test_a_trickled_request_is_cut_at_the_deadline(
        tmp_path, redis_tcp, digestd_factory, clients):
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}})
    digestd_factory(text).start()
    # A: a first request trickled a byte every 2 s from the accept on.
    a = socket.create_connection(("127.0.0.1", port), timeout=2)
    clients.append(a)
    # B: a whole first request, answered; then the next one trickled on the
    # kept-alive connection.
    b = socket.create_connection(("127.0.0.1", port), timeout=2)
    clients.append(b)
    b.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"ok\n" not in data:
        chunk = b.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    t0 = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 64
    cut = {}
    i = 0
    while len(cut) < 2 and time.monotonic() - t0 < 14:
        for name, s in (("a", a), ("b", b)):
            if name in cut:
                continue
            try:
                s.send(head[i:i + 1])
            except OSError:
                cut[name] = time.monotonic() - t0
                continue
        i += 1
        end = time.monotonic() + 2
        while time.monotonic() < end and len(cut) < 2:
            for name, s in (("a", a), ("b", b)):
                if name not in cut and closed_by_peer(s, 0.05):
                    cut[name] = time.monotonic() - t0
    # The whole first request within 5 s of the accept; the next one on a
    # kept-alive connection within 10 s of the last answer, as idle.
    assert "a" in cut and cut["a"] < 7.5, cut
    assert "b" in cut and 8 < cut["b"] < 12.5, cut


def test_few_descriptors_no_spin_no_flood(tmp_path, redis_tcp, digestd_factory,
                                          clients):
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}})
    path = os.path.join(str(tmp_path), "limited.conf")
    with open(path, "w") as f:
        f.write(text)
    d = LimitedDigestd(path, tmp_path, 128)
    try:
        d.start()
        open_idle(clients, 200, port=port)
        slow = socket.socket()
        clients.append(slow)
        slow.settimeout(2)
        slow.connect(("127.0.0.1", port))
        slow.send(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(1.0)
        cpu0, log0 = cpu_seconds(d.pid()), os.path.getsize(d.log_path)
        status, took = get(port, "/healthz")
        assert status == 200 and took < 1.0, (status, took)
        for _ in range(3):
            try:
                slow.send(b"X")
            except OSError:
                pass
            time.sleep(1.0)
        cpu1, log1 = cpu_seconds(d.pid()), os.path.getsize(d.log_path)
        assert cpu1 - cpu0 < 0.5, "supervisor used %.2fs of CPU in 3s" % (cpu1 - cpu0)
        assert log1 - log0 < 64 * 1024, "log grew by %d bytes" % (log1 - log0)
        status, took = get(port, "/healthz")
        assert status == 200 and took < 1.0, (status, took)
    finally:
        d.kill()


def test_no_descriptor_left_pauses_accepting(tmp_path, redis_tcp, digestd_factory,
                                              clients):
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}})
    d = digestd_factory(text).start()
    pid = d.pid()
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    nfd = len(os.listdir("/proc/%d/fd" % pid))
    # Not one descriptor more: every accept() fails with EMFILE.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd, old[1]))
    try:
        open_idle(clients, 200, port=port)
        time.sleep(0.5)
        cpu0, log0 = cpu_seconds(pid), os.path.getsize(d.log_path)
        time.sleep(3.0)
        cpu1, log1 = cpu_seconds(pid), os.path.getsize(d.log_path)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    assert cpu1 - cpu0 < 0.5, "supervisor used %.2fs of CPU in 3s" % (cpu1 - cpu0)
    assert log1 - log0 < 16 * 1024, "log grew by %d bytes" % (log1 - log0)
    warned = [l for l in d.log().splitlines() if "Too many open files" in l]
    assert 1 <= len(warned) <= 3, warned[:5]
    for s in clients:
        s.close()
    del clients[:]
    # With descriptors again, the endpoint answers at once once its pause is
    # over and it has emptied the backlog (while that was full the kernel
    # dropped new handshakes, which clients resend only a second later).
    time.sleep(0.5)
    status, took = get(port, "/healthz")
    assert status == 200 and took < 1.0, (status, took)


def _own_address():
    """A non-loopback IPv4 address of this machine, or None."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    return None


def test_status_only_for_loopback_peers_when_listening_wide(
        tmp_path, redis_tcp, digestd_factory):
    addr = _own_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to be a peer from")
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}})
    text = text.replace("listen = 127.0.0.1:%d" % port, "listen = 0.0.0.0:%d" % port)
    d = digestd_factory(text).start()
    # From the machine's own address to itself: a peer that is not loopback.
    assert get(port, "/status", host=addr, source=addr)[0] == 403
    assert get(port, "/status?html", host=addr, source=addr)[0] == 403
    for path in ("/metrics", "/healthz", "/readyz"):
        assert get(port, path, host=addr, source=addr)[0] == 200, path
    # Loopback peers see it, whatever the address they reach.
    assert get(port, "/status")[0] == 200
    assert get(port, "/status?html")[0] == 200
    assert d.status()["workers"]
