"""Many digestd instances on the same queues: one consumer group, so each
job is processed once and the totals are a single instance's; and when an
instance is SIGKILLed with jobs in hand (its workers die with it), another
reclaims them after visibility_timeout (XAUTOCLAIM) and finishes them:
zero recipients lost, duplicates bounded by the killed workers.
"""
import collections
import datetime
import re
import signal
import time

import pytest

from lib.harness import (
    Digestd, SmtpSink, TcpRedis, _gone, digestctl, metric_sum, wait_for)
from lib.scale_util import (
    checkpoints, config, sink_pairs, unbounded_keys, wait_settled)

SEED = ("seed", "--groups", "20", "--members", "1200", "--posts", "100",
        "--seed", "21")
POOLS = ("priority", "standard")
WORKERS = 2


@pytest.fixture
def redis2(tmp_path):
    """An activity store and a queue Redis."""
    data = TcpRedis(tmp_path / "data").start()
    queue = TcpRedis(tmp_path / "queue").start()
    try:
        yield data, queue
    finally:
        queue.stop()
        data.stop()


def baseline(tmp_path):
    """What one instance sends for the dataset: (pairs, jobs)."""
    r = TcpRedis(tmp_path / "single").start()
    sink = SmtpSink().start()
    try:
        cfg = config(tmp_path, r.config_section(), pools=POOLS, workers=WORKERS,
                     sink=sink, name="single.conf")
        digestctl(cfg, *SEED)
        digestctl(cfg, "schedule", "--period", "daily")
        d = Digestd(cfg, tmp_path).start()
        try:
            wait_settled(r.client(), [d], timeout=120)
            text = d.metrics()
        finally:
            assert d.stop() == 0
        pairs = sink_pairs(sink)
        jobs = metric_sum(text, "digest_jobs_total", result="ok")
        return pairs, jobs
    finally:
        sink.stop()
        r.stop()


def test_two_instances_share_the_queues(tmp_path, redis2):
    want, want_jobs = baseline(tmp_path)
    assert len(want) > 100 and len(want) == len(set(want))
    data, queue = redis2
    q = queue.client()
    sinks = [SmtpSink().start(), SmtpSink().start()]
    ds = []
    try:
        cfgs = [config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                       pools=POOLS, workers=WORKERS, sink=sinks[i],
                       name="i%d.conf" % i) for i in range(2)]
        digestctl(cfgs[0], *SEED)
        ds = [Digestd(c, tmp_path).start() for c in cfgs]
        assert ds[0].port != ds[1].port
        digestctl(cfgs[1], "schedule", "--period", "daily")
        wait_settled(q, ds, timeout=120)
        texts = [d.metrics() for d in ds]
    finally:
        for d in ds:
            assert d.stop() == 0
        for s in sinks:
            s.stop()

    got = sink_pairs(*sinks)
    assert len(got) == len(set(got)), "an email was sent twice"
    assert sorted(got) == sorted(want)
    # Both took part, and each job ran once: one attempt per checkpoint.
    per = [metric_sum(t, "digest_jobs_total", result="ok") for t in texts]
    assert all(n > 0 for n in per), per
    assert sum(per) == want_jobs
    assert metric_sum(texts[0], "digest_jobs_total", result="retried") == 0
    assert metric_sum(texts[1], "digest_jobs_total", result="retried") == 0
    sent = [metric_sum(t, "digest_emails_total", result="sent") for t in texts]
    assert sum(sent) == len(want)
    assert all(len(s.messages) == n for s, n in zip(sinks, sent))
    cps = checkpoints(q)
    assert len(cps) == want_jobs
    for jid, cp in cps.items():
        assert cp["state"] == "done" and cp["attempts"] == "1", (jid, cp)
    for name in POOLS:
        groups = q.xinfo_groups("digest:q:" + name)
        assert [g["name"] for g in groups] == ["digestd"]


