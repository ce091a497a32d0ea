"""The gateway's named API, shared by the kdb+ IPC and HTTP front ends.

Each function takes the calling user and plain Python arguments, checks entitlements, asks the rdb or
calc over ZeroMQ request/reply (common.rpc.AsyncRpcClient, many requests in flight, a timeout per
request) and returns a `Result` (a value plus the q types of its columns). Failures raise `ApiError`
with a q-style text (`'access: ...`, `'type: ...`, `'timeout: ...`) and an HTTP status.

margin (every model of each account, as of calc's last event), whatif, hedge, positions, drivers,
stress, scenarios come from calc; alerts from the rdb `alert` table; recon (the live parallel run's
rows and accuracy, gateway/recon.py) from the rdb `recon` table; q-sql strings go to the rdb `qsql` op;
the desk of an account (for desk entitlements) from the rdb `account` table. `setrule` validates an
alert rule (common/alertrules.py), checks the user may set it (a trader: his accounts and desks only;
scope all: a user entitled to every account) and publishes it to the tickerplant's `alertrule` table;
`rules` reads the rules in force from the rdb; `ack` records who acknowledged an account's alert
episode (an `ack` row; notify stops its reminders).

Arguments are bounded before anything is asked of a backend: account lists are de-duplicated and
at most `MAX_ACCOUNTS` distinct names (each checked against the user's entitlements), a basket at
most `MAX_TRADES` trades, numbers finite and within range. `Api.slot(user)` bounds each user's
requests in progress (`MAX_RUNNING` at once, `MAX_WAITING` queued behind them, beyond that a
'limit error, HTTP 429), so one user's burst cannot take every backend slot from the others.
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from common.alertrules import KINDS, SCOPES, Rule, check_rule, rule_batch
from common.codec import text_array
from common.rpc import AsyncRpcClient, RpcError, RpcTimeout
from common.schema import load_schemas
from common.wire import reply_fields
from gateway.qcodec import NULL_LONG, ColumnDict, KeyedTable, TypedVector, schema_qtypes
from gateway.recon import MAX_RECON_N, RECON_N, accuracy, last_figures
from gateway.users import User

DESK_REFRESH_S = 1.0
MAX_ACCOUNTS = 1_000            # distinct accounts in one request
MAX_TRADES = 1_000              # trades in one what-if basket
MAX_RUNNING, MAX_WAITING = 32, 256      # per user: requests in progress, and queued behind them
MAX_NAME = 64                   # characters in an account or sym name (the FIX edge books none longer)
MAX_ERROR_TEXT = 300            # characters of an error text: a long input is never echoed back whole
_INT64 = 2**63
TIMESTAMP_TEXT = re.compile(r"\d{4}[-.]\d{2}[-.]\d{2}", re.ASCII)     # how a timestamp's text starts


def bounded(text: str) -> str:
    """An error text as a client gets it: at most MAX_ERROR_TEXT characters."""
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 1] + "\u2026"


class ApiError(Exception):
    """A request failed; `text` is q-style (no leading quote), `status` the HTTP status."""

    def __init__(self, text: str, status: int = 400):
        text = bounded(text)
        super().__init__(text)
        self.text = text
        self.status = status


@dataclass
class Result:
    value: object
    qtypes: dict = field(default_factory=dict)


def _names(value, what: str) -> list[str] | None:
    """None (all) for None / "" / an empty list, else a list of account or sym names."""
    if value is None or value == "" or (isinstance(value, list) and not [v for v in value if v]):
        return None
    if isinstance(value, str):
        return [_bounded(value, what)]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = list(dict.fromkeys(v for v in value if v))
        if len(names) > MAX_ACCOUNTS:
            raise ApiError(f"limit: {len(names)} distinct {what} in one request, at most {MAX_ACCOUNTS}")
        return [_bounded(v, what) for v in names]
    raise ApiError(f"type: {what} must be a symbol or a list of symbols")


def _bounded(name: str, what: str) -> str:
    if len(name) > MAX_NAME:
        raise ApiError(f"limit: {what}: a name of {len(name)} characters, at most {MAX_NAME}")
    return name


def _one(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(f"type: {what} must be a symbol")
    return _bounded(value, what)


def _number(value, what: str, allow_null: bool = False) -> float:
    if value is None and allow_null:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ApiError(f"type: {what} must be a number")
    if value == NULL_LONG:                        # q long null 0N
        if allow_null:
            return math.nan
        raise ApiError(f"type: {what} must not be null")
    try:
        v = float(value)
    except OverflowError:
        raise ApiError(f"type: {what} is out of range") from None
    if math.isnan(v) and not allow_null:
        raise ApiError(f"type: {what} must not be null")
    if math.isinf(v):
        raise ApiError(f"type: {what} must be finite")
    return v


def _items(column) -> list:
    """A trades column as a list (an atom is a column of one)."""
    if isinstance(column, np.ndarray):
        if column.ndim > 1:
            raise ApiError("type: a trades column must be a list of atoms")
        return column.tolist()
    return list(column) if isinstance(column, (list, tuple)) else [column]


def trades_from(sym, qty=None, price=None) -> dict:
    """The calc `trades` argument from one trade (sym, qty, price) or a table/dict of trades."""
    if isinstance(sym, dict):
        if qty is not None or price is not None:
            raise ApiError("rank: whatif[account; trades] takes a table of sym, qty, price")
        syms, qtys = sym.get("sym"), sym.get("qty")
        if syms is None or qtys is None:
            raise ApiError("type: the trades table needs columns sym and qty (price optional)")
        syms, qtys = _items(syms), _items(qtys)
        prices = _items(sym.get("price", [None] * len(syms)))
        if not (len(syms) == len(qtys) == len(prices)) or not syms:
            raise ApiError("length: trades columns must be non-empty and of equal length")
        if len(syms) > MAX_TRADES:
            raise ApiError(f"limit: a basket of {len(syms)} trades, at most {MAX_TRADES}")
    else:
        syms, qtys, prices = [sym], [qty], [price]
    # plain lists: a one-trade request packs and unpacks in a third of the time numpy arrays take
    return {"sym": [_one(s, "sym") for s in syms], "qty": [_number(q, "qty") for q in qtys],
            "price": [_number(p, "price", allow_null=True) for p in prices]}


def _since(value):
    """The rdb `start` argument: int ns, or text the rdb parses (ISO or q timestamp)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if not TIMESTAMP_TEXT.match(value):
            raise ApiError("type: since must be a timestamp, ISO-8601 (2026-11-21T05:00:00) or q (2026.11.21D05:00:00)")
        return value
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else int(value.astype("datetime64[ns]").view(np.int64))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
        return int(value)
    raise ApiError("type: since must be a timestamp")


