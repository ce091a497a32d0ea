"""calc.span: SPAN margin for quants and for the live engine.

    from calc import span
    params = span.load("data/span/demo.pa2")          # CME expanded positional (.pa2) or SPAN XML (.spn)
    res = span.compute(params, {"ESZ26": 10, "NQZ26": -4, "ESZ26C6200": -20})
    res.im, res.maintenance                            # initial and maintenance requirement
    print(res.table())                                 # scan, intra, spot, inter, SOM, NOV per combined commodity
    res.positions                                      # each position's scan risk contribution

`span.SpanAccount` keeps one account live (per fill O(16), what-if, reprice); see calc/span/live.py
and docs/span.md.
"""
from __future__ import annotations

from pathlib import Path

from .compiled import CompiledParams
from .live import SpanAccount, SpanBook
from .margin import CommodityBreakdown, PositionContribution, SpanResult
from .margin import compute as _compute
from .model import SpanFileError, SpanParams

__all__ = ["load", "read", "compile_params", "compute", "SpanAccount", "SpanBook", "SpanResult",
           "CommodityBreakdown", "PositionContribution", "SpanFileError", "SpanParams", "CompiledParams"]


def read(path) -> SpanParams:
    """Parse a parameter file into the internal model (by suffix: .spn / .xml SPAN XML, else positional)."""
    if Path(path).suffix.lower() in (".spn", ".xml"):
        from .spn import read_spn
        return read_spn(path)
    from .pa2 import read_pa2
    return read_pa2(path)


def compile_params(params: SpanParams) -> CompiledParams:
    return CompiledParams(params)


def load(path) -> CompiledParams:
    """Read and compile a parameter file, ready for `compute` and `SpanAccount`."""
    return CompiledParams(read(path))


def compute(params: CompiledParams | SpanParams, positions) -> SpanResult:
    """SPAN requirement of positions ({sym: qty} or [(sym, qty), ...]) with its breakdown."""
    compiled = params if isinstance(params, CompiledParams) else CompiledParams(params)
    return _compute(compiled, positions)
