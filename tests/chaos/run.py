#!/usr/bin/python3
"""The chaos run: digestd delivers a whole day's digests while everything
around it fails, and not one recipient may be lost.

From a fixed seed it writes groups, members, users and posts into
a private redis-server (AOF on, appendfsync always, so that a restart keeps
every acknowledged write), works out in Python which member of which job is
due an email, schedules the day with digestctl and starts digestd
sending over SMTP to an aiosmtpd sink.  While it runs, at points drawn from
the seed (fractions of the expected mail), it:

- SIGKILLs a busy worker (`kills` times);
- kills redis-server with SIGKILL and starts it again on its AOF;
- has the sink answer 4xx to every recipient for a burst, and stop
  listening altogether for `outage` seconds;
- has the sink greylist a share of the recipients (451 for `grey_for`
  seconds after their first attempt, as real receivers do) and defer a
  few for ever (`never`: they must be given up after defer_give_up,
  counted rejected, and are due no email);
- SIGKILLs the whole instance (supervisor and workers) and starts a new
  one, which takes over the jobs the first had in hand;
- on the amqp backend, restarts the RabbitMQ broker;
- sends SIGHUP (`hups` times): one with a broken file (the reload must be
  refused and counted), one that resizes the pools;

and `digestctl schedule` runs while other writers bump the groups'
`groups:active` scores and remove and re-add decoy groups, as posts
arriving just after a period ends do; then waits for every job to be done and sends SIGTERM.  Counted from the
sink's store, by Message-ID: recipients lost (must be 0), duplicates (at
most one per killed worker and one per job in hand when the whole
instance died), messages nobody was due (0); and digestd's exit
code (0), zombies (none lingers), dead letters (0), and every counter and
histogram series of /metrics, scraped twice a second throughout, never
going down.

    tests/chaos/run.py [--backend redis|amqp] [--short] [--seed N] [--json]

The full form is `make chaos`; the functional suite runs the short form
(tests/functional/chaos/) through run_chaos().  Exit status 0
when every check holds.
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))

from lib.harness import (  # noqa: E402
    DIGESTCTL,
    _gone,
    AofRedis,
    Digestd,
    SmtpSink,
    free_port,
    wait_for,
    zombies_of,
)

DAY = 86400
DOMAIN = "example.com"
SECRET = "chaos-unsubscribe-secret-7d0e5b3a91"
LARGE = 1000            # digest.large_group_threshold
SHARD = 500             # schedule.shard_size
BATCH = 20              # digest.batch_size: also the messages of one flush

FULL = dict(recipients=10000, kills=20, redis_restarts=2, hups=10, outage=10.0,
            bursts=4, burst_len=1.5, broker_restarts=1, timeout=900.0, rcpt_delay=0.0,
            greylist=0.01, grey_for=5.0, never=3, give_up="20s", instance_kills=1,
            decoys=3000)
SHORT = dict(recipients=800, kills=3, redis_restarts=1, hups=3, outage=2.0,
             bursts=1, burst_len=1.0, broker_restarts=1, timeout=150.0, rcpt_delay=0.01,
             greylist=0.02, grey_for=2.0, never=1, give_up="6s", instance_kills=1,
             decoys=3000)
UID = re.compile(r"^u(\d+)@")

MSGID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.I | re.M)
DATE = re.compile(rb"^Date:[ \t]*([^\r\n]+)", re.I | re.M)


class Sink(SmtpSink):
    """The SMTP sink, with 4xx bursts and outages, indexed by Message-ID."""

    def __init__(self, journal=None):
        super().__init__()
        self.journal = journal  # a file: one line per message accepted
        self.burst_until = 0.0
        self.burst_min = 0
        self.rcpt_delay = 0.0
        self.reply_for = self._reply
        self.seen = {}          # message-id -> times accepted
        self.indexed = 0
        self.deferred = 0
        self.grey = {}          # rcpt -> seconds greylisted (None: for ever)
        self.grey_first = {}    # rcpt -> first attempt (monotonic)
        self.greylisted = 0
        self.span = {}          # rcpt -> [first 4xx, last 4xx] (monotonic)

    def burst(self, seconds, at_least=20):
        """Answer 4xx for seconds, and on until at_least recipients have
        had one (20 s at most), so that a burst always meets traffic."""
        self.burst_until = time.monotonic() + seconds
        self.burst_min = self.deferred + at_least

    def _reply(self, rcpt):
        if self.rcpt_delay:
            # Blocks the sink's loop: a relay that takes this long per
            # recipient, whatever the number of sessions.
            time.sleep(self.rcpt_delay)
        now = time.monotonic()
        if rcpt in self.grey:
            first = self.grey_first.setdefault(rcpt, now)
            g = self.grey[rcpt]
            if g is None or now - first < g:
                self.greylisted += 1
                self._deferred(rcpt, now)
                return "451 4.7.1 greylisted, please try again later"
        if now < self.burst_until or (self.deferred < self.burst_min
                                      and now < self.burst_until + 20.0):
            self.deferred += 1
            self._deferred(rcpt, now)
            return "451 4.3.0 try again later"
        return None

    def _deferred(self, rcpt, now):
        sp = self.span.setdefault(rcpt, [now, now])
        sp[1] = now

    def deferred_for(self, rcpt):
        """Seconds from rcpt's first 4xx to its last (0: never one)."""
        sp = self.span.get(rcpt)
        return sp[1] - sp[0] if sp else 0.0

    def index(self):
        """Fold newly accepted messages into seen; returns len(seen)."""
        with self.lock:
            new = self.messages[self.indexed:]
            self.indexed = len(self.messages)
        for _, _, raw in new:
            head = raw.split(b"\r\n\r\n", 1)[0]
            m = MSGID.search(head)
            key = m.group(1).decode("ascii", "replace") if m else "<none>"
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.journal is not None:
                m = DATE.search(head)
                date = m.group(1).decode("ascii", "replace") if m else "-"
                self.journal.write("%s %d %s\n" % (key, self.seen[key], date))
        if self.journal is not None:
            self.journal.flush()
        return len(self.seen)


