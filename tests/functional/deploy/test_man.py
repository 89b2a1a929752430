"""The man pages: digestd(8), digestctl(1), digestd.conf(5) render without
a single warning (groff -mdoc -ww, and man -l --warnings), document every
command, option and config key that the binaries and the example config
have, and `make install DESTDIR=...` puts them where man finds them.
"""
import os
import re
import subprocess

import pytest

from lib.harness import DIGESTCTL, DIGESTD, ROOT
from lib import deploy_helpers as dh

MAN = os.path.join(ROOT, "man")
PAGES = ["digestd.8", "digestctl.1", "digestd.conf.5"]


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


@pytest.mark.parametrize("name", PAGES)
def test_groff_is_silent(name):
    p = subprocess.run([dh.tool("groff"), "-mdoc", "-ww", "-z", os.path.join(MAN, name)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == "", p.stderr


@pytest.mark.parametrize("name", PAGES)
def test_man_renders_without_warnings(name):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_STDERR="1")
    p = subprocess.run([dh.tool("man"), "--warnings", "-l", os.path.join(MAN, name)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    title = name.rsplit(".", 1)[0].upper()
    assert p.stdout.lstrip().startswith(title + "(" + name[-1] + ")")
    assert "NAME" in p.stdout and "DESCRIPTION" in p.stdout


def test_a_broken_page_is_caught(tmp_path):
    """The checks above do fail on a bad page."""
    bad = tmp_path / "bad.8"
    bad.write_text(page("digestd.8").replace(".El\n", "", 1))
    p = subprocess.run([dh.tool("groff"), "-mdoc", "-ww", "-z", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.stderr != ""


def test_digestd_options_and_signals():
    text = page("digestd.8")
    p = subprocess.run([DIGESTD, "-h"], capture_output=True, text=True, timeout=10)
    opts = set(re.findall(r"^\s+-([a-zA-Z])\b", p.stdout + p.stderr, re.M))
    assert {"c", "t", "v", "h"} <= opts, p.stdout + p.stderr
    for o in opts:
        assert re.search(r"^\.It Fl %s\b" % o, text, re.M), "-%s undocumented" % o
    for sig in ("SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1"):
        assert "Dv %s" % sig in text
    for path in ("/metrics", "/healthz", "/readyz", "/status"):
        assert ".It Pa %s" % path in text
    assert ".Sh EXIT STATUS" in text


def test_digestctl_commands():
    text = page("digestctl.1")
    p = subprocess.run([DIGESTCTL, "-h"], capture_output=True, text=True, timeout=10)
    cmds = set(re.findall(r"^\s+([a-z][a-z-]+)\b", p.stdout, re.M))
    for spec in ("schedule", "enqueue", "stats", "watch", "dlq", "seed"):
        assert spec in cmds, p.stdout
    for c in cmds:
        assert re.search(r"^\.It Cm %s\b" % re.escape(c), text, re.M), \
            "digestctl %s undocumented" % c
    # Every --option of the usage lines is in the page.
    for o in set(re.findall(r"--([a-z]+)", p.stdout)):
        assert "Fl -%s" % o in text, "--%s undocumented" % o


def conf_sections(text):
    """{section: text} of digestd.conf.5's .Ss subsections."""
    parts = re.split(r"^\.Ss ", text, flags=re.M)[1:]
    out = {}
    for part in parts:
        head, _, body = part.partition("\n")
        name = re.sub(r"\s|Ns|Ar", "", head).strip("[]")
        out[name] = body.split("\n.Sh ", 1)[0]
    return out


def test_conf_page_has_every_key_and_default():
    ex = dh.example_config()
    secs = conf_sections(page("digestd.conf.5"))
    assert len(ex.sections) >= 10
    for sec, keys in ex.sections.items():
        man_sec = "pool.NAME" if sec.startswith("pool.") else sec
        assert man_sec in secs, "[%s] undocumented" % sec
        for key, default in keys.items():
            m = re.search(r"^\.It Cm %s No =(?: Ar (.*))?$" % key, secs[man_sec], re.M)
            assert m, "[%s] %s undocumented" % (sec, key)
            # The example's pools show their own name as the queue.
            if sec.startswith("pool.") and key == "queue":
                default = "NAME" if default == sec[5:] else default
            assert (m.group(1) or "") == default, (sec, key, m.group(1), default)
    # And the page documents no key that the example does not have.
    for man_sec, body in secs.items():
        ex_sec = man_sec if man_sec != "pool.NAME" else \
            [s for s in ex.sections if s.startswith("pool.")][0]
        for key in re.findall(r"^\.It Cm ([a-z_]+) No =", body, re.M):
            assert key in ex.sections[ex_sec], "[%s] %s is not a key" % (man_sec, key)


def test_make_install_puts_pages_where_man_finds_them(tmp_path):
    dest = tmp_path / "root"
    p = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=%s" % dest,
                        "PREFIX=/usr"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    mandir = dest / "usr" / "share" / "man"
    for name in PAGES:
        sec = name[-1]
        path = mandir / ("man" + sec) / name
        assert path.is_file(), path
        assert path.read_text() == page(name)
    assert os.access(dest / "usr" / "sbin" / "digestd", os.X_OK)
    assert os.access(dest / "usr" / "bin" / "digestctl", os.X_OK)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for sec, topic in (("5", "digestd.conf"), ("1", "digestctl"), ("8", "digestd")):
        p = subprocess.run([dh.tool("man"), "-M", str(mandir), sec, topic],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        assert topic.upper() + "(" + sec + ")" in p.stdout
