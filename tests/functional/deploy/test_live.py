"""The rules and the dashboard against live data: a real Prometheus
scrapes a running digestd (two pools, real Redis) and redis_exporter,
evaluates deploy/prometheus/digestd.rules.yml every second, and answers
every dashboard query.  Every rule must evaluate without error, and every
panel query must succeed and, unless it filters on a value that an idle
pipeline does not have, return series.
"""
import os
import re
import subprocess

from lib.harness import ROOT, Digestd, RedisServer, base_config, free_port, wait_for, \
    write_config
from lib import deploy_helpers as dh

RULES = os.path.join(ROOT, "deploy", "prometheus", "digestd.rules.yml")
# Shorter than the dashboard's 5m, so that rates have data within seconds.
LIVE_SUBST = [(r"\$__rate_interval|\$\{__rate_interval\}", "30s")] + dh.SUBST


def live_promql(expr):
    for pat, rep in LIVE_SUBST:
        expr = re.sub(pat, rep, expr)
    return expr


def test_rules_and_dashboard_on_live_data(tmp_path):
    rport = free_port()
    srv = RedisServer(tmp_path / "redis", port=rport).start()
    srv.client().config_set("maxmemory", "64mb")
    exporter = prom = d = None
    try:
        cfg, port = base_config(tmp_path, extra="""
[redis]
host = 127.0.0.1
port = %d

[pool.priority]
queue = priority
workers = 1

[pool.standard]
queue = standard
workers = 2
""" % rport)
        d = Digestd(write_config(tmp_path, cfg), tmp_path).start()
        eport = free_port()
        exporter = subprocess.Popen(
            [dh.tool("prometheus-redis-exporter"), "-redis.addr",
             "redis://127.0.0.1:%d" % rport, "-web.listen-address", "127.0.0.1:%d" % eport,
             "-check-single-streams", dh.STREAMS, "-redis-only-metrics"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prom = dh.PrometheusServer(tmp_path / "prom", {
            "digestd": ["127.0.0.1:%d" % port],
            "redis_exporter": ["127.0.0.1:%d" % eport],
        }, rule_files=[RULES]).start()

        def targets_up():
            t = prom.api("targets")["data"]["activeTargets"]
            return len(t) == 2 and all(x["health"] == "up" for x in t)
        wait_for(targets_up, timeout=30, interval=0.5, what="both targets up")

        def rules_ok():
            groups = prom.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if not rules or any(r.get("health") != "ok" for r in rules):
                return None
            return rules
        try:
            rules = wait_for(rules_ok, timeout=30, interval=0.5, what="rules healthy")
        except AssertionError:
            bad = [(r["name"], r.get("health"), r.get("lastError"))
                   for g in prom.api("rules")["data"]["groups"] for r in g["rules"]
                   if r.get("health") != "ok"]
            raise AssertionError("rules not healthy: %s" % bad)
        assert len(rules) >= 20

        # Two scrapes at least inside each rate window.
        wait_for(lambda: prom.api("query", query="count_over_time(up[30s])")["data"]
                 ["result"] and all(float(r["value"][1]) >= 3 for r in
                                    prom.api("query", query="count_over_time(up[30s])")
                                    ["data"]["result"]),
                 timeout=30, interval=0.5, what="three scrapes")
        empty = []
        for title, expr in dh.expressions():
            q = live_promql(expr)
            r = prom.api("query", query=q)
            assert r["status"] == "success", (title, q, r)
            if not r["data"]["result"]:
                empty.append((title, q))
        # Only filters on values that an idle pipeline does not reach may be
        # empty: the oldest waiting job (no job waits) and the last
        # schedule run (none yet).
        for title, q in empty:
            assert "> 0)" in q, "panel %r has no data: %s" % (title, q)
        assert len(empty) <= 3, empty
        # Nothing pages on a healthy idle pipeline but the schedule that
        # never ran (after its `for`, which this test does not wait for).
        firing = [a["labels"]["alertname"] for a in prom.api("alerts")["data"]["alerts"]
                  if a["state"] == "firing"]
        assert firing == [], firing
    finally:
        if prom is not None:
            prom.stop()
        dh.stop_proc(exporter)
        if d is not None:
            d.kill()
        srv.stop()
