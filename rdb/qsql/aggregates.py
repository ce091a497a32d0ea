"""q aggregations over a whole vector (giving an atom) or per group of a `by` (giving one item per group):
count sum avg min max first last med dev var, and the weighted wavg / wsum."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdb.qsql import kernels as k
from rdb.qsql.errors import QError
from rdb.qsql.ops import _raw
from rdb.qsql.values import NUMERIC, Value, null_of

AGGREGATES = {"count", "sum", "avg", "min", "max", "first", "last", "med", "dev", "var"}
WEIGHTED = {"wavg", "wsum"}


@dataclass
class Groups:
    ids: np.ndarray         # group id of every row of the frame
    n: int                  # number of groups
    first_rows: np.ndarray  # first row of each group


def _floats(x: Value) -> np.ndarray:
    if x.qt not in NUMERIC:
        raise QError("type")
    return np.asarray(x.data, dtype=np.float64)


def _take_rows(x: Value, rows: np.ndarray) -> Value:
    """Items at rows (-1: the type's null), one per group."""
    missing = rows < 0
    data = np.asarray(x.data)[np.where(missing, 0, rows)] if len(x.data) else np.full(len(rows), null_of(x.qt))
    if missing.any() and len(x.data):
        data = data.copy()
        data[missing] = null_of(x.qt)
    return Value(data, x.qt, False, x.syms, True)


def aggregate(fn: str, x: Value, groups: Groups | None) -> Value:
    if x.grouped:
        raise QError("nyi: an aggregate of an aggregate")
    if x.atom:
        x = Value(np.array([x.data]), x.qt, False, x.syms)
    if groups is None:
        return _whole(fn, x)
    ids, g = groups.ids, groups.n
    if fn == "count":
        return Value(k.group_count(ids, g), "j", grouped=True)
    if fn == "first":
        return _take_rows(x, groups.first_rows)
    if fn == "last":
        return _take_rows(x, k.group_last_row(ids, g))
    if fn in ("min", "max"):
        if x.qt == "s" or x.qt == "C":
            raise QError("nyi: min / max of symbols")
        raw = _raw(x)
        keyed = raw.astype(np.float64) if raw.dtype.kind in "biu" and x.qt in "bhij" else raw
        return _take_rows(x, k.group_extreme_row(ids, keyed, g, fn == "max"))
    if fn == "sum":
        if x.qt in "bhij":
            return Value(k.group_sum_int(ids, np.asarray(x.data, dtype=np.int64), g), "j", grouped=True)
        if x.qt == "n":
            return Value(k.group_sum_int(ids, _raw(x), g).view("timedelta64[ns]"), "n", grouped=True)
        return Value(k.group_sum_float(ids, _floats(x), g), "f", grouped=True)
    if fn == "avg":
        return Value(k.group_avg(ids, _floats(x), g), "f", grouped=True)
    if fn in ("var", "dev"):
        v = k.group_var(ids, _floats(x), g)
        return Value(np.sqrt(v) if fn == "dev" else v, "f", grouped=True)
    if fn == "med":
        xs = _floats(x)
        keep = ~np.isnan(xs)
        order = np.lexsort((xs[keep], ids[keep]))
        return Value(k.sorted_group_median(ids[keep][order], xs[keep][order], g), "f", grouped=True)
    raise QError(f"nyi: {fn}")


def _whole(fn: str, x: Value) -> Value:
    n = len(x.data)
    if fn == "count":
        return Value(np.int64(n), "j", True)
    if fn in ("first", "last"):
        if n == 0:
            return Value(null_of(x.qt), x.qt, True)
        return Value(x.data[0 if fn == "first" else -1], x.qt, True, x.syms)
    if fn in ("min", "max"):
        if x.qt in "sC":
            raise QError("nyi: min / max of symbols")
        raw = _raw(x)
        if x.qt == "f":
            ok = ~np.isnan(raw)
            raw, data = raw[ok], x.data[ok]
        else:
            data = x.data
        if len(raw) == 0:
            return Value(null_of(x.qt) if x.qt != "f" else (np.inf if fn == "min" else -np.inf), x.qt, True)
        i = int(np.argmin(raw) if fn == "min" else np.argmax(raw))
        return Value(data[i], x.qt, True)
    if fn == "sum":
        if x.qt in "bhij":
            return Value(np.int64(np.sum(x.data, dtype=np.int64)), "j", True)
        if x.qt == "n":
            return Value(np.timedelta64(int(np.sum(_raw(x))), "ns"), "n", True)
        return Value(np.float64(np.nansum(_floats(x))), "f", True)
    xs = _floats(x)
    xs = xs[~np.isnan(xs)]
    if fn == "avg":
        return Value(np.float64(xs.mean()) if len(xs) else np.nan, "f", True)
    if fn == "med":
        return Value(np.float64(np.median(xs)) if len(xs) else np.nan, "f", True)
    if fn in ("var", "dev"):
        v = np.float64(xs.var()) if len(xs) else np.nan
        return Value(np.sqrt(v) if fn == "dev" else v, "f", True)
    raise QError(f"nyi: {fn}")


def weighted(fn: str, w: Value, x: Value, groups: Groups | None) -> Value:
    if w.grouped or x.grouped:
        raise QError("nyi: an aggregate of an aggregate")
    ws, xs = _floats(w), _floats(x)
    if w.atom:
        ws = np.full(len(xs) if not x.atom else 1, float(ws))
    if x.atom:
        xs = np.full(len(ws), float(xs))
    if len(ws) != len(xs):
        raise QError("length")
    if groups is None:
        p = ws * xs
        ok = ~np.isnan(p)
        if fn == "wsum":
            return Value(np.float64(p[ok].sum()), "f", True)
        with np.errstate(divide="ignore", invalid="ignore"):     # q: 1%0 is 0w, 0%0 is 0n
            return Value(np.float64(p[ok].sum()) / np.float64(ws[ok].sum()), "f", True)
    kernel = k.group_wsum if fn == "wsum" else k.group_wavg
    return Value(kernel(groups.ids, ws, xs, groups.n), "f", grouped=True)
