"""The live margin engine: applies tickerplant rows to the book and keeps every account's risk
incrementally; computes `margin` rows, drivers, positions and stress results on demand.

No messaging here (calc.server owns the loop), so the engine runs the same in-process (tests,
benchmarks) and live. Events and their cost:

- fill: the holding changes, its effective value changes by du, each of the account's models does
  ``pnl += du * shocks[i]`` (O(S)) or ``cv += du * C[i]`` (O(N)); vm and add-ons per position too.
- quote: the instrument's mark changes: the same O(S) update for every account holding it (inverted
  index sym -> accounts); `vol` rescales the instrument's scenario row / covariance row (see below).
- instrument, account, position, paramfile: the accounts concerned are revalued in full.
- settle, collateral: vm / collateral of the accounts concerned.

Effective value of a position under a model: ``u = qty * mark * multiplier * f``, f the intraday vol
scale of the instrument's history column: ``f = quote.vol / model vol`` (model vol = the annualised
vol of the model's own scenarios or covariance for that column; floored at 1 with
``engine.vol_floor``). Scaling values by f equals scaling the instrument's scenario shocks (and its
covariance row and column) by f, so vol changes are the same O(S) update as price changes.

Margin per account and model (a `margin` row):

    var, es      the model's VaR and ES of the portfolio (losses positive)
    im           max(0, var or es, per the model's `measure`) x (1 + apc_buffer)
                 + liquidity add-ons + full value of positions the model cannot price
    vm           mark-to-market since the last settlement (calc.state), < 0 = a loss owed
    requirement  im + max(0, -vm)          (vm gains are paid out, they do not offset im)
    collateral   account.collateral + intraday `collateral` movements
    excess       collateral - requirement
    call         max(0, requirement - collateral): the predicted margin call

Bad input never stops the engine: it becomes an `Issue` (an alert naming the account and cause),
deduplicated until the cause clears, and never a NaN margin (such a row is withheld, with an issue).
"""
from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

from calc import kernels
from calc.addons import apc_buffer, position_liquidity_addon, standalone_parametric
from calc.config import ConfigError, EngineConfig, ModelConfig, load_model_set
from calc.exact import ExactSum
from calc.covariance import (
    NotPositiveSemidefinite,
    check_covariance,
    correlation_from_covariance,
    covariance,
    covariance_from_correlation,
    nearest_correlation,
)
from calc.models import check_values, z_score
from calc.scenarios import InsufficientHistory, returns_window, scenario_shocks
from calc.span import SpanAccount, SpanBook, SpanFileError
from calc.span import load as load_span
from calc.span.model import FUTURE
from calc.state import (
    Account,
    AccountRisk,
    Book,
    Exposure,
    Holding,
    Instrument,
    valid_price,
    variation_margin,
)
from calc.stress import evaluate_stress, stressed_correlation
from common.defaults import REPO_ROOT

log = logging.getLogger(__name__)

TRADING_DAYS = 252.0
MARGIN_FIELDS = ("im", "vm", "requirement", "collateral", "excess", "call", "var", "es")
SPAN_MODEL = "span"             # accounts whose `model` is span are margined by calc.span, not VaR
MAX_MODELLED_VALUE = 2.0 ** 40  # effective value of one position above which a VaR model charges it in full:
                                # the scenario P&L stays within calc.exact's exact range (2^45)
STRESS_CACHE_SIZE = 4096        # stressed correlations kept (per model, scenario and set of held columns)
_CONTRIBUTION = operator.itemgetter(1)   # of a (sym, contribution) pair: drivers rank by it, stably
_NO_ROWS, _NO_VALUES = np.empty(0, dtype=np.int64), np.empty(0)   # no pending P&L changes


