"""The operator's incident controls, against real digestd instances, on
either queue backend where they behave the same: pause and resume (two
instances on one queue Redis), cancel a run mid-way, purge a queue, and
enqueue --force that sends a finished job again (docs/digestctl.md).  On
amqp, a paused queue's worker holds no prefetched message, cancel leaves
another run's messages in place, and dlq delete drops a letter."""
import collections
import json
import os
import signal
import time

from lib.amqp_util import (config as amqp_config, drain_queue, job_checkpoints,
                           publish, queue_counts, start_digestd, write_groups)
from lib.backends import only
from lib.harness import digestctl, metric, wait_for, write_config
from lib.supervisor_fixtures import (  # noqa: F401
    busy_worker, checkpoint, enqueue, job_fields, queue_state, seed_group, sup_config,
    wait_queue_state, workers)

DAY = 86400


def day_end():
    """The end of the last complete daily window (day_start 00:00 UTC)."""
    now = int(time.time())
    return now - now % DAY


def busy(d):
    return sum("job=" in t for t in workers(d, "standard").values())


def backend_config(tmp_path, backend, pools, **kw):
    """sup_config on backend, written, the queues declared; its path."""
    text, _ = sup_config(tmp_path, backend.redis, pools,
                         overrides=backend.overrides(), **kw)
    cfg = write_config(tmp_path, text)
    backend.prepare(cfg)
    return cfg


@only("redis")
def test_pause_two_instances_then_resume(tmp_path, backend, slow_sink, digestd_factory):
    """Paused, neither instance takes a job, the jobs in hand go back at
    their next batch; resumed, every member gets exactly one email.  (On
    amqp, see test_pause_resume_cancel_purge_on_amqp.)"""
    r = backend.r
    pools = {"standard": {"workers": 2}}
    t1, _ = sup_config(tmp_path, backend.redis, pools, smtp=slow_sink,
                       digest="batch_size = 2", overrides=backend.overrides())
    t2, _ = sup_config(tmp_path, backend.redis, pools, smtp=slow_sink,
                       digest="batch_size = 2", overrides=backend.overrides())
    c1 = write_config(tmp_path, t1, name="d1.conf")
    c2 = write_config(tmp_path, t2, name="d2.conf")
    d1 = digestd_factory(config_path=c1).start()
    d2 = digestd_factory(config_path=c2).start()
    want = []
    for gid in (31, 32, 33):
        uids = seed_group(r, gid, members=12)
        want += ["u%d@example.org" % u for u in uids]
        enqueue(r, "standard", job_fields(gid, uids))
    wait_for(lambda: busy(d1) + busy(d2) >= 2, timeout=10, what="jobs running")
    wait_for(lambda: slow_sink.count() >= 3, timeout=10, what="mail flowing")

    p = digestctl(c1, "pause", "standard", "--reason", "bad template")
    assert "queue standard paused" in p.stdout
    # A job enqueued now is taken by nobody.
    late = seed_group(r, 34, members=3)
    want += ["u%d@example.org" % u for u in late]
    late_job = job_fields(34, late)
    enqueue(r, "standard", late_job)
    # Each job in hand goes back at its next batch: nothing pending.
    wait_for(lambda: queue_state(r, "standard")[1] == 0 and busy(d1) + busy(d2) == 0,
             timeout=10, what="jobs given back")
    sent = slow_sink.count()
    assert sent < len(want)
    time.sleep(3)
    assert slow_sink.count() == sent
    assert checkpoint(r, late_job["job_id"]) == {}
    assert queue_state(r, "standard") == (4, 0)
    for gid in (31, 32, 33):
        cp = checkpoint(r, job_fields(gid, [1])["job_id"])
        assert cp.get("state") in (None, "running")
        # Giving back for a pause costs no attempt.
        assert int(cp.get("attempts", 0)) <= 1

    s = json.loads(digestctl(c1, "stats", "--json").stdout)
    paused = s["queues"]["standard"]["paused"]
    assert paused["reason"] == "bad template" and "@" in paused["by"]
    assert s["queues"]["priority"]["paused"] is None
    assert "PAUSED" in digestctl(c1, "stats").stdout
    wait_for(lambda: metric(d1.metrics(), "digest_queue_paused", queue="standard") == 1,
             timeout=15, what="paused gauge")
    st = d2.status()
    wait_for(lambda: d2.status()["queues"]["standard"]["paused"] is True, timeout=15,
             what="/status paused")
    assert st is not None

    p = digestctl(c2, "resume", "standard")
    assert "queue standard resumed" in p.stdout
    wait_for(lambda: slow_sink.count() >= len(want), timeout=60, what="all mail")
    wait_queue_state(r, "standard", (0, 0), timeout=20)
    got = collections.Counter(slow_sink.recipients())
    assert got == collections.Counter(want)
    wait_for(lambda: metric(d1.metrics(), "digest_queue_paused", queue="standard") == 0,
             timeout=15, what="paused gauge back to 0")
    assert digestctl(c2, "resume", "standard").stdout.strip() == "queue standard was not paused"
    assert d1.stop() == 0 and d2.stop() == 0


