"""digestd configs for the tests: one default config and overrides.

DEFAULT is a complete config on the maildir transport; a test (or one of
the presets the helper modules keep for their family of tests) says only
what differs: build(tmp_path, overrides={"supervisor": {"stall_timeout":
"20s"}, "pool.standard": {"workers": 2}}), a section mapped to None or a
key to None removes it.  Servers give their own sections (a RedisServer's
config_section(), an SmtpSink's), and extra text is appended as it is.
"""
import os

SECRET = "test-secret-do-not-log-4f8a2c91d7e3"
UNSUB_URL = "https://example.com/unsubscribe"

# The sections every config starts from, in the order they are written.
DEFAULT = (
    ("supervisor", (
        ("listen", "127.0.0.1:{port}"),
        ("drain_timeout", "10s"),
        ("stall_timeout", "5s"),
        ("restart_backoff_min", "10ms"),
        ("restart_backoff_max", "1s"),
        ("log_level", "info"),
    )),
    ("digest", (
        ("from", "Groups <digest@example.com>"),
        ("unsubscribe_secret", SECRET),
        ("unsubscribe_url", UNSUB_URL),
    )),
    ("transport", (
        ("type", "maildir"),
    )),
    ("maildir", (
        ("path", "{tmp}/outbox"),
    )),
)


def parse_lines(lines):
    """{key: value} of "key = value" lines (a test's overrides as text)."""
    out = {}
    for line in lines.strip().splitlines():
        if line.strip():
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def smtp(sink, per_session=None):
    """Overrides that send through the SMTP server sink (its port)."""
    sect = {"host": "127.0.0.1", "port": sink.port, "starttls": "off"}
    if per_session is not None:
        sect["messages_per_session"] = per_session
    return {"transport": {"type": "smtp"}, "maildir": None, "smtp": sect}


def pools(names, **keys):
    """Overrides with one [pool.NAME] per name, each with keys."""
    return {"pool.%s" % n: dict(keys) for n in names}


def merge(*overrides):
    """One overrides dict out of several, later ones winning per key."""
    out = {}
    for o in overrides:
        for sect, kv in (o or {}).items():
            if kv is None:
                out[sect] = None
            elif out.get(sect) is None:
                out[sect] = dict(kv)
            else:
                out[sect].update(kv)
    return out


def text(tmp_path, overrides=None, sections=(), extra="", port=None, last=None):
    """(config text, listen port): DEFAULT with overrides, then the
    server sections given as text, then section last (by default the
    transport's own: smtp, amqp_out or maildir), then extra, whose lines
    before any [section] therefore add to last."""
    from lib.harness import free_port

    port = port or free_port()
    secs = [(name, dict(kv)) for name, kv in DEFAULT]
    for name, kv in (overrides or {}).items():
        cur = next((s for s in secs if s[0] == name), None)
        if kv is None:
            if cur is not None:
                secs.remove(cur)
            continue
        if cur is None:
            cur = (name, {})
            secs.append(cur)
        for k, v in kv.items():
            if v is None:
                cur[1].pop(k, None)
            else:
                cur[1][k] = v
    if last is None:
        tp = dict(secs).get("transport", {}).get("type", "maildir")
        last = {"smtp": "smtp", "amqp": "amqp_out"}.get(tp, "maildir")

    def render(name, kv):
        out = ["[%s]" % name]
        for k, v in kv.items():
            out.append("%s = %s" % (k, str(v).format(port=port, tmp=str(tmp_path))))
        return "\n".join(out) + "\n\n"

    body = "".join(render(n, kv) for n, kv in secs if n != last)
    for s in sections:
        body += s.rstrip("\n") + "\n\n"
    body += "".join(render(n, kv) for n, kv in secs if n == last)
    return body + extra, port


def write(tmp_path, body, name="digestd.conf"):
    """Write a config into tmp_path; returns its path."""
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(body)
    return path


def build(tmp_path, overrides=None, sections=(), extra="", port=None,
          name="digestd.conf", last=None):
    """Write DEFAULT with overrides (see text()); returns the path."""
    body, _ = text(tmp_path, overrides, sections, extra, port, last)
    return write(tmp_path, body, name)
