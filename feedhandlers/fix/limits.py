"""Fat-finger bounds of the drop-copy acceptor (config/fix/limits.toml): the largest quantity and the
largest notional (|LastQty| x LastPx x the instrument's multiplier) one fill may have.

A trade or correction beyond its bound is not booked: the acceptor answers a BusinessMessageReject
with the reason and raises a `data` alert. Bounds are looked up per fill, most specific first:
`[sym.NAME]`, then `[assetclass.NAME]` (the instrument's asset class in the reference data), then
`[default]`; a section may set either key and inherits the other. An instrument the reference data
does not know takes `[default]` with a multiplier of 1.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import NamedTuple

from common.defaults import REPO_ROOT

LIMITS_PATH = REPO_ROOT / "config" / "fix" / "limits.toml"
KEYS = ("max_qty", "max_notional")


class LimitsError(ValueError):
    """The limits file is missing, malformed, or holds a key or value it may not."""


class Bound(NamedTuple):
    max_qty: float
    max_notional: float


class Limits:
    def __init__(self, default: Bound, assetclass: dict[str, dict] | None = None,
                 sym: dict[str, dict] | None = None):
        self.default = default
        self.assetclass = assetclass or {}
        self.sym = sym or {}

    @classmethod
    def load(cls, path: str | Path = LIMITS_PATH) -> "Limits":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise LimitsError(f"{path}: {e}") from None
        unknown = set(doc) - {"default", "assetclass", "sym"}
        if unknown:
            raise LimitsError(f"{path}: unknown section(s) {sorted(unknown)} (default, assetclass.NAME, sym.NAME)")
        default = _section(path, "default", doc.get("default", {}))
        if set(default) != set(KEYS):
            raise LimitsError(f"{path}: [default] must set both {' and '.join(KEYS)}")
        groups = {}
        for group in ("assetclass", "sym"):
            groups[group] = {name: _section(path, f"{group}.{name}", section)
                             for name, section in doc.get(group, {}).items()}
        return cls(Bound(**default), **groups)

    def bound_for(self, sym: str, assetclass: str) -> Bound:
        return self.default._replace(**self.assetclass.get(assetclass, {}), **self.sym.get(sym, {}))

    def breach(self, qty: float, price: float, sym: str, assetclass: str, multiplier: float) -> str | None:
        """Why a fill of |qty| at price breaks its bound, or None if it is within it."""
        bound = self.bound_for(sym, assetclass)
        size = abs(qty)
        if size > bound.max_qty:
            return f"LastQty {size:g} of {sym} is over the fat-finger bound of {bound.max_qty:g}"
        notional = size * price * multiplier
        if not notional <= bound.max_notional:           # inf / nan too
            return (f"notional {notional:.6g} ({size:g} x {price:g} x multiplier {multiplier:g}) of {sym} "
                    f"is over the fat-finger bound of {bound.max_notional:.6g}")
        return None


def _section(path: Path, where: str, section) -> dict[str, float]:
    if not isinstance(section, dict):
        raise LimitsError(f"{path}: [{where}] must be a table of {', '.join(KEYS)}")
    out = {}
    for key, value in section.items():
        if key not in KEYS:
            raise LimitsError(f"{path}: [{where}] {key}: unknown key ({', '.join(KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise LimitsError(f"{path}: [{where}] {key} = {value!r}: must be a finite number > 0")
        out[key] = float(value)
    return out
