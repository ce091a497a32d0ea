"""Hedge sizing: for an account and a hedge instrument, the trade quantity that minimises the
account's requirement, the smallest quantities that bring the predicted call and the stress call
under a target, and the curve of requirement (call, stress call) against quantity.

This module owns the search only. Every quantity it looks at is a what-if of one trade at the mark:
`calc.whatif.state_after_trades` forks the live `AccountRisk` and revalues the hedge's hypothetical
`Holding` with the engine's own update, `MarginEngine.evaluate` gives the margin rows and
`MarginEngine.stress` the stress call of that state. There is no margin arithmetic here and the
live state is never changed.

The search, all quantities whole numbers (the trade to add, signed: buy > 0):

1. Bracket `[-Q, Q]`, Q = the account's gross exposure (sum of |value| of its positions) / the value
   of one unit of the hedge (price x multiplier), rounded up, at least 1.
2. Coarse curve: `points` evenly spaced quantities over the bracket, 0 included, each with margin
   and stress. When the lowest requirement is at an end of the bracket (a book of high-beta names
   hedged with an index needs more than its own notional), the bracket is doubled and the curve
   taken again over it (points already evaluated are reused), at most `MAX_BRACKET_DOUBLINGS`
   times; the curve returned is the last one.
3. Minimum of the primary model's requirement: golden-section search on whole numbers between the
   two coarse neighbours of the best coarse point, keeping the best point evaluated (ties: the
   smaller |qty|), then a local descent on whole numbers from it (a step to a lower neighbour,
   doubling after each move) until neither neighbour is lower (within the bracket). An ES or
   parametric requirement is convex in the quantity (a coherent measure of a linear portfolio plus
   convex add-ons), so this is its minimum. A VaR requirement
   (historical, filtered historical with `measure = "var"`: the k-th worst scenario), SPAN's scan
   and span2's floor are not convex in general: the search then returns the minimum around the
   best coarse point, which is the global one unless a dip narrower than the coarse spacing lies
   elsewhere (more `points` narrow the spacing).
4. Targets (default 0: no call): if the call is already <= target, qty 0. Otherwise the direction
   is the sign of the evaluated quantity with the lowest call; the nearest evaluated quantity in
   that direction whose call is <= target and the one before it bound a bisection to the smallest
   such |qty|, assuming the call is monotone between them (true on the convex part that leads to
   the minimum). The same for the stress call, from the coarse curve's stress calls. Unreachable
   within the bracket (or no stress under the account's model): null, and the reason in
   `target.reason`.

Every loop is bounded: at most `MAX_POINTS` coarse points per curve and `MAX_BRACKET_DOUBLINGS` + 1
curves, `MAX_REFINE_STEPS` golden-section steps,
`MAX_DESCENT_STEPS` descent steps, `MAX_BISECT_STEPS` bisection steps per target (2^53 quantities
need 53).
"""
from __future__ import annotations

import math

import numpy as np

from calc.engine import MarginEngine
from calc.whatif import COMPARED, MAX_QTY, BeforeCache, state_after_trades

DEFAULT_POINTS = 41
MIN_POINTS, MAX_POINTS = 3, 1001
MAX_REFINE_STEPS = 128          # golden-section steps: log_phi(2^53) ~ 77 needed at most
MAX_BISECT_STEPS = 64           # bisection steps per target: 53 needed at most
MAX_BRACKET_DOUBLINGS = 4       # the bracket grows to at most 16 x the gross exposure
MAX_DESCENT_STEPS = 64          # local descent steps after the golden-section search
INVERSE_PHI = (math.sqrt(5.0) - 1.0) / 2.0
_REQUIREMENT, _CALL = COMPARED.index("requirement"), COMPARED.index("call")


