"""The SMTP transport against a real SMTP server (aiosmtpd), through the
real digestd: each message judged by its own reply.

- a burst of 4xx delays the digest but loses nobody and sends nobody twice;
- a 5xx recipient is counted rejected in /metrics and not retried;
- an unreachable server makes the job retry, and it completes once the
  server is back.
"""
import time

from lib.harness import Digestd, SmtpSink, metric_sum, wait_for
from lib.pipeline_data import (
    Data, config, enqueue, job_state, rcpts, wait_done, window)


def group(r, gid, n, we, base=100):
    d = Data(r)
    d.group(gid, name="Group %d" % gid)
    uids = list(range(base, base + n))
    d.members(gid, uids)
    for u in uids:
        d.user(u, email="u%d@example.org" % u)
    d.post(gid, gid * 1000, we - 60, title="News", author_id=1)
    return ["u%d@example.org" % u for u in uids]


def test_pipeline_4xx_burst_loses_nothing(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    want = group(r, 1, 30, we)
    burst_until = [None]
    refused = []

    def reply(addr):
        # Every recipient is deferred for the first 2 s of the job.
        if burst_until[0] is None:
            burst_until[0] = time.monotonic() + 2.0
        if time.monotonic() < burst_until[0]:
            refused.append(addr)
            return "451 4.3.0 try again later"
        return None

    smtp_sink.reply_for = reply
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=10, per_session=5)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        t0 = time.monotonic()
        st = wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=90, d=d)
        assert time.monotonic() - t0 >= 1.5, "the burst did not delay anything"
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(want), got
        assert len(refused) > 0
        assert int(st["sent"]) == 30
        text = d.metrics()
        assert metric_sum(text, "digest_emails_total", result="sent") == 30
        assert metric_sum(text, "digest_emails_total", result="deferred") == len(refused)
        assert metric_sum(text, "digest_emails_total", result="rejected") == 0
    finally:
        d.kill()


def test_pipeline_5xx_counted_rejected(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    want = group(r, 2, 12, we)
    bad = {"u103@example.org", "u108@example.org"}
    asked = []

    def reply(addr):
        asked.append(addr)
        return "550 5.1.1 no such user" if addr in bad else None

    smtp_sink.reply_for = reply
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=5, per_session=4)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        wait_done(r, enqueue(r, 2, "daily", ws, we), timeout=60, d=d)
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(set(want) - bad), got
        # Rejected once, never retried.
        assert sorted(a for a in asked if a in bad) == sorted(bad)
        text = d.metrics()
        assert metric_sum(text, "digest_emails_total", result="rejected") == 2
        assert metric_sum(text, "digest_emails_total", transport="smtp",
                          result="rejected") == 2
        assert metric_sum(text, "digest_emails_total", result="sent") == 10
    finally:
        d.kill()


def test_pipeline_unreachable_server_retries(tmp_path, redis_tcp):
    r = redis_tcp.client()
    ws, we = window()
    want = group(r, 3, 8, we)
    sink = SmtpSink()          # its port is chosen, nothing listens yet
    cfg = config(tmp_path, redis_tcp, sink=sink, max_attempts=20)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 3, "daily", ws, we)
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_errors_total",
                                    transport="smtp") >= 1,
                 timeout=30, what="a transport error")
        st = job_state(r, jid)
        assert st.get("state") != "done"
        assert "smtp" in st.get("last_error", ""), st
        assert sink.count() == 0
        sink.start()
        try:
            wait_done(r, jid, timeout=60, d=d)
            assert sorted(rcpts(sink)) == sorted(want)
        finally:
            sink.stop()
    finally:
        d.kill()


class ClosingSink:
    """Takes 3 messages per connection, then answers 421 and hangs up, as
    servers with a per-connection message limit do."""

    def __init__(self):
        from lib.harness import free_port
        self.port = free_port()
        self.messages = []
        self.sessions = 0
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_MAIL(self, server, session, envelope, address, options):
                n = getattr(session, "taken", 0)
                if n == 0:
                    sink.sessions += 1
                if n >= 3:
                    await server.push("421 4.7.0 too many messages, closing")
                    server.transport.close()
                    return "421 4.7.0 closing"
                session.taken = n + 1
                envelope.mail_from = address
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                for r in envelope.rcpt_tos:
                    sink.messages.append(r)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def test_pipeline_server_closing_sessions_early(tmp_path, redis_tcp):
    """A server that closes each connection after 3 messages: the transport
    goes on in new sessions; everyone gets exactly one email."""
    r = redis_tcp.client()
    ws, we = window()
    want = group(r, 4, 20, we)
    sink = ClosingSink().start()
    try:
        cfg = config(tmp_path, redis_tcp, sink=sink, batch=20, per_session=10)
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            st = wait_done(r, enqueue(r, 4, "daily", ws, we), timeout=60, d=d)
            assert sorted(sink.messages) == sorted(want), sink.messages
            assert int(st["attempts"]) == 1, st
            assert sink.sessions >= 7
        finally:
            d.kill()
    finally:
        sink.stop()


def test_pipeline_one_mailbox_full_sends_nobody_twice(tmp_path, redis_tcp, smtp_sink):
    """One recipient keeps answering 452 (a full mailbox): it is parked in
    the checkpoint, the walk goes on, the others get exactly one email, it
    is retried on the clock and given up (counted rejected) once
    defer_give_up has passed since its first 4xx."""
    import collections

    r = redis_tcp.client()
    ws, we = window()
    want = group(r, 5, 12, we)
    full = "u105@example.org"
    asked = collections.Counter()
    first = []

    def reply(addr):
        asked[addr] += 1
        if addr == full:
            first.append(time.monotonic())
            return "452 4.2.2 mailbox full"
        return None

    smtp_sink.reply_for = reply
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=5, per_session=5,
                 extra="")
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("messages_per_session = 5\n",
                             "messages_per_session = 5\ndefer_retry_min = 1s\n"
                             "defer_retry_max = 1s\ndefer_give_up = 4s\n"))
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 5, "daily", ws, we)
        wait_for(lambda: "d:105" in job_state(r, jid),
                 timeout=30, what="the full mailbox parked after one attempt")
        st = wait_done(r, jid, timeout=60, d=d)
        done = time.monotonic()
        got = collections.Counter(rcpts(smtp_sink))
        assert set(got) == set(want) - {full}
        assert max(got.values()) == 1, got
        assert "d:105" not in st and st.get("deferred") == "0", st
        assert asked[full] >= 3
        assert done - first[0] >= 4.0
        text = d.metrics()
        # Every 4xx answer counts as deferred, the give-up as rejected.
        assert metric_sum(text, "digest_emails_total", result="deferred") == asked[full]
        assert metric_sum(text, "digest_emails_total", result="rejected") == 1
        assert metric_sum(text, "digest_emails_total", result="sent") == 11
    finally:
        d.kill()
