"""Poison jobs, on either queue backend: a group that makes its worker
exceed memory_limit on every attempt (100,000 members in one batch), jobs
that cannot be decoded (a field missing, a field not a number; on AMQP a
body that is not JSON), a job whose checkpoint is too large to read, and
a job whose worker is killed every time it runs.  Each ends in the dead
letters with its reason, the decoding failures at once, the others after
exactly max_attempts deliveries that each cost a worker; and meanwhile
the pool serves the other jobs (at nearly the rate it had with no poison
in the queue)."""
import json
import os
import signal
import time

import pytest

from lib import amqp_util
from lib import config as conf
from lib.backends import only
from lib.amqp_util import (
    drain_queue, expected_pairs, maildir_ids, now_for_tests, scheduled,
    wait_all_done, worker_pids, write_groups)
from lib.harness import ASAN, SmtpSink, digestctl, metric_sum, wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    BIG_BATCH, checkpoint, job_fields, log_lines, restarts, seed_big_group,
    seed_group)

MAX_ATTEMPTS = 3

# The supervisor's timings of the runs that kill workers: a worker's
# restart comes quickly, and no job is taken for a stall.
KILLING = {"drain_timeout": "20s", "stall_timeout": "30s",
           "restart_backoff_max": "500ms"}


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


def run_batch(backend, jobs, d, timeout=60):
    """Enqueue jobs and wait until all are done; the seconds it took."""
    r = backend.r
    t0 = time.monotonic()
    for j in jobs:
        backend.enqueue("standard", j)

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


def config(tmp_path, backend, sink=None, memory_limit="256M", workers=2,
           batch=BIG_BATCH, per_session=1000, supervisor=None):
    """The config of these runs on backend (SMTP through sink, else the
    maildir {tmp}/outbox); the queues are declared before it is used."""
    cfg = conf.build(tmp_path, conf.merge(
        {"supervisor": supervisor or {}, "digest": {"batch_size": batch}},
        backend.overrides(MAX_ATTEMPTS),
        conf.smtp(sink, per_session) if sink is not None else {},
        {"pool.standard": {"queue": "standard", "workers": workers,
                           "memory_limit": memory_limit}}),
        sections=(backend.redis.config_section(),))
    backend.prepare(cfg)
    return cfg


def check_malformed(backend, bad, dls):
    by_id = {f.get("job_id"): f for f in dls}
    for fields, field in bad:
        dl = by_id[fields["job_id"]]
        assert dl["reason"], dl
        assert field in dl["reason"], (field, dl)
        assert "failed_at" in dl, dl
        # It was delivered once, to the worker that could not decode it.
        assert dl.get("attempts") == "1", dl
        # The entry's own fields are kept, so it can be inspected and fixed.
        for k, v in backend.stored(fields).items():
            assert dl.get(k) == v, (k, dl)


def test_malformed_jobs_dead_lettered_at_once(tmp_path, backend, sink, digestd_factory):
    r = backend.r
    wend = int(time.time()) // 86400 * 86400
    d = digestd_factory(config_path=config(tmp_path, backend, sink)).start()
    bad = malformed(wend)
    for fields, _ in bad:
        backend.enqueue("standard", fields)
    others = normal_jobs(r, 1, 4, 20, wend)
    run_batch(backend, others, d)
    wait_for(lambda: backend.dead_letter_count() == len(bad), timeout=10,
             what="dead letters")
    check_malformed(backend, bad, backend.dead_letters())
    # A job is acknowledged, then counted, just after its checkpoint says
    # done: wait for both before reading them.
    backend.wait_empty("standard")
    wait_for(lambda: metric_sum(d.metrics(), "digest_jobs_total", result="ok") >= len(others),
             timeout=10, what="every job counted")
    text = d.metrics()
    assert metric_sum(text, "digest_jobs_total", result="dead_lettered") == len(bad)
    assert metric_sum(text, "digest_jobs_total", result="ok") == len(others)
    assert metric_sum(text, "digest_worker_restarts_total") == 0
    assert d.stop() == 0


@only("redis")
@pytest.mark.skipif(ASAN, reason="no data limit can be set under the sanitizer's "
                    "shadow memory")
