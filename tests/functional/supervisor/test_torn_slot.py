"""A process killed in the middle of writing its record in the shared
segment leaves the record's sequence number odd, for good: a worker killed
inside the write of its job in hand, the sampler killed inside the write of
the queue figures.  The supervisor must not wait for a write that will never
end: it keeps answering /healthz, /status and /metrics, reaps and replaces
the worker, requeues its job so that nobody misses their digest, and makes
the record readable again once the writer is reaped.

The exact window (a few stores) cannot be hit by chance, so the torn state
is made from outside, on the real binary: the writer is stopped (SIGSTOP),
its record is torn in the running supervisor's segment through
/proc/PID/mem (sequence made odd, the second half of the record
scribbled), and the writer is SIGKILLed.  That is the state a kill between
the first and the last store of the write leaves.  The offsets come from
scoreboard.h itself (sb_layout.c, compiled here), and each write checks
the segment's magic and the slot's pid first.
"""
import collections
import json
import os
import signal
import struct
import subprocess
import threading
import time
import urllib.request

from lib.harness import ROOT, wait_for
from lib.metrics_util import samples, start_digestd, stop_digestd, two_pool_config
from lib.pipeline_data import (  # noqa: F401
    Data, enqueue, job_state, rcpts, window)

HTTP_TIMEOUT = 3        # a supervisor that spins answers nothing: fail fast
KILLS = 24              # every other one torn
GROUPS = 24
MEMBERS = 150
BATCH = 25


def layout(tmp_path):
    """The segment's offsets, from the header digestd is built from."""
    exe = os.path.join(str(tmp_path), "sb_layout")
    subprocess.run(["cc", "-std=gnu11", "-D_GNU_SOURCE",
                    "-I", os.path.join(ROOT, "common"), "-o", exe,
                    os.path.join(ROOT, "tests", "functional", "lib", "sb_layout.c")],
                   check=True)
    out = subprocess.run([exe], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class Segment:
    """The scoreboard mapping of a running supervisor, via /proc/PID/mem."""

    def __init__(self, pid, lay):
        self.pid = pid
        self.lay = lay
        self.base = None
        with open("/proc/%d/maps" % pid) as f:
            for line in f:
                fields = line.split()
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                # MAP_SHARED | MAP_ANONYMOUS: "rw-s", a deleted /dev/zero.
                if fields[1] != "rw-s" or hi - lo < lay["size"]:
                    continue
                magic, = struct.unpack("<I", self.read_at(
                    lo + lay["off_magic"], 4))
                nslots, = struct.unpack("<I", self.read_at(
                    lo + lay["off_nslots"], 4))
                if magic == lay["magic"] and nslots == lay["nslots"]:
                    self.base = lo
                    break
        assert self.base is not None, "no scoreboard mapping in %d" % pid

    def read_at(self, addr, n):
        with open("/proc/%d/mem" % self.pid, "rb", buffering=0) as f:
            f.seek(addr)
            return f.read(n)

    def read(self, off, n):
        return self.read_at(self.base + off, n)

    def write(self, off, data):
        with open("/proc/%d/mem" % self.pid, "r+b", buffering=0) as f:
            f.seek(self.base + off)
            assert f.write(data) == len(data)

    def slot_off(self, i):
        return self.lay["off_slots"] + i * self.lay["slot_size"]

    def slot_of(self, pid):
        for i in range(self.lay["nslots"]):
            off = self.slot_off(i) + self.lay["slot_pid"]
            if struct.unpack("<i", self.read(off, 4))[0] == pid:
                return i
        return None

    def tear(self, seq_off, rec_off, rec_size):
        """What a writer killed mid-write leaves: an odd sequence, and a
        record whose second half is neither the old value nor the new."""
        seq = struct.unpack("<I", self.read(seq_off, 4))[0]
        self.write(seq_off, struct.pack("<I", seq | 1))
        half = rec_size // 2
        self.write(rec_off + half, b"\xa5" * (rec_size - half))

    def tear_job(self, i):
        s = self.slot_off(i)
        self.tear(s + self.lay["slot_job_seq"], s + self.lay["slot_job"],
                  self.lay["job_size"])

    def tear_stats(self):
        s = self.lay["off_stats"]
        self.tear(s + self.lay["stats_seq"], s + self.lay["stats_body"],
                  self.lay["stats_size"] - self.lay["stats_body"])

    def job_seq(self, i):
        off = self.slot_off(i) + self.lay["slot_job_seq"]
        return struct.unpack("<I", self.read(off, 4))[0]

    def stats_seq(self):
        off = self.lay["off_stats"] + self.lay["stats_seq"]
        return struct.unpack("<I", self.read(off, 4))[0]


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=HTTP_TIMEOUT) as r:
        return r.status, r.read().decode("utf-8")


