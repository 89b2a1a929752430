"""digestctl on the amqp queue backend: schedule publishes persistent JSON
jobs to digest.{queue}, idempotent through the Redis marker; stats and the
dead letters read the broker."""
import json

from lib.amqp_util import drain_queue, queue_counts
from lib.ctl_util import DAY, SAT, add_group, ctl_config  # noqa: F401
from lib.harness import digestctl


def amqp_config(tmp_path, redis_tcp, rabbitmq, vhost):
    return ctl_config(tmp_path, redis_tcp, extra="[queue]\nbackend = amqp\n[amqp]\nurl = %s\n"
                      % rabbitmq.url(vhost), schedule="priority_threshold = 5\n")


def test_schedule_on_amqp(tmp_path, redis_tcp, rabbitmq, vhost):
    r = redis_tcp.client()
    cfg = amqp_config(tmp_path, redis_tcp, rabbitmq, vhost)
    add_group(r, 1, range(1, 10), [(10 + i, SAT - 5) for i in range(3)])   # 3*3 = 9
    add_group(r, 2, [4, 8], [(20, SAT - 5)])                              # 1.4
    add_group(r, 3, [5, 6, 7], [(30, SAT - 5)])                           # 1.7
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    assert "jobs enqueued: 3 (priority 1, standard 2)" in p.stdout, p.stdout
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 100))
    assert "already enqueued: 3" in p.stdout
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 2
    assert queue_counts(rabbitmq, vhost, "digest.priority")[0] == 1
    # The marker lives in Redis; no stream is written.
    assert r.exists("digest:enq:daily.%d.1.0" % SAT)
    assert not r.exists("digest:q:standard")
    assert r.hget("digest:sched:daily", "status") == "ok"

    s = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert s["queues"]["standard"]["depth"] == 2
    assert s["queues"]["priority"]["depth"] == 1
    assert s["dead_letters"] == 0

    msgs = drain_queue(rabbitmq, vhost, "digest.standard")
    bodies = sorted((json.loads(b) for _, b in msgs), key=lambda j: j["group_id"])
    assert [b["job_id"] for b in bodies] == ["daily.%d.2.0" % SAT, "daily.%d.3.0" % SAT]
    b = bodies[1]
    assert (b["member_min"], b["member_max"], b["window_end"]) == (5, 7, SAT)
    assert b["last_shard"] == 1
    assert b["window_start"] == SAT - DAY and b["period"] == "daily"
    props = msgs[0][0]
    assert props.content_type == "application/json" and props.delivery_mode == 2


def test_dlq_on_amqp(tmp_path, redis_tcp, rabbitmq, vhost):
    import pika
    r = redis_tcp.client()
    cfg = amqp_config(tmp_path, redis_tcp, rabbitmq, vhost)
    add_group(r, 1, [1, 2], [(1, SAT - 5)])
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    (props, body), = drain_queue(rabbitmq, vhost, "digest.standard")
    job = json.loads(body)
    # Dead-letter it the way digestd does: to digest.dlq with the reason.
    conn = rabbitmq.connection(vhost)
    try:
        ch = conn.channel()
        ch.basic_publish("", "digest.dlq", body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json",
            headers={"x-digest-reason": "crash", "x-digest-queue": "standard"}))
    finally:
        conn.close()
    r.hset("digest:job:" + job["job_id"], mapping={"state": "dead", "attempts": 3})
    p = digestctl(cfg, "dlq", "list")
    assert job["job_id"] in p.stdout and "crash" in p.stdout
    assert json.loads(digestctl(cfg, "stats", "--json").stdout)["dead_letters"] == 1
    p = digestctl(cfg, "dlq", "requeue", job["job_id"])
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 0
    (props, body2), = drain_queue(rabbitmq, vhost, "digest.standard")
    assert json.loads(body2)["job_id"] == job["job_id"]
    assert r.hget("digest:job:" + job["job_id"], "attempts") == "0"


def test_watch_on_amqp_waits_for_busy_workers(tmp_path, redis_tcp, rabbitmq, vhost,
                                              digestd_factory):
    import time
    r = redis_tcp.client()
    cfg = amqp_config(tmp_path, redis_tcp, rabbitmq, vhost)
    now = int(time.time())
    digestctl(cfg, "seed", "--groups", "10", "--members", "1200", "--posts", "150",
              "--now", str(now))
    d = digestd_factory(config_path=cfg).start()
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
    n = int(p.stdout.split("jobs enqueued: ")[1].split()[0])
    assert n > 0
    p = digestctl(cfg, "watch", "--interval", "0.2", "--timeout", "120s", timeout=180)
    assert "queues empty" in p.stdout
    # When watch says so, every job is finished, not just taken.
    done = [k for k in r.scan_iter(match="digest:job:*")
            if r.hget(k, "state") == "done"]
    assert len(done) == n, (len(done), n, p.stdout)
    assert d.stop() == 0
