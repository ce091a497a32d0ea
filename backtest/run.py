"""`python -m backtest`: each configured model's daily margin for a portfolio over a date range of the
real history, the realised loss over the model's margin period of risk, and the back-test statistics,
side by side; optionally on Dask (see docs/backtest.md)."""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.margins import BacktestError, check_syms, date_range, margin_rows, model_config
from backtest.report import backtest_report, write_outputs
from backtest.stats import christoffersen, kupiec, traffic_light
from calc.config import load_config
from common.history import load_history

WINDOW = 250            # the Basel window for the "last 250" traffic light


@dataclass(frozen=True)
class Variant:
    """A model as back-tested: the configured model, possibly with overrides (the APC buffer off)."""
    label: str
    model: str
    overrides: tuple = ()           # ((field, value), ...)


def parse_positions(text: str) -> dict[str, float]:
    """"AAPL=1000,SPY=-500" -> {"AAPL": 1000.0, "SPY": -500.0}; BacktestError naming the bad part."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        sym, eq, qty = part.partition("=")
        sym = sym.strip()
        try:
            q = float(qty) if eq and sym else math.nan
        except ValueError:
            q = math.nan
        if not math.isfinite(q):
            raise BacktestError(f"bad position {part!r} (want SYM=QTY, e.g. AAPL=1000)")
        if sym in out:
            raise BacktestError(f"position {sym} given twice")
        out[sym] = q
    if not out:
        raise BacktestError("no positions (want e.g. --positions AAPL=1000,SPY=-500)")
    return out


def read_positions_csv(path: str) -> pd.DataFrame:
    """A CSV with header date,sym,qty: the positions from each date on (carried forward until the next
    date the file gives; a date's rows replace the whole book). BacktestError with file:line on a bad row."""
    rows = []
    try:
        with open(path, newline="") as f:
            r = csv.reader(f)
            header = [h.strip() for h in next(r, [])]
            if header != ["date", "sym", "qty"]:
                raise BacktestError(f"{path}:1: header must be date,sym,qty (got {','.join(header)})")
            for line, row in enumerate(r, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 3:
                    raise BacktestError(f"{path}:{line}: want 3 fields date,sym,qty, got {len(row)}")
                try:
                    d = np.datetime64(row[0].strip(), "D")
                except ValueError:
                    raise BacktestError(f"{path}:{line}: bad date {row[0]!r}") from None
                try:
                    q = float(row[2])
                except ValueError:
                    q = math.nan
                if not math.isfinite(q):
                    raise BacktestError(f"{path}:{line}: bad qty {row[2]!r}")
                if not row[1].strip():
                    raise BacktestError(f"{path}:{line}: empty sym")
                rows.append((d, row[1].strip(), q))
    except OSError as e:
        raise BacktestError(f"cannot read {path}: {e.strerror}") from None
    if not rows:
        raise BacktestError(f"{path}: no positions")
    return pd.DataFrame(rows, columns=["date", "sym", "qty"])


def quantity_matrix(history, idx: np.ndarray, positions) -> tuple[list[str], np.ndarray]:
    """(syms, qty[len(idx), len(syms)]) for fixed positions (a dict) or a date,sym,qty frame."""
    if isinstance(positions, dict):
        syms = list(positions)
        check_syms(history, syms)
        return syms, np.tile(np.array([positions[s] for s in syms], dtype=np.float64), (len(idx), 1))
    syms = list(dict.fromkeys(positions["sym"]))
    check_syms(history, syms)
    dates = history.dates[idx]
    pdates = positions["date"].to_numpy(dtype="datetime64[D]")
    book_dates = np.unique(pdates)
    if book_dates[0] > dates[0]:
        raise BacktestError(f"the positions file starts on {book_dates[0]}, after the back-test's first date {dates[0]}")
    col = {s: j for j, s in enumerate(syms)}
    books = np.zeros((len(book_dates), len(syms)))
    for d, s, q in zip(np.searchsorted(book_dates, pdates).tolist(), positions["sym"], positions["qty"]):
        books[d, col[s]] += q
    which = np.searchsorted(book_dates, dates, side="right") - 1
    return syms, books[which]


def realised_losses(history, syms, idx, qty, horizon: int) -> np.ndarray:
    """Loss of each day's positions from close d to close d+h (trading days): -(q . (P[d+h] - P[d]));
    NaN where d+h is past the history's end."""
    cols = [history.syms.index(s) for s in syms]
    out = np.full(len(idx), np.nan)
    for k, t in enumerate(np.asarray(idx).tolist()):
        if t + horizon < len(history.dates):
            q = qty[k]
            held = q != 0
            dp = history.prices[t + horizon, cols] - history.prices[t, cols]
            if np.all(np.isfinite(dp[held])):
                out[k] = -float(np.dot(q[held], dp[held]))
    return out


def variants(config, models: list[str]) -> list[Variant]:
    """Each named model, and with the APC buffer off as well when the model has one."""
    out = []
    for name in models:
        mc = model_config(config, name)
        out.append(Variant(name, name))
        if getattr(mc, "apc_buffer", 0.0):
            out.append(Variant(f"{name}-noapc", name, (("apc_buffer", 0.0),)))
    return out


def _task(variant: Variant, config, history, syms, idx, qty, rebalance, k0) -> pd.DataFrame:
    mc = model_config(config, variant.model, dict(variant.overrides))
    return margin_rows(mc, config, history, syms, idx, qty, rebalance, k0)


def chunks(n: int, size: int, rebalance: int) -> list[tuple[int, int]]:
    """[(lo, hi)) date chunks, each starting on a multiple of `rebalance` (so chunked = whole run)."""
    size = max(rebalance, size - size % rebalance)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\rbacktest: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} tasks")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def compute(models: list[str], positions, start: str, end: str, *, config=None, history=None, rebalance: int = 1,
            client=None, chunk: int = 250, progress: bool = False) -> dict[str, pd.DataFrame]:
    """{variant label: daily frame (date, im, var, es, value, loss, exception)}. With a dask.distributed
    Client, the (variant x date chunk) tasks run on its cluster; else in this process, chunk by chunk
    (same tasks, identical results). `progress`: a progress bar on stderr (Dask's own on a cluster)."""
    config = config or load_config()
    history = history or load_history()
    if rebalance < 1:
        raise BacktestError("rebalance must be >= 1")
    vs = variants(config, models)
    idx = date_range(history, start, end)
    syms, qty = quantity_matrix(history, idx, positions)
    parts = chunks(len(idx), chunk, rebalance)
    tasks = [(v, lo, hi) for v in vs for lo, hi in parts]
    if client is None:
        results = []
        for v, lo, hi in tasks:
            results.append(_task(v, config, history, syms, idx[lo:hi], qty[lo:hi], rebalance, lo))
            if progress:
                _progress_bar(len(results), len(tasks))
    else:
        h, c = client.scatter([history, config], broadcast=True)
        futures = [client.submit(_task, v, c, h, syms, idx[lo:hi], qty[lo:hi], rebalance, lo, pure=False)
                   for v, lo, hi in tasks]
        if progress:
            from distributed import progress as dask_progress
            dask_progress(futures, notebook=False)
        results = client.gather(futures)
    out = {}
    for v in vs:
        frames = [r for (tv, _, _), r in zip(tasks, results) if tv == v]
        df = pd.concat(frames, ignore_index=True)
        h = model_config(config, v.model).horizon_days
        df["loss"] = realised_losses(history, syms, idx, qty, h)
        df["exception"] = df["loss"] > df["im"]
        out[v.label] = df
    return out


