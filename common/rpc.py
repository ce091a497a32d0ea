"""Request/reply between margintick processes: ZeroMQ ROUTER servers, DEALER clients, msgpack bodies.

Frames: client `[request_id, request]`, server back `[request_id, pack(reply)]`, the request and
reply envelopes of common/wire.py (`{"op": name, ...}`; `{"ok": True, ...}` or `{"ok": False,
"error": text}`).
A message may carry several requests, `[id1, req1, id2, req2, ...]`; the server answers them in one
message `[id1, reply1, id2, reply2, ...]`, each request on its own (one failing fails only itself).
A DEALER keeps many requests in flight; replies are matched by request id, so a reply that arrives
after its caller timed out is discarded rather than handed to the next caller.

Hot path (a what-if crosses it twice per round trip): frames are sent and received one by one with
int flags (pyzmq's enum flags and its `zmq.Again` exceptions cost more than the messaging itself at
these sizes); a server drains every waiting request in one go; the asyncio client reads its DEALER
from `loop.add_reader` on the socket's file descriptor (edge-triggered: after every send and every
wake-up the socket is read until ZMQEVENTS says nothing is left) instead of zmq.asyncio's futures,
and sends the requests its callers made during one turn of the event loop as one message. On a
machine where waking a thread costs tens of microseconds, a message per request and per reply (each
waking the ZeroMQ I/O threads and the peer) was most of the cost of a what-if under load.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Callable

import zmq
import zmq.asyncio

from common import wire
from common.codec import pack, unpack
from common.zmqio import EVENTS, NOBLOCK, POLLIN, SNDMORE, recv_message

log = logging.getLogger(__name__)


Handler = Callable[[dict], dict]


class RpcError(RuntimeError):
    """The server answered with an error; the message is its q-style text."""


class RpcTimeout(RpcError):
    """No reply within the timeout."""


class RpcServer:
    """A ROUTER socket dispatching requests to handlers by op; pollable from the owner's loop."""

    def __init__(self, endpoint: str, handlers: dict[str, Handler], context: zmq.Context | None = None):
        self.handlers = dict(handlers)
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.served = 0
        self.failed = 0

    def drain(self, limit: int = 1000) -> int:
        """Answers the waiting requests without blocking, stopping after the message that reaches
        `limit` requests; returns how many it answered."""
        sock = self.socket
        send = sock.send
        n = 0
        while n < limit and sock.get(EVENTS) & POLLIN and (frames := recv_message(sock)) is not None:
            if len(frames) < 3 or len(frames) % 2 == 0:
                log.warning("rpc %s: dropped a message of %d frames", self.endpoint, len(frames))
                self.failed += 1
                continue
            send(frames[0], SNDMORE)                         # the client's identity
            last = len(frames) - 2
            for i in range(1, len(frames), 2):
                reply = pack(self.dispatch(frames[i + 1]))
                send(frames[i], SNDMORE)                     # its request id
                send(reply, SNDMORE if i < last else 0)
                n += 1
        return n

    def waiting(self) -> bool:
        """True when a request is waiting (for an owner loop deciding whether to do other work first)."""
        return bool(self.socket.get(EVENTS) & POLLIN)

    def dispatch(self, body: bytes) -> dict:
        """Decodes one request and runs its handler; every failure becomes an error reply."""
        try:
            request = unpack(body)
            op = wire.request_op(request)
            handler = self.handlers.get(op)
            if handler is None:
                self.failed += 1
                return wire.error_reply(f"unknown op: {op!r}")
            reply = handler(request)
            self.served += 1
            return wire.ok_reply(reply)
        except Exception as e:                       # noqa: BLE001 - a bad request must not kill the server
            self.failed += 1
            log.info("rpc %s: request failed: %s", self.endpoint, e)
            return wire.error_reply(str(e) or type(e).__name__)

    def serve_forever(self, stop: Callable[[], bool] = lambda: False, poll_ms: int = 100) -> None:
        while not stop():
            if self.socket.poll(poll_ms):
                self.drain()

    def close(self) -> None:
        self.socket.close(0)


def _reply(body: bytes) -> dict:
    reply = unpack(body)
    error = wire.reply_error(reply)
    if error is not None:
        raise RpcError(error)
    return reply


