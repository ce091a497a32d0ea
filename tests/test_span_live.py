"""calc.span live state: per-fill incremental updates equal a full recomputation, what-if leaves
the account untouched, repricing moves the state like a rebuilt parameter set, attribution adds up."""
from __future__ import annotations

import random

import numpy as np
import pytest

from calc.span import SpanAccount, SpanBook, compile_params, compute
from calc.span.demo import DEMO_POSITIONS, DEMO_PRODUCTS, demo_params
from calc.span.riskarray import compute_risk_arrays


@pytest.fixture(scope="module")
def params():
    return compile_params(demo_params())


def assert_same(a, b):
    assert a.initial == pytest.approx(b.initial, rel=1e-9, abs=1e-6)
    assert a.maintenance == pytest.approx(b.maintenance, rel=1e-9, abs=1e-6)
    assert [x.cc for x in a.by_cc] == [x.cc for x in b.by_cc]
    for x, y in zip(a.by_cc, b.by_cc):
        for name in ("scan", "intra", "spot", "inter", "som", "nov"):
            assert getattr(x, name) == pytest.approx(getattr(y, name), rel=1e-9, abs=1e-6), (x.cc, name)


def test_fills_update_incrementally_like_a_full_computation(params):
    rng = random.Random(7)
    acct = SpanAccount(params, "FUTS1", positions=dict(DEMO_POSITIONS))
    book = dict(DEMO_POSITIONS)
    for _ in range(300):
        sym = rng.choice(params.symbols)
        qty = rng.choice([-5, -2, -1, 1, 3, 10])
        im = acct.fill(sym, qty)
        book[sym] = book.get(sym, 0) + qty
        if book[sym] == 0:
            del book[sym]
    full = compute(params, book)
    assert im == pytest.approx(full.initial, rel=1e-9)
    assert_same(acct.result(), full)
    assert acct.positions() == pytest.approx({s: float(q) for s, q in book.items()})


def test_closing_every_position_leaves_no_requirement(params):
    acct = SpanAccount(params, "A", positions={"ESZ26": 3, "NQZ26C21500": -2})
    acct.fill("ESZ26", -3)
    assert acct.fill("NQZ26C21500", 2) == 0.0
    assert acct.result().by_cc == [] and acct.positions() == {}


def test_whatif_is_a_copy(params):
    acct = SpanAccount(params, "A", positions=dict(DEMO_POSITIONS))
    before_state = acct.state.copy()
    fork = acct.copy()
    fork.fill("NQH27", 10)
    fork.fill("ESZ26C6200", 60)
    assert np.array_equal(acct.state.vec, before_state.vec) and acct.positions() == pytest.approx(dict(DEMO_POSITIONS))
    assert_same(acct.result(), compute(params, DEMO_POSITIONS))
    assert_same(fork.result(), compute(params, list(DEMO_POSITIONS) + [("NQH27", 10), ("ESZ26C6200", 60)]))


def test_attribution_adds_up_to_the_scan_risk(params):
    res = SpanAccount(params, "A", positions=dict(DEMO_POSITIONS)).result()
    for b in res.by_cc:
        assert sum(p.scan for p in res.positions if p.cc == b.cc) == pytest.approx(b.scan)


def test_reprice_matches_a_parameter_set_rebuilt_at_the_new_price():
    book_params = compile_params(demo_params())
    book = SpanBook(book_params)
    a, b = book.account("A"), book.account("B")
    for sym, qty in DEMO_POSITIONS:
        a.fill(sym, qty)
    b.fill("ESZ26C6000", -10)
    book.reprice("ESZ26", 5800.0)

    rebuilt = demo_params()
    for c in rebuilt.contracts:
        if c.symbol == "ESZ26":
            c.price = 5800.0
    compute_risk_arrays(rebuilt)
    fresh = compile_params(rebuilt)
    fresh.option_value[:] = book_params.option_value        # option premia (NOV) stay at settlement intraday
    assert_same(a.result(), compute(fresh, DEMO_POSITIONS))
    assert_same(b.result(), compute(fresh, {"ESZ26C6000": -10}))
    with pytest.raises(ValueError, match="not a futures contract"):
        book.reprice("ESZ26C6000", 1.0)


def test_rebase_on_a_new_parameter_file(params):
    acct = SpanAccount(params, "A", positions=dict(DEMO_POSITIONS))
    wider = demo_params(extreme_multiplier=2.0, covered_fraction=0.35)
    acct.rebase(compile_params(wider))
    assert_same(acct.result(), compute(wider, DEMO_POSITIONS))


def test_bad_fills_are_rejected_and_change_nothing(params):
    acct = SpanAccount(params, "A", positions={"ESZ26": 1})
    im = acct.initial()
    with pytest.raises(KeyError, match="'ZZZ' is not in the SPAN parameter file"):
        acct.fill("ZZZ", 1)
    with pytest.raises(ValueError, match="finite"):
        acct.fill("ESZ26", float("inf"))
    assert acct.positions() == {"ESZ26": 1.0} and acct.initial() == im


def test_rebase_to_a_file_without_a_held_instrument_keeps_the_old_parameters(params):
    acct = SpanAccount(params, "A", positions={"ESZ26": 1, "NQZ26": -1})
    es_only = demo_params(DEMO_PRODUCTS[:1])
    with pytest.raises(KeyError, match="NQZ26"):
        acct.rebase(compile_params(es_only))
    assert acct.params is params and acct.positions() == {"ESZ26": 1.0, "NQZ26": -1.0}


def test_revol_matches_a_parameter_set_rebuilt_at_the_new_volatility():
    book = SpanBook(compile_params(demo_params()))
    acct = book.account("A")
    for sym, qty in DEMO_POSITIONS:
        acct.fill(sym, qty)
    book.revol("ESZ26C6200", 0.30)

    rebuilt = demo_params()
    for c in rebuilt.contracts:
        if c.symbol == "ESZ26C6200":
            c.vol = 0.30
    compute_risk_arrays(rebuilt)
    fresh = compile_params(rebuilt)
    fresh.option_value[:] = book.params.option_value
    assert_same(acct.result(), compute(fresh, DEMO_POSITIONS))
    with pytest.raises(ValueError, match="not an option"):
        book.revol("ESZ26", 0.2)
    with pytest.raises(ValueError, match="must be positive"):
        book.revol("ESZ26C6200", float("nan"))
