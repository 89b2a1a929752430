"""Nobody on the path gets the SMTP password or the mail.

Servers are aiosmtpd on loopback that record every line they receive (in
clear or inside TLS) and decode the AUTH payloads; certificates are made at
test time with the openssl command: a test CA, a certificate it signs for
127.0.0.1 and localhost, one it signs for another host, a self-signed one,
and a second CA that signed none of them.

- AUTH only inside TLS: a username without `starttls = required` is a
  configuration error naming the key, unless `allow_plaintext_auth = yes`;
  a server that offers AUTH but no STARTTLS (or an attacker who strips it
  from the EHLO reply) never sees the password.
- With `starttls = required` the certificate must verify, chain and host
  name, against `tls_ca_file` or the system store: a wrong host, a
  self-signed certificate or an unknown CA means no AUTH and no message,
  a transport error of kind tls, and the OpenSSL reason in the log.
  `tls_verify = no` opts out, with a warning at start.
- Replies injected in clear after the reply to STARTTLS end the session.
- TLS 1.3 servers get their mail too, session after session.
"""
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from lib.harness import DIGESTD, Digestd, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_state, wait_done, window)
from lib.tls_util import Certs, RecordingSmtp, server_context

USER = "digest-sender"
PASSWORD = "TlsTestPw-5b7e0c94d1"

# The servers without TLS offer AUTH on purpose: they stand for an attacker.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("certs"))
    ca = c.make_ca("ca")
    other = c.make_ca("other-ca", cn="some other CA")
    return {
        "ca": ca[0],
        "other_ca": other[0],
        "right": c.leaf("right", ["IP:127.0.0.1", "DNS:localhost"], ca),
        "wrong": c.leaf("wrong", ["DNS:mail.example.net"], ca, cn="mail.example.net"),
        "self": c.self_signed("self", ["IP:127.0.0.1", "DNS:localhost"],
                              cn="localhost"),
    }


def smtp_conf(tmp_path, redis, srv, lines, host="127.0.0.1", per_session=500,
              max_attempts=2):
    """A digestd config sending to srv, [smtp] completed with lines."""
    class S:
        port = srv.port
    path = config(tmp_path, redis, sink=S, per_session=per_session,
                  max_attempts=max_attempts)
    with open(path) as f:
        text = f.read()
    text = text.replace("host = 127.0.0.1\nport = %d\nstarttls = off\n" % srv.port,
                        "host = %s\nport = %d\n%s" % (host, srv.port, lines))
    with open(path, "w") as f:
        f.write(text)
    return path


def auth_lines(starttls, extra=""):
    return "starttls = %s\nusername = %s\npassword = %s\n%s" % (
        starttls, USER, PASSWORD, extra)


def seed(r, we, n=3, gid=1):
    d = Data(r)
    d.group(gid, name="Secure")
    d.members(gid, range(1, n + 1))
    for u in range(1, n + 1):
        d.user(u, email="u%d@example.org" % u)
    d.post(gid, gid, we - 60, title="Hello", author_id=99)


def run_t(path):
    return subprocess.run([DIGESTD, "-t", "-c", path], capture_output=True,
                          text=True, timeout=30)


def line_of(path, key):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.split("=")[0].strip() == key:
                return n
    raise AssertionError("%s not in %s" % (key, path))


@pytest.fixture
def server():
    started = []

    def make(**kw):
        s = RecordingSmtp(**kw).start()
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()


@pytest.mark.parametrize("starttls", ["off", "optional"])
def test_username_needs_required_tls(tmp_path, redis_tcp, server, starttls):
    """fails before: -t accepted a username with starttls = optional or off."""
    srv = server()
    path = smtp_conf(tmp_path, redis_tcp, srv, auth_lines(starttls))
    p = run_t(path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "%s:%d: [smtp] username" % (path, line_of(path, "username")) in p.stderr, \
        p.stderr
    assert "allow_plaintext_auth" in p.stderr
    assert PASSWORD not in p.stdout + p.stderr

    path = smtp_conf(tmp_path, redis_tcp, srv,
                     auth_lines(starttls, "allow_plaintext_auth = yes\n"))
    p = run_t(path)
    assert p.returncode == 0, p.stdout + p.stderr
    path = smtp_conf(tmp_path, redis_tcp, srv, auth_lines("required"))
    p = run_t(path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_stripped_starttls_never_gets_the_password(tmp_path, redis_tcp, server):
    """A server offering AUTH but no STARTTLS, as an attacker who strips it
    from EHLO would: with the former default (optional, and a username) the
    password went in clear.  fails before: the server decoded the password
    from AUTH PLAIN."""
    srv = server(auth=(USER, PASSWORD), auth_require_tls=False)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv, auth_lines("optional")), tmp_path)
    d.start(wait_ready=False)
    try:
        enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: d.exited() or srv.count() > 0 or srv.saw_secret(PASSWORD),
                 timeout=30, what="digestd to refuse the configuration")
        assert not srv.saw_secret(PASSWORD), "the password went in clear"
        assert srv.count() == 0
        assert d.wait(timeout=10) == 1
        assert "[smtp] username" in d.log()
    finally:
        d.kill()


