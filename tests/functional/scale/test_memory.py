"""Bounded memory on the queue Redis: two weeks of simulated daily and
weekly schedules (digestctl schedule --now, a day at a time), with digestd
processing them or with nobody consuming, then a scan of every digest:*
key: every key carries a TTL within its bound, except the streams, which
are trimmed (acknowledged entries older than two weekly periods go, a
pending one and everything after it stay) and the dead-letter stream,
which is capped.
"""
import os
import time

import pytest

from lib.harness import Digestd, TcpRedis, digestctl, wait_for
from lib.scale_util import config, digest_keys, now_ms, wait_settled

DAY = 86400
WEEK = 7 * DAY
TWO_WEEKS_MS = 14 * DAY * 1000
DLQ_MAXLEN = 100000          # JOBQ_DLQ_MAXLEN
STREAM_NODE = 100            # stream-node-max-entries: the slack of MAXLEN ~

# The upper bound of each kind of key's TTL, in seconds.
TTL_BOUND = {
    "enq": 2 * WEEK,         # two periods (weekly: two weeks)
    "job": WEEK,             # checkpoints: 7 days
    "sched": 2 * WEEK,       # two weekly periods
    "instance": 15,          # a live instance's record, rewritten every 5 s
    "instances": DAY,        # the registry of instances, refreshed at writes
}


@pytest.fixture
def two_redis(tmp_path):
    data = TcpRedis(tmp_path / "data").start()
    queue = TcpRedis(tmp_path / "queue").start()
    try:
        yield data, queue
    finally:
        queue.stop()
        data.stop()


def days():
    """15 scheduler clocks, one per day, ending today at 01:00 UTC."""
    today = int(time.time()) // DAY * DAY
    return [today - (14 - i) * DAY + 3600 for i in range(15)]


def simulate(cfg, q, digestd=None, pending=None):
    """A day at a time: fresh posts, then the daily and weekly schedules
    (weekly is idempotent between Mondays); digestd drains each day."""
    for now in days():
        # The same store every day: --force, as seed refuses one with groups.
        digestctl(cfg, "seed", "--groups", "8", "--members", "240", "--posts",
                  "40", "--seed", "5", "--now", str(now), "--force")
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
        digestctl(cfg, "schedule", "--period", "weekly", "--now", str(now))
        if digestd is not None:
            wait_settled(q, [digestd], timeout=120, pending=pending)


def check_bounds(q):
    """Every digest:* key has a TTL within its bound, or is a stream."""
    keys = digest_keys(q)
    assert keys
    unbounded, over = [], []
    for k, typ in keys.items():
        kind = k.split("digest:", 1)[1].split(":", 1)[0]
        ttl = q.ttl(k)
        if typ == "stream":
            assert kind in ("q", "dlq"), "stream %s has no trim rule" % k
            continue
        if ttl < 0:
            unbounded.append((k, typ, ttl))
        elif ttl > TTL_BOUND.get(kind, 0):
            over.append((k, ttl))
    assert not unbounded, "digest:* keys without a TTL: %r" % unbounded[:10]
    assert not over, "TTL past its bound: %r" % over[:10]
    return keys


def test_two_weeks_processed_keys_bounded_streams_trimmed(tmp_path, two_redis):
    data, queue = two_redis
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"), workers=2)
    q = queue.client()

    # Entries from three weeks ago, as a stream that has run for a while
    # holds: three acknowledged, one still pending (a job in hand).
    key = "digest:q:standard"
    q.xgroup_create(key, "digestd", id="0", mkstream=True)
    old = now_ms() - TWO_WEEKS_MS - 7 * DAY * 1000
    ids = []
    for i in range(4):
        ids.append(q.xadd(key, {"job_id": "daily.%d.999.0" % i, "group_id": "999",
                                "period": "daily", "window_start": "0",
                                "window_end": "1", "member_min": "0",
                                "member_max": "1", "enqueued_at": "1.0"},
                          id="%d-%d" % (old + i, 0)))
    got = q.xreadgroup("digestd", "gone", {key: ">"}, count=4)
    assert [e[0] for e in got[0][1]] == ids
    q.xack(key, "digestd", *ids[:3])

    d = Digestd(cfg, tmp_path).start()
    try:
        simulate(cfg, q, d, pending={"standard": 1})
        keys = check_bounds(q)
        kinds = {k.split(":")[1] for k in keys}
        assert {"q", "job", "enq", "sched"} <= kinds, sorted(keys)[:20]

        # Old acknowledged entries are gone; the pending one is kept.
        entries = q.xrange(key)
        assert entries[0][0] == ids[3], entries[:5]
        recent = [e for e in entries if int(e[0].split("-")[0]) > old + 10]
        assert len(recent) == len(entries) - 1
        assert recent, "no job of the two weeks on the standard queue"
        info = q.xinfo_stream(key)
        assert info["first-entry"][0] == ids[3]
        assert info["length"] == len(entries)

        # Once it is acknowledged, the next run trims it too, and keeps
        # the two weeks' acknowledged entries.
        q.xack(key, "digestd", ids[3])
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(days()[-1]))
        after = q.xrange(key)
        assert after and after[0][0] == recent[0][0]
        assert len(after) == len(recent)
        assert int(q.xinfo_stream(key)["first-entry"][0].split("-")[0]) > \
            now_ms() - TWO_WEEKS_MS
        for g in q.xinfo_groups(key):
            assert g["pending"] == 0

        # The dead-letter stream is capped: over its cap (left by an older
        # release, say), one more dead letter brings it back to the cap.
        pipe = q.pipeline(transaction=False)
        for i in range(DLQ_MAXLEN + 3 * STREAM_NODE):
            pipe.xadd("digest:dlq", {"job_id": "old.%d" % i, "reason": "crash"})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        first = q.xrange("digest:dlq", count=1)[0][0]
        q.xadd("digest:q:standard", {"job_id": "broken", "group_id": "x"})
        wait_for(lambda: q.xlen("digest:dlq") <= DLQ_MAXLEN + STREAM_NODE,
                 timeout=30, what="digest:dlq capped")
        assert q.xrange("digest:dlq", count=1)[0][0] != first
        assert q.xrevrange("digest:dlq", count=1)[0][1]["job_id"] == "broken"
        assert q.ttl("digest:dlq") == -1
    finally:
        assert d.stop() == 0
    check_bounds(q)
    # Nothing of digestd's on the activity store.
    assert not list(data.client().scan_iter(match="*digest:*"))


