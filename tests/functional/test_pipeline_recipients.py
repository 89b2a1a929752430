"""Who gets a digest (SPEC 5), end to end: a crafted dataset in Redis, jobs
enqueued on the stream, the real digestd sending to an SMTP sink.

Checks the exact recipient set, the skip counts by reason in /metrics, the
order of posts, that a member's own posts are left out, and that running
the same window again sends nothing.
"""
import email
import email.policy
import time

from harness import Digestd, metric_sum, wait_for
from pipeline_data import redis_tcp, Data, config, enqueue, rcpts, wait_done, window

OLD = 200 * 86400


def craft(r, ws, we):
    d = Data(r)
    # Group 1: small (9 members < large_group_threshold = 10).
    d.group(1, name="Small group")
    d.members(1, range(1, 10))
    d.user(1, email="u1@example.org", name="One")             # no prefs, no last_seen
    d.user(2, email="u2@example.org", digest="daily")
    d.user(3, email="u3@example.org", digest="weekly")        # opted out of daily
    d.user(4, email="u4@example.org", digest="off")           # opted out
    d.user(5, name="No Email")                                # no email field
    # 6: no user hash at all
    d.user(7, email="u7@example.org", last_seen=we)           # an author
    d.user(8, email="", name="Empty")                          # empty email
    d.user(9, email="u9@example.org", last_seen=we - OLD)     # inactive, small group
    d.post(1, 101, we - 9000, title="Most liked", author_id=7, likes=5, comments=0,
           url="https://example.com/p/101", author_name="Seven")
    d.post(1, 102, we - 7200, title="Older tie", author_id=1, likes=1, comments=1)
    d.post(1, 103, we - 3600, title="Newer tie", author_id=2, likes=0, comments=2)
    d.post(1, 105, we, title="At the window end", author_id=1, likes="x")
    d.post(1, 104, ws - 10, title="Before the window", author_id=1, likes=99)
    d.post(1, 106, ws, title="At the window start", author_id=1, likes=99)

    # Group 2: large (12 members >= 10): inactive members are skipped.
    d.group(2, name="Large group")
    d.members(2, range(20, 32))
    d.user(20, email="u20@example.org", last_seen=we)         # only post is theirs
    d.user(21, email="u21@example.org", last_seen=we - 10)
    d.user(22, email="u22@example.org")                       # last_seen missing
    d.user(23, email="u23@example.org", last_seen=we - 91 * 86400)
    d.user(24, email="u24@example.org", last_seen=we - 90 * 86400)  # boundary: active
    d.user(25, email="u25@example.org", digest="off")         # opted out before inactive
    for u in range(26, 30):
        d.user(u, email="u%d@example.org" % u, last_seen=we - 86400, digest="daily")
    # 30: no user hash
    d.user(31, email="u31@example.org", digest="weekly", last_seen=we)
    d.post(2, 201, we - 100, title="Only post", author_id=20, likes=1)

    # Group 3: nothing in the window.
    d.group(3, name="Quiet group")
    d.members(3, [40, 41])
    d.user(40, email="u40@example.org")
    d.user(41, email="u41@example.org")
    d.post(3, 301, ws - 86400, title="Last week", author_id=40)


EXPECTED = {"u1@example.org", "u2@example.org", "u7@example.org", "u9@example.org",
            "u21@example.org", "u24@example.org", "u26@example.org",
            "u27@example.org", "u28@example.org", "u29@example.org"}


def plain_part(msg):
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_content()
    raise AssertionError("no text/plain part")


def test_pipeline_recipients(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    craft(r, ws, we)
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, large=10, batch=4,
                 per_session=3)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jids = [enqueue(r, g, "daily", ws, we) for g in (1, 2, 3)]
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
            enqueue(r, g, "daily", ws, we)
        # A marker job behind them on the one worker shows they were handled.
        Data(r).group(9, name="Marker")
        Data(r).members(9, [90])
        Data(r).user(90, email="marker@example.org")
        Data(r).post(9, 901, we - 5, title="Marker post", author_id=1)
        wait_done(r, enqueue(r, 9, "daily", ws, we), timeout=60, d=d)
        wait_for(lambda: "marker@example.org" in rcpts(smtp_sink), timeout=10,
                 what="marker email")
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(EXPECTED | {"marker@example.org"}), got
    finally:
        d.kill()


def test_pipeline_shards(tmp_path, redis_tcp, smtp_sink):
    """Shards of one group (member_min..member_max, inclusive) cover each
    member once; inactivity is judged on the whole group's size."""
    r = redis_tcp.client()
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
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, large=20, batch=7)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        bounds = [(10, 19), (20, 29), (30, 39)]
        jids = [enqueue(r, 8, "daily", ws, we, mmin=a, mmax=b, shard=k)
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


def test_pipeline_prolific_author_still_gets_ten(tmp_path, redis_tcp, smtp_sink):
    """max_posts = 10 of 40 posts: a member who wrote the 15 most engaging
    posts gets the 10 best of the others', everyone else the top 10."""
    r = redis_tcp.client()
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
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        wait_done(r, enqueue(r, 4, "daily", ws, we), timeout=60, d=proc)
        msgs = {m[1]: email.message_from_bytes(m[2], policy=email.policy.default)
                for m in smtp_sink.messages}
        assert titles(msgs["reader@example.org"]) == ["Post %02d" % i for i in range(10)]
        assert titles(msgs["prolific@example.org"]) == ["Post %02d" % i
                                                        for i in range(15, 25)]
    finally:
        proc.kill()
