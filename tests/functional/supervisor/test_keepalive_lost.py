"""A job that another instance took over is theirs.  After a partition
longer than visibility_timeout, another instance reclaims the entry of a
job this worker still runs; the keepalive must then not claim it back
(it claims only while the entry is pending under this worker), and the
worker stops sending for that job at once, without acknowledging, giving
back or dead-lettering it: the new owner has it.
"""
import time

from lib.harness import Digestd, SmtpSink, metric, wait_for
from lib.pipeline_data import Data, config, enqueue, wait_done, window

GID = 7
OTHER = "other-host:4242:standard#0.1"


def owner(r, entry):
    p = r.xpending_range("digest:q:standard", "digestd", entry, entry, 1)
    return p[0]["consumer"] if p else None


def test_keepalive_leaves_a_reclaimed_job_to_its_new_owner(tmp_path, redis_server):
    r = redis_server.client()
    ws, we = window()
    data = Data(r)
    data.group(GID, name="Partitioned")
    uids = list(range(1, 201))
    data.members(GID, uids)
    for u in uids:
        data.user(u, email="u%d@example.org" % u)
    data.post(GID, 1, we - 60, title="Hello", author_id=999)
    sink = SmtpSink(delay=0.1)
    sink.start()
    d = None
    try:
        cfg = config(tmp_path, redis_server, sink=sink, batch=10)
        d = Digestd(cfg, tmp_path).start()
        jid = enqueue(r, GID, "daily", ws, we)
        wait_for(lambda: len(sink.recipients()) >= 20, timeout=30,
                 what="20 emails")
        p = r.xpending_range("digest:q:standard", "digestd", "-", "+", 10)
        assert len(p) == 1, p
        entry = p[0]["message_id"]
        # Another instance's reclaim, after a partition.
        r.xclaim("digest:q:standard", "digestd", OTHER, 0, [entry],
                 justid=True)
        t0 = time.monotonic()

        # The worker stops sending for the job within a few seconds ...
        last = [len(sink.recipients()), time.monotonic()]

        def quiet():
            n = len(sink.recipients())
            if n != last[0]:
                last[:] = [n, time.monotonic()]
            return time.monotonic() - last[1] >= 2.0
        wait_for(quiet, timeout=15, interval=0.1, what="sending stopped")
        stopped_after = last[1] - t0
        print("\nsending stopped %.1f s after the reclaim, %d of %d sent"
              % (stopped_after, last[0], len(uids)))
        assert stopped_after < 5, stopped_after
        assert last[0] < len(uids)

        # ... and leaves the entry with its new owner: not claimed back,
        # acknowledged, given back nor dead-lettered.
        time.sleep(2.5)     # more than two keepalive periods
        assert owner(r, entry) == OTHER
        assert r.xlen("digest:q:standard") == 1
        assert not r.exists("digest:dlq")
        assert len(sink.recipients()) == last[0]
        got = sink.recipients()
        assert len(got) == len(set(got)), "sent twice before the new owner ran"
        text = d.metrics()
        for result in ("ok", "retried", "failed", "dead_lettered"):
            assert metric(text, "digest_jobs_total", pool="standard",
                          result=result) == 0, result
        st = r.hgetall("digest:job:" + jid)
        assert st.get("state") == "running", st
        assert st.get("attempts") == "1", st

        # The new owner gives it back (as its supervisor would once it
        # dies): the job resumes from the checkpoint the first worker left,
        # and nobody gets the digest twice.
        fields = r.xrange("digest:q:standard", entry, entry)[0][1]
        r.xadd("digest:q:standard", fields)
        r.xack("digest:q:standard", "digestd", entry)
        wait_done(r, jid, timeout=60, d=d)
        got = sink.recipients()
        assert sorted(got) == sorted("u%d@example.org" % u for u in uids), (
            sorted({x for x in got if got.count(x) > 1}))
        assert d.stop() == 0
    finally:
        if d is not None:
            d.kill()
        sink.stop()
