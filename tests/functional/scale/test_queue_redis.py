"""[queue_redis]: every digest:* key (queues, checkpoints, enqueue markers,
schedule records, dead letters) lives on the dedicated queue Redis; the
activity store on [redis] is only read; without the section one Redis
serves both.  digestd and digestctl (schedule, stats, dlq) alike.
"""
import json
import os
import time

import pytest

from lib.harness import Digestd, TcpRedis, digestctl, maildir_messages
from lib.scale_util import checkpoints, config, digest_keys, wait_settled

# Commands that write, or that touch queues: none may reach the activity
# store once the host application's data is in.
WRITES = {"set", "setex", "setnx", "expire", "pexpire", "del", "unlink", "hset",
          "hincrby", "hdel", "xadd", "xack", "xgroup", "xreadgroup", "xclaim",
          "xautoclaim", "xtrim", "xinfo", "xpending", "xrange", "xlen", "multi",
          "exec", "zadd", "zrem", "incr", "eval", "evalsha"}


@pytest.fixture
def two_redis(tmp_path):
    data = TcpRedis(tmp_path / "data").start()
    queue = TcpRedis(tmp_path / "queue").start()
    try:
        yield data, queue
    finally:
        queue.stop()
        data.stop()


def seed(cfg):
    digestctl(cfg, "seed", "--groups", "12", "--members", "600", "--posts", "80",
              "--seed", "9")


def run_pipeline(tmp_path, cfg, q, outbox):
    """schedule both periods, run digestd until the queues are drained."""
    out = digestctl(cfg, "schedule", "--period", "daily").stdout
    digestctl(cfg, "schedule", "--period", "weekly")
    d = Digestd(cfg, tmp_path).start()
    try:
        wait_settled(q, [d], timeout=120)
    finally:
        assert d.stop() == 0
    return out, maildir_messages(outbox)