def status(d):
    code, body = get(d.port, "/status")
    assert code == 200, body
    return json.loads(body)


class Poller(threading.Thread):
    """Asks /healthz, /status and /metrics in turn; every failure is kept."""

    PATHS = ("/healthz", "/status", "/metrics")

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_ev = threading.Event()
        self.answers = collections.Counter()
        self.errors = []

    def run(self):
        k = 0
        while not self.stop_ev.is_set():
            path = self.PATHS[k % len(self.PATHS)]
            k += 1
            try:
                code, body = get(self.port, path)
                if code != 200:
                    self.errors.append((path, code))
                elif path == "/status":
                    json.loads(body)
                self.answers[path] += 1
            except Exception as e:
                self.errors.append((path, repr(e)))
            time.sleep(0.02)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=10)


def sampler_pid(d):
    for pid in d.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"sampler" in f.read():
                    return pid
        except OSError:
            pass
    return None


def shut(d):
    """Drain a supervisor that answers; kill one that does not."""
    if d.http_status("/healthz") == 200:
        stop_digestd(d)
    else:
        d.kill()


def gauge(body, name):
    (v,) = [v for n, l, v in samples(body) if n == name]
    return v


def test_torn_job_writes_of_killed_workers(tmp_path, redis_tcp, smtp_sink):
    lay = layout(tmp_path)
    r = redis_tcp.client()
    ws, we = window()
    data = Data(r)
    for g in range(GROUPS):
        gid = 8000 + g
        data.group(gid, name="Torn %d" % g)
        uids = range(300000 + g * MEMBERS, 300000 + (g + 1) * MEMBERS)
        data.members(gid, uids)
        pipe = r.pipeline(transaction=False)
        for u in uids:
            pipe.hset("user:%d" % u, mapping={"email": "u%d@example.org" % u,
                                              "name": "U%d" % u})
        pipe.execute()
        data.post(gid, 800000 + g, we - 60, title="Post %d" % g, author_id=1)

    def slow(addr):
        time.sleep(0.002)     # the sink's loop: about 500 emails/s
        return None

    smtp_sink.reply_for = slow
    cfg = two_pool_config(tmp_path, redis_tcp, sink=smtp_sink, workers=(1, 2),
                          max_attempts=1000, visibility="3s")
    with open(cfg) as f:
        text = f.read().replace("batch_size = 100", "batch_size = %d" % BATCH)
    with open(cfg, "w") as f:
        f.write(text)
    d = start_digestd(tmp_path, cfg)
    seg = Segment(d.pid(), lay)
    poller = Poller(d.port)
    jobs = []
    kills = torn = 0
    try:
        poller.start()
        for g in range(GROUPS):
            jobs.append(enqueue(r, 8000 + g, "daily", ws, we,
                                queue="priority" if g % 3 == 0 else "standard"))
        wait_for(lambda: smtp_sink.count() > 0, timeout=30, what="first email")

        deadline = time.monotonic() + 120
        while kills < KILLS and time.monotonic() < deadline:
            busy = [w for w in status(d)["workers"] if w.get("job") and w["pid"]]
            if not busy:
                time.sleep(0.02)
                continue
            w = busy[kills % len(busy)]
            pid = w["pid"]
            tear = kills % 2 == 0
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            i = seg.slot_of(pid)
            if i is None:           # already reaped and its slot reused
                os.kill(pid, signal.SIGKILL)
                continue
            if tear:
                seg.tear_job(i)
                assert seg.job_seq(i) & 1
                torn += 1
            os.kill(pid, signal.SIGKILL)
            kills += 1

            # The supervisor still answers, reaps the worker and starts
            # another in its place.
            def replaced():
                ws_ = status(d)["workers"]
                mine = [x for x in ws_ if x["pool"] == w["pool"] and
                        x["slot"] == w["slot"]]
                return mine and mine[0]["pid"] != pid
            wait_for(replaced, timeout=15, what="worker %d replaced" % pid)
            assert get(d.port, "/healthz")[0] == 200
            time.sleep(0.05)
        assert kills == KILLS, "only %d kills in time" % kills

        # The slots of the torn kills were repaired: every job in hand
        # reads (a live worker's own write can hide its job for an instant).
        wait_for(lambda: not any(w.get("job_unknown")
                                 for w in status(d)["workers"]),
                 timeout=5, what="every job in hand readable")

        def all_done():
            if d.exited():
                raise AssertionError("digestd exited:\n" + d.log()[-3000:])
            return all(job_state(r, j).get("state") == "done" for j in jobs)
        wait_for(all_done, timeout=180, interval=0.5, what="every job done")
    finally:
        poller.stop()
        log = d.log()
        tail = log[-4000:]
        shut(d)

    assert not poller.errors, (poller.errors[:5], tail)
    assert min(poller.answers[p] for p in Poller.PATHS) >= 10, poller.answers
    got = collections.Counter(rcpts(smtp_sink))
    want = {"u%d@example.org" % u
            for u in range(300000, 300000 + GROUPS * MEMBERS)}
    missing = want - set(got)
    assert not missing, "lost: %s" % sorted(missing)[:10]
    # A torn kill loses the slot's cursor (the job id is unreadable): the
    # job resumes from its last checkpoint, a batch at most; a plain kill
    # re-sends at most the message in flight.
    dups = sum(c - 1 for c in got.values())
    assert dups <= torn * BATCH + (kills - torn), (dups, torn, kills)
    print("kills=%d torn=%d seen torn=%d duplicates=%d answers=%s" % (
        kills, torn, log.count("worker died writing its job in hand"), dups,
        dict(poller.answers)))


