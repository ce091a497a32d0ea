"""Connection storms: many connections opened at once on one port of the stack (gateway kdb+ IPC,
gateway HTTP or the FIX acceptor), each left idle, half a handshake or request, or reset at once;
while they are open the edge's own client must still be served (its `ping`)."""
from __future__ import annotations

import random
import socket

from fuzz.core import Case, Result, abort, connect

EDGE = "storm"
BEHAVIOURS = ("idle", "partial", "reset")
PARTIAL = {"ipc": b"demo:de", "http": b"GET /margin HTTP/1.1\r\nHost: 127.0.0.1\r\n", "fix": b"8=FIX.4.4\x019=200\x0135=A"}


class StormTarget:
    edge = EDGE

    def __init__(self, ports: dict[str, int], pingers: dict):
        self.ports, self.pingers = ports, pingers

    def generate(self, rng: random.Random) -> Case:
        port = rng.choice(sorted(self.ports))
        n = rng.choice((20, 50, 100, 200, 400))
        behaviour = rng.choice(BEHAVIOURS)
        return Case(EDGE, port, f"{n} connections to {port}, {behaviour}", (port, n, behaviour))

    def run(self, case: Case, timeout: float) -> Result:
        name, n, behaviour = case.data
        socks: list[socket.socket] = []
        try:
            for _ in range(n):
                try:
                    sock = connect(self.ports[name], timeout)
                except OSError:
                    break
                socks.append(sock)
                if behaviour == "partial":
                    try:
                        sock.sendall(PARTIAL[name])
                    except OSError:
                        pass
                elif behaviour == "reset":
                    abort(socks.pop())
            result = self.pingers[name](timeout)
            result.detail = f"{len(socks) if behaviour != 'reset' else n} connections; {result.detail}".rstrip("; ")
            return result
        finally:
            for sock in socks:
                abort(sock)

    def ping(self, timeout: float) -> Result:
        return self.pingers["ipc"](timeout)

    def close(self) -> None:
        pass
