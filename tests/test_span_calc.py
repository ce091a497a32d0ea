"""calc.span methodology on hand-computed cases: risk arrays (futures, Black-76 options, extreme
moves), scanning risk, tiered intra-commodity spreads in priority order, spot month charge,
inter-commodity credits, short option minimum (both methods), net option value, initial ratio."""
from __future__ import annotations

import math

import pytest

from calc.span import compute
from calc.span.model import (CombinedCommodity, Contract, Product, ScanParameters, SpanParams, SpotMonth, Spread,
                             SpreadLeg, Tier)
from calc.span.riskarray import black76, black76_delta, compute_risk_arrays

LINEAR = (0, 0, -1000, -1000, 1000, 1000, -2000, -2000, 2000, 2000, -3000, -3000, 3000, 3000, -2970, 2970)


def fut(code, month, risk=LINEAR, price=100.0):
    return Contract("X", code, "FUT", month, underlying=code, risk=tuple(risk), price=price)


def opt(code, month, right, strike, risk, delta, price=0.0):
    return Contract("X", code, "OOF", month, month, right, strike, code, tuple(risk), delta, price)


def params_for(contracts, combined=None, inter=(), scan=None):
    p = SpanParams(exchange_complex="T", business_date=20261120, source="test")
    codes = sorted({c.code for c in contracts})
    for code in codes:
        for ptype in ("FUT", "OOF"):
            p.products[("X", code, ptype)] = Product("X", code, ptype, cvf=10.0)
        cc = (combined or {}).get(code) or CombinedCommodity(code)
        cc.products = [("X", code, "FUT"), ("X", code, "OOF")]
        p.combined[code] = cc
    p.contracts = list(contracts)
    p.inter_spreads = list(inter)
    p.scan = dict(scan or {})
    return p


def tiers():
    return [Tier(1, 202612, 202612), Tier(2, 202703, 202703), Tier(3, 202706, 202709)]


def spreads():
    return [Spread(1, 150.0, [SpreadLeg(1, "A", tier=1), SpreadLeg(1, "B", tier=2)]),
            Spread(2, 250.0, [SpreadLeg(1, "A", tier=1), SpreadLeg(1, "B", tier=3)]),
            Spread(3, 100.0, [SpreadLeg(1, "A", tier=2), SpreadLeg(1, "B", tier=3)])]


def calendar_params(**cc):
    contracts = [fut("ES", m) for m in (202612, 202703, 202706, 202709)]
    return params_for(contracts, {"ES": CombinedCommodity("ES", tiers=tiers(), intra_spreads=spreads(), **cc)})


# ---- risk arrays ---------------------------------------------------------------------------------

def test_black76_reference_values_and_parity():
    assert black76(100.0, 100.0, 1.0, 0.2, 0.0, True) == pytest.approx(7.965567455, rel=1e-9)
    c, p = black76(105.0, 100.0, 0.5, 0.3, 0.05, True), black76(105.0, 100.0, 0.5, 0.3, 0.05, False)
    assert c - p == pytest.approx(math.exp(-0.025) * 5.0, rel=1e-12)
    assert black76_delta(100.0, 100.0, 1.0, 0.2, 0.0, True) == pytest.approx(0.5398278, rel=1e-6)


@pytest.mark.parametrize("multiplier, covered, extreme_loss", [(2.0, 0.35, 2100.0), (3.0, 0.33, 2970.0)])
def test_futures_risk_array_is_linear_with_extremes_from_the_parameters(multiplier, covered, extreme_loss):
    p = params_for([fut("ES", 202612, price=6000.0)],
                   scan={("X", "ES", "FUT", 202612, 0): ScanParameters(price_scan=3000, extreme_multiplier=multiplier,
                                                                       covered_fraction=covered)})
    assert compute_risk_arrays(p) == 1
    expected = LINEAR[:14] + (-extreme_loss, extreme_loss)
    assert p.contracts[0].risk == pytest.approx(expected, abs=1e-9) and p.contracts[0].delta == 1.0