def test_required_against_a_stripping_server_sends_nothing(tmp_path, redis_tcp, server):
    srv = server(auth=(USER, PASSWORD), auth_require_tls=False)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv, auth_lines("required")), tmp_path)
    d.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_failures_total",
                                    transport="smtp", kind="tls") >= 1,
                 timeout=30, what="a tls failure counted")
        assert srv.sessions >= 1
        assert not srv.saw_secret(PASSWORD)
        assert not any(l.upper().startswith((b"AUTH", b"MAIL")) for _, l in srv.received())
        assert srv.count() == 0
        assert "STARTTLS" in job_state(r, jid).get("last_error", "")
    finally:
        d.kill()


def test_plaintext_auth_when_allowed(tmp_path, redis_tcp, server):
    """allow_plaintext_auth = yes is the operator's explicit choice: AUTH in
    clear works, and digestd says so at start."""
    srv = server(auth=(USER, PASSWORD), auth_require_tls=False)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv,
                          auth_lines("off", "allow_plaintext_auth = yes\n")), tmp_path)
    d.start()
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
        assert srv.count() == 3
        assert all(m[2] == USER.encode() for m in srv.messages)
        log = d.log()
        assert "allow_plaintext_auth" in log and "level=warn" in log
        assert PASSWORD not in log
    finally:
        d.kill()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verified_tls_delivers_with_auth(tmp_path, redis_tcp, server, certs, host):
    """fails before: tls_ca_file is not a key."""
    sni = []
    srv = server(tls_context=server_context(*certs["right"], sni=sni),
                 auth=(USER, PASSWORD), require_starttls=True)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    path = smtp_conf(tmp_path, redis_tcp, srv,
                     auth_lines("required", "tls_ca_file = %s\n" % certs["ca"]), host=host)
    d = Digestd(path, tmp_path)
    d.start()
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
        assert sorted(m[0] for m in srv.messages) == [
            "u%d@example.org" % u for u in (1, 2, 3)]
        assert all(m[1] for m in srv.messages), "not over TLS"
        assert all(m[2] == USER.encode() for m in srv.messages), "not authenticated"
        # AUTH only ever inside TLS.
        assert not any(tls is False and l.upper().startswith(b"AUTH")
                       for tls, l in srv.received())
        # A host name goes out as SNI; an address may not (RFC 6066).
        assert set(sni) == ({"localhost"} if host == "localhost" else {None})
        assert PASSWORD not in d.log()
    finally:
        d.kill()


BAD = {
    # name: (certificate, tls_ca_file, host, the OpenSSL reason)
    "wrong-address": ("wrong", "ca", "127.0.0.1", "IP address mismatch"),
    "wrong-name": ("wrong", "ca", "localhost", "hostname mismatch"),
    "self-signed": ("self", "ca", "127.0.0.1", "self-signed certificate"),
    "unknown-ca": ("right", "other_ca", "127.0.0.1",
                   "unable to get local issuer certificate"),
    "system-store": ("right", None, "127.0.0.1",
                     "unable to get local issuer certificate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unverified_certificate_sends_nothing(tmp_path, redis_tcp, server, certs, case):
    """fails before: every certificate was accepted, AUTH and mail went to
    whoever held it."""
    cert, ca, host, reason = BAD[case]
    srv = server(tls_context=server_context(*certs[cert]), auth=(USER, PASSWORD),
                 require_starttls=True)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    extra = "tls_ca_file = %s\n" % certs[ca] if ca else ""
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv, auth_lines("required", extra),
                          host=host), tmp_path)
    d.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_failures_total",
                                    transport="smtp", kind="tls") >= 1,
                 timeout=30, what="a tls failure counted")
        m = d.metrics()
        assert metric_sum(m, "digest_transport_errors_total", transport="smtp") >= 1
        assert metric_sum(m, "digest_emails_total", result="sent") == 0
        assert srv.count() == 0
        assert not srv.saw_secret(PASSWORD)
        # Nothing at all inside TLS: the handshake itself failed.
        assert not any(tls for tls, _ in srv.received()), srv.received()
        wait_for(lambda: reason in job_state(r, jid).get("last_error", ""),
                 timeout=10, what="the reason in last_error")
        assert reason in d.log()
        assert job_state(r, jid).get("state") != "done"
    finally:
        d.kill()


