"""calc state and margin by hand: positions from start-of-day rows plus fills (with a cancel
reversal), marks, vm since the last settlement, collateral movements, requirement and call, and a
parametric margin checked to the dollar; configuration errors."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from calc.config import ConfigError, parse_config
from calc.engine import MarginEngine
from calc.universe import Universe
from calc.var_model import VarModel
from calc.exact import ExactSum
from calc.state import AccountRisk, Exposure, Overlay
from common.history import History

Z99 = NormalDist().inv_cdf(0.99)
T0 = np.datetime64("2026-01-05T14:00:00", "ns")
# daily covariance: vol 2% and 3%, covariance 0.0001 (correlation 1/6)
COV = np.array([[0.0004, 0.0001], [0.0001, 0.0009]])


def config(**model):
    return parse_config({"models": {"param": {"kind": "parametric", "confidence": 0.99, "horizon_days": 1, **model}},
                         "engine": {"default_models": ["param"]}})


def engine(**model) -> MarginEngine:
    cfg = config(**model)
    history = History(np.array(["2026-01-02"], dtype="datetime64[D]"), ["AAA", "BBB"], np.array([[50.0, 20.0]]))
    universe = Universe(history.syms)
    return MarginEngine(cfg, history, models={"param": VarModel(cfg.models["param"], ["AAA", "BBB"], COV, universe)},
                        universe=universe)


def batch(**cols):
    n = len(next(iter(cols.values())))
    out = {"time": np.array([T0] * n)}
    for k, v in cols.items():
        out[k] = np.array(v, dtype=object if isinstance(v[0], str) else np.float64)
    return out


def refdata(e: MarginEngine, collateral=1000.0):
    e.apply("instrument", batch(sym=["AAA", "BBB", "FUT"], assetclass=["equity", "equity", "future"],
                                ccy=["USD"] * 3, multiplier=[1.0, 1.0, 10.0], sector=["tech", "tech", "index"],
                                ccp=["X"] * 3, model=["var"] * 3, underlying=["", "", "BBB"],
                                expiry=[np.datetime64("NaT")] * 3, strike=[math.nan] * 3, putcall=["", "", ""],
                                adv=[math.nan] * 3), 1)
    e.apply("account", batch(sym=["ACC"], desk=["D"], ccp=["X"], model=["var"], ccy=["USD"], collateral=[collateral],
                             buffer=[5000.0], threshold=[1e9], callpct=[0.5], imjump=[0.25], imjumpmins=[15.0]), 2)


def fill(e, seq, sym, qty, price, execid, account="ACC"):
    e.apply("fill", batch(sym=[sym], account=[account], qty=[qty], price=[price], execid=[execid], orderid=["O"],
                          exectype=["F"], refexecid=[""], session=["S"], status=["ok"]), seq)


def quote(e, seq, sym, price, vol=math.nan):
    e.apply("quote", batch(sym=[sym], bid=[math.nan], ask=[math.nan], price=[price], size=[math.nan], vol=[vol],
                           src=["t"]), seq)


def test_positions_vm_collateral_and_call_by_hand():
    e = engine()
    refdata(e)
    e.apply("position", batch(sym=["AAA"], account=["ACC"], qty=[100.0], price=[50.0]), 3)
    quote(e, 4, "AAA", 52.0)
    (row,) = e.margin("ACC")
    assert row["vm"] == pytest.approx(100 * (52 - 50))                          # 200
    fill(e, 5, "AAA", 50.0, 53.0, "E1")                                         # buy 50 @ 53, marked at 52
    assert e.margin("ACC")[0]["vm"] == pytest.approx(200 + 50 * (52 - 53))      # 150
    fill(e, 6, "AAA", -50.0, 53.0, "E1-cancel")                                  # the cancel's reversal row
    assert e.book.positions("ACC") == {"AAA": 100.0}
    assert e.margin("ACC")[0]["vm"] == pytest.approx(200)
    e.apply("settle", batch(sym=["AAA"], price=[51.0], date=[np.datetime64("2026-01-05")]), 7)
    assert e.margin("ACC")[0]["vm"] == pytest.approx(100 * (52 - 51))           # vm restarts at the settlement
    quote(e, 8, "AAA", 50.0)
    e.apply("collateral", batch(sym=["ACC"], amount=[-900.0], kind=["cash"], ref=["W1"]), 9)
    (row,) = e.margin("ACC")
    im = Z99 * 100 * 50.0 * 0.02                                                 # one position: z * |v| * vol
    assert row["vm"] == pytest.approx(-100.0)                                   # a loss of 100 is owed
    assert row["im"] == pytest.approx(im, rel=1e-12)
    assert row["requirement"] == pytest.approx(im + 100.0)
    assert row["collateral"] == 100.0                                           # 1,000 posted - 900 withdrawn
    assert row["excess"] == pytest.approx(100.0 - (im + 100.0))
    assert round(row["call"], 2) == 232.63                                      # 232.63 + 100 owed - 100
    assert e.seq == 9 and e.time_ns == int(T0.astype(np.int64))


def test_parametric_margin_to_the_dollar_with_a_future_on_an_underlying():
    # v = (1,000,000 in AAA, 2,000,000 in BBB: 1,000,000 in stock + a future: 2,000 lots x 50 x 10)
    # v'Cv = 1e12*0.0004 + 4e12*0.0009 + 2*2e12*0.0001 = 4.4e9; sd = 66,332.50; VaR = 2.326348 * sd = 154,312.4
    e = engine()
    refdata(e, collateral=100_000.0)
    e.apply("position", batch(sym=["AAA", "BBB", "FUT"], account=["ACC"] * 3, qty=[20_000.0, 50_000.0, 2_000.0],
                              price=[50.0, 20.0, 50.0]), 3)
    (row,) = e.margin("ACC")
    assert round(row["var"]) == round(Z99 * math.sqrt(4.4e9)) == 154_312
    assert row["im"] == row["var"] and row["vm"] == 0.0
    assert round(row["call"]) == 154_312 - 100_000
    drivers = dict(e.drivers("ACC"))
    assert sum(drivers.values()) == pytest.approx(row["im"], rel=1e-12)
    # Euler: BBB and FUT share the BBB column's contribution in proportion to their values
    assert drivers["FUT"] == pytest.approx(drivers["BBB"], rel=1e-12)
    # 10-day horizon, ES measure and the EMIR buffer: im = es * sqrt(10)-scaled * 1.25
    e2 = engine(horizon_days=10, measure="es", apc_buffer=0.25)
    refdata(e2, collateral=100_000.0)
    e2.apply("position", batch(sym=["AAA", "BBB", "FUT"], account=["ACC"] * 3, qty=[20_000.0, 50_000.0, 2_000.0],
                               price=[50.0, 20.0, 50.0]), 3)
    (row2,) = e2.margin("ACC")
    es = math.sqrt(4.4e9 * 10) * NormalDist().pdf(Z99) / 0.01
    assert row2["es"] == pytest.approx(es, rel=1e-12)
    assert row2["im"] == pytest.approx(1.25 * es, rel=1e-12)


def test_intraday_vol_rescales_the_instrument():
    e = engine()
    refdata(e)
    e.apply("position", batch(sym=["AAA"], account=["ACC"], qty=[100.0], price=[50.0]), 3)
    base = e.margin("ACC")[0]["var"]
    model_vol = 0.02 * math.sqrt(252)
    quote(e, 4, "AAA", 50.0, vol=2 * model_vol)                  # vol doubles -> VaR doubles
    assert e.margin("ACC")[0]["var"] == pytest.approx(2 * base, rel=1e-12)
    quote(e, 5, "AAA", 50.0, vol=0.5 * model_vol)                # below the model vol: floored at 1
    assert e.margin("ACC")[0]["var"] == pytest.approx(base, rel=1e-12)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="models.m.kind"):
        parse_config({"models": {"m": {"kind": "magic"}}})
    with pytest.raises(ConfigError, match="ccp.LCH.models"):
        parse_config({"models": {"m": {"kind": "historical"}}, "ccp": {"LCH": {"models": ["nope"]}}})
    with pytest.raises(ConfigError, match="apc_buffer"):
        parse_config({"models": {"m": {"kind": "historical", "apc_buffer": 0.1}}})
    with pytest.raises(ConfigError, match="stress.s"):
        parse_config({"models": {"m": {"kind": "historical"}}, "stress": {"s": {"sector_shocks": {"tech": -2.0}}}})
    with pytest.raises(ConfigError, match="confidence"):
        parse_config({"models": {"m": {"kind": "historical", "confidence": "high"}}})


def test_overlay_is_a_copy_on_write_view_that_never_changes_its_base():
    base = {"A": 1.0, "B": 2.0, "C": 3.0}
    view = Overlay(base)
    view["A"] = 10.0
    view["D"] = 4.0
    del view["B"]
    assert view.pop("C", None) == 3.0 and view.pop("C", None) is None and view.pop("Z", 7) == 7
    assert base == {"A": 1.0, "B": 2.0, "C": 3.0}
    assert dict(view) == {"A": 10.0, "D": 4.0} and len(view) == 2
    assert view.get("B") is None and view.get("B", 0.0) == 0.0 and "B" not in view
    with pytest.raises(KeyError):
        view["B"]
    with pytest.raises(KeyError):
        del view["B"]
    view["B"] = 5.0                                     # re-added after a deletion
    assert view["B"] == 5.0 and sorted(view.items()) == [("A", 10.0), ("B", 5.0), ("D", 4.0)]
    assert view and not Overlay({}) and Overlay({"A": 1.0})
    emptied = Overlay({"A": 1.0})
    emptied["D"] = 4.0
    del emptied["D"]                                    # a key of the view only, then gone
    assert emptied and list(emptied.items()) == [("A", 1.0)]
    del emptied["A"]
    assert not emptied and list(emptied.items()) == [] and len(emptied) == 0


def test_a_forked_account_risk_changes_without_touching_the_original():
    live = AccountRisk({"m": Exposure(np.array([1.0, 2.0]), pnl=np.array([3.0, 4.0]), parts={"X": 1.0})},
                       vm_parts={"X": 5.0}, vm_sum=ExactSum(5.0))
    fork = live.fork()
    e = fork.models["m"]
    e.values[0] += 1.0
    assert e.pnl is live.models["m"].pnl and e.pending_rows == [] and live.models["m"].pending_rows is None
    e.pending_rows.append(1)                            # a fork's P&L changes wait for the kernels
    e.pending_olds.append(2.0)
    e.pending_news.append(-2.0)
    assert fork.fork().models["m"].pending_rows == [1] and live.models["m"].pending_rows is None
    e.parts["Y"] = 2.0
    fork.vm_parts["X"] = 0.0
    assert live.models["m"].values.tolist() == [1.0, 2.0] and live.models["m"].pnl.tolist() == [3.0, 4.0]
    assert live.models["m"].parts == {"X": 1.0} and live.vm_parts == {"X": 5.0}
    assert dict(e.parts) == {"X": 1.0, "Y": 2.0} and dict(fork.vm_parts) == {"X": 0.0}