def seed_data(r, rng, target, wend):
    """Write groups until target recipients are due; returns (expected
    Message-IDs, job ids, skipped counts by reason)."""
    expected = set()
    jobs = []
    skipped = {}
    users = {}          # uid -> fields (None: no hash)
    gid = 0
    next_uid = 1000
    pipe = r.pipeline(transaction=False)

    def new_user():
        nonlocal next_uid
        uid = next_uid
        next_uid += rng.randint(1, 3)
        k = rng.random()
        f = {"email": "u%d@example.org" % uid, "name": "User %d" % uid,
             "last_seen": str(wend - rng.randint(0, 30 * DAY))}
        if k < 0.03:
            f = None                                  # no hash: no_email
        elif k < 0.05:
            f["email"] = ""                           # no_email
        elif k < 0.08:
            f["digest"] = rng.choice(["weekly", "off"])   # opted_out
        elif k < 0.10:
            f["last_seen"] = str(wend - 200 * DAY)    # inactive when large
        elif k < 0.11:
            del f["last_seen"]                        # inactive when large
        elif k < 0.20:
            f["digest"] = "daily"
        users[uid] = f
        if f is not None:
            pipe.hset("user:%d" % uid, mapping=f)
        return uid

    while len(expected) < target:
        gid += 1
        size = LARGE + 200 if gid % 12 == 0 else rng.randint(30, 250)
        members = set()
        # A few members shared with earlier groups, the rest new.
        pool = list(users)
        while len(members) < size:
            if pool and rng.random() < 0.1:
                members.add(rng.choice(pool))
            else:
                members.add(new_user())
        members = sorted(members)
        pipe.hset("group:%d" % gid, mapping={
            "name": "Group %d" % gid, "url": "https://example.com/g/%d" % gid})
        for k in range(0, len(members), 1000):
            pipe.zadd("group:%d:members" % gid,
                      {str(u): u for u in members[k:k + 1000]})
        authors = []
        nposts = rng.choice([1, 1, 2, 3])
        latest = 0
        for i in range(nposts):
            pid = gid * 100 + i
            at = wend - rng.randint(60, DAY - 60)
            latest = max(latest, at)
            author = rng.choice(members)
            authors.append(author)
            pipe.zadd("group:%d:posts" % gid, {str(pid): at})
            pipe.hset("post:%d" % pid, mapping={
                "title": "Post %d of group %d" % (i, gid),
                "url": "https://example.com/p/%d" % pid,
                "author_id": str(author), "author_name": "User %d" % author,
                "excerpt": "Something worth reading, number %d." % pid,
                "likes": str(rng.randint(0, 50)), "comments": str(rng.randint(0, 9))})
        # One old post, outside the window: it must not count.
        pipe.zadd("group:%d:posts" % gid, {str(gid * 100 + 99): wend - 3 * DAY})
        pipe.zadd("groups:active", {str(gid): latest})

        shards = [members[k:k + SHARD] for k in range(0, len(members), SHARD)]
        for s, shard in enumerate(shards):
            jid = "daily.%d.%d.%d" % (wend, gid, s)
            jobs.append(jid)
            for u in shard:
                why = eligibility(users[u], len(members), authors, u, wend)
                if why is None:
                    expected.add("%s.%d@%s" % (jid, u, DOMAIN))
                else:
                    skipped[why] = skipped.get(why, 0) + 1
    pipe.execute()
    return expected, jobs, skipped