def test_option_risk_array_revalues_with_black76():
    s = ScanParameters(price_scan=3000, vol_scan=0.05, extreme_multiplier=3.0, covered_fraction=0.33, rate=0.01,
                       time_to_expiry=0.25, lookahead=0.01)
    p = params_for([fut("ES", 202612, price=6000.0), opt("ES", 202612, "P", 5900.0, LINEAR, 0.0)],
                   scan={("X", "ES", "FUT", 202612, 0): s, ("X", "ES", "OOF", 202612, 202612): s})
    for c in p.contracts:
        c.vol = 0.2
    compute_risk_arrays(p)
    put = p.contracts[1]
    base = black76(6000.0, 5900.0, 0.25, 0.2, 0.01, False)
    down_third_vol_up = black76(6000.0 - 100.0, 5900.0, 0.24, 0.25, 0.01, False)    # scan 3000 / cvf 10 = 300 pts
    extreme_down = black76(6000.0 - 900.0, 5900.0, 0.24, 0.2, 0.01, False)
    assert put.risk[4] == pytest.approx(-(down_third_vol_up - base) * 10.0)
    assert put.risk[15] == pytest.approx(-(extreme_down - base) * 10.0 * 0.33)
    assert put.risk[15] < 0 < put.risk[14]                 # a long put gains when the market crashes
    assert put.delta == pytest.approx(black76_delta(6000.0, 5900.0, 0.25, 0.2, 0.01, False))


# ---- scanning risk and intra-commodity spreads ---------------------------------------------------

def test_scan_risk_is_the_largest_scenario_loss():
    res = compute(calendar_params(), {"ESZ26": 2})
    (es,) = res.by_cc
    assert (es.scan, es.active_scenario, es.intra, es.spot) == (6000.0, 13, 0.0, 0.0)
    assert res.maintenance == 6000.0 and res.initial == 6000.0
    assert [p.scan for p in res.positions] == [6000.0]


def test_calendar_spread_charge_and_spot_month():
    p = calendar_params(spot_months=[SpotMonth(202612, 10.0, 25.0)])
    es = compute(p, {"ESZ26": 1, "ESH27": -1}).by_cc[0]
    assert (es.scan, es.intra, es.spot) == (0.0, 150.0, 10.0)          # one tier 1/2 spread; 1 spread delta in Dec
    es = compute(p, {"ESZ26": 2, "ESH27": -1}).by_cc[0]
    # one spread (150), Dec: 1 delta in the spread at 10 + 1 outright at 25; scan of the net long 1
    assert (es.scan, es.intra, es.spot, es.risk) == (3000.0, 150.0, 35.0, 3185.0)
    assert es.net_delta == 1.0


def test_deltas_net_within_a_tier_and_spreads_form_in_priority_order():
    p = calendar_params()
    assert compute(p, {"ESM27": 1, "ESU27": -1}).by_cc[0].intra == 0.0    # June and September are tier 3
    # Dec long against Mar and Jun short: priority 1 (tier 1/2, 150) takes the only Dec delta
    es = compute(p, {"ESZ26": 1, "ESH27": -1, "ESM27": -1}).by_cc[0]
    assert es.intra == 150.0 and es.net_delta == -1.0
    # 3 long Dec, 1 short Mar, 4 short Jun/Sep: 1 x 150 (1/2) + 2 x 250 (1/3), then Mar is used up
    es = compute(p, {"ESZ26": 3, "ESH27": -1, "ESM27": -2, "ESU27": -2}).by_cc[0]
    assert es.intra == 650.0 and es.net_delta == -2.0


def test_spread_legs_use_delta_per_spread_ratios_and_either_direction():
    cc = CombinedCommodity("ES", tiers=tiers(), intra_spreads=[
        Spread(1, 100.0, [SpreadLeg(2, "A", tier=1), SpreadLeg(1, "B", tier=2)])])
    p = params_for([fut("ES", m) for m in (202612, 202703)], {"ES": cc})
    assert compute(p, {"ESZ26": 5, "ESH27": -2}).by_cc[0].intra == 200.0    # 2 spreads of 2 Dec : 1 Mar
    assert compute(p, {"ESZ26": -4, "ESH27": 3}).by_cc[0].intra == 200.0    # reverse direction, Dec limits to 2


def test_series_spread_legs_name_contract_months():
    cc = CombinedCommodity("ES", tiers=tiers(), intra_spreads=[
        Spread(1, 40.0, [SpreadLeg(1, "A", month=202706), SpreadLeg(1, "B", month=202709)])])
    p = params_for([fut("ES", m) for m in (202706, 202709)], {"ES": cc})
    assert compute(p, {"ESM27": 3, "ESU27": -2}).by_cc[0].intra == 80.0


