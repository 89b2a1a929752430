"""Secrets read from files: every secret key has a *_file twin.

With an activity Redis and a queue Redis that each require a password, an
SMTP server that requires AUTH, and the unsubscribe key, all four from
files named relative to the config (written as `echo secret > file` does,
with a trailing newline), digestd delivers a job with AUTH and the right
unsubscribe token; after the files change and SIGHUP, the new workers use
the new passwords.  Setting a key and its twin is an error naming the
line; a missing or unreadable file is an error naming the key and the
path, never the content; a FIFO named as a secret makes `digestd -t` and
a reload fail at once instead of hanging; an unsubscribe_secret shorter
than 32 bytes is refused.
"""
import email
import email.policy
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from lib.harness import DIGESTD, Digestd, free_port, kill_pid, metric_sum, wait_for
from lib.pipeline_data import UNSUB_URL, Data, enqueue, token, wait_done, window
from lib import deploy_helpers as dh

REDIS_PW = "ActivityPw-1b7e40c9"
QUEUE_PW = "QueuePw-9d21f6a3"
SMTP_USER = "digest-sender"
SMTP_PW = "SmtpPw-64c0e8b2"
KEY = "FileKey-0c7d9e2b4a6f8e1d3c5b7a9f0e2d4c6b"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning")


class AuthRedis:
    """redis-server on a loopback port with requirepass."""

    def __init__(self, d, password):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--appendonly", "no",
             "--requirepass", self.password],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ping, timeout=10, what="redis-server")
        return self

    def _ping(self):
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)

    def stop(self):
        if self.proc is not None:
            kill_pid(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None


class AuthSink:
    """aiosmtpd requiring AUTH, in plaintext, with one user; records the
    logins it saw."""

    def __init__(self):
        self.port = free_port()
        self.password = SMTP_PW
        self.messages = []          # (rcpt, login, bytes)
        self.failed = 0
        self.lock = threading.Lock()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login == SMTP_USER.encode()
                  and auth_data.password == sink.password.encode())
            if not ok:
                with sink.lock:
                    sink.failed += 1
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    for r in envelope.rcpt_tos:
                        sink.messages.append((r, session.authenticated,
                                              envelope.original_content))
                return "250 OK"

        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
            auth_required=True, auth_require_tls=False, decode_data=False)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def plaintext_auth_line():
    """AUTH without TLS is for a test server only; where the configuration
    has a key to allow it, the test says so."""
    smtp = dh.example_config().sections.get("smtp", {})
    return "allow_plaintext_auth = yes\n" if "allow_plaintext_auth" in smtp else ""


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def minimal(tmp, extra="", digest="unsubscribe_secret = %s\n" % KEY, name="t.conf"):
    """A config for -t only: [digest] with the lines of digest from line 2,
    then [pool.standard], then extra."""
    path = os.path.join(str(tmp), name)
    write(path, "[digest]\n%s[pool.standard]\n%s" % (digest, extra), 0o644)
    return path


def check(path, user=None):
    cmd = [DIGESTD, "-t", "-c", path]
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
               "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@pytest.fixture
def servers(tmp_path):
    act = AuthRedis(tmp_path / "activity", REDIS_PW).start()
    queue = AuthRedis(tmp_path / "queue", QUEUE_PW).start()
    sink = AuthSink().start()
    try:
        yield act, queue, sink
    finally:
        sink.stop()
        queue.stop()
        act.stop()


def workers(d):
    out = set()
    for pid in d.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().startswith(b"digestd: worker"):
                    out.add(pid)
        except OSError:
            pass
    return out


def seed(r, we, gid, n=3):
    data = Data(r)
    data.group(gid, name="Files")
    members = range(gid * 100 + 1, gid * 100 + n + 1)
    data.members(gid, members)
    for u in members:
        data.user(u, email="u%d@example.org" % u)
    data.post(gid, gid * 1000, we - 60, title="Hello", author_id=9)
    return list(members)


