"""digest_transport_failures_total{kind} says why the SMTP transport
failed, while digest_transport_errors_total keeps counting every failure:
nothing listening is `connect`, STARTTLS required from a server without it
or a TLS handshake that fails is `tls`, a server that turns us away at its
greeting is `protocol`.
(Refused senders and AUTH: test_smtp_refused.py.)
"""
import os
import socket
import ssl
import subprocess
import threading
import warnings

import pytest

from lib.harness import Digestd, free_port, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_state, window)


class GreetingRefuser:
    """A TCP server on 127.0.0.1 that greets every client with 554."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                c.settimeout(2)
                try:
                    c.sendall(b"554 5.3.2 no service for you\r\n")
                    if c.recv(512).upper().startswith(b"QUIT"):
                        c.sendall(b"221 2.0.0 bye\r\n")
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def tls11_only_server(tmp):
    """aiosmtpd offering STARTTLS with TLS 1.1 at most (digestd speaks 1.2
    and up): the handshake fails."""
    from aiosmtpd.controller import Controller

    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=free_port(), tls_context=ctx,
                   require_starttls=True)
    c.start()
    return c


@pytest.fixture
def server(request, smtp_sink, tmp_path):
    """(port, starttls, kind) for the failure request.param names."""
    if request.param == "connect":
        yield free_port(), "off", "connect"
    elif request.param == "tls":
        yield smtp_sink.port, "required", "tls"
    elif request.param == "tls-handshake":
        c = tls11_only_server(str(tmp_path))
        try:
            yield c.port, "optional", "tls"
        finally:
            c.stop()
    else:
        g = GreetingRefuser()
        try:
            yield g.port, "off", "protocol"
        finally:
            g.stop()


@pytest.mark.parametrize("server", ["connect", "tls", "tls-handshake", "protocol"],
                         indirect=True)
def test_transport_failure_kind(tmp_path, redis_tcp, server, smtp_sink):
    port, starttls, kind = server
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(1, name="Kinds")
    d.members(1, [1, 2])
    for u in (1, 2):
        d.user(u, email="u%d@example.org" % u)
    d.post(1, 1, we - 60, title="Hello", author_id=99)

    class S:
        pass
    S.port = port
    path = config(tmp_path, redis_tcp, sink=S)
    text = open(path).read().replace("starttls = off\n", "starttls = %s\n" % starttls)
    with open(path, "w") as f:
        f.write(text)
    proc = Digestd(path, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)

        def counted():
            # The kind is counted when the attempt ends, a moment after
            # the error itself: wait for a scrape between attempts.
            text = proc.metrics()
            errors = metric_sum(text, "digest_transport_errors_total", transport="smtp")
            return (errors >= 2
                    and metric_sum(text, "digest_transport_failures_total") == errors
                    and metric_sum(text, "digest_transport_failures_total",
                                   transport="smtp", kind=kind) == errors)
        wait_for(counted, timeout=30, what="every failure counted as %s" % kind)
        assert smtp_sink.count() == 0
        st = job_state(r, jid)
        assert st.get("state") not in ("done", "dead")
    finally:
        proc.kill()
