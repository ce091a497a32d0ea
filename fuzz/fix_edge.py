"""FIX edge: hostile ExecutionReports and raw bytes over a FIX 4.4 session (SenderCompID CLIENT, Logon
with ResetSeqNumFlag=Y) to the drop-copy acceptor. After each case a TestRequest asks for a Heartbeat:
its arrival ends the case (ok, or error if a Reject / BusinessMessageReject came first); a Logout or a
close is `closed`, no Heartbeat within the bound a hang. Fills with values booking must refuse (qty or
price <= 0, not finite, above 2**53, control characters in Symbol / Account) that get no reject are
flagged `accepted`. Framing comes from bench.fixwire.frame."""
from __future__ import annotations

import math
import random
import socket
import time

from bench.fixwire import SOH, frame
from feedhandlers.omsim.orders import utc_timestamp
from fuzz.core import CLOSED, ERROR, HANG, OK, Case, Deadline, Result, abort, closed, connect, short

EDGE = "fix"
BEGIN, SENDER, TARGET = "FIX.4.4", "CLIENT", "MARGINTICK"
WEIGHTS = {"fill": 50, "cancel": 10, "msgtype": 8, "framing": 12, "garbage": 8, "admin": 6, "huge": 2}
QTYS = ("100", "0", "-100", "9007199254740993", "1e308", "nan", "inf", "-0", "1e-300", "abc", "", "0x10", "1" * 400)
PRICES = ("101.5", "0", "-1", "nan", "inf", "1e308", "5e-324", "x", "")
SYMBOLS = ("SPY", "AMD", "ZZZ", "AMD\x00", "AM\x7fD", "", "S" * 300, "ФОНД", "SPY|", "AMD ")
# mutations after which the stream is out of step for this raw client (it cannot resend what a gap covers)
BREAKS_FRAMING = ("checksum", "bodylength", "nobegin", "duptag", "soh", "begin", "seqreset", "seqhigh")
ACCOUNTS = ("FUND1", "FUND2", "FUZZ1", "FUND1\x00", "", "A" * 300, "FUND\x1b1")


def _bad_number(text: str) -> bool:
    try:
        x = float(text)
    except ValueError:
        return True
    return not math.isfinite(x) or x <= 0 or x > 2**53


def _bad_text(text: str) -> bool:
    return not text or len(text) > 64 or any(not 0x20 <= ord(c) <= 0x7E for c in text)


def body(fields: list[tuple[int, str]]) -> str:
    return "".join(f"{t}={v}{SOH}" for t, v in fields)