def test_replies_injected_before_tls_end_the_session(tmp_path, redis_tcp, server, certs):
    """Bytes sent in clear after the reply to STARTTLS (as by someone on the
    path) must not be taken for replies inside TLS.  fails before: libESMTP
    took the injected line for the reply to EHLO and went on, every later
    reply one command off, through MAIL, RCPT, DATA and RSET."""
    srv = server(tls_context=server_context(*certs["right"]), auth=(USER, PASSWORD),
                 require_starttls=True, inject="250 AUTH PLAIN LOGIN")
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv,
                          auth_lines("required", "tls_ca_file = %s\n" % certs["ca"])),
                tmp_path)
    d.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_failures_total",
                                    transport="smtp", kind="tls") >= 1,
                 timeout=30, what="a tls failure counted")
        assert not any(l.upper().startswith((b"AUTH", b"MAIL")) for _, l in srv.received())
        assert srv.count() == 0
        wait_for(lambda: "data in clear after the reply to STARTTLS"
                 in job_state(r, jid).get("last_error", ""),
                 timeout=10, what="the reason in last_error")
    finally:
        d.kill()


class FragmentingSmtp:
    """A minimal SMTP server on 127.0.0.1 whose replies before TLS arrive in
    pieces (a line cut in two, a pause between): not an injection.  It
    takes one message per session; messages counts them."""

    def __init__(self, cert, key):
        self.ctx = server_context(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(10)
                self._session(c)
            except (OSError, ssl.SSLError):
                pass
            finally:
                c.close()

    @staticmethod
    def _pieces(c, *parts):
        for p in parts:
            c.sendall(p)
            time.sleep(0.05)

    def _session(self, c):
        f = c.makefile("rb")
        self._pieces(c, b"220 frag", b"menting ESMTP\r\n")
        f.readline()                                   # EHLO
        self._pieces(c, b"250-localhost\r\n250-STA", b"RTTLS\r\n250 8BITMIME\r\n")
        f.readline()                                   # STARTTLS
        self._pieces(c, b"220 go", b" ahead\r\n")
        t = self.ctx.wrap_socket(c, server_side=True)
        f = t.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line[:4].upper()
            if cmd == b"EHLO":
                t.sendall(b"250-localhost\r\n250 8BITMIME\r\n")
            elif cmd == b"DATA":
                t.sendall(b"354 go\r\n")
                while f.readline() not in (b".\r\n", b""):
                    pass
                self.messages += 1
                t.sendall(b"250 OK\r\n")
            elif cmd == b"QUIT":
                t.sendall(b"221 bye\r\n")
                return
            else:
                t.sendall(b"250 OK\r\n")

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def test_replies_in_pieces_before_tls_are_not_injected(tmp_path, redis_tcp, certs):
    srv = FragmentingSmtp(*certs["right"])
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    try:
        d = Digestd(smtp_conf(tmp_path, redis_tcp, srv, "starttls = required\n"
                              "tls_ca_file = %s\n" % certs["ca"]), tmp_path)
        d.start()
        try:
            wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
            assert srv.messages == 3
        finally:
            d.kill()
    finally:
        srv.stop()


def test_tls_verify_no_accepts_any_certificate_and_warns(tmp_path, redis_tcp, server, certs):
    """fails before: tls_verify is not a key."""
    srv = server(tls_context=server_context(*certs["wrong"]), auth=(USER, PASSWORD),
                 require_starttls=True)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv,
                          auth_lines("required", "tls_verify = no\n")), tmp_path)
    d.start()
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
        assert srv.count() == 3
        assert all(m[1] for m in srv.messages)
        warn = [l for l in d.log().splitlines() if "tls_verify" in l]
        assert warn and all("level=warn" in l for l in warn), d.log()
    finally:
        d.kill()


def test_tls13_server_gets_every_session(tmp_path, redis_tcp, server, certs):
    """A server that speaks only TLS 1.3, and sends its session tickets
    after the handshake as OpenSSL does: one message per session, every
    session delivers, none waits for a timeout.  fails before: TLS was
    capped at 1.2 and the handshake failed."""
    n = 30
    srv = server(tls_context=server_context(*certs["right"],
                                            min_version=ssl.TLSVersion.TLSv1_3),
                 auth=(USER, PASSWORD), require_starttls=True)
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we, n=n)
    d = Digestd(smtp_conf(tmp_path, redis_tcp, srv,
                          auth_lines("required", "tls_ca_file = %s\n" % certs["ca"]),
                          per_session=1), tmp_path)
    d.start()
    try:
        # A session stuck on a ticket would wait 30 s for its timeout.
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=25, d=d)
        assert srv.count() == n
        assert srv.sessions == n
        assert metric_sum(d.metrics(), "digest_transport_errors_total",
                          transport="smtp") == 0
    finally:
        d.kill()
