"""digestctl watch: runs until the queues are empty, bounded by --timeout,
plain lines when stdout is not a terminal, counters from /metrics."""
import http.server
import json
import re
import subprocess
import threading
import time

from lib.ctl_util import SAT, add_group, ctl_config  # noqa: F401
from lib.harness import DIGESTCTL, digestctl, free_port


def test_watch_empty_queues_exit_at_once(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    t0 = time.monotonic()
    p = digestctl(cfg, "watch", "--interval", "0.1", timeout=20)
    assert time.monotonic() - t0 < 5
    assert "queues empty" in p.stdout
    # Not a terminal: no escape sequences, plain lines.
    assert "\033[" not in p.stdout
    assert "metrics=unavailable" in p.stdout


def test_watch_times_out(tmp_path, redis_tcp):
    r = redis_tcp.client()
    cfg = ctl_config(tmp_path, redis_tcp)
    add_group(r, 1, [1], [(1, SAT - 1)])
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))
    t0 = time.monotonic()
    p = digestctl(cfg, "watch", "--interval", "0.2", "--timeout", "1s", check=False,
                  timeout=20)
    took = time.monotonic() - t0
    assert p.returncode == 1 and "still queued" in p.stderr
    assert 0.9 < took < 6, took
    assert "standard=0/1" in p.stdout


class Metrics(http.server.BaseHTTPRequestHandler):
    body = ""
    scraped = threading.Event()

    def do_GET(self):
        b = Metrics.body.encode()
        Metrics.scraped.set()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass


def metrics_text(sent, jobs_ok, busy):
    return ("# TYPE digest_emails_total counter\n"
            'digest_emails_total{pool="standard",transport="maildir",result="sent"} %d\n'
            'digest_emails_total{pool="priority",transport="maildir",result="sent"} 0\n'
            'digest_emails_total{pool="standard",transport="maildir",result="deferred"} 999\n'
            "# TYPE digest_jobs_total counter\n"
            'digest_jobs_total{pool="standard",result="ok"} %d\n'
            'digest_jobs_total{pool="standard",result="retried"} 77\n'
            "# TYPE digest_workers gauge\n"
            'digest_workers{pool="standard",state="busy"} %d\n'
            'digest_workers{pool="standard",state="idle"} 5\n' % (sent, jobs_ok, busy))


def test_watch_follows_a_consumer_until_empty(tmp_path, redis_tcp):
    r = redis_tcp.client()
    port = free_port()
    cfg = ctl_config(tmp_path, redis_tcp)
    with open(cfg) as f:
        text = re.sub(r"listen = 127.0.0.1:\d+", "listen = 127.0.0.1:%d" % port, f.read())
    with open(cfg, "w") as f:
        f.write(text)
    for gid in range(1, 6):
        add_group(r, gid, [1, 2], [(gid, SAT - gid)])
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(SAT + 1))

    Metrics.body = metrics_text(100, 10, 0)
    Metrics.scraped.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Metrics)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    stop = threading.Event()

    def consume():
        c = redis_tcp.client()
        done = 0
        # Not before watch has taken its first figures (its baseline and
        # its first line), however long it takes to start.
        Metrics.scraped.wait(30)
        while not stop.is_set() and done < 5:
            time.sleep(0.4)
            got = c.xreadgroup("digestd", "w", {"digest:q:standard": ">"}, count=1)
            for _, es in got:
                for i, _ in es:
                    c.xack("digest:q:standard", "digestd", i)
                    done += 1
            Metrics.body = metrics_text(100 + 20 * done, 10 + done, 1)

    ct = threading.Thread(target=consume, daemon=True)
    ct.start()
    try:
        p = subprocess.run([DIGESTCTL, "-c", cfg, "watch", "--interval", "0.2",
                            "--timeout", "30s"], capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        ct.join(5)
        srv.shutdown()
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l.startswith("t=")]
    assert len(lines) >= 3
    assert "standard=0/5" in lines[0]
    assert "standard=5/5" in lines[-1]
    # Only sent emails count, from every pool; busy workers are read too.
    assert "emails_sent=100" in lines[-1]
    assert any("busy=1" in l for l in lines)
    assert "queues empty" in p.stdout
    assert r.xinfo_groups("digest:q:standard")[0]["pending"] == 0


def test_watch_tty_redraws(tmp_path, redis_tcp):
    import os
    import pty
    cfg = ctl_config(tmp_path, redis_tcp)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(DIGESTCTL, [DIGESTCTL, "-c", cfg, "watch", "--interval", "0.1"])
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    text = out.decode()
    assert "\033[2K" in text and "[" in text and "priority" in text


def test_watch_with_digestd(tmp_path, redis_tcp, digestd_factory):
    """The whole loop: seed, schedule, digestd works the queues, watch
    follows it from /metrics until they are empty."""
    import os
    from lib.harness import maildir_messages, metric_sum
    cfg = ctl_config(tmp_path, redis_tcp)
    now = int(time.time())
    digestctl(cfg, "seed", "--groups", "15", "--members", "1500", "--posts", "200",
              "--now", str(now))
    d = digestd_factory(config_path=cfg).start()
    digestctl(cfg, "schedule", "--period", "daily", "--now", str(now))
    p = digestctl(cfg, "watch", "--interval", "0.2", "--timeout", "120s", timeout=180)
    assert "queues empty" in p.stdout
    lines = [l for l in p.stdout.splitlines() if l.startswith("t=")]
    assert all("metrics=unavailable" not in l for l in lines)
    s = json.loads(digestctl(cfg, "stats", "--json").stdout)
    assert all(q["depth"] == 0 and q["pending"] == 0 for q in s["queues"].values())
    assert s["dead_letters"] == 0
    sent = None
    for _ in range(50):
        sent = metric_sum(d.metrics(), "digest_emails_total", result="sent")
        if sent == len(os.listdir(os.path.join(str(tmp_path), "outbox", "new"))):
            break
        time.sleep(0.1)
    msgs = maildir_messages(os.path.join(str(tmp_path), "outbox"))
    assert len(msgs) > 100 and sent == len(msgs)
    assert d.stop() == 0