def test_torn_queue_figures_of_a_killed_sampler(tmp_path, redis_tcp):
    lay = layout(tmp_path)
    r = redis_tcp.client()
    for k in range(3):
        r.xadd("digest:dlq", {"job_id": "daily.1.%d.0" % k, "reason": "test"})
    cfg = two_pool_config(tmp_path, redis_tcp, workers=(1, 1))
    d = start_digestd(tmp_path, cfg)
    seg = Segment(d.pid(), lay)
    try:
        def sampled():
            _, body = get(d.port, "/metrics")
            return gauge(body, "digest_dead_letters") == 3 and \
                gauge(body, "digest_queue_sampled_timestamp_seconds") > 0
        wait_for(sampled, timeout=20, what="a first sample")

        for rnd in range(2):
            sp = sampler_pid(d)
            assert sp, d.children()
            os.kill(sp, signal.SIGSTOP)
            _, body = get(d.port, "/metrics")
            before = gauge(body, "digest_queue_sampled_timestamp_seconds")
            seg.tear_stats()
            assert seg.stats_seq() & 1

            # The writer is alive but stuck mid-write: the last good
            # figures, at once.
            for path in ("/metrics", "/status", "/healthz"):
                code, body = get(d.port, path)
                assert code == 200, (path, body)
            _, body = get(d.port, "/metrics")
            assert gauge(body, "digest_dead_letters") == 3
            assert gauge(body, "digest_queue_sampled_timestamp_seconds") == before
            st = status(d)
            assert st["dead_letters"] == 3

            # Killed mid-write: reaped, repaired, and a new sampler
            # publishes fresh figures.
            os.kill(sp, signal.SIGKILL)

            def fresh():
                _, b = get(d.port, "/metrics")
                return gauge(b, "digest_queue_sampled_timestamp_seconds") > before
            wait_for(fresh, timeout=20, what="a sample after the kill")
            assert sampler_pid(d) not in (None, sp)
            _, body = get(d.port, "/metrics")
            assert gauge(body, "digest_dead_letters") == 3
            for n, l, v in samples(body):
                if n.startswith("digest_queue_"):
                    assert v == v and v >= 0, (n, l, v)    # no NaN, no garbage
    finally:
        shut(d)
