"""Helpers for the AMQP tests: configs on a per-test vhost of the session's
rabbitmq-server, broker-side readers (pika), and a run of digestd to
completion.

Only loopback servers are used; every wait is bounded.
"""
import json
import os
import time

from lib import config as conf
from lib.harness import wait_for

DAY = 86400


def now_for_tests():
    """A fixed 'now' inside today's period, so that seed and schedule agree."""
    t = int(time.time())
    return t - t % DAY + 3600


def config(tmp_path, redis, rabbit, vhost, backend="amqp", transport="maildir",
           sink=None, maildir=None, workers=1, pools=("standard",), heartbeat="30s",
           prefetch=1, batch=500, max_attempts=3, exchange="digest.email",
           routing_key="email", per_session=500, name="digestd.conf", extra="",
           log_level="info"):
    """A digestd config; the queue backend and transport are chosen here."""
    if transport == "smtp":
        tp = conf.smtp(sink, per_session)
    elif transport == "amqp":
        tp = {"transport": {"type": "amqp"}, "maildir": None,
              "amqp_out": {"exchange": exchange, "routing_key": routing_key}}
    else:
        tp = {"maildir": {"path": maildir or os.path.join(str(tmp_path), "outbox")}}
    return conf.build(tmp_path, conf.merge(
        {"supervisor": {"drain_timeout": "20s", "stall_timeout": "30s",
                        "restart_backoff_max": "500ms", "log_level": log_level},
         "queue": {"backend": backend, "max_attempts": max_attempts},
         "amqp": {"url": rabbit.url(vhost), "heartbeat": heartbeat,
                  "prefetch": prefetch},
         "digest": {"batch_size": batch}},
        {"pool.%s" % p: {"queue": p, "workers": workers, "memory_limit": "256M"}
         for p in pools},
        tp), sections=(redis.config_section(),), extra=extra, name=name)


def maildir_ids(path):
    """[(message-id, To)] of the messages in path/new, duplicates kept."""
    import email
    import email.policy
    out = []
    d = os.path.join(path, "new")
    if not os.path.isdir(d):
        return out
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            m = email.message_from_bytes(f.read(), policy=email.policy.default)
        out.append((m["Message-ID"], m["To"].addresses[0].addr_spec))
    return out


def queue_counts(rabbit, vhost, queue):
    """(ready, consumers) of a queue, by a passive declare; None if missing."""
    import pika
    conn = rabbit.connection(vhost)
    try:
        ch = conn.channel()
        try:
            ok = ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return None
        return ok.method.message_count, ok.method.consumer_count
    finally:
        conn.close()


def drain_queue(rabbit, vhost, queue, limit=100000):
    """Every message of a queue as (properties, body), removed (basic.get, ack)."""
    conn = rabbit.connection(vhost)
    out = []
    try:
        ch = conn.channel()
        for _ in range(limit):
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            out.append((props, body))
    finally:
        conn.close()
    return out


def publish(rabbit, vhost, queue, body, content_type="application/json"):
    """Publish one persistent message to a queue through the default exchange."""
    import pika
    conn = rabbit.connection(vhost)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, body, pika.BasicProperties(
            delivery_mode=2, content_type=content_type), mandatory=True)
    finally:
        conn.close()


def job_checkpoints(r, prefix=""):
    """{job_id: checkpoint hash} of every digest:job:* key."""
    out = {}
    for k in r.scan_iter(match=prefix + "digest:job:*", count=1000):
        out[k[len(prefix) + len("digest:job:"):]] = r.hgetall(k)
    return out


def wait_all_done(r, njobs, timeout=120, d=None):
    """Wait until njobs checkpoints say done; returns the checkpoints."""
    def done():
        if d is not None and d.exited():
            raise AssertionError("digestd exited:\n" + d.log()[-3000:])
        cps = job_checkpoints(r)
        n = sum(1 for c in cps.values() if c.get("state") == "done")
        return cps if n >= njobs else None
    return wait_for(done, timeout=timeout, interval=0.2, what="%d jobs done" % njobs)


def scheduled(stdout):
    """The number of jobs `digestctl schedule` says it enqueued."""
    for line in stdout.splitlines():
        if "jobs enqueued:" in line:
            return int(line.split("jobs enqueued:")[1].split()[0])
    raise AssertionError("no 'jobs enqueued' in: " + stdout)


def start_digestd(factory, cfg, timeout=30):
    d = factory(config_path=cfg)
    d.start(timeout=timeout)
    return d


def worker_pids(d):
    """Pids of digestd's workers (its children that are workers)."""
    out = []
    for pid in d.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"worker" in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def json_body(body):
    return json.loads(body.decode("utf-8"))


def write_groups(r, groups, window_end, prefix=""):
    """Groups as the host application writes them: {gid: [uid, ...]}.

    Every member has an email and no digest preference, and each group has
    two posts inside the window by user 1 (never a member), so that every
    member is due exactly one email: the expected set is all members.
    """
    p = prefix
    pipe = r.pipeline(transaction=False)
    for gid, uids in groups.items():
        pipe.hset(p + "group:%d" % gid, mapping={"name": "Group %d" % gid,
                                                "url": "https://example.com/g/%d" % gid})
        for k in range(0, len(uids), 1000):
            pipe.zadd(p + "group:%d:members" % gid, {str(u): u for u in uids[k:k + 1000]})
        for i in (1, 2):
            pid = gid * 10 + i
            pipe.zadd(p + "group:%d:posts" % gid, {str(pid): window_end - 100 * i})
            pipe.hset(p + "post:%d" % pid, mapping={
                "title": "Post %d" % pid, "url": "https://example.com/p/%d" % pid,
                "author_id": "1", "author_name": "Ann", "excerpt": "x",
                "likes": str(i), "comments": "0"})
        pipe.zadd(p + "groups:active", {str(gid): window_end - 100})
        for u in uids:
            pipe.hset(p + "user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                                 "name": "User %d" % u,
                                                 "last_seen": str(window_end)})
    pipe.execute()


def expected_pairs(groups, window_end, period="daily", domain="example.com"):
    """{(message-id, rcpt)} that write_groups' data must produce."""
    return {("<%s.%d.%d.0.%d@%s>" % (period, window_end, gid, u, domain),
             "u%d@example.org" % u)
            for gid, uids in groups.items() for u in uids}


def rabbit_log(rabbit):
    """The broker's own log (one node, one file per run of the node)."""
    out = []
    logdir = os.path.join(rabbit.dir, "log")
    for name in sorted(os.listdir(logdir)):
        if name.endswith(".log"):
            with open(os.path.join(logdir, name), errors="replace") as f:
                out.append(f.read())
    return "\n".join(out)


def bind_outbox(rabbit, vhost, exchange, key, queue, arguments=None):
    conn = rabbit.connection(vhost)
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, exchange_type="direct", durable=True)
        ch.queue_declare(queue, durable=True, arguments=arguments)
        ch.queue_bind(queue, exchange, routing_key=key)
    finally:
        conn.close()
