"""The Nomad job files: every nomad/*.hcl parses as HCL2 (@cdktf/hcl2json),
and what must agree with digestd's configuration does: signals, the kill
timeout against drain_timeout, the listen port against the service port,
the check paths, the config path the template writes against the one
digestd is given, the memory reserved against the pools' limits.  The
configs the templates render pass `digestd -t`, and the scheduler job's
own command line enqueues and records a run on a real Redis.
"""
import glob
import os
import re
import subprocess

import pytest

from harness import DIGESTCTL, DIGESTD, ROOT, RedisServer, free_port
import deploy_helpers as dh

NOMAD = os.path.join(ROOT, "nomad")
FILES = sorted(glob.glob(os.path.join(NOMAD, "*.hcl")))
PERIODS = {"daily": "5 0 * * *", "weekly": "5 0 * * 1"}


def one(block):
    """hcl2json renders every block as a list; these have exactly one."""
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


def job(path):
    j = dh.hcl2json(path)
    (name, body), = j["job"].items()
    return name, one(body)


def task_of(jobbody, group, task):
    g = one(jobbody["group"][group])
    return g, one(g["task"][task])


def render(template_data, env, var):
    """The template as Nomad would render it, for the actions it uses."""
    text = re.sub(r'\{\{ with nomadVar "[^"]+" -\}\}\n', "", template_data)
    text = re.sub(r"\n\{\{- end \}\}", "", text)
    text = re.sub(r"\{\{ \.([a-z_]+) \}\}", lambda m: var[m.group(1)], text)
    text = re.sub(r'\{\{ env "([A-Za-z_]+)" \}\}', lambda m: env[m.group(1)], text)
    assert "{{" not in text, text
    return text


def task_path(arg):
    """A path given to the task, relative to the task's directory."""
    for var, d in (("${NOMAD_SECRETS_DIR}/", "secrets/"),
                   ("${NOMAD_TASK_DIR}/", "local/")):
        if arg.startswith(var):
            return d + arg[len(var):]
    return arg


SECRETS = {"unsubscribe_secret": "s3cret-for-the-test", "smtp_password": "pw",
           "queue_redis_password": "pw"}


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_parses_as_hcl2(path):
    name, body = job(path)
    assert body["type"] in ("service", "batch")
    for gname, groups in body["group"].items():
        g = one(groups)
        assert "restart" in g, "%s: group %s has no restart stanza" % (path, gname)
        for tname, tasks in g["task"].items():
            t = one(tasks)
            assert t["driver"] == "exec", (gname, tname)
            assert os.path.isabs(one(t["config"])["command"])


@pytest.fixture(scope="module")
def service():
    name, body = job(os.path.join(NOMAD, "digestd.nomad.hcl"))
    assert name == "digestd" and body["type"] == "service"
    g, t = task_of(body, "digestd", "digestd")
    tpl = one(t["template"])
    cfg = dh.Config(render(tpl["data"], {"NOMAD_IP_http": "127.0.0.1"}, SECRETS),
                    defaults=dh.example_config())
    return g, t, tpl, cfg


def test_signals_and_timeouts(service):
    g, t, tpl, cfg = service
    assert t["kill_signal"] == "SIGTERM"
    assert tpl["change_mode"] == "signal"
    assert tpl["change_signal"] == "SIGHUP"
    drain = cfg.duration_s("supervisor", "drain_timeout")
    kill = dh.duration_s(t["kill_timeout"])
    assert kill > drain, (kill, drain)
    # The client caps kill_timeout at max_kill_timeout (30s by default):
    # the job must say so next to the setting.
    text = open(os.path.join(NOMAD, "digestd.nomad.hcl")).read()
    assert re.search(r"max_kill_timeout = \"([0-9]+)s\"", text)
    cap = int(re.search(r"max_kill_timeout = \"([0-9]+)s\"", text).group(1))
    assert cap >= kill


def test_config_path_is_the_one_rendered(service):
    g, t, tpl, cfg = service
    assert t["user"] == "digestd"
    args = one(t["config"])["args"]
    assert args[0] == "-c"
    assert task_path(args[1]) == tpl["destination"]
    assert one(t["config"])["command"] == "/usr/local/sbin/digestd"


def test_listen_port_checks_and_scrape(service):
    g, t, tpl, cfg = service
    svc = one(g["service"])
    ports = one(g["network"])["port"]
    port = one(ports[svc["port"]])["static"]
    assert cfg.listen_port() == port
    assert cfg.get("supervisor", "listen").split(":")[0] == "127.0.0.1"  # NOMAD_IP_http
    assert '{{ env "NOMAD_IP_%s" }}' % svc["port"] in tpl["data"]
    checks = {c["path"]: c for c in svc["check"]}
    assert set(checks) == {"/healthz", "/readyz"}
    assert all(c["type"] == "http" for c in checks.values())
    assert "check_restart" in checks["/healthz"]
    assert "check_restart" not in checks["/readyz"]   # 503 while draining
    assert "prometheus" in svc["tags"]
    assert one(svc["meta"])["metrics_path"] == "/metrics"


