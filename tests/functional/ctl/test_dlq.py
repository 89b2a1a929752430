"""digestctl dlq list / show / delete / requeue against a real redis-server."""
import subprocess
import time

from lib.ctl_util import (  # noqa: F401
    HOSTILE, SAT, DAY, assert_printable, ctl_config, entries, run_raw)
from lib.harness import DIGESTCTL, digestctl


def dead(r, gid, queue="standard", reason="crash", attempts=3):
    job = {"job_id": "daily.%d.%d.0" % (SAT, gid), "group_id": str(gid), "period": "daily",
           "window_start": str(SAT - DAY), "window_end": str(SAT), "member_min": "1",
           "member_max": "99", "enqueued_at": "1764370000.5"}
    r.xadd("digest:dlq", dict(job, reason=reason, attempts=str(attempts),
                              failed_at="%.3f" % time.time(), queue=queue))
    r.hset("digest:job:" + job["job_id"], mapping={"state": "dead", "attempts": attempts,
                                                   "cursor": "42"})
    r.expire("digest:job:" + job["job_id"], 7 * DAY)
    return job


def test_dlq_list(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    p = digestctl(cfg, "dlq", "list")
    assert "0 dead letter(s)" in p.stdout
    dead(r, 1, reason="oom")
    dead(r, 2, queue="priority", reason="stall", attempts=4)
    r.xadd("digest:dlq", {"junk": "x", "reason": "decode: missing job_id", "queue": "standard"})
    p = digestctl(cfg, "dlq", "list")
    lines = p.stdout.splitlines()
    assert "job_id" in lines[0] and "reason" in lines[0]
    row1 = [l for l in lines if "daily.%d.1.0" % SAT in l][0]
    assert "standard" in row1 and "oom" in row1 and " 3 " in row1
    row2 = [l for l in lines if "daily.%d.2.0" % SAT in l][0]
    assert "priority" in row2 and "stall" in row2 and " 4 " in row2
    assert any("decode: missing job_id" in l for l in lines)
    assert "3 dead letter(s)" in p.stdout


def test_dlq_requeue_one_and_all(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    j1 = dead(r, 1)
    j2 = dead(r, 2, queue="priority")
    j3 = dead(r, 3)
    # The marker exists (the job was enqueued once): requeue ignores it.
    r.set("digest:enq:" + j1["job_id"], "standard", ex=DAY)

    p = digestctl(cfg, "dlq", "requeue", j1["job_id"])
    assert "requeued %s on standard" % j1["job_id"] in p.stdout
    (e,) = entries(r, "standard")
    for k in ("job_id", "group_id", "period", "window_start", "window_end",
              "member_min", "member_max"):
        assert e[k] == j1[k]
    assert float(e["enqueued_at"]) > time.time() - 30
    assert r.xlen("digest:dlq") == 2
    h = r.hgetall("digest:job:" + j1["job_id"])
    assert h["attempts"] == "0" and "state" not in h and h["cursor"] == "42"
    assert r.ttl("digest:job:" + j1["job_id"]) > 0
    assert [g["name"] for g in r.xinfo_groups("digest:q:standard")] == ["digestd"]

    p = digestctl(cfg, "dlq", "requeue", "daily.1.404.0", check=False)
    assert p.returncode == 1 and "no dead letter" in p.stderr

    p = digestctl(cfg, "dlq", "requeue", "--all")
    assert "2 job(s) requeued" in p.stdout
    assert [e["job_id"] for e in entries(r, "priority")] == [j2["job_id"]]
    assert sorted(e["job_id"] for e in entries(r, "standard")) == sorted(
        [j1["job_id"], j3["job_id"]])
    assert r.xlen("digest:dlq") == 0


def test_dlq_requeue_keeps_undecodable(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    dead(r, 1)
    r.xadd("digest:dlq", {"job_id": "x", "group_id": "nope", "reason": "decode",
                          "queue": "standard"})
    # --all requeues what it can and reports the rest, without failing:
    # one bad letter must not fail every run of it.
    p = digestctl(cfg, "dlq", "requeue", "--all", check=False)
    assert p.returncode == 0 and "cannot be requeued" in p.stderr, p
    assert "1 job(s) requeued, 1 kept" in p.stdout
    assert len(entries(r, "standard")) == 1
    # The bad one stays for a human to look at, and can be deleted.
    assert r.xlen("digest:dlq") == 1
    (bad,) = [i for i, _ in r.xrange("digest:dlq")]
    p = digestctl(cfg, "dlq", "requeue", "--all")
    assert "0 job(s) requeued, 1 kept" in p.stdout
    # Asked for by its id, it is a failure.
    assert digestctl(cfg, "dlq", "requeue", bad, check=False).returncode == 1
    p = digestctl(cfg, "dlq", "show", bad)
    assert "id: %s" % bad in p.stdout and "group_id = nope" in p.stdout
    p = digestctl(cfg, "dlq", "delete", bad)
    assert "1 dead letter(s) deleted" in p.stdout
    assert r.xlen("digest:dlq") == 0


def test_dlq_json_show_delete(tmp_path, redis_tcp):
    import json
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    j1 = dead(r, 1, reason="oom")
    j2 = dead(r, 2, queue="priority", reason="stall", attempts=4)
    out = json.loads(digestctl(cfg, "dlq", "list", "--json").stdout)
    assert [(l["job_id"], l["queue"], l["reason"], l["attempts"]) for l in out] == [
        (j1["job_id"], "standard", "oom", "3"), (j2["job_id"], "priority", "stall", "4")]
    assert all(l["id"] and l["failed_at"] > time.time() - 60 for l in out)
    # show takes the letter's id or its job id.
    p = digestctl(cfg, "dlq", "show", j2["job_id"])
    assert "reason: stall" in p.stdout and "member_max = 99" in p.stdout
    assert digestctl(cfg, "dlq", "show", out[0]["id"]).stdout.count("reason: ") == 1
    assert digestctl(cfg, "dlq", "show", "nope", check=False).returncode == 1
    p = digestctl(cfg, "dlq", "delete", out[0]["id"])
    assert "1 dead letter(s) deleted" in p.stdout
    assert json.loads(digestctl(cfg, "dlq", "list", "--json").stdout)[0]["job_id"] == \
        j2["job_id"]
    dead(r, 3)
    assert "2 dead letter(s) deleted" in digestctl(cfg, "dlq", "delete", "--all").stdout
    assert r.xlen("digest:dlq") == 0
    assert digestctl(cfg, "dlq", "delete", "nope", check=False).returncode == 1
    assert json.loads(digestctl(cfg, "dlq", "list", "--json").stdout) == []


def test_dlq_usage(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    for args in (["dlq"], ["dlq", "requeue"], ["dlq", "requeue", "a", "--all"],
                 ["dlq", "purge"], ["dlq", "show"], ["dlq", "delete"],
                 ["dlq", "list", "--all"], ["dlq", "show", "a", "--json"]):
        assert digestctl(cfg, *args, check=False).returncode == 2, args


def test_dlq_of_a_real_worker(tmp_path, redis_tcp, digestd_factory):
    """A job that does not decode goes straight to the dead letters through
    jobq; dlq list shows it and stats counts it; a good job requeued from
    the dead letters is then done by the workers."""
    import json
    from lib.harness import wait_for
    from lib.ctl_util import add_group
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    d = digestd_factory(config_path=cfg).start()
    r.xadd("digest:q:standard", {"job_id": "bogus.1", "group_id": "x"})
    wait_for(lambda: r.exists("digest:dlq") and r.xlen("digest:dlq") == 1, timeout=20,
             what="dead letter")
    wait_for(lambda: r.xinfo_groups("digest:q:standard")[0]["pending"] == 0, timeout=10,
             what="ack")
    p = digestctl(cfg, "dlq", "list")
    row = [l for l in p.stdout.splitlines() if "bogus.1" in l]
    assert row and "standard" in row[0], p.stdout
    assert json.loads(digestctl(cfg, "stats", "--json").stdout)["dead_letters"] == 1

    # A good job, dead-lettered as the worker would after max_attempts.
    now = int(time.time())
    start = now - now % DAY
    add_group(r, 5, [1, 2], [(1, start - 10)])
    for u in (1, 2):
        r.hset("user:%d" % u, mapping={"email": "u%d@example.com" % u, "name": "U%d" % u})
    job = {"job_id": "daily.%d.5.0" % start, "group_id": "5", "period": "daily",
           "window_start": str(start - DAY), "window_end": str(start), "member_min": "1",
           "member_max": "2", "enqueued_at": str(now)}
    r.xadd("digest:dlq", dict(job, reason="crash", attempts="3", failed_at=str(now),
                              queue="standard"))
    r.hset("digest:job:" + job["job_id"], mapping={"state": "dead", "attempts": "3"})
    digestctl(cfg, "dlq", "requeue", job["job_id"])
    wait_for(lambda: r.hget("digest:job:" + job["job_id"], "state") == "done", timeout=30,
             what="requeued job done")
    assert r.xlen("digest:dlq") == 1     # the bogus one stays
    import os
    from lib.harness import maildir_messages
    msgs = maildir_messages(os.path.join(str(tmp_path), "outbox"))
    # User 1 wrote the only post: only user 2 hears of it.
    assert [m["To"].addresses[0].addr_spec for m in msgs] == ["u2@example.com"]
    assert d.stop() == 0


# Terminal control sequences: set the title, clear the screen, colour, a
def test_dlq_output_has_no_terminal_controls(tmp_path, redis_tcp):
    """Whoever can write a dead letter (any Redis client) must not be able
    to drive the operator's terminal through `digestctl dlq`: every field
    is printed with its controls made visible (\\x1b), never raw."""
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    job = dead(r, 1)
    # A hostile letter: every field it shows, and a time out of range.
    r.xadd("digest:dlq", {b"job_id": b"daily.1." + HOSTILE, b"queue": HOSTILE,
                          b"reason": b"crash " + HOSTILE, b"attempts": HOSTILE,
                          b"failed_at": b"1e300"})
    # A valid job whose queue is hostile: it is requeued there, and said so.
    r.xadd("digest:dlq", dict(job, job_id="daily.%d.7.0" % SAT, group_id="7",
                              reason="x", attempts="1", failed_at="1e300",
                              queue=HOSTILE))
    rc, out, err = run_raw(cfg, "dlq", "list")
    assert rc == 0, err
    text = assert_printable(out) + assert_printable(err)
    assert "3 dead letter(s)" in text
    assert "\\x1b]0;owned\\x07\\x1b[2J" in text
    assert "\\u009b31m" in text and "\\x9b31m" in text
    assert "forged row" in text and "\nforged row" not in text
    rows = [l for l in text.splitlines() if "owned" in l]
    assert len(rows) == 2 and all(" - " in l for l in rows)  # failed_at 1e300

    rc, out, err = run_raw(cfg, "dlq", "requeue", "--all")
    text = assert_printable(out) + assert_printable(err)
    assert "requeued daily.%d.7.0 on std" % SAT not in text
    assert "requeued daily.%d.7.0 on \\x1b]0;owned" % SAT in text
