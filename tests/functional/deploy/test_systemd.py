"""The systemd units: digestd.service and the scheduler's timer pair.

systemd-analyze verify must pass without a single message, with the real
binaries in ExecStart= (a temp copy of each unit points at the build) and
the man pages of Documentation= resolvable; systemd-analyze security must
rate digestd.service at an exposure of 2.5 or less; and the values that
must agree with the configuration (stop timeout above drain_timeout, the
config path) are read from the unit itself.  The secrets come as systemd
credentials: both units load the same ones and mount their credentials
directory over /etc/digestd/credentials, so that one config, naming
credentials/NAME with *_file keys, serves the units and root alike (checked
for real, with a mount namespace standing in for systemd's).
"""
import os
import re
import shutil
import subprocess

import pytest

from lib.harness import ASAN, DIGESTCTL, DIGESTD, ROOT
from lib import deploy_helpers as dh

UNITS = os.path.join(ROOT, "systemd")
CONF = "/etc/digestd/digestd.conf"


def unit_values(path):
    """{key: [values]} of a unit file, every section merged."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


@pytest.fixture
def unit_root(tmp_path):
    """The units copied to tmp_path with ExecStart= pointing at the build,
    and MANPATH holding the project's man pages."""
    for b in (DIGESTD, DIGESTCTL):
        assert os.access(b, os.X_OK), "%s is not built (make)" % b
    d = tmp_path / "units"
    d.mkdir()
    for name in os.listdir(UNITS):
        src = os.path.join(UNITS, name)
        if os.path.isdir(src):
            shutil.copytree(src, d / name)
        elif name.endswith((".service", ".timer")):
            text = open(src).read()
            text = text.replace("/usr/local/sbin/digestd", DIGESTD)
            text = text.replace("/usr/local/bin/digestctl", DIGESTCTL)
            (d / name).write_text(text)
    man = tmp_path / "man"
    for page in os.listdir(os.path.join(ROOT, "man")):
        m = re.search(r"\.([0-9])$", page)
        if m:
            sec = man / ("man" + m.group(1))
            sec.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(ROOT, "man", page), sec / page)
    env = dict(os.environ, MANPATH=str(man), SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    return d, env


def test_verify_is_silent(unit_root):
    d, env = unit_root
    p = subprocess.run(
        ["systemd-analyze", "verify", "digestd.service",
         "digestctl-schedule@daily.service", "digestctl-schedule@weekly.service",
         "digestctl-schedule@daily.timer", "digestctl-schedule@weekly.timer"],
        cwd=str(d), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def test_security_exposure(unit_root):
    d, env = unit_root
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager",
         "digestd.service"],
        cwd=str(d), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"Overall exposure level for digestd\.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout
    assert float(m.group(1)) <= 2.5, p.stdout
    # --threshold makes systemd-analyze itself refuse a worse unit.
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25",
         "--no-pager", "digestd.service"],
        cwd=str(d), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_weekly_timer_fires_on_mondays_only(unit_root):
    d, env = unit_root
    env = dict(env, SYSTEMD_LOG_LEVEL="debug")
    p = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "digestctl-schedule@weekly.timer",
         "digestctl-schedule@daily.timer"],
        cwd=str(d), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    dumps = {}
    for block in re.split(r"(?=-> Unit )", p.stdout + p.stderr):
        m = re.match(r"-> Unit (\S+):", block)
        if m:
            dumps[m.group(1)] = re.findall(r"OnCalendar: (.+)", block)
    assert dumps.get("digestctl-schedule@weekly.timer") == ["Mon *-*-* 00:05:00 UTC"], dumps
    assert dumps.get("digestctl-schedule@daily.timer") == ["*-*-* 00:05:00 UTC"], dumps


def test_unit_agrees_with_config():
    v = unit_values(os.path.join(UNITS, "digestd.service"))
    assert v["Type"] == ["notify"]
    assert v["NotifyAccess"] == ["main"]
    assert v["ExecStart"] == ["/usr/local/sbin/digestd -c %s" % CONF]
    assert v["ExecReload"] == ["/usr/local/sbin/digestd -t -c %s" % CONF,
                               "/bin/kill -HUP $MAINPID"]
    assert v["KillSignal"] == ["SIGTERM"]
    assert v["KillMode"] == ["mixed"]
    assert v["OOMPolicy"] == ["continue"]
    assert v["Restart"] == ["on-failure"]
    stop = dh.duration_s(v["TimeoutStopSec"][0])
    drain = dh.example_config().duration_s("supervisor", "drain_timeout")
    assert stop > drain, (stop, drain)
    watchdog = dh.duration_s(v["WatchdogSec"][0])
    assert 0 < watchdog
    # The cgroup's memory cap must hold every pool at its limit.
    assert dh.size_bytes(v["MemoryMax"][0]) >= dh.example_config().memory_sum()
    s = unit_values(os.path.join(UNITS, "digestctl-schedule@.service"))
    assert s["ExecStart"] == [
        "/usr/local/bin/digestctl -c %s schedule --period %%i" % CONF]
    t = unit_values(os.path.join(UNITS, "digestctl-schedule@.timer"))
    assert t["Unit"] == ["digestctl-schedule@%i.service"]
    assert t["Persistent"] == ["yes"]