class _HedgeCurve:
    """The requirement, call and stress call of the account with `qty` of the hedge added, each
    evaluated at most once per quantity (a fork of the live state per quantity evaluated)."""

    def __init__(self, engine: MarginEngine, account: str, sym: str, scenario: str, cache: BeforeCache):
        self.engine, self.account, self.sym, self.scenario, self.cache = engine, account, sym, scenario, cache
        self.live = engine.account_risk(account)
        self.primary = engine.model_names(account)[0]
        self.margin: dict[int, tuple[float, float]] = {}        # qty -> (requirement, call)
        self.stress: dict[int, float] = {}                      # qty -> stress call
        self.evaluations = 0

    def _evaluate(self, qty: int, margin: bool, stress: bool) -> None:
        engine, account = self.engine, self.account
        if qty == 0:                        # the live state, through the what-ifs' before cache
            if margin:
                rows = self.cache.margin(engine, account, self.live)
                if not rows or rows[0][0] != self.primary:
                    raise ValueError(f"hedge: the margin of {account} under {self.primary} is not computable now")
                self.margin[0] = (rows[0][1][_REQUIREMENT], rows[0][1][_CALL])
            if stress:
                self.stress[0] = self.cache.stress(engine, account, self.live, self.scenario)["call"]
            return
        risk, holdings, issues = state_after_trades(engine, account, self.live, [(self.sym, float(qty), math.nan)],
                                                    "hedge")
        self.evaluations += 1
        if issues:
            raise ValueError(f"hedge: {self.sym} cannot hedge {account}: {issues[0].text}")
        if margin:
            rows = engine.evaluate(account, risk).rows
            if not rows or rows[0]["model"] != self.primary:
                raise ValueError(f"hedge: the margin of {account} under {self.primary} is not computable "
                                 f"with {qty:+,d} {self.sym}")
            self.margin[qty] = (rows[0]["requirement"], rows[0]["call"])
        if stress:
            self.stress[qty] = engine.stress(account, self.scenario, holdings=holdings, risk=risk)["call"]

    def ensure(self, qty: int, margin: bool = True, stress: bool = False) -> None:
        margin, stress = margin and qty not in self.margin, stress and bool(self.scenario) and qty not in self.stress
        if margin or stress:
            self._evaluate(qty, margin, stress)

    def requirement(self, qty: int) -> float:
        self.ensure(qty)
        return self.margin[qty][0]

    def call(self, qty: int) -> float:
        self.ensure(qty)
        return self.margin[qty][1]

    def stress_call(self, qty: int) -> float:
        if not self.scenario:
            return math.nan
        self.ensure(qty, margin=False, stress=True)
        return self.stress[qty]

    def point(self, qty: int) -> dict:
        self.ensure(qty, margin=True, stress=True)
        return {"qty": float(qty), "requirement": self.requirement(qty), "call": self.call(qty),
                "stress_call": self.stress_call(qty)}


def _bracket(engine: MarginEngine, account: str, unit_value: float) -> int:
    """Q: the account's gross exposure in units of the hedge, rounded up, within [1, 2^53]."""
    values = np.asarray(engine.positions(account)["value"], dtype=float)
    gross = float(np.abs(values[np.isfinite(values)]).sum()) if values.size else 0.0
    return int(max(1.0, math.ceil(min(MAX_QTY, gross / unit_value))))


def _coarse_quantities(bound: int, points: int) -> list[int]:
    grid = np.rint(np.linspace(-bound, bound, points)).astype(np.int64).tolist()
    return sorted(set(grid) | {0})


def _golden_minimum(curve: _HedgeCurve, low: int, high: int) -> None:
    """Golden-section search of the requirement on the whole numbers of [low, high] (evaluated into
    `curve`); the caller takes the best point evaluated."""
    f = curve.requirement
    for _ in range(MAX_REFINE_STEPS):
        if high - low <= 3:
            break
        inner_low = low + round((1.0 - INVERSE_PHI) * (high - low))
        inner_high = max(inner_low + 1, low + round(INVERSE_PHI * (high - low)))
        if f(inner_low) <= f(inner_high):
            high = inner_high
        else:
            low = inner_low
    for qty in range(low, high + 1):            # at most 4 left
        f(qty)


def _local_descent(curve: _HedgeCurve, qty: int, bound: int) -> None:
    """From `qty`, moves to a neighbour at distance `step` while that lowers the requirement (the
    step doubling after a move and halving after none), until neither whole-number neighbour is
    lower: a VaR requirement has kinks that golden-section search, which assumes one minimum, can
    stop beside. At most MAX_DESCENT_STEPS steps."""
    f = curve.requirement
    step = 1
    for _ in range(MAX_DESCENT_STEPS):
        lower = next((q for q in (qty - step, qty + step) if abs(q) <= bound and f(q) < f(qty)), None)
        if lower is not None:
            qty, step = lower, step * 2
        elif step == 1:
            break
        else:
            step //= 2


def _best(values: dict[int, float]) -> int:
    """The quantity of the lowest value, the smaller |qty| on a tie."""
    return min(values, key=lambda q: (values[q], abs(q)))


