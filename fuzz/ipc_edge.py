"""kdb+ IPC edge: hostile messages to the gateway's kdb+ port, and the client that sends them.

Generators (`generate`, chosen by weight): calls of the named API with hostile arguments (list form),
call strings and q-sql text, random q values of every type, huge lists, deep nesting, vectors whose
count disagrees with the bytes, malformed headers and sizes, compressed messages with bad bodies,
async and response messages, raw garbage, hostile handshakes. Messages are built from the kdb+
serialization layout (`gateway.qcodec.message` frames them); replies are decoded with PyKX, so a
reply the real client cannot read is found too.
"""
from __future__ import annotations

import math
import random
import select
import socket
import struct

import pykx as kx

from fuzz.core import (CLOSED, ERROR, HANG, OK, Case, Deadline, Result, abort, closed, connect, error_flags, recv_exactly,
                       short)
from gateway.qcodec import ASYNC, RESPONSE, SYNC, message

EDGE = "ipc"
API = ("margin", "whatif", "hedge", "positions", "drivers", "stress", "alerts", "scenarios", "accounts", "recon",
       "breakdown", ".u.sub",
       ".margin", "select", "exec", "nosuch", "", ".z.p", "value", "system", "\\\\", "hopen", "exit")
ACCOUNTS = ("FUND1", "FUND2", "FUND3", "FUTS1", "NOSUCH")
SYMS = ("SPY", "AMD", "AAPL", "ESZ26", "NQZ26", "ZZZ")
HOSTILE_TEXT = ("", "FUND1" * 2000, "ФОНД1", "'", "`", "\\\\", "../../etc/passwd", "%s%n%x", "{0}", "__class__",
                ".z.pw", "exit 0", "FUND1\x01FUND2", "\x7f\x1b[2J", "select from margin", "a" * 70000)
# item sizes of the q vector types (1 boolean ... 19 time); 11 (symbol) and 0 (general) are built apart
ITEM_SIZE = {1: 1, 2: 16, 4: 1, 5: 2, 6: 4, 7: 8, 8: 4, 9: 8, 10: 1, 12: 8, 13: 4, 14: 4, 15: 8, 16: 8, 17: 4,
             18: 4, 19: 4}
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 9007199254740993.0, -200000.0)
SPECIAL_LONGS = (-2**63, 2**63 - 1, -2**63 + 1, 0, -1, 1, 2**31, 9007199254740993, 1_000_000_000_000)
CHASER = message(b"\x0a\x00\x00\x00\x00\x00", SYNC)          # "" -> :: (the q chaser idiom)
WEIGHTS = {"call": 40, "string": 14, "value": 10, "huge": 4, "deep": 4, "badcount": 6, "header": 8,
           "compressed": 4, "async": 4, "garbage": 4, "handshake": 2}


# ---- q values as serialized bytes -----------------------------------------------------------------
def sym(text: str | bytes) -> bytes:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return raw.replace(b"\0", b"") + b"\0"


def sym_atom(text) -> bytes:
    return b"\xf5" + sym(text)


def sym_vector(items) -> bytes:
    return struct.pack("<bBi", 11, 0, len(items)) + b"".join(sym(s) for s in items)


def repeated_syms(text: str, n: int) -> bytes:
    return struct.pack("<bBi", 11, 0, n) + sym(text) * n


def general(items: list[bytes]) -> bytes:
    return struct.pack("<bBi", 0, 0, len(items)) + b"".join(items)


def chars(text: str | bytes) -> bytes:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return struct.pack("<bBi", 10, 0, len(raw)) + raw


def float_atom(x: float) -> bytes:
    return struct.pack("<bd", -9, x)


def long_atom(x: int) -> bytes:
    return struct.pack("<bq", -7, max(-2**63, min(2**63 - 1, x)))


def nested(depth: int, leaf: bytes) -> bytes:
    """`depth` general lists of one item each around `leaf` (built flat: no recursion)."""
    return struct.pack("<bBi", 0, 0, 1) * depth + leaf


