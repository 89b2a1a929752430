"""What the benchmarks share: the functional tests' servers and digestd
runner (tests/functional/lib/harness.py), postfix's smtp-sink on a loopback
port and a private postfix relay that discards what it takes, readers of /proc (CPU, peak RSS, bytes read), Redis counters,
percentiles and the JSON each benchmark leaves for bench/run.py.

Every process started here is stopped by pid; every wait is bounded.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))

from lib.harness import (  # noqa: E402,F401
    DIGESTCTL, DIGESTD, POSTFIX, Digestd, PostfixServer, RedisServer,
    base_config, digestctl, free_port, kill_pid, metric_sum, parse_metrics,
    stop_popen, wait_for, write_config)

BUILD = os.environ.get("DIGESTD_BUILD", "build")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


class PostfixSink:
    """postfix's smtp-sink on 127.0.0.1: accepts everything, keeps nothing.

    It is one event-driven process, so /proc/<pid>/io's rchar is every byte
    it read from its clients: divided by the messages, the size on the wire.
    """

    name = "smtp-sink"

    def __init__(self, backlog=256):
        self.port = free_port()
        self.backlog = backlog
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-m", "1024",
             "127.0.0.1:%d" % self.port, str(self.backlog)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, timeout=10, what="smtp-sink")
        return self

    def _up(self):
        import socket
        if self.proc.poll() is not None:
            raise RuntimeError("smtp-sink exited %d" % self.proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(64).startswith(b"220")
        except OSError:
            return False

    def rchar(self):
        return proc_io(self.proc.pid)["rchar"]

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def cpu_seconds(self):
        """Its CPU since it started (user + system), seconds."""
        c = self.cpu()
        return c["utime"] + c["stime"]

    def wait_drained(self, timeout=0):
        """Nothing is queued behind smtp-sink: 0 s."""
        return 0.0

    def ehlo(self):
        return ehlo_keywords(self.port)

    def section(self, sessions=500):
        return ("[smtp]\nhost = 127.0.0.1\nport = %d\nstarttls = off\n"
                "messages_per_session = %d\n" % (self.port, sessions))

    def stop(self):
        if self.proc is not None:
            stop_popen(self.proc, signal.SIGTERM, timeout=5)
            self.proc = None


class PostfixRelay(PostfixServer):
    """A real postfix as the sink: smtpd on a loopback port offering
    PIPELINING and CHUNKING, cleanup writing each message to a queue on
    tmpfs, qmgr handing it to the discard transport: the work a relay in
    front of digestd does, without the network beyond it.

    Its CPU is the whole tree under postfix's master (smtpd, cleanup,
    trivial-rewrite, qmgr, discard...), the exited processes included
    through the master's cutime and cstime.  Needs root.
    """

    name = "postfix"

    def cpu_seconds(self):
        return tree_cpu(self.pid)

    def queued(self):
        """Files in the queues a message passes through or may stay in."""
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n

    def wait_drained(self, timeout=300):
        """Wait until every message taken has been delivered (discarded):
        the seconds it took.  The next run must not share the machine
        with this one's deliveries."""
        t = time.monotonic()
        wait_for(lambda: self.queued() == 0, timeout=timeout,
                 what="postfix queue empty")
        return time.monotonic() - t

    def rchar(self):
        """Bytes its smtpd processes have read, the clients' bytes on the
        wire with a few of their own lookups': they must outlive the
        measure (max_idle, max_use), else an exited one's count is lost."""
        n = 0
        for c in children(self.pid):
            if cmdline(c).startswith("smtpd"):
                try:
                    n += proc_io(c)["rchar"]
                except OSError:
                    pass
        return n

    def ehlo(self):
        return ehlo_keywords(self.port)

    def section(self, sessions=500):
        return self.config_section(sessions)


def ehlo_keywords(port):
    """The EHLO keywords a server on 127.0.0.1:port offers."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(b"EHLO bench.example.com\r\n")
        f.flush()
        out = []
        while True:
            line = f.readline().decode("ascii", "replace").rstrip("\r\n")
            if not line.startswith("250"):
                break
            out.append(line[4:].split(" ", 1)[0].upper())
            if line[3:4] == " ":
                break
        f.write(b"QUIT\r\n")
        f.flush()
        return out[1:]


def proc_stat(pid):
    """The fields of /proc/pid/stat after the command name, as strings
    (index 0 is the state, field 3 of stat(5))."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid):
    """{utime, stime, cutime, cstime} of pid, in seconds."""
    st = proc_stat(pid)
    # stat(5) fields 14-17; st[0] is field 3.
    vals = [int(x) / CLK_TCK for x in st[11:15]]
    return dict(zip(("utime", "stime", "cutime", "cstime"), vals))


def proc_io(pid):
    out = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out


def vm_kb(pid, field="VmHWM"):
    """A Vm* line of /proc/pid/status, in KiB (None when gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid):
    """Child pids of pid, from /proc/pid/task/pid/children."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree_cpu(pid):
    """User + system CPU of pid and of every descendant, seconds, with
    what their reaped children used (cutime, cstime): sampled before and
    after a run, the difference is all the tree did in it, processes
    started and ended in between included."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        kids = children(p)
        try:
            total += sum(proc_cpu(p).values())
        except OSError:
            continue
        stack.extend(kids)
    return total


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def redis_counters(client):
    """Total commands, client reads and per-command calls of a Redis."""
    st = client.info("stats")
    cmds = {}
    for k, v in client.info("commandstats").items():
        cmds[k.split("_", 1)[1].lower()] = int(v["calls"])
    return {"commands": int(st["total_commands_processed"]),
            "reads": int(st["total_reads_processed"]),
            "calls": cmds}


def pct(xs, p):
    """The p-th percentile of xs, nearest rank."""
    xs = sorted(xs)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(-(-p * len(xs) // 100)) - 1))
    return xs[k]


def summary(xs):
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90),
            "p99": pct(xs, 99), "max": max(xs), "mean": sum(xs) / len(xs)}


def digestd_config(tmp, redis, pools, extra="", supervisor="", digest=""):
    """A full digestd config: the harness's base, the redis on its unix
    socket, pools {name: {"workers": N, ...}} and extra sections."""
    text, port = base_config(tmp)
    text = override(text, "supervisor", supervisor)
    text = override(text, "digest", digest)
    text += redis.config_section()
    for name, keys in pools.items():
        text += "[pool.%s]\nqueue = %s\n" % (name, keys.get("queue", name))
        for k, v in keys.items():
            if k != "queue":
                text += "%s = %s\n" % (k, v)
    text += extra
    return write_config(tmp, text)


def override(text, section, lines):
    """text with the keys of lines set in [section]: a key already there is
    replaced in place, a new one added at the top of the section."""
    keys = {}
    for line in lines.splitlines():
        if "=" in line:
            keys[line.split("=", 1)[0].strip()] = line
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith("["):
            cur = line.strip("[] ")
            out.append(line)
            if cur == section:
                out.extend(v for k, v in keys.items()
                           if not re.search(r"(?m)^%s\s*=" % re.escape(k), text))
            continue
        k = line.split("=", 1)[0].strip() if "=" in line else None
        if cur == section and k in keys:
            out.append(keys[k])
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def out_path(default):
    """The JSON path from --out PATH, or default."""
    if "--out" in sys.argv:
        return sys.argv[sys.argv.index("--out") + 1]
    return default


def now():
    return time.monotonic()