class Api:
    """Named API functions over the rdb and calc; `FUNCTIONS` maps q names to methods and arities."""

    FUNCTIONS: ClassVar[dict[str, tuple[int, int]]] = {
        "margin": (0, 1), "whatif": (2, 4), "hedge": (2, 3), "positions": (1, 1), "drivers": (1, 1),
        "stress": (1, 2), "alerts": (0, 2), "scenarios": (0, 1), "accounts": (0, 1), "qsql": (1, 1),
        "breakdown": (1, 1), "recon": (1, 2), "setrule": (1, 1), "rules": (0, 1), "ack": (1, 3)}

    def __init__(self, rdb: AsyncRpcClient, calc: AsyncRpcClient, timeout: float = 10.0, ingest: str | None = None):
        self.rdb = rdb
        self.calc = calc
        self.timeout = timeout
        self.ingest = ingest                        # tickerplant ingest, for setrule
        self._publisher = None                      # created at the first setrule
        self._publish_lock = asyncio.Lock()
        self.qtypes = schema_qtypes(load_schemas())
        self._desks: dict[str, str] = {}
        self._desks_at = 0.0
        self._desks_lock = asyncio.Lock()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._queued: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, user: User) -> AsyncIterator[None]:
        """One of the user's `MAX_RUNNING` request slots; 'limit (429) with `MAX_WAITING` already queued."""
        slots = self._slots.get(user.name)
        if slots is None:
            slots = self._slots[user.name] = asyncio.Semaphore(MAX_RUNNING)
        queued = self._queued.get(user.name, 0)
        if slots.locked() and queued >= MAX_WAITING:
            raise ApiError(f"limit: user {user.name} has {MAX_RUNNING + queued} requests in progress", 429)
        self._queued[user.name] = queued + 1
        try:
            await slots.acquire()
        finally:
            self._queued[user.name] -= 1
        try:
            yield
        finally:
            slots.release()

    async def _call(self, client: AsyncRpcClient, op: str, **args) -> dict:
        try:
            reply = await client.call(op, timeout=self.timeout, **args)
        except RpcTimeout as e:
            raise ApiError(f"timeout: {op} took longer than {self.timeout:g}s", 504) from e
        except RpcError as e:
            text = str(e)
            raise ApiError(text.removeprefix("'"), 400) from e
        return reply_fields(reply)

    async def _result(self, client: AsyncRpcClient, op: str, qtypes: dict | None = None, **args) -> Result:
        """The reply as a Result: its one value (or the dict of its values), without the echo of
        the account argument; column types from the reply's `types` or `qtypes`."""
        reply = await self._call(client, op, **args)
        qtypes = reply.pop("types", None) or qtypes or {}
        if "account" in args and reply.get("account") == args["account"] and len(reply) > 1:
            del reply["account"]
        value = next(iter(reply.values())) if len(reply) == 1 else reply
        return Result(value, qtypes)

    # ---- entitlements ---------------------------------------------------------------------------
    async def desk_of(self, account: str) -> str | None:
        """The account's desk from the rdb's account table, read again (at most once a
        DESK_REFRESH_S, by one caller while the others wait for it) for an account not yet known."""
        if account not in self._desks and time.monotonic() - self._desks_at > DESK_REFRESH_S:
            async with self._desks_lock:
                if time.monotonic() - self._desks_at > DESK_REFRESH_S:
                    try:
                        reply = await self._call(self.rdb, "last", table="account", columns=["sym", "desk"])
                        table = reply["table"]
                        self._desks = dict(zip(map(str, table["sym"]), map(str, table["desk"])))
                    finally:
                        self._desks_at = time.monotonic()
        return self._desks.get(account)

    async def entitled(self, user: User, account: str) -> str:
        """The account when the user may see it, else ApiError('access')."""
        if user.sees_all or account in user.accounts or (user.desks and await self.desk_of(account) in user.desks):
            return account
        raise ApiError(f"access: user {user.name} is not entitled to account {account}", 403)

    async def visible(self, user: User, accounts) -> list[str] | None:
        """Requested accounts checked one by one; for none requested, all the user may see
        (None = no restriction)."""
        names = _names(accounts, "accounts")
        if names is not None:
            return [await self.entitled(user, a) for a in names]
        if user.sees_all:
            return None
        if user.desks:
            await self.desk_of("")          # refresh the desk map
        return sorted(set(user.accounts) | {a for a, d in self._desks.items() if d in user.desks})

    # ---- named functions --------------------------------------------------------------------------
    async def margin(self, user: User, accounts=None) -> Result:
        return await self._result(self.calc, "margin", self.qtypes["margin"],
                                  accounts=await self.visible(user, accounts))

    async def alerts(self, user: User, accounts=None, since=None) -> Result:
        return await self._result(self.rdb, "select", self.qtypes["alert"], table="alert",
                                  syms=await self.visible(user, accounts), start=_since(since))

    async def recon(self, user: User, account, n=None) -> Result:
        """The account's `recon` rows of its last n official figures (default RECON_N) and the
        accuracy per model over them (gateway.recon.accuracy)."""
        account = await self.entitled(user, _one(account, "account"))
        n = RECON_N if n is None else _number(n, "n")
        if not (n == int(n) and 1 <= n <= MAX_RECON_N):
            raise ApiError(f"type: n must be a whole number 1..{MAX_RECON_N}")
        rows = (await self._call(self.rdb, "select", table="recon", syms=[account]))["table"]
        last = last_figures(rows, int(n))
        return Result({"rows": last, "accuracy": accuracy(last)})

    async def whatif(self, user: User, account, sym, qty=None, price=None) -> Result:
        account = await self.entitled(user, _one(account, "account"))
        return await self._result(self.calc, "whatif", account=account, trades=trades_from(sym, qty, price))

    async def hedge(self, user: User, account, sym, target=None) -> Result:
        """Hedge sizing (calc.hedge) of the account with `sym`; target: the call to get under (none
        or null: 0)."""
        account = await self.entitled(user, _one(account, "account"))
        args = {"account": account, "sym": _one(sym, "sym")}
        target = _number(target, "target", allow_null=True)
        if not math.isnan(target):
            if target < 0:
                raise ApiError("type: target must be >= 0 (the call to get under)")
            args["target"] = target
        return await self._result(self.calc, "hedge", **args)

    async def positions(self, user: User, account) -> Result:
        account = await self.entitled(user, _one(account, "account"))
        return await self._result(self.calc, "positions", account=account)

    async def drivers(self, user: User, account) -> Result:
        account = await self.entitled(user, _one(account, "account"))
        return await self._result(self.calc, "drivers", account=account)

    async def stress(self, user: User, account, scenario=None) -> Result:
        account = await self.entitled(user, _one(account, "account"))
        args = {} if scenario in (None, "") else {"scenario": _one(scenario, "scenario")}
        return await self._result(self.calc, "stress", account=account, **args)

    async def breakdown(self, user: User, account) -> Result:
        account = await self.entitled(user, _one(account, "account"))
        return await self._result(self.calc, "breakdown", account=account)

    async def history(self, user: User, account) -> Result:
        """Today's margin rows of the account (time, model, im, vm, requirement, call) from the rdb."""
        account = await self.entitled(user, _one(account, "account"))
        return await self._result(self.rdb, "select", self.qtypes["margin"], table="margin", syms=[account],
                                  columns=["time", "model", "im", "vm", "requirement", "call"])

    async def account_table(self, user: User) -> dict[str, list]:
        """The reference data calc holds for each account the user may see (desk, ccp, collateral,
        buffer, thresholds, models), as columns."""
        table = (await self._call(self.calc, "accounts"))["accounts"]
        visible = await self.visible(user, None)
        keep = range(len(table["sym"])) if visible is None else \
            [i for i, a in enumerate(table["sym"]) if a in set(visible)]
        return {c: [v[i] for i in keep] for c, v in table.items()}

    async def start_of_day(self, user: User) -> dict[tuple[str, str], float]:
        """The first requirement of the day per (account, model) the user may see, from the rdb."""
        result = (await self._call(self.rdb, "qsql", query="select first requirement by sym, model from margin"))["result"]
        data = result["data"]
        visible = await self.visible(user, None)
        return {(a, m): r for a, m, r in zip(data["sym"], data["model"], data["requirement"])
                if visible is None or a in visible}

    async def health(self, timeout: float = 1.0) -> dict:
        """Whether calc and the rdb answer within `timeout`, with calc's last input seq and time."""
        async def probe(client, op, **args):
            try:
                return reply_fields(await client.call(op, timeout=timeout, **args))
            except (RpcTimeout, RpcError, OSError):
                return None
        calc, rdb = await asyncio.gather(probe(self.calc, "status"), probe(self.rdb, "count", table="margin"))
        return {"calc": calc is not None, "rdb": rdb is not None,
                "seq": calc["seq"] if calc else None, "time": calc["time"] if calc else None}

    async def scenarios(self, user: User, _=None) -> Result:
        return await self._result(self.calc, "scenarios")

    async def accounts(self, user: User, _=None) -> Result:
        visible = await self.visible(user, None)
        if visible is None:
            await self.desk_of("")
            visible = sorted(self._desks)
        return Result(visible)

    async def qsql(self, user: User, query: str) -> Result:
        if not user.sees_all:
            raise ApiError(f"access: q-sql needs a user entitled to every account ({user.name} is not)", 403)
        result = (await self._call(self.rdb, "qsql", query=query))["result"]
        kind, data, types = result["kind"], result["data"], result.get("types", {})
        if kind == "keyed":
            keys = result["keys"]
            return Result(KeyedTable({k: data[k] for k in keys}, {c: v for c, v in data.items() if c not in keys}), types)
        if kind in ("vector", "atom"):
            return Result(TypedVector(data, result["type"]) if kind == "vector" else data)
        return Result(ColumnDict(data) if kind == "dict" else data, types)

    async def may_edit(self, user: User, scope: str, target: str) -> None:
        """ApiError('access') unless the user may set a rule of this scope and target."""
        if user.sees_all:
            return
        if scope == "account":
            await self.entitled(user, target)
        elif not (scope == "desk" and target in user.desks):
            raise ApiError(f"access: user {user.name} may not set rules of scope {scope}"
                           f"{' ' + target if target else ''}", 403)

    async def setrule(self, user: User, spec) -> Result:
        rule = rule_from_spec(spec, user.name)
        await self.may_edit(user, rule.scope, rule.target)
        await self.desk_of("")                      # refresh the account -> desk map
        error = check_rule(rule, self._desks)
        if error:
            raise ApiError(f"rule: {error}")
        old = (await self._call(self.rdb, "last", table="alertrule", syms=[rule.id]))["table"]
        if len(old.get("sym", ())):                 # replacing a rule: the user must be allowed the old one too
            await self.may_edit(user, str(old["scope"][0]), str(old["target"][0]))
        seq = await self._publish("alertrule", rule_batch([rule]))
        return Result({"rule": rule.id, "scope": rule.scope, "target": rule.target, "kind": rule.kind,
                       "level": rule.level, "window": rule.window, "severity": rule.severity,
                       "channels": ",".join(rule.channels), "enabled": rule.enabled, "user": rule.user, "seq": seq})

    async def _publish(self, table: str, batch: dict) -> int:
        """Publishes a batch and waits until it is journaled; returns its seq."""
        if not self.ingest:
            raise ApiError("fail: this gateway has no tickerplant ingest endpoint (--ingest)", 503)
        async with self._publish_lock:
            return await asyncio.to_thread(self._publish_sync, table, batch)

    def _publish_sync(self, table: str, batch: dict) -> int:
        """In a worker thread, one at a time (the lock): the Publisher is made at the first use."""
        from tickerplant.client import Publisher, TickerplantError
        try:
            if self._publisher is None:
                self._publisher = Publisher("gateway.writes", self.ingest, timeout=self.timeout)
            return self._publisher.publish_sync(table, batch, timeout=self.timeout)
        except TickerplantError as e:
            raise ApiError(f"fail: the tickerplant did not take the {table} row: {e}", 503) from e

    async def ack(self, user: User, account, kind=None, note=None) -> Result:
        """Acknowledges the account's open alert episode of `kind` (every kind when none)."""
        account = await self.entitled(user, _one(account, "account"))
        kind = "" if kind in (None, "") else _one(kind, "kind")
        if note is not None and not isinstance(note, str):
            raise ApiError("type: ack note must be a string")
        now = time.time_ns()
        seq = await self._publish("ack", {"time": np.array([now], dtype=np.int64).view("datetime64[ns]"),
                                          "sym": text_array([account]), "kind": text_array([kind]),
                                          "user": text_array([user.name]), "note": text_array([note or ""])})
        return Result({"account": account, "kind": kind, "user": user.name, "seq": seq})

    async def rules(self, user: User, accounts=None) -> Result:
        """The rules in force (the latest row of each id) that concern the accounts the user sees."""
        table = (await self._call(self.rdb, "last", table="alertrule"))["table"]
        n = len(table.get("sym", ()))
        visible = await self.visible(user, accounts)
        desks = {self._desks.get(a) for a in visible} if visible is not None else None
        keep = [i for i in range(n) if visible is None or table["scope"][i] == "all"
                or (table["scope"][i] == "account" and table["target"][i] in visible)
                or (table["scope"][i] == "desk" and table["target"][i] in desks)]
        return Result({c: _take(v, keep) for c, v in table.items()}, self.qtypes["alertrule"])

    async def call(self, user: User, name: str, args: list) -> Result:
        """Dispatch a named function with positional arguments (q call semantics)."""
        arity = self.FUNCTIONS.get(name)
        if arity is None:
            raise ApiError(name or "type: the function name is empty", 400)     # q: 'name for an undefined name
        if not arity[0] <= len(args) <= arity[1]:
            if len(args) == 1 and args[0] is None and arity[0] == 0:
                args = []
            else:
                raise ApiError(f"rank: {name} takes {arity[0]}..{arity[1]} arguments, got {len(args)}")
        async with self.slot(user):
            return await getattr(self, name)(user, *args)


