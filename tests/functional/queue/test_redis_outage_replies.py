"""A Redis that answers, but says it cannot serve now, is an outage, never
the job's fault: the activity store restarting (LOADING), running a long
script (BUSY), or a replica cut from its master (MASTERDOWN); the queue
Redis out of memory (OOM) or demoted in a failover (READONLY).  The
attempts such a server cost are given back, the job waits with backoff,
and once the server serves again every member gets exactly one email and
nothing reaches the dead letters.  A key of the wrong type is still the
data's fault, and costs that member only.
"""
import os
import socket
import subprocess
import threading
import time

import pytest
import redis as redis_py

from lib.harness import (
    Digestd, SmtpSink, TcpRedis, metric, metric_sum, wait_for)
from lib.pipeline_data import Data, enqueue, wait_done, window
from lib.scale_util import config

MEMBERS = 40


class LoadingRedis(TcpRedis):
    """A TcpRedis that can be restarted on its RDB so slowly that it answers
    LOADING for seconds (key-load-delay, a Redis 7 setting)."""

    def restart_loading(self, delay_us):
        c = self.client()
        c.save()
        self.stop()
        self.extra = [
            "--key-load-delay", str(delay_us),
            # Answer (LOADING) while loading, not only between 2 MB reads.
            "--loading-process-events-interval-bytes", "1024",
        ]
        try:
            self.start(wait=False)
        finally:
            self.extra = []
        wait_for(lambda: self.state() == "loading", timeout=10,
                 what="redis-server loading")

    def state(self):
        try:
            self.client(socket_timeout=1).ping()
            return "up"
        except redis_py.exceptions.BusyLoadingError:
            return "loading"
        except Exception as e:
            return "loading" if "LOADING" in str(e) else "down"


@pytest.fixture
def servers(tmp_path):
    """The activity store and a separate queue Redis, on loopback ports."""
    data = LoadingRedis(tmp_path / "data").start()
    queue = TcpRedis(tmp_path / "queue").start()
    try:
        yield data, queue
    finally:
        queue.stop()
        data.stop()


@pytest.fixture
def mute_master():
    """A port that takes connections and never answers: a master that a
    replica pointed at stays in handshake with (no other server can take
    the port, so nothing is ever synced over our data)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def seed_groups(data, gids, members=MEMBERS):
    """Groups gids, each with members uid = gid * 1000 + 1 .. + members."""
    ws, we = window()
    d = Data(data.client())
    want = []
    for gid in gids:
        uids = [gid * 1000 + i for i in range(1, members + 1)]
        d.group(gid, name="Group %d" % gid)
        d.members(gid, uids)
        for u in uids:
            d.user(u, email="u%d@example.org" % u)
            want.append("u%d@example.org" % u)
        d.post(gid, gid, we - 60, title="News of %d" % gid, author_id=999)
    return sorted(want)


def start(tmp_path, data, queue, sink, max_attempts=3, batch=10):
    cfg = config(tmp_path, data.config_section(), queue.config_section("queue_redis"),
                 pools=("standard",), workers=1, sink=sink, batch=batch,
                 max_attempts=max_attempts)
    return Digestd(cfg, tmp_path).start()


def check_outcome(d, queue, sink, jids, want):
    """Every job done, nobody twice, nothing dead-lettered, the errors seen."""
    q = queue.client()
    for jid in jids:
        st = settled(q, jid, d)
        assert st.get("state") == "done", (st, q.xrange("digest:dlq"))
    got = sorted(sink_rcpts(sink))
    assert got == want, "missing %s, twice %s" % (
        sorted(set(want) - set(got)),
        sorted({r for r in got if got.count(r) > 1}))
    assert q.xlen("digest:dlq") == 0, q.xrange("digest:dlq")
    text = d.metrics()
    assert metric(text, "digest_jobs_total", pool="standard",
                  result="dead_lettered") == 0
    assert metric(text, "digest_redis_errors_total", pool="standard") > 0
    assert metric_sum(text, "digest_recipients_skipped_total",
                      reason="bad_data") == 0
    return text


def settled(q, jid, d, timeout=90):
    """The job's checkpoint once it is done or dead."""
    def ended():
        if d.exited():
            raise AssertionError("digestd exited:\n" + d.log()[-3000:])
        st = q.hgetall("digest:job:" + jid)
        return st if st.get("state") in ("done", "dead") else None
    try:
        return wait_for(ended, timeout=timeout, interval=0.05,
                        what="job %s done or dead" % jid)
    except AssertionError as e:
        raise AssertionError("%s: checkpoint %s, pending %s" % (
            e, q.hgetall("digest:job:" + jid),
            q.xpending("digest:q:standard", "digestd")))


def sink_rcpts(sink):
    with sink.lock:
        return [m[1] for m in sink.messages]


def test_activity_store_loading_after_a_restart(tmp_path, servers):
    """The activity store restarts and loads its dataset for seconds: every
    job fetched meanwhile waits for it instead of spending its attempts."""
    data, queue = servers
    want = seed_groups(data, [1, 2])
    # Enough keys that loading them, 150 us each, takes about 6 s.
    c = data.client()
    pipe = c.pipeline(transaction=False)
    for i in range(40000):
        pipe.set("pad:%d" % i, "x")
    pipe.execute()
    sink = SmtpSink().start()
    d = None
    try:
        d = start(tmp_path, data, queue, sink)
        data.restart_loading(150)
        ws, we = window()
        q = queue.client()
        jids = [enqueue(q, gid, "daily", ws, we) for gid in (1, 2)]
        # The jobs were tried while it loaded.
        wait_for(lambda: metric(d.metrics(), "digest_redis_errors_total",
                                pool="standard") >= 2, timeout=20,
                 what="a job tried during LOADING")
        assert data.state() == "loading"
        check_outcome(d, queue, sink, jids, want)
        assert d.stop() == 0
    finally:
        if d is not None:
            d.kill()
        sink.stop()


