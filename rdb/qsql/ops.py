"""q operators and functions over Values, with q's result types (row-level, not aggregating).

Arithmetic `+ - * %`, comparisons `= <> < > <= >=`, `& |` (min / max, so and / or on booleans),
`in`, `within`, `like`, `xbar`, `mod`, `div`, the monadic math functions, and temporal casts by name
suffix (`time.minute`, `time.date` ...).
"""
from __future__ import annotations

import fnmatch
import re

import numpy as np

from rdb.qsql.errors import QError
from rdb.qsql.values import NS_PER, NUMERIC, TIME_OF_DAY, Value

RANK = {"b": 0, "h": 1, "i": 2, "j": 3, "e": 4, "f": 5}
NS_PER_DAY = 86_400_000_000_000


def _num_type(a: Value, b: Value) -> str:
    qt = max(a.qt, b.qt, key=RANK.get)
    return "f" if qt in "ef" else "i" if qt in "bh" else qt


def _raw(v: Value):
    """The numbers behind a value: ns for timestamps / timespans, days for dates, ints for times."""
    unit = {"p": "datetime64[ns]", "n": "timedelta64[ns]", "d": "datetime64[D]"}.get(v.qt)
    if unit is None:
        return v.data
    raw = np.asarray(v.data, dtype=unit).view(np.int64)
    return raw[()] if v.atom else raw


def _make(data, qt: str, a: Value, b: Value) -> Value:
    atom = a.atom and b.atom
    grouped = a.grouped or b.grouped
    if qt == "p":
        data = np.asarray(data, dtype=np.int64).view("datetime64[ns]") if not atom else np.datetime64(int(data), "ns")
    elif qt == "n":
        data = np.asarray(data, dtype=np.int64).view("timedelta64[ns]") if not atom else np.timedelta64(int(data), "ns")
    elif qt == "d":
        data = np.asarray(data, dtype=np.int64).astype("datetime64[D]") if not atom else np.datetime64(int(data), "D")
    elif qt in ("u", "v", "t", "i"):
        data = np.asarray(data).astype(np.int32) if not atom else np.int32(data)
    return Value(data, qt, atom, None, grouped)


def _check_length(a: Value, b: Value) -> None:
    if not a.atom and not b.atom and len(a.data) != len(b.data):
        raise QError("length")
    if not a.atom and not b.atom and a.grouped != b.grouped:
        raise QError("length")


def _as_ns(v: Value):
    """Temporal value to a comparable int64 scale (timestamps / dates to ns since 2000-01-01 base)."""
    if v.qt == "d":
        return _raw(v) * NS_PER_DAY
    if v.qt in NS_PER:
        return np.asarray(v.data, dtype=np.int64) * NS_PER[v.qt] if not v.atom else np.int64(v.data) * NS_PER[v.qt]
    return _raw(v)


def arith(op: str, a: Value, b: Value) -> Value:
    _check_length(a, b)
    qa, qb = a.qt, b.qt
    if qa == "s" or qb == "s" or qa == "C" or qb == "C":
        raise QError("type")
    if op == "%":                 # q: float division, 1%0 is 0w and 0%0 is 0n (no warning)
        if qa == "n" and qb == "n":
            num, den = _raw(a), _raw(b)
        elif qa in NUMERIC and qb in NUMERIC:
            num, den = np.asarray(a.data, dtype=np.float64), b.data
        else:
            raise QError("type")
        with np.errstate(divide="ignore", invalid="ignore"):
            return _make(np.true_divide(num, den), "f", a, b)
    if qa in NUMERIC and qb in NUMERIC:
        qt = _num_type(a, b)
        fn = {"+": np.add, "-": np.subtract, "*": np.multiply}[op]
        if qt == "f":
            return _make(fn(np.asarray(a.data, dtype=np.float64), np.asarray(b.data, dtype=np.float64)), "f", a, b)
        dt = np.int64 if qt == "j" else np.int32
        return _make(fn(np.asarray(a.data, dtype=dt), np.asarray(b.data, dtype=dt)), qt, a, b)
    # temporal arithmetic
    ints = "bhij"
    if op == "-" and qa == qb and qa in "pn":
        return _make(_raw(a) - _raw(b), "n", a, b)
    if op == "-" and qa == qb == "d":
        return _make(_raw(a) - _raw(b), "i", a, b)
    if op in "+-" and qa == "p" and qb == "n":
        return _make(_raw(a) + _raw(b) if op == "+" else _raw(a) - _raw(b), "p", a, b)
    if op == "+" and qa == "n" and qb == "p":
        return _make(_raw(a) + _raw(b), "p", a, b)
    if op in "+-" and qa == "n" and qb == "n":
        return _make(_raw(a) + _raw(b) if op == "+" else _raw(a) - _raw(b), "n", a, b)
    if op in "+-" and qa in "duvt" and qb in ints:
        r = _raw(a) + b.data if op == "+" else _raw(a) - b.data
        return _make(r, qa, a, b)
    if op == "+" and qa in ints and qb in "duvt":
        return _make(a.data + _raw(b), qb, a, b)
    if op == "*" and {qa, qb} <= set("n" + ints) and "n" in (qa, qb):
        return _make(np.multiply(_raw(a), _raw(b)), "n", a, b)
    raise QError("type")


