"""One-click unsubscribe (docs/design.md#unsubscribe-endpoint), end to
end on real servers: the List-Unsubscribe URL of an email the SMTP sink
received, pointed at the local endpoint and POSTed as a mail client does
(RFC 8058: body `List-Unsubscribe=One-Click`), answers 200 and mutes the
user in that group only: the next digest of that group skips them
(counted `opted_out`) while their digest of another group still arrives.
A link with any of u, g or t altered gets 403 and leaves the muted set as
it was; GET shows a page whose form makes the same POST; the body is
accepted form-urlencoded or multipart, and refused without One-Click.
The endpoint is a child of the supervisor: killed, it is restarted; after
a reload with a new secret, old links get 403 and new ones work; it holds
the metrics endpoint's connection cap (idle clients past
`http_max_connections` neither starve whole requests nor make it hold
more connections than the cap).
"""
import email
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

from lib.harness import Digestd, free_port, metric_sum, wait_for
from lib.pipeline_data import (SECRET, Data, config, enqueue, token,
                               wait_done, window)

TIMEOUT = 10                # a hang guard for each HTTP request


def request(url, data=None, ctype="application/x-www-form-urlencoded",
            method=None):
    """(status, headers, body text) of one request; errors are answers."""
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def links_of(sink):
    """{(rcpt, gid): List-Unsubscribe URL} of every message the sink got."""
    out = {}
    with sink.lock:
        msgs = list(sink.messages)
    for _, rcpt, raw in msgs:
        msg = email.message_from_bytes(raw)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = re.fullmatch(r"<(.*)>", str(msg["List-Unsubscribe"]).strip()).group(1)
        out[(rcpt, int(parse_qs(urlsplit(url).query)["g"][0]))] = url
    return out


def local(url, port):
    """The link with its scheme and host replaced by the local endpoint."""
    parts = urlsplit(url)
    return "http://127.0.0.1:%d%s?%s" % (port, parts.path, parts.query)


def unsub_config(tmp_path, redis, sink, port, supervisor=""):
    path = config(tmp_path, redis, sink=sink)
    with open(path) as f:
        text = f.read()
    assert text.startswith("[supervisor]\n")
    text = text.replace("[supervisor]\n", "[supervisor]\n"
                        "unsubscribe_listen = 127.0.0.1:%d\n%s" % (port, supervisor), 1)
    with open(path, "w") as f:
        f.write(text)
    return path


def altered(url, field, value):
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q[field] = value
    return "%s://%s%s?%s" % (parts.scheme, parts.netloc, parts.path, urlencode(q))


