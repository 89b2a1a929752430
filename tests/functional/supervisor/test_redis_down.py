"""The queue Redis goes away: workers stay alive (no restart), show as
starting while they reconnect with backoff, and take jobs again once it is
back; /readyz says 503 meanwhile."""
import time

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, enqueue, job_fields, log_lines, seed_group, status_workers,
    sup_config, wait_workers, workers)


def test_workers_reconnect_after_redis_restart(tmp_path, redis_tcp, digestd_factory):
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}})
    d = digestd_factory(text).start()
    before = set(wait_workers(d, 2, "priority"))

    redis_tcp.stop()
    wait_for(lambda: len(status_workers(d, "priority", state="starting")) == 2,
             timeout=10, what="workers reconnecting")
    assert d.http_status("/readyz") == 503
    time.sleep(2)
    assert set(workers(d)) == before
    assert not log_lines(d, "worker exited")

    redis_tcp.start()
    wait_for(lambda: d.http_status("/readyz") == 200, timeout=15, what="ready again")
    r = redis_tcp.client()
    uids = seed_group(r, 95, members=2)
    f = job_fields(95, uids)
    enqueue(r, "priority", f)
    wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=15,
             what="job after reconnect")
    assert set(workers(d)) == before
