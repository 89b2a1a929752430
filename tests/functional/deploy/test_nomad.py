"""The Nomad job files: every nomad/*.hcl parses as HCL2 (@cdktf/hcl2json),
and what must agree with digestd's configuration does: signals, the kill
timeout against drain_timeout, the listen port against the service port,
the check paths, the config path the template writes against the one
digestd is given, the memory reserved against the pools' limits.  The
secrets reach the tasks as files of their own (0600, the task user's),
which the configs name with *_file keys.  The configs the templates render
pass `digestd -t`, the scheduler job's own command line enqueues and
records a run on a real Redis, and the service's config runs digestd to
ready against a queue Redis that requires the job's password.
"""
import glob
import os
import re
import signal
import stat
import subprocess
import urllib.request

import pytest

from lib.harness import DIGESTCTL, DIGESTD, ROOT, RedisServer, free_port, kill_pid, wait_for
from lib import deploy_helpers as dh

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


SECRETS = {"unsubscribe_secret": "s3cret-for-the-test-0123456789abcdef",
           "smtp_password": "SmtpPw-for-the-test",
           "queue_redis_password": "QueuePw-for-the-test"}
SECRET_KEYS = ("password", "unsubscribe_secret")


def config_template(task):
    """The template that renders the config the task's -c names."""
    args = one(task["config"])["args"]
    dest = task_path(args[args.index("-c") + 1])
    tpls = [t for t in task["template"] if t["destination"] == dest]
    assert len(tpls) == 1, (dest, [t["destination"] for t in task["template"]])
    return tpls[0]


def render_task(dirpath, task, env):
    """Every file template of the task rendered into dirpath, as the task's
    secrets/ dir; the path of the config."""
    for tpl in task["template"]:
        if tpl.get("env"):
            continue
        assert tpl["destination"].startswith("secrets/"), tpl["destination"]
        out = os.path.join(str(dirpath), tpl["destination"][len("secrets/"):])
        with open(out, "w") as f:
            f.write(render(tpl["data"], env, SECRETS))
        os.chmod(out, int(tpl["perms"], 8))
    return os.path.join(str(dirpath), os.path.basename(config_template(task)["destination"]))


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
    tpl = config_template(t)
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
    tpl = config_template(t)
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
    d = tmp_path / ("%s-%s" % (os.path.basename(path), task))
    d.mkdir()
    conf = render_task(d, t, env)
    return conf, one(t["config"])["args"]


def _tasks_with_secrets():
    """(file, task name, task) of every task whose templates read Nomad
    Variables."""
    out = []
    for path in FILES:
        name, body = job(path)
        for gname, groups in body["group"].items():
            for tname, tasks in one(groups)["task"].items():
                t = one(tasks)
                if any("nomadVar" in tpl["data"] for tpl in t.get("template", [])):
                    out.append((path, tname, t))
    return out


def test_secrets_are_files_of_the_task_user():
    """No secret is written into a config: each is a file of its own,
    0600 (or 0640) and owned by the task's user, that the config names with
    a *_file key; a file the agent reads (env = true) is 0600 too."""
    tasks = _tasks_with_secrets()
    assert {os.path.basename(p) for p, _, _ in tasks} == {os.path.basename(f) for f in FILES}
    for path, tname, t in tasks:
        where = "%s %s" % (os.path.basename(path), tname)
        for tpl in t["template"]:
            assert tpl.get("perms") in ("0600", "0640"), (where, tpl["destination"])
            if tpl.get("env"):
                continue
            assert tpl.get("uid") == "${var.digestd_uid}", (where, tpl["destination"])
            assert tpl.get("error_on_missing_key") is True, (where, tpl["destination"])
        if tname == "redis-exporter":
            continue
        assert "digestd_uid" in dh.hcl2json(path).get("variable", {}), path
        ctpl = config_template(t)
        assert "nomadVar" not in ctpl["data"], where
        cfg = dh.Config(render(ctpl["data"], {"NOMAD_IP_http": "127.0.0.1"}, SECRETS))
        dests = {tpl["destination"]: tpl for tpl in t["template"]}
        files = {}
        for sec, keys in cfg.sections.items():
            for key in SECRET_KEYS:
                assert key not in keys, (where, sec, key)
            for key, value in keys.items():
                if key.endswith("_file"):
                    files[(sec, key)] = value
        assert ("digest", "unsubscribe_secret_file") in files, where
        for (sec, key), value in files.items():
            # Relative to the config's directory: the task's secrets/.
            assert "/" not in value, (where, sec, key, value)
            tpl = dests.get("secrets/" + value)
            assert tpl is not None, (where, sec, key, value)
            var = re.findall(r"\{\{ \.([a-z_]+) \}\}", tpl["data"])
            assert var == [value], (where, value, var)


