"""A worker that has run max_jobs jobs exits 0 and is replaced at once,
counted as `recycle`, without losing the next job."""
from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    alive, checkpoint, enqueue, job_fields, log_lines, restarts, seed_group,
    sup_config, wait_queue_state, wait_workers, workers)


def test_max_jobs_recycles_worker(tmp_path, redis_tcp, digestd_factory):
    r = redis_tcp.client()
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1, "max_jobs": 2}})
    d = digestd_factory(text).start()
    (first,) = wait_workers(d, 1, "priority")
    jobs = []
    for gid in (41, 42, 43):
        uids = seed_group(r, gid, members=2)
        jobs.append(job_fields(gid, uids))
        enqueue(r, "priority", jobs[-1])
    for f in jobs:
        wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=15,
                 what="job done")
        assert checkpoint(r, f["job_id"])["attempts"] == "1"
    wait_for(lambda: not alive(first), timeout=5, what="first worker recycled")
    # Gone may still mean a zombie: the line comes when the supervisor reaps.
    lines = wait_for(lambda: log_lines(d, "worker exited", reason="recycle", worker=first),
                     timeout=5, what="the recycle logged")
    assert 'status="exit 0"' in lines[0], d.log()
    assert not log_lines(d, "restarting priority#0")    # no backoff for a recycle
    wait_workers(d, 1, "priority", exclude={first})
    wait_queue_state(r, "priority", (0, 0))
    wait_for(lambda: restarts(d, "priority", "recycle") == 1, timeout=3,
             what="recycle counted")
