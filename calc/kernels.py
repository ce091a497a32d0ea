"""Numba kernels of the VaR engine: pure functions over numpy arrays, no state, no I/O.

These are the kernels the live engine (calc.engine) and the quant library (calc.models) both run.

Array conventions (all float64, C-contiguous):

- ``shocks``  (N, S): ``shocks[i, s]`` is the simple return of instrument ``i`` in scenario ``s`` over
  the holding period (see calc.scenarios). Instrument-major, so one instrument's scenario vector
  ``shocks[i]`` is contiguous: the O(S) incremental update reads one row.
- ``values``  (N,): signed market values of the positions (qty * price * multiplier).
- ``pnl``     (S,): portfolio P&L per scenario, ``values @ shocks``; loss = -pnl.
- ``cov``     (N, N): covariance of daily log returns (see calc.covariance).

Quantile convention (historical and filtered historical simulation): with S scenarios and confidence
c, k = ceil((1 - c) * S) (at least 1, see ``tail_count``); VaR is the k-th largest loss and ES is the
mean of the k largest losses (the k worst scenarios, the "tail"). Both are raw numbers: a portfolio
that gains in every tail scenario has a negative VaR; flooring at zero is the caller's choice.
A P&L vector holding NaN or inf gives NaN VaR and ES: callers treat that as a data error.

Incremental use (O(S) per event): a fill or a price move of instrument i changes its value; the
P&L moves by ``(new - old) * shocks[i]`` because P&L is linear in the position value, and the
parametric model's ``cv = cov @ values`` by ``(new - old) * cov[i]`` (O(N)). The live engine keeps
those vectors as exact sums (``exact_product``, ``exact_move``; the scheme in calc.exact): each
term ``values[i] * matrix[i, j]`` is split into a ``hi`` part on a 2^-8 grid and a ``lo`` part on a
2^-40 grid, summed into two vectors, and moving row i from ``old`` to ``new`` subtracts exactly the
old terms and adds the new ones, so the vector ``hi + lo`` is a function of the current values only
(the same after a restart's full revaluation as after a day of updates). ``scenario_pnl`` and
``covariance_product`` are the plain products, for calc.models.
"""
import math

import numpy as np
from numba import njit, prange


