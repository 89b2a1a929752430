"""The queue backends as one test-facing interface, for the tests whose
behaviour is the same on Redis streams and on RabbitMQ: the config
overrides that choose the backend, enqueueing a job, and reading back the
queue, its dead letters and a job's checkpoint
(docs/design.md#amqp-backend).

conftest.py's `backend` fixture hands out one of these per test, once for
each backend; a test that holds on one backend only says so with
@only("amqp").

Only loopback servers are used; every wait is bounded.
"""
import json

import pytest

from lib import supervisor_fixtures as sf
from lib.harness import digestctl, wait_for

NAMES = ("redis", "amqp")


def only(*names):
    """Run a test taking the backend fixture on these backends only."""
    return pytest.mark.parametrize("backend", names, indirect=True)


class RedisBackend:
    """Jobs in the streams digest:q:{queue} of the queue Redis."""

    name = "redis"

    def __init__(self, redis):
        self.redis = redis
        self.r = redis.client()

    def overrides(self, max_attempts=None):
        """Config overrides of the [queue] section for this backend."""
        q = {"backend": "redis"}
        if max_attempts is not None:
            q["max_attempts"] = max_attempts
        return {"queue": q}

    def prepare(self, cfg):
        """Make the queues of cfg exist before jobs are enqueued (a stream
        is made by its first XADD)."""

    def enqueue(self, queue, fields):
        """Add a job (its fields as strings) to a queue."""
        sf.enqueue(self.r, queue, fields)

    def stored(self, fields):
        """fields as a dead letter gives them back."""
        return dict(fields)

    def dead_letters(self):
        """The dead letters, oldest first: each a dict of the job's fields
        and reason, attempts and failed_at, all strings."""
        return [f for _, f in sf.dead_letters(self.r)]

    def dead_letter_count(self):
        return len(sf.dead_letters(self.r))

    def add_dead_letter(self, fields):
        """Write a dead letter as digestd would (fields as strings)."""
        self.r.xadd("digest:dlq", fields)

    def depth(self, queue):
        """The jobs in a queue: on Redis those waiting and those held."""
        return sf.queue_state(self.r, queue)[0]

    def wait_empty(self, queue, timeout=10):
        """Wait (bounded) until the queue has no job, waiting or held."""
        sf.wait_queue_state(self.r, queue, (0, 0), timeout=timeout)

    def checkpoint(self, job_id):
        return sf.checkpoint(self.r, job_id)


def _json_value(k, v):
    """A job field as the AMQP backend's JSON has it: numbers as numbers
    where they are numbers, anything else (a malformed field) as it is."""
    if k in ("job_id", "period") or not isinstance(v, str):
        return v
    try:
        return int(v)
    except ValueError:
        pass
    if k == "enqueued_at":
        try:
            return float(v)
        except ValueError:
            pass
    return v


def _as_str(v):
    return v if isinstance(v, str) else json.dumps(v)


class AmqpBackend(RedisBackend):
    """Jobs in the queues digest.{queue} of a vhost of the session's
    rabbitmq-server; checkpoints still in the queue Redis."""

    name = "amqp"

    def __init__(self, redis, rabbit, vhost):
        RedisBackend.__init__(self, redis)
        self.rabbit = rabbit
        self.vhost = vhost

    def overrides(self, max_attempts=None):
        o = RedisBackend.overrides(self, max_attempts)
        o["queue"]["backend"] = "amqp"
        o["amqp"] = {"url": self.rabbit.url(self.vhost), "heartbeat": "30s",
                     "prefetch": 1}
        return o

    def prepare(self, cfg):
        # digestctl declares the queues, exchanges and dead-letter queue.
        digestctl(cfg, "stats")

    def enqueue(self, queue, fields):
        body = json.dumps({k: _json_value(k, v) for k, v in fields.items()})
        import pika
        conn = self.rabbit.connection(self.vhost)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("", "digest.%s" % queue, body.encode(), pika.BasicProperties(
                delivery_mode=2, content_type="application/json"), mandatory=True)
        finally:
            conn.close()

    def stored(self, fields):
        return {k: _as_str(_json_value(k, v)) for k, v in fields.items()}

    def _peek(self, queue, limit=100000):
        """(properties, body) of every message of a queue, left in place:
        taken unacknowledged, they go back when the connection closes."""
        conn = self.rabbit.connection(self.vhost)
        out = []
        try:
            ch = conn.channel()
            for _ in range(limit):
                method, props, body = ch.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                out.append((props, body))
        finally:
            conn.close()
        return out

    def _count(self, queue):
        import pika
        conn = self.rabbit.connection(self.vhost)
        try:
            ch = conn.channel()
            try:
                return ch.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker:
                return 0
        finally:
            conn.close()

    def dead_letters(self):
        out = []
        for props, body in self._peek("digest.dlq"):
            try:
                f = {k: _as_str(v) for k, v in json.loads(body).items()}
            except ValueError:
                f = {}
            h = props.headers or {}
            for name in ("reason", "attempts", "queue", "failed_at"):
                v = h.get("x-digest-" + name.replace("_", "-"))
                if v is not None:
                    f[name] = v.decode() if isinstance(v, bytes) else str(v)
            out.append(f)
        return out

    def dead_letter_count(self):
        return self._count("digest.dlq")

    def add_dead_letter(self, fields):
        import pika
        job = {k: _json_value(k, v) for k, v in fields.items() if k != "reason"}
        conn = self.rabbit.connection(self.vhost)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("", "digest.dlq", json.dumps(job).encode(),
                             pika.BasicProperties(
                                 delivery_mode=2, content_type="application/json",
                                 headers={"x-digest-reason": fields.get("reason", ""),
                                          "x-digest-queue": "standard",
                                          "x-digest-attempts": 1}),
                             mandatory=True)
        finally:
            conn.close()

    def depth(self, queue):
        """The jobs in a queue: on the broker those ready."""
        return self._count("digest.%s" % queue)

    def wait_empty(self, queue, timeout=10):
        # The broker's count is of the messages ready; one a worker holds
        # is acknowledged just after its checkpoint is marked.
        wait_for(lambda: self.depth(queue) == 0, timeout=timeout,
                 what="digest.%s empty" % queue)


def make(name, redis, rabbit=None, vhost=None):
    if name == "redis":
        return RedisBackend(redis)
    return AmqpBackend(redis, rabbit, vhost)
