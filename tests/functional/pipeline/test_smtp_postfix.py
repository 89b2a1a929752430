"""The SMTP transport against a real postfix on loopback, the relay most
users put in front of digestd.  Postfix offers CHUNKING, so libESMTP sends
each message as BDAT chunks; postfix answers them in two writes, and
unless digestd acknowledges the first at once, the second waits for its
delayed ACK (40 ms a message).  300 digests must take well under the
12 s that such a wait would cost: a guard against the stall, not a speed
target.  The same with CHUNKING withheld, so that libESMTP sends DATA and
each body goes out corked: nothing may wait in the cork either.
"""
import os
import re
import time

import pytest

from lib.harness import POSTFIX, Digestd, PostfixServer, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, wait_done, window)

pytestmark = [
    pytest.mark.skipif(not os.path.exists(POSTFIX), reason="no postfix"),
    pytest.mark.skipif(os.geteuid() != 0, reason="postfix's master needs root"),
]

N = 300


@pytest.fixture(scope="module", params=[True, False], ids=["bdat", "data"])
def postfix(request):
    p = PostfixServer(chunking=request.param)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def seed(r, we, n=N):
    """A group of n members and posts enough for a digest of several KiB:
    more than postfix reads at once (4 KiB), the shape that stalled."""
    d = Data(r)
    d.group(1, name="Relay")
    d.members(1, range(1, n + 1))
    for u in range(1, n + 1):
        d.user(u, email="u%d@example.org" % u)
    for p in range(1, 7):
        d.post(1, p, we - 60 * p, title="Post number %d" % p, author_id=n + 1,
               author_name="Someone", excerpt=("lorem ipsum dolor sit amet %d " % p) * 20)
    return ["u%d@example.org" % u for u in range(1, n + 1)]


def test_postfix_relay_takes_300_digests_without_stalling(tmp_path, redis_tcp, postfix):
    r = redis_tcp.client()
    ws, we = window()
    want = seed(r, we)
    d = Digestd(config(tmp_path, redis_tcp, sink=postfix, per_session=N), tmp_path)
    d.start()
    try:
        t0 = time.monotonic()
        st = wait_done(r, enqueue(r, 1, "daily", ws, we), timeout=120, d=d)
        took = time.monotonic() - t0
        assert int(st["sent"]) == N
        assert metric_sum(d.metrics(), "digest_emails_total", result="sent") == N
        # The relay's log is written a moment after it answers.
        wait_for(lambda: len(postfix.delivered()) >= N, timeout=30,
                 what="postfix's log of %d deliveries" % N)
        assert sorted(postfix.delivered()) == sorted(want)
        sizes = [int(s) for s in re.findall(r"from=<digest@example.com>, size=(\d+)",
                                            postfix.log())]
        assert len(sizes) == N and min(sizes) > 4096, sizes[:5]
        assert took < 10, "%d digests took %.1f s through postfix" % (N, took)
    finally:
        d.kill()
