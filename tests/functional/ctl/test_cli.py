"""digestctl's command line: -v/--version, --config or -c (default
$DIGESTD_CONFIG, then /etc/digestd/digestd.conf, as digestd's), long
options in either form (--period daily, --period=daily), and COMMAND --help
for every command, which reads no configuration.  `seed` refuses a store
that already holds groups unless --force: it would overwrite live users.
"""
import os
import re
import subprocess

from lib.ctl_util import SAT, ctl_config  # noqa: F401
from lib.harness import DIGESTCTL, digestctl

NOW = SAT + 9 * 3600
SEED = ("seed", "--groups", "20", "--members", "400", "--posts", "60", "--now", str(NOW))


def run(*args, env=None):
    return subprocess.run([DIGESTCTL] + list(args), capture_output=True, text=True,
                          timeout=60, env=env)


def commands():
    p = run("--help")
    assert p.returncode == 0, p.stderr
    return re.findall(r"^  ([a-z][a-z-]+)\b", p.stdout.split("commands:", 1)[1], re.M)


def test_version():
    for flag in ("-v", "--version"):
        p = run(flag)
        assert p.returncode == 0, p.stderr
        assert re.fullmatch(r"digestctl \S+\n", p.stdout), p.stdout


def test_help_for_every_command_without_a_config():
    env = dict(os.environ, DIGESTD_CONFIG="/nonexistent/digestd.conf")
    cmds = commands()
    assert {"schedule", "enqueue", "stats", "watch", "dlq", "seed"} <= set(cmds)
    for cmd in cmds:
        for flag in ("--help", "-h"):
            p = run(cmd, flag, env=env)
            assert p.returncode == 0, (cmd, p.stdout + p.stderr)
            assert p.stdout.startswith("usage: digestctl [-c FILE] %s" % cmd), p.stdout
            assert p.stderr == ""
    p = run("seed", "--help", env=env)
    assert "--force" in p.stdout
    p = run("no-such-command", "--help", env=env)
    assert p.returncode == 2


def test_config_default_and_long_options(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    env = dict(os.environ, DIGESTD_CONFIG=cfg)
    p = run(*SEED, env=env)
    assert p.returncode == 0, p.stderr
    p = run("--config=%s" % cfg, "schedule", "--period=daily", "--now=%d" % NOW)
    assert p.returncode == 0, p.stderr
    r = redis_tcp.client()
    jobs = r.xlen("digest:q:priority") + r.xlen("digest:q:standard")
    assert jobs > 0
    # The same again with separate values: idempotent, nothing more.
    p = run("--config", cfg, "schedule", "--period", "daily", "--now", str(NOW))
    assert p.returncode == 0, p.stderr
    assert r.xlen("digest:q:priority") + r.xlen("digest:q:standard") == jobs
    p = run("--config=%s" % cfg, "stats", "--json")
    assert p.returncode == 0 and p.stdout.startswith("{"), p.stdout + p.stderr
    # Without -c and without DIGESTD_CONFIG: the built-in path.
    env = {k: v for k, v in os.environ.items() if k != "DIGESTD_CONFIG"}
    if not os.path.exists("/etc/digestd/digestd.conf"):
        p = run("stats", env=env)
        assert p.returncode == 1
        assert "/etc/digestd/digestd.conf" in p.stderr


def test_seed_refuses_a_store_that_holds_groups(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    r = redis_tcp.client()
    digestctl(cfg, *SEED)
    # A live user changed since: a second seed must not overwrite it.
    r.hset("user:1", "email", "changed@example.org")
    keys = r.dbsize()
    p = digestctl(cfg, *SEED, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "already holds 20 group(s)" in p.stderr and "--force" in p.stderr
    assert r.hget("user:1", "email") == "changed@example.org"
    assert r.dbsize() == keys
    # --force writes anyway.
    p = digestctl(cfg, *(SEED + ("--force",)))
    assert p.returncode == 0, p.stderr
    assert r.hget("user:1", "email") != "changed@example.org"


def test_seed_refuses_a_host_store(tmp_path, redis_tcp):
    """Groups written by the host application, not by seed."""
    cfg = ctl_config(tmp_path, redis_tcp, prefix="app:")
    r = redis_tcp.client()
    r.zadd("app:groups:active", {"9001": NOW - 60})
    r.hset("app:group:9001", mapping={"name": "Live", "url": "https://x.example/g"})
    p = digestctl(cfg, *SEED, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app:groups:active" in p.stderr
    assert r.dbsize() == 2
    # An empty index, but the first id seed writes is there.
    r.delete("app:groups:active")
    r.hset("app:group:1", "name", "Old")
    p = digestctl(cfg, *SEED, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert r.hget("app:group:1", "name") == "Old"
    # An empty store is seeded.
    r.flushall()
    p = digestctl(cfg, *SEED)
    assert p.returncode == 0
    assert r.zcard("app:groups:active") == 20
