"""Helpers shared by the functional tests: servers, digestd, scraping.

Only loopback addresses and unix sockets are used; every loop is bounded.
"""
import email
import email.policy
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from lib import config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("DIGESTD_BUILD", "build")
DIGESTD = os.path.join(ROOT, BUILD, "digestd")
DIGESTCTL = os.path.join(ROOT, BUILD, "digestctl")
ASAN = BUILD.endswith("asan")
# The sanitizer build does the same work several times slower: a bound on
# elapsed time (a guard against a hang or a gross slowdown, never a
# measurement) is multiplied by this.
SLOWDOWN = 5 if ASAN else 1


def _ephemeral_low():
    """The first port of the kernel's range for the local end of outgoing
    connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_ports = random.SystemRandom()


def free_port():
    """A TCP port free on 127.0.0.1 right now, below the ephemeral range.

    Servers are stopped and started again on their port (a broker or
    Redis restart, an SMTP outage).  A port of the ephemeral range may be
    taken meanwhile as the local end of any connection on the machine,
    and the server then fails to come back: no port handed out here is
    one of those."""
    hi = _ephemeral_low() - 1
    lo = 10000 if hi > 12000 else 1024
    for _ in range(1000):
        port = _ports.randint(lo, hi)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in %d-%d" % (lo, hi))


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def _gone(pid):
    """True once pid has exited (a zombie counts as gone: its parent reaps)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def stop_popen(proc, sig=signal.SIGTERM, timeout=10.0):
    """Send sig to a child we started and reap it; SIGKILL after timeout."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def kill_pid(pid, sig=signal.SIGTERM, timeout=10.0):
    """Send sig to pid and wait (bounded) for it to go; SIGKILL after."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RedisServer:
    """redis-server on a unix socket in dirpath, and on a loopback port
    when port is given (TcpRedis picks a free one).

    aof keeps an append-only file, fsynced at every write with
    fsync_always (AofRedis: a crash then loses no acknowledged write);
    extra adds arguments (--replicaof and the like).  A config reaches it
    over TCP when it has a port, else on its socket (config_section)."""

    def __init__(self, dirpath, port=0, aof=False, extra=(), fsync_always=False,
                 timeout=10):
        self.dir = str(dirpath)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = port
        self.aof = aof
        self.fsync_always = fsync_always
        self.extra = list(extra)
        self.timeout = timeout
        self.proc = None

    def start(self, wait=True):
        """Start it; with wait, return once it answers PING."""
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.socket, "--unixsocketperm", "700",
            "--dir", self.dir, "--save", "", "--daemonize", "no",
            "--appendonly", "yes" if self.aof else "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        if self.fsync_always:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args + self.extra, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if wait:
            wait_for(lambda: self._ping(), timeout=self.timeout, what="redis-server")
        return self

    def _ping(self):
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self, **kw):
        import redis
        return redis.Redis(unix_socket_path=self.socket, decode_responses=True, **kw)

    def stop(self):
        if self.proc is not None:
            stop_popen(self.proc, signal.SIGTERM)
            self.proc = None

    def crash(self, down_for):
        """SIGKILL, stay down for down_for seconds, start on the same data."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        time.sleep(down_for)
        return self.start()

    def config_section(self, name="redis", prefix="", unix=None):
        """[name] reaching this server: on its socket when unix (by default
        when it has no port), else over loopback TCP."""
        if unix is None:
            unix = not self.port
        if unix:
            s = "[%s]\nsocket = %s\ntimeout = 2s\n" % (name, self.socket)
        else:
            s = "[%s]\nhost = 127.0.0.1\nport = %d\ntimeout = 2s\n" % (name, self.port)
        if prefix:
            s += "key_prefix = %s\n" % prefix
        return s

    def commands(self):
        """{command: calls} from INFO commandstats."""
        out = {}
        for k, v in self.client().info("commandstats").items():
            out[k.split("_", 1)[1].lower()] = int(v["calls"])
        return out


class TcpRedis(RedisServer):
    """A RedisServer on a free loopback port, which configs reach over TCP."""

    def __init__(self, dirpath, extra=(), aof=False):
        super().__init__(dirpath, port=free_port(), aof=aof, extra=extra)


class AofRedis(RedisServer):
    """A RedisServer on its socket with AOF and appendfsync always, so that
    crash() and a start on the same AOF keep every acknowledged write."""

    def __init__(self, dirpath):
        super().__init__(dirpath, aof=True, fsync_always=True, timeout=30)


class SmtpSink:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it accepts.

    reply_for(rcpt) may return an SMTP reply string such as "450 try later"
    or "550 no such user" to refuse that recipient; None accepts.  delay
    (settable at any time) is how long it takes over each DATA, as a slow
    relay does, so that a job is still in hand when a test kills its
    worker or instance.  utf8 makes it offer SMTPUTF8 (RFC 6531).
    """

    def __init__(self, port=None, delay=0.0, utf8=False):
        self.port = port or free_port()
        self.delay = delay
        self.utf8 = utf8
        self.messages = []          # (mail_from, rcpt, bytes)
        self.lock = threading.Lock()
        self.reply_for = None
        self.controller = None

    def start(self):
        import asyncio

        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if sink.reply_for is not None:
                    r = sink.reply_for(address)
                    if r:
                        return r
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                if sink.delay:
                    await asyncio.sleep(sink.delay)
                with sink.lock:
                    for r in envelope.rcpt_tos:
                        sink.messages.append((envelope.mail_from, r, envelope.original_content))
                return "250 Message accepted"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     decode_data=False, data_size_limit=64 * 1024 * 1024,
                                     enable_SMTPUTF8=self.utf8)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def parsed(self):
        """The accepted messages as email.message.EmailMessage objects."""
        with self.lock:
            msgs = list(self.messages)
        return [email.message_from_bytes(m[2], policy=email.policy.default) for m in msgs]

    def count(self):
        with self.lock:
            return len(self.messages)

    def recipients(self):
        """The recipient of every accepted message, in order."""
        with self.lock:
            return [m[1] for m in self.messages]

    def ids(self):
        """[(message-id, rcpt)] of every accepted message, duplicates kept."""
        with self.lock:
            msgs = list(self.messages)
        return [(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"],
                 rcpt) for _, rcpt, raw in msgs]

    def config_section(self):
        return "[smtp]\nhost = 127.0.0.1\nport = %d\nstarttls = off\n" % self.port


