"""The SPAN requirement of a portfolio with its breakdown per combined commodity and its attribution
to positions: the result type shared by the quant API (`calc.span.compute`) and `SpanAccount`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .compiled import CompiledParams, SpanState


@dataclass
class CommodityBreakdown:
    """One combined commodity: risk = max(scan + intra + spot - inter, som); maintenance =
    max(risk - nov, 0) (nov: premium-style options only), initial = maintenance x initial/maintenance ratio."""
    cc: str
    currency: str
    scan: float
    intra: float
    spot: float
    inter: float
    som: float
    risk: float
    nov: float
    maintenance: float
    initial: float
    active_scenario: int          # 1..16, the scenario that sets the scan risk
    net_delta: float              # composite delta left after intra-commodity spreads


@dataclass
class PositionContribution:
    sym: str
    qty: float
    cc: str
    scan: float                   # qty x risk array at the active scenario of its combined commodity


@dataclass
class SpanResult:
    initial: float
    maintenance: float
    by_cc: list[CommodityBreakdown]
    positions: list[PositionContribution] = field(default_factory=list)

    @property
    def im(self) -> float:
        return self.initial

    def table(self) -> str:
        """A printable table of the breakdown."""
        head = f"{'cc':8}{'ccy':>4}{'scan':>12}{'intra':>10}{'spot':>10}{'inter':>10}{'som':>10}" \
               f"{'nov':>12}{'maint':>12}{'initial':>12}"
        rows = [head] + [f"{b.cc:8}{b.currency:>4}{b.scan:12.2f}{b.intra:10.2f}{b.spot:10.2f}{b.inter:10.2f}"
                         f"{b.som:10.2f}{b.nov:12.2f}{b.maintenance:12.2f}{b.initial:12.2f}" for b in self.by_cc]
        rows.append(f"{'total':8}{'':>4}{'':>64}{self.maintenance:12.2f}{self.initial:12.2f}")
        return "\n".join(rows)


def result_of(compiled: CompiledParams, state: SpanState, idx: np.ndarray, qty: np.ndarray,
              with_positions: bool = True) -> SpanResult:
    """Breakdown of `state` (the positions qty of contracts idx), only combined commodities that are held."""
    out = compiled.breakdown(state)
    held = np.unique(compiled.contract_cc[idx]) if len(idx) else np.zeros(0, dtype=np.int64)
    combined = compiled.params.combined
    by_cc = []
    for c in held:
        r = out[c].tolist()
        code = compiled.cc_codes[c]
        by_cc.append(CommodityBreakdown(
            cc=code, currency=combined[code].currency, scan=r[kernels.SCAN], intra=r[kernels.INTRA],
            spot=r[kernels.SPOT], inter=r[kernels.INTER], som=r[kernels.SOM], risk=r[kernels.RISK],
            nov=r[kernels.NOV], maintenance=r[kernels.MAINT], initial=r[kernels.INIT],
            active_scenario=int(r[kernels.ACTIVE]) + 1, net_delta=r[kernels.NET_DELTA]))
    positions = []
    if with_positions and len(idx):
        cc = compiled.contract_cc[idx]
        contrib = qty * compiled.risk[idx, out[cc, kernels.ACTIVE].astype(np.int64)]
        positions = [PositionContribution(compiled.symbols[j], float(q), compiled.cc_codes[c], float(v))
                     for j, q, c, v in zip(idx, qty, cc, contrib)]
    return SpanResult(initial=float(out[held, kernels.INIT].sum()), maintenance=float(out[held, kernels.MAINT].sum()),
                      by_cc=by_cc, positions=positions)


def positions_arrays(compiled: CompiledParams, positions) -> tuple[np.ndarray, np.ndarray]:
    """{sym: qty}, or an iterable of (sym, qty) -> (contract numbers, quantities), summed per contract."""
    items = positions.items() if hasattr(positions, "items") else positions
    totals: dict[int, float] = {}
    for sym, qty in items:
        j = compiled.index.get(sym)
        if j is None:
            raise KeyError(f"instrument {sym!r} is not in the SPAN parameter file {compiled.params.source!r}")
        q = float(qty)
        if not np.isfinite(q):
            raise ValueError(f"quantity of {sym!r} must be a finite number, got {qty!r}")
        totals[j] = totals.get(j, 0.0) + q
    idx = np.fromiter((j for j, q in totals.items() if q != 0.0), dtype=np.int64)
    return idx, np.array([totals[j] for j in idx], dtype=np.float64)


def compute(compiled: CompiledParams, positions) -> SpanResult:
    """The SPAN requirement of a portfolio (see `positions_arrays` for the accepted forms)."""
    idx, qty = positions_arrays(compiled, positions)
    return result_of(compiled, compiled.state_of(idx, qty), idx, qty)
