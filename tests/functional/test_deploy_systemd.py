"""The systemd units: digestd.service and the scheduler's timer pair.

systemd-analyze verify must pass without a single message, with the real
binaries in ExecStart= (a temp copy of each unit points at the build) and
the man pages of Documentation= resolvable; systemd-analyze security must
rate digestd.service at an exposure of 2.5 or less; and the values that
must agree with the configuration (stop timeout above drain_timeout, the
config path) are read from the unit itself.
"""
import os
import re
import shutil
import subprocess

import pytest

from harness import DIGESTCTL, DIGESTD, ROOT
import deploy_helpers as dh

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
    assert v["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
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
