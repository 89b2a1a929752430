"""transport.type = amqp against the session's rabbitmq-server: each email
is a persistent message/rfc822 on amqp_out.exchange with publisher
confirms; a message the broker refuses (basic.nack, a full queue) is
deferred and sent again, never one it took; with no queue bound to the
routing key the broker returns the messages (basic.return), none is
counted as sent, and the job is given back or dead-lettered; a connection
lost while a batch waits for its confirms leaves those messages without an
outcome: none counted sent that the broker does not hold, all sent on the
retry, each counted once."""
import email
import email.policy
import time


from lib.amqp_util import (
    bind_outbox,
    config,
    drain_queue,
    expected_pairs,
    job_checkpoints,
    now_for_tests,
    queue_counts,
    rabbit_log,
    scheduled,
    start_digestd,
    wait_all_done,
    write_groups,
)
from lib.harness import digestctl, metric_sum, wait_for

# rabbitmq-server's default, which the test node runs with (its config
# names none).
DEFAULT_WATERMARK = "0.4"


def test_emails_published_with_confirms(tmp_path, redis_tcp, rabbitmq, vhost,
                                        digestd_factory):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {3: list(range(100, 125)), 4: list(range(200, 210))}
    write_groups(r, groups, end)
    bind_outbox(rabbitmq, vhost, "mail.out", "digest", "outbox")
    # A short heartbeat, and an idle spell of several intervals between
    # the two jobs: both connections must live through it.
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="amqp",
                 exchange="mail.out", routing_key="digest", batch=10, heartbeat="1s")
    log_at = len(rabbit_log(rabbitmq))
    d = start_digestd(digestd_factory, cfg)
    digestctl(cfg, "enqueue", "--group", "3", "--period", "daily")
    wait_all_done(r, 1, timeout=60, d=d)
    time.sleep(4.0)
    digestctl(cfg, "enqueue", "--group", "4", "--period", "daily")
    wait_all_done(r, 2, timeout=60, d=d)

    msgs = drain_queue(rabbitmq, vhost, "outbox")
    got = set()
    for props, body in msgs:
        m = email.message_from_bytes(body, policy=email.policy.default)
        assert props.message_id == m["Message-ID"].strip("<>")
        assert props.content_type == "message/rfc822"
        assert props.delivery_mode == 2
        rcpt = props.headers["x-digest-rcpt"]
        assert rcpt == m["To"].addresses[0].addr_spec
        assert props.headers["x-digest-job"] == m["X-Digest-Job"]
        assert b"\r\n" in body and m["List-Unsubscribe"]
        got.add((m["Message-ID"], rcpt))
    assert len(msgs) == 35 and got == expected_pairs(groups, end)
    met = d.metrics()
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="sent") == 35
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="deferred") == 0
    # The exchange was declared durable and direct by digestd itself.
    p = rabbitmq.ctl("list_exchanges", "-q", "-p", vhost, "name", "type", "durable")
    assert any(l.split() == ["mail.out", "direct", "true"] for l in p.stdout.splitlines())
    # One publishing connection and one consuming connection, each opened
    # once and kept across both jobs and the idle spell.
    log = rabbit_log(rabbitmq)[log_at:]
    opened = [l for l in log.splitlines() if "granted access to vhost '%s'" % vhost in l]
    assert len([l for l in opened if "digestd transport" in l]) == 1, opened
    assert len([l for l in opened if "digestd worker" in l]) == 1, opened
    assert "missed heartbeats" not in log, log
    assert d.stop() == 0


def test_unroutable_messages_are_not_sent(tmp_path, redis_tcp, rabbitmq, vhost,
                                          digestd_factory):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    write_groups(r, {6: list(range(100, 108))}, end)
    # digestd declares the exchange; nothing is bound to it.
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="amqp",
                 exchange="nowhere", routing_key="email", max_attempts=1,
                 log_level="debug")
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = start_digestd(digestd_factory, cfg)
    job = "daily.%d.6.0" % end

    # A deferred message is retried on the clock (smtp.defer_retry_min),
    # the job waiting meanwhile without a worker: it ends without a send.
    def ended():
        if d.exited():
            raise AssertionError(d.log()[-3000:])
        m = d.metrics()
        return (metric_sum(m, "digest_jobs_total", result="retried") +
                metric_sum(m, "digest_jobs_total", result="dead_lettered")) >= 1
    wait_for(ended, timeout=150, interval=0.5, what="the job given back or dead-lettered")
    cp = job_checkpoints(r)[job]
    assert cp.get("state") != "done", cp
    assert int(cp.get("sent", 0)) == 0, cp

    met = d.metrics()
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="sent") == 0
    # Each of the 8 was published and returned.
    assert metric_sum(met, "digest_emails_total", transport="amqp",
                      result="deferred") >= 8
    # Each message's own outcome, from basic.return, is in the debug log.
    assert "unroutable" in d.log()
    for props, body in drain_queue(rabbitmq, vhost, "digest.dlq"):
        assert props.headers["x-digest-queue"] == "standard"
        assert props.headers["x-digest-reason"]
    assert d.stop() == 0


