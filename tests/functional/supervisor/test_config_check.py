"""What an operator learns from digestd before and while it runs.

`digestd -T` prints the effective configuration (every key of the table,
defaults included) with every secret masked, and never what a *_file key's
file holds; without -c, digestd reads $DIGESTD_CONFIG, else
/etc/digestd/digestd.conf.  `-t` warns, and still exits 0, about what cannot
work: a queue the scheduler fills that no pool consumes, a pool whose queue
nothing fills, a maildir that cannot be written.  The shipped example passes
`-t` once its secret is set, and its section headers are real.  /readyz says
in its body why it is not ready, and /status shows the queue figures as null
until the sampler has read them.  See docs/design.md#config-check.
"""
import os
import re
import subprocess

from lib import deploy_helpers as dh
from lib.harness import (DIGESTD, RedisServer, base_config, wait_for,
                     write_config)

SECRETS = {
    "unsubscribe": "unsub-secret-never-printed-0123456789abcdef",
    "redis": "redis-password-never-printed",
    "queue_redis": "queue-redis-password-from-a-file",
    "smtp": "smtp-password-from-a-file",
    "amqp": "amqp-password-never-printed",
    "console": "console-password-never-printed",
}


def run(*args, env=None, cwd=None):
    return subprocess.run([DIGESTD] + list(args), capture_output=True,
                          text=True, timeout=30, env=env, cwd=cwd)


def sections(text):
    """{section: {key: value}} of an INI text, ";key =" lines included."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"\[([a-z0-9_.\-]+)\]", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        m = re.fullmatch(r";?([a-z_]+) =(?: (.*))?", line)
        if m and cur is not None:
            cur[m.group(1)] = m.group(2) or ""
    return out


def every_secret_config(tmp_path):
    for name in ("queue_redis", "smtp"):
        with open(os.path.join(str(tmp_path), name + ".pw"), "w") as f:
            f.write(SECRETS[name] + "\n")
    text = """\
