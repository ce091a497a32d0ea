"""backtest.reconcile: the CCP file reader, the step expansion, the metrics and lead/lag."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.reconcile import CcpFileError, compare, expand_daily, lead_lag, read_ccp_file, calibrate

ROOT = Path(__file__).resolve().parent.parent
CME = ROOT / "data" / "ccp" / "cme_es_margins.csv"


def test_reads_the_real_cme_file():
    df = read_ccp_file(CME, "ES")
    assert len(df) == 38
    assert (df["product"] == "ES").all()
    assert df["date"].is_monotonic_increasing
    assert df.iloc[0]["date"] == pd.Timestamp("2012-03-26")
    assert df.iloc[0]["initial"] == 4375 and df.iloc[0]["maintenance"] == 3500
    assert (df["initial"] >= df["maintenance"]).all()


def test_product_column_file(tmp_path):
    p = tmp_path / "ccp.csv"
    p.write_text("date,product,initial,maintenance\n2020-01-02,ES,100,90\n2020-01-02,NQ,200,180\n20200110,ES,110,100\n")
    df = read_ccp_file(p)
    assert set(df["product"]) == {"ES", "NQ"}
    assert list(read_ccp_file(p, "ES")["initial"]) == [100, 110]


@pytest.mark.parametrize("body, where", [
    ("date,initial,maintenance\n20200101,100,90\n2020x0102,100,90\n", ":3: field 'date'"),
    ("date,initial,maintenance\n20200101,abc,90\n", ":2: field 'initial'"),
    ("date,initial,maintenance\n20200101,100,-5\n", ":2: field 'maintenance'"),
    ("date,initial,maintenance\n20200101,100\n", ":2: expected 3 fields"),
    ("date,initial,maintenance\n20200105,100,90\n20200101,100,90\n", ":3: field 'date'"),
    ("date,initial\n20200101,100\n", ":1: header has no 'maintenance'"),
    ("", ":1: empty file"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, body, where):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(CcpFileError) as ei:
        read_ccp_file(p, "ES")
    assert str(p) in str(ei.value) and where in str(ei.value)


def test_no_product_anywhere_is_an_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("date,initial,maintenance\n20200101,100,90\n")
    with pytest.raises(CcpFileError, match="product"):
        read_ccp_file(p)


def test_step_series_expanded_daily():
    steps = pd.DataFrame({"date": pd.to_datetime(["2020-01-03", "2020-01-07"]), "product": "ES",
                          "initial": [100.0, 120.0], "maintenance": [90.0, 110.0]})
    days = pd.bdate_range("2020-01-02", "2020-01-09")
    s = expand_daily(steps, days)
    assert math.isnan(s.iloc[0])
    assert list(s.iloc[1:]) == [100, 100, 120, 120, 120]  # Fri 3, Mon 6, Tue 7 (change), 8, 9


def test_metrics_hand_computed():
    idx = pd.bdate_range("2020-01-01", periods=4)
    a = pd.Series([100.0, 100.0, 200.0, 200.0], index=idx)
    p = pd.Series([110.0, 90.0, 220.0, 200.0], index=idx)
    m = compare(p, a, max_lag=1)
    # errors 10, -10, 20, 0; relative 0.1, -0.1, 0.1, 0
    assert m["bias"] == pytest.approx(5.0)
    assert m["bias_pct"] == pytest.approx(2.5)
    assert m["mae"] == pytest.approx(10.0)
    assert m["mape"] == pytest.approx(7.5)
    assert m["corr"] == pytest.approx(np.corrcoef(p, a)[0, 1])
    assert m["n"] == 4


@pytest.mark.parametrize("k", [-7, 0, 3, 12])
def test_lead_lag_finds_a_shift(k):
    rng = np.random.default_rng(1)
    idx = pd.bdate_range("2020-01-01", periods=300)
    a = pd.Series(np.cumsum(rng.normal(size=300)) + 100, index=idx)
    p = a.shift(-k)  # the model moves k days before the CCP when k > 0
    ll = lead_lag(p, a, max_lag=30)
    assert ll["best_lag"] == k
    assert ll["best_corr"] == pytest.approx(1.0)


def test_calibrate_recovers_a_linear_map():
    rng = np.random.default_rng(2)
    idx = pd.bdate_range("2015-01-01", periods=400)
    X = pd.DataFrame({"im": rng.uniform(1000, 5000, 400), "v": rng.uniform(0, 1, 400)}, index=idx)
    y = 500 + 1.5 * X["im"] - 200 * X["v"]
    pred, info = calibrate(X, y, idx[199])
    assert info["train_n"] == 200
    assert info["coef"]["im"] == pytest.approx(1.5)
    np.testing.assert_allclose(pred.to_numpy(), y.to_numpy())


def test_real_es_demo_short_window():
    """The real files end to end: one long ES ~ 500 SPY, CME's actual ES requirement, sane figures."""
    from backtest.reconcile import run
    res = run(CME, "ES", "SPY", 500, ["param", "hist", "fhs"], "2015-06-01", "2016-09-30",
              calibrate_split="2015-12-31", rebalance=5)
    rows = res["rows"]
    for name in ("param", "hist", "fhs", "fhs oos", "fhs+cal oos"):
        m = rows[name]
        assert m["n"] > 50
        assert m["mean_pred"] > 0 and m["mean_actual"] > 0
        for key in ("bias", "bias_pct", "mape", "mae", "rmse"):
            assert math.isfinite(m[key]), (name, key)
        assert -1 <= m["corr"] <= 1
        assert m["best_lag"] is None or -30 <= m["best_lag"] <= 30


def test_cli_bad_file_is_a_clear_error(tmp_path, capsys):
    from backtest.reconcile import main
    p = tmp_path / "bad.csv"
    p.write_text("date,initial,maintenance\n20150101,x,1\n")
    assert main(["--ccp-file", str(p), "--product", "ES", "--models", "param",
                 "--start", "2015-06-01", "--end", "2015-07-31"]) == 2
    assert f"{p}:2: field 'initial'" in capsys.readouterr().err