def test_nacked_messages_are_deferred_and_sent_again(tmp_path, redis_tcp, rabbitmq,
                                                     vhost, digestd_factory):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {8: list(range(100, 112))}
    write_groups(r, groups, end)
    # A full outbox refuses publishes with basic.nack: of each batch, the
    # broker takes four and nacks the rest.
    bind_outbox(rabbitmq, vhost, "mail.out", "digest", "outbox",
                arguments={"x-max-length": 4, "x-overflow": "reject-publish"})
    # A nacked message is deferred: retried on the clock, here a short one.
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, transport="amqp",
                 exchange="mail.out", routing_key="digest", batch=12,
                 extra="[smtp]\ndefer_retry_min = 1s\ndefer_retry_max = 1s\n")
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    d = start_digestd(digestd_factory, cfg)
    job = "daily.%d.8.0" % end
    taken = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = job_checkpoints(r).get(job, {}).get("state") == "done"
        taken += drain_queue(rabbitmq, vhost, "outbox")
        if done:
            break
        assert not d.exited(), d.log()[-3000:]
        time.sleep(0.3)
    assert done, "the job did not finish"
    ids = [p.message_id for p, _ in taken]
    # Every member once: the nacked ones were sent again, the acked ones
    # never twice.
    assert sorted(ids) == sorted(m.strip("<>") for m, _ in expected_pairs(groups, end))
    met = d.metrics()
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="sent") == 12
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="deferred") >= 8
    assert d.stop() == 0


def blocked_transport(rabbit, vhost):
    """The pid of digestd's publishing connection once the broker blocked
    it (it published during the alarm), else None.  The pid as rabbitmqctl
    prints it in its table (close_connection takes that form, not the
    JSON's)."""
    p = rabbit.ctl("list_connections", "-q", "pid", "vhost", "state",
                   "client_properties")
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        f = line.split("\t")
        if (len(f) >= 4 and f[1] == vhost and f[2] == "blocked"
                and "digestd transport" in f[3]):
            return f[0]
    return None


def test_connection_lost_mid_flush_counts_nothing_unconfirmed(
        tmp_path, redis_tcp, rabbitmq, vhost, digestd_factory):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {9: list(range(100, 140))}
    write_groups(r, groups, end)
    bind_outbox(rabbitmq, vhost, "mail.out", "digest", "outbox")
    # Jobs in Redis: only the transport publishes to the broker.
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, backend="redis",
                 transport="amqp", exchange="mail.out", routing_key="digest",
                 batch=40)
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    job = "daily.%d.9.0" % end
    # A memory alarm: the broker stops reading a connection that publishes,
    # so the batch of 40 waits for confirms that do not come.  Then the
    # connection is closed under it.
    p = rabbitmq.ctl("set_vm_memory_high_watermark", "0")
    assert p.returncode == 0, p.stderr
    try:
        d = start_digestd(digestd_factory, cfg)
        pid = wait_for(lambda: blocked_transport(rabbitmq, vhost), timeout=90,
                       interval=0.5, what="the transport's connection blocked")
        p = rabbitmq.ctl("close_connection", pid, "closed by the test")
        assert p.returncode == 0, p.stderr
        wait_for(lambda: metric_sum(d.metrics(), "digest_transport_errors_total",
                                    transport="amqp") >= 1,
                 timeout=60, interval=0.3, what="the flush failed")
        # Counted sent: only what the broker confirmed, so holds.
        held = queue_counts(rabbitmq, vhost, "outbox")[0]
        sent = metric_sum(d.metrics(), "digest_emails_total", transport="amqp",
                          result="sent")
        assert sent <= held, (sent, held)
        assert job_checkpoints(r).get(job, {}).get("state") != "done"
    finally:
        p = rabbitmq.ctl("set_vm_memory_high_watermark", DEFAULT_WATERMARK)
        assert p.returncode == 0, p.stderr

    # The job is retried: every member's email reaches the outbox, each
    # counted sent once (a message the broker took unconfirmed may be there
    # twice: the retry sends it again).
    cps = wait_all_done(r, 1, timeout=120, d=d)
    assert int(cps[job]["sent"]) == 40, cps[job]
    ids = {p.message_id for p, _ in drain_queue(rabbitmq, vhost, "outbox")}
    assert ids == {m.strip("<>") for m, _ in expected_pairs(groups, end)}
    met = d.metrics()
    assert metric_sum(met, "digest_emails_total", transport="amqp", result="sent") == 40
    assert d.stop() == 0
