"""Numba kernels of q-sql `by`: group ids in one pass over dense keys, and grouped aggregations.

Pure functions over numpy arrays. Floats skip NaN in sum / avg / min / max / wavg / wsum, as q skips
nulls; `count` counts every row.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def dense_group_ids(keys, lo, span):
    """Group id per row for int64 keys in [lo, lo + span): ids in order of first appearance.

    Returns (ids int64[n], first row of each group int64[g], g).
    """
    slot = np.full(span, -1, np.int64)
    ids = np.empty(len(keys), np.int64)
    first = np.empty(len(keys), np.int64)
    g = 0
    for i in range(len(keys)):
        s = keys[i] - lo
        gid = slot[s]
        if gid < 0:
            gid = g
            slot[s] = g
            first[g] = i
            g += 1
        ids[i] = gid
    return ids, first[:g], g


@njit(cache=True)
def group_count(ids, g):
    out = np.zeros(g, np.int64)
    for i in range(len(ids)):
        out[ids[i]] += 1
    return out


@njit(cache=True)
def group_sum_float(ids, x, g):
    out = np.zeros(g, np.float64)
    for i in range(len(ids)):
        v = x[i]
        if v == v:
            out[ids[i]] += v
    return out


@njit(cache=True)
def group_sum_int(ids, x, g):
    out = np.zeros(g, np.int64)
    for i in range(len(ids)):
        out[ids[i]] += x[i]
    return out


@njit(cache=True)
def group_avg(ids, x, g):
    total = np.zeros(g, np.float64)
    n = np.zeros(g, np.int64)
    for i in range(len(ids)):
        v = x[i]
        if v == v:
            total[ids[i]] += v
            n[ids[i]] += 1
    out = np.empty(g, np.float64)
    for k in range(g):
        out[k] = total[k] / n[k] if n[k] > 0 else np.nan
    return out


@njit(cache=True)
def group_var(ids, x, g):
    """Population variance per group (q's var), two passes for accuracy."""
    mean = group_avg(ids, x, g)
    ss = np.zeros(g, np.float64)
    n = np.zeros(g, np.int64)
    for i in range(len(ids)):
        v = x[i]
        if v == v:
            d = v - mean[ids[i]]
            ss[ids[i]] += d * d
            n[ids[i]] += 1
    out = np.empty(g, np.float64)
    for k in range(g):
        out[k] = ss[k] / n[k] if n[k] > 0 else np.nan
    return out


@njit(cache=True)
def group_extreme_row(ids, x, g, want_max):
    """Row index of each group's min (or max), skipping NaN; -1 for an all-NaN group."""
    best = np.full(g, -1, np.int64)
    for i in range(len(ids)):
        v = x[i]
        if v != v:
            continue
        k = ids[i]
        b = best[k]
        if b < 0 or (v > x[b] if want_max else v < x[b]):
            best[k] = i
    return best


@njit(cache=True)
def group_last_row(ids, g):
    out = np.full(g, -1, np.int64)
    for i in range(len(ids)):
        out[ids[i]] = i
    return out


@njit(cache=True)
def group_wsum(ids, w, x, g):
    out = np.zeros(g, np.float64)
    for i in range(len(ids)):
        p = w[i] * x[i]
        if p == p:
            out[ids[i]] += p
    return out


@njit(cache=True, error_model="numpy")
def group_wavg(ids, w, x, g):
    """(sum w*x) % sum w per group, as q: weights summing to 0 give 0w / -0w, or 0n when w*x does too."""
    num = np.zeros(g, np.float64)
    den = np.zeros(g, np.float64)
    for i in range(len(ids)):
        p = w[i] * x[i]
        if p == p:
            num[ids[i]] += p
            den[ids[i]] += w[i]
    out = np.empty(g, np.float64)
    for k in range(g):
        out[k] = num[k] / den[k]
    return out


@njit(cache=True)
def sorted_group_median(sorted_ids, sorted_x, g):
    """Median per group from rows sorted by (group, value), NaN already removed."""
    out = np.full(g, np.nan)
    start = 0
    n = len(sorted_ids)
    while start < n:
        k = sorted_ids[start]
        end = start
        while end < n and sorted_ids[end] == k:
            end += 1
        m = end - start
        mid = start + m // 2
        out[k] = sorted_x[mid] if m % 2 else 0.5 * (sorted_x[mid - 1] + sorted_x[mid])
        start = end
    return out
