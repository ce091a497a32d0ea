"""Local TCP ports: a free one to bind, and whether something listens on one (127.0.0.1)."""
from __future__ import annotations

import socket

from common.defaults import HOST


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """True when a TCP connection to 127.0.0.1:port is accepted."""
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False
