"""Rejects by class (docs/design.md#metric-series): every recipient given
up is counted in digest_emails_rejected_total{pool,class} as well as in
digest_emails_total{result="rejected"}, so the sum over class equals it.
mailbox: a 5xx saying the mailbox does not exist (the same reading as the
suppression list's); policy: any other 5xx; expired: a 4xx given up after
smtp.defer_give_up.  Every class is present, as 0, from the first scrape.
"""
from lib.amqp_util import config as amqp_config, write_groups
from lib.harness import Digestd, SmtpSink, digestctl, metric, metric_sum, wait_for
from lib.pipeline_data import window

CLASSES = ("mailbox", "policy", "expired")


class _NoRabbit:
    def url(self, vhost="/"):
        return "amqp://guest:guest@127.0.0.1:1/%2F"


def test_rejects_counted_by_class(tmp_path, redis_tcp):
    r = redis_tcp.client()
    _, we = window()
    write_groups(r, {1: [11, 12, 13, 14]}, we)
    replies = {
        "u11@example.org": "550 5.1.1 no such user",
        "u12@example.org": "554 5.7.1 rejected as spam",
        "u13@example.org": "451 4.7.1 greylisted, try again later",
    }
    sink = SmtpSink()
    sink.reply_for = replies.get
    sink.start()
    try:
        cfg = amqp_config(tmp_path, redis_tcp, _NoRabbit(), "/",
                          backend="redis", transport="smtp", sink=sink)
        # A short queue lifetime for the recipient deferred for ever.
        with open(cfg) as f:
            text = f.read()
        text = text.replace("messages_per_session = 500\n",
                            "messages_per_session = 500\n"
                            "defer_retry_min = 1s\ndefer_retry_max = 1s\n"
                            "defer_give_up = 3s\n")
        with open(cfg, "w") as f:
            f.write(text)
        d = Digestd(cfg, tmp_path)
        d.start()
        try:
            first = d.metrics()
            for c in CLASSES:
                assert metric(first, "digest_emails_rejected_total",
                              pool="standard", **{"class": c}) == 0, c
            digestctl(cfg, "enqueue", "--group", "1", "--period", "daily",
                      "--now", str(we + 3600))
            j = "daily.%d.1.0" % we

            def done():
                if d.exited():
                    raise AssertionError(d.log()[-3000:])
                return r.hget("digest:job:" + j, "state") == "done"
            wait_for(done, timeout=60, what="the job done")
            text = d.metrics()
            got = {c: metric(text, "digest_emails_rejected_total",
                             pool="standard", **{"class": c})
                   for c in CLASSES}
            assert got == {"mailbox": 1, "policy": 1, "expired": 1}, got
            assert sum(got.values()) == metric_sum(
                text, "digest_emails_total", result="rejected") == 3
            assert metric_sum(text, "digest_emails_total", result="sent") == 1
            # The classes agree with the feedback keys.
            assert r.smembers("digest:suppressed") == {"u11@example.org"}
            assert len(r.xrange("digest:rejected")) == 3
        finally:
            d.kill()
    finally:
        sink.stop()