def test_queue_redis_holds_every_digest_key(tmp_path, two_redis):
    data, queue = two_redis
    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"), maildir=outbox)
    seed(cfg)
    dc, qc = data.client(), queue.client()
    activity = set(dc.keys("*"))
    assert activity, "seed wrote nothing to [redis]"
    assert not any("digest:" in k for k in activity)
    assert qc.dbsize() == 0, "seed wrote to the queue Redis"
    dc.config_resetstat()

    _, msgs = run_pipeline(tmp_path, cfg, qc, outbox)
    assert msgs, "no email sent"

    # Every kind of digestd key is on the queue Redis, and only those.
    qkeys = digest_keys(qc)
    assert set(qc.keys("*")) == set(qkeys), "non-digest keys on the queue Redis"
    kinds = {k.split(":")[1] for k in qkeys}
    assert {"q", "job", "enq", "sched"} <= kinds, sorted(qkeys)
    assert qkeys["digest:q:standard"] == "stream" or \
        qkeys["digest:q:priority"] == "stream"
    assert {"digest:sched:daily", "digest:sched:weekly"} <= set(qkeys)
    done = [c for c in checkpoints(qc).values() if c.get("state") == "done"]
    assert done, "no checkpoint on the queue Redis"
    assert sum(int(c.get("sent", 0)) for c in done) == len(msgs)

    # The activity store was only read.
    assert set(dc.keys("*")) == activity
    assert not [k for k in dc.keys("*") if "digest:" in k]
    cmds = {c: n for c, n in data.commands().items() if c in WRITES}
    assert cmds == {}, "queue or write commands on [redis]: %r" % cmds
    assert data.commands().get("hmget", 0) > 0, "digestd did not read [redis]"

    # digestctl stats reads the queue Redis.
    st = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert st["dead_letters"] == 0
    assert st["schedule"]["daily"], st
    for name in ("priority", "standard"):
        assert st["queues"][name]["depth"] == 0
        assert st["queues"][name]["pending"] == 0

    # Dead letters: a job that does not decode lands on the queue Redis's
    # digest:dlq; dlq list and requeue go there too.
    qc.xadd("digest:q:standard", {"job_id": "daily.1.2.0", "group_id": "x"})
    qc.xadd("digest:dlq", {
        "job_id": "daily.%d.1.0" % (int(time.time()) // 86400 * 86400),
        "group_id": "1", "period": "daily",
        "window_start": str(int(time.time()) // 86400 * 86400 - 86400),
        "window_end": str(int(time.time()) // 86400 * 86400),
        "member_min": "0", "member_max": "9007199254740992",
        "enqueued_at": "%.6f" % time.time(), "reason": "crash",
        "attempts": "3", "failed_at": "%.6f" % time.time(), "queue": "standard"})
    d = Digestd(cfg, tmp_path).start()
    try:
        wait_settled(qc, [d], timeout=60)
        wait_for_dlq = 0
        for _ in range(100):
            wait_for_dlq = qc.xlen("digest:dlq")
            if wait_for_dlq == 2:
                break
            time.sleep(0.1)
        assert wait_for_dlq == 2
        lst = digestctl(cfg, "dlq", "list").stdout
        assert "daily.1.2.0" in lst and "crash" in lst, lst
        st = json.loads(digestctl(cfg, "stats", "--json").stdout)
        assert st["dead_letters"] == 2
        before = qc.xlen("digest:q:standard")
        r = digestctl(cfg, "dlq", "requeue", "--all", check=False)
        # The undecodable one stays (exit 1), the good one goes back.
        assert qc.xlen("digest:dlq") == 1, r.stdout + r.stderr
        assert qc.xlen("digest:q:standard") == before + 1
        wait_settled(qc, [d], timeout=60)
    finally:
        assert d.stop() == 0
    assert not [k for k in dc.keys("*") if "digest:" in k]
    cmds = {c: n for c, n in data.commands().items() if c in WRITES}
    assert cmds == {}, "queue or write commands on [redis]: %r" % cmds


def test_without_queue_redis_one_redis_serves_both(tmp_path, two_redis):
    data, queue = two_redis
    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, data.config_section(), pools=("priority", "standard"),
                 maildir=outbox)
    seed(cfg)
    dc = data.client()
    _, msgs = run_pipeline(tmp_path, cfg, dc, outbox)
    assert msgs
    kinds = {k.split(":")[1] for k in digest_keys(dc)}
    assert {"q", "job", "enq", "sched"} <= kinds
    assert queue.client().dbsize() == 0
    st = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert st["schedule"]["daily"], st


def test_same_emails_with_and_without_queue_redis(tmp_path, two_redis):
    """Moving the queues changes where keys live, not what is sent."""
    data, queue = two_redis
    seen = []
    for i, qsect in enumerate(("", queue.config_section("queue_redis"))):
        data.client().flushall()
        queue.client().flushall()
        outbox = os.path.join(str(tmp_path), "outbox%d" % i)
        cfg = config(tmp_path, data.config_section(), qsect,
                     pools=("priority", "standard"), maildir=outbox,
                     name="d%d.conf" % i)
        seed(cfg)
        q = queue.client() if qsect else data.client()
        _, msgs = run_pipeline(tmp_path, cfg, q, outbox)
        seen.append(sorted((m["Message-ID"], m["To"]) for m in msgs))
    assert seen[0] and seen[0] == seen[1]


def test_digestctl_enqueue_on_queue_redis(tmp_path, two_redis):
    data, queue = two_redis
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("priority", "standard"))
    seed(cfg)
    dc, qc = data.client(), queue.client()
    dc.config_resetstat()
    digestctl(cfg, "enqueue", "--group", "1", "--period", "daily", "--queue",
              "standard")
    entries = qc.xrange("digest:q:standard")
    assert len(entries) >= 1 and entries[0][1]["group_id"] == "1"
    marker = "digest:enq:" + entries[0][1]["job_id"]
    assert qc.exists(marker) and 0 < qc.ttl(marker) <= 2 * 86400
    assert not [k for k in dc.keys("*") if "digest:" in k]
    cmds = {c: n for c, n in data.commands().items() if c in WRITES}
    assert cmds == {}, cmds
