"""Typed q values of the evaluator: a numpy array (or scalar) with its q type char.

Type chars as q's: b boolean, i int, j long, f float, s symbol, C string, p timestamp, d date,
n timespan, u minute, v second, t time. Symbol vectors read from a table hold int32 codes into the
rdb's sym list (`syms` set) and are compared as codes; symbol literals hold str.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rdb.qsql.errors import QError

NS_PER = {"u": 60_000_000_000, "v": 1_000_000_000, "t": 1_000_000}     # time-of-day units in ns
NUMERIC = "bhijef"
TIME_OF_DAY = "uvtn"
DTYPE = {"b": np.bool_, "i": np.int32, "j": np.int64, "f": np.float64, "p": "datetime64[ns]",
         "d": "datetime64[D]", "n": "timedelta64[ns]", "u": np.int32, "v": np.int32, "t": np.int32}
QTYPE_CHAR = {"boolean": "b", "int": "i", "long": "j", "float": "f", "symbol": "s", "string": "C",
              "timestamp": "p", "date": "d", "timespan": "n", "minute": "u", "second": "v", "time": "t"}
QTYPE_NAME = {c: name for name, c in QTYPE_CHAR.items()}
NULL_INT = {"i": np.iinfo(np.int32).min, "j": np.iinfo(np.int64).min}


@dataclass
class Value:
    data: object            # np.ndarray for a vector, a numpy/python scalar for an atom
    qt: str
    atom: bool = False
    syms: object = None     # the SymList when data holds symbol codes
    grouped: bool = False   # one item per group (an aggregate evaluated under `by`)

    def __len__(self) -> int:
        return 1 if self.atom else len(self.data)

    @property
    def coded(self) -> bool:
        return self.qt == "s" and self.syms is not None

    def strings(self) -> np.ndarray | str:
        """Symbols as str (decoding codes); other types unchanged."""
        if self.coded:
            if self.atom:
                return self.syms.decode(np.array([self.data], dtype=np.int32))[0]
            return self.syms.decode(self.data)
        return self.data

    def take(self, rows) -> "Value":
        if self.atom:
            return self
        return Value(self.data[rows], self.qt, False, self.syms, self.grouped)


def atom(x, qt: str) -> Value:
    return Value(x, qt, True)


def vector(x, qt: str, syms=None) -> Value:
    return Value(np.asarray(x), qt, False, syms)


# ---- literals -------------------------------------------------------------------------------------
def _time_of_day_ns(text: str) -> int:
    parts = text.split(":")
    h, m = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    s, frac = 0, 0
    if len(parts) > 2:
        sec, _, f = parts[2].partition(".")
        s, frac = int(sec), int((f + "000000000")[:9]) if f else 0
    return ((h * 60 + m) * 60 + s) * 1_000_000_000 + frac


def parse_literal(kind: str, text: str) -> Value:
    """One literal token to an atom (or a vector for symbol / boolean lists)."""
    if kind == "syms":
        names = text.split("`")[1:]
        return atom(names[0], "s") if len(names) == 1 else vector(np.array(names, dtype=object), "s")
    if kind == "str":
        return atom(bytes(text[1:-1], "utf-8").decode("unicode_escape"), "C")
    if kind == "bools":
        bits = np.array([c == "1" for c in text[:-1]])
        return atom(bits[0], "b") if len(bits) == 1 else vector(bits, "b")
    if kind == "date":
        return atom(np.datetime64(text.replace(".", "-"), "D"), "d")
    if kind == "timestamp":
        day, _, tod = text.partition("D")
        ns = np.datetime64(day.replace(".", "-"), "D").astype("datetime64[ns]")
        return atom(ns + np.timedelta64(_time_of_day_ns(tod) if tod else 0, "ns"), "p")
    if kind == "timespan":
        sign = -1 if text.startswith("-") else 1
        days, _, tod = text.lstrip("-").partition("D")
        ns = int(days) * 86_400_000_000_000 + (_time_of_day_ns(tod) if tod else 0)
        return atom(np.timedelta64(sign * ns, "ns"), "n")
    if kind == "timeofday":
        suffix = text[-1] if text[-1] in "nuvt" else ""
        body = text[:-1] if suffix else text
        if not suffix:
            colons, dot = body.count(":"), "." in body
            suffix = "t" if dot else ("v" if colons == 2 else "u")
        ns = _time_of_day_ns(body)
        if suffix == "n":
            return atom(np.timedelta64(ns, "ns"), "n")
        return atom(np.int32(ns // NS_PER[suffix]), suffix)
    if kind == "num":
        m = re.fullmatch(r"(-?[0-9.e+-]+?)([jfhie]?)", text)
        body, suffix = m.group(1), m.group(2)
        is_float = suffix in ("f", "e") or "." in body or "e" in body
        if is_float:
            return atom(np.float64(body), "f")
        return atom(np.int32(body) if suffix == "i" else np.int64(body), "i" if suffix == "i" else "j")
    raise QError(f"nyi: literal {text}")


def literal_vector(items: list[Value]) -> Value:
    """Space-separated atoms (`1 2 3`, `09:30 10:00`) to one vector; mixed ints and floats give floats."""
    qts = {v.qt for v in items}
    if qts <= {"j", "f", "i"} and len(qts) > 1:
        return vector(np.array([float(v.data) for v in items]), "f")
    if len(qts) != 1:
        raise QError("type")
    qt = qts.pop()
    return vector(np.array([v.data for v in items], dtype=DTYPE.get(qt, object)), qt)


def column_value(table, name: str, rows) -> Value:
    """A stored column gathered at `rows` (a slice or row ids) as a Value; symbols stay coded."""
    col = table.schema.column(name)
    data = table.column(name)[rows]
    if col.qtype == "symbol":
        return Value(data, "s", False, table.syms)
    return Value(data, QTYPE_CHAR[col.qtype])


def null_of(qt: str):
    return {"f": np.nan, "p": np.datetime64("NaT", "ns"), "d": np.datetime64("NaT", "D"),
            "n": np.timedelta64("NaT", "ns"), "s": "", "C": ""}.get(qt, NULL_INT.get(qt, NULL_INT["i"]))