def _take(column, rows: list[int]):
    return column[rows] if isinstance(column, np.ndarray) else [column[i] for i in rows]


RULE_FIELDS = ("id", "scope", "target", "kind", "level", "window", "severity", "channels", "enabled")


def rule_from_spec(spec, user: str) -> Rule:
    """A Rule from a q dictionary / JSON object of RULE_FIELDS; ApiError('type') for a wrong field."""
    if not isinstance(spec, dict):
        raise ApiError(f"type: setrule takes a dictionary of {', '.join(RULE_FIELDS)}")
    unknown = set(spec) - set(RULE_FIELDS)
    if unknown:
        raise ApiError(f"type: unknown rule fields {sorted(unknown)} (fields: {', '.join(RULE_FIELDS)})")

    def text(name, default=None):
        v = spec.get(name, default)
        if not isinstance(v, str):
            raise ApiError(f"type: rule {name} must be a symbol / string, got {v!r}")
        return v

    def number(name, default=None):
        v = spec.get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ApiError(f"type: rule {name} must be a number, got {v!r}")
        return float(v)

    channels = spec.get("channels", "")
    if isinstance(channels, str):
        channels = [c for c in channels.split(",")]
    if not isinstance(channels, (list, tuple)) or not all(isinstance(c, str) for c in channels):
        raise ApiError("type: rule channels must be a list of names or a comma-separated string")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, (bool, np.bool_)):
        raise ApiError(f"type: rule enabled must be a boolean, got {enabled!r}")
    scope = text("scope")
    if scope not in SCOPES:
        raise ApiError(f"rule: scope {scope!r} is not one of {', '.join(SCOPES)}")
    kind = text("kind")
    if kind not in KINDS:
        raise ApiError(f"rule: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Rule(text("id"), scope, text("target", ""), kind, number("level"), number("window", 0.0),
                text("severity", "warn"), tuple(c.strip() for c in channels if c.strip()), bool(enabled), user,
                time.time_ns())