class QValues:
    """Random q values (serialized), biased to what breaks servers: nulls, infinities, odd types,
    empty and long vectors, dicts and tables with mismatched columns."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.rng.choice(ACCOUNTS + SYMS)
        if r < 0.75:
            return self.rng.choice(HOSTILE_TEXT)
        return bytes(self.rng.randrange(1, 256) for _ in range(self.rng.randrange(1, 40))).decode("latin-1")

    def atom(self) -> bytes:
        rng = self.rng
        t = rng.choice((1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19))
        if t == 11:
            return sym_atom(self.text())
        if t == 9:
            return float_atom(rng.choice(SPECIAL_FLOATS) if rng.random() < 0.6 else rng.uniform(-1e9, 1e9))
        if t == 7:
            return long_atom(rng.choice(SPECIAL_LONGS) if rng.random() < 0.6 else rng.randrange(-10**9, 10**9))
        return struct.pack("<b", -t) + rng.randbytes(ITEM_SIZE[t])

    def vector(self, n: int | None = None) -> bytes:
        rng = self.rng
        n = rng.choice((0, 1, 2, 3, 10, 100)) if n is None else n
        t = rng.choice(tuple(ITEM_SIZE) + (11, 11, 9, 7))
        if t == 11:
            return sym_vector([self.text() for _ in range(min(n, 100))]) if n <= 100 else repeated_syms(self.text(), n)
        if t == 9 and n <= 100:
            return struct.pack("<bBi", 9, 0, n) + struct.pack(f"<{n}d", *(rng.choice(SPECIAL_FLOATS) for _ in range(n)))
        return struct.pack("<bBi", t, rng.choice((0, 0, 0, 1, 2, 3, 4, 5)), n) + rng.randbytes(ITEM_SIZE[t] * n)

    def dictionary(self, depth: int) -> bytes:
        n = self.rng.choice((0, 1, 2, 3))
        keys = sym_vector([self.rng.choice(("sym", "qty", "price", "account", "trades", self.text())) for _ in range(n)])
        values = general([self.value(depth + 1) for _ in range(n + self.rng.choice((0, 0, 0, 1)))])
        return b"\x63" + keys + values

    def table(self) -> bytes:
        rng = self.rng
        cols = rng.sample(("sym", "qty", "price", "account", "x"), rng.randrange(0, 4))
        n = rng.choice((0, 1, 2, 5))
        columns = [self.vector(n + (1 if rng.random() < 0.2 else 0)) for _ in cols]
        return b"\x62\x00\x63" + sym_vector(cols) + general(columns)

    def value(self, depth: int = 0) -> bytes:
        rng = self.rng
        r = rng.random()
        if depth > 3 or r < 0.4:
            return self.atom()
        if r < 0.65:
            return self.vector()
        if r < 0.75:
            return general([self.value(depth + 1) for _ in range(rng.randrange(0, 4))])
        if r < 0.85:
            return self.dictionary(depth)
        if r < 0.93:
            return self.table()
        if r < 0.97:                                                  # functions, projections, errors...
            return bytes([rng.choice((100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 128))]) \
                + rng.randbytes(rng.randrange(0, 12))
        return b"\x65\x00"                                           # (::)


# ---- cases --------------------------------------------------------------------------------------------
def generate(rng: random.Random) -> Case:
    kind = rng.choices(tuple(WEIGHTS), weights=tuple(WEIGHTS.values()))[0]
    q = QValues(rng)
    shutdown = chaser = False
    if kind == "call":
        name = rng.choice(API)
        args = [q.value() for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 5)))]
        body = general([sym_atom(name)] + args) if rng.random() < 0.85 else general([chars(name)] + args)
        summary = f"({name!r}; {len(args)} random args)"
    elif kind == "string":
        text = rng.choice((
            f"{rng.choice(API)}[{';'.join(q.text() for _ in range(rng.randrange(0, 4)))}]",
            f"margin[`{'`'.join(rng.choice(ACCOUNTS) for _ in range(rng.randrange(1, 5)))}]",
            f"select {rng.choice(('', 'max price', 'count i', 'sum qty', 'x'))} from "
            f"{rng.choice(('fill', 'margin', 'quote', 'alert', 'nosuch', '(select from fill)'))} "
            f"{rng.choice(('', 'where sym=`AMD', 'by sym', 'where', 'by 5 xbar time.minute', 'where (((('))}",
            "".join(rng.choice("[]();`'\"\\/{}:#,!@$0123456789abcxyz. ") for _ in range(rng.randrange(1, 200))),
            q.text()))
        body, summary = chars(text), f"string {short(text, 100)}"
    elif kind == "value":
        body = q.value()
        summary = f"q value type {body[0] if body[0] < 128 else body[0] - 256} ({len(body)} bytes)"
    elif kind == "huge":
        n = rng.choice((100_000, 1_000_000, 3_000_000))
        name = rng.choice(("margin", "positions", "alerts", "drivers", "whatif", ".u.sub"))
        if rng.random() < 0.7:
            body = general([sym_atom(name), repeated_syms(rng.choice(ACCOUNTS), n)])
            summary = f"{name}[{n:,}#`{ACCOUNTS[0]}...]"
        else:
            body = general([sym_atom(name), struct.pack("<bBi", 9, 0, n) + bytes(8 * n)])
            summary = f"{name}[{n:,} floats]"
    elif kind == "deep":
        depth = int(math.exp(rng.uniform(math.log(50), math.log(300_000))))
        leaf = rng.choice((sym_atom("FUND1"), float_atom(1.0), b"\x65\x00"))
        body = general([sym_atom(rng.choice(("margin", "whatif", "positions"))), nested(depth, leaf)]) \
            if rng.random() < 0.5 else nested(depth, leaf)
        summary = f"nested {depth:,} levels deep"
    elif kind == "badcount":
        t = rng.choice((0, 9, 10, 11, 7, 98, 99))
        count = rng.choice((-1, -2**31, 2**31 - 1, 1000, 2**30))
        payload = rng.randbytes(rng.randrange(0, 64))
        body = (b"\x62\x00\x63" if t == 98 else b"\x63" if t == 99 else b"") + struct.pack("<bBi", 0 if t > 90 else t, 0, count) + payload
        summary = f"type {t} vector counting {count:,} with {len(payload)} bytes"
    elif kind == "header":
        body = q.value()
        endian = rng.choice((1, 1, 0, 2, 255))
        msgtype = rng.choice((SYNC, SYNC, 3, 7, 255))
        compressed = rng.choice((0, 0, 2, 255))
        high = rng.choice((0, 0, 1, 255))
        size = rng.choice((0, 1, 8, 9, len(body) + 8, len(body) + 4, len(body) + 100, 2**31, 2**32 - 1))
        msg = struct.pack("<BBBBI", endian, msgtype, compressed, high, size) + body
        shutdown = size != len(body) + 8 or high != 0
        return Case(EDGE, kind, f"header {msg[:8].hex()} + {len(body)} bytes", (msg, shutdown, False), hostile=True)
    elif kind == "compressed":
        raw = rng.randbytes(rng.randrange(0, 200))
        declared = rng.choice((0, 8, 9, 100, len(raw) * 4 + 8, 2**31 - 1, 2**32 - 1))
        body = struct.pack("<I", declared) + raw
        msg = struct.pack("<BBBBI", 1, SYNC, 1, 0, len(body) + 8) + body
        return Case(EDGE, kind, f"compressed, expands to {declared:,}, {len(raw)} random bytes", (msg, False, False),
                    hostile=True)
    elif kind == "async":
        body = general([sym_atom(rng.choice(API)), q.value()])
        msg = message(body, rng.choice((ASYNC, RESPONSE)))
        return Case(EDGE, kind, f"{'async' if msg[1] == ASYNC else 'response'} message + sync chaser",
                    (msg, False, True))
    elif kind == "garbage":
        msg = rng.randbytes(rng.randrange(1, 4096))
        return Case(EDGE, kind, f"{len(msg)} random bytes", (msg, True, False), hostile=True)
    else:
        hello = rng.choice((b"demo:wrong", b"", b"demo", b":demo", b"nosuch:nosuch", b"demo:demo:demo",
                            "démo:démo".encode(), b"x" * 2000, b"demo:demo\x06", b"demo:demo\xff", b"\xff\xfe"))
        terminated = rng.random() < 0.8
        return Case(EDGE, kind, f"handshake {short(hello, 60)}{'' if terminated else ' without NUL'}",
                    hello + (b"\0" if terminated else b""), hostile=not hello.startswith(b"demo:demo"))
    return Case(EDGE, kind, summary, (message(body, SYNC), shutdown, chaser), hostile=kind in ("badcount",))


# ---- the client -----------------------------------------------------------------------------------------
def classify(msg: bytes) -> Result:
    """A reply message: an error (its text, flagged when it leaks a Python exception), a value PyKX
    decodes (ok), or one it cannot decode (an error flagged `undecodable`)."""
    if msg[8] == 0x80:
        text = msg[9:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return Result(ERROR, short(text, 300), error_flags(text))
    try:
        kx.deserialize(msg)
    except Exception as e:                    # noqa: BLE001 - any failure is a reply the client cannot read
        return Result(ERROR, f"undecodable reply: {e}", ["undecodable"])
    return Result(OK)


class IpcClient:
    """One logged-in kdb+ IPC connection to the gateway, reopened when the server closed it."""

    def __init__(self, port: int, user: str = "demo", password: str = "demo"):
        self.port, self.hello = port, f"{user}:{password}".encode() + b"\x06\0"
        self.sock: socket.socket | None = None

    def _open(self, deadline: Deadline) -> socket.socket:
        if self.sock is not None and select.select([self.sock], [], [], 0)[0]:
            self.drop()                       # closed by the server since the last case, or out of step
        if self.sock is None:
            sock = connect(self.port, deadline.left())
            try:
                sock.sendall(self.hello)
                recv_exactly(sock, 1, deadline)
            except BaseException:
                sock.close()
                raise
            self.sock = sock
        return self.sock

    def drop(self) -> None:
        abort(self.sock)
        self.sock = None

    def request(self, msg: bytes, timeout: float, shutdown: bool = False, chaser: bool = False) -> Result:
        """Send one message (then, for async / response messages, a sync chaser) and classify the answer."""
        deadline = Deadline(timeout)
        try:
            sock = self._open(deadline)
        except (TimeoutError, socket.timeout):
            self.drop()
            return Result(HANG, "no login answer")
        except OSError as e:
            self.drop()
            return Result(CLOSED, f"login failed: {e}")
        try:
            sock.settimeout(deadline.left())
            sock.sendall(msg + (CHASER if chaser else b""))
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
            header = recv_exactly(sock, 8, deadline)
            size = struct.unpack_from("<I", header, 4)[0] | (header[3] << 32)
            if header[0] != 1 or size < 9:
                self.drop()
                return Result(ERROR, f"reply with a bad header {header.hex()}", ["badreply"])
            reply = header + recv_exactly(sock, size - 8, deadline)
        except (TimeoutError, socket.timeout):
            self.drop()
            return Result(HANG, f"no answer within {timeout:g} s")
        except OSError as e:
            self.drop()
            return closed(e)
        if shutdown:
            self.drop()
        return classify(reply)

    def close(self) -> None:
        self.drop()


def handshake(port: int, hello: bytes, timeout: float) -> Result:
    """A fresh connection sending only a handshake: a capability byte is ok, a close is closed."""
    deadline = Deadline(timeout)
    sock = None
    try:
        sock = connect(port, deadline.left())
        sock.sendall(hello)
        if not hello.endswith(b"\0"):
            sock.shutdown(socket.SHUT_WR)
        cap = recv_exactly(sock, 1, deadline)
        return Result(OK, f"capability {cap[0]}")
    except (TimeoutError, socket.timeout):
        return Result(HANG, f"no answer to the handshake within {timeout:g} s")
    except OSError as e:
        return closed(e)
    finally:
        abort(sock)


class IpcTarget:
    """Runs IPC cases on one persistent demo connection (hostile handshakes on fresh ones)."""
    edge = EDGE

    def __init__(self, port: int):
        self.port = port
        self.client = IpcClient(port)
        self.canary = IpcClient(port)

    def generate(self, rng: random.Random) -> Case:
        return generate(rng)

    def run(self, case: Case, timeout: float) -> Result:
        if case.kind == "handshake":
            return handshake(self.port, case.data, timeout)
        msg, shutdown, chaser = case.data
        return self.client.request(msg, timeout, shutdown, chaser)

    def ping(self, timeout: float) -> Result:
        """margin[`FUND1] on a connection of its own: does the gateway still serve everyone?"""
        return self.canary.request(MARGIN_FUND1, timeout)

    def close(self) -> None:
        self.client.close()
        self.canary.close()


MARGIN_FUND1 = message(general([sym_atom("margin"), sym_atom("FUND1")]), SYNC)
