"""Helpers for the deployment tests (deploy/): reading digestd
configs the way an operator writes them, durations and sizes in the
config's units, and the tools those tests drive (promtool, amtool, node).
"""
import json
import os
import re
import shutil
import subprocess

from lib.harness import ROOT

EXAMPLE = os.environ.get("DIGESTD_EXAMPLE_CONF",
                         os.path.join(ROOT, "docs", "digestd.conf.example"))
NODE_MODULES = os.path.join(ROOT, "build", "node", "node_modules")

# Memory the supervisor and its queue sampler may take beside the workers,
# as the job files and units reserve it.
SUPERVISOR_RESERVE = 128 * 1024 * 1024

_DUR = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "min": 60}
_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def duration_s(text):
    """Seconds of "60s", "10m", "1500ms", "90" (systemd: plain seconds)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min|m|h|d)?\s*", text)
    assert m, "not a duration: %r" % text
    return float(m.group(1)) * _DUR[m.group(2) or "s"]


def size_bytes(text):
    """Bytes of "256M", "3200M", "1G", "1024"."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]?)B?\s*", text)
    assert m, "not a size: %r" % text
    return int(m.group(1)) * _SIZE[m.group(2)]


class Config:
    """A digestd config as INI sections, read with the file's own rules:
    whole-line ; or # comments and inline comments after whitespace.

    With commented=True, lines like ";key = value" and ";[section]" count
    too: the example file shows every default commented out with ";" (its
    "#" lines are prose).
    """

    def __init__(self, text, commented=False, defaults=None):
        self.sections = {}
        self.defaults = defaults
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if commented:
                line = re.sub(r"^;+\s*", "", line)
            if not line or line[0] in ";#":
                continue
            line = re.split(r"\s[;#]", line, maxsplit=1)[0].strip()
            m = re.fullmatch(r"\[([A-Za-z0-9_.\-]+)\]", line)
            if m:
                section = m.group(1)
                self.sections.setdefault(section, {})
                continue
            m = re.fullmatch(r"([a-z_]+)\s*=\s*(.*)", line)
            if m and section is not None:
                self.sections[section].setdefault(m.group(1), m.group(2).strip())

    def get(self, section, key):
        v = self.sections.get(section, {}).get(key)
        if v is None and self.defaults is not None:
            secs = [section]
            if section.startswith("pool."):
                secs += ["pool.NAME", "pool.standard"]
            for sec in secs:
                if sec in self.defaults.sections:
                    v = self.defaults.get(sec, key)
                    break
        return v

    def duration_s(self, section, key):
        v = self.get(section, key)
        assert v is not None, "[%s] %s: no value and no default" % (section, key)
        return duration_s(v)

    def pools(self):
        return sorted(s[5:] for s in self.sections if s.startswith("pool."))

    def memory_sum(self):
        """workers x memory_limit over every pool, plus the supervisor."""
        total = SUPERVISOR_RESERVE
        for p in self.pools():
            total += int(self.get("pool." + p, "workers")) * \
                size_bytes(self.get("pool." + p, "memory_limit"))
        return total

    def listen_port(self):
        return int(self.get("supervisor", "listen").rsplit(":", 1)[1])


_example = None


def example_config():
    """docs/digestd.conf.example: every key with its default."""
    global _example
    if _example is None:
        assert os.path.exists(EXAMPLE), "%s is missing" % EXAMPLE
        with open(EXAMPLE) as f:
            _example = Config(f.read(), commented=True)
    return _example


_hcl_cache = {}


def hcl2json(path):
    """An HCL2 file as JSON, parsed by @cdktf/hcl2json under node (once
    per file and content: node takes a second or two to start)."""
    with open(path) as f:
        key = (path, f.read())
    if key not in _hcl_cache:
        _hcl_cache[key] = json.dumps(_hcl2json(path))
    return json.loads(_hcl_cache[key])


def _hcl2json(path):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/deps.sh test)"
    assert os.path.isdir(os.path.join(NODE_MODULES, "@cdktf", "hcl2json")), \
        "@cdktf/hcl2json is not installed (scripts/deps.sh test)"
    script = (
        "const {parse} = require('@cdktf/hcl2json');"
        "const fs = require('fs');"
        "const f = process.argv[1];"
        "parse(f, fs.readFileSync(f, 'utf8'))"
        ".then(j => process.stdout.write(JSON.stringify(j)))"
        ".catch(e => { console.error(String(e)); process.exit(1); });"
    )
    p = subprocess.run([node, "-e", script, path], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, NODE_PATH=NODE_MODULES))
    assert p.returncode == 0, "%s: %s" % (path, p.stderr)
    return json.loads(p.stdout)


def tool(name):
    path = shutil.which(name)
    assert path, "%s is not installed (scripts/deps.sh test)" % name
    return path


def stop_proc(proc, timeout=10):
    """SIGTERM a Popen child and reap it (SIGKILL past timeout).  Reaping
    at once matters: a child not yet waited for lingers as a zombie, which
    a poll on os.kill(pid, 0) would take for a live process."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class PrometheusServer:
    """prometheus on 127.0.0.1 with its own storage in a temp dir, scraping
    the given targets every second and evaluating rule_files every second.

    jobs: {job_name: ["127.0.0.1:PORT", ...]}.
    """

    def __init__(self, dirpath, jobs, rule_files=()):
        import yaml

        self.dir = str(dirpath)
        os.makedirs(self.dir, exist_ok=True)
        from lib.harness import free_port

        self.port = free_port()
        conf = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": list(rule_files),
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(t)}]}
                for job, t in jobs.items()],
        }
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            yaml.safe_dump(conf, f)
        self.proc = None

    def start(self):
        from lib.harness import wait_for

        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), "--config.file=" + self.config,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--web.enable-lifecycle"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self._ready(), timeout=30,
                 interval=0.2, what="prometheus")
        assert self.proc.poll() is None, "prometheus exited: see %s" % self.dir
        return self

    def _ready(self):
        try:
            import urllib.request
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                        timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def api(self, path, **params):
        import urllib.parse
        import urllib.request

        url = "http://127.0.0.1:%d/api/v1/%s" % (self.port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def stop(self):
        stop_proc(self.proc, timeout=20)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


# The Grafana dashboard, read by the dashboard's tests.
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "digestd.json")
STREAMS = "digest:q:priority,digest:q:standard,digest:dlq"

# Grafana's own variables, and the dashboard's, as promtool should see them.
SUBST = [
    (r"\$__rate_interval|\$\{__rate_interval\}", "5m"),
    (r"\$__interval|\$\{__interval\}", "1m"),
    (r"\$__range|\$\{__range\}", "1h"),
    (r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".+"),
]


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def expressions():
    """Every target's expr, in panel order."""
    out = []
    for p in walk_panels(dashboard()["panels"]):
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out
