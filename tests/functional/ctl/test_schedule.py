"""digestctl schedule and enqueue against a real redis-server: windows,
idempotence, routing by engagement, sharding by rank (every member in
exactly one shard, whatever its score), the run record."""
import math
import random

from lib.ctl_util import (  # noqa: F401
    DAY, MON, SAT, add_group, ctl_config, entries)
from lib.harness import SLOWDOWN, TcpRedis, digestctl


def test_schedule_twice_enqueues_nothing_new(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="priority_threshold = 1000\n")
    now = SAT + 3600
    for gid in (1, 2, 3):
        add_group(r, gid, range(10, 20), [(gid * 100 + i, SAT - 100 - i) for i in range(3)])
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
    assert "jobs enqueued: 3" in p.stdout, p.stdout
    first = entries(r, "standard")
    assert sorted(e["job_id"] for e in first) == [
        "daily.%d.%d.0" % (SAT, g) for g in (1, 2, 3)]
    # Markers carry a TTL of two periods.
    ttl = r.ttl("digest:enq:daily.%d.1.0" % SAT)
    assert 2 * DAY - 10 < ttl <= 2 * DAY

    # Again, later in the same period: same window, nothing new.
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(now + 5 * 3600))
    assert "jobs enqueued: 0" in p.stdout and "already enqueued: 3" in p.stdout, p.stdout
    assert len(entries(r, "standard")) == 3
    assert entries(r, "priority") == []

    rec = r.hgetall("digest:sched:daily")
    assert rec["status"] == "ok"
    assert int(rec["window_start"]) == SAT - DAY and int(rec["window_end"]) == SAT
    assert rec["jobs_standard"] == "0" and rec["skipped_existing"] == "3"
    assert float(rec["start"]) <= float(rec["end"])
    assert 13 * DAY < r.ttl("digest:sched:daily") <= 14 * DAY
    # The consumer group exists from id 0, as the workers expect.
    groups = r.xinfo_groups("digest:q:standard")
    assert [g["name"] for g in groups] == ["digestd"]


def test_job_fields(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    add_group(r, 42, [5, 7, 9], [(1, SAT - 10)])
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 10))
    (e,) = entries(r, "standard")
    assert e["job_id"] == "daily.%d.42.0" % SAT
    assert e["group_id"] == "42" and e["period"] == "daily"
    assert int(e["window_start"]) == SAT - DAY and int(e["window_end"]) == SAT
    assert e["member_min"] == "5" and e["member_max"] == "9"
    assert abs(float(e["enqueued_at"]) - __import__("time").time()) < 30
    # A one-shard group's shard is its last: it runs on past member_max.
    assert e["last_shard"] == "1"
    assert set(e) == {"job_id", "group_id", "period", "window_start", "window_end",
                      "member_min", "member_max", "enqueued_at", "last_shard"}


def test_window_bounds_and_active_filter(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="day_start = 06:00\n")
    end = SAT + 6 * 3600          # the period that ended Saturday 06:00
    start = end - DAY
    add_group(r, 1, [1], [(11, end)])               # at the end: inside
    add_group(r, 2, [1], [(21, start)])             # at the start: outside
    add_group(r, 3, [1], [(31, start + 1)])         # just inside
    add_group(r, 4, [1], [(41, end + 1)])           # after the window
    # Active score before the window: not even looked at.
    add_group(r, 5, [1], [(51, end - 5)], active=start)
    # Exactly on the boundary, Saturday 06:00.
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(end))
    ids = sorted(e["job_id"] for e in entries(r, "standard"))
    assert ids == ["daily.%d.1.0" % end, "daily.%d.3.0" % end], ids

    # One second earlier the window is the day before, with other ids.
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(end - 1))
    rec = r.hgetall("digest:sched:daily")
    assert int(rec["window_end"]) == end - DAY


