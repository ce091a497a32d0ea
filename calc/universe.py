"""Which history column each instrument takes its returns from, for the models that work on the
daily price history (the VaR family): an instrument with a history of its own maps to it, else to its
underlying's (an option or a future on SPY takes SPY's returns), else to none (charged in full)."""
from __future__ import annotations

import math


class Universe:
    """The instrument -> history column map, kept as `instrument` rows arrive."""

    def __init__(self, history_syms):
        self.history_syms = set(history_syms)
        self.risk_sym: dict[str, str] = {}          # instrument -> history sym whose returns it takes
        self.mapped: dict[str, set[str]] = {}       # history sym -> instruments mapped to it
        self.shared: set[str] = set()               # history syms with more than one instrument mapped

    def map(self, sym: str, underlying: str) -> None:
        """(Re)maps instrument `sym` from its reference data row."""
        target = sym if sym in self.history_syms else (underlying if underlying in self.history_syms else None)
        old = self.risk_sym.pop(sym, None)
        if old:
            self.mapped[old].discard(sym)
            if len(self.mapped[old]) < 2:
                self.shared.discard(old)
        if target:
            self.risk_sym[sym] = target
            self.mapped.setdefault(target, set()).add(sym)
            if len(self.mapped[target]) > 1:
                self.shared.add(target)

    def column_value(self, parts, rsym: str) -> float:
        """The effective value of a history column several instruments are mapped to: the exactly
        rounded sum of their parts (the same whatever order they changed in)."""
        return math.fsum(parts.get(sym, 0.0) for sym in self.mapped[rsym])     # fsum: any order
