"""Executes parsed q-sql against the rdb store: where clauses narrowed through the per-sym index and
time order first (so sym filters and time ranges never scan the whole table), then select / exec / by
with the Numba group kernels, and aj as-of joins by per-sym binary search.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rdb.qsql import ops
from rdb.qsql.aggregates import AGGREGATES, WEIGHTED, Groups, aggregate, weighted
from rdb.qsql.errors import QError
from rdb.qsql.kernels import dense_group_ids
from rdb.qsql.parser import AsOfJoin, Call, ListExpr, Lit, Name, Query, parse
from rdb.qsql.values import QTYPE_NAME, Value, column_value, null_of
from rdb.table import UnknownName

DENSE_LIMIT = 1 << 24      # largest key span grouped by direct addressing


class Frame:
    """Rows of a table: a stored table at `rows` (columns gathered on demand) or materialised columns."""

    def __init__(self, n: int, names: list[str], table=None, rows=None, cols: dict | None = None):
        self.n, self.names, self.table, self.rows = n, names, table, rows
        self.cols: dict[str, Value] = dict(cols or {})

    def column(self, name: str) -> Value:
        v = self.cols.get(name)
        if v is None:
            if self.table is None or name not in self.names:
                raise QError(name)
            v = self.cols[name] = column_value(self.table, name, self.rows)
        return v

    def row_ids(self) -> Value:
        if self.table is None:
            return Value(np.arange(self.n, dtype=np.int64), "j")
        rows = self.rows
        data = np.arange(rows.start, rows.stop, dtype=np.int64) if isinstance(rows, slice) else rows.astype(np.int64)
        return Value(data, "j")

    def take(self, selector) -> "Frame":
        """The rows picked by a boolean mask or positions, keeping laziness for stored tables."""
        if self.table is not None:
            rows = self.rows
            base = np.arange(rows.start, rows.stop, dtype=np.int64) if isinstance(rows, slice) else rows
            picked = base[selector]
            return Frame(len(picked), self.names, self.table, picked,
                         {n: v.take(selector) for n, v in self.cols.items()})
        cols = {n: self.cols[n].take(selector) for n in self.names}
        first = next(iter(cols.values()), None)
        return Frame(len(first) if first is not None else 0, self.names, cols=cols)


@dataclass
class Result:
    """A q-sql result: kind table | keyed | dict | vector | atom, columns as Values."""
    kind: str
    columns: dict[str, Value] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    value: Value | None = None

    def to_wire(self) -> dict:
        """The RPC form: symbols decoded to str, each column with its q type name (as in q/schema.q)."""
        if self.kind in ("vector", "atom"):
            return {"kind": self.kind, "data": _plain(self.value), "type": QTYPE_NAME[self.value.qt]}
        return {"kind": self.kind, "keys": self.keys, "columns": list(self.columns),
                "data": {n: _plain(v) for n, v in self.columns.items()},
                "types": {n: QTYPE_NAME[v.qt] for n, v in self.columns.items()}}


def _plain(v: Value):
    data = v.strings() if v.qt == "s" else v.data
    if v.atom:
        return data.item() if isinstance(data, np.generic) and v.qt not in "pdn" else data
    return np.asarray(data, dtype=object) if v.qt in "sC" else np.asarray(data)


class Evaluator:
    def __init__(self, store):
        self.store = store

    def run(self, text: str) -> Result:
        node = parse(text)
        if isinstance(node, Query):
            return self.query(node)
        if isinstance(node, AsOfJoin):
            return self.as_table(self.aj(node))
        if isinstance(node, Name):
            return self.as_table(self.source(node))
        value = self.eval(node, Frame(0, []), None)
        return Result("atom" if value.atom else "vector", value=value)

    @staticmethod
    def as_table(frame: Frame) -> Result:
        return Result("table", {n: frame.column(n) for n in frame.names})

    # ---- sources ---------------------------------------------------------------------------------
    def source(self, node) -> Frame:
        if isinstance(node, Name):
            try:
                table = self.store.table(node.name)
            except UnknownName:
                raise QError(node.name) from None
            return Frame(len(table), table.column_names, table, slice(0, len(table)))
        if isinstance(node, Query):
            result = self.query(node)
            if result.kind not in ("table", "keyed"):
                raise QError("type")
            cols = {n: Value(v.data, v.qt, False, v.syms) for n, v in result.columns.items()}
            return Frame(len(next(iter(cols.values())).data) if cols else 0, list(cols), cols=cols)
        if isinstance(node, AsOfJoin):
            return self.aj(node)
        raise QError("type")

    # ---- where ------------------------------------------------------------------------------------
    def narrow(self, frame: Frame, where: list) -> tuple[Frame, list]:
        """Uses sym = / in and time comparisons / within on a stored table's index; returns the rest."""
        table = frame.table
        if table is None or not where:
            return frame, where
        syms, start, end, rest = None, None, None, []
        for cond in where:
            hit = _index_condition(cond)
            if hit is None:
                rest.append(cond)
                continue
            kind, payload = hit
            if kind == "sym":
                syms = payload if syms is None else [s for s in syms if s in set(payload)]
            else:
                lo, hi = payload
                start = lo if start is None or (lo is not None and lo > start) else start
                end = hi if end is None or (hi is not None and hi < end) else end
        lo, hi = table.time_bounds(start, end)
        if syms is None:
            rows = slice(lo, hi)
            n = hi - lo
        else:
            rows = table.rows_for(table.syms.lookup(list(syms)), lo, hi)
            n = len(rows)
        return Frame(n, frame.names, table, rows), rest

    def filter(self, frame: Frame, where: list) -> Frame:
        frame, rest = self.narrow(frame, where)
        for cond in rest:
            mask = self.eval(cond, frame, None)
            if mask.qt != "b":
                raise QError("type")
            if mask.atom:
                if not mask.data:
                    frame = frame.take(np.zeros(frame.n, dtype=bool))
                continue
            frame = frame.take(np.asarray(mask.data, dtype=bool))
        return frame

    # ---- select / exec -----------------------------------------------------------------------------
    def query(self, q: Query) -> Result:
        frame = self.filter(self.source(q.table), q.where)
        groups, keys = None, {}
        if q.by:
            key_values = [(name or _column_name(node), self.eval(node, frame, None)) for name, node in q.by]
            groups, keys = self.group(key_values, frame.n)
        columns = q.columns
        if not columns:
            if q.kind == "exec":
                raise QError("nyi: exec without columns")
            key_names = set(keys)
            columns = [(n, Call("last", [Name(n)]) if groups else Name(n)) for n in frame.names if n not in key_names]
        out: dict[str, Value] = {}
        for name, node in columns:
            label = _unique(name or _column_name(node), out, keys)
            out[label] = self.eval(node, frame, groups)
        if groups is not None:
            out = {n: _per_group(v, groups.n) for n, v in out.items()}
            order = _key_order(keys)
            keys = {n: v.take(order) for n, v in keys.items()}
            out = {n: v.take(order) for n, v in out.items()}
            if q.kind == "exec":
                if len(keys) != 1 or len(out) != 1:
                    raise QError("nyi: exec by with several keys or columns")
                return Result("dict", {**keys, **out}, list(keys))
            result = Result("keyed", {**keys, **out}, list(keys))
        elif q.kind == "exec":
            if len(out) == 1 and not columns[0][0]:
                value = next(iter(out.values()))
                return Result("atom" if value.atom else "vector", value=value)
            return Result("dict", _broadcast(out))
        else:
            result = Result("table", _broadcast(out))
        if q.limit is not None:
            result = _limit(result, self.eval(q.limit, Frame(0, []), None))
        return result

    def group(self, key_values: list, n: int) -> tuple[Groups, dict]:
        codes, spans = [], []
        for _, v in key_values:
            if v.atom or v.grouped:
                raise QError("nyi: by on an atom or an aggregate")
            if len(v.data) != n:
                raise QError("length")
            raw = np.asarray(ops._raw(v))
            if raw.dtype.kind == "f" or raw.dtype == object:
                _, inverse = np.unique(raw, return_inverse=True)
                raw = inverse.astype(np.int64)
            raw = raw.astype(np.int64, copy=False)
            lo = int(raw.min()) if n else 0
            codes.append(raw - lo)
            spans.append(int(raw.max()) - lo + 1 if n else 1)
        combined, span = codes[0], spans[0]
        for c, s in zip(codes[1:], spans[1:]):
            if span * s >= 1 << 62:
                _, inv = np.unique(combined, return_inverse=True)
                combined, span = inv.astype(np.int64), int(inv.max()) + 1 if n else 1
            combined, span = combined * s + c, span * s
        if span > max(DENSE_LIMIT, 4 * n):
            uniq, inverse = np.unique(combined, return_inverse=True)
            combined, span = inverse.astype(np.int64), len(uniq)
        ids, first, g = dense_group_ids(combined, 0, max(span, 1))
        keys = {name: Value(np.asarray(v.data)[first], v.qt, False, v.syms, True) for name, v in key_values}
        return Groups(ids, g, first), keys

    # ---- expressions ---------------------------------------------------------------------------------
    def eval(self, node, frame: Frame, groups: Groups | None) -> Value:
        if isinstance(node, Lit):
            return node.value
        if isinstance(node, Name):
            return self.name(node.name, frame)
        if isinstance(node, ListExpr):
            raise QError("nyi: a general list here")
        if isinstance(node, Query):
            result = self.query(node)
            if result.kind in ("atom", "vector"):
                return result.value
            raise QError("type")
        if isinstance(node, AsOfJoin):
            raise QError("type")
        fn, args = node.fn, node.args
        if fn in AGGREGATES and len(args) == 1:
            return aggregate(fn, self.eval(args[0], frame, None), groups)
        if fn in WEIGHTED:
            if len(args) != 2:
                raise QError("rank")
            return weighted(fn, self.eval(args[0], frame, None), self.eval(args[1], frame, None), groups)
        if fn == "within":
            if len(args) != 2:
                raise QError("rank")
            return ops.within(self.eval(args[0], frame, groups), self.bounds(args[1], frame, groups))
        values = [self.eval(a, frame, groups) for a in args]
        if len(values) == 1 and fn in ops.MATH or fn in ("not", "null"):
            if len(values) != 1:
                raise QError("rank")
            return ops.monadic(fn, values[0])
        if len(values) != 2:
            raise QError("rank")
        a, b = values
        if fn in ("+", "-", "*", "%"):
            return ops.arith(fn, a, b)
        if fn in ("=", "<>", "<", ">", "<=", ">="):
            return ops.compare(fn, a, b)
        if fn in ("&", "|", "and", "or"):
            return ops.minmax("&" if fn in ("&", "and") else "|", a, b)
        if fn == "in":
            return ops.is_in(a, b)
        if fn == "like":
            return ops.like(a, b)
        if fn == "xbar":
            return ops.xbar(a, b)
        if fn in ("mod", "div"):
            return ops.intdiv(fn, a, b)
        raise QError(f"nyi: {fn}")

    def bounds(self, node, frame, groups) -> list[Value]:
        if isinstance(node, ListExpr):
            return [self.eval(i, frame, groups) for i in node.items]
        v = self.eval(node, frame, groups)
        if v.atom or len(v.data) != 2:
            raise QError("length")
        return [Value(v.data[0], v.qt, True, v.syms), Value(v.data[1], v.qt, True, v.syms)]

    def name(self, name: str, frame: Frame) -> Value:
        if name == "i":
            return frame.row_ids()
        if name in frame.names:
            return frame.column(name)
        base, _, suffix = name.partition(".")
        if suffix and base in frame.names:
            return ops.cast_suffix(frame.column(base), suffix)
        raise QError(name)

    # ---- aj ----------------------------------------------------------------------------------------
    def aj(self, node: AsOfJoin) -> Frame:
        if len(node.keys) < 2:
            raise QError("length")
        left, right = self.source(node.left), self.source(node.right)
        *eq_keys, time_key = node.keys
        for key in node.keys:
            if key not in left.names or key not in right.names:
                raise QError(key)
        lt, rt = left.column(time_key), right.column(time_key)
        if lt.qt != rt.qt:
            raise QError("type")
        match = _asof_rows(left, right, eq_keys, ops._raw(lt), ops._raw(rt))
        found = match >= 0
        cols = {n: left.column(n) for n in left.names}
        for n in right.names:
            if n in node.keys:
                continue
            rv = right.column(n)
            picked = rv.take(np.where(found, match, 0))
            data = np.array(picked.data, copy=True) if not picked.coded else picked.data.copy()
            if n in cols:                                    # common column: t2's value where matched
                base = cols[n]
                if base.qt != rv.qt:
                    raise QError("type")
                if base.coded != rv.coded:
                    raise QError("type")
                data[~found] = np.asarray(base.data)[~found]
            else:
                data[~found] = 0 if picked.coded else null_of(rv.qt)
            cols[n] = Value(data, rv.qt, False, rv.syms)
        names = left.names + [n for n in right.names if n not in left.names]
        return Frame(left.n, names, cols=cols)


