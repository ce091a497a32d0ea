"""Risk arrays computed from price and volatility scan ranges: futures linearly, options on futures
with Black-76. Pure Numba kernels over arrays, plus `compute_risk_arrays` that fills a `SpanParams`.

Sign convention as in the CME files: loss of one long contract in currency, losses positive. The
extreme scenarios (15, 16) move the price by extreme_multiplier x the scan range, keep the
volatility, and are multiplied by the covered fraction; both come from the parameters (record B).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .model import CALL, FUTURE, SCENARIOS, SpanParams

SCENARIO_PRICE = np.array([s[0] for s in SCENARIOS])
SCENARIO_VOL = np.array([float(s[1]) for s in SCENARIOS])
SCENARIO_EXTREME = np.array([s[2] for s in SCENARIOS])


@njit(cache=True)
def _norm_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True)
def black76(forward, strike, t, vol, rate, is_call):
    """Black-76 value of a European option on a futures price."""
    discount = math.exp(-rate * max(t, 0.0))
    if t <= 0.0 or vol <= 0.0:
        intrinsic = forward - strike if is_call else strike - forward
        return discount * max(intrinsic, 0.0)
    sd = vol * math.sqrt(t)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if is_call:
        return discount * (forward * _norm_cdf(d1) - strike * _norm_cdf(d2))
    return discount * (strike * _norm_cdf(-d2) - forward * _norm_cdf(-d1))


@njit(cache=True)
def black76_delta(forward, strike, t, vol, rate, is_call):
    discount = math.exp(-rate * max(t, 0.0))
    if t <= 0.0 or vol <= 0.0:
        itm = forward > strike if is_call else forward < strike
        return discount * (1.0 if itm else 0.0) * (1.0 if is_call else -1.0)
    sd = vol * math.sqrt(t)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    return discount * (_norm_cdf(d1) if is_call else _norm_cdf(d1) - 1.0)


@njit(cache=True)
def risk_array_kernel(rows, kind, price, underlying, strike, t, vol, rate, price_scan, vol_scan, extreme_mult,
                      covered, lookahead, cvf, scen_price, scen_vol, scen_extreme, out_risk, out_delta):
    """Fill out_risk[i, :16] and out_delta[i] for each contract i in rows. The futures price of
    contract i is price[underlying[i]]; price_scan is in price points."""
    for i in rows:
        f0 = price[underlying[i]]
        is_call = kind[i] == CALL
        base = f0 if kind[i] == FUTURE else black76(f0, strike[i], t[i], vol[i], rate[i], is_call)
        for k in range(scen_price.shape[0]):
            move = scen_price[k] * price_scan[i]
            weight = 1.0
            if scen_extreme[k]:
                move *= extreme_mult[i]
                weight = covered[i]
            if kind[i] == FUTURE:
                value = f0 + move
            else:
                v = max(vol[i] + scen_vol[k] * vol_scan[i], 1e-6)
                value = black76(max(f0 + move, 1e-9), strike[i], t[i] - lookahead[i], v, rate[i], is_call)
            out_risk[i, k] = -(value - base) * cvf[i] * weight
        if kind[i] == FUTURE:
            out_delta[i] = 1.0
        else:
            out_delta[i] = black76_delta(f0, strike[i], t[i], vol[i], rate[i], is_call)


@dataclass
class ScanInputs:
    """Per contract (in `SpanParams.contracts` order) what the kernel needs; has_scan marks the
    contracts with record B parameters, the only ones whose arrays can be computed."""
    has_scan: np.ndarray
    kind: np.ndarray
    price: np.ndarray
    underlying: np.ndarray
    strike: np.ndarray
    t: np.ndarray
    vol: np.ndarray
    rate: np.ndarray
    price_scan: np.ndarray
    vol_scan: np.ndarray
    extreme: np.ndarray
    covered: np.ndarray
    lookahead: np.ndarray
    cvf: np.ndarray

    def run(self, rows: np.ndarray, out_risk: np.ndarray, out_delta: np.ndarray) -> None:
        risk_array_kernel(rows, self.kind, self.price, self.underlying, self.strike, self.t, self.vol, self.rate,
                          self.price_scan, self.vol_scan, self.extreme, self.covered, self.lookahead, self.cvf,
                          SCENARIO_PRICE, SCENARIO_VOL, SCENARIO_EXTREME, out_risk, out_delta)


def scan_inputs(params: SpanParams) -> ScanInputs:
    n = len(params.contracts)
    futures = {(c.exchange, c.code, c.futures_month): i for i, c in enumerate(params.contracts) if c.kind == FUTURE}
    names = ("price", "strike", "t", "vol", "rate", "price_scan", "vol_scan", "extreme", "covered", "lookahead", "cvf")
    cols = {name: np.zeros(n) for name in names}
    kind, underlying = np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    has_scan = np.zeros(n, dtype=np.bool_)
    for i, c in enumerate(params.contracts):
        kind[i], cols["price"][i], cols["strike"][i] = c.kind, c.price, c.strike
        s = params.scan.get(c.series_key)
        if s is None:
            continue
        product = params.products[c.product_key]
        if c.kind != FUTURE:
            under = futures.get((c.exchange, c.underlying or s.underlying, c.futures_month))
            if under is None:
                raise ValueError(f"option {c.symbol}: no underlying future {c.underlying} {c.futures_month}")
            underlying[i] = under
        has_scan[i] = True
        for name, value in dict(t=s.time_to_expiry, vol=c.vol or s.base_vol, rate=s.rate,
                                price_scan=s.price_scan / product.cvf, vol_scan=s.vol_scan,
                                extreme=s.extreme_multiplier, covered=s.covered_fraction, lookahead=s.lookahead,
                                cvf=product.cvf).items():
            cols[name][i] = value
    return ScanInputs(has_scan=has_scan, kind=kind, underlying=underlying, **cols)


def compute_risk_arrays(params: SpanParams) -> int:
    """Recompute the risk array and composite delta of every contract that has scan parameters
    (record B), from its price (futures) or its underlying futures price (options). Returns the
    number of contracts computed."""
    inputs = scan_inputs(params)
    rows = np.flatnonzero(inputs.has_scan)
    risk, delta = np.zeros((len(params.contracts), len(SCENARIOS))), np.zeros(len(params.contracts))
    inputs.run(rows, risk, delta)
    for i in rows:
        c = params.contracts[i]
        c.risk = tuple(float(v) for v in risk[i])
        c.delta = float(delta[i])
    return len(rows)
