"""Installing digestd: `make install` and the Debian package.

`make install` puts the binaries, the man pages (digestctl in section 1),
the systemd units, the sysusers and tmpfiles files and the example config
under DESTDIR, with the paths inside the units and files following PREFIX
and SYSCONFDIR, and the installed unit verifies with the installed binaries.
The build honours CPPFLAGS and makes warnings errors only with WERROR=1 (the
tree's default).  `dpkg-buildpackage -us -uc -b` builds digestd_*.deb from
a copy of the tree; lintian reports no error; unpacked into a scratch root
(`dpkg -x`), its unit verifies with the packaged binaries and man pages, and
its config passes `digestd -t` once a secret is set.
"""
import glob
import gzip
import os
import re
import shutil
import subprocess

import pytest

from lib import deploy_helpers as dh
from lib.harness import ROOT

SECRET = "package-test-secret-0123456789abcdef0123"


def relocated_units(root, unitdir, tmp_path):
    """The units of root/unitdir copied to tmp_path/units, every absolute
    path of a file shipped under root pointed into root, so that
    systemd-analyze finds the installed binaries."""
    d = tmp_path / "units"
    shutil.copytree(os.path.join(root, unitdir.lstrip("/")), d)
    for path in glob.glob(str(d / "*.service")) + glob.glob(str(d / "*.timer")):
        with open(path) as f:
            text = f.read()
        for exe in set(re.findall(r"^Exec[A-Za-z]*=[-+!@:]*(/\S+)", text, re.M)):
            if os.path.exists(os.path.join(root, exe.lstrip("/"))):
                text = text.replace(exe, os.path.join(root, exe.lstrip("/")))
        with open(path, "w") as f:
            f.write(text)
    return d


