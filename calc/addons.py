"""Margin add-ons a CCP applies on top of the model margin: the EMIR anti-procyclicality (APC)
measures and a concentration / liquidity add-on for positions large against average daily volume.

- ``apc_buffer``: EMIR RTS 153/2013 art. 28(1)(a), a buffer of ``rate`` (at least 25%) on the margin,
  which the CCP may release in stressed markets (``released=True``).
- ``apc_stress_weighted``: art. 28(1)(b), ``(1 - weight) * margin + weight * stressed_margin``
  (weight at least 25%), stressed_margin being the margin over a stressed lookback period.
- ``liquidity_addon``: a position of |qty| takes ``d = |qty| / (participation * adv)`` days to
  liquidate; beyond the model's holding period h its risk grows with sqrt(d / h), so the add-on is
  ``standalone_risk * (sqrt(max(d, h) / h) - 1)`` (0 when it liquidates within h days, or when its ADV
  is unknown, NaN). ``standalone_risk`` is the position's own margin: ``standalone_parametric`` or
  ``standalone_scenario``.
"""
from __future__ import annotations

import math

import numpy as np

from calc import kernels
from calc.models import z_score


def apc_buffer(margin: float, rate: float = 0.25, released: bool = False) -> float:
    """The margin with the APC buffer: ``margin * (1 + rate)``, or ``margin`` once released."""
    if rate < 0.25:
        raise ValueError(f"EMIR requires an APC buffer of at least 25%, got {rate:.0%}")
    return margin if released else margin * (1.0 + rate)


def apc_stress_weighted(margin: float, stressed_margin: float, weight: float = 0.25) -> float:
    """The margin with stressed observations weighted ``weight`` (at least 25%)."""
    if not 0.25 <= weight <= 1.0:
        raise ValueError(f"EMIR requires a stressed weight between 25% and 100%, got {weight:.0%}")
    return (1.0 - weight) * margin + weight * stressed_margin


def standalone_parametric(values, cov, confidence: float = 0.99, horizon_days: int = 1) -> np.ndarray:
    """Each position's parametric VaR held alone: ``z * |v_i| * sqrt(C_ii) * sqrt(h)``."""
    v = np.asarray(values, dtype=np.float64)
    return z_score(confidence) * math.sqrt(horizon_days) * np.abs(v) * np.sqrt(np.clip(np.diag(cov), 0.0, None))


def standalone_scenario(values, shocks, confidence: float = 0.99) -> np.ndarray:
    """Each position's scenario ES held alone, over an (N, S) shock matrix."""
    sh = np.ascontiguousarray(shocks, dtype=np.float64)
    return kernels.standalone_es(np.ascontiguousarray(values, dtype=np.float64), sh,
                                 kernels.tail_count(sh.shape[1], confidence))


def position_liquidity_addon(qty: float, adv: float, standalone_risk: float, horizon_days: int = 1,
                             participation: float = 0.2) -> float:
    """One position's concentration / liquidity add-on (see the module docstring); adv NaN: 0."""
    if math.isnan(adv):
        return 0.0
    days = abs(qty) / (participation * adv)
    h = float(horizon_days)
    return standalone_risk * (math.sqrt(max(days, h) / h) - 1.0)


def liquidity_addon(qty, adv, standalone_risk, horizon_days: int = 1, participation: float = 0.2) -> np.ndarray:
    """Per-position concentration / liquidity add-on (see the module docstring), validated."""
    if not 0.0 < participation <= 1.0:
        raise ValueError(f"participation must be in (0, 1], got {participation!r}")
    q = np.asarray(qty, dtype=np.float64)
    a = np.asarray(adv, dtype=np.float64)
    risk = np.asarray(standalone_risk, dtype=np.float64)
    if not (q.shape == a.shape == risk.shape):
        raise ValueError(f"qty {q.shape}, adv {a.shape} and standalone_risk {risk.shape} must align")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(risk))):
        raise ValueError("qty and standalone_risk must be finite")
    if np.any(a <= 0):
        raise ValueError(f"average daily volume must be positive (position {int(np.argmax(a <= 0))})")
    return np.array([position_liquidity_addon(x, y, r, horizon_days, participation)
                     for x, y, r in zip(q.tolist(), a.tolist(), risk.tolist())])
