"""Property-based and fuzz tests of the FIX drop-copy acceptor (issue 22, item 5), with Hypothesis.

- `parse_execution` over generated {tag: value} maps: it books only clean data or raises the
  reject's exception (no process, 500 cases).
- Generated ExecutionReports (hostile values in the booked fields, the numbers, Side, ExecType,
  TransactTime ...) over a real QuickFIX session to `python -m feedhandlers.fix` (pipelined acks,
  a real tickerplant): each message is either booked or answered with a reject (35=3 / 35=j), never
  both, never neither; nothing booked holds a non-printable identifier, a price <= 0 or a quantity
  over its bound; afterwards the session books a normal fill.
- Raw byte garbage on fresh TCP connections and framed garbage on a logged-on session: the acceptor
  keeps running, its other session stays logged on, and both book a normal fill afterwards.
Bounded: a few hundred cases in all, each wait bounded in time; Hypothesis keeps no database.
"""
from __future__ import annotations

import math
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fixwire import body_of
from conftest import Collector, wait_until
from feedhandlers.fix.execreport import BadValue, Execution, MissingField, is_identifier, parse_execution
from feedhandlers.fix.limits import Limits
from test_fix_acceptor import booked, er, make_stack  # noqa: F401  (make_stack is a fixture)
from test_fix_hostile import RawWire, wire_body

FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MAX_QTY = Limits.load().default.max_qty

# values a broken or hostile engine sends, besides random ones
SPECIAL = [b"", b" ", b"-5", b"0", b"-0", b"0.0", b"1e-300", b"9007199254740993", b"1e308", b"1e400", b"nan",
           b"inf", b"-inf", b"0x10", b"AMD\x00", b"FUND1\x00X", b"\xff\xfe", "FUNDé".encode(), b"\x7f", b"\x1b[2J",
           b"N" * 65, b"20261121-10:00:00", b"99991231-23:59:59", b"19691231-23:59:59", b"20261121-25:00:00"]
TAGS = [1, 55, 17, 37, 31, 32, 54, 60, 19, 39, 6, 14, 151]
wire_value = st.one_of(st.sampled_from(SPECIAL), st.binary(max_size=12).map(lambda b: b.replace(b"\x01", b"")),
                       st.text(max_size=8).map(lambda t: t.replace("\x01", "").encode()))


def clean_fill(row: dict) -> bool:
    """What may be in the `fill` table: printable identifiers, a price > 0, a finite quantity in bound."""
    ids = [row["sym"], row["account"], row["execid"]] + [row[c] for c in ("orderid", "refexecid") if row[c]]
    return (all(is_identifier(v) for v in ids) and math.isfinite(row["price"]) and row["price"] > 0
            and math.isfinite(row["qty"]) and 0 < abs(row["qty"]) <= MAX_QTY)


@settings(FUZZ, max_examples=500)
@given(st.dictionaries(st.sampled_from(["1", "17", "19", "20", "31", "32", "37", "43", "52", "54", "55", "60", "150"]),
                       st.one_of(st.text(max_size=10), st.sampled_from([v.decode("utf-8", "surrogateescape")
                                                                         for v in SPECIAL])), max_size=13),
       st.sampled_from(["FIX.4.2", "FIX.4.4", "FIXT.1.1"]))
def test_parse_execution_books_only_clean_data_or_says_why_not(fields, begin):
    try:
        ex = parse_execution(fields, begin)
    except (MissingField, BadValue) as e:
        assert str(e).isascii() and str(e).isprintable() and e.tag > 0
        return
    assert isinstance(ex, Execution)
    if ex.kind == "other":
        return
    assert is_identifier(ex.exec_id) and 0 <= ex.time_ns < 2 ** 63
    assert all(is_identifier(v) for v in (ex.ref_exec_id, ex.order_id) if v)
    if ex.kind != "H":
        assert is_identifier(ex.sym) and is_identifier(ex.account)
        assert ex.price > 0 and math.isfinite(ex.price) and ex.qty != 0 and math.isfinite(ex.qty)