def test_poison_jobs_dead_lettered_pool_keeps_its_rate(tmp_path, backend, sink,
                                                        digestd_factory):
    r = backend.r
    wend = int(time.time()) // 86400 * 86400
    # A whole membership in one batch takes more than the 24 MB limit.
    huge = seed_big_group(r, 9000, window_end=wend)
    poison = job_fields(9000, huge, window_end=wend)
    d = digestd_factory(config_path=config(tmp_path, backend, sink, "24M")).start()

    # The rate with nothing but good jobs...
    base = run_batch(backend, normal_jobs(r, 1, 8, 40, wend), d)
    # ...and with the poison enqueued first, in front of the same amount.
    backend.enqueue("standard", poison)
    bad = malformed(wend)
    for fields, _ in bad:
        backend.enqueue("standard", fields)
    mixed = run_batch(backend, normal_jobs(r, 101, 8, 40, wend), d)
    assert mixed <= 2.0 * base + 1.5, (base, mixed)

    wait_for(lambda: backend.dead_letter_count() == 1 + len(bad), timeout=60,
             what="the poison job dead-lettered")
    dls = backend.dead_letters()
    check_malformed(backend, bad, dls)
    (dl,) = [f for f in dls if f["job_id"] == poison["job_id"]]
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
    backend.wait_empty("standard")
    assert sink.count() == 16 * 40
    assert d.stop() == 0
    print("poison: %.2f s for 8 jobs alone, %.2f s beside the poison" % (base, mixed))


def seed(r, groups):
    now = now_for_tests()
    end = now - now % 86400
    write_groups(r, groups, end)
    return now, end


def job_body(gid, end, members):
    return {"job_id": "daily.%d.%d.0" % (end, gid), "group_id": str(gid),
            "period": "daily", "window_start": str(end - 86400),
            "window_end": str(end), "member_min": str(min(members)),
            "member_max": str(max(members)), "enqueued_at": "%.6f" % time.time()}


def dlq_lines(cfg):
    """`digestctl dlq list` on the amqp backend: [(job_id, queue, reason)]."""
    out = digestctl(cfg, "dlq", "list").stdout
    rows = []
    for line in out.splitlines()[1:]:
        if line.endswith("dead letter(s)"):
            continue
        job, queue, reason = line.split(None, 2)
        rows.append((job, queue, reason))
    return rows


@only("amqp")
@pytest.mark.skipif(ASAN, reason="no data limit can be set under the sanitizer's "
                    "shadow memory")
def test_job_killing_its_worker_before_its_attempt_counts(tmp_path, backend,
                                                          digestd_factory):
    """The job's checkpoint is too large for the worker's memory: reading
    it, before the attempt is counted, kills every worker that takes the
    job.  It must still reach the dead letters after max_attempts deaths,
    and the jobs behind it be served."""
    r = backend.r
    groups = {g: list(range(100 * g, 100 * g + 5)) for g in (1, 2, 3)}
    now, end = seed(r, groups)
    poison = "daily.%d.1.0" % end
    r.hset("digest:job:" + poison, "state", "x" * (80 << 20))
    cfg = config(tmp_path, backend, memory_limit="64M", workers=1, batch=500,
                 supervisor=KILLING)
    backend.enqueue("standard", job_body(1, end, groups[1]))
    for gid in (2, 3):
        backend.enqueue("standard", job_body(gid, end, groups[gid]))
    d = digestd_factory(config_path=cfg).start(timeout=30)

    wait_for(lambda: backend.dead_letter_count() == 1, timeout=60,
             interval=0.2, what="the poison job in the dead letters")
    wait_for(lambda: sum(1 for g in (2, 3) if r.hget("digest:job:daily.%d.%d.0"
                                                    % (end, g), "state") == "done") == 2,
             timeout=60, what="the jobs behind it done")
    text = d.metrics()
    assert metric_sum(text, "digest_worker_restarts_total", reason="oom") == MAX_ATTEMPTS
    assert metric_sum(text, "digest_worker_restarts_total") == MAX_ATTEMPTS
    assert sorted(maildir_ids(os.path.join(str(tmp_path), "outbox"))) == \
        sorted(expected_pairs({g: groups[g] for g in (2, 3)}, end))
    ((job, queue, reason),) = dlq_lines(cfg)
    assert (job, queue) == (poison, "standard"), (job, queue, reason)
    assert "%d times" % MAX_ATTEMPTS in reason and "worker" in reason, reason
    (props, body), = drain_queue(backend.rabbit, backend.vhost, "digest.dlq")
    assert json.loads(body)["job_id"] == poison
    assert props.headers["x-digest-attempts"] == MAX_ATTEMPTS + 1, props.headers
    assert backend.depth("standard") == 0
    assert d.stop() == 0


