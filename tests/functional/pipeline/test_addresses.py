"""Addresses on the wire (docs/design.md#recipients-and-the-email), on a
real SMTP server (aiosmtpd, offering SMTPUTF8):

- a domain outside ASCII goes out in punycode, in RCPT TO and in To:;
- a local part outside ASCII cannot go out through libESMTP, which has no
  way to declare SMTPUTF8: the member is skipped as no_email, counted, and
  the log says why;
- smtp.envelope_from with {uid} and {gid} gives each email its own
  envelope sender (VERP);
- every email says Auto-Submitted: auto-generated.
"""
from lib.harness import Digestd, SmtpSink, metric_sum, wait_for
from lib.pipeline_data import (  # noqa: F401
    Data, config, enqueue, wait_done, window)


def test_pipeline_addresses(tmp_path, redis_tcp):
    sink = SmtpSink(utf8=True)
    sink.start()
    r = redis_tcp.client()
    ws, we = window()
    d = Data(r)
    d.group(42, name="Books")
    d.members(42, [7, 8, 9, 10])
    d.user(7, email="anna@bücher.example", name="Anna")
    d.user(8, email="jörg@example.org", name="Jörg")
    d.user(9, email="plain@example.org")
    d.user(10, email="bad@bücher..example")
    d.post(42, 1, we - 50, title="A novel", author_id=99)

    cfg = config(tmp_path, redis_tcp, sink=sink,
                 extra="envelope_from = bounces+{uid}-{gid}@example.com\n")
    with open(cfg) as f:
        text = f.read()
    # extra lands after [smtp]'s keys, in that section.
    assert "[smtp]" in text.split("envelope_from")[0]
    proc = Digestd(cfg, tmp_path)
    proc.start()
    try:
        jid = enqueue(r, 42, "daily", ws, we)
        st = wait_done(r, jid, d=proc)
        assert st["sent"] == "2" and st["skipped"] == "2", st
        wait_for(lambda: metric_sum(proc.metrics(), "digest_recipients_skipped_total",
                                    reason="no_email") == 2,
                 timeout=20, what="no_email counted")
        log = proc.log()
    finally:
        proc.kill()
        sink.stop()

    with sink.lock:
        got = {rcpt: (mail_from, data) for mail_from, rcpt, data in sink.messages}
    assert sorted(got) == ["anna@xn--bcher-kva.example", "plain@example.org"]
    assert got["anna@xn--bcher-kva.example"][0] == "bounces+7-42@example.com"
    assert got["plain@example.org"][0] == "bounces+9-42@example.com"
    msgs = {m["To"].addresses[0].addr_spec: m for m in sink.parsed()}
    assert set(msgs) == set(got)
    for m in msgs.values():
        assert m["Auto-Submitted"] == "auto-generated"
    assert str(msgs["anna@xn--bcher-kva.example"]["To"]) == "Anna <anna@xn--bcher-kva.example>"

    # The skips are logged with the reason, without the address.
    assert "uid=8: address not usable (local part not ASCII: needs SMTPUTF8)" in log
    assert "uid=10: address not usable (" in log
    assert "jörg" not in log
