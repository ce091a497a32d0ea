"""ZeroMQ idioms shared by the tickerplant, its client library and RPC: flags as plain ints (pyzmq's
enum flags cost more than a small send on a per-message path) and reading one whole multipart message
without blocking."""
from __future__ import annotations

import zmq

NOBLOCK, SNDMORE, RCVMORE, EVENTS, POLLIN = (
    int(f) for f in (zmq.NOBLOCK, zmq.SNDMORE, zmq.RCVMORE, zmq.EVENTS, zmq.POLLIN))


def recv_message(socket: zmq.Socket) -> list[bytes] | None:
    """All frames of the next waiting message, or None when none is waiting (no exception raised)."""
    if not socket.get(EVENTS) & POLLIN:
        return None
    frames = [socket.recv(NOBLOCK)]
    while socket.get(RCVMORE):
        frames.append(socket.recv(NOBLOCK))
    return frames
