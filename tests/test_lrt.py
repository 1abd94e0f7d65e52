"""The parametric bootstrap likelihood-ratio test (``jaxgmm.bootstrap_lrt``).

Default tests share one data size (n = 272, Old Faithful's) and one replicate
count, so they share compiled programs; the large size study is ``-m slow``.
mclust's ``mclustBootstrapLRT`` (R) is the reference where R is installed.

Data: ``tests/data/faithful_waiting.csv`` is R's ``datasets::faithful$waiting``
(272 waiting times, minutes; Härdle 1991), written by ``cat(faithful$waiting,
sep = "\\n")``.
"""

import os
import shutil
import subprocess
import types

import jax
import numpy as np
import pytest

import jaxgmm
from jaxgmm import Status, _lrt
from conftest import DTYPE, EPS

HERE = os.path.dirname(__file__)
FAITHFUL_CSV = os.path.join(HERE, "data", "faithful_waiting.csv")
FAITHFUL = np.loadtxt(FAITHFUL_CSV)
N = FAITHFUL.shape[0]  # every default test's data have this size: shared compiled shapes
REPS = 39
STARTS = 4


def normal_data(seed, n=N):
    return np.random.default_rng(seed).normal(70.0, 13.0, n)


def two_component_data(seed, n=N):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.5, rng.normal(0.0, 1.0, n), rng.normal(4.0, 1.0, n))


def slack(res):
    return 2 * _lrt.rounding_slack(res.boot_loglik0, res.boot_loglik1, DTYPE)


def test_faithful_fixture():
    # The published summary of faithful$waiting: 272 values, mean 70.897, range 43-96.
    assert FAITHFUL.shape == (272,) and round(FAITHFUL.mean(), 3) == 70.897
    assert FAITHFUL.min() == 43 and FAITHFUL.max() == 96


def test_statistics_p_value_and_no_replicate_below_its_null_fit():
    res = jaxgmm.bootstrap_lrt(jax.random.key(1), normal_data(0), 1, reps=REPS, n_starts=STARTS)
    assert (res.k0, res.k1, res.reps, res.n_obs) == (1, 2, REPS, N)
    assert res.fit0.params.means.shape == (1,) and res.fit1.params.means.shape == (2,)
    for a in (res.boot_statistics, res.boot_loglik0, res.boot_loglik1, res.boot_status0, res.boot_status1,
              res.below, res.flagged):
        assert a.shape == (REPS,)
    t = res.boot_statistics
    np.testing.assert_array_equal(t, 2 * (res.boot_loglik1 - res.boot_loglik0))
    assert res.p_value == (1 + np.sum(t >= res.statistic)) / (REPS + 1)
    # K + 1 nests K: at the maxima the statistic is >= 0 up to rounding, for the
    # observed data and every replicate (the nested start guarantees it).
    assert res.statistic >= -2 * _lrt.rounding_slack(res.fit0.loglik, res.fit1.loglik, DTYPE)
    assert np.all(t >= -slack(res)) and res.n_below == 0 and not res.observed_below
    # The one-component null fit is the sample mean and the (1/n) SD.
    assert float(res.fit0.params.means[0]) == pytest.approx(normal_data(0).mean(), rel=1e3 * EPS)
    # Replicate K0 fits start from the parameters they were simulated from: they converge.
    assert np.all(res.boot_status0 == Status.CONVERGED)
    assert res.p_value_max == (1 + np.sum((t >= res.statistic) | res.flagged)) / (REPS + 1)
    assert res.summary().startswith("1 vs 2 components")


