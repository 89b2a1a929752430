"""Hostile or broken data in the activity store never stops a group's digest
nor blows a worker's memory: a 1 MB excerpt and a 1 MB title are cut, a
window of 3,000 posts is read only as its newest 1,000, keys of the wrong
type read as missing, and a member id that is not a number is passed over.
"""
from lib.harness import Digestd, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, job_state, rcpts, wait_done, window)


def test_pipeline_hostile_data(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(11, name="Hostile")
    d.members(11, [1, 2, 3, 4])
    r.zadd("group:11:members", {"not-a-number": 5})
    d.user(1, email="u1@example.org")
    r.set("user:2", "a string, not a hash")          # WRONGTYPE: no email
    d.user(3, email="u3@example.org")
    d.user(4, email="u4@example.org")
    huge = "é" * (512 * 1024)                          # 1 MB of UTF-8
    d.post(11, 1, we - 10, title="T" * (1 << 20), excerpt=huge, author_id=9,
           likes=1000)
    r.zadd("group:11:posts", {"2": we - 20})
    r.rpush("post:2", "a list, not a hash")           # WRONGTYPE: no post
    pipe = r.pipeline(transaction=False)
    for i in range(3000):
        pid = 1000 + i
        pipe.zadd("group:11:posts", {str(pid): we - 3600 - i})
        # Every field over its cap: what is kept per post stays bounded.
        pipe.hset("post:%d" % pid, mapping={
            "title": "Bulk %d " % i + "B" * 4000, "author_id": "9", "likes": "0",
            "url": "https://example.com/" + "u" * 8000,
            "author_name": "A" * 4000, "excerpt": "x" * 16000})
    pipe.execute()

    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, memory_limit="32M")
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        st = wait_done(r, enqueue(r, 11, "daily", ws, we), timeout=60, d=proc)
        assert int(st["sent"]) == 3
        assert sorted(rcpts(smtp_sink)) == ["u1@example.org", "u3@example.org",
                                            "u4@example.org"]
        for _, _, raw in smtp_sink.messages:
            assert len(raw) < 64 * 1024, len(raw)
        text = proc.metrics()
        assert metric_sum(text, "digest_recipients_skipped_total",
                          reason="no_email") == 1
        assert metric_sum(text, "digest_worker_restarts_total") == 0
        assert metric_sum(text, "digest_redis_errors_total") == 0
        for w in proc.status()["workers"]:
            with open("/proc/%d/status" % w["pid"]) as f:
                hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0]
            print("\nhostile posts: worker peak RSS %.1f MiB" % (hwm / 1024.0))
            assert hwm < 32 * 1024
    finally:
        proc.kill()


def test_pipeline_redis_error_is_counted_and_retried(tmp_path, redis_tcp, smtp_sink):
    """A group whose posts are not a sorted set cannot be read: a Redis error,
    counted, with the reason in the job's checkpoint; the job is given back
    to be retried, never marked done, and nothing is sent."""
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(12, name="Broken")
    d.members(12, [1])
    d.user(1, email="u1@example.org")
    r.set("group:12:posts", "not a sorted set")
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 12, "daily", ws, we)
        wait_for(lambda: metric_sum(proc.metrics(), "digest_redis_errors_total") >= 2,
                 timeout=30, what="two Redis errors (a retry)")
        st = job_state(r, jid)
        assert st.get("state") != "done", st
        assert "WRONGTYPE" in st.get("last_error", ""), st
        assert smtp_sink.count() == 0
        assert metric_sum(proc.metrics(), "digest_jobs_total", result="retried") >= 1
    finally:
        proc.kill()
