"""Alert rules of the calc engine, edge-triggered on the margin rows it publishes (primary model). The
rule of each kind that applies to an account comes from the `RuleBook` (common/alertrules.py: the
`alertrule` rows, else the account's start-of-day thresholds), so a rule changed at run time is used
from the next margin row on:

- `threshold`  requirement > level
- `callbuffer` predicted call > level x account.buffer
- `stresscall` the call predicted by the configured stress scenario > level x buffer
- `imjump`     im > (1 + level) x the lowest im published within the last `window` minutes
- `excess`     excess (collateral - requirement) < level

A rule that is switched off (or replaced by none) ends its episode with the `info` alert.

An alert fires when its condition becomes true (severity high / warn), again when its severity rises
while it holds (its rule was changed to `high`), and once more, severity `info`, when it becomes false
again; nothing else repeats while the condition holds. The state (which
conditions hold, the recent im values) is a function of the published margin and alert rows only,
so a restarted calc rebuilds it from the journal (`replay_margin`, `replay_alert`).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from calc.config import AlertConfig
from calc.state import Account
from common.alerts import INFO, SEVERITIES
from common.alertrules import Rule, RuleBook

NS_PER_MIN = 60_000_000_000


@dataclass(frozen=True)
class AlertEvent:
    """An alert before drivers and stress are attached: the rule that fired and its numbers."""
    account: str
    kind: str
    severity: str
    model: str
    value: float
    threshold: float
    text: str


class AlertMonitor:
    """Keeps, per account, which alert conditions hold and the recent im values."""

    def __init__(self, config: AlertConfig, rules: RuleBook | None = None):
        self.config = config
        self.rules = rules if rules is not None else RuleBook()
        self.active: dict[tuple[str, str], str] = {}              # (account, kind) conditions holding -> severity
        self.ims: dict[str, deque] = {}                            # account -> (time_ns, im), oldest first

    def _edge(self, account: str, kind: str, holds: bool, severity: str, model: str, value: float,
              threshold: float, text_on: str, text_off: str) -> list[AlertEvent]:
        key = (account, kind)
        was = self.active.get(key)
        if holds:
            if was is not None and SEVERITIES.index(severity) <= SEVERITIES.index(was):
                return []
            self.active[key] = severity           # it starts, or its severity rises (a rule changed)
            return [AlertEvent(account, kind, severity, model, value, threshold,
                               text_on if was is None else f"{text_on} (severity raised from {was})")]
        if was is None:
            return []
        del self.active[key]
        return [AlertEvent(account, kind, INFO, model, value, threshold, text_off)]

    def _im_floor(self, account: str, time_ns: int, im: float, minutes: float) -> float:
        """The lowest im within the window ending at time_ns (this one included), window kept trimmed."""
        window = self.ims.setdefault(account, deque())
        window.append((time_ns, im))
        start = time_ns - minutes * NS_PER_MIN
        while window and window[0][0] < start:
            window.popleft()
        return min(v for _, v in window)

    def _severity(self, rule: Rule, default: str) -> str:
        """An `alertrule` row's severity; the configured one for the start-of-day rules."""
        return rule.severity if rule.id in self.rules.rules else default

    def _by(self, rule: Rule | None) -> str:
        """Names a rule set through `alertrule` in the alert's text (the start-of-day ones stay unnamed)."""
        return f" (rule {rule.id})" if rule is not None and rule.id in self.rules.rules else ""

    def replay_margin(self, row: dict, account: Account | None) -> None:
        """A margin row published before a restart: rebuilds the im window only."""
        rule = self.rules.effective(account, "imjump") if account is not None else None
        if rule is not None:
            self._im_floor(row["sym"], row["time"], row["im"], rule.window)

    def replay_alert(self, account: str, kind: str, severity: str) -> None:
        """An alert published before a restart: rebuilds which conditions hold."""
        if severity == INFO:
            self.active.pop((account, kind), None)
        else:
            self.active[(account, kind)] = severity

    def observe(self, row: dict, account: Account) -> list[AlertEvent]:
        """The alerts a newly published primary-model margin row raises."""
        a, model = row["sym"], row["model"]
        req, call, im = row["requirement"], row["call"], row["im"]
        out: list[AlertEvent] = []
        rule = self.rules.effective(account, "threshold")
        if rule is not None or (a, "threshold") in self.active:
            level = rule.level if rule else math.nan
            out += self._edge(a, "threshold", rule is not None and req > level,
                              self._severity(rule, self.config.severity_threshold) if rule else INFO, model, req, level,
                              f"requirement {req:,.0f} is above the threshold {level:,.0f}{self._by(rule)}",
                              f"requirement {req:,.0f} is back below the threshold {level:,.0f}" if rule else
                              f"threshold rule switched off (requirement {req:,.0f})")
        rule = self.rules.effective(account, "callbuffer")
        if rule is not None or (a, "callbuffer") in self.active:
            pct = rule.level if rule else math.nan
            limit = pct * account.buffer
            out += self._edge(a, "callbuffer", rule is not None and call > limit,
                              self._severity(rule, self.config.severity_call) if rule else INFO, model, call, limit,
                              f"predicted call {call:,.0f} is {_share(call, account.buffer)} of the cash buffer "
                              f"{account.buffer:,.0f} (limit {pct:.0%}){self._by(rule)}",
                              f"predicted call {call:,.0f} is back within {pct:.0%} of the buffer" if rule else
                              f"call-vs-buffer rule switched off (call {call:,.0f})")
        rule = self.rules.effective(account, "excess")
        if rule is not None or (a, "excess") in self.active:
            excess, level = row["excess"], rule.level if rule else math.nan
            out += self._edge(a, "excess", rule is not None and excess < level,
                              self._severity(rule, self.config.severity_threshold) if rule else INFO, model, excess,
                              level, f"excess {excess:,.0f} is below {level:,.0f}{self._by(rule)}",
                              f"excess {excess:,.0f} is back above {level:,.0f}" if rule else
                              f"excess rule switched off (excess {excess:,.0f})")
        rule = self.rules.effective(account, "imjump")
        if rule is not None:
            floor = self._im_floor(a, row["time"], im, rule.window)
            jump = im / floor - 1.0 if floor > 0 else 0.0
            out += self._edge(a, "imjump", jump > rule.level, self._severity(rule, self.config.severity_threshold),
                              model, im, floor * (1.0 + rule.level),
                              f"im {im:,.0f} rose {jump:.0%} within {rule.window:g} minutes "
                              f"(from {floor:,.0f}; limit {rule.level:.0%}){self._by(rule)}",
                              f"im {im:,.0f} no longer {rule.level:.0%} above its "
                              f"{rule.window:g}-minute low")
        elif (a, "imjump") in self.active:
            out += self._edge(a, "imjump", False, INFO, model, im, math.nan, "", "im jump rule switched off")
        return out

    def observe_stress(self, account: Account, model: str, stress: dict) -> list[AlertEvent]:
        """The alert of a stress run: its predicted call against the buffer limit."""
        rule = self.rules.effective(account, "stresscall")
        call = stress["call"]
        if rule is None:
            if (account.sym, "stresscall") not in self.active:
                return []
            return self._edge(account.sym, "stresscall", False, INFO, model, call, math.nan, "",
                              f"stress call rule switched off (stress call {call:,.0f})")
        limit = rule.level * account.buffer
        return self._edge(account.sym, "stresscall", call > limit, self._severity(rule, self.config.severity_call),
                          model, call, limit,
                          f"stress {stress['scenario']} predicts a call of {call:,.0f}, "
                          f"{_share(call, account.buffer)} of the cash buffer {account.buffer:,.0f}{self._by(rule)}",
                          f"stress {stress['scenario']} call {call:,.0f} is back within "
                          f"{rule.level:.0%} of the buffer")


def _share(x: float, of: float) -> str:
    return f"{x / of:.0%}" if of > 0 else "n/a"
