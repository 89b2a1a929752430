"""The process side of security: the HTTP listener binds loopback when
`listen` is left out; with `user = nobody` the supervisor and every child
run as nobody (uid, gid and supplementary groups, no capability) and
still work; and what digestd writes has safe modes whatever the umask:
maildir directories 0700, messages 0600, the log file 0640."""
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from lib.harness import (
    DIGESTD, Digestd, RedisServer, free_port, kill_pid, maildir_messages, wait_for)
from lib.pipeline_data import Data, enqueue, wait_done, window

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def workers(pid):
    out = set()
    for c in children(pid):
        try:
            with open("/proc/%d/cmdline" % c, "rb") as f:
                if f.read().startswith(b"digestd: worker"):
                    out.add(c)
        except OSError:
            pass
    return out


def seed(r, we, gid=1, n=3):
    data = Data(r)
    data.group(gid, name="Modes")
    data.members(gid, range(gid * 100 + 1, gid * 100 + n + 1))
    for u in range(gid * 100 + 1, gid * 100 + n + 1):
        data.user(u, email="u%d@example.org" % u)
    data.post(gid, gid * 1000, we - 60, title="Hello", author_id=9)


def config(path, redis_section, listen=True, user="", outbox=None, log_file=None):
    text = ""
    text += "[supervisor]\n"
    if listen:
        text += "listen = 127.0.0.1:%d\n" % free_port()
    text += "drain_timeout = 10s\nrestart_backoff_min = 10ms\nrestart_backoff_max = 500ms\n"
    if user:
        text += "user = %s\n" % user
    if log_file:
        text += "log_file = %s\n" % log_file
    text += "\n" + redis_section + "\n"
    text += ("[pool.standard]\nqueue = standard\nworkers = 2\n\n"
             "[digest]\nfrom = Groups <digest@example.com>\n"
             "unsubscribe_secret = modes-secret-0123456789abcdef0123\n\n"
             "[transport]\ntype = maildir\n\n[maildir]\npath = %s\n" % outbox)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def check_modes(outbox, log_file, owner):
    for sub in ("", "tmp", "new", "cur"):
        st = os.stat(os.path.join(outbox, sub))
        assert stat.S_IMODE(st.st_mode) == 0o700, (sub, oct(st.st_mode))
        assert st.st_uid == owner, (sub, st.st_uid)
    names = os.listdir(os.path.join(outbox, "new"))
    assert names
    for n in names:
        st = os.stat(os.path.join(outbox, "new", n))
        assert stat.S_IMODE(st.st_mode) == 0o600, (n, oct(st.st_mode))
        assert st.st_uid == owner
    st = os.stat(log_file)
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)


def start_with_umask(d, mask):
    old = os.umask(mask)
    try:
        d.start()
    finally:
        os.umask(old)


def test_file_modes_whatever_the_umask(tmp_path, redis_server):
    r = redis_server.client()
    ws, we = window()
    seed(r, we)
    outbox = os.path.join(str(tmp_path), "outbox")
    log_file = os.path.join(str(tmp_path), "digestd.log")
    cfg = config(os.path.join(str(tmp_path), "d.conf"), redis_server.config_section(),
                 outbox=outbox, log_file=log_file)
    d = Digestd(cfg, tmp_path)
    start_with_umask(d, 0)
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
        assert len(maildir_messages(outbox)) == 3
        # SIGUSR1 reopens the log: the new file has the same mode.
        os.rename(log_file, log_file + ".1")
        d.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log_file), timeout=10, what="log reopened")
        check_modes(outbox, log_file, os.geteuid())
        assert d.stop() == 0
    finally:
        d.kill()


