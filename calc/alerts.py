"""Alert rules of the calc engine, edge-triggered on the margin rows it publishes (primary model):

- `threshold`  requirement > account.threshold
- `callbuffer` predicted call > account.callpct x account.buffer
- `stresscall` the call predicted by the configured stress scenario > callpct x buffer
- `imjump`     im > (1 + account.imjump) x the lowest im published within the last imjumpmins minutes

An alert fires when its condition becomes true (severity high / warn) and once more, severity
`info`, when it becomes false again; nothing repeats while the condition holds. The state (which
conditions hold, the recent im values) is a function of the published margin and alert rows only,
so a restarted calc rebuilds it from the journal (`replay_margin`, `replay_alert`).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from calc.config import AlertConfig
from calc.state import Account
from common.alerts import INFO

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

    def __init__(self, config: AlertConfig):
        self.config = config
        self.active: set[tuple[str, str]] = set()                 # (account, kind) conditions holding
        self.ims: dict[str, deque] = {}                            # account -> (time_ns, im), oldest first

    def _edge(self, account: str, kind: str, holds: bool, severity: str, model: str, value: float,
              threshold: float, text_on: str, text_off: str) -> list[AlertEvent]:
        key = (account, kind)
        if holds == (key in self.active):
            return []
        if holds:
            self.active.add(key)
            return [AlertEvent(account, kind, severity, model, value, threshold, text_on)]
        self.active.discard(key)
        return [AlertEvent(account, kind, INFO, model, value, threshold, text_off)]

    def _im_floor(self, account: str, time_ns: int, im: float, minutes: float) -> float:
        """The lowest im within the window ending at time_ns (this one included), window kept trimmed."""
        window = self.ims.setdefault(account, deque())
        window.append((time_ns, im))
        start = time_ns - minutes * NS_PER_MIN
        while window and window[0][0] < start:
            window.popleft()
        return min(v for _, v in window)

    def replay_margin(self, row: dict, account: Account | None) -> None:
        """A margin row published before a restart: rebuilds the im window only."""
        if account is not None and account.imjumpmins > 0:
            self._im_floor(row["sym"], row["time"], row["im"], account.imjumpmins)

    def replay_alert(self, account: str, kind: str, severity: str) -> None:
        """An alert published before a restart: rebuilds which conditions hold."""
        if severity == INFO:
            self.active.discard((account, kind))
        else:
            self.active.add((account, kind))

    def observe(self, row: dict, account: Account) -> list[AlertEvent]:
        """The alerts a newly published primary-model margin row raises."""
        a, model = row["sym"], row["model"]
        req, call, im = row["requirement"], row["call"], row["im"]
        out = self._edge(a, "threshold", req > account.threshold, self.config.severity_threshold, model, req,
                         account.threshold, f"requirement {req:,.0f} is above the threshold {account.threshold:,.0f}",
                         f"requirement {req:,.0f} is back below the threshold {account.threshold:,.0f}")
        limit = account.callpct * account.buffer
        if math.isfinite(limit):
            out += self._edge(a, "callbuffer", call > limit, self.config.severity_call, model, call, limit,
                              f"predicted call {call:,.0f} is {_share(call, account.buffer)} of the cash buffer "
                              f"{account.buffer:,.0f} (limit {account.callpct:.0%})",
                              f"predicted call {call:,.0f} is back within {account.callpct:.0%} of the buffer")
        if account.imjumpmins > 0 and math.isfinite(account.imjump):
            floor = self._im_floor(a, row["time"], im, account.imjumpmins)
            jump = im / floor - 1.0 if floor > 0 else 0.0
            out += self._edge(a, "imjump", jump > account.imjump, self.config.severity_threshold, model, im,
                              floor * (1.0 + account.imjump),
                              f"im {im:,.0f} rose {jump:.0%} within {account.imjumpmins:g} minutes "
                              f"(from {floor:,.0f}; limit {account.imjump:.0%})",
                              f"im {im:,.0f} no longer {account.imjump:.0%} above its "
                              f"{account.imjumpmins:g}-minute low")
        return out

    def observe_stress(self, account: Account, model: str, stress: dict) -> list[AlertEvent]:
        """The alert of a stress run: its predicted call against the buffer limit."""
        limit = account.callpct * account.buffer
        if not math.isfinite(limit):
            return []
        call = stress["call"]
        return self._edge(account.sym, "stresscall", call > limit, self.config.severity_call, model, call, limit,
                          f"stress {stress['scenario']} predicts a call of {call:,.0f}, "
                          f"{_share(call, account.buffer)} of the cash buffer {account.buffer:,.0f}",
                          f"stress {stress['scenario']} call {call:,.0f} is back within "
                          f"{account.callpct:.0%} of the buffer")


def _share(x: float, of: float) -> str:
    return f"{x / of:.0%}" if of > 0 else "n/a"
