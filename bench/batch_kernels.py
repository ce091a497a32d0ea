"""Benchmark-only kernels: the full recompute of many accounts in one go (bench_models' "numba
batch" row), kept out of calc.kernels because the live engine never runs it."""
import numpy as np
from numba import njit, prange

from calc.kernels import var_es


@njit(cache=True, parallel=True)
def rows_var_es(pnl_rows, k):
    """(VaR, ES) per row of an (A, S) P&L matrix, rows in parallel (prange)."""
    a = pnl_rows.shape[0]
    var = np.empty(a)
    es = np.empty(a)
    for r in prange(a):
        v, e = var_es(pnl_rows[r], k)
        var[r] = v
        es[r] = e
    return var, es


def batch_var_es(values_rows, shocks, k):
    """Full recompute for many accounts: (A, N) values -> (pnl (A, S), var (A,), es (A,)).

    The P&L is one BLAS matrix product ``values_rows @ shocks``; the tail selection runs per row in
    parallel (``rows_var_es``).
    """
    pnl_rows = np.ascontiguousarray(values_rows, dtype=np.float64) @ shocks
    var, es = rows_var_es(pnl_rows, k)
    return pnl_rows, var, es
