"""q-sql (rdb.qsql): a corpus of queries over generated trade / quote / margin tables, each checked
against the same result computed independently with pandas; plus q-style errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.schema import parse_schema
from rdb.qsql.engine import execute
from rdb.qsql.errors import QError
from rdb.store import Store

SCHEMA = """
trade:([]time:`timestamp$();sym:`symbol$();price:`float$();size:`long$();side:`symbol$())
quote:([]time:`timestamp$();sym:`symbol$();bid:`float$();ask:`float$())
margin:([]time:`timestamp$();sym:`symbol$();model:`symbol$();im:`float$();var:`float$();seq:`long$())
"""
SYMS = ["AAPL", "AMD", "GOOG", "META", "SPY"]
T0 = np.datetime64("2018-04-11T09:30", "ns")
HOUR = 3600 * 10**9


def _times(rng, n):
    return T0 + np.sort(rng.integers(0, 6 * HOUR, n)).astype("timedelta64[ns]")


def _strs(rng, choices, n):
    return [str(x) for x in rng.choice(choices, n)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 3000
    trade = {"time": _times(rng, n), "sym": _strs(rng, SYMS, n), "price": rng.uniform(10, 20, n).round(2),
             "size": rng.integers(1, 500, n), "side": _strs(rng, ["B", "S"], n)}
    quote = {"time": _times(rng, 2 * n), "sym": _strs(rng, SYMS, 2 * n), "bid": rng.uniform(10, 20, 2 * n),
             "ask": rng.uniform(10, 20, 2 * n)}
    m = 400
    margin = {"time": _times(rng, m), "sym": _strs(rng, ["FUND1", "FUND2", "FUND3"], m),
              "model": _strs(rng, ["hvar", "pvar"], m), "im": rng.uniform(1e5, 1e6, m), "var": rng.uniform(1e4, 1e5, m),
              "seq": np.arange(m, dtype=np.int64)}
    store = Store(parse_schema(SCHEMA))
    # two appends per table, the second partly out of time order, exercise the store's merge path
    for name, cols in (("trade", trade), ("quote", quote), ("margin", margin)):
        k = len(cols["time"]) * 2 // 3
        store.apply(name, {c: v[:k] for c, v in cols.items()})
        store.apply(name, {c: v[k:] for c, v in cols.items()})
    frames = {name: pd.DataFrame(cols).sort_values("time", kind="stable").reset_index(drop=True)
              for name, cols in (("trade", trade), ("quote", quote), ("margin", margin))}
    return store, frames


def _ts(text):
    return pd.Timestamp(text)


def _grouped(df, keys, **aggs):
    return df.groupby(keys, sort=True).agg(**aggs).reset_index()


def _wavg(df, keys, w, x, name):
    g = df.assign(_p=df[w] * df[x]).groupby(keys, sort=True)
    return (g["_p"].sum() / g[w].sum()).rename(name).reset_index()


def _bucket_minutes(df, minutes):
    mins = (df.time - df.time.dt.normalize()) // pd.Timedelta(minutes=1)
    return mins - mins % minutes


def _aj(left, right):
    l = left.reset_index().sort_values("time", kind="stable")
    r = right.sort_values("time", kind="stable")
    out = pd.merge_asof(l, r, on="time", by="sym", direction="backward", allow_exact_matches=True)
    return out.sort_values("index").drop(columns="index").reset_index(drop=True)


T = "trade"
CORPUS = [
    # ---- where: sym, time, comparisons, like, not, row index
    ("select from trade", lambda d: d[T]),
    ("select from trade where sym=`AMD", lambda d: d[T][d[T].sym == "AMD"]),
    ("select from trade where sym=`NOPE", lambda d: d[T][d[T].sym == "NOPE"]),
    ("select from trade where sym in `AAPL`GOOG", lambda d: d[T][d[T].sym.isin(["AAPL", "GOOG"])]),
    ("select from trade where sym in `SPY", lambda d: d[T][d[T].sym == "SPY"]),
    ("select from trade where sym<>`AMD", lambda d: d[T][d[T].sym != "AMD"]),
    ("select from trade where not sym=`AMD", lambda d: d[T][d[T].sym != "AMD"]),
    ("select from trade where time within 2018.04.11D10:00 2018.04.11D11:00",
     lambda d: d[T][(d[T].time >= _ts("2018-04-11 10:00")) & (d[T].time <= _ts("2018-04-11 11:00"))]),
    ("select from trade where time within (2018.04.11D10:00;2018.04.11D10:30:00.5)",
     lambda d: d[T][(d[T].time >= _ts("2018-04-11 10:00")) & (d[T].time <= _ts("2018-04-11 10:30:00.5"))]),
    ("select from trade where sym=`AMD, time within 2018.04.11D10:00 2018.04.11D12:00",
     lambda d: d[T][(d[T].sym == "AMD") & (d[T].time >= _ts("2018-04-11 10:00")) & (d[T].time <= _ts("2018-04-11 12:00"))]),
    ("select from trade where time>2018.04.11D14:00", lambda d: d[T][d[T].time > _ts("2018-04-11 14:00")]),
    ("select from trade where time>=2018.04.11D14:00, sym=`GOOG",
     lambda d: d[T][(d[T].time >= _ts("2018-04-11 14:00")) & (d[T].sym == "GOOG")]),
    ("select from trade where time<2018.04.11D10:00", lambda d: d[T][d[T].time < _ts("2018-04-11 10:00")]),
    ("select from trade where time<=2018.04.11D10:00, price>15",
     lambda d: d[T][(d[T].time <= _ts("2018-04-11 10:00")) & (d[T].price > 15)]),
    ("select from trade where time>2018.04.11", lambda d: d[T][d[T].time > _ts("2018-04-11")]),
    ("select from trade where time<2018.04.11", lambda d: d[T][d[T].time < _ts("2018-04-11")]),
    ("select from trade where price>19.5", lambda d: d[T][d[T].price > 19.5]),
    ("select from trade where price<10.5, side=`B", lambda d: d[T][(d[T].price < 10.5) & (d[T].side == "B")]),
    ("select from trade where size>=490", lambda d: d[T][d[T]["size"] >= 490]),
    ("select from trade where size=100", lambda d: d[T][d[T]["size"] == 100]),
    ("select from trade where price within 12 12.5", lambda d: d[T][d[T].price.between(12, 12.5)]),
    ("select from trade where size within 10 20, sym=`META",
     lambda d: d[T][d[T]["size"].between(10, 20) & (d[T].sym == "META")]),
    ("select from trade where sym like \"A*\"", lambda d: d[T][d[T].sym.str.startswith("A")]),
    ("select from trade where sym like \"*O*\"", lambda d: d[T][d[T].sym.str.contains("O")]),
    ("select from trade where sym like \"?PY\"", lambda d: d[T][d[T].sym.str.fullmatch(".PY")]),
    ("select from trade where i<5", lambda d: d[T].iloc[:5]),
    ("select from trade where i within 100 110", lambda d: d[T].iloc[100:111]),
    ("select from trade where (price>15)&size>250", lambda d: d[T][(d[T].price > 15) & (d[T]["size"] > 250)]),
    ("select from trade where (price>19)|size>495", lambda d: d[T][(d[T].price > 19) | (d[T]["size"] > 495)]),
    ("select from trade where price>15, price<15.1", lambda d: d[T][(d[T].price > 15) & (d[T].price < 15.1)]),
    ("select from trade where time.minute within 10:00 10:15",
     lambda d: d[T][((d[T].time - d[T].time.dt.normalize()) // pd.Timedelta(minutes=1)).between(600, 615)]),
    ("select from trade where time.date=2018.04.11", lambda d: d[T]),
    ("select from trade where time.hh=13", lambda d: d[T][d[T].time.dt.hour == 13]),
    # ---- column selection and expressions
    ("select sym, price from trade", lambda d: d[T][["sym", "price"]]),
    ("select price, sym from trade where sym=`AAPL", lambda d: d[T][d[T].sym == "AAPL"][["price", "sym"]]),
    ("select time, notional:price*size from trade",
     lambda d: pd.DataFrame({"time": d[T].time, "notional": d[T].price * d[T]["size"]})),
    ("select px:price+1 from trade", lambda d: pd.DataFrame({"px": d[T].price + 1})),
    ("select px:2*price-1 from trade", lambda d: pd.DataFrame({"px": 2 * (d[T].price - 1)})),
    ("select px:price-1*2 from trade", lambda d: pd.DataFrame({"px": d[T].price - 2})),
    ("select r:price%size from trade", lambda d: pd.DataFrame({"r": d[T].price / d[T]["size"]})),
    ("select s:size+size from trade", lambda d: pd.DataFrame({"s": d[T]["size"] * 2})),
    ("select s:size*3 from trade where sym=`SPY", lambda d: pd.DataFrame({"s": d[T][d[T].sym == "SPY"]["size"] * 3})),
    ("select n:neg price from trade", lambda d: pd.DataFrame({"n": -d[T].price})),
    ("select a:abs price-15 from trade", lambda d: pd.DataFrame({"a": (d[T].price - 15).abs()})),
    ("select q:sqrt size from trade", lambda d: pd.DataFrame({"q": np.sqrt(d[T]["size"])})),
    ("select e:exp price%10 from trade", lambda d: pd.DataFrame({"e": np.exp(d[T].price / 10)})),
    ("select l:log price from trade", lambda d: pd.DataFrame({"l": np.log(d[T].price)})),
    ("select big:size>250 from trade", lambda d: pd.DataFrame({"big": d[T]["size"] > 250})),
    ("select spread:ask-bid from quote where sym=`GOOG",
     lambda d: pd.DataFrame({"spread": (d["quote"].ask - d["quote"].bid)[d["quote"].sym == "GOOG"]})),
    ("select mid:0.5*bid+ask from quote", lambda d: pd.DataFrame({"mid": 0.5 * (d["quote"].bid + d["quote"].ask)})),
    ("select m:price&15 from trade", lambda d: pd.DataFrame({"m": np.minimum(d[T].price, 15)})),
    ("select m:price|15 from trade", lambda d: pd.DataFrame({"m": np.maximum(d[T].price, 15)})),
    ("select b:100 xbar size from trade", lambda d: pd.DataFrame({"b": d[T]["size"] - d[T]["size"] % 100})),
    ("select b:0.5 xbar price from trade", lambda d: pd.DataFrame({"b": np.floor(d[T].price / 0.5) * 0.5})),
    ("select hold:price*10, sym from trade where sym in `AMD`META",
     lambda d: d[T][d[T].sym.isin(["AMD", "META"])].assign(hold=lambda x: x.price * 10)[["hold", "sym"]]),
    # ---- aggregates without by
    ("select count i from trade", lambda d: pd.DataFrame({"x": [len(d[T])]})),
    ("select n:count i from trade where sym=`AMD", lambda d: pd.DataFrame({"n": [int((d[T].sym == "AMD").sum())]})),
    ("select sum size from trade", lambda d: pd.DataFrame({"size": [d[T]["size"].sum()]})),
    ("select avg price from trade", lambda d: pd.DataFrame({"price": [d[T].price.mean()]})),
    ("select min price, max price from trade",
     lambda d: pd.DataFrame({"price": [d[T].price.min()], "price1": [d[T].price.max()]})),
    ("select lo:min price, hi:max price, n:count i from trade where sym=`GOOG",
     lambda d: pd.DataFrame({"lo": [d[T][d[T].sym == "GOOG"].price.min()], "hi": [d[T][d[T].sym == "GOOG"].price.max()],
                             "n": [int((d[T].sym == "GOOG").sum())]})),
    ("select first price, last price from trade",
     lambda d: pd.DataFrame({"price": [d[T].price.iloc[0]], "price1": [d[T].price.iloc[-1]]})),
    ("select med price from trade", lambda d: pd.DataFrame({"price": [d[T].price.median()]})),
    ("select dev price from trade", lambda d: pd.DataFrame({"price": [d[T].price.std(ddof=0)]})),
    ("select var price from trade", lambda d: pd.DataFrame({"price": [d[T].price.var(ddof=0)]})),
    ("select vwap:size wavg price from trade",
     lambda d: pd.DataFrame({"vwap": [(d[T].price * d[T]["size"]).sum() / d[T]["size"].sum()]})),
    ("select notional:size wsum price from trade", lambda d: pd.DataFrame({"notional": [(d[T].price * d[T]["size"]).sum()]})),
    ("select vwap:wavg[size;price] from trade where sym=`SPY",
     lambda d: pd.DataFrame({"vwap": [np.average(d[T][d[T].sym == "SPY"].price, weights=d[T][d[T].sym == "SPY"]["size"])]})),
    ("select rng:max[price]-min price from trade", lambda d: pd.DataFrame({"rng": [d[T].price.max() - d[T].price.min()]})),
    ("select mean:sum[price]%count i from trade", lambda d: pd.DataFrame({"mean": [d[T].price.mean()]})),
    ("select last time from trade", lambda d: pd.DataFrame({"time": [d[T].time.iloc[-1]]})),
    ("select first sym from trade", lambda d: pd.DataFrame({"sym": [d[T].sym.iloc[0]]})),
    ("select sym, total:sum size from trade where sym=`AMD",
     lambda d: pd.DataFrame({"sym": d[T][d[T].sym == "AMD"].sym, "total": d[T][d[T].sym == "AMD"]["size"].sum()})),
    # ---- by
    ("select count i by sym from trade", lambda d: _grouped(d[T], "sym", x=("price", "size"))),
    ("select n:count i by sym from trade where price>15", lambda d: _grouped(d[T][d[T].price > 15], "sym", n=("price", "size"))),
    ("select sum size by sym from trade", lambda d: _grouped(d[T], "sym", size=("size", "sum"))),
    ("select total:sum size by side from trade", lambda d: _grouped(d[T], "side", total=("size", "sum"))),
    ("select avg price by sym from trade", lambda d: _grouped(d[T], "sym", price=("price", "mean"))),
    ("select hi:max price, lo:min price by sym from trade",
     lambda d: _grouped(d[T], "sym", hi=("price", "max"), lo=("price", "min"))),
    ("select open:first price, close:last price by sym from trade",
     lambda d: _grouped(d[T], "sym", open=("price", "first"), close=("price", "last"))),
    ("select med price by sym from trade", lambda d: _grouped(d[T], "sym", price=("price", "median"))),
    ("select sd:dev price, v:var price by sym from trade",
     lambda d: _grouped(d[T], "sym", sd=("price", lambda s: s.std(ddof=0)), v=("price", lambda s: s.var(ddof=0)))),
    ("select vwap:size wavg price by sym from trade", lambda d: _wavg(d[T], "sym", "size", "price", "vwap")),
    ("select notional:size wsum price by sym from trade",
     lambda d: d[T].assign(notional=d[T].price * d[T]["size"]).groupby("sym")["notional"].sum().reset_index()),
    ("select count i by sym, side from trade", lambda d: _grouped(d[T], ["sym", "side"], x=("price", "size"))),
    ("select sum size by side, sym from trade", lambda d: _grouped(d[T], ["side", "sym"], size=("size", "sum"))),
    ("select n:count i by sym from trade where sym in `AMD`SPY",
     lambda d: _grouped(d[T][d[T].sym.isin(["AMD", "SPY"])], "sym", n=("price", "size"))),
    ("select rng:max[price]-min price by sym from trade",
     lambda d: d[T].groupby("sym").price.agg(lambda s: s.max() - s.min()).rename("rng").reset_index()),
    ("select by sym from trade", lambda d: d[T].groupby("sym", sort=True).last().reset_index()),
    ("select last price by sym from trade", lambda d: _grouped(d[T], "sym", price=("price", "last"))),
    ("select n:count i by 60 xbar time.minute from trade",
     lambda d: d[T].assign(minute=_bucket_minutes(d[T], 60)).groupby("minute").size().rename("n").reset_index()),
    ("select vwap:size wavg price by 5 xbar time.minute, sym from trade where sym=`AMD",
     lambda d: _wavg(d[T][d[T].sym == "AMD"].assign(minute=_bucket_minutes(d[T][d[T].sym == "AMD"], 5)),
                     ["minute", "sym"], "size", "price", "vwap")),
    ("select vwap:size wavg price by 15 xbar time.minute, sym from trade",
     lambda d: _wavg(d[T].assign(minute=_bucket_minutes(d[T], 15)), ["minute", "sym"], "size", "price", "vwap")),
    ("select sum size by 0D01:00 xbar time from trade",
     lambda d: d[T].assign(time=d[T].time.dt.floor("1h")).groupby("time")["size"].sum().reset_index()),
    ("select hi:max price by 0D00:30 xbar time, sym from trade where sym=`GOOG",
     lambda d: d[T][d[T].sym == "GOOG"].assign(time=lambda x: x.time.dt.floor("30min"))
     .groupby(["time", "sym"]).price.max().rename("hi").reset_index()),
    ("select n:count i by 100 xbar size from trade",
     lambda d: d[T].assign(size=d[T]["size"] - d[T]["size"] % 100).groupby("size").size().rename("n").reset_index()),
    ("select n:count i by bucket:1 xbar price from trade",
     lambda d: d[T].assign(bucket=np.floor(d[T].price)).groupby("bucket").size().rename("n").reset_index()),
    ("select n:count i by time.hh from trade",
     lambda d: d[T].assign(hh=d[T].time.dt.hour).groupby("hh").size().rename("n").reset_index()),
    ("select mid:avg 0.5*bid+ask by sym from quote",
     lambda d: d["quote"].assign(mid=0.5 * (d["quote"].bid + d["quote"].ask)).groupby("sym").mid.mean().reset_index()),
    ("select spread:avg ask-bid by sym from quote where time within 2018.04.11D12:00 2018.04.11D13:00",
     lambda d: d["quote"][(d["quote"].time >= _ts("2018-04-11 12:00")) & (d["quote"].time <= _ts("2018-04-11 13:00"))]
     .assign(spread=lambda x: x.ask - x.bid).groupby("sym").spread.mean().reset_index()),
    ("select big:sum size>250 by sym from trade",
     lambda d: d[T].assign(big=d[T]["size"] > 250).groupby("sym").big.sum().reset_index()),
    # ---- select[n]
    ("select[5] from trade", lambda d: d[T].iloc[:5]),
    ("select[-3] from trade", lambda d: d[T].iloc[-3:]),
    ("select[2] price from trade where sym=`META", lambda d: d[T][d[T].sym == "META"][["price"]].iloc[:2]),
    ("select[-2] sym, price from trade where sym in `AAPL`GOOG",
     lambda d: d[T][d[T].sym.isin(["AAPL", "GOOG"])][["sym", "price"]].iloc[-2:]),
    ("select[2] n:count i by sym from trade", lambda d: _grouped(d[T], "sym", n=("price", "size")).iloc[:2]),
    ("select[10000] from trade where sym=`SPY", lambda d: d[T][d[T].sym == "SPY"]),
    # ---- margin table (account syms, a column named like q's var)
    ("select from margin where sym=`FUND1", lambda d: d["margin"][d["margin"].sym == "FUND1"]),
    ("select var, im from margin where sym=`FUND2, model=`hvar",
     lambda d: d["margin"][(d["margin"].sym == "FUND2") & (d["margin"].model == "hvar")][["var", "im"]]),
    ("select last im by sym, model from margin",
     lambda d: _grouped(d["margin"], ["sym", "model"], im=("im", "last"))),
    ("select peak:max im by sym from margin", lambda d: _grouped(d["margin"], "sym", peak=("im", "max"))),
    ("select ratio:var%im from margin where sym=`FUND3",
     lambda d: pd.DataFrame({"ratio": (d["margin"]["var"] / d["margin"].im)[d["margin"].sym == "FUND3"]})),
    ("select n:count i, s:sum seq by model from margin",
     lambda d: _grouped(d["margin"], "model", n=("im", "size"), s=("seq", "sum"))),
    ("select by sym from margin where model=`pvar",
     lambda d: d["margin"][d["margin"].model == "pvar"].groupby("sym").last().reset_index()),
    # ---- aj
    ("aj[`sym`time; select time, sym, price from trade; quote]",
     lambda d: _aj(d[T][["time", "sym", "price"]], d["quote"])),
    ("aj[`sym`time; select time, sym, price from trade where sym=`AMD; quote]",
     lambda d: _aj(d[T][d[T].sym == "AMD"][["time", "sym", "price"]], d["quote"])),
    ("aj[`sym`time; select time, sym, size from trade where sym in `GOOG`SPY; select time, sym, bid from quote]",
     lambda d: _aj(d[T][d[T].sym.isin(["GOOG", "SPY"])][["time", "sym", "size"]], d["quote"][["time", "sym", "bid"]])),
    ("aj[`sym`time; trade; quote]", lambda d: _aj(d[T], d["quote"])),
    ("select from aj[`sym`time; trade; quote] where sym=`META",
     lambda d: _aj(d[T], d["quote"]).pipe(lambda x: x[x.sym == "META"])),
    ("select spread:avg ask-bid by sym from aj[`sym`time; trade; quote]",
     lambda d: _aj(d[T], d["quote"]).assign(spread=lambda x: x.ask - x.bid).groupby("sym").spread.mean().reset_index()),
    # ---- subqueries
    ("select from (select from trade where sym=`AMD) where price>18",
     lambda d: d[T][(d[T].sym == "AMD") & (d[T].price > 18)]),
    ("select n:count i by side from (select from trade where sym=`GOOG)",
     lambda d: _grouped(d[T][d[T].sym == "GOOG"], "side", n=("price", "size"))),
    ("select max total from (select total:sum size by sym from trade)",
     lambda d: pd.DataFrame({"total": [d[T].groupby("sym")["size"].sum().max()]})),
]

EXEC_CORPUS = [
    ("exec price from trade where sym=`AMD", lambda d: d[T][d[T].sym == "AMD"].price.to_numpy()),
    ("exec sum size from trade", lambda d: d[T]["size"].sum()),
    ("exec avg price from trade where sym=`GOOG", lambda d: d[T][d[T].sym == "GOOG"].price.mean()),
    ("exec count i from trade where side=`S", lambda d: int((d[T].side == "S").sum())),
    ("exec last time from trade", lambda d: d[T].time.iloc[-1].to_datetime64()),
    ("exec distinct_syms:sym from trade where i<3", lambda d: {"distinct_syms": d[T].sym.iloc[:3].to_numpy()}),
    ("exec price, size from trade where sym=`SPY",
     lambda d: {"price": d[T][d[T].sym == "SPY"].price.to_numpy(), "size": d[T][d[T].sym == "SPY"]["size"].to_numpy()}),
    ("exec sum size by sym from trade", lambda d: {"sym": np.array(sorted(SYMS), dtype=object),
                                                  "size": d[T].groupby("sym")["size"].sum().to_numpy()}),
    ("exec sym from trade where price>19.95", lambda d: d[T][d[T].price > 19.95].sym.to_numpy()),
    ("exec 2*price from trade where i<4", lambda d: 2 * d[T].price.iloc[:4].to_numpy()),
    ("exec max im from margin where sym=`FUND1", lambda d: d["margin"][d["margin"].sym == "FUND1"].im.max()),
    ("1+2", lambda d: 3),
    ("2*3+4", lambda d: 14),
    ("10%4", lambda d: 2.5),
]


def _frame(result) -> pd.DataFrame:
    wire = result.to_wire()
    assert wire["kind"] in ("table", "keyed"), wire["kind"]
    cols = {}
    for name in wire["columns"]:
        data, qt = wire["data"][name], wire["types"][name]
        cols[name] = data.astype(np.int64) if qt in ("minute", "second", "time", "int") else data
    return pd.DataFrame(cols)


def _assert_column(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert len(got) == len(want), f"{name}: {len(got)} rows, expected {len(want)}"
    if want.dtype.kind == "f" or got.dtype.kind == "f":
        np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=1e-9, atol=1e-9, err_msg=name)
    elif want.dtype.kind == "M" or got.dtype.kind == "M":
        assert (got.astype("datetime64[ns]") == want.astype("datetime64[ns]")).all(), name
    elif want.dtype.kind == "b" or got.dtype.kind == "b":
        assert (got.astype(bool) == want.astype(bool)).all(), name
    elif want.dtype.kind in "iu" or got.dtype.kind in "iu":
        assert (got.astype(np.int64) == want.astype(np.int64)).all(), name
    else:
        assert list(got) == list(want), name


@pytest.mark.parametrize("query, oracle", CORPUS, ids=[q for q, _ in CORPUS])
def test_select_matches_pandas(data, query, oracle):
    store, frames = data
    got = _frame(execute(store, query))
    want = oracle(frames).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    for name in want.columns:
        _assert_column(name, got[name].to_numpy(), want[name].to_numpy())


@pytest.mark.parametrize("query, oracle", EXEC_CORPUS, ids=[q for q, _ in EXEC_CORPUS])
def test_exec_matches_pandas(data, query, oracle):
    store, frames = data
    wire = execute(store, query).to_wire()
    want = oracle(frames)
    if isinstance(want, dict):
        assert wire["kind"] == "dict" and wire["columns"] == list(want)
        for name, values in want.items():
            _assert_column(name, wire["data"][name], values)
    elif isinstance(want, np.ndarray):
        assert wire["kind"] == "vector"
        _assert_column(query, wire["data"], want)
    else:
        assert wire["kind"] == "atom"
        _assert_column(query, np.array([wire["data"]]), np.array([want]))


def test_corpus_is_large_enough():
    assert len(CORPUS) + len(EXEC_CORPUS) >= 100


def test_result_types_follow_q(data):
    store, _ = data
    wire = execute(store, "select n:count i, s:sum size, a:avg size, m:max price, t:last time "
                          "by 5 xbar time.minute, sym from trade").to_wire()
    assert wire["kind"] == "keyed" and wire["keys"] == ["minute", "sym"]
    assert wire["types"] == {"minute": "minute", "sym": "symbol", "n": "long", "s": "long", "a": "float", "m": "float",
                             "t": "timestamp"}
    assert execute(store, "select d:time.date, b:price>15 from trade").to_wire()["types"] == {"d": "date", "b": "boolean"}


def test_wavg_of_weights_summing_to_zero_divides_as_q():
    store = Store(parse_schema("fill:([]time:`timestamp$();sym:`symbol$();qty:`float$();price:`float$())"))
    store.apply("fill", {"time": T0 + np.arange(6).astype("timedelta64[s]"),
                         "sym": ["NETUP", "NETUP", "FLAT", "FLAT", "OK", "OK"],
                         "qty": np.array([-100.0, 100.0, 100.0, -100.0, 100.0, 300.0]),
                         "price": np.array([10.0, 11.0, 10.0, 10.0, 10.0, 20.0])})
    by_sym = execute(store, "select v:qty wavg price, d:(sum qty*price)%sum qty by sym from fill").to_wire()["data"]
    assert list(by_sym["sym"]) == ["FLAT", "NETUP", "OK"]
    v, d = by_sym["v"], by_sym["d"]
    assert np.isnan(v[0]) and np.isnan(d[0])                     # 0%0: 0n
    assert v[1] == d[1] == np.inf                                # 100%0: 0w
    assert v[2] == d[2] == 17.5
    one = execute(store, "select v:qty wavg price from fill where sym=`NETUP").to_wire()["data"]
    assert list(one["v"]) == [np.inf]


def test_sym_and_time_filters_use_the_index(data, monkeypatch):
    """A sym / time filter gathers only the matching rows: no full-column comparison is evaluated."""
    store, frames = data
    from rdb.qsql import ops
    calls = []
    monkeypatch.setattr(ops, "compare", lambda *a: calls.append(a) or pytest.fail("scanned"))
    got = execute(store, "select from trade where sym=`AMD, time within 2018.04.11D10:00 2018.04.11D11:00")
    assert len(got.columns["price"].data) == len(frames[T][(frames[T].sym == "AMD") & frames[T].time.between(
        _ts("2018-04-11 10:00"), _ts("2018-04-11 11:00"))])
    assert not calls


@pytest.mark.parametrize("query, error", [
    ("select from nosuch", "nosuch"),
    ("select nosuch from trade", "nosuch"),
    ("select from trade where nosuch=1", "nosuch"),
    ("select price+sym from trade", "type"),
    ("select from trade where sym=1", "type"),
    ("select from trade where price", "type"),
    ("select from trade where time>10:00", "type"),
    ("select price by sym from trade", "nyi"),
    ("update price:1 from trade", "nyi"),
    ("delete from trade", "nyi"),
    ("select from trade where price within 1 2 3", "length"),
    ("select[1.5] from trade", "type"),
    ("aj[`sym`time; trade]", "rank"),
    ("aj[`sym`nosuch; trade; quote]", "nosuch"),
    ("select from trade where", "parse"),
    ("select price from", "parse"),
    ("select (price from trade", "parse"),
    ("", "parse"),
    ("select from trade where price>1 2", "length"),
    ("select price from trade where sym=`A`B", "length"),
])
def test_q_style_errors(data, query, error):
    store, _ = data
    with pytest.raises(QError) as e:
        execute(store, query)
    assert str(e.value).startswith(error)
