"""Hostile ExecutionReports at the FIX drop-copy acceptor (issue 22, "What was seen" cases 5 and 6).

Real processes and sockets: `python -m tickerplant`, `python -m feedhandlers.fix` (and for case 5 the
rdb and the gateway, read with the real PyKX client); a QuickFIX initiator sends what a FIX engine
can send, and `RawWire`, bench/fixwire.py's raw-socket initiator, what only a broken one sends (a NUL
or bytes FF FE inside a value). Each case ends with a normal fill booked, as before.
"""
from __future__ import annotations

import signal
import time

import pytest

from bench.fixwire import WireInitiator, body_of
from common.net import listening
from conftest import free_endpoint, pykx_connection, rpc_answer, wait_until
from feedhandlers.omsim.orders import utc_timestamp
from test_fix_acceptor import booked, er, make_stack, stack  # noqa: F401  (fixtures)


class RawWire(WireInitiator):
    """WireInitiator whose message bodies may hold any bytes (WireInitiator.send takes str and
    encodes it as UTF-8, so it cannot put FF FE on the wire). Bodies are sent as they are, TransactTime
    included."""

    def send_bytes(self, bodies: list[bytes]) -> None:
        now = utc_timestamp(time.time_ns()).encode()
        with self._lock:
            for body in bodies:
                self.seq += 1
                payload = (b"35=8\x0134=%d\x0149=%s\x0152=%s\x0156=%s\x01" % (
                    self.seq, self.sender.encode(), now, self.target.encode())) + body
                head = b"8=%s\x019=%d\x01" % (self.begin.encode(), len(payload))
                self.sock.sendall(head + payload + b"10=%03d\x01" % ((sum(head) + sum(payload)) % 256))

    def rejects(self) -> tuple[int, int]:
        """(session Rejects 35=3, BusinessMessageRejects 35=j) received so far."""
        return self.received.get("3", 0), self.received.get("j", 0)


def wire_body(fields: list[tuple[int, str]], **raw: bytes) -> bytes:
    """The wire bytes of ExecutionReport body fields with TransactTime, `raw` replacing the value of
    tag N given as tN=bytes."""
    replace = {int(k[1:]): v for k, v in raw.items()}
    out = b""
    for tag, value in fields:
        out += b"%d=%s\x01" % (tag, replace.pop(tag, value.encode()))
    return out + b"".join(b"%d=%s\x01" % (tag, value) for tag, value in replace.items())


def is_clean(text: str) -> bool:
    return text.isascii() and text.isprintable()


def test_nul_and_non_ascii_identifiers_are_rejected_and_every_reply_stays_decodable(make_stack, spawn, free_port):
    """Case 5: `55=AMD<NUL>`, `1=FUND1<NUL>X`, FF FE ... are rejected with the reason and an alert, never
    booked; PyKX decodes `select from fill` and `alerts[]`; after a restart a normal fill is booked."""
    stack = make_stack()
    rdb, port = free_endpoint(), free_port()
    spawn("rdb", "--control", stack.control, "--query", rdb, "--hdb", stack.tmp / "hdb", "--log-level", "WARNING")
    spawn("gateway", "--port", port, "--http-port", free_port(), "--rdb", rdb, "--calc", free_endpoint(),
          "--control", stack.control)
    wire = RawWire("127.0.0.1", stack.fix_port, sender="CLIENT")
    wire.wait_logon(60)
    hostile = [
        wire_body(er("N1", sym="AMD\x00")),                       # the NUL of the issue: 35=3 reason 6
        wire_body(er("N2", account="FUND1\x00X")),
        wire_body(er("N3"), t17=b"N3\x00"),                        # a NUL in the ExecID itself
        wire_body(er("N4"), t55=b"\xff\xfe"),                      # FF FE, once stored as "ÿþ"
        wire_body(er("N5"), t1="FUNDé".encode()),                  # non-ASCII (UTF-8) account
        wire_body(er("N6"), t37=b"O\x07"),                         # BEL in the OrderID
        wire_body(er("N7"), t17=b"N" * 65),                        # too long: 35=3 reason 5
        wire_body(er("N8", exec_type="H", ref="N1")),              # bust of the rejected N1: nothing to reverse
        wire_body(er("N9", exec_type="G", ref="N4", qty=5)),      # correction of the rejected N4 likewise
        wire_body(er("N10", exec_type="H"), t19=b"N1\x00"),        # bust naming a NUL ExecRefID
    ]
    wire.send_bytes(hostile)
    wire.send([body_of(er("OK1", qty=7))])
    wait_until(lambda: wire.rejects() == (8, 2), timeout=30, what="8 session Rejects and 2 business rejects")
    rows = booked(stack, 1)
    assert [(r["execid"], r["sym"], r["account"], r["qty"]) for r in rows] == [("OK1", "AMD", "FUND1", 7.0)]

    alerts = wait_until(lambda: (lambda a: a if len(a) >= len(hostile) else None)(stack.table("alert")),
                        timeout=30, what="an alert per rejected message")
    assert len(alerts) == len(hostile) and {(a["kind"], a["severity"]) for a in alerts} == {("data", "warn")}
    assert all(is_clean(a["text"]) and is_clean(a["sym"]) and "session CLIENT" in a["text"] for a in alerts)
    texts = "\n".join(a["text"] for a in alerts)
    for shown in ("'N3\\x00'", "'N1'", "'N4'", "'N10'"):          # the ExecID, escaped when not printable
        assert f"ExecID {shown}" in texts
    assert "'AMD\\x00'" in texts and "'\\xff\\xfe'" in texts and "'FUNDé'".encode("ascii", "backslashreplace").decode() in texts
    assert texts.count("printable ASCII") == 7 and "longer than 64" in texts and "not a booked trade" in texts

    wait_until(lambda: rpc_answer(rdb, "count", table="fill"), 60, what="rdb has the fill")
    wait_until(lambda: listening(port), 60, what="gateway listening")
    with pykx_connection(port) as q:                               # every reply decodes, nothing poisoned
        fills = q("select from fill").py()
        assert fills["execid"] == ["OK1"]
        alert_texts = q("select text from alert").py()["text"]
        assert len(alert_texts) == len(hostile) and all(is_clean(t.decode()) for t in alert_texts)
        visible = q("alerts[]").py()                               # the call, as a q string
        assert visible["text"] and all(is_clean(t.decode()) for t in visible["text"])

    stack.fh.send_signal(signal.SIGTERM)                           # the journal rebuilds a clean book
    assert stack.fh.wait(30) == 0
    wire.close()
    stack.start_feedhandler()
    wire = RawWire("127.0.0.1", stack.fix_port, sender="CLIENT")
    wire.wait_logon(60)
    wire.send_bytes([wire_body(er("N1", qty=3)), wire_body(er("OK1", qty=7))])   # N1 now clean; OK1 a duplicate
    rows = booked(stack, 2)
    wire.close()
    assert [(r["execid"], r["qty"]) for r in rows] == [("OK1", 7.0), ("N1", 3.0)] and wire.rejects() == (0, 0)