def test_pause_usage(tmp_path, backend):
    cfg = backend_config(tmp_path, backend, {"standard": {"workers": 1}})
    assert digestctl(cfg, "pause", check=False).returncode == 2
    assert digestctl(cfg, "pause", "nosuch", check=False).returncode == 2
    assert digestctl(cfg, "pause", "standard", "--all", check=False).returncode == 2
    p = digestctl(cfg, "pause", "--all")
    assert "queue priority paused" in p.stdout and "queue standard paused" in p.stdout
    r = backend.r
    assert r.ttl("digest:paused:standard") == -1       # lasts until resumed
    digestctl(cfg, "resume", "--all")
    assert not r.exists("digest:paused:standard", "digest:paused:priority")


def test_cancel_mid_run(tmp_path, backend, slow_sink, digestd_factory):
    """The running job stops at its next batch, the waiting one is
    removed, both checkpoints say cancelled, nothing more is sent, and
    scheduling the window again enqueues nothing."""
    r = backend.r
    cfg = backend_config(tmp_path, backend, {"standard": {"workers": 1}},
                         smtp=slow_sink, digest="batch_size = 2")
    d = digestd_factory(config_path=cfg).start()
    we = day_end()
    a = seed_group(r, 41, members=30, window_end=we)
    b = seed_group(r, 42, members=5, window_end=we)
    ja, jb = job_fields(41, a, window_end=we), job_fields(42, b, window_end=we)
    backend.enqueue("standard", ja)
    wait_for(lambda: slow_sink.count() >= 2, timeout=10, what="mail flowing")
    backend.enqueue("standard", jb)
    # cancel marks the run, then removes its waiting jobs: a worker that
    # saw the mark at a batch's end could take the second job in between
    # and cancel it itself.  Held still meanwhile, it cannot.
    w = busy_worker(d, "standard")
    assert w is not None
    os.kill(w, signal.SIGSTOP)
    try:
        p = digestctl(cfg, "cancel", "--period", "daily")
    finally:
        os.kill(w, signal.SIGCONT)
    assert "1 waiting job(s) removed" in p.stdout, p.stdout
    wait_for(lambda: checkpoint(r, ja["job_id"]).get("state") == "cancelled", timeout=10,
             what="running job cancelled")
    assert checkpoint(r, jb["job_id"])["state"] == "cancelled"
    backend.wait_empty("standard")
    sent = slow_sink.count()
    assert sent < len(a)
    time.sleep(1.5)
    assert slow_sink.count() == sent
    assert not any("u%d@" % u in x for u in b for x in slow_sink.recipients())

    p = digestctl(cfg, "schedule", "--period", "daily")
    assert "was cancelled: nothing enqueued" in p.stdout
    assert backend.depth("standard") == 0
    p = digestctl(cfg, "enqueue", "--group", "41", "--period", "daily", "--force",
                  check=False)
    assert p.returncode == 1 and "cancelled" in p.stderr
    assert 0 < r.ttl("digest:cancel:daily:%d" % we) <= 2 * DAY
    assert d.stop() == 0


@only("redis")
def test_purge(tmp_path, backend):
    """Without --yes nothing goes; with it every waiting job goes, and a
    job delivered to a worker stays with it (a stream entry read by a
    consumer; on amqp, see test_pause_resume_cancel_purge_on_amqp)."""
    r = backend.r
    cfg = backend_config(tmp_path, backend, {"standard": {"workers": 1}})
    for gid in range(1, 6):
        enqueue(r, "standard", job_fields(gid, [1, 2]))
    # One is in a worker's hands.
    r.xreadgroup("digestd", "someone", {"digest:q:standard": ">"}, count=1)
    r.zadd("digest:delayed:standard", {json.dumps({"job_id": "x"}): time.time() + 60})
    p = digestctl(cfg, "purge", "standard", check=False)
    assert p.returncode == 2 and "--yes" in p.stderr
    assert queue_state(r, "standard") == (5, 1)
    p = digestctl(cfg, "purge", "standard", "--yes")
    assert "5 waiting job(s) removed" in p.stdout, p.stdout
    assert queue_state(r, "standard") == (1, 1)
    assert not r.exists("digest:delayed:standard")
    assert digestctl(cfg, "purge", "nosuch", "--yes", check=False).returncode == 2


