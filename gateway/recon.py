"""The gateway's `recon[account; n]`: picks an account's last n official CCP figures out of its `recon`
rows (q/schema.q) and measures the prediction's accuracy over them, per model.

A figure is one (ccpseq, ccp, kind, cutoff); its rows are one per model. Accuracy per model over the
rows with a prediction: n (figures), mae = mean |diff|, mape = mean |pct|, bias_pct = mean pct,
missing = figures without a prediction (docs/gateway.md, "recon").
"""
from __future__ import annotations

import numpy as np

RECON_N = 20                  # figures by default
MAX_RECON_N = 10_000


def last_figures(rows: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The rows (time-ordered, as the rdb keeps them; text columns as lists or arrays) of the last n
    distinct figures, every column a numpy array."""
    rows = {c: np.array(v, dtype=object) if isinstance(v, list) else v for c, v in rows.items()}
    keys = list(zip(rows["ccpseq"].tolist(), rows["ccp"].tolist(), rows["kind"].tolist(),
                    rows["cutoff"].view(np.int64).tolist()))
    keep = set(list(dict.fromkeys(reversed(keys)))[:n])
    mask = np.array([k in keep for k in keys], dtype=bool)
    return {c: np.asarray(v)[mask] for c, v in rows.items()}


def accuracy(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per model (sorted): n, mae, mape, bias_pct, missing."""
    models = sorted(set(rows["model"].tolist()))
    out = {"model": [], "n": [], "mae": [], "mape": [], "bias_pct": [], "missing": []}
    for model in models:
        m = rows["model"] == model
        diff, pct = rows["diff"][m].astype(float), rows["pct"][m].astype(float)
        ok = np.isfinite(pct)
        out["model"].append(model)
        out["n"].append(int(ok.sum()))
        out["missing"].append(int((~ok).sum()))
        out["mae"].append(float(np.abs(diff[ok]).mean()) if ok.any() else np.nan)
        out["mape"].append(float(np.abs(pct[ok]).mean()) if ok.any() else np.nan)
        out["bias_pct"].append(float(pct[ok].mean()) if ok.any() else np.nan)
    return {"model": np.array(out["model"], dtype=object), "n": np.array(out["n"], dtype=np.int64),
            "mae": np.array(out["mae"]), "mape": np.array(out["mape"]), "bias_pct": np.array(out["bias_pct"]),
            "missing": np.array(out["missing"], dtype=np.int64)}
