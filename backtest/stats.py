"""Back-test statistics for a VaR-type margin: Kupiec's proportion of failures, Christoffersen's
independence and conditional coverage, and the Basel Committee's (1996) traffic light.

An exception is a day whose realised loss exceeds the margin; `coverage` is the model's confidence
(0.99), so the expected failure rate is p = 1 - coverage.

References: P. Kupiec, "Techniques for verifying the accuracy of risk measurement models", Journal of
Derivatives 3 (1995); P. Christoffersen, "Evaluating interval forecasts", International Economic Review 39
(1998); Basel Committee on Banking Supervision, "Supervisory framework for the use of 'backtesting' in
conjunction with the internal models approach to market risk capital requirements" (January 1996), Table 1.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy
from scipy.stats import binom, chi2


def _loglik(n_fail: int, n_ok: int, p: float) -> float:
    """log of p^n_fail (1-p)^n_ok, with 0 log 0 = 0."""
    return float(xlogy(n_fail, p) + xlogy(n_ok, 1.0 - p))


def _check(observations: int, exceptions: int, coverage: float) -> None:
    if not (0.0 < coverage < 1.0):
        raise ValueError(f"coverage {coverage} must be in (0, 1)")
    if observations < 1 or not 0 <= exceptions <= observations:
        raise ValueError(f"need 0 <= exceptions ({exceptions}) <= observations ({observations}), observations >= 1")


def kupiec(observations: int, exceptions: int, coverage: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures test: (LR_pof, p-value).

        LR_pof = -2 ln[(1-p)^(T-x) p^x] + 2 ln[(1-x/T)^(T-x) (x/T)^x],   p = 1 - coverage,

    T observations, x exceptions (0 ln 0 = 0, so x = 0 and x = T are handled); asymptotically chi-square
    with 1 degree of freedom under H0 "the failure rate is p". A small p-value rejects the model (too many
    or too few exceptions)."""
    _check(observations, exceptions, coverage)
    p, t, x = 1.0 - coverage, observations, exceptions
    lr = -2.0 * _loglik(x, t - x, p) + 2.0 * _loglik(x, t - x, x / t)
    lr = max(lr, 0.0)
    return lr, float(chi2.sf(lr, 1))


def christoffersen(exceptions, coverage: float = 0.99) -> tuple[float, float, float, float]:
    """Christoffersen's tests on a boolean exception sequence I_1..I_T (True = exception). Returns
    (LR_ind, p-value of LR_ind (chi-square 1 dof), LR_cc, p-value of LR_cc (chi-square 2 dof)).

    With n_ij the number of days in state i followed by a day in state j (T-1 transitions),
    pi01 = n01/(n00+n01), pi11 = n11/(n10+n11), pi = (n01+n11)/(T-1):

        LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11)]
                 + 2 ln[(1-pi01)^n00 pi01^n01 (1-pi11)^n10 pi11^n11]

    tests H0 "an exception today does not change the chance of one tomorrow" (clustering rejects it);
    LR_cc = LR_pof + LR_ind, with LR_pof = kupiec(T, x, coverage) over the whole sequence, tests correct
    coverage and independence together. 0 ln 0 = 0 throughout; a sequence shorter than 2 raises."""
    e = np.asarray(exceptions, dtype=bool)
    if e.ndim != 1 or len(e) < 2:
        raise ValueError("christoffersen needs a 1-d sequence of at least 2 observations")
    prev, cur = e[:-1], e[1:]
    n00 = int(np.sum(~prev & ~cur))
    n01 = int(np.sum(~prev & cur))
    n10 = int(np.sum(prev & ~cur))
    n11 = int(np.sum(prev & cur))
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    l0 = _loglik(n01 + n11, n00 + n10, pi)
    l1 = _loglik(n01, n00, pi01) + _loglik(n11, n10, pi11)
    lr_ind = max(-2.0 * l0 + 2.0 * l1, 0.0)
    lr_pof, _ = kupiec(len(e), int(e.sum()), coverage)
    lr_cc = lr_pof + lr_ind
    return lr_ind, float(chi2.sf(lr_ind, 1)), lr_cc, float(chi2.sf(lr_cc, 2))


def traffic_light(observations: int, exceptions: int, coverage: float) -> tuple[str, float]:
    """The Basel (1996) traffic light: (zone, cumulative probability P[X <= exceptions]) with
    X ~ Binomial(observations, 1 - coverage). Green below 95% (0-4 exceptions in 250 at 99%), yellow
    from 95% up to but excluding 99.99% (5-9), red at 99.99% or more (10+)."""
    _check(observations, exceptions, coverage)
    cum = float(binom.cdf(exceptions, observations, 1.0 - coverage))
    # the Basel table rounds to 2 decimals of a percent: 10 in 250 is 99.995% -> "99.99%" -> red
    zone = "green" if cum < 0.95 else ("yellow" if cum < 0.9999 else "red")
    return zone, cum


__all__ = ["kupiec", "christoffersen", "traffic_light"]
