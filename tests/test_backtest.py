"""backtest: the statistics against published worked examples and hand computations; daily margins by the
live model code; the CLI; the same back-test in process and on a real 2-worker Dask LocalCluster."""
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from backtest import christoffersen, daily_margins, kupiec, traffic_light
from backtest.margins import BacktestError
from backtest.run import compute, main, parse_positions, run
from calc.config import load_config
from calc.margin_model import Positions
from calc.registry import build_model
from calc.state import Instrument
from calc.universe import Universe
from common.history import History, load_history

POS = {"AAPL": 1000.0, "SPY": -500.0}


@pytest.fixture(scope="module")
def history():
    return load_history()


@pytest.fixture(scope="module")
def config():
    return load_config()


# ---- statistics ------------------------------------------------------------------------------------
def test_traffic_light_basel_table():
    """Basel Committee (1996), Table 1, 250 observations at 99%: cumulative probability 89.22% at 4
    exceptions (green), 95.88% at 5 (yellow), 99.97% at 9 (yellow), 99.99% at 10 (red)."""
    for x, zone, cum in [(0, "green", 0.0811), (4, "green", 0.8922), (5, "yellow", 0.9588),
                         (9, "yellow", 0.9997), (10, "red", 0.9999)]:
        z, c = traffic_light(250, x, 0.99)
        assert z == zone, x
        assert round(c, 4) == pytest.approx(cum), x     # the table gives percentages to 2 decimals
    assert traffic_light(250, 4, 0.99)[1] == pytest.approx(sum(math.comb(250, k) * 0.01**k * 0.99**(250 - k)
                                                               for k in range(5)), rel=1e-12)


def test_kupiec_hand_computation():
    """LR = -2 ln[(1-p)^(T-x) p^x] + 2 ln[(1-x/T)^(T-x) (x/T)^x]; 250 obs, 99%, 8 exceptions: 7.7336."""
    t, x, p = 250, 8, 0.01
    hand = -2 * ((t - x) * math.log(1 - p) + x * math.log(p)) + 2 * ((t - x) * math.log(1 - x / t) + x * math.log(x / t))
    lr, pv = kupiec(t, x, 0.99)
    assert lr == pytest.approx(hand, rel=1e-12) and lr == pytest.approx(7.7336, abs=1e-4)
    assert pv == pytest.approx(math.erfc(math.sqrt(lr / 2)), rel=1e-9)     # chi2(1) survival
    lr0, pv0 = kupiec(250, 0, 0.99)                       # no exceptions: LR = -2 T ln(1-p)
    assert lr0 == pytest.approx(-2 * 250 * math.log(0.99)) and 0 < pv0 < 1
    assert kupiec(100, 1, 0.99)[0] == pytest.approx(0.0)  # exactly the expected rate
    with pytest.raises(ValueError):
        kupiec(10, 11, 0.99)


def test_christoffersen_hand_computation():
    """0001110000: transitions n00=5, n01=1, n10=1, n11=2 (9 transitions); pi=3/9, pi01=1/6, pi11=2/3."""
    seq = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    l0 = 6 * math.log(6 / 9) + 3 * math.log(3 / 9)
    l1 = 5 * math.log(5 / 6) + 1 * math.log(1 / 6) + 1 * math.log(1 / 3) + 2 * math.log(2 / 3)
    ind = -2 * l0 + 2 * l1
    lr_ind, p_ind, lr_cc, p_cc = christoffersen(seq, coverage=0.99)
    assert lr_ind == pytest.approx(ind, rel=1e-12) and lr_ind == pytest.approx(2.2314, abs=1e-4)
    assert p_ind == pytest.approx(math.erfc(math.sqrt(ind / 2)), rel=1e-9)
    assert lr_cc == pytest.approx(ind + kupiec(10, 3, 0.99)[0], rel=1e-12)
    assert p_cc == pytest.approx(math.exp(-lr_cc / 2), rel=1e-9)            # chi2(2) survival
    # no clustering possible: alternating -> independence not rejected toward clustering, all zeros -> 0
    assert christoffersen([False] * 20)[0] == 0.0
    assert christoffersen([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])[0] == pytest.approx(0.0, abs=1e-12)


