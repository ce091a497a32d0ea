"""Hedge sizing benchmark: `calc.hedge.hedge` against separate what-ifs in the same run, on the demo
book (reference data, real history) after the price feed's `antitrust AMD` applied as ticks, for
FUND1 (filtered historical ES + parametric, tech_crash stress) hedged with SPY.

- hedge: one `hedge(engine, "FUND1", "SPY")` (coarse curve, refinement, the targets; the before side
  computed afresh, as after an input);
- N what-ifs: `what_if` of one SPY trade at N quantities over the same bracket, N = the hedge's own
  number of evaluations, each with the stress scenario (what a client asking calc point by point
  pays, calc's BeforeCache warm);
- brute-force scan: the same with 201 quantities, and how far its best requirement is from the
  hedge's minimum (the hedge's is never worse: tests/test_hedge.py checks it).

Run: `.venv/bin/python -m bench.bench_hedge` (BENCH_QUICK=1: fewer repeats).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from calc.config import load_config
from calc.engine import MarginEngine
from calc.hedge import hedge
from calc.whatif import BeforeCache, what_if
from common.history import load_history
from feedhandlers.prices.calibrate import TRADING_DAYS, calibrate
from feedhandlers.prices.events import antitrust, event_ticks
from feedhandlers.refdata.loader import load_refdata

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = 3 if QUICK else 15
BRUTE_FORCE_POINTS = 201
ACCOUNT, SYM = "FUND1", "SPY"
T0 = np.datetime64("2026-01-05T14:00:00", "ns")


def demo_engine_after_antitrust() -> MarginEngine:
    history = load_history()
    refdata = load_refdata(history=history)
    engine = MarginEngine(load_config(), history)
    for seq, (table, batch) in enumerate(refdata.items(), 1):
        engine.apply(table, batch, seq)
    inst = refdata["instrument"]
    sectors = {s: sec for s, sec, cls in zip(inst["sym"], inst["sector"], inst["assetclass"]) if cls == "equity"}
    syms = [s for s in sectors if s in history.syms]
    annual_vol = dict(zip(syms, (calibrate(history, syms).daily_vol * math.sqrt(TRADING_DAYS)).tolist()))
    ticks = event_ticks(antitrust("AMD", sectors), {s: engine.book.mark(s) for s in syms}, annual_vol)
    n = len(ticks)
    nan = np.full(n, math.nan)
    engine.apply("quote", {"time": np.full(n, T0), "sym": np.array(list(ticks), dtype=object), "bid": nan,
                           "ask": nan, "price": np.array([p for p, _ in ticks.values()]), "size": nan,
                           "vol": np.array([v for _, v in ticks.values()]), "src": np.full(n, "bench", dtype=object)},
                 len(refdata) + 1)
    return engine


def timed_ms(run, repeats: int) -> tuple[float, float, object]:
    """p50 and fastest wall time of run() in ms, after one untimed call; the last result."""
    result = run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), min(times), result


def scan(engine: MarginEngine, quantities: np.ndarray, cache: BeforeCache) -> tuple[float, float]:
    """What-ifs of one hedge trade at each quantity (0: the live state); the best (requirement, qty)."""
    best = (math.inf, 0.0)
    for qty in quantities:
        if qty == 0:
            continue
        w = what_if(engine, ACCOUNT, {"sym": [SYM], "qty": [float(qty)]}, top=0, cache=cache)
        best = min(best, (w["after"]["requirement"], float(qty)))
    return best


def main() -> None:
    engine = demo_engine_after_antitrust()
    hedge_p50, hedge_min, result = timed_ms(lambda: hedge(engine, ACCOUNT, SYM), REPEATS)
    n = result["evaluations"]
    bound = -result["curve"]["qty"][0]
    cache = BeforeCache()
    rows = [("hedge (41-point curve, refinement, call and stress targets)", n, hedge_p50, hedge_min, None)]
    for name, points in ((f"{n} separate what-ifs (N = the hedge's evaluations)", n),
                         (f"brute-force scan: {BRUTE_FORCE_POINTS} what-ifs", BRUTE_FORCE_POINTS)):
        quantities = np.rint(np.linspace(-bound, bound, points + 1))      # + 0, skipped: points what-ifs
        quantities = quantities[quantities != 0][:points]
        p50, fastest, best = timed_ms(lambda q=quantities: scan(engine, q, cache), REPEATS)
        rows.append((name, len(quantities), p50, fastest, best))

    print(f"hedge sizing: {ACCOUNT} with {SYM} after antitrust AMD, demo book, real history "
          f"({REPEATS} repeats; the machine is shared, figures indicative)")
    print(f"{'path':<62} {'evals':>6} {'p50 ms':>8} {'min ms':>8} {'us/eval':>8} {'x hedge':>8}")
    for name, evals, p50, fastest, _ in rows:
        print(f"{name:<62} {evals:>6} {p50:>8.1f} {fastest:>8.1f} {p50 * 1e3 / evals:>8.0f} {p50 / hedge_p50:>8.2f}")
    minimum = result["minimum"]
    print(f"hedge minimum: qty {minimum['qty']:+,.0f}, requirement {minimum['requirement']:,.0f}; "
          f"brute-force best: qty {rows[2][4][1]:+,.0f}, requirement {rows[2][4][0]:,.0f} "
          f"({rows[2][4][0] - minimum['requirement']:+,.0f})")
    now = result["now"]
    print(f"call {now['call']:,.0f} -> {minimum['call']:,.0f}, stress call {now['stress_call']:,.0f} -> "
          f"{minimum['stress_call']:,.0f} at the minimum")


if __name__ == "__main__":
    main()