CREDS = "/etc/digestd/credentials"


def credentials(unit):
    """{id: source} of a unit's LoadCredential= lines, and its
    BindReadOnlyPaths=."""
    v = unit_values(os.path.join(UNITS, unit))
    creds = {}
    for line in v.get("LoadCredential", []):
        cid, _, src = line.partition(":")
        assert cid not in creds, (unit, cid)
        creds[cid] = src
    return creds, v.get("BindReadOnlyPaths", [])


def test_units_take_the_secrets_as_credentials():
    service, sbind = credentials("digestd.service")
    sched, tbind = credentials("digestctl-schedule@.service")
    assert "unsubscribe_secret" in service
    assert service == sched
    for cid, src in service.items():
        assert src == "%s/%s" % (CREDS, cid), (cid, src)
    # The private copies (%d) hide the root-only originals, in the unit only.
    assert sbind == tbind == ["-%%d:%s" % CREDS]
    with open(os.path.join(UNITS, "digestd.tmpfiles")) as f:
        assert "d %s 0700 root root -\n" % CREDS in f.read()
    with open(os.path.join(UNITS, "digestd.service")) as f:
        text = f.read()
    assert "#   unsubscribe_secret_file = credentials/unsubscribe_secret\n" in text
    # Every password the comment offers names a file in the same place.
    for cid, src in re.findall(r"^#   LoadCredential=([a-z_]+):(\S+)$", text, re.M):
        assert src == "%s/%s" % (CREDS, cid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace)")