def test_memory_holds_every_pool(service):
    g, t, tpl, cfg = service
    mem_mib = one(t["resources"])["memory"]
    want = cfg.memory_sum() // (1 << 20)
    assert cfg.pools() == ["priority", "standard"]
    assert mem_mib == want, (mem_mib, want)
    # The comment beside it shows the sum.
    text = open(os.path.join(NOMAD, "digestd.nomad.hcl")).read()
    assert "= %d MiB" % want in text


def test_redis_exporter_beside_digestd():
    name, body = job(os.path.join(NOMAD, "digestd.nomad.hcl"))
    g, t = task_of(body, "redis-exporter", "redis-exporter")
    c = one(t["config"])
    assert c["command"] == "/usr/bin/prometheus-redis-exporter"
    svc = one(g["service"])
    port = one(one(g["network"])["port"][svc["port"]])["static"]
    assert "${NOMAD_ADDR_%s}" % svc["port"] in c["args"]
    assert "prometheus" in svc["tags"]
    assert port == 9121
    streams = c["args"][c["args"].index("-check-single-streams") + 1].split(",")
    assert set(streams) == {"digest:q:priority", "digest:q:standard", "digest:dlq"}


def _schedule(period):
    path = os.path.join(NOMAD, "digestctl-schedule-%s.nomad.hcl" % period)
    name, body = job(path)
    assert name == "digestctl-schedule-" + period
    return body


@pytest.mark.parametrize("period", sorted(PERIODS))
def test_schedule_job(period, service):
    body = _schedule(period)
    assert body["type"] == "batch"
    p = one(body["periodic"])
    assert p["cron"] == PERIODS[period]
    assert p["time_zone"] == "UTC"
    assert p["prohibit_overlap"] is True
    g, t = task_of(body, "schedule", "schedule")
    c = one(t["config"])
    assert t["user"] == "digestd"
    assert c["command"] == "/usr/local/bin/digestctl"
    assert c["args"][2:] == ["schedule", "--period", period]
    tpl = one(t["template"])
    assert task_path(c["args"][1]) == tpl["destination"]
    # The cron fires after the period ends at day_start.
    cfg = dh.Config(render(tpl["data"], {}, SECRETS), defaults=dh.example_config())
    h, m = (int(x) for x in cfg.get("schedule", "day_start").split(":"))
    minute, hour = (int(x) for x in p["cron"].split()[:2])
    assert 0 < (hour * 60 + minute) - (h * 60 + m) <= 60
    # Its Redis, queue and schedule settings are the service's.
    svc_cfg = service[3]
    for sec in ("redis", "queue_redis", "queue", "schedule", "pool.priority",
                "pool.standard"):
        assert cfg.sections.get(sec) == svc_cfg.sections.get(sec), sec


def test_schedule_jobs_differ_only_in_period():
    d = repr(_schedule("daily")).replace("daily", "P").replace(PERIODS["daily"], "C")
    w = repr(_schedule("weekly")).replace("weekly", "P").replace(PERIODS["weekly"], "C")
    assert d == w


def _rendered_file(tmp_path, path, group, task, env):
    name, body = job(path)
    g, t = task_of(body, group, task)
    tpl = one(t["template"])
    text = render(tpl["data"], env, SECRETS)
    out = tmp_path / os.path.basename(tpl["destination"])
    out.write_text(text)
    return out, one(t["config"])["args"]


def test_rendered_configs_pass_digestd_t(tmp_path):
    assert os.access(DIGESTD, os.X_OK), "digestd is not built"
    for path, group, task in (
            (os.path.join(NOMAD, "digestd.nomad.hcl"), "digestd", "digestd"),
            (os.path.join(NOMAD, "digestctl-schedule-daily.nomad.hcl"),
             "schedule", "schedule")):
        conf, _ = _rendered_file(tmp_path, path, group, task,
                                 {"NOMAD_IP_http": "127.0.0.1"})
        p = subprocess.run([DIGESTD, "-t", "-c", str(conf)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, "%s: %s%s" % (path, p.stdout, p.stderr)
        assert SECRETS["unsubscribe_secret"] not in p.stdout + p.stderr


def test_schedule_command_line_runs(tmp_path):
    """The daily job's own args, its config pointed at a private Redis."""
    assert os.access(DIGESTCTL, os.X_OK), "digestctl is not built"
    port = free_port()
    srv = RedisServer(tmp_path / "redis", port=port).start()
    try:
        conf, args = _rendered_file(
            tmp_path, os.path.join(NOMAD, "digestctl-schedule-daily.nomad.hcl"),
            "schedule", "schedule", {})
        text = conf.read_text()
        # Only the addresses change: host and port, as the job has them.
        for sec in ("redis", "queue_redis"):
            text = re.sub(r"\[%s\]\nhost = [^\n]+\nport = 6379\n" % sec,
                          "[%s]\nhost = 127.0.0.1\nport = %d\n" % (sec, port), text)
        assert text.count("port = %d\n" % port) == 2
        conf.write_text(text)
        args = [a.replace("${NOMAD_SECRETS_DIR}", str(tmp_path)) for a in args]
        p = subprocess.run([DIGESTCTL] + args, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        r = srv.client()
        assert r.exists("digest:sched:daily")
        assert r.ttl("digest:sched:daily") > 0
    finally:
        dh.stop_redis(srv)
