"""One huge value in the activity store costs at most its own member.
Redis allows values of 512 MB; a worker under memory_limit = 64M reads
none of them whole: a user hash with a field far longer than anything
digestd keeps is skipped as bad_data, while an over-long group name, group
url or post field is cut to its cap, as a long one always was.  Everyone
else gets exactly one email, the worker is never restarted for memory,
and the job is done at its first attempt.
"""
from lib.harness import Digestd, metric, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, rcpts, window)

GID = 12
MB = 1 << 20


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0]


def settled(r, jid, d, timeout=90):
    """The job's checkpoint once it is done or dead."""
    def ended():
        if d.exited():
            raise AssertionError("digestd exited:\n" + d.log()[-3000:])
        st = r.hgetall("digest:job:" + jid)
        return st if st.get("state") in ("done", "dead") else None
    return wait_for(ended, timeout=timeout, interval=0.05,
                    what="job %s done or dead" % jid)


def test_huge_fields_cost_their_member_only(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(GID, name="Huge " + "G" * (3 * MB), url="https://example.com/" + "u" * MB)
    uids = list(range(1, 41))
    d.members(GID, uids)
    for u in uids:
        d.user(u, email="u%d@example.org" % u, name="User %d" % u)
    # An 80 MB name, and a few more fields no member could really have.
    r.hset("user:10", "name", "N" * (80 * MB))
    r.hset("user:20", "email", "e" * (5 * MB) + "@example.org")
    r.hset("user:30", "last_seen", "1" * (5 * MB))
    r.hset("user:35", "digest", "d" * (5 * MB))
    bad = {10, 20, 30, 35}
    # Long names, even far over the cap, are still cut, never skipped.
    r.hset("user:5", "name", "Long " + "n" * 3000)
    r.hset("user:6", "name", "Longer " + "n" * 200000)
    d.post(GID, 1, we - 60, title="Title " + "T" * (2 * MB), author_id=999,
           excerpt="E" * (6 * MB), url="https://example.com/p/" + "p" * MB,
           author_name="A" * MB, likes="9" * MB)
    d.post(GID, 2, we - 120, title="Second", author_id=998)

    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, memory_limit="64M",
                 batch=8)
    proc = Digestd(cfg, tmp_path).start()
    try:
        jid = enqueue(r, GID, "daily", ws, we)
        st = settled(r, jid, proc)
        assert st["state"] == "done", (st, metric_sum(
            proc.metrics(), "digest_worker_restarts_total", reason="oom"))
        want = sorted("u%d@example.org" % u for u in uids if u not in bad)
        assert sorted(rcpts(smtp_sink)) == want
        assert st["attempts"] == "1", st
        text = proc.metrics()
        assert metric(text, "digest_recipients_skipped_total", pool="standard",
                      reason="bad_data") == len(bad)
        assert metric_sum(text, "digest_worker_restarts_total") == 0
        assert metric_sum(text, "digest_jobs_total", result="ok") == 1
        assert metric_sum(text, "digest_jobs_total", result="retried") == 0
        assert not r.exists("digest:dlq")
        for m in smtp_sink.parsed():
            assert len(m.as_bytes()) < 64 * 1024
            # The group's name and the post's title, cut to their caps.
            assert "Huge GGG" in m["Subject"]
            assert "Title TTT" in m.get_body(("plain",)).get_content()
        for w in proc.status()["workers"]:
            hwm = vm_hwm_kib(w["pid"])
            print("\nhuge fields: worker peak RSS %.1f MiB" % (hwm / 1024.0))
            assert hwm < 64 * 1024
        assert proc.stop() == 0
    finally:
        proc.kill()
