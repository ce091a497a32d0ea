"""Request/reply between margintick processes: ZeroMQ ROUTER servers, DEALER clients, msgpack bodies.

Frames: client `[request_id, pack(request)]`, server back `[request_id, pack(reply)]`, where
`request = {"op": name, ...}` and `reply = {"ok": True, ...}` or `{"ok": False, "error": text}`.
A DEALER keeps many requests in flight; replies are matched by request id, so a reply that arrives
after its caller timed out is discarded rather than handed to the next caller.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Callable

import zmq
import zmq.asyncio

from common.codec import pack, unpack

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
        """Answers up to `limit` waiting requests without blocking; returns how many it answered."""
        n = 0
        while n < limit:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            if len(frames) != 3:
                log.warning("rpc %s: dropped a message of %d frames", self.endpoint, len(frames))
                self.failed += 1
                continue
            identity, request_id, body = frames
            self.socket.send_multipart([identity, request_id, pack(self.dispatch(body))])
        return n

    def dispatch(self, body: bytes) -> dict:
        """Decodes one request and runs its handler; every failure becomes an error reply."""
        try:
            request = unpack(body)
            op = request.get("op") if isinstance(request, dict) else None
            handler = self.handlers.get(op)
            if handler is None:
                self.failed += 1
                return {"ok": False, "error": f"unknown op: {op!r}"}
            reply = handler(request)
            self.served += 1
            return {"ok": True, **reply}
        except Exception as e:                       # noqa: BLE001 - a bad request must not kill the server
            self.failed += 1
            log.info("rpc %s: request failed: %s", self.endpoint, e)
            return {"ok": False, "error": str(e) or type(e).__name__}

    def serve_forever(self, stop: Callable[[], bool] = lambda: False, poll_ms: int = 100) -> None:
        while not stop():
            if self.socket.poll(poll_ms):
                self.drain()

    def close(self) -> None:
        self.socket.close(0)


def _reply(body: bytes) -> dict:
    reply = unpack(body)
    if not reply.get("ok"):
        raise RpcError(reply.get("error", "error"))
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
        request_id = next(self._ids).to_bytes(8, "little")
        self.socket.send_multipart([request_id, pack({"op": op, **args})])
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


class AsyncRpcClient:
    """asyncio client with many requests in flight on one DEALER (for the gateway)."""

    def __init__(self, endpoint: str, timeout: float = 5.0, context: zmq.asyncio.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[bytes, asyncio.Future] = {}
        self.socket = (context or zmq.asyncio.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self._reader: asyncio.Task | None = None

    async def _read(self) -> None:
        while True:
            rid, body = await self.socket.recv_multipart()
            future = self._pending.pop(rid, None)
            if future is not None and not future.done():
                future.set_result(body)

    async def call(self, op: str, timeout: float | None = None, **args) -> dict:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())
        request_id = next(self._ids).to_bytes(8, "little")
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.socket.send_multipart([request_id, pack({"op": op, **args})])
            body = await asyncio.wait_for(future, self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise RpcTimeout(f"timeout: no reply from {self.endpoint} to {op} within "
                             f"{self.timeout if timeout is None else timeout:g}s") from None
        finally:
            self._pending.pop(request_id, None)
        return _reply(body)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.socket.close(0)
