"""SIGHUP with a valid change: pools resized (2 -> 4) and added, every
worker rolled (replacement ready before the old one retires), jobs running
across the reload neither lost nor run twice."""
import signal
import time

from lib.harness import metric, wait_for, write_config
from lib.supervisor_fixtures import (  # noqa: F401
    alive, checkpoint, enqueue, job_fields, log_lines, restarts, seed_group,
    status_workers, sup_config, wait_queue_state, wait_workers, workers)


def test_sighup_valid_resizes_adds_and_rolls(tmp_path, redis_tcp, slow_sink,
                                             digestd_factory):
    r = redis_tcp.client()
    text, port = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 2}},
                            smtp=slow_sink, digest="batch_size = 2")
    path = write_config(tmp_path, text)
    d = digestd_factory(config_path=path).start()
    old = set(wait_workers(d, 2, "priority"))

    # Two jobs running while the reload happens.
    jobs = []
    for gid in (11, 12):
        uids = seed_group(r, gid, members=6)
        jobs.append((job_fields(gid, uids), uids))
        enqueue(r, "priority", jobs[-1][0])
    wait_for(lambda: sum("job=" in t for t in workers(d, "priority").values()) == 2,
             timeout=10, what="both jobs running")

    text2, _ = sup_config(tmp_path, redis_tcp,
                          {"priority": {"workers": 4}, "extra": {"workers": 1}},
                          smtp=slow_sink, digest="batch_size = 2", port=port)
    write_config(tmp_path, text2)
    d.signal(signal.SIGHUP)

    ws = wait_workers(d, 4, "priority", timeout=20, exclude=old)
    wait_workers(d, 1, "extra")
    # Old workers finish their jobs, then retire.
    wait_for(lambda: not any(alive(p) for p in old), timeout=20, what="old workers gone")
    assert set(ws).isdisjoint(old)
    assert len(workers(d)) == 5

    for fields, uids in jobs:
        wait_for(lambda: checkpoint(r, fields["job_id"]).get("state") == "done",
                 timeout=20, what="job done")
        cp = checkpoint(r, fields["job_id"])
        assert cp["attempts"] == "1", cp      # not run twice
    rcpts = slow_sink.recipients()
    want = ["u%d@example.org" % u for _, uids in jobs for u in uids]
    assert sorted(rcpts) == sorted(want)      # none lost, none doubled
    wait_queue_state(r, "priority", (0, 0))

    # Gone may still mean a zombie: the line comes when the supervisor reaps.
    wait_for(lambda: len(log_lines(d, "worker exited", reason="reload")) >= 2,
             timeout=5, what="both retirements logged")
    assert len(log_lines(d, "worker exited", reason="reload")) == 2
    assert log_lines(d, "configuration reloaded: 2 pool(s)")
    st = status_workers(d)
    assert sorted(w["pool"] for w in st if w.get("pid")) == ["extra"] + ["priority"] * 4
    m = d.metrics()
    assert metric(m, "digest_config_reloads_total", result="success") == 1
    assert metric(m, "digest_worker_restarts_total", pool="priority", reason="reload") == 2
    assert metric(m, "digest_config_last_reload_success_timestamp_seconds") > time.time() - 60
    assert d.http_status("/readyz") == 200