def seed_decoys(r, n, wend):
    """n groups active in the window but with no post in it: the scheduler
    reads them and makes no job, so they can come and go freely."""
    decoys = []
    pipe = r.pipeline(transaction=False)
    for k in range(n):
        gid = 1000000 + k
        decoys.append(gid)
        pipe.zadd("groups:active", {str(gid): wend - 1 - (k % 5000)})
    pipe.execute()
    return decoys


class Churn(threading.Thread):
    """Writes to groups:active while the scheduler reads it: bumps the
    scores of real groups (a post arriving: scores only rise) and removes
    and re-adds decoy groups; stops when told, or after 300 s."""

    def __init__(self, redis, seed, jobs, decoys, wend):
        super().__init__(daemon=True)
        self.r = redis.client()
        self.rng = random.Random(seed)
        self.gids = sorted({int(j.split(".")[2]) for j in jobs})
        self.decoys = decoys
        self.wend = wend
        self.stop_ev = threading.Event()
        self.bumps = self.removals = 0
        self.score = wend

    def run(self):
        deadline = time.monotonic() + 300
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            pipe = self.r.pipeline(transaction=False)
            for _ in range(20):
                g = self.rng.choice(self.gids)
                # A post arriving now: the score only ever rises, as the
                # time of a group's latest post does.
                self.score = max(self.score, self.wend) + 1
                pipe.zadd("groups:active", {str(g): self.score})
                self.bumps += 1
                dgid = self.rng.choice(self.decoys)
                pipe.zrem("groups:active", str(dgid))
                pipe.zadd("groups:active", {str(dgid): self.wend - 1})
                self.removals += 1
            try:
                pipe.execute()
            except Exception:
                pass
            time.sleep(0.001)

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=10)


def eligibility(f, group_size, authors, uid, wend):
    """The eligibility rules for a daily job: None when due an email, else the reason."""
    if f is None or not f.get("email"):
        return "no_email"
    if f.get("digest", "daily") != "daily":
        return "opted_out"
    if group_size >= LARGE:
        ls = f.get("last_seen")
        if ls is None or int(ls) < wend - 90 * DAY:
            return "inactive"
    if not any(a != uid for a in authors):
        return "nothing_new"
    return None


