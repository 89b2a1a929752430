"""The whole path from the scheduler: `digestctl schedule` turns
the crafted dataset into jobs, digestd sends exactly the expected set, and
scheduling the same window again enqueues and sends nothing.
"""
import time

from lib.harness import Digestd, digestctl, wait_for
from lib.pipeline_data import config, rcpts, window  # noqa: F401
from lib.pipeline_data import EXPECTED, craft


def queues_idle(r):
    """Every job delivered and acknowledged on every digest queue."""
    for key in r.scan_iter("digest:q:*"):
        for g in r.xinfo_groups(key):
            if g["pending"] or g.get("lag"):
                return False
    return True


def test_pipeline_schedule_then_reschedule(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    craft(r, ws, we)
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, large=10, batch=4,
                 per_session=3,
                 extra="[pool.priority]\nqueue = priority\nworkers = 1\n")
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        now = we + 3600
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
        wait_for(lambda: sorted(rcpts(smtp_sink)) == sorted(EXPECTED), timeout=60,
                 what="the expected recipients")
        wait_for(lambda: queues_idle(r), timeout=30, what="queues idle")
        done = [k for k in r.scan_iter("digest:job:*")
                if r.hget(k, "state") == "done"]
        assert len(done) >= 2, done     # groups 1 and 2 had posts in the window

        # The same window again, later in the same period: nothing new.
        digestctl(cfg, "schedule", "--period", "daily", "--now", str(now + 600))
        time.sleep(1.0)
        wait_for(lambda: queues_idle(r), timeout=30, what="queues idle")
        got = rcpts(smtp_sink)
        assert sorted(got) == sorted(EXPECTED), got
    finally:
        d.kill()
