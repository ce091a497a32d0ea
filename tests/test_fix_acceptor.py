"""The FIX drop-copy acceptor as a process, against a real tickerplant and real QuickFIX initiators.

Every test starts `python -m tickerplant` and `python -m feedhandlers.fix` on free ports; the
initiators are QuickFIX sessions in this process (feedhandlers/omsim/initiator.py); what got booked is
read back from the tickerplant journal with a Subscriber.
"""
from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from conftest import TickerplantProcess, wait_until
from feedhandlers.omsim.initiator import Initiator
from feedhandlers.refdata.loader import load_refdata
from tickerplant.client import Publisher, Subscriber

INITIATOR_CFG = """
[DEFAULT]
ConnectionType=initiator
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
ReconnectInterval=1
FileStorePath=store-{sender}
FileLogPath=log-{sender}
StartTime=00:00:00
EndTime=00:00:00
HeartBtInt=30
UseDataDictionary=Y
[SESSION]
SenderCompID={sender}
TargetCompID=MARGINTICK
{version}
"""
FIX44 = "BeginString=FIX.4.4\nDataDictionary=FIX44.xml"
FIX42 = "BeginString=FIX.4.2\nDataDictionary=FIX42.xml"
FIX50SP2 = ("BeginString=FIXT.1.1\nDefaultApplVerID=FIX.5.0SP2\nTransportDataDictionary=FIXT11.xml\n"
            "AppDataDictionary=FIX50SP2.xml")


class Stack:
    """A tickerplant and the FIX feedhandler on free ports, plus helpers to drive and inspect them."""

    def __init__(self, spawn, free_port, tmp_path: Path, ack: str = "sync", fh_args: tuple = ()):
        self.spawn, self.tmp, self.ack, self.fh_args = spawn, tmp_path, ack, fh_args
        self.tp = TickerplantProcess(spawn, tmp_path).start()
        self.ingest, self.control = self.tp.ingest, self.tp.control
        self.fix_port = free_port()
        publisher = Publisher("test.refdata", endpoint=self.ingest, timeout=10.0)
        ref = load_refdata()
        publisher.publish("instrument", ref["instrument"])
        publisher.publish_sync("account", ref["account"], timeout=30)
        publisher.close()
        self.fh = None
        self.start_feedhandler()
        self.initiators: list[Initiator] = []

    def start_feedhandler(self):
        self.fh = self.spawn("feedhandlers.fix", "--port", self.fix_port, "--state-dir", self.tmp / "fix",
                             "--ingest", self.ingest, "--control", self.control, "--ack", self.ack,
                             "--stats-every", "1", *self.fh_args, name="fixfh")
        wait_until(lambda: "accepting FIX sessions" in self.fh.log_path.read_text(), timeout=60,
                   what="feedhandler accepting")

    def initiator(self, sender: str = "OMS", reset: bool = False, version: str = FIX44) -> Initiator:
        cfg = self.tmp / f"initiator-{sender}.cfg"
        cfg.write_text(INITIATOR_CFG.format(port=self.fix_port, sender=sender, version=version))
        ini = Initiator(cfg, self.tmp / "initiators", reset_on_logon=reset)
        self.initiators.append(ini)
        ini.start(logon_timeout=60)
        return ini

    def table(self, name: str) -> list[dict]:
        """Every row of `name` in the journal, as dicts, in order."""
        rows: list[dict] = []

        def on_batch(table, cols, seq):
            rows.extend(dict(zip(cols, r)) for r in zip(*cols.values()))

        sub = Subscriber(f"test.read.{name}", control=self.control, tables=[name], on_batch=on_batch)
        sub.start()
        sub.close()
        return rows

    def close(self):
        for ini in self.initiators:
            ini.stop()


@pytest.fixture
def make_stack(spawn, free_port, tmp_path):
    """make_stack(ack=..., fh_args=...) -> a started Stack; its initiators are stopped at teardown."""
    stacks: list[Stack] = []

    def make(**kwargs) -> Stack:
        stacks.append(Stack(spawn, free_port, tmp_path, **kwargs))
        return stacks[-1]

    yield make
    for s in stacks:
        s.close()


@pytest.fixture
def stack(make_stack, request):
    return make_stack(ack=getattr(request, "param", "sync"))


def er(exec_id, exec_type="F", account="FUND1", sym="AMD", side="1", qty=100, px=10.0, ref=None,
       drop=(), **extra) -> list[tuple[int, str]]:
    """An ExecutionReport body with every field FIX 4.4 requires."""
    fields = {37: f"O-{exec_id}", 17: exec_id, 150: exec_type, 39: "2", 1: account, 55: sym, 54: side,
              32: str(qty), 31: str(px), 151: "0", 14: str(qty), 6: str(px), 60: "20261121-10:00:00.000"}
    if ref:
        fields[19] = ref
    fields.update({int(k[1:]): v for k, v in extra.items()})
    return [(k, v) for k, v in fields.items() if k not in drop]


