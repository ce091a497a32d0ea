"""A FIX initiator on a raw TCP socket, for load generation (bench_fix): it frames messages itself
(BodyLength, CheckSum, MsgSeqNum, SendingTime) and writes many per system call, so that the sender
costs a few microseconds per message and the cores stay with the acceptor under test, which is the
real QuickFIX acceptor with its full session layer. It speaks only what a sending drop-copy session
needs: Logon (ResetSeqNumFlag=Y), application messages, Heartbeats in reply to TestRequests, Logout.
It ignores ResendRequests, so it is a load generator, not a FIX engine: the tests use QuickFIX's.
"""
from __future__ import annotations

import socket
import threading
import time

from feedhandlers.omsim.orders import utc_timestamp

SOH = "\x01"


def frame(begin: str, msg_type: str, seq: int, sender: str, target: str, sending_time: str, body: str) -> bytes:
    """One FIX message, `body` being its application fields (`tag=value` + SOH each)."""
    payload = f"35={msg_type}{SOH}34={seq}{SOH}49={sender}{SOH}52={sending_time}{SOH}56={target}{SOH}{body}".encode()
    head = f"8={begin}{SOH}9={len(payload)}{SOH}".encode()
    return head + payload + b"10=%03d\x01" % ((sum(head) + sum(payload)) % 256)


def body_of(fields: list[tuple[int, str]]) -> str:
    """The wire form of body fields, TransactTime (60) left out: `send` stamps it."""
    return "".join(f"{tag}={value}{SOH}" for tag, value in fields if tag != 60)


class WireInitiator:
    """One FIX 4.4 session to an acceptor. `send(bodies)` stamps SendingTime and TransactTime with the
    time of the call and writes the messages in one go."""

    def __init__(self, host: str, port: int, sender: str = "OMS", target: str = "MARGINTICK",
                 begin: str = "FIX.4.4", heartbeat_s: int = 30):
        self.sender, self.target, self.begin = sender, target, begin
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0
        self.received: dict[str, int] = {}          # MsgType -> count
        self._lock = threading.Lock()
        self._logged_on = threading.Event()
        self._reader = threading.Thread(target=self._read, name="fixwire-reader", daemon=True)
        self._reader.start()
        self._send_admin("A", f"98=0{SOH}108={heartbeat_s}{SOH}141=Y{SOH}")

    def wait_logon(self, timeout: float = 30.0) -> None:
        if not self._logged_on.wait(timeout):
            raise TimeoutError(f"no Logon reply within {timeout} s (received {self.received})")

    def _send_admin(self, msg_type: str, body: str) -> None:
        with self._lock:
            self.seq += 1
            self.sock.sendall(frame(self.begin, msg_type, self.seq, self.sender, self.target,
                                    utc_timestamp(time.time_ns()), body))

    def send(self, bodies: list[str]) -> None:
        now = utc_timestamp(time.time_ns())
        transact = f"60={now}{SOH}"
        with self._lock:
            first = self.seq + 1
            self.seq += len(bodies)
            self.sock.sendall(b"".join(frame(self.begin, "8", first + i, self.sender, self.target, now, b + transact)
                                       for i, b in enumerate(bodies)))

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while (end := buf.find(b"\x0110=")) >= 0 and (stop := buf.find(b"\x01", end + 1)) >= 0:
                message, buf = buf[:stop + 1].decode(errors="replace"), buf[stop + 1:]
                fields = dict(f.split("=", 1) for f in message.strip(SOH).split(SOH) if "=" in f)
                msg_type = fields.get("35", "?")
                self.received[msg_type] = self.received.get(msg_type, 0) + 1
                if msg_type == "A":
                    self._logged_on.set()
                elif msg_type == "1":
                    self._send_admin("0", f"112={fields.get('112', '')}{SOH}")

    def close(self) -> None:
        try:
            self._send_admin("5", "")
            time.sleep(0.2)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(5)
