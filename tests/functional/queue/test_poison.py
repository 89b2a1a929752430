"""Poison jobs: a group that makes its worker exceed memory_limit on every
attempt (100,000 members in one batch), and jobs that cannot be decoded (a field missing, a field not a
number).  Each ends in digest:dlq with its reason, the first after exactly
max_attempts deliveries that each cost a worker, the others at once; and
meanwhile the pool serves the other jobs at nearly the rate it had with no
poison in the queue."""
import time

import pytest

from lib.harness import ASAN, SmtpSink, metric_sum, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    BIG_BATCH, checkpoint, dead_letters, enqueue, job_fields, log_lines,
    restarts, seed_big_group, seed_group, sup_config, wait_queue_state)

MAX_ATTEMPTS = 3


@pytest.fixture
def sink():
    """An SMTP sink taking 10 ms a message: a steady rate to compare with."""
    s = SmtpSink(delay=0.01)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def normal_jobs(r, first_gid, n, members, wend):
    jobs = []
    for gid in range(first_gid, first_gid + n):
        uids = seed_group(r, gid, members=members, posts=2, window_end=wend)
        jobs.append(job_fields(gid, uids, window_end=wend))
    return jobs


def run_batch(r, jobs, d, timeout=60):
    """Enqueue jobs and wait until all are done; the seconds it took."""
    t0 = time.monotonic()
    for j in jobs:
        enqueue(r, "standard", j)

    def done():
        assert not d.exited(), d.log()[-2000:]
        return all(checkpoint(r, j["job_id"]).get("state") == "done" for j in jobs)
    wait_for(done, timeout=timeout, interval=0.05, what="%d jobs done" % len(jobs))
    return time.monotonic() - t0


def malformed(wend):
    """Stream entries that cannot be decoded, with the reason expected."""
    ok = job_fields(7001, [1, 2], window_end=wend)
    missing = dict(ok, job_id="daily.%d.7001.0" % wend)
    del missing["group_id"]
    nonnum = dict(ok, job_id="daily.%d.7002.0" % wend, group_id="7002",
                  window_end="yesterday")
    likes = dict(ok, job_id="daily.%d.7003.0" % wend, group_id="7003",
                 member_min="1e", member_max="-")
    return [(missing, "group_id"), (nonnum, "window_end"), (likes, "member_min")]


def config(tmp_path, redis_tcp, sink, memory_limit):
    text, _ = sup_config(
        tmp_path, redis_tcp,
        {"standard": {"queue": "standard", "workers": 2, "memory_limit": memory_limit}},
        smtp=sink, digest="batch_size = %d" % BIG_BATCH,
        extra="[queue]\nmax_attempts = %d\n" % MAX_ATTEMPTS)
    return text


def check_malformed(r, bad, dls):
    by_id = {f.get("job_id"): f for _, f in dls}
    for fields, field in bad:
        dl = by_id[fields["job_id"]]
        assert dl["reason"], dl
        assert field in dl["reason"], (field, dl)
        assert "failed_at" in dl, dl
        # It was delivered once, to the worker that could not decode it.
        assert dl.get("attempts") == "1", dl
        # The entry's own fields are kept, so it can be inspected and fixed.
        for k, v in fields.items():
            assert dl.get(k) == v, (k, dl)


def test_malformed_jobs_dead_lettered_at_once(tmp_path, redis_tcp, sink, digestd_factory):
    r = redis_tcp.client()
    wend = int(time.time()) // 86400 * 86400
    d = digestd_factory(config(tmp_path, redis_tcp, sink, "256M")).start()
    bad = malformed(wend)
    for fields, _ in bad:
        enqueue(r, "standard", fields)
    others = normal_jobs(r, 1, 4, 20, wend)
    run_batch(r, others, d)
    wait_for(lambda: len(dead_letters(r)) == len(bad), timeout=10, what="dead letters")
    check_malformed(r, bad, dead_letters(r))
    # A job is acknowledged, then counted, just after its checkpoint says
    # done: wait for both before reading them.
    wait_queue_state(r, "standard", (0, 0))
    wait_for(lambda: metric_sum(d.metrics(), "digest_jobs_total", result="ok") >= len(others),
             timeout=10, what="every job counted")
    text = d.metrics()
    assert metric_sum(text, "digest_jobs_total", result="dead_lettered") == len(bad)
    assert metric_sum(text, "digest_jobs_total", result="ok") == len(others)
    assert metric_sum(text, "digest_worker_restarts_total") == 0
    assert d.stop() == 0


@pytest.mark.skipif(ASAN, reason="no data limit can be set under the sanitizer's "
                    "shadow memory")
def test_poison_jobs_dead_lettered_pool_keeps_its_rate(tmp_path, redis_tcp, sink,
                                                        digestd_factory):
    r = redis_tcp.client()
    wend = int(time.time()) // 86400 * 86400
    # A whole membership in one batch takes more than the 24 MB limit.
    huge = seed_big_group(r, 9000, window_end=wend)
    poison = job_fields(9000, huge, window_end=wend)
    d = digestd_factory(config(tmp_path, redis_tcp, sink, "24M")).start()

    # The rate with nothing but good jobs...
    base = run_batch(r, normal_jobs(r, 1, 8, 40, wend), d)
    # ...and with the poison enqueued first, in front of the same amount.
    enqueue(r, "standard", poison)
    bad = malformed(wend)
    for fields, _ in bad:
        enqueue(r, "standard", fields)
    mixed = run_batch(r, normal_jobs(r, 101, 8, 40, wend), d)
    assert mixed <= 2.0 * base + 1.5, (base, mixed)

    wait_for(lambda: len(dead_letters(r)) == 1 + len(bad), timeout=60,
             what="the poison job dead-lettered")
    dls = dead_letters(r)
    check_malformed(r, bad, dls)
    (dl,) = [f for _, f in dls if f["job_id"] == poison["job_id"]]
    assert dl["reason"] == "oom", dl
    assert int(dl["attempts"]) == MAX_ATTEMPTS + 1, dl
    # The checkpoint is marked dead just after the dead letter is written.
    wait_for(lambda: checkpoint(r, poison["job_id"]).get("state") == "dead",
             timeout=10, what="checkpoint dead")
    # Exactly max_attempts workers died of it, every one counted as oom.
    wait_for(lambda: restarts(d, "standard", "oom") == MAX_ATTEMPTS, timeout=5,
             what="oom restarts counted")
    assert restarts(d, "standard", "crash") == 0
    assert len(log_lines(d, "worker exited", reason="oom")) == MAX_ATTEMPTS
    wait_queue_state(r, "standard", (0, 0))
    assert sink.count() == 16 * 40
    assert d.stop() == 0
    print("poison: %.2f s for 8 jobs alone, %.2f s beside the poison" % (base, mixed))
