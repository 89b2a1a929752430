"""The email itself, as written by the maildir transport byte for
byte: CRLF, line lengths, every header rule, the MIME structure, and
hostile data from Redis (CRLF + Bcc: in a group name, <script> in a post
title, a javascript: URL) coming out harmless.  Also the maildir's own
rules: tmp/ then new/, modes 0700/0600, nothing left in tmp/.  This one
runs on the activity store's unix socket with a key_prefix.
"""
import email
import email.policy
import email.utils
import os
import re
import stat

from lib.harness import Digestd, metric_sum
from lib.pipeline_data import (  # noqa: F401
    SECRET, UNSUB_URL, Data, config, enqueue, token, wait_done, window)


P = "tenant1:"


def raw_messages(path):
    d = os.path.join(path, "new")
    out = []
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out.append((name, f.read()))
    return out


def header_block(raw):
    return raw.split(b"\r\n\r\n", 1)[0]


def test_pipeline_headers(tmp_path, redis_server):
    r = redis_server.client()
    ws, we = window()
    d = Data(r, prefix=P)
    d.group(42, name="Evil\r\nBcc: victim@evil.example\r\n", url="https://example.com/g/42")
    d.members(42, [7, 8])
    d.user(7, email="alice@example.org", name="Alice\r\nCc: x@evil.example")
    d.user(8, email="bob@example.org", name="Bob")
    d.post(42, 1, we - 60, title="<script>alert(1)</script> & co", author_id=9,
           url="javascript:alert(1)", excerpt='"><img src=x onerror=alert(1)>',
           author_name="<b>Mallory</b>", likes=3)
    d.post(42, 2, we - 30, title="Second post", author_id=8,
           url="https://example.com/p/2?a=1&b=2", likes=1)
    # A non-ASCII group name gets an RFC 2047 Subject.
    d.group(43, name="Café ☕ club")
    d.members(43, [7])
    d.post(43, 3, we - 10, title="Crème brûlée", author_id=8)

    outbox = os.path.join(str(tmp_path), "outbox", "mail")
    cfg = config(tmp_path, redis_server, maildir=outbox, prefix=P)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        j42 = enqueue(r, 42, "daily", ws, we, prefix=P)
        j43 = enqueue(r, 43, "daily", ws, we, prefix=P)
        wait_done(r, j42, d=proc, prefix=P)
        wait_done(r, j43, d=proc, prefix=P)
        # Nothing was read or written outside the prefix.
        assert all(k.startswith(P) for k in r.keys("*")), r.keys("*")
    finally:
        proc.kill()

    # The maildir was created, private, with nothing left behind in tmp/.
    for sub in ("tmp", "new", "cur"):
        st = os.stat(os.path.join(outbox, sub))
        assert stat.S_IMODE(st.st_mode) == 0o700, sub
    assert os.listdir(os.path.join(outbox, "tmp")) == []
    raws = raw_messages(outbox)
    assert len(raws) == 3
    names = [n for n, _ in raws]
    assert len(set(names)) == 3
    for n, _ in raws:
        st = os.stat(os.path.join(outbox, "new", n))
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert re.match(r"^\d+\.[^/:]+$", n), n

    by_rcpt = {}
    for _, raw in raws:
        # CRLF only, no bare CR or LF, no NUL, lines under 998 octets.
        assert b"\0" not in raw
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert b"\r" not in raw.replace(b"\r\n", b"")
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        by_rcpt[(msg["X-Digest-Job"], msg["To"].addresses[0].addr_spec)] = (raw, msg)

    for uid, addr in ((7, "alice@example.org"), (8, "bob@example.org")):
        raw, msg = by_rcpt[(j42, addr)]
        hdr = header_block(raw)
        # Nothing from Redis became a header of its own.
        for line in hdr.split(b"\r\n"):
            assert not line.lower().startswith(b"bcc:"), line
            assert not line.lower().startswith(b"cc:"), line
        assert msg["Bcc"] is None and msg["Cc"] is None
        assert msg["From"].addresses[0].addr_spec == "digest@example.com"
        assert "Evil" in str(msg["Subject"])
        assert msg["MIME-Version"] == "1.0"
        assert email.utils.parsedate_to_datetime(str(msg["Date"])) is not None
        assert msg["Message-ID"] == "<%s.%d@example.com>" % (j42, uid)
        assert msg["X-Digest-Job"] == j42
        assert str(msg["List-Id"]).strip().endswith("<42.example.com>")
        assert msg["List-Unsubscribe"] == "<%s?u=%d&g=42&t=%s>" % (
            UNSUB_URL, uid, token(uid, 42, SECRET))
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        for p in parts:
            assert p.get_content_charset().lower() == "utf-8"
            assert p["Content-Transfer-Encoding"].lower() in (
                "quoted-printable", "base64")
        plain, html = parts[0].get_content(), parts[1].get_content()
        # Bob wrote the second post: it is left out of his email.
        assert ("Second post" in plain) == (uid == 7)
        assert "<script>alert(1)</script> & co" in plain
        # User text is escaped in the HTML, in text and attribute contexts.
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<img" not in html and "<b>Mallory" not in html
        assert not re.search(r'href\s*=\s*["\']?\s*javascript:', html, re.I)
        if uid == 7:
            assert "https://example.com/p/2?a=1&amp;b=2" in html

    raw, msg = by_rcpt[(j43, "alice@example.org")]
    subj = [l for l in header_block(raw).split(b"\r\n") if l.lower().startswith(b"subject:")]
    assert len(subj) == 1 and b"=?" in subj[0].upper() and b"UTF-8" in subj[0].upper()
    assert "Café ☕ club" in str(msg["Subject"])
    assert "Crème brûlée" in list(msg.iter_parts())[0].get_content()


def test_pipeline_maildir_removed_while_running(tmp_path, redis_tcp):
    """The maildir is removed between two jobs: the second job creates it
    again and its emails land there, not in the unlinked directory."""
    import shutil

    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    for gid in (1, 2):
        d.group(gid, name="G%d" % gid)
        d.members(gid, [gid * 10])
        d.user(gid * 10, email="u%d@example.org" % (gid * 10))
        d.post(gid, gid * 100, we - 60, title="Hello", author_id=99)
    outbox = os.path.join(str(tmp_path), "outbox")
    proc = Digestd(config(tmp_path, redis_tcp, maildir=outbox), tmp_path)
    proc.start()
    try:
        wait_done(r, enqueue(r, 1, "daily", ws, we), d=proc)
        assert len(os.listdir(os.path.join(outbox, "new"))) == 1
        shutil.rmtree(outbox)
        wait_done(r, enqueue(r, 2, "daily", ws, we), d=proc)
        got = raw_messages(outbox)
        assert len(got) == 1 and b"u20@example.org" in got[0][1]
        # Noticed before writing: not even one failed attempt.
        assert metric_sum(proc.metrics(), "digest_transport_errors_total") == 0
    finally:
        proc.kill()
