"""Feedback to the host application, and what it feeds back: every
recipient given up (a 5xx, or a 4xx past smtp.defer_give_up) is added to
the stream digest:rejected; a 5xx saying the mailbox does not exist also
adds the address, lowercased, to the set digest:suppressed, and a
suppressed address gets no email again (skipped as `suppressed`); the uids
in digest:muted:{gid} get nothing from that group (skipped as
`opted_out`) and still get every other group's digest.  These keys live on
the queue Redis (docs/design.md#feedback-keys).

On both queue backends; once with a dedicated [queue_redis]; and once with
Redis killed as a recipient is rejected, which must not lose its record.
"""
import threading
import time

import pytest

from lib.amqp_util import config as amqp_config, write_groups
from lib.harness import (
    Digestd, SmtpSink, TcpRedis, digestctl, metric_sum, wait_for)
from lib.pipeline_data import window

NO_SUCH_USER = "550 5.1.1 <%s>: Recipient address rejected: User unknown"
MAILBOX_FULL = "552 5.2.2 <%s>: Mailbox full"


class Replies:
    """An SMTP sink's reply_for: a fixed reply per recipient (None
    accepts), and every RCPT it saw, in order."""

    def __init__(self, rules, on_reply=None):
        self.rules = rules
        self.on_reply = on_reply
        self.seen = []
        self.lock = threading.Lock()

    def __call__(self, addr):
        with self.lock:
            self.seen.append(addr)
        r = self.rules.get(addr)
        if r is not None and self.on_reply is not None:
            self.on_reply(addr)
        return r % addr if r else None

    def count(self, addr):
        with self.lock:
            return self.seen.count(addr)


class _NoRabbit:
    def url(self, vhost="/"):
        return "amqp://guest:guest@127.0.0.1:1/%2F"


@pytest.fixture(params=["redis", "amqp"])
def backend(request):
    return request.param


@pytest.fixture
def broker(backend, request):
    """(rabbit, vhost) for the amqp backend; a dummy for redis."""
    if backend != "amqp":
        yield _NoRabbit(), "/"
        return
    rabbit = request.getfixturevalue("rabbitmq")
    vhost = rabbit.vhost("fb")
    try:
        yield rabbit, vhost
    finally:
        rabbit.drop_vhost(vhost)


@pytest.fixture
def tcp_redis(tmp_path):
    srv = TcpRedis(tmp_path / "redis").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sink():
    s = SmtpSink()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def run_job(cfg, r, gid, we, d, timeout=30):
    """Enqueue group gid's daily job for the window ending at we and wait
    until its checkpoint says done."""
    digestctl(cfg, "enqueue", "--group", str(gid), "--period", "daily",
              "--now", str(we + 3600))
    j = "daily.%d.%d.0" % (we, gid)

    def done():
        if d.exited():
            raise AssertionError(d.log()[-3000:])
        return r.hget("digest:job:" + j, "state") == "done"
    wait_for(done, timeout=timeout, what="job %s done" % j)
    return j


def got_by(sink, rcpt):
    """The X-Digest-Job of every message rcpt was sent."""
    return sorted(m["X-Digest-Job"] for m in sink.parsed()
                  if str(m["To"]).endswith("<%s>" % rcpt))


def test_rejected_fed_back_and_suppressed(tmp_path, backend, broker, tcp_redis,
                                          sink):
    rabbit, vhost = broker
    r = tcp_redis.client()
    _, we = window()
    # Group 1: u12 does not exist, u13's mailbox is full, u11 is fine.
    # Group 2, run afterwards: u12 and u13 again, u22 whom the host
    # application has suppressed itself, and u21.
    write_groups(r, {1: [11, 12, 13], 2: [12, 13, 21, 22]}, we)
    u11, u12, u13 = ("u%d@example.org" % u for u in (11, 12, 13))
    u21, u22 = "u21@example.org", "u22@example.org"
    replies = Replies({u12: NO_SUCH_USER, u13: MAILBOX_FULL})
    sink.reply_for = replies
    cfg = amqp_config(tmp_path, tcp_redis, rabbit, vhost, backend=backend,
                      transport="smtp", sink=sink)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        t0 = time.time()
        j1 = run_job(cfg, r, 1, we, d)
        entries = r.xrange("digest:rejected")
        assert len(entries) == 2, entries
        rec = {f["uid"]: f for _, f in entries}
        assert set(rec) == {"12", "13"}, entries
        assert rec["12"]["email"] == u12 and rec["13"]["email"] == u13
        for uid, code in (("12", "550"), ("13", "552")):
            f = rec[uid]
            assert set(f) == {"uid", "email", "gid", "job_id", "code",
                              "reply", "at"}, f
            assert f["gid"] == "1" and f["job_id"] == j1, f
            assert f["code"] == code, f
            assert f["reply"].startswith(code + " "), f
            assert t0 - 1 <= float(f["at"]) <= time.time() + 1, f
        assert "5.1.1" in rec["12"]["reply"]
        # Only the mailbox that does not exist is suppressed.
        assert r.smembers("digest:suppressed") == {u12}
        # The stream is capped.
        assert r.xinfo_stream("digest:rejected")["length"] == 2

        # The host application suppresses u22, and u12's address comes
        # back in capitals: both still match.
        r.sadd("digest:suppressed", u22)
        r.hset("user:12", "email", "U12@Example.ORG")
        tried12 = replies.count(u12) + replies.count("U12@Example.ORG")
        j2 = run_job(cfg, r, 2, we, d)
        assert replies.count(u12) + replies.count("U12@Example.ORG") == tried12
        assert replies.count(u22) == 0
        assert got_by(sink, u21) == [j2]
        assert got_by(sink, u11) == [j1]
        assert got_by(sink, u12) == [] and got_by(sink, u22) == []
        # u13 is tried again (a full mailbox may empty) and rejected again.
        assert replies.count(u13) == 2
        assert len(r.xrange("digest:rejected")) == 3
        assert r.smembers("digest:suppressed") == {u12, u22}
        cp = r.hgetall("digest:job:" + j2)
        assert cp["sent"] == "1" and cp["skipped"] == "2", cp

        text = d.metrics()
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="suppressed") == 2
        assert metric_sum(text, "digest_emails_total", result="rejected") == 3
        assert metric_sum(text, "digest_emails_total", result="sent") == 2
    finally:
        d.kill()


