"""Who gets a digest, end to end, on either queue backend: a crafted
dataset in Redis, jobs enqueued, the real digestd sending to an SMTP sink.

Checks the exact recipient set, the skip counts by reason in /metrics, the
order of posts, that a member's own posts are left out, and that running
the same window again sends nothing.
"""
import email
import email.policy
import time

from lib.harness import Digestd, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    EXPECTED, OLD, Data, craft, config, enqueue_on, rcpts, wait_done, window)


def plain_part(msg):
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_content()
    raise AssertionError("no text/plain part")


def test_pipeline_recipients(tmp_path, backend, smtp_sink):
    r = backend.r
    ws, we = window()
    craft(r, ws, we)
    cfg = config(tmp_path, backend.redis, backend=backend, sink=smtp_sink,
                 large=10, batch=4, per_session=3)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jids = [enqueue_on(backend, g, "daily", ws, we) for g in (1, 2, 3)]
        states = [wait_done(r, j, timeout=60, d=d) for j in jids]
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(EXPECTED), got
        assert len(got) == len(set(got)), "duplicates: %s" % got
        assert [int(s["sent"]) for s in states] == [4, 6, 0]

        text = d.metrics()
        skipped = {reason: metric_sum(text, "digest_recipients_skipped_total",
                                      reason=reason)
                   for reason in ("no_email", "opted_out", "inactive",
                                  "nothing_new", "already_sent")}
        assert skipped == {"no_email": 4, "opted_out": 4, "inactive": 2,
                           "nothing_new": 3, "already_sent": 0}, skipped
        assert metric_sum(text, "digest_emails_total", result="sent") == 10
        assert metric_sum(text, "digest_emails_total", result="rejected") == 0
        # Each email accepted is one observation of the window-end delay.
        assert metric_sum(text, "digest_email_delay_seconds_count") == 10

        msgs = {m[1]: email.message_from_bytes(m[2], policy=email.policy.default)
                for m in smtp_sink.messages}
        # Most engaging first, newer first on ties; the window is (start, end].
        body = plain_part(msgs["u9@example.org"])
        order = ["Most liked", "Newer tie", "Older tie", "At the window end"]
        pos = [body.find(t) for t in order]
        assert all(p >= 0 for p in pos), body
        assert pos == sorted(pos), body
        assert "Before the window" not in body
        assert "At the window start" not in body
        # A member's own posts are left out of their email.
        body7 = plain_part(msgs["u7@example.org"])
        assert "Most liked" not in body7
        assert "Newer tie" in body7 and "At the window end" in body7

        # The same window again: the jobs are done, nothing is sent.
        for g in (1, 2, 3):
            enqueue_on(backend, g, "daily", ws, we)
        # A marker job behind them on the one worker shows they were handled.
        Data(r).group(9, name="Marker")
        Data(r).members(9, [90])
        Data(r).user(90, email="marker@example.org")
        Data(r).post(9, 901, we - 5, title="Marker post", author_id=1)
        wait_done(r, enqueue_on(backend, 9, "daily", ws, we), timeout=60, d=d)
        wait_for(lambda: "marker@example.org" in rcpts(smtp_sink), timeout=10,
                 what="marker email")
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(EXPECTED | {"marker@example.org"}), got
    finally:
        d.kill()


def test_pipeline_shards(tmp_path, backend, smtp_sink):
    """Shards of one group (member_min..member_max, inclusive) cover each
    member once; inactivity is judged on the whole group's size."""
    r = backend.r
    ws, we = window()
    d = Data(r)
    d.group(8, name="Sharded")
    uids = list(range(10, 40))
    d.members(8, uids)
    for u in uids:
        # Members 10..14 are inactive; the group (30) is large (>= 20).
        seen = we - 300 * 86400 if u < 15 else we - 60
        d.user(u, email="u%d@example.org" % u, last_seen=seen)
    d.post(8, 801, we - 60, title="Sharded news", author_id=1)
    cfg = config(tmp_path, backend.redis, backend=backend, sink=smtp_sink,
                 large=20, batch=7)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        bounds = [(10, 19), (20, 29), (30, 39)]
        jids = [enqueue_on(backend, 8, "daily", ws, we, mmin=a, mmax=b, shard=k)
                for k, (a, b) in enumerate(bounds)]
        sent = [int(wait_done(r, j, timeout=60, d=proc)["sent"]) for j in jids]
        assert sent == [5, 10, 10]
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted("u%d@example.org" % u for u in uids if u >= 15)
        assert len(got) == len(set(got))
        assert metric_sum(proc.metrics(), "digest_recipients_skipped_total",
                          reason="inactive") == 5
    finally:
        proc.kill()


def titles(msg):
    body = plain_part(msg)
    return [line.strip() for line in body.splitlines() if line.strip().startswith("Post ")]


def test_pipeline_prolific_author_still_gets_ten(tmp_path, backend, smtp_sink):
    """max_posts = 10 of 40 posts: a member who wrote the 15 most engaging
    posts gets the 10 best of the others', everyone else the top 10."""
    r = backend.r
    ws, we = window()
    d = Data(r)
    d.group(4, name="Busy group")
    d.members(4, [5, 6])
    d.user(5, email="prolific@example.org")
    d.user(6, email="reader@example.org")
    for i in range(40):
        # Rank i: likes 100 - i; posts 0..14 by member 5.
        d.post(4, 400 + i, we - 1000 + i, title="Post %02d" % i,
               author_id=5 if i < 15 else 7, likes=100 - i)
    cfg = config(tmp_path, backend.redis, backend=backend, sink=smtp_sink)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        wait_done(r, enqueue_on(backend, 4, "daily", ws, we), timeout=60, d=proc)
        msgs = {m[1]: email.message_from_bytes(m[2], policy=email.policy.default)
                for m in smtp_sink.messages}
        assert titles(msgs["reader@example.org"]) == ["Post %02d" % i for i in range(10)]
        assert titles(msgs["prolific@example.org"]) == ["Post %02d" % i
                                                        for i in range(15, 25)]
    finally:
        proc.kill()
