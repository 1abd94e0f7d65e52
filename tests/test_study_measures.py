"""Summary measures with Monte Carlo standard errors, data generators, DataFrames (issue 17).

Each MCSE is checked against a direct NumPy computation of the formula in Morris,
White & Crowther (2019), Table 6, and the formulas themselves against the
spread of each measure over many independent synthetic studies, with a
tolerance from the Monte Carlo error of that spread.
"""

import math
from statistics import NormalDist

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE
from jaxgmm._summary import summarise

M = jaxgmm.MixtureParams
TRUTH = M(jnp.asarray([0.2, 0.8], DTYPE), jnp.asarray([0.0, 5.0], DTYPE), jnp.asarray([1.0, 2 ** 0.5], DTYPE))
N, STUDY = 100, dict(fixed="scales", chunk_size=8)
ALPHA = 1e-3  # family-wise false-alarm rate of each statistical test
Z95 = NormalDist().inv_cdf(0.975)


def z_for(n_checks: int) -> float:
    return NormalDist().inv_cdf(1.0 - ALPHA / (2.0 * n_checks))


def morris_table6(est, se, truth, z=Z95):
    """Every measure and its MCSE for one parameter, straight from the formulas."""
    est, se = np.asarray(est, np.float64), np.asarray(se, np.float64)
    m = len(est)
    sd = est.std(ddof=1)
    mse = np.mean((est - truth) ** 2)
    mod_se = np.sqrt(np.mean(se ** 2))
    cover = np.mean(np.abs(est - truth) <= z * se)
    return dict(
        bias=est.mean() - truth, mcse_bias=sd / math.sqrt(m),
        sd=sd, mcse_sd=sd / math.sqrt(2 * (m - 1)),
        rmse=math.sqrt(mse), mcse_rmse=math.sqrt(np.sum(((est - truth) ** 2 - mse) ** 2) / (m * (m - 1)))
        / (2 * math.sqrt(mse)),
        mean_se=se.mean(), mcse_mean_se=se.std(ddof=1) / math.sqrt(m),
        coverage=cover, mcse_coverage=math.sqrt(cover * (1 - cover) / m),
        rel_err_se=mod_se / sd - 1,
        mcse_rel_err_se=mod_se / sd * math.sqrt(np.var(se ** 2, ddof=1) / (4 * m * mod_se ** 4) + 1 / (2 * (m - 1))),
    )


def synthetic(rng, m, truth=(0.3, 2.0, 1.5), sd=(0.05, 0.2, 0.1), bias=(0.01, -0.02, 0.0)):
    """``m`` replicates of estimates ~ N(truth + bias, sd^2) and SEs ~ sd sqrt(chi2_20 / 20) (K = 1 per field)."""
    est = M(*(rng.normal(t + b, s, (m, 1)) for t, b, s in zip(truth, bias, sd)))
    se = M(*(s * np.sqrt(rng.chisquare(20, (m, 1)) / 20) for s in sd))
    return M(*(np.asarray([t]) for t in truth)), est, se


def test_every_mcse_is_the_formula_of_morris_et_al(tmp_path):
    rng = np.random.default_rng(1)
    truth, est, se = synthetic(rng, 250)
    status = np.full(250, int(jaxgmm.Status.CONVERGED))
    status[[3, 7]] = int(jaxgmm.Status.MAX_ITER)  # not used by default
    free = M(*(np.asarray([True]) for _ in range(3)))
    s = summarise(truth, est, se, status, free)
    ok = status == jaxgmm.Status.CONVERGED
    for p, name in enumerate(s.names):
        want = morris_table6(est[p][ok, 0], se[p][ok, 0], truth[p][0])
        got = s.row(name)
        for c, v in want.items():
            assert got[c] == pytest.approx(v, rel=1e-9, abs=1e-15), (name, c)
        assert got["converged"] == pytest.approx(ok.mean())


def test_study_summary_columns_follow_the_formulas():
    res = jaxgmm.monte_carlo(7, TRUTH, N, 48, **STUDY)
    ok = res.converged
    s = res.summary()
    for name, (f, j) in zip(["pi_1", "mu_1", "mu_2"], [(0, 0), (1, 0), (1, 1)]):
        want = morris_table6(np.asarray(res.estimates[f])[ok, j], np.asarray(res.se[f])[ok, j],
                             float(np.asarray(TRUTH[f])[j]))
        for c, v in want.items():
            assert s.row(name)[c] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, c)


