"""A worker's failures to reach the broker carrying its jobs count as
broker errors, not Redis errors (docs/design.md#metric-series): an AMQP
backend's own series."""
from lib.amqp_util import config
from lib.harness import Digestd, free_port, metric, wait_for
from lib.metrics_util import stop_digestd


class RefusingBroker:
    """Stands for the rabbitmq fixture in config(): a broker URL on a port
    where nothing listens."""

    def __init__(self):
        self.port = free_port()

    def url(self, vhost):
        return "amqp://guest:guest@127.0.0.1:%d/" % self.port


def test_broker_errors_are_not_redis_errors(tmp_path, redis_tcp):
    """Workers that cannot reach the broker carrying their jobs count each
    failed attempt in digest_broker_errors_total{pool}; Redis answers all
    along, so digest_redis_errors_total stays 0."""
    cfg = config(tmp_path, redis_tcp, RefusingBroker(), "/")
    d = Digestd(cfg, tmp_path)
    d.start(wait_ready=False)
    try:
        def counted():
            if d.exited() or d.http_status("/metrics") != 200:
                return None
            text = d.metrics()
            n = metric(text, "digest_broker_errors_total", pool="standard")
            return text if n is not None and n >= 2 else None
        text = wait_for(counted, timeout=30, interval=0.25,
                        what="broker errors counted")
        assert metric(text, "digest_redis_errors_total", pool="standard") == 0
        assert d.http_status("/readyz") != 200
    finally:
        stop_digestd(d)
