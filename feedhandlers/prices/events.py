"""Market events the simulator can be told to apply: price jumps and volatility regimes, and their text form.

An event is one or more `;`-separated clauses:

    antitrust SYM [drop=0.15] [sector_drop=0.05] [vol=2]
        the MISSION scenario: SYM falls by `drop`, the rest of its sector by `sector_drop`, and the
        volatility of the whole sector (SYM included) becomes `vol` times its calibrated level
    shock KEY=RETURN ...      an instant move, a simple return (-0.15 = -15%)
    vol KEY=MULTIPLIER ...    volatility = MULTIPLIER x calibrated, from now on (1 restores it)

KEY is a sym, `sector:NAME` (the sector column of instrument.csv) or `all`; a sym beats its sector,
a sector beats `all`; a later clause overrides an earlier one for the same sym. Volatility multipliers
are levels, not increments: `vol AMD=2` twice still means twice the calibrated volatility.

A scheduled event is `WHEN EVENT`, WHEN being `+SECONDS` after the feed starts (e.g. `+30`, `+2.5s`) or
a UTC time `YYYY-MM-DDTHH:MM:SS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ANTITRUST_DEFAULTS = {"drop": 0.15, "sector_drop": 0.05, "vol": 2.0}


@dataclass(frozen=True)
class MarketEvent:
    text: str
    shocks: dict[str, float] = field(default_factory=dict)      # sym -> simple return applied at once
    vol: dict[str, float] = field(default_factory=dict)         # sym -> volatility multiplier (level)


def _number(text: str, clause: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{clause}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{clause}: {text!r} is not a finite number")
    return value


def _expand(assignments: dict[str, float], sectors: dict[str, str], clause: str) -> dict[str, float]:
    """KEY=value assignments (sym, sector:NAME, all) to per-sym values, the most specific winning."""
    known_sectors = set(sectors.values())
    levels: list[dict[str, float]] = [{}, {}, {}]           # all, sector, sym
    for key, value in assignments.items():
        if key == "all":
            levels[0]["all"] = value
        elif key.startswith("sector:"):
            name = key.removeprefix("sector:")
            if name not in known_sectors:
                raise ValueError(f"{clause}: unknown sector {name!r} (sectors: {', '.join(sorted(known_sectors))})")
            levels[1][name] = value
        elif key in sectors:
            levels[2][key] = value
        else:
            raise ValueError(f"{clause}: unknown sym {key!r} (simulated: {', '.join(sectors)})")
    out = {}
    for sym, sector in sectors.items():
        for level, k in ((levels[2], sym), (levels[1], sector), (levels[0], "all")):
            if k in level:
                out[sym] = level[k]
                break
    return out


def _pairs(tokens: list[str], clause: str) -> dict[str, float]:
    if not tokens:
        raise ValueError(f"{clause}: expected KEY=VALUE pairs")
    out = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise ValueError(f"{clause}: expected KEY=VALUE, got {token!r}")
        out[key] = _number(value, clause)
    return out


def antitrust(target: str, sectors: dict[str, str], drop: float = ANTITRUST_DEFAULTS["drop"],
              sector_drop: float = ANTITRUST_DEFAULTS["sector_drop"],
              vol: float = ANTITRUST_DEFAULTS["vol"]) -> MarketEvent:
    """The MISSION scenario: `target` -drop, the rest of its sector -sector_drop, the sector's volatility x vol."""
    if target not in sectors:
        raise ValueError(f"antitrust: unknown sym {target!r} (simulated: {', '.join(sectors)})")
    peers = [s for s, sec in sectors.items() if sec == sectors[target]]
    shocks = {s: -sector_drop for s in peers} | {target: -drop}
    return _checked(MarketEvent(f"antitrust {target} drop={drop:g} sector_drop={sector_drop:g} vol={vol:g}",
                                shocks, {s: vol for s in peers}))


def event_ticks(event: MarketEvent, marks: dict[str, float], annual_vol: dict[str, float]
                ) -> dict[str, tuple[float, float]]:
    """What the feed quotes right after `event` for each sym it touches that has a mark: (price,
    vol) = (mark x (1 + shock), calibrated annualised vol x multiplier), NaN for the one the event
    leaves alone (an engine applying these ticks sees the event as calc does; tests and benches)."""
    out = {}
    for sym in sorted(set(event.shocks) | set(event.vol)):
        if sym in marks:
            price = marks[sym] * (1 + event.shocks[sym]) if sym in event.shocks else np.nan
            vol = annual_vol[sym] * event.vol[sym] if sym in event.vol and sym in annual_vol else np.nan
            out[sym] = (float(price), float(vol))
    return out


def _checked(event: MarketEvent) -> MarketEvent:
    for sym, r in event.shocks.items():
        if not r > -1:
            raise ValueError(f"{event.text}: a shock of {r:g} on {sym} would take its price to zero or below")
    for sym, m in event.vol.items():
        if not m > 0:
            raise ValueError(f"{event.text}: volatility multiplier {m:g} on {sym} must be > 0")
    return event


def parse_event(spec: str, sectors: dict[str, str]) -> MarketEvent:
    """Parses the text form (module docstring) against the simulated syms and their sectors."""
    shocks: dict[str, float] = {}
    vol: dict[str, float] = {}
    clauses = [c.strip() for c in spec.split(";") if c.strip()]
    if not clauses:
        raise ValueError("empty event (expected antitrust SYM, shock KEY=RETURN ..., vol KEY=MULTIPLIER ...)")
    for clause in clauses:
        kind, *tokens = clause.split()
        if kind == "antitrust":
            if not tokens or "=" in tokens[0]:
                raise ValueError(f"{clause}: expected antitrust SYM [drop=..] [sector_drop=..] [vol=..]")
            params = _pairs(tokens[1:], clause) if tokens[1:] else {}
            bad = set(params) - set(ANTITRUST_DEFAULTS)
            if bad:
                raise ValueError(f"{clause}: unknown parameter {', '.join(sorted(bad))} "
                                 f"(antitrust takes {', '.join(ANTITRUST_DEFAULTS)})")
            event = antitrust(tokens[0], sectors, **params)
            shocks |= event.shocks
            vol |= event.vol
        elif kind == "shock":
            shocks |= _expand(_pairs(tokens, clause), sectors, clause)
        elif kind == "vol":
            vol |= _expand(_pairs(tokens, clause), sectors, clause)
        else:
            raise ValueError(f"unknown event {kind!r} (expected antitrust, shock or vol)")
    return _checked(MarketEvent(spec.strip(), shocks, vol))


def parse_schedule(item: str, start_ns: int, sectors: dict[str, str]) -> tuple[int, MarketEvent]:
    """`WHEN EVENT` -> (due time in UTC ns, event)."""
    when, _, spec = item.strip().partition(" ")
    try:
        if when.startswith("+"):
            due = start_ns + int(float(when[1:].removesuffix("s")) * 1e9)
        else:
            due = int(np.datetime64(when.removesuffix("Z"), "ns").astype(np.int64))
    except ValueError:
        raise ValueError(f"schedule {item!r}: WHEN must be +SECONDS or a UTC time YYYY-MM-DDTHH:MM:SS") from None
    return due, parse_event(spec, sectors)
