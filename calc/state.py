"""The calc engine's book: reference data, positions, prices, settlements and collateral per account.

Pure bookkeeping, no risk numbers. Per (account, instrument) a `Holding` keeps the part settled at the
last settlement (`settled_qty` at `settled_price`, from the start-of-day `position` row or the last
`settle`) apart from the day's fills (`fill_qty`, `fill_cost` = sum of qty * price), so that

    value = qty * mark * multiplier                      with qty = settled_qty + fill_qty
    vm    = multiplier * (settled_qty * (mark - settled_price) + fill_qty * mark - fill_cost)

vm is the mark-to-market since the last settlement (> 0 a gain, < 0 a loss the account owes). The mark
is the last valid `quote.price`, else the last `settle` price, else the settled price of a position,
else the last fill price. Cancels and corrections arrive as reversal fills (negated qty) and net out.
A `settle` row for an instrument moves every holding of it to `settled_qty = qty` at the settle price:
the day's vm is then paid and vm restarts from zero.
"""
from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import numpy as np

from calc.exact import ExactSum


@dataclass
class Instrument:
    sym: str
    assetclass: str = ""
    ccy: str = ""
    multiplier: float = 1.0
    sector: str = ""
    ccp: str = ""
    model: str = ""
    underlying: str = ""
    adv: float = math.nan


@dataclass
class Account:
    sym: str
    desk: str = ""
    ccp: str = ""
    model: str = "var"
    ccy: str = ""
    posted: float = 0.0             # account.collateral: the balance when the account row was loaded
    moved: ExactSum = field(default_factory=ExactSum)   # intraday `collateral` movements since
    buffer: float = 0.0
    threshold: float = math.inf
    callpct: float = math.inf
    imjump: float = math.inf
    imjumpmins: float = 0.0

    @property
    def movements(self) -> float:
        return self.moved.value

    @property
    def collateral(self) -> float:
        return self.posted + self.moved.value


def variation_margin(settled_qty, settled_price, fill_qty, fill_cost, mark, multiplier):
    """vm of holdings at `mark` (floats, or numpy arrays of several holdings)."""
    return multiplier * (settled_qty * (mark - settled_price) + fill_qty * mark - fill_cost)


class Holding:
    """One account's position in one instrument: the settled part and the day's fills, their
    quantity and cost (sum of qty * price) kept as exact sums (calc.exact), so that a fill and its
    cancel leave the holding exactly as it was."""
    __slots__ = ("settled_qty", "settled_price", "_fill_qty", "_fill_cost")

    def __init__(self, settled_qty: float = 0.0, settled_price: float = 0.0):
        self.settled_qty, self.settled_price = settled_qty, settled_price
        self._fill_qty, self._fill_cost = ExactSum(), ExactSum()

    @property
    def fill_qty(self) -> float:
        return self._fill_qty.value

    @property
    def fill_cost(self) -> float:
        return self._fill_cost.value

    @property
    def qty(self) -> float:
        return self.settled_qty + self._fill_qty.value

    def add(self, qty: float, price: float) -> None:
        """A fill (or a reversal: negated qty) of qty at price."""
        self._fill_qty.add(qty)
        self._fill_cost.add(qty * price)

    def settle(self, price: float) -> None:
        """Settlement at price: the whole position becomes the settled part, the fills restart."""
        self.settled_qty, self.settled_price = self.qty, price
        self._fill_qty, self._fill_cost = ExactSum(), ExactSum()

    def vm(self, mark: float, multiplier: float) -> float:
        return variation_margin(self.settled_qty, self.settled_price, self.fill_qty, self.fill_cost, mark, multiplier)

    def copy(self) -> Holding:
        h = Holding(self.settled_qty, self.settled_price)
        h._fill_qty, h._fill_cost = self._fill_qty.copy(), self._fill_cost.copy()
        return h

    def __repr__(self) -> str:
        return (f"Holding(settled_qty={self.settled_qty!r}, settled_price={self.settled_price!r}, "
                f"fill_qty={self.fill_qty!r}, fill_cost={self.fill_cost!r})")


def valid_price(p: float) -> bool:
    return math.isfinite(p) and p > 0


@dataclass
class Book:
    """All accounts' holdings and the market state they are valued at."""
    instruments: dict[str, Instrument] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    holdings: dict[str, dict[str, Holding]] = field(default_factory=dict)   # account -> sym -> Holding
    holders: dict[str, set[str]] = field(default_factory=dict)              # sym -> accounts holding it
    last: dict[str, float] = field(default_factory=dict)                    # sym -> last valid quote price
    settle: dict[str, float] = field(default_factory=dict)                  # sym -> last settlement price
    vol: dict[str, float] = field(default_factory=dict)                     # sym -> last annualised vol
    last_fill: dict[str, float] = field(default_factory=dict)               # sym -> last fill price

    def mark(self, sym: str, holding: Holding | None = None) -> float:
        """The price a position in `sym` is valued at (NaN when there is none at all)."""
        p = self.last.get(sym)
        if p is None:
            p = self.settle.get(sym)
        if p is not None:
            return p
        if holding is not None and holding.settled_qty and valid_price(holding.settled_price):
            return holding.settled_price
        return self.last_fill.get(sym, math.nan)

    def marks(self, syms: list[str], holdings: list[Holding]) -> list[float]:
        """`mark` of each (sym, holding) pair; the last quote prices looked up in one pass."""
        last = self.last.get
        return [p if (p := last(s)) is not None else self.mark(s, h) for s, h in zip(syms, holdings)]

    def multiplier(self, sym: str) -> float:
        inst = self.instruments.get(sym)
        return inst.multiplier if inst else 1.0

    def holding(self, account: str, sym: str) -> Holding:
        """The holding of `account` in `sym`, created (flat) when absent."""
        book = self.holdings.setdefault(account, {})
        h = book.get(sym)
        if h is None:
            h = book[sym] = Holding()
            self.holders.setdefault(sym, set()).add(account)
        return h

    def set_position(self, account: str, sym: str, qty: float, price: float) -> Holding:
        """A start-of-day position row: replaces the settled part, keeps the day's fills."""
        h = self.holding(account, sym)
        h.settled_qty, h.settled_price = qty, price
        return h

    def add_fill(self, account: str, sym: str, qty: float, price: float) -> Holding:
        """A fill (or a cancel's reversal) at `price`; a valid price becomes the sym's last fill price."""
        h = self.holding(account, sym)
        h.add(qty, price)
        if valid_price(price):
            self.last_fill[sym] = price
        return h

    def apply_settle(self, sym: str, price: float) -> None:
        """Settlement of `sym`: every holding restarts its vm from `price`."""
        self.settle[sym] = price
        for account in self.holders.get(sym, ()):
            self.holdings[account][sym].settle(price)

    def positions(self, account: str) -> dict[str, float]:
        """Non-zero positions of an account, sym -> qty."""
        return {s: h.qty for s, h in self.holdings.get(account, {}).items() if h.qty != 0}