@ROOT_ONLY
def test_user_drops_privileges_everywhere(tmp_path):
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="digestd-user-")
    srv = None
    d = None
    try:
        os.chmod(base, 0o755)
        var = os.path.join(base, "var")
        os.makedirs(var)
        os.chown(var, nobody.pw_uid, nobody.pw_gid)
        os.chmod(var, 0o700)
        srv = RedisServer(os.path.join(base, "redis"), port=free_port()).start()
        r = srv.client()
        ws, we = window()
        seed(r, we)
        outbox = os.path.join(var, "outbox")
        log_file = os.path.join(var, "digestd.log")
        cfg = config(os.path.join(base, "d.conf"),
                     "[redis]\nhost = 127.0.0.1\nport = %d\n" % srv.port,
                     user="nobody", outbox=outbox, log_file=log_file)
        d = Digestd(cfg, base)
        start_with_umask(d, 0o022)
        pids = [d.pid()] + children(d.pid())
        assert len(pids) >= 3, pids     # the supervisor, two workers, the sampler
        for pid in pids:
            st = proc_status(pid)
            assert st["Uid"] == [str(nobody.pw_uid)] * 4, (pid, st["Uid"])
            assert st["Gid"] == [str(nobody.pw_gid)] * 4, (pid, st["Gid"])
            assert set(st.get("Groups", [])) <= {str(nobody.pw_gid)}, (pid, st["Groups"])
            assert int(st["CapEff"][0], 16) == 0, (pid, st["CapEff"])
            assert int(st["CapPrm"][0], 16) == 0, (pid, st["CapPrm"])

        # It still does its work as nobody, and reloads (reading the file as nobody).
        wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=30, d=d)
        assert len(maildir_messages(outbox)) == 3
        check_modes(outbox, log_file, nobody.pw_uid)
        # Every process, running as nobody, writes to the log file (the
        # worker says "job done" just after the checkpoint does).
        def read_log():
            with open(log_file) as f:
                text = f.read()
            return text if "role=worker" in text and "job done" in text else None
        wait_for(read_log, timeout=10, what="the worker's lines in the log file")
        with open(log_file) as f:
            logged = f.read()
        assert "Permission denied" not in logged + d.log(), d.log()[-2000:]
        assert "role=worker" in logged and "job done" in logged, logged[-2000:]
        old = wait_for(lambda: len(workers(d.pid())) == 2 and workers(d.pid()),
                       timeout=10, what="two workers")
        d.signal(signal.SIGHUP)
        try:
            wait_for(lambda: not (workers(d.pid()) & old)
                     and len(workers(d.pid())) == 2, timeout=20,
                     what="workers replaced by the reload")
        except AssertionError:
            titles = {}
            for c in children(d.pid()):
                with open("/proc/%d/cmdline" % c, "rb") as f:
                    titles[c] = f.read()
            raise AssertionError("%s %s" % (old, titles))
        for pid in children(d.pid()):
            assert proc_status(pid)["Uid"] == [str(nobody.pw_uid)] * 4
        assert d.stop() == 0
    finally:
        if d is not None:
            d.kill()
        if srv is not None:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)


def listening(pid):
    """(family, addr_hex, port) of the LISTEN sockets in pid's network namespace."""
    out = []
    for fam in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, fam)) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":
                    addr, port = cols[1].split(":")
                    out.append((fam, addr, int(port, 16)))
    return out