def booked(stack: Stack, count: int, timeout: float = 60) -> list[dict]:
    return wait_until(lambda: (lambda rows: rows if len(rows) >= count else None)(stack.table("fill")),
                      timeout=timeout, what=f"{count} fill rows")


def test_fills_cancels_corrections_duplicates_and_rejects(stack):
    oms = stack.initiator("OMS")
    oms.send(er("E1", qty=100, px=10.0))
    oms.send(er("E2", side="2", qty=40, px=11.0))
    oms.send(er("E3", exec_type="G", ref="E1", qty=80, px=10.5))     # correct E1: 100 -> 80
    oms.send(er("E4", exec_type="H", ref="E2"))                      # bust E2
    oms.send(er("E1", qty=100, px=10.0))                             # duplicate ExecID: not booked
    oms.send(er("E5", exec_type="0"))                                # a New: counted, not booked
    oms.send(er("E6", account="NOBODY", sym="ZZZZ", qty=7))          # unknown: booked + alert
    oms.send(er("B1", drop=(32,)))                                   # LastQty missing -> 35=j reason 5
    oms.send(er("B2", side="9"))                                     # bad Side -> 35=3 reason 5
    oms.send(er("B3", px="abc"))                                     # LastPx not a number -> 35=3 reason 6
    oms.send(er("B4", drop=(39,)))                                   # OrdStatus missing (dictionary) -> 35=3 reason 1
    oms.send(er("B5", exec_type="H", ref="NOPE"))                    # unknown ExecRefID -> 35=j reason 1
    oms.send([(11, "C1"), (55, "AMD"), (54, "1"), (60, "20261121-10:00:00"), (40, "1"), (38, "5")], "D")
    oms.send(er("E7", sym="GOOG", side="2", qty=3, px=100.0))        # still booking after all that

    rows = booked(stack, 7)
    wait_until(lambda: len(oms.rejects_seen()) >= 6, timeout=30, what="6 rejects")
    assert [(r["execid"], r["exectype"], r["qty"], r["price"], r["refexecid"], r["status"]) for r in rows] == [
        ("E1", "F", 100.0, 10.0, "", "ok"),
        ("E2", "F", -40.0, 11.0, "", "ok"),
        ("E3", "G", -100.0, 10.0, "E1", "ok"),
        ("E3", "G", 80.0, 10.5, "E1", "ok"),
        ("E4", "H", 40.0, 11.0, "E2", "ok"),
        ("E6", "F", 7.0, 10.0, "", "unknown"),
        ("E7", "F", -3.0, 100.0, "", "ok"),
    ]
    assert {r["session"] for r in rows} == {"OMS"} and rows[0]["account"] == "FUND1"
    rejects = [(r["35"], r.get("373") or r.get("380"), r.get("58", "")) for r in oms.rejects_seen()]
    assert [(t, code) for t, code, _ in rejects] == [
        ("j", "5"), ("3", "5"), ("3", "6"), ("3", "1"), ("j", "1"), ("j", "3")]
    assert "ExecRefID NOPE is not a booked trade" in rejects[4][2]
    alerts = stack.table("alert")
    texts = [a["text"] for a in alerts]
    assert any("unknown account NOBODY" in t for t in texts) and any("unknown instrument ZZZZ" in t for t in texts)
    assert any("NOPE" in t for t in texts) and {a["kind"] for a in alerts} == {"data"}


def test_sequence_gap_is_filled_and_client_session_may_reset(stack):
    oms = stack.initiator("OMS")
    oms.send(er("G1"))
    booked(stack, 1)
    session = oms.session
    session.setNextSenderMsgSeqNum(session.getExpectedSenderNum() + 5)   # 5 messages "lost on the wire"
    oms.send(er("G2"))
    client = stack.initiator("CLIENT", reset=True)                       # Logon with ResetSeqNumFlag=Y
    client.send(er("C1", qty=5))
    booked(stack, 3)
    client.stop()
    client = stack.initiator("CLIENT", reset=True)                       # again: numbering restarts at 1
    client.send(er("C1", qty=5))                                         # ExecIDs stay booked across resets
    client.send(er("C2", qty=6))
    rows = booked(stack, 4)
    assert sorted((r["session"], r["execid"]) for r in rows) == [
        ("CLIENT", "C1"), ("CLIENT", "C2"), ("OMS", "G1"), ("OMS", "G2")]
    assert oms.rejects_seen() == [] and client.rejects_seen() == []
    log = (stack.tmp / "fix" / "log").glob("*MARGINTICK-OMS.messages.current.log")
    assert "\x0135=2\x01" in next(log).read_text()                   # the acceptor asked for a resend