@dataclass(slots=True)
class Exposure:
    """One account under one risk model, kept incrementally and exactly (calc.exact): the effective
    value per universe column (value x intraday vol scale of the instruments mapped to the column,
    their exactly rounded sum), and the scenario P&L vector (scenario models) or cv = C @ values with
    sigma2 = values' C values (parametric), each held as exact sums ``hi`` / ``lo`` with its value.

    A fork (what-if) shares the live P&L vectors and never writes to them: its changes stay pending
    (`pending_rows`, `pending_olds`, `pending_news`: history column, its value before and after) for
    the kernels to apply to scratch copies when they evaluate it. None on a live exposure."""
    values: np.ndarray
    pnl: np.ndarray | None = None
    cv: np.ndarray | None = None
    hi: np.ndarray | None = None                                 # exact sums of pnl or cv (calc.exact)
    lo: np.ndarray | None = None
    sigma2: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)        # instrument -> its share of values[col]
    addons: dict[str, float] = field(default_factory=dict)       # instrument -> liquidity add-on
    unmodelled: dict[str, float] = field(default_factory=dict)   # instrument -> |value| charged in full
    addon_sum: ExactSum = field(default_factory=ExactSum)
    unmodelled_sum: ExactSum = field(default_factory=ExactSum)
    pending_rows: list[int] | None = None
    pending_olds: list[float] | None = None
    pending_news: list[float] | None = None

    @property
    def addon_total(self) -> float:
        return self.addon_sum.value

    @property
    def unmodelled_total(self) -> float:
        return self.unmodelled_sum.value

    def fork(self) -> Exposure:
        """A copy to change freely while this one stays unchanged (what-if): values and cv copied, the
        P&L vectors shared with its changes pending, dicts as copy-on-write `Overlay`s (O(changes),
        not O(positions))."""
        rows = olds = news = None
        hi, lo, cv = self.hi, self.lo, self.cv
        if self.pnl is not None:
            rows, olds, news = (list(self.pending_rows or ()), list(self.pending_olds or ()),
                                list(self.pending_news or ()))
        elif cv is not None:
            hi, lo, cv = hi.copy(), lo.copy(), cv.copy()
        return Exposure(self.values.copy(), self.pnl, cv, hi, lo, self.sigma2, Overlay(self.parts),
                        Overlay(self.addons), Overlay(self.unmodelled), self.addon_sum.copy(),
                        self.unmodelled_sum.copy(), rows, olds, news)


_ABSENT = object()


class Overlay(MutableMapping):
    """A copy-on-write view of a dict: reads fall through to `base`, which it never changes; writes
    and deletions stay in the view. Valid while `base` itself does not change."""
    __slots__ = ("base", "changed", "removed")

    def __init__(self, base: dict):
        self.base, self.changed, self.removed = base, {}, set()

    def get(self, key, default=None):
        value = self.changed.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
        return default if key in self.removed else self.base.get(key, default)

    def __getitem__(self, key):
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value) -> None:
        self.changed[key] = value
        self.removed.discard(key)

    def __delitem__(self, key) -> None:
        if key not in self:
            raise KeyError(key)
        self.changed.pop(key, None)
        self.removed.add(key)

    def __iter__(self):
        yield from (k for k in self.base if k not in self.changed and k not in self.removed)
        yield from self.changed

    def items(self):
        """(key, value) pairs, without a lookup per key (MutableMapping's items() does one)."""
        changed, removed = self.changed, self.removed
        yield from ((k, v) for k, v in self.base.items() if k not in changed and k not in removed)
        yield from changed.items()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        if self.changed:
            return True
        removed = self.removed
        return any(k not in removed for k in self.base) if removed else bool(self.base)


@dataclass
class AccountRisk:
    """An account's incrementally kept numbers: vm per instrument and total, and one state per margin
    model (calc.margin_model: an `Exposure` for the VaR family, a SpanExposure for SPAN)."""
    models: dict[str, object] = field(default_factory=dict)
    vm_parts: dict[str, float] = field(default_factory=dict)
    vm_sum: ExactSum = field(default_factory=ExactSum)

    @property
    def vm(self) -> float:
        return self.vm_sum.value

    def fork(self) -> AccountRisk:
        """A copy to change freely while this one stays unchanged (what-if; see `Exposure.fork`)."""
        return AccountRisk({n: e.fork() for n, e in self.models.items()}, Overlay(self.vm_parts), self.vm_sum.copy())