def config_text(port, redis, sink, give_up, standard=3, broken=False,
                amqp_url=None):
    if broken:
        return "[supervisor]\nlisten = 127.0.0.1:%d\n[pool.standard]\nworkers = many\n" % port
    backend = "redis"
    amqp = ""
    if amqp_url:
        backend = "amqp"
        amqp = "[amqp]\nurl = %s\nheartbeat = 5s\nprefetch = 1\n" % amqp_url
    return """\
[supervisor]
listen = 127.0.0.1:{port}
drain_timeout = 30s
stall_timeout = 60s
restart_backoff_min = 10ms
restart_backoff_max = 1s
log_level = info

{redis}
[queue]
backend = {backend}
; A job may be cut short by a kill, a restart of Redis or of the broker,
; a reload and the sink's outage, each an attempt: room for all of them.
max_attempts = 25
; Short, so that the jobs of the instance killed whole are taken over
; soon; a live instance never needs it, however long its jobs run.
visibility_timeout = 5s

{amqp}
[schedule]
shard_size = {shard}

[pool.priority]
queue = priority
workers = 2
memory_limit = 256M

[pool.standard]
queue = standard
workers = {standard}
memory_limit = 256M

[digest]
from = Groups <digest@{domain}>
unsubscribe_secret = {secret}
unsubscribe_url = https://{domain}/unsubscribe
batch_size = {batch}
large_group_threshold = {large}

[transport]
type = smtp

[smtp]
host = 127.0.0.1
port = {smtp}
starttls = off
messages_per_session = 100
defer_retry_min = 1s
defer_retry_max = 4s
defer_give_up = {give_up}
""".format(port=port, redis=redis.config_section(), backend=backend, amqp=amqp,
           shard=SHARD, standard=standard, domain=DOMAIN, secret=SECRET,
           large=LARGE, smtp=sink.port, batch=BATCH, give_up=give_up)


