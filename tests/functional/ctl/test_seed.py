"""digestctl seed: deterministic data in the documented data model, with the
spreads the pipeline needs, written fast enough for benchmarks."""
import time

from lib.ctl_util import SAT, DAY, ctl_config  # noqa: F401
from lib.harness import SLOWDOWN, TcpRedis, digestctl

NOW = SAT + 9 * 3600


def snapshot(r):
    """Every key with its type and full content."""
    out = {}
    for k in r.scan_iter(count=1000):
        t = r.type(k)
        if t == "hash":
            v = r.hgetall(k)
        elif t == "zset":
            v = r.zrange(k, 0, -1, withscores=True)
        else:
            v = r.dump(k)
        out[k] = (t, v)
    return out


def test_seed_is_deterministic(tmp_path, redis_tcp):
    other = TcpRedis(tmp_path / "other").start()
    try:
        cfg1 = ctl_config(tmp_path, redis_tcp, name="a.conf")
        cfg2 = ctl_config(tmp_path, other, name="b.conf")
        args = ["seed", "--groups", "40", "--members", "3000", "--posts", "800",
                "--seed", "7", "--now", str(NOW)]
        p1 = digestctl(cfg1, *args)
        p2 = digestctl(cfg2, *args)
        a, b = snapshot(redis_tcp.client()), snapshot(other.client())
        assert len(a) > 1000
        assert a == b
        assert p1.stdout.splitlines()[:3] == p2.stdout.splitlines()[:3]
        # Later the same day: the same data.
        other.client().flushall()
        digestctl(cfg2, *args[:-1], str(NOW + 3600))
        assert snapshot(other.client()) == a
        # Another seed: other data.
        other.client().flushall()
        digestctl(cfg2, *(args[:-3] + ["8", "--now", str(NOW)]))
        assert snapshot(other.client()) != a
    finally:
        other.stop()


def test_seed_data_model_and_spread(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    digestctl(cfg, "seed", "--groups", "100", "--members", "20000", "--posts", "3000",
              "--now", str(NOW))
    groups = r.zrange("groups:active", 0, -1, withscores=True)
    assert len(groups) == 100
    sizes = sorted((r.zcard("group:%s:members" % g) for g, _ in groups), reverse=True)
    assert sum(sizes) == 20000
    # A few huge groups, many small ones.
    assert sizes[0] > 10 * sizes[50] and sizes[0] > 2000 and sizes[-1] >= 1
    users = set()
    for g, score in groups:
        ms = r.zrange("group:%s:members" % g, 0, -1, withscores=True)
        assert all(int(m) == s for m, s in ms)          # score is the user id
        users.update(int(m) for m, _ in ms)
        h = r.hgetall("group:%s" % g)
        assert h["name"] and h["url"].startswith("https://")
        posts = r.zrange("group:%s:posts" % g, 0, -1, withscores=True)
        if posts:
            assert score == max(s for _, s in posts)    # latest post
            for pid, t in posts[:3]:
                p = r.hgetall("post:%s" % pid)
                assert set(p) == {"title", "url", "author_id", "author_name", "excerpt",
                                  "likes", "comments"}
                assert r.zscore("group:%s:members" % g, p["author_id"]) is not None
                assert int(p["likes"]) >= 0 and int(p["comments"]) >= 0
                assert t <= SAT
    prefs, no_email, missing, inactive = {}, 0, 0, 0
    for u in users:
        h = r.hgetall("user:%d" % u)
        if not h:
            missing += 1
            continue
        if not h.get("email"):
            no_email += 1
        prefs[h.get("digest")] = prefs.get(h.get("digest"), 0) + 1
        if "last_seen" in h and int(h["last_seen"]) < NOW - 90 * DAY:
            inactive += 1
    n = len(users)
    assert set(prefs) == {None, "daily", "weekly", "off"}
    assert prefs["weekly"] > n * 0.1 and prefs["off"] > n * 0.05
    assert 0 < missing < n * 0.05 and 0 < no_email < n * 0.06
    assert n * 0.1 < inactive < n * 0.35
    # Half the posts fall in today's daily window.
    in_window = sum(r.zcount("group:%s:posts" % g, "(%d" % (SAT - DAY), SAT) for g, _ in groups)
    assert 1200 < in_window < 1800
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(NOW))
    assert "jobs enqueued: 0 " not in p.stdout
    assert r.xlen("digest:q:standard") + r.xlen("digest:q:priority") > 50


def test_seed_speed(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    t0 = time.monotonic()
    p = digestctl(cfg, "seed", "--groups", "300", "--members", "300000", "--posts", "10000")
    took = time.monotonic() - t0
    print("seed of 300k memberships: %.2fs" % took)
    assert sum(r.zcard("group:%d:members" % g) for g in range(1, 301)) == 300000
    assert took < 15 * SLOWDOWN, (took, p.stdout)


def test_seed_usage(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    for args in (["seed"], ["seed", "--groups", "0", "--members", "1", "--posts", "1"],
                 ["seed", "--groups", "x", "--members", "1", "--posts", "1"],
                 ["seed", "--groups", "1", "--members", "1", "--posts", "1", "--what", "1"]):
        assert digestctl(cfg, *args, check=False).returncode == 2, args
