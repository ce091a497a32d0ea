"""The HTTP JSON API (aiohttp): the named API for systems such as the EMS pre-trade check.

Same users and entitlements as the kdb+ port: HTTP Basic (user:password), `Authorization: Bearer
<token>`, or the dashboard's session cookie (gateway.dashboard, which this app also serves). Every
error is JSON `{"error": "..."}` with a 4xx (5xx for a backend timeout) status.
Tables are JSON arrays of row objects, timestamps ISO-8601 with nanoseconds, NaN as null.
GET /stream is a server-sent-events stream: `event: margin|alert`, `data: [rows]`; a client that
cannot keep up (more than `SSE_QUEUE` batches waiting) is disconnected. With `conflate=MS` the margin
rows are conflated: every MS milliseconds one event with the newest row per (account, model) that
changed (alerts are never conflated), so a screen stays smooth however fast the margin moves.

Limits: a connection that has not sent a whole request head within `header_timeout` (slow
clients included) or stays idle that long between requests is closed; a body must arrive within
`body_timeout` (408), be at most `MAX_BODY` bytes (413, refused from its Content-Length before
any of it is read) and JSON nested at most `MAX_JSON_DEPTH` levels; a request line must carry
HTTP/1.0 or HTTP/1.1; each user has at most
api.MAX_RUNNING requests in progress (429 beyond api.MAX_WAITING queued). Every error, including
aiohttp's own protocol-level 400s and 405s (with their `Allow` header), is a JSON `{"error": ...}`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re

import numpy as np
from aiohttp import web

from gateway.api import Api, ApiError, bounded
from gateway.dashboard import PUBLIC_PATHS, PUBLIC_PREFIX, SESSION_COOKIE, Dashboard
from gateway.hub import SUBSCRIBABLE, Hub
from gateway.openapi import OPENAPI
from gateway.qcodec import is_batch
from gateway.sessions import Sessions
from gateway.users import Users

SSE_QUEUE = 1000
SSE_KEEPALIVE_S = 15.0
MAX_CONFLATE_MS = 10_000
HEADER_TIMEOUT_S = 10.0          # for a request head, and for the next request on an idle connection
BODY_TIMEOUT_S = 10.0
MAX_BODY = 1 << 20
LINGER_S = 1.0                   # reading (and dropping) the rest of a body refused unread
SHUTDOWN_S = 2.0                 # at close, requests in progress get this long; then connections (SSE streams) are cut
MAX_JSON_DEPTH = 16
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
log = logging.getLogger("gateway.http")


def jsonable(value):
    """Reply values as JSON-ready Python: batches -> list of row dicts, NaN -> None."""
    kind = type(value)                                       # the common reply leaves first
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str or kind is int:
        return value
    if is_batch(value):
        columns = {c: jsonable(np.asarray(v) if not isinstance(v, list) else v) for c, v in value.items()}
        n = len(next(iter(columns.values())))
        return [{c: col[i] for c, col in columns.items()} for i in range(n)]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "M":
            return [None if np.isnat(v) else str(v.astype("datetime64[ns]")) + "Z" for v in value]
        if value.dtype.kind == "m":
            return [None if np.isnat(v) else int(v.astype("timedelta64[ns]").view(np.int64)) for v in value]
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(value.astype("datetime64[ns]")) + "Z"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _error(status: int, text: str, headers=None) -> web.Response:
    return web.json_response({"error": text}, status=status, headers=headers)


def json_depth(body: bytes) -> int:
    """How deeply the arrays / objects of a JSON text nest (strings skipped), without parsing it."""
    brackets = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(brackets, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _event(table_name: str, rows: list) -> bytes:
    return f"event: {table_name}\ndata: {json.dumps(rows, separators=(',', ':'))}\n\n".encode()


def _not_json(constant: str):
    """NaN, Infinity and -Infinity, which Python's json reads but JSON does not have."""
    raise ValueError(f"{constant} is not JSON")