def test_weekly_window_ends_on_monday(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    add_group(r, 7, [1, 2], [(1, MON - 3 * DAY), (2, MON + DAY)])
    # Saturday: the week that ended on Monday.
    digestctl(cfg, "schedule", "--period", "weekly", "--now", str(SAT))
    (e,) = entries(r, "standard")
    assert e["job_id"] == "weekly.%d.7.0" % MON
    assert int(e["window_start"]) == MON - 7 * DAY
    assert 13 * DAY < r.ttl("digest:enq:weekly.%d.7.0" % MON) <= 14 * DAY
    assert r.hgetall("digest:sched:weekly")["status"] == "ok"


def test_priority_routing(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="priority_threshold = 10\n")
    t = SAT - 50
    add_group(r, 1, range(1, 10), [(100 + i, t) for i in range(4)])   # 4*3 = 12
    add_group(r, 2, range(1, 17), [(200, t)])                         # 1*4 = 4
    add_group(r, 3, range(1, 5), [(300 + i, t) for i in range(5)])    # 5*2 = 10
    add_group(r, 4, range(1, 50), [(400, t - 2 * DAY)])               # nothing new
    add_group(r, 5, [], [(500, t)])                                   # no members
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    pri = sorted(int(e["group_id"]) for e in entries(r, "priority"))
    std = sorted(int(e["group_id"]) for e in entries(r, "standard"))
    assert pri == [1, 3] and std == [2], (pri, std, p.stdout)
    rec = r.hgetall("digest:sched:daily")
    assert rec["jobs_priority"] == "2" and rec["jobs_standard"] == "1"


def test_big_group_is_sharded_by_rank(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="shard_size = 10\n")
    members = [3 * i + 1 for i in range(25)]      # 1, 4, ..., 73: ids are not ranks
    add_group(r, 9, members, [(1, SAT - 1)])
    add_group(r, 10, [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [(2, SAT - 1)])  # exactly one shard
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    jobs = {e["job_id"]: e for e in entries(r, "standard") + entries(r, "priority")}
    g9 = sorted((k, int(v["member_min"]), int(v["member_max"]), v.get("last_shard"))
                for k, v in jobs.items() if v["group_id"] == "9")
    assert g9 == [
        ("daily.%d.9.0" % SAT, members[0], members[9], None),
        ("daily.%d.9.1" % SAT, members[10], members[19], None),
        ("daily.%d.9.2" % SAT, members[20], members[24], "1"),
    ]
    g10 = [v for v in jobs.values() if v["group_id"] == "10"]
    assert len(g10) == 1 and (g10[0]["member_min"], g10[0]["member_max"]) == ("5", "14")
    assert g10[0]["last_shard"] == "1"
    # Every shard goes to the same queue: the score is the whole group's.
    assert len({v["job_id"] for v in jobs.values()}) == 4
    # Sharded scheduling is idempotent too.
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 2))
    assert "already enqueued: 4" in p.stdout


def test_key_prefix(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, prefix="app:")
    add_group(r, 1, [1, 2], [(1, SAT - 1)], prefix="app:")
    add_group(r, 2, [1, 2], [(2, SAT - 1)])     # unprefixed: not ours
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    assert [e["group_id"] for e in entries(r, "standard", prefix="app:")] == ["1"]
    assert r.exists("app:digest:sched:daily") and not r.exists("digest:sched:daily")
    assert not r.exists("digest:q:standard")


def test_queue_redis_holds_the_queues(tmp_path, redis_tcp):
    q = TcpRedis(tmp_path / "qredis").start()
    try:
        r, qr = redis_tcp.client(), q.client()
        cfg = ctl_config(tmp_path, redis_tcp, queue_redis=q)
        add_group(r, 1, [1, 2], [(1, SAT - 1)])
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
        assert len(entries(qr, "standard")) == 1
        assert qr.exists("digest:sched:daily") and qr.exists("digest:enq:daily.%d.1.0" % SAT)
        assert r.keys("digest:*") == []
        p = digestctl(cfg, "stats", "--json")
        assert '"depth": 1' in p.stdout
    finally:
        q.stop()


def test_schedule_failure_is_recorded(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    add_group(r, 1, [1], [(1, SAT - 1)])
    # A key of the wrong type makes the read fail.
    r.delete("group:1:posts")
    r.set("group:1:posts", "oops")
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1), check=False)
    assert p.returncode == 1
    assert "WRONGTYPE" in p.stderr
    rec = r.hgetall("digest:sched:daily")
    assert rec["status"] == "failed" and "WRONGTYPE" in rec["error"]
    assert "last_success" not in rec


