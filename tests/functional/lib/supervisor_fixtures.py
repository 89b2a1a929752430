"""Helpers for the supervisor's functional tests: seeding groups straight
into the documented data model, enqueueing jobs with XADD, a slow SMTP sink, and
reading worker pids from the process table and /status.

Every wait is bounded; every process started here is stopped by pid.
"""
import os
import time

from lib import config as conf
from lib.harness import wait_for


def seed_group(r, gid, members=5, posts=3, excerpt_bytes=40, window_end=None,
               uid_base=None, prefix=""):
    """Write group gid with members users and posts posts in the window.

    Returns the member uids.  Every member is eligible: an email, a recent
    last_seen, the daily digest, and posts by someone else.
    """
    now = int(time.time())
    window_end = window_end or now
    uid_base = uid_base if uid_base is not None else gid * 100000
    p = r.pipeline(transaction=False)
    p.hset(prefix + "group:%d" % gid, mapping={"name": "Group %d" % gid,
                                               "url": "https://example.com/g/%d" % gid})
    p.zadd(prefix + "groups:active", {str(gid): window_end - 60})
    uids = [uid_base + i for i in range(1, members + 1)]
    for uid in uids:
        p.zadd(prefix + "group:%d:members" % gid, {str(uid): uid})
        p.hset(prefix + "user:%d" % uid, mapping={
            "email": "u%d@example.org" % uid, "name": "User %d" % uid,
            "last_seen": str(now), "digest": "daily"})
    excerpt = ("x" * 63 + " ") * (excerpt_bytes // 64) + "y" * (excerpt_bytes % 64)
    for k in range(posts):
        pid = gid * 1000 + k
        p.zadd(prefix + "group:%d:posts" % gid, {str(pid): window_end - 600 - k})
        p.hset(prefix + "post:%d" % pid, mapping={
            "title": "Post %d of group %d" % (k, gid),
            "url": "https://example.com/p/%d" % pid,
            "author_id": "1", "author_name": "Author",
            "excerpt": excerpt, "likes": str(k), "comments": "0"})
    p.execute()
    return uids


# Members that one batch of BIG_BATCH reads at once: about 29 MB of worker
# memory (the member list's reply, the pipeline of user reads), more than a
# memory_limit of 24M.  No single value in the activity store can do that
# (reads are capped), so a batch too large for memory_limit, as a
# misconfigured pool would have, is what makes a worker run out of memory.
BIG_BATCH = 100000


def seed_big_group(r, gid, window_end=None, members=BIG_BATCH):
    """Write group gid with members members (no user hashes) and one post
    in the window; returns the member uids, 16 digits long."""
    window_end = window_end or int(time.time())
    uids = [10 ** 15 + gid * 10 ** 6 + i for i in range(1, members + 1)]
    p = r.pipeline(transaction=False)
    p.hset("group:%d" % gid, mapping={"name": "Group %d" % gid})
    p.zadd("groups:active", {str(gid): window_end - 60})
    for i in range(0, members, 10000):
        p.zadd("group:%d:members" % gid, {str(u): u for u in uids[i:i + 10000]})
    p.zadd("group:%d:posts" % gid, {str(gid * 1000): window_end - 600})
    p.hset("post:%d" % (gid * 1000), mapping={"title": "Post", "author_id": "1"})
    p.execute()
    return uids


def job_fields(gid, uids, window_end=None, period="daily"):
    window_end = window_end or int(time.time())
    return {
        "job_id": "%s.%d.%d.0" % (period, window_end, gid),
        "group_id": str(gid),
        "period": period,
        "window_start": str(window_end - 86400),
        "window_end": str(window_end),
        "member_min": str(min(uids)),
        "member_max": str(max(uids)),
        "enqueued_at": "%.3f" % time.time(),
    }


def ensure_stream(r, queue, prefix=""):
    key = prefix + "digest:q:%s" % queue
    try:
        r.xgroup_create(key, "digestd", id="0", mkstream=True)
    except Exception as e:  # BUSYGROUP: already there
        if "BUSYGROUP" not in str(e):
            raise
    return key


def enqueue(r, queue, fields, prefix=""):
    """XADD a job to digest:q:{queue} (the group is created first)."""
    key = ensure_stream(r, queue, prefix)
    return r.xadd(key, fields)


def queue_state(r, queue, prefix=""):
    """(entries never delivered + pending, pending) of a queue's group."""
    key = prefix + "digest:q:%s" % queue
    if not r.exists(key):
        return 0, 0
    for g in r.xinfo_groups(key):
        if g["name"] == "digestd":
            lag = g.get("lag")
            if lag is None:
                lag = 0
            return lag + g["pending"], g["pending"]
    return r.xlen(key), 0


def wait_queue_state(r, queue, want, timeout=10, prefix=""):
    """Wait (bounded) until queue_state() is want.  A worker acknowledges
    its job just after it marks the checkpoint done or dead, so a test that
    saw the checkpoint must wait for the acknowledgement too."""
    try:
        wait_for(lambda: queue_state(r, queue, prefix) == want, timeout=timeout,
                 what="queue %s at %r" % (queue, want))
    except AssertionError:
        raise AssertionError("queue %s at %r, not %r" % (
            queue, queue_state(r, queue, prefix), want))


def checkpoint(r, job_id, prefix=""):
    return r.hgetall(prefix + "digest:job:%s" % job_id)


def dead_letters(r, prefix=""):
    return r.xrange(prefix + "digest:dlq")


def sup_config(tmp_path, redis, pools, supervisor="", extra="", smtp=None,
               port=None, digest="", overrides=None):
    """A full config: the default, redis, the pools, optional smtp.

    pools: {name: {"workers": 2, ...}}; supervisor and digest: "key = value"
    lines for those sections (they override the default's keys); overrides
    (a config.build overrides dict, such as a queue backend's) last.
    """
    tp = {}
    if smtp is not None:
        tp = conf.smtp(smtp, 1000)
        del tp["maildir"]       # left in, unused, as it always was
    return conf.text(tmp_path, conf.merge(
        {"supervisor": conf.parse_lines(supervisor),
         "digest": conf.parse_lines(digest)},
        tp,
        {"pool.%s" % name: kv for name, kv in pools.items()},
        overrides),
        sections=(redis.config_section("redis"),), extra=extra, port=port,
        last="pool.%s" % list(pools)[-1] if pools else None)


def proc_title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def workers(d, pool=None):
    """{pid: title} of d's worker processes (optionally of one pool)."""
    out = {}
    for pid in d.children():
        t = proc_title(pid)
        if "worker" not in t:
            continue
        if pool is not None and ("worker %s#" % pool) not in t:
            continue
        out[pid] = t
    return out


def busy_worker(d, pool=None):
    """The pid of a worker whose title names a job, or None."""
    for pid, t in workers(d, pool).items():
        if "job=" in t:
            return pid
    return None


def status_workers(d, pool=None, state=None):
    out = []
    for w in d.status()["workers"]:
        if pool is not None and w.get("pool") != pool:
            continue
        if state is not None and w.get("state") != state:
            continue
        out.append(w)
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return proc_state(pid) not in (None, "Z")


def restarts(d, pool, reason):
    from lib.harness import metric

    v = metric(d.metrics(), "digest_worker_restarts_total", pool=pool, reason=reason)
    return v or 0.0


def log_lines(d, msg=None, **kv):
    """Lines of d's log with msg="..." and every key=value given."""
    out = []
    for line in d.log().splitlines():
        if msg is not None and ('msg="%s"' % msg) not in line and ("msg=%s" % msg) not in line:
            continue
        if all(("%s=%s" % (k, v)) in line for k, v in kv.items()):
            out.append(line)
    return out


def wait_workers(d, n, pool=None, timeout=15, exclude=()):
    """Wait until d has n idle-or-busy workers (of pool), none in exclude."""
    def ok():
        ws = workers(d, pool)
        ws = {p: t for p, t in ws.items() if p not in exclude and alive(p)}
        return ws if len(ws) == n else None
    return wait_for(ok, timeout=timeout, what="%d workers of %s" % (n, pool))