def test_queue_redis_password_reaches_digestd_and_exporter(service):
    """The exporter and digestd take the queue Redis password from the
    same variable."""
    g, t, tpl, cfg = service
    assert cfg.get("queue_redis", "password_file") == "queue_redis_password"
    name, body = job(os.path.join(NOMAD, "digestd.nomad.hcl"))
    g, e = task_of(body, "redis-exporter", "redis-exporter")
    env = render(one(e["template"])["data"], {}, SECRETS)
    assert "REDIS_PASSWORD=%s" % SECRETS["queue_redis_password"] in env.splitlines()
    assert one(e["template"])["perms"] == "0600"


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
        # The config depends on the secret files beside it.
        secret = os.path.join(os.path.dirname(conf), "unsubscribe_secret")
        os.rename(secret, secret + ".away")
        p = subprocess.run([DIGESTD, "-t", "-c", str(conf)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "unsubscribe_secret_file: %s: No such file" % secret in p.stderr


class PasswordRedis(RedisServer):
    """A harness RedisServer that requires the job's queue Redis password."""

    def __init__(self, d, port, password):
        super().__init__(d, port=port)
        self.password = password

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "", "--appendonly", "no",
             "--requirepass", self.password],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, timeout=10, what="redis-server with requirepass")
        return self

    def _up(self):
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)


def _point_at(text, ports):
    """The rendered config with only the Redis addresses changed."""
    for sec, port in ports.items():
        text, n = re.subn(r"\[%s\]\nhost = [^\n]+\nport = 6379\n" % sec,
                          "[%s]\nhost = 127.0.0.1\nport = %d\n" % (sec, port), text)
        assert n == 1, sec
    return text


def test_schedule_command_line_runs(tmp_path):
    """The daily job's own args, its config pointed at a private activity
    Redis and a private queue Redis that requires the job's password."""
    assert os.access(DIGESTCTL, os.X_OK), "digestctl is not built"
    act = RedisServer(tmp_path / "activity", port=free_port()).start()
    queue = PasswordRedis(tmp_path / "queue", free_port(),
                          SECRETS["queue_redis_password"]).start()
    try:
        conf, args = _rendered_file(
            tmp_path, os.path.join(NOMAD, "digestctl-schedule-daily.nomad.hcl"),
            "schedule", "schedule", {})
        with open(conf) as f:
            text = _point_at(f.read(), {"redis": act.port, "queue_redis": queue.port})
        with open(conf, "w") as f:
            f.write(text)
        args = [a.replace("${NOMAD_SECRETS_DIR}", os.path.dirname(conf)) for a in args]
        p = subprocess.run([DIGESTCTL] + args, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        r = queue.client()
        assert r.exists("digest:sched:daily")
        assert r.ttl("digest:sched:daily") > 0
    finally:
        act.stop()
        queue.stop()


def test_service_config_runs_with_the_queue_password(tmp_path):
    """digestd on the service's rendered files, its Redis addresses and
    listen port changed (and one worker a pool, to spare the machine),
    gets ready against a queue Redis that requires the job's password:
    every worker authenticated with the password from its file."""
    assert os.access(DIGESTD, os.X_OK), "digestd is not built"
    act = RedisServer(tmp_path / "activity", port=free_port()).start()
    queue = PasswordRedis(tmp_path / "queue", free_port(),
                          SECRETS["queue_redis_password"]).start()
    port = free_port()
    proc = None
    try:
        conf, args = _rendered_file(tmp_path, os.path.join(NOMAD, "digestd.nomad.hcl"),
                                    "digestd", "digestd", {"NOMAD_IP_http": "127.0.0.1"})
        with open(conf) as f:
            text = _point_at(f.read(), {"redis": act.port, "queue_redis": queue.port})
        text, n = re.subn(r"\nlisten = 127\.0\.0\.1:9187\n",
                          "\nlisten = 127.0.0.1:%d\n" % port, text)
        assert n == 1
        text, n = re.subn(r"\nworkers = [0-9]+\n", "\nworkers = 1\n", text)
        assert n == 2
        with open(conf, "w") as f:
            f.write(text)
        args = [a.replace("${NOMAD_SECRETS_DIR}", os.path.dirname(conf)) for a in args]
        log = open(str(tmp_path / "digestd.log"), "wb")
        proc = subprocess.Popen([DIGESTD] + args, stdout=log, stderr=subprocess.STDOUT)

        def ready():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port,
                                            timeout=2) as r:
                    return r.status == 200
            except Exception:
                return False
        wait_for(lambda: proc.poll() is not None or ready(), timeout=30,
                 what="digestd ready on the rendered config")
        assert proc.poll() is None, open(str(tmp_path / "digestd.log")).read()
        assert queue.client().xinfo_groups("digest:q:standard"), "no consumer group"
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_pid(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        act.stop()
        queue.stop()
    out = open(str(tmp_path / "digestd.log")).read()
    for s in SECRETS.values():
        assert s not in out
