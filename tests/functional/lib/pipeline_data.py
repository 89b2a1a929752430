"""Data and jobs for the pipeline tests: the documented data model written with
redis-py, jobs enqueued with XADD on digest:q:{queue}, a config for the
smtp or maildir transport, and waits on a job's checkpoint.

Only loopback servers and unix sockets are used; every wait is bounded.
"""
import hashlib
import hmac
import os
import time

from lib import config as conf
from lib.config import SECRET, UNSUB_URL  # noqa: F401 (the tests' own)
from lib.harness import wait_for

DAY = 86400


def window(period="daily"):
    """(start, end) of the last complete period: ends at today's 00:00 UTC."""
    now = int(time.time())
    end = now - now % DAY
    return end - (DAY if period == "daily" else 7 * DAY), end


def token(uid, gid, secret=SECRET):
    return hmac.new(secret.encode(), ("%s:%s" % (uid, gid)).encode(),
                    hashlib.sha256).hexdigest()


def config(tmp_path, redis, sink=None, maildir=None, workers=1, batch=500,
           large=10000, memory_limit="256M", per_session=500, extra="",
           prefix="", max_attempts=3, backend=None):
    """A digestd config with one pool, `standard`, and the chosen transport;
    with backend (a lib.backends object) on that queue backend, its queues
    declared."""
    cfg = conf.build(tmp_path, conf.merge(
        {"supervisor": {"drain_timeout": "20s", "stall_timeout": "20s",
                        "restart_backoff_max": "500ms"},
         "queue": {"max_attempts": max_attempts},
         "pool.standard": {"queue": "standard", "workers": workers,
                           "memory_limit": memory_limit},
         "digest": {"batch_size": batch, "large_group_threshold": large,
                    "max_posts": 10}},
        conf.smtp(sink, per_session) if sink is not None else
        {"maildir": {"path": maildir or os.path.join(str(tmp_path), "outbox")}},
        backend.overrides(max_attempts) if backend is not None else {}),
        sections=(redis.config_section(prefix=prefix),), extra=extra)
    if backend is not None:
        backend.prepare(cfg)
    return cfg


class Data:
    """Writes groups, members, posts and users in the documented data model."""

    def __init__(self, client, prefix=""):
        self.r = client
        self.p = prefix

    def group(self, gid, name="Group", url="https://example.com/g", latest=None):
        fields = {}
        if name is not None:
            fields["name"] = name
        if url is not None:
            fields["url"] = url
        if fields:
            self.r.hset(self.p + "group:%s" % gid, mapping=fields)
        self.r.zadd(self.p + "groups:active", {str(gid): latest or time.time()})

    def members(self, gid, uids):
        pipe = self.r.pipeline(transaction=False)
        uids = list(uids)
        for i in range(0, len(uids), 10000):
            pipe.zadd(self.p + "group:%s:members" % gid,
                      {str(u): u for u in uids[i:i + 10000]})
        pipe.execute()

    def post(self, gid, pid, at, **fields):
        self.r.zadd(self.p + "group:%s:posts" % gid, {str(pid): at})
        if fields:
            self.r.hset(self.p + "post:%s" % pid,
                        mapping={k: str(v) for k, v in fields.items()})

    def user(self, uid, **fields):
        if fields:
            self.r.hset(self.p + "user:%s" % uid,
                        mapping={k: str(v) for k, v in fields.items()})


def job_id(period, wend, gid, shard=0):
    return "%s.%d.%s.%d" % (period, wend, gid, shard)


def job(gid, period, wstart, wend, mmin=0, mmax=2 ** 53, shard=0):
    """The fields of one job, as strings."""
    return {
        "job_id": job_id(period, wend, gid, shard), "group_id": str(gid),
        "period": period, "window_start": str(wstart), "window_end": str(wend),
        "member_min": str(mmin), "member_max": str(mmax),
        "enqueued_at": "%.6f" % time.time(),
    }


def enqueue_on(backend, gid, period, wstart, wend, mmin=0, mmax=2 ** 53,
               queue="standard", shard=0):
    """Enqueue one job on a queue backend (a lib.backends object); its id."""
    fields = job(gid, period, wstart, wend, mmin, mmax, shard)
    backend.enqueue(queue, fields)
    return fields["job_id"]


def enqueue(client, gid, period, wstart, wend, mmin=0, mmax=2 ** 53,
            queue="standard", prefix="", shard=0):
    """XADD one job; creates the stream's consumer group if needed."""
    key = prefix + "digest:q:" + queue
    try:
        client.xgroup_create(key, "digestd", id="0", mkstream=True)
    except Exception as e:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(e):
            raise
    jid = job_id(period, wend, gid, shard)
    client.xadd(key, {
        "job_id": jid, "group_id": str(gid), "period": period,
        "window_start": str(wstart), "window_end": str(wend),
        "member_min": str(mmin), "member_max": str(mmax),
        "enqueued_at": "%.6f" % time.time(),
    })
    return jid


def job_state(client, jid, prefix=""):
    return client.hgetall(prefix + "digest:job:" + jid)


def wait_done(client, jid, timeout=60, prefix="", d=None):
    def done():
        if d is not None and d.exited():
            raise AssertionError("digestd exited:\n" + d.log()[-3000:])
        return job_state(client, jid, prefix).get("state") == "done"
    wait_for(done, timeout=timeout, interval=0.05, what="job %s done" % jid)
    return job_state(client, jid, prefix)


def rcpts(sink):
    with sink.lock:
        return [m[1] for m in sink.messages]


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