def test_every_secret_from_a_file(tmp_path, servers):
    act, queue, sink = servers
    sec = tmp_path / "secrets"
    sec.mkdir(mode=0o700)
    write(str(sec / "redis"), REDIS_PW + "\n")
    write(str(sec / "queue"), QUEUE_PW + "\n")
    write(str(sec / "smtp"), SMTP_PW + "\n")
    write(str(sec / "unsub"), KEY + "\n")
    port = free_port()
    conf = os.path.join(str(tmp_path), "digestd.conf")
    write(conf, """\
[supervisor]
listen = 127.0.0.1:{port}
drain_timeout = 10s
restart_backoff_min = 10ms
restart_backoff_max = 500ms
log_level = debug

[redis]
host = 127.0.0.1
port = {aport}
password_file = secrets/redis

[queue_redis]
host = 127.0.0.1
port = {qport}
password_file = ./secrets/queue

[pool.standard]
queue = standard
workers = 1

[digest]
from = Groups <digest@example.com>
unsubscribe_url = {url}
unsubscribe_secret_file = {sec}/unsub

[transport]
type = smtp

[smtp]
host = 127.0.0.1
port = {sport}
starttls = off
{plain}username = {user}
password_file = secrets/smtp
""".format(port=port, aport=act.port, qport=queue.port, url=UNSUB_URL, sec=sec,
           sport=sink.port, plain=plaintext_auth_line(), user=SMTP_USER), 0o644)
    p = check(conf)
    assert p.returncode == 0, p.stderr

    a, q = act.client(), queue.client()
    ws, we = window()
    members = seed(a, we, 1)
    d = Digestd(conf, tmp_path)
    d.start()
    try:
        wait_done(q, enqueue(q, 1, "daily", ws, we), timeout=30, d=d)
        with sink.lock:
            got = list(sink.messages)
        assert sorted(r for r, _, _ in got) == ["u%d@example.org" % u for u in members]
        assert all(authed for _, authed, _ in got), "delivered without AUTH"
        for rcpt, _, raw in got:
            uid = int(rcpt[1:].split("@")[0])
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert "t=%s>" % token(uid, 1, KEY) in msg["List-Unsubscribe"], \
                msg["List-Unsubscribe"]

        # New passwords everywhere, new files, SIGHUP: the reload reads
        # the files again and the new workers log in with the new ones.
        new_redis, new_queue, new_smtp = (REDIS_PW + "-2", QUEUE_PW + "-2", SMTP_PW + "-2")
        a.config_set("requirepass", new_redis)
        q.config_set("requirepass", new_queue)
        act.password, queue.password = new_redis, new_queue
        with sink.lock:
            sink.password = new_smtp
        write(str(sec / "redis"), new_redis + "\n")
        write(str(sec / "queue"), new_queue + "\n")
        write(str(sec / "smtp"), new_smtp + "\n")
        old = workers(d)
        assert old
        d.signal(signal.SIGHUP)
        wait_for(lambda: metric_sum(d.metrics(), "digest_config_reloads_total",
                                    result="success") == 1, timeout=15, what="reload")
        # The old worker, logged in with the old passwords, leaves only once
        # its replacement has connected to both Redis servers.
        wait_for(lambda: workers(d) and not workers(d) & old
                 and d.http_status("/readyz") == 200, timeout=30,
                 what="the workers replaced")
        a, q = act.client(), queue.client()
        members = seed(a, we, 2)
        wait_done(q, enqueue(q, 2, "daily", ws, we), timeout=30, d=d)
        with sink.lock:
            got = [m for m in sink.messages if m[0].startswith("u2")]
            failed = sink.failed
        assert sorted(r for r, _, _ in got) == ["u%d@example.org" % u for u in members]
        assert failed == 0
        assert d.stop() == 0
    finally:
        d.kill()
    log = d.log()
    assert "job done" in log
    for s in (REDIS_PW, QUEUE_PW, SMTP_PW, KEY):
        assert s not in log


def test_both_set_is_an_error(tmp_path):
    with open(os.path.join(str(tmp_path), "pw"), "w") as f:
        f.write("HIDDEN-pw\n")
    path = minimal(tmp_path, "[redis]\npassword = HIDDEN-inline\npassword_file = pw\n")
    p = check(path)
    assert p.returncode == 1
    assert ("%s:6: [redis] password_file: password is set too (line 5); set one "
            "of them" % path) in p.stderr, p.stderr
    assert "HIDDEN" not in p.stderr

    with open(os.path.join(str(tmp_path), "key"), "w") as f:
        f.write(KEY + "\n")
    path = minimal(tmp_path, digest="unsubscribe_secret = %s\nunsubscribe_secret_file = key\n"
                   % KEY, name="u.conf")
    p = check(path)
    assert p.returncode == 1
    assert "%s:3: [digest] unsubscribe_secret_file: unsubscribe_secret is set too " \
        "(line 2)" % path in p.stderr, p.stderr
    assert KEY not in p.stderr


