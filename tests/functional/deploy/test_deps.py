"""scripts/deps.sh installs what each purpose needs and no more: `make
demo` asks for the build's packages and redis-server only (not RabbitMQ,
Prometheus, clang or npm); the test purpose has everything `make check`
and the package build need.  With everything there, it installs nothing
(idempotent: apt is never called).
"""
import os
import subprocess

from lib.harness import ROOT

DEPS = os.path.join(ROOT, "scripts", "deps.sh")


def listed(purpose):
    p = subprocess.run([DEPS, "--list", purpose], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    pkgs = p.stdout.split()
    assert len(pkgs) == len(set(pkgs)), pkgs
    return set(pkgs)


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       capture_output=True, text=True, timeout=30)
    return "ok installed" in p.stdout


def test_demo_installs_only_what_the_demo_needs():
    build, demo = listed("build"), listed("demo")
    assert "libhiredis-dev" in build and "redis-server" not in build
    assert demo == build | {"redis-server"}
    for heavy in ("rabbitmq-server", "prometheus", "clang", "npm", "nodejs",
                  "libcmocka-dev", "lintian", "postfix"):
        assert heavy not in demo, heavy


def test_purposes_nest():
    build, test, bench = listed("build"), listed("test"), listed("bench")
    assert {"lintian", "debhelper", "dpkg-dev"} <= listed("package")
    assert listed("unit") == build | {"libcmocka-dev"}
    assert listed("demo") | listed("unit") | listed("package") <= test
    assert {"rabbitmq-server", "prometheus", "clang", "python3-pytest"} <= test
    assert test < bench and listed("all") == bench
    p = subprocess.run([DEPS, "--list", "nonsense"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "usage" in p.stderr


def test_make_demo_asks_for_the_demo_packages():
    p = subprocess.run(["make", "-n", "-C", ROOT, "demo"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    calls = [l.split() for l in p.stdout.splitlines() if "deps.sh" in l]
    assert calls == [["scripts/deps.sh", "demo"]], p.stdout


def test_nothing_to_install_when_everything_is_there():
    missing = [p for p in sorted(listed("demo")) if not installed(p)]
    assert not missing, "demo packages missing: %s" % missing
    p = subprocess.run([DEPS, "demo"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "installing" not in p.stderr, p.stderr
