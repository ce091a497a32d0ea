"""calc.kernels against plain numpy references: selection, VaR/ES, contributions, incremental updates."""
import numpy as np
import pytest

from bench.batch_kernels import batch_var_es
from calc import kernels


def numpy_var_es(pnl, k):
    losses = np.sort(-pnl)[::-1]
    return losses[k - 1], losses[:k].mean()


@pytest.mark.parametrize("n,c,k", [(1000, 0.99, 10), (1000, 0.975, 25), (250, 0.99, 3), (500, 0.99, 5),
                                   (1, 0.99, 1), (10, 0.5, 5), (3, 0.01, 3)])
def test_tail_count_is_ceil_of_tail_mass(n, c, k):
    assert kernels.tail_count(n, c) == k


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_tail_count_rejects_bad_confidence(bad):
    with pytest.raises(ValueError, match="confidence"):
        kernels.tail_count(100, bad)


def test_worst_scenarios_matches_sort_including_ties():
    rng = np.random.default_rng(7)
    for s in (1, 2, 3, 17, 1000, 1001):
        for trial in range(20):
            pnl = rng.normal(size=s)
            if trial % 2:
                pnl = np.round(pnl, 1)          # many ties
            for k in {1, max(1, s // 100), max(1, s // 2), s}:
                tail = kernels.worst_scenarios(pnl, k)
                assert len(np.unique(tail)) == k
                np.testing.assert_array_equal(np.sort(pnl[tail]), np.sort(pnl)[:k])
                var, es = kernels.var_es(pnl, k)
                ref_var, ref_es = numpy_var_es(pnl, k)
                assert var == ref_var
                assert es == pytest.approx(ref_es, rel=1e-12)


@pytest.mark.parametrize("k", [5, kernels.SMALL_TAIL + 36])     # insertion buffer, quickselect
def test_worst_scenarios_takes_the_earliest_on_ties(k):
    pnl = np.zeros(1000)
    pnl[500] = -1.0
    assert sorted(kernels.worst_scenarios(pnl, k).tolist()) == [*range(k - 1), 500]


def test_var_es_of_non_finite_pnl_is_nan():
    pnl = np.array([1.0, -2.0, np.nan, 3.0])
    var, es = kernels.var_es(pnl, 1)
    assert np.isnan(var) and np.isnan(es)


def pending_moves(values, rows, dvalues):
    """A what-if's pending changes as the kernels take them: (rows, value before, value after), a
    row changed twice moving on from its first change."""
    now, olds, news = dict(), [], []
    for r, d in zip(rows, dvalues):
        old = now.get(r, values[r])
        now[r] = old + d
        olds.append(old)
        news.append(now[r])
    return np.array(rows, dtype=np.int64), np.array(olds), np.array(news)


def test_scenario_pnl_and_es_contributions_match_numpy():
    rng = np.random.default_rng(1)
    n, s = 50, 400
    shocks = rng.normal(0, 0.02, (n, s))
    values = rng.normal(0, 1e6, n)
    values[::3] = 0.0
    pnl = kernels.scenario_pnl(values, shocks)
    np.testing.assert_allclose(pnl, values @ shocks, rtol=1e-12, atol=1e-6)
    k = kernels.tail_count(s, 0.99)
    tail = kernels.worst_scenarios(pnl, k)
    contrib = kernels.es_contributions(values, np.ascontiguousarray(shocks.T), tail)
    np.testing.assert_allclose(contrib, -values * shocks[:, tail].mean(axis=1), rtol=1e-12, atol=1e-9)
    assert contrib.sum() == pytest.approx(kernels.tail_var_es(pnl, tail)[1], rel=1e-12)
    scaled = kernels.es_contributions(values, np.ascontiguousarray(shocks.T), tail, 1.25)
    np.testing.assert_allclose(scaled, 1.25 * contrib, rtol=1e-12)
    var, es = kernels.var_es(pnl, k)
    scenario_shocks, none, no_change = np.ascontiguousarray(shocks.T), np.empty(0, dtype=np.int64), np.empty(0)
    hi, lo, _ = kernels.exact_product(values, shocks)
    fused = kernels.tail_measures(pnl, hi, lo, shocks, none, no_change, no_change, values, scenario_shocks, k, 1.25,
                                  False, 3)
    assert fused[:2] == (var, es)
    np.testing.assert_allclose(fused[2], scaled, rtol=1e-12)
    assert fused[3].tolist() == np.argsort(-scaled, kind="stable")[:3].tolist()
    fused_var = kernels.tail_measures(pnl, hi, lo, shocks, none, no_change, no_change, values, scenario_shocks, k, 1.25,
                                      True, 0)
    assert fused_var[2].sum() == pytest.approx(1.25 * var, rel=1e-12) and fused_var[3].size == 0
    np.testing.assert_allclose(fused_var[2], scaled * var / es, rtol=1e-12)
    broken = pnl.copy()
    broken[3] = np.nan
    nan_var, nan_es, zero, no_top = kernels.tail_measures(broken, hi, lo, shocks, none, no_change, no_change, values,
                                                          scenario_shocks, k, 1.0, True, 5)
    assert np.isnan(nan_var) and np.isnan(nan_es) and not zero.any() and no_top.size == 0


def test_tail_measures_after_value_changes_equal_a_recompute_and_leave_the_pnl_alone():
    rng = np.random.default_rng(11)
    n, s = 40, 500
    shocks = rng.normal(0, 0.02, (n, s))
    values = rng.normal(0, 1e6, n)
    hi, lo, pnl = kernels.exact_product(values, shocks)
    before = (hi.copy(), lo.copy(), pnl.copy())
    rows, olds, news = pending_moves(values, [7, 30, 7], [3e6, -2e6, 5e5])
    after = values.copy()
    after[rows] = news
    k = kernels.tail_count(s, 0.975)
    var, es, contrib, top = kernels.tail_measures(pnl, hi, lo, shocks, rows, olds, news, after,
                                                  np.ascontiguousarray(shocks.T), k, 1.0, False, 4)
    for kept, was in zip((hi, lo, pnl), before):
        np.testing.assert_array_equal(kept, was)
    loss = -(after @ shocks)
    tail = np.argsort(-loss, kind="stable")[:k]
    assert var == pytest.approx(loss[tail].min(), rel=1e-12) and es == pytest.approx(loss[tail].mean(), rel=1e-12)
    reference = -after * shocks[:, tail].mean(axis=1)
    np.testing.assert_allclose(contrib, reference, rtol=1e-9, atol=1e-6)
    assert top.tolist() == np.argsort(-reference, kind="stable")[:4].tolist()
    assert (var, es) == kernels.whatif_var_es(pnl, hi, lo, shocks, rows, olds, news, k)
    assert (var, es) == kernels.var_es(kernels.exact_product(after, shocks)[2], k)   # exactly the booked trades


def test_largest_is_a_stable_descending_top_n():
    rng = np.random.default_rng(9)
    x = np.round(rng.normal(0, 3, 500))          # many ties
    for n in (1, 5, 10, 500, 600):
        assert kernels.largest(x, n).tolist() == np.argsort(-x, kind="stable")[:n].tolist()
    assert kernels.largest(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]
    assert kernels.largest(np.zeros(0), 5).tolist() == []
    assert kernels.largest(np.array([2.0, 1.0]), 0).tolist() == []


def test_parametric_kernels_match_numpy_and_euler_sums_to_var():
    rng = np.random.default_rng(2)
    n = 40
    a = rng.normal(0, 0.01, (300, n))
    cov = np.cov(a, rowvar=False)
    values = rng.normal(0, 1e6, n)
    cv = kernels.covariance_product(cov, values)
    np.testing.assert_allclose(cv, cov @ values, rtol=1e-12)
    sigma2 = kernels.quadratic_form(values, cv)
    assert sigma2 == pytest.approx(values @ cov @ values, rel=1e-12)
    contrib = kernels.euler_contributions(values, cv, sigma2, 2.33)
    assert contrib.sum() == pytest.approx(2.33 * np.sqrt(sigma2), rel=1e-12)
    assert not kernels.euler_contributions(np.zeros(n), np.zeros(n), 0.0, 2.33).any()


def test_stress_loss_matches_numpy_and_contributions_sum_to_the_loss():
    rng = np.random.default_rng(11)
    n = 25
    a = rng.standard_normal((n, n))
    cov = a @ a.T * 1e-4
    values, shocks, scale = rng.standard_normal(n) * 1e6, rng.uniform(-0.3, 0.1, n), 2.33
    shock_loss, stressed_var, contrib, shocked = kernels.stress_loss(values, shocks, cov, scale)
    ref_shocked = values * (1.0 + shocks)
    ref_cv = cov @ ref_shocked
    ref_sigma = np.sqrt(ref_shocked @ ref_cv)
    assert np.allclose(shocked, ref_shocked, rtol=1e-15)
    assert shock_loss == pytest.approx(-(values * shocks).sum(), rel=1e-12)
    assert stressed_var == pytest.approx(scale * ref_sigma, rel=1e-12)
    assert np.allclose(contrib, -values * shocks + scale * ref_shocked * ref_cv / ref_sigma, rtol=1e-9, atol=1e-6)
    assert contrib.sum() == pytest.approx(shock_loss + stressed_var, rel=1e-12)
    flat = kernels.stress_loss(np.zeros(n), shocks, cov, scale)       # no positions: no loss, no NaN
    assert flat[0] == 0.0 and flat[1] == 0.0 and not flat[2].any()


def test_exact_incremental_state_equals_a_full_recompute_bit_for_bit_after_10000_updates():
    """The engine's vectors (calc.exact): after 10,000 fills and ticks, and after moving every value
    back, the incrementally kept P&L and cv are the full recompute's to the last bit, and within
    1e-12 of plain numpy."""
    rng = np.random.default_rng(3)
    n, s = 200, 1000
    shocks = rng.normal(0, 0.02, (n, s))
    cov = np.cov(rng.normal(0, 0.01, (500, n)), rowvar=False)
    values = np.zeros(n)
    pnl_hi, pnl_lo, pnl = kernels.exact_product(values, shocks)
    cv_hi, cv_lo, cv = kernels.exact_product(values, cov)
    start = [a.copy() for a in (pnl_hi, pnl_lo, pnl, cv_hi, cv_lo, cv)]
    k = kernels.tail_count(s, 0.99)
    for _ in range(10_000):
        i = int(rng.integers(n))
        if rng.random() < 0.5:      # a fill: qty * price
            dvalue = float(rng.normal(0, 1e3)) * float(rng.uniform(10, 500))
        else:                       # a tick: the position's value rescales with the price
            dvalue = values[i] * float(rng.normal(0, 0.01))
        old, values[i] = values[i], values[i] + dvalue
        kernels.exact_move(pnl_hi, pnl_lo, pnl, shocks, i, old, values[i])
        kernels.exact_move(cv_hi, cv_lo, cv, cov, i, old, values[i])
    for kept, full in zip((pnl_hi, pnl_lo, pnl, cv_hi, cv_lo, cv),
                          (*kernels.exact_product(values, shocks), *kernels.exact_product(values, cov))):
        np.testing.assert_array_equal(kept, full)
    full_pnl, full_cv = values @ shocks, cov @ values
    assert np.abs(pnl - full_pnl).max() <= 1e-12 * np.abs(full_pnl).max()
    assert np.abs(cv - full_cv).max() <= 1e-12 * np.abs(full_cv).max()
    assert kernels.quadratic_form(values, cv) == pytest.approx(values @ cov @ values, rel=1e-12)
    var, es = kernels.var_es(pnl, k)
    ref_var, ref_es = numpy_var_es(full_pnl, k)
    assert var == pytest.approx(ref_var, rel=1e-12)
    assert es == pytest.approx(ref_es, rel=1e-12)
    for i in np.flatnonzero(values).tolist():                   # everything closed: exactly where it started
        kernels.exact_move(pnl_hi, pnl_lo, pnl, shocks, i, values[i], 0.0)
        kernels.exact_move(cv_hi, cv_lo, cv, cov, i, values[i], 0.0)
    for kept, was in zip((pnl_hi, pnl_lo, pnl, cv_hi, cv_lo, cv), start):
        np.testing.assert_array_equal(kept, was)


def test_batch_var_es_matches_per_row_numpy():
    rng = np.random.default_rng(4)
    accounts, n, s = 30, 60, 500
    shocks = rng.normal(0, 0.02, (n, s))
    rows = rng.normal(0, 1e6, (accounts, n))
    k = kernels.tail_count(s, 0.99)
    pnl, var, es = batch_var_es(rows, shocks, k)
    np.testing.assert_allclose(pnl, rows @ shocks, rtol=1e-12)
    for a in range(accounts):
        ref_var, ref_es = numpy_var_es(rows[a] @ shocks, k)
        assert var[a] == pytest.approx(ref_var, rel=1e-12)
        assert es[a] == pytest.approx(ref_es, rel=1e-12)


def test_standalone_es_matches_numpy():
    rng = np.random.default_rng(5)
    shocks = rng.normal(0, 0.02, (8, 300))
    values = rng.normal(0, 1e6, 8)
    values[2] = 0.0
    k = kernels.tail_count(300, 0.975)
    got = kernels.standalone_es(values, shocks, k)
    for i in range(8):
        expected = numpy_var_es(values[i] * shocks[i], k)[1] if values[i] else 0.0
        assert got[i] == pytest.approx(expected, rel=1e-12)


def test_whatif_leaves_pnl_unchanged_and_matches_full_recompute():
    rng = np.random.default_rng(6)
    shocks = rng.normal(0, 0.02, (30, 500))
    values = rng.normal(0, 1e6, 30)
    hi, lo, pnl = kernels.exact_product(values, shocks)
    before = pnl.copy()
    rows, olds, news = pending_moves(values, [3, 17, 3], [2e5, -4e5, 1e5])
    var, es = kernels.whatif_var_es(pnl, hi, lo, shocks, rows, olds, news, 5)
    np.testing.assert_array_equal(pnl, before)
    after = values.copy()
    after[rows] = news
    ref_var, ref_es = numpy_var_es(after @ shocks, 5)
    assert var == pytest.approx(ref_var, rel=1e-12)
    assert es == pytest.approx(ref_es, rel=1e-12)
