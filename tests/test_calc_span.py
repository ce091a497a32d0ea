"""SPAN accounts in the live engine (accounts whose model is `span`, data/span demo file): the
margin row equals calc.span computed from scratch, per fill and per futures price move; what-if
changes nothing; a position SPAN cannot price is charged in full with an alert."""
import math

import numpy as np
import pytest

from calc import span
from calc.config import load_config
from calc.engine import MarginEngine
from calc.whatif import what_if
from common.defaults import REPO_ROOT
from common.history import load_history
from common.schema import load_schemas
from feedhandlers.refdata.csvtable import Errors, read_table, to_batch
from feedhandlers.refdata.loader import load_refdata

T0 = np.datetime64("2026-01-05T14:00:00", "ns")
SPAN_DIR = REPO_ROOT / "data" / "span"


@pytest.fixture(scope="module")
def params():
    return span.load(SPAN_DIR / "demo.pa2")


def span_batches(params):
    schemas = load_schemas()
    errors = Errors()
    now = int(T0.astype(np.int64))
    inst = read_table(SPAN_DIR / "instruments.csv", schemas["instrument"], errors, now)
    acct = read_table(SPAN_DIR / "account.csv", schemas["account"], errors, now)
    pos = read_table(SPAN_DIR / "positions.csv", schemas["position"], errors, now, blank_allowed={"price"})
    assert not errors, list(errors)
    positions = to_batch(pos, schemas["position"])
    positions["price"] = np.array([params.price[params.index[s]] for s in positions["sym"]])
    return [("instrument", to_batch(inst, schemas["instrument"])), ("account", to_batch(acct, schemas["account"])),
            ("position", positions)]


def one(table, **cols):
    out = {"time": np.array([T0])}
    for k, v in cols.items():
        out[k] = np.array([v], dtype=object if isinstance(v, str) else np.float64)
    return out


@pytest.fixture
def engine(params):
    history = load_history()
    e = MarginEngine(load_config(), history)
    batches = list(load_refdata(history=history).items()) + span_batches(params)
    for seq, (table, b) in enumerate(batches, 1):
        e.apply(table, b, seq)
    return e


def span_im(engine, account="FUTS1"):
    fresh = span.load(SPAN_DIR / "demo.pa2")
    for sym, price in engine.book.last.items():          # the same futures prices as the live params
        j = fresh.index.get(sym)
        if j is not None and fresh.kind[j] == span.compiled.FUTURE:
            fresh.reprice(sym, price)
    return span.compute(fresh, engine.book.positions(account)).im


def test_span_account_margin_fill_tick_and_whatif(engine):
    (row,) = engine.margin("FUTS1")
    assert row["model"] == "span" and math.isnan(row["var"]) and math.isnan(row["es"])
    assert row["im"] == pytest.approx(span_im(engine), rel=1e-12)
    assert row["call"] == max(0.0, row["requirement"] - 2_000_000)
    es = engine.book.mark("ESZ26", engine.book.holdings["FUTS1"]["ESZ26"])     # the start-of-day price
    engine.apply("fill", one("fill", sym="ESZ26", account="FUTS1", qty=7.0, price=es, execid="S1", orderid="O",
                             exectype="F", refexecid="", session="S", status="ok"), 100)
    assert engine.margin("FUTS1")[0]["im"] == pytest.approx(span_im(engine), rel=1e-12)
    engine.apply("quote", one("quote", sym="ESZ26", bid=math.nan, ask=math.nan, price=es * 0.97, size=math.nan,
                              vol=math.nan, src="t"), 101)
    (moved,) = engine.margin("FUTS1")
    assert moved["im"] == pytest.approx(span_im(engine), rel=1e-12)
    assert moved["vm"] == pytest.approx((40 + 7) * (0.97 * es - es) * 50)     # 47 long ES at 50 per point
    assert engine.check_drift() < 1e-9

    before = engine.margin("FUTS1")
    result = what_if(engine, "FUTS1", {"sym": ["NQZ26"], "qty": [20.0]})
    assert engine.margin("FUTS1") == before
    assert result["model"] == "span" and "stress" not in result
    assert result["after"]["im"] == pytest.approx(span.compute(
        engine.risk["FUTS1"].models["span"].account.params, {**engine.book.positions("FUTS1"),
                                           "NQZ26": engine.book.positions("FUTS1")["NQZ26"] + 20}).im, rel=1e-12)
    assert result["drivers"]["sym"]
    with pytest.raises(LookupError, match="do not run under model span"):
        engine.stress("FUTS1", "tech_crash")


def test_position_outside_the_span_file_is_charged_in_full(engine):
    engine.margin("FUTS1")
    engine.take_issues()
    im = engine.margin("FUTS1")[0]["im"]
    engine.apply("fill", one("fill", sym="AMD", account="FUTS1", qty=1000.0, price=9.82, execid="S2", orderid="O",
                             exectype="F", refexecid="", session="S", status="ok"), 100)
    assert engine.margin("FUTS1")[0]["im"] == pytest.approx(im + 9820.0)
    (issue,) = engine.take_issues()
    assert issue.account == "FUTS1" and "AMD is not in the SPAN parameters" in issue.text
