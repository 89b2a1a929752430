"""Unsubscribe links cannot be forged: the token of a real digest's
List-Unsubscribe verifies with `digestctl verify-unsubscribe` for its own
user and group only; any changed digit, another user, group or key, a
truncated, padded or re-cased token is refused; and the comparison is the
constant-time one (CRYPTO_memcmp in common/unsub.c, no plain compare)."""
import os
import re
from urllib.parse import parse_qs, urlsplit

from lib.harness import ROOT, Digestd, digestctl, maildir_messages
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, wait_done, window)


def verify(cfg, uid, gid, tok):
    p = digestctl(cfg, "verify-unsubscribe", "--uid", str(uid), "--gid", str(gid),
                  "--token", tok, check=False)
    assert p.returncode in (0, 1), (p.returncode, p.stderr)
    return p.returncode == 0


def flip(tok, i):
    c = tok[i]
    return tok[:i] + ("0" if c != "0" else "1") + tok[i + 1:]


def test_unsubscribe_token_cannot_be_forged(tmp_path, redis_tcp):
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(42, name="Unsub")
    d.members(42, [7, 8, 9])
    for u in (7, 8, 9):
        d.user(u, email="u%d@example.org" % u)
    d.post(42, 1, we - 60, title="Hello", author_id=1)
    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, redis_tcp, maildir=outbox)
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        wait_done(r, enqueue(r, 42, "daily", ws, we), timeout=30, d=proc)
    finally:
        proc.kill()

    links = {}
    for msg in maildir_messages(outbox):
        url = re.fullmatch(r"<(.*)>", str(msg["List-Unsubscribe"]).strip()).group(1)
        q = parse_qs(urlsplit(url).query)
        links[int(q["u"][0])] = (int(q["g"][0]), q["t"][0])
    assert sorted(links) == [7, 8, 9]

    for uid, (gid, tok) in links.items():
        assert gid == 42
        assert re.fullmatch(r"[0-9a-f]{64}", tok)
        assert verify(cfg, uid, gid, tok)
        for i in (0, 1, 31, 32, 62, 63):
            assert not verify(cfg, uid, gid, flip(tok, i)), i
        for u2, g2, t2 in ((uid + 1, gid, tok), (uid, gid + 1, tok), (gid, uid, tok),
                           (-uid, gid, tok), (uid, gid, tok.upper()), (uid, gid, tok[:-1]),
                           (uid, gid, tok + "0"), (uid, gid, " " + tok), (uid, gid, ""),
                           (uid, gid, tok[:32]), (uid, gid, "0" * 64),
                           (uid, gid, tok[:63] + "g"), ("%d:%d" % (uid, gid), gid, tok)):
            assert not verify(cfg, u2, g2, t2), (u2, g2, t2)
    # One user's token is no good for another.
    assert not verify(cfg, 8, 42, links[7][1])

    # Under another key no link verifies.
    with open(cfg) as f:
        text = f.read()
    other = os.path.join(str(tmp_path), "other.conf")
    with open(other, "w") as f:
        f.write(re.sub(r"unsubscribe_secret = .*", "unsubscribe_secret = another-key-0123456789abcdef012345", text))
    for uid, (gid, tok) in links.items():
        assert not verify(other, uid, gid, tok)


def test_token_compared_in_constant_time():
    with open(os.path.join(ROOT, "common", "unsub.c")) as f:
        src = f.read()
    body = src[src.index("\nunsub_verify("):]
    body = body[:body.index("\n}\n")]
    assert "CRYPTO_memcmp(" in body
    # No early-exit compare anywhere near a token.
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    for bad in ("strcmp(", "strncmp(", "strcasecmp(", "bcmp("):
        assert bad not in code, bad
    assert re.search(r"(?<!CRYPTO_)memcmp\(", code) is None
    with open(os.path.join(ROOT, "ctl", "verify.c")) as f:
        ctl = f.read()
    assert "unsub_verify(" in ctl
    assert not re.search(r"(str|mem)n?cmp\([^)]*\btoken\b[,)]", ctl)