def _asof_rows(left: Frame, right: Frame, eq_keys: list[str], lt: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """Row (in right's frame order) of the last right row with equal keys and time <= each left time; -1 if none."""
    match = np.full(left.n, -1, dtype=np.int64)
    if left.n == 0 or right.n == 0:
        return match
    if not eq_keys:
        order = np.argsort(rt, kind="stable")
        pos = np.searchsorted(rt[order], lt, side="right") - 1
        ok = pos >= 0
        match[ok] = order[pos[ok]]
        return match
    both = _combine([np.concatenate([_key_codes(left.column(k), right.column(k)),
                                     _key_codes(right.column(k), right.column(k))]) for k in eq_keys])
    lk, rk = both[:left.n], both[left.n:]
    r_order = np.lexsort((np.arange(right.n), rt, rk))        # by key, then time, then row
    rk_sorted, rt_sorted = rk[r_order], rt[r_order]
    l_order = np.lexsort((lt, lk))
    lk_sorted, lt_sorted = lk[l_order], lt[l_order]
    # per left row: the range of right rows with its key, then a binary search on time within it
    start = np.searchsorted(rk_sorted, lk_sorted, side="left")
    stop = np.searchsorted(rk_sorted, lk_sorted, side="right")
    out = np.full(left.n, -1, dtype=np.int64)
    boundaries = np.flatnonzero(np.diff(lk_sorted)) + 1
    for a, b in zip(np.r_[0, boundaries], np.r_[boundaries, len(lk_sorted)]):
        s, e = start[a], stop[a]
        if e <= s:
            continue
        pos = np.searchsorted(rt_sorted[s:e], lt_sorted[a:b], side="right") - 1
        ok = pos >= 0
        idx = np.full(b - a, -1, dtype=np.int64)
        idx[ok] = r_order[s + pos[ok]]
        out[a:b] = idx
    match[l_order] = out
    return match


def _key_codes(v: Value, ref: Value) -> np.ndarray:
    if v.qt != ref.qt:
        raise QError("type")
    if v.coded:
        return v.data.astype(np.int64)
    if v.qt == "s":
        return ref.syms.lookup(list(v.data)).astype(np.int64) if ref.coded else \
            np.unique(np.asarray(v.data, dtype=object), return_inverse=True)[1]
    return np.asarray(ops._raw(v)).astype(np.int64)


def _combine(keys: list[np.ndarray]) -> np.ndarray:
    out = keys[0]
    for k in keys[1:]:
        span = int(k.max()) - int(k.min()) + 1 if len(k) else 1
        out = out * span + (k - (int(k.min()) if len(k) else 0))
    return out


# ---- result shaping ----------------------------------------------------------------------------------
def _column_name(node) -> str:
    if isinstance(node, Name):
        return "x" if node.name == "i" else node.name.rpartition(".")[2]
    if isinstance(node, Call):
        for a in node.args:
            name = _column_name(a)
            if name != "x":
                return name
    return "x"


def _unique(name: str, taken: dict, keys: dict) -> str:
    label, k = name, 1
    while label in taken or label in keys:
        label = f"{name}{k}"
        k += 1
    return label


def _per_group(v: Value, n: int) -> Value:
    if v.atom:
        return Value(np.full(n, v.data, dtype=np.asarray(v.data).dtype if v.qt not in "sC" else object),
                     v.qt, False, v.syms, True)
    if not v.grouped:
        raise QError("nyi: a column that is not aggregated in a select by (q would give lists)")
    return v


def _broadcast(cols: dict[str, Value]) -> dict[str, Value]:
    lengths = {len(v.data) for v in cols.values() if not v.atom}
    if len(lengths) > 1:
        raise QError("length")
    n = lengths.pop() if lengths else 1
    out = {}
    for name, v in cols.items():
        if v.atom:
            dtype = object if v.qt in "sC" and not v.coded else np.asarray(v.data).dtype
            v = Value(np.full(n, v.data, dtype=dtype), v.qt, False, v.syms)
        out[name] = v
    return out


def _key_order(keys: dict[str, Value]) -> np.ndarray:
    sortable = []
    for v in keys.values():
        if v.qt == "s":
            _, ranks = np.unique(np.asarray(v.strings(), dtype=object), return_inverse=True)
            sortable.append(ranks)
        else:
            sortable.append(np.asarray(ops._raw(v)))
    return np.lexsort(tuple(reversed(sortable)))


def _limit(result: Result, n: Value) -> Result:
    if not n.atom or n.qt not in "hij":
        raise QError("type")
    count = len(next(iter(result.columns.values())).data) if result.columns else 0
    k = int(n.data)
    sel = slice(0, min(k, count)) if k >= 0 else slice(max(0, count + k), count)
    return Result(result.kind, {name: v.take(sel) for name, v in result.columns.items()}, result.keys)


def _index_condition(cond):
    """('sym', [names]) or ('time', (start_ns, end_ns)) for conditions the index answers, else None."""
    if not isinstance(cond, Call) or len(cond.args) != 2 or not isinstance(cond.args[0], Name):
        return None
    col, arg = cond.args[0].name, cond.args[1]
    if col == "sym" and isinstance(arg, Lit) and arg.value.qt == "s":
        v = arg.value
        if cond.fn == "=" and v.atom:
            return "sym", [v.data]
        if cond.fn == "in":
            return "sym", [v.data] if v.atom else list(v.data)
        return None
    if col != "time":
        return None
    if cond.fn == "within":
        items = arg.items if isinstance(arg, ListExpr) else None
        if items is None and isinstance(arg, Lit) and not arg.value.atom and len(arg.value.data) == 2:
            items = [Lit(Value(x, arg.value.qt, True)) for x in arg.value.data]
        if not items or len(items) != 2 or not all(isinstance(i, Lit) for i in items):
            return None
        lo, hi = (_time_ns(i.value) for i in items)
        if lo is None or hi is None:
            return None
        return "time", (lo, hi)
    if cond.fn in ("<", "<=", ">", ">=", "=") and isinstance(arg, Lit):
        t = _time_ns(arg.value)
        if t is None:
            return None
        return "time", {"<": (None, t - 1), "<=": (None, t), ">": (t + 1, None), ">=": (t, None), "=": (t, t)}[cond.fn]
    return None


def _time_ns(v: Value):
    """A timestamp or date literal as datetime64[ns] for the index, else None."""
    if not v.atom or v.qt not in "pd":
        return None
    return np.datetime64(v.data, "ns")


def execute(store, text: str) -> Result:
    """Parses and runs one q-sql query against the store; raises QError with q-style text."""
    return Evaluator(store).run(text)
