"""What every edge of the campaign shares: a case, its result and outcome classes, the findings a
reply can carry (leaked Python exception texts), and bounded socket reads."""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

OK, ERROR, CLOSED, HANG, CRASH, INTERNAL = "ok", "error", "closed", "hang", "crash", "internal"
OUTCOMES = (OK, ERROR, CLOSED, HANG, CRASH, INTERNAL)
HOST = "127.0.0.1"
ECHO_CHARS = 2000          # an error text longer than this repeats the input back

# error texts that are a Python exception rather than a q-style reason meant for the client
_LEAK = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b|object has no attribute|unhashable type|"
                   r"NoneType|not subscriptable|positional argument|object is not|File \"")


@dataclass
class Case:
    """One input sent to the stack. `data` is what the edge's target sends; `hostile` marks input that
    must be refused (an ok outcome for it is a finding)."""
    edge: str
    kind: str
    summary: str
    data: object = None
    hostile: bool = False


@dataclass
class Result:
    outcome: str
    detail: str = ""
    flags: list[str] = field(default_factory=list)


def closed(e: OSError) -> Result:
    """The outcome of a case whose connection failed or was cut under it."""
    return Result(CLOSED, str(e) or type(e).__name__)


def leaks(text: str) -> bool:
    """True when an error text exposes a Python exception (class name, traceback, attribute error...)."""
    return bool(_LEAK.search(text))


def error_flags(text: str) -> list[str]:
    """Findings in an error text: a leaked Python exception, an echo of a large input."""
    return (["leak"] if leaks(text) else []) + (["echo"] if len(text) > ECHO_CHARS else [])


def short(value, limit: int = 160) -> str:
    """A printable, bounded rendering of a payload for the report."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} chars)"


class Deadline:
    """A point in time; `left()` is what remains (never below a small positive floor)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.001, self.end - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.end


def connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int, deadline: Deadline) -> bytes:
    """n bytes, or raises ConnectionError (peer closed) / TimeoutError (deadline passed)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline.passed():
            raise TimeoutError(f"{len(buf)} of {n} bytes before the deadline")
        sock.settimeout(deadline.left())
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise TimeoutError(f"{len(buf)} of {n} bytes before the deadline") from None
        if not chunk:
            raise ConnectionError("closed by the peer")
        buf += chunk
    return bytes(buf)


def abort(sock: socket.socket | None) -> None:
    """Close a socket at once with a reset (SO_LINGER 0), as a client that gives up does."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()