def write_config(tmp_path, text, name="digestd.conf"):
    """Write a config text into tmp_path; returns its path."""
    return config.write(tmp_path, text, name)


def base_config(tmp_path, port=None, extra=""):
    """A complete config: the default (lib/config.py) plus the sections in
    extra; returns (text, listen port)."""
    return config.text(tmp_path, port=port, extra=extra)


class Digestd:
    """A digestd process started in the foreground, logging to a file."""

    def __init__(self, config_path, tmp_path, env=None, args=None):
        self.config_path = config_path
        self.tmp = str(tmp_path)
        self.log_path = os.path.join(self.tmp, "digestd.%d.log" % int(time.time() * 1e6))
        self.env = dict(os.environ, **(env or {}))
        self.args = args or []
        self.proc = None
        self.port = None
        with open(config_path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("listen") and "=" in line:
                    self.port = int(line.split("=", 1)[1].split(";")[0].strip().rsplit(":", 1)[1])

    def start(self, wait_ready=True, timeout=15):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DIGESTD, "-c", self.config_path] + self.args,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.tmp)
        if wait_ready:
            wait_for(lambda: self.http_status("/readyz") == 200 or self.exited(),
                     timeout=timeout, what="digestd /readyz")
            assert not self.exited(), "digestd exited: %s" % self.log()
        return self

    def exited(self):
        return self.proc.poll() is not None

    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=30):
        """SIGTERM (drain) and wait; returns the exit code."""
        if self.proc is None or self.exited():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            kids = self.children()
            self.proc.kill()
            self.proc.wait(timeout=10)
            for pid in kids:
                kill_pid(pid, signal.SIGKILL, timeout=2)
        if getattr(self, "logf", None):
            self.logf.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def http(self, path, headers=None, timeout=5):
        req = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode("utf-8")

    def http_status(self, path):
        try:
            return self.http(path, timeout=1)[0]
        except Exception:
            return None

    def status(self):
        import json
        code, _, body = self.http("/status")
        assert code == 200, body
        return json.loads(body)

    def metrics(self):
        code, _, body = self.http("/metrics")
        assert code == 200, body
        return body

    def children(self):
        """Pids whose parent is this digestd."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                out.append(int(d))
        return out


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a text exposition."""
    from lib.metrics_util import samples

    return {(name, frozenset(labels.items())): value
            for name, labels, value in samples(text)}