def test_one_click_unsubscribe_mutes_one_group(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    for gid in (71, 72):
        d.group(gid, name="Group %d" % gid)
        d.members(gid, [7, 8])
        d.post(gid, gid * 10, we - 60, title="Hello %d" % gid, author_id=1)
    for u in (7, 8):
        d.user(u, email="u%d@example.org" % u)
    port = free_port()
    cfg = unsub_config(tmp_path, redis_tcp, smtp_sink, port)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        wait_done(r, enqueue(r, 71, "daily", ws, we), timeout=30, d=proc)
        wait_done(r, enqueue(r, 72, "daily", ws, we), timeout=30, d=proc)
        links = links_of(smtp_sink)
        assert sorted(links) == [("u7@example.org", 71), ("u7@example.org", 72),
                                 ("u8@example.org", 71), ("u8@example.org", 72)]
        url = local(links[("u7@example.org", 71)], port)
        wait_for(lambda: request(url)[0] == 200, timeout=10, interval=0.1,
                 what="the unsubscribe endpoint")

        # GET: a page whose form POSTs the same link, no script, a CSP.
        status, headers, page = request(url)
        assert status == 200
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "<script" not in page
        form = re.search(r'<form method="post" action="([^"]*)">', page)
        assert form is not None, page
        action = form.group(1).replace("&amp;", "&")
        assert parse_qs(urlsplit(action).query) == parse_qs(urlsplit(url).query)
        assert 'name="List-Unsubscribe" value="One-Click"' in page
        assert not r.exists("digest:muted:71")

        # Altered links: 403, nothing written.
        tok = parse_qs(urlsplit(url).query)["t"][0]
        bad_tok = ("0" if tok[0] != "0" else "1") + tok[1:]
        for bad in (altered(url, "t", bad_tok), altered(url, "u", "8"),
                    altered(url, "g", "72"), altered(url, "u", "07"),
                    altered(url, "t", tok.upper()), url + "&u=8"):
            status, _, _ = request(bad, data=b"List-Unsubscribe=One-Click")
            assert status == 403, bad
            assert request(bad)[0] == 403, bad
        assert not r.exists("digest:muted:71", "digest:muted:72")

        # A POST without the One-Click body changes nothing either.
        assert request(url, data=b"List-Unsubscribe=Other")[0] == 400
        assert request(url, data=b"", method="POST")[0] == 400
        assert not r.exists("digest:muted:71")

        # As a mail client does it: 200, u7 muted in group 71 only.
        status, _, body = request(url, data=b"List-Unsubscribe=One-Click")
        assert status == 200, body
        assert r.smembers("digest:muted:71") == {"7"}
        assert not r.exists("digest:muted:72")

        # Multipart, as some clients send it: the same outcome (idempotent).
        boundary = "----b0undary"
        mp = ("--%s\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\""
              "\r\n\r\nOne-Click\r\n--%s--\r\n" % (boundary, boundary)).encode()
        status, _, _ = request(url, data=mp, ctype="multipart/form-data; "
                               "boundary=%s" % boundary)
        assert status == 200
        assert r.smembers("digest:muted:71") == {"7"}

        # The next digests: group 71 skips u7, group 72 still reaches u7.
        with smtp_sink.lock:
            smtp_sink.messages.clear()
        we2 = we + 86400
        d.post(71, 711, we2 - 60, title="Later 71", author_id=1)
        d.post(72, 721, we2 - 60, title="Later 72", author_id=1)
        j71 = enqueue(r, 71, "daily", we, we2)
        j72 = enqueue(r, 72, "daily", we, we2)
        st71 = wait_done(r, j71, timeout=30, d=proc)
        wait_done(r, j72, timeout=30, d=proc)
        assert sorted(links_of(smtp_sink)) == [
            ("u7@example.org", 72), ("u8@example.org", 71), ("u8@example.org", 72)]
        assert st71.get("skipped") == "1"
        assert metric_sum(proc.metrics(), "digest_recipients_skipped_total",
                          reason="opted_out") == 1
    finally:
        proc.kill()


def unsub_child(pid):
    """The pid of the supervisor's `digestd: unsubscribe` child, or None."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"unsubscribe" in cmd:
            return int(d)
    return None


def test_unsubscribe_child_restarted_and_reloaded(tmp_path, redis_tcp, smtp_sink):
    r = redis_tcp.client()
    port = free_port()
    cfg = unsub_config(tmp_path, redis_tcp, smtp_sink, port)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        url = "http://127.0.0.1:%d/unsubscribe?u=5&g=6&t=%s" % (port, token(5, 6))
        wait_for(lambda: request(url)[0] == 200, timeout=10, interval=0.1,
                 what="the unsubscribe endpoint")
        first = unsub_child(proc.pid())
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: unsub_child(proc.pid()) not in (None, first),
                 timeout=15, interval=0.1, what="a new unsubscribe child")
        wait_for(lambda: request(url)[0] == 200, timeout=10, interval=0.1,
                 what="the endpoint back")
        assert not proc.exited()

        # A new secret: the old link is refused, the new one mutes.
        new = "another-secret-for-the-reload-0123456789"
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace(SECRET, new))
        os.kill(proc.pid(), signal.SIGHUP)
        wait_for(lambda: request(url)[0] == 403, timeout=15, interval=0.1,
                 what="the old secret refused")
        fresh = "http://127.0.0.1:%d/unsubscribe?u=5&g=6&t=%s" % (
            port, token(5, 6, secret=new))
        status, _, _ = request(fresh, data=b"List-Unsubscribe=One-Click")
        assert status == 200
        assert r.smembers("digest:muted:6") == {"5"}
    finally:
        proc.kill()


def socket_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def test_unsubscribe_endpoint_holds_the_connection_cap(tmp_path, redis_tcp, smtp_sink):
    port = free_port()
    cfg = unsub_config(tmp_path, redis_tcp, smtp_sink, port,
                       supervisor="http_max_connections = 8\n")
    proc = Digestd(cfg, tmp_path)
    proc.start()
    idle = []
    try:
        url = "http://127.0.0.1:%d/unsubscribe?u=5&g=6&t=%s" % (port, token(5, 6))
        wait_for(lambda: request(url)[0] == 200, timeout=10, interval=0.1,
                 what="the unsubscribe endpoint")
        child = unsub_child(proc.pid())
        base = socket_fds(child)        # the listener, the queue Redis
        for _ in range(24):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            idle.append(s)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        time.sleep(0.3)
        held = []
        for _ in range(10):
            held.append(socket_fds(child) - base)
            time.sleep(0.05)
        assert max(held) <= 8, held
        # Whole requests are answered while idle clients hold every place.
        for _ in range(4):
            assert request(url)[0] == 200
        assert socket_fds(child) - base <= 8
        assert not proc.exited()
    finally:
        for s in idle:
            s.close()
        proc.kill()


def test_reload_answers_a_request_in_flight(tmp_path, redis_tcp, smtp_sink):
    """A reload replaces the endpoint's child; a request the old child has
    begun to read is still answered, not reset, and the next one is
    served by the new child."""
    port = free_port()
    cfg = unsub_config(tmp_path, redis_tcp, smtp_sink, port)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        url = "http://127.0.0.1:%d/unsubscribe?u=5&g=6&t=%s" % (port, token(5, 6))
        wait_for(lambda: request(url)[0] == 200, timeout=10, interval=0.1,
                 what="the unsubscribe endpoint")
        first = unsub_child(proc.pid())
        base = socket_fds(first)
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            path = urlsplit(url)
            s.sendall(b"GET %s?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (
                path.path.encode(), path.query.encode()))
            # The old child holds the connection: it read part of it.
            wait_for(lambda: socket_fds(first) > base, timeout=10,
                     interval=0.05, what="the connection accepted")
            os.kill(proc.pid(), signal.SIGHUP)
            time.sleep(0.3)     # the child has been told to go by now
            s.sendall(b"Connection: close\r\n\r\n")
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        finally:
            s.close()
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        wait_for(lambda: unsub_child(proc.pid()) not in (None, first),
                 timeout=15, interval=0.1, what="a new unsubscribe child")
        assert request(url)[0] == 200
    finally:
        proc.kill()
