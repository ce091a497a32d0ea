"""Back-test outputs for people and for tools: the daily series and the statistics as Parquet (read
them with DuckDB or pandas), and one self-contained HTML report with its charts drawn by uPlot, the
library the dashboard uses, inlined from gateway/static/vendor (the file opens offline, anywhere).

`chart` and `page` are the building blocks; `backtest_report` puts together the back-test's page:
per model, the margin against the realised loss with the exceptions marked, and the statistics with
each Basel traffic-light zone coloured.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

VENDOR = Path(__file__).resolve().parent.parent / "gateway" / "static" / "vendor" / "uplot-1.6.32"
ZONE_COLOURS = {"green": "#2e7d32", "yellow": "#b58900", "red": "#c62828"}
_STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.zone{color:#fff;font-weight:600}.note{color:#666}"""


def _number(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def chart(div_id: str, title: str, dates, series: list[dict]) -> str:
    """A uPlot time-series chart: `dates` (datetime64 or strings) on x, each series a dict with
    `label`, `values` and optional `stroke`, `points_only` (markers without a line, e.g. exceptions)."""
    x = pd.DatetimeIndex(np.asarray(dates)).as_unit("s").asi8.tolist()
    data = [x] + [[_number(float(v)) for v in s["values"]] for s in series]
    opts = [{"label": s["label"], "stroke": s.get("stroke", "#1565c0"), "width": 0 if s.get("points_only") else 1.5,
             "points": {"show": True, "size": 6, "fill": s.get("stroke", "#c62828")} if s.get("points_only")
             else {"show": False}} for s in series]
    return (f'<h3>{html.escape(title)}</h3><div id="{div_id}"></div><script>new uPlot({{width: 1100, height: 320, '
            f'series: [{{}}, ...{json.dumps(opts)}], axes: [{{}}, {{size: 90}}]}}, {json.dumps(data)}, '
            f'document.getElementById("{div_id}"));</script>')


def page(title: str, body: str) -> str:
    """A whole HTML document with uPlot inlined."""
    script = (VENDOR / "uPlot.iife.min.js").read_text()
    css = (VENDOR / "uPlot.min.css").read_text()
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{css}\n{_STYLE}</style><script>{script}</script></head><body><h1>{html.escape(title)}</h1>'
            f'{body}</body></html>')


def stats_table(stats: dict[str, dict], rows: list[tuple[str, str]]) -> str:
    """The statistics side by side (one column per model); zones coloured."""
    labels = list(stats)
    out = ["<table><tr><th></th>" + "".join(f"<th>{html.escape(lb)}</th>" for lb in labels) + "</tr>"]
    for key, fmt in rows:
        cells = []
        for lb in labels:
            v = stats[lb].get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("<td>-</td>")
            elif key.startswith("zone"):
                cells.append(f'<td class="zone" style="background:{ZONE_COLOURS.get(v, "#666")}">{html.escape(v)}</td>')
            else:
                cells.append(f"<td>{html.escape(fmt.format(v))}</td>")
        out.append(f"<tr><td>{html.escape(key)}</td>{''.join(cells)}</tr>")
    return "".join(out) + "</table>"


def backtest_report(frames: dict[str, pd.DataFrame], stats: dict[str, dict], rows, description: str) -> str:
    body = [f'<p class="note">{html.escape(description)}</p>', "<h2>Statistics</h2>", stats_table(stats, rows)]
    for i, (label, df) in enumerate(frames.items()):
        exceptions = np.where(df["exception"].to_numpy(dtype=bool), df["loss"].to_numpy(dtype=np.float64), np.nan)
        body.append(f"<h2>{html.escape(label)}</h2>")
        body.append(chart(f"model{i}", f"{label}: margin and the realised loss over its horizon; exceptions: {int(stats[label].get('exceptions', 0))}",
                          df["date"], [{"label": "margin (im)", "values": df["im"], "stroke": "#1565c0"},
                                       {"label": "realised loss", "values": df["loss"], "stroke": "#9e9e9e"},
                                       {"label": "exception", "values": exceptions, "stroke": "#c62828", "points_only": True}]))
    return page("margintick back-test", "".join(body))


def write_outputs(folder: str | Path, daily: pd.DataFrame, stats: dict[str, dict], report_html: str) -> list[Path]:
    """daily.parquet (one row per date x model), stats.parquet (one row per model) and report.html."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "daily.parquet", folder / "stats.parquet", folder / "report.html"]
    daily.to_parquet(paths[0], index=False)
    pd.DataFrame([{"model": label, **s} for label, s in stats.items()]).to_parquet(paths[1], index=False)
    paths[2].write_text(report_html)
    return paths
