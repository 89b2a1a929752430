"""Members are walked in the order of the members sorted set, by a cursor
on (score, member): a member whose score is not its user id (fractional,
shared with others, negative) is still visited exactly once and never
hides a neighbour, across batches and across a resumed job; and a group's
last shard is open-ended, so a member who joins after scheduling is
served too.
"""
import collections

from lib.harness import Digestd, digestctl, metric_sum
from lib.pipeline_data import (  # noqa: F401
    Data, config, rcpts, wait_done, window)


def odd_group(r, gid, we):
    """A group whose scores are everything but the user ids."""
    d = Data(r)
    d.group(gid, name="Odd")
    scores = {}
    uid = 500
    # Runs of equal scores longer than a batch, fractions between them,
    # negative ones, one far away, and some members that are not ids.
    for s in [1.5] * 7 + [1.25, 1.75, -3, -3, -0.5, 2, 2, 2, 2.0000001, 1e15]:
        scores[str(uid)] = s
        uid += 1
    for u in range(uid, uid + 20):
        scores[str(u)] = 3 + (u % 4) / 4.0
    scores["not-a-user"] = 1.5
    scores["007"] = 1.5
    r.zadd("group:%d:members" % gid, scores)
    uids = [int(m) for m in scores if m.isdigit() and not m.startswith("0")]
    for u in uids:
        d.user(u, email="u%d@example.org" % u)
    d.post(gid, gid * 1000, we - 60, title="News", author_id=1)
    return sorted("u%d@example.org" % u for u in uids)


def test_odd_scores_each_member_once(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    want = odd_group(r, 7, we)
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=3, per_session=2)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        digestctl(cfg, "enqueue", "--group", "7", "--period", "daily",
                  "--now", str(we + 3600))
        st = wait_done(r, "daily.%d.7.0" % we, timeout=60, d=d)
        got = rcpts(smtp_sink)
        assert sorted(got) == want, sorted(set(want) ^ set(got))
        assert int(st["sent"]) == len(want)
        text = d.metrics()
        # The two members that are not user ids, counted, not sent to.
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="bad_data") == 2
    finally:
        d.kill()


def test_odd_scores_resumed_after_kills(tmp_path, redis_tcp, smtp_sink):
    """Killing the worker again and again: each member still gets one
    email, at most one duplicate per kill."""
    import os
    import signal
    import time

    from lib.amqp_util import worker_pids
    from lib.harness import wait_for

    r = redis_tcp.client()
    ws, we = window()
    want = odd_group(r, 8, we)
    slow = []

    def reply(addr):
        slow.append(addr)
        time.sleep(0.05)
        return None

    smtp_sink.reply_for = reply
    # Each kill is an attempt: room for all of them.
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=3, per_session=2,
                 max_attempts=20)
    d = Digestd(cfg, tmp_path)
    d.start()
    kills = 0
    try:
        digestctl(cfg, "enqueue", "--group", "8", "--period", "daily",
                  "--now", str(we + 3600))
        jid = "daily.%d.8.0" % we
        for k in range(4):
            n = len(slow)
            wait_for(lambda: len(slow) >= n + 4 or
                     r.hget("digest:job:" + jid, "state") == "done",
                     timeout=30, what="progress")
            if r.hget("digest:job:" + jid, "state") == "done":
                break
            for pid in worker_pids(d):
                os.kill(pid, signal.SIGKILL)
                kills += 1
        wait_done(r, jid, timeout=60, d=d)
        got = collections.Counter(rcpts(smtp_sink))
        assert sorted(got) == want, sorted(set(want) ^ set(got))
        assert kills >= 2, kills
        dups = sum(n - 1 for n in got.values())
        assert dups <= kills, (dups, kills)
    finally:
        d.kill()


def test_last_shard_takes_members_who_join_later(tmp_path, redis_tcp, smtp_sink):
    """The job is enqueued, then a member joins with a higher user id
    before the worker gets to it: the one-shard group's job serves them."""
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(9, name="Growing")
    d.members(9, [900, 901, 902])
    for u in (900, 901, 902, 903):
        d.user(u, email="u%d@example.org" % u)
    d.post(9, 9000, we - 60, title="News", author_id=1)
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink)
    digestctl(cfg, "enqueue", "--group", "9", "--period", "daily",
              "--now", str(we + 3600))
    d.members(9, [903])             # joins after scheduling
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        wait_done(r, "daily.%d.9.0" % we, timeout=60, d=proc)
        assert sorted(rcpts(smtp_sink)) == [
            "u900@example.org", "u901@example.org", "u902@example.org",
            "u903@example.org"]
    finally:
        proc.kill()
