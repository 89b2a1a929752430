"""Templates from digest.template_dir: the operator's plain
and HTML templates replace the built-in ones, values are escaped for the
HTML one and not for the plain one, the posts come in engagement order
without the member's own, and the email stays well-formed MIME.
"""
import email
import email.policy
import os

from lib.harness import Digestd
from lib.pipeline_data import (
    SECRET, UNSUB_URL, Data, config, enqueue, token, wait_done, window)

TEXT = """\
Dear {{recipient_name}} of {{group_name}},
{{#posts}}
* {{title}} [{{likes}}/{{comments}}]{{#url}} {{url}}{{/url}}
{{/posts}}
Leave: {{unsubscribe_url}}
"""

HTML = """\
<div id="custom">{{group_name}}</div>
<ol>
{{#posts}}
<li title="{{title}}">{{#url}}<a href="{{url}}">{{title}}</a>{{/url}}{{^url}}{{title}}{{/url}}</li>
{{/posts}}
</ol>
<a href="{{unsubscribe_url}}">leave</a>
"""


def test_template_dir_overrides(tmp_path, redis_tcp):
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "digest.txt").write_text(TEXT)
    (tdir / "digest.html").write_text(HTML)

    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(42, name="Tea & <Cakes>", url="https://example.com/g/42")
    d.members(42, [7])
    d.user(7, email="ann@example.org", name="Ann \"A\"")
    d.post(42, 1, we - 50, title="Low", author_id=9, likes=1)
    d.post(42, 2, we - 40, title="High \"quoted\"", author_id=9, likes=5,
           comments=2, url="https://example.com/p/2")
    d.post(42, 3, we - 30, title="Own post", author_id=7, likes=50)
    d.post(42, 4, we - 20, title="Middle", author_id=8, likes=2,
           url="javascript:alert(1)")

    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, redis_tcp, maildir=outbox)
    with open(cfg) as f:
        text = f.read()
    # A relative template_dir is relative to the config file's directory.
    text = text.replace("max_posts = 10\n",
                        "max_posts = 10\ntemplate_dir = templates\n")
    with open(cfg, "w") as f:
        f.write(text)

    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 42, "daily", ws, we)
        wait_done(r, jid, d=proc)
    finally:
        proc.kill()

    new = os.path.join(outbox, "new")
    names = os.listdir(new)
    assert len(names) == 1
    with open(os.path.join(new, names[0]), "rb") as f:
        raw = f.read()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) < 998 for line in raw.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    # Text in MIME canonical form has CRLF line breaks.
    plain, html = (p.get_content().replace("\r\n", "\n") for p in parts)
    unsub = "%s?u=7&g=42&t=%s" % (UNSUB_URL, token(7, 42, SECRET))

    # Plain: the operator's text, values as they are, own post left out,
    # engagement order, the javascript: URL dropped.
    assert plain == (
        'Dear Ann "A" of Tea & <Cakes>,\n'
        '* High "quoted" [5/2] https://example.com/p/2\n'
        '* Middle [2/0]\n'
        '* Low [1/0]\n'
        'Leave: %s\n' % unsub)

    # HTML: escaped in text and attribute contexts, links only http(s).
    assert html == (
        '<div id="custom">Tea &amp; &lt;Cakes&gt;</div>\n'
        '<ol>\n'
        '<li title="High &quot;quoted&quot;"><a href="https://example.com/p/2">'
        'High &quot;quoted&quot;</a></li>\n'
        '<li title="Middle">Middle</li>\n'
        '<li title="Low">Low</li>\n'
        '</ol>\n'
        '<a href="%s">leave</a>\n' % unsub.replace("&", "&amp;"))
    assert msg["List-Unsubscribe"] == "<%s>" % unsub
