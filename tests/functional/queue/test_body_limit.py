"""The AMQP backend's limit on a job's body (64 KiB, a body over it never
read; docs/design.md#amqp-backend), against the session's rabbitmq-server:
a job body far larger than any job (100 MB under a 64 MB memory_limit) is
dead-lettered unread by the worker that received it, which stays small
and goes on with the next job; bodies on either side of the limit, and
one spanning two frames, leave the channel in step.  A Redis stream entry
has no such limit: these hold on amqp only."""
import json
import os
import time

import pika

from lib.amqp_util import (
    config,
    expected_pairs,
    maildir_ids,
    now_for_tests,
    queue_counts,
    scheduled,
    start_digestd,
    wait_all_done,
    worker_pids,
    write_groups,
)
from lib.harness import ASAN, digestctl, metric_sum, wait_for

LIMIT = 64 * 1024


def seed(r, groups):
    now = now_for_tests()
    end = now - now % 86400
    write_groups(r, groups, end)
    return now, end


def job_body(gid, end, members, pad=0):
    """A job's JSON body, padded with trailing blanks to pad bytes."""
    body = json.dumps({"job_id": "daily.%d.%d.0" % (end, gid), "group_id": gid,
                       "period": "daily", "window_start": end - 86400,
                       "window_end": end, "member_min": min(members),
                       "member_max": max(members), "enqueued_at": time.time()})
    if pad:
        assert pad >= len(body)
        body += " " * (pad - len(body))
    return body.encode()


def publish(rabbit, vhost, body, queue="digest.standard"):
    conn = rabbit.connection(vhost)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json"), mandatory=True)
    finally:
        conn.close()


def with_memory_limit(cfg, limit):
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("memory_limit = 256M", "memory_limit = %s" % limit))


def peak_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


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


def test_huge_body_dead_lettered_unread(tmp_path, redis_tcp, rabbitmq, vhost,
                                        digestd_factory):
    r = redis_tcp.client()
    groups = {g: list(range(100 * g, 100 * g + 10)) for g in (1, 2, 3)}
    now, end = seed(r, groups)
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost)
    with_memory_limit(cfg, "64M")
    digestctl(cfg, "stats")     # declares the queues
    # 100 MB in front of every real job: a worker that read it into memory
    # would die of its memory_limit before any attempt were counted.
    huge = 100 * 1024 * 1024
    publish(rabbitmq, vhost, b"{" + b" " * (huge - 2) + b"}")
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 3
    d = start_digestd(digestd_factory, cfg)
    (worker,) = wait_for(lambda: worker_pids(d), timeout=10, what="the worker")

    wait_all_done(r, 3, timeout=90, d=d)
    wait_for(lambda: queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 1, timeout=30,
             what="the huge body in digest.dlq")
    peak = peak_rss_kb(worker)
    print("measured: worker peak RSS %d kB after a %d-byte body went by" % (peak, huge))
    # The same worker throughout: never replaced, for memory or anything.
    assert worker_pids(d) == [worker]
    assert metric_sum(d.metrics(), "digest_worker_restarts_total") == 0
    assert metric_sum(d.metrics(), "digest_jobs_total", result="dead_lettered") == 1
    assert peak < (48 if ASAN else 16) * 1024, peak
    assert set(maildir_ids(os.path.join(str(tmp_path), "outbox"))) == \
        expected_pairs(groups, end)
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 0

    # The operator sees why, and the letter is left whole in place.
    rows = dlq_lines(cfg)
    assert rows == [("-", "standard", "body too large (%d bytes)" % huge)], rows
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 1
    assert d.stop() == 0


def test_bodies_around_the_limit_keep_the_channel_in_step(tmp_path, redis_tcp, rabbitmq,
                                                           vhost, digestd_factory):
    r = redis_tcp.client()
    groups = {g: list(range(100 * g, 100 * g + 5)) for g in (1, 2, 3, 4, 5)}
    now, end = seed(r, groups)
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost)
    digestctl(cfg, "stats")
    # Valid jobs all, padded: one just under the limit, one at it, one just
    # over it (still one frame), one over a whole frame (131072), then a
    # plain one that must find the channel in step.
    sizes = {1: LIMIT - 1, 2: LIMIT, 3: LIMIT + 1, 4: 131072 + 1}
    for gid, size in sizes.items():
        publish(rabbitmq, vhost, job_body(gid, end, groups[gid], pad=size))
    publish(rabbitmq, vhost, job_body(5, end, groups[5]))
    d = start_digestd(digestd_factory, cfg)

    wait_all_done(r, 3, timeout=60, d=d)
    wait_for(lambda: queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 2, timeout=30,
             what="two dead letters")
    served = {g: groups[g] for g in (1, 2, 5)}
    assert sorted(maildir_ids(os.path.join(str(tmp_path), "outbox"))) == \
        sorted(expected_pairs(served, end))
    assert metric_sum(d.metrics(), "digest_worker_restarts_total") == 0
    assert queue_counts(rabbitmq, vhost, "digest.standard")[0] == 0
    assert "connection lost" not in d.log()

    rows = sorted(dlq_lines(cfg), key=lambda x: x[2])
    assert rows == [("-", "standard", "body too large (%d bytes)" % sizes[4]),
                    ("-", "standard", "body too large (%d bytes)" % sizes[3])], rows
    # Requeueing cannot help such a letter: it is reported and kept.
    p = digestctl(cfg, "dlq", "requeue", "--all")
    assert "0 dead letter(s) requeued" in p.stdout, p.stdout
    assert p.stderr.count("body too large") == 2, p.stderr
    assert queue_counts(rabbitmq, vhost, "digest.dlq")[0] == 2
    assert d.stop() == 0