# ---- margins ---------------------------------------------------------------------------------------
def test_daily_margins_equal_a_model_built_by_hand(history, config):
    df = daily_margins("param", POS, "2016-03-01", "2016-03-04", config=config, history=history)
    assert list(df.columns) == ["date", "im", "var", "es", "value"] and len(df) == 4
    t = int(np.flatnonzero(history.dates == np.datetime64("2016-03-03"))[0])
    sliced = History(history.dates[:t + 1], history.syms, history.prices[:t + 1])
    u = Universe(history.syms)
    for s in history.syms:
        u.map(s, s)
    model = build_model(config.models["param"], sliced, u, config)
    px = np.array([history.column(s)[t] for s in POS])
    q = np.array(list(POS.values()))
    m = model.measure(model.build("x", Positions(list(POS), q, q * px, [Instrument(s) for s in POS]))[0])
    row = df[df["date"] == "2016-03-03"].iloc[0]
    assert (row["im"], row["var"], row["es"]) == (m.im, m.var, m.es)
    assert row["value"] == pytest.approx(float(q @ px))
    # APC buffer off: the fhs model's margin drops by its buffer's share
    on = daily_margins("fhs", POS, "2016-03-01", "2016-03-02", config=config, history=history)
    off = daily_margins("fhs", POS, "2016-03-01", "2016-03-02", config=config, history=history,
                        overrides={"apc_buffer": 0.0})
    assert (on["im"] > off["im"]).all()
    # rebalance=2 rebuilds on days 0, 2: day 0 and 2 equal the daily rebuild
    r2 = daily_margins("param", POS, "2016-03-01", "2016-03-04", config=config, history=history, rebalance=2)
    assert r2["im"].iloc[0] == df["im"].iloc[0] and r2["im"].iloc[2] == df["im"].iloc[2]


def test_bad_input(history, config):
    with pytest.raises(BacktestError, match="no price history for NOPE"):
        daily_margins("hist", {"NOPE": 1}, "2016-01-01", "2016-02-01", config=config, history=history)
    with pytest.raises(BacktestError, match="unknown model 'zzz'"):
        daily_margins("zzz", POS, "2016-01-01", "2016-02-01", config=config, history=history)
    with pytest.raises(BacktestError, match="after end"):
        daily_margins("hist", POS, "2016-02-01", "2016-01-01", config=config, history=history)
    with pytest.raises(BacktestError, match="no trading dates"):
        daily_margins("hist", POS, "2016-01-02", "2016-01-03", config=config, history=history)   # a weekend
    for bad in ["AAPL", "AAPL=x", "=5", "AAPL=1,AAPL=2", "", "AAPL=nan"]:
        with pytest.raises(BacktestError):
            parse_positions(bad)
    assert parse_positions(" AAPL=1000, SPY=-500 ") == POS


@pytest.mark.parametrize("argv, msg", [
    (["--positions", "NOPE=1"], "no price history for NOPE"),
    (["--positions", "AAPL=1", "--models", "zzz"], "unknown model"),
    (["--positions", "AAPL=1", "--start", "2016-02-01", "--end", "2016-01-01"], "after end"),
    (["--positions", "AAPL=1", "--start", "2016-01-02", "--end", "2016-01-03"], "no trading dates"),
    (["--positions", "AAPL=lots"], "bad position"),
])
def test_cli_bad_input_exit_2(argv, msg, capsys):
    base = {"--start": "2016-01-04", "--end": "2016-01-08"}
    args = list(argv)
    for k, v in base.items():
        if k not in args:
            args += [k, v]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and err.startswith("backtest: error:")


def test_positions_csv(tmp_path, history, config):
    p = tmp_path / "pos.csv"
    p.write_text("date,sym,qty\n2016-03-01,AAPL,1000\n2016-03-01,SPY,-500\n2016-03-03,AAPL,2000\n")
    from backtest.run import read_positions_csv
    frames, _ = run(["param"], read_positions_csv(str(p)), "2016-03-01", "2016-03-04", config=config, history=history)
    df = frames["param"]
    fixed = daily_margins("param", POS, "2016-03-01", "2016-03-02", config=config, history=history)
    assert list(df["im"][:2]) == list(fixed["im"])
    later = daily_margins("param", {"AAPL": 2000.0}, "2016-03-03", "2016-03-04", config=config, history=history)
    assert list(df["im"][2:]) == list(later["im"])
    bad = tmp_path / "bad.csv"
    bad.write_text("date,sym,qty\n2016-03-01,AAPL,1000\n2016-03-01,SPY,many\n")
    with pytest.raises(BacktestError, match=r"bad.csv:3: bad qty"):
        read_positions_csv(str(bad))


