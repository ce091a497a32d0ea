"""The VaR family of margin models (kinds parametric, historical, filtered_historical): one
configured model over its universe of history columns, kept per account as an exact incremental
`Exposure` (calc.state, calc.exact).

Effective value of a position: ``u = qty * mark * multiplier * f``, f the intraday vol scale of the
instrument's history column: ``f = quote.vol / model vol`` (model vol = the annualised vol of the
model's own scenarios or covariance for that column; floored at 1 with ``engine.vol_floor``). Scaling
values by f equals scaling the column's scenario shocks (and its covariance row and column) by f, so
vol changes are the same O(S) update as price changes.

    var, es   of the portfolio's scenario P&L (historical, filtered historical) or normal (parametric)
    im        max(0, var or es, per `measure`) x (1 + apc_buffer) + liquidity add-ons
              + the full value of positions the model cannot price (no history, or beyond
              MAX_MODELLED_VALUE: the sums stay in calc.exact's exact range)
"""
from __future__ import annotations

import math
import operator
from statistics import NormalDist

import numpy as np

from calc import kernels
from calc.addons import apc_buffer, position_liquidity_addon, standalone_parametric
from calc.config import ModelConfig
from calc.covariance import (
    NotPositiveSemidefinite,
    check_covariance,
    correlation_from_covariance,
    covariance,
    covariance_from_correlation,
    nearest_correlation,
)
from calc.margin_model import Issue, MarginModel, Measure, Position, Positions, StressLoss
from calc.models import check_values, z_score
from calc.scenarios import InsufficientHistory, returns_window, scenario_shocks
from calc.state import Book, Exposure, Instrument
from calc.stress import evaluate_stress, stressed_correlation, stressed_covariance
from calc.universe import Universe

TRADING_DAYS = 252.0
MAX_MODELLED_VALUE = 2.0 ** 40  # effective value of one position above which the model charges it in full:
                                # the scenario P&L stays within calc.exact's exact range (2^45)
STRESS_CACHE_SIZE = 4096        # stressed correlations kept (per scenario and set of held columns)
_CONTRIBUTION = operator.itemgetter(1)   # of a (sym, contribution) pair: drivers rank by it, stably
_NO_ROWS, _NO_VALUES = np.empty(0, dtype=np.int64), np.empty(0)   # no pending P&L changes


