"""Secrets never leak: with a Redis that requires a password, an
SMTP server that takes AUTH (in plaintext, so the exchange is there to be
logged), and a distinctive unsubscribe key, digestd runs a job at debug
level, reloads, reopens its log, is checked with -t and stopped; digestctl
runs too; and a second digestd starts with a wrong Redis password and a
wrong SMTP password.  None of the secrets, nor the base64 of an AUTH
exchange, appears in a log line (stderr and log_file), /status (JSON and
HTML), /metrics, digestctl's output, or the command line or title of any
process (/proc/PID/cmdline of the supervisor and every child)."""
import base64
import os
import signal
import subprocess
import threading
import time

import pytest

from lib.harness import (
    DIGESTD, Digestd, TcpRedis, digestctl, free_port, kill_pid, metric_sum,
    wait_for)
from lib.pipeline_data import Data, enqueue, wait_done, window

REDIS_PW = "RedisPw-7f3a91c2d0"
SMTP_USER = "digest-sender"
SMTP_PW = "SmtpPw-e41d07b9aa"
HMAC_KEY = "HmacKey-5c28fa6d11-0e4b7a93c2f6d815"
WRONG_REDIS_PW = "WrongRedisPw-39be02"
WRONG_SMTP_PW = "WrongSmtpPw-8c11f4"

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning")


def secret_forms():
    """Each secret, and the base64 forms an AUTH PLAIN or LOGIN would log."""
    forms = [REDIS_PW, SMTP_PW, HMAC_KEY, WRONG_REDIS_PW, WRONG_SMTP_PW]
    for pw in (SMTP_PW, WRONG_SMTP_PW):
        forms.append(base64.b64encode(pw.encode()).decode())
        forms.append(base64.b64encode(("\0%s\0%s" % (SMTP_USER, pw)).encode()).decode())
    return forms


def assert_clean(where, text):
    for s in secret_forms():
        assert s not in text, "%s shows a secret (%s...)" % (where, s[:6])


class AuthRedis(TcpRedis):
    """A TcpRedis with requirepass."""

    def __init__(self, d):
        super().__init__(d, extra=["--requirepass", REDIS_PW])

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=REDIS_PW,
                           decode_responses=True)


class AuthSink:
    """aiosmtpd that requires AUTH, allowed in plaintext (auth_require_tls=False)."""

    def __init__(self):
        self.port = free_port()
        self.messages = []
        self.failed_logins = 0
        self.lock = threading.Lock()
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        sink = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login == SMTP_USER.encode()
                  and auth_data.password == SMTP_PW.encode())
            if not ok:
                with sink.lock:
                    sink.failed_logins += 1
            return AuthResult(success=ok, handled=False)

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


@pytest.fixture
def auth_redis(tmp_path):
    srv = AuthRedis(tmp_path / "redis").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def auth_sink():
    s = AuthSink().start()
    try:
        yield s
    finally:
        s.stop()


def write_config(tmp_path, redis, sink, redis_pw=REDIS_PW, smtp_pw=SMTP_PW,
                 name="digestd.conf"):
    port = free_port()
    text = """\
[supervisor]
listen = 127.0.0.1:{port}
drain_timeout = 10s
restart_backoff_min = 10ms
restart_backoff_max = 500ms
log_level = debug
log_file = {tmp}/{name}.log

[redis]
host = 127.0.0.1
port = {rport}
password = {rpw}
timeout = 2s

[queue]
max_attempts = 2

[pool.standard]
queue = standard
workers = 2

[digest]
from = Groups <digest@example.com>
unsubscribe_secret = {hmac}
unsubscribe_url = https://example.com/unsubscribe

[transport]
type = smtp

[smtp]
host = 127.0.0.1
port = {sport}
starttls = off
username = {user}
password = {spw}
allow_plaintext_auth = yes
""".format(port=port, tmp=tmp_path, name=name, rport=redis.port, rpw=redis_pw,
           hmac=HMAC_KEY, sport=sink.port, user=SMTP_USER, spw=smtp_pw)
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def proc_texts(d):
    """The cmdline (title) of the supervisor and each of its children."""
    out = {}
    for pid in [d.pid()] + d.children():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                out[pid] = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            pass
    return out


def seed(r, we, gid=1, n=3):
    data = Data(r)
    data.group(gid, name="Secrets")
    data.members(gid, range(gid * 100 + 1, gid * 100 + n + 1))
    for u in range(gid * 100 + 1, gid * 100 + n + 1):
        data.user(u, email="u%d@example.org" % u)
    data.post(gid, gid * 1000, we - 60, title="Hello", author_id=9)


