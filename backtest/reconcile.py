"""Reconciliation of the twin's margins against a CCP's published requirements (issue 20, part 3).

- `read_ccp_file`: a CCP's requirement file (CSV walk and field checks in common/ccpfile.py, shared
  with the live statements feed) (date, [product|account], initial, maintenance), one file
  per CCP; a bad row is a `CcpFileError` naming the file, the line and the field.
- `expand_daily`: the step series (a requirement stays in force until the next change) on daily dates.
- `compare`: predicted vs actual over the overlap: error, bias (absolute and %), MAPE, correlation of
  levels and of daily changes, and lead/lag (`lead_lag`).
- `calibrate`: a least-squares linear map from the twin's own figures and market features to the CCP's
  level, fitted on a training window and judged out of sample.
The twin's daily margins come from `backtest.margins.daily_margins` (the live calc's model code); this
module holds no margin model of its own.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date

import numpy as np
import pandas as pd

from common.ccpfile import CcpFileError, parse_date, positive_amount, records


_PRODUCT_COLS = ("product", "account")


def read_ccp_file(path, product: str | None = None) -> pd.DataFrame:
    """Read a CCP requirement file -> DataFrame(date, product, initial, maintenance), sorted by product, date.

    Without a product/account column, `product` names the file's single product (required)."""
    path = str(path)
    rows = []
    last: dict[str, date] = {}
    pcol = None
    for line_no, rec in records(path, ("date", "initial", "maintenance"), "date,[product],initial,maintenance"):
        if pcol is None:
            pcol = next((c for c in _PRODUCT_COLS if c in rec), "")
            if not pcol and not product:
                raise CcpFileError(f"{path}:1: no product/account column: give the product as an argument")
        try:
            d = parse_date(rec["date"])
        except ValueError as e:
            raise CcpFileError(f"{path}:{line_no}: field 'date': {e}") from None
        prod = rec[pcol].strip() if pcol else product
        if not prod:
            raise CcpFileError(f"{path}:{line_no}: field {pcol!r}: empty")
        vals = {f: positive_amount(path, line_no, f, rec[f]) for f in ("initial", "maintenance")}
        if prod in last and d <= last[prod]:
            raise CcpFileError(f"{path}:{line_no}: field 'date': {d} not after the previous {prod} row ({last[prod]})")
        last[prod] = d
        rows.append((pd.Timestamp(d), prod, vals["initial"], vals["maintenance"]))
    if not rows:
        raise CcpFileError(f"{path}: no data rows")
    df = pd.DataFrame(rows, columns=["date", "product", "initial", "maintenance"])
    if product and pcol:
        df = df[df["product"] == product]
        if df.empty:
            raise CcpFileError(f"{path}: no rows for product {product!r}")
    return df.sort_values(["product", "date"]).reset_index(drop=True)


def expand_daily(steps: pd.DataFrame, dates, column: str = "initial") -> pd.Series:
    """The step series on `dates`: each date gets the last requirement effective on or before it
    (NaN before the first). `steps` is one product's rows of `read_ccp_file`."""
    s = steps.set_index("date")[column].sort_index()
    idx = pd.DatetimeIndex(pd.to_datetime(dates)).sort_values()
    return s.reindex(s.index.union(idx)).ffill().reindex(idx)


def lead_lag(predicted: pd.Series, actual: pd.Series, max_lag: int = 30) -> dict:
    """Cross-correlation of daily changes: corr(dP[t], dA[t+k]) for k in -max_lag..max_lag.

    k > 0 means the model moves k days before the CCP (the model leads). Returns the curve and the
    best lag (highest correlation; ties go to the smallest |k|)."""
    p = predicted.astype(float).diff()
    a = actual.astype(float).diff()
    curve = {}
    for k in range(-max_lag, max_lag + 1):
        x, y = p, a.shift(-k)
        m = x.notna() & y.notna()
        if m.sum() < 3 or x[m].std() == 0 or y[m].std() == 0:
            curve[k] = float("nan")
        else:
            curve[k] = float(np.corrcoef(x[m], y[m])[0, 1])
    finite = {k: v for k, v in curve.items() if math.isfinite(v)}
    best = max(finite, key=lambda k: (finite[k], -abs(k))) if finite else None
    return {"curve": curve, "best_lag": best, "best_corr": finite.get(best, float("nan")) if best is not None else float("nan")}


def compare(predicted: pd.Series, actual: pd.Series, max_lag: int = 30) -> dict:
    """Predicted vs actual over the dates both have (aligned on the index).

    error = P - A; bias = mean(error); bias_pct = mean(error / A) * 100; mae = mean|error|;
    mape = mean(|error| / A) * 100; rmse; corr = Pearson of levels; corr_changes = Pearson of the
    daily changes; lead/lag from `lead_lag`; ratio = mean(P / A)."""
    df = pd.concat({"p": predicted.astype(float), "a": actual.astype(float)}, axis=1).dropna()
    if len(df) < 2:
        raise ValueError(f"no overlap to compare ({len(df)} common dates)")
    err = df.p - df.a
    rel = err / df.a

    def _corr(x, y):
        m = x.notna() & y.notna()
        if m.sum() < 2 or x[m].std() == 0 or y[m].std() == 0:
            return float("nan")
        return float(np.corrcoef(x[m], y[m])[0, 1])

    ll = lead_lag(df.p, df.a, max_lag)
    return {
        "n": int(len(df)), "start": str(df.index[0].date()), "end": str(df.index[-1].date()),
        "mean_pred": float(df.p.mean()), "mean_actual": float(df.a.mean()),
        "bias": float(err.mean()), "bias_pct": float(rel.mean() * 100),
        "mae": float(err.abs().mean()), "mape": float(rel.abs().mean() * 100),
        "rmse": float(np.sqrt((err ** 2).mean())), "ratio": float((df.p / df.a).mean()),
        "corr": _corr(df.p, df.a), "corr_changes": _corr(df.p.diff(), df.a.diff()),
        "best_lag": ll["best_lag"], "best_lag_corr": ll["best_corr"], "lag_curve": ll["curve"],
    }