def verify(unitdir, manpath):
    env = dict(os.environ, MANPATH=manpath, SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    p = subprocess.run(
        [dh.tool("systemd-analyze"), "verify", "digestd.service",
         "digestctl-schedule@daily.service", "digestctl-schedule@weekly.timer"],
        cwd=str(unitdir), env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def exec_lines(path):
    with open(path) as f:
        return re.findall(r"^(Exec[A-Za-z]*)=(.*)$", f.read(), re.M)


def test_make_install_follows_prefix(tmp_path):
    dest = tmp_path / "dest"
    p = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=%s" % dest,
                        "PREFIX=/opt/digestd", "SYSCONFDIR=/opt/digestd/etc"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    root = str(dest)
    top = os.path.join(root, "opt", "digestd")
    for rel in ("sbin/digestd", "bin/digestctl", "share/man/man1/digestctl.1",
                "share/man/man8/digestd.8", "share/man/man5/digestd.conf.5",
                "lib/systemd/system/digestd.service",
                "lib/systemd/system/digestctl-schedule@.service",
                "lib/systemd/system/digestctl-schedule@.timer",
                "lib/systemd/system/digestctl-schedule@weekly.timer.d/weekly.conf",
                "lib/sysusers.d/digestd.conf", "lib/tmpfiles.d/digestd.conf",
                "share/doc/digestd/digestd.conf.example", "etc/digestd/digestd.conf"):
        assert os.path.isfile(os.path.join(top, rel)), rel
    unit = os.path.join(top, "lib/systemd/system/digestd.service")
    assert exec_lines(unit) == [
        ("ExecStartPre", "/opt/digestd/sbin/digestd -t -c /opt/digestd/etc/digestd/digestd.conf"),
        ("ExecStart", "/opt/digestd/sbin/digestd -c /opt/digestd/etc/digestd/digestd.conf"),
        ("ExecReload", "/opt/digestd/sbin/digestd -t -c /opt/digestd/etc/digestd/digestd.conf"),
        ("ExecReload", "/bin/kill -HUP $MAINPID")]
    sched = os.path.join(top, "lib/systemd/system/digestctl-schedule@.service")
    assert exec_lines(sched) == [
        ("ExecStart", "/opt/digestd/bin/digestctl -c "
         "/opt/digestd/etc/digestd/digestd.conf schedule --period %i")]
    for f in glob.glob(os.path.join(top, "lib", "*", "*.conf")) + [unit, sched]:
        with open(f) as fh:
            text = fh.read()
        assert "/usr/local" not in text, f
        assert not re.search(r"(?<!/opt/digestd)/etc/digestd", text), f
    with open(os.path.join(top, "lib/tmpfiles.d/digestd.conf")) as f:
        assert "d /opt/digestd/etc/digestd/credentials 0700 root root -" in f.read()
    with open(os.path.join(top, "etc/digestd/digestd.conf")) as f:
        with open(os.path.join(ROOT, "docs", "digestd.conf.example")) as g:
            assert f.read() == g.read()
    verify(relocated_units(root, "/opt/digestd/lib/systemd/system", tmp_path),
           os.path.join(top, "share", "man"))

    # A second install keeps the configuration an operator has written.
    conf = os.path.join(top, "etc/digestd/digestd.conf")
    with open(conf, "w") as f:
        f.write("# mine\n")
    p = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=%s" % dest,
                        "PREFIX=/opt/digestd", "SYSCONFDIR=/opt/digestd/etc"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(conf) as f:
        assert f.read() == "# mine\n"


def compile_lines(*args):
    p = subprocess.run(["make", "-n", "-B", "-C", ROOT, "BUILD=build-dry-run"] +
                       list(args) + ["build-dry-run/digestd"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [l for l in p.stdout.splitlines() if " -c -o " in l]
    assert len(lines) > 20, p.stdout
    return lines


def test_build_honours_cppflags_and_werror_is_for_development():
    for line in compile_lines():
        assert " -Werror " in line, line
    for line in compile_lines("WERROR=0", "CPPFLAGS=-DDIGESTD_PROBE_FLAG"):
        assert "-Werror" not in line.replace("-Werror=", ""), line
        assert " -DDIGESTD_PROBE_FLAG " in line, line


def copy_tree(dst):
    """The files of the tree (tracked or new, not ignored) copied to dst."""
    p = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "-co", "--exclude-standard"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for rel in p.stdout.decode().split("\0"):
        if not rel or not os.path.exists(os.path.join(ROOT, rel)):
            continue
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(dst, rel), follow_symlinks=False)


@pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                    reason="dpkg-buildpackage is not installed (scripts/deps.sh test "
                           "installs dpkg-dev)")
def test_debian_package(tmp_path):
    src = tmp_path / "src"
    copy_tree(str(src))
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
    p = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=str(src),
                       env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    debs = glob.glob(str(tmp_path / "digestd_*.deb"))
    assert len(debs) == 1, os.listdir(str(tmp_path))
    deb = debs[0]

    p = subprocess.run([dh.tool("lintian"), "--no-tag-display-limit", deb],
                       capture_output=True, text=True, timeout=600)
    errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
    assert not errors, p.stdout
    assert p.returncode == 0, p.stdout + p.stderr

    root = tmp_path / "root"
    p = subprocess.run(["dpkg", "-x", deb, str(root)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = str(root)
    for rel in ("usr/sbin/digestd", "usr/bin/digestctl",
                "usr/share/man/man1/digestctl.1.gz", "usr/share/man/man8/digestd.8.gz",
                "usr/share/man/man5/digestd.conf.5.gz",
                "lib/systemd/system/digestd.service",
                "lib/systemd/system/digestctl-schedule@.service",
                "lib/systemd/system/digestctl-schedule@.timer",
                "usr/lib/sysusers.d/digestd.conf", "usr/lib/tmpfiles.d/digestd.conf",
                "etc/digestd/digestd.conf", "usr/share/doc/digestd/copyright"):
        assert os.path.isfile(os.path.join(r, rel)), rel
    with gzip.open(os.path.join(r, "usr/share/man/man1/digestctl.1.gz"), "rt") as f:
        head = f.read(400)
    assert ".Dt DIGESTCTL 1\n.Os digestd\n" in head, head
    unit = os.path.join(r, "lib/systemd/system/digestd.service")
    assert ("ExecStart", "/usr/sbin/digestd -c /etc/digestd/digestd.conf") in \
        exec_lines(unit)
    verify(relocated_units(r, "/lib/systemd/system", tmp_path),
           os.path.join(r, "usr", "share", "man"))

    exe = os.path.join(r, "usr/sbin/digestd")
    p = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("digestd "), p.stdout + p.stderr
    with open(os.path.join(r, "etc/digestd/digestd.conf")) as f:
        text = f.read()
    conf = tmp_path / "digestd.conf"
    conf.write_text(text.replace("\n;unsubscribe_secret =\n",
                                 "\nunsubscribe_secret = %s\n" % SECRET))
    p = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
