"""One AMQP connection per worker for its whole life: 1,000 jobs through
two workers, with `rabbitmqctl list_connections` sampled during the run."""
import collections
import os
import re
import threading
import time

from lib.amqp_util import (
    config,
    drain_queue,
    maildir_ids,
    now_for_tests,
    rabbit_log,
    scheduled,
    start_digestd,
    wait_all_done,
    worker_pids,
    write_groups,
)
from lib.harness import digestctl, wait_for

NJOBS = 1000


def test_one_connection_per_worker_over_1000_jobs(tmp_path, redis_tcp, rabbitmq, vhost,
                                                  digestd_factory):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {g: [100000 + g] for g in range(1, NJOBS + 1)}
    write_groups(r, groups, end)
    # prefetch 4: deliveries wait in the worker while it runs a job.
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, workers=2, prefetch=4)
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now), timeout=300).stdout) == NJOBS
    log_at = len(rabbit_log(rabbitmq))
    d = start_digestd(digestd_factory, cfg)
    t0 = time.monotonic()
    # /readyz wants one ready worker per pool: the second may not have
    # taken its title yet.
    pids = set(wait_for(lambda: (lambda p: p if len(p) == 2 else None)(worker_pids(d)),
                        timeout=30, what="two workers"))

    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rabbitmq.connections(vhost))
            stop.wait(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        wait_all_done(r, NJOBS, timeout=300, d=d)
    finally:
        stop.set()
        t.join(timeout=60)
    print("measured: %d jobs in %.1f s, %d connection samples"
          % (NJOBS, time.monotonic() - t0, len(samples)))
    samples.append(rabbitmq.connections(vhost))
    assert len(samples) >= 2

    names = set()
    for conns in samples:
        per_pid = collections.Counter()
        for c in conns:
            m = re.match(r"digestd worker .* pid=(\d+)$", c["connection_name"])
            if not m:
                continue     # the supervisor's queue sampler, say
            per_pid[int(m.group(1))] += 1
            names.add(c["name"])
        assert set(per_pid) <= pids, (per_pid, pids)
        assert all(n == 1 for n in per_pid.values()), per_pid
    # The same two connections from first sample to last.
    assert len(names) == 2, names
    assert set(worker_pids(d)) == pids
    # The broker logs every connection it accepts, with its name: over the
    # whole run, the workers opened exactly one each.
    opened = [l for l in rabbit_log(rabbitmq)[log_at:].splitlines()
              if "digestd worker" in l and "granted access to vhost '%s'" % vhost in l]
    assert len(opened) == 2, opened

    assert len(maildir_ids(os.path.join(str(tmp_path), "outbox"))) == NJOBS
    assert drain_queue(rabbitmq, vhost, "digest.standard") == []
    assert d.stop() == 0
