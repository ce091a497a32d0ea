"""Attribution: the positions driving a margin number, from per-position contributions
(calc.models / calc.stress), and their text form for the ``alert.drivers`` column."""
from __future__ import annotations

import numpy as np

from calc import kernels


def top_drivers(contributions, syms, n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` largest contributions as (sym, contribution), largest first (risk adders first;
    hedges, with negative contributions, come last)."""
    c = np.asarray(contributions, dtype=np.float64)
    if c.shape != (len(syms),):
        raise ValueError(f"{c.size} contributions for {len(syms)} syms")
    order = kernels.largest(c, n)
    return [(syms[i], float(c[i])) for i in order]


def format_drivers(drivers: list[tuple[str, float]]) -> str:
    """``"SYM:contribution;..."`` with contributions rounded to whole currency units."""
    return ";".join(f"{s}:{c:.0f}" for s, c in drivers)