def generate(rng: random.Random, index: int) -> Case:
    kind = rng.choices(tuple(WEIGHTS), weights=tuple(WEIGHTS.values()))[0]
    exec_id = f"FZ{index}-{rng.randrange(10**6)}"
    now = utc_timestamp(time.time_ns())
    if kind in ("fill", "huge"):
        qty = rng.choice(QTYS) if rng.random() < 0.6 else str(rng.randrange(1, 10_000))
        px = rng.choice(PRICES) if rng.random() < 0.5 else f"{rng.uniform(1, 500):.2f}"
        sym, account = rng.choice(SYMBOLS), rng.choice(ACCOUNTS)
        side = rng.choice(("1", "2", "1", "2", "7", "", "X"))
        fields = [(37, f"O{index}"), (17, exec_id), (150, rng.choice(("F", "F", "F", "0", "Z"))), (39, "2"),
                  (1, account), (55, sym), (54, side), (32, qty), (31, px), (14, qty), (151, "0"), (6, px),
                  (60, rng.choice((now, now, "20261305-25:61:61", "", "now")))]
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            fields.pop(rng.randrange(len(fields)))
        if kind == "huge":
            fields.append((58, "x" * rng.choice((10_000, 100_000, 1_000_000))))
        f = dict(fields)
        hostile = f.get(150) == "F" and (any(_bad_number(f.get(t, "")) for t in (32, 31))
                                         or _bad_text(f.get(55, "")) or _bad_text(f.get(1, ""))
                                         or f.get(54) not in ("1", "2"))
        return Case(EDGE, kind, f"ExecutionReport {short(body(fields).replace(SOH, '|'), 140)}",
                    ("app", "8", body(fields), None), hostile=hostile)
    if kind == "cancel":
        ref = rng.choice(("NOSUCH", exec_id, "", f"FZ{max(0, index - 1)}", "R" * 300))
        fields = [(37, f"O{index}"), (17, exec_id), (19, ref), (150, rng.choice(("H", "G"))), (39, "2"),
                  (1, rng.choice(ACCOUNTS)), (55, rng.choice(SYMBOLS)), (54, "1"), (32, rng.choice(QTYS)),
                  (31, rng.choice(PRICES)), (14, "0"), (151, "0"), (6, "0"), (60, now)]
        return Case(EDGE, kind, f"cancel/correct of {short(ref, 40)}", ("app", "8", body(fields), None), hostile=True)
    if kind == "msgtype":
        mt = rng.choice(("D", "F", "G", "AE", "j", "ZZ", "8", "x" * 50))
        return Case(EDGE, kind, f"MsgType {short(mt, 30)}", ("app", mt, body([(11, exec_id), (55, "SPY")]), None),
                    hostile=True)
    if kind == "framing":
        mutation = rng.choice(("checksum", "bodylength", "nobegin", "duptag", "soh", "seqlow", "seqhigh", "begin"))
        fields = [(37, "O"), (17, exec_id), (150, "F"), (39, "2"), (1, "FUND1"), (55, "SPY"), (54, "1"),
                  (32, "1"), (31, "100"), (14, "1"), (151, "0"), (6, "100"), (60, now)]
        return Case(EDGE, kind, f"ExecutionReport with a bad {mutation}", ("app", "8", body(fields), mutation),
                    hostile=True)
    if kind == "admin":
        mt, fields = rng.choice((("A", [(98, "0"), (108, "30")]), ("5", [(58, "bye")]), ("2", [(7, "1"), (16, "0")]),
                                 ("4", [(36, "1")]), ("4", [(123, "Y"), (36, "999999999")]), ("0", [(112, "x")]),
                                 ("1", [(112, "")]), ("3", [(45, "1")])))
        return Case(EDGE, kind, f"admin MsgType {mt} {body(fields).replace(SOH, '|')}",
                    ("app", mt, body(fields), "seqreset" if mt == "4" else None), hostile=mt in ("A", "4"))
    raw = rng.choice((rng.randbytes(rng.randrange(1, 3000)), b"8=FIX.4.4\x019=5\x01", b"\x01" * 500,
                      b"8=FIX.4.4\x019=999999999\x0135=8\x01", b"10=000\x01" * 50))
    return Case(EDGE, kind, f"{len(raw)} raw bytes {short(raw[:30])}", ("raw", raw, None, None), hostile=True)


def _mutate(msg: bytes, mutation: str | None) -> bytes:
    if mutation == "checksum":
        return msg[:-4] + b"%03d\x01" % ((int(msg[-4:-1]) + 1) % 256)
    if mutation == "bodylength":
        head, _, rest = msg.partition(b"\x019=")
        n, _, tail = rest.partition(b"\x01")
        return head + b"\x019=" + str(int(n) + 7).encode() + b"\x01" + tail
    if mutation == "nobegin":
        return msg.split(b"\x01", 1)[1]
    if mutation == "duptag":
        return msg.replace(b"\x0155=SPY\x01", b"\x0155=SPY\x0155=AMD\x01")
    if mutation == "soh":
        return msg.replace(b"\x01", b"|", 3)
    if mutation == "begin":
        return msg.replace(b"8=FIX.4.4", b"8=FIX.9.9", 1)
    return msg


