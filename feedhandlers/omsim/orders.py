"""Realistic drop-copy ExecutionReports (FIX 4.4) for the demo accounts and instruments.

Orders are drawn for an account and an instrument it trades (an instrument cleared by the account's
CCP, when built from the reference data), sized to the contract value (round lots of 100 shares for
cash instruments, 1 to 20 contracts for derivatives), filled in one to four partial fills at prices that follow a random walk around each instrument's reference price;
occasionally a fill is busted (trade cancel, 150=H) or corrected (150=G, new quantity or price).
ExecIDs and OrderIDs carry a run prefix, so they stay unique across runs of the simulator.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

Fields = list[tuple[int, str]]
MAX_CONTRACTS = 20                  # largest derivatives order


def utc_timestamp(ns: int) -> str:
    """FIX UTCTimestamp with microseconds."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec)) + f".{frac // 1000:06d}"


@dataclass
class _Order:
    order_id: str
    account: str
    sym: str
    side: str
    qty: int
    cum: int = 0
    notional: float = 0.0


@dataclass
class OrderFlow:
    """Generates ExecutionReports; `next_message()` returns the body fields of the next one."""
    accounts: list[str]
    prices: dict[str, float]                 # instrument -> reference price
    books: dict[str, list[str]] | None = None    # account -> instruments it trades (None: every one)
    multipliers: dict[str, float] = field(default_factory=dict)   # contract multiplier (default 1)
    cancel_pct: float = 1.0                  # % of messages that bust an earlier fill
    correct_pct: float = 1.0                 # % of messages that correct an earlier fill
    seed: int | None = None
    run_id: str = field(default_factory=lambda: format(time.time_ns() // 1_000_000, "x"))
    _rng: random.Random = field(init=False)
    _n: int = field(init=False, default=0)
    _orders: list[_Order] = field(init=False, default_factory=list)
    _recent: list[tuple[str, _Order, int, float]] = field(init=False, default_factory=list)

    def __post_init__(self):
        if not self.accounts or not self.prices:
            raise ValueError("the order flow needs at least one account and one priced instrument")
        self._rng = random.Random(self.seed)
        self.prices = dict(self.prices)
        books = self.books or {a: list(self.prices) for a in self.accounts}
        self._books = {a: sorted(s for s in books.get(a, ()) if s in self.prices) for a in self.accounts}
        self._books = {a: syms for a, syms in self._books.items() if syms}
        if not self._books:
            raise ValueError("no account trades an instrument with a price")

    @classmethod
    def from_refdata(cls, ref: dict, accounts=None, assetclasses=None, **kwargs) -> "OrderFlow":
        """Accounts (all, or those named) trading the instruments of their own CCP at settlement prices,
        optionally only the given asset classes."""
        inst = ref["instrument"]
        prices = {str(s): float(p) for s, p in zip(ref["settle"]["sym"], ref["settle"]["price"]) if p > 0}
        ccp_of = {str(a): str(c) for a, c in zip(ref["account"]["sym"], ref["account"]["ccp"])}
        names = [a for a in ccp_of if accounts is None or a in accounts]
        tradable = [(str(s), str(c)) for s, c, k in zip(inst["sym"], inst["ccp"], inst["assetclass"])
                    if (assetclasses is None or k in assetclasses) and str(s) in prices]
        books = {a: [s for s, c in tradable if c == ccp_of[a]] for a in names}
        names = [a for a in names if books[a]]
        return cls(accounts=names, prices=prices, books=books,
                   multipliers={str(s): float(m) for s, m in zip(inst["sym"], inst["multiplier"])}, **kwargs)

    def _lot(self, sym: str) -> int:
        return 100 if self.multipliers.get(sym, 1.0) == 1.0 else 1

    def _next_id(self, kind: str) -> str:
        self._n += 1
        return f"{kind}{self.run_id}-{self._n}"

    def _new_order(self) -> _Order:
        rng = self._rng
        account = rng.choice(sorted(self._books))
        sym = rng.choice(self._books[account])
        lot = self._lot(sym)
        value = max(self.prices[sym], 1.0) * self.multipliers.get(sym, 1.0) * lot
        lots = max(1, int(20_000 / value * rng.lognormvariate(0, 0.8)))
        if lot == 1:                                  # derivatives: a few contracts, not cheap-option hundreds
            lots = min(lots, MAX_CONTRACTS)
        return _Order(self._next_id("O"), account, sym, rng.choice("12"), lots * lot)

    def _price(self, sym: str) -> float:
        px = self.prices[sym] * math.exp(self._rng.gauss(0.0, 0.0005))
        self.prices[sym] = px
        return round(px, 2)

    def next_message(self, now_ns: int | None = None) -> Fields:
        """The body of the next ExecutionReport: a fill, or a cancel / correction of a recent fill."""
        now = utc_timestamp(now_ns if now_ns is not None else time.time_ns())
        roll = self._rng.uniform(0, 100)
        if self._recent and roll < self.cancel_pct + self.correct_pct:
            return self._bust(now, correct=roll >= self.cancel_pct)
        return self._fill(now)

    def _fill(self, now: str) -> Fields:
        if not self._orders or self._rng.random() < 0.3:
            self._orders.append(self._new_order())
        order = self._orders[-1] if self._rng.random() < 0.7 else self._rng.choice(self._orders)
        left, lot = order.qty - order.cum, self._lot(order.sym)
        qty = left if left <= lot or self._rng.random() < 0.4 else lot * self._rng.randint(1, left // lot)
        px = self._price(order.sym)
        order.cum += qty
        order.notional += qty * px
        exec_id = self._next_id("E")
        if order.cum >= order.qty:
            self._orders.remove(order)
        self._recent = (self._recent + [(exec_id, order, qty, px)])[-50:]
        return self._report(order, exec_id, "F", qty, px, now)

    def _bust(self, now: str, correct: bool) -> Fields:
        ref, order, qty, px = self._recent.pop(self._rng.randrange(len(self._recent)))
        exec_id = self._next_id("E")
        if not correct:
            return self._report(order, exec_id, "H", qty, px, now, ref)
        lot = self._lot(order.sym)
        new_qty, new_px = (qty, round(px * 1.001, 2)) if self._rng.random() < 0.5 else (max(lot, qty - lot), px)
        self._recent.append((exec_id, order, new_qty, new_px))
        return self._report(order, exec_id, "G", new_qty, new_px, now, ref)

    @staticmethod
    def _report(order: _Order, exec_id: str, exec_type: str, qty: int, px: float, now: str,
                ref: str = "") -> Fields:
        avg = order.notional / order.cum if order.cum else px
        fields = [(37, order.order_id), (17, exec_id), (150, exec_type),
                  (39, "2" if order.cum >= order.qty else "1"), (1, order.account), (55, order.sym),
                  (54, order.side), (38, str(order.qty)), (32, str(qty)), (31, f"{px:.2f}"),
                  (151, str(max(order.qty - order.cum, 0))), (14, str(order.cum)), (6, f"{avg:.4f}"),
                  (60, now)]
        if ref:
            fields.append((19, ref))
        return fields