def test_mcse_formulas_match_the_spread_over_independent_studies():
    """Each MCSE estimates the SD of its measure over repeated studies: check that SD."""
    rng = np.random.default_rng(2)
    g, m = 500, 200
    free = M(*(np.asarray([True]) for _ in range(3)))
    status = np.full(m, int(jaxgmm.Status.CONVERGED))
    measures = ("bias", "sd", "rmse", "mean_se", "coverage", "rel_err_se")
    values = {c: [] for c in measures}
    mcses = {c: [] for c in measures}
    for _ in range(g):
        truth, est, se = synthetic(rng, m)
        s = summarise(truth, est, se, status, free)
        for c in measures:
            values[c].append(s.columns[c])
            mcses[c].append(s.columns[f"mcse_{c}"])
    z = z_for(len(measures) * 3)
    for c in measures:
        spread = np.std(np.asarray(values[c]), axis=0, ddof=1)  # (3,) one per parameter
        predicted = np.sqrt(np.mean(np.asarray(mcses[c]) ** 2, axis=0))
        # A sample SD of g values is off by about 1/sqrt(2 (g - 1)) relative (normal
        # measures; coverage is near-normal at m = 200); the MCSEs are first-order
        # formulas, a few percent at most off at this m.
        tol = z / math.sqrt(2 * (g - 1)) + 0.03
        np.testing.assert_array_less(np.abs(spread / predicted - 1), tol, err_msg=c)


# --------------------------------------------------------------------------- #
# User-supplied data generators
# --------------------------------------------------------------------------- #
def _from_truth(key, n):
    return jaxgmm.sample(key, TRUTH, n)


def _shifted(key, n):
    return jaxgmm.sample(key, TRUTH, n) + 1.0


def test_a_generator_replaces_the_draws_from_the_truth():
    plain = jaxgmm.monte_carlo(9, TRUTH, N, 16, **STUDY)
    shifted = jaxgmm.monte_carlo(9, TRUTH, N, 16, generate=_shifted, **STUDY)
    assert shifted.design["generate"] == "_shifted" and plain.design["generate"] is None
    # The same keys, so the same draws shifted by 1: the means move by 1, the weight stays
    # (fits from the unshifted truth reach the same optimum within the stopping rule).
    tol = jaxgmm.default_tol(DTYPE)
    spread = float(np.sqrt(0.2 + 0.8 * 2 + 0.16 * 25))
    np.testing.assert_allclose(shifted.estimates.means, plain.estimates.means + 1.0, rtol=0,
                               atol=50 * tol * spread + 64 * float(jnp.finfo(DTYPE).eps) * 6)
    np.testing.assert_allclose(shifted.estimates.weights, plain.estimates.weights, rtol=0, atol=50 * tol)
    # Bias is still against the truth given.
    assert shifted.summary().row("mu_1")["bias"] == pytest.approx(plain.summary().row("mu_1")["bias"] + 1, abs=1e-3)
    data = jaxgmm.simulate_replicates(9, TRUTH, N, [0, 5], generate=_shifted)
    np.testing.assert_array_equal(np.asarray(data), np.asarray(jaxgmm.simulate_replicates(9, TRUTH, N, [0, 5])) + 1.0)
    same = jaxgmm.simulate_replicates(9, TRUTH, N, [0, 5], generate=_from_truth)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(jaxgmm.simulate_replicates(9, TRUTH, N, [0, 5])))


def test_a_generator_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"generate\(key, n\) must return data of shape \(n,\) = \(100,\), got shape \(2, 100\)"):
        jaxgmm.simulate_replicates(0, TRUTH, N, [0], generate=lambda k, n: jnp.zeros((2, n)))


# --------------------------------------------------------------------------- #
# DataFrames
# --------------------------------------------------------------------------- #
def test_summaries_and_replicates_as_dataframes():
    pd = pytest.importorskip("pandas")
    res = jaxgmm.monte_carlo(9, TRUTH, N, 16, offset=100, **STUDY)
    s = res.summary()
    frame = s.to_pandas()
    assert list(frame.index) == s.names and list(frame.columns) == list(s.columns)
    np.testing.assert_array_equal(frame["bias"].to_numpy(), s.columns["bias"])
    reps = res.to_pandas()
    assert list(reps.index) == list(range(100, 116)) and reps.index.name == "rep"
    np.testing.assert_array_equal(reps["mu_2"].to_numpy(), res.estimates.means[:, 1].astype(np.float64))
    assert set(reps["status"]) <= {s.name for s in jaxgmm.Status}
    assert isinstance(frame, pd.DataFrame)
