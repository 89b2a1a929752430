"""The Prometheus rules and the Alertmanager example: promtool check rules
and promtool test rules pass; every alert has a firing test case and a
runbook section that its runbook_url points to; amtool accepts the
Alertmanager config and routes pages, tickets and Redis alerts where the
comments say.
"""
import glob
import os
import re
import subprocess

import yaml

from lib.harness import ROOT
from lib import deploy_helpers as dh

RULES = os.path.join(ROOT, "deploy", "prometheus", "digestd.rules.yml")
TESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "prometheus", "tests", "*.yml")))
AM = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")
RUNBOOK_BASE = "https://github.com/digestd/digestd/blob/main/docs"
RUNBOOK_TEMPLATE = '{{ or $externalLabels.runbook_base "%s" }}/runbook.md#' % RUNBOOK_BASE


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "%s: %s%s" % (" ".join(args), p.stdout, p.stderr)
    return p.stdout


def alerts():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules():
    out = run(dh.tool("promtool"), "check", "rules", RULES)
    assert "SUCCESS" in out


def test_promtool_test_rules():
    assert TESTS
    out = run(dh.tool("promtool"), "test", "rules", *TESTS)
    assert "FAILED" not in out


def test_every_alert_fires_in_a_test():
    fired = set()
    quiet = set()
    for path in TESTS:
        with open(path) as f:
            doc = yaml.safe_load(f)
        for t in doc["tests"]:
            for case in t.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert len(names) >= 10
    assert names - fired == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a quiet test"


def anchors(markdown):
    """GitHub-style anchors of the markdown's headings."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            a = re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


def test_every_alert_has_a_runbook_entry():
    with open(RUNBOOK) as f:
        text = f.read()
    have = anchors(text)
    for a in alerts():
        url = a["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_TEMPLATE), url
        anchor = url.split("#", 1)[1]
        assert anchor == a["alert"].lower()
        assert anchor in have, "no runbook section for %s" % a["alert"]
        # Each entry says what it means, what to check and what to do.
        section = text.split("## " + a["alert"], 1)[1].split("\n## ", 1)[0]
        for part in ("Meaning", "Check", "Action"):
            assert "**%s**" % part in section, (a["alert"], part)
        assert a["labels"]["severity"] in ("page", "ticket")


def test_runbook_url_is_a_full_url(tmp_path):
    """Expanded, runbook_url is an absolute URL: the project's runbook, or
    the operator's copy named by the external label runbook_base."""
    for base, want in ((None, RUNBOOK_BASE), ("https://wiki.example.net/digestd",
                                              "https://wiki.example.net/digestd")):
        test = {
            "rule_files": [RULES],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": [{"series": 'up{job="digestd",instance="a:9187"}',
                                  "values": "0x10"}],
                "alert_rule_test": [{
                    "eval_time": "5m", "alertname": "DigestdDown",
                    "exp_alerts": [{
                        "exp_labels": {"severity": "page", "job": "digestd",
                                       "instance": "a:9187"},
                        "exp_annotations": {
                            "summary": "digestd on a:9187 is down",
                            "description": "Prometheus has not been able to scrape "
                                           "a:9187 for 3 minutes: the supervisor is not "
                                           "running or its HTTP endpoint does not answer.",
                            "runbook_url": want + "/runbook.md#digestddown"}}]}]}]}
        if base:
            test["tests"][0]["external_labels"] = {"runbook_base": base}
        path = tmp_path / "url_test.yml"
        path.write_text(yaml.safe_dump(test))
        out = run(dh.tool("promtool"), "test", "rules", str(path))
        assert "SUCCESS" in out, out
    assert want.startswith("https://")


def test_amtool_check_config():
    out = run(dh.tool("amtool"), "check-config", AM)
    assert "SUCCESS" in out


def _route(*labels):
    out = run(dh.tool("amtool"), "config", "routes", "test",
              "--config.file=" + AM, *labels)
    return sorted(out.strip().replace(",", " ").split())


def test_alertmanager_routes():
    assert _route("alertname=DigestdDown", "severity=page") == ["digestd-pager"]
    assert _route("alertname=DigestEmailsRejected", "severity=ticket") == \
        ["digestd-tickets"]
    assert _route("alertname=RedisMemoryPressure", "severity=page") == \
        ["digestd-pager", "redis-oncall"]
