"""A real Prometheus server (Debian's prometheus) scrapes digestd every
second, negotiating OpenMetrics, and its query API returns our series:
what a deployment's dashboards and alerts will see.
"""
import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest

from lib.harness import free_port, kill_pid, wait_for
from lib.metrics_util import (OM_ACCEPT, fetch, samples, start_digestd,
                          stop_digestd, two_pool_config)

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    def __init__(self, tmp, target_port):
        self.dir = os.path.join(str(tmp), "prometheus")
        os.makedirs(os.path.join(self.dir, "data"))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "prometheus.yml")
        with open(self.conf, "w") as f:
            f.write("""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: digestd
    static_configs:
      - targets: ['127.0.0.1:%d']
""" % target_port)
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.conf,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(lambda: self._ready() or self.proc.poll() is not None,
                 timeout=60, interval=0.2, what="prometheus ready")
        assert self.proc.poll() is None, self.logtext()
        return self

    def _ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                        timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def logtext(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path,
                                                    urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, q):
        return self.api("query", query=q)["result"]

    def stop(self):
        if self.proc is not None:
            kill_pid(self.proc.pid, signal.SIGTERM, timeout=20)
            self.proc.wait(timeout=10)
            self.proc = None
            self.log.close()


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="no prometheus binary")
def test_prometheus_scrapes_digestd(tmp_path, redis_tcp):
    cfg = two_pool_config(tmp_path, redis_tcp)
    d = start_digestd(tmp_path, cfg)
    prom = Prometheus(tmp_path, d.port)
    try:
        prom.start()

        def scraped():
            return prom.query('up{job="digestd"} == 1')
        wait_for(scraped, timeout=30, interval=0.5, what="a good scrape")

        info = wait_for(lambda: prom.query("digest_build_info"), timeout=10,
                        interval=0.5, what="digest_build_info")
        assert len(info) == 1
        assert info[0]["metric"]["version"] == open(os.path.join(
            os.path.dirname(__file__), "..", "..", "..", "VERSION")).read().strip()
        assert info[0]["value"][1] == "1"

        # /readyz wants one ready worker per pool: the second of `standard`
        # may still have been starting at the first scrapes.
        def idle():
            workers = prom.query('sum by (pool) (digest_workers{state="idle"})')
            got = {w["metric"]["pool"]: float(w["value"][1]) for w in workers}
            return got if got == {"priority": 1.0, "standard": 2.0} else None
        wait_for(idle, timeout=30, interval=0.5, what="every worker idle")

        states = prom.query("digest_workers")
        assert len(states) == 8     # 2 pools x 4 states, no duplicates
        assert {s["metric"]["state"] for s in states} == {
            "starting", "idle", "busy", "draining"}

        # Histograms and counters arrive whole: every bucket of every pool.
        buckets = prom.query("digest_job_duration_seconds_bucket")
        assert len(buckets) == 2 * 13
        assert prom.query('digest_jobs_total{result="ok"}')
        # Prometheus took every sample of the body: none malformed or
        # dropped as a duplicate.
        body = fetch(d.port, headers={"Accept": OM_ACCEPT})[2]
        n = len(samples(body.replace("# EOF\n", "")))
        for q in ("scrape_samples_scraped", "scrape_samples_post_metric_relabeling"):
            r = prom.query(q)
            assert r and float(r[0]["value"][1]) == n, (r, n)
        targets = prom.api("targets")["activeTargets"]
        assert targets and targets[0]["health"] == "up", targets
        assert targets[0]["lastError"] == "", targets
    finally:
        prom.stop()
        stop_digestd(d)
