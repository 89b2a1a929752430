"""TLS for the functional tests: certificates made at test time with the
openssl command (a test CA, certificates it signs for the right or a wrong
host, a self-signed one), and an SMTP server (aiosmtpd) that offers
STARTTLS and AUTH as told and records every line it receives, in clear or
inside TLS, so that a test can show where a password went.
"""
import base64
import os
import ssl
import subprocess
import threading

from lib.harness import free_port


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True,
                   timeout=60)


class Certs:
    """Keys and certificates in a directory: make_ca, then leaf or
    self_signed for each server; each returns (cert path, key path)."""

    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)

    def _key(self, name):
        key = os.path.join(self.dir, name + ".key")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-out", key)
        return key

    def make_ca(self, name="ca", cn="digestd test CA"):
        key = self._key(name)
        cert = os.path.join(self.dir, name + ".pem")
        _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2",
                 "-subj", "/CN=" + cn,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert, key

    def leaf(self, name, sans, ca, cn=None):
        """A server certificate for sans ("IP:127.0.0.1", "DNS:localhost")
        signed by ca, a (cert, key) of make_ca."""
        key = self._key(name)
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = CA:FALSE\n"
                    "keyUsage = critical, digitalSignature, keyEncipherment\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = %s\n" % ",".join(sans))
        _openssl("req", "-new", "-key", key, "-out", csr,
                 "-subj", "/CN=" + (cn or name))
        _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key

    def self_signed(self, name, sans, cn=None):
        key = self._key(name)
        cert = os.path.join(self.dir, name + ".pem")
        _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2",
                 "-subj", "/CN=" + (cn or name),
                 "-addext", "subjectAltName=" + ",".join(sans))
        return cert, key


def server_context(cert, key, min_version=None, max_version=None, sni=None):
    """A server-side SSLContext; sni, a list, gets each server name the
    clients send (None when they send none)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if sni is not None:
        def cb(sslobj, name, _ctx):
            sni.append(name)
        ctx.sni_callback = cb
    return ctx


def auth_payloads(lines):
    """The decoded AUTH PLAIN / LOGIN payloads among recorded lines: the
    initial response of `AUTH PLAIN x` and the lines that follow an AUTH."""
    out = []
    in_auth = False
    for _, line in lines:
        text = line.decode("latin-1").strip()
        words = text.split()
        if words and words[0].upper() == "AUTH":
            in_auth = True
            if len(words) > 2:
                out.append(_b64(words[2]))
            continue
        if in_auth and words and words[0].upper() in (
                "EHLO", "HELO", "MAIL", "QUIT", "RSET", "NOOP", "STARTTLS"):
            in_auth = False
        if in_auth:
            out.append(_b64(text))
    return out


def _b64(s):
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        return s.encode("latin-1", "replace")


class RecordingSmtp:
    """An aiosmtpd server on 127.0.0.1 that records every line it receives
    as (tls, bytes): tls tells whether it came inside TLS.

    tls_context: offer STARTTLS with it (None: no STARTTLS).  auth: a
    (user, password) pair to offer AUTH PLAIN and LOGIN for; auth_require_tls
    then decides whether AUTH is offered before STARTTLS.  inject: text sent
    in clear right after the reply to STARTTLS, in the same write, as an
    attacker on the path would.  Messages taken are kept as (rcpt, tls,
    authenticated login).
    """

    def __init__(self, tls_context=None, auth=None, auth_require_tls=True,
                 require_starttls=False, inject=None):
        self.port = free_port()
        self.tls_context = tls_context
        self.auth = auth
        self.auth_require_tls = auth_require_tls
        self.require_starttls = require_starttls
        self.inject = inject
        self.lines = []
        self.messages = []
        self.lock = threading.Lock()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP, AuthResult

        srv = self

        class Recording(SMTP):
            def data_received(self, data):
                tls = getattr(self, "_original_transport", None) is not None
                with srv.lock:
                    for line in data.splitlines(keepends=True):
                        srv.lines.append((tls, line))
                super().data_received(data)

            async def push(self, status):
                if (srv.inject and isinstance(status, str)
                        and status.startswith("220 Ready to start TLS")):
                    status += "\r\n" + srv.inject
                await super().push(status)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (srv.auth is not None
                  and auth_data.login == srv.auth[0].encode()
                  and auth_data.password == srv.auth[1].encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with srv.lock:
                    for r in envelope.rcpt_tos:
                        srv.messages.append((r, session.ssl is not None,
                                             session.authenticated and session.auth_data))
                return "250 OK"

        kw = {}
        if self.auth is not None:
            kw = dict(authenticator=authenticator, auth_required=True,
                      auth_require_tls=self.auth_require_tls)

        class RecordingController(Controller):
            def factory(self):
                return Recording(self.handler, **self.SMTP_kwargs)

        self.controller = RecordingController(
            Handler(), hostname="127.0.0.1", port=self.port,
            tls_context=self.tls_context, require_starttls=self.require_starttls,
            **kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def count(self):
        with self.lock:
            return len(self.messages)

    @property
    def sessions(self):
        """SMTP sessions begun: greetings (EHLO, HELO) sent in clear."""
        return sum(1 for tls, line in self.received()
                   if not tls and line[:5].upper() in (b"EHLO ", b"HELO "))

    def received(self):
        with self.lock:
            return list(self.lines)

    def saw_secret(self, secret):
        """Whether secret reached this server, in any line or AUTH payload."""
        lines = self.received()
        s = secret.encode()
        return (any(s in line for _, line in lines)
                or any(s in p for p in auth_payloads(lines)))
