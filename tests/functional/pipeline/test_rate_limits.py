"""The cluster's rate limits (docs/design.md#rate-limits), on real servers:

- limits.rate holds 4 workers on 2 digestd instances (one queue Redis) to
  the configured rate, within 5% over the measured window;
- limits.domain_rate holds one recipient domain to its rate while another
  domain goes much faster;
- limits.reject_pause pauses every queue when the SMTP sink refuses most
  recipients with 5xx, and sending stops.

Counts are taken over the messages themselves: maildir files and their
write times (the maildir transport writes a flush's messages together,
right after their tokens were taken), and the recipients the SMTP sink
was offered.  The sanitizer build is about 5 times slower,
so there the rates are scaled down (RATE, DOMAIN_RATE); the windows and
the 5% stay the same.
"""
import os
import shutil
import threading
import time

from lib.harness import ASAN, Digestd, SmtpSink, TcpRedis, wait_for
from lib.pipeline_data import Data, enqueue, window
from lib.scale_util import config

RATE = 50 if ASAN else 200          # emails/s, the whole cluster
WINDOW = 20.0                       # seconds measured
SKIP = 3.0                          # seconds left out at the start
DOMAIN_RATE = 20 if ASAN else 40    # emails/s to slow.example
DOMAIN_WINDOW = 20.0
# The maildir transport writes a flush's messages together (at most 16),
# so a window's edge may cut a flush in two: batches small enough that
# this stays well inside the 5%.
RATE_BATCH = 8 if ASAN else 100
DOMAIN_BATCH = 4


def seed(r, we, groups):
    """groups: {gid: (number of members, recipient domain)}; every member
    eligible (daily, has an email), one post in the window."""
    data = Data(r)
    pipe = r.pipeline(transaction=False)
    for gid, (n, domain) in groups.items():
        data.group(gid, name="Group %d" % gid)
        base = gid * 100000
        data.members(gid, range(base, base + n))
        for u in range(base, base + n):
            pipe.hset("user:%d" % u, mapping={
                "email": "u%d@%s" % (u, domain), "name": "User %d" % u})
        pid = gid * 10
        pipe.zadd("group:%d:posts" % gid, {str(pid): we - 100})
        pipe.hset("post:%d" % pid, mapping={
            "title": "Post of group %d" % gid,
            "url": "https://example.com/p/%d" % pid, "author_id": "1",
            "author_name": "Someone", "likes": "1", "comments": "2",
            "excerpt": "Lorem ipsum dolor sit amet"})
    pipe.execute()


def outbox_times(dirs):
    """[(write time, recipient domain)] of every message in the maildirs."""
    out = []
    for d in dirs:
        for sub in ("new", "tmp"):
            p = os.path.join(d, sub)
            if not os.path.isdir(p):
                continue
            for name in os.listdir(p):
                f = os.path.join(p, name)
                try:
                    st = os.stat(f)
                    with open(f, "rb") as fh:
                        head = fh.read(4096)
                except FileNotFoundError:
                    continue        # renamed from tmp to new meanwhile
                dom = b""
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"to:"):
                        dom = line.rsplit(b"@", 1)[-1].strip(b"> ")
                        break
                out.append((st.st_mtime, dom.decode()))
    return out


def in_window(times, t0, length):
    return sum(1 for t in times if t0 <= t < t0 + length)


def two_instances(tmp_path, redis, outboxes, extra, batch):
    cfgs = [config(tmp_path, redis.config_section(), pools=("standard",), workers=2,
                   maildir=outboxes[i], extra=extra, name="i%d.conf" % i,
                   batch=batch)
            for i in range(2)]
    return [Digestd(c, tmp_path).start() for c in cfgs]


def shm_outboxes(tag):
    base = "/dev/shm/digestd-rl-%s-%d" % (tag, os.getpid())
    shutil.rmtree(base, ignore_errors=True)
    return base, [os.path.join(base, "i%d" % i) for i in range(2)]


