"""SPAN as a margin model (accounts whose reference data `model` is `span`): the parameter file's
risk arrays (calc.span), one `SpanAccount` per account updated in O(16) per position change, and one
`SpanBook` so a futures price or an option vol moves every SPAN account at once.

    im      the SPAN initial requirement (scan + intra spread + spot - inter credit, floored by SOM,
            less NOV) + the full value of positions the parameter file does not list
    var, es NaN (SPAN has none)
    drivers each position's scan risk plus its full-value charge (they sum to the scan risk, not im)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from calc.exact import ExactSum
from calc.margin_model import Issue, MarginModel, Measure, Position
from calc.span import SpanAccount, SpanBook, SpanFileError
from calc.span import load as load_span
from calc.span.model import FUTURE
from calc.state import Book, Overlay
from calc.var_model import relative_difference
from common.defaults import REPO_ROOT

log = logging.getLogger(__name__)
NAN = float("nan")


@dataclass
class SpanExposure:
    """One account under SPAN: its SpanAccount (None without parameters) and the full-value charges
    of positions SPAN cannot price."""
    account: SpanAccount | None
    unmodelled: dict[str, float] = field(default_factory=dict)
    unmodelled_sum: ExactSum = field(default_factory=ExactSum)

    def fork(self) -> SpanExposure:
        """A copy to change freely (what-if), sharing the parameters."""
        return SpanExposure(None if self.account is None else self.account.copy(), Overlay(self.unmodelled),
                            self.unmodelled_sum.copy())


class SpanModel(MarginModel):
    """SPAN under the parameter file `path` (relative paths from the repo root; "" = none yet: every
    position is then charged in full, with the reason as an alert)."""
    paramfile_kind = "span"

    def __init__(self, name: str, path: str = ""):
        self.name = name
        self.book: SpanBook | None = None
        self.problem = "no SPAN parameter file configured"
        if path:
            self.load(path)

    def load(self, path: str) -> str:
        full = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
        try:
            self.book = SpanBook(load_span(full))
            return ""
        except (OSError, ValueError, SpanFileError) as e:
            self.problem = f"SPAN parameter file {path} could not be loaded: {e}"
            log.error("%s", self.problem)
            return self.problem

    # ---- state ---------------------------------------------------------------------------------
    def new_state(self, account: str) -> SpanExposure:
        return SpanExposure(SpanAccount(self.book.params, account) if self.book else None)

    def install(self, account: str, state: SpanExposure) -> None:
        if self.book is not None and state.account is not None:
            self.book.accounts[account] = state.account          # reprices reach it from now on

    def apply(self, account: str, state: SpanExposure, p: Position) -> list[Issue]:
        """The position in the account's SpanAccount (O(16) per change), or a full-value charge."""
        j = state.account.params.index.get(p.sym) if state.account is not None else None
        charge = 0.0 if j is not None else abs(p.value)
        if j is not None and p.qty != state.account.qty.get(j, 0.0):
            state.account.hold(p.sym, p.qty)
        if charge or p.sym in state.unmodelled:
            state.unmodelled_sum.replace(state.unmodelled.get(p.sym, 0.0), charge)
            state.unmodelled[p.sym] = charge
        if not charge:
            return []
        why = (f"instrument {p.sym} is not in the reference data" if p.inst is None
               else f"{p.sym} is not in the SPAN parameters" if self.book else self.problem)
        return [Issue(account, "data", f"{why}: model {self.name} charges the position its full value {charge:,.0f}",
                      self.name, (account, "unmodelled", p.sym, self.name))]

    # ---- results -------------------------------------------------------------------------------
    def measure(self, state: SpanExposure, top: int = 0) -> Measure:
        im = (state.account.initial() if state.account is not None else 0.0) + state.unmodelled_sum.value
        return Measure(im, NAN, NAN, math.isfinite(im), self.drivers(state, top) if top else [])

    def drivers(self, state: SpanExposure, top: int | None = None) -> list[tuple[str, float]]:
        out = {p.sym: p.scan for p in state.account.result().positions} if state.account is not None else {}
        for sym, charge in state.unmodelled.items():
            if charge:
                out[sym] = out.get(sym, 0.0) + charge
        ranked = sorted(((s, float(c)) for s, c in out.items() if c), key=lambda sc: -sc[1])
        return ranked if top is None else ranked[:top]

    BREAKDOWN = ("cc", "currency", "scan", "intra", "spot", "inter", "som", "risk", "nov", "initial", "maintenance")

    def breakdown(self, state: SpanExposure) -> dict[str, list]:
        """Per combined commodity: scan risk, intra-commodity spread charge, spot charge, inter-commodity
        credit, short option minimum, the risk they give, net option value, initial and maintenance."""
        rows = state.account.result(with_positions=False).by_cc if state.account is not None else []
        return {c: [getattr(r, c) for r in rows] for c in self.BREAKDOWN}

    def drift(self, state: SpanExposure, full: SpanExposure) -> float:
        worst = relative_difference(state.unmodelled_sum.value, full.unmodelled_sum.value)
        if state.account is not None and full.account is not None:
            a, b = state.account.state, full.account.state
            worst = max(worst, relative_difference(a.value, b.value), relative_difference(a.hi, b.hi),
                        relative_difference(a.lo, b.lo))
        return worst

    # ---- market --------------------------------------------------------------------------------
    def on_quotes(self, priced, vol_changed, book: Book) -> tuple[set[str], set[str]]:
        """Futures prices and option vols in the parameters move their risk arrays, for every SPAN
        account at once (SpanBook); O(16) per account holding an affected contract."""
        if self.book is None:
            return set(), set()
        params, moved = self.book.params, False
        for sym in priced:
            j = params.index.get(sym)
            if j is not None and params.kind[j] == FUTURE:
                self.book.reprice(sym, book.last[sym])
                moved = True
        for sym in vol_changed:
            j = params.index.get(sym)
            if j is not None and params.kind[j] != FUTURE and params.scan.has_scan[j]:
                self.book.revol(sym, book.vol[sym])
                moved = True
        return set(), set(self.book.accounts) if moved else set()