@pytest.mark.parametrize("stack", ["sync", "pipelined"], indirect=True)
def test_kill_9_mid_session_then_resend_books_every_fill_once(stack):
    oms = stack.initiator("OMS")
    total = 300
    for n in range(total):
        oms.send(er(f"K{n}", qty=n + 1))
        if n == 100:
            wait_until(lambda: len(stack.table("fill")) >= 20, timeout=60, what="some fills booked")
            os.kill(stack.fh.pid, signal.SIGKILL)                  # mid-session, fills in flight
            stack.fh.wait(10)
    # the rest were stored by the initiator while it was disconnected (or sent into the void)
    stack.start_feedhandler()
    rows = booked(stack, total, timeout=120)
    counts = Counter(r["execid"] for r in rows)
    assert len(rows) == total and set(counts) == {f"K{n}" for n in range(total)}
    assert sum(r["qty"] for r in rows) == total * (total + 1) / 2


def send_with_the_tickerplant_down(stack, oms, execids):
    """kill -9 the tickerplant, send these executions, and wait until the feedhandler holds the session."""
    stack.tp.kill9()
    for execid in execids:
        oms.send(er(execid))
    wait_until(lambda: "holding the FIX session" in stack.fh.log_path.read_text(), timeout=60,
               what="the feedhandler holding the session")


def test_tickerplant_down_holds_the_session_and_loses_nothing(make_stack):
    stack = make_stack(fh_args=("--ack-timeout", "1"))
    oms = stack.initiator("OMS")
    for n in range(20):
        oms.send(er(f"T{n}"))
    booked(stack, 20)
    send_with_the_tickerplant_down(stack, oms, [f"T{n}" for n in range(20, 40)])
    stack.tp.start()
    rows = booked(stack, 40, timeout=120)
    assert sorted(r["execid"] for r in rows) == sorted(f"T{n}" for n in range(40))


def test_fix42_and_fix50sp2_sessions_by_configuration(make_stack, tmp_path):
    config = tmp_path / "acceptor.cfg"
    config.write_text("[DEFAULT]\nConnectionType=acceptor\nSocketAcceptPort=9878\nSenderCompID=MARGINTICK\n"
                      "FileStorePath=store\nFileLogPath=log\nStartTime=00:00:00\nEndTime=00:00:00\n"
                      "UseDataDictionary=Y\n"
                      f"[SESSION]\nTargetCompID=LEGACY\n{FIX42}\n[SESSION]\nTargetCompID=EMS\n{FIX50SP2}\n")
    stack = make_stack(fh_args=("--config", config))
    legacy = stack.initiator("LEGACY", version=FIX42)
    legacy.send(er("L1", exec_type="2", t20="0", qty=30))                    # FIX 4.2: a fill ...
    legacy.send(er("L2", exec_type="2", t20="1", ref="L1", drop=(32, 31)))   # ... and its cancel
    ems = stack.initiator("EMS", version=FIX50SP2)
    ems.send(er("N1", exec_type="F", side="2", qty=12))
    rows = booked(stack, 3)
    assert sorted((r["session"], r["execid"], r["exectype"], r["qty"]) for r in rows) == [
        ("EMS", "N1", "F", -12.0), ("LEGACY", "L1", "F", 30.0), ("LEGACY", "L2", "H", -30.0)]
    assert legacy.rejects_seen() == [] and ems.rejects_seen() == []


def test_stopping_while_the_tickerplant_is_down_acknowledges_nothing(make_stack):
    stack = make_stack(fh_args=("--ack-timeout", "1"))
    oms = stack.initiator("OMS")
    oms.send(er("S0"))
    booked(stack, 1)
    send_with_the_tickerplant_down(stack, oms, [f"S{n}" for n in range(1, 10)])
    stack.fh.send_signal(signal.SIGTERM)
    assert stack.fh.wait(30) == 1                 # exits at once, the held message unacknowledged
    stack.tp.start()
    stack.start_feedhandler()                     # the initiator reconnects; the rest is resent
    rows = booked(stack, 10, timeout=120)
    assert sorted(r["execid"] for r in rows) == sorted(f"S{n}" for n in range(10))


@pytest.mark.parametrize("stack", ["pipelined"], indirect=True)
def test_the_benchmarks_raw_socket_initiator_is_booked_exactly(stack):
    """bench/fixwire.py frames FIX itself: the acceptor must take its messages as QuickFIX's own."""
    from bench.fixwire import WireInitiator, body_of
    wire = WireInitiator("127.0.0.1", stack.fix_port, sender="CLIENT")
    wire.wait_logon(60)
    wire.send([body_of(er(f"W{n}", qty=n + 1)) for n in range(50)])
    wire.send([body_of(er(f"W{n}", qty=n + 1)) for n in range(50, 60)])
    rows = booked(stack, 60)
    wire.close()
    assert sorted(r["execid"] for r in rows) == sorted(f"W{n}" for n in range(60))
    assert sum(r["qty"] for r in rows) == 60 * 61 / 2 and "3" not in wire.received      # no session Reject