@st.composite
def execution_report(draw, n: int) -> bytes:
    """The body of ExecutionReport number n: a valid fill (ExecID FZ<n>-...) with up to three fields
    replaced by hostile values; sometimes a bust or correction of an earlier one."""
    exec_type = draw(st.sampled_from([b"F"] * 4 + [b"H", b"G", b"", b"\x00", b"FF", b"\xff"]))
    raw = {f"t{tag}": value for tag, value in draw(st.dictionaries(st.sampled_from(TAGS), wire_value, max_size=3)).items()}
    raw["t17"] = b"FZ%d-" % n + raw.get("t17", b"")                 # unique: every message has one outcome
    raw["t150"] = exec_type
    if exec_type in (b"H", b"G"):
        raw.setdefault("t19", b"FZ%d-" % max(n - 1 - draw(st.integers(0, 5)), 0))   # a recent one
    sym, account, px = draw(st.sampled_from([("AMD", "FUND1", 150.0), ("SPY", "FUND3", 450.0),
                                             ("ESZ26", "FUTS1", 6000.0), ("ZZZ", "NOBODY", 1.0)]))
    qty = draw(st.sampled_from([1, 100, 4_000, 6_000, 10_000_000]))
    return wire_body(er("X", sym=sym, account=account, qty=qty, px=px), **raw)


def test_generated_execution_reports_over_a_real_session_book_only_clean_fills(make_stack):
    stack = make_stack(ack="pipelined")
    wire = RawWire("127.0.0.1", stack.fix_port, sender="CLIENT")
    wire.wait_logon(60)
    fills = Collector("fuzz.fill", stack.control, tables=["fill", "alert"]).start()
    sent = [0]

    def outcomes() -> int:
        return len(set(fills.column("fill", "execid"))) + sum(wire.rejects())

    @settings(FUZZ, max_examples=250)
    @given(st.data())
    def one_message(data):
        body = data.draw(execution_report(sent[0]))
        sent[0] += 1
        wire.send_bytes([body])
        fills.poll_until(lambda: outcomes() >= sent[0], timeout=10, what=f"an outcome for {body!r}")
        assert outcomes() == sent[0], f"{body!r} was both booked and rejected"

    one_message()
    rows = fills.table("fill")
    rows = [dict(zip(rows, r)) for r in zip(*rows.values())]
    assert rows and all(clean_fill(r) for r in rows), [r for r in rows if not clean_fill(r)]
    alerts = fills.table("alert")
    assert all(t.isascii() and t.isprintable() for t in alerts["text"])
    wire.send([body_of(er("AFTER", qty=5))])
    fills.poll_until(lambda: "AFTER" in set(fills.column("fill", "execid")), timeout=30, what="a normal fill booked")
    fills.close()
    wire.close()


def test_byte_garbage_on_connections_and_sessions_leaves_the_acceptor_booking(make_stack):
    stack = make_stack()
    oms = stack.initiator("OMS")
    prefixes = st.sampled_from([b"", b"8=FIX.4.4\x01", b"8=FIX.4.4\x019=", b"8=FIX.4.4\x019=99999999\x0135=A\x01",
                                b"8=FIX.4.4\x019=5\x0135=A\x0149=CLIENT\x0156=MARGINTICK\x01"])

    @settings(FUZZ, max_examples=60)
    @given(prefixes, st.binary(max_size=300))
    def connection_garbage(prefix, garbage):
        with socket.create_connection(("127.0.0.1", stack.fix_port), timeout=5) as s:
            s.sendall(prefix + garbage)

    connection_garbage()
    wire = RawWire("127.0.0.1", stack.fix_port, sender="CLIENT")
    wire.wait_logon(60)

    closed = []

    @settings(FUZZ, max_examples=60)
    @given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\x01", b"")), max_size=6))
    def session_garbage(items):             # framed (right BodyLength and CheckSum), any fields inside
        if not closed:
            try:
                wire.send_bytes([b"".join(item + b"\x01" for item in items)])
            except OSError as e:            # the session layer may log out and disconnect: its right
                closed.append(e)

    session_garbage()
    wire.close()
    assert stack.fh.poll() is None and oms.logged_on.is_set()
    oms.send(er("OMS1", qty=3))
    wire = RawWire("127.0.0.1", stack.fix_port, sender="CLIENT")   # a new logon: whatever state the garbage left
    wire.wait_logon(60)
    wire.send([body_of(er("CLIENT1", qty=4))])
    rows = booked(stack, 2)
    wire.close()
    assert sorted(r["execid"] for r in rows) == ["CLIENT1", "OMS1"] and all(clean_fill(r) for r in rows)
