"""A CME SPAN 2-style model for futures (kind `span2`): the framework CME moved equity index futures to
in 2024, in the shape its public description gives: a market risk component from filtered historical
VaR, a stress risk component from named stress scenarios, and a liquidity charge.

    market   the filtered historical VaR (or ES, per `measure`) of the portfolio, as calc.var_model
    stress   the worst loss of the portfolio under the price shocks of the scenarios in
             `stress_scenarios` (config/calc.toml `[stress.NAME]`: sector and instrument shocks,
             applied to the positions' values without intraday vol scaling)
    im       max(market, stress) x (1 + apc_buffer) + liquidity add-ons + full-value charges

It is the VaR model's exact incremental state (calc.state.Exposure) with one more product at
evaluation: the stress losses are values x shocks over the held columns, O(N x scenarios), from the
same exact values, so a replayed or restarted engine gives the same bits.
"""
from __future__ import annotations

import math

import numpy as np

from calc.addons import apc_buffer
from calc.margin_model import Issue, Measure, Position
from calc.state import Exposure
from calc.var_model import VarModel


class Span2Model(VarModel):
    """A filtered historical `VarModel` floored by the worst named stress loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scenarios = []                               # calc.stress.StressScenario, set by from_history
        self.sector = {}                                  # history column -> sector of its instruments
        self._shocks: np.ndarray | None = None            # (N, scenarios), built from `sector`

    @classmethod
    def from_history(cls, config, history, universe, engine) -> Span2Model:
        unknown = [n for n in config.stress_scenarios if n not in engine.stress]
        if unknown:
            raise ValueError(f"model {config.name}: unknown stress scenarios {unknown}")
        model = super().from_history(config, history, universe, engine)
        model.scenarios = [engine.stress[n] for n in config.stress_scenarios]
        return model

    def apply(self, account: str, e: Exposure, p: Position) -> list[Issue]:
        self._learn_sector(p)
        return super().apply(account, e, p)

    def build(self, account: str, positions):
        for p in positions:
            self._learn_sector(p)
        return super().build(account, positions)

    def _learn_sector(self, p: Position) -> None:
        rsym = self.universe.risk_sym.get(p.sym)
        if p.inst is not None and rsym in self.index and self.sector.get(rsym) != p.inst.sector:
            self.sector[rsym] = p.inst.sector
            self._shocks = None

    def stress_shocks(self) -> np.ndarray:
        """(N, scenarios): each scenario's price shock of each history column."""
        if self._shocks is None:
            sectors = [self.sector.get(s, "") for s in self.syms]
            self._shocks = np.column_stack([sc.shock_vector(self.syms, sectors) for sc in self.scenarios]) \
                if self.scenarios else np.zeros((len(self.syms), 0))
        return self._shocks

    def stress_component(self, e: Exposure) -> float:
        """The worst loss (positive) of the positions under the model's stress scenarios."""
        if not self.scenarios:
            return 0.0
        losses = -(e.values / self.volscale) @ self.stress_shocks()
        return max(0.0, float(losses.max()))

    def measure(self, e: Exposure, top: int = 0) -> Measure:
        market = super().measure(e, top)
        stress = self.stress_component(e)
        base = max(0.0, market.var if self.config.measure == "var" else market.es)
        if stress <= base:
            return market
        im = (apc_buffer(stress, self.config.apc_buffer) if self.config.apc_buffer else stress) \
            + e.addon_total + e.unmodelled_total
        return Measure(im, market.var, market.es, market.finite and math.isfinite(im), market.drivers)