def test_two_weeks_unconsumed_keys_bounded(tmp_path, two_redis):
    """Nobody consumes: the backlog stays in the streams (never trimmed
    away: it is work to do), every other key still has its TTL, and a run
    of the schedule is still idempotent."""
    data, queue = two_redis
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"))
    q = queue.client()
    simulate(cfg, q)
    keys = check_bounds(q)
    streams = [k for k, t in keys.items() if t == "stream"]
    assert streams
    total = sum(q.xlen(k) for k in streams)
    assert total > 0
    enq = [k for k in keys if k.startswith("digest:enq:")]
    assert len(enq) == total, "one enqueue marker per job"
    for k in streams:
        for g in q.xinfo_groups(k):
            assert g["lag"] == q.xlen(k), "a job was lost or delivered"
    # Scheduling the last day again adds nothing.
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(days()[-1]))
    digestctl(cfg, "schedule", "--period", "weekly", "--now", str(days()[-1]))
    assert sum(q.xlen(k) for k in streams) == total

    # digestd then drains the backlog; the keys stay bounded.
    d = Digestd(cfg, tmp_path).start()
    try:
        wait_settled(q, [d], timeout=180)
    finally:
        assert d.stop() == 0
    check_bounds(q)
    assert os.listdir(os.path.join(str(tmp_path), "outbox", "new"))


def test_queue_redis_bytes_per_job(tmp_path, two_redis):
    """What docs/scaling.md sizes the queue Redis with: a scheduled and
    processed job (stream entry, enqueue marker, checkpoint) costs well
    under 1 KB of used_memory."""
    data, queue = two_redis
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"), workers=2)
    digestctl(cfg, "seed", "--groups", "3000", "--members", "60000", "--posts",
              "12000", "--seed", "3")
    q = queue.client()
    before = q.info("memory")["used_memory"]
    digestctl(cfg, "schedule", "--period", "daily")
    jobs = sum(q.xlen("digest:q:" + n) for n in ("priority", "standard"))
    assert jobs > 500
    d = Digestd(cfg, tmp_path).start()
    try:
        wait_settled(q, [d], timeout=180)
    finally:
        assert d.stop() == 0
    per_job = (q.info("memory")["used_memory"] - before) / jobs
    print("queue Redis: %d jobs, %.0f bytes per job" % (jobs, per_job))
    assert per_job < 1024, per_job
    assert len([k for k in q.scan_iter(match="digest:job:*")]) == jobs



def consumers(q, key):
    return {c["name"]: c for c in q.xinfo_consumers(key, "digestd")}


def test_consumers_of_gone_workers_are_removed(tmp_path, two_redis):
    """Every worker reads as a consumer of its own; an instance that dies
    (SIGKILL, a lost node) leaves its consumers behind in the group, since
    neither its workers nor its supervisor are there to remove them.  The
    scheduler's trim removes those that hold nothing and have not been
    seen for visibility_timeout, and never one that still holds a job."""
    data, queue = two_redis
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"), workers=2, visibility="3s")
    q = queue.client()
    key = "digest:q:standard"
    # Four generations of digestd, each with work, each lost at the end
    # (SIGKILL: no worker or supervisor left to tidy up).
    for now in days()[-4:]:
        # The same store every day: --force, as seed refuses one with groups.
        digestctl(cfg, "seed", "--groups", "8", "--members", "240", "--posts",
                  "40", "--seed", "5", "--now", str(now), "--force")
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
        d = Digestd(cfg, tmp_path).start()
        try:
            wait_settled(q, [d], timeout=60)
        finally:
            d.kill()
    # The last generation's consumers at least are still in the group.
    assert len(consumers(q, key)) >= 1
    # A consumer of an instance that died holding a job.
    held = q.xadd(key, {"job_id": "held", "group_id": "x"})
    got = q.xreadgroup("digestd", "gone", {key: ">"}, count=1)
    assert got[0][1][0][0] == held

    time.sleep(3.5)
    digestctl(cfg, "schedule", "--period", "daily")
    left = consumers(q, key)
    assert sorted(left) == ["gone"], sorted(left)
    assert left["gone"]["pending"] == 1
    assert q.xpending(key, "digestd")["pending"] == 1

    # Another instance reclaims the held job (it does not decode: dead
    # letter), after which "gone" holds nothing and goes too.
    d = Digestd(cfg, tmp_path).start()
    try:
        wait_for(lambda: q.xpending(key, "digestd")["pending"] == 0, timeout=30,
                 what="the held job reclaimed")
    finally:
        assert d.stop() == 0
    assert q.xlen("digest:dlq") == 1
    time.sleep(3.5)
    digestctl(cfg, "schedule", "--period", "daily")
    assert consumers(q, key) == {}
    for name in ("priority", "standard"):
        assert consumers(q, "digest:q:" + name) == {}