def _pending(e: Exposure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fork's pending P&L changes as the kernels take them: (history columns, their values before,
    after); empty for a live exposure or a fork with none."""
    if not e.pending_rows:
        return _NO_ROWS, _NO_VALUES, _NO_VALUES
    return np.array(e.pending_rows, dtype=np.int64), np.array(e.pending_olds), np.array(e.pending_news)


def _selected(top: int | None, m: RiskModel) -> int:
    """How many top columns `RiskModel.measures` selects for `top` drivers: none when all are asked
    for (None, or as many as the model has columns); `_ranked` then orders every held column."""
    return top if top is not None and top < len(m.syms) else 0


@dataclass(frozen=True)
class Issue:
    """Something to raise as an alert: bad input, an unpriceable position, drift."""
    account: str
    kind: str           # data | drift
    text: str
    model: str = ""


class RiskModel:
    """One configured model over its universe of history columns: scenario shocks (N, S) for the
    historical models, a daily covariance (N, N) for all (parametric VaR, and stress tests)."""

    def __init__(self, config: ModelConfig, syms: list[str], cov: np.ndarray, shocks: np.ndarray | None = None,
                 excluded: dict[str, str] | None = None, notes: list[str] | None = None):
        self.config = config
        self.syms = list(syms)
        self.index = {s: i for i, s in enumerate(self.syms)}
        self.cov = np.ascontiguousarray(cov, dtype=np.float64)
        self.shocks = None if shocks is None else np.ascontiguousarray(shocks, dtype=np.float64)
        # (S, N) copy for the ES contributions: each tail scenario one contiguous row
        self.scenario_shocks = None if shocks is None else np.ascontiguousarray(self.shocks.T)
        self.excluded = dict(excluded or {})     # history sym -> why the model cannot use it
        self.notes = list(notes or [])           # e.g. "covariance repaired to PSD"
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

    @property
    def is_scenario(self) -> bool:
        return self.shocks is not None

    def new_exposure(self) -> Exposure:
        n = len(self.syms)
        m = self.shocks.shape[1] if self.is_scenario else n
        hi, lo, value = np.zeros(m), np.zeros(m), np.zeros(m)
        if self.is_scenario:
            return Exposure(np.zeros(n), pnl=value, hi=hi, lo=lo)
        return Exposure(np.zeros(n), cv=value, hi=hi, lo=lo)

    def revalue(self, e: Exposure) -> None:
        """Full revaluation of the exposure's risk state from its values (exact sums, calc.exact)."""
        if self.is_scenario:
            e.hi, e.lo, e.pnl = kernels.exact_product(e.values, self.shocks)
        else:
            e.hi, e.lo, e.cv = kernels.exact_product(e.values, self.cov)
            e.sigma2 = kernels.quadratic_form(e.values, e.cv)

    def change(self, e: Exposure, col: int, old: float, new: float) -> None:
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

    def var_es(self, e: Exposure) -> tuple[float, float]:
        if self.is_scenario:
            if e.pending_rows:
                return kernels.whatif_var_es(e.pnl, e.hi, e.lo, self.shocks, *_pending(e), self.k)
            return kernels.var_es(e.pnl, self.k)
        sigma = math.sqrt(max(e.sigma2, 0.0))
        return self.scale * sigma, self.es_scale * sigma

    def measures(self, e: Exposure, factor: float = 1.0, top: int = 0) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(var, es, per column contributions summing to the model's measure times `factor`, the
        columns of the `top` largest contributions, largest first): ES contributions for scenario
        models (one kernel call and one tail selection for all four), Euler for parametric; rescaled
        by var/es when the measure is the other one."""
        if self.is_scenario:
            return kernels.tail_measures(e.pnl, e.hi, e.lo, self.shocks, *_pending(e), e.values, self.scenario_shocks, self.k,
                                         factor, self.config.measure == "var", top)
        var, es = self.var_es(e)
        scale = self.es_scale if self.config.measure == "es" else self.scale
        contributions = kernels.euler_contributions(e.values, e.cv, max(e.sigma2, 0.0), scale * factor)
        return var, es, contributions, kernels.largest(contributions, top)

    def standalone(self, col: int, u: float) -> float:
        """The margin of effective value u in column col held alone (for the liquidity add-on)."""
        return u * self.unit_long[col] if u >= 0 else -u * self.unit_short[col]


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


def build_risk_model(config: ModelConfig, history) -> RiskModel:
    """The model's scenario set / covariance from the daily price history (common.history.History)."""
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
    return RiskModel(config, syms, cov, shocks, excluded, notes)


