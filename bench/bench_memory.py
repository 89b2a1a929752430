#!/usr/bin/env python3
"""Memory: the peak RSS (VmHWM) of a worker that walks a 1,000,000-member
group under memory_limit = 32M, and of the supervisor with 64 workers.

The big group is written straight in the documented data model through
`redis-cli --pipe` (seconds, not minutes): every member has a user hash
(email, recent last_seen), one in --every takes the daily digest and the
others the weekly one, so the worker reads all 1,000,000 members and users
and sends 1,000,000 / every emails to postfix's smtp-sink.  shard_size is
raised above the group's size so that one job, in one worker, walks it all.

The supervisor is then started with 64 workers over two pools; /metrics
and /status are scraped, a few workers are killed and replaced, and the
supervisor's VmHWM is read.

    bench/bench_memory.py [--members N] [--every K] [--out FILE]
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

from benchlib import (Digestd, PostfixSink, RedisServer, children, cmdline,
                      digestctl, digestd_config, metric_sum, out_path,
                      override, vm_kb, wait_for, write_json)

GID = 1


def resp(*args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        a = str(a)
        out.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
    return "".join(out)


def seed_big(redis, members, every, window_end):
    """The group, its posts and members, their users, by redis-cli --pipe."""
    path = os.path.join(redis.dir, "seed.resp")
    now = int(time.time())
    with open(path, "w") as f:
        f.write(resp("HSET", "group:%d" % GID, "name", "Very large group",
                      "url", "https://example.com/g/%d" % GID))
        f.write(resp("ZADD", "groups:active", window_end - 60, GID))
        for k in range(12):
            pid = 900000 + k
            f.write(resp("ZADD", "group:%d:posts" % GID, window_end - 600 - k, pid))
            f.write(resp("HSET", "post:%d" % pid, "title",
                         "Post %d: what the group talked about this week" % k,
                         "url", "https://example.com/p/%d" % pid,
                         "author_id", 1, "author_name", "Alice Martin",
                         "excerpt", ("An excerpt of a post, about a hundred "
                                     "characters long, as a host would cut "
                                     "it. ") * 2,
                         "likes", k * 3, "comments", k))
        chunk = []
        for uid in range(1, members + 1):
            chunk.extend((uid, uid))
            if len(chunk) >= 2000:
                f.write(resp("ZADD", "group:%d:members" % GID, *chunk))
                chunk = []
            f.write(resp("HSET", "user:%d" % uid, "email",
                         "u%d@example.org" % uid, "name", "User %d" % uid,
                         "last_seen", now - 3600, "digest",
                         "daily" if uid % every == 0 else "weekly"))
        if chunk:
            f.write(resp("ZADD", "group:%d:members" % GID, *chunk))
    with open(path, "rb") as f:
        p = subprocess.run(["redis-cli", "-s", redis.socket, "--pipe"],
                           stdin=f, capture_output=True, text=True,
                           timeout=600)
    os.unlink(path)
    if p.returncode != 0 or "errors: 0" not in p.stdout:
        raise RuntimeError("redis-cli --pipe: %s %s" % (p.stdout, p.stderr))


def worker_test(args, tmp, res):
    redis = RedisServer(os.path.join(tmp, "redis")).start()
    sink = PostfixSink().start()
    d = None
    try:
        cfg = digestd_config(
            tmp, redis, {"priority": {"workers": 1, "memory_limit": "32M"}},
            extra=sink.section() + "[schedule]\nshard_size = %d\n"
            % (args.members * 2))
        with open(cfg) as f:
            text = override(f.read(), "transport", "type = smtp")
        with open(cfg, "w") as f:
            f.write(text)
        # The window of today's daily schedule: the data is put inside it.
        now = int(time.time())
        window_end = now - now % 86400
        t = time.monotonic()
        seed_big(redis, args.members, args.every, window_end)
        seed_s = time.monotonic() - t
        d = Digestd(cfg, tmp).start(timeout=30)
        wait_for(lambda: any(w["state"] == "idle"
                             for w in d.status()["workers"]), timeout=30,
                 what="worker idle")
        t = time.monotonic()
        digestctl(cfg, "schedule", "--period", "daily")
        want = args.members // args.every

        def done():
            text = d.metrics()
            return (metric_sum(text, "digest_jobs_total", result="ok") >= 1 or
                    metric_sum(text, "digest_worker_restarts_total") > 0) and text

        # Read VmHWM while the job runs too: a worker replaced for OOM
        # would take its figure with it.
        peak, pid = 0, None
        deadline = time.monotonic() + args.timeout
        text = None
        while time.monotonic() < deadline:
            for w in d.status()["workers"]:
                v = vm_kb(w["pid"])
                if v is not None and v > peak:
                    peak, pid = v, w["pid"]
            text = done()
            if text:
                break
            time.sleep(0.2)
        took = time.monotonic() - t
        for w in d.status()["workers"]:
            v = vm_kb(w["pid"])
            if v is not None and v > peak:
                peak, pid = v, w["pid"]
        if not text:
            raise RuntimeError("the 1M-member job did not finish in %ds"
                               % args.timeout)
        res["worker"] = {
            "members": args.members, "emails_expected": want,
            "emails_sent": metric_sum(text, "digest_emails_total",
                                      result="sent"),
            "skipped": metric_sum(text, "digest_recipients_skipped_total"),
            "restarts": metric_sum(text, "digest_worker_restarts_total"),
            "oom_restarts": metric_sum(text, "digest_worker_restarts_total",
                                       reason="oom"),
            "jobs_ok": metric_sum(text, "digest_jobs_total", result="ok"),
            "memory_limit": "32M", "vm_hwm_kb": peak, "pid": pid,
            "vm_rss_kb_end": vm_kb(pid, "VmRSS"),
            "seconds": took, "seed_seconds": seed_s,
        }
        d.stop(timeout=60)
    finally:
        if d is not None:
            d.kill()
        sink.stop()
        redis.stop()


def supervisor_test(args, tmp, res):
    redis = RedisServer(os.path.join(tmp, "redis2")).start()
    d = None
    try:
        half = args.sup_workers // 2
        cfg = digestd_config(tmp, redis,
                             {"priority": {"workers": half},
                              "standard": {"workers": args.sup_workers - half}})
        d = Digestd(cfg, tmp).start(timeout=60)
        sup = d.pid()
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == args.sup_workers,
                 timeout=60, what="64 workers idle")
        for _ in range(20):
            d.metrics()
            d.status()
            d.http("/status?html")
        kids = [p for p in children(sup) if "worker" in cmdline(p)]
        for p in kids[:16]:
            os.kill(p, 9)
        wait_for(lambda: sum(1 for w in d.status()["workers"]
                             if w["state"] == "idle") == args.sup_workers,
                 timeout=60, what="workers replaced")
        for _ in range(20):
            d.metrics()
        res["supervisor"] = {
            "workers": args.sup_workers,
            "vm_hwm_kb": vm_kb(sup), "vm_rss_kb": vm_kb(sup, "VmRSS"),
            "rss_anon_kb": vm_kb(sup, "RssAnon"),
            "rss_file_kb": vm_kb(sup, "RssFile"),
            "rss_shmem_kb": vm_kb(sup, "RssShmem"),
        }
        d.stop(timeout=60)
    finally:
        if d is not None:
            d.kill()
        redis.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000000)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--sup-workers", type=int, default=64)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="digestd-bench-mem-")
    res = {"params": vars(args)}
    try:
        worker_test(args, tmp, res)
        supervisor_test(args, tmp, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w, s = res["worker"], res["supervisor"]
    print("memory: worker on a %d-member group (32M limit): VmHWM %.1f MB, "
          "%d emails, %d restarts, %.0fs" % (
              w["members"], w["vm_hwm_kb"] / 1024, w["emails_sent"],
              w["restarts"], w["seconds"]))
    print("memory: supervisor with %d workers: VmHWM %.1f MB" % (
        s["workers"], s["vm_hwm_kb"] / 1024))
    write_json(out_path(args.out or "bench-memory.json"), res)


if __name__ == "__main__":
    main()