def test_secrets_never_shown(tmp_path, auth_redis, auth_sink):
    r = auth_redis.client()
    ws, we = window()
    seed(r, we)
    cfg = write_config(tmp_path, auth_redis, auth_sink)
    seen = {}

    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        # Titles while idle and while busy (the job is in the title then).
        seen.update(("cmdline %d" % p, t) for p, t in proc_texts(d).items())
        jid = enqueue(r, 1, "daily", ws, we)
        for _ in range(40):
            for p, t in proc_texts(d).items():
                seen["cmdline %d %s" % (p, t[:40])] = t
            time.sleep(0.01)
        wait_done(r, jid, timeout=30, d=d)
        assert len(auth_sink.messages) == 3
        assert all(a for _, a, _ in auth_sink.messages), "delivered without AUTH"
        assert any("worker" in t for t in seen.values()), seen

        seen["/status"] = d.http("/status")[2]
        seen["/status?html"] = d.http("/status?html")[2]
        seen["/metrics"] = d.metrics()
        seen["/metrics openmetrics"] = d.http(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})[2]
        d.signal(signal.SIGHUP)
        wait_for(lambda: metric_sum(d.metrics(), "digest_config_reloads_total",
                                    result="success") == 1, timeout=15, what="reload")
        d.signal(signal.SIGUSR1)
        time.sleep(0.5)
        seen.update(("cmdline after reload %d" % p, t) for p, t in proc_texts(d).items())
        for args in (["stats"], ["stats", "--json"], ["dlq", "list"],
                     ["schedule", "--period", "daily"],
                     ["enqueue", "--group", "1", "--period", "daily"]):
            p = digestctl(cfg, *args, check=False)
            assert p.returncode == 0, (args, p.stdout, p.stderr)
            seen["digestctl %s" % args] = p.stdout + p.stderr
        p = subprocess.run([DIGESTD, "-t", "-c", cfg], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        seen["digestd -t"] = p.stdout + p.stderr
        assert d.stop() == 0
    finally:
        d.kill()
    seen["stderr"] = d.log()
    with open(os.path.join(str(tmp_path), "digestd.conf.log")) as f:
        seen["log_file"] = f.read()
    assert "level=debug" in seen["log_file"] and "job done" in seen["log_file"]

    # Now with the wrong passwords: the failures are logged, not the secrets.
    bad = write_config(tmp_path, auth_redis, auth_sink, redis_pw=WRONG_REDIS_PW,
                       name="bad-redis.conf")
    d2 = Digestd(bad, tmp_path)
    d2.start(wait_ready=False)
    bad_log = os.path.join(str(tmp_path), "bad-redis.conf.log")

    def refused():
        try:
            with open(bad_log) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return False
        return len([l for l in lines if "role=worker" in l and "auth" in l.lower()]) >= 2
    try:
        # Until the workers have tried the password, been refused and
        # tried again: what they show meanwhile is looked at below.
        wait_for(refused, timeout=30, what="the refused password logged")
        seen.update(("bad redis cmdline %d" % p, t) for p, t in proc_texts(d2).items())
        seen["bad redis /status"] = d2.http("/status")[2]
    finally:
        d2.kill()
    seen["bad redis stderr"] = d2.log()
    with open(bad_log) as f:
        seen["bad redis log_file"] = f.read()
    assert "WRONGPASS" in seen["bad redis log_file"] or "invalid" in \
        seen["bad redis log_file"].lower() or "auth" in seen["bad redis log_file"].lower()
    p = digestctl(bad, "stats", check=False)
    assert p.returncode != 0
    seen["bad redis digestctl"] = p.stdout + p.stderr

    badsmtp = write_config(tmp_path, auth_redis, auth_sink, smtp_pw=WRONG_SMTP_PW,
                           name="bad-smtp.conf")
    seed(r, we, gid=2, n=2)
    d3 = Digestd(badsmtp, tmp_path)
    d3.start()
    try:
        enqueue(r, 2, "daily", ws, we)
        wait_for(lambda: auth_sink.failed_logins >= 1, timeout=30, what="a failed AUTH")
        time.sleep(0.5)
        seen.update(("bad smtp cmdline %d" % p, t) for p, t in proc_texts(d3).items())
        seen["bad smtp /status"] = d3.http("/status")[2]
        seen["bad smtp /metrics"] = d3.metrics()
        assert d3.stop() == 0
    finally:
        d3.kill()
    seen["bad smtp stderr"] = d3.log()
    with open(os.path.join(str(tmp_path), "bad-smtp.conf.log")) as f:
        seen["bad smtp log_file"] = f.read()
    assert len(auth_sink.messages) == 3

    for where, text in seen.items():
        assert_clean(where, text)
    # The test greps something real: the user name may show, and does in the config.
    with open(cfg) as f:
        assert REDIS_PW in f.read()
