"""Servers and configs for the scale-out tests: redis-servers on loopback
ports (primaries and replicas), twemproxy (nutcracker) in front of shards,
HAProxy in front of a primary and its replica, and digestd configs with a
separate [queue_redis].

Everything is started on free loopback ports in the test's temp dir and
stopped by pid; every wait is bounded.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from lib import config as conf
from lib.harness import ROOT, free_port, stop_popen, wait_for

HAPROXY_CFG = os.path.join(ROOT, "deploy", "haproxy", "haproxy.cfg")


class Nutcracker:
    """twemproxy over some redis-servers: ketama distribution, fnv1a_64."""

    def __init__(self, dirpath, servers):
        self.dir = str(dirpath)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.stats_port = free_port()
        self.conf = os.path.join(self.dir, "nutcracker.yml")
        self.log = os.path.join(self.dir, "nutcracker.log")
        lines = [
            "digest:",
            "  listen: 127.0.0.1:%d" % self.port,
            "  hash: fnv1a_64",
            "  distribution: ketama",
            "  redis: true",
            "  auto_eject_hosts: false",
            "  timeout: 2000",
            "  preconnect: true",
            "  servers:",
        ]
        for i, s in enumerate(servers):
            lines.append("   - 127.0.0.1:%d:1 shard%d" % (s.port, i))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        exe = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
        t = subprocess.run([exe, "-t", "-c", self.conf], capture_output=True,
                           text=True, timeout=10)
        assert t.returncode == 0, t.stdout + t.stderr
        self.proc = subprocess.Popen(
            [exe, "-c", self.conf, "-o", self.log, "-v", "6",
             "-s", str(self.stats_port), "-a", "127.0.0.1",
             "-p", os.path.join(self.dir, "nutcracker.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ping, timeout=10, what="nutcracker")
        return self

    def _ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"*2\r\n$6\r\nEXISTS\r\n$1\r\nx\r\n")
                return s.recv(64).startswith(b":")
        except OSError:
            return False

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def stop(self):
        if self.proc is not None:
            stop_popen(self.proc, signal.SIGTERM)
            self.proc = None

    def errors(self):
        """Lines of the proxy's log that tell of a request it refused."""
        try:
            with open(self.log) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        pat = re.compile(r"unsupported|bad req|parsed bad|error|failed",
                         re.IGNORECASE)
        return [l for l in text.splitlines() if pat.search(l)]


class Haproxy:
    """HAProxy with a copy of deploy/haproxy/haproxy.cfg on the test's ports."""

    def __init__(self, dirpath, primary_port, replica_port):
        self.dir = str(dirpath)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        with open(HAPROXY_CFG) as f:
            text = f.read()
        assert "127.0.0.1:6390" in text and "127.0.0.1:6391" in text \
            and "127.0.0.1:6392" in text, "ports of haproxy.cfg changed"
        text = (text.replace("127.0.0.1:6390", "127.0.0.1:%d" % self.port)
                .replace("127.0.0.1:6391", "127.0.0.1:%d" % primary_port)
                .replace("127.0.0.1:6392", "127.0.0.1:%d" % replica_port))
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(text)
        self.log = os.path.join(self.dir, "haproxy.log")
        self.proc = None

    def start(self):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        c = subprocess.run([exe, "-c", "-f", self.cfg], capture_output=True,
                           text=True, timeout=20)
        assert c.returncode == 0, c.stdout + c.stderr
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([exe, "-db", "-f", self.cfg],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        return self

    def config_section(self, name="redis"):
        """[name] reaching whichever server HAProxy sends a session to."""
        return "[%s]\nhost = 127.0.0.1\nport = %d\ntimeout = 2s\n" % (name, self.port)

    def role_via_proxy(self):
        """(role, run_id) of the server HAProxy sends a new session to."""
        import redis
        try:
            r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                            socket_connect_timeout=1, decode_responses=True)
            info = r.info()
            return info.get("role"), info.get("run_id")
        except Exception:
            return None, None

    def stop(self):
        if self.proc is not None:
            stop_popen(self.proc, signal.SIGTERM)
            self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")


def config(tmp_path, redis_sect, queue_sect="", pools=("standard",), workers=2,
           maildir=None, sink=None, listen=None, extra="", name="digestd.conf",
           visibility="10m", max_attempts=3, batch=500):
    """A digestd config: [redis] (and [queue_redis]) as given, maildir or
    SMTP transport, one pool per queue."""
    return conf.build(tmp_path, conf.merge(
        {"supervisor": {"drain_timeout": "20s", "stall_timeout": "20s",
                        "restart_backoff_max": "500ms"},
         "queue": {"max_attempts": max_attempts, "visibility_timeout": visibility},
         "digest": {"batch_size": batch, "max_posts": 10}},
        {"pool.%s" % p: {"queue": p, "workers": workers, "memory_limit": "256M"}
         for p in pools},
        conf.smtp(sink) if sink is not None else
        {"maildir": {"path": maildir or os.path.join(str(tmp_path), "outbox")}}),
        sections=(redis_sect, queue_sect), extra=extra, port=listen, name=name)


def digest_keys(client):
    """Every digest:* key of a Redis, with its type."""
    return {k: client.type(k) for k in client.scan_iter(match="*digest:*", count=1000)}


def jobs_settled(q, queues=("priority", "standard"), pending=None):
    """True when every stream's entries were delivered and acknowledged
    (but for pending[queue] entries known to be held elsewhere)."""
    for name in queues:
        key = "digest:q:" + name
        if not q.exists(key):
            continue
        for g in q.xinfo_groups(key):
            if g["pending"] > (pending or {}).get(name, 0) or (g.get("lag") or 0):
                return False
    return True


def workers_idle(d):
    """True when no worker of d has a job in hand.  A worker counts its
    job just after acknowledging it, and only then lets it go: its figures
    are final once its queue entry is gone and it holds nothing."""
    try:
        return not any(w.get("job") for w in d.status()["workers"])
    except Exception:
        return False


def wait_settled(q, digestds=(), timeout=120, queues=("priority", "standard"),
                 pending=None):
    def ok():
        for d in digestds:
            if d.exited():
                raise AssertionError("digestd exited:\n" + d.log()[-3000:])
        return jobs_settled(q, queues, pending) and all(workers_idle(d) for d in digestds)
    wait_for(ok, timeout=timeout, interval=0.1, what="queues drained")


def checkpoints(q):
    """{job_id: checkpoint hash} of every digest:job:* key."""
    return {k.split("digest:job:", 1)[1]: q.hgetall(k)
            for k in q.scan_iter(match="*digest:job:*", count=1000)}


def now_ms():
    return int(time.time() * 1000)


def sink_pairs(*sinks):
    """(Message-ID, recipient) of every message the sinks accepted."""
    import email
    import email.policy
    out = []
    for s in sinks:
        with s.lock:
            msgs = list(s.messages)
        for _, rcpt, raw in msgs:
            m = email.message_from_bytes(raw, policy=email.policy.default)
            out.append((m["Message-ID"], rcpt))
    return out


def unbounded_keys(client):
    """digest:* keys with neither a TTL nor a trim rule (only the queue
    streams and the dead-letter stream may go without a TTL)."""
    out = []
    for k, typ in digest_keys(client).items():
        kind = k.split("digest:", 1)[1].split(":", 1)[0]
        if typ == "stream" and kind in ("q", "dlq"):
            continue
        if client.ttl(k) < 0:
            out.append((k, typ))
    return out