class MarginEngine:
    """Book + risk models + per-account incremental risk; `apply` tickerplant batches, read margins."""

    def __init__(self, config: EngineConfig, history, models: dict[str, RiskModel] | None = None):
        self.config = config
        self.history = history
        self.history_syms = set(history.syms)
        self.models = models or {n: build_risk_model(m, history) for n, m in config.models.items()}
        self._stress_corr: dict[tuple, np.ndarray] = {}
        self._stress_cov: dict[tuple, tuple] = {}
        self.book = Book()
        self.risk: dict[str, AccountRisk] = {}
        self.volscale = {n: np.ones(len(m.syms)) for n, m in self.models.items()}
        self.risk_sym: dict[str, str] = {}          # instrument -> history sym whose returns it takes
        self.mapped: dict[str, set[str]] = {}       # history sym -> instruments mapped to it
        self.shared: set[str] = set()               # history syms with more than one instrument mapped
        self.seq = 0                                # seq of the last input applied
        self.time_ns = 0                            # latest input time (the engine's clock)
        self.dirty: set[str] = set()                # accounts whose margin may have changed
        self.stale: set[str] = set()                # accounts waiting for a full revaluation
        self.issues: list[Issue] = []               # raised, not yet taken by the publisher
        self.counters: Counter = Counter()
        self._open: set[tuple] = set()              # issue keys raised and not cleared
        self._bad_price: set[str] = set()
        self.span: SpanBook | None = None
        self.span_problem = "no SPAN parameter file configured"
        if config.span_file:
            self._load_span(config.span_file)
        self._rows = {"instrument": self._instrument, "account": self._account, "position": self._position,
                      "fill": self._fill, "settle": self._settle, "collateral": self._collateral,
                      "paramfile": self._paramfile}

    tables = ("instrument", "account", "position", "fill", "quote", "settle", "collateral", "paramfile")

    # ---- applying input ------------------------------------------------------------------------
    def apply(self, table: str, cols: dict, seq: int) -> int:
        """Applies one batch of `table` rows; returns the rows applied (bad rows become issues)."""
        if table == "quote":
            try:
                applied = self._quotes(cols)
            except Exception as e:                      # the engine goes on for the rest
                applied = 0
                self.counters["bad_batches"] += 1
                log.exception("quote batch of seq %d not fully applied", seq)
                for account in {a for s in set(cols["sym"].tolist()) for a in self.book.holders.get(s, ())}:
                    self._issue(account, ("error", table, seq), f"quote batch (seq {seq}) not fully applied: "
                                f"{type(e).__name__}: {e}")
        elif table in self._rows:
            applied = self._apply_rows(table, cols, seq)
        else:
            return 0
        self.seq = max(self.seq, seq)
        times = cols.get("time")
        if times is not None and len(times):
            ns = times.view(np.int64)
            self.time_ns = max(self.time_ns, int(ns[0]) if len(ns) == 1 else int(ns.max()))
        self.counters[table] += applied
        return applied

    def _apply_rows(self, table: str, cols: dict, seq: int) -> int:
        handler = self._rows[table]
        names = [c for c in cols if c != "time"]
        applied = 0
        for i, values in enumerate(zip(*(cols[c].tolist() for c in names))):
            row = dict(zip(names, values))
            try:
                handler(row)
                applied += 1
            except Exception as e:                      # one bad row must not stop the rest
                self.counters["bad_rows"] += 1
                log.exception("%s row %d of seq %d not applied", table, i, seq)
                self._issue(str(row.get("account", row.get("sym", ""))), ("error", table, seq, i),
                            f"{table} row {i} (seq {seq}) not applied: {type(e).__name__}: {e}")
        return applied

    def _instrument(self, r: dict) -> None:
        sym = r["sym"]
        self.book.instruments[sym] = Instrument(sym, r["assetclass"], r["ccy"], r["multiplier"], r["sector"],
                                                r["ccp"], r["model"], r["underlying"], r["adv"])
        target = sym if sym in self.history_syms else (r["underlying"] if r["underlying"] in self.history_syms else None)
        old = self.risk_sym.pop(sym, None)
        if old:
            self.mapped[old].discard(sym)
            if len(self.mapped[old]) < 2:
                self.shared.discard(old)
        if target:
            self.risk_sym[sym] = target
            self.mapped.setdefault(target, set()).add(sym)
            if len(self.mapped[target]) > 1:
                self.shared.add(target)
        self._revalue_holders_in_full(sym)

    def _account(self, r: dict) -> None:
        sym = r["sym"]
        old = self.book.accounts.get(sym)
        self.book.accounts[sym] = Account(sym, r["desk"], r["ccp"], r["model"], r["ccy"], r["collateral"],
                                          old.moved if old else ExactSum(), r["buffer"], r["threshold"],
                                          r["callpct"], r["imjump"], r["imjumpmins"])
        self._open.discard((sym, "account"))
        self.stale.add(sym)
        self.dirty.add(sym)

    def _position(self, r: dict) -> None:
        self.book.set_position(r["account"], r["sym"], r["qty"], r["price"])
        self._mark_stale(r["account"])

    def _fill(self, r: dict) -> None:
        account, sym, qty, price, execid = r["account"], r["sym"], r["qty"], r["price"], r["execid"]
        if account not in self.book.accounts:
            self._issue(account, (account, "account"), f"fill {execid} for unknown account {account}: booked; "
                        "no margin until the account's reference data arrives")
        if not valid_price(price):
            mark = self.book.mark(sym, self.book.holdings.get(account, {}).get(sym))
            self._issue(account, (account, "fillprice", execid), f"fill {execid} in {sym} has an invalid price "
                        f"{price}: booked at the mark {mark}" + ("" if math.isfinite(mark) else " (none: cost 0)"))
            price = mark if math.isfinite(mark) else 0.0
        self._touch(account, sym, self.book.add_fill(account, sym, qty, price))

    def _quotes(self, cols: dict) -> int:
        """A quote batch: marks first (last valid price wins), then one revaluation per instrument."""
        touched: dict[str, None] = {}
        vol_touched: dict[str, None] = {}
        last = self.book.last
        for sym, price, vol in zip(cols["sym"].tolist(), cols["price"].tolist(), cols["vol"].tolist()):
            if valid_price(price):
                last[sym] = price
                touched[sym] = None
            else:
                self._bad_quote(sym, price)
            if math.isfinite(vol) and vol > 0 and self.book.vol.get(sym) != vol:
                self.book.vol[sym] = vol
                vol_touched[sym] = None
        for sym in touched:
            if sym in self._bad_price:
                self._bad_price.discard(sym)
                for account in self.book.holders.get(sym, ()):
                    self._open.discard((account, "badprice", sym))
            self._revalue_holders(sym)
        if self.span is not None:
            self._span_quotes(touched, vol_touched)
        for sym in vol_touched:
            if self._set_volscale(sym, self.book.vol[sym]):
                for inst in self.mapped.get(sym, ()):
                    self._revalue_holders(inst)
        return len(cols["sym"])

    def _span_quotes(self, priced, vol_changed) -> None:
        """Futures prices and option vols in the SPAN parameters move their risk arrays, for every
        SPAN account at once (SpanBook); O(16) per account holding an affected contract."""
        params = self.span.params
        moved = False
        for sym in priced:
            j = params.index.get(sym)
            if j is not None and params.kind[j] == FUTURE:
                self.span.reprice(sym, self.book.last[sym])
                moved = True
        for sym in vol_changed:
            j = params.index.get(sym)
            if j is not None and params.kind[j] != FUTURE and params.scan.has_scan[j]:
                self.span.revol(sym, self.book.vol[sym])
                moved = True
        if moved:
            self.dirty.update(self.span.accounts)

    def _bad_quote(self, sym: str, price: float) -> None:
        self.counters["bad_prices"] += 1
        self._bad_price.add(sym)
        holders = self.book.holders.get(sym, ())
        if not holders:
            log.warning("quote for %s has an invalid price %r: ignored (no account holds it)", sym, price)
        for account in holders:
            mark = self.book.mark(sym, self.book.holdings[account][sym])
            self._issue(account, (account, "badprice", sym),
                        f"quote for {sym} has an invalid price {price}: ignored, {sym} stays marked at {mark}")

    def _set_volscale(self, sym: str, vol: float) -> bool:
        changed = False
        for name, model in self.models.items():
            col = model.index.get(sym)
            if col is None or not model.base_vol[col] > 0:
                continue
            f = vol / model.base_vol[col]
            if self.config.vol_floor:
                f = max(1.0, f)
            if f != self.volscale[name][col]:
                self.volscale[name][col] = f
                changed = True
        return changed

    def _settle(self, r: dict) -> None:
        sym, price = r["sym"], r["price"]
        if not valid_price(price):
            for account in self.book.holders.get(sym, ()):
                self._issue(account, (account, "badsettle", sym, price),
                            f"settlement price {price} for {sym} is invalid: ignored")
            return
        self.book.apply_settle(sym, price)
        self._revalue_holders(sym)

    def _collateral(self, r: dict) -> None:
        account = r["sym"]
        acct = self.book.accounts.get(account)
        if acct is None:
            self._issue(account, (account, "collateral", r["ref"]), f"collateral movement {r['ref']} of "
                        f"{r['amount']} for unknown account {account}: ignored")
            return
        acct.moved.add(r["amount"])
        self.dirty.add(account)

    def _load_span(self, path: str) -> bool:
        """Loads a SPAN parameter file (relative paths from the repo root); False, with the reason
        kept in span_problem, when it cannot be read."""
        full = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
        try:
            self.span = SpanBook(load_span(full))
            return True
        except (OSError, ValueError, SpanFileError) as e:
            self.span_problem = f"SPAN parameter file {path} could not be loaded: {e}"
            log.error("%s", self.span_problem)
            return False

    def _span_accounts(self) -> list[str]:
        return [a for a, acct in self.book.accounts.items() if acct.model == SPAN_MODEL]

    def _paramfile(self, r: dict) -> None:
        """A CCP parameter file took effect. Kind `span`: new SPAN parameters, every SPAN account is
        revalued in full. Kind `var`: new parameters for the VaR models it names (calc.toml
        `[models.NAME]` tables), rebuilt from the history, every account using them revalued in
        full. Other kinds are not calc's (logged). A file that cannot be used leaves the previous
        parameters in force, with an alert on every account concerned."""
        kind, path = r["kind"], r["path"]
        if kind == SPAN_MODEL:
            ok, problem, concerned = self._load_span(path), self.span_problem, self._span_accounts()
        elif kind == "var":
            ok, problem, names = self._load_var_models(path)
            concerned = [a for a in self.book.accounts if set(self.model_names(a)) & names]
        else:
            log.info("paramfile %s of kind %s: not used by calc", path, kind)
            return
        for account in concerned:
            if ok:
                self._mark_stale(account)
            else:
                self._issue(account, (account, "paramfile", path), f"{problem}; margins stay on the previous parameters")

    def _load_var_models(self, path: str) -> tuple[bool, str, set[str]]:
        """(loaded, problem, model names concerned) for a VaR parameter file."""
        try:
            new = load_model_set(path)
            built = {n: build_risk_model(m, self.history) for n, m in new.items()}
        except (ConfigError, ValueError) as e:
            names = set(self.models)
            return False, f"VaR parameter file {path} could not be used: {e}", names
        self.config = replace(self.config, models={**self.config.models, **new})
        for name, model in built.items():
            self.models[name] = model
            self._stress_corr.clear()
            self._stress_cov.clear()
            self.volscale[name] = np.ones(len(model.syms))
        for sym, vol in self.book.vol.items():
            self._set_volscale(sym, vol)
        log.info("VaR parameter file %s: models %s rebuilt", path, sorted(built))
        return True, "", set(built)

    # ---- keeping the risk state ----------------------------------------------------------------
    def model_names(self, account: str) -> list[str]:
        acct = self.book.accounts.get(account)
        if acct is None:
            return []
        if acct.model == SPAN_MODEL:
            return [SPAN_MODEL]
        return [m.name for m in self.config.models_for(acct.ccp)]

    def _mark_stale(self, account: str) -> None:
        self.stale.add(account)
        self.dirty.add(account)

    def _touch(self, account: str, sym: str, h: Holding) -> None:
        risk = self.risk.get(account)
        if risk is None or account in self.stale:
            self._mark_stale(account)
        else:
            self.revalue_holding(account, sym, h, risk)
            self.dirty.add(account)

    def _revalue_holders(self, sym: str) -> None:
        for account in self.book.holders.get(sym, ()):
            self._touch(account, sym, self.book.holdings[account][sym])

    def _revalue_holders_in_full(self, sym: str) -> None:
        for account in self.book.holders.get(sym, ()):
            self._mark_stale(account)

    def revalue_holding(self, account: str, sym: str, h: Holding, risk: AccountRisk, quiet: bool = False) -> None:
        """Brings the holding's value, vm and add-ons into every model of the account (O(S) each).
        quiet: raise no issues (a what-if on a copy)."""
        book = self.book
        mark = book.mark(sym, h)
        qty = h.qty
        inst = book.instruments.get(sym)
        mult = inst.multiplier if inst else 1.0
        if math.isfinite(mark):
            value, vm = qty * mark * mult, h.vm(mark, mult)
        else:
            value = vm = 0.0
            if qty and not quiet:
                self._no_price(account, sym, qty)
        risk.vm_sum.replace(risk.vm_parts.get(sym, 0.0), vm)
        risk.vm_parts[sym] = vm
        rsym = self.risk_sym.get(sym)
        for name, e in risk.models.items():
            if name == SPAN_MODEL:
                self._span_position(account, sym, qty, abs(value), risk, e, inst is None, quiet)
                continue
            model = self.models[name]
            col = model.index.get(rsym) if rsym else None
            u = value * self.volscale[name].item(col) if col is not None else 0.0   # a float, not numpy's
            if col is None or abs(u) > MAX_MODELLED_VALUE:
                if col is not None:                          # too large for the model: charged in full
                    self._set_part(e, model, sym, rsym, col, 0.0)
                    self._liquidity(e, model, sym, None, 0.0, col, 0.0)
                self._unmodelled(account, sym, name, e, abs(value), inst is None, rsym, quiet)
                continue
            if sym in e.unmodelled:                          # back in the model's range
                e.unmodelled_sum.replace(e.unmodelled.pop(sym), 0.0)
            self._set_part(e, model, sym, rsym, col, u)
            if model.config.liquidity_participation > 0:
                self._liquidity(e, model, sym, inst, qty, col, u)

    def _set_part(self, e: Exposure, model: RiskModel, sym: str, rsym: str, col: int, u: float) -> None:
        """The instrument's effective value in its model column becomes u (O(S) exact update)."""
        if u != e.parts.get(sym, 0.0):
            if u:
                e.parts[sym] = u
            else:
                del e.parts[sym]
            old = e.values.item(col)
            new = self._column_value(e, rsym) if rsym in self.shared else u
            e.values[col] = new
            model.change(e, col, old, new)

    def _column_value(self, e: Exposure, rsym: str) -> float:
        """The effective value of a history column several instruments are mapped to: the exactly
        rounded sum of their parts (the same whatever order they changed in)."""
        parts = e.parts
        return math.fsum(parts.get(sym, 0.0) for sym in self.mapped[rsym])     # fsum: any order

    def _no_price(self, account: str, sym: str, qty: float) -> None:
        self._issue(account, (account, "noprice", sym), f"no price for {sym}: the position of {qty} is "
                    "valued at 0 until a quote or settlement arrives")

    @staticmethod
    def _liquidity(e: Exposure, model: RiskModel, sym: str, inst: Instrument | None, qty: float, col: int,
                   u: float) -> None:
        """The position's liquidity add-on under the model (effective value u in column col)."""
        if inst is None or not math.isfinite(inst.adv) or inst.adv <= 0:
            if sym in e.addons:
                e.addon_sum.replace(e.addons.pop(sym), 0.0)
        else:
            addon = position_liquidity_addon(qty, inst.adv, model.standalone(col, u), model.config.horizon_days,
                                             model.config.liquidity_participation)
            e.addon_sum.replace(e.addons.get(sym, 0.0), addon)
            if addon:
                e.addons[sym] = addon
            else:
                e.addons.pop(sym, None)

    def _span_position(self, account: str, sym: str, qty: float, charge: float, risk: AccountRisk, e: Exposure,
                       unknown: bool, quiet: bool) -> None:
        """The position in the account's SpanAccount (O(16) per change), or a full-value charge."""
        j = risk.span.params.index.get(sym) if risk.span is not None else None
        if j is None:
            self._unmodelled(account, sym, SPAN_MODEL, e, charge, unknown, None, quiet)
            return
        if qty != risk.span.qty.get(j, 0.0):
            risk.span.hold(sym, qty)

    def _unmodelled(self, account: str, sym: str, model: str, e: Exposure, charge: float, unknown: bool,
                    rsym: str | None, quiet: bool) -> None:
        e.unmodelled_sum.replace(e.unmodelled.get(sym, 0.0), charge)
        e.unmodelled[sym] = charge
        if not charge or quiet:
            return
        if unknown:
            why = f"instrument {sym} is not in the reference data"
        elif model == SPAN_MODEL:
            why = f"{sym} is not in the SPAN parameters" if self.span else self.span_problem
        elif rsym in self.models[model].index:
            why = (f"{sym}'s effective value is beyond model {model}'s exact range "
                   f"({MAX_MODELLED_VALUE:,.0f}, calc.exact)")
        else:
            why = f"no usable price history for {sym}" + (f" ({self.models[model].excluded[rsym]})"
                                                           if rsym in self.models[model].excluded else "")
        self._issue(account, (account, "unmodelled", sym, model),
                    f"{why}: model {model} charges the position its full value {charge:,.0f}", model)

    def build_risk(self, account: str) -> AccountRisk:
        """A full revaluation of the account from its holdings, nothing incremental: values and vm of
        all holdings as arrays, each model's column values by one bincount, its P&L (or C @ values) by
        one kernel call; positions without a price, without a model column or with an add-on go through
        the same helpers as `revalue_holding`. `check_drift` compares the incremental state with it."""
        names = self.model_names(account)
        holdings = self.book.holdings.get(account, {})
        if names == [SPAN_MODEL]:
            risk = AccountRisk({SPAN_MODEL: Exposure(np.zeros(0))},
                               span=SpanAccount(self.span.params, account) if self.span else None)
            for sym, h in holdings.items():
                self.revalue_holding(account, sym, h, risk)
            return risk
        risk = AccountRisk({n: self.models[n].new_exposure() for n in names})
        syms, held = list(holdings), list(holdings.values())
        book, instruments = self.book, self.book.instruments
        insts = [instruments.get(s) for s in syms]
        marks = np.array(book.marks(syms, held))
        mults = np.array([i.multiplier if i else 1.0 for i in insts])
        settled_qty, fill_qty = np.array([h.settled_qty for h in held]), np.array([h.fill_qty for h in held])
        qty = settled_qty + fill_qty
        priced = np.isfinite(marks)
        mark = np.where(priced, marks, 0.0)
        value = qty * mark * mults
        vm = np.where(priced, variation_margin(settled_qty, np.array([h.settled_price for h in held]), fill_qty,
                                               np.array([h.fill_cost for h in held]), mark, mults), 0.0)
        for i in np.flatnonzero(~priced & (qty != 0)).tolist():
            self._no_price(account, syms[i], qty.item(i))
        risk.vm_parts = dict(zip(syms, vm.tolist()))
        risk.vm_sum = ExactSum.of(risk.vm_parts.values())
        rsyms = [self.risk_sym.get(s) for s in syms]
        for name, e in risk.models.items():
            model = self.models[name]
            index = model.index
            cols = np.array([index.get(r, -1) if r else -1 for r in rsyms], dtype=np.int64)
            modelled = np.flatnonzero(cols >= 0)
            u = np.zeros(len(syms))
            u[modelled] = value[modelled] * self.volscale[name][cols[modelled]]
            too_large = np.abs(u) > MAX_MODELLED_VALUE         # charged in full, as revalue_holding does
            cols[too_large], u[too_large] = -1, 0.0
            modelled = np.flatnonzero(cols >= 0)
            column_values = np.bincount(cols[modelled], weights=u[modelled], minlength=len(model.syms))
            e.values = column_values.astype(np.float64, copy=False)    # int64 when nothing is modelled
            nonzero = np.flatnonzero(u).tolist()
            e.parts = dict(zip([syms[i] for i in nonzero], u[nonzero].tolist()))
            for rsym in self.shared:
                col = index.get(rsym)
                if col is not None:
                    e.values[col] = self._column_value(e, rsym)
            for i in np.flatnonzero(cols < 0).tolist():
                self._unmodelled(account, syms[i], name, e, abs(value.item(i)), insts[i] is None, rsyms[i], False)
            if model.config.liquidity_participation > 0:
                for i in nonzero:
                    self._liquidity(e, model, syms[i], insts[i], qty.item(i), cols.item(i), u.item(i))
            model.revalue(e)
        return risk

    def _fresh(self, account: str) -> AccountRisk:
        if account in self.stale or account not in self.risk:
            for note in (n for name in self.model_names(account) if name != SPAN_MODEL
                         for n in self.models[name].notes):
                self._issue(account, (account, "note", note), note)
            old = self.risk.get(account)
            if old is not None and old.span is not None and self.span is not None:
                self.span.accounts.pop(account, None)
            risk = self.risk[account] = self.build_risk(account)
            if risk.span is not None:
                self.span.accounts[account] = risk.span          # reprices reach it from now on
            self.stale.discard(account)
        return self.risk[account]

    def _issue(self, account: str, key: tuple, text: str, model: str = "", kind: str = "data") -> None:
        if key in self._open:
            return
        self._open.add(key)
        self.counters[f"issue_{kind}"] += 1
        log.warning("%s alert for %s: %s", kind, account, text)
        self.issues.append(Issue(account, kind, text, model))

    def take_issues(self) -> list[Issue]:
        issues, self.issues = self.issues, []
        return issues

    def take_dirty(self) -> list[str]:
        dirty, self.dirty = self.dirty, set()
        return sorted(dirty)

    # ---- results -------------------------------------------------------------------------------
    def account_risk(self, account: str) -> AccountRisk:
        """The account's current incremental state (revalued in full first if it is stale)."""
        if account not in self.book.accounts:
            raise LookupError(f"unknown account {account}")
        return self._fresh(account)

    def margin(self, account: str, risk: AccountRisk | None = None, quiet: bool = False) -> list[dict]:
        """The account's margin rows, one per model (without time and seq); [] for an unknown account.
        A row that would not be finite is withheld (with an issue unless quiet)."""
        return self.evaluate(account, risk, quiet)[0]

    def evaluate(self, account: str, risk: AccountRisk | None = None, quiet: bool = False,
                 top: int = 0) -> tuple[list[dict], list[tuple[str, float]]]:
        """(margin rows as `margin`, the primary model's `top` drivers as `drivers`; none for top 0),
        the primary model's VaR, ES and contributions from one evaluation (one tail selection)."""
        acct = self.book.accounts.get(account)
        if acct is None:
            return [], []
        risk = risk or self._fresh(account)
        vm = risk.vm
        owed = max(0.0, -vm)
        collateral = acct.collateral
        rows, drivers = [], []
        for i, (name, e) in enumerate(risk.models.items()):
            if name == SPAN_MODEL:
                var = es = math.nan
                im = (risk.span.initial() if risk.span is not None else 0.0) + e.unmodelled_total
                if top and i == 0:
                    drivers = self._span_drivers(risk, top)
            else:
                model = self.models[name]
                if top and i == 0:                      # the primary model
                    var, es, contributions, columns = model.measures(e, 1.0 + model.config.apc_buffer,
                                                                     _selected(top, model))
                    drivers = self._ranked(e, model, contributions, columns, top)
                else:
                    var, es = model.var_es(e)
                base = max(0.0, var if model.config.measure == "var" else es)
                if model.config.apc_buffer:
                    base = apc_buffer(base, model.config.apc_buffer)
                im = base + e.addon_total + e.unmodelled_total
            requirement = im + owed
            row = {"sym": account, "model": name, "ccy": acct.ccy, "im": im, "vm": vm, "requirement": requirement,
                   "collateral": collateral, "excess": collateral - requirement,
                   "call": max(0.0, requirement - collateral), "var": var, "es": es}
            # requirement, excess and call are finite when im, vm and collateral are
            if not (math.isfinite(im) and math.isfinite(vm) and math.isfinite(collateral)) or (
                    name != SPAN_MODEL and not (math.isfinite(var) and math.isfinite(es))):
                if quiet:
                    continue
                self._issue(account, (account, "nan", name), f"margin of {account} under {name} is not finite "
                            f"(var {var}, es {es}, vm {vm}): withheld", name)
                continue
            if not quiet:
                self._open.discard((account, "nan", name))
            rows.append(row)
        return rows, drivers

    def drivers(self, account: str, model: str | None = None, risk: AccountRisk | None = None,
                top: int | None = None) -> list[tuple[str, float]]:
        """Each position's contribution to the model's im (all of them sum to im), largest first;
        the `top` largest only when given. An instrument's contribution is its share of its history
        column's contribution (ES / Euler, x the APC buffer) plus its add-on and full-value charge.

        With `top`, only candidates are evaluated (O(N) in numpy plus O(top) in Python): the top
        columns, columns shared by several instruments, and positions with an add-on or charge. A
        position outside them is the only one in its column and has no add-on, so its contribution
        is its column's, below every top column's: the result is exact."""
        risk = risk or self.account_risk(account)
        name = model or next(iter(risk.models), None)
        if name not in risk.models:
            raise LookupError(f"account {account} has no model {name} (models: {list(risk.models)})")
        if name == SPAN_MODEL:
            return self._span_drivers(risk, top)
        e, m = risk.models[name], self.models[name]
        _, _, contributions, columns = m.measures(e, 1.0 + m.config.apc_buffer, _selected(top, m))
        return self._ranked(e, m, contributions, columns, top)

    def _ranked(self, e: Exposure, m: RiskModel, col_contrib: np.ndarray, columns: np.ndarray,
                top: int | None) -> list[tuple[str, float]]:
        """`drivers` from the model's per column contributions and the columns of the `top` largest
        (`RiskModel.measures`): each column's split among its instruments."""
        if top is None or top >= len(m.syms):
            columns = np.flatnonzero(e.values)
            columns = columns[np.argsort(-col_contrib[columns], kind="stable")]
        mapped, syms, shared = self.mapped, m.syms, self.shared
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
        parts, values, index, risk_sym = e.parts, e.values, m.index, self.risk_sym
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

    @staticmethod
    def _span_drivers(risk: AccountRisk, top: int | None) -> list[tuple[str, float]]:
        """SPAN: each position's scan risk (qty x risk array at its combined commodity's active
        scenario) plus full-value charges; they sum to the scan risk, not to the im."""
        out = {p.sym: p.scan for p in risk.span.result().positions} if risk.span is not None else {}
        for sym, charge in risk.models[SPAN_MODEL].unmodelled.items():
            if charge:
                out[sym] = out.get(sym, 0.0) + charge
        ranked = sorted(((s, float(c)) for s, c in out.items() if c), key=lambda sc: -sc[1])
        return ranked if top is None else ranked[:top]

    def positions(self, account: str, holdings: dict[str, Holding] | None = None) -> dict[str, list]:
        """Columns sym, qty, mark, value, vm of the account's non-flat holdings."""
        book = self.book
        if account not in book.holdings and account not in book.accounts:
            raise LookupError(f"unknown account {account}")
        cols = {"sym": [], "qty": [], "mark": [], "value": [], "vm": []}
        for sym, h in sorted((holdings or book.holdings.get(account, {})).items()):
            if not h.qty and not h.fill_cost:
                continue
            mark, mult = book.mark(sym, h), book.multiplier(sym)
            cols["sym"].append(sym)
            cols["qty"].append(h.qty)
            cols["mark"].append(mark)
            cols["value"].append(h.qty * mark * mult if math.isfinite(mark) else 0.0)
            cols["vm"].append(h.vm(mark, mult) if math.isfinite(mark) else 0.0)
        return cols

    def stress(self, account: str, scenario: str, holdings: dict[str, Holding] | None = None,
               risk: AccountRisk | None = None) -> dict:
        """Runs a named stress scenario on the account under its primary model's covariance.

        loss = shock loss + stressed VaR (calc.stress); the stressed requirement adds the vm owed now
        and the im's add-ons / full-value charges; call = max(0, stressed requirement - collateral).
        """
        sc = self.config.stress.get(scenario)
        if sc is None:
            raise LookupError(f"unknown stress scenario {scenario} (known: {sorted(self.config.stress)})")
        names = self.model_names(account)
        if not names:
            raise LookupError(f"unknown account {account}")
        if names == [SPAN_MODEL]:
            raise LookupError(f"stress scenarios run on VaR accounts: {account} is margined by SPAN")
        acct = self.book.accounts[account]
        risk = risk or self._fresh(account)
        name = names[0]
        m, e = self.models[name], risk.models[name]
        syms, sectors, values, cols = [], [], [], []
        for sym, h in (holdings or self.book.holdings.get(account, {})).items():
            col = m.index.get(self.risk_sym.get(sym, ""))
            if col is None or not h.qty:
                continue
            inst = self.book.instruments[sym]
            syms.append(sym)
            sectors.append(inst.sector)
            values.append(h.qty * self.book.mark(sym, h) * inst.multiplier)
            cols.append(col)
        shocks, cov = self._stress_setup(name, sc, tuple(cols), tuple(syms), tuple(sectors))
        res = evaluate_stress(sc.name, check_values(values), shocks, cov, m.scale)
        requirement = max(0.0, -risk.vm) + res.loss + e.addon_total + e.unmodelled_total
        call = max(0.0, requirement - acct.collateral)
        order = kernels.largest(res.contributions, self.config.alerts.top_drivers)
        return {"account": account, "scenario": scenario, "model": name, "loss": res.loss,
                "shock_loss": res.shock_loss, "stressed_var": res.stressed_var, "requirement": requirement,
                "collateral": acct.collateral, "call": call, "buffer": acct.buffer,
                "buffer_used": call / acct.buffer if acct.buffer > 0 else math.inf,
                "drivers": [(syms[i], float(res.contributions[i])) for i in order]}

    def _stress_setup(self, name: str, scenario, cols: tuple, syms: tuple, sectors: tuple):
        """(price shocks, stressed covariance) of the scenario for these history columns of model
        `name`, kept while their volatility scaling (quote.vol) is unchanged: between two vol updates a
        what-if's before and after and every alert's stress run pay only for the evaluation."""
        model = self.models[name]
        idx = np.array(cols, dtype=np.int64)
        f = self.volscale[name][idx]
        key = (name, scenario.name, cols, syms, sectors)
        entry = self._stress_cov.get(key)
        if entry is None or entry[0] != f.tobytes():
            if len(self._stress_cov) >= STRESS_CACHE_SIZE:
                self._stress_cov.clear()
            base = model.cov[np.ix_(idx, idx)]
            corr = self._stressed_correlation(model, base, scenario, cols, syms, sectors)
            vols = np.sqrt(np.clip(np.diag(base), 0.0, None)) * f * scenario.vol_multipliers(syms, sectors)
            entry = self._stress_cov[key] = (f.tobytes(), scenario.shock_vector(syms, sectors),
                                             covariance_from_correlation(vols, corr))
        return entry[1], entry[2]

    def _stressed_correlation(self, model: RiskModel, base: np.ndarray, scenario, cols: tuple, syms, sectors):
        """The scenario's stressed, PSD-repaired correlation of these history columns, computed once per
        (model, scenario, columns, sectors): a what-if's before and after, and every alert's stress run,
        reuse it. Volatility scaling (quote.vol) does not change a correlation."""
        key = (id(model), scenario.name, cols, tuple(sectors))
        corr = self._stress_corr.get(key)
        if corr is None:
            if len(self._stress_corr) >= STRESS_CACHE_SIZE:
                self._stress_corr.clear()
            check_covariance(base, syms)
            corr = self._stress_corr[key] = stressed_correlation(correlation_from_covariance(base)[1], scenario,
                                                                 syms, sectors)
        return corr

    # ---- checking the incremental state --------------------------------------------------------
    def check_drift(self, accounts: list[str] | None = None) -> float:
        """Full recompute of the accounts (default: all) from their holdings against their incremental
        state: its exact sums, values and totals, and the margin rows both give. The state is exact
        (calc.exact), so any difference above `drift_tolerance` (relative; 0 by default) is a defect:
        it raises a `drift` issue and the account is reset to the recompute. Returns the max drift."""
        worst = 0.0
        for account in list(self.risk) if accounts is None else accounts:
            if account in self.stale or account not in self.risk:
                continue
            inc, full = self.risk[account], self.build_risk(account)
            drift = max(_relative_drift(inc, full),
                        _rows_drift(self.margin(account, inc, quiet=True), self.margin(account, full, quiet=True)))
            worst = max(worst, drift)
            if drift > self.config.drift_tolerance:
                self.counters["drift_resets"] += 1
                self._issue(account, (account, "drift", self.counters["drift_resets"]),
                            f"incremental state of {account} differs by {drift:.3g} (relative) from a full "
                            "recompute from its positions: reset", kind="drift")
                self.risk[account] = full
                self.dirty.add(account)
        return worst


