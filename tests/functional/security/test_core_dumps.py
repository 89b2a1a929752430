"""No core dump carries a secret: every process that holds the
configuration (the supervisor, a worker, the queue sampler, digestctl) runs
with a core file size limit of 0 and is not dumpable, unless
`[supervisor] core_dumps = yes`, which gives back the limit the process
started with and makes it dumpable again.

digestd and digestctl run as nobody (digestd starts as root and drops to
`user = nobody`; digestctl is started as nobody), so that dumpability
shows from outside: the kernel makes the /proc/PID files of a process
that is not dumpable root's.  The limit is read from /proc/PID/limits.
Both are started with a core limit of 4M (hard: unlimited).  Running not
dumpable, the supervisor still reads its own /proc/self (process_open_fds).
"""
import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
import urllib.request

import pytest

from lib.harness import (
    ASAN, DIGESTCTL, DIGESTD, RedisServer, free_port, kill_pid, metric, wait_for)
from lib import deploy_helpers as dh

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (drops to nobody)")

START_SOFT = 4 * 1024 * 1024

# AddressSanitizer sets the core limit to 0 itself, before main, unless
# told not to: the limit found at start would be its own.
ENV = dict(os.environ)
if ASAN:
    ENV["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                 "disable_coredump=0"]))


def start_limit():
    resource.setrlimit(resource.RLIMIT_CORE, (START_SOFT, resource.RLIM_INFINITY))


def core_limit(pid):
    """(soft, hard) of Max core file size, as /proc/PID/limits shows them."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                soft, hard = line[len("Max core file size"):].split()[:2]
                return soft, hard
    raise AssertionError("no core limit for %d" % pid)


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid for %d" % pid)


def dumpable(pid):
    """A process not dumpable has its /proc/PID files owned by root."""
    return os.stat("/proc/%d/status" % pid).st_uid == proc_uid(pid)


def children(pid):
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != pid:
                    continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                out[int(d)] = f.read().split(b"\0")[0].decode("utf-8", "replace")
        except OSError:
            pass
    return out


def config(base, redis_port, port, core_dumps, pool="standard", user=True):
    text = "[supervisor]\nlisten = 127.0.0.1:%d\ndrain_timeout = 5s\n" % port
    if user:
        text += "user = nobody\n"
    if core_dumps is not None:
        text += "core_dumps = %s\n" % core_dumps
    text += ("\n[redis]\nhost = 127.0.0.1\nport = %d\n\n"
             "[pool.%s]\nworkers = 1\n\n"
             "[digest]\nunsubscribe_secret = core-dump-secret-0123456789abcdef\n\n"
             "[transport]\ntype = maildir\n\n[maildir]\npath = %s/var/outbox\n"
             % (redis_port, pool, base))
    path = os.path.join(base, "%s-%s.conf" % (pool, core_dumps))
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def check(pid, what, core_dumps, nobody):
    assert proc_uid(pid) == nobody.pw_uid, what
    soft, hard = core_limit(pid)
    assert hard == "unlimited", (what, soft, hard)
    if core_dumps == "yes":
        assert soft == str(START_SOFT), (what, soft)
        assert dumpable(pid), what
    else:
        assert soft == "0", (what, soft)
        assert not dumpable(pid), what


@pytest.fixture
def base():
    d = tempfile.mkdtemp(prefix="digestd-core-")
    try:
        os.chmod(d, 0o755)
        nobody = pwd.getpwnam("nobody")
        var = os.path.join(d, "var")
        os.makedirs(var)
        os.chown(var, nobody.pw_uid, nobody.pw_gid)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("core_dumps", [None, "no", "yes"])
def test_processes_holding_the_config_dump_no_core(base, core_dumps):
    nobody = pwd.getpwnam("nobody")
    srv = RedisServer(os.path.join(base, "redis"), port=free_port()).start()
    port = free_port()
    proc = ctl = None
    logf = open(os.path.join(base, "digestd.log"), "wb")
    try:
        conf = config(base, srv.port, port, core_dumps)
        proc = subprocess.Popen([DIGESTD, "-c", conf], stdout=logf,
                                stderr=subprocess.STDOUT, preexec_fn=start_limit,
                                cwd=base, env=ENV)

        def ready():
            assert proc.poll() is None, open(os.path.join(base, "digestd.log")).read()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port,
                                            timeout=1) as r:
                    return r.status == 200
            except Exception:
                return False

        def worker_and_sampler():
            kids = children(proc.pid)
            titles = " ".join(kids.values())
            return kids if "worker" in titles and "sampler" in titles else None
        wait_for(ready, timeout=20, what="digestd ready")
        kids = wait_for(worker_and_sampler, timeout=10, what="a worker and the sampler")
        check(proc.pid, "supervisor", core_dumps, nobody)
        for pid, title in kids.items():
            check(pid, title, core_dumps, nobody)

        # Not dumpable, the supervisor still reads its own /proc/self.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        assert metric(text, "process_open_fds") > 3
        assert metric(text, "process_resident_memory_bytes") > 0

        # digestctl, started as nobody, while it runs: its queue holds a
        # job no worker takes, so watch goes on until killed.
        ctl_conf = config(base, srv.port, port, core_dumps, pool="idle", user=False)
        srv.client().xadd("digest:q:idle", {"job_id": "x"})
        ctl = subprocess.Popen(
            ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
             "--clear-groups", DIGESTCTL, "-c", ctl_conf, "watch", "--interval", "0.2",
             "--timeout", "60s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=start_limit,
            env=ENV)
        line = ctl.stdout.readline()
        assert b"idle=" in line, line + ctl.stderr.read()
        check(ctl.pid, "digestctl", core_dumps, nobody)
    finally:
        if ctl is not None:
            ctl.kill()
            ctl.wait(timeout=10)
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_pid(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        logf.close()
        srv.stop()
    log = open(os.path.join(base, "digestd.log")).read()
    assert ("core_dumps = yes" in log) == (core_dumps == "yes"), log[-2000:]
