"""Counters under fire: while workers are SIGKILLed 200 times in
the middle of real work, a scraper polling /metrics every 20 ms never sees
a counter, bucket, _count or _sum go down, +Inf always equals _count, and
at the end digest_emails_total equals the emails the SMTP sink accepted,
within one per kill (a worker may die after the server accepted a message
and before it counted it).
"""
import os
import random
import signal
import threading
import time
import urllib.request

from lib.harness import wait_for
from lib.metrics_util import samples, start_digestd, stop_digestd, two_pool_config
from lib.pipeline_data import Data, enqueue, job_state, window  # noqa: F401

KILLS = 200
GROUPS = 40
MEMBERS = 400
MONOTONIC = ("_total", "_bucket", "_count", "_sum")


class Scraper(threading.Thread):
    """Polls /metrics every interval and checks each body against the last."""

    def __init__(self, port, interval=0.02):
        super().__init__(daemon=True)
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.interval = interval
        self.stop_ev = threading.Event()
        self.last = {}
        self.scrapes = 0
        self.errors = []
        self.violations = []

    def run(self):
        while not self.stop_ev.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    body = r.read().decode("utf-8")
            except Exception as e:  # a failed scrape is itself a finding
                self.errors.append(repr(e))
                time.sleep(self.interval)
                continue
            self.check(body)
            self.scrapes += 1
            time.sleep(self.interval)

    def check(self, body):
        inf = {}
        count = {}
        for name, labels, value in samples(body):
            if not name.endswith(MONOTONIC):
                continue
            key = (name, tuple(sorted(labels.items())))
            prev = self.last.get(key)
            if prev is not None and value < prev:
                self.violations.append((key, prev, value))
            self.last[key] = value
            if name.endswith("_bucket") and labels.get("le") == "+Inf":
                inf[(name[:-7], labels["pool"])] = value
            elif name.endswith("_count"):
                count[(name[:-6], labels["pool"])] = value
        if inf != count:
            self.violations.append(("+Inf != _count", inf, count))

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=10)


def sent_total(body):
    return sum(v for n, l, v in samples(body)
               if n == "digest_emails_total" and l["result"] == "sent")


def live_workers(d):
    try:
        return d.status()["workers"]
    except Exception:
        return []


def test_counters_survive_200_kills(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    data = Data(r)
    jobs = []
    for g in range(GROUPS):
        gid = 7000 + g
        data.group(gid, name="Chaos %d" % g)
        uids = range(100000 + g * MEMBERS, 100000 + (g + 1) * MEMBERS)
        data.members(gid, uids)
        pipe = r.pipeline(transaction=False)
        for u in uids:
            pipe.hset("user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                              "name": "U%d" % u})
        pipe.execute()
        data.post(gid, 900000 + g, we - 60, title="Post %d" % g, author_id=1)

    # A worker killed after the queue delivered a job but before it put
    # the job in its slot leaves the job to the visibility timeout: keep
    # it short so that the run ends soon after the kills.
    cfg = two_pool_config(tmp_path, redis_tcp, sink=smtp_sink, workers=(2, 3),
                          max_attempts=1000, visibility="3s")
    d = start_digestd(tmp_path, cfg)
    scraper = Scraper(d.port)
    kills = 0
    killed = set()      # a zombie not yet reaped can be "killed" twice
    try:
        scraper.start()
        for g in range(GROUPS):
            jobs.append(enqueue(r, 7000 + g, "daily", ws, we,
                                queue="priority" if g % 3 == 0 else "standard"))
        wait_for(lambda: smtp_sink.count() > 0, timeout=30, what="first email")

        rnd = random.Random(4)
        deadline = time.monotonic() + 240
        while kills < KILLS and time.monotonic() < deadline:
            ws_ = live_workers(d)
            busy = [w["pid"] for w in ws_ if w.get("job") and w.get("pid")]
            pool = busy or [w["pid"] for w in ws_ if w.get("pid")]
            if not pool:
                time.sleep(0.02)
                continue
            pid = rnd.choice(pool)
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                killed.add(pid)
            except ProcessLookupError:
                pass
            time.sleep(rnd.uniform(0.03, 0.09))
        assert kills == KILLS, "only %d kills in time" % kills
        under_load = smtp_sink.count()

        def all_done():
            if d.exited():
                raise AssertionError("digestd exited:\n" + d.log()[-3000:])
            return all(job_state(r, j).get("state") in ("done", "dead")
                       for j in jobs)
        wait_for(all_done, timeout=180, interval=0.5, what="every job done")

        # Let the last increments land: the counter stops moving.
        prev = [-1]

        def settled():
            v = sent_total(urllib.request.urlopen(d.url("/metrics"),
                                                  timeout=5).read().decode())
            done, prev[0] = v == prev[0], v
            return done
        wait_for(settled, timeout=30, interval=0.5, what="counters settled")
        time.sleep(0.3)
    finally:
        scraper.stop()

    try:
        body = urllib.request.urlopen(d.url("/metrics"), timeout=5).read().decode()
        scraper.check(body)
        sent = sent_total(body)
        in_sink = smtp_sink.count()
        restarts = sum(v for n, l, v in samples(body)
                       if n == "digest_worker_restarts_total")
        print("kills=%d scrapes=%d sent_metric=%d sink=%d under_load=%d "
              "restarts=%d" % (kills, scraper.scrapes, sent, in_sink,
                               under_load, restarts))
        assert under_load < GROUPS * MEMBERS, "the load ended before the kills"
        assert not scraper.violations, scraper.violations[:5]
        assert not scraper.errors, scraper.errors[:5]
        assert scraper.scrapes > 200
        assert abs(in_sink - sent) <= kills, (in_sink, sent, kills)
        assert in_sink >= GROUPS * MEMBERS
        assert restarts >= len(killed), (restarts, len(killed))
    finally:
        stop_digestd(d)