class Scraper(threading.Thread):
    """Scrapes /metrics twice a second: counters must never go down, and no
    child of digestd may stay a zombie from one look to the next.

    The main thread scrapes too (around a SIGHUP): one scrape at a time,
    else an older body compared after a newer one looks like a decrease."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.last = {}
        self.decreases = []
        self.scrapes = 0
        self.failures = 0
        self.lingering = set()
        self.text = ""
        self.base = {}          # counters of the instances before this one

    def carry(self, prev):
        """Count on from prev, the scraper of an instance that died whole."""
        self.base = dict(prev.base)
        for k, v in prev.last.items():
            self.base[k] = self.base.get(k, 0.0) + v
        self.scrapes += prev.scrapes
        self.failures += prev.failures
        self.decreases += prev.decreases
        self.lingering |= prev.lingering

    def scrape(self):
        with self.lock:
            self._scrape()

    def _scrape(self):
        from lib.metrics_util import families
        with urllib.request.urlopen(self.d.url("/metrics"), timeout=3) as resp:
            text = resp.read().decode("utf-8")
        self.text = text
        for _, typ, samples in families(text):
            if typ not in ("counter", "histogram"):
                continue
            for name, labels, value in samples:
                if typ == "counter" and not name.endswith("_total"):
                    continue
                key = (name, tuple(sorted(labels.items())))
                prev = self.last.get(key)
                if prev is not None and value < prev:
                    self.decreases.append((key, prev, value))
                self.last[key] = value
        self.scrapes += 1

    def run(self):
        zprev = set()
        while not self.stop_ev.wait(0.5):
            try:
                self.scrape()
            except Exception:
                self.failures += 1
            z = set(zombies_of(self.d.pid()))
            self.lingering |= z & zprev
            zprev = z

    def metric(self, name, **labels):
        total = 0.0
        with self.lock:
            srcs = (list(self.base.items()), list(self.last.items()))
        for src in srcs:
            for (n, lab), v in src:
                d = dict(lab)
                if n == name and all(d.get(k) == v2
                                     for k, v2 in labels.items()):
                    total += v
        return total

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=10)


def status_workers(d):
    try:
        with urllib.request.urlopen(d.url("/status"), timeout=3) as resp:
            return json.loads(resp.read().decode("utf-8"))["workers"]
    except Exception:
        return []


def jobs_done(r, jobs):
    pipe = r.pipeline(transaction=False)
    for j in jobs:
        pipe.hget("digest:job:" + j, "state")
    try:
        states = pipe.execute()
    except Exception:
        return -1
    return sum(1 for s in states if s == "done")


def dead_letters(r, rabbit, vhost):
    """Entries of digest:dlq, plus messages of digest.dlq on the broker."""
    n = r.xlen("digest:dlq") if r.exists("digest:dlq") else 0
    if vhost is not None:
        from lib.amqp_util import queue_counts
        q = queue_counts(rabbit, vhost, "digest.dlq")
        n += q[0] if q else 0
    return n


def log(msg, quiet):
    if not quiet:
        print("chaos: %s" % msg, flush=True)


def run_chaos(workdir, backend="redis", short=False, seed=20261129, rabbit=None,
              quiet=False):
    """Run the chaos scenario in workdir; returns the figures (a dict).

    rabbit: a started harness.RabbitServer for the amqp backend (the
    functional suite passes its session broker); when None and the backend
    is amqp, one is started here and stopped at the end.
    """
    p = dict(SHORT if short else FULL)
    if backend != "amqp":
        p["broker_restarts"] = 0
    rng = random.Random(seed)
    os.makedirs(workdir, exist_ok=True)
    now = int(time.time())
    wend = now - now % DAY
    now = wend + 3600

    redis = AofRedis(os.path.join(workdir, "redis")).start()
    # Which message came when, for the post-mortem of a failed run.
    journal = open(os.path.join(workdir, "deliveries.txt"), "w")
    sink = Sink(journal).start()
    # The short form's sink is slower, so that its faults meet traffic.
    sink.rcpt_delay = p["rcpt_delay"]
    own_rabbit = False
    d = None
    scraper = None
    res = {"backend": backend, "seed": seed, "short": short}
    try:
        amqp_url = vhost = None
        if backend == "amqp":
            if rabbit is None:
                from lib.harness import RabbitServer
                rabbit = RabbitServer()
                rabbit.start()
                own_rabbit = True
            vhost = rabbit.vhost("chaos")
            amqp_url = rabbit.url(vhost)
        r = redis.client()
        t0 = time.monotonic()
        expected, jobs, skipped = seed_data(r, rng, p["recipients"], wend)
        decoys = seed_decoys(r, p["decoys"], wend)
        # Greylisted recipients, and a few deferred for ever: those are
        # given up (rejected) and due no email.
        uids = sorted({int(m.split("@")[0].rsplit(".", 1)[1]) for m in expected})
        grey = rng.sample(uids, max(1, int(p["greylist"] * len(uids))))
        never = set(grey[:p["never"]])
        for u in grey:
            sink.grey["u%d@example.org" % u] = None if u in never else p["grey_for"]
        given_up = {m for m in expected
                    if int(m.split("@")[0].rsplit(".", 1)[1]) in never}
        expected -= given_up
        log("seeded %d jobs, %d recipients due (%d greylisted, %d messages to "
            "give up), skipped %s, %d decoy groups in %.1fs"
            % (len(jobs), len(expected), len(grey), len(given_up), skipped,
               len(decoys), time.monotonic() - t0), quiet)
        port = free_port()
        cfg = os.path.join(workdir, "digestd.conf")
        good = config_text(port, redis, sink, amqp_url=amqp_url,
                           give_up=p["give_up"])
        with open(cfg, "w") as f:
            f.write(good)
        churn = Churn(redis, rng.randint(0, 1 << 30), jobs, decoys, wend)
        churn.start()
        try:
            out = subprocess.run([DIGESTCTL, "-c", cfg, "schedule", "--period",
                                  "daily", "--now", str(now)],
                                 capture_output=True, text=True, timeout=300)
        finally:
            churn.finish()
        assert out.returncode == 0, out.stdout + out.stderr
        log("schedule ran while %d score bumps and %d removals happened"
            % (churn.bumps, churn.removals), quiet)
        d = Digestd(cfg, workdir)
        d.start(timeout=60)
        scraper = Scraper(d)
        scraper.start()

        # The events, at fractions of the expected mail drawn from the seed.
        events = [(rng.uniform(0.03, 0.9), "kill") for _ in range(p["kills"])]
        events += [(rng.uniform(0.15, 0.8), "redis") for _ in range(p["redis_restarts"])]
        events += [(rng.uniform(0.2, 0.7), "broker") for _ in range(p["broker_restarts"])]
        events += [(rng.uniform(0.05, 0.85), "burst") for _ in range(p["bursts"])]
        events.append((rng.uniform(0.3, 0.6), "outage"))
        events += [(rng.uniform(0.25, 0.7), "instance")
                   for _ in range(p["instance_kills"])]
        hups = ["hup"] * p["hups"]
        hups[0] = "hup-broken"
        if len(hups) > 1:
            hups[1] = "hup-resize"
        events += [(rng.uniform(0.05, 0.9), h) for h in hups]
        # The short form's events come earlier, so that they meet busy
        # workers although there is less mail.
        scale = 0.75 if short else 1.0
        events = sorted((f * scale, k) for f, k in events)

        counts = dict(kills=0, redis_restarts=0, broker_restarts=0, hups=0,
                      bursts=0, outages=0, idle_kills=0, instance_kills=0,
                      jobs_in_hand=0)
        reloads = lambda: (scraper.metric("digest_config_reloads_total", result="success"),
                           scraper.metric("digest_config_reloads_total", result="failure"))
        deadline = time.monotonic() + p["timeout"]
        timeline = []
        for frac, kind in events:
            want = int(frac * len(expected))
            while sink.index() < want and time.monotonic() < deadline:
                if d.exited():
                    raise AssertionError("digestd exited:\n" + d.log()[-3000:])
                time.sleep(0.05)
            at = 100.0 * sink.index() / len(expected)
            timeline.append("%s@%.0f%%" % (kind, at))
            log("%5.1f%% %s" % (at, kind), quiet)
            if kind == "kill":
                busy = []
                for _ in range(50):
                    busy = [w for w in status_workers(d) if w.get("state") == "busy"]
                    if busy:
                        break
                    time.sleep(0.1)
                if not busy:
                    busy = [w for w in status_workers(d) if w.get("pid")]
                    counts["idle_kills"] += 1
                if busy:
                    os.kill(rng.choice(busy)["pid"], signal.SIGKILL)
                    counts["kills"] += 1
                time.sleep(rng.uniform(0.1, 0.6))
            elif kind == "redis":
                redis.crash(down_for=2.0)
                counts["redis_restarts"] += 1
            elif kind == "broker":
                rabbit.restart(down_for=2.0)
                counts["broker_restarts"] += 1
            elif kind == "burst":
                sink.burst(p["burst_len"])
                counts["bursts"] += 1
            elif kind == "outage":
                sink.stop()
                time.sleep(p["outage"])
                sink.start()
                counts["outages"] += 1
            elif kind == "instance":
                # The whole instance dies (a node lost); another takes over
                # the jobs it had in hand, each costing one duplicate at most.
                # Its workers are frozen first, so that the last scrape
                # counts every email the instance will ever have sent: a
                # counter of a dead instance is gone with its memory.
                ws = status_workers(d)
                counts["jobs_in_hand"] += sum(1 for w in ws if w.get("job"))
                kids = d.children()
                for k in kids:
                    try:
                        os.kill(k, signal.SIGSTOP)
                    except ProcessLookupError:
                        pass
                scraper.scrape()
                scraper.finish()
                d.proc.kill()
                for k in kids:
                    try:
                        os.kill(k, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                d.proc.wait(timeout=10)
                wait_for(lambda: all(_gone(k) for k in kids), timeout=10,
                         what="the instance's workers gone with it")
                counts["instance_kills"] += 1
                d = Digestd(cfg, workdir)
                d.start(timeout=60)
                prev, scraper = scraper, Scraper(d)
                scraper.carry(prev)
                scraper.start()
            else:
                scraper.scrape()
                before = reloads()
                if kind == "hup-broken":
                    with open(cfg, "w") as f:
                        f.write(config_text(port, redis, sink, broken=True,
                                            give_up=p["give_up"]))
                elif kind == "hup-resize":
                    good = config_text(port, redis, sink, standard=4, amqp_url=amqp_url,
                                       give_up=p["give_up"])
                    with open(cfg, "w") as f:
                        f.write(good)
                d.signal(signal.SIGHUP)

                def reloaded():
                    scraper.scrape()
                    return reloads() != before
                wait_for(reloaded, timeout=30, interval=0.1, what="reload counted")
                if kind == "hup-broken":
                    assert reloads()[1] == before[1] + 1, "broken file not refused"
                    with open(cfg, "w") as f:
                        f.write(good)
                counts["hups"] += 1

        all_done = []

        def finished():
            # Every job done, and every email due in; or every job done
            # for a while (a recipient given up by the clock never comes).
            if d.exited():
                raise AssertionError("digestd exited:\n" + d.log()[-3000:])
            if jobs_done(r, jobs) != len(jobs):
                del all_done[:]
                return False
            if not all_done:
                all_done.append(time.monotonic())
            return (sink.index() >= len(expected) or
                    time.monotonic() - all_done[0] > 5.0)
        try:
            wait_for(finished, timeout=max(30.0, deadline - time.monotonic()),
                     interval=0.2, what="every job done")
        except AssertionError as e:
            res["wait_error"] = str(e)[:500]
        time.sleep(1.0)
        scraper.scrape()
        scraper.finish()
        pid = d.pid()
        d.signal(signal.SIGTERM)
        try:
            code = d.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = None
        sink.index()
        got = sink.seen
        lost = expected - set(got)
        # A recipient answered 4xx for longer than defer_give_up (a burst
        # that outlasts it, retries delayed by the faults) is given up by
        # the clock, as it must be: not lost.  Within a second of the
        # limit, for the clocks of the two sides.
        limit = parse_seconds(p["give_up"]) - 1.0
        by_clock = {m for m in lost
                    if sink.deferred_for(rcpt_of(m)) >= limit}
        lost -= by_clock
        res.update(counts)
        res["timeline"] = " ".join(timeline)
        res.update(
            elapsed_s=round(time.monotonic() - t0, 1),
            jobs=len(jobs),
            jobs_done=jobs_done(r, jobs),
            expected=len(expected),
            delivered=sum(got.values()),
            lost=len(lost),
            given_up_by_clock=len(by_clock),
            lost_sample=sorted(lost)[:5],
            duplicates=sum(n - 1 for n in got.values()),
            duplicate_sample=sorted(k for k, n in got.items() if n > 1)[:5],
            unexpected=len(set(got) - expected - given_up),
            deferred_replies=sink.deferred,
            dead_letters=dead_letters(r, rabbit, vhost if backend == "amqp" else None),
            exit_code=code,
            zombies_lingering=len(scraper.lingering),
            zombies_after=len(zombies_of(pid)) if code is None else 0,
            children_after=len(d.children()) if code is None else 0,
            scrapes=scraper.scrapes,
            scrape_failures=scraper.failures,
            counter_decreases=len(scraper.decreases),
            counter_decrease_sample=[str(x) for x in scraper.decreases[:5]],
            worker_restarts={k: scraper.metric("digest_worker_restarts_total", reason=k)
                             for k in ("crash", "oom", "stall", "recycle", "reload")},
            reloads={"success": reloads()[0], "failure": reloads()[1]},
            emails_sent=scraper.metric("digest_emails_total", result="sent"),
            emails_deferred=scraper.metric("digest_emails_total", result="deferred"),
        )
        # At most one duplicate per worker killed, and one per job in hand
        # when a whole instance died; the other faults cost none.
        res["duplicate_bound"] = res["kills"] + res["jobs_in_hand"]
        res["duplicates_over_kills"] = max(0, res["duplicates"] -
                                           res["duplicate_bound"])
        res["given_up"] = len(given_up)
        res["given_up_delivered"] = len(given_up & set(got))
        res["greylisted_replies"] = sink.greylisted
        res["emails_rejected"] = scraper.metric("digest_emails_total",
                                                result="rejected")
        res["ok"] = check(res)[0]
        return res
    finally:
        if scraper is not None:
            scraper.finish()
        if d is not None:
            d.kill()
        sink.stop()
        journal.close()
        redis.stop()
        if own_rabbit:
            rabbit.stop()


def parse_seconds(s):
    """Seconds of a duration such as "6s" or "2m"."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.match(r"^(\d+)(ms|s|m|h)$", s)
    return int(m.group(1)) * units[m.group(2)]