def test_muted_member_skipped_in_that_group_only(tmp_path, backend, broker,
                                                 tcp_redis, sink):
    rabbit, vhost = broker
    r = tcp_redis.client()
    _, we = window()
    # u31 is in both groups and muted group 3 only; u34 muted group 3 but
    # is not a member of it (nothing to skip).
    write_groups(r, {3: [31, 32], 4: [31, 33]}, we)
    r.sadd("digest:muted:3", "31", "34")
    cfg = amqp_config(tmp_path, tcp_redis, rabbit, vhost, backend=backend,
                      transport="smtp", sink=sink)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        j3 = run_job(cfg, r, 3, we, d)
        j4 = run_job(cfg, r, 4, we, d)
        assert got_by(sink, "u31@example.org") == [j4]
        assert got_by(sink, "u32@example.org") == [j3]
        assert got_by(sink, "u33@example.org") == [j4]
        assert r.hget("digest:job:" + j3, "skipped") == "1"
        assert r.hget("digest:job:" + j4, "skipped") == "0"
        text = d.metrics()
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="opted_out") == 1
        assert metric_sum(text, "digest_emails_total", result="sent") == 3
        # Nothing was rejected, nothing suppressed.
        assert not r.exists("digest:rejected", "digest:suppressed")
    finally:
        d.kill()


def test_feedback_keys_on_the_queue_redis(tmp_path, sink):
    """With [queue_redis] set, the feedback keys are read and written
    there, and the activity store is only read."""
    data = TcpRedis(tmp_path / "data").start()
    queue = TcpRedis(tmp_path / "queue").start()
    try:
        dc, qc = data.client(), queue.client()
        _, we = window()
        write_groups(dc, {5: [51, 52, 53, 54]}, we)
        qc.sadd("digest:muted:5", "51")
        qc.sadd("digest:suppressed", "u52@example.org")
        sink.reply_for = Replies({"u53@example.org": NO_SUCH_USER})
        cfg = amqp_config(tmp_path, data, _NoRabbit(), "/", backend="redis",
                          transport="smtp", sink=sink,
                          extra=queue.config_section("queue_redis"))
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            run_job(cfg, qc, 5, we, d)
            assert [m[1] for m in sink.messages] == ["u54@example.org"]
            assert qc.smembers("digest:suppressed") == {"u52@example.org",
                                                        "u53@example.org"}
            assert [f["uid"] for _, f in qc.xrange("digest:rejected")] == ["53"]
            assert not any(k.startswith("digest:") for k in dc.keys("*"))
            text = d.metrics()
            assert metric_sum(text, "digest_recipients_skipped_total",
                              reason="opted_out") == 1
            assert metric_sum(text, "digest_recipients_skipped_total",
                              reason="suppressed") == 1
        finally:
            d.kill()
    finally:
        queue.stop()
        data.stop()


@pytest.fixture
def aof_redis(tmp_path):
    srv = TcpRedis(tmp_path / "redis-aof")
    srv.aof = True
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_reject_record_survives_redis_restart(tmp_path, aof_redis, sink):
    """Redis is killed as a recipient is rejected, and comes back from its
    append-only file: the record of the reject is not lost (it may be
    written twice), and the address ends up suppressed."""
    tcp_redis = aof_redis
    r = tcp_redis.client()
    r.config_set("appendfsync", "always")
    _, we = window()
    write_groups(r, {7: [71, 72, 73, 74, 75]}, we)
    victim = "u73@example.org"
    killed = []

    def crash_then_restart(addr):
        if killed:
            return
        killed.append(addr)
        tcp_redis.proc.kill()
        tcp_redis.proc.wait(timeout=10)

        def later():
            time.sleep(1.5)
            tcp_redis.start()
        threading.Thread(target=later, daemon=True).start()

    sink.reply_for = Replies({victim: NO_SUCH_USER},
                             on_reply=crash_then_restart)
    cfg = amqp_config(tmp_path, tcp_redis, _NoRabbit(), "/", backend="redis",
                      transport="smtp", sink=sink, max_attempts=20)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        digestctl(cfg, "enqueue", "--group", "7", "--period", "daily",
                  "--now", str(we + 3600))
        j = "daily.%d.7.0" % we

        def done():
            try:
                return tcp_redis.client().hget("digest:job:" + j,
                                               "state") == "done"
            except Exception:   # Redis is away for a moment
                return False
        wait_for(done, timeout=60, interval=0.3, what="the job done")
        assert killed == [victim]
        r = tcp_redis.client()
        recs = [f for _, f in r.xrange("digest:rejected")]
        assert recs and all(f["uid"] == "73" for f in recs), recs
        assert len(recs) <= 2, recs
        assert r.smembers("digest:suppressed") == {victim}
        got = [m[1] for m in sink.messages]
        want = ["u%d@example.org" % u for u in (71, 72, 74, 75)]
        assert sorted(set(got)) == want, got
        assert len(got) - len(set(got)) <= 1, got
    finally:
        d.kill()
