"""The maildir transport reports a message delivered only once it is
durable: written and fsynced in tmp/, renamed into new/, and new/ fsynced.
On the amqp backend the checkpoint in Redis follows every message, so a
checkpoint that passed a message whose rename was not yet synced would
lose that message in a power cut.  Proved from the outside: the worker
runs under strace, and every checkpoint write that moves the cursor past
a member comes after a sync of new/ that covers that member's rename."""
import os
import re
import signal
import subprocess

import pytest

from lib.amqp_util import config, expected_pairs, maildir_ids, now_for_tests, scheduled, \
    write_groups
from lib.harness import ASAN, DIGESTD, digestctl, kill_pid, stop_popen, wait_for

MEMBERS = list(range(100, 140))

CURSOR = re.compile(r'HSET\\r\\n\$\d+\\r\\n[^"]*?digest:job:[^\\]+\\r\\n'
                    r'\$6\\r\\ncursor\\r\\n\$\d+\\r\\n(-?\d+)\\r\\n')


def http_ok(port, path):
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def check_order(lines, outbox):
    """Walk one process's trace: (renames, checked cursor writes)."""
    new = os.path.join(outbox, "new")
    renamed = durable = writes = 0
    for line in lines:
        if re.match(r"renameat2?\(", line) and line.rstrip().endswith("= 0") and \
                ("<%s>" % new) in line:
            renamed += 1
        elif line.startswith("fsync(") and ("<%s>" % new) in line and \
                line.rstrip().endswith("= 0"):
            durable = renamed
        elif line.startswith("write("):
            for m in CURSOR.finditer(line):
                cursor = int(m.group(1))
                past = sum(1 for u in MEMBERS if u <= cursor)
                assert past <= durable, (
                    "checkpoint cursor %d passes %d message(s) but only %d rename(s) "
                    "into new/ were synced: %s" % (cursor, past, durable, line[:200]))
                writes += 1
    return renamed, writes


@pytest.mark.skipif(ASAN, reason="LeakSanitizer cannot run under ptrace (strace)")
def test_maildir_checkpoint_follows_the_directory_sync(tmp_path, redis_tcp, rabbitmq,
                                                      vhost):
    r = redis_tcp.client()
    now = now_for_tests()
    end = now - now % 86400
    groups = {7: MEMBERS}
    write_groups(r, groups, end)
    outbox = os.path.join(str(tmp_path), "outbox")
    cfg = config(tmp_path, redis_tcp, rabbitmq, vhost, maildir=outbox)
    with open(cfg) as f:
        port = int(re.search(r"listen = 127\.0\.0\.1:(\d+)", f.read()).group(1))
    assert scheduled(digestctl(cfg, "schedule", "--period", "daily", "--now",
                               str(now)).stdout) == 1
    prefix = str(tmp_path / "trace")
    proc = subprocess.Popen(
        ["strace", "-ff", "-qq", "-y", "-s", "512", "-o", prefix, "-e",
         "trace=fsync,fdatasync,rename,renameat,renameat2,sendto,write",
         DIGESTD, "-c", cfg], cwd=str(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dpid = None
    try:
        wait_for(lambda: http_ok(port, "/readyz"), timeout=30, what="/readyz")
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            dpid = int(f.read().split()[0])
        jid = "daily.%d.7.0" % end
        wait_for(lambda: r.hget("digest:job:" + jid, "state") == "done", timeout=60,
                 interval=0.1, what="the job done")
        os.kill(dpid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        proc = None
    finally:
        if proc is not None:
            # Workers follow the supervisor (PR_SET_PDEATHSIG).
            if dpid is not None:
                kill_pid(dpid, signal.SIGKILL)
            stop_popen(proc, sig=signal.SIGKILL)

    assert set(maildir_ids(outbox)) == expected_pairs(groups, end)
    renamed = writes = 0
    for name in os.listdir(str(tmp_path)):
        if not name.startswith("trace."):
            continue
        with open(os.path.join(str(tmp_path), name), errors="replace") as f:
            n, w = check_order(f.read().splitlines(), outbox)
        renamed += n
        writes += w
    print("measured: %d renames into new/, %d checkpoint writes checked" % (renamed, writes))
    assert renamed == len(MEMBERS)
    # The amqp backend saves the checkpoint after every message.
    assert writes >= len(MEMBERS) // 2, writes
