"""Greylisting, as real receivers do it: a recipient answered 4xx is
retried on a clock (smtp.defer_retry_min, doubling up to defer_retry_max)
and given up, counted rejected, only defer_give_up after its first 4xx.
The wait holds no worker: a job with only deferred recipients left waits
in the delayed set of its queue, and a single worker finishes other jobs
meanwhile.  The wait survives a restart of digestd and of Redis.

On both queue backends.
"""
import threading
import time

import pytest

from lib.amqp_util import config as amqp_config, write_groups
from lib.harness import (
    Digestd, SmtpSink, TcpRedis, digestctl, metric_sum, wait_for)
from lib.pipeline_data import window

GIVE_UP = 12.0


class Greylist:
    """Answers 451 to chosen recipients: `until` seconds after the first
    time each is seen (None: forever), and records every 451 and when."""

    def __init__(self, rules):
        self.rules = rules              # {rcpt: seconds or None}
        self.first = {}
        self.refusals = []              # (monotonic time, rcpt)
        self.lock = threading.Lock()

    def __call__(self, addr):
        rule = self.rules.get(addr, "pass")
        if rule == "pass":
            return None
        now = time.monotonic()
        with self.lock:
            first = self.first.setdefault(addr, now)
            if rule is None or now - first < rule:
                self.refusals.append((now, addr))
                return "451 4.7.1 greylisted, try again later"
        return None

    def refused(self, addr):
        with self.lock:
            return [t for t, a in self.refusals if a == addr]


def smtp_config(tmp_path, redis, rabbit, vhost, backend, sink, retry="1s"):
    extra = ("defer_retry_min = %s\ndefer_retry_max = 2s\n"
             "defer_give_up = %ds\n" % (retry, GIVE_UP))
    cfg = amqp_config(tmp_path, redis, rabbit, vhost, backend=backend,
                      transport="smtp", sink=sink, workers=1)
    # Put the retry settings into the [smtp] section the helper wrote.
    with open(cfg) as f:
        text = f.read()
    text = text.replace("messages_per_session = 500\n",
                        "messages_per_session = 500\n" + extra)
    with open(cfg, "w") as f:
        f.write(text)
    return cfg


@pytest.fixture(params=["redis", "amqp"])
def backend(request):
    return request.param


@pytest.fixture
def tcp_redis(tmp_path):
    srv = TcpRedis(tmp_path / "redis")
    srv.aof = True      # the delayed set must outlive a restart
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _vhost(backend, request):
    if backend != "amqp":
        return None, "/"
    rabbit = request.getfixturevalue("rabbitmq")
    return rabbit, rabbit.vhost("grey")


class _NoRabbit:
    def url(self, vhost="/"):
        return "amqp://guest:guest@127.0.0.1:1/%2F"


def test_greylisted_recipient_retried_on_a_clock(tmp_path, backend, request, tcp_redis):
    rabbit, vhost = _vhost(backend, request)
    r = tcp_redis.client()
    ws, we = window()
    now = we + 3600
    # Group 1: a greylisted for 8 s, b for ever, c accepted at once.
    # Group 2, enqueued after it: three ordinary members.
    write_groups(r, {1: [11, 12, 13], 2: [21, 22, 23]}, we)
    a, b, c = "u11@example.org", "u12@example.org", "u13@example.org"
    grey = Greylist({a: 8.0, b: None})
    sink = SmtpSink()
    sink.reply_for = grey
    sink.start()
    try:
        cfg = smtp_config(tmp_path, tcp_redis, rabbit or _NoRabbit(), vhost,
                          backend, sink)
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            digestctl(cfg, "enqueue", "--group", "1", "--period", "daily",
                      "--now", str(now))
            wait_for(lambda: grey.refused(b), timeout=30, what="b refused")
            digestctl(cfg, "enqueue", "--group", "2", "--period", "daily",
                      "--now", str(now))
            j1 = "daily.%d.1.0" % we
            j2 = "daily.%d.2.0" % we

            # The single worker finishes group 2 while group 1 waits for
            # its deferred recipients, and before a's greylisting ends.
            def j2_done():
                return r.hget("digest:job:" + j2, "state") == "done"
            wait_for(j2_done, timeout=30, what="the later job done")
            got = [m[1] for m in sink.messages]
            assert sorted(x for x in got if x.startswith("u2")) == [
                "u21@example.org", "u22@example.org", "u23@example.org"]
            assert a not in got, "a was delivered before its greylisting ended"
            cp = r.hgetall("digest:job:" + j1)
            assert cp.get("state") == "waiting", cp
            assert float(cp["due_at"]) > time.time() - 5, cp
            # Who it waits for: both deferred recipients, each with its
            # first 4xx, its next try and its count of 4xx answers.
            assert cp.get("deferred") == "2", cp
            assert "d:11" in cp and "d:12" in cp, cp
            assert "deferred" in cp.get("last_error", ""), cp

            # a goes through once its greylisting ends; b is retried on
            # the clock and given up only defer_give_up after its first 4xx.
            def j1_done():
                if d.exited():
                    raise AssertionError(d.log()[-3000:])
                return r.hget("digest:job:" + j1, "state") == "done"
            wait_for(j1_done, timeout=GIVE_UP + 30, what="the first job done")
            done_at = time.monotonic()
            got = [m[1] for m in sink.messages]
            assert got.count(a) == 1 and got.count(c) == 1, got
            assert b not in got
            tb = grey.refused(b)
            assert done_at - tb[0] >= GIVE_UP, (done_at - tb[0])
            assert 3 <= len(tb) <= 20, tb
            # Retries are spaced by the clock, never a tight loop.
            gaps = [y - x for x, y in zip(tb, tb[1:])]
            assert min(gaps) >= 0.8, gaps
            text = d.metrics()
            assert metric_sum(text, "digest_emails_total", result="rejected") == 1
            assert metric_sum(text, "digest_emails_total", result="sent") == 5
            assert metric_sum(text, "digest_jobs_total", result="dead_lettered") == 0
            assert r.hget("digest:job:" + j1, "sent") == "2"
        finally:
            d.kill()
    finally:
        sink.stop()