def test_killed_instance_jobs_reclaimed_by_another(tmp_path, redis2):
    want, _ = baseline(tmp_path)
    data, queue = redis2
    q = queue.client()
    slow, fast = SmtpSink(delay=0.05).start(), SmtpSink().start()
    a = b = None
    try:
        cfg_a = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                       pools=POOLS, workers=WORKERS, sink=slow, name="a.conf",
                       visibility="3s", batch=10)
        cfg_b = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                       pools=POOLS, workers=WORKERS, sink=fast, name="b.conf",
                       visibility="3s", batch=10)
        digestctl(cfg_a, *SEED)
        a = Digestd(cfg_a, tmp_path).start()
        digestctl(cfg_a, "schedule", "--period", "daily")

        # Every worker of A has a job in hand and has sent part of it.
        def all_busy():
            ws = a.status()["workers"]
            return len(ws) == 2 * WORKERS and all(w["job"] for w in ws)
        wait_for(all_busy, timeout=30, what="A's workers all busy")
        wait_for(lambda: len(slow.messages) >= 20, timeout=30, what="A sending")
        workers = [w["pid"] for w in a.status()["workers"]]

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed_at = time.time()
        # PR_SET_PDEATHSIG: its workers die with it.
        wait_for(lambda: all(_gone(p) for p in workers), timeout=5,
                 what="A's workers gone with it")
        sent_by_a = len(slow.messages)
        # What it had in hand: the entries left pending under its consumers,
        # and when each was last claimed (delivered or kept alive): idle
        # from then on, since nothing of A is left to keep them alive.
        in_hand = set()
        claimed_at = {}
        for n in POOLS:
            t = time.time()
            for p in q.xpending_range("digest:q:" + n, "digestd", "-", "+", 100):
                (entry,) = q.xrange("digest:q:" + n, p["message_id"], p["message_id"])
                in_hand.add(entry[1]["job_id"])
                claimed_at[p["message_id"]] = t - p["time_since_delivered"] / 1000.0
        assert len(workers) - 1 <= len(in_hand) <= len(workers), in_hand

        b = Digestd(cfg_b, tmp_path).start()
        wait_settled(q, [b], timeout=120)
        text = b.metrics()
    finally:
        if b is not None:
            assert b.stop() == 0
        if a is not None:
            a.kill()
        slow.stop()
        fast.stop()

    got = sink_pairs(slow, fast)
    lost = set(want) - set(got)
    assert not lost, "%d recipients lost, e.g. %r" % (len(lost), sorted(lost)[:5])
    assert set(got) == set(want)
    dups = [k for k, n in collections.Counter(got).items() if n > 1]
    # A whole instance killed takes its scoreboard with it, but each
    # worker sent its cursor to Redis after every message: the other
    # instance resumes each job after the last message done, so at most
    # the message in flight is sent again, one per job in hand.
    assert len(dups) <= len(in_hand), "%d duplicates for %d jobs in hand" % (
        len(dups), len(in_hand))
    assert sent_by_a < len(want), "A finished before it was killed"
    cps = checkpoints(q)
    for jid in in_hand:
        assert cps[jid]["state"] == "done", (jid, cps[jid])
        assert int(cps[jid]["attempts"]) == 2, (jid, cps[jid])
    assert all(cp["state"] == "done" for cp in cps.values())
    assert metric_sum(text, "digest_jobs_total", result="ok") > 0
    # B reclaimed each of them once, and not before visibility_timeout:
    # 3 s of idling after A's last keepalive, as Redis counted it (the
    # log's milliseconds are cut, not rounded).
    claims = [l for l in b.log().splitlines() if "reclaimed entry" in l]
    assert len(claims) == len(in_hand), claims
    for l in claims:
        ts = re.search(r"ts=(\S+)", l).group(1)
        at = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        entry = re.search(r"reclaimed entry (\S+)", l).group(1)
        assert at >= claimed_at[entry] + 3.0 - 0.002, (l, claimed_at, killed_at)
    assert q.xlen("digest:dlq") == 0
    assert unbounded_keys(q) == []
