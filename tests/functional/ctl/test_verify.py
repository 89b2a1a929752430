"""digestctl verify-unsubscribe: exit 0 for the right token only."""
import hashlib
import hmac

from lib.ctl_util import ctl_config  # noqa: F401
from lib.harness import digestctl

SECRET = b"test-secret-do-not-log-4f8a2c91d7e3"


def token(uid, gid):
    return hmac.new(SECRET, ("%d:%d" % (uid, gid)).encode(), hashlib.sha256).hexdigest()


def test_verify_unsubscribe(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    t = token(123, 45)
    p = digestctl(cfg, "verify-unsubscribe", "--uid", "123", "--gid", "45", "--token", t)
    assert p.returncode == 0
    for uid, gid, tok in ((124, 45, t), (123, 46, t), (123, 45, t[:-1] + ("0" if t[-1] != "0" else "1")),
                          (123, 45, t.upper()), (123, 45, ""), (123, 45, t + "00"),
                          (45, 123, t)):
        p = digestctl(cfg, "verify-unsubscribe", "--uid", str(uid), "--gid", str(gid),
                      "--token", tok, check=False)
        assert p.returncode == 1, (uid, gid, tok)
    p = digestctl(cfg, "verify-unsubscribe", "--uid", "x1", "--gid", "45", "--token", t,
                  check=False)
    assert p.returncode == 1
    p = digestctl(cfg, "verify-unsubscribe", "--uid", "1", check=False)
    assert p.returncode == 2


def test_verify_needs_no_redis(tmp_path, redis_tcp):
    cfg = ctl_config(tmp_path, redis_tcp)
    redis_tcp.stop()
    p = digestctl(cfg, "verify-unsubscribe", "--uid", "7", "--gid", "8", "--token", token(7, 8))
    assert p.returncode == 0
