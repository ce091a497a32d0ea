"""The margin-model interface: what the engine asks of every CCP margin model, and the values they
answer with. The VaR family (parametric, historical, filtered historical: calc.var_model), SPAN
(calc.span_model) and the SPAN 2-style futures model (calc.span2_model) each implement it; the
engine (calc.engine) only orchestrates: apply a position change -> touch the account -> evaluate ->
publish the rows. Adding a model is one module implementing `MarginModel` plus its `kind` in
calc.registry and a `[models.NAME]` table in config/calc.toml.

A model keeps one *state* per account (its own type: calc.state.Exposure for the VaR family,
calc.span_model.SpanExposure for SPAN), changed in place by `apply`; a state's `fork()` is a copy to
change freely for a what-if while the live one stays as it is. Nothing is raised or collected on the side:
every call that can find something wrong with the input returns its `Issue`s, and the engine decides
what to do with them (alert on the live state, drop on a what-if fork).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from calc.state import Book, Instrument


@dataclass(frozen=True)
class Issue:
    """Something to raise as an alert: bad input, an unpriceable position, drift. `key` identifies
    its cause: the engine raises an issue once until its cause clears."""
    account: str
    kind: str           # data | drift
    text: str
    model: str = ""
    key: tuple = field(default=(), compare=False)


@dataclass(slots=True)
class Position:
    """One holding as a model sees it: signed quantity and value (qty x mark x multiplier, 0 without a
    mark); `inst` None when the instrument is not in the reference data."""
    sym: str
    qty: float
    value: float
    inst: Instrument | None


@dataclass(slots=True)
class Positions:
    """All holdings of an account, as arrays, for a full revaluation (`MarginModel.build`)."""
    syms: list[str]
    qty: np.ndarray
    value: np.ndarray
    insts: list[Instrument | None]

    def __iter__(self):
        for i, sym in enumerate(self.syms):
            yield Position(sym, self.qty.item(i), self.value.item(i), self.insts[i])


@dataclass(slots=True)
class Measure:
    """A model's numbers for one account: the initial margin, its VaR and ES (NaN where the model has
    none), whether they are all usable (a row that is not is withheld) and, when asked for, the
    drivers: (sym, contribution to im), largest first."""
    im: float
    var: float
    es: float
    finite: bool
    drivers: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class StressLoss:
    """A named stress scenario on an account's positions under a model: the loss (shock loss plus
    stressed VaR), the model's charges outside it (add-ons, full-value charges) and each position's
    contribution to the loss."""
    loss: float
    shock_loss: float
    stressed_var: float
    charges: float
    drivers: list[tuple[str, float]]


class MarginModel(ABC):
    """One configured CCP margin model. `name` is its configuration name (a margin row's `model`)."""
    name: str
    runs_stress: bool = False       # named stress scenarios (calc.stress) run under it
    paramfile_kind: str = ""        # the `paramfile` rows whose file `load` takes ("" = none)

    # ---- state per account ---------------------------------------------------------------------
    @abstractmethod
    def new_state(self, account: str):
        """An account holding nothing."""

    def build(self, account: str, positions: Positions) -> tuple[object, list[Issue]]:
        """A full revaluation from the account's positions (nothing incremental): the engine's drift
        check compares the incremental state with it."""
        state, issues = self.new_state(account), []
        for p in positions:
            issues += self.apply(account, state, p)
        return state, issues

    @abstractmethod
    def apply(self, account: str, state, position: Position) -> list[Issue]:
        """The position's quantity or value changed: bring it into the state (incremental)."""

    def install(self, account: str, state) -> None:
        """`state` becomes the account's live state (models that move every account on a market
        event keep a reference)."""

    def notes(self) -> list[str]:
        """Standing remarks on the model (e.g. its covariance was repaired), raised for each account."""
        return []

    # ---- results -------------------------------------------------------------------------------
    @abstractmethod
    def measure(self, state, top: int = 0) -> Measure:
        """im, VaR, ES and the `top` drivers (none for 0) of the state."""

    @abstractmethod
    def drivers(self, state, top: int | None = None) -> list[tuple[str, float]]:
        """Every position's contribution (or the `top` largest), largest first."""

    def breakdown(self, state) -> dict[str, list]:
        """The requirement's components by the model's own grouping, as columns (SPAN: per combined
        commodity); none (an empty dict) for a model without one."""
        return {}

    @abstractmethod
    def drift(self, state, full) -> float:
        """The largest relative difference between an incremental state and a full revaluation."""

    def stress(self, state, positions: list[Position], scenario, book: Book) -> StressLoss:
        raise LookupError(f"stress scenarios do not run under model {self.name}")

    # ---- market and parameters -------------------------------------------------------------------
    def on_quotes(self, priced: dict[str, None], vol_changed: dict[str, None], book: Book) -> tuple[set[str], set[str]]:
        """A quote batch moved marks (`priced`) and vols (`vol_changed`); the engine has already
        revalued the holders of `priced`. Returns (instruments whose holders need revaluing,
        accounts whose margin changed without that)."""
        return set(), set()

    def load(self, path: str) -> str:
        """A parameter file of `paramfile_kind` took effect: "" when loaded, else the problem (the
        previous parameters stay in force)."""
        return f"model {self.name} takes no parameter files"
