"""STARTTLS and AUTH as configured, against an aiosmtpd server that
insists on both: starttls = required (verifying the server's certificate)
and optional (with allow_plaintext_auth, which a username then needs)
deliver over TLS after AUTH with the configured user; a wrong password delivers nothing and is
counted as a transport error; the password never reaches the log.
"""
import os
import ssl
import subprocess
import threading

import pytest

from lib.harness import Digestd, free_port, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_state, wait_done, window)

USER = "digest"
PASSWORD = "s3cret-smtp-pass"


class TlsAuthSink:
    """An SMTP server that requires STARTTLS, then AUTH, then takes mail."""

    def __init__(self, tmp):
        self.port = free_port()
        self.cert = os.path.join(tmp, "cert.pem")
        self.key = os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "1",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        self.messages = []       # (rcpt, tls, login)
        self.lock = threading.Lock()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login == USER.encode()
                  and auth_data.password == PASSWORD.encode())
            # handled=False: aiosmtpd then answers 535 itself on failure.
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    for r in envelope.rcpt_tos:
                        sink.messages.append((r, session.ssl is not None,
                                              session.authenticated and session.auth_data))
                return "250 OK"

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=ctx,
            require_starttls=True, authenticator=authenticator,
            auth_required=True, auth_require_tls=True)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def count(self):
        with self.lock:
            return len(self.messages)


@pytest.fixture
def tls_sink(tmp_path):
    s = TlsAuthSink(str(tmp_path))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def seed(r, we, n=5):
    d = Data(r)
    d.group(1, name="Secure")
    d.members(1, range(1, n + 1))
    for u in range(1, n + 1):
        d.user(u, email="u%d@example.org" % u)
    d.post(1, 1, we - 60, title="Hello", author_id=99)


def smtp_config(tmp_path, redis, sink, starttls, password):
    class S:  # config() writes [smtp] from a sink's port
        port = sink.port
    path = config(tmp_path, redis, sink=S, max_attempts=2)
    with open(path) as f:
        text = f.read()
    # The sink's self-signed certificate is the CA that verifies it; a
    # username without starttls = required needs allow_plaintext_auth, though
    # this server never offers AUTH before STARTTLS.
    text = text.replace("starttls = off\n", "starttls = %s\nusername = %s\npassword = %s\n"
                        "tls_ca_file = %s\n%s"
                        % (starttls, USER, password, sink.cert,
                           "allow_plaintext_auth = yes\n" if starttls != "required" else ""))
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("starttls", ["required", "optional"])
def test_pipeline_starttls_auth(tmp_path, redis_tcp, tls_sink, starttls):
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_config(tmp_path, redis_tcp, tls_sink, starttls, PASSWORD), tmp_path)
    d.start()
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=60, d=d)
        assert sorted(m[0] for m in tls_sink.messages) == [
            "u%d@example.org" % u for u in range(1, 6)]
        assert all(m[1] for m in tls_sink.messages), "not over TLS"
        assert all(m[2] == USER.encode() for m in tls_sink.messages), \
            "not authenticated"
        assert PASSWORD not in d.log()
    finally:
        d.kill()


def test_pipeline_auth_failure_sends_nothing(tmp_path, redis_tcp, tls_sink):
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we)
    d = Digestd(smtp_config(tmp_path, redis_tcp, tls_sink, "required", "wrong-pass"),
                tmp_path)
    d.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_errors_total",
                                    transport="smtp") >= 1,
                 timeout=30, what="a transport error")
        assert tls_sink.count() == 0
        assert job_state(r, jid).get("state") != "done"
        assert metric_sum(d.metrics(), "digest_emails_total", result="sent") == 0
        # Refused for want of AUTH: the recipients are not "rejected".
        assert metric_sum(d.metrics(), "digest_emails_total", result="rejected") == 0
        wait_for(lambda: "530" in job_state(r, jid).get("last_error", ""),
                 timeout=10, what="the 530 in the job's last_error")
        assert "wrong-pass" not in d.log()
    finally:
        d.kill()


def test_pipeline_starttls_against_a_plain_server(tmp_path, redis_tcp, smtp_sink):
    """A server without STARTTLS: `optional` delivers in clear, `required`
    sends nothing and says why in the job's last_error."""
    r = redis_tcp.client()
    ws, we = window()
    seed(r, we, n=3)
    Data(r).group(2, name="Plain")
    Data(r).members(2, [1, 2, 3])
    Data(r).post(2, 2, we - 60, title="Hello", author_id=99)
    base = config(tmp_path, redis_tcp, sink=smtp_sink)
    text = open(base).read()
    for mode in ("optional", "required"):
        path = base + "." + mode
        with open(path, "w") as f:
            f.write(text.replace("starttls = off\n", "starttls = %s\n" % mode))
        d = Digestd(path, tmp_path)
        d.start()
        try:
            if mode == "optional":
                wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
                assert smtp_sink.count() == 3
            else:
                jid = enqueue(r, 2, "daily", ws, we)
                wait_for(lambda: "STARTTLS" in job_state(r, jid).get("last_error", ""),
                         timeout=30, what="the STARTTLS reason")
                assert smtp_sink.count() == 3
                assert job_state(r, jid).get("state") != "done"
        finally:
            d.kill()