def tail_count(n_scenarios: int, confidence: float) -> int:
    """k = ceil((1 - confidence) * n_scenarios), clamped to [1, n_scenarios].

    The product is rounded to 9 decimals first so that (1 - 0.99) * 1000 = 10.000000000000009 gives
    10, not 11.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n_scenarios < 1:
        raise ValueError(f"need at least one scenario, got {n_scenarios}")
    k = math.ceil(round((1.0 - confidence) * n_scenarios, 9))
    return max(1, min(int(n_scenarios), k))


@njit(cache=True)
def scenario_pnl(values, shocks):
    """Portfolio P&L per scenario, ``values @ shocks``; zero positions are skipped (O(nnz * S))."""
    n, s = shocks.shape
    pnl = np.zeros(s)
    for i in range(n):
        v = values[i]
        if v != 0.0:
            row = shocks[i]
            for j in range(s):
                pnl[j] += v * row[j]
    return pnl


HI_GRID = 2.0 ** -8         # calc.exact: a term's hi part is a multiple of this
LO_GRID = 2.0 ** -40        # and its lo part (the rest, |rest| <= HI_GRID / 2) a multiple of this


@njit(cache=True, inline="always")
def split(t):
    """(hi, lo): t rounded to the 2^-8 grid, and the rest (exact) rounded to the 2^-40 grid."""
    hi = np.rint(t * 256.0) * HI_GRID
    return hi, np.rint((t - hi) * 1099511627776.0) * LO_GRID


@njit(cache=True)
def exact_product(values, matrix):
    """(hi, lo, hi + lo) of ``values @ matrix`` summed exactly (see the module docstring): the
    engine's scenario P&L (matrix = shocks) or cov @ values (matrix = cov, symmetric); zero values
    are skipped (O(nnz * M))."""
    n, m = matrix.shape
    hi = np.zeros(m)
    lo = np.zeros(m)
    for i in range(n):
        v = values[i]
        if v != 0.0:
            row = matrix[i]
            for j in range(m):
                h, l = split(v * row[j])
                hi[j] += h
                lo[j] += l
    return hi, lo, hi + lo


@njit(cache=True)
def exact_move(hi, lo, out, matrix, i, old, new):
    """In place: the value of row i goes from ``old`` to ``new``; its old terms leave ``hi`` / ``lo``
    exactly and its new ones enter; ``out = hi + lo`` (O(M))."""
    row = matrix[i]
    for j in range(hi.size):
        h0, l0 = split(old * row[j])
        h1, l1 = split(new * row[j])
        hi[j] = (hi[j] - h0) + h1
        lo[j] = (lo[j] - l0) + l1
        out[j] = hi[j] + lo[j]


@njit(cache=True)
def _select_smallest(x, k):
    """In place: reorders x so that x[:k] are its k smallest values and x[k-1] is the k-th smallest.

    Quickselect (Hoare partition, median-of-three pivot): O(len(x)) on average, no full sort.
    """
    target = k - 1
    lo = 0
    hi = x.size - 1
    while lo < hi:
        a = x[lo]
        b = x[(lo + hi) >> 1]
        c = x[hi]
        if a < b:
            pivot = b if b < c else (c if a < c else a)
        else:
            pivot = a if a < c else (c if b < c else b)
        i = lo
        j = hi
        while i <= j:
            while x[i] < pivot:
                i += 1
            while x[j] > pivot:
                j -= 1
            if i <= j:
                t = x[i]
                x[i] = x[j]
                x[j] = t
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break


@njit(cache=True)
def _worst_by_quickselect(pnl, k):
    """The k lowest-P&L scenarios in scenario order: the k-th lowest P&L by quickselect on a copy,
    then one pass collecting the scenarios below it and, for ties, the first ones equal to it."""
    scratch = pnl.copy()
    _select_smallest(scratch, k)
    threshold = scratch[k - 1]
    ties = k
    for j in range(pnl.size):
        if pnl[j] < threshold:
            ties -= 1
    tail = np.empty(k, dtype=np.int64)
    n = 0
    for j in range(pnl.size):
        p = pnl[j]
        if p < threshold or (p == threshold and ties > 0):
            if p == threshold:
                ties -= 1
            tail[n] = j
            n += 1
    return tail


@njit(cache=True)
def _top_by_insertion(x, n, sign):
    """Indices of the n largest values of ``sign * x``, largest first: one pass keeping a sorted buffer
    of n. Each value is compared with the buffer's smallest (a predictable branch); few enter it.
    Ties: the earliest index first. sign -1.0 gives the n smallest of x, smallest first."""
    vals = np.empty(n)
    idx = np.empty(n, dtype=np.int64)
    if n <= 0:
        return idx
    m = 0
    for j in range(x.size):
        v = sign * x[j]
        if m < n:
            p = m
            m += 1
        elif v > vals[n - 1]:
            p = n - 1
        else:
            continue
        while p > 0 and vals[p - 1] < v:
            vals[p] = vals[p - 1]
            idx[p] = idx[p - 1]
            p -= 1
        vals[p] = v
        idx[p] = j
    return idx


SMALL_TAIL = 64


@njit(cache=True)
def worst_scenarios(pnl, k):
    """Indices of the k scenarios with the lowest P&L (largest losses), exactly k, in no guaranteed order.

    O(S): a sorted insertion buffer when k <= SMALL_TAIL (99% of 1,000 scenarios: k = 10), else
    quickselect. At a tie on the boundary the earliest scenarios are taken.
    """
    if k <= SMALL_TAIL:
        return _top_by_insertion(pnl, k, -1.0)
    return _worst_by_quickselect(pnl, k)


@njit(cache=True)
def tail_var_es(pnl, tail):
    """(VaR, ES) from the tail set: VaR = the smallest loss in the tail, ES = the mean tail loss."""
    worst_kept = -np.inf
    total = 0.0
    for j in range(tail.size):
        p = pnl[tail[j]]
        total += p
        if p > worst_kept:
            worst_kept = p
    return 0.0 - worst_kept, 0.0 - total / tail.size  # 0.0 - x: no -0.0 for a flat book


@njit(cache=True)
def _all_finite(x):
    for j in range(x.size):
        if not np.isfinite(x[j]):
            return False
    return True


@njit(cache=True)
def var_es(pnl, k):
    """(VaR, ES) of a P&L vector at tail size k (see the module docstring); NaN if pnl is not finite."""
    if not _all_finite(pnl):
        return np.nan, np.nan
    return tail_var_es(pnl, worst_scenarios(pnl, k))


@njit(cache=True)
def _after(pnl, hi, lo, shocks, rows, olds, news):
    """The P&L (exact sums ``hi`` / ``lo``, value ``pnl``) after rows ``rows`` move from values
    ``olds`` to ``news`` (``exact_move`` on copies), or ``pnl`` itself when there are none; nothing
    passed in is changed."""
    if rows.size == 0:
        return pnl
    trial_hi = hi.copy()
    trial_lo = lo.copy()
    trial = pnl.copy()
    for j in range(rows.size):
        exact_move(trial_hi, trial_lo, trial, shocks, rows[j], olds[j], news[j])
    return trial


@njit(cache=True)
def whatif_var_es(pnl, hi, lo, shocks, rows, olds, news, k):
    """(VaR, ES) after rows ``rows`` move from ``olds`` to ``news``, on copies (see ``_after``).

    The pre-trade what-if: O(S * len(rows)) for the copies and updates plus the O(S) selection.
    """
    return var_es(_after(pnl, hi, lo, shocks, rows, olds, news), k)


@njit(cache=True)
def es_contributions(values, scenario_shocks, tail, scale=1.0):
    """Per-instrument ES contributions ``-values[i] * mean(shocks[i, tail]) * scale``; with scale 1
    they sum to ES. ``scenario_shocks`` is the (S, N) scenario-major layout (``shocks.T``,
    contiguous), so each tail scenario is one contiguous row: k row reads instead of an N x k gather."""
    n = values.size
    k = tail.size
    out = np.zeros(n)
    for j in range(k):
        row = scenario_shocks[tail[j]]
        for i in range(n):
            out[i] += row[i]
    f = -scale / k
    for i in range(n):
        out[i] = f * values[i] * out[i] if values[i] != 0.0 else 0.0
    return out


@njit(cache=True)
def tail_measures(pnl, hi, lo, shocks, rows, olds, news, values, scenario_shocks, k, scale, to_var, top):
    """(VaR, ES, contributions, top columns) over the k worst scenarios of the P&L after rows
    ``rows`` move from ``olds`` to ``news`` (none: the P&L ``pnl`` as it is; see ``_after``), in
    one call and one tail selection. ``values`` are the values after the changes. The
    contributions are ``es_contributions`` x ``scale``, rescaled by VaR / ES with ``to_var`` so that
    they sum to VaR x scale instead of ES x scale; the top columns are the indices of the ``top``
    largest contributions, largest first (as ``largest``). A P&L that is not finite gives NaN VaR
    and ES, zero contributions and no top columns."""
    pnl = _after(pnl, hi, lo, shocks, rows, olds, news)
    if not _all_finite(pnl):
        return np.nan, np.nan, np.zeros(values.size), np.empty(0, dtype=np.int64)
    tail = worst_scenarios(pnl, k)
    var, es = tail_var_es(pnl, tail)
    if to_var and es != 0.0:
        scale = scale * var / es
    contributions = es_contributions(values, scenario_shocks, tail, scale)
    return var, es, contributions, _top_by_insertion(contributions, min(top, values.size), 1.0)


@njit(cache=True)
def largest(x, n):
    """Indices of the n largest values of x, largest first; at ties the earliest index first (as a
    stable sort of -x). O(len(x)) for a small n."""
    return _top_by_insertion(x, min(n, x.size), 1.0)


@njit(cache=True)
def covariance_product(cov, values):
    """``cov @ values`` skipping zero positions (O(N * nnz)); the state of the parametric model."""
    n = values.size
    cv = np.zeros(n)
    for i in range(n):
        v = values[i]
        if v != 0.0:
            row = cov[i]  # cov is symmetric: column i == row i, and the row is contiguous
            for j in range(n):
                cv[j] += v * row[j]
    return cv


@njit(cache=True)
def quadratic_form(values, cv):
    """``values' cov values`` given ``cv = cov @ values``: the dollar variance of the portfolio."""
    total = 0.0
    for i in range(values.size):
        total += values[i] * cv[i]
    return total


