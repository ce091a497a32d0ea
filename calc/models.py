"""calc.models: the margin model library for quants, plain functions over numpy arrays of signed
position values (qty * price * multiplier), running the same Numba kernels as the live engine.

- ``parametric_var(values, cov, confidence, horizon_days)``: VaR = z * sqrt(v' C v) * sqrt(h), the
  MISSION formula z * sqrt(w' C w) * V written in dollars (v = w V, so it also holds for long/short
  books whose net value V is near zero); ES = sqrt(v' C v) * sqrt(h) * pdf(z) / (1 - c) (normal);
  contributions: Euler / component VaR, v_i (C v)_i / sigma * z * sqrt(h), summing to VaR.
- ``historical_var(values, returns, ...)`` and ``filtered_historical_var(values, returns, ...,
  decay)``: scenario P&L from daily log returns (calc.scenarios), VaR = k-th largest loss, ES = mean
  of the k largest losses, k = ceil((1 - c) * S); contributions: ES contributions, summing to ES.
- ``ewma_volatility(returns, decay)``: EWMA volatility of daily log returns (calc.scenarios).

Every function validates its input and raises ValueError with a clear message (non-finite values,
shape mismatches, a covariance that is not positive semi-definite).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from calc import kernels
from calc.covariance import check_covariance
from calc.scenarios import check_horizon_days, ewma_volatility, scenario_shocks

__all__ = ["RiskResult", "z_score", "parametric_var", "historical_var", "filtered_historical_var",
           "ewma_volatility", "scenario_var"]


@dataclass(frozen=True)
class RiskResult:
    """The result of one model run. ``contributions`` (one per position) sum to ``var`` when
    ``contributes_to == "var"`` (parametric) or to ``es`` when it is ``"es"`` (historical, FHS)."""

    model: str
    var: float
    es: float
    contributions: np.ndarray
    contributes_to: str
    confidence: float
    horizon_days: int
    n_scenarios: int | None = None
    tail: np.ndarray | None = None      # indices of the k worst scenarios (historical, FHS)


def z_score(confidence: float) -> float:
    """The standard normal quantile of the confidence (2.326 for 0.99)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(confidence)


def check_values(values, n: int | None = None) -> np.ndarray:
    """Position values as a contiguous float64 vector (of n when given), or a ValueError."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be a vector of position values, got shape {v.shape}")
    if n is not None and v.size != n:
        raise ValueError(f"{v.size} position values for {n} instruments")
    if not np.isfinite(v).all():
        raise ValueError(f"position values hold NaN or inf (position {int(np.argmax(~np.isfinite(v)))})")
    return v


def parametric_var(values, cov, confidence: float = 0.99, horizon_days: int = 1) -> RiskResult:
    """Variance-covariance VaR and normal ES of positions ``values`` with the daily covariance ``cov``."""
    c = check_covariance(cov)
    v = check_values(values, c.shape[0])
    h = check_horizon_days(horizon_days)
    z = z_score(confidence)
    cv = kernels.covariance_product(c, v)
    sigma2 = max(kernels.quadratic_form(v, cv), 0.0)
    sigma_h = math.sqrt(sigma2 * h)
    es = sigma_h * NormalDist().pdf(z) / (1.0 - confidence)
    contrib = kernels.euler_contributions(v, cv, sigma2, z * math.sqrt(h))
    return RiskResult("parametric", z * sigma_h, es, contrib, "var", confidence, h)


def scenario_var(values, shocks, confidence: float = 0.99, model: str = "scenario", horizon_days: int = 1) -> RiskResult:
    """VaR, ES and ES contributions of positions ``values`` over an (N, S) matrix of simple-return
    scenario shocks (e.g. calc.scenarios.ScenarioSet.shocks, or a CCP's published scenario set)."""
    sh = np.ascontiguousarray(shocks, dtype=np.float64)
    if sh.ndim != 2 or not np.all(np.isfinite(sh)):
        raise ValueError(f"shocks must be a finite (instruments, scenarios) matrix, got shape {sh.shape}")
    v = check_values(values, sh.shape[0])
    k = kernels.tail_count(sh.shape[1], confidence)
    pnl = kernels.scenario_pnl(v, sh)
    tail = kernels.worst_scenarios(pnl, k)
    var, es = kernels.tail_var_es(pnl, tail)
    contrib = kernels.es_contributions(v, np.ascontiguousarray(sh.T), tail)
    return RiskResult(model, var, es, contrib, "es", confidence, horizon_days, sh.shape[1], tail)


def historical_var(values, returns, confidence: float = 0.99, horizon_days: int = 1, holding: str = "overlap") -> RiskResult:
    """Historical simulation over (T, N) daily log returns; holding period by "overlap" (h-day
    overlapping returns, T - h + 1 scenarios) or "sqrt" (daily log returns * sqrt(h))."""
    h = check_horizon_days(horizon_days)
    shocks = scenario_shocks(returns, h, holding)
    return scenario_var(values, shocks, confidence, "historical", h)


def filtered_historical_var(values, returns, confidence: float = 0.99, horizon_days: int = 1, decay: float = 0.97,
                            holding: str = "overlap", current_vol=None) -> RiskResult:
    """Filtered historical simulation: daily log returns rescaled by current EWMA vol / EWMA vol at
    the scenario date (``current_vol`` overrides the current vol per instrument), then as
    ``historical_var``."""
    h = check_horizon_days(horizon_days)
    shocks = scenario_shocks(returns, h, holding, filtered=True, decay=decay, current_vol=current_vol)
    return scenario_var(values, shocks, confidence, "filtered_historical", h)
