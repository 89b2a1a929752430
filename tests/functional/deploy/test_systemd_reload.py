"""`systemctl reload digestd` fails on a bad file: the unit's ExecReload=
runs `digestd -t` before it signals, and systemd runs ExecReload= lines in
order, stopping at the first that fails.  Here the unit's own lines run as
systemd would run them, against a real digestd: a broken file fails the
first line, so no SIGHUP is sent and digestd counts no reload at all; a good
one passes it and the SIGHUP applies the change.  systemd-analyze verify of
the unit is in test_systemd.py.
"""
import os
import shlex
import subprocess

from lib.harness import DIGESTD, ROOT, base_config, metric, wait_for, write_config

UNIT = os.path.join(ROOT, "systemd", "digestd.service")
CONF = "/etc/digestd/digestd.conf"


def exec_reload_lines():
    lines = []
    with open(UNIT) as f:
        for line in f:
            if line.startswith("ExecReload="):
                lines.append(line.split("=", 1)[1].strip())
    return lines


def systemctl_reload(conf, mainpid):
    """Run the unit's ExecReload= lines as systemd does: in order, with
    $MAINPID set, the first failure failing the reload.  (returncode,
    output) of the job."""
    out = ""
    for line in exec_reload_lines():
        line = line.replace("/usr/local/sbin/digestd", DIGESTD).replace(CONF, conf)
        argv = [a.replace("$MAINPID", str(mainpid)) for a in shlex.split(line)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        out += p.stdout + p.stderr
        if p.returncode != 0:
            return p.returncode, out
    return 0, out


def test_exec_reload_checks_before_it_signals():
    lines = exec_reload_lines()
    assert lines == ["/usr/local/sbin/digestd -t -c %s" % CONF,
                     "/bin/kill -HUP $MAINPID"], lines


def reloads(d, result):
    return metric(d.metrics(), "digest_config_reloads_total", result=result)


def workers(d):
    return sum(1 for w in d.status()["workers"] if w["pool"] == "standard")


def test_reload_of_a_bad_file_fails_and_sends_nothing(tmp_path, redis_server,
                                                      digestd_factory):
    good, _ = base_config(tmp_path, extra=redis_server.config_section() +
                          "[pool.priority]\nworkers = 1\n"
                          "[pool.standard]\nworkers = 1\n")
    conf = write_config(tmp_path, good)
    d = digestd_factory(config_path=conf).start()
    assert reloads(d, "success") == 0 and reloads(d, "failure") == 0

    with open(conf, "w") as f:
        f.write(good.replace("workers = 1\n[pool.standard]",
                             "workers = one\n[pool.standard]"))
    rc, out = systemctl_reload(conf, d.pid())
    assert rc == 1, out
    assert "workers: \"one\" is not a whole number" in out, out
    assert "test failed" in out, out
    # No SIGHUP reached digestd: not even a failed reload is counted.
    assert reloads(d, "success") == 0 and reloads(d, "failure") == 0
    assert "reload" not in d.log()
    assert not d.exited()

    with open(conf, "w") as f:
        f.write(good.replace("[pool.standard]\nworkers = 1",
                             "[pool.standard]\nworkers = 2"))
    rc, out = systemctl_reload(conf, d.pid())
    assert rc == 0, out
    wait_for(lambda: reloads(d, "success") == 1, timeout=15, what="reload")
    wait_for(lambda: workers(d) == 2, timeout=15, what="two standard workers")
    assert reloads(d, "failure") == 0
    assert d.stop() == 0
