"""A worker killed with SIGKILL in the middle of a job: the job is
resumed from its checkpoint, no recipient is lost, and at most one email
is sent twice.  The SMTP sink is slowed down so the kill lands mid-job.
"""
import collections
import os
import signal
import time

from lib.harness import Digestd, wait_for
from lib.pipeline_data import (
    Data, config, enqueue, job_state, rcpts, wait_done, window)

N = 300


def one_group(r, gid, name, first_uid):
    """A group of N members with an email each and one post in the window;
    returns (window start, window end, member uids)."""
    ws, we = window()
    data = Data(r)
    data.group(gid, name=name)
    uids = list(range(first_uid, first_uid + N))
    data.members(gid, uids)
    for u in uids:
        data.user(u, email="u%d@example.org" % u)
    data.post(gid, gid * 1000 + 1, we - 60, title="Hello", author_id=1)
    return ws, we, uids


def assert_each_once_after_kill(r, jid, d, sink, uids):
    """The killed job ran again to the end: everyone got the digest, and
    at most one of them twice (the message in flight)."""
    st = wait_done(r, jid, timeout=120, d=d)
    assert int(st["attempts"]) >= 2, st
    got = collections.Counter(rcpts(sink))
    want = {"u%d@example.org" % u for u in uids}
    missing = want - set(got)
    assert not missing, "lost: %s" % sorted(missing)[:10]
    dups = {a: c for a, c in got.items() if c > 1}
    assert sum(c - 1 for c in dups.values()) <= 1, dups
    assert set(got) == want


def busy_worker(d):
    for w in d.status()["workers"]:
        if w.get("job") and w.get("pid"):
            return w["pid"]
    return None


def test_pipeline_kill9_mid_job(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we, uids = one_group(r, 5, "Big enough", 1000)

    def slow(addr):
        time.sleep(0.01)      # blocks the sink's loop: about 100 emails/s
        return None

    smtp_sink.reply_for = slow
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=50, per_session=50)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 5, "daily", ws, we)
        wait_for(lambda: smtp_sink.count() >= N // 3, timeout=60,
                 what="a third of the job sent")
        pid = busy_worker(d)
        assert pid, d.status()
        os.kill(pid, signal.SIGKILL)
        at_kill = smtp_sink.count()
        assert at_kill < N, "the job finished before the kill"
        assert_each_once_after_kill(r, jid, d, smtp_sink, uids)
    finally:
        d.kill()


def test_pipeline_kill9_after_a_deferral(tmp_path, redis_tcp, smtp_sink):
    """A recipient deferred (4xx) early in a batch is parked at once, so the
    checkpoint moves on past it: a kill later in that batch re-sends at most
    the message in flight, not everyone sent after the deferred one, and
    the deferred one is delivered in the end."""
    r = redis_tcp.client()
    ws, we, uids = one_group(r, 7, "Greylisted", 4000)
    grey = "u4102@example.org"      # third in the second batch of 100
    asked = collections.Counter()

    def reply(addr):
        asked[addr] += 1
        time.sleep(0.01)      # blocks the sink's loop: about 100 emails/s
        return "450 4.7.1 greylisted" if addr == grey and asked[addr] == 1 else None

    smtp_sink.reply_for = reply
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=100, per_session=100)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 7, "daily", ws, we)
        # Some 40 sent after the deferred one, in the same batch.
        wait_for(lambda: smtp_sink.count() >= 140, timeout=60, interval=0.01,
                 what="the second batch under way")
        pid = busy_worker(d)
        assert pid, d.status()
        os.kill(pid, signal.SIGKILL)
        at_kill = smtp_sink.count()
        assert asked[grey] == 1 and at_kill < 195, "the kill missed the batch"
        assert_each_once_after_kill(r, jid, d, smtp_sink, uids)
    finally:
        d.kill()


def test_pipeline_drain_mid_job_resumes(tmp_path, redis_tcp, smtp_sink):
    """SIGTERM mid-job: the job is checkpointed and given back; a new digestd
    resumes it: nobody lost, nobody sent twice (a drain is orderly)."""
    r = redis_tcp.client()
    ws, we, uids = one_group(r, 6, "Drained", 2000)

    def slow(addr):
        time.sleep(0.01)
        return None

    smtp_sink.reply_for = slow
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, batch=50, per_session=50)
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 6, "daily", ws, we)
        wait_for(lambda: smtp_sink.count() >= N // 4, timeout=60,
                 what="a quarter of the job sent")
        assert d.stop(timeout=30) == 0
        st = job_state(r, jid)
        assert st.get("state") != "done", st
        assert int(st["cursor"]) >= 2000 + N // 4 - 1, st
        at_drain = smtp_sink.count()
        assert at_drain < N
    finally:
        d.kill()
    d2 = Digestd(cfg, tmp_path)
    d2.start()
    try:
        wait_done(r, jid, timeout=120, d=d2)
        got = collections.Counter(rcpts(smtp_sink))
        assert set(got) == {"u%d@example.org" % u for u in uids}
        assert max(got.values()) == 1, {a: c for a, c in got.items() if c > 1}
        text = d2.metrics()
        from lib.harness import metric_sum
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="already_sent") == at_drain
    finally:
        d2.kill()


def test_pipeline_kill9_maildir(tmp_path, redis_tcp):
    """The maildir transport under SIGKILL: nobody lost; at most one
    duplicate (the message in flight), each a whole message."""
    import email
    import email.policy

    r = redis_tcp.client()
    ws, we, uids = one_group(r, 9, "On disk", 3000)
    outbox = os.path.join(str(tmp_path), "outbox")
    new = os.path.join(outbox, "new")
    # 100 emails a second: the job lasts about 3 s however fast the
    # worker writes, so the kill lands in the middle of it.
    cfg = config(tmp_path, redis_tcp, maildir=outbox, batch=50,
                 extra="[limits]\nrate = 100\n")
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jid = enqueue(r, 9, "daily", ws, we)
        wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) >= N // 4,
                 timeout=60, interval=0.001, what="a quarter written")
        pid = busy_worker(d)
        assert pid, d.status()
        os.kill(pid, signal.SIGKILL)
        assert len(os.listdir(new)) < N, "the job finished before the kill"
        wait_done(r, jid, timeout=120, d=d)
    finally:
        d.kill()
    got = collections.Counter()
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        got[msg["To"].addresses[0].addr_spec] += 1
    assert set(got) == {"u%d@example.org" % u for u in uids}
    dups = sum(c - 1 for c in got.values())
    print("\nmaildir kill -9: %d duplicate(s)" % dups)
    assert dups <= 1
