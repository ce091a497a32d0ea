"""Real receivers for the notifier's tests and benchmark, on free 127.0.0.1 ports in threads: an SMTP
server (aiosmtpd) keeping every message it accepts, and an aiohttp HTTP receiver keeping every POST,
whose answer per path can be switched at run time (200, an error status, down = 503, or a hang)."""
from __future__ import annotations

import asyncio
import email
import json
import ssl
import threading
import time
from email.policy import default as default_policy

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from common.net import free_port


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: `.messages` (email.message.EmailMessage, with `.accepted_at` monotonic and
    `.login`, the user who authenticated, and `.tls`, whether the session was under STARTTLS); with
    `credentials` (user, password) AUTH is required, with `tls` (a server context) STARTTLS too."""

    def __init__(self, credentials: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None):
        self.messages: list = []
        self.port = free_port()
        self.credentials = credentials
        kwargs = {}
        if credentials is not None:
            kwargs = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": tls is not None}
        if tls is not None:                     # STARTTLS offered and required before anything else
            kwargs |= {"tls_context": tls, "require_starttls": True}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and \
            (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        msg.accepted_at = time.monotonic()
        msg.rcpt_tos = list(envelope.rcpt_tos)
        auth = session.auth_data
        msg.login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        msg.tls = session.ssl is not None
        self.messages.append(msg)
        return "250 OK"

    def keys(self) -> list[str]:
        return [m["X-Idempotency-Key"] for m in self.messages]

    def close(self) -> None:
        self.controller.stop()


class HttpReceiver:
    """aiohttp on 127.0.0.1; `answer[path]` is an int status (default 200) or "hang"; `.posts` keeps
    (path, status answered, Idempotency-Key, JSON body, monotonic time) of every request."""

    def __init__(self, delay: float = 0.0):
        self.port = free_port()
        self.answer: dict[str, int | str] = {}
        self.posts: list[tuple] = []
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("http receiver did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path.lstrip("/")
        body = json.loads(await request.read() or b"null")
        answer = self.answer.get(path, 200)
        if answer == "hang":
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.posts.append((path, answer, request.headers.get("Idempotency-Key"), body, time.monotonic()))
        return web.Response(status=int(answer), text="ok" if answer == 200 else "no")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self.loop.run_forever()

    async def _shutdown(self) -> None:
        await self.runner.cleanup()
        for task in asyncio.all_tasks():          # requests left hanging
            if task is not asyncio.current_task():
                task.cancel()

    def delivered(self, path: str) -> list[str]:
        """The idempotency keys of the requests to `path` answered 2xx, in order (repeats included)."""
        return [k for p, a, k, _, _ in list(self.posts) if p == path and a == 200]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
