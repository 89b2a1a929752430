"""digestctl stats against a real redis-server: its documented JSON shape,
depth and pending as a consumer takes jobs, dead letters, schedule runs."""
import json
import time

from lib.ctl_util import SAT, add_group, ctl_config  # noqa: F401
from lib.harness import digestctl


def stats(cfg):
    return json.loads(digestctl(cfg, "stats", "--json").stdout)


def test_stats_empty_shape(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp, extra="[pool.bulk]\nqueue = bulk\nworkers = 1\n")
    s = stats(cfg)
    assert set(s) == {"queues", "dead_letters", "schedule"}
    assert set(s["queues"]) == {"priority", "standard", "bulk"}
    for q in s["queues"].values():
        assert q == {"depth": 0, "pending": 0, "oldest_enqueued_at": 0, "paused": None}
    assert s["dead_letters"] == 0
    assert s["schedule"] == {"daily": None, "weekly": None}
    # stats only reads: it creates no stream.
    assert redis_tcp.client().keys("digest:*") == []


def test_stats_depth_pending_oldest(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    for gid in range(1, 6):
        add_group(r, gid, [1, 2], [(gid, SAT - gid)])
    before = time.time()
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    s = stats(cfg)
    q = s["queues"]["standard"]
    assert (q["depth"], q["pending"]) == (5, 0)
    first = r.xrange("digest:q:standard", count=1)[0][1]
    assert q["oldest_enqueued_at"] == float(first["enqueued_at"])
    assert before - 1 < q["oldest_enqueued_at"] < time.time() + 1
    assert s["queues"]["priority"]["depth"] == 0
    d = s["schedule"]["daily"]
    assert d["status"] == "ok" and d["jobs_standard"] == 5 and d["window_end"] == SAT
    assert isinstance(d["end"], float) and d["end"] >= d["start"]

    # A consumer takes two: they are pending, three wait.
    got = r.xreadgroup("digestd", "w1", {"digest:q:standard": ">"}, count=2)
    ids = [i for i, _ in got[0][1]]
    q = stats(cfg)["queues"]["standard"]
    assert (q["depth"], q["pending"]) == (3, 2)
    # The oldest is still the first, now pending.
    assert q["oldest_enqueued_at"] == float(first["enqueued_at"])
    r.xack("digest:q:standard", "digestd", *ids)
    q = stats(cfg)["queues"]["standard"]
    assert (q["depth"], q["pending"]) == (3, 0)
    third = r.xrange("digest:q:standard")[2][1]
    assert q["oldest_enqueued_at"] == float(third["enqueued_at"])


def test_stats_dead_letters_and_table(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    for i in range(3):
        r.xadd("digest:dlq", {"job_id": "daily.1.%d.0" % i, "reason": "crash",
                              "attempts": "3", "failed_at": "1", "queue": "standard"})
    assert stats(cfg)["dead_letters"] == 3
    p = digestctl(cfg, "stats")
    assert "priority" in p.stdout and "standard" in p.stdout
    assert "dead letters: 3" in p.stdout
    assert "never run" in p.stdout
    p = digestctl(cfg, "stats", "--bogus", check=False)
    assert p.returncode == 2


def test_bad_config_and_usage(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp, extra="[schedule]\nshard_sise = 10\n")
    p = digestctl(cfg, "stats", check=False)
    assert p.returncode == 1 and "shard_sise" in p.stderr and cfg in p.stderr
    p = digestctl(str(tmp_path / "missing.conf"), "stats", check=False)
    assert p.returncode == 1 and "missing.conf" in p.stderr
    import subprocess
    from lib.harness import DIGESTCTL
    import os
    # No -c: $DIGESTD_CONFIG, else /etc/digestd/digestd.conf (absent here).
    env = dict(os.environ, DIGESTD_CONFIG=str(tmp_path / "missing.conf"))
    p = subprocess.run([DIGESTCTL, "stats"], capture_output=True, text=True, timeout=10,
                       env=env)
    assert p.returncode == 1 and "missing.conf" in p.stderr
    p = subprocess.run([DIGESTCTL], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "usage" in p.stderr
    p = subprocess.run([DIGESTCTL, "-h"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "schedule --period" in p.stdout


def test_stats_depth_when_redis_cannot_tell_lag(tmp_path, redis_tcp):
    # Deleting an entry nobody has read leaves Redis unable to compute the
    # group's lag (XINFO says nil): depth is then counted.
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    for gid in range(1, 6):
        add_group(r, gid, [1, 2], [(gid, SAT - gid)])
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    r.xreadgroup("digestd", "w1", {"digest:q:standard": ">"}, count=1)
    ids = [i for i, _ in r.xrange("digest:q:standard")]
    r.xdel("digest:q:standard", ids[3])
    assert r.xinfo_groups("digest:q:standard")[0]["lag"] is None
    q = stats(cfg)["queues"]["standard"]
    assert (q["depth"], q["pending"]) == (3, 1)


def test_stats_output_has_no_terminal_controls(tmp_path, redis_tcp):
    """A schedule record written by anyone with access to Redis cannot put
    a terminal control into `digestctl stats`, plain or --json."""
    from lib.ctl_util import HOSTILE, assert_printable, run_raw
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    r.hset("digest:sched:daily", mapping={
        b"status": b"ok" + HOSTILE, b"error": b"bad " + HOSTILE, b"end": b"1e300",
        b"start": HOSTILE, b"window_start": HOSTILE, b"jobs_priority": b"1"})
    # The same in valid UTF-8 (no raw C1 byte), which JSON can carry.
    utf8 = HOSTILE.replace(b"\x7f\x9b31m", b"\x7f")
    r.hset("digest:sched:weekly", mapping={
        b"status": b"failed" + utf8, b"error": b"bad " + utf8, b"end": b"nan"})
    rc, out, err = run_raw(cfg, "stats")
    assert rc == 0, err
    text = assert_printable(out) + assert_printable(err)
    line = [l for l in text.splitlines() if l.startswith("schedule daily")][0]
    assert "\\x1b]0;owned\\x07" in line and " at -:" in line
    line = [l for l in text.splitlines() if l.startswith("schedule weekly")][0]
    assert "bad \\x1b]0;owned\\x07" in line and " at -:" in line
    rc, out, err = run_raw(cfg, "stats", "--json")
    assert rc == 0, err
    assert_printable(out)
    s = json.loads(out)["schedule"]["daily"]
    assert_printable(s["error"].encode())
    assert s["error"].startswith("bad \\x1b]0;owned\\x07")
    assert_printable(s["start"].encode())
    w = json.loads(out)["schedule"]["weekly"]
    assert w["error"].startswith("bad \\x1b]0;owned\\x07")