def test_one_config_for_root_and_the_units(tmp_path):
    """The config line the unit documents, in a config beside a root-only
    credentials directory: root reads the secret itself; the service's user
    cannot, until its own copy (what LoadCredential= makes) is mounted over
    the directory, as BindReadOnlyPaths= does in the unit."""
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    secret = "unit-secret-0123456789abcdef0123456789"
    base = tempfile.mkdtemp(prefix="digestd-creds-")
    try:
        os.chmod(base, 0o755)
        etc = os.path.join(base, "etc", "digestd")
        os.makedirs(os.path.join(etc, "credentials"))
        os.chmod(os.path.join(base, "etc"), 0o755)
        os.chmod(etc, 0o755)
        os.chmod(os.path.join(etc, "credentials"), 0o700)
        with open(os.path.join(etc, "credentials", "unsubscribe_secret"), "w") as f:
            f.write(secret + "\n")
        os.chmod(os.path.join(etc, "credentials", "unsubscribe_secret"), 0o600)
        # What systemd makes: a directory of copies the service's user owns.
        copies = os.path.join(base, "run-credentials")
        os.makedirs(copies)
        with open(os.path.join(copies, "unsubscribe_secret"), "w") as f:
            f.write(secret + "\n")
        for path, mode in ((copies, 0o500), (os.path.join(copies, "unsubscribe_secret"), 0o400)):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
            os.chmod(path, mode)
        conf = os.path.join(etc, "digestd.conf")
        with open(conf, "w") as f:
            f.write("[digest]\nunsubscribe_secret_file = credentials/unsubscribe_secret\n"
                    "[pool.standard]\n")
        os.chmod(conf, 0o644)
        as_user = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                   "--clear-groups", DIGESTD, "-t", "-c", conf]

        p = subprocess.run([DIGESTD, "-t", "-c", conf], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        p = subprocess.run(as_user, capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, p.stdout + p.stderr
        assert ("unsubscribe_secret_file: %s/credentials/unsubscribe_secret: "
                "Permission denied" % etc) in p.stderr
        p = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind -o ro "$1" "$2" && shift 2 && exec "$@"', "sh",
             copies, os.path.join(etc, "credentials")] + as_user,
            capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        assert secret not in p.stdout + p.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def syscall_sets():
    """{"@name": [member, ...]} of systemd-analyze syscall-filter."""
    p = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    sets, cur = {}, None
    for line in p.stdout.splitlines():
        if line.startswith("@"):
            cur = sets.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return sets


def expand(name, sets, seen=None):
    seen = set() if seen is None else seen
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for m in sets[name]:
        out |= expand(m, sets, seen)
    return out


@pytest.mark.skipif(ASAN, reason="LeakSanitizer cannot run under ptrace (strace)")
def test_digestd_stays_inside_the_units_sandbox(tmp_path):
    """digestd, traced through start-up, scrapes, jobs, a reload and a
    drain, makes only the system calls that the unit's SystemCallFilter=
    allows and opens only the socket families RestrictAddressFamilies=
    allows (EPERM or a dead service otherwise)."""
    import signal
    import time
    import urllib.request

    from lib.harness import RedisServer, base_config, digestctl, free_port, \
        maildir_messages, wait_for, write_config

    allowed, families = unit_sandbox("digestd.service")

    rport = free_port()
    srv = RedisServer(tmp_path / "redis", port=rport).start()
    trace = tmp_path / "trace.txt"
    proc = None
    try:
        cfg, port = base_config(tmp_path, extra="""
[redis]
host = 127.0.0.1
port = %d

[pool.priority]
queue = priority
workers = 1

[pool.standard]
queue = standard
workers = 1
""" % rport)
        conf = write_config(tmp_path, cfg)
        digestctl(conf, "seed", "--groups", "5", "--members", "20", "--posts", "30")
        digestctl(conf, "schedule", "--period", "daily")
        proc = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), DIGESTD,
                                 "-c", conf], cwd=str(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def get(path):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                            timeout=2) as r:
                    return r.status
            except Exception:
                return None
        wait_for(lambda: get("/readyz") == 200, timeout=30, what="/readyz")
        outbox = os.path.join(str(tmp_path), "outbox")
        wait_for(lambda: len(maildir_messages(outbox)) > 0 and
                 get("/metrics") == 200 and get("/status") == 200,
                 timeout=30, what="mail delivered")
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            dpid = int(f.read().split()[0])
        os.kill(dpid, signal.SIGHUP)
        time.sleep(1)
        wait_for(lambda: get("/readyz") == 200, timeout=30, what="ready after reload")
        os.kill(dpid, signal.SIGUSR1)
        os.kill(dpid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        proc = None
    finally:
        if proc is not None:
            dh.stop_proc(proc)
        srv.stop()
    used = check_trace(trace.read_text(), allowed, families)
    assert {"execve", "clone", "socket", "connect", "bind", "listen", "prctl"} <= used, used


def unit_sandbox(unit):
    """The system calls and socket families a unit allows."""
    v = unit_values(os.path.join(UNITS, unit))
    sets = syscall_sets()
    allow, deny = set(), set()
    for f in v["SystemCallFilter"]:
        for item in f.lstrip("~").split():
            (deny if f.startswith("~") else allow).update(expand(item, sets))
    allowed = allow - deny
    assert "setuid" not in allowed and "openat" in allowed
    return allowed, set(v["RestrictAddressFamilies"][0].split())


def check_trace(text, allowed, families):
    """The system calls of an strace -f log, checked against the unit's."""
    used = set(re.findall(r"^\d+\s+([a-z0-9_]+)\(", text, re.M))
    assert not used - allowed, "outside SystemCallFilter=: %s" % sorted(used - allowed)
    fams = set(re.findall(r"socket\((AF_[A-Z0-9]+)", text))
    assert fams and fams <= families, fams
    return used


@pytest.mark.skipif(ASAN, reason="LeakSanitizer cannot run under ptrace (strace)")
def test_digestctl_schedule_stays_inside_its_units_sandbox(tmp_path):
    from lib.harness import RedisServer, base_config, digestctl, free_port, write_config

    allowed, families = unit_sandbox("digestctl-schedule@.service")
    rport = free_port()
    srv = RedisServer(tmp_path / "redis", port=rport).start()
    try:
        cfg, _ = base_config(tmp_path, extra="""
[redis]
host = 127.0.0.1
port = %d

[pool.standard]
queue = standard
""" % rport)
        conf = write_config(tmp_path, cfg)
        digestctl(conf, "seed", "--groups", "20", "--members", "50", "--posts", "80")
        trace = tmp_path / "trace.txt"
        p = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), DIGESTCTL, "-c", conf,
                            "schedule", "--period", "daily"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert srv.client().xlen("digest:q:standard") > 0
    finally:
        srv.stop()
    used = check_trace(trace.read_text(), allowed, families)
    assert {"execve", "socket", "connect"} <= used
