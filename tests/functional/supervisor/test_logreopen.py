"""SIGUSR1 reopens log_file in the supervisor and in every worker, so
that logrotate can move the file away."""
import os
import signal

from lib.harness import wait_for
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, enqueue, job_fields, seed_group, sup_config, wait_workers)


def test_sigusr1_reopens_log_file(tmp_path, redis_tcp, digestd_factory):
    r = redis_tcp.client()
    logf = tmp_path / "digestd.log"
    text, _ = sup_config(tmp_path, redis_tcp, {"priority": {"workers": 1}},
                         supervisor="log_file = %s" % logf)
    d = digestd_factory(text).start()
    wait_workers(d, 1, "priority")
    wait_for(lambda: logf.exists() and "starting" in logf.read_text(), timeout=5,
             what="log in the file")
    os.rename(logf, str(logf) + ".1")
    d.signal(signal.SIGUSR1)
    wait_for(lambda: logf.exists() and "log file reopened" in logf.read_text(), timeout=5,
             what="supervisor reopened")
    # A worker's lines land in the new file too.
    uids = seed_group(r, 51, members=2)
    f = job_fields(51, uids)
    enqueue(r, "priority", f)
    wait_for(lambda: checkpoint(r, f["job_id"]).get("state") == "done", timeout=15,
             what="job done")
    wait_for(lambda: "role=worker" in logf.read_text() and "job done" in logf.read_text(),
             timeout=5, what="worker line in the new file")
    assert "job done" not in open(str(logf) + ".1").read()
    assert d.stop() == 0
