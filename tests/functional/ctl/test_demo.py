"""make demo's script, end to end: it must run the daily digest on its own
redis-server, print the summary, and leave no process behind."""
import os
import re
import subprocess

from lib.harness import BUILD, ROOT
import time


def session_gone(sid, timeout=5.0):
    """The processes of session sid, once they have all gone (bounded): a
    child killed by PR_SET_PDEATHSIG as its parent exits takes a moment."""
    deadline = time.monotonic() + timeout
    procs = session_procs(sid)
    while procs and time.monotonic() < deadline:
        time.sleep(0.05)
        procs = session_procs(sid)
    return procs


def session_procs(sid):
    """Live processes of session sid (the script runs in its own session,
    so everything it starts is there, whatever their process titles)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[3]) == sid and rest[0] != "Z":
            out.append(int(d))
    return out


def run_demo(env, timeout):
    p = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    out, err = p.communicate(timeout=timeout)
    return p, out, err


def test_demo_runs_and_cleans_up(tmp_path):
    var = str(tmp_path / "var")
    env = dict(os.environ, DEMO_VAR=var, DEMO_GROUPS="20", DEMO_MEMBERS="2000",
               DEMO_POSTS="300", BUILD=BUILD)
    p, out, err = run_demo(env, 300)
    assert p.returncode == 0, out + err
    m = re.search(r"emails written:\s+(\d+) \(digestd counted (\d+) sent\)", out)
    assert m, out
    written, counted = int(m.group(1)), int(m.group(2))
    assert written > 100 and written == counted
    assert len(os.listdir(os.path.join(var, "outbox", "new"))) == written
    for reason in ("inactive", "opted_out", "no_email"):
        assert re.search(r"%s\s+\d+" % reason, out)
    assert re.search(r"emails/s:\s+\d+", out)
    one = re.search(r"open one:\s+(\S+)", out).group(1)
    with open(one, "rb") as f:
        assert b"List-Unsubscribe:" in f.read()
    assert "queues empty" in out
    # Nothing it started is left running.
    assert session_gone(p.pid) == []


def test_demo_stops_redis_on_failure(tmp_path):
    # A digestd that exits at once: the script must stop its redis-server.
    var = str(tmp_path / "var")
    env = dict(os.environ, DEMO_VAR=var, DIGESTD="/bin/false", DEMO_GROUPS="5",
               DEMO_MEMBERS="100", DEMO_POSTS="20", BUILD=BUILD)
    p, out, err = run_demo(env, 60)
    assert p.returncode != 0 and "digestd exited" in err, out + err
    assert "starting redis-server" in out
    assert session_gone(p.pid) == []


def test_demo_interrupted_stops_everything(tmp_path):
    import signal
    import time
    var = str(tmp_path / "var")
    env = dict(os.environ, DEMO_VAR=var, DEMO_GROUPS="200", DEMO_MEMBERS="200000",
               DEMO_POSTS="3000", DEMO_WORKERS="1", BUILD=BUILD)
    p = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        seen += line
        if "watching the queues" in line:
            break
    assert "watching the queues" in seen, seen
    # redis-server, digestd and its workers.
    assert len(session_procs(p.pid)) >= 3
    os.killpg(p.pid, signal.SIGINT)        # what Ctrl-C does
    rest, _ = p.communicate(timeout=60)
    assert p.returncode != 0
    deadline = time.monotonic() + 10
    while session_procs(p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_gone(p.pid) == [], seen + rest