class RpcClient:
    """Synchronous client: `call(op, **args)` returns the reply dict or raises RpcError / RpcTimeout."""

    def __init__(self, endpoint: str, timeout: float = 5.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def call(self, op: str, timeout: float | None = None, **args) -> dict:
        request_id = wire.request_id(next(self._ids))
        self.socket.send(request_id, SNDMORE)
        self.socket.send(wire.request(op, args))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            if not self.socket.poll(int(left * 1000) + 1):
                break
            rid, body = self.socket.recv_multipart()
            if rid == request_id:
                return _reply(body)
        raise RpcTimeout(f"timeout: no reply from {self.endpoint} to {op} within "
                         f"{self.timeout if timeout is None else timeout:g}s")

    def close(self) -> None:
        self.socket.close(0)


def rpc_answer(endpoint: str, op: str = "status", timeout: float = 0.5, **args) -> dict | None:
    """The reply of one call of `op` at `endpoint`, or None when nothing answers it (not up yet, or
    an error reply): for probes and waits."""
    client = RpcClient(endpoint, timeout=timeout)
    try:
        return client.call(op, **args)
    except RpcError:
        return None
    finally:
        client.close()


class AsyncRpcClient:
    """asyncio client with many requests in flight on one DEALER (for the gateway).

    The socket is a plain (not zmq.asyncio) DEALER read from the event loop's reader callback on its
    file descriptor; a reply resolves its caller's future, a timeout is a `call_later` on the loop.
    The client follows the running loop of its first call (and moves if a later call runs in another).
    """

    def __init__(self, endpoint: str, timeout: float = 5.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[bytes, asyncio.Future] = {}
        self._outbox: list[tuple[bytes, bytes, asyncio.Future]] = []   # this loop turn's requests
        if isinstance(context, zmq.asyncio.Context):             # a plain socket of the same context
            context = zmq.Context.shadow(context.underlying)
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self._fd = self.socket.getsockopt(zmq.FD)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = 0                # request messages sent (each carries one or more requests)

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._detach()
            loop.add_reader(self._fd, self._read)
            self._loop = loop
        return loop

    def _detach(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._loop = None
        self._outbox.clear()             # requests of a finished loop: no caller waits for them

    def _read(self) -> None:
        """Takes every reply waiting on the socket (the FD only signals edges)."""
        sock, pending = self.socket, self._pending
        while sock.get(EVENTS) & POLLIN and (frames := recv_message(sock)) is not None:
            if len(frames) % 2:
                log.warning("rpc client %s: dropped a reply of %d frames", self.endpoint, len(frames))
                continue
            for i in range(0, len(frames), 2):
                future = pending.pop(frames[i], None)
                if future is not None and not future.done():
                    future.set_result(frames[i + 1])

    def _flush(self) -> None:
        """Sends the requests of this loop turn that still have a waiting caller, as one message."""
        batch, self._outbox = self._outbox, []
        frames = [part for request_id, body, future in batch if not future.done() for part in (request_id, body)]
        if not frames:
            return
        send, last = self.socket.send, len(frames) - 1
        try:
            send(frames[0], NOBLOCK | SNDMORE)
            for i in range(1, last + 1):
                send(frames[i], SNDMORE if i < last else 0)
        except zmq.ZMQError as e:            # the callers get the failure (not a log line and a timeout)
            failure = RpcError(f"busy: {len(self._pending)} requests already waiting for {self.endpoint}"
                               if isinstance(e, zmq.Again) else f"{self.endpoint}: {e}")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        self.messages += 1
        self._read()                     # a send can swallow the FD's edge for replies already in

    @staticmethod
    def _expire(future: asyncio.Future, message: str) -> None:
        if not future.done():
            future.set_exception(RpcTimeout(message))

    async def call(self, op: str, timeout: float | None = None, **args) -> dict:
        loop = self._attach()
        request_id = wire.request_id(next(self._ids))
        body = wire.request(op, args)
        future = loop.create_future()
        self._pending[request_id] = future
        timeout = self.timeout if timeout is None else timeout
        expiry = loop.call_later(timeout, self._expire, future,
                                 f"timeout: no reply from {self.endpoint} to {op} within {timeout:g}s")
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append((request_id, body, future))
        try:
            return _reply(await future)
        finally:
            expiry.cancel()
            self._pending.pop(request_id, None)

    def close(self) -> None:
        self._detach()
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._outbox.clear()
        self.socket.close(0)
