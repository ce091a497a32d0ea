"""The web dashboard, served on the gateway's HTTP port: the sign-in page and its form (a session
cookie, `gateway.sessions`), sign-out, the page and its assets (gateway/static, every library
vendored: no CDN), and the composed JSON views the page reads (`/ui/...`), built from the same `Api`
calls, users and entitlements as the HTTP and kdb+ APIs. Live numbers reach the page over the HTTP
API's `/stream` (conflated); what-if and hedge sizing are the HTTP API's own endpoints.

    GET  /                   the page (to /login without a session)
    GET  /login, POST /login the sign-in form (fields username, password)
    POST /logout             ends the session
    GET  /ui/session         who is signed in
    GET  /ui/blotter         every entitled account: reference data, margin rows, start-of-day requirement
    GET  /ui/account?account=A   positions, drivers, every stress scenario, today's margin history,
                             alerts, (SPAN) the breakdown per combined commodity, and the
                             reconciliation against the CCP's official figures
    GET  /ui/health          whether calc and the rdb answer (the page marks its numbers stale if not)
"""
from __future__ import annotations

import asyncio
import html
from pathlib import Path

from aiohttp import web

from gateway.api import Api, ApiError
from gateway.sessions import Sessions
from gateway.users import Users

STATIC = Path(__file__).with_name("static")
SESSION_COOKIE = "margintick_session"
PUBLIC_PATHS = ("/", "/login", "/openapi.json")       # answered without credentials (/ redirects)
PUBLIC_PREFIX = "/static/"
MAX_FORM_FIELD = 256
_MESSAGE_SLOT = "<!--message-->"


class Dashboard:
    def __init__(self, api: Api, users: Users, sessions: Sessions, jsonable):
        self.api = api
        self.users = users
        self.sessions = sessions
        self.jsonable = jsonable
        self._login_page = (STATIC / "login.html").read_text()

    def routes(self) -> list:
        return [web.get("/", self.index), web.get("/login", self.login_form), web.post("/login", self.login),
                web.post("/logout", self.logout), web.get("/ui/session", self.session),
                web.get("/ui/blotter", self.blotter), web.get("/ui/account", self.account),
                web.get("/ui/health", self.health), web.static("/static", STATIC, append_version=False)]

    def user_of(self, request: web.Request):
        """The user of the request's session cookie, or None."""
        return self.sessions.user(request.cookies.get(SESSION_COOKIE))

    # ---- sign-in -----------------------------------------------------------------------------
    async def index(self, request: web.Request):
        if self.user_of(request) is None:
            raise web.HTTPFound("/login")
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def _login(self, message: str = "", status: int = 200) -> web.Response:
        body = self._login_page.replace(_MESSAGE_SLOT, f'<p class="message" role="alert">{html.escape(message)}</p>'
                                        if message else "")
        return web.Response(text=body, status=status, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def login_form(self, request: web.Request):
        if "signed_out" in request.query:
            return self._login("You are signed out.")
        if "expired" in request.query:
            return self._login("Your session has expired: sign in again.")
        return self._login()

    async def login(self, request: web.Request):
        if request.content_length is not None and request.content_length > 4 * MAX_FORM_FIELD:
            return self._login("The form is too large.", 413)
        form = await request.post()
        name, password = form.get("username"), form.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            return self._login("Give a user name and a password.", 400)
        if len(name) > MAX_FORM_FIELD or len(password) > MAX_FORM_FIELD:
            return self._login("The user name or password is too long.", 400)
        user = self.users.verified(name, password) or \
            await asyncio.get_running_loop().run_in_executor(None, self.users.verify, name, password)
        if user is None:
            return self._login("Wrong user name or password.", 401)
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, self.sessions.open(user), httponly=True, samesite="Strict", path="/")
        raise response

    async def logout(self, request: web.Request):
        self.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = web.HTTPSeeOther("/login?signed_out")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # ---- views (behind the HTTP API's authentication: request["user"]) --------------------------
    def _json(self, value) -> web.Response:
        return web.json_response(self.jsonable(value), headers={"Cache-Control": "no-store"})

    async def session(self, request: web.Request):
        user = request["user"]
        return self._json({"user": user.name, "role": user.role, "sees_all": user.sees_all})

    async def blotter(self, request: web.Request):
        user = request["user"]
        accounts, margin, sod = await asyncio.gather(self.api.account_table(user), self.api.margin(user),
                                                     self.api.start_of_day(user))
        return self._json({"accounts": accounts, "margin": margin.value,
                           "sod": [{"sym": a, "model": m, "requirement": r} for (a, m), r in sod.items()]})

    async def account(self, request: web.Request):
        user = request["user"]
        name = request.query.get("account")
        if not name:
            raise ApiError("account: query parameter account is required")
        account = await self.api.entitled(user, name)
        table, positions, drivers, history, alerts, breakdown, margin, recon = await asyncio.gather(
            self.api.account_table(user), self.api.positions(user, account), self.api.drivers(user, account),
            self.api.history(user, account), self.api.alerts(user, [account]), self.api.breakdown(user, account),
            self.api.margin(user, [account]), self.api.recon(user, account))
        reference = {c: v[table["sym"].index(account)] for c, v in table.items()} if account in table["sym"] else {}
        stress = []
        if reference.get("stress"):                 # every named scenario, under the account's primary model
            scenarios = (await self.api.scenarios(user)).value["scenarios"]
            results = await asyncio.gather(*(self.api.stress(user, account, s) for s in sorted(scenarios)))
            stress = [{"scenario": s, **{k: r.value.get(k) for k in ("loss", "requirement", "call", "buffer_used")},
                       "shocks": scenarios[s]} for s, r in zip(sorted(scenarios), results)]
        return self._json({"account": account, "reference": reference, "margin": margin.value,
                           "positions": positions.value, "drivers": drivers.value, "stress": stress,
                           "history": history.value, "alerts": alerts.value, "breakdown": breakdown.value,
                           "recon": recon.value})

    async def health(self, request: web.Request):
        return self._json(await self.api.health())
