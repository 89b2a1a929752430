"""The chaos run's short form (tests/chaos/run.py; `make chaos` is the full
one): worker SIGKILLs, a whole instance SIGKILLed and replaced, a Redis
crash and restart on its AOF, a 4xx burst, greylisting, a recipient
deferred for ever and an outage of the SMTP sink, SIGHUPs (one broken, one
resizing), a schedule run while groups:active changes under it, then
SIGTERM.  Nothing may be lost, duplicates stay bounded (one per killed
worker, one per job in hand of the instance killed whole), counters never
go down, digestd exits 0 and leaves no zombie.  The same on the amqp
backend with a broker restart."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "chaos"))

import run as chaos  # noqa: E402


def assert_figures(res):
    # A string, which pytest shows whole (a dict it would cut short).
    figures = json.dumps({k: v for k, v in res.items() if k not in ("lost_sample",)},
                         sort_keys=True, default=str)
    assert res["lost"] == 0, figures
    assert res["unexpected"] == 0, figures
    assert res["jobs_done"] == res["jobs"], figures
    assert res["dead_letters"] == 0, figures
    assert res["duplicates"] <= res["kills"] + res["jobs_in_hand"], figures
    assert res["instance_kills"] == chaos.SHORT["instance_kills"], figures
    assert res["greylisted_replies"] > 0, figures
    assert res["given_up"] > 0 and res["given_up_delivered"] == 0, figures
    assert res["emails_rejected"] >= res["given_up"] + res["given_up_by_clock"], figures
    assert res["exit_code"] == 0, figures
    assert res["zombies_lingering"] == 0 and res["children_after"] == 0, figures
    assert res["counter_decreases"] == 0, figures
    assert res["scrapes"] > 10 and res["scrape_failures"] == 0, figures
    # Every fault really happened and was seen by digestd.
    assert res["kills"] == chaos.SHORT["kills"], figures
    assert res["worker_restarts"]["crash"] >= res["kills"], figures
    assert res["hups"] == chaos.SHORT["hups"], figures
    assert res["reloads"]["failure"] == 1, figures
    assert res["reloads"]["success"] == res["hups"] - 1, figures
    assert res["redis_restarts"] == chaos.SHORT["redis_restarts"], figures
    assert res["deferred_replies"] > 0 and res["emails_deferred"] > 0, figures
    assert res["emails_sent"] >= res["expected"] - res["given_up_by_clock"], figures
    assert chaos.check(res)[0], chaos.check(res)[1]


def test_chaos_redis_short(tmp_path):
    res = chaos.run_chaos(str(tmp_path), backend="redis", short=True, quiet=True)
    assert_figures(res)


def test_chaos_amqp_short(tmp_path, rabbitmq):
    res = chaos.run_chaos(str(tmp_path), backend="amqp", short=True, rabbit=rabbitmq,
                          quiet=True)
    assert_figures(res)
    assert res["broker_restarts"] == 1, json.dumps(res, sort_keys=True, default=str)
