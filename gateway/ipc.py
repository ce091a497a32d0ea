"""The kdb+ IPC server (asyncio): handshake, sync / async / response messages, errors, compression,
subscriptions (.u.sub), for q sessions and PyKX clients.

Handshake: the client sends "user:password" + a capability byte + NUL; a wrong user or password
closes the connection (as q does), else the server answers one byte, min(client capability, 6).
Capability 6 allows messages over 2 GB (header byte 3 is then bits 32-39 of the size); messages over
`max_message_bytes` get a 'limit error and the connection is closed. Compressed messages (header byte
2 = 1) are decompressed (gateway.compression); replies over 2,000 bytes to a client that is not on
this host are compressed when that halves them, as kdb+ does (`compress="always"` for tests).

Each connection is served in order (a sync request is answered before the next is read, as q
does); connections are independent tasks, so a slow query holds only its own client, and each
backend call has a timeout. `.u.sub[table; syms]` answers (table; empty table) and then pushes
async (`upd; table; rows) messages like a kdb+ tickerplant; a subscriber whose unsent data passes
`max_push_backlog` bytes is disconnected rather than allowed to grow the gateway's memory.

Limits (docs/gateway.md, "Limits"): a message over `max_message_bytes` (also once decompressed) gets
'limit and the connection is closed; every request is checked by gateway.qscan (types, nesting
depth, list lengths, UTF-8 symbols, exact size) before PyKX deserialises it; each user has at most
api.MAX_RUNNING requests in progress. Every error a client sees is q-style text; an unexpected
failure is logged (rate-limited, gateway.ratelog) and answered with 'fail, never Python's text.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pykx as kx

from gateway.api import Api, ApiError, bounded
from gateway.compression import MIN_COMPRESS_BYTES, compress, decompress
from gateway.hub import SUBSCRIBABLE, Hub
from gateway.qcall import Answer, Call, QSyntaxError, read
from gateway.qcodec import (
    ASYNC,
    NULL_LONG,
    RESPONSE,
    SYNC,
    QTypeError,
    encode,
    error_message,
    message,
    table,
)
from gateway.qscan import Limits, ScanError, check
from gateway.users import User, Users

log = logging.getLogger("gateway.ipc")

SERVER_CAPABILITY = 6
MAX_HANDSHAKE = 1024
HANDSHAKE_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0


class ProtocolError(Exception):
    """The byte stream is not kdb+ IPC; the connection is closed."""


def decode(msg: bytes, compressed: bool, limits: Limits, max_message_bytes: int) -> Call | Answer:
    """What a whole request message asks for: decompressed, checked (gateway.qscan), deserialised
    by PyKX, read (gateway.qcall). Raises only ScanError, ApiError or QSyntaxError (q-style text)."""
    if compressed:
        try:
            msg = decompress(msg, max_message_bytes)
        except ValueError as e:
            raise ApiError(f"badmsg: {e}") from None
    check(msg, limits)
    try:
        request = kx.deserialize(msg)
    except Exception:                          # noqa: BLE001 - PyKX validates; any failure is bad input
        raise ApiError("badmsg: not a valid kdb+ message") from None
    try:
        return read(request, Api.FUNCTIONS)
    except QSyntaxError:
        raise
    except Exception:                          # noqa: BLE001 - a value with no Python form (a timestamp out of range)
        raise ApiError("type: the request holds a value the gateway cannot read") from None


class Connection:
    """One authenticated client."""

    def __init__(self, server: IpcServer, user: User, capability: int,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.user = user
        self.capability = capability
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.local = peer[0] in ("127.0.0.1", "::1", "localhost")
        self.subscriptions: list[int] = []

    def send(self, msg: bytes) -> None:
        mode = self.server.compress_mode
        if (len(msg) > MIN_COMPRESS_BYTES and self.capability >= 1
                and (mode == "always" or (mode == "remote" and not self.local))):
            msg = compress(msg) or msg
        self.writer.write(msg)

    def push(self, table_name: str, rows: dict) -> None:
        """An async (`upd; table; rows) message, as a kdb+ tickerplant publishes."""
        if self.writer.is_closing():
            raise ConnectionError("closed")
        if self.writer.transport.get_write_buffer_size() > self.server.max_push_backlog:
            log.warning("%s (%s): subscriber too slow, disconnected", self.peer, self.user.name)
            self.writer.close()
            raise ConnectionError("slow subscriber")
        body = b"\x00\x00" + struct.pack("<i", 3) + encode("upd") + encode(table_name) \
            + table(rows, self.server.hub.qtypes[table_name])
        self.send(message(body, ASYNC))


class IpcServer:
    def __init__(self, api: Api, users: Users, hub: Hub, max_message_bytes: int = 16 << 20,
                 compress_mode: str = "remote", max_push_backlog: int = 64 << 20, limits: Limits = Limits()):
        if compress_mode not in ("remote", "always", "never"):
            raise ValueError("compress_mode must be remote, always or never")
        self.api = api
        self.users = users
        self.hub = hub
        self.max_message_bytes = max_message_bytes
        self.compress_mode = compress_mode
        self.max_push_backlog = max_push_backlog
        self.limits = limits
        self.connections: set[Connection] = set()
        self.served = 0
        self.errors = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._client, host, port)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.writer.close()
            await self.server.wait_closed()

    # ---- connection lifecycle ---------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = None
        try:
            conn = await self._handshake(reader, writer)
            if conn is None:
                return
            self.connections.add(conn)
            await self._serve(conn)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as e:
            log.info("%s: %s; connection closed", writer.get_extra_info("peername"), e)
        finally:
            if conn is not None:
                self.connections.discard(conn)
                for sid in conn.subscriptions:
                    self.hub.remove(sid)
            writer.close()

    async def _handshake(self, reader, writer) -> Connection | None:
        raw = bytearray()
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while (byte := await reader.read(1)) != b"\0":
                if not byte:
                    return None
                raw += byte
                if len(raw) > MAX_HANDSHAKE:
                    raise ProtocolError("handshake too long")
        capability = 0
        if raw and raw[-1] < 32:
            capability, raw = raw[-1], raw[:-1]
        name, _, password = raw.decode("utf-8", "replace").partition(":")
        user = await asyncio.get_running_loop().run_in_executor(None, self.users.verify, name, password)
        if user is None:
            log.info("%s: login refused for user %r", writer.get_extra_info("peername"), name)
            return None
        capability = min(capability, SERVER_CAPABILITY)
        writer.write(bytes([capability]))
        log.info("%s: user %s connected (capability %d)", writer.get_extra_info("peername"), name, capability)
        return Connection(self, user, capability, reader, writer)

    async def _serve(self, conn: Connection) -> None:
        reader = conn.reader
        while True:
            header = await reader.readexactly(8)
            endian, msgtype, compressed, high, size = struct.unpack("<BBBBI", header)
            if endian != 1:
                raise ProtocolError("big-endian or unknown byte order; only little-endian kdb+ IPC is served")
            if msgtype > RESPONSE or compressed > 1:
                raise ProtocolError(f"bad message header {header.hex()}")
            if high:
                if conn.capability < 6:
                    raise ProtocolError("message over 4 GB without the large-message capability")
                size |= high << 32
            if size <= 8:
                raise ProtocolError(f"message size {size} in header")
            if size > self.max_message_bytes:
                conn.send(error_message(f"limit: message of {size} bytes is over the gateway's limit of "
                                        f"{self.max_message_bytes}"))
                await conn.writer.drain()
                raise ProtocolError(f"message of {size} bytes over the limit")
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await reader.readexactly(size - 8)
            await self._handle(conn, msgtype, header + body, compressed == 1)

    # ---- requests ---------------------------------------------------------------------------------
    async def _handle(self, conn: Connection, msgtype: int, msg: bytes, compressed: bool) -> None:
        try:
            reply = message(await self._evaluate(conn, decode(msg, compressed, self.limits, self.max_message_bytes)))
            self.served += 1
        except (ApiError, QSyntaxError, QTypeError, ScanError) as e:
            self.errors += 1
            reply = error_message(bounded(getattr(e, "text", None) or str(e)))
        except Exception:
            self.errors += 1
            log.exception("%s (%s): request failed", conn.peer, conn.user.name)
            reply = error_message("fail: the gateway could not answer this request (the error is logged)")
        if msgtype == SYNC:
            conn.send(reply)
            await conn.writer.drain()
        elif reply[8] == 0x80:
            log.info("%s (%s): async message failed: %s", conn.peer, conn.user.name, reply[9:-1].decode())

    async def _evaluate(self, conn: Connection, item: Call | Answer) -> bytes:
        if isinstance(item, Answer):
            return encode(item.value)
        if item.name == ".u.sub":
            reply = await self._subscribe(conn, *item.args)
            if item.tick_log:        # r.q's (.u.sub[..];`.u `i`L): no log to replay, so (0N; `)
                no_log = b"\x00\x00" + struct.pack("<i", 2) + encode(NULL_LONG) + encode("")
                reply = b"\x00\x00" + struct.pack("<i", 2) + reply + no_log
            return reply
        result = await self.api.call(conn.user, item.name, item.args)
        return encode(result.value, result.qtypes)

    async def _subscribe(self, conn: Connection, table_name=None, syms=None, *extra) -> bytes:
        """.u.sub[table; syms]: ` for every subscribable table / every entitled account."""
        if extra:
            raise ApiError("rank: .u.sub[table; syms]")
        if table_name in (None, ""):
            tables = list(SUBSCRIBABLE)
        elif table_name in SUBSCRIBABLE:
            tables = [table_name]
        else:
            raise ApiError(f"table: can subscribe to {', '.join(SUBSCRIBABLE)}, not {table_name!r}")
        accounts = await self.api.visible(conn.user, syms)
        conn.subscriptions.append(self.hub.add(tables, accounts, conn.push))
        pairs = [b"\x00\x00\x02\x00\x00\x00" + encode(t) + table(self.hub.schemas[t].empty(), self.hub.qtypes[t])
                 for t in tables]
        return pairs[0] if len(pairs) == 1 else b"\x00\x00" + struct.pack("<i", len(pairs)) + b"".join(pairs)