@ROOT_ONLY
def test_listen_defaults_to_loopback(tmp_path, redis_server):
    """No `listen` key: 127.0.0.1:9187.  digestd runs in a network namespace
    of its own, so the default port is free and nothing else listens there."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip missing")
    cfg = config(os.path.join(str(tmp_path), "d.conf"), redis_server.config_section(),
                 listen=False, outbox=os.path.join(str(tmp_path), "outbox"))
    logf = open(os.path.join(str(tmp_path), "d.log"), "wb")
    p = subprocess.Popen(["unshare", "-n", "sh", "-c",
                          'ip link set lo up && exec "$0" -c "$1"', DIGESTD, cfg],
                         stdout=logf, stderr=subprocess.STDOUT)
    try:
        def ready():
            assert p.poll() is None, "digestd exited"
            # Until the exec, the pid is unshare's, in our own namespace.
            return os.readlink("/proc/%d/exe" % p.pid) == os.path.realpath(DIGESTD) \
                and listening(p.pid)
        socks = wait_for(ready, timeout=15, what="digestd listening")
        assert socks == [("tcp", "0100007F", 9187)], socks
        # And it answers there, from inside its namespace.
        out = subprocess.run(
            ["nsenter", "-t", str(p.pid), "-n", "/usr/bin/python3", "-c",
             "import urllib.request as u;"
             "print(u.urlopen('http://127.0.0.1:9187/healthz', timeout=5).status)"],
            capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "200", out.stderr
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            kill_pid(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        logf.close()


@ROOT_ONLY
def test_log_file_symlink_is_not_followed(tmp_path):
    """The log file is opened as root before the drop to `user`, and was
    then handed to that user by name: a symlink planted at log_file (by
    anyone who can write its directory, the user itself included) gave
    them whatever file it pointed at.  Now the open refuses a symlink,
    digestd does not start, and the file pointed at is untouched."""
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="digestd-symlink-")
    srv = None
    d = None
    try:
        os.chmod(base, 0o755)
        var = os.path.join(base, "var")
        os.makedirs(var)
        os.chown(var, nobody.pw_uid, nobody.pw_gid)
        victim = os.path.join(base, "victim")
        with open(victim, "w") as f:
            f.write("root's own\n")
        os.chmod(victim, 0o600)
        log_file = os.path.join(var, "digestd.log")
        os.symlink(victim, log_file)
        srv = RedisServer(os.path.join(base, "redis"), port=free_port()).start()
        cfg = config(os.path.join(base, "d.conf"),
                     "[redis]\nhost = 127.0.0.1\nport = %d\n" % srv.port,
                     user="nobody", outbox=os.path.join(var, "outbox"),
                     log_file=log_file)
        d = Digestd(cfg, base)
        d.start(wait_ready=False)
        wait_for(lambda: d.exited() or d.http_status("/readyz") == 200,
                 timeout=15, what="digestd exited or ready")
        st = os.stat(victim)
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert stat.S_IMODE(st.st_mode) == 0o600
        with open(victim) as f:
            assert f.read() == "root's own\n"
        assert d.exited(), "started on a symlinked log_file"
        assert d.wait() == 2
        assert "log_file" in d.log() and "Too many levels of symbolic links" in d.log()
    finally:
        if d is not None:
            d.kill()
        if srv is not None:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)


@ROOT_ONLY
def test_user_keeps_its_supplementary_groups(tmp_path):
    """`user` gets its own groups (initgroups), as login and su give them,
    not none at all: an operator grants digestd access to a socket or a
    certificate through a group.  digestd runs in a mount namespace of
    its own where /etc/group makes nobody a member of one more group, so
    the host's group file is never touched."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare missing")
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="digestd-groups-")
    srv = None
    p = None
    logf = None
    try:
        os.chmod(base, 0o755)
        var = os.path.join(base, "var")
        os.makedirs(var)
        os.chown(var, nobody.pw_uid, nobody.pw_gid)
        os.chmod(var, 0o700)
        gid = 4000 + os.getpid() % 1000
        group = os.path.join(base, "group")
        with open("/etc/group") as f:
            text = f.read()
        with open(group, "w") as f:
            f.write(text + ("" if text.endswith("\n") else "\n")
                    + "digestdtest:x:%d:nobody\n" % gid)
        os.chmod(group, 0o644)
        srv = RedisServer(os.path.join(base, "redis"), port=free_port()).start()
        cfg = config(os.path.join(base, "d.conf"),
                     "[redis]\nhost = 127.0.0.1\nport = %d\n" % srv.port,
                     user="nobody", outbox=os.path.join(var, "outbox"),
                     log_file=os.path.join(var, "digestd.log"))
        logf = open(os.path.join(base, "out.log"), "wb")
        p = subprocess.Popen(["unshare", "-m", "sh", "-c",
                              'mount --bind "$0" /etc/group && exec "$1" -c "$2"',
                              group, DIGESTD, cfg],
                             stdout=logf, stderr=subprocess.STDOUT)

        def running():
            assert p.poll() is None, "digestd exited"
            return os.readlink("/proc/%d/exe" % p.pid) == os.path.realpath(DIGESTD) \
                and len(workers(p.pid)) == 2 and workers(p.pid)
        wait_for(running, timeout=15, what="digestd and its workers")
        for pid in [p.pid] + sorted(workers(p.pid)):
            st = proc_status(pid)
            assert st["Uid"] == [str(nobody.pw_uid)] * 4, (pid, st["Uid"])
            assert set(st.get("Groups", [])) == {str(nobody.pw_gid), str(gid)}, \
                (pid, st.get("Groups"))
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p is not None and p.poll() is None:
            kids = children(p.pid)
            kill_pid(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            for k in kids:
                kill_pid(k, signal.SIGKILL, timeout=2)
        if logf is not None:
            logf.close()
        if srv is not None:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)
