"""The SPAN 2-style model (calc/span2_model.py), added through the margin-model interface alone: one
module, one line in calc.registry, one [models.span2] table. On the real history and the demo book,
with NSCC's accounts margined by span2 first: its im is the larger of the filtered historical VaR
and the worst stress loss (checked with numpy), the state stays exact under fills and ticks, what-if
leaves it unchanged, and a bad configuration is refused with the key named."""
import dataclasses
import math

import numpy as np
import pytest
from test_calc_engine import fills, quotes

from calc.config import ConfigError, load_config, parse_config
from calc.engine import MarginEngine
from calc.whatif import what_if
from common.history import load_history
from feedhandlers.refdata.loader import load_refdata


@pytest.fixture(scope="module")
def history():
    return load_history()


@pytest.fixture
def engine(history):
    config = load_config()
    config = dataclasses.replace(config, ccp_models={**config.ccp_models, "NSCC": ["span2", "fhs"]})
    e = MarginEngine(config, history)
    for seq, (table, b) in enumerate(load_refdata(history=history).items(), 1):
        e.apply(table, b, seq)
    return e


def stress_loss(engine, account: str) -> float:
    """The worst loss of the account's positions under span2's scenarios, from the book with numpy."""
    model = engine.models["span2"]
    losses = []
    for name in model.config.stress_scenarios:
        scenario = engine.config.stress[name]
        total = 0.0
        for sym, h in engine.book.holdings[account].items():
            inst = engine.book.instruments[sym]
            rsym = engine.universe.risk_sym.get(sym)
            if rsym not in model.index or not h.qty:
                continue
            shock = scenario.shock_vector([sym], [inst.sector])[0]
            total -= h.qty * engine.book.mark(sym, h) * inst.multiplier * shock
        losses.append(total)
    return max(0.0, *losses)


def test_span2_im_is_the_larger_of_var_and_the_stress_loss(engine):
    rows = {r["model"]: r for r in engine.margin("FUND1")}
    assert list(rows) == ["span2", "fhs"]
    span2, state = engine.models["span2"], engine.account_risk("FUND1").models["span2"]
    market = max(0.0, rows["span2"]["var"])
    stress = stress_loss(engine, "FUND1")
    assert span2.stress_component(state) == pytest.approx(stress, rel=1e-12)
    assert rows["span2"]["im"] == pytest.approx(max(market, stress) + state.addon_total + state.unmodelled_total,
                                                rel=1e-12)
    assert stress > market            # the tech-heavy demo fund: the crash scenario binds
    # a tech-heavy book hedged with a short in the index: the stress loss falls, and so does the im
    engine.apply("fill", fills(["SPY"], ["FUND1"], [-150_000.0], [engine.book.mark("SPY")]), 100)
    (after, _) = engine.margin("FUND1")
    assert stress_loss(engine, "FUND1") < stress and after["im"] < rows["span2"]["im"]


def test_span2_state_stays_exact_under_fills_ticks_and_whatif(engine):
    rng = np.random.default_rng(5)
    syms = ["AAPL", "AMD", "SPY", "NVDA", "XOM"]
    seq = 100
    for _ in range(300):
        seq += 1
        sym = syms[rng.integers(len(syms))]
        mark = engine.book.mark(sym)
        if rng.random() < 0.5:
            engine.apply("fill", fills([sym], [["FUND1", "FUND2"][rng.integers(2)]], [float(rng.integers(-3000, 3000) or 1)],
                                       [mark]), seq)
        else:
            engine.apply("quote", quotes([sym], [mark * math.exp(0.01 * rng.standard_normal())],
                                         [0.5] if rng.random() < 0.2 else None), seq)
    before = engine.margin("FUND1")
    result = what_if(engine, "FUND1", {"sym": ["SPY"], "qty": [-100_000.0]})
    assert engine.margin("FUND1") == before and result["model"] == "span2"
    assert result["after"]["im"] < result["before"]["im"] and "stress" in result
    assert engine.check_drift() == 0.0                  # bit for bit against a full recompute
    assert not [i for i in engine.take_issues() if i.kind == "drift"]


def test_span2_configuration_is_checked():
    base = {"models": {"s2": {"kind": "span2", "stress_scenarios": ["nope"]}}, "engine": {"default_models": ["s2"]},
            "stress": {"crash": {"sector_shocks": {"tech": -0.2}}}}
    with pytest.raises(ConfigError, match=r"models.s2.stress_scenarios: unknown stress scenarios \['nope'\]"):
        parse_config(base)
    with pytest.raises(ConfigError, match="only a span2 model has a stress risk component"):
        parse_config({**base, "models": {"s2": {"kind": "historical", "stress_scenarios": ["crash"]}}})
    ok = parse_config({**base, "models": {"s2": {"kind": "span2", "stress_scenarios": ["crash"]}}})
    assert ok.models["s2"].stress_scenarios == ("crash",)
