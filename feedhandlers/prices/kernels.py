"""Numba kernel of the price simulator: correlated geometric Brownian steps. Pure over numpy arrays."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def correlated_steps(log_price, step_sigma, chol, normals, out):
    """Advances `log_price` (n, updated in place) by len(normals) steps and writes each step's prices to out.

    Step k moves sym i by step_sigma[i] * (chol @ normals[k])[i] - step_sigma[i]**2 / 2 (a martingale in
    price), so the step log returns have covariance diag(step_sigma) @ chol @ chol.T @ diag(step_sigma).
    normals: (steps, n) independent standard normals; chol: (n, n) lower triangular; out: (steps, n).
    """
    steps, n = normals.shape
    for k in range(steps):
        for i in range(n):
            eps = 0.0
            for j in range(i + 1):
                eps += chol[i, j] * normals[k, j]
            s = step_sigma[i]
            log_price[i] += s * eps - 0.5 * s * s
            out[k, i] = np.exp(log_price[i])