def _rel(x, y) -> float:
    """max |x - y| relative to max(1, max |y|); NaN where only one side is NaN counts as infinite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return math.inf
    x, y = np.nan_to_num(x), np.nan_to_num(y)
    return float(np.max(np.abs(x - y), initial=0.0) / max(1.0, float(np.max(np.abs(y), initial=0.0))))


def _rows_drift(a: list[dict], b: list[dict]) -> float:
    if [r["model"] for r in a] != [r["model"] for r in b]:
        return math.inf
    return max((_rel([r[f] for f in MARGIN_FIELDS], [s[f] for f in MARGIN_FIELDS]) for r, s in zip(a, b)),
               default=0.0)


def _relative_drift(a: AccountRisk, b: AccountRisk) -> float:
    worst = _rel(a.vm, b.vm)
    if a.span is not None:
        worst = max(worst, _rel(a.span.state.value, b.span.state.value), _rel(a.span.state.hi, b.span.state.hi),
                    _rel(a.span.state.lo, b.span.state.lo))
    for name, e in a.models.items():
        f = b.models[name]
        worst = max(worst, _rel(e.values, f.values), _rel(e.addon_total, f.addon_total),
                    _rel(e.unmodelled_total, f.unmodelled_total), _rel(e.hi, f.hi), _rel(e.lo, f.lo))
        if e.pnl is not None:
            worst = max(worst, _rel(e.pnl, f.pnl))
        elif e.cv is not None:
            worst = max(worst, _rel(e.cv, f.cv), _rel(e.sigma2, f.sigma2))
    return worst
