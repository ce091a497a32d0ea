"""`SpanParams` compiled into flat arrays for the kernels, and the numeric state of a portfolio.

Contracts are numbered in `SpanParams.contracts` order; each belongs to a combined commodity and a
contract-month slot (combined commodity x futures month, slots of one combined commodity contiguous
and sorted by month, so a tier is a slot range). Spreads become leg tables sorted by priority.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .model import FUTURE, N_SCENARIOS, SOM_MAX_SIDE, SpanParams
from .riskarray import ScanInputs, scan_inputs


class SpanState:
    """The numeric state of one portfolio (see calc.span.kernels): vec (C, 16), slot_delta (slots),
    short_calls, short_puts and nov (C), views into one flat vector `value`, kept as the exact sums
    `hi` + `lo` of their terms (calc.exact)."""
    __slots__ = ("n_cc", "n_slots", "value", "hi", "lo", "vec", "slot_delta", "short_calls", "short_puts", "nov")

    def __init__(self, n_cc: int, n_slots: int, value: np.ndarray | None = None, hi: np.ndarray | None = None,
                 lo: np.ndarray | None = None):
        size = n_cc * N_SCENARIOS + n_slots + 3 * n_cc
        self.n_cc, self.n_slots = n_cc, n_slots
        self.value = np.zeros(size) if value is None else value
        self.hi = np.zeros(size) if hi is None else hi
        self.lo = np.zeros(size) if lo is None else lo
        a = n_cc * N_SCENARIOS
        b = a + n_slots
        self.vec = self.value[:a].reshape(n_cc, N_SCENARIOS)
        self.slot_delta = self.value[a:b]
        self.short_calls, self.short_puts, self.nov = (self.value[b + i * n_cc:b + (i + 1) * n_cc] for i in range(3))

    def copy(self) -> SpanState:
        return SpanState(self.n_cc, self.n_slots, self.value.copy(), self.hi.copy(), self.lo.copy())


class CompiledParams:
    """Arrays of one parameter set; `index` maps instrument symbols to contract numbers."""

    def __init__(self, params: SpanParams):
        self.params = params
        contracts = params.contracts
        self.symbols = [c.symbol for c in contracts]
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            seen: set[str] = set()
            twice = sorted({s for s in self.symbols if s in seen or seen.add(s)})
            raise ValueError(f"several contracts map to the same instrument symbol: {twice[:5]}")
        self.cc_codes = list(params.combined)
        cc_index = {code: i for i, code in enumerate(self.cc_codes)}
        product_cc = params.combined_of()
        n = len(contracts)
        self.contract_cc = np.empty(n, dtype=np.int64)
        for i, c in enumerate(contracts):
            if c.product_key not in product_cc:
                raise ValueError(f"contract {c.symbol}: product {c.product_key} is in no combined commodity")
            self.contract_cc[i] = cc_index[product_cc[c.product_key]]
        self.risk = np.array([c.risk for c in contracts], dtype=np.float64).reshape(n, N_SCENARIOS)
        self.kind = np.array([c.kind for c in contracts], dtype=np.int64)
        scaling = np.array([params.scan[c.series_key].delta_scaling if c.series_key in params.scan else 1.0
                            for c in contracts])
        self.delta_scaling = scaling
        self.delta = np.array([c.delta for c in contracts], dtype=np.float64) * scaling
        premium = np.array([params.combined[code].option_style == "P" for code in self.cc_codes], dtype=np.bool_)
        cvf = np.array([params.products[c.product_key].cvf for c in contracts])
        self.price = np.array([c.price for c in contracts], dtype=np.float64)
        self.option_value = np.where((self.kind != FUTURE) & premium[self.contract_cc], self.price * cvf, 0.0)
        self._compile_slots(contracts)
        self._compile_cc(premium)
        self._compile_inter(cc_index)
        self.scan: ScanInputs = scan_inputs(params)

    # ---- slots, tiers, intra spreads, spot months --------------------------------------------------
    def _compile_slots(self, contracts) -> None:
        keys = sorted({(int(self.contract_cc[i]), c.futures_month) for i, c in enumerate(contracts)}
                      | {(ci, sm.month) for ci, code in enumerate(self.cc_codes)
                         for sm in self.params.combined[code].spot_months})
        slot_of = {k: s for s, k in enumerate(keys)}
        self.slot_cc = np.array([k[0] for k in keys], dtype=np.int64)
        self.slot_month = np.array([k[1] for k in keys], dtype=np.int64)
        self.contract_slot = np.array([slot_of[(int(self.contract_cc[i]), c.futures_month)]
                                       for i, c in enumerate(contracts)], dtype=np.int64)
        self.cc_slot_start = np.searchsorted(self.slot_cc, np.arange(len(self.cc_codes) + 1)).astype(np.int64)
        self.spot_spread_rate = np.zeros(len(keys))
        self.spot_outright_rate = np.zeros(len(keys))
        for ci, code in enumerate(self.cc_codes):
            for sm in self.params.combined[code].spot_months:
                s = slot_of[(ci, sm.month)]
                self.spot_spread_rate[s], self.spot_outright_rate[s] = sm.spread_rate, sm.outright_rate

    def _month_range(self, ci: int, start: int, end: int) -> tuple[int, int]:
        lo, hi = self.cc_slot_start[ci], self.cc_slot_start[ci + 1]
        months = self.slot_month[lo:hi]
        return lo + int(np.searchsorted(months, start, "left")), lo + int(np.searchsorted(months, end, "right"))

    def _compile_cc(self, premium) -> None:
        intra_start, rates, leg_start, lo, hi, ratio, side = [0], [], [0], [], [], [], []
        for ci, code in enumerate(self.cc_codes):
            cc = self.params.combined[code]
            tiers = {t.number: t for t in cc.tiers}
            for spread in sorted(cc.intra_spreads, key=lambda s: s.priority):
                for leg in spread.legs:
                    start, end = ((tiers[leg.tier].start_month, tiers[leg.tier].end_month) if leg.tier
                                  else (leg.month, leg.month))
                    a, b = self._month_range(ci, start, end)
                    lo.append(a), hi.append(b), ratio.append(leg.ratio), side.append(1.0 if leg.side == "A" else -1.0)
                rates.append(spread.rate)
                leg_start.append(len(lo))
            intra_start.append(len(rates))
        as_i = lambda v: np.array(v, dtype=np.int64)
        self.intra_start, self.intra_leg_start = as_i(intra_start), as_i(leg_start)
        self.intra_rate, self.leg_lo, self.leg_hi = np.array(rates, dtype=np.float64), as_i(lo), as_i(hi)
        self.leg_ratio, self.leg_side = np.array(ratio, dtype=np.float64), np.array(side, dtype=np.float64)
        ccs = [self.params.combined[code] for code in self.cc_codes]
        self.som_rate = np.array([cc.som_rate for cc in ccs], dtype=np.float64)
        self.som_max_side = np.array([cc.som_method == SOM_MAX_SIDE for cc in ccs], dtype=np.bool_)
        self.premium = premium
        self.init_ratio = np.array([cc.init_ratio for cc in ccs], dtype=np.float64)

    def _compile_inter(self, cc_index) -> None:
        rates, leg_start, leg_cc, ratio, side = [], [0], [], [], []
        for spread in sorted(self.params.inter_spreads, key=lambda s: s.priority):
            if any(leg.cc not in cc_index for leg in spread.legs):
                continue    # a spread with a combined commodity this file does not define never forms
            for leg in spread.legs:
                leg_cc.append(cc_index[leg.cc]), ratio.append(leg.ratio), side.append(1.0 if leg.side == "A" else -1.0)
            rates.append(spread.rate)
            leg_start.append(len(leg_cc))
        self.inter_rate = np.array(rates, dtype=np.float64)
        self.inter_leg_start = np.array(leg_start, dtype=np.int64)
        self.inter_leg_cc = np.array(leg_cc, dtype=np.int64)
        self.inter_leg_ratio = np.array(ratio, dtype=np.float64)
        self.inter_leg_side = np.array(side, dtype=np.float64)

    # ---- state and requirement -----------------------------------------------------------------
    def empty_state(self) -> SpanState:
        return SpanState(len(self.cc_codes), len(self.slot_cc))

    def state_of(self, idx: np.ndarray, qty: np.ndarray) -> SpanState:
        state = self.empty_state()
        kernels.aggregate(np.asarray(qty, dtype=np.float64), np.asarray(idx, dtype=np.int64), self.risk,
                          self.delta, self.contract_cc, self.contract_slot, self.kind, self.option_value,
                          state.value, state.hi, state.lo, state.n_cc, state.n_slots)
        return state

    def apply(self, state: SpanState, j: int, q_old: float, q_new: float) -> None:
        kernels.apply_change(j, q_old, q_new, self.risk, self.delta, self.contract_cc, self.contract_slot,
                             self.kind, self.option_value, state.value, state.hi, state.lo, state.n_cc, state.n_slots)

    def moved(self, state: SpanState, j: int, q: float, old_risk: np.ndarray, old_delta: float) -> None:
        """Held contract j (qty q) got new risk arrays / delta (`reprice`, `revol`): its terms move."""
        kernels.reprice(j, q, old_risk, old_delta, self.risk, self.delta, self.contract_cc, self.contract_slot,
                        state.value, state.hi, state.lo, state.n_cc)

    def breakdown(self, state: SpanState) -> np.ndarray:
        """out[C, kernels.N_OUT]: the SPAN breakdown per combined commodity."""
        out = np.zeros((len(self.cc_codes), kernels.N_OUT))
        kernels.requirement(state.vec, state.slot_delta, state.short_calls, state.short_puts, state.nov,
                            self.cc_slot_start, self.spot_spread_rate, self.spot_outright_rate,
                            self.intra_start, self.intra_rate, self.intra_leg_start, self.leg_lo, self.leg_hi,
                            self.leg_ratio, self.leg_side, self.som_rate, self.som_max_side, self.premium,
                            self.init_ratio, self.inter_rate, self.inter_leg_start, self.inter_leg_cc,
                            self.inter_leg_ratio, self.inter_leg_side, out)
        return out

    # ---- intraday price and volatility changes -------------------------------------------------------
    def reprice(self, symbol: str, price: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A new futures price: recompute the risk arrays and deltas of that future and the options
        on it that have scan parameters. Returns (rows, old risk rows, old delta rows) so holders
        of those contracts can update their state by qty x (new - old)."""
        j = self.index[symbol]
        if self.kind[j] != FUTURE:
            raise ValueError(f"{symbol} is not a futures contract: option arrays follow their underlying")
        self.scan.price[j] = price
        self.price[j] = price
        return self._recompute(np.flatnonzero(self.scan.has_scan & (self.scan.underlying == j)))

    def revol(self, symbol: str, vol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A new implied volatility for an option with scan parameters: recompute its risk array and
        delta. Returns (rows, old risk rows, old delta rows) as `reprice`."""
        j = self.index[symbol]
        if self.kind[j] == FUTURE or not self.scan.has_scan[j]:
            raise ValueError(f"{symbol} is not an option with scan parameters (record B)")
        if not vol > 0.0:
            raise ValueError(f"volatility of {symbol} must be positive, got {vol!r}")
        self.scan.vol[j] = vol
        return self._recompute(np.array([j], dtype=np.int64))

    def _recompute(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        old_risk, old_delta = self.risk[rows].copy(), self.delta[rows].copy()
        raw_delta = self.delta / self.delta_scaling
        self.scan.run(rows, self.risk, raw_delta)
        self.delta[rows] = raw_delta[rows] * self.delta_scaling[rows]
        return rows, old_risk, old_delta
