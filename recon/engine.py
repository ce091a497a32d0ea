"""The recon engine (no I/O): keeps each account's published im per model (bounded), and for each
official CCP figure builds the `recon` rows (predicted as of the cut-off vs actual) and the alerts
over tolerance, exactly once. The tolerance and severity of an account's alerts are those of the
`alertrule` rule of kind `recon` that applies to it (account, then desk, then all), else
config/recon.toml's; a rule changed at run time applies from the next figure.

Exactly once across restarts: the process replays `margin`, `ccpmargin`, `recon` and `alert` from the
journal before it publishes anything. A figure is identified by (ccpseq, sym, ccp, kind, cutoff); one
already answered by a `recon` row in the journal is not answered again, and a `recon` alert whose
(sym, model, text) is already there is not raised again (alerts are published before the recon rows,
so a kill between the two leaves the figure unanswered and it is redone, without a second alert).
"""
from __future__ import annotations

import math
import tomllib
from array import array
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from common.alertrules import AccountLimits, RuleBook, rules_from_batch
from common.alerts import FIRING, alert_row
from common.defaults import REPO_ROOT

CONFIG_PATH = REPO_ROOT / "config" / "recon.toml"
ALERT_KIND = "recon"


@dataclass(frozen=True)
class ReconConfig:
    tolerance_pct: float = 20.0
    severity: str = "warn"
    history_rows: int = 200_000

    @classmethod
    def load(cls, path=CONFIG_PATH) -> "ReconConfig":
        """config/recon.toml; a ValueError naming the file and the key for a bad value or unknown key."""
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
        cfg = cls(**raw)
        if not (isinstance(cfg.tolerance_pct, (int, float)) and math.isfinite(cfg.tolerance_pct) and cfg.tolerance_pct >= 0):
            raise ValueError(f"{path}: tolerance_pct must be a number >= 0, got {cfg.tolerance_pct!r}")
        if cfg.severity not in FIRING:
            raise ValueError(f"{path}: severity must be one of {FIRING}, got {cfg.severity!r}")
        if not (isinstance(cfg.history_rows, int) and 1 <= cfg.history_rows <= 10_000_000):
            raise ValueError(f"{path}: history_rows must be an integer 1..10000000, got {cfg.history_rows!r}")
        return cfg


class History:
    """One account and model's (time ns, im), time-ordered, at most `limit` rows (oldest dropped)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.times = array("q")
        self.values = array("d")

    def add(self, t: int, value: float) -> None:
        i = len(self.times) if not self.times or t >= self.times[-1] else bisect_right(self.times, t)
        self.times.insert(i, t)
        self.values.insert(i, value)
        if len(self.times) > self.limit:
            drop = len(self.times) - self.limit
            del self.times[:drop]
            del self.values[:drop]

    def as_of(self, t: int) -> float:
        """The last value with time <= t; NaN when none is kept."""
        i = bisect_right(self.times, t)
        return self.values[i - 1] if i else math.nan


class Recon:
    """Feed it every batch (replay and live) with `apply`; `answer(now_ns)` returns what to publish."""

    def __init__(self, config: ReconConfig):
        self.config = config
        self.history: dict[str, dict[str, History]] = {}     # account -> model -> History
        self.pending: list[tuple] = []                       # figures not yet answered
        self.answered: set[tuple] = set()
        self.alerted: set[tuple] = set()
        self.rules = RuleBook()
        self.desks: dict[str, str] = {}

    def apply(self, table: str, cols: dict, seq: int) -> None:
        if table == "alertrule":
            self.rules.apply(rules_from_batch(cols))      # a rule it cannot use: calc raises the `rule` alert
        elif table == "account":
            self.desks.update(zip(map(str, cols["sym"]), map(str, cols["desk"])))
        elif table == "margin":
            for t, sym, model, im in zip(cols["time"].view(np.int64).tolist(), cols["sym"], cols["model"],
                                         cols["im"].tolist()):
                models = self.history.setdefault(sym, {})
                h = models.get(model)
                if h is None:
                    h = models[model] = History(self.config.history_rows)
                h.add(t, im)
        elif table == "ccpmargin":
            for sym, ccp, kind, cutoff, initial in zip(cols["sym"], cols["ccp"], cols["kind"],
                                                       cols["cutoff"].view(np.int64).tolist(), cols["initial"].tolist()):
                key = (seq, sym, ccp, kind, cutoff)
                if key not in self.answered:
                    self.pending.append((key, initial))
        elif table == "recon":
            self.answered.update(zip(cols["ccpseq"].tolist(), cols["sym"], cols["ccp"], cols["kind"],
                                     cols["cutoff"].view(np.int64).tolist()))
        elif table == "alert":
            for sym, kind, model, text in zip(cols["sym"], cols["kind"], cols["model"], cols["text"]):
                if kind == ALERT_KIND:
                    self.alerted.add((sym, model, text))

    def answer(self, now_ns: int) -> tuple[list[dict], list[dict]]:
        """(recon rows, alert rows) for the pending figures not answered yet; clears the pending list."""
        rows, alerts = [], []
        for key, actual in self.pending:
            if key in self.answered:
                continue
            seq, sym, ccp, kind, cutoff = key
            models = self.history.get(sym) or {"": None}
            for model, h in sorted(models.items()):
                predicted = h.as_of(cutoff) if h is not None else math.nan
                diff = predicted - actual
                pct = 100.0 * diff / actual
                rows.append({"time": now_ns, "sym": sym, "ccp": ccp, "kind": kind, "cutoff": cutoff, "model": model,
                             "predicted": predicted, "actual": actual, "diff": diff, "pct": pct, "ccpseq": seq})
                alert = self._alert(now_ns, rows[-1])
                if alert is not None and (sym, model, alert["text"]) not in self.alerted:
                    self.alerted.add((sym, model, alert["text"]))
                    alerts.append(alert)
            self.answered.add(key)
        self.pending.clear()
        return rows, alerts

    def _alert(self, now_ns: int, row: dict) -> dict | None:
        cutoff = str(np.datetime64(row["cutoff"], "ns"))
        head = f"recon {row['ccp']} {row['kind']} {cutoff}"
        rule = self.rules.effective(AccountLimits(row["sym"], self.desks.get(row["sym"], "")), ALERT_KIND)
        tol, severity = (rule.level, rule.severity) if rule else (self.config.tolerance_pct, self.config.severity)
        if math.isnan(row["predicted"]):
            return alert_row(now_ns, row["sym"], ALERT_KIND, severity, model=row["model"],
                             text=f"{head}: no {row['model'] or 'margin'} prediction as of the cut-off "
                                  f"(CCP initial {row['actual']:.2f})", value=math.nan, threshold=tol)
        if abs(row["pct"]) <= tol:
            return None
        return alert_row(now_ns, row["sym"], ALERT_KIND, severity, model=row["model"],
                         text=f"{head}: predicted {row['predicted']:.2f} vs CCP initial {row['actual']:.2f} "
                              f"({row['pct']:+.1f}%, tolerance {tol:g}%)", value=row["pct"], threshold=tol)


def recon_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """The `recon` batch of rows made by `Recon.answer`, in their order."""
    out = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if name in ("time", "cutoff"):
            out[name] = np.array(values, dtype=np.int64).view("datetime64[ns]")
        elif name == "ccpseq":
            out[name] = np.array(values, dtype=np.int64)
        elif isinstance(values[0], str):
            out[name] = np.array(values, dtype=object)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return out
