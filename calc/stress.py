"""Stress tests: named scenarios from configuration (price shocks per sym / per sector, volatility
multipliers, correlation stress), evaluated on an account's positions.

A scenario's loss = shock loss + stressed VaR:

- shock loss: ``-sum_i v_i * shock_i`` (a sym's shock overrides its sector's);
- stressed VaR: the parametric VaR of the shocked values ``v_i * (1 + shock_i)`` under the stressed
  covariance: vols multiplied (``vol_multiplier`` for all, then per sector, then per sym, the most
  specific wins), off-diagonal correlations ``rho -> clip(m * rho, -1, 1)`` with m =
  ``correlation_multiplier`` (for every pair, or with ``correlation_scope = "shocked"`` only pairs of
  two shocked instruments), then repaired to the nearest PSD correlation matrix with unit diagonal
  (calc.covariance.nearest_correlation, "clip" or "higham").

Contributions per position (shock loss plus Euler contribution to the stressed VaR) sum to the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from calc import kernels
from calc.covariance import (REPAIR_METHODS, check_covariance, correlation_from_covariance,
                             covariance_from_correlation, nearest_correlation)
from calc.models import check_values, z_score
from calc.scenarios import check_horizon_days

TECH_SECTOR_CRASH = {
    "name": "tech sector crash",
    "sector_shocks": {"tech": -0.20},
    "correlation_multiplier": 1.5,
}

_KEYS = {"name", "sym_shocks", "sector_shocks", "vol_multiplier", "sector_vol_multipliers", "sym_vol_multipliers",
         "correlation_multiplier", "correlation_scope", "psd_repair"}


@dataclass(frozen=True)
class StressScenario:
    """One named stress scenario (see the module docstring for the meaning of each field)."""

    name: str
    sym_shocks: dict[str, float] = field(default_factory=dict)
    sector_shocks: dict[str, float] = field(default_factory=dict)
    vol_multiplier: float = 1.0
    sector_vol_multipliers: dict[str, float] = field(default_factory=dict)
    sym_vol_multipliers: dict[str, float] = field(default_factory=dict)
    correlation_multiplier: float = 1.0
    correlation_scope: str = "all"
    psd_repair: str = "clip"

    @classmethod
    def from_config(cls, config: dict) -> "StressScenario":
        """Builds and validates a scenario from a dict (JSON / TOML configuration)."""
        unknown = set(config) - _KEYS
        if unknown:
            raise ValueError(f"stress scenario: unknown keys {sorted(unknown)}")
        name = config.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("stress scenario: 'name' must be a non-empty string")

        def number_map(key, low):
            m = config.get(key, {})
            if not isinstance(m, dict):
                raise ValueError(f"stress scenario {name!r}: {key} must be a mapping")
            out = {}
            for k, x in m.items():
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= low:
                    raise ValueError(f"stress scenario {name!r}: {key}[{k!r}] must be a number > {low}, got {x!r}")
                out[str(k)] = float(x)
            return out

        def number(key, default, low):
            x = config.get(key, default)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < low:
                raise ValueError(f"stress scenario {name!r}: {key} must be a number >= {low}, got {x!r}")
            return float(x)

        scope = config.get("correlation_scope", "all")
        if scope not in ("all", "shocked"):
            raise ValueError(f"stress scenario {name!r}: correlation_scope must be 'all' or 'shocked', got {scope!r}")
        repair = config.get("psd_repair", "clip")
        if repair not in REPAIR_METHODS:
            raise ValueError(f"stress scenario {name!r}: psd_repair must be one of {REPAIR_METHODS}, got {repair!r}")
        return cls(name=name, sym_shocks=number_map("sym_shocks", -1.0), sector_shocks=number_map("sector_shocks", -1.0),
                   vol_multiplier=number("vol_multiplier", 1.0, 0.0),
                   sector_vol_multipliers=number_map("sector_vol_multipliers", 0.0),
                   sym_vol_multipliers=number_map("sym_vol_multipliers", 0.0),
                   correlation_multiplier=number("correlation_multiplier", 1.0, 0.0),
                   correlation_scope=scope, psd_repair=repair)

    def shock_vector(self, syms, sectors) -> np.ndarray:
        """Per instrument simple-return shock (0 where the scenario does not touch it)."""
        return np.array([self.sym_shocks.get(s, self.sector_shocks.get(sec, 0.0)) for s, sec in zip(syms, sectors)])

    def vol_multipliers(self, syms, sectors) -> np.ndarray:
        """Per instrument volatility multiplier."""
        return np.array([self.sym_vol_multipliers.get(s, self.sector_vol_multipliers.get(sec, self.vol_multiplier))
                         for s, sec in zip(syms, sectors)])

    def shocked_mask(self, syms, sectors) -> np.ndarray:
        """True for the instruments the scenario shocks (by sym or by sector)."""
        return np.array([s in self.sym_shocks or sec in self.sector_shocks for s, sec in zip(syms, sectors)], dtype=bool)


def load_scenarios(configs) -> dict[str, StressScenario]:
    """{name: StressScenario} from a list of scenario dicts (names must be unique)."""
    out = {}
    for cfg in configs:
        sc = StressScenario.from_config(cfg)
        if sc.name in out:
            raise ValueError(f"stress scenario {sc.name!r} defined twice")
        out[sc.name] = sc
    return out


def stressed_correlation(corr: np.ndarray, scenario: StressScenario, syms, sectors) -> np.ndarray:
    """The scenario's correlation matrix: correlations scaled and clipped, PSD repaired.

    It depends on the correlation, the scenario and which instruments (and sectors) are held, never on
    positions, prices or volatility levels, so a live engine can keep it between evaluations."""
    m = scenario.correlation_multiplier
    if m == 1.0:
        return corr
    scaled = np.clip(corr * m, -1.0, 1.0)
    if scenario.correlation_scope == "shocked":
        mask = scenario.shocked_mask(syms, sectors)
        pair = mask[:, None] & mask[None, :]
        scaled = np.where(pair, scaled, corr)
    np.fill_diagonal(scaled, 1.0)
    return nearest_correlation(scaled, scenario.psd_repair)


def stressed_covariance(cov, scenario: StressScenario, syms, sectors, stressed_corr=None) -> np.ndarray:
    """The scenario's covariance: vols multiplied, correlations stressed (`stressed_correlation`, or the
    one given, computed before from this covariance's correlation)."""
    vols, corr = correlation_from_covariance(cov if stressed_corr is not None else check_covariance(cov, syms))
    if stressed_corr is None:
        stressed_corr = stressed_correlation(corr, scenario, syms, sectors)
    return covariance_from_correlation(vols * scenario.vol_multipliers(syms, sectors), stressed_corr)