# ---- a short real period, in process and on Dask -----------------------------------------------------
def test_short_real_period_and_dask_equal(history, config):
    from distributed import Client, LocalCluster
    args = (["fhs", "hist", "param"], POS, "2017-01-03", "2017-03-31")
    kw = dict(config=config, history=history, chunk=20)
    local = compute(*args, **kw)
    assert set(local) == {"fhs", "fhs-noapc", "hist", "param"}
    df = local["hist"]
    assert len(df) == int(np.sum((history.dates >= np.datetime64("2017-01-03"))
                                 & (history.dates <= np.datetime64("2017-03-31"))))
    # realised loss over the 2-day horizon, by hand for the first day
    t = int(np.flatnonzero(history.dates == np.datetime64("2017-01-03"))[0])
    dp = {s: history.column(s)[t + 2] - history.column(s)[t] for s in POS}
    assert df["loss"].iloc[0] == pytest.approx(-(1000 * dp["AAPL"] - 500 * dp["SPY"]))
    assert (df["exception"] == (df["loss"] > df["im"])).all()
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            remote = compute(*args, client=client, **kw)
        for label in local:
            assert local[label].equals(remote[label]), (workers, label)


def test_cli_runs(tmp_path):
    out = tmp_path / "d.csv"
    r = subprocess.run([sys.executable, "-m", "backtest", "--positions", "AAPL=1000,SPY=-500", "--start", "2017-01-03",
                        "--end", "2017-01-31", "--models", "hist", "--csv", str(out), "--json", str(tmp_path / "d.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "kupiec_lr" in r.stdout and "zone_250" in r.stdout
    assert out.read_text().splitlines()[0] == "date,model,im,var,es,value,loss,exception"


def test_cli_out_writes_parquet_for_duckdb_and_a_self_contained_report(tmp_path):
    import duckdb
    import pandas as pd
    folder = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "backtest", "--positions", "AAPL=1000,SPY=-500", "--start", "2017-01-03",
                        "--end", "2017-03-31", "--models", "hist,fhs", "--csv", str(tmp_path / "d.csv"),
                        "--out", str(folder), "--progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tasks" in r.stderr and "report.html" in r.stderr                 # the progress bar, the files
    daily = duckdb.sql(f"select * from '{folder / 'daily.parquet'}' order by model, date").df()
    csv = pd.read_csv(tmp_path / "d.csv").sort_values(["model", "date"], kind="stable").reset_index(drop=True)
    assert list(daily["model"].unique()) == ["fhs", "fhs-noapc", "hist"]
    assert np.allclose(daily["im"].to_numpy(), csv["im"].to_numpy(), rtol=1e-12)
    assert (daily["exception"].to_numpy() == csv["exception"].to_numpy()).all()
    stats = pd.read_parquet(folder / "stats.parquet").set_index("model")
    assert stats.loc["hist", "exceptions"] == int(csv[csv["model"] == "hist"]["exception"].sum())
    report = (folder / "report.html").read_text()
    assert "uPlot" in report and report.count("new uPlot(") == 3             # a chart per model variant
    assert "zone_250" in report and not re.search(r"(src|href)=.?https?:", report)   # nothing to fetch: opens offline


def test_cli_unreachable_scheduler(capsys):
    assert main(["--positions", "AAPL=1", "--start", "2016-01-04", "--end", "2016-01-08", "--models", "hist",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("backtest: error:") and "127.0.0.1:9" in err and "\n" not in err


def test_synthetic_normal_returns_exception_rate_near_one_percent(config):
    """IID normal daily returns: each model's 99% 2-day margin is exceeded on about 1% of days."""
    rng = np.random.default_rng(20)
    n = 6000
    dates = np.datetime64("2000-01-03") + np.arange(n).astype("timedelta64[D]")
    h = History(dates, ["SYN"], 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))[:, None])
    _, stats = run(["hist", "param"], {"SYN": 100.0}, str(dates[600]), str(dates[-1]), config=config,
                   history=h, rebalance=25)
    for label in ("hist", "param"):
        s = stats[label]
        assert s["observations"] == n - 600 - 2
        assert 0.985 < s["coverage"] < 0.995, (label, s["coverage"])
        assert s["kupiec_p"] > 0.01, (label, s)