def test_missing_file_names_the_key_and_the_path(tmp_path):
    path = minimal(tmp_path, "[smtp]\nusername = u\npassword_file = none/smtp\n")
    p = check(path)
    assert p.returncode == 1
    assert ("%s:6: [smtp] password_file: %s/none/smtp: No such file or directory"
            % (path, tmp_path)) in p.stderr, p.stderr


@ROOT_ONLY
def test_unreadable_file_names_the_key_and_the_path_never_the_content():
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="digestd-secret-")
    try:
        os.chmod(base, 0o755)
        write(os.path.join(base, "queue"), "HIDDEN-queue-password\n", 0o600)
        path = minimal(base, "[queue_redis]\nhost = q\npassword_file = queue\n")
        assert check(path).returncode == 0        # root reads it
        p = check(path, user=nobody)
        assert p.returncode == 1
        assert ("%s:6: [queue_redis] password_file: %s/queue: Permission denied"
                % (path, base)) in p.stderr, p.stderr
        assert "HIDDEN" not in p.stdout + p.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_fifo_does_not_block(tmp_path):
    fifo = os.path.join(str(tmp_path), "fifo")
    os.mkfifo(fifo)
    path = minimal(tmp_path, digest="unsubscribe_secret_file = fifo\n")
    t0 = time.monotonic()
    p = check(path)                 # subprocess's timeout guards a hang
    assert time.monotonic() - t0 < 5
    assert p.returncode == 1
    assert "%s:2: [digest] unsubscribe_secret_file: %s: not a regular file" % (path, fifo) \
        in p.stderr, p.stderr


def test_a_fifo_does_not_block_a_reload(tmp_path):
    """A running digestd told to read a FIFO refuses the reload at once,
    keeps its configuration, and answers."""
    write(os.path.join(str(tmp_path), "key"), KEY + "\n")
    fifo = os.path.join(str(tmp_path), "fifo")
    os.mkfifo(fifo)
    port = free_port()
    conf = os.path.join(str(tmp_path), "d.conf")
    text = """\
[supervisor]
listen = 127.0.0.1:{port}
drain_timeout = 5s
[redis]
socket = {tmp}/no-redis.sock
[pool.standard]
workers = 1
[digest]
unsubscribe_secret_file = {name}
[transport]
type = maildir
[maildir]
path = {tmp}/outbox
"""
    write(conf, text.format(port=port, tmp=tmp_path, name="key"), 0o644)
    d = Digestd(conf, tmp_path)
    d.start(wait_ready=False)
    try:
        wait_for(lambda: d.http_status("/healthz") == 200, timeout=15, what="/healthz")
        write(conf, text.format(port=port, tmp=tmp_path, name="fifo"), 0o644)
        d.signal(signal.SIGHUP)
        wait_for(lambda: metric_sum(d.metrics(), "digest_config_reloads_total",
                                    result="failure") == 1, timeout=10,
                 what="the reload refused")
        assert d.http_status("/healthz") == 200
        assert "not a regular file" in d.log()
    finally:
        d.kill()


def test_short_unsubscribe_secret_is_refused(tmp_path):
    short = "0123456789abcdef0123456789abcde"       # 31 bytes
    path = minimal(tmp_path, digest="unsubscribe_secret = %s\n" % short)
    p = check(path)
    assert p.returncode == 1
    assert ("%s:2: [digest] unsubscribe_secret: value is shorter than 32 bytes "
            "(a short key makes tokens forgeable)" % path) in p.stderr, p.stderr
    assert short not in p.stderr
    write(os.path.join(str(tmp_path), "key"), short + "\n")
    path = minimal(tmp_path, digest="unsubscribe_secret_file = key\n", name="f.conf")
    p = check(path)
    assert p.returncode == 1
    assert ("%s:2: [digest] unsubscribe_secret_file: the secret in %s/key is shorter "
            "than 32 bytes" % (path, tmp_path)) in p.stderr, p.stderr
    assert short not in p.stderr
    # 32 bytes are enough.
    path = minimal(tmp_path, digest="unsubscribe_secret = %s\n" % (short + "f"),
                   name="ok.conf")
    assert check(path).returncode == 0
