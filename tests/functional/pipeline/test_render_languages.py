"""Languages (docs/design.md#templates): the user hash's locale picks
template_dir/{locale}/, falling back to the parent language (de-AT takes
de) and then to the default templates; the Subject is a template; a
template picks singular or plural by the count.  A German member gets the
German email with the right plural, in the subject and the body; a member
whose locale has no templates gets the default (built-in English) one.
"""
import email
import email.policy
import os

from lib.harness import Digestd
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, wait_done, window)

DE_TEXT = """\
Hallo {{recipient_name}},

{{post_count}} {{post_count|neuer Beitrag|neue Beiträge}} in {{group_name}}:
{{#posts}}
* {{title}} ({{likes}} {{likes|Like|Likes}})
{{/posts}}
Abmelden: {{unsubscribe_url}}
"""

DE_SUBJECT = "{{group_name}}: {{post_count}} {{post_count|neuer Beitrag|neue Beiträge}}\n"


def read_all(outbox):
    new = os.path.join(outbox, "new")
    out = {}
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        assert not msg.defects
        out[msg["To"].addresses[0].addr_spec] = msg
    return out


def test_render_languages(tmp_path, redis_tcp):
    tdir = tmp_path / "templates"
    (tdir / "de").mkdir(parents=True)
    (tdir / "de" / "digest.txt").write_text(DE_TEXT)
    (tdir / "de" / "subject.txt").write_text(DE_SUBJECT)
    # A directory that is not a language is no set of templates.
    (tdir / "images").mkdir()

    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(42, name="Kochen", url="https://example.com/g/42")
    d.members(42, [7, 8, 9, 10])
    d.user(7, email="anna@example.org", name="Anna", locale="de")
    d.user(8, email="bernd@example.org", name="Bernd", locale="de-AT")
    d.user(9, email="chloe@example.org", name="Chloe", locale="xx-YY")
    d.user(10, email="dan@example.org", name="Dan")
    d.post(42, 1, we - 50, title="Brot", author_id=7, likes=1)
    d.post(42, 2, we - 40, title="Kuchen", author_id=7, likes=2)
    d.post(42, 3, we - 30, title="Suppe", author_id=99, likes=1)

    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, redis_tcp, maildir=outbox)
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("max_posts = 10\n",
                             "max_posts = 10\ntemplate_dir = templates\n"))

    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 42, "daily", ws, we)
        st = wait_done(r, jid, d=proc)
    finally:
        proc.kill()
    assert st["sent"] == "4" and st["skipped"] == "0", st

    msgs = read_all(outbox)
    assert sorted(msgs) == ["anna@example.org", "bernd@example.org",
                            "chloe@example.org", "dan@example.org"]

    def plain(m):
        return m.get_body(("plain",)).get_content().replace("\r\n", "\n")

    # German, one post left once her own are out: the singular.
    anna = msgs["anna@example.org"]
    assert anna["Subject"] == "Kochen: 1 neuer Beitrag"
    assert plain(anna) == (
        "Hallo Anna,\n\n1 neuer Beitrag in Kochen:\n"
        "* Suppe (1 Like)\nAbmelden: %s\n" % anna["List-Unsubscribe"][1:-1])
    # de-AT has no directory of its own: de's, with the plural.
    bernd = msgs["bernd@example.org"]
    assert bernd["Subject"] == "Kochen: 3 neue Beiträge"
    assert plain(bernd).startswith("Hallo Bernd,\n\n3 neue Beiträge in Kochen:\n"
                                   "* Kuchen (2 Likes)\n")
    # de has no digest.html: the default one, in English.
    assert "3 new posts" in bernd.get_body(("html",)).get_content()

    # An unknown locale and none at all: the built-in English.
    for addr, name in (("chloe@example.org", "Chloe"), ("dan@example.org", "Dan")):
        m = msgs[addr]
        assert m["Subject"] == "Your daily digest: Kochen"
        body = plain(m)
        assert body.startswith("Hello %s,\n\nYour daily digest of Kochen: 3 new posts.\n" % name)
        assert "2 likes, 0 comments" in body and "1 like, 0 comments" in body
        assert m["Auto-Submitted"] == "auto-generated"
