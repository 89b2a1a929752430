"""Helpers for the /metrics tests: the series docs/design.md#metric-series
promises, the suite's one parser of the exposition formats, and a digestd
with two pools on a Redis reachable over loopback TCP.
"""
import os
import urllib.request

from lib import config as conf
from lib.harness import Digestd, wait_for

OM_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
             "application/openmetrics-text;version=0.0.1;q=0.75,"
             "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
CT_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CT_OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"

STATES = ["starting", "idle", "busy", "draining"]
RESTART_REASONS = ["crash", "oom", "stall", "recycle", "reload"]
JOB_RESULTS = ["ok", "failed", "retried", "dead_lettered"]
EMAIL_RESULTS = ["sent", "deferred", "rejected"]
REJECT_CLASSES = ["mailbox", "policy", "expired"]
TRANSPORTS = ["smtp", "amqp", "maildir"]
TRANSPORT_FAILURES = ["connect", "tls", "auth", "sender", "protocol"]
SKIP_REASONS = ["inactive", "opted_out", "no_email", "nothing_new", "already_sent",
                "suppressed", "bad_data"]
HISTOGRAMS = ["digest_job_duration_seconds", "digest_job_queue_wait_seconds",
              "digest_email_delay_seconds", "digest_ratelimit_wait_seconds"]


def expected_series(pools, queues):
    """{(sample name, frozenset(labels))} of every documented series."""
    out = set()

    def add(name, **labels):
        out.add((name, frozenset(labels.items())))

    add("digest_build_info", version=open_version())
    for p in pools:
        for s in STATES:
            add("digest_workers", pool=p, state=s)
        for r in RESTART_REASONS:
            add("digest_worker_restarts_total", pool=p, reason=r)
        for r in JOB_RESULTS:
            add("digest_jobs_total", pool=p, result=r)
        for t in TRANSPORTS:
            for r in EMAIL_RESULTS:
                add("digest_emails_total", pool=p, transport=t, result=r)
            add("digest_transport_errors_total", pool=p, transport=t)
            for k in TRANSPORT_FAILURES:
                add("digest_transport_failures_total", pool=p, transport=t, kind=k)
        for c in REJECT_CLASSES:
            add("digest_emails_rejected_total", pool=p, **{"class": c})
        for r in SKIP_REASONS:
            add("digest_recipients_skipped_total", pool=p, reason=r)
        add("digest_redis_errors_total", pool=p)
        add("digest_broker_errors_total", pool=p)
        add("digest_worker_memory_bytes", pool=p)
        for h in HISTOGRAMS:
            add(h + "_sum", pool=p)
            add(h + "_count", pool=p)
            add(h + "_bucket", pool=p, le="+Inf")
    for q in queues:
        add("digest_queue_depth", queue=q)
        add("digest_queue_pending", queue=q)
        add("digest_queue_oldest_enqueued_timestamp_seconds", queue=q)
        add("digest_queue_delayed", queue=q)
        add("digest_queue_paused", queue=q)
    add("digest_dead_letters")
    for period in ("daily", "weekly"):
        add("digest_schedule_last_success_timestamp_seconds", period=period)
    for r in ("success", "failure"):
        add("digest_config_reloads_total", result=r)
    add("digest_config_last_reload_success_timestamp_seconds")
    for n in ("process_cpu_seconds_total", "process_resident_memory_bytes",
              "process_virtual_memory_bytes", "process_open_fds",
              "process_max_fds", "process_start_time_seconds"):
        add(n)
    return out


def open_version():
    from lib.harness import ROOT
    with open(os.path.join(ROOT, "VERSION")) as f:
        return f.read().strip()


def parse_labels(s):
    """'a="x",b="y\\"z"' -> {a: x, b: y"z} (text format escapes)."""
    out = {}
    i = 0
    while i < len(s):
        eq = s.index("=", i)
        name = s[i:eq].strip().lstrip(",").strip()
        assert s[eq + 1] == '"', s
        j = eq + 2
        val = []
        while s[j] != '"':
            if s[j] == "\\":
                val.append({"n": "\n", "\\": "\\", '"': '"'}[s[j + 1]])
                j += 2
            else:
                val.append(s[j])
                j += 1
        out[name] = "".join(val)
        i = j + 1
        while i < len(s) and s[i] in ", ":
            i += 1
    return out


def _sample(line):
    key, value = line.rsplit(" ", 1)
    if "{" in key:
        name, rest = key.split("{", 1)
        labels = parse_labels(rest[:-1])
    else:
        name, labels = key, {}
    return name, labels, float(value)


def samples(text):
    """[(name, labels dict, value)] of every sample line, in order: the
    suite's one parser of the exposition formats."""
    return [_sample(line) for line in text.splitlines()
            if line and not line.startswith("#")]


def families(text):
    """[(family, type, samples)] in order: the samples that follow each
    # TYPE line (family None, type "untyped" for any before the first)."""
    out = [(None, "untyped", [])]
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            out.append((name, typ.strip(), []))
        elif line and not line.startswith("#"):
            out[-1][2].append(_sample(line))
    return [f for f in out if f[0] is not None or f[2]]


def series_keys(text):
    """[(name, frozenset(labels))] in order, duplicates kept."""
    return [(n, frozenset(l.items())) for n, l, _ in samples(text)]


def fetch(port, path="/metrics", headers=None, timeout=5):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers, r.read().decode("utf-8")


def two_pool_config(tmp_path, redis, port=None, sink=None, workers=(1, 2),
                    extra="", stall="20s", max_attempts=3,
                    visibility="10m", backend=None):
    """Pools `priority` and `standard` on their queues, maildir or SMTP;
    with backend (a lib.backends object) on that queue backend."""
    return conf.build(tmp_path, conf.merge(
        {"supervisor": {"drain_timeout": "20s", "stall_timeout": stall,
                        "restart_backoff_max": "500ms", "log_level": None},
         "queue": {"max_attempts": max_attempts, "visibility_timeout": visibility},
         "pool.priority": {"queue": "priority", "workers": workers[0]},
         "pool.standard": {"queue": "standard", "workers": workers[1]},
         "digest": {"batch_size": 100}},
        conf.smtp(sink, 100) if sink is not None else {},
        backend.overrides(max_attempts) if backend is not None else {}),
        sections=(redis.config_section(),), extra=extra, port=port)


def start_digestd(tmp_path, cfg, wait_ready=True):
    d = Digestd(cfg, tmp_path)
    d.start(wait_ready=wait_ready)
    if not wait_ready:
        wait_for(lambda: d.http_status("/healthz") == 200 or d.exited(),
                 timeout=15, what="digestd /healthz")
        assert not d.exited(), d.log()
    return d


def stop_digestd(d):
    """Drain (SIGTERM) so digestd reaps its own children, then make sure."""
    try:
        if d.proc is not None and not d.exited():
            d.stop(timeout=30)
    finally:
        d.kill()
