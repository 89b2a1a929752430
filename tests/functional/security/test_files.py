"""Files digestd reads are read only if they are regular files: a FIFO
named as the configuration, or as a template in template_dir, is refused
at once and never blocks `digestd -t`, the start or a reload.  A reload
that meets one fails cleanly, is counted, and the running configuration
(and its templates) goes on serving."""
import os
import signal
import subprocess

from lib.harness import DIGESTD, Digestd, metric, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, wait_done, window)
from lib.supervisor_fixtures import log_lines, wait_workers, workers

TEXT = """\
Custom digest for {{recipient_name}}:
{{#posts}}
* {{title}}
{{/posts}}
Leave: {{unsubscribe_url}}
"""


def test_fifo_as_config_is_refused_at_once(tmp_path):
    """`digestd -t` and `digestd` on a FIFO: an error, not a wait for a
    writer that never comes."""
    fifo = os.path.join(str(tmp_path), "digestd.conf")
    os.mkfifo(fifo, 0o600)
    for args in (["-t", "-c", fifo], ["-c", fifo]):
        p = subprocess.Popen([DIGESTD] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=str(tmp_path))
        try:
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        assert p.returncode == 1, (args, p.returncode, out, err)
        assert b"digestd.conf: not a regular file" in out + err, (out, err)


def maildir_texts(outbox):
    new = os.path.join(outbox, "new")
    out = []
    for n in sorted(os.listdir(new)):
        with open(os.path.join(new, n), "rb") as f:
            out.append(f.read())
    return out


def test_fifo_as_template_fails_the_reload_only(tmp_path, redis_tcp):
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "digest.txt").write_text(TEXT)
    r = redis_tcp.client()
    ws, we = window()
    data = Data(r)
    for gid in (1, 2):
        data.group(gid, name="Group %d" % gid)
        data.members(gid, [gid * 10])
        data.user(gid * 10, email="u%d@example.org" % gid, name="User %d" % gid)
        data.post(gid, gid * 100, we - 60, title="Post %d" % gid, author_id=9)

    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, redis_tcp, maildir=outbox)
    with open(cfg) as f:
        text = f.read()
    text = text.replace("max_posts = 10\n",
                        "max_posts = 10\ntemplate_dir = %s\n" % tdir)
    with open(cfg, "w") as f:
        f.write(text)

    d = Digestd(cfg, tmp_path).start()
    try:
        before = set(wait_workers(d, 1, "standard"))
        wait_done(r, enqueue(r, 1, "daily", ws, we), d=d)
        assert len(maildir_texts(outbox)) == 1

        # The template becomes a FIFO, and the workers' pool a new size:
        # neither may be taken, nor may the supervisor wait on the FIFO.
        os.unlink(str(tdir / "digest.txt"))
        os.mkfifo(str(tdir / "digest.txt"), 0o600)
        with open(cfg, "w") as f:
            f.write(text.replace("workers = 1\n", "workers = 2\n"))
        d.signal(signal.SIGHUP)
        wait_for(lambda: log_lines(d, "reload failed; keeping the running configuration"),
                 timeout=10, what="reload failure logged")
        line = log_lines(d, "reload failed; keeping the running configuration")[0]
        assert "digest.txt: not a regular file" in line, line
        assert d.http_status("/healthz") == 200
        m = d.metrics()
        assert metric(m, "digest_config_reloads_total", result="failure") == 1
        assert metric(m, "digest_config_reloads_total", result="success") == 0
        assert set(workers(d, "standard")) == before

        # The running configuration, templates included, still works.
        wait_done(r, enqueue(r, 2, "daily", ws, we), d=d)
        mails = maildir_texts(outbox)
        assert len(mails) == 2
        assert all(b"Custom digest for" in m for m in mails)
        assert d.stop() == 0
    finally:
        d.kill()
