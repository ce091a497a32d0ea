"""Exact sums for the calc engine's incremental state, so that its numbers depend on the current
book only, never on the order of the updates that led to it.

Floating-point addition is not associative: a P&L vector kept by ``pnl += du * shocks[i]`` over a
day of fills and ticks ends a few units in the last place away from the same book revalued from
scratch, and a fill followed by its cancel does not return it to where it was. A restarted calc
(journal replay, full revaluation) would then publish other last digits than the calc that ran
through. So every sum the engine keeps incrementally is exact:

- Python scalars (a holding's quantity and cost, an account's collateral movements, vm and add-on
  totals): `ExactSum`, an integer count of 2^-128 units. Every float of magnitude above 2^-75
  converts exactly; the sum is exact whatever the order and is read as its correctly rounded float.
- Vectors kept by the Numba kernels (scenario P&L, cov @ values, the SPAN state): each term t is
  split into ``hi`` on a grid of 2^-8 and ``lo``, the rest on a grid of 2^-40 (`calc.kernels`,
  ``split``). A sum of grid values is exact while it stays below 2^53 grid units: 2^45 (3.5e13)
  for ``hi``, and ``lo`` (each |lo| <= 2^-9) for up to 2^22 terms. Removing a term subtracts exactly
  what adding it added, so the vector is the same function of the current terms whichever way they
  got there, and its value ``hi + lo`` is the sum of the terms to about 1e-12 in absolute terms.

Beyond those ranges (P&L of tens of trillions in one scenario) the sums stay as accurate as plain
floating point and only lose their order independence.
"""
from __future__ import annotations

import math

UNIT_BITS = 128


def units(x: float) -> int:
    """x as an integer number of 2^-128 units (exact for |x| > 2^-75; truncated below)."""
    return int(math.ldexp(x, UNIT_BITS))


def value(n: int) -> float:
    """The float nearest to n units."""
    return math.ldexp(float(n), -UNIT_BITS)


class ExactSum:
    """A running sum of floats that is exact: `add` and `replace` in any order give the same value
    for the same terms, and adding then removing a term leaves it where it was. Non-finite terms
    are not summable: `add` raises ValueError (callers keep such terms out)."""
    __slots__ = ("_units", "value")

    def __init__(self, start: float = 0.0):
        self._units = 0
        self.value = 0.0
        if start:
            self.add(start)

    @classmethod
    def of(cls, terms) -> ExactSum:
        """The exact sum of finite floats `terms`."""
        out = cls()
        out._units = sum(map(units, terms))
        out.value = value(out._units)
        return out

    def add(self, x: float) -> float:
        if x:
            if not math.isfinite(x):
                raise ValueError(f"cannot add a non-finite amount {x!r} to an exact sum")
            self._units += units(x)
            self.value = value(self._units)
        return self.value

    def replace(self, old: float, new: float) -> float:
        """Swaps a term `old` already in the sum for `new`."""
        if old != new:
            if not (math.isfinite(old) and math.isfinite(new)):
                raise ValueError(f"cannot replace {old!r} by {new!r} in an exact sum")
            self._units += units(new) - units(old)
            self.value = value(self._units)
        return self.value

    def copy(self) -> ExactSum:
        out = ExactSum()
        out._units, out.value = self._units, self.value
        return out

    def __repr__(self) -> str:
        return f"ExactSum({self.value!r})"
