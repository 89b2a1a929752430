"""digestctl schedule while the host application writes groups:active: a
post arriving bumps a group's score, a group leaves and comes back.  Every
group present in groups:active for the whole run gets exactly one job, and
the run's record counts each job and each group once."""
import random
import threading

from lib.ctl_util import DAY, SAT, ctl_config, entries  # noqa: F401
from lib.harness import digestctl

NGROUPS = 3000
# The first RUN groups share one score: a run of equal scores longer than
# the scheduler reads in one page.
RUN = 1200
ROUNDS = 4


def setup_round(r, window_end):
    """Every group active with one member and one post inside the window."""
    pipe = r.pipeline(transaction=False)
    for gid in range(1, NGROUPS + 1):
        if gid <= RUN:
            score = window_end - 5000
        else:
            score = window_end - 1 - gid % 300     # short runs of equal scores
        pipe.zadd("group:%d:members" % gid, {"1": 1})
        pipe.zadd("group:%d:posts" % gid, {"%d.%d" % (gid, window_end): window_end - 10})
        pipe.zadd("groups:active", {str(gid): score})
    pipe.execute()


class Churn(threading.Thread):
    """Bumps scores and removes and re-adds groups until stopped; remembers
    every group it ever removed (those are not present throughout)."""

    def __init__(self, r, window_end, seed):
        super().__init__(daemon=True)
        self.r = r
        self.rng = random.Random(seed)
        self.newer = window_end + 1
        self.removed = set()
        self.ops = 0
        self.stop = threading.Event()
        self.started_ops = threading.Event()

    def run(self):
        while not self.stop.is_set():
            pipe = self.r.pipeline(transaction=False)
            for _ in range(16):
                gid = self.rng.randint(1, NGROUPS)
                what = self.rng.random()
                if what < 0.6:
                    # A post arrives: the latest-post time moves on.
                    self.newer += self.rng.choice((0, 1))
                    pipe.zadd("groups:active", {str(gid): self.newer})
                else:
                    self.removed.add(gid)
                    old = self.r.zscore("groups:active", str(gid))
                    pipe.zrem("groups:active", str(gid))
                    back = old if what < 0.8 and old is not None else self.newer
                    pipe.zadd("groups:active", {str(gid): back})
            pipe.execute()
            self.ops += 16
            if self.ops >= 64:
                self.started_ops.set()


def test_groups_present_throughout_get_exactly_one_job(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    for rnd in range(ROUNDS):
        window_end = SAT + rnd * DAY
        setup_round(r, window_end)
        before = {q: len(entries(r, q)) for q in ("priority", "standard")}
        churn = Churn(r, window_end, seed=rnd)
        churn.start()
        try:
            assert churn.started_ops.wait(30)
            p = digestctl(cfg, "schedule", "--period", "daily", "--now",
                          str(window_end + 1))
        finally:
            churn.stop.set()
            churn.join(30)
        assert not churn.is_alive()

        new = [e for q in ("priority", "standard") for e in entries(r, q)[before[q]:]]
        ids = [e["job_id"] for e in new]
        assert len(ids) == len(set(ids)), "a job enqueued twice"
        got = {int(e["group_id"]) for e in new}
        assert all(e["job_id"] == "daily.%d.%s.0" % (window_end, e["group_id"])
                   for e in new)
        present = set(range(1, NGROUPS + 1)) - churn.removed
        missed = sorted(present - got)
        assert not missed, "round %d: %d groups present throughout got no job " \
            "(%d churn ops), e.g. %s\n%s" % (rnd, len(missed), churn.ops, missed[:10],
                                              p.stdout)

        # The record counts each job and each group once.
        rec = r.hgetall("digest:sched:daily")
        assert rec["status"] == "ok"
        assert int(rec["window_end"]) == window_end
        assert int(rec["jobs_priority"]) + int(rec["jobs_standard"]) == len(new), rec
        assert rec["skipped_existing"] == "0", rec
        assert int(rec["groups"]) == len(got), rec
        assert "jobs enqueued: %d " % len(new) in p.stdout, p.stdout