def test_activity_store_busy_with_a_script(tmp_path, servers):
    """A long script holds the activity store: its BUSY replies are an
    outage, and the job is done once the script is killed."""
    data, queue = servers
    want = seed_groups(data, [3])
    c = data.client()
    c.config_set("busy-reply-threshold", 100)
    sink = SmtpSink().start()
    d = None
    busy = threading.Thread(target=run_busy_script, args=(data,), daemon=True)
    try:
        d = start(tmp_path, data, queue, sink)
        busy.start()
        wait_for(lambda: "BUSY" in reply_of(data), timeout=10,
                 what="the store BUSY")
        ws, we = window()
        jid = enqueue(queue.client(), 3, "daily", ws, we)
        wait_for(lambda: metric(d.metrics(), "digest_redis_errors_total",
                                pool="standard") >= 3, timeout=20,
                 what="three attempts while BUSY")
        kill_script(data)
        busy.join(timeout=10)
        check_outcome(d, queue, sink, [jid], want)
        assert d.stop() == 0
    finally:
        kill_script(data)
        if d is not None:
            d.kill()
        sink.stop()


def run_busy_script(srv):
    try:
        srv.client(socket_timeout=60).eval("while true do end", 0)
    except Exception:
        pass        # killed by SCRIPT KILL, as meant


def kill_script(srv):
    try:
        srv.client(socket_timeout=2).script_kill()
    except Exception:
        pass        # none running


def reply_of(srv):
    try:
        return str(srv.client(socket_timeout=2).hget("group:0", "name"))
    except Exception as e:
        return str(e)


def test_activity_store_replica_cut_from_its_master(tmp_path, servers,
                                                   mute_master):
    """A replica that serves no stale data answers MASTERDOWN while its
    master is away: the job waits for it."""
    data, queue = servers
    want = seed_groups(data, [4])
    sink = SmtpSink().start()
    d = None
    c = data.client()
    try:
        d = start(tmp_path, data, queue, sink)
        c.config_set("replica-serve-stale-data", "no")
        c.replicaof("127.0.0.1", mute_master)
        wait_for(lambda: "MASTERDOWN" in reply_of(data), timeout=10,
                 what="MASTERDOWN")
        ws, we = window()
        jid = enqueue(queue.client(), 4, "daily", ws, we)
        wait_for(lambda: metric(d.metrics(), "digest_redis_errors_total",
                                pool="standard") >= 3, timeout=20,
                 what="three attempts while MASTERDOWN")
        c.replicaof("NO", "ONE")
        check_outcome(d, queue, sink, [jid], want)
        assert d.stop() == 0
    finally:
        c.replicaof("NO", "ONE")
        if d is not None:
            d.kill()
        sink.stop()


def queue_outage_mid_job(tmp_path, servers, begin, end):
    """A job well under way when the queue Redis stops taking writes for
    3 s.  max_attempts = 1: a single attempt counted against the job would
    dead-letter it."""
    data, queue = servers
    want = seed_groups(data, [5], members=60)
    sink = SmtpSink(delay=0.05).start()
    d = None
    q = queue.client()
    try:
        d = start(tmp_path, data, queue, sink, max_attempts=1)
        ws, we = window()
        jid = enqueue(q, 5, "daily", ws, we)
        wait_for(lambda: len(sink_rcpts(sink)) >= 15, timeout=30,
                 what="15 emails")
        begin(q)
        time.sleep(3)
        end(q)
        check_outcome(d, queue, sink, [jid], want)
        assert d.stop() == 0
    finally:
        end(q)
        if d is not None:
            d.kill()
        sink.stop()


def test_queue_redis_out_of_memory(tmp_path, servers):
    """maxmemory reached on the queue Redis: checkpoint writes and give-backs
    are refused with OOM for a while."""
    queue_outage_mid_job(
        tmp_path, servers,
        lambda q: q.config_set("maxmemory", 1),
        lambda q: q.config_set("maxmemory", 0))


def test_queue_redis_read_only_in_a_failover(tmp_path, servers, mute_master):
    """The queue Redis demoted to a replica (its new master not answering
    yet): every write is refused with READONLY until it is promoted again."""
    queue_outage_mid_job(
        tmp_path, servers,
        lambda q: q.replicaof("127.0.0.1", mute_master),
        lambda q: q.replicaof("NO", "ONE"))


def test_wrong_type_is_still_the_data(tmp_path, servers):
    """A user key that is not a hash is that member's problem only: skipped
    as having no email, the job done at its first attempt."""
    data, queue = servers
    want = seed_groups(data, [6], members=10)
    data.client().set("user:6003", "a string, not a hash")
    want.remove("u6003@example.org")
    sink = SmtpSink().start()
    d = None
    try:
        d = start(tmp_path, data, queue, sink)
        ws, we = window()
        q = queue.client()
        jid = enqueue(q, 6, "daily", ws, we)
        st = wait_done(q, jid, timeout=30, d=d)
        assert sorted(sink_rcpts(sink)) == want
        assert st["attempts"] == "1", st
        text = d.metrics()
        assert metric(text, "digest_recipients_skipped_total", pool="standard",
                      reason="no_email") == 1
        assert metric(text, "digest_jobs_total", pool="standard",
                      result="retried") == 0
        assert metric(text, "digest_redis_errors_total", pool="standard") == 0
        assert d.stop() == 0
    finally:
        if d is not None:
            d.kill()
        sink.stop()
