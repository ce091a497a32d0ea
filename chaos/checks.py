"""The end-of-run checks of `python -m chaos`, over the journal (the reference), the rdb, calc's positions,
a treasury subscriber's margin rows and a fresh calc's margin. Each check returns a dict with `ok` and
the numbers behind it (never a bare boolean), so the report can say exactly what differed."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from calc.engine import MARGIN_FIELDS
from common.codec import as_columns, unpack
from common.schema import load_schemas
from tickerplant import journal

MAX_SHOWN = 5          # examples of a difference kept in a report


class Journal:
    """Every data record of the journal directory, decoded: per table the (seq, columns) of each batch."""

    def __init__(self, directory: str):
        schemas = load_schemas()
        self.batches: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        self.seq = 0
        for _, path in journal.journal_files(directory):
            for rec in journal.read_records(path):
                if rec.is_control:
                    continue
                self.batches[rec.table].append((rec.seq, as_columns(unpack(rec.payload), schemas[rec.table])))
                self.seq = max(self.seq, rec.seq)

    def table(self, name: str) -> dict[str, np.ndarray]:
        """One table's rows in journal order ({} when it has none)."""
        parts = [cols for _, cols in self.batches.get(name, [])]
        return concat(parts)

    def seqs(self, name: str) -> list[int]:
        return [seq for seq, _ in self.batches.get(name, [])]


def concat(parts: list[dict]) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    return {c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in parts[0]}


def same_column(a, b) -> bool:
    """Bit-for-bit equality of two columns (floats compared by their bytes, so NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        return False
    if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
        return [str(x) for x in a] == [str(x) for x in b]
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def compare_tables(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> list[str]:
    """What differs between two tables given as columns ([] when they are equal)."""
    n_exp, n_act = len(expected.get("sym", ())), len(actual.get("sym", ()))
    if n_exp != n_act:
        return [f"{n_act} rows, the journal has {n_exp}"]
    if n_exp == 0:
        return []
    return [f"column {c} differs" for c in expected if c not in actual or not same_column(expected[c], actual[c])]


def booked_once(sent: list[str], execids) -> dict:
    """Each sent ExecID booked exactly once among `execids` (the fill table's column)."""
    counts = Counter(str(e) for e in execids)
    lost = [e for e in sent if counts.get(e, 0) == 0]
    doubled = [e for e in sent if counts.get(e, 0) > 1]
    unknown = sorted(set(counts) - set(sent))
    return {"ok": not lost and not doubled and not unknown, "sent": len(sent),
            "booked": sum(1 for e in sent if counts.get(e, 0) == 1), "lost": len(lost), "doubled": len(doubled),
            "not_sent": len(unknown), "examples": (lost + doubled + unknown)[:MAX_SHOWN]}


def expected_positions(j: Journal) -> dict[tuple[str, str], float]:
    """(account, sym) -> start-of-day qty plus every fill's signed qty, from the journal."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for table in ("position", "fill"):
        t = j.table(table)
        for sym, account, qty in zip(t.get("sym", ()), t.get("account", ()), t.get("qty", ())):
            out[(str(account), str(sym))] += float(qty)
    return {k: v for k, v in out.items() if v != 0.0}


def compare_positions(expected: dict[tuple[str, str], float], calc: dict[tuple[str, str], float]) -> dict:
    calc = {k: v for k, v in calc.items() if v != 0.0}
    diff = sorted(k for k in set(expected) | set(calc) if expected.get(k) != calc.get(k))
    return {"ok": not diff, "positions": len(expected), "differ": len(diff),
            "examples": [f"{a} {s}: calc {calc.get((a, s), 0.0)}, journal {expected.get((a, s), 0.0)}"
                         for a, s in diff[:MAX_SHOWN]]}


def last_margin_rows(margin: dict[str, np.ndarray]) -> dict[tuple[str, str], dict]:
    """(account, model) -> its last margin row (a dict of the margin fields)."""
    last = {}
    for i, (sym, model) in enumerate(zip(margin.get("sym", ()), margin.get("model", ()))):
        last[(str(sym), str(model))] = i
    return {k: {f: margin[f][i] for f in MARGIN_FIELDS} for k, i in last.items()}


def compare_margin(journal_last: dict[tuple[str, str], dict], fresh: dict[tuple[str, str], dict]) -> dict:
    """Bit-for-bit equality of every margin field of each (account, model)."""
    differ = []
    for key in sorted(set(journal_last) | set(fresh)):
        a, b = journal_last.get(key), fresh.get(key)
        if a is None or b is None:
            differ.append(f"{key[0]}/{key[1]}: {'only in the fresh calc' if a is None else 'missing in the fresh calc'}")
            continue
        fields = [f for f in MARGIN_FIELDS if np.float64(a[f]).tobytes() != np.float64(b[f]).tobytes()]
        if fields:
            f = fields[0]
            rel = abs(a[f] - b[f]) / max(abs(a[f]), abs(b[f]), 1e-300)
            differ.append(f"{key[0]}/{key[1]}: {','.join(fields)} differ ({f}: journal {a[f]!r}, fresh {b[f]!r}, "
                          f"relative {rel:.3g})")
    return {"ok": not differ, "rows": len(journal_last), "differ": len(differ), "examples": differ[:MAX_SHOWN]}


def compare_subscriber(j: Journal, seqs: list[int], rows: dict[str, np.ndarray]) -> dict:
    """The subscriber's margin batches against the journal's: the same seqs once each, in order, same rows."""
    want = j.seqs("margin")
    have = Counter(seqs)
    repeats = sum(n - 1 for n in have.values() if n > 1)
    missing = len(set(want) - set(have))
    in_order = all(a < b for a, b in zip(seqs, seqs[1:]))
    problems = compare_tables(j.table("margin"), rows) if not missing and not repeats else []
    ok = seqs == want and not problems
    return {"ok": ok, "batches": len(seqs), "journal_batches": len(want), "gaps": missing, "repeats": repeats,
            "in_order": in_order, "examples": problems[:MAX_SHOWN]}
