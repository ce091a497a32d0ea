"""Generator of the project's demo SPAN parameter file (positional, .pa2) and demo reference rows.

Demo equity-index futures in the style of CME E-mini S&P 500 (ES) and Nasdaq-100 (NQ): four
quarterly futures each, options on the first two, risk arrays computed from the price / volatility
scan ranges (Black-76), tiered calendar spreads, a spot-month charge, short option minimum (ES gross,
NQ larger side), and an ES/NQ inter-commodity credit. All numbers are invented for the demo.

    .venv/bin/python -m calc.span.demo            # writes data/span/*.pa2 and *.csv
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .model import (CombinedCommodity, Contract, Product, ScanParameters, SpanParams, SpotMonth, Spread, SpreadLeg,
                    Tier, contract_symbol)
from .pa2 import write_pa2
from .riskarray import black76, compute_risk_arrays

OUT_DIR = Path(__file__).resolve().parents[2] / "data" / "span"
BUSINESS_DATE = 20261120
FUTURES_MONTHS = (202612, 202703, 202706, 202709)
OPTION_MONTHS = 2                  # options on the first two futures
INDEX_OF = {"ES": "SPX", "NQ": "NDX"}   # the cash index underlying each futures product


@dataclass
class DemoProduct:
    code: str
    name: str
    cvf: float
    prices: tuple[float, ...]      # futures settlement per futures month
    vol: float                     # implied volatility of the options
    price_scan: int                # currency per contract
    vol_scan: float
    strike_step: float
    strikes_each_side: int
    som_rate: float
    som_method: str
    spread_rates: tuple[float, float, float]   # tier 1/2, 1/3, 2/3
    spot_rates: tuple[float, float]            # per delta in spreads / outright, front month


DEMO_PRODUCTS = (
    DemoProduct("ES", "E-MINI S&P 500", 50.0, (6000.0, 6052.25, 6104.5, 6157.0), 0.18, 15000, 0.05,
                50.0, 10, 300.0, "1", (150.0, 250.0, 100.0), (10.0, 25.0)),
    DemoProduct("NQ", "E-MINI NASDAQ", 20.0, (21000.0, 21185.5, 21371.0, 21556.75), 0.22, 25000, 0.06,
                250.0, 10, 500.0, "2", (250.0, 400.0, 150.0), (15.0, 40.0)),
)


def _expiry(month: int) -> int:
    """Third Friday of the month, as CCYYMMDD."""
    first = date(month // 100, month % 100, 1)
    day = 1 + (4 - first.weekday()) % 7 + 14
    return month * 100 + day


def _years(business_date: int, expiry: int) -> float:
    a = date(business_date // 10000, business_date // 100 % 100, business_date % 100)
    b = date(expiry // 10000, expiry // 100 % 100, expiry % 100)
    return max((b - a).days, 1) / 365.0


def demo_params(products=DEMO_PRODUCTS, business_date: int = BUSINESS_DATE, extreme_multiplier: float = 3.0,
                covered_fraction: float = 0.33, inter_credit: float = 0.5) -> SpanParams:
    """The demo parameter set (risk arrays computed). A longer `products` list makes bigger sets."""
    params = SpanParams(exchange_complex="MTDEMO", business_date=business_date, settlement=True,
                        source="calc.span.demo", exchanges={"CME": "01"})
    lookahead = 1 / 365
    for dp in products:
        fut = Product("CME", dp.code, "FUT", dp.name, "USD", dp.cvf, settle_decimals=2, strike_decimals=2)
        opt = Product("CME", dp.code, "OOF", dp.name[:11] + " OPT", "USD", dp.cvf, settle_decimals=2, strike_decimals=2,
                      exercise="AMER")
        params.products[fut.key] = fut
        params.products[opt.key] = opt
        tiers = [Tier(1, FUTURES_MONTHS[0], FUTURES_MONTHS[0]), Tier(2, FUTURES_MONTHS[1], FUTURES_MONTHS[1]),
                 Tier(3, FUTURES_MONTHS[2], FUTURES_MONTHS[-1])]
        spreads = [Spread(p, rate, [SpreadLeg(1.0, "A", tier=a), SpreadLeg(1.0, "B", tier=b)])
                   for p, (rate, (a, b)) in enumerate(zip(dp.spread_rates, ((1, 2), (1, 3), (2, 3))), start=1)]
        params.combined[dp.code] = CombinedCommodity(
            code=dp.code, exchange="CME", currency="USD", option_style="P", products=[fut.key, opt.key],
            tiers=tiers, intra_spreads=spreads, spot_months=[SpotMonth(FUTURES_MONTHS[0], *dp.spot_rates)],
            som_rate=dp.som_rate, som_method=dp.som_method, init_ratio=1.1, init_ratio_member=1.0,
            init_ratio_hedger=1.0, group="EQI")
        for month, price in zip(FUTURES_MONTHS, dp.prices):
            expiry = _expiry(month)
            params.contracts.append(Contract("CME", dp.code, "FUT", month, underlying=dp.code, price=price))
            params.scan[("CME", dp.code, "FUT", month, 0)] = ScanParameters(
                price_scan=dp.price_scan, extreme_multiplier=extreme_multiplier, covered_fraction=covered_fraction,
                time_to_expiry=_years(business_date, expiry), lookahead=lookahead, expiry=expiry,
                underlying=dp.code)
        for month, price in list(zip(FUTURES_MONTHS, dp.prices))[:OPTION_MONTHS]:
            expiry = _expiry(month)
            params.scan[("CME", dp.code, "OOF", month, month)] = ScanParameters(
                price_scan=dp.price_scan, vol_scan=dp.vol_scan, base_vol=dp.vol,
                extreme_multiplier=extreme_multiplier, covered_fraction=covered_fraction, rate=0.04,
                time_to_expiry=_years(business_date, expiry), lookahead=lookahead, expiry=expiry,
                underlying=dp.code, pricing_model="BK")
            atm = round(price / dp.strike_step) * dp.strike_step
            for i in range(-dp.strikes_each_side, dp.strikes_each_side + 1):
                for right in ("C", "P"):
                    params.contracts.append(Contract("CME", dp.code, "OOF", month, month, right,
                                                     atm + i * dp.strike_step, dp.code, vol=dp.vol))
    params.groups["EQI"] = [dp.code for dp in products]
    if len(products) >= 2:
        a, b = products[0], products[1]
        ratio = round(b.prices[0] * b.cvf / (a.prices[0] * a.cvf), 4)
        params.inter_spreads.append(Spread(1, inter_credit, [SpreadLeg(ratio, "A", cc=a.code),
                                                             SpreadLeg(1.0, "B", cc=b.code)]))
    compute_risk_arrays(params)
    _price_options(params)
    return params


def _price_options(params: SpanParams) -> None:
    """Settlement prices of the demo options: Black-76 at the base volatility (for NOV)."""
    futures = {(c.code, c.futures_month): c.price for c in params.contracts if c.right == ""}
    for c in params.contracts:
        if c.right:
            s = params.scan[c.series_key]
            c.price = round(black76(futures[(c.code, c.futures_month)], c.strike, s.time_to_expiry, c.vol, s.rate,
                                    c.right == "C"), 2)


DEMO_ACCOUNT = "FUTS1"
DEMO_POSITIONS = (("ESZ26", 40), ("ESH27", -15), ("NQZ26", -20), ("NQM27", 5), ("ESZ26C6200", -60),
                  ("ESZ26P5800", 80), ("ESH27P5700", -30), ("NQZ26C21500", 25), ("NQZ26P20000", -40))


def write_demo(out_dir: Path = OUT_DIR) -> dict[str, Path]:
    """Write the demo parameter file, the instrument / account / position rows for data/ref."""
    out_dir.mkdir(parents=True, exist_ok=True)
    params = demo_params()
    paths = {"params": out_dir / "demo.pa2", "instruments": out_dir / "instruments.csv",
             "account": out_dir / "account.csv", "positions": out_dir / "positions.csv",
             "settle": out_dir / "settle.csv"}
    write_pa2(params, paths["params"])
    with open(paths["instruments"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sym", "assetclass", "ccy", "multiplier", "sector", "ccp", "model", "underlying", "expiry",
                    "strike", "putcall", "adv"])
        for c in params.contracts:
            product = params.products[c.product_key]
            expiry = params.scan[c.series_key].expiry
            iso = f"{expiry // 10000}-{expiry // 100 % 100:02d}-{expiry % 100:02d}"
            under = contract_symbol(c.code, c.futures_month) if c.right else INDEX_OF[c.code]
            w.writerow([c.symbol, "future" if not c.right else "option", product.currency, f"{product.cvf:g}",
                        "equityindex", "CME", "span", under, iso, f"{c.strike:g}" if c.right else "",
                        c.right, ""])
    with open(paths["settle"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sym", "price", "date"])
        day = f"{BUSINESS_DATE // 10000}-{BUSINESS_DATE // 100 % 100:02d}-{BUSINESS_DATE % 100:02d}"
        for c in params.contracts:
            w.writerow([c.symbol, f"{c.price:.10g}", day])
    with open(paths["account"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sym", "desk", "ccp", "model", "ccy", "collateral", "buffer", "threshold", "callpct", "imjump",
                    "imjumpmins"])
        w.writerow([DEMO_ACCOUNT, "MACRO", "CME", "span", "USD", 2000000, 5000000, 2500000, 0.5, 0.25, 15])
    with open(paths["positions"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "sym", "qty", "price"])
        for sym, qty in DEMO_POSITIONS:
            w.writerow([DEMO_ACCOUNT, sym, qty, ""])
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output directory (default: data/span)")
    args = ap.parse_args(argv)
    for kind, path in write_demo(args.out).items():
        print(f"{kind:12} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