def _pending(e: Exposure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fork's pending P&L changes as the kernels take them: (history columns, their values before,
    after); empty for a live exposure or a fork with none."""
    if not e.pending_rows:
        return _NO_ROWS, _NO_VALUES, _NO_VALUES
    return np.array(e.pending_rows, dtype=np.int64), np.array(e.pending_olds), np.array(e.pending_news)


class VarModel(MarginModel):
    """Scenario shocks (N, S) for the historical models, a daily covariance (N, N) for all (parametric
    VaR, and stress tests), over history columns `syms`; `universe` maps instruments to them."""
    runs_stress = True

    def __init__(self, config: ModelConfig, syms: list[str], cov: np.ndarray, universe: Universe,
                 shocks: np.ndarray | None = None, excluded: dict[str, str] | None = None,
                 notes: list[str] | None = None, vol_floor: bool = True):
        self.name, self.config, self.universe, self.vol_floor = config.name, config, universe, vol_floor
        self.syms = list(syms)
        self.index = {s: i for i, s in enumerate(self.syms)}
        self.cov = np.ascontiguousarray(cov, dtype=np.float64)
        self.shocks = None if shocks is None else np.ascontiguousarray(shocks, dtype=np.float64)
        # (S, N) copy for the ES contributions: each tail scenario one contiguous row
        self.scenario_shocks = None if shocks is None else np.ascontiguousarray(self.shocks.T)
        self.excluded = dict(excluded or {})     # history sym -> why the model cannot use it
        self._notes = list(notes or [])          # e.g. "covariance repaired to PSD"
        h, c = config.horizon_days, config.confidence
        self.z = z_score(c)
        self.scale = self.z * math.sqrt(h)                                   # parametric VaR per sigma
        self.es_scale = math.sqrt(h) * NormalDist().pdf(self.z) / (1.0 - c)  # parametric ES per sigma
        n = len(self.syms)
        if self.shocks is not None:
            self.k = kernels.tail_count(self.shocks.shape[1], c)
            self.base_vol = self.shocks.std(axis=1) * math.sqrt(TRADING_DAYS / h)
            self.unit_long = kernels.standalone_es(np.ones(n), self.shocks, self.k)
            self.unit_short = kernels.standalone_es(-np.ones(n), self.shocks, self.k)
        else:
            self.k = 0
            self.base_vol = np.sqrt(np.clip(np.diag(self.cov), 0.0, None) * TRADING_DAYS)
            self.unit_long = self.unit_short = standalone_parametric(np.ones(n), self.cov, c, h)
        self.volscale = np.ones(n)
        self.stress_cache: dict[tuple, list] = {}    # see _stress_setup

    @classmethod
    def from_history(cls, config: ModelConfig, history, universe: Universe, engine) -> VarModel:
        """The model's scenario set / covariance from the daily price history (common.history.History);
        `engine`: the EngineConfig (its vol_floor)."""
        syms, returns, excluded = _history_window(config, history)
        notes = []
        if config.kind == "parametric":
            cov = covariance(returns, method=config.covariance, decay=config.decay)
        else:
            cov = covariance(returns, method="equal")
        try:
            check_covariance(cov, syms)
        except NotPositiveSemidefinite as e:
            vols, corr = correlation_from_covariance(cov)
            cov = covariance_from_correlation(vols, nearest_correlation(corr))
            notes.append(f"model {config.name}: {e}; repaired to the nearest PSD matrix")
        shocks = None
        if config.kind != "parametric":
            shocks = scenario_shocks(returns, config.horizon_days, config.holding,
                                     filtered=config.kind == "filtered_historical", decay=config.decay)
        return cls(config, syms, cov, universe, shocks, excluded, notes, engine.vol_floor)

    @property
    def is_scenario(self) -> bool:
        return self.shocks is not None

    def notes(self) -> list[str]:
        return self._notes

    # ---- state ---------------------------------------------------------------------------------
    def new_state(self, account: str = "") -> Exposure:
        n = len(self.syms)
        m = self.shocks.shape[1] if self.is_scenario else n
        hi, lo, value = np.zeros(m), np.zeros(m), np.zeros(m)
        if self.is_scenario:
            return Exposure(np.zeros(n), pnl=value, hi=hi, lo=lo)
        return Exposure(np.zeros(n), cv=value, hi=hi, lo=lo)

    def apply(self, account: str, e: Exposure, p: Position) -> list[Issue]:
        """The position's value, add-on and full-value charge in the exposure (O(S) exact update)."""
        rsym = self.universe.risk_sym.get(p.sym)
        col = self.index.get(rsym) if rsym else None
        u = p.value * self.volscale.item(col) if col is not None else 0.0   # a float, not numpy's
        if col is None or abs(u) > MAX_MODELLED_VALUE:
            if col is not None:                              # too large for the model: charged in full
                self._set_part(e, p.sym, rsym, col, 0.0)
                self._liquidity(e, p.sym, None, 0.0, col, 0.0)
            return self._unmodelled(account, e, p, rsym)
        if p.sym in e.unmodelled:                            # back in the model's range
            e.unmodelled_sum.replace(e.unmodelled.pop(p.sym), 0.0)
        self._set_part(e, p.sym, rsym, col, u)
        if self.config.liquidity_participation > 0:
            self._liquidity(e, p.sym, p.inst, p.qty, col, u)
        return []

    def build(self, account: str, positions: Positions) -> tuple[Exposure, list[Issue]]:
        """All positions at once: column values by one bincount, the P&L (or C @ values) by one kernel
        call; positions without a column, or with an add-on, through the same helpers as `apply`."""
        e, issues = self.new_state(account), []
        syms, value, insts = positions.syms, positions.value, positions.insts
        risk_sym, index, shared = self.universe.risk_sym, self.index, self.universe.shared
        rsyms = [risk_sym.get(s) for s in syms]
        cols = np.array([index.get(r, -1) if r else -1 for r in rsyms], dtype=np.int64)
        modelled = np.flatnonzero(cols >= 0)
        u = np.zeros(len(syms))
        u[modelled] = value[modelled] * self.volscale[cols[modelled]]
        too_large = np.abs(u) > MAX_MODELLED_VALUE             # charged in full, as `apply` does
        cols[too_large], u[too_large] = -1, 0.0
        modelled = np.flatnonzero(cols >= 0)
        column_values = np.bincount(cols[modelled], weights=u[modelled], minlength=len(self.syms))
        e.values = column_values.astype(np.float64, copy=False)     # int64 when nothing is modelled
        nonzero = np.flatnonzero(u).tolist()
        e.parts = dict(zip([syms[i] for i in nonzero], u[nonzero].tolist()))
        for rsym in shared:
            col = index.get(rsym)
            if col is not None:
                e.values[col] = self.universe.column_value(e.parts, rsym)
        for i in np.flatnonzero(cols < 0).tolist():
            issues += self._unmodelled(account, e, Position(syms[i], positions.qty.item(i), value.item(i), insts[i]),
                                       rsyms[i])
        if self.config.liquidity_participation > 0:
            for i in nonzero:
                self._liquidity(e, syms[i], insts[i], positions.qty.item(i), cols.item(i), u.item(i))
        self._revalue(e)
        return e, issues

    def _revalue(self, e: Exposure) -> None:
        """Full revaluation of the exposure's risk state from its values (exact sums, calc.exact)."""
        if self.is_scenario:
            e.hi, e.lo, e.pnl = kernels.exact_product(e.values, self.shocks)
        else:
            e.hi, e.lo, e.cv = kernels.exact_product(e.values, self.cov)
            e.sigma2 = kernels.quadratic_form(e.values, e.cv)

    def _change(self, e: Exposure, col: int, old: float, new: float) -> None:
        """Incremental update for the effective value of column `col` going from `old` to `new`,
        exact (calc.exact); e.values[col] is `new` already. On a fork's scenario P&L it is kept
        pending (see `Exposure`)."""
        if not self.is_scenario:
            kernels.exact_move(e.hi, e.lo, e.cv, self.cov, col, old, new)
            e.sigma2 = kernels.quadratic_form(e.values, e.cv)
        elif e.pending_rows is None:
            kernels.exact_move(e.hi, e.lo, e.pnl, self.shocks, col, old, new)
        else:
            e.pending_rows.append(col)
            e.pending_olds.append(old)
            e.pending_news.append(new)

    def _set_part(self, e: Exposure, sym: str, rsym: str, col: int, u: float) -> None:
        """The instrument's effective value in its model column becomes u (O(S) exact update)."""
        if u != e.parts.get(sym, 0.0):
            if u:
                e.parts[sym] = u
            else:
                del e.parts[sym]
            old = e.values.item(col)
            new = self.universe.column_value(e.parts, rsym) if rsym in self.universe.shared else u
            e.values[col] = new
            self._change(e, col, old, new)

    def _liquidity(self, e: Exposure, sym: str, inst: Instrument | None, qty: float, col: int, u: float) -> None:
        """The position's liquidity add-on (effective value u in column col)."""
        if inst is None or not math.isfinite(inst.adv) or inst.adv <= 0:
            if sym in e.addons:
                e.addon_sum.replace(e.addons.pop(sym), 0.0)
        else:
            addon = position_liquidity_addon(qty, inst.adv, self._standalone(col, u), self.config.horizon_days,
                                             self.config.liquidity_participation)
            e.addon_sum.replace(e.addons.get(sym, 0.0), addon)
            if addon:
                e.addons[sym] = addon
            else:
                e.addons.pop(sym, None)

    def _standalone(self, col: int, u: float) -> float:
        """The margin of effective value u in column col held alone (for the liquidity add-on)."""
        return u * self.unit_long[col] if u >= 0 else -u * self.unit_short[col]

    def _unmodelled(self, account: str, e: Exposure, p: Position, rsym: str | None) -> list[Issue]:
        """The position is charged its full value; the issue says why."""
        charge = abs(p.value)
        e.unmodelled_sum.replace(e.unmodelled.get(p.sym, 0.0), charge)
        e.unmodelled[p.sym] = charge
        if not charge:
            return []
        if p.inst is None:
            why = f"instrument {p.sym} is not in the reference data"
        elif rsym in self.index:
            why = f"{p.sym}'s effective value is beyond model {self.name}'s exact range ({MAX_MODELLED_VALUE:,.0f}, calc.exact)"
        else:
            why = f"no usable price history for {p.sym}" + (f" ({self.excluded[rsym]})" if rsym in self.excluded else "")
        return [Issue(account, "data", f"{why}: model {self.name} charges the position its full value {charge:,.0f}",
                      self.name, (account, "unmodelled", p.sym, self.name))]

    # ---- results -------------------------------------------------------------------------------
    def var_es(self, e: Exposure) -> tuple[float, float]:
        if self.is_scenario:
            if e.pending_rows:
                return kernels.whatif_var_es(e.pnl, e.hi, e.lo, self.shocks, *_pending(e), self.k)
            return kernels.var_es(e.pnl, self.k)
        sigma = math.sqrt(max(e.sigma2, 0.0))
        return self.scale * sigma, self.es_scale * sigma

    def contributions(self, e: Exposure, factor: float = 1.0, top: int = 0) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(var, es, per column contributions summing to the model's measure times `factor`, the
        columns of the `top` largest contributions, largest first): ES contributions for scenario
        models (one kernel call and one tail selection for all four), Euler for parametric; rescaled
        by var/es when the measure is the other one."""
        if self.is_scenario:
            return kernels.tail_measures(e.pnl, e.hi, e.lo, self.shocks, *_pending(e), e.values, self.scenario_shocks,
                                         self.k, factor, self.config.measure == "var", top)
        var, es = self.var_es(e)
        scale = self.es_scale if self.config.measure == "es" else self.scale
        contributions = kernels.euler_contributions(e.values, e.cv, max(e.sigma2, 0.0), scale * factor)
        return var, es, contributions, kernels.largest(contributions, top)

    def measure(self, e: Exposure, top: int = 0) -> Measure:
        drivers = []
        if top:                                 # var, es and contributions from one tail selection
            var, es, contributions, columns = self.contributions(e, 1.0 + self.config.apc_buffer, self._selected(top))
            drivers = self._ranked(e, contributions, columns, top)
        else:
            var, es = self.var_es(e)
        base = max(0.0, var if self.config.measure == "var" else es)
        if self.config.apc_buffer:
            base = apc_buffer(base, self.config.apc_buffer)
        im = base + e.addon_total + e.unmodelled_total
        return Measure(im, var, es, math.isfinite(im) and math.isfinite(var) and math.isfinite(es), drivers)

    def drivers(self, e: Exposure, top: int | None = None) -> list[tuple[str, float]]:
        """Each position's contribution to the im (all of them sum to im), largest first; the `top`
        largest only when given. An instrument's contribution is its share of its history column's
        contribution (ES / Euler, x the APC buffer) plus its add-on and full-value charge.

        With `top`, only candidates are evaluated (O(N) in numpy plus O(top) in Python): the top
        columns, columns shared by several instruments, and positions with an add-on or charge. A
        position outside them is the only one in its column and has no add-on, so its contribution
        is its column's, below every top column's: the result is exact."""
        _, _, contributions, columns = self.contributions(e, 1.0 + self.config.apc_buffer, self._selected(top))
        return self._ranked(e, contributions, columns, top)

    def _selected(self, top: int | None) -> int:
        """How many top columns `contributions` selects for `top` drivers: none when all are asked for
        (None, or as many as the model has columns); `_ranked` then orders every held column."""
        return top if top is not None and top < len(self.syms) else 0

    def _ranked(self, e: Exposure, col_contrib: np.ndarray, columns: np.ndarray,
                top: int | None) -> list[tuple[str, float]]:
        """`drivers` from the per column contributions and the columns of the `top` largest: each
        column's split among its instruments."""
        if top is None or top >= len(self.syms):
            columns = np.flatnonzero(e.values)
            columns = columns[np.argsort(-col_contrib[columns], kind="stable")]
        universe = self.universe
        mapped, syms, shared = universe.mapped, self.syms, universe.shared
        ranked = []                             # by column, largest first
        for c in columns.tolist():
            hs = syms[c]
            if hs not in shared:                # the column's one instrument: its whole contribution
                contribution = col_contrib.item(c)
                if contribution:
                    for sym in mapped.get(hs, ()):
                        ranked.append((sym, contribution))
        addons, unmodelled = e.addons, e.unmodelled
        if not (shared or addons or unmodelled):
            return ranked if top is None else ranked[:top]
        out = dict(ranked)
        candidates = [sym for hs in shared for sym in mapped[hs]]
        candidates.extend(addons)
        parts, values, index, risk_sym = e.parts, e.values, self.index, universe.risk_sym
        for sym in candidates:
            u = parts.get(sym)
            if u:
                col = index[risk_sym[sym]]
                total = values.item(col)
                share = u / total if total and risk_sym[sym] in shared else 1.0
                out[sym] = col_contrib.item(col) * share + addons.get(sym, 0.0)
        for sym, charge in unmodelled.items():
            if charge:
                out[sym] = out.get(sym, 0.0) + charge
        ranked = sorted([(s, float(c)) for s, c in out.items() if c], key=_CONTRIBUTION, reverse=True)
        return ranked if top is None else ranked[:top]

    def drift(self, e: Exposure, f: Exposure) -> float:
        worst = max(relative_difference(e.values, f.values), relative_difference(e.addon_total, f.addon_total),
                    relative_difference(e.unmodelled_total, f.unmodelled_total),
                    relative_difference(e.hi, f.hi), relative_difference(e.lo, f.lo))
        if e.pnl is not None:
            return max(worst, relative_difference(e.pnl, f.pnl))
        return max(worst, relative_difference(e.cv, f.cv), relative_difference(e.sigma2, f.sigma2))

    # ---- stress --------------------------------------------------------------------------------
    def stress(self, e: Exposure, positions: list[Position], scenario, book: Book) -> StressLoss:
        """The scenario under this model's covariance (calc.stress): shock loss + stressed VaR of the
        positions the model prices, its add-ons and full-value charges beside it."""
        syms, sectors, values, cols = [], [], [], []
        for p in positions:
            col = self.index.get(self.universe.risk_sym.get(p.sym, ""))
            if col is None or not p.qty:
                continue
            syms.append(p.sym)
            sectors.append(p.inst.sector)
            values.append(p.value)
            cols.append(col)
        shocks, cov = self._stress_setup(scenario, tuple(cols), tuple(syms), tuple(sectors))
        res = evaluate_stress(scenario.name, check_values(values), shocks, cov, self.scale)
        order = np.argsort(-res.contributions, kind="stable")
        return StressLoss(res.loss, res.shock_loss, res.stressed_var, e.addon_total + e.unmodelled_total,
                          [(syms[i], float(res.contributions[i])) for i in order.tolist()])

    def _stress_setup(self, scenario, cols: tuple, syms: tuple, sectors: tuple):
        """(price shocks, stressed covariance) of the scenario for these history columns. The
        stressed, PSD-repaired correlation is kept per (scenario, columns): volatility scaling
        (quote.vol) does not change it, so a vol update costs a rescale, not a repair; the covariance
        is kept while the columns' scaling is unchanged, so a what-if's before and after and every
        alert's stress run pay only for the evaluation."""
        idx = np.array(cols, dtype=np.int64)
        f = self.volscale[idx]
        key = (scenario.name, cols, syms, sectors)
        entry = self.stress_cache.get(key)
        if entry is not None and entry[1] == f.tobytes():
            return entry[2], entry[3]
        base = self.cov[np.ix_(idx, idx)]
        if entry is None:
            if len(self.stress_cache) >= STRESS_CACHE_SIZE:
                self.stress_cache.clear()
            corr = stressed_correlation(correlation_from_covariance(check_covariance(base, list(syms)))[1], scenario,
                                        syms, sectors)
            entry = self.stress_cache[key] = [corr, None, scenario.shock_vector(syms, sectors), None]
        entry[1] = f.tobytes()
        entry[3] = stressed_covariance(base * np.outer(f, f), scenario, syms, sectors, stressed_corr=entry[0])
        return entry[2], entry[3]

    # ---- market --------------------------------------------------------------------------------
    def on_quotes(self, priced, vol_changed, book: Book) -> tuple[set[str], set[str]]:
        """A new vol of a history column rescales it (see the module docstring): the instruments
        mapped to it are revalued."""
        revalue = set()
        for sym in vol_changed:
            if self.set_vol(sym, book.vol[sym]):
                revalue.update(self.universe.mapped.get(sym, ()))
        return revalue, set()

    def set_vol(self, sym: str, vol: float) -> bool:
        """The intraday vol scale of history column `sym` from an annualised vol; True when it changed."""
        col = self.index.get(sym)
        if col is None or not self.base_vol[col] > 0:
            return False
        f = vol / self.base_vol[col]
        if self.vol_floor:
            f = max(1.0, f)
        if f == self.volscale[col]:
            return False
        self.volscale[col] = f
        return True


def relative_difference(x, y) -> float:
    """max |x - y| relative to max(1, max |y|); NaN where only one side is NaN counts as infinite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return math.inf
    x, y = np.nan_to_num(x), np.nan_to_num(y)
    return float(np.max(np.abs(x - y), initial=0.0) / max(1.0, float(np.max(np.abs(y), initial=0.0))))


def _history_window(config: ModelConfig, history) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """(usable syms, (T, N) daily log returns, {excluded sym: reason}) for the model's lookback."""
    excluded: dict[str, str] = {}
    syms = list(history.syms)
    while True:
        try:
            _, returns = returns_window(history, syms, config.lookback_days)
            return syms, returns, excluded
        except InsufficientHistory as e:
            for s in e.syms:
                excluded[s] = f"insufficient price history for a {config.lookback_days}-day lookback"
            syms = [s for s in syms if s not in excluded]
            if not syms:
                raise ValueError(f"model {config.name}: no instrument has {config.lookback_days} days of history") from e