def test_option_deltas_spread_with_futures():
    contracts = [fut("ES", 202612), fut("ES", 202703), opt("ES", 202612, "C", 100.0, [0.0] * 16, 0.5)]
    p = params_for(contracts, {"ES": CombinedCommodity("ES", tiers=tiers(), intra_spreads=spreads()[:1])})
    # 4 calls x 0.5 delta = 2 long Dec deltas against 1 short Mar: one spread
    assert compute(p, {"ESZ26C100": 4, "ESH27": -1}).by_cc[0].intra == 150.0


# ---- inter-commodity credits -------------------------------------------------------------------

def test_inter_commodity_credit_on_weighted_futures_price_risk():
    nq_risk = tuple(2 * v for v in LINEAR)
    inter = [Spread(1, 0.5, [SpreadLeg(1, "A", cc="ES"), SpreadLeg(1, "B", cc="NQ")])]
    p = params_for([fut("ES", 202612), fut("NQ", 202612, nq_risk)], inter=inter)
    res = compute(p, {"ESZ26": 2, "NQZ26": -1})
    es, nq = res.by_cc
    # ES: scan 6000 over 2 deltas -> 3000 per delta; NQ: 6000 per delta; one spread at 50 %
    assert (es.inter, nq.inter) == (1500.0, 3000.0)
    assert (es.risk, nq.risk) == (4500.0, 3000.0) and es.net_delta == 2.0
    assert compute(p, {"ESZ26": 2, "NQZ26": 1}).by_cc[0].inter == 0.0      # same direction: no spread


def test_weighted_price_risk_averages_the_active_scenario_with_its_pair_less_time_risk():
    es_risk = (100, 100, -1000, -1000, 1000, 1000, -2000, -2000, 2000, 2000, -3000, -3000, 3000, 2000, -2970, 2970)
    inter = [Spread(1, 0.5, [SpreadLeg(1, "A", cc="ES"), SpreadLeg(1, "B", cc="NQ")])]
    p = params_for([fut("ES", 202612, es_risk), fut("NQ", 202612)], inter=inter)
    es, nq = compute(p, {"ESZ26": 1, "NQZ26": -1}).by_cc
    # active scenario 13 (3000), its pair 14 (2000), time risk 100: price risk 2400 per 1 delta, credit 50 %
    assert (es.scan, es.active_scenario, es.inter) == (3000.0, 13, 1200.0)
    assert nq.inter == 1500.0


# ---- short option minimum, net option value, initial ratio ----------------------------------------

def option_book(som_method):
    small = (5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5)
    contracts = [opt("ES", 202612, r, k, small, 0.0, price=2.0) for r in ("C", "P") for k in (90.0, 110.0)]
    return params_for(contracts, {"ES": CombinedCommodity("ES", som_rate=100.0, som_method=som_method)})


def test_short_option_minimum_both_methods():
    positions = {"ESZ26C90": -3, "ESZ26C110": 0, "ESZ26P90": -1, "ESZ26P110": -1}
    gross = compute(option_book("1"), positions).by_cc[0]
    assert (gross.scan, gross.som, gross.risk) == (0.0, 500.0, 500.0)
    larger_side = compute(option_book("2"), positions).by_cc[0]
    assert (larger_side.som, larger_side.risk) == (300.0, 300.0)


def test_net_option_value_and_initial_ratio():
    p = option_book("1")
    p.combined["ES"].init_ratio = 1.1
    es = compute(p, {"ESZ26C90": -3}).by_cc[0]
    # risk = max(scan -15 -> 0, SOM 300) = 300; NOV = -3 x 2.0 x 10 = -60 (short premium adds)
    assert (es.risk, es.nov, es.maintenance) == (300.0, -60.0, 360.0)
    assert es.initial == pytest.approx(360.0 * 1.1)
    long_only = compute(p, {"ESZ26C90": 4}).by_cc[0]                    # long options: risk 20, NOV 80
    assert (long_only.risk, long_only.nov, long_only.maintenance) == (20.0, 80.0, 0.0)
    p.combined["ES"].option_style = "F"                                  # futures-style: no NOV
    assert compute(p, {"ESZ26C90": 4}).by_cc[0].maintenance == 20.0


def test_unknown_instrument_and_bad_quantity_are_rejected():
    p = calendar_params()
    with pytest.raises(KeyError, match="'XXZ26' is not in the SPAN parameter file"):
        compute(p, {"XXZ26": 1})
    with pytest.raises(ValueError, match="finite"):
        compute(p, {"ESZ26": float("nan")})