def _smallest_reaching(values: dict[int, float], value_at, target: float, what: str,
                       bound: int) -> tuple[int | None, str]:
    """The smallest |qty|, in the direction of the lowest evaluated value, whose value (call or stress
    call, `value_at`) is <= target: bisection between the evaluated quantities that bound it."""
    if value_at(0) <= target:
        return 0, ""
    best = _best(values)
    if values[best] > target:
        return None, (f"the {what} stays above {target:,.0f} for every quantity evaluated in "
                      f"[{-bound:,d}, {bound:,d}]: at least {values[best]:,.0f} (at {best:+,d})")
    direction = 1 if best > 0 else -1
    side = sorted((q for q in values if q * direction > 0), key=abs)
    reaching = next(q for q in side if values[q] <= target)
    above = max((q for q in side if abs(q) < abs(reaching)), key=abs, default=0)
    for _ in range(MAX_BISECT_STEPS):
        if abs(reaching - above) <= 1:
            break
        middle = above + direction * (abs(reaching - above) // 2)
        if value_at(middle) <= target:
            reaching = middle
        else:
            above = middle
    return reaching, ""


def hedge(engine: MarginEngine, account: str, sym: str, target: float | None = None, scenario: str | None = None,
          points: int = DEFAULT_POINTS, cache: BeforeCache | None = None) -> dict:
    """Hedge sizing of `account` with `sym` (module docstring). `target`: the call to get under
    (default 0); `scenario`: the stress scenario (default: the alerts'); `points`: the coarse curve's
    quantities; `cache`: the what-ifs' before cache (calc's server keeps one)."""
    book = engine.book
    if not isinstance(account, str) or account not in book.accounts:
        raise ValueError(f"hedge: unknown account {account}")
    if not isinstance(sym, str) or sym not in book.instruments:
        raise ValueError(f"hedge: unknown instrument {sym}")
    if not engine.model_names(account):
        raise ValueError(f"hedge: account {account} has no margin model")
    target = 0.0 if target is None else target
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target < 0:
        raise ValueError(f"hedge: target must be a finite number >= 0 (the call to get under), got {target!r}")
    if isinstance(points, bool) or not isinstance(points, int) or not MIN_POINTS <= points <= MAX_POINTS:
        raise ValueError(f"hedge: points must be a whole number in [{MIN_POINTS}, {MAX_POINTS}], got {points!r}")
    held = book.holdings.get(account, {}).get(sym)
    price = book.mark(sym, held)
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"hedge: no price for {sym}")
    unit_value = price * book.multiplier(sym)
    if not (math.isfinite(unit_value) and unit_value > 0):
        raise ValueError(f"hedge: {sym} has no usable unit value (price {price:g} x multiplier "
                         f"{book.multiplier(sym):g})")
    stress_reason = ""
    if not engine.runs_stress(account):
        stress_reason = f"stress scenarios do not run under {engine.model_names(account)[0]}, which margins {account}"
        scenario = ""
    else:
        scenario = engine.config.alerts.stress_scenario if scenario is None else scenario
        if scenario and scenario not in engine.config.stress:
            raise ValueError(f"hedge: unknown stress scenario {scenario} (known: {sorted(engine.config.stress)})")
        if not scenario:
            stress_reason = "no stress scenario asked for"

    curve = _HedgeCurve(engine, account, sym, scenario, cache or BeforeCache())
    bound = _bracket(engine, account, unit_value)
    for doubling in range(MAX_BRACKET_DOUBLINGS + 1):
        coarse = _coarse_quantities(bound, points)
        for qty in coarse:
            curve.ensure(qty, margin=True, stress=True)
        best = coarse.index(_best({q: curve.margin[q][0] for q in coarse}))
        if 0 < best < len(coarse) - 1 or doubling == MAX_BRACKET_DOUBLINGS or bound >= MAX_QTY:
            break
        bound = int(min(MAX_QTY, 2 * bound))        # the minimum lies at the edge: look beyond it
    _golden_minimum(curve, coarse[max(0, best - 1)], coarse[min(len(coarse) - 1, best + 1)])
    _local_descent(curve, _best({q: m[0] for q, m in curve.margin.items()}), bound)
    minimum = _best({q: m[0] for q, m in curve.margin.items()})

    call_qty, call_reason = _smallest_reaching({q: m[1] for q, m in curve.margin.items()}, curve.call,
                                               target, "predicted call", bound)
    stress_qty = None
    if scenario:
        stress_qty, stress_reason = _smallest_reaching(dict(curve.stress), curve.stress_call, target,
                                                       "stress call", bound)
    points_of = [curve.point(q) for q in coarse]
    return {
        "account": account, "sym": sym, "model": curve.primary, "price": price,
        "held": held.qty if held is not None else 0.0,
        "now": {k: v for k, v in curve.point(0).items() if k != "qty"},
        "minimum": curve.point(minimum),
        "target": {"value": float(target),
                   "call": curve.point(call_qty) if call_qty is not None else None,
                   "stress": curve.point(stress_qty) if stress_qty is not None else None,
                   "reason": {"call": call_reason, "stress": stress_reason}},
        "scenario": scenario,
        "curve": {k: [p[k] for p in points_of] for k in ("qty", "requirement", "call", "stress_call")},
        "evaluations": curve.evaluations,
    }