_CMP = {"=": np.equal, "<>": np.not_equal, "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}


def _sym_operands(a: Value, b: Value):
    """Both sides of a symbol comparison as codes (when one side is coded) or as str."""
    if a.coded and b.coded:
        return a.data, b.data, True
    if a.coded or b.coded:
        coded, other = (a, b) if a.coded else (b, a)
        codes = coded.syms.lookup([other.data] if other.atom else list(other.data))
        conv = codes[0] if other.atom else codes
        return (a.data, conv, True) if a.coded else (conv, b.data, True)
    return a.data, b.data, False


def compare(op: str, a: Value, b: Value) -> Value:
    _check_length(a, b)
    if a.qt == "s" or b.qt == "s":
        if a.qt != b.qt:
            raise QError("type")
        x, y, coded = _sym_operands(a, b)
        if op in ("=", "<>"):
            if coded and (np.ndim(y) == 0 and y < 0 or np.ndim(x) == 0 and x < 0):
                # a symbol the table never saw: equal to nothing
                n = len(a) if not a.atom else len(b)
                res = np.zeros(n, dtype=bool) if not (a.atom and b.atom) else np.False_
                return _make(~res if op == "<>" else res, "b", a, b)
            return _make(_CMP[op](x, y), "b", a, b)
        # ordering compares symbols alphabetically
        return _make(_CMP[op](np.asarray(a.strings(), dtype=object), np.asarray(b.strings(), dtype=object)).astype(bool),
                     "b", a, b)
    if a.qt == "C" or b.qt == "C":
        raise QError("type")
    temporal = "pdnuvt"
    if a.qt in temporal or b.qt in temporal:
        if (a.qt in temporal) != (b.qt in temporal) and not ({a.qt, b.qt} & set(TIME_OF_DAY) and
                                                             {a.qt, b.qt} & set("bhij")):
            raise QError("type")
        if (a.qt in "pd") != (b.qt in "pd") and a.qt in temporal and b.qt in temporal:
            raise QError("type")
        if a.qt in "bhij" or b.qt in "bhij":   # time-of-day against an int: compare raw counts
            return _make(_CMP[op](_raw(a), _raw(b)), "b", a, b)
        return _make(_CMP[op](_as_ns(a), _as_ns(b)), "b", a, b)
    return _make(_CMP[op](a.data, b.data), "b", a, b)


def minmax(op: str, a: Value, b: Value) -> Value:
    _check_length(a, b)
    if a.qt == "b" and b.qt == "b":
        return _make(np.logical_and(a.data, b.data) if op == "&" else np.logical_or(a.data, b.data), "b", a, b)
    if a.qt in NUMERIC and b.qt in NUMERIC:
        qt = _num_type(a, b)
        return _make((np.minimum if op == "&" else np.maximum)(a.data, b.data), qt, a, b)
    if a.qt == b.qt and a.qt in "pdnuvt":
        return _make((np.minimum if op == "&" else np.maximum)(_raw(a), _raw(b)), a.qt, a, b)
    raise QError("type")


def is_in(a: Value, b: Value) -> Value:
    if a.qt == "s" or b.qt == "s":
        if a.qt != b.qt:
            raise QError("type")
        if a.coded:
            codes = b.data if b.coded else a.syms.lookup([b.data] if b.atom else list(b.data))
            res = np.isin(a.data, np.atleast_1d(codes))
        else:
            res = np.isin(np.atleast_1d(np.asarray(a.strings(), dtype=object)),
                          np.atleast_1d(np.asarray(b.strings(), dtype=object)))
    elif a.qt in "pdnuvt" or b.qt in "pdnuvt":
        res = np.isin(np.atleast_1d(_as_ns(a)), np.atleast_1d(_as_ns(b)))
    else:
        res = np.isin(np.atleast_1d(a.data), np.atleast_1d(b.data))
    return Value(res[0] if a.atom else res, "b", a.atom, None, a.grouped)


def within(a: Value, bounds: list[Value]) -> Value:
    if len(bounds) != 2:
        raise QError("length")
    lo, hi = bounds
    return minmax("&", compare(">=", a, lo), compare("<=", a, hi))


def like(a: Value, pattern: Value) -> Value:
    if pattern.qt not in ("C", "s") or not pattern.atom or a.qt not in ("s", "C"):
        raise QError("type")
    rx = re.compile(fnmatch.translate(str(pattern.data)).replace("(?s:", "(?s:", 1))
    if a.coded:
        names = a.syms.names
        hits = np.fromiter((bool(rx.match(s)) for s in names), dtype=bool, count=len(names))
        return Value(hits[a.data], "b", a.atom, None, a.grouped)
    values = [a.data] if a.atom else a.data
    res = np.fromiter((bool(rx.match(s)) for s in values), dtype=bool, count=len(values))
    return Value(res[0] if a.atom else res, "b", a.atom, None, a.grouped)


def xbar(n: Value, x: Value) -> Value:
    if not n.atom:
        raise QError("nyi: xbar with a vector of bucket sizes")
    if x.qt in "pn" and n.qt == "n" or x.qt == "p" and n.qt in "uvt":
        size = np.int64(_as_ns(n))
        if size <= 0:
            raise QError("domain")
        raw = _raw(x)
        return _make(raw - np.mod(raw, size), x.qt, n, x)
    if n.qt not in NUMERIC:
        raise QError("type")
    if x.qt in "uvtd" or x.qt in "bhij" and n.qt != "f":
        raw = _raw(x)
        size = int(n.data)
        if size <= 0:
            raise QError("domain")
        return _make(raw - np.mod(raw, size), "j" if x.qt in "bhi" else x.qt, n, x)
    if x.qt in NUMERIC:
        return _make(np.floor(np.asarray(x.data, dtype=np.float64) / n.data) * n.data, "f", n, x)
    raise QError("type")


def intdiv(op: str, a: Value, b: Value) -> Value:
    if a.qt not in NUMERIC or b.qt not in NUMERIC:
        raise QError("type")
    qt = _num_type(a, b)
    fn = np.mod if op == "mod" else np.floor_divide
    return _make(fn(a.data, b.data), qt if op == "mod" else ("j" if qt != "i" else "i"), a, b)


MATH = {"neg": np.negative, "abs": np.abs, "sqrt": np.sqrt, "exp": np.exp, "log": np.log,
        "floor": np.floor, "ceiling": np.ceil, "reciprocal": None, "signum": np.sign}


def monadic(fn: str, x: Value) -> Value:
    if fn == "not":
        if x.qt not in NUMERIC and x.qt not in "pdnuvt":
            raise QError("type")
        data = np.equal(_raw(x), 0)
        return Value(data, "b", x.atom, None, x.grouped)
    if fn == "null":
        if x.qt == "f":
            data = np.isnan(x.data)
        elif x.qt in "pdn":
            data = np.isnat(np.asarray(x.data)) if not x.atom else np.isnat(x.data)
        elif x.qt == "s":
            data = np.asarray(x.strings(), dtype=object) == ""
        else:
            data = np.zeros(len(x), dtype=bool) if not x.atom else np.False_
        return Value(data, "b", x.atom, None, x.grouped)
    if x.qt not in NUMERIC and not (fn in ("neg", "abs") and x.qt in "n"):
        raise QError("type")
    if fn in ("neg", "abs") and x.qt == "n":
        return Value(MATH[fn](x.data), "n", x.atom, None, x.grouped)
    if fn in ("neg", "abs", "signum"):
        qt = "j" if x.qt == "b" else x.qt
        data = MATH[fn](np.asarray(x.data, dtype=np.int64 if x.qt == "b" else None))
        return Value(data if not x.atom else data[()], "i" if fn == "signum" else qt, x.atom, None, x.grouped)
    if fn in ("floor", "ceiling"):
        return Value(MATH[fn](x.data).astype(np.int64), "j", x.atom, None, x.grouped)
    if fn == "reciprocal":
        return Value(np.true_divide(1.0, x.data), "f", x.atom, None, x.grouped)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Value(MATH[fn](np.asarray(x.data, dtype=np.float64))[()] if x.atom else
                     MATH[fn](np.asarray(x.data, dtype=np.float64)), "f", x.atom, None, x.grouped)


_CASTS = {"date": "d", "minute": "u", "second": "v", "time": "t", "hh": "hh", "mm": "mm", "ss": "ss",
          "year": "year", "month": "month", "timespan": "n"}


def cast_suffix(x: Value, suffix: str) -> Value:
    """`col.date`, `col.minute`, `col.second`, `col.time`, `col.hh`, `col.mm`, `col.ss`, `col.year`."""
    target = _CASTS.get(suffix)
    if target is None or x.qt not in "pnd":
        raise QError(f"nyi: .{suffix}" if target is None else "type")
    if x.qt == "d":
        days = _raw(x)
        if target == "year":
            return _make(np.asarray(days).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970,
                         "i", x, x)
        raise QError("type")
    raw = _raw(x)
    if target == "d":
        if x.qt == "n":
            raise QError("type")
        return _make(np.floor_divide(raw, NS_PER_DAY), "d", x, x)
    tod = np.mod(raw, NS_PER_DAY)
    if target in NS_PER:
        return _make(np.floor_divide(tod, NS_PER[target]), target, x, x)
    if target == "n":
        return _make(tod, "n", x, x)
    if target == "year":
        return _make(np.asarray(raw).astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970, "i", x, x)
    if target == "month":
        months = np.asarray(raw).astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
        return _make(months % 12 + 1, "i", x, x)
    unit = {"hh": 3_600_000_000_000, "mm": 60_000_000_000, "ss": 1_000_000_000}[target]
    mod = {"hh": 24, "mm": 60, "ss": 60}[target]
    return _make(np.floor_divide(tod, unit) % mod, "i", x, x)
