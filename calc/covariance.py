"""Covariance of daily log returns (equal-weight or EWMA), its validation, and the repair of a
(stressed) correlation matrix to the nearest positive semi-definite one with unit diagonal.

- Equal weight: the sample covariance of the last ``window`` days (252 or 504 in practice),
  demeaned, divided by window - 1 (``numpy.cov``).
- EWMA (RiskMetrics): zero-mean, ``C = sum_j w_j r_{T-1-j} r_{T-1-j}'`` with
  ``w_j = (1 - decay) decay^j / (1 - decay^window)`` (the weights of the window, normalised to 1).
- PSD repair: "clip" sets negative eigenvalues to zero and rescales to unit diagonal
  (``D^-1/2 X D^-1/2``); "higham" is Higham's (2002) alternating projections with Dykstra's
  correction to the nearest correlation matrix in the Frobenius norm, finished by one clip step so
  the result is PSD to rounding.
"""
from __future__ import annotations

import numpy as np

from calc.scenarios import check_returns

COVARIANCE_METHODS = ("equal", "ewma")
REPAIR_METHODS = ("clip", "higham")


class NotPositiveSemidefinite(ValueError):
    """A covariance or correlation matrix that is not symmetric positive semi-definite."""


def covariance(returns: np.ndarray, window: int | None = None, method: str = "equal", decay: float = 0.94) -> np.ndarray:
    """(N, N) covariance of the last ``window`` rows (all when None) of (T, N) daily log returns."""
    r = check_returns(returns)
    if window is not None:
        if window < 2 or window > r.shape[0]:
            raise ValueError(f"window {window} needs between 2 and {r.shape[0]} days of returns")
        r = r[-window:]
    if method == "equal":
        if r.shape[0] < 2:
            raise ValueError("an equal-weight covariance needs at least 2 days of returns")
        return np.atleast_2d(np.cov(r, rowvar=False))
    if method == "ewma":
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        n = r.shape[0]
        w = (1.0 - decay) * decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        w /= w.sum()
        return (r * w[:, None]).T @ r
    raise ValueError(f"method must be one of {COVARIANCE_METHODS}, got {method!r}")


def check_covariance(cov: np.ndarray, syms=None, tol: float = 1e-10) -> np.ndarray:
    """The matrix as float64 if symmetric PSD (eigenvalues >= -tol * largest), else
    NotPositiveSemidefinite naming the problem (and the instrument loading most on a negative
    eigenvector when ``syms`` are given)."""
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise NotPositiveSemidefinite(f"covariance must be square, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise NotPositiveSemidefinite("covariance holds NaN or inf")
    scale = max(float(np.abs(c).max()), np.finfo(float).tiny)
    if np.abs(c - c.T).max() > 1e-12 * scale:
        raise NotPositiveSemidefinite("covariance is not symmetric")
    if c.size == 0:
        return c
    eigval, eigvec = np.linalg.eigh(c)
    if eigval[0] < -tol * max(eigval[-1], scale):
        where = ""
        if syms is not None:
            where = f" (most exposed instrument: {list(syms)[int(np.argmax(np.abs(eigvec[:, 0])))]})"
        raise NotPositiveSemidefinite(f"covariance is not positive semi-definite: smallest eigenvalue "
                                      f"{eigval[0]:.3g}{where}")
    return c


def correlation_from_covariance(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vols, correlation); an instrument with zero variance gets zero correlations, 1 on the diagonal."""
    c = np.asarray(cov, dtype=np.float64)
    vols = np.sqrt(np.clip(np.diag(c), 0.0, None))
    inv = np.divide(1.0, vols, out=np.zeros_like(vols), where=vols > 0)
    corr = c * inv[:, None] * inv[None, :]
    np.fill_diagonal(corr, 1.0)
    return vols, corr


def covariance_from_correlation(vols: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """``diag(vols) corr diag(vols)``."""
    v = np.asarray(vols, dtype=np.float64)
    return corr * v[:, None] * v[None, :]


def _clip_to_unit_diagonal(a: np.ndarray) -> np.ndarray:
    eigval, eigvec = np.linalg.eigh((a + a.T) / 2.0)
    x = (eigvec * np.clip(eigval, 0.0, None)) @ eigvec.T
    d = np.sqrt(np.clip(np.diag(x), np.finfo(float).tiny, None))
    x = x / d[:, None] / d[None, :]
    x = (x + x.T) / 2.0
    np.fill_diagonal(x, 1.0)
    return x


def _higham(a: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    y = a.copy()
    correction = np.zeros_like(a)
    for _ in range(max_iter):
        r = y - correction
        eigval, eigvec = np.linalg.eigh((r + r.T) / 2.0)
        x = (eigvec * np.clip(eigval, 0.0, None)) @ eigvec.T
        correction = x - r
        y = x.copy()
        np.fill_diagonal(y, 1.0)
        if np.linalg.norm(y - x) <= tol * max(np.linalg.norm(y), 1.0):
            break
    return y


def nearest_correlation(corr: np.ndarray, method: str = "clip", tol: float = 1e-10, max_iter: int = 500) -> np.ndarray:
    """A PSD correlation matrix with unit diagonal near ``corr`` (see the module docstring)."""
    a = np.asarray(corr, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)):
        raise ValueError(f"correlation must be a finite square matrix, got shape {a.shape}")
    if method == "higham":
        a = _higham(a, tol, max_iter)
    elif method != "clip":
        raise ValueError(f"method must be one of {REPAIR_METHODS}, got {method!r}")
    return _clip_to_unit_diagonal(a)
