"""The incident controls on the amqp backend: a paused queue's worker
takes no job (and holds no prefetched message), resumed it delivers every
member once; cancel removes the run's waiting messages and leaves the
others in place; purge empties the queue; dlq delete drops a letter."""
import collections
import json
import time

from lib.amqp_util import (config, drain_queue, job_checkpoints, publish, queue_counts,
                       start_digestd, write_groups)
from lib.harness import digestctl, wait_for

DAY = 86400


def day_end():
    now = int(time.time())
    return now - now % DAY


def test_pause_resume_cancel_purge_on_amqp(tmp_path, redis_tcp, rabbitmq, vhost, smtp_sink,
                                           digestd_factory):
    r = redis_tcp.client()
    we = day_end()
    groups = {81: list(range(8100, 8110)), 82: list(range(8200, 8205))}
    write_groups(r, groups, we)
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="smtp", sink=smtp_sink,
                 batch=2, prefetch=4)
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