def largest_increase(im: np.ndarray, n: int) -> float:
    """The largest n-day increase of the margin, in % of its level n days before (NaN if too short)."""
    im = np.asarray(im, dtype=np.float64)
    if len(im) <= n:
        return math.nan
    a, b = im[:-n], im[n:]
    ok = a > 0
    return float(np.max(b[ok] / a[ok] - 1.0) * 100.0) if ok.any() else math.nan


def summarise(df: pd.DataFrame, confidence: float, horizon: int) -> dict:
    """The back-test statistics of one variant's daily frame."""
    obs = df[np.isfinite(df["loss"]) & np.isfinite(df["im"])]
    e = obs["exception"].to_numpy(dtype=bool)
    n, x = len(e), int(e.sum())
    s = {"confidence": confidence, "horizon_days": horizon, "days": len(df), "observations": n,
         "no_outcome": len(df) - n, "exceptions": x}
    if n:
        s["coverage"] = 1.0 - x / n
        s["kupiec_lr"], s["kupiec_p"] = kupiec(n, x, confidence)
        s["zone_all"], s["cum_all"] = traffic_light(n, x, confidence)
        last = e[-WINDOW:]
        s["zone_250"], s["cum_250"] = traffic_light(len(last), int(last.sum()), confidence)
        s["exceptions_250"] = int(last.sum())
    if n >= 2:
        s["chr_ind"], s["chr_ind_p"], s["chr_cc"], s["chr_cc_p"] = christoffersen(e, coverage=confidence)
    im = df["im"].to_numpy(dtype=np.float64)
    s["im_mean"] = float(np.mean(im))
    s["peak_to_trough"] = float(im.max() / im.min()) if im.min() > 0 else math.nan
    s["max_incr_5d_pct"] = largest_increase(im, 5)
    s["max_incr_30d_pct"] = largest_increase(im, 30)
    return s


ROWS = [("observations", "{:d}"), ("no_outcome", "{:d}"), ("exceptions", "{:d}"), ("coverage", "{:.4f}"),
        ("kupiec_lr", "{:.3f}"), ("kupiec_p", "{:.4f}"), ("chr_ind", "{:.3f}"), ("chr_ind_p", "{:.4f}"),
        ("chr_cc", "{:.3f}"), ("chr_cc_p", "{:.4f}"), ("exceptions_250", "{:d}"), ("zone_250", "{}"),
        ("cum_250", "{:.4f}"), ("zone_all", "{}"), ("cum_all", "{:.4f}"), ("im_mean", "{:,.0f}"),
        ("peak_to_trough", "{:.2f}"), ("max_incr_5d_pct", "{:.1f}"), ("max_incr_30d_pct", "{:.1f}")]