@pytest.mark.parametrize("stack", ["sync", "pipelined"], indirect=True)
def test_absurd_prices_and_quantities_are_rejected_with_their_cancels_and_corrections(stack):
    """Case 6: price -5 and 0, qty 9007199254740993, notional or contracts over the fat-finger bound
    are rejected with the reason and an alert, never booked; busts and corrections of them too; a
    correction of a good fill to an absurd quantity leaves the good fill standing."""
    oms = stack.initiator("OMS")
    oms.send(er("A1", px=-5))                                      # 35=3 reason 5, LastPx must be > 0
    oms.send(er("A2", px=0))
    oms.send(er("A3", account="FUND3", sym="SPY", qty=9007199254740993))         # 35=j: over max_qty
    oms.send(er("A4", sym="AMD", qty=5_000_000, px=1000.0))        # 5e9 notional: over max_notional
    oms.send(er("A5", sym="ESZ26", account="FUTS1", qty=6_000, px=6000.0))   # futures: over 5,000 contracts
    oms.send(er("A6", exec_type="H", ref="A1"))                    # busts of rejected fills: unknown ID
    oms.send(er("A7", exec_type="H", ref="A3"))
    oms.send(er("G1", qty=100, px=10.0))                           # a good fill ...
    oms.send(er("G2", exec_type="G", ref="G1", qty=9007199254740993))   # ... corrected absurdly: rejected
    oms.send(er("G3", exec_type="G", ref="G1", px=-1))
    oms.send(er("OK1", sym="ESZ26", account="FUTS1", qty=5, px=6000.0))   # normal fills still booked
    oms.send(er("OK2", account="FUND3", sym="SPY", qty=100, px=450.0))
    rows = booked(stack, 3)
    wait_until(lambda: len(oms.rejects_seen()) >= 9, timeout=30, what="9 rejects")
    assert [(r["execid"], r["exectype"], r["qty"], r["price"]) for r in rows] == [
        ("G1", "F", 100.0, 10.0), ("OK1", "F", 5.0, 6000.0), ("OK2", "F", 100.0, 450.0)]
    rejects = [(r["35"], r.get("373") or r.get("380"), r.get("58", "")) for r in oms.rejects_seen()]
    assert [(t, code) for t, code, _ in rejects] == [
        ("3", "5"), ("3", "5"), ("j", "0"), ("j", "0"), ("j", "0"), ("j", "1"), ("j", "1"), ("j", "0"), ("3", "5")]
    assert "LastPx must be > 0" in rejects[0][2] and "over the fat-finger bound of 1e+07" in rejects[2][2]
    assert "notional 5e+09" in rejects[3][2] and "bound of 5000" in rejects[4][2]
    assert "ExecRefID A1 is not a booked trade" in rejects[5][2]
    alerts = wait_until(lambda: (lambda a: a if len(a) >= 9 else None)(stack.table("alert")),
                        timeout=30, what="an alert per reject")
    assert len(alerts) == 9 and all(a["kind"] == "data" and a["severity"] == "warn" for a in alerts)
    assert [a["sym"] for a in alerts][:5] == ["FUND1", "FUND1", "FUND3", "FUND1", "FUTS1"]
    assert all(is_clean(a["text"]) and a["text"].startswith("session OMS ExecID ") for a in alerts)