def test_rate_holds_the_cluster(tmp_path):
    redis = TcpRedis(tmp_path / "redis").start()
    base, outboxes = shm_outboxes("rate")
    ds = []
    try:
        r = redis.client()
        ws, we = window()
        # More than the window needs, so every worker has work throughout.
        per_group = int(RATE * (SKIP + WINDOW + 4) / 8) + 1
        seed(r, we, {g: (per_group, "example.org") for g in range(1, 9)})
        ds = two_instances(tmp_path, redis, outboxes,
                           "[limits]\nrate = %d\n" % RATE, RATE_BATCH)
        for g in range(1, 9):
            enqueue(r, g, "daily", ws, we)
        first = []

        def started():
            t = outbox_times(outboxes)
            if t:
                first.append(min(x for x, _ in t))
            return bool(t)
        wait_for(started, timeout=30, what="first email")
        t0 = first[0] + SKIP
        time.sleep(max(0.0, t0 + WINDOW + 0.5 - time.time()))
        for d in ds:
            assert not d.exited(), d.log()[-3000:]
        times = [t for t, _ in outbox_times(outboxes)]
        n = in_window(times, t0, WINDOW)
        want = RATE * WINDOW
        print("rate: %d emails in %.0f s = %.1f/s (limit %d/s), %d in all"
              % (n, WINDOW, n / WINDOW, RATE, len(times)))
        assert abs(n - want) <= 0.05 * want, (n, want)
        # Every instance took part: the limit is the cluster's.
        for ob in outboxes:
            assert len(outbox_times([ob])) > 0.2 * want, ob
        # The workers waited, and said so.
        text = ds[0].metrics() + ds[1].metrics()
        assert "digest_ratelimit_wait_seconds_count" in text
    finally:
        for d in ds:
            d.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_domain_rate_holds_one_domain(tmp_path):
    redis = TcpRedis(tmp_path / "redis").start()
    base, outboxes = shm_outboxes("dom")
    ds = []
    try:
        r = redis.client()
        ws, we = window()
        slow_n = int(DOMAIN_RATE * (2 + DOMAIN_WINDOW + 4) / 2) + 1
        fast_n = 400
        groups = {1: (slow_n, "slow.example"), 2: (slow_n, "Slow.Example"),
                  3: (fast_n, "fast.example"), 4: (fast_n, "fast.example")}
        seed(r, we, groups)
        ds = two_instances(tmp_path, redis, outboxes,
                           "[limits]\ndomain_rate = slow.example=%d "
                           "other.example=1\n" % DOMAIN_RATE, DOMAIN_BATCH)
        for g in (1, 2, 3, 4):
            enqueue(r, g, "daily", ws, we)

        def both():
            t = outbox_times(outboxes)
            return (sum(1 for _, d in t if d == "fast.example") == 2 * fast_n
                    and any(d.lower() == "slow.example" for _, d in t))
        wait_for(both, timeout=60, what="the fast domain's emails")
        t = outbox_times(outboxes)
        slow = sorted(x for x, d in t if d.lower() == "slow.example")
        fast = sorted(x for x, d in t if d == "fast.example")
        slow_first = slow[0]
        t0 = slow[0] + 2
        time.sleep(max(0.0, t0 + DOMAIN_WINDOW + 0.5 - time.time()))
        for d in ds:
            assert not d.exited(), d.log()[-3000:]
        slow = [x for x, d in outbox_times(outboxes)
                if d.lower() == "slow.example"]
        n = in_window(slow, t0, DOMAIN_WINDOW)
        print("per second:", [in_window(slow, slow_first + i, 1)
                              for i in range(int(DOMAIN_WINDOW + 3))])
        want = DOMAIN_RATE * DOMAIN_WINDOW
        fast_rate = len(fast) / max(fast[-1] - fast[0], 0.001)
        print("domain_rate: slow.example %d in %.0f s = %.1f/s (limit %d/s);"
              " fast.example %.0f/s" % (n, DOMAIN_WINDOW, n / DOMAIN_WINDOW,
                                       DOMAIN_RATE, fast_rate))
        assert abs(n - want) <= 0.05 * want, (n, want)
        assert fast_rate > 3 * DOMAIN_RATE, fast_rate
    finally:
        for d in ds:
            d.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_reject_pause_pauses_every_queue(tmp_path):
    """The sink refuses 9 recipients in 10 with 550: past reject_pause = 5%
    of the last emails, every queue is paused with that reason, and the
    job in hand stops at the end of its batch."""
    redis = TcpRedis(tmp_path / "redis").start()
    sink = SmtpSink().start()
    offered = []
    lock = threading.Lock()

    def reply_for(rcpt):
        with lock:
            offered.append(rcpt)
        return None if rcpt.endswith("@ok.example") else "550 5.1.1 no such user"
    sink.reply_for = reply_for
    d = None
    try:
        r = redis.client()
        ws, we = window()
        groups = {1: (600, "gone.example")}
        seed(r, we, groups)
        # One member in ten has a mailbox.
        for u in range(100000, 100600, 10):
            r.hset("user:%d" % u, "email", "u%d@ok.example" % u)
        cfg = config(tmp_path, redis.config_section(), pools=("standard",),
                     workers=1, sink=sink, batch=100,
                     extra="[limits]\nreject_pause = 5%\n")
        d = Digestd(cfg, tmp_path).start()
        jid = enqueue(r, 1, "daily", ws, we)

        def paused():
            return all(r.exists("digest:paused:%s" % q)
                       for q in ("priority", "standard"))
        wait_for(paused, timeout=30, what="every queue paused")
        for q in ("priority", "standard"):
            reason = r.hget("digest:paused:%s" % q, "reason")
            assert reason.startswith("reject_pause:"), reason
            assert "5xx" in reason and "5%" in reason, reason
        wait_for(lambda: 'digest_queue_paused{queue="standard"} 1'
                 in d.metrics(), timeout=30, what="the paused gauge")
        # The job went back at the end of its batch; nothing more is sent.
        wait_for(lambda: all(w["job"] is None
                             for w in d.status()["workers"]),
                 timeout=30, what="the job given back")
        with lock:
            n = len(offered)
        time.sleep(1.5)
        with lock:
            assert len(offered) == n
        assert 100 <= n <= 200, n
        assert r.hget("digest:job:" + jid, "state") != "done"
        # The trip emptied the ring: a resume starts from a clean window.
        assert not r.exists("digest:rejects")
    finally:
        if d is not None:
            d.stop()
        sink.stop()
        redis.stop()