def test_enqueue_force_sends_again(tmp_path, backend, slow_sink, digestd_factory):
    """A finished job enqueued again by force runs again: every member
    gets a second email (without --force, nothing is enqueued)."""
    r = backend.r
    slow_sink.delay = 0
    cfg = backend_config(tmp_path, backend, {"standard": {"workers": 1}},
                         smtp=slow_sink)
    d = digestd_factory(config_path=cfg).start()
    we = day_end()
    uids = seed_group(r, 51, members=4, window_end=we)
    p = digestctl(cfg, "enqueue", "--group", "51", "--period", "daily", "--queue", "standard")
    assert "1 job(s) enqueued" in p.stdout
    job_id = job_fields(51, uids, window_end=we)["job_id"]
    wait_for(lambda: checkpoint(r, job_id).get("state") == "done", timeout=20, what="done")
    assert slow_sink.count() == 4
    p = digestctl(cfg, "enqueue", "--group", "51", "--period", "daily", "--queue", "standard")
    assert "1 already enqueued" in p.stdout
    digestctl(cfg, "enqueue", "--group", "51", "--period", "daily", "--queue", "standard",
              "--force")
    wait_for(lambda: slow_sink.count() == 8, timeout=20, what="sent again")
    wait_for(lambda: checkpoint(r, job_id).get("state") == "done", timeout=20, what="done")
    backend.wait_empty("standard")
    assert collections.Counter(slow_sink.recipients()) == collections.Counter(
        {"u%d@example.org" % u: 2 for u in uids})
    assert d.stop() == 0


def test_pause_resume_cancel_purge_on_amqp(tmp_path, redis_tcp, rabbitmq, vhost, smtp_sink,
                                           digestd_factory):
    """Paused, the worker takes no job and holds none in its prefetch;
    resumed, every member gets one email.  With no worker, cancel takes
    the run's messages and leaves another run's; purge takes the rest;
    dlq delete drops a letter by its job id."""
    r = redis_tcp.client()
    we = day_end()
    groups = {81: list(range(8100, 8110)), 82: list(range(8200, 8205))}
    write_groups(r, groups, we)
    cfg = amqp_config(tmp_path, redis_tcp, rabbitmq, vhost, transport="smtp",
                      sink=smtp_sink, batch=2, prefetch=4)
    d = start_digestd(digestd_factory, cfg)
    p = digestctl(cfg, "pause", "--all", "--reason", "incident")
    assert "queue standard paused" in p.stdout
    time.sleep(2)
    for gid in groups:
        digestctl(cfg, "enqueue", "--group", str(gid), "--period", "daily", "--queue",
                  "standard")
    # Nobody takes them: both wait in the broker, not in a worker's prefetch.
    time.sleep(3)
    assert smtp_sink.count() == 0
    assert job_checkpoints(r) == {}
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 2
    s = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert s["queues"]["standard"]["paused"]["reason"] == "incident"

    digestctl(cfg, "resume", "--all")
    want = ["u%d@example.org" % u for uids in groups.values() for u in uids]
    wait_for(lambda: smtp_sink.count() >= len(want), timeout=60, what="all mail")
    wait_for(lambda: all(c.get("state") == "done" for c in job_checkpoints(r).values())
             and len(job_checkpoints(r)) == 2, timeout=20, what="jobs done")
    assert collections.Counter(smtp_sink.recipients()) == collections.Counter(want)
    assert d.stop() == 0

    # With no worker: cancel takes the run's messages and leaves another
    # run's in place; purge takes the rest.
    other = {"job_id": "weekly.%d.83.0" % we, "group_id": 83, "period": "weekly",
             "window_start": we - 7 * DAY, "window_end": we, "member_min": 1,
             "member_max": 9, "enqueued_at": time.time()}
    publish(rabbitmq, vhost, "digest.standard", json.dumps(other))
    for gid in groups:
        digestctl(cfg, "enqueue", "--group", str(gid), "--period", "daily", "--queue",
                  "standard", "--force", "--now", str(we + 3600))
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 3
    # The forced ones belong to the run cancelled now.
    p = digestctl(cfg, "cancel", "--period", "daily", "--now", str(we + 3600))
    assert "2 waiting job(s) removed" in p.stdout, p.stdout
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 1
    cps = job_checkpoints(r)
    assert all(cps["daily.%d.%d.0" % (we, g)]["state"] == "cancelled" for g in groups)
    p = digestctl(cfg, "purge", "standard", "--yes")
    assert "1 waiting job(s) removed" in p.stdout
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []

    # A dead letter deleted by its job id.
    publish(rabbitmq, vhost, "digest.dlq", json.dumps(other))
    p = digestctl(cfg, "dlq", "delete", other["job_id"])
    assert "1 dead letter(s) deleted" in p.stdout
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 0
