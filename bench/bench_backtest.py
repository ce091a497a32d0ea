"""Back-test throughput: account-days per second for a 500-position book with 1,000 historical
scenarios, in this process and on a Dask LocalCluster of 1 and 2 workers, beside a plain numpy loop
in the same run.

The book and its history are synthetic (500 instruments, seeded geometric Brownian motion: the real
history has 21), the model is config/calc.toml's `hist` (historical VaR, 2-day overlapping returns)
with `lookback_days = 1000`, rebuilt every day (`--rebalance 1`, the exact back-test). The numpy loop is
the floor of the same arithmetic and nothing else: each day, the 1,000 overlapping 2-day returns of
the window times the book's values, and the 99% quantile of the loss; it builds no model object,
checks nothing and writes no rows. The margins are compared, to show the two do the same sum.

Run: `.venv/bin/python -m bench.bench_backtest` (BENCH_QUICK=1: 250 days instead of 2,500).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from backtest.run import compute
from calc.config import load_config
from common.history import History

QUICK = os.environ.get("BENCH_QUICK") == "1"
POSITIONS = 500
SCENARIOS = 1_000
DAYS = 250 if QUICK else 2_500
HORIZON = 2
CHUNK = 125


def synthetic_history(seed: int = 2026) -> History:
    rng = np.random.default_rng(seed)
    n = SCENARIOS + HORIZON + DAYS + 5
    dates = np.datetime64("2000-01-03") + np.arange(n).astype("timedelta64[D]")
    vols = rng.uniform(0.01, 0.03, POSITIONS)
    log_returns = rng.standard_normal((n, POSITIONS)) * vols - vols**2 / 2
    prices = 50.0 * np.exp(np.cumsum(log_returns, axis=0))
    return History(dates, [f"S{i:03d}" for i in range(POSITIONS)], prices)


def numpy_loop(history: History, qty: np.ndarray, first: int, confidence: float) -> tuple[np.ndarray, float]:
    """Each day's historical VaR as the model defines it (calc/scenarios.py, calc/kernels.py): the
    last SCENARIOS daily log returns, summed over overlapping HORIZON-day windows, as simple returns
    times the book's values; VaR = the k-th largest loss, k = ceil((1 - confidence) x scenarios).
    Returns (VaR per day, seconds)."""
    start = time.perf_counter()
    out = np.empty(DAYS)
    for k, t in enumerate(range(first, first + DAYS)):
        logs = np.diff(np.log(history.prices[t - SCENARIOS:t + 1]), axis=0)
        cum = np.cumsum(np.vstack([np.zeros(POSITIONS), logs]), axis=0)
        shocks = np.expm1(cum[HORIZON:] - cum[:-HORIZON])
        losses = -(shocks @ (qty * history.prices[t]))
        n_tail = math.ceil(round((1.0 - confidence) * len(losses), 9))
        out[k] = np.partition(losses, len(losses) - n_tail)[len(losses) - n_tail]
    return out, time.perf_counter() - start


def main() -> None:
    from distributed import Client, LocalCluster
    history = synthetic_history()
    config = load_config()
    hist = dataclasses.replace(config.models["hist"], lookback_days=SCENARIOS)
    config = dataclasses.replace(config, models={**config.models, "hist": hist})
    rng = np.random.default_rng(7)
    qty = rng.integers(-2_000, 2_000, POSITIONS).astype(np.float64)
    positions = dict(zip(history.syms, qty))
    first = len(history.dates) - DAYS - HORIZON
    start, end = str(history.dates[first]), str(history.dates[first + DAYS - 1])

    floor, floor_s = numpy_loop(history, qty, first, hist.confidence)
    runs = {}
    t0 = time.perf_counter()
    runs["in process"] = (compute(["hist"], positions, start, end, config=config, history=history, chunk=CHUNK),
                          time.perf_counter() - t0)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.submit(sum, [1]).result()                            # workers up before the clock starts
            t0 = time.perf_counter()
            frames = compute(["hist"], positions, start, end, config=config, history=history, client=client, chunk=CHUNK)
            runs[f"Dask, {workers} worker{'s' if workers > 1 else ''}"] = (frames, time.perf_counter() - t0)

    print(f"\nback-test throughput: {POSITIONS} positions, {SCENARIOS} scenarios (hist, {HORIZON}-day overlapping), "
          f"{DAYS} days, rebuilt daily; tasks of {CHUNK} days")
    print(f"{'':26} {'seconds':>9} {'account-days/s':>15} {'vs numpy loop':>14} {'max |margin diff|':>18}")
    print(f"{'plain numpy loop (floor)':26} {floor_s:9.2f} {DAYS / floor_s:15.1f} {1.0:13.1f}x {'':>18}")
    for label, (frames, seconds) in runs.items():
        margins = frames["hist"]["var"].to_numpy()
        diff = float(np.max(np.abs(margins - floor) / np.abs(floor)))
        print(f"{label:26} {seconds:9.2f} {DAYS / seconds:15.1f} {floor_s / seconds:13.2f}x {diff:17.1e}r")
    one, two = runs["Dask, 1 worker"][1], runs["Dask, 2 workers"][1]
    print(f"1 -> 2 workers: {one / two:.2f}x on {os.cpu_count()} cores; identical margins: "
          f"{np.array_equal(runs['Dask, 1 worker'][0]['hist']['im'], runs['Dask, 2 workers'][0]['hist']['im'])}")


if __name__ == "__main__":
    main()
