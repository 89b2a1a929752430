"""The hostile data corpus (tests/corpus/hostile/records.json) through the
real pipeline: loaded into Redis as a host application would write it, one
job per group, digestd sending to an SMTP sink.

Every email must parse cleanly (Python's email package finds no defect),
carry exactly the headers of an ordinary digest (the corpus's control
group) and nothing injected, hold no CR/LF/NUL from data in a header, no
`<script`, no tag or attribute the built-in template does not use, and no
href but http(s); the raw message has only CRLF line ends and lines of at
most 998 octets.  Who gets an email and who is skipped, with which reason,
is the corpus's `expect`; the skip counters say the same, the jobs are all
done, nothing is dead-lettered and no worker restarts.
"""
import email
import email.policy
import json
import os
import re
from html.parser import HTMLParser

from lib.harness import ROOT, Digestd, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    config, enqueue, wait_done, window)

CORPUS = os.path.join(ROOT, "tests", "corpus", "hostile", "records.json")
WANT_HEADERS = {"from", "to", "subject", "date", "message-id", "list-id",
                "list-unsubscribe", "list-unsubscribe-post", "auto-submitted", "x-digest-job",
                "mime-version", "content-type"}


def value(v):
    """A corpus value as the bytes to store."""
    if isinstance(v, dict) and "hex" in v:
        return bytes.fromhex(v["hex"])
    if isinstance(v, dict) and "repeat" in v:
        return (v["repeat"] * v["times"]).encode("utf-8")
    return v.encode("utf-8")


def store(r, key, h):
    """Write a record's hash; None writes nothing, {"type": ...} a wrong type."""
    if h is None:
        return
    if set(h) == {"type"}:
        if h["type"] == "string":
            r.set(key, b"not a hash")
        else:
            r.rpush(key, b"not a hash")
        return
    if h:
        r.hset(key, mapping={k: value(v) for k, v in h.items()})


def load(r, corpus, wend):
    posts = {p["id"]: p for p in corpus["posts"]}
    for u in corpus["users"]:
        store(r, "user:%d" % u["id"], u["hash"])
    for g in corpus["groups"]:
        store(r, "group:%d" % g["id"], g["hash"])
        r.zadd("group:%d:members" % g["id"], {str(m): m for m in g["members"]})
        for pid in g["posts"]:
            p = posts[pid]
            r.zadd("group:%d:posts" % g["id"], {str(pid): wend - p["at"]})
            store(r, "post:%d" % pid, p["hash"])
        r.zadd("groups:active", {str(g["id"]): wend - 10})


