"""SIGHUP with a broken file: nothing changes (no worker replaced, old
settings kept), the failure is counted and logged; a later valid reload
still works."""
import signal

from lib.harness import metric, wait_for, write_config
from lib.supervisor_fixtures import (  # noqa: F401
    alive, log_lines, sup_config, wait_workers, workers)


def test_sighup_broken_file_changes_nothing(tmp_path, redis_tcp, digestd_factory):
    text, port = sup_config(tmp_path, redis_tcp,
                            {"priority": {"workers": 2}, "standard": {"workers": 1}})
    path = write_config(tmp_path, text)
    d = digestd_factory(config_path=path).start()
    before = set(wait_workers(d, 2, "priority")) | set(wait_workers(d, 1, "standard"))

    broken = text.replace("[pool.priority]\nworkers = 2",
                          "[pool.priority]\nworkers = 4\nno_such_key = 1")
    assert broken != text
    write_config(tmp_path, broken)
    d.signal(signal.SIGHUP)
    wait_for(lambda: log_lines(d, "reload failed; keeping the running configuration"),
             timeout=5, what="failure logged")
    line = log_lines(d, "reload failed; keeping the running configuration")[0]
    assert "no_such_key" in line and "level=error" in line

    # Nothing changed: same processes, same sizes, still ready.
    import time
    time.sleep(1.5)
    assert set(workers(d)) == before
    assert all(alive(p) for p in before)
    assert d.http_status("/readyz") == 200
    m = d.metrics()
    assert metric(m, "digest_config_reloads_total", result="failure") == 1
    assert metric(m, "digest_config_reloads_total", result="success") == 0
    assert not log_lines(d, "worker exited")

    # A syntax error is refused the same way.
    write_config(tmp_path, text + "\nthis is not ini\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(d, "reload failed; keeping the running configuration")) == 2,
             timeout=5, what="second failure logged")
    assert set(workers(d)) == before
    assert metric(d.metrics(), "digest_config_reloads_total", result="failure") == 2