class FixSession:
    """A FIX 4.4 initiator on a raw socket, answering what the acceptor asks (TestRequest, ResendRequest
    by gap fill) and reading until the Heartbeat that closes each case."""

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None
        self.seq = 0
        self.buf = b""
        self.probe = 0

    def _send(self, msg_type: str, body_text: str, mutation: str | None = None, seq: int | None = None) -> None:
        if seq is None:
            self.seq += 1
            seq = self.seq
        if mutation == "seqlow":
            seq = max(1, seq - 5)
        elif mutation == "seqhigh":
            seq += 5
            self.seq += 5
        now = utc_timestamp(time.time_ns())
        self.sock.sendall(_mutate(frame(BEGIN, msg_type, seq, SENDER, TARGET, now, body_text), mutation))

    def _messages(self, deadline: Deadline):
        """Messages from the acceptor as {tag: value}, until the deadline (TimeoutError) or a close."""
        while True:
            while (end := self.buf.find(b"\x0110=")) >= 0 and (stop := self.buf.find(b"\x01", end + 1)) >= 0:
                raw, self.buf = self.buf[:stop + 1], self.buf[stop + 1:]
                yield dict(f.split("=", 1) for f in raw.decode("latin-1").strip(SOH).split(SOH) if "=" in f)
            if deadline.passed():
                raise TimeoutError
            self.sock.settimeout(deadline.left())
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the acceptor")
            self.buf += chunk

    def _answer_admin(self, m: dict) -> None:
        if m.get("35") == "1":
            self._send("0", f"112={m.get('112', '')}{SOH}")
        elif m.get("35") == "2":                      # gap-fill whatever the acceptor asks for again
            begin, end = int(m.get("7") or 1), int(m.get("16") or 0)
            now = utc_timestamp(time.time_ns())
            self._send("4", f"43=Y{SOH}122={now}{SOH}123=Y{SOH}36={end + 1 if end else self.seq + 1}{SOH}", seq=begin)

    def open(self, deadline: Deadline) -> None:
        if self.sock is not None:
            return
        self.sock, self.seq, self.buf = connect(self.port, deadline.left()), 0, b""
        self._send("A", f"98=0{SOH}108=30{SOH}141=Y{SOH}")
        for m in self._messages(deadline):
            if m.get("35") == "A":
                return
            if m.get("35") == "5":
                raise ConnectionError(f"logon refused: {m.get('58', '')}")

    def drop(self) -> None:
        abort(self.sock)
        self.sock = None

    def run(self, data: tuple, timeout: float) -> Result:
        deadline = Deadline(timeout)
        try:
            self.open(deadline)
            what, a, b, mutation = data
            if what == "raw" or mutation in BREAKS_FRAMING:
                return self._unframed(a if what == "raw" else None, b, mutation, timeout)
            self._send(a, b, mutation)
            self.probe += 1
            probe = f"P{self.probe}"
            self._send("1", f"112={probe}{SOH}")
            reject = None
            for m in self._messages(deadline):
                mt = m.get("35")
                if mt in ("3", "j"):
                    reject = reject or f"35={mt} {m.get('58', '')} (reason {m.get('373', m.get('380', '?'))})"
                elif mt == "5":
                    self.drop()
                    return Result(CLOSED, f"Logout: {m.get('58', '')}")
                elif mt == "0" and m.get("112") == probe:
                    return Result(ERROR, short(reject, 200)) if reject else Result(OK)
                else:
                    self._answer_admin(m)
        except (TimeoutError, socket.timeout):
            self.drop()
            return Result(HANG, f"no Heartbeat to a TestRequest within {timeout:g} s")
        except OSError as e:
            self.drop()
            return closed(e)

    def _unframed(self, raw: bytes | None, body_text: str, mutation: str | None, timeout: float) -> Result:
        """Bytes that are not a well-framed message: the acceptor may only drop them, answer with a
        Reject or a Logout. The stream is out of step afterwards, so the session is closed and a fresh
        one must log on and answer a TestRequest."""
        if raw is None:
            self._send("4" if mutation == "seqreset" else "8", body_text, mutation)
        else:
            self.sock.sendall(raw)
        answer = None
        try:
            for m in self._messages(Deadline(0.3)):
                if m.get("35") in ("3", "j", "5"):
                    answer = m
                    break
                self._answer_admin(m)
        except (TimeoutError, socket.timeout):
            pass
        except OSError as e:
            answer = {"35": "5", "58": str(e)}
        self.drop()
        fresh = self.run(("app", "0", "", None), timeout)
        if answer is None or fresh.outcome != OK:
            return fresh
        kind = CLOSED if answer.get("35") == "5" else ERROR
        return Result(kind, f"35={answer.get('35')} {answer.get('58', '')}")

    def fill(self, exec_id: str, account: str, sym: str, qty: int, price: float, timeout: float) -> Result:
        """One well-formed trade (150=F), sent like any case."""
        fields = [(37, f"O-{exec_id}"), (17, exec_id), (150, "F"), (39, "2"), (1, account), (55, sym),
                  (54, "1" if qty > 0 else "2"), (32, str(abs(qty))), (31, f"{price:.4f}"), (14, str(abs(qty))),
                  (151, "0"), (6, f"{price:.4f}"), (60, utc_timestamp(time.time_ns()))]
        return self.run(("app", "8", body(fields), None), timeout)


class FixTarget:
    edge = EDGE

    def __init__(self, port: int):
        self.session = FixSession(port)
        self.cases = 0

    def generate(self, rng: random.Random) -> Case:
        self.cases += 1
        return generate(rng, self.cases)

    def run(self, case: Case, timeout: float) -> Result:
        result = self.session.run(case.data, timeout)
        if result.outcome == OK and case.hostile and case.kind in ("fill", "huge"):
            result.flags.append("accepted")
        return result

    def ping(self, timeout: float) -> Result:
        return self.session.run(("app", "0", "", None), timeout)

    def close(self) -> None:
        self.session.drop()
