"""Pre-trade what-if: the margin of an account before and after hypothetical trades, computed with
the live engine's own incremental update applied to a fork of the account's state; the engine's
state is never changed. A fork copies the O(N) values, shares the live scenario P&L vectors and keeps
its changes to them pending until one kernel call per model applies them to a scratch copy and
evaluates it (O(S) per trade and model); dicts are copy-on-write overlays.

Trades: `{"sym": [...], "qty": [...], "price": [...]}`, qty signed (buy > 0), price NaN or absent =
the current mark. A trade booked at a price away from the mark changes vm at once (like a fill).

The "before" side (margin rows and the stress of the live state) depends on the live state only, so
a `BeforeCache` (calc's RPC server keeps one) reuses it while the engine has applied no input since
(same `engine.seq`) and the account's live state object is the same (a full revaluation or drift
reset replaces it): a burst of pre-trade checks between two events pays for the "after" side only.
"""
from __future__ import annotations

import math
import operator

from calc.engine import MarginEngine
from calc.margin_model import Issue
from calc.state import AccountRisk, Holding

COMPARED = ("im", "vm", "requirement", "call", "var", "es")
MAX_QTY = 2.0**53                # beyond this a quantity is no longer a whole number held exactly


def _trades(trades: dict) -> list[tuple[str, float, float]]:
    if not isinstance(trades, dict) or "sym" not in trades or "qty" not in trades:
        raise ValueError("trades must be {'sym': [...], 'qty': [...], 'price': [...] (optional)}")
    syms, qtys = list(trades["sym"]), list(trades["qty"])
    prices = list(trades.get("price") if trades.get("price") is not None else [math.nan] * len(syms))
    if not syms or not (len(syms) == len(qtys) == len(prices)):
        raise ValueError(f"trades: {len(syms)} syms, {len(qtys)} qtys and {len(prices)} prices must be equal and > 0")
    out = []
    for sym, qty, price in zip(syms, qtys, prices):
        qty, price = float(qty), (math.nan if price is None else float(price))
        if not isinstance(sym, str) or not sym:
            raise ValueError(f"trades: bad sym {sym!r}")
        if not math.isfinite(qty) or qty == 0 or abs(qty) > MAX_QTY:
            raise ValueError(f"trades: qty of {sym} must be a non-zero number of at most 2^53 in size, got {qty:g}")
        if not (math.isnan(price) or (math.isfinite(price) and price > 0)):
            raise ValueError(f"trades: price of {sym} must be positive (or NaN for the mark), got {price}")
        out.append((sym, qty, price))
    return out


_compared = operator.itemgetter(*COMPARED)


class BeforeCache:
    """The "before" side of what-ifs per account (each model's name and COMPARED values, stress
    results by scenario), valid while `engine.seq` and the account's live AccountRisk object are
    unchanged."""

    def __init__(self):
        self._entries: dict[str, tuple[AccountRisk, int, list[tuple[str, tuple]], dict[str, dict]]] = {}

    def _entry(self, engine: MarginEngine, account: str, live: AccountRisk):
        entry = self._entries.get(account)
        if entry is None or entry[0] is not live or entry[1] != engine.seq:
            rows = engine.evaluate(account, live).rows
            entry = self._entries[account] = (live, engine.seq, [(r["model"], _compared(r)) for r in rows], {})
        return entry

    def margin(self, engine: MarginEngine, account: str, live: AccountRisk) -> list[tuple[str, tuple]]:
        """(model, its COMPARED values) per margin row of the live state."""
        return self._entry(engine, account, live)[2]

    def stress(self, engine: MarginEngine, account: str, live: AccountRisk, scenario: str) -> dict:
        stresses = self._entry(engine, account, live)[3]
        if scenario not in stresses:
            stresses[scenario] = engine.stress(account, scenario, risk=live)
        return stresses[scenario]


def state_after_trades(engine: MarginEngine, account: str, live: AccountRisk,
                       trades: list[tuple[str, float, float]], what: str = "what-if"
                       ) -> tuple[AccountRisk, dict[str, Holding], list[Issue]]:
    """The account's state with the trades (sym, signed qty, price; NaN = the mark) added: a fork of
    `live` with each traded holding revalued by the engine's own incremental update, the holdings
    after (the live ones with the traded ones replaced by changed copies) and the issues the models
    found in the hypothetical holdings. Neither `live` nor the book is changed. `what` names the
    caller in error texts."""
    book = engine.book
    risk = live.fork()
    held = book.holdings.get(account, {})
    overlay: dict[str, Holding] = {}
    for sym, qty, price in trades:
        if sym not in book.instruments:
            raise ValueError(f"{what}: unknown instrument {sym}")
        h = overlay.get(sym) or (held[sym].copy() if sym in held else Holding())
        overlay[sym] = h
        if math.isnan(price):
            price = book.mark(sym, h)
            if not math.isfinite(price):
                raise ValueError(f"{what}: no price for {sym}; give one")
        h.add(qty, price)
    issues: list[Issue] = []
    for sym, h in overlay.items():
        issues += engine.revalue_holding(account, sym, h, risk)
    return risk, {**held, **overlay}, issues


def what_if(engine: MarginEngine, account: str, trades: dict, stress: str | None = None,
            top: int | None = None, cache: BeforeCache | None = None) -> dict:
    """before / after / delta (primary model, and per model under "models"), the `top` drivers after
    (default: the alerts' top_drivers; 0: none), and the stress scenario's call before and after when
    `stress` (default: the alerts' scenario; "" for none) is set. `cache` reuses the before side."""
    parsed = _trades(trades)
    live = engine.account_risk(account)
    cache = cache or BeforeCache()
    before_rows = cache.margin(engine, account, live)
    risk, holdings, _ = state_after_trades(engine, account, live, parsed, "what-if")   # issues: not raised
    top = engine.config.alerts.top_drivers if top is None else top
    after = engine.evaluate(account, risk, top)
    after_rows, drivers = after.rows, after.drivers
    if len(after_rows) != len(before_rows) or not after_rows:
        raise ValueError(f"what-if: the margin of {account} is not computable after these trades")
    models = {}
    for (name, b), row in zip(before_rows, after_rows):
        a = _compared(row)
        models[name] = {"before": dict(zip(COMPARED, b)), "after": dict(zip(COMPARED, a)),
                        "delta": dict(zip(COMPARED, map(operator.sub, a, b)))}
    primary = before_rows[0][0]
    out = {"account": account, "model": primary, **models[primary], "models": models,
           "drivers": {"sym": [s for s, _ in drivers], "contribution": [c for _, c in drivers]}}
    scenario = stress if stress is not None else engine.config.alerts.stress_scenario
    if scenario and engine.runs_stress(account):
        s_before = cache.stress(engine, account, live, scenario)
        s_after = engine.stress(account, scenario, holdings=holdings, risk=risk)
        out["stress"] = {"scenario": scenario, "before": s_before["call"], "after": s_after["call"],
                         "delta": s_after["call"] - s_before["call"],
                         "loss_before": s_before["loss"], "loss_after": s_after["loss"]}
    return out