[supervisor]
listen = 127.0.0.1:9999
console_password = %(console)s
[redis]
host = 127.0.0.1
password = %(redis)s
[queue_redis]
host = 127.0.0.1
port = 6380
password_file = queue_redis.pw
[queue]
backend = amqp
[amqp]
url = amqp://digest:%(amqp)s@127.0.0.1:5672/%%2F
[smtp]
username = digest
starttls = required
password_file = smtp.pw
[digest]
unsubscribe_secret = %(unsubscribe)s
[pool.priority]
[pool.standard]
workers = 2
""" % SECRETS
    return write_config(tmp_path, text)


def test_dump_masks_every_secret_and_shows_every_key(tmp_path):
    conf = every_secret_config(tmp_path)
    p = run("-T", "-c", conf)
    assert p.returncode == 0, p.stderr
    assert "test is successful" in p.stderr
    for secret in SECRETS.values():
        assert secret not in p.stdout + p.stderr, secret
    got = sections(p.stdout)
    assert got["redis"]["password"] == "********"
    assert got["supervisor"]["console_password"] == "********"
    assert got["queue_redis"]["password"] == "********"
    assert got["queue_redis"]["password_file"] == os.path.join(str(tmp_path),
                                                               "queue_redis.pw")
    assert got["smtp"]["password"] == "********"
    assert got["digest"]["unsubscribe_secret"] == "********"
    assert got["amqp"]["url"] == "amqp://digest:********@127.0.0.1:5672/%2F"
    assert got["pool.standard"]["workers"] == "2"
    assert got["pool.priority"]["queue"] == "priority"
    # Defaults and derived values are shown, paths made absolute.
    assert got["smtp"]["envelope_from"] == "digest@example.com"
    assert got["maildir"]["path"] == os.path.join(str(tmp_path), "var", "outbox")
    # Every key of the table (the example file is printed from it).
    for sec, keys in dh.example_config().sections.items():
        for key in keys:
            assert key in got[sec], "[%s] %s missing from -T" % (sec, key)


def test_dump_of_an_unused_queue_redis(tmp_path):
    cfg, _ = base_config(tmp_path, extra="[pool.priority]\n[pool.standard]\n")
    p = run("-T", "-c", write_config(tmp_path, cfg))
    assert p.returncode == 0, p.stderr
    assert "\n[queue_redis]\n" not in p.stdout
    assert "# [queue_redis] is not in use" in p.stdout


def test_config_file_defaults_to_the_environment(tmp_path):
    cfg, _ = base_config(tmp_path, extra="[pool.priority]\n[pool.standard]\n")
    conf = write_config(tmp_path, cfg, name="from-env.conf")
    p = run("-t", env=dict(os.environ, DIGESTD_CONFIG=conf))
    assert p.returncode == 0, p.stderr
    assert "configuration file %s test is successful" % conf in p.stdout
    env = {k: v for k, v in os.environ.items() if k != "DIGESTD_CONFIG"}
    p = run("-t", env=env)
    if not os.path.exists("/etc/digestd/digestd.conf"):
        assert p.returncode == 1
        assert "/etc/digestd/digestd.conf" in p.stderr
    p = run("-h")
    assert p.returncode == 0 and "DIGESTD_CONFIG" in p.stdout and "-T" in p.stdout


def test_check_warns_about_queues_and_pools(tmp_path):
    cfg, _ = base_config(tmp_path, extra="[pool.bulk]\n")
    p = run("-t", "-c", write_config(tmp_path, cfg))
    assert p.returncode == 0, p.stderr
    warnings = [l for l in p.stderr.splitlines() if l.startswith("digestd: warning: ")]
    assert len(warnings) == 3, p.stderr
    assert any("queue priority: no pool consumes it" in w for w in warnings)
    assert any("queue standard: no pool consumes it" in w for w in warnings)
    assert any("[pool.bulk] queue = bulk: nothing fills this queue" in w
               for w in warnings)
    # Both scheduled queues consumed: nothing to say.
    cfg, _ = base_config(tmp_path, extra="[pool.a]\nqueue = priority\n"
                                         "[pool.b]\nqueue = standard\n")
    p = run("-t", "-c", write_config(tmp_path, cfg))
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr


def test_check_warns_about_a_maildir_it_cannot_write(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be\n")
    cfg, _ = base_config(tmp_path, extra="[pool.priority]\n[pool.standard]\n"
                                         "[maildir]\npath = %s/outbox\n" % blocker)
    cfg = cfg.replace("path = %s/outbox\n" % tmp_path, "", 1)
    p = run("-t", "-c", write_config(tmp_path, cfg))
    assert p.returncode == 0, p.stderr
    assert re.search(r"digestd: warning: \[maildir\] path %s/outbox cannot be "
                     r"written \(.*Not a directory.*\)" % re.escape(str(blocker)),
                     p.stderr), p.stderr
    # A maildir that does not exist yet, under a writable directory, is fine.
    cfg, _ = base_config(tmp_path, extra="[pool.priority]\n[pool.standard]\n")
    p = run("-t", "-c", write_config(tmp_path, cfg))
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        cfg = cfg.replace("path = %s/outbox" % tmp_path, "path = %s/outbox" % ro)
        p = run("-t", "-c", write_config(tmp_path, cfg))
        assert "cannot be created in %s" % ro in p.stderr, p.stderr


def example_with_secret():
    with open(dh.EXAMPLE) as f:
        text = f.read()
    assert "\n;unsubscribe_secret =\n" in text
    return text.replace("\n;unsubscribe_secret =\n",
                        "\nunsubscribe_secret = %s\n" % SECRETS["unsubscribe"])


def test_example_passes_the_check_once_a_secret_is_set(tmp_path):
    with open(dh.EXAMPLE) as f:
        p = run("-t", "-c", write_config(tmp_path, f.read()))
    assert p.returncode == 1
    assert "unsubscribe_secret is required" in p.stderr
    conf = write_config(tmp_path, example_with_secret())
    p = run("-t", "-c", conf)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr


def test_example_section_headers_are_real(tmp_path):
    """A key uncommented where it stands sets its own section: the host
    under [queue_redis] points the queues, not the activity store."""
    text = example_with_secret()
    head, sep, tail = text.partition("\n[queue_redis]\n")
    assert sep
    assert "\n;host =\n" in tail.split("\n[", 1)[0]
    text = head + sep + tail.replace("\n;host =\n", "\nhost = queues.example\n", 1)
    p = run("-T", "-c", write_config(tmp_path, text))
    assert p.returncode == 0, p.stderr
    got = sections(p.stdout)
    assert got["queue_redis"]["host"] == "queues.example"
    assert got["redis"]["host"] == "127.0.0.1"


def test_readyz_says_why_and_status_shows_unknown_figures(tmp_path, digestd_factory):
    """Redis not there yet: /readyz names the pool without a ready worker,
    /status shows the queue figures as null (never sampled), not 0; once
    Redis is up, both come right."""
    rdir = tmp_path / "redis"
    sock = rdir / "redis.sock"
    cfg, _ = base_config(tmp_path, extra="""
[redis]
socket = %s
timeout = 500ms
[pool.priority]
workers = 1
[pool.standard]
workers = 1
""" % sock)
    d = digestd_factory(cfg).start(wait_ready=False)
    wait_for(lambda: d.http_status("/readyz") == 503, timeout=15, what="/readyz")
    code, _, body = d.http("/readyz")
    assert code == 503
    lines = body.splitlines()
    assert lines[0] == "not ready", body
    assert any(l.startswith("pool priority: no worker ready") for l in lines), body
    assert any(l.startswith("pool standard: no worker ready") for l in lines), body
    st = d.status()
    for q in ("priority", "standard"):
        assert st["queues"][q]["depth"] is None, st["queues"]
        assert st["queues"][q]["pending"] is None, st["queues"]
        assert st["queues"][q]["delayed"] is None, st["queues"]
    assert st["dead_letters"] is None
    assert st["sampled_at"] is None
    # /metrics has every series from the first scrape, as 0 until sampled.
    m = d.metrics()
    assert "\ndigest_queue_depth{queue=\"standard\"} 0\n" in m
    assert "\ndigest_queue_sampled_timestamp_seconds 0\n" in m

    srv = RedisServer(rdir).start()
    try:
        wait_for(lambda: d.http_status("/readyz") == 200, timeout=30,
                 what="ready once redis is up")
        assert d.http("/readyz")[2] == "ready\n"
        wait_for(lambda: d.status()["sampled_at"] is not None, timeout=30,
                 what="a sample")
        st = d.status()
        for q in ("priority", "standard"):
            assert st["queues"][q]["depth"] == 0, st["queues"]
            assert st["queues"][q]["pending"] == 0, st["queues"]
        assert st["dead_letters"] == 0
        assert d.stop() == 0
    finally:
        srv.stop()