@dataclass(frozen=True)
class StressResult:
    """``loss = shock_loss + stressed_var``; ``contributions`` per position sum to ``loss``."""

    name: str
    loss: float
    shock_loss: float
    stressed_var: float
    contributions: np.ndarray
    shocked_values: np.ndarray


def run_stress(values, cov, scenario: StressScenario, syms, sectors, confidence: float = 0.99,
               horizon_days: int = 1, stressed_corr=None) -> StressResult:
    """Evaluates ``scenario`` on positions ``values`` (aligned with ``syms`` and ``sectors``);
    ``stressed_corr``: the scenario's correlation of these instruments, when already computed."""
    syms, sectors = list(syms), list(sectors)
    if len(syms) != len(sectors):
        raise ValueError(f"{len(syms)} syms and {len(sectors)} sectors must align")
    v = check_values(values, len(syms))
    h = check_horizon_days(horizon_days)
    c = stressed_covariance(cov, scenario, syms, sectors, stressed_corr)
    return evaluate_stress(scenario.name, v, scenario.shock_vector(syms, sectors), c,
                           z_score(confidence) * math.sqrt(h))


def evaluate_stress(name: str, values: np.ndarray, shocks: np.ndarray, stressed_cov: np.ndarray,
                    scale: float) -> StressResult:
    """The loss of positions ``values`` under price ``shocks`` and the stressed covariance, with
    ``scale`` = z * sqrt(horizon): what ``run_stress`` computes once the scenario is set up (the live
    engine keeps the set-up, see calc.engine)."""
    shock_loss, stressed_var, contributions, shocked = kernels.stress_loss(values, shocks, stressed_cov, scale)
    return StressResult(name, shock_loss + stressed_var, shock_loss, stressed_var, contributions, shocked)
