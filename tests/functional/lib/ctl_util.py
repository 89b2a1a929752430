"""Helpers for the digestctl tests: a config on a private redis-server and
readers for the queues digestctl writes."""
import subprocess

from lib import config as conf
from lib.harness import DIGESTCTL

DAY = 86400
# 2025-11-29 00:00:00 UTC, a Saturday; 2025-11-24 was a Monday.
SAT = 1764374400
MON = 1763942400


def ctl_config(tmp_path, redis, extra="", schedule="", name="digestd.conf",
               queue_redis=None, prefix="", unix=False):
    """A complete config on redis with the two usual pools."""
    sects = [redis.config_section(prefix=prefix, unix=unix)]
    if queue_redis is not None:
        sects.append(queue_redis.config_section("queue_redis", unix=unix))
    return conf.build(tmp_path, conf.merge(
        conf.pools(("priority", "standard"), workers=1),
        {"schedule": conf.parse_lines(schedule)} if schedule else {}),
        sections=sects, extra=extra, name=name,
        last="schedule" if schedule else "pool.standard")


def entries(r, queue, prefix=""):
    """The stream entries of a queue as a list of field dicts."""
    return [f for _, f in r.xrange(prefix + "digest:q:" + queue)]


def add_group(r, gid, members, posts, active=None, prefix=""):
    """A group with member ids and (pid, time) posts, as the host app writes."""
    p = prefix
    r.hset(p + "group:%d" % gid, mapping={"name": "G%d" % gid,
                                         "url": "https://example.com/g/%d" % gid})
    if members:
        r.zadd(p + "group:%d:members" % gid, {str(u): u for u in members})
    for pid, t in posts:
        r.zadd(p + "group:%d:posts" % gid, {str(pid): t})
        r.hset(p + "post:%d" % pid, mapping={"title": "P%d" % pid, "url": "https://x/%d" % pid,
                                            "author_id": "1", "likes": "1", "comments": "0"})
    if active is None:
        active = max([t for _, t in posts], default=0)
    r.zadd(p + "groups:active", {str(gid): active})


# CSI as a raw C1 byte and as UTF-8, backspaces and a carriage return to
# overwrite what was printed, DEL, a newline to forge a row, a bidi
# override.
HOSTILE = (b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m\r\x08\x08\x7f"
           b"\x9b31m\xc2\x9b31m\nforged row\xe2\x80\xaeevil")


def assert_printable(raw):
    """raw is UTF-8 with no control a terminal acts on but the newlines."""
    text = raw.decode("utf-8")     # strict: a stray byte fails here
    for i, ch in enumerate(text):
        o = ord(ch)
        assert ch == "\n" or not (o < 0x20 or 0x7f <= o <= 0x9f
                                  or 0x202a <= o <= 0x202e or 0x2066 <= o <= 0x2069), \
            "control U+%04X at %d: %r" % (o, i, text[max(0, i - 40):i + 40])
    return text


def run_raw(cfg, *args):
    p = subprocess.run([DIGESTCTL, "-c", cfg] + list(args), capture_output=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr
