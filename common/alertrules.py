"""Alert rules as data (q/schema.q `alertrule`): the `Rule` value, its validation with a clear error,
its row and batch, and the `RuleBook` that says which rule applies to an account and kind. calc
evaluates the rules the book gives (the recon process those of kind `recon`: the tolerance of a
reconciliation error, in %); notify routes an alert to the channels of the same rule.

For an account and a kind the most specific enabled rule applies: scope `account`, then `desk`, then
`all`; among rules of the same scope the latest. The start-of-day thresholds of the `account` table
are the account rules `ACCOUNT.KIND` (`default_rules`) until an `alertrule` row of that id replaces
them (a row with enabled false switches such a default off).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.alerts import FIRING, HIGH, WARN
from common.codec import text_array

KINDS = ("threshold", "callbuffer", "stresscall", "imjump", "excess", "recon")     # recon: the recon process
SCOPES = ("account", "desk", "all")
_RANK = {"account": 0, "desk": 1, "all": 2}


@dataclass(frozen=True)
class Rule:
    id: str
    scope: str
    target: str
    kind: str
    level: float
    window: float = 0.0            # imjump: minutes
    severity: str = WARN
    channels: tuple[str, ...] = ()
    enabled: bool = True
    user: str = ""
    time: int = 0                  # ns; the latest of equally specific rules applies

    def applies_to(self, account: str, desk: str) -> bool:
        return (self.scope == "all" or (self.scope == "account" and self.target == account)
                or (self.scope == "desk" and bool(desk) and self.target == desk))


def check_rule(rule: Rule, accounts: dict[str, str] | None = None) -> str | None:
    """Why `rule` cannot be used (None when it can); accounts: account -> desk, to check the target."""
    where = f"rule {rule.id!r}"
    if not rule.id:
        return "rule: the id is empty"
    if rule.kind not in KINDS:
        return f"{where}: kind {rule.kind!r} is not one of {', '.join(KINDS)}"
    if rule.scope not in SCOPES:
        return f"{where}: scope {rule.scope!r} is not one of {', '.join(SCOPES)}"
    if rule.scope != "all" and not rule.target:
        return f"{where}: scope {rule.scope} needs a target (the {rule.scope} name)"
    if accounts is not None and rule.scope == "account" and rule.target not in accounts:
        return f"{where}: unknown account {rule.target!r}"
    if accounts is not None and rule.scope == "desk" and rule.target not in set(accounts.values()):
        return f"{where}: unknown desk {rule.target!r}"
    if not math.isfinite(rule.level):
        return f"{where}: level must be a finite number"
    if rule.kind in ("callbuffer", "stresscall", "imjump") and rule.level <= 0:
        return f"{where}: level of {rule.kind} is a share (> 0), got {rule.level:g}"
    if rule.kind == "recon" and rule.level < 0:
        return f"{where}: level of recon is a tolerance in % (>= 0), got {rule.level:g}"
    if rule.kind == "imjump" and not (math.isfinite(rule.window) and rule.window > 0):
        return f"{where}: imjump needs a window in minutes (> 0)"
    if rule.severity not in FIRING:
        return f"{where}: severity {rule.severity!r} is not one of {', '.join(FIRING)}"
    return None


@dataclass(frozen=True)
class AccountLimits:
    """What the rules need of an account (calc.state.Account has the same attributes)."""
    sym: str
    desk: str = ""
    threshold: float = math.inf
    callpct: float = math.inf
    imjump: float = math.inf
    imjumpmins: float = 0.0


def default_rules(account) -> list[Rule]:
    """The rules of an `account` row's thresholds (AccountLimits or calc.state.Account), ids ACCOUNT.KIND."""
    a, out = account.sym, []
    if math.isfinite(account.threshold):
        out.append(Rule(f"{a}.threshold", "account", a, "threshold", account.threshold))
    if math.isfinite(account.callpct):
        out += [Rule(f"{a}.callbuffer", "account", a, "callbuffer", account.callpct, severity=HIGH),
                Rule(f"{a}.stresscall", "account", a, "stresscall", account.callpct, severity=HIGH)]
    if math.isfinite(account.imjump) and account.imjumpmins > 0:
        out.append(Rule(f"{a}.imjump", "account", a, "imjump", account.imjump, window=account.imjumpmins))
    return out


def rules_from_batch(cols: dict) -> list[Rule]:
    """The rules of an `alertrule` batch, in order."""
    times = np.asarray(cols["time"]).astype("datetime64[ns]").astype(np.int64)
    return [Rule(str(i), str(sc), str(t), str(k), float(lv), float(w), str(sv),
                 tuple(c.strip() for c in str(ch).split(",") if c.strip()), bool(en), str(u), int(tm))
            for i, sc, t, k, lv, w, sv, ch, en, u, tm in
            zip(cols["sym"], cols["scope"], cols["target"], cols["kind"], cols["level"], cols["window"],
                cols["severity"], cols["channels"], cols["enabled"], cols["user"], times)]


def rule_batch(rules: list[Rule]) -> dict[str, np.ndarray]:
    """The `alertrule` batch of `rules` (their `time` as given)."""
    return {"time": np.array([r.time for r in rules], dtype=np.int64).view("datetime64[ns]"),
            "sym": text_array([r.id for r in rules]), "scope": text_array([r.scope for r in rules]),
            "target": text_array([r.target for r in rules]), "kind": text_array([r.kind for r in rules]),
            "level": np.array([r.level for r in rules], dtype=np.float64),
            "window": np.array([r.window for r in rules], dtype=np.float64),
            "severity": text_array([r.severity for r in rules]),
            "channels": text_array([",".join(r.channels) for r in rules]),
            "enabled": np.array([r.enabled for r in rules], dtype=bool),
            "user": text_array([r.user for r in rules])}


class RuleBook:
    """The rules set through `alertrule` rows (the latest row of each id), and which one applies."""

    def __init__(self):
        self.rules: dict[str, Rule] = {}
        self._cache: dict[tuple, Rule | None] = {}

    def apply(self, rules: list[Rule], accounts: dict[str, str] | None = None) -> list[tuple[Rule, str]]:
        """Takes the rules that can be used; returns the others with their error (those are ignored)."""
        errors = []
        for rule in rules:
            error = check_rule(rule, accounts)
            if error:
                errors.append((rule, error))
            else:
                self.rules[rule.id] = rule
                self._cache.clear()
        return errors

    def effective(self, account, kind: str) -> Rule | None:
        """The rule of `kind` that applies to `account` (AccountLimits or calc.state.Account), or None."""
        key = (account.sym, account.desk, account.threshold, account.callpct, account.imjump, account.imjumpmins, kind)
        try:
            return self._cache[key]
        except KeyError:
            rule = self._cache[key] = self._effective(account, kind)
            return rule

    def _effective(self, account, kind: str) -> Rule | None:
        candidates = [r for r in self.rules.values() if r.kind == kind and r.applies_to(account.sym, account.desk)]
        candidates += [r for r in default_rules(account) if r.kind == kind and r.id not in self.rules]
        candidates = [r for r in candidates if r.enabled]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (_RANK[r.scope], -r.time))
