"""digestctl on the AMQP backend against the session's rabbitmq-server:
persistent JSON jobs on durable queues with a dead-letter exchange,
idempotent scheduling, stats from the broker, and the dead-letter walk
(list, requeue one, requeue all, letters dead-lettered by the broker)."""
import json

import pika

from lib.amqp_util import config, drain_queue, queue_counts
from lib.ctl_util import DAY, SAT, add_group
from lib.harness import digestctl

FIELDS = {"job_id", "group_id", "period", "window_start", "window_end",
          "member_min", "member_max", "enqueued_at"}


def list_json(rabbit, vhost, what, *cols):
    p = rabbit.ctl("list_" + what, "-q", "-p", vhost, "--formatter", "json", *cols)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout or "[]")


def test_schedule_publishes_persistent_json_jobs(tmp_path, redis_tcp, rabbitmq, vhost):
    r = redis_tcp.client()
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, pools=("priority", "standard"))
    for gid in (1, 2, 3):
        add_group(r, gid, range(10, 20), [(gid * 100, SAT - 100)])
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 60))
    assert "jobs enqueued: 3" in p.stdout, p.stdout

    # Durable queues, the standard one dead-lettering to digest.dlx.
    queues = {q["name"]: q for q in list_json(rabbitmq, vhost, "queues",
                                              "name", "durable", "arguments")}
    assert {"digest.standard", "digest.dlq"} <= set(queues)
    assert queues["digest.standard"]["durable"] and queues["digest.dlq"]["durable"]
    args = queues["digest.standard"]["arguments"]
    args = dict((a[0], a[-1]) for a in args) if isinstance(args, list) else args
    assert args.get("x-dead-letter-exchange") == "digest.dlx", args
    ex = {e["name"]: e for e in list_json(rabbitmq, vhost, "exchanges", "name", "type",
                                          "durable")}
    assert ex["digest.dlx"]["durable"]
    binds = list_json(rabbitmq, vhost, "bindings", "source_name", "destination_name")
    assert {"source_name": "digest.dlx", "destination_name": "digest.dlq"} in binds

    st = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert st["queues"]["standard"]["depth"] == 3, st
    assert st["dead_letters"] == 0, st

    # Scheduling again in the same period adds nothing.
    p = digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 7200))
    assert "jobs enqueued: 0" in p.stdout, p.stdout
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 3

    msgs = drain_queue(rabbitmq, vhost, "digest.standard")
    assert len(msgs) == 3
    ids = set()
    for props, body in msgs:
        assert props.delivery_mode == 2
        assert props.content_type == "application/json"
        j = json.loads(body)
        # Each group is one shard, its last: last_shard, the number 1.
        assert set(j) == FIELDS | {"last_shard"}, j
        assert j["last_shard"] == 1
        assert isinstance(j["job_id"], str) and isinstance(j["period"], str)
        for k in FIELDS - {"job_id", "period"} | {"last_shard"}:
            assert isinstance(j[k], (int, float)) and not isinstance(j[k], bool), (k, j)
        assert j["window_start"] == SAT - DAY and j["window_end"] == SAT
        assert j["member_min"] == 10 and j["member_max"] == 19
        ids.add(j["job_id"])
    assert ids == {"daily.%d.%d.0" % (SAT, g) for g in (1, 2, 3)}


def dead_letter(rabbit, vhost, body, reason, queue="standard", attempts=3):
    conn = rabbit.connection(vhost)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("digest.dlx", "digest." + queue, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json",
            headers={"x-digest-reason": reason, "x-digest-attempts": attempts,
                     "x-digest-queue": queue}), mandatory=True)
    finally:
        conn.close()


def job_body(gid, queue_end=SAT):
    return json.dumps({"job_id": "daily.%d.%d.0" % (queue_end, gid), "group_id": gid,
                       "period": "daily", "window_start": queue_end - DAY,
                       "window_end": queue_end, "member_min": 1, "member_max": 9,
                       "enqueued_at": queue_end + 1.5})


def test_dlq_list_and_requeue(tmp_path, redis_tcp, rabbitmq, vhost):
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost)
    # Nothing declared yet: the walk and the counts see no letters.
    assert "0 dead letter(s)" in digestctl(cfg, "dlq", "list").stdout
    digestctl(cfg, "stats")             # declares the queues
    dead_letter(rabbitmq, vhost, job_body(1), "transport amqp: unroutable")
    dead_letter(rabbitmq, vhost, job_body(2), "redis: connection refused")
    dead_letter(rabbitmq, vhost, b"{not json", "job_id: missing")

    # A letter the broker dead-lettered itself (rejected without requeue):
    # its reason and queue come from x-death.
    conn = rabbitmq.connection(vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "digest.standard", job_body(3), pika.BasicProperties(
        delivery_mode=2, content_type="application/json"), mandatory=True)
    method, _, _ = ch.basic_get("digest.standard")
    ch.basic_reject(method.delivery_tag, requeue=False)
    conn.close()

    st = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert st["dead_letters"] == 4, st

    out = digestctl(cfg, "dlq", "list").stdout
    assert "4 dead letter(s)" in out, out
    lines = {l.split()[0]: l for l in out.splitlines()[1:] if l.startswith("daily.")}
    assert "unroutable" in lines["daily.%d.1.0" % SAT]
    assert "connection refused" in lines["daily.%d.2.0" % SAT]
    assert "rejected" in lines["daily.%d.3.0" % SAT]
    assert lines["daily.%d.3.0" % SAT].split()[1] == "standard"
    assert "job_id: missing" in out
    # Listing leaves them all in place.
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 4

    out = digestctl(cfg, "dlq", "requeue", "daily.%d.2.0" % SAT).stdout
    assert "1 dead letter(s) requeued" in out, out
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 3
    (props, body), = drain_queue(rabbitmq, vhost, "digest.standard")
    assert json.loads(body)["job_id"] == "daily.%d.2.0" % SAT
    assert props.delivery_mode == 2 and props.content_type == "application/json"

    p = digestctl(cfg, "dlq", "requeue", "daily.%d.99.0" % SAT, check=False)
    assert p.returncode != 0
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 3

    out = digestctl(cfg, "dlq", "requeue", "--all").stdout
    assert "3 dead letter(s) requeued" in out, out
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 0
    bodies = [b for _, b in drain_queue(rabbitmq, vhost, "digest.standard")]
    assert len(bodies) == 3 and b"{not json" in bodies
