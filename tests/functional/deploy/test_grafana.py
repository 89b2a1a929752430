"""The Grafana dashboard: every PromQL expression in it parses (promtool
check rules on one generated recording rule per expression), and every
metric it or the alert rules name exists in a real scrape: digest_* and
process_* in a running digestd's /metrics (histograms with their
_bucket/_sum/_count suffixes), redis_* in redis_exporter's scrape of the
same Redis.
"""
import json
import os
import re
import subprocess

import yaml

from lib.harness import ROOT, Digestd, RedisServer, base_config, free_port, wait_for, \
    write_config
from lib import deploy_helpers as dh
from lib.deploy_helpers import DASHBOARD, STREAMS, SUBST, dashboard, expressions, walk_panels  # noqa: F401

RULES = os.path.join(ROOT, "deploy", "prometheus", "digestd.rules.yml")

NAME = re.compile(r"\b((?:digest|process|redis)_[a-z0-9_]+)\b")


def names_in(expr):
    """Metric names in expr, leaving out label values ("redis_exporter")."""
    return set(NAME.findall(re.sub(r'"[^"]*"', '""', expr)))


def variable_queries():
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append(q)
    return out


def promql(expr):
    for pat, rep in SUBST:
        expr = re.sub(pat, rep, expr)
    return expr


def check_rules(tmp_path, exprs):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:expr_%d" % i, "expr": promql(e)} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([dh.tool("promtool"), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_dashboard_shape():
    d = dashboard()
    assert d["uid"] == "digestd"
    titles = [p["title"] for p in walk_panels(d["panels"])]
    for want in ("Queue depth (waiting)", "Jobs / s by result", "Job duration",
                 "Worker restarts by reason", "Worker memory (max RSS per pool)",
                 "Since the last successful schedule run", "Redis memory",
                 "Transport errors / s", "Rejects by class"):
        assert want in titles
    # Rejects by class: a rate per class of the counter whose classes add
    # up to digest_emails_total{result="rejected"}.
    by_class = [p for p in walk_panels(d["panels"]) if p["title"] == "Rejects by class"]
    exprs = [t["expr"] for t in by_class[0]["targets"]]
    assert len(exprs) == 1 and "digest_emails_rejected_total" in exprs[0], exprs
    assert "by (class)" in exprs[0] and "rate(" in exprs[0], exprs
    ids = [p["id"] for p in walk_panels(d["panels"])]
    assert len(ids) == len(set(ids))
    for p in walk_panels(d["panels"]):
        for i, t in enumerate(p.get("targets", [])):
            assert t["refId"] == chr(65 + i)


def test_every_expression_parses(tmp_path):
    exprs = [e for _, e in expressions()]
    assert len(exprs) >= 30
    p = check_rules(tmp_path, exprs)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: %d rules found" % len(exprs) in p.stdout
    # And the check does catch a broken expression.
    p = check_rules(tmp_path, exprs + ["sum by (pool (rate(digest_jobs_total[5m]))"])
    assert p.returncode != 0


def wanted_names():
    """Metric names named by the dashboard and by the rules."""
    names = set()
    for _, e in expressions():
        names |= names_in(e)
    for q in variable_queries():
        names |= names_in(q)
    with open(RULES) as f:
        for g in yaml.safe_load(f)["groups"]:
            for r in g["rules"]:
                names |= names_in(r["expr"])
    return names


def scraped_names(text):
    out = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            out.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return out


def test_metric_names_exist_in_real_scrapes(tmp_path):
    want = wanted_names()
    assert {"digest_queue_depth", "digest_job_duration_seconds_bucket",
            "redis_memory_used_bytes"} <= want
    rport = free_port()
    srv = RedisServer(tmp_path / "redis", port=rport).start()
    exporter = None
    d = None
    try:
        cfg, port = base_config(tmp_path, extra="""
[redis]
host = 127.0.0.1
port = %d
""" % rport + """
[pool.priority]
queue = priority
workers = 1

[pool.standard]
queue = standard
workers = 1
""")
        d = Digestd(write_config(tmp_path, cfg), tmp_path).start()
        want_digest = {n for n in want if not n.startswith("redis_")}
        # Every known series is there from the first scrape; the queue
        # sampler's within 15 s.
        try:
            wait_for(lambda: want_digest <= scraped_names(d.metrics()), timeout=30,
                     interval=0.5, what="the dashboard's metrics in /metrics")
        except AssertionError:
            missing = sorted(want_digest - scraped_names(d.metrics()))
            raise AssertionError("not in digestd's /metrics: %s" % missing)

        # The queue streams exist once the workers are ready.
        r = srv.client()
        wait_for(lambda: r.exists("digest:q:priority") and r.exists("digest:q:standard"),
                 timeout=15, what="the queue streams")
        r.xadd("digest:dlq", {"job_id": "x", "reason": "test"})
        eport = free_port()
        exporter = subprocess.Popen(
            [dh.tool("prometheus-redis-exporter"), "-redis.addr", "redis://127.0.0.1:%d" % rport,
             "-web.listen-address", "127.0.0.1:%d" % eport,
             "-check-single-streams", STREAMS, "-redis-only-metrics"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import urllib.request

        def scrape():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % eport,
                                            timeout=2) as resp:
                    return resp.read().decode()
            except Exception:
                return ""
        text = wait_for(lambda: "redis_up 1" in scrape() and scrape(), timeout=15,
                        interval=0.2, what="redis_exporter")
        want_redis = {n for n in want if n.startswith("redis_")}
        missing = sorted(want_redis - scraped_names(text))
        assert not missing, "not in redis_exporter's scrape: %s" % missing
    finally:
        dh.stop_proc(exporter)
        if d is not None:
            d.kill()
        srv.stop()