class _Handler(web.RequestHandler):
    """aiohttp's connection handler, with its protocol-level errors (a request it cannot parse,
    500 for an exception no handler caught) as JSON rather than plain text."""

    def handle_error(self, request, status=500, exc=None, message=None):
        super().handle_error(request, status, exc, message)      # logs, refuses after a partial reply
        text = "fail: the gateway could not answer this request (the error is logged)" if status >= 500 \
            else f"bad request: {(message or 'malformed HTTP').splitlines()[0]}"
        response = _error(status, text)
        response.force_close()
        return response


class HttpApi:
    def __init__(self, api: Api, users: Users, hub: Hub, header_timeout: float = HEADER_TIMEOUT_S,
                 body_timeout: float = BODY_TIMEOUT_S, sessions: Sessions | None = None):
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.api = api
        self.users = users
        self.hub = hub
        self.dashboard = Dashboard(api, users, sessions or Sessions(), jsonable)
        self.app = web.Application(middlewares=[self._json_errors, self._auth], client_max_size=MAX_BODY)
        self.app.add_routes([
            web.get("/openapi.json", self.openapi), web.get("/margin", self.margin),
            web.post("/whatif", self.whatif), web.get("/hedge", self.hedge), web.post("/hedge", self.hedge),
            web.get("/positions", self.positions),
            web.get("/drivers", self.drivers), web.get("/stress", self.stress),
            web.get("/alerts", self.alerts), web.get("/stream", self.stream), web.get("/recon", self.recon),
            web.get("/rules", self.rules), web.post("/setrule", self.setrule), web.post("/ack", self.ack),
            *self.dashboard.routes()])
        self.runner: web.AppRunner | None = None
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=SHUTDOWN_S)
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        # aiohttp closes a connection idle (no whole request head) for keepalive_timeout, and after a
        # reply to a request whose body it did not read, drops what comes for lingering_time
        self.server = await loop.create_server(
            lambda: _Handler(self.runner.server, loop=loop, keepalive_timeout=self.header_timeout,
                             lingering_time=LINGER_S, access_log=None),
            host, port)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _json_errors(self, request: web.Request, handler):
        """aiohttp's own 4xx (unknown path, wrong method, body too large) as JSON reasons too; a
        request line without HTTP/1.x (aiohttp reads `GET /path` alone as HTTP/0.9, and the line
        after it as a header) is refused."""
        if request.version.major != 1:
            response = _error(400, "bad request: the request line must end with HTTP/1.0 or HTTP/1.1")
            response.force_close()
            return response
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            response = _error(e.status, e.reason, allow)
            if e.status == 413:                  # the rest of the body was not read
                response.force_close()
            return response

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        """Basic, Bearer, or the dashboard's session cookie. A request from the page (it carries the
        cookie, or X-Requested-With) gets its 401 without the Basic challenge, so the browser shows
        the page's own message rather than a password dialog."""
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIX):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        user = None
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _error(400, "bad Basic credentials")
            user = self.users.verified(name, password) or \
                await asyncio.get_running_loop().run_in_executor(None, self.users.verify, name, password)
        elif scheme.lower() == "bearer":
            user = self.users.by_token(credentials.strip())
        elif not header:
            user = self.dashboard.user_of(request)
        if user is None:
            if SESSION_COOKIE in request.cookies or "X-Requested-With" in request.headers:
                return _error(401, "access: your session has expired or you are signed out: sign in again")
            return _error(401, "access: authenticate with HTTP Basic or a Bearer token",
                          {"WWW-Authenticate": 'Basic realm="margintick"'})
        request["user"] = user
        try:
            if request.path == "/stream":                    # long-lived: not one of the user's slots
                return await handler(request)
            async with self.api.slot(user):
                return await handler(request)
        except ApiError as e:
            response = _error(e.status, e.text)
            if e.status in (408, 413):           # the body was not read: the connection cannot go on
                response.force_close()
            return response

    @staticmethod
    def _query(request: web.Request, name: str, required: bool = False, empty: bool = True) -> str | None:
        """A query parameter's value, None when absent (or empty, when `empty` allows it)."""
        value = request.query.get(name)
        if required and not value:
            raise ApiError(f"{name}: query parameter {name} is required")
        if value == "" and not empty:
            raise ApiError(f"{name}: query parameter {name} is empty")
        return value or None

    @staticmethod
    def _list(value: str | None) -> list[str] | None:
        return [v for v in value.split(",") if v] if value else None

    async def openapi(self, request):
        return web.json_response(OPENAPI)

    async def margin(self, request):
        result = await self.api.margin(request["user"], self._list(self._query(request, "account")))
        return web.json_response(jsonable(result.value))

    async def alerts(self, request):
        result = await self.api.alerts(request["user"], self._list(self._query(request, "account")),
                                       self._query(request, "since", empty=False))
        return web.json_response(jsonable(result.value))

    async def recon(self, request):
        n = self._query(request, "n")
        if n is not None and not (n.isascii() and n.isdigit()):
            raise ApiError("type: n must be a whole number")
        result = await self.api.recon(request["user"], self._query(request, "account", True),
                                      None if n is None else int(n))
        return web.json_response(jsonable(result.value))

    async def rules(self, request):
        result = await self.api.rules(request["user"], self._list(self._query(request, "account")))
        return web.json_response(jsonable(result.value))

    async def setrule(self, request):
        result = await self.api.setrule(request["user"], await self._json_body(request))
        return web.json_response(jsonable(result.value))

    async def ack(self, request):
        body = await self._json_body(request)
        if not isinstance(body, dict) or set(body) - {"account", "kind", "note"}:
            raise ApiError("json: the body must be an object of account, kind (optional), note (optional)")
        result = await self.api.ack(request["user"], body.get("account"), body.get("kind"), body.get("note"))
        return web.json_response(jsonable(result.value))

    async def positions(self, request):
        result = await self.api.positions(request["user"], self._query(request, "account", True))
        return web.json_response(jsonable(result.value))

    async def drivers(self, request):
        result = await self.api.drivers(request["user"], self._query(request, "account", True))
        return web.json_response(jsonable(result.value))

    async def stress(self, request):
        result = await self.api.stress(request["user"], self._query(request, "account", True),
                                       self._query(request, "scenario"))
        return web.json_response(jsonable(result.value))

    async def _json_body(self, request: web.Request):
        """The request's JSON body, within the size, time and depth limits (module docstring)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(f"limit: a body of {request.content_length} bytes, at most {MAX_BODY}", 413)
        try:
            async with asyncio.timeout(self.body_timeout):
                raw = await request.read()
        except TimeoutError:
            raise ApiError(f"timeout: the body did not arrive within {self.body_timeout:g}s", 408) from None
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ApiError(f"json: nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(raw, parse_constant=_not_json)
        except (ValueError, RecursionError):        # JSONDecodeError, UnicodeDecodeError
            raise ApiError("json: the body must be a JSON object (NaN and Infinity are not JSON: leave out "
                           "a price to use the mark)") from None

    async def whatif(self, request):
        body = await self._json_body(request)
        if not isinstance(body, dict):
            raise ApiError("json: the body must be a JSON object")
        unknown = set(body) - {"account", "trades", "sym", "qty", "price"}
        if unknown:
            raise ApiError(f"json: unknown fields {sorted(unknown)}")
        trades = body.get("trades")
        if "trades" in body and set(body) & {"sym", "qty", "price"}:
            raise ApiError("json: give either trades or sym, qty and price, not both")
        if trades is not None:
            if not isinstance(trades, list) or not all(isinstance(t, dict) for t in trades):
                raise ApiError("json: trades must be a list of {sym, qty, price}")
            basket = {"sym": [t.get("sym") for t in trades], "qty": [t.get("qty") for t in trades],
                      "price": [t.get("price") for t in trades]}
            result = await self.api.whatif(request["user"], body.get("account"), basket)
        else:
            result = await self.api.whatif(request["user"], body.get("account"), body.get("sym"),
                                           body.get("qty"), body.get("price"))
        return web.json_response(jsonable(result.value))

    async def hedge(self, request):
        """GET with query parameters account, sym, target (optional), or POST of the same as JSON."""
        if request.method == "POST":
            body = await self._json_body(request)
            if not isinstance(body, dict):
                raise ApiError("json: the body must be a JSON object")
            unknown = set(body) - {"account", "sym", "target"}
            if unknown:
                raise ApiError(f"json: unknown fields {sorted(unknown)}")
            account, sym, target = body.get("account"), body.get("sym"), body.get("target")
        else:
            account, sym = self._query(request, "account", True), self._query(request, "sym", True)
            target = self._query(request, "target", empty=False)
            if target is not None:
                try:
                    target = float(target)
                except ValueError:
                    target = math.nan
                if not math.isfinite(target):
                    raise ApiError("type: target must be a finite number >= 0 (leave it out for 0)")
        result = await self.api.hedge(request["user"], account, sym, target)
        return web.json_response(jsonable(result.value))

    async def stream(self, request):
        names = self._list(self._query(request, "tables")) or list(SUBSCRIBABLE)
        bad = [t for t in names if t not in SUBSCRIBABLE]
        if bad:
            raise ApiError(f"table: can stream {', '.join(SUBSCRIBABLE)}, not {', '.join(bad)}")
        conflate_s = self._conflate(request)
        accounts = await self.api.visible(request["user"], self._list(self._query(request, "account")))
        queue: asyncio.Queue = asyncio.Queue(SSE_QUEUE)
        latest: dict[tuple[str, str], dict] = {}      # conflated: the newest margin row per (account, model)
        overflow = asyncio.Event()

        def sink(table_name: str, rows: dict) -> None:
            if conflate_s and table_name == "margin":
                for row in jsonable(rows):
                    latest[row["sym"], row["model"]] = row
                return
            if queue.full():
                overflow.set()
                raise ConnectionError("SSE client too slow")     # the hub drops this subscription
            queue.put_nowait((table_name, jsonable(rows)))

        sid = self.hub.add(names, accounts, sink)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        loop = asyncio.get_running_loop()
        try:
            await response.prepare(request)
            await response.write(b": subscribed\n\n")
            flush_at = loop.time() + conflate_s
            quiet_since = loop.time()
            while not overflow.is_set():
                wait = min(SSE_KEEPALIVE_S, flush_at - loop.time()) if conflate_s else SSE_KEEPALIVE_S
                try:
                    table_name, rows = await asyncio.wait_for(queue.get(), max(wait, 0.0))
                    await response.write(_event(table_name, rows))
                    quiet_since = loop.time()
                except TimeoutError:
                    pass
                if conflate_s and loop.time() >= flush_at:
                    flush_at = loop.time() + conflate_s
                    if latest:
                        rows = list(latest.values())
                        latest.clear()
                        await response.write(_event("margin", rows))
                        quiet_since = loop.time()
                if loop.time() - quiet_since >= SSE_KEEPALIVE_S:
                    await response.write(b": keepalive\n\n")
                    quiet_since = loop.time()
            await response.write(b'event: error\ndata: {"error": "client too slow: disconnected"}\n\n')
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.hub.remove(sid)
        return response

    @classmethod
    def _conflate(cls, request: web.Request) -> float:
        """The stream's `conflate` period in seconds (query in ms, 0..MAX_CONFLATE_MS; 0 = every batch)."""
        text = cls._query(request, "conflate")
        if text is None:
            return 0.0
        if not text.isdigit() or int(text) > MAX_CONFLATE_MS:
            raise ApiError(f"conflate: a whole number of milliseconds from 0 to {MAX_CONFLATE_MS}, got {bounded(text)}")
        return int(text) / 1000.0
