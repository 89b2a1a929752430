"""Metrics across reloads: the reload counters and the
last-success timestamp, a retired pool's counters kept, a new pool's and
queue's series present at once, and the sampler replaced so that it
samples the queues now configured, from its very next sample.
"""
import os
import signal
import time

from lib.harness import wait_for
from lib.metrics_util import fetch, samples, start_digestd, stop_digestd, two_pool_config
from lib.pipeline_data import Data, enqueue, job_state, window  # noqa: F401


def scrape(d):
    return {(n, tuple(sorted(l.items()))): v for n, l, v in samples(fetch(d.port)[2])}


def test_reload_keeps_counters_and_moves_the_sampler(tmp_path, redis_tcp):
    r = redis_tcp.client()
    ws, we = window()
    data = Data(r)
    data.group(42, name="Reload")
    data.members(42, range(1, 11))
    for u in range(1, 11):
        data.user(u, email="u%d@example.org" % u)
    data.post(42, 4201, we - 60, title="Hello", author_id=99)

    cfg = two_pool_config(tmp_path, redis_tcp)
    d = start_digestd(tmp_path, cfg)
    try:
        jid = enqueue(r, 42, "daily", ws, we, queue="standard")
        wait_for(lambda: job_state(r, jid).get("state") == "done", timeout=30,
                 what="job done")
        sent = ("digest_emails_total", (("pool", "standard"), ("result", "sent"),
                                        ("transport", "maildir")))
        wait_for(lambda: scrape(d)[sent] == 10, timeout=10, what="10 sent")
        m = scrape(d)
        assert m[("digest_config_reloads_total", (("result", "success"),))] == 0
        started = m[("digest_config_last_reload_success_timestamp_seconds", ())]
        assert started > 0

        # Retire `standard`, add `bulk` on its own queue.
        with open(cfg) as f:
            text = f.read()
        text = text.replace("[pool.standard]\nqueue = standard\nworkers = 2",
                            "[pool.bulk]\nqueue = bulk\nworkers = 1")
        assert "[pool.bulk]" in text
        with open(cfg, "w") as f:
            f.write(text)
        t_reload = time.time()
        d.signal(signal.SIGHUP)
        ok = ("digest_config_reloads_total", (("result", "success"),))
        wait_for(lambda: scrape(d)[ok] == 1, timeout=15, what="reload counted")
        m = scrape(d)
        assert m[("digest_config_last_reload_success_timestamp_seconds", ())] >= t_reload - 1
        # The new pool and queue are there at once; the old pool's counters stay.
        assert ("digest_queue_depth", (("queue", "bulk"),)) in m
        assert ("digest_jobs_total", (("pool", "bulk"), ("result", "ok"))) in m
        assert m[sent] == 10
        wait_for(lambda: scrape(d).get(("digest_workers", (("pool", "bulk"),
                                                             ("state", "idle")))) == 1,
                 timeout=20, what="bulk worker idle")

        # The replaced sampler samples the new queues only: `standard` goes.
        def resampled():
            m = scrape(d)
            return (m[("digest_queue_sampled_timestamp_seconds", ())] > t_reload and
                    ("digest_queue_depth", (("queue", "standard"),)) not in m)
        wait_for(resampled, timeout=20, interval=0.25, what="sampler on new queues")
        assert scrape(d)[sent] == 10

        # A broken file: counted as a failure, nothing else changes.
        with open(cfg, "a") as f:
            f.write("\n[pool.broken]\nworkers = many\n")
        last_ok = scrape(d)[("digest_config_last_reload_success_timestamp_seconds", ())]
        d.signal(signal.SIGHUP)
        bad = ("digest_config_reloads_total", (("result", "failure"),))
        wait_for(lambda: scrape(d)[bad] == 1, timeout=15, what="failure counted")
        m = scrape(d)
        assert m[ok] == 1
        assert m[("digest_config_last_reload_success_timestamp_seconds", ())] == last_ok
        assert ("digest_workers", (("pool", "broken"), ("state", "idle"))) not in m
    finally:
        stop_digestd(d)


def sampler_pid(d):
    for pid in d.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"sampler" in f.read():
                    return pid
        except OSError:
            pass
    return None


def test_reload_reaches_the_sampler_at_once(tmp_path, redis_tcp):
    """Once a reload is counted, the sampler of the old configuration
    publishes nothing more: the next figures are read with the new one.
    The old sampler is held stopped across the reload, past the time of
    its next round, and let go once the reload is counted: it must not
    get to sample the old queues."""
    cfg = two_pool_config(tmp_path, redis_tcp)
    d = start_digestd(tmp_path, cfg)
    ts = ("digest_queue_sampled_timestamp_seconds", ())
    standard = ("digest_queue_depth", (("queue", "standard"),))
    bulk = ("digest_queue_depth", (("queue", "bulk"),))
    old = None
    try:
        wait_for(lambda: scrape(d)[ts] > 0 and standard in scrape(d),
                 timeout=20, what="a first sample")
        old = wait_for(lambda: sampler_pid(d), timeout=10, what="the sampler")
        os.kill(old, signal.SIGSTOP)
        before = scrape(d)[ts]
        # Its rounds are 5 s apart: once this is past, a sampler let go
        # samples at once.
        wait_for(lambda: time.time() > before + 6, timeout=10,
                 what="the stopped sampler's round overdue")

        with open(cfg) as f:
            text = f.read()
        text = text.replace("[pool.standard]\nqueue = standard\nworkers = 2",
                            "[pool.bulk]\nqueue = bulk\nworkers = 1")
        assert "[pool.bulk]" in text
        with open(cfg, "w") as f:
            f.write(text)
        d.signal(signal.SIGHUP)
        ok = ("digest_config_reloads_total", (("result", "success"),))
        wait_for(lambda: scrape(d)[ok] == 1, timeout=15, what="reload counted")
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass

        # Every scrape until the first fresh sample, and that one: the
        # fresh figures are the new configuration's.
        def fresh():
            m = scrape(d)
            return m if m[ts] > before else None
        m = wait_for(fresh, timeout=20, interval=0.02, what="a fresh sample")
        assert standard not in m, "sampled with the old configuration"
        assert bulk in m
        assert sampler_pid(d) not in (None, old)
    finally:
        if old is not None:
            try:
                os.kill(old, signal.SIGCONT)
            except ProcessLookupError:
                pass
        stop_digestd(d)
