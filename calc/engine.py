"""The live margin engine: applies tickerplant rows to the book and keeps every account's margin
state incrementally, one state per margin model of the account (calc.margin_model); answers
`margin` rows, drivers, positions and stress results on demand. It only orchestrates: a row changes
the book, each model concerned applies the position change to its state, the account is marked dirty,
and evaluation asks each model for its measure. No model-specific branch lives here.

No messaging here (calc.server owns the loop), so the engine runs the same in-process (tests,
benchmarks) and live. Events and their cost:

- fill: the holding changes; each of the account's models applies the new value (VaR: O(S) exact
  update of the scenario P&L, or O(N) of C @ values; SPAN: O(16)); vm per position too.
- quote: the instrument's mark changes: the same update for every account holding it (inverted index
  sym -> accounts); each model also sees the batch (`on_quotes`: vol rescaling, SPAN risk arrays).
- instrument, account, position, paramfile: the accounts concerned are revalued in full.
- settle, collateral: vm / collateral of the accounts concerned.

A `margin` row per account and model:

    var, es      the model's VaR and ES (NaN for SPAN)
    im           the model's initial margin (calc.var_model, calc.span_model, calc.span2_model)
    vm           mark-to-market since the last settlement (calc.state), < 0 = a loss owed
    requirement  im + max(0, -vm)          (vm gains are paid out, they do not offset im)
    collateral   account.collateral + intraday `collateral` movements
    excess       collateral - requirement
    call         max(0, requirement - collateral): the predicted margin call

The models of an account: the one its reference data names when that is a configured model (`span`),
else its CCP's list in config/calc.toml, primary first. Bad input never stops the engine: models and
book return `Issue`s as values; on the live state the engine raises each once (an alert naming the
account and cause) until the cause clears; a what-if drops them. A margin that would not be finite is
withheld, with an issue.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from calc.config import ConfigError, EngineConfig, load_model_set
from calc.exact import ExactSum
from calc.margin_model import Issue, MarginModel, Position, Positions
from calc.registry import build_model, build_models
from calc.state import (
    Account,
    AccountRisk,
    Book,
    Holding,
    Instrument,
    valid_price,
    variation_margin,
)
from calc.universe import Universe
from calc.var_model import relative_difference

log = logging.getLogger(__name__)

MARGIN_FIELDS = ("im", "vm", "requirement", "collateral", "excess", "call", "var", "es")


@dataclass(frozen=True)
class Evaluation:
    """An account's margin rows (one per model whose margin is finite), the primary model's drivers
    when asked for, and the issues found (a withheld row)."""
    rows: list[dict]
    drivers: list[tuple[str, float]]
    issues: list[Issue]


class MarginEngine:
    """Book + margin models + per-account incremental state; `apply` tickerplant batches, read margins."""

    tables = ("instrument", "account", "position", "fill", "quote", "settle", "collateral", "paramfile")

    def __init__(self, config: EngineConfig, history, models: dict[str, MarginModel] | None = None,
                 universe: Universe | None = None):
        """`models` (built over `universe`): by default every configured model (calc.registry). Models
        keep market state (vol scaling, SPAN risk arrays): an engine's are its own."""
        self.config = config
        self.history = history
        self.universe = universe or Universe(history.syms)
        self.models = models or build_models(config, history, self.universe)
        self.book = Book()
        self.risk: dict[str, AccountRisk] = {}
        self.seq = 0                                # seq of the last input applied
        self.time_ns = 0                            # latest input time (the engine's clock)
        self.dirty: set[str] = set()                # accounts whose margin may have changed
        self.stale: set[str] = set()                # accounts waiting for a full revaluation
        self.issues: list[Issue] = []               # raised, not yet taken by the publisher
        self.counters: Counter = Counter()
        self._open: set[tuple] = set()              # issue keys raised and not cleared
        self._bad_price: set[str] = set()
        self._rows = {"instrument": self._instrument, "account": self._account, "position": self._position,
                      "fill": self._fill, "settle": self._settle, "collateral": self._collateral,
                      "paramfile": self._paramfile}

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
                    self._raise(Issue(account, "data", f"quote batch (seq {seq}) not fully applied: "
                                      f"{type(e).__name__}: {e}", key=("error", table, seq)))
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
                self._raise(Issue(str(row.get("account", row.get("sym", ""))), "data",
                                  f"{table} row {i} (seq {seq}) not applied: {type(e).__name__}: {e}",
                                  key=("error", table, seq, i)))
        return applied

    def _instrument(self, r: dict) -> None:
        sym = r["sym"]
        self.book.instruments[sym] = Instrument(sym, r["assetclass"], r["ccy"], r["multiplier"], r["sector"],
                                                r["ccp"], r["model"], r["underlying"], r["adv"])
        self.universe.map(sym, r["underlying"])
        for account in self.book.holders.get(sym, ()):
            self._mark_stale(account)

    def _account(self, r: dict) -> None:
        sym = r["sym"]
        old = self.book.accounts.get(sym)
        self.book.accounts[sym] = Account(sym, r["desk"], r["ccp"], r["model"], r["ccy"], r["collateral"],
                                          old.moved if old else ExactSum(), r["buffer"], r["threshold"],
                                          r["callpct"], r["imjump"], r["imjumpmins"])
        self._open.discard((sym, "account"))
        self._mark_stale(sym)

    def _position(self, r: dict) -> None:
        self.book.set_position(r["account"], r["sym"], r["qty"], r["price"])
        self._mark_stale(r["account"])

    def _fill(self, r: dict) -> None:
        account, sym, qty, price, execid = r["account"], r["sym"], r["qty"], r["price"], r["execid"]
        if account not in self.book.accounts:
            self._raise(Issue(account, "data", f"fill {execid} for unknown account {account}: booked; "
                              "no margin until the account's reference data arrives", key=(account, "account")))
        if not valid_price(price):
            mark = self.book.mark(sym, self.book.holdings.get(account, {}).get(sym))
            self._raise(Issue(account, "data", f"fill {execid} in {sym} has an invalid price {price}: booked at "
                              f"the mark {mark}" + ("" if math.isfinite(mark) else " (none: cost 0)"),
                              key=(account, "fillprice", execid)))
            price = mark if math.isfinite(mark) else 0.0
        self._touch(account, sym, self.book.add_fill(account, sym, qty, price))

    def _quotes(self, cols: dict) -> int:
        """A quote batch: marks first (last valid price wins), then one revaluation per instrument,
        then each model's own reaction (vol scaling, SPAN risk arrays)."""
        priced: dict[str, None] = {}
        vol_changed: dict[str, None] = {}
        book = self.book
        last = book.last
        for sym, price, vol in zip(cols["sym"].tolist(), cols["price"].tolist(), cols["vol"].tolist()):
            if valid_price(price):
                last[sym] = price
                priced[sym] = None
            else:
                self._bad_quote(sym, price)
            if math.isfinite(vol) and vol > 0 and book.vol.get(sym) != vol:
                book.vol[sym] = vol
                vol_changed[sym] = None
        for sym in priced:
            if sym in self._bad_price:
                self._bad_price.discard(sym)
                for account in book.holders.get(sym, ()):
                    self._open.discard((account, "badprice", sym))
            self._revalue_holders(sym)
        for model in self.models.values():
            revalue, dirty = model.on_quotes(priced, vol_changed, book)
            for sym in revalue:
                self._revalue_holders(sym)
            self.dirty.update(dirty)
        return len(cols["sym"])

    def _bad_quote(self, sym: str, price: float) -> None:
        self.counters["bad_prices"] += 1
        self._bad_price.add(sym)
        holders = self.book.holders.get(sym, ())
        if not holders:
            log.warning("quote for %s has an invalid price %r: ignored (no account holds it)", sym, price)
        for account in holders:
            mark = self.book.mark(sym, self.book.holdings[account][sym])
            self._raise(Issue(account, "data", f"quote for {sym} has an invalid price {price}: ignored, {sym} stays "
                              f"marked at {mark}", key=(account, "badprice", sym)))

    def _settle(self, r: dict) -> None:
        sym, price = r["sym"], r["price"]
        if not valid_price(price):
            for account in self.book.holders.get(sym, ()):
                self._raise(Issue(account, "data", f"settlement price {price} for {sym} is invalid: ignored",
                                  key=(account, "badsettle", sym, price)))
            return
        self.book.apply_settle(sym, price)
        self._revalue_holders(sym)

    def _collateral(self, r: dict) -> None:
        account = r["sym"]
        acct = self.book.accounts.get(account)
        if acct is None:
            self._raise(Issue(account, "data", f"collateral movement {r['ref']} of {r['amount']} for unknown "
                              f"account {account}: ignored", key=(account, "collateral", r["ref"])))
            return
        acct.moved.add(r["amount"])
        self.dirty.add(account)

    def _paramfile(self, r: dict) -> None:
        """A CCP parameter file took effect. Kind `var`: new `[models.NAME]` tables (calc.toml format)
        for the models it names, rebuilt from the history. Any other kind goes to the models taking it
        (`MarginModel.paramfile_kind`, e.g. `span`). Every account using a changed model is revalued
        in full; a file that cannot be used leaves the previous parameters in force, with an alert on
        every account concerned. Kinds no model takes are not calc's (logged)."""
        kind, path = r["kind"], r["path"]
        if kind == "var":
            problem, names = self._load_model_set(path)
        else:
            names = {n for n, m in self.models.items() if m.paramfile_kind == kind}
            if not names:
                log.info("paramfile %s of kind %s: not used by calc", path, kind)
                return
            problem = "; ".join(p for p in (self.models[n].load(path) for n in sorted(names)) if p)
        for account in [a for a in self.book.accounts if set(self.model_names(a)) & names]:
            if problem:
                self._raise(Issue(account, "data", f"{problem}; margins stay on the previous parameters",
                                  key=(account, "paramfile", path)))
            else:
                self._mark_stale(account)

    def _load_model_set(self, path: str) -> tuple[str, set[str]]:
        """(problem, model names concerned) for a parameter file in calc.toml format."""
        try:
            new = load_model_set(path)
            built = {n: build_model(m, self.history, self.universe, self.config) for n, m in new.items()}
        except (ConfigError, ValueError) as e:
            return f"VaR parameter file {path} could not be used: {e}", set(self.config.models)
        self.config = replace(self.config, models={**self.config.models, **new})
        for model in built.values():                   # today's vols, as the models they replace had them
            model.on_quotes({}, dict.fromkeys(self.book.vol), self.book)
        self.models.update(built)
        log.info("VaR parameter file %s: models %s rebuilt", path, sorted(built))
        return "", set(built)

    # ---- keeping the state -----------------------------------------------------------------------
    def model_names(self, account: str) -> list[str]:
        """The account's models, primary first: the one its reference data names when that is a
        configured model (e.g. span), else its CCP's."""
        acct = self.book.accounts.get(account)
        if acct is None:
            return []
        if acct.model in self.models and acct.model not in self.config.models:
            return [acct.model]
        return [m.name for m in self.config.models_for(acct.ccp)]

    def _mark_stale(self, account: str) -> None:
        self.stale.add(account)
        self.dirty.add(account)

    def _touch(self, account: str, sym: str, h: Holding) -> None:
        risk = self.risk.get(account)
        if risk is None or account in self.stale:
            self._mark_stale(account)
        else:
            self._raise(*self.revalue_holding(account, sym, h, risk))
            self.dirty.add(account)

    def _revalue_holders(self, sym: str) -> None:
        for account in self.book.holders.get(sym, ()):
            self._touch(account, sym, self.book.holdings[account][sym])

    def revalue_holding(self, account: str, sym: str, h: Holding, risk: AccountRisk) -> list[Issue]:
        """Brings the holding's value and vm into every model of the account (incremental); returns
        what is wrong with it."""
        book = self.book
        mark = book.mark(sym, h)
        qty = h.qty
        inst = book.instruments.get(sym)
        issues = []
        if math.isfinite(mark):
            mult = inst.multiplier if inst else 1.0
            value, vm = qty * mark * mult, h.vm(mark, mult)
        else:
            value = vm = 0.0
            if qty:
                issues.append(self._no_price(account, sym, qty))
        risk.vm_sum.replace(risk.vm_parts.get(sym, 0.0), vm)
        risk.vm_parts[sym] = vm
        position = Position(sym, qty, value, inst)
        for name, state in risk.models.items():
            issues += self.models[name].apply(account, state, position)
        return issues

    @staticmethod
    def _no_price(account: str, sym: str, qty: float) -> Issue:
        return Issue(account, "data", f"no price for {sym}: the position of {qty} is valued at 0 until a quote "
                     "or settlement arrives", key=(account, "noprice", sym))

    def build_risk(self, account: str) -> tuple[AccountRisk, list[Issue]]:
        """A full revaluation of the account from its holdings, nothing incremental: values and vm of
        all holdings as arrays, then each model's `build`. `check_drift` compares the incremental
        state with it."""
        holdings = self.book.holdings.get(account, {})
        syms, held = list(holdings), list(holdings.values())
        book = self.book
        insts = [book.instruments.get(s) for s in syms]
        marks = np.array(book.marks(syms, held))
        mults = np.array([i.multiplier if i else 1.0 for i in insts])
        settled_qty, fill_qty = np.array([h.settled_qty for h in held]), np.array([h.fill_qty for h in held])
        qty = settled_qty + fill_qty
        priced = np.isfinite(marks)
        mark = np.where(priced, marks, 0.0)
        vm = np.where(priced, variation_margin(settled_qty, np.array([h.settled_price for h in held]), fill_qty,
                                               np.array([h.fill_cost for h in held]), mark, mults), 0.0)
        issues = [self._no_price(account, syms[i], qty.item(i)) for i in np.flatnonzero(~priced & (qty != 0)).tolist()]
        risk = AccountRisk(vm_parts=dict(zip(syms, vm.tolist())))
        risk.vm_sum = ExactSum.of(risk.vm_parts.values())
        positions = Positions(syms, qty, qty * mark * mults, insts)
        for name in self.model_names(account):
            risk.models[name], found = self.models[name].build(account, positions)
            issues += found
        return risk, issues

    def _install(self, account: str, risk: AccountRisk) -> AccountRisk:
        self.risk[account] = risk
        for name, state in risk.models.items():
            self.models[name].install(account, state)
        return risk

    def _fresh(self, account: str) -> AccountRisk:
        if account in self.stale or account not in self.risk:
            names = self.model_names(account)
            self._raise(*(Issue(account, "data", note, key=(account, "note", note))
                          for name in names for note in self.models[name].notes()))
            risk, issues = self.build_risk(account)
            self._raise(*issues)
            self._install(account, risk)
            self.stale.discard(account)
        return self.risk[account]

    def _raise(self, *issues: Issue) -> None:
        """Issues found on the live state: each raised once until its cause clears."""
        for issue in issues:
            if issue.key in self._open:
                continue
            self._open.add(issue.key)
            self.counters[f"issue_{issue.kind}"] += 1
            log.warning("%s alert for %s: %s", issue.kind, issue.account, issue.text)
            self.issues.append(issue)

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

    def margin(self, account: str) -> list[dict]:
        """The live margin rows of the account, one per model (without time and seq); [] for an
        unknown account. A row that is not finite is withheld, with an issue until it is again."""
        evaluation = self.evaluate(account)
        self._raise(*evaluation.issues)
        for row in evaluation.rows:
            self._open.discard((account, "nan", row["model"]))
        return evaluation.rows

    def evaluate(self, account: str, risk: AccountRisk | None = None, top: int = 0) -> Evaluation:
        """The margin rows of `risk` (default: the live state) and the primary model's `top` drivers
        (none for 0), from one evaluation per model; nothing raised."""
        acct = self.book.accounts.get(account)
        if acct is None:
            return Evaluation([], [], [])
        risk = risk or self._fresh(account)
        vm = risk.vm
        owed = max(0.0, -vm)
        collateral = acct.collateral
        rows, drivers, issues = [], [], []
        for i, (name, state) in enumerate(risk.models.items()):
            m = self.models[name].measure(state, top if i == 0 else 0)
            if i == 0:
                drivers = m.drivers
            if not (m.finite and math.isfinite(vm) and math.isfinite(collateral)):
                issues.append(Issue(account, "data", f"margin of {account} under {name} is not finite (var {m.var}, "
                                    f"es {m.es}, vm {vm}): withheld", name, (account, "nan", name)))
                continue
            requirement = m.im + owed
            rows.append({"sym": account, "model": name, "ccy": acct.ccy, "im": m.im, "vm": vm,
                         "requirement": requirement, "collateral": collateral, "excess": collateral - requirement,
                         "call": max(0.0, requirement - collateral), "var": m.var, "es": m.es})
        return Evaluation(rows, drivers, issues)

    def drivers(self, account: str, model: str | None = None, risk: AccountRisk | None = None,
                top: int | None = None) -> list[tuple[str, float]]:
        """Each position's contribution to the model's im (default: the primary model), largest
        first; the `top` largest only when given (see the model's `drivers`)."""
        risk = risk or self.account_risk(account)
        name = model or next(iter(risk.models), None)
        if name not in risk.models:
            raise LookupError(f"account {account} has no model {name} (models: {list(risk.models)})")
        return self.models[name].drivers(risk.models[name], top)

    def breakdown(self, account: str) -> dict[str, list]:
        """The primary model's breakdown of the account's requirement (`MarginModel.breakdown`)."""
        risk = self.account_risk(account)
        name = next(iter(risk.models), None)
        return self.models[name].breakdown(risk.models[name]) if name else {}

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

    def runs_stress(self, account: str) -> bool:
        """Whether named stress scenarios run on the account (under its primary model)."""
        names = self.model_names(account)
        return bool(names) and self.models[names[0]].runs_stress

    def stress(self, account: str, scenario: str, holdings: dict[str, Holding] | None = None,
               risk: AccountRisk | None = None) -> dict:
        """Runs a named stress scenario on the account under its primary model (`MarginModel.stress`).

        The stressed requirement is the stress loss + the model's charges beside it + the vm owed now;
        call = max(0, stressed requirement - collateral).
        """
        sc = self.config.stress.get(scenario)
        if sc is None:
            raise LookupError(f"unknown stress scenario {scenario} (known: {sorted(self.config.stress)})")
        names = self.model_names(account)
        if not names:
            raise LookupError(f"unknown account {account}")
        model = self.models[names[0]]
        if not model.runs_stress:
            raise LookupError(f"stress scenarios do not run under model {names[0]}, which margins {account}")
        acct, book = self.book.accounts[account], self.book
        risk = risk or self._fresh(account)
        positions = []
        for sym, h in (holdings or book.holdings.get(account, {})).items():
            inst = book.instruments.get(sym)
            if inst is not None and h.qty:
                positions.append(Position(sym, h.qty, h.qty * book.mark(sym, h) * inst.multiplier, inst))
        res = model.stress(risk.models[names[0]], positions, sc, book)
        requirement = max(0.0, -risk.vm) + res.loss + res.charges
        call = max(0.0, requirement - acct.collateral)
        return {"account": account, "scenario": scenario, "model": names[0], "loss": res.loss,
                "shock_loss": res.shock_loss, "stressed_var": res.stressed_var, "requirement": requirement,
                "collateral": acct.collateral, "call": call, "buffer": acct.buffer,
                "buffer_used": call / acct.buffer if acct.buffer > 0 else math.inf,
                "drivers": res.drivers[:self.config.alerts.top_drivers]}

    # ---- checking the incremental state --------------------------------------------------------
    def check_drift(self, accounts: list[str] | None = None) -> float:
        """Full recompute of the accounts (default: all) from their holdings against their incremental
        state: vm, each model's exact state, and the margin rows both give. The state is exact
        (calc.exact), so any difference above `drift_tolerance` (relative; 0 by default) is a defect:
        it raises a `drift` issue and the account is reset to the recompute. Returns the max drift."""
        worst = 0.0
        for account in list(self.risk) if accounts is None else accounts:
            if account in self.stale or account not in self.risk:
                continue
            inc, (full, _) = self.risk[account], self.build_risk(account)
            drift = max([relative_difference(inc.vm, full.vm),
                         _rows_drift(self.evaluate(account, inc).rows, self.evaluate(account, full).rows),
                         *(self.models[n].drift(s, full.models[n]) for n, s in inc.models.items())])
            worst = max(worst, drift)
            if drift > self.config.drift_tolerance:
                self.counters["drift_resets"] += 1
                self._raise(Issue(account, "drift", f"incremental state of {account} differs by {drift:.3g} "
                                  "(relative) from a full recompute from its positions: reset",
                                  key=(account, "drift", self.counters["drift_resets"])))
                self._install(account, full)
                self.dirty.add(account)
        return worst


def _rows_drift(a: list[dict], b: list[dict]) -> float:
    if [r["model"] for r in a] != [r["model"] for r in b]:
        return math.inf
    return max((relative_difference([r[f] for f in MARGIN_FIELDS], [s[f] for f in MARGIN_FIELDS])
                for r, s in zip(a, b)), default=0.0)
