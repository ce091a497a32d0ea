"""Model kernel benchmark: the Numba kernels of calc.kernels side by side with a plain numpy full
recompute in the same run, on synthetic scenario sets of the target sizes.

- per fill: one account of 500 positions, 1,000 scenarios, 99% (k = 10): the O(S) update of the
  scenario P&L plus VaR/ES selection, against numpy ``values @ shocks`` + ``np.partition``;
  parametric: the O(N) update of C v and sigma, against numpy ``v @ C @ v``;
- drivers: the tail set and ES contributions after a fill;
- what-if: copy + update + VaR/ES (state untouched), against numpy full recompute;
- full recompute: 1,000 accounts x 500 instruments x 1,000 scenarios, one BLAS product plus a
  parallel per-account selection (bench.batch_kernels, not part of the engine), against numpy
  product + ``np.partition`` along the rows.

Latencies are per call from Python (what the engine pays), p50 / p99 over many events.
Run: `.venv/bin/python -m bench.bench_models` (BENCH_QUICK=1: fewer events and repeats).
"""
from __future__ import annotations

import os
import time

import numpy as np

from bench.batch_kernels import batch_var_es
from bench.harness import latencies_us
from calc import kernels

QUICK = os.environ.get("BENCH_QUICK") == "1"
EVENTS = 2_000 if QUICK else 20_000
BATCH_REPEATS = 2 if QUICK else 5
N, S, ACCOUNTS, CONFIDENCE = 500, 1000, 1000, 0.99




def numpy_var_es(pnl: np.ndarray, k: int) -> tuple[float, float]:
    """The plain numpy reference: partition the losses, take the k largest."""
    losses = -pnl
    worst = np.partition(losses, losses.size - k)[losses.size - k:]
    return float(worst.min()), float(worst.mean())


def numpy_rows_var_es(pnl_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    worst = np.partition(-pnl_rows, S - k, axis=1)[:, S - k:]
    return worst.min(axis=1), worst.mean(axis=1)


def main() -> None:
    rng = np.random.default_rng(42)
    shocks = np.ascontiguousarray(rng.normal(0, 0.02, (N, S)))
    shocks_by_scenario = np.ascontiguousarray(shocks.T)
    cov = np.cov(rng.normal(0, 0.01, (504, N)) + rng.normal(0, 0.01, (504, 1)), rowvar=False)
    k = kernels.tail_count(S, CONFIDENCE)
    values = rng.normal(0, 1e6, N)
    cols = rng.integers(0, N, EVENTS)
    dvalues = rng.normal(0, 1e5, EVENTS)

    hi, lo, pnl = kernels.exact_product(values, shocks)
    cv_hi, cv_lo, cv = kernels.exact_product(values, cov)
    v_np = values.copy()
    one_row = np.zeros(1, dtype=np.int64)
    one_old, one_new = np.zeros(1), np.zeros(1)

    def move(e, acc_hi, acc_lo, out, matrix):        # the engine's exact update of one column (calc.exact)
        i = cols[e]
        old = values[i]
        values[i] = old + dvalues[e]
        kernels.exact_move(acc_hi, acc_lo, out, matrix, i, old, values[i])

    def numba_fill(e):
        move(e, hi, lo, pnl, shocks)
        kernels.var_es(pnl, k)

    def numpy_fill(e):
        v_np[cols[e]] += dvalues[e]
        numpy_var_es(v_np @ shocks, k)

    def numba_drivers(e):
        move(e, hi, lo, pnl, shocks)
        tail = kernels.worst_scenarios(pnl, k)
        kernels.tail_var_es(pnl, tail)
        kernels.es_contributions(values, shocks_by_scenario, tail)

    def numba_parametric(e):
        move(e, cv_hi, cv_lo, cv, cov)
        np.sqrt(max(kernels.quadratic_form(values, cv), 0.0))

    def numpy_parametric(e):
        v_np[cols[e]] += dvalues[e]
        np.sqrt(v_np @ cov @ v_np)

    def numba_whatif(e):
        one_row[0] = cols[e]
        one_old[0] = values[cols[e]]
        one_new[0] = one_old[0] + dvalues[e]
        kernels.whatif_var_es(pnl, hi, lo, shocks, one_row, one_old, one_new, k)

    def numpy_whatif(e):
        trial = v_np.copy()
        trial[cols[e]] += dvalues[e]
        numpy_var_es(trial @ shocks, k)

    rows = []
    for name, target, impls in [
        ("fill: update + VaR/ES (scenario)", 100.0, [("numba O(S)", numba_fill), ("numpy full", numpy_fill)]),
        ("fill: update + VaR/ES + ES contributions", None, [("numba O(S)", numba_drivers)]),
        ("fill: parametric sigma", 100.0, [("numba O(N)", numba_parametric), ("numpy full", numpy_parametric)]),
        ("what-if: copy + update + VaR/ES", 50.0, [("numba O(S)", numba_whatif), ("numpy full", numpy_whatif)]),
    ]:
        for impl, step in impls:
            lat = latencies_us(step, EVENTS)
            rows.append((name, impl, f"{np.percentile(lat, 50):.1f} us", f"{np.percentile(lat, 99):.1f} us",
                         f"p99 <= {target:.0f} us" if target else "-"))

    accounts = rng.normal(0, 1e6, (ACCOUNTS, N))
    batch_var_es(accounts[:8], shocks, k)          # compile / warm up
    for impl, run in [("numba batch", lambda: batch_var_es(accounts, shocks, k)),
                      ("numpy full", lambda: numpy_rows_var_es(accounts @ shocks, k))]:
        times = []
        for _ in range(BATCH_REPEATS):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        rows.append((f"full recompute {ACCOUNTS} x {N} x {S}", impl, f"{np.median(times) * 1e3:.0f} ms",
                     f"max {max(times) * 1e3:.0f} ms", "<= 1000 ms"))

    _, var_b, es_b = batch_var_es(accounts, shocks, k)
    var_n, es_n = numpy_rows_var_es(accounts @ shocks, k)
    assert np.allclose(var_b, var_n, rtol=1e-9) and np.allclose(es_b, es_n, rtol=1e-9), "numba and numpy disagree"

    header = ("operation", "implementation", "p50 / median", "p99 / max", "target")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(f"accounts of {N} positions, {S} scenarios, {CONFIDENCE:.0%} (k = {k}); {EVENTS} events per row"
          + (" (BENCH_QUICK)" if QUICK else ""))
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
