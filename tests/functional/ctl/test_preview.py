"""digestctl preview and send-test: the email a member would get, made by
the worker's own code, equal to what the worker then sends (byte for byte
but the Date header), or the rule that skips the member; preview writes
nothing; send-test sends it through the configured transport."""
import os
import re
import subprocess
import time

from lib.harness import DIGESTCTL, digestctl, wait_for, write_config
from lib.supervisor_fixtures import (  # noqa: F401
    checkpoint, job_fields, seed_group, sup_config, wait_queue_state)

DAY = 86400


def day_end():
    now = int(time.time())
    return now - now % DAY


def preview(cfg, *args):
    p = subprocess.run([DIGESTCTL, "-c", cfg, "preview"] + list(args),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def no_date(msg):
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\n", msg)


def snapshot(r):
    """Every key's value and TTL: what a write would change."""
    return {k: (r.dump(k), r.pttl(k) > 0) for k in r.keys("*")}


def test_preview_equals_sent_and_writes_nothing(tmp_path, redis_tcp, digestd_factory):
    import redis
    r = redis_tcp.client()
    raw = redis.Redis(host="127.0.0.1", port=redis_tcp.port)
    text, _ = sup_config(tmp_path, redis_tcp, {"standard": {"workers": 1}})
    cfg = write_config(tmp_path, text)
    we = day_end()
    uids = seed_group(r, 61, members=3, window_end=we)
    r.hset("user:%d" % uids[1], "digest", "off")
    r.hset("user:%d" % uids[2], "email", "")

    before = snapshot(raw)
    mime = preview(cfg, "--group", "61", "--user", str(uids[0]))
    assert b"\r\nMessage-ID: <daily.%d.61.0.%d@example.com>\r\n" % (we, uids[0]) in mime
    txt = preview(cfg, "--group", "61", "--user", str(uids[0]), "--part", "text")
    assert b"Post 0 of group 61" in txt and b"\r\n" not in txt
    html = preview(cfg, "--group", "61", "--user", str(uids[0]), "--part", "html")
    assert b"<a href=\"https://example.com/p/61000\"" in html
    out = preview(cfg, "--group", "61", "--user", str(uids[1])).decode()
    assert "opted_out" in out and "'off'" in out and "daily" in out
    out = preview(cfg, "--group", "61", "--user", str(uids[2])).decode()
    assert "no_email" in out
    out = preview(cfg, "--group", "61", "--user", "999").decode()
    assert "not_member" in out
    r.sadd("digest:suppressed", "u%d@example.org" % uids[0])
    out = preview(cfg, "--group", "61", "--user", str(uids[0])).decode()
    assert "suppressed" in out
    r.delete("digest:suppressed")
    assert snapshot(raw) == before

    d = digestd_factory(config_path=cfg).start()
    digestctl(cfg, "enqueue", "--group", "61", "--period", "daily", "--queue", "standard")
    job_id = job_fields(61, uids, window_end=we)["job_id"]
    wait_for(lambda: checkpoint(r, job_id).get("state") == "done", timeout=20,
             what="job done")
    new = os.path.join(str(tmp_path), "outbox", "new")
    sent = []
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            sent.append(f.read())
    assert len(sent) == 1
    assert no_date(sent[0]) == no_date(mime)
    assert d.stop() == 0


def test_send_test_to_a_sink(tmp_path, redis_tcp, slow_sink):
    r = redis_tcp.client()
    slow_sink.delay = 0
    text, _ = sup_config(tmp_path, redis_tcp, {"standard": {"workers": 1}}, smtp=slow_sink)
    cfg = write_config(tmp_path, text)
    uids = seed_group(r, 71, members=2, window_end=day_end())
    mime = preview(cfg, "--group", "71", "--user", str(uids[1]))
    p = digestctl(cfg, "send-test", "--group", "71", "--user", str(uids[1]),
                  "--to", "ops@example.net")
    assert "to ops@example.net" in p.stdout
    assert [m[1] for m in slow_sink.messages] == ["ops@example.net"]
    assert no_date(slow_sink.messages[0][2].replace(b"\r\n", b"\n").replace(
        b"\n", b"\r\n")) == no_date(mime)
    # A member with no email to get: send-test says why and sends nothing.
    r.hset("user:%d" % uids[0], "digest", "off")
    p = digestctl(cfg, "send-test", "--group", "71", "--user", str(uids[0]),
                  "--to", "ops@example.net", check=False)
    assert p.returncode == 1 and "opted_out" in p.stdout
    assert digestctl(cfg, "send-test", "--group", "71", "--user", "1",
                     check=False).returncode == 2
    assert len(slow_sink.messages) == 1
