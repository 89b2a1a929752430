"""amqps:// verifies the broker: the session's rabbitmq-server has
a TLS listener whose certificate, signed by a test CA, names localhost
only.  With amqp.ca_file naming that CA, every AMQP connection digestd and
digestctl open goes over TLS and works: digestctl's, the worker's queue
consumer, the amqp transport, the supervisor's queue sampler.  Reached by
an address the certificate does not name, or checked against a CA that did
not sign it (or the system store), the broker is refused before the login,
and the log and digestctl say OpenSSL's reason."""
import pytest

from lib.amqp_util import config, drain_queue, now_for_tests, wait_all_done, write_groups
from lib.harness import Digestd, digestctl, metric_sum, wait_for
from lib.amqp_util import bind_outbox


def tls_config(tmp_path, redis, rabbit, vhost, host="localhost", ca="tls_ca", **kw):
    path = config(tmp_path, redis, rabbit, vhost, **kw)
    with open(path) as f:
        text = f.read()
    plain = "url = %s\n" % rabbit.url(vhost)
    assert plain in text
    text = text.replace(plain, "url = %s\n%s" % (
        rabbit.tls_url(vhost, host=host),
        "ca_file = %s\n" % getattr(rabbit, ca) if ca else ""))
    with open(path, "w") as f:
        f.write(text)
    return path


def connections(rabbit, vhost):
    """[(name, ssl)] of the broker's connections to vhost."""
    p = rabbit.ctl("list_connections", "-q", "--no-table-headers", "vhost",
                   "ssl", "name")
    assert p.returncode == 0, p.stderr
    out = []
    for line in p.stdout.splitlines():
        parts = line.split("\t")
        if parts and parts[0] == vhost:
            out.append((parts[2] if len(parts) > 2 else "", parts[1] == "true"))
    return out


def test_amqps_verified_end_to_end(tmp_path, redis_tcp, rabbitmq, vhost):
    """fails before: ca_file is not a key; and without it, librabbitmq
    verified the peer against an empty store, so no amqps:// connection
    ever opened."""
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {1: list(range(100, 110))}
    write_groups(r, groups, end)
    bind_outbox(rabbitmq, vhost, "mail.out", "digest", "outbox")
    cfg = tls_config(tmp_path, redis_tcp, rabbitmq, vhost, transport="amqp",
                     exchange="mail.out", routing_key="digest")
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        p = digestctl(cfg, "enqueue", "--group", "1", "--period", "daily")
        assert p.returncode == 0, p.stdout + p.stderr
        wait_all_done(r, 1, timeout=60, d=d)
        assert len(drain_queue(rabbitmq, vhost, "outbox")) == 10
        # The sampler reads the queues' depth from the broker.
        wait_for(lambda: "digest_queue_depth{queue=\"standard\"}" in d.metrics(),
                 timeout=30, what="the sampler's queue depth")
        conns = wait_for(lambda: (lambda c: c if len(c) >= 3 else None)(
            connections(rabbitmq, vhost)), timeout=30,
            what="worker, transport and sampler connected")
        assert all(ssl for _, ssl in conns), conns
        assert metric_sum(d.metrics(), "digest_emails_total", transport="amqp",
                          result="sent") == 10
        p = digestctl(cfg, "stats")
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        d.kill()


# RabbitMQ sends its CA along with its certificate: an untrusted chain ends
# in a self-signed certificate.
REFUSED = {
    # name: (url host, ca attribute of RabbitServer or None, the reason)
    "wrong-host": ("127.0.0.1", "tls_ca", "IP address mismatch"),
    "unknown-ca": ("localhost", "tls_other_ca", "self-signed certificate in certificate chain"),
    "system-store": ("localhost", None, "self-signed certificate in certificate chain"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_amqps_refuses_an_unverified_broker(tmp_path, redis_tcp, rabbitmq, vhost, case):
    """fails before: ca_file is not a key, and the refusal gave no reason."""
    host, ca, reason = REFUSED[case]
    cfg = tls_config(tmp_path, redis_tcp, rabbitmq, vhost, host=host, ca=ca,
                     transport="amqp")
    p = digestctl(cfg, "stats", check=False)
    assert p.returncode != 0
    assert reason in p.stdout + p.stderr, p.stdout + p.stderr
    assert "guest" not in p.stdout + p.stderr
    d = Digestd(cfg, tmp_path)
    d.start(wait_ready=False)
    try:
        wait_for(lambda: reason in d.log(), timeout=30, what="the reason logged")
        assert d.http_status("/readyz") != 200
        # Refused before the login: the broker has no connection there.
        assert connections(rabbitmq, vhost) == []
    finally:
        d.kill()