def test_schedule_usage_errors(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    for args in (["schedule"], ["schedule", "--period", "monthly"],
                 ["schedule", "--period", "daily", "--now", "soon"]):
        p = digestctl(cfg, *args, check=False)
        assert p.returncode == 2 and p.stderr, args
    p = digestctl(cfg, "nosuch", check=False)
    assert p.returncode == 2


def test_schedule_unreachable_redis(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    redis_tcp.stop()
    p = digestctl(cfg, "schedule", "--period", "daily", check=False)
    assert p.returncode == 1 and "redis" in p.stderr


def test_enqueue_one_group(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="shard_size = 2\n")
    add_group(r, 5, [1, 2, 3], [(1, SAT - 5 * DAY)])   # no post in the window
    p = digestctl(cfg, "enqueue", "--group", "5", "--period", "daily", "--queue", "priority",
                  "--now", str(SAT + 1))
    assert "2 job(s) enqueued" in p.stdout, p.stdout
    ids = sorted(e["job_id"] for e in entries(r, "priority"))
    assert ids == ["daily.%d.5.0" % SAT, "daily.%d.5.1" % SAT]
    p = digestctl(cfg, "enqueue", "--group", "5", "--period", "daily", "--now", str(SAT + 1))
    assert "0 job(s) enqueued, 2 already enqueued" in p.stdout
    p = digestctl(cfg, "enqueue", "--group", "5", "--period", "daily", "--now", str(SAT + 1),
                  "--force")
    assert len(entries(r, "standard")) == 2
    p = digestctl(cfg, "enqueue", "--group", "77", "--period", "daily", check=False)
    assert p.returncode == 1 and "no members" in p.stderr


def test_schedule_many_groups_quickly(tmp_path, redis_tcp):
    import time
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="shard_size = 100\n")
    pipe = r.pipeline(transaction=False)
    for gid in range(1, 3001):
        pipe.zadd("group:%d:members" % gid, {str(u): u for u in range(1, 2 + gid % 250)})
        pipe.zadd("group:%d:posts" % gid, {str(gid): SAT - gid})
        pipe.zadd("groups:active", {str(gid): SAT - gid})
    pipe.execute()
    t0 = time.monotonic()
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    took = time.monotonic() - t0
    want = sum(math.ceil((1 + gid % 250) / 100) for gid in range(1, 3001))
    got = len(entries(r, "standard")) + len(entries(r, "priority"))
    assert got == want, p.stdout
    assert took < 10 * SLOWDOWN, took


def test_schedule_trims_acknowledged_old_entries(tmp_path, redis_tcp):
    import time
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    now_ms = int(time.time() * 1000)
    old = now_ms - 20 * DAY * 1000
    job = {"job_id": "x", "group_id": "1"}

    def stream(key, ids, deliver, ack):
        r.xgroup_create(key, "digestd", id="0", mkstream=True)
        for i in ids:
            r.xadd(key, job, id=i)
        got = r.xreadgroup("digestd", "w", {key: ">"}, count=deliver)
        delivered = [i for _, es in got for i, _ in es]
        for i in ack:
            r.xack(key, "digestd", i)
        return delivered

    # standard: old acked, old pending, old acked after it, a recent acked.
    ids = ["%d-0" % old, "%d-0" % (old + 1), "%d-0" % (old + 2), "%d-0" % now_ms]
    stream("digest:q:standard", ids, 4, [ids[0], ids[2], ids[3]])
    # priority: old acked, then old never delivered.
    pids = ["%d-0" % old, "%d-0" % (old + 1), "%d-0" % (old + 2)]
    stream("digest:q:priority", pids, 1, [pids[0]])

    digestctl(cfg, "schedule", "--period", "daily")
    assert [i for i, _ in r.xrange("digest:q:standard")] == ids[1:]
    assert [i for i, _ in r.xrange("digest:q:priority")] == pids[1:]

    # Once the pending one is acknowledged, the old ones go.
    r.xack("digest:q:standard", "digestd", ids[1])
    digestctl(cfg, "schedule", "--period", "daily")
    assert [i for i, _ in r.xrange("digest:q:standard")] == [ids[3]]


def test_schedule_over_unix_socket(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, unix=True)
    add_group(r, 1, [1, 2], [(1, SAT - 1)])
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    assert "jobs enqueued: 1" in p.stdout
    assert len(entries(r, "standard")) == 1


def test_concurrent_schedulers_enqueue_each_job_once(tmp_path, redis_tcp):
    import subprocess
    from lib.harness import DIGESTCTL
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="shard_size = 3\n")
    pipe = r.pipeline(transaction=False)
    for gid in range(1, 801):
        pipe.zadd("group:%d:members" % gid, {str(u): u for u in range(1, 2 + gid % 9)})
        pipe.zadd("group:%d:posts" % gid, {str(gid): SAT - gid})
        pipe.zadd("groups:active", {str(gid): SAT - gid})
    pipe.execute()
    procs = [subprocess.Popen([DIGESTCTL, "-c", cfg, "schedule", "--period", "daily",
                               "--now", str(SAT + 60 * i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ids = [e["job_id"] for q in ("standard", "priority") for e in entries(r, q)]
    want = sum(math.ceil((1 + gid % 9) / 3) for gid in range(1, 801))
    assert len(ids) == want and len(set(ids)) == want
    added = sum(int(o.split("jobs enqueued: ")[1].split()[0]) for o, _ in outs)
    assert added == want


INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1


def floor_clamped(score):
    """floor(score) as the scheduler takes it: clamped into int64."""
    if score <= -2.0 ** 63:
        return INT64_MIN
    if score >= 2.0 ** 63:
        return INT64_MAX
    return math.floor(score)


def check_cover(jobs, scores):
    """Every member in exactly one job: floor(score) in [member_min,
    member_max], or at or above member_min for the last shard; the last
    shard, and only it, says so."""
    ranges = sorted((int(j["member_min"]), int(j["member_max"]), j.get("last_shard", "0"),
                     int(j["job_id"].rsplit(".", 1)[1])) for j in jobs)
    assert [r[2] for r in ranges] == ["0"] * (len(ranges) - 1) + ["1"], ranges
    assert all(lo <= hi for lo, hi, _, _ in ranges), ranges
    # Shard indices increase with the ranges (gaps allowed).
    assert [r[3] for r in ranges] == sorted({r[3] for r in ranges}), ranges
    for m, s in scores.items():
        f = floor_clamped(s)
        holders = [r for r in ranges if r[0] <= f and (f <= r[1] or r[2] == "1")]
        assert len(holders) == 1, (m, s, f, holders, ranges)
    return ranges


ODD = [float("-inf"), -1e19, -9.3e18, -5.5, -5.2, -1, 0, 0, 0, 0, 0, 0, 0.5, 0.9, 1, 1.5,
       2, 2, 2, 2, 2, 2, 2, 3.25, 3.75, 10, 10.1, 10.2, 10.3, 10.4, 10.5, 11,
       2.0 ** 53, 2.0 ** 53 + 2, 9.2e18, 9.3e18, 1e19, float("inf"), float("inf")]


def test_shards_cover_odd_scores_once(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp, schedule="shard_size = 5\n")
    odd = {"u%02d" % i: s for i, s in enumerate(ODD)}
    add_group(r, 1, [], [(1, SAT - 1)])
    r.zadd("group:1:members", odd)
    # Many members on a few fractional scores: long runs of one floor.
    rng = random.Random(7)
    many = {"m%d" % i: rng.choice((-2.5, -2.25, 0.0, 0.125, 7, 7.75, 8, 1e15 + 0.5))
            for i in range(300)}
    add_group(r, 2, [], [(2, SAT - 1)])
    r.zadd("group:2:members", many)
    # Scores that are not user ids but integers, out of rank order.
    ints = {"i%d" % i: rng.randrange(-50, 50) for i in range(64)}
    add_group(r, 3, [], [(3, SAT - 1)])
    r.zadd("group:3:members", ints)
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    jobs = entries(r, "standard") + entries(r, "priority")
    for gid, scores in ((1, odd), (2, many), (3, ints)):
        mine = [j for j in jobs if j["group_id"] == str(gid)]
        ranges = check_cover(mine, scores)
        assert len(ranges) <= math.ceil(len(scores) / 5)
    g1 = sorted((int(j["job_id"].rsplit(".", 1)[1]), int(j["member_min"]), int(j["member_max"]))
                for j in jobs if j["group_id"] == "1")
    # -inf and scores below -2^63 give INT64_MIN; the shard holding +inf
    # ends at INT64_MAX and nothing comes after it.
    assert g1[0][1] == INT64_MIN and g1[-1][2] == INT64_MAX, g1
    assert len(g1) == 8, g1

    # digestctl enqueue makes the same shards.
    p = digestctl(cfg, "enqueue", "--group", "2", "--period", "daily", "--queue", "q2",
                  "--now", str(SAT + 1), "--force")
    again = entries(r, "q2")
    assert "%d job(s) enqueued" % len(again) in p.stdout, p.stdout
    check_cover(again, many)
    assert sorted((j["job_id"], j["member_min"], j["member_max"]) for j in again) == sorted(
        (j["job_id"], j["member_min"], j["member_max"]) for j in jobs if j["group_id"] == "2")