def rcpt_of(msgid):
    """The address a Message-ID of this run was for."""
    return "u%s@example.org" % msgid.split("@")[0].rsplit(".", 1)[1]


def check(res):
    """(ok, [failed checks]) of a run's figures."""
    bad = []
    if res["lost"] != 0:
        bad.append("lost %d recipients, e.g. %s" % (res["lost"], res["lost_sample"]))
    if res["duplicates"] > res["duplicate_bound"]:
        bad.append("%d duplicates, more than %d" % (res["duplicates"],
                                                     res["duplicate_bound"]))
    if res["unexpected"]:
        bad.append("%d messages nobody was due" % res["unexpected"])
    if res["exit_code"] != 0:
        bad.append("exit code %s" % res["exit_code"])
    if res["zombies_lingering"] or res["zombies_after"] or res["children_after"]:
        bad.append("zombies or children left")
    if res["counter_decreases"]:
        bad.append("counters went down: %s" % res["counter_decrease_sample"])
    if res["dead_letters"]:
        bad.append("%d dead letters" % res["dead_letters"])
    if res["jobs_done"] != res["jobs"]:
        bad.append("%d of %d jobs done" % (res["jobs_done"], res["jobs"]))
    if res["reloads"]["failure"] < 1:
        bad.append("the broken reload was not counted")
    if res["given_up_delivered"]:
        bad.append("%d messages deferred for ever were delivered"
                   % res["given_up_delivered"])
    gave_up = res["given_up"] + res["given_up_by_clock"]
    if res["emails_rejected"] < gave_up:
        bad.append("%d rejected, %d given up" % (res["emails_rejected"],
                                                 gave_up))
    return not bad, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("redis", "amqp"), default="redis")
    ap.add_argument("--short", action="store_true", help="the functional suite's numbers")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    a = ap.parse_args()
    import tempfile
    workdir = a.workdir or tempfile.mkdtemp(prefix="digestd-chaos-")
    res = run_chaos(workdir, backend=a.backend, short=a.short, seed=a.seed, quiet=a.json)
    ok, bad = check(res)
    if a.json:
        print(json.dumps(res, sort_keys=True))
    else:
        for k in sorted(res):
            print("%-22s %s" % (k, res[k]))
        print("chaos %s: %s" % (a.backend, "PASS" if ok else "FAIL: " + "; ".join(bad)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
