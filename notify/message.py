"""The notification a person reads, built from one `alert` row: subject, plain text, the structured
JSON body of webhooks, the idempotency key and the link to the account's dashboard view."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Previous:
    """The account's alert of the same kind before this one (what changed since the last notice)."""
    time: str
    severity: str
    value: float


@dataclass(frozen=True)
class Message:
    alert: str                       # "SEQ.ROW": the alert's identity in the journal
    account: str
    kind: str
    severity: str
    model: str
    time: str                        # the alert's time, ISO 8601 UTC
    value: float
    threshold: float
    text: str
    drivers: tuple[tuple[str, float], ...]
    stress: float
    link: str
    previous: Previous | None

    def key(self, channel: str) -> str:
        """The idempotency key of this message on one channel: the same on every retry and restart."""
        return f"margintick/{self.alert}/{channel}"

    @property
    def subject(self) -> str:
        return f"[{self.severity.upper()}] {self.account} {self.kind}: {self.text}"

    def body(self) -> str:
        lines = [f"Account {self.account}: {self.text}",
                 f"severity {self.severity}, alert {self.kind} (model {self.model or 'n/a'}) at {self.time}",
                 f"value {_money(self.value)}, limit {_money(self.threshold)}"]
        if math.isfinite(self.stress):
            lines.append(f"stress loss {_money(self.stress)}")
        if self.drivers:
            lines.append("top drivers (contribution to the requirement):")
            lines += [f"  {sym:<12} {_money(c)}" for sym, c in self.drivers]
        if self.previous is None:
            lines.append("first notice of this alert today")
        else:
            p = self.previous
            lines.append(f"since the last notice ({p.time}, {p.severity}): value {_money(p.value)} -> "
                         f"{_money(self.value)}")
        lines.append(f"dashboard: {self.link}")
        return "\n".join(lines)

    def as_json(self, channel: str) -> dict:
        return {"idempotency_key": self.key(channel), "alert": self.alert, "account": self.account,
                "kind": self.kind, "severity": self.severity, "model": self.model, "time": self.time,
                "value": _num(self.value), "threshold": _num(self.threshold), "text": self.text,
                "drivers": [{"sym": s, "contribution": c} for s, c in self.drivers],
                "stress_loss": _num(self.stress), "link": self.link,
                "previous": None if self.previous is None else
                {"time": self.previous.time, "severity": self.previous.severity, "value": _num(self.previous.value)}}


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "n/a"


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def parse_drivers(text: str) -> tuple[tuple[str, float], ...]:
    """The alert's ``"SYM:contribution;..."`` as pairs; a part that does not parse is kept with NaN."""
    out = []
    for part in filter(None, text.split(";")):
        sym, _, c = part.rpartition(":")
        try:
            out.append((sym or part, float(c)))
        except ValueError:
            out.append((part, math.nan))
    return tuple(out)


def iso(time: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(time, "ms"), unit="ms") + "Z"


def build_message(alert_id: str, row: dict, dashboard: str, previous: Previous | None) -> Message:
    """The message of one alert row (columns as in q/schema.q `alert`)."""
    account = str(row["sym"])
    return Message(alert_id, account, str(row["kind"]), str(row["severity"]), str(row["model"]),
                   iso(row["time"]), float(row["value"]), float(row["threshold"]), str(row["text"]),
                   parse_drivers(str(row["drivers"])), float(row["stress"]),
                   f"{dashboard.rstrip('/')}/#/account/{account}", previous)