def test_waiting_job_survives_restarts(tmp_path, backend, request, tcp_redis):
    """A job waiting for a deferred recipient survives a SIGKILL of the
    whole digestd and a restart of Redis: it is retried when due and the
    recipient gets exactly one email."""
    rabbit, vhost = _vhost(backend, request)
    r = tcp_redis.client()
    ws, we = window()
    now = we + 3600
    write_groups(r, {5: [51, 52]}, we)
    a = "u51@example.org"
    grey = Greylist({a: 6.0})
    sink = SmtpSink()
    sink.reply_for = grey
    sink.start()
    try:
        cfg = smtp_config(tmp_path, tcp_redis, rabbit or _NoRabbit(), vhost,
                          backend, sink)
        d = Digestd(cfg, tmp_path)
        d.start()
        j = "daily.%d.5.0" % we
        try:
            digestctl(cfg, "enqueue", "--group", "5", "--period", "daily",
                      "--now", str(now))
            wait_for(lambda: r.hget("digest:job:" + j, "state") == "waiting",
                     timeout=30, what="the job waiting")
        finally:
            d.kill()
        # Redis restarts from its append-only file.
        r.bgrewriteaof()
        wait_for(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0,
                 timeout=10, what="AOF rewrite")
        tcp_redis.stop()
        tcp_redis.start()
        r = tcp_redis.client()
        assert r.hget("digest:job:" + j, "state") == "waiting"
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            wait_for(lambda: r.hget("digest:job:" + j, "state") == "done",
                     timeout=40, what="the job done after the restarts")
            got = [m[1] for m in sink.messages]
            assert sorted(got) == [a, "u52@example.org"], got
        finally:
            d.kill()
    finally:
        sink.stop()


def test_status_shows_the_wait(tmp_path, backend, request, tcp_redis):
    """While a job waits, /status and /metrics show it in its queue's
    delayed set, with when it is due."""
    rabbit, vhost = _vhost(backend, request)
    r = tcp_redis.client()
    ws, we = window()
    write_groups(r, {6: [61, 62]}, we)
    sink = SmtpSink()
    sink.reply_for = Greylist({"u61@example.org": None})
    sink.start()
    try:
        cfg = smtp_config(tmp_path, tcp_redis, rabbit or _NoRabbit(), vhost,
                          backend, sink, retry="45s")
        with open(cfg) as f:
            text = f.read().replace("defer_retry_max = 2s", "defer_retry_max = 60s")
        with open(cfg, "w") as f:
            f.write(text)
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            t0 = time.time()
            digestctl(cfg, "enqueue", "--group", "6", "--period", "daily",
                      "--now", str(we + 3600))
            j = "daily.%d.6.0" % we
            wait_for(lambda: r.hget("digest:job:" + j, "state") == "waiting",
                     timeout=30, what="the job waiting")

            def shown():
                q = d.status()["queues"]["standard"]
                return q if q.get("delayed") == 1 else None
            q = wait_for(shown, timeout=20, interval=0.5,
                         what="/status showing the waiting job")
            assert t0 + 40 <= q["next_due"] <= time.time() + 46, q
            assert metric_sum(d.metrics(), "digest_queue_delayed",
                              queue="standard") == 1
            assert [m[1] for m in sink.messages] == ["u62@example.org"]
        finally:
            d.kill()
    finally:
        sink.stop()


def test_deferred_while_redis_is_away_is_not_lost(tmp_path, tcp_redis):
    """A recipient answered 4xx at the moment Redis goes away (its wait
    cannot be recorded) is kept and recorded once Redis is back: never
    lost, though the cursor moved past it."""
    r = tcp_redis.client()
    ws, we = window()
    write_groups(r, {7: [71, 72, 73, 74, 75, 76]}, we)
    r.config_set("appendfsync", "always")
    victim = "u73@example.org"
    seen = []

    def crash_then_restart():
        tcp_redis.proc.kill()
        tcp_redis.proc.wait(timeout=10)
        time.sleep(1.5)
        tcp_redis.start()

    def reply(addr):
        seen.append(addr)
        if addr == victim and seen.count(victim) == 1:
            # Redis dies as this recipient is deferred.
            threading.Thread(target=crash_then_restart, daemon=True).start()
            time.sleep(0.3)
            return "451 4.7.1 greylisted, try again later"
        return None

    sink = SmtpSink()
    sink.reply_for = reply
    sink.start()
    try:
        cfg = smtp_config(tmp_path, tcp_redis, _NoRabbit(), "/", "redis", sink)
        with open(cfg) as f:
            text = f.read().replace("max_attempts = 3", "max_attempts = 20")
        with open(cfg, "w") as f:
            f.write(text)
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
            got = [m[1] for m in sink.messages]
            want = ["u%d@example.org" % u for u in range(71, 77)]
            assert sorted(set(got)) == want, got
            assert got.count(victim) == 1
            assert len(got) - len(set(got)) <= 1, got
        finally:
            d.kill()
    finally:
        sink.stop()