@njit(cache=True)
def euler_contributions(values, cv, sigma2, scale):
    """Euler (component) contributions to ``scale * sigma``: ``scale * values[i] * cv[i] / sigma``.

    With scale = z * sqrt(horizon) they sum to the parametric VaR. Zero when sigma2 <= 0.
    """
    out = np.zeros(values.size)
    if sigma2 <= 0.0:
        return out
    f = scale / math.sqrt(sigma2)
    for i in range(values.size):
        out[i] = f * values[i] * cv[i]
    return out


@njit(cache=True)
def stress_loss(values, shocks, stressed_cov, scale):
    """A stress scenario on positions ``values``: shocked values ``values * (1 + shocks)``, the shock
    loss ``-sum(values * shocks)`` and the parametric VaR ``scale * sigma`` of the shocked values under
    ``stressed_cov``. Returns (shock loss, stressed VaR, per-position contributions summing to their
    total, shocked values); a position's contribution is its shock loss plus its Euler share of the VaR."""
    n = values.size
    shocked = np.empty(n)
    shock_contrib = np.empty(n)
    shock_loss = 0.0
    for i in range(n):
        shocked[i] = values[i] * (1.0 + shocks[i])
        shock_contrib[i] = -values[i] * shocks[i]
        shock_loss += shock_contrib[i]
    cv = covariance_product(stressed_cov, shocked)
    sigma2 = max(quadratic_form(shocked, cv), 0.0)
    contrib = shock_contrib + euler_contributions(shocked, cv, sigma2, scale)
    return shock_loss, scale * math.sqrt(sigma2), contrib, shocked


@njit(cache=True, parallel=True)
def standalone_es(values, shocks, k):
    """Per-instrument ES of each position held alone: ES of ``values[i] * shocks[i]`` at tail size k."""
    n = values.size
    out = np.zeros(n)
    for i in prange(n):
        v = values[i]
        if v != 0.0:
            out[i] = var_es(v * shocks[i], k)[1]
    return out
