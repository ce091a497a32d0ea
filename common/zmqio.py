"""ZeroMQ idioms shared by the tickerplant, its client library and RPC: flags as plain ints (pyzmq's
enum flags cost more than a small send on a per-message path) and reading one whole multipart message
without blocking."""
from __future__ import annotations

import zmq

NOBLOCK, SNDMORE, RCVMORE, EVENTS, POLLIN = (
    int(f) for f in (zmq.NOBLOCK, zmq.SNDMORE, zmq.RCVMORE, zmq.EVENTS, zmq.POLLIN))


def recv_message(socket: zmq.Socket) -> list[bytes] | None:
    """All frames of the next waiting message, or None when none is waiting.

    Cheapest for streams (one zmq.Again at the end of a burst). Where a wake-up usually finds a single
    message (RPC), check `socket.get(EVENTS) & POLLIN` first instead of paying for the exception;
    not per message of a stream, though: reading ZMQ_EVENTS makes libzmq process its commands."""
    try:
        frames = [socket.recv(NOBLOCK)]
    except zmq.Again:
        return None
    while socket.get(RCVMORE):
        frames.append(socket.recv(NOBLOCK))
    return frames
