"""docs/scaling.md quotes the latest benchmark run: every figure of its
"What one instance delivers" table that comes from bench/results is the
one in bench/results/results.json (a new `make bench` run that changes a
figure fails here until the page is updated).
"""
import json
import os

from lib.harness import ROOT


def load():
    with open(os.path.join(ROOT, "bench", "results", "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(ROOT, "docs", "scaling.md")) as f:
        text = f.read()
    table = text.split("## What one instance delivers", 1)[1].split("\n## ", 1)[0]
    return results, table


def test_scaling_quotes_the_latest_bench_run():
    r, table = load()
    e2e, fig = r["e2e"], r["figures"]
    want = [
        "**{:,.0f} emails/s**".format(e2e["digestd"]["emails_per_sec"]),
        "{:,} emails in {:.1f} s".format(e2e["digestd"]["emails"],
                                         e2e["digestd"]["seconds"]),
        "reached {:,.0f}/s".format(e2e["ceiling"]["emails_per_sec"]),
        "a ratio of {:.2f}".format(e2e["ratio"]),
        "| {:.0f} us, i.e. about {:,.0f} emails/s per core".format(
            fig["worker_cpu_us"], round(1e6 / fig["worker_cpu_us"], -2)),
        "| {:,.0f} emails/s per core |".format(round(fig["render_per_core"], -3)),
        "{:.2f} commands, {:.2f} round trips".format(
            e2e["redis"]["commands_per_email"], fig["redis_rtt_per_email"]),
        "{:.1f} MB peak RSS".format(fig["worker_hwm_mb"]),
    ]
    for w in want:
        assert w in table, "docs/scaling.md lacks %r (bench/results/results.json)" % w
