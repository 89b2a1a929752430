"""A mail server that refuses digestd itself, not a recipient: a 5xx to MAIL
FROM, or AUTH with the wrong password.  Nothing is sent and nobody is
counted rejected; the job is given back (never dead-lettered), the
failure is counted by kind in digest_transport_failures_total, the retries
are spaced out by seconds instead of a fast loop, and once the server is
fixed the job completes, each member served once.
"""
import threading
import time

import pytest

from lib.harness import Digestd, free_port, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_state, wait_done, window)

USER = "digest"
PASSWORD = "s3cret-smtp-pass"


class RefusingSink:
    """aiosmtpd on 127.0.0.1 that, while `refusing`, answers 550 to MAIL
    FROM (mode "sender") or takes AUTH only with another password (mode
    "auth", where AUTH is required); it counts its sessions and keeps
    what it accepts."""

    def __init__(self, mode):
        self.mode = mode
        self.port = free_port()
        self.refusing = True
        self.sessions = []          # monotonic time of each EHLO
        self.messages = []          # recipients accepted
        self.lock = threading.Lock()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                with sink.lock:
                    sink.sessions.append(time.monotonic())
                session.host_name = hostname
                return responses

            async def handle_MAIL(self, server, session, envelope, address, mail_options):
                if sink.mode == "sender" and sink.refusing:
                    return "550 5.7.1 <%s>: sender address rejected" % address
                envelope.mail_from = address
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.messages.extend(envelope.rcpt_tos)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            want = ("not-" + PASSWORD) if sink.refusing else PASSWORD
            ok = auth_data.login == USER.encode() and auth_data.password == want.encode()
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login)

        kw = {}
        if self.mode == "auth":
            kw = dict(authenticator=authenticator, auth_required=True,
                      auth_require_tls=False)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def session_times(self):
        with self.lock:
            return list(self.sessions)

    def accepted(self):
        with self.lock:
            return list(self.messages)


@pytest.fixture(params=["sender", "auth"])
def refusing(request):
    s = RefusingSink(request.param)
    s.start()
    try:
        yield s
    finally:
        s.stop()


# AUTH in clear on loopback, on purpose: TLS is another test's subject.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_refused_sender_or_auth_backs_off_and_completes_once_fixed(tmp_path, redis_tcp, refusing):
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(1, name="Refused")
    d.members(1, [1, 2, 3])
    for u in (1, 2, 3):
        d.user(u, email="u%d@example.org" % u)
    d.post(1, 1, we - 60, title="Hello", author_id=99)
    path = config(tmp_path, redis_tcp, sink=refusing, max_attempts=2)
    if refusing.mode == "auth":
        text = open(path).read().replace(
            "starttls = off\n", "starttls = off\nusername = %s\npassword = %s\n"
            "allow_plaintext_auth = yes\n" % (USER, PASSWORD))
        with open(path, "w") as f:
            f.write(text)
    kind = refusing.mode
    proc = Digestd(path, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 1, "daily", ws, we)
        wait_for(lambda: metric_sum(proc.metrics(), "digest_transport_failures_total",
                                    transport="smtp", kind=kind) >= 1,
                 timeout=30, what="a %s failure counted" % kind)
        first = refusing.session_times()[0]
        # A fast loop would have retried several times within 4 s.
        time.sleep(max(0.0, first + 4.0 - time.monotonic()))
        seen = [t for t in refusing.session_times() if t < first + 4.0]
        assert len(seen) <= 2, "%d sessions within 4 s of the first" % len(seen)

        def counted():
            # Every transport error is counted by kind too, and only as
            # this kind (when the attempt ends, a moment after the error).
            text = proc.metrics()
            errors = metric_sum(text, "digest_transport_errors_total", transport="smtp")
            return (errors >= 1
                    and metric_sum(text, "digest_transport_failures_total") == errors
                    and metric_sum(text, "digest_transport_failures_total",
                                   transport="smtp", kind=kind) == errors)
        wait_for(counted, timeout=10, what="every failure counted as %s" % kind)
        text = proc.metrics()
        assert refusing.accepted() == []
        assert metric_sum(text, "digest_emails_total", result="sent") == 0
        assert metric_sum(text, "digest_emails_total", result="rejected") == 0
        st = job_state(r, jid)
        assert st.get("state") not in ("done", "dead")
        want = "550" if kind == "sender" else "AUTH refused: 535"
        assert want in st.get("last_error", ""), st
        assert r.xlen("digest:dlq") == 0
        assert PASSWORD not in proc.log()

        refusing.refusing = False
        st = wait_done(r, jid, timeout=60, d=proc)
        assert int(st["sent"]) == 3
        assert sorted(refusing.accepted()) == ["u1@example.org", "u2@example.org",
                                               "u3@example.org"]
        assert r.xlen("digest:dlq") == 0
        text = proc.metrics()
        assert metric_sum(text, "digest_jobs_total", result="dead_lettered") == 0
        assert metric_sum(text, "digest_transport_failures_total", kind=kind) >= 1
    finally:
        proc.kill()