def test_job_killing_its_worker_mid_job(tmp_path, backend, smtp_sink, digestd_factory):
    """A job whose worker dies every time it runs (killed here as soon as
    it shows the job) reaches the dead letters after exactly max_attempts
    deaths, while a second worker serves the other jobs."""
    r = backend.r
    groups = {g: list(range(1000 * g, 1000 * g + (200 if g == 1 else 20)))
              for g in (1, 2, 3)}
    now, end = seed(r, groups)
    poison = "daily.%d.1.0" % end
    smtp_sink.delay = 0.02
    cfg = config(tmp_path, backend, smtp_sink, workers=2, batch=5, per_session=5,
                 supervisor=KILLING)
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 3
    d = digestd_factory(config_path=cfg).start(timeout=30)

    killed = []
    deadline = time.monotonic() + 90
    while backend.dead_letter_count() == 0:
        assert time.monotonic() < deadline, "no dead letter after %d kills" % len(killed)
        assert len(killed) <= MAX_ATTEMPTS, \
            "still not dead-lettered after %d kills" % len(killed)
        # /status may show a killed worker's slot until it is reaped.
        victim = [w["pid"] for w in d.status()["workers"]
                  if w.get("job") == poison and w.get("pid") and w["pid"] not in killed]
        if not victim:
            time.sleep(0.01)
            continue
        os.kill(victim[0], signal.SIGKILL)
        killed.append(victim[0])
        wait_for(lambda: victim[0] not in worker_pids(d), timeout=10,
                 what="the killed worker gone")
    assert len(killed) == MAX_ATTEMPTS
    wait_all_done(r, 2, timeout=60, d=d)
    if backend.name == "amqp":
        ((job, queue, reason),) = dlq_lines(cfg)
    else:
        ((job, queue, reason),) = [(f.get("job_id"), f.get("queue"), f.get("reason"))
                                   for f in backend.dead_letters()]
    assert (job, queue) == (poison, "standard") and reason, (job, queue, reason)
    wait_for(lambda: r.hget("digest:job:" + poison, "state") == "dead", timeout=10,
             what="the checkpoint dead")
    got = set(smtp_sink.ids())
    assert expected_pairs({g: groups[g] for g in (2, 3)}, end) <= got
    assert metric_sum(d.metrics(), "digest_worker_restarts_total",
                      reason="crash") == MAX_ATTEMPTS
    assert d.stop() == 0


def test_bodies_not_json_dead_lettered(tmp_path, redis_tcp, rabbitmq, vhost,
                                      digestd_factory):
    """On the AMQP backend a job is a JSON body: one that is not JSON, or
    JSON lacking fields, is dead-lettered with its reason and headers while
    the worker carries on (a Redis stream entry is always fields)."""
    now = now_for_tests()
    end = now - now % 86400
    r = redis_tcp.client()
    groups = {5: list(range(100, 110))}
    write_groups(r, groups, end)
    cfg = amqp_util.config(tmp_path, redis_tcp, rabbitmq, vhost)
    digestctl(cfg, "stats")               # declares the queues
    amqp_util.publish(rabbitmq, vhost, "digest.standard", b"this is not json")
    amqp_util.publish(rabbitmq, vhost, "digest.standard",
                      json.dumps({"job_id": "daily.1.5.0", "period": "daily"}).encode())
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = amqp_util.start_digestd(digestd_factory, cfg)
    wait_all_done(r, 1, timeout=60, d=d)
    got = maildir_ids(os.path.join(str(tmp_path), "outbox"))
    assert set(got) == expected_pairs(groups, end) and len(got) == 10

    letters = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(
        drain_queue(rabbitmq, vhost, "digest.dlq")), timeout=10, what="2 dead letters")
    bodies = {}
    for props, body in letters:
        h = props.headers
        assert h["x-digest-queue"] == "standard", h
        assert h["x-digest-reason"], h
        assert "x-digest-attempts" in h
        assert props.delivery_mode == 2
        bodies[body] = h["x-digest-reason"]
    assert set(bodies) == {b"this is not json",
                           json.dumps({"job_id": "daily.1.5.0", "period": "daily"}).encode()}
    # A job is counted just after its checkpoint says done.
    wait_for(lambda: metric_sum(d.metrics(), "digest_jobs_total", result="ok") >= 1,
             timeout=10, what="the job counted")
    m = d.metrics()
    assert metric_sum(m, "digest_jobs_total", result="dead_lettered") == 2
    assert metric_sum(m, "digest_jobs_total", result="ok") == 1
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert d.stop() == 0
