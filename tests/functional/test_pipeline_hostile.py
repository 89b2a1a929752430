"""Hostile or broken data in the activity store never stops a group's digest
nor blows a worker's memory: a 1 MB excerpt and a 1 MB title are cut, a
window of 3,000 posts is read only as its newest 1,000, keys of the wrong
type read as missing, and a member id that is not a number is passed over.
"""
from harness import Digestd, metric_sum
from pipeline_data import redis_tcp, Data, config, enqueue, rcpts, wait_done, window  # noqa: F401


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
        pipe.hset("post:%d" % pid, mapping={"title": "Bulk %d" % i,
                                            "author_id": "9", "likes": "0"})
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
    finally:
        proc.kill()


def test_pipeline_redis_error_retries_then_dead_letters(tmp_path, redis_tcp, smtp_sink):
    """A group whose posts are not a sorted set cannot be read: a Redis error,
    counted; the job is retried, then dead-lettered with the reason."""
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(12, name="Broken")
    d.members(12, [1])
    d.user(1, email="u1@example.org")
    r.set("group:12:posts", "not a sorted set")
    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, max_attempts=2)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 12, "daily", ws, we)
        from harness import wait_for
        wait_for(lambda: r.xlen("digest:dlq") >= 1, timeout=30, what="a dead letter")
        entry = r.xrange("digest:dlq")[0][1]
        assert entry["job_id"] == jid
        assert "WRONGTYPE" in entry["reason"] or "redis" in entry["reason"], entry
        assert smtp_sink.count() == 0
        assert metric_sum(proc.metrics(), "digest_redis_errors_total") >= 2
    finally:
        proc.kill()