def test_replicates_below_their_null_fit_are_flagged(monkeypatch):
    # Make the K + 1 fits of the even replicates 100 nats worse than they are (a
    # poor local maximum, as a single-start fit can give): they must be flagged,
    # counted and kept.
    original = _lrt._fit_in_stages

    def worse_even_k1_fits(x, starts, **kw):
        res = original(x, starts, **kw)
        if starts.means.shape[-1] == 2:
            even = (np.arange(res.loglik.shape[-1]) % 2 == 0)[None, :]
            res = res._replace(loglik=res.loglik - 100.0 * even)
        return res

    monkeypatch.setattr(_lrt, "_fit_in_stages", worse_even_k1_fits)
    res = jaxgmm.bootstrap_lrt(jax.random.key(1), normal_data(0), 1, reps=REPS, n_starts=STARTS)
    t = res.boot_statistics
    even = np.arange(REPS) % 2 == 0
    np.testing.assert_array_equal(res.below, even)
    np.testing.assert_array_equal(res.below, t < -slack(res))
    assert res.n_below == int(np.sum(even)) and np.all(res.flagged[even])
    not_conv = (res.boot_status0 == Status.MAX_ITER) | (res.boot_status1 == Status.MAX_ITER)
    assert res.n_not_converged == int(np.sum(not_conv)) and np.all(res.flagged[not_conv])
    # Flagged replicates stay in: p_value uses their statistics, p_value_max counts them as exceeding.
    assert res.p_value == (1 + np.sum(t >= res.statistic)) / (REPS + 1)
    assert res.p_value_max == (1 + np.sum((t >= res.statistic) | res.flagged)) / (REPS + 1)
    assert res.p_value_max >= res.p_value + np.sum(even & (t < res.statistic)) / (REPS + 1)
    assert "K1 below K0 %d" % res.n_below in res.summary()


def test_tally_counts_each_kind_and_nan():
    ll0 = np.array([-10.0, -10.0, -10.0, -10.0, -10.0])
    ll1 = np.array([-9.0, -11.0, -8.0, np.nan, -10.0])
    s0 = np.array([0, 0, 1, 0, 2])
    s1 = np.array([0, 0, 0, 3, 0])
    out = _lrt._tally(ll0, ll1, s0, s1, statistic=3.0, dtype=np.float64)
    np.testing.assert_array_equal(out["below"], [False, True, False, False, False])
    np.testing.assert_array_equal(out["flagged"], [False, True, True, True, True])
    assert (out["n_below"], out["n_not_converged"], out["n_nonfinite"], out["n_degenerate"]) == (1, 1, 1, 1)
    assert out["p_value"] == (1 + 1) / 6  # only T = 4 exceeds 3; NaN does not
    assert out["p_value_max"] == (1 + 4) / 6


def test_power_against_two_separated_components():
    res = jaxgmm.bootstrap_lrt(jax.random.key(3), two_component_data(1), 1, reps=REPS, n_starts=STARTS)
    # Means 4 SDs apart, n = 272: the statistic is far beyond every null replicate.
    assert res.statistic > np.max(res.boot_statistics)
    assert res.p_value == 1 / (REPS + 1)


def _ks_uniform_discrete(p, reps):
    """Largest gap between the p-values' empirical CDF and that of the discrete
    uniform on {1, ..., reps + 1} / (reps + 1), the exact null law of the +1 p-value."""
    grid = np.arange(1, reps + 2) / (reps + 1)
    ecdf = np.searchsorted(np.sort(p), grid, side="right") / p.size
    return float(np.max(np.abs(ecdf - grid)))


def _null_p_values(truth_sample, k0, datasets, reps, n_starts, seed):
    return np.array([jaxgmm.bootstrap_lrt(jax.random.key(seed + d), truth_sample(d), k0, reps=reps,
                                          n_starts=n_starts).p_value for d in range(datasets)])


def _ks_threshold(m, alpha):
    # One-sample KS: P(D > c / sqrt(m)) ~= 2 exp(-2 c^2); conservative for discrete laws.
    return np.sqrt(-0.5 * np.log(alpha / 2)) / np.sqrt(m)