def metric(text, name, **labels):
    """The value of one series, or None."""
    want = {k: str(v) for k, v in labels.items()}
    for (n, lab), v in parse_metrics(text).items():
        if n == name and all(dict(lab).get(k) == val for k, val in want.items()):
            return v
    return None


def metric_sum(text, name, **labels):
    """The sum of every series of name whose labels include labels."""
    want = {k: str(v) for k, v in labels.items()}
    total = 0.0
    for (n, lab), v in parse_metrics(text).items():
        if n == name and all(dict(lab).get(k) == val for k, val in want.items()):
            total += v
    return total


def digestctl(config_path, *args, check=True, timeout=120):
    """Run digestctl; returns the CompletedProcess (text)."""
    p = subprocess.run([DIGESTCTL, "-c", config_path] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("digestctl %s: %d\n%s\n%s" % (" ".join(args), p.returncode,
                                                            p.stdout, p.stderr))
    return p


def maildir_messages(path):
    """Parsed messages in path/new."""
    out = []
    d = os.path.join(path, "new")
    if not os.path.isdir(d):
        return out
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
    return out


def zombies_of(pid):
    """Children of pid in state Z."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        rest = st.rsplit(")", 1)[1].split()
        if int(rest[1]) == pid and rest[0] == "Z":
            out.append(int(d))
    return out


# The scripts themselves: Debian's /usr/sbin wrappers cd to
# /var/lib/rabbitmq, use its cookie and log to /var/log/rabbitmq.
RABBIT_BIN = "/usr/lib/rabbitmq/bin"


class RabbitServer:
    """rabbitmq-server on 127.0.0.1 with its own data and log dirs.

    Everything it opens is on loopback: AMQP, the Erlang distribution port
    and its own epmd (on a port of its own, so that stopping it touches no
    other broker's).  restart() stops and starts the same node on the same
    port and data, as a broker restart in production does.  vhost() gives
    each test its own virtual host, so queues and dead letters never mix.

    With tls, a TLS listener too (tls_port), whose certificate is signed by
    a test CA (tls_ca) and names localhost only, not 127.0.0.1: amqps URLs
    to localhost verify, to 127.0.0.1 name the wrong host; tls_other_ca is
    a CA that signed nothing the broker has.

    The node boots with VHOST_POOL virtual hosts already made (from a
    definitions file): a rabbitmqctl call starts an Erlang VM, seconds
    under load, and a test would otherwise pay for two of them.
    """

    VHOST_POOL = 32

    def __init__(self, tls=False):
        self.dir = tempfile.mkdtemp(prefix="digestd-rabbit-")
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.proc = None
        self.env = None
        self.vhosts = 0
        self.pool = ["v%d_%d" % (os.getpid(), i) for i in range(self.VHOST_POOL)]
        self.unused = list(self.pool)
        self.tls_port = None
        if tls:
            from lib.tls_util import Certs
            c = Certs(os.path.join(self.dir, "tls"))
            ca = c.make_ca("ca")
            self.tls_ca = ca[0]
            self.tls_other_ca = c.make_ca("other-ca", cn="some other CA")[0]
            self.tls_cert, self.tls_key = c.leaf("broker", ["DNS:localhost"], ca,
                                                 cn="localhost")
            self.tls_port = free_port()

    def _definitions(self):
        """The definitions the node loads at boot: guest (whom the node no
        longer seeds when there are definitions), "/" and the pool."""
        import base64
        import hashlib
        import json

        salt = os.urandom(4)
        digest = hashlib.sha256(salt + b"guest").digest()
        names = ["/"] + self.pool
        defs = {
            "users": [{"name": "guest", "tags": ["administrator"],
                       "password_hash": base64.b64encode(salt + digest).decode(),
                       "hashing_algorithm": "rabbit_password_hashing_sha256"}],
            "vhosts": [{"name": n} for n in names],
            "permissions": [{"user": "guest", "vhost": n, "configure": ".*",
                             "write": ".*", "read": ".*"} for n in names],
        }
        path = os.path.join(self.dir, "definitions.json")
        with open(path, "w") as f:
            json.dump(defs, f)
        return path

    # Only a guard against a node that never comes up: each pytest-xdist
    # worker boots its own, all at once at the start of a run, and under
    # load a boot has taken over a minute.
    BOOT_TIMEOUT = 240

    def start(self, timeout=BOOT_TIMEOUT):
        pw = pwd.getpwnam("rabbitmq")
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(self.dir, 0o755)
        conf = os.path.join(self.dir, "rabbitmq.conf")
        defs = self._definitions()
        with open(conf, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("loopback_users.guest = true\n")
            f.write("load_definitions = %s\n" % defs)
            if self.tls_port is not None:
                f.write("listeners.ssl.default = 127.0.0.1:%d\n" % self.tls_port)
                f.write("ssl_options.cacertfile = %s\n" % self.tls_ca)
                f.write("ssl_options.certfile = %s\n" % self.tls_cert)
                f.write("ssl_options.keyfile = %s\n" % self.tls_key)
                f.write("ssl_options.verify = verify_none\n")
                f.write("ssl_options.fail_if_no_peer_cert = false\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        for root, dirs, files in os.walk(self.dir):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
        self.env = dict(
            os.environ,
            RABBITMQ_NODENAME="rabbit@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
            RABBITMQ_CONFIG_FILE=conf[:-5],
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
            RABBITMQ_PID_FILE=os.path.join(self.dir, "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(self.epmd_port),
            HOME=self.dir,
        )
        # The Erlang cookie lives in HOME; the rabbitmq user must own it.
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
             "--init-groups", RABBIT_BIN + "/rabbitmq-server"],
            env=self.env, stdout=open(os.path.join(self.dir, "stdout.log"), "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._up, timeout=timeout, interval=0.2, what="rabbitmq-server")
        return self

    def log_tail(self, n=4000):
        """The end of the node's output and log, to say why it failed."""
        out = []
        for path in (os.path.join(self.dir, "stdout.log"),
                     os.path.join(self.dir, "log", "rabbit@localhost.log")):
            try:
                with open(path, errors="replace") as f:
                    out.append("%s:\n%s" % (path, f.read()[-n:]))
            except OSError:
                pass
        return "\n".join(out)

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("rabbitmq-server exited: see %s" % self.dir)
        import logging

        import pika
        # Refused while the node boots, which pika logs as errors: a failed
        # test would show pages of them.
        quiet = logging.getLogger("pika")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            c = pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=self.port, connection_attempts=1,
                socket_timeout=1, blocked_connection_timeout=1))
            c.close()
            return True
        except Exception:
            return False
        finally:
            quiet.setLevel(level)

    def url(self, vhost="/"):
        from urllib.parse import quote
        return "amqp://guest:guest@127.0.0.1:%d/%s" % (self.port, quote(vhost, safe=""))

    def tls_url(self, vhost="/", host="localhost"):
        """amqps:// to the TLS listener, by host name or address."""
        from urllib.parse import quote
        return "amqps://guest:guest@%s:%d/%s" % (host, self.tls_port,
                                                 quote(vhost, safe=""))

    def vhost(self, prefix="t"):
        """A fresh virtual host that guest may use; returns its name."""
        if self.unused:
            return self.unused.pop(0)
        self.vhosts += 1
        name = "%s%d_%d" % (prefix, os.getpid(), self.vhosts)
        for args in (("add_vhost", name),
                     ("set_permissions", "-p", name, "guest", ".*", ".*", ".*")):
            p = self.ctl(*args)
            assert p.returncode == 0, "rabbitmqctl %s: %s%s" % (args, p.stdout, p.stderr)
        return name

    def connection(self, vhost="/"):
        """A pika BlockingConnection to vhost (the caller closes it)."""
        import pika
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, virtual_host=vhost,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=3, retry_delay=0.2))

    def connections(self, vhost=None):
        """[{name, vhost, connection_name, ...}] from rabbitmqctl list_connections."""
        import json
        p = self.ctl("list_connections", "-q", "--formatter", "json",
                     "name", "vhost", "client_properties", "pid")
        assert p.returncode == 0, p.stderr
        out = []
        for c in json.loads(p.stdout or "[]"):
            props = c.get("client_properties") or []
            cname = ""
            if isinstance(props, dict):
                cname = props.get("connection_name", "")
            else:
                for entry in props:
                    if entry and entry[0] == "connection_name":
                        cname = entry[-1]
            c["connection_name"] = cname
            if vhost is None or c.get("vhost") == vhost:
                out.append(c)
        return out

    def ctl(self, *args, timeout=60):
        pw = pwd.getpwnam("rabbitmq")
        return subprocess.run(
            ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
             "--init-groups", RABBIT_BIN + "/rabbitmqctl", "-n", "rabbit@localhost"]
            + list(args),
            env=self.env, capture_output=True, text=True, timeout=timeout)

    def _epmd_pids(self):
        """Our own epmd (started by the node, detached): found by its port."""
        want = ("ERL_EPMD_PORT=%d" % self.epmd_port).encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
                if b"epmd" not in cmd.split(b"\0")[0]:
                    continue
                with open("/proc/%s/environ" % d, "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                continue
        return pids

    def _stop_node(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_for=0.0, timeout=BOOT_TIMEOUT):
        """Stop the node, stay down for down_for seconds, start it again."""
        self._stop_node()
        time.sleep(down_for)
        return self.start(timeout=timeout)

    def drop_vhost(self, name):
        """Done with vhost name.  One of the pool is left as it is: the
        node and its data go at stop(), and a rabbitmqctl call costs
        seconds."""
        if name not in self.pool:
            self.ctl("delete_vhost", name)

    def stop(self):
        # Its data goes with it: no orderly shutdown (seconds) is needed.
        self._stop_node(signal.SIGKILL)
        for pid in self._epmd_pids():
            kill_pid(pid, signal.SIGTERM, timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


POSTFIX = "/usr/sbin/postfix"

# The daemons a discarding relay needs, none of them chrooted: a chroot
# would want copies of /etc files in the queue directory.  The smtpd line
# is added with the port.
POSTFIX_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixServer:
    """A private postfix on 127.0.0.1 that accepts mail for anyone from
    loopback and discards it: a real relay, as most users have in front
    of digestd (it offers PIPELINING and CHUNKING).

    It has its own config directory, queue (on tmpfs when /dev/shm is
    there) and log file; `postfix -c DIR start` runs it and stop() ends it.
    chunking=False withholds CHUNKING from EHLO; main adds or overrides
    main.cf settings.  Needs root (postfix's master runs as root).
    """

    def __init__(self, chunking=True, main=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="digestd-postfix-")
        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        self.queue = tempfile.mkdtemp(prefix="digestd-postfix-q-", dir=base)
        self.conf = os.path.join(self.dir, "conf")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.chunking = chunking
        self.main = dict(main or {})
        self.pid = None

    def _write_config(self):
        pw = pwd.getpwnam("postfix")
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        # The daemons, running as postfix, must reach their queue.
        os.chmod(self.dir, 0o755)
        os.chmod(self.queue, 0o755)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "myhostname": "relay.localdomain",
            "mydestination": "",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "default_transport": "discard",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            # No syslog here: without a log file of its own postfix
            # exits 1 at start without a word.
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
        }
        if not self.chunking:
            main["smtpd_discard_ehlo_keywords"] = "chunking"
        main.update(self.main)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n" % self.port)
            f.write(POSTFIX_MASTER_CF)

    def start(self, timeout=30):
        self._write_config()
        p = subprocess.run([POSTFIX, "-c", self.conf, "start"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("postfix start exited %d: %s%s\n%s" % (
                p.returncode, p.stdout, p.stderr, self.log()[-2000:]))
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        wait_for(lambda: os.path.exists(pidfile), timeout=timeout,
                 what="postfix master.pid")
        with open(pidfile) as f:
            self.pid = int(f.read().split()[0])
        wait_for(self._up, timeout=timeout, what="postfix smtpd")
        return self

    def _up(self):
        if _gone(self.pid):
            raise AssertionError("postfix exited:\n" + self.log()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(64).startswith(b"220")
        except OSError:
            return False

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def delivered(self):
        """Recipients the relay took and discarded, in its log's order."""
        out = []
        for line in self.log().splitlines():
            if "postfix/discard[" in line and "status=sent" in line:
                out.append(line.split(" to=<", 1)[1].split(">", 1)[0])
        return out

    def config_section(self, per_session=500):
        return ("[smtp]\nhost = 127.0.0.1\nport = %d\nstarttls = off\n"
                "messages_per_session = %d\n" % (self.port, per_session))

    def stop(self):
        if self.pid is not None:
            subprocess.run([POSTFIX, "-c", self.conf, "stop"],
                           capture_output=True, timeout=60)
            # postfix stop waits for the master; make sure, by pid.
            kill_pid(self.pid, signal.SIGTERM, timeout=10)
            self.pid = None
        shutil.rmtree(self.queue, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