def table(stats: dict[str, dict]) -> str:
    """The statistics side by side, one column per variant."""
    labels = list(stats)
    lines = [["", *labels]]
    for key, fmt in [("confidence", "{}"), ("horizon_days", "{:d}"), *ROWS]:
        row = [key]
        for lb in labels:
            v = stats[lb].get(key)
            row.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        lines.append(row)
    w = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in lines)


def run(models, positions, start, end, *, config=None, history=None, rebalance=1, client=None, chunk=250,
        progress=False):
    """(daily frames, statistics) per variant."""
    config = config or load_config()
    frames = compute(models, positions, start, end, config=config, history=history, rebalance=rebalance,
                     client=client, chunk=chunk, progress=progress)
    vs = {v.label: v for v in variants(config, models)}
    stats = {}
    for label, df in frames.items():
        mc = model_config(config, vs[label].model)
        stats[label] = summarise(df, mc.confidence, mc.horizon_days)
    return frames, stats


def long_frame(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([df.assign(model=label) for label, df in frames.items()], ignore_index=True)[
        ["date", "model", "im", "var", "es", "value", "loss", "exception"]]


def _client(args):
    if args.scheduler:
        from distributed import Client
        try:
            return Client(args.scheduler, timeout=10), None
        except (OSError, TimeoutError) as e:
            raise BacktestError(f"cannot reach the Dask scheduler {args.scheduler}: {e}") from None
    if args.cluster == "local":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        return Client(cluster), cluster
    return None, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backtest", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--positions", help='fixed positions "SYM=QTY,..." e.g. "AAPL=1000,SPY=-500"')
    g.add_argument("--positions-csv", metavar="FILE", help="positions per date: CSV date,sym,qty")
    ap.add_argument("--start", required=True)
    ap.add_argument("--end", required=True)
    ap.add_argument("--models", default="fhs,hist,param", help="comma-separated [models.*] of config/calc.toml")
    ap.add_argument("--rebalance", type=int, default=1, help="rebuild each model every N trading days (1)")
    ap.add_argument("--chunk", type=int, default=250, help="trading days per task (250)")
    ap.add_argument("--cluster", choices=["none", "local"], default="none",
                    help="local: start a dask.distributed LocalCluster (default: in-process)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers (2)")
    ap.add_argument("--scheduler", metavar="ADDR", help="an existing Dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--config", help="config file (default config/calc.toml)")
    ap.add_argument("--json", metavar="FILE", help="write statistics and daily series as JSON")
    ap.add_argument("--csv", metavar="FILE", help="write the daily series (long: one row per date x model)")
    ap.add_argument("--out", metavar="DIR", help="write daily.parquet, stats.parquet and report.html (charts) there")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="a progress bar on stderr (default: when stderr is a terminal)")
    args = ap.parse_args(argv)
    client = cluster = None
    try:
        positions = parse_positions(args.positions) if args.positions is not None else read_positions_csv(args.positions_csv)
        config = load_config(args.config)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise BacktestError("no models")
        for m in models:
            model_config(config, m)
        history = load_history()
        idx = date_range(history, args.start, args.end)
        first, last = history.dates[idx[0]], history.dates[idx[-1]]
        if np.datetime64(args.start, "D") < history.dates[0] or np.datetime64(args.end, "D") > history.dates[-1]:
            print(f"backtest: note: the history covers {history.dates[0]} to {history.dates[-1]}; "
                  f"back-testing {first} to {last} ({len(idx)} trading dates)", file=sys.stderr)
        if args.chunk < 1:
            raise BacktestError("--chunk must be >= 1")
        client, cluster = _client(args)
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        frames, stats = run(models, positions, args.start, args.end, config=config, history=history,
                            rebalance=args.rebalance, client=client, chunk=args.chunk, progress=progress)
    except BacktestError as e:
        print(f"backtest: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:                                  # config errors and the like: still one line
        print(f"backtest: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    print(table(stats))
    daily = long_frame(frames)
    if args.csv:
        daily.to_csv(args.csv, index=False, date_format="%Y-%m-%d")
    if args.json:
        d = daily.assign(date=daily["date"].dt.strftime("%Y-%m-%d"))
        with open(args.json, "w") as f:
            json.dump({"stats": stats, "daily": json.loads(d.to_json(orient="records"))}, f, indent=1)
    if args.out:
        what = (f"positions {args.positions or args.positions_csv}, {first} to {last} ({len(idx)} trading dates), "
                f"models {', '.join(models)}, rebalanced every {args.rebalance} day(s)")
        for path in write_outputs(args.out, daily, stats, backtest_report(frames, stats, ROWS, what)):
            print(f"backtest: wrote {path}", file=sys.stderr)
    return 0