def test_size_under_a_one_component_null_small():
    m = 12
    p = _null_p_values(normal_data, 1, m, REPS, STARTS, seed=100)
    # Level 1e-3 KS bound: fails if the p-values pile up (a statistic computed
    # wrongly on the replicates or the data) but not by chance.
    assert _ks_uniform_discrete(p, REPS) < _ks_threshold(m, 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("k0", [1, 2])
def test_size_under_the_null_large(k0):
    # 200 datasets per truth, 99 replicates each: a binned chi-square on 5 bins
    # of the p-values, threshold at level 1e-3 / 2 (two truths tested).
    m, reps = 200, 99
    truth = jaxgmm.MixtureParams(weights=[0.4, 0.6], means=[0.0, 4.0], scales=[1.0, 1.5])
    two = lambda d: np.asarray(jaxgmm.sample(jax.random.key(5000 + d), truth, N), np.float64)
    p = _null_p_values(normal_data if k0 == 1 else two, k0, m, reps, STARTS, seed=1000 * k0)
    counts = np.histogram(p, bins=np.linspace(0, 1, 6))[0]
    chi2 = np.sum((counts - m / 5) ** 2 / (m / 5))
    from statistics import NormalDist
    # chi-square(4) upper 5e-4 quantile, from the Wilson-Hilferty approximation.
    z = NormalDist().inv_cdf(1 - 5e-4)
    crit = 4 * (1 - 2 / 36 + z * np.sqrt(2 / 36)) ** 3
    assert chi2 < crit, (counts, chi2, crit)
    assert _ks_uniform_discrete(p, reps) < _ks_threshold(m, 5e-4)


@pytest.mark.parametrize("p_values, chosen, reached", [
    ((0.01, 0.3), 2, False),         # 1 vs 2 rejects, 2 vs 3 does not
    ((0.5,), 1, False),              # the first test does not reject
    ((0.01, 0.02, 0.04), 4, True),   # every test up to 3 vs 4 rejects
    ((0.01, 0.05), 3, True),         # p = alpha rejects (p_value > alpha stops)
])
def test_sequential_control_flow(monkeypatch, p_values, chosen, reached):
    """Which tests run and what is chosen, for given p-values (each step is a
    bootstrap_lrt, stubbed here: the end-to-end run is the slow test below)."""
    calls = []

    def fake(key, x, k0, **kwargs):
        calls.append((k0, kwargs))
        return types.SimpleNamespace(k0=k0, p_value=p_values[k0 - 1])

    monkeypatch.setattr(_lrt, "bootstrap_lrt", fake)
    seq = jaxgmm.sequential_lrt(jax.random.key(0), normal_data(0), max_components=len(p_values) + 1 if reached
                                else 4, alpha=0.05, reps=9)
    assert [k for k, _ in calls] == list(range(1, len(p_values) + 1))
    assert all(kw == {"reps": 9} for _, kw in calls)
    assert seq.n_components == chosen and seq.reached_max == reached
    assert seq.p_values == p_values


@pytest.mark.slow
def test_sequential_stops_at_the_first_non_rejection():
    seq = jaxgmm.sequential_lrt(jax.random.key(4), two_component_data(2), max_components=4, reps=REPS,
                                n_starts=STARTS)
    assert [s.k0 for s in seq.steps] == list(range(1, len(seq.steps) + 1))
    assert all(s.p_value <= 0.05 for s in seq.steps[:-1])
    assert seq.n_components == (seq.steps[-1].k0 if not seq.reached_max else 4)
    assert seq.steps[0].p_value == 1 / (REPS + 1)  # 1 vs 2 rejects: the components are 4 SDs apart
    assert seq.n_components >= 2


def test_arguments_are_checked():
    x = normal_data(0)
    with pytest.raises(ValueError, match="takes no fixed="):
        jaxgmm.bootstrap_lrt(0, x, 1, fixed="scales")
    with pytest.raises(ValueError, match="k1 must exceed k0"):
        jaxgmm.bootstrap_lrt(0, x, 2, k1=2)
    with pytest.raises(ValueError, match="frequency weights"):
        jaxgmm.bootstrap_lrt(0, x, 1, sample_weight=np.full(N, 0.5))
    with pytest.raises(ValueError, match="one dataset"):
        jaxgmm.bootstrap_lrt(0, np.stack([x, x]), 1)
    with pytest.raises(ValueError, match="n_starts"):
        jaxgmm.bootstrap_lrt(0, x, 1, n_starts=1)


def test_frequency_weights_are_the_expanded_data():
    # Weights 2 on every value: the observed fits are those of the data repeated
    # twice, and replicates have sum(weights) = 2n draws.
    x = FAITHFUL[:136]
    res = jaxgmm.bootstrap_lrt(jax.random.key(5), x, 1, reps=REPS, n_starts=STARTS,
                               sample_weight=np.full(136, 2.0))
    assert res.n_obs == N
    rep = jaxgmm.bootstrap_lrt(jax.random.key(5), np.repeat(x, 2), 1, reps=REPS, n_starts=STARTS)
    assert res.statistic == pytest.approx(rep.statistic, rel=1e-3, abs=1e3 * EPS * abs(float(rep.fit0.loglik)))


# --------------------------------------------------------------------------- #
# mclust
# --------------------------------------------------------------------------- #
def _have_mclust():
    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", "cat(requireNamespace('mclust', quietly = TRUE))"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "TRUE"


needs_mclust = pytest.mark.skipif(not _have_mclust(), reason="needs R with the mclust package")
MCLUST_R = os.path.join(HERE, os.pardir, "bench", "lrt_mclust.R")


def _mclust(g, nboot, mode, tol="1e-8", seed=1):
    out = subprocess.run(["Rscript", MCLUST_R, FAITHFUL_CSV, "V", str(g), str(nboot), mode, str(seed), tol],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    lrt = {int(r[1]): (float(r[2]), float(r[3])) for r in rows if r[0] == "lrt"}
    boot = [tuple(map(float, r[1:3])) for r in rows if r[0] == "boot"]
    return lrt, boot


@needs_mclust
def test_agrees_with_mclust_on_old_faithful_one_vs_two():
    reps_r = 199
    lrt, boot = _mclust(1, reps_r, "step")
    obs_r, p_r = lrt[1]
    res = jaxgmm.bootstrap_lrt(jax.random.key(6), FAITHFUL, 1, reps=REPS, n_starts=STARTS)
    # Both find the maxima (mclust at tol 1e-8): statistics agree to the rounding
    # of two log-likelihoods near -1,100 plus mclust's stopping error (1e-8 relative).
    tol = 2 * _lrt.rounding_slack(res.fit0.loglik, res.fit1.loglik, DTYPE) + 4e-8 * 2 * abs(float(res.fit0.loglik))
    assert res.statistic == pytest.approx(obs_r, abs=tol)
    # Both p-values are the smallest possible: the observed statistic (122.6) is
    # beyond every replicate.
    assert p_r == 1 / (reps_r + 1) and res.p_value == 1 / (REPS + 1)
    # The null distributions agree: means within 4 Monte Carlo standard errors.
    mean_r, sd_r = boot[0]
    t = res.boot_statistics
    se = np.sqrt(sd_r ** 2 / reps_r + t.var(ddof=1) / REPS)
    assert abs(t.mean() - mean_r) < 4 * se, (t.mean(), mean_r, se)


@needs_mclust
def test_finds_at_least_mclusts_maximum_on_old_faithful_two_vs_three():
    # mclust's K = 3 V fit of faithful$waiting from its hierarchical start is a
    # poor local maximum (statistic 1.01 at tol 1e-8, -0.13 at its default tol:
    # below its K = 2 fit); ours, from restarts and the nested start, is higher.
    lrt, _ = _mclust(2, 19, "step")
    obs_r, _ = lrt[2]
    res = jaxgmm.bootstrap_lrt(jax.random.key(7), FAITHFUL, 2, reps=REPS, n_starts=STARTS)
    assert res.statistic >= obs_r - 2 * _lrt.rounding_slack(res.fit0.loglik, res.fit1.loglik, DTYPE)
    assert res.statistic >= 0