class Tags(HTMLParser):
    """Tag names, attribute names and hrefs of an HTML part."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.hrefs = set(), set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            self.attrs.add(k)
            if k == "href":
                self.hrefs.append(v)


def check_raw(raw):
    """Line ends, line lengths and NULs of the bytes as sent."""
    assert b"\0" not in raw
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, len(line)


def parts_of(msg):
    """(plain, html) decoded, after checking the MIME structure."""
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for p in parts:
        assert not p.defects, p.defects
        assert p.get_content_charset() == "utf-8"
        assert p["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    return parts[0].get_content(), parts[1].get_content()


def html_facts(html):
    t = Tags()
    t.feed(html)
    t.close()
    return t


def test_hostile_corpus(tmp_path, redis_tcp, smtp_sink):
    with open(CORPUS) as f:
        corpus = json.load(f)
    r = redis_tcp.client()
    import redis
    rb = redis.Redis(unix_socket_path=redis_tcp.socket)
    ws, we = window()
    load(rb, corpus, we)

    # Who is due what, from the corpus (worked out by hand there).
    users = {u["id"]: u for u in corpus["users"]}
    due, skipped = {}, {}
    for g in corpus["groups"]:
        for m in g["members"]:
            e = users[m]["expect"]
            if e == "sent":
                due["daily.%d.%d.0.%d@example.com" % (we, g["id"], m)] = m
            else:
                skipped[e] = skipped.get(e, 0) + 1

    cfg = config(tmp_path, redis_tcp, sink=smtp_sink, memory_limit="64M")
    d = Digestd(cfg, tmp_path)
    d.start()
    try:
        jobs = [enqueue(r, g["id"], "daily", ws, we) for g in corpus["groups"]]
        for jid in jobs:
            st = wait_done(r, jid, timeout=60, d=d)
            assert st["state"] == "done", st
        # A job is counted just after its checkpoint says done.
        wait_for(lambda: metric_sum(d.metrics(), "digest_jobs_total",
                                    result="ok") >= len(jobs),
                 timeout=10, what="every job counted")
        text = d.metrics()
    finally:
        d.kill()

    msgs = {}
    for _, rcpt, raw in smtp_sink.messages:
        check_raw(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert not msg.defects, (rcpt, msg.defects)
        mid = msg["Message-ID"].strip("<>")
        assert mid not in msgs, "duplicate " + mid
        msgs[mid] = (rcpt, raw, msg)
    assert set(msgs) == set(due), (sorted(set(due) - set(msgs)),
                                   sorted(set(msgs) - set(due)))

    control = [v for k, v in msgs.items() if ".900.0." in k][0][2]
    ctl_html = html_facts(parts_of(control)[1])
    assert {h.lower() for h in control.keys()} == WANT_HEADERS
    for mid, (rcpt, raw, msg) in msgs.items():
        names = [h.lower() for h in msg.keys()]
        assert sorted(names) == sorted(WANT_HEADERS), (mid, names)
        for h in msg.keys():
            v = msg[h]
            assert not v.defects, (mid, h, v.defects)
            assert "\r" not in str(v) and "\n" not in str(v) and "\0" not in str(v)
        assert msg["To"].addresses[0].addr_spec == rcpt, (mid, msg["To"])
        assert len(msg["To"].addresses) == 1
        # A name that reads "Bcc: x@y" stays a quoted phrase, never an address.
        assert [a.addr_spec for a in msg["From"].addresses] == ["digest@example.com"]
        assert msg["X-Digest-Job"] == mid.split("@")[0].rsplit(".", 1)[0]
        plain, html = parts_of(msg)
        assert "\0" not in plain and "\0" not in html
        assert "<script" not in html.lower(), mid
        facts = html_facts(html)
        assert facts.tags <= ctl_html.tags, (mid, facts.tags - ctl_html.tags)
        assert facts.attrs <= ctl_html.attrs, (mid, facts.attrs - ctl_html.attrs)
        assert not any(a.startswith("on") for a in facts.attrs)
        for href in facts.hrefs:
            assert re.match(r"https?://[^/?#\s]", href), (mid, href)
            assert not re.search(r"[\s\"<>]", href), (mid, href)
        # Nothing of a 1 MB excerpt makes a 1 MB email.
        assert len(raw) < 256 * 1024, (mid, len(raw))

    # The dot-stuffing held: the lines that look like SMTP commands arrived
    # inside the message, and the sink saw no other envelope.
    assert sorted(rcpt for _, rcpt, _ in smtp_sink.messages) == sorted(
        users[u]["hash"]["email"] for u in due.values())
    assert {frm for frm, _, _ in smtp_sink.messages} == {"digest@example.com"}
    dots = [v for k, v in msgs.items() if ".905.0." in k][0][2]
    assert "MAIL FROM:<x@evil.example>" in parts_of(dots)[0]

    for reason, n in skipped.items():
        assert metric_sum(text, "digest_recipients_skipped_total", reason=reason) == n, (
            reason, n, text)
    assert metric_sum(text, "digest_recipients_skipped_total") == sum(skipped.values())
    assert metric_sum(text, "digest_emails_total", result="sent") == len(due)
    assert metric_sum(text, "digest_worker_restarts_total") == 0
    assert metric_sum(text, "digest_jobs_total", result="ok") == len(jobs)
    assert not r.exists("digest:dlq")
    assert "level=error" not in d.log(), d.log()[-2000:]


def test_hostile_corpus_is_hostile():
    """The corpus holds what it promises (so that the test above cannot pass
    on tame data)."""
    with open(CORPUS) as f:
        corpus = json.load(f)
    blobs = []
    for sect in ("groups", "posts", "users"):
        for rec in corpus[sect]:
            for v in (rec.get("hash") or {}).values():
                if isinstance(v, (str, dict)):
                    blobs.append(value(v) if not (isinstance(v, dict) and "type" in v)
                                 else b"")
    allb = b"\x01".join(blobs)
    for needle in (b"\r\n", b"\nX-Injected", b"\0", b"Bcc: ", b"<script", b"javascript:",
                   b"data:", b"vbscript:", b"onerror=", b"\r\n.\r\n"):
        assert needle in allb, needle
    assert max(len(b) for b in blobs) >= 1 << 20
    assert any(len(b) > 998 and b" " not in b for b in blobs)
    bad = 0
    for b in blobs:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    assert bad >= 5
    likes = [p["hash"].get("likes") for p in corpus["posts"] if p.get("hash")]
    assert "lots" in likes
    assert any(g["hash"] is None for g in corpus["groups"])
    assert any(p["hash"] == {"type": "list"} for p in corpus["posts"])