# ---------------------------------------------------------------- calibration (the ML pathway)

def features(im: pd.Series, prices: pd.Series, qty: float) -> pd.DataFrame:
    """Features for the calibrated variant: the twin's im, realised vol (20/60 d, annualised) x notional,
    the 20-day return and the notional itself."""
    px = prices.reindex(im.index).astype(float)
    r = np.log(prices.astype(float)).diff()
    notional = px * qty
    return pd.DataFrame({
        "im": im.astype(float),
        "vol20_notional": (r.rolling(20).std() * math.sqrt(252)).reindex(im.index) * notional,
        "vol60_notional": (r.rolling(60).std() * math.sqrt(252)).reindex(im.index) * notional,
        "ret20": prices.astype(float).pct_change(20).reindex(im.index),
        "notional": notional,
    }, index=im.index)


def calibrate(X: pd.DataFrame, y: pd.Series, train_end) -> tuple[pd.Series, dict]:
    """Least-squares linear map X -> y fitted on dates <= train_end; returns the prediction on all
    dates of X and {coef, train_n}. (A plain ordinary least squares with an intercept.)"""
    df = pd.concat([X, y.rename("_y")], axis=1).dropna()
    train = df[df.index <= pd.Timestamp(train_end)]
    if len(train) < X.shape[1] + 2:
        raise ValueError(f"too few training days ({len(train)}) up to {train_end}")
    A = np.column_stack([np.ones(len(train)), train[X.columns].to_numpy()])
    coef, *_ = np.linalg.lstsq(A, train["_y"].to_numpy(), rcond=None)
    Xa = X.dropna()
    pred = pd.Series(np.column_stack([np.ones(len(Xa)), Xa.to_numpy()]) @ coef, index=Xa.index)
    return pred, {"coef": dict(zip(["intercept", *X.columns], map(float, coef))), "train_n": int(len(train))}


# ---------------------------------------------------------------- the demo / CLI

def load_prices(sym: str, history=None) -> pd.Series:
    """The sym's closes from the project's history (common.history, the same data the models see)."""
    from common.history import load_history
    h = history or load_history()
    return pd.Series(h.prices[:, h.syms.index(sym)], index=pd.to_datetime(h.dates), name=sym).dropna()


def _fmt_row(name, m):
    return (f"{name:<14}{m['n']:>6}{m['mean_pred']:>10.0f}{m['mean_actual']:>10.0f}{m['bias']:>10.0f}"
            f"{m['bias_pct']:>8.1f}{m['mape']:>8.1f}{m['corr']:>7.2f}{m['corr_changes']:>7.2f}"
            f"{str(m['best_lag']):>6}{m['best_lag_corr']:>7.2f}")


HEADER = (f"{'model':<14}{'days':>6}{'mean_P':>10}{'mean_A':>10}{'bias':>10}{'bias%':>8}{'MAPE%':>8}"
          f"{'corr':>7}{'corr_d':>7}{'lag':>6}{'lagcor':>7}")


def run(ccp_file, product, sym, qty, models, start, end, calibrate_split=None, history=None, **dm_kw) -> dict:
    from backtest.margins import daily_margins  # the other helper's module: the live calc's model code
    steps = read_ccp_file(ccp_file, product)
    steps = steps[steps["product"] == product]
    out = {"ccp_file": str(ccp_file), "product": product, "sym": sym, "qty": qty, "rows": {}}
    prices = load_prices(sym, history)
    for name in models:
        dm = daily_margins(name, {sym: qty}, start, end, history=history, **dm_kw)
        pred = pd.Series(dm["im"].to_numpy(float), index=pd.to_datetime(dm["date"]))
        actual = expand_daily(steps, pred.index, "initial")
        out["rows"][name] = compare(pred, actual)
        if calibrate_split:
            X = features(pred, prices, qty)
            cal, info = calibrate(X, actual, calibrate_split)
            oos = pred.index > pd.Timestamp(calibrate_split)
            out["rows"][f"{name} oos"] = compare(pred[oos], actual[oos])
            out["rows"][f"{name}+cal oos"] = compare(cal[cal.index > pd.Timestamp(calibrate_split)], actual[oos])
            out["rows"][f"{name}+cal oos"]["calibration"] = info
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backtest.reconcile", description=__doc__.splitlines()[0])
    ap.add_argument("--ccp-file", required=True)
    ap.add_argument("--product", required=True)
    ap.add_argument("--sym", default="SPY")
    ap.add_argument("--qty", type=float, default=500.0)
    ap.add_argument("--models", default="fhs,hist,param")
    ap.add_argument("--start", default="2012-01-01")
    ap.add_argument("--end", default="2018-12-31")
    ap.add_argument("--calibrate", action="store_true", help="fit the calibrated variant up to --train-end")
    ap.add_argument("--train-end", default="2015-12-31")
    ap.add_argument("--rebalance", type=int, default=1, help="rebuild the models every N trading days (1: daily, exact)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    try:
        res = run(a.ccp_file, a.product, a.sym, a.qty, [m for m in a.models.split(",") if m],
                  a.start, a.end, a.train_end if a.calibrate else None, rebalance=a.rebalance)
    except (CcpFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(HEADER)
    for name, m in res["rows"].items():
        print(_fmt_row(name, m))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
