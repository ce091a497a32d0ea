"""`SpanAccount`: the live SPAN state of one account, for the calc engine.

Keeps each combined commodity's 16-vector, contract-month deltas, short option counts and net
option value up to date per fill in O(16); the requirement is recomputed from that state by one
kernel call (O(combined commodities x 16 + spreads)), never by revaluing positions. A what-if works
on a `copy()` (the engine's what-if goes through calc.span_model like every model's). Wiring for the engine (accounts whose model is `span`):

    params = calc.span.load("data/span/demo.pa2")       # on start-up and on a `paramfile` row
    acct = SpanAccount(params, "ACC_SPAN", positions={"ESZ26": 10, "ESZ26P5800": -5})
    im = acct.fill("NQZ26", -3)                          # per fill row: new initial margin
    acct.reprice("ESZ26", 6012.5)                        # per quote of a future: its arrays and its options'
    acct.revol("ESZ26C6200", 0.24)                       # per quote with a vol of an option: its array
    after = acct.copy(); after.fill("ESH27", -10)         # pre-trade on a copy, state unchanged
    acct.result()                                        # SpanResult: im, maintenance, by_cc, positions

On a new parameter file call `acct.rebase(new_params)` (full recomputation). Several accounts
sharing one `CompiledParams` must all be told of a reprice: call `params.reprice` once and
`acct.on_reprice(*changes)` for each account (`SpanBook` does that).
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .compiled import CompiledParams, SpanState
from .margin import SpanResult, positions_arrays, result_of


class SpanAccount:
    """The SPAN positions and numeric state of one account under one parameter set."""

    def __init__(self, params: CompiledParams, account: str = "", positions=None):
        self.account = account
        self.params = params
        self.qty: dict[int, float] = {}
        self.state: SpanState = params.empty_state()
        self.n_held = np.zeros(len(params.cc_codes), dtype=np.int64)   # open positions per combined commodity
        if positions:
            idx, qty = positions_arrays(params, positions)
            self.qty = dict(zip(idx.tolist(), qty.tolist()))
            self.state = params.state_of(idx, qty)
            np.add.at(self.n_held, params.contract_cc[idx], 1)

    # ---- per event ---------------------------------------------------------------------------
    def fill(self, sym: str, qty: float) -> float:
        """Book a fill (signed qty) and return the new initial margin."""
        j = self._contract(sym)
        return self.hold(sym, self.qty.get(j, 0.0) + _finite(sym, qty))

    def hold(self, sym: str, qty: float) -> float:
        """Set the position in `sym` to `qty` and return the new initial margin."""
        j = self._contract(sym)
        self._set(self.state, self.n_held, j, self.qty.get(j, 0.0), _finite(sym, qty))
        if qty == 0.0:
            self.qty.pop(j, None)
        else:
            self.qty[j] = float(qty)
        return self.initial()

    def copy(self) -> SpanAccount:
        """A copy sharing the parameters, to change freely (what-if)."""
        out = SpanAccount.__new__(SpanAccount)
        out.account, out.params, out.qty = self.account, self.params, dict(self.qty)
        out.state, out.n_held = self.state.copy(), self.n_held.copy()
        return out

    def initial(self) -> float:
        """Initial margin of the current state (one kernel call)."""
        return self._initial(self.state, self.n_held)

    def on_reprice(self, rows: np.ndarray, old_risk: np.ndarray, old_delta: np.ndarray) -> None:
        """Contracts `rows` got new risk arrays / deltas in the shared params: move the state by
        qty x (new - old) for the ones held."""
        for r, j in enumerate(rows.tolist()):
            q = self.qty.get(j)
            if q is not None:
                self.params.moved(self.state, j, q, old_risk[r], old_delta.item(r))

    def reprice(self, sym: str, price: float) -> None:
        """A new futures price for an account that is the only user of its params."""
        self.on_reprice(*self.params.reprice(sym, price))

    def revol(self, sym: str, vol: float) -> None:
        """A new option volatility for an account that is the only user of its params."""
        self.on_reprice(*self.params.revol(sym, vol))

    def rebase(self, params: CompiledParams) -> None:
        """New parameter file: rebuild the state from the positions. A position whose instrument the
        new file lacks raises KeyError and leaves the account on its old parameters."""
        fresh = SpanAccount(params, self.account, self.positions())
        self.__dict__.update(fresh.__dict__)

    # ---- queries -----------------------------------------------------------------------------
    def result(self, with_positions: bool = True) -> SpanResult:
        idx, qty = self._arrays()
        return result_of(self.params, self.state, idx, qty, with_positions)

    def positions(self) -> dict[str, float]:
        return {self.params.symbols[j]: q for j, q in self.qty.items()}

    # ---- helpers -----------------------------------------------------------------------------
    def _contract(self, sym: str) -> int:
        j = self.params.index.get(sym)
        if j is None:
            raise KeyError(f"instrument {sym!r} is not in the SPAN parameter file {self.params.params.source!r}")
        return j

    def _set(self, state: SpanState, n_held: np.ndarray, j: int, old: float, new: float) -> None:
        """Move `state` / `n_held` for the position in contract j going from old to new. O(16)."""
        self.params.apply(state, j, old, new)
        if (old == 0.0) != (new == 0.0):
            n_held[self.params.contract_cc[j]] += 1 if old == 0.0 else -1

    def _initial(self, state: SpanState, n_held: np.ndarray) -> float:
        return kernels.held_total(self.params.breakdown(state), kernels.INIT, n_held)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        idx = np.fromiter(self.qty.keys(), dtype=np.int64, count=len(self.qty))
        return idx, np.fromiter(self.qty.values(), dtype=np.float64, count=len(self.qty))


def _finite(sym: str, qty) -> float:
    q = float(qty)
    if not math.isfinite(q):
        raise ValueError(f"quantity of {sym!r} must be a finite number, got {qty!r}")
    return q


class SpanBook:
    """All SPAN accounts of one parameter set: a reprice reaches every account."""

    def __init__(self, params: CompiledParams):
        self.params = params
        self.accounts: dict[str, SpanAccount] = {}

    def account(self, name: str) -> SpanAccount:
        if name not in self.accounts:
            self.accounts[name] = SpanAccount(self.params, name)
        return self.accounts[name]

    def reprice(self, sym: str, price: float) -> None:
        self._broadcast(self.params.reprice(sym, price))

    def revol(self, sym: str, vol: float) -> None:
        self._broadcast(self.params.revol(sym, vol))

    def _broadcast(self, changes) -> None:
        for acct in self.accounts.values():
            acct.on_reprice(*changes)
