"""Monte Carlo studies and the bootstrap, checked the way issue 3 asks.

Statistical checks compare Monte Carlo quantities with independent values:
asymptotic SDs from the *expected* Fisher information, computed here by
numerical integration (scipy quadrature) of the squared score, and the float64
NumPy reference EM on the same simulated data.  Every tolerance is a Monte Carlo
standard error (from the number of replicates) times a normal quantile ``Z``
for a family-wise error rate ``ALPHA`` split over the checks of a test
(Bonferroni); nothing is tuned to pass.
"""

import json
import math
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference
from conftest import DTYPE, rtol_for

integrate = pytest.importorskip("scipy.integrate")

M = jaxgmm.MixtureParams
ALPHA = 1e-3  # family-wise false-alarm rate of each statistical test
SQRT2 = math.sqrt(2.0)
TRUTH = M(jnp.asarray([0.2, 0.8], DTYPE), jnp.asarray([0.0, 5.0], DTYPE), jnp.asarray([1.0, SQRT2], DTYPE))
N, REPS, SEED = 1000, 2000, 20261126


def z_for(n_checks: int) -> float:
    return NormalDist().inv_cdf(1.0 - ALPHA / (2.0 * n_checks))


# --------------------------------------------------------------------------- #
# Independent asymptotics: expected Fisher information by quadrature
# --------------------------------------------------------------------------- #
def _phi(x, m, s):
    return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def fisher_sd(weights, means, scales, n, free_scales=False):
    """Asymptotic SDs of (pi_1, mu_1, mu_2[, sigma_1, sigma_2]) for K = 2.

    Per-observation information ``I = E[s s^T]`` with ``s`` the score of
    ``log(pi phi_1 + (1 - pi) phi_2)``, integrated with scipy's ``quad``.
    """
    pi, (m1, m2), (s1, s2) = float(weights[0]), map(float, means), map(float, scales)

    def score(x):
        p1, p2 = _phi(x, m1, s1), _phi(x, m2, s2)
        f = pi * p1 + (1 - pi) * p2
        out = [(p1 - p2) / f, pi * p1 * (x - m1) / s1 ** 2 / f, (1 - pi) * p2 * (x - m2) / s2 ** 2 / f]
        if free_scales:
            out += [pi * p1 * ((x - m1) ** 2 / s1 ** 3 - 1 / s1) / f,
                    (1 - pi) * p2 * ((x - m2) ** 2 / s2 ** 3 - 1 / s2) / f]
        return np.array(out), f

    p = 5 if free_scales else 3
    lo, hi = min(m1 - 15 * s1, m2 - 15 * s2), max(m1 + 15 * s1, m2 + 15 * s2)
    info = np.empty((p, p))
    for i in range(p):
        for j in range(i, p):
            g = lambda x: (lambda s_f: s_f[0][i] * s_f[0][j] * s_f[1])(score(x))
            info[i, j] = info[j, i] = integrate.quad(g, lo, hi, points=[m1, m2], limit=200, epsabs=0, epsrel=1e-10)[0]
    return np.sqrt(np.diag(np.linalg.inv(info)) / n)


def sd_mcse(est):
    """Monte Carlo SE of a sample SD: sd * sqrt((kurtosis - 1) / (4 m))."""
    est = np.asarray(est, np.float64)
    m, sd = len(est), est.std(ddof=1)
    kurt = np.mean((est - est.mean()) ** 4) / np.mean((est - est.mean()) ** 2) ** 2
    return sd * math.sqrt((kurt - 1) / (4 * m))


@pytest.fixture(scope="module")
def textbook_study():
    """The motivating study: scales known, estimate pi, mu_1, mu_2; fits start at the truth."""
    return jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, fixed="scales")


def _rows(res, names):
    s = res.summary()
    return {name: s.row(name) for name in names}


# --------------------------------------------------------------------------- #
# The motivating example
# --------------------------------------------------------------------------- #
def test_empirical_sd_matches_expected_fisher_information(textbook_study):
    res = textbook_study
    assert res.summary().names == ["pi_1", "mu_1", "mu_2"]
    asym = fisher_sd([0.2, 0.8], [0.0, 5.0], [1.0, SQRT2], N)
    ok = res.converged
    assert ok.mean() == 1.0
    z = z_for(3)
    for sd_true, est in zip(asym, [res.estimates.weights[ok, 0], res.estimates.means[ok, 0], res.estimates.means[ok, 1]]):
        # (The O(1/n) finite-sample deviation from the asymptotic SD, ~0.1% at
        # n = 1000, is far below the Monte Carlo error of ~1.6%.)
        assert abs(np.std(est, ddof=1) - sd_true) <= z * sd_mcse(est), (np.std(est, ddof=1), sd_true)


def test_mean_se_matches_sd_and_wald_coverage(textbook_study):
    res = textbook_study
    rows = _rows(res, ["pi_1", "mu_1", "mu_2"])
    est = {"pi_1": res.estimates.weights[:, 0], "mu_1": res.estimates.means[:, 0], "mu_2": res.estimates.means[:, 1]}
    se = {"pi_1": res.se.weights[:, 0], "mu_1": res.se.means[:, 0], "mu_2": res.se.means[:, 1]}
    z = z_for(6)
    m = REPS
    for name, row in rows.items():
        tol = z * math.hypot(sd_mcse(est[name]), np.std(se[name]) / math.sqrt(m))
        assert abs(row["mean_se"] - row["sd"]) <= tol, (name, row)
        assert abs(row["coverage"] - 0.95) <= z * math.sqrt(0.95 * 0.05 / m), (name, row)
        assert row["mcse_bias"] == pytest.approx(row["sd"] / math.sqrt(m))
        assert row["rmse"] == pytest.approx(math.sqrt(row["bias"] ** 2 + row["sd"] ** 2 * (m - 1) / m), rel=1e-9)


def test_bias_matches_float64_reference_on_same_data(textbook_study):
    res = textbook_study
    m_ref = 100
    x = np.asarray(jaxgmm.simulate_replicates(SEED, TRUTH, N, np.arange(m_ref)), np.float64)
    truth64 = [np.asarray(f, np.float64) for f in TRUTH]
    ref = np.array([reference.em_fit(xi, *truth64, fixed_s=[True, True])[0] for xi in x])  # (m, 3, K)
    got = np.stack([np.asarray(f[:m_ref], np.float64) for f in res.estimates], axis=1)
    rows = res.summary()
    for name, field, j in [("pi_1", 0, 0), ("mu_1", 1, 0), ("mu_2", 1, 1)]:
        bias_ref = ref[:, field, j].mean() - truth64[field][j]
        bias_got = got[:, field, j].mean() - truth64[field][j]
        # Same data, so the biases agree far inside the Monte Carlo error ...
        assert abs(bias_got - bias_ref) <= rows.row(name)["mcse_bias"]
        # ... and every replicate's numerical error is small against the sampling SD.
        assert np.max(np.abs(got[:, field, j] - ref[:, field, j])) <= 0.01 * rows.row(name)["sd"]


def test_chunked_and_unchunked_runs_are_identical(textbook_study):
    small = jaxgmm.monte_carlo(SEED, TRUTH, N, 300, fixed="scales", chunk_size=128)  # 3 chunks, last padded
    assert small.design["chunk_size"] == 128 and textbook_study.design["chunk_size"] == REPS
    if jax.default_backend() == "cpu":
        # On CPU every replicate's fit is bit-for-bit the same whatever the chunk.
        for a, b in zip(small.estimates, textbook_study.estimates):
            np.testing.assert_array_equal(a, b[:300])
        np.testing.assert_array_equal(small.n_iter, textbook_study.n_iter[:300])
    else:
        # GPU reductions over n may be ordered differently at another batch size;
        # fits of the same data then agree to the convergence tolerance (largest
        # step, in units of the data's SD, below tol; a few steps of slack).
        tol = jaxgmm.default_tol(DTYPE)
        spread = float(np.sqrt(0.2 * 1 + 0.8 * 2 + 0.2 * 0.8 * 25))
        for a, b, unit in zip(small.estimates, textbook_study.estimates, (1.0, spread, spread)):
            np.testing.assert_allclose(a, b[:300], rtol=0, atol=10 * tol * unit)
    # SEs: the Hessian's sums may round differently at another batch size.
    for a, b in zip(small.se, textbook_study.se):
        np.testing.assert_allclose(a, b[:300], rtol=rtol_for(N) + 10 * jaxgmm.default_tol(DTYPE), atol=0)
    np.testing.assert_array_equal(small.status, textbook_study.status[:300])
    # The data are a function of (key, replicate index) alone.
    x = jaxgmm.simulate_replicates(SEED, TRUTH, N, [7, 299])
    y = jaxgmm.simulate_replicates(jax.random.key(SEED), TRUTH, N, np.arange(300))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y)[[7, 299]])


def test_summary_rows_and_saving(textbook_study, tmp_path):
    res = textbook_study
    s = res.summary()
    printed = ["true", "mean", "bias", "mcse_bias", "sd", "mean_se", "rmse", "coverage", "converged"]
    assert list(s.columns) == printed + ["mcse_sd", "mcse_mean_se", "mcse_rmse", "mcse_coverage",
                                         "rel_err_se", "mcse_rel_err_se"]
    assert str(s).splitlines()[0].split() == ["param", "true", "mean", "bias", "MCSE(bias)", "emp.", "SD",
                                              "mean", "SE", "RMSE", "cover95", "conv."]  # the README's table
    assert res.summary(all_weights=True).names == ["pi_1", "pi_2", "mu_1", "mu_2"]
    text = str(s)
    assert "MCSE(bias)" in text and "mu_2" in text and "sigma" not in text
    np.testing.assert_array_equal(res.se.scales, 0.0)  # fixed entries: SE exactly 0
    res.save(tmp_path / "r.npz")
    res.save(tmp_path / "r.csv")
    res.save(tmp_path / "r.json")
    s.to_csv(tmp_path / "s.csv")
    with np.load(tmp_path / "r.npz") as z:
        np.testing.assert_array_equal(z["estimates_means"], res.estimates.means)
        assert json.loads(str(z["design"]))["reps"] == REPS
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == REPS + 1 and lines[0].startswith("rep,status,n_iter,loglik,pi_1")
    assert float(lines[1].split(",")[6]) == float(res.estimates.means[0, 0])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["parameter"] for r in doc["summary"]["rows"]] == ["pi_1", "mu_1", "mu_2"]
    assert doc["status_counts"]["CONVERGED"] == REPS
    assert (tmp_path / "s.csv").read_text().splitlines()[0].startswith("parameter,true,mean,bias")
    with pytest.raises(ValueError, match="npz"):
        res.save(tmp_path / "r.txt")


# --------------------------------------------------------------------------- #
# Label switching, bootstrap, argument checks
# --------------------------------------------------------------------------- #
def test_alignment_undoes_label_switching():
    from jaxgmm._align import admissible_permutations, align, permute
    from jaxgmm._spec import make_spec

    truth = M(jnp.asarray([0.2, 0.3, 0.5]), jnp.asarray([0.0, 3.0, 6.0]), jnp.asarray([1.0, 1.0, 2.0]))
    free = make_spec((), 3)
    perms = admissible_permutations(truth, free)
    assert len(perms) == 6
    rng = np.random.default_rng(0)
    orders = np.array([rng.permutation(3) for _ in range(50)])
    noisy = M(*(jnp.asarray(np.asarray(f)[orders] + 0.05 * rng.standard_normal((50, 3))) for f in truth))
    back = permute(noisy, align(noisy, truth, perms))
    np.testing.assert_allclose(np.asarray(back.means), np.broadcast_to(np.asarray(truth.means), (50, 3)), atol=0.3)
    # Known, unequal scales: relabelling would change the model, so none is admissible.
    unequal = truth._replace(scales=jnp.asarray([1.0, 1.5, 2.0]))
    assert admissible_permutations(unequal, make_spec("scales", 3)) == ((0, 1, 2),)
    # Known scales that are equal for components 1 and 2: those two may swap.
    assert admissible_permutations(truth, make_spec("scales", 3)) == ((0, 1, 2), (1, 0, 2))
    assert len(admissible_permutations(truth, make_spec("means", 3))) == 1


def test_nonparametric_bootstrap():
    x = jaxgmm.simulate_replicates(SEED, TRUTH, N, [0])[0]
    est = jaxgmm.fit(x, TRUTH, fixed="scales")
    boot = jaxgmm.bootstrap(1, x, est, 400, fixed="scales", chunk_size=100)
    first = jaxgmm.bootstrap(1, x, est, 100, fixed="scales", chunk_size=100)
    np.testing.assert_array_equal(first.estimates.means, boot.estimates.means[:100])  # replicate b: fold_in(key, b)
    assert boot.converged.mean() == 1.0
    np.testing.assert_array_equal(boot.se.scales, 0.0)
    obs = jaxgmm.standard_errors(x, est, fixed="scales")
    z = z_for(3)
    for f, j in [(0, 0), (1, 0), (1, 1)]:
        b, o = float(np.asarray(boot.se[f])[j]), float(np.asarray(obs[f])[j])
        # Both estimate the sampling SD: bootstrap MC error ~ 1/sqrt(2B), and the
        # two estimators differ by O(1/sqrt(n)) relative on one dataset.
        assert abs(b / o - 1) <= z * (1 / math.sqrt(2 * 400) + 1 / math.sqrt(N))
        e = float(np.asarray(est.params[f])[j])
        assert float(np.asarray(boot.lower[f])[j]) < e < float(np.asarray(boot.upper[f])[j])


def test_squarem_studies_and_bootstraps_give_plain_em_estimates():
    # Overlapping components, where EM is slow and SQUAREM is meant to be used.
    truth = M(jnp.asarray([0.3, 0.7], DTYPE), jnp.asarray([0.0, 1.5], DTYPE), jnp.asarray([1.0, 1.0], DTYPE))
    n, reps = 400, 24
    plain = jaxgmm.monte_carlo(3, truth, n, reps, fixed="scales", compute_se=False)
    fast = jaxgmm.monte_carlo(3, truth, n, reps, fixed="scales", compute_se=False, accelerate="squarem")
    assert fast.design["accelerate"] == "squarem" and plain.design["accelerate"] is None
    assert plain.converged.all() and fast.converged.all()
    assert fast.n_iter.sum() * 2 < plain.n_iter.sum()  # E-steps: the option reached fit
    # Both stopped within the stopping rule's reach of the same optimum (as in
    # test_acceleration.stopping_bound): tol * r / (1 - r) in units of the sd.
    x = np.asarray(jaxgmm.simulate_replicates(3, truth, n, range(reps)), np.float64)
    tol = jaxgmm.default_tol(DTYPE)
    for i in range(0, reps, 8):
        r = reference.contraction_rate(x[i], *np.asarray(plain.estimates)[:, i], fixed_s=[True, True])
        bound = 8 * tol * r / (1 - r) * x[i].std() + rtol_for(n) * 64 * np.abs(x[i]).max()
        np.testing.assert_allclose(fast.estimates.means[i], plain.estimates.means[i], rtol=0, atol=bound)
        np.testing.assert_allclose(fast.estimates.weights[i], plain.estimates.weights[i], rtol=0, atol=bound)
    est = jaxgmm.fit(jnp.asarray(x[0], DTYPE), truth, fixed="scales")
    boots = [jaxgmm.bootstrap(1, jnp.asarray(x[0], DTYPE), est, 16, fixed="scales", accelerate=a)
             for a in (None, "squarem")]
    assert boots[1].n_iter.sum() < boots[0].n_iter.sum()
    assert boots[0].converged.all() and boots[1].converged.all()


def test_argument_errors():
    with pytest.raises(ValueError, match="accelerate"):
        jaxgmm.monte_carlo(0, TRUTH, 100, 10, accelerate="anderson")
    with pytest.raises(ValueError, match="accelerate"):
        jaxgmm.bootstrap(0, np.zeros(10), TRUTH, accelerate="anderson")
    with pytest.raises(ValueError, match="reps"):
        jaxgmm.monte_carlo(0, TRUTH, 100, 0)
    with pytest.raises(ValueError, match="init"):
        jaxgmm.monte_carlo(0, TRUTH, 100, 10, init="random")
    with pytest.raises(ValueError, match="weights"):
        jaxgmm.monte_carlo(0, TRUTH._replace(weights=jnp.asarray([0.5, 0.6])), 100, 10)
    with pytest.raises(ValueError, match="kind"):
        jaxgmm.bootstrap(0, np.zeros(10), TRUTH, kind="wild")


# --------------------------------------------------------------------------- #
# Slow: larger studies, everything free with data-driven starts, bootstrap
# --------------------------------------------------------------------------- #
@pytest.mark.slow
def test_large_textbook_study():
    res = jaxgmm.monte_carlo(SEED + 1, TRUTH, N, 20_000, fixed="scales", chunk_size=5000)
    asym = fisher_sd([0.2, 0.8], [0.0, 5.0], [1.0, SQRT2], N)
    z = z_for(9)
    for sd_true, (name, est, se) in zip(asym, [("pi_1", res.estimates.weights[:, 0], res.se.weights[:, 0]),
                                               ("mu_1", res.estimates.means[:, 0], res.se.means[:, 0]),
                                               ("mu_2", res.estimates.means[:, 1], res.se.means[:, 1])]):
        row = res.summary().row(name)
        assert abs(row["sd"] - sd_true) <= z * sd_mcse(est)
        assert abs(row["mean_se"] - row["sd"]) <= z * math.hypot(sd_mcse(est), np.std(se) / math.sqrt(res.reps))
        assert abs(row["coverage"] - 0.95) <= z * math.sqrt(0.95 * 0.05 / res.reps)


@pytest.mark.slow
def test_all_free_with_data_driven_starts():
    """Everything estimated, k-means++ starts with restarts: label switching must be undone."""
    res = jaxgmm.monte_carlo(SEED + 2, TRUTH, N, 2000, init="kmeans++", n_starts=5)
    assert res.converged.mean() > 0.99
    names = ["pi_1", "mu_1", "mu_2", "sigma_1", "sigma_2"]
    assert res.summary().names == names
    asym = fisher_sd([0.2, 0.8], [0.0, 5.0], [1.0, SQRT2], N, free_scales=True)
    ok = res.converged
    fields = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    z = z_for(15)
    for name, sd_true, (f, j) in zip(names, asym, fields):
        est = np.asarray(res.estimates[f])[ok, j]
        se = np.asarray(res.se[f])[ok, j]
        row = res.summary().row(name)
        assert abs(row["sd"] - sd_true) <= z * sd_mcse(est), (name, row["sd"], sd_true)
        assert abs(row["mean_se"] - row["sd"]) <= z * math.hypot(sd_mcse(est), np.std(se) / math.sqrt(ok.sum()))
        assert abs(row["coverage"] - 0.95) <= z * math.sqrt(0.95 * 0.05 / ok.sum()), (name, row)


@pytest.mark.slow
def test_parametric_bootstrap_sd_matches_fisher_at_the_estimate():
    x = jaxgmm.simulate_replicates(SEED, TRUTH, N, [1])[0]
    est = jaxgmm.fit(x, TRUTH, fixed="scales")
    boot = jaxgmm.bootstrap(2, x, est, 4000, kind="parametric", fixed="scales")
    p = [np.asarray(f, np.float64) for f in est.params]
    asym = fisher_sd(p[0], p[1], p[2], N)
    ok = boot.converged
    z = z_for(3)
    for sd_true, (f, j) in zip(asym, [(0, 0), (1, 0), (1, 1)]):
        e = np.asarray(boot.estimates[f])[ok, j]
        assert abs(e.std(ddof=1) - sd_true) <= z * sd_mcse(e)


@pytest.mark.slow
def test_grid_over_separation():
    truths = [TRUTH._replace(means=jnp.asarray([0.0, d], DTYPE)) for d in (3.0, 5.0)]
    grid = jaxgmm.monte_carlo_grid(SEED, truths, [200, 1000], 500, fixed="scales")
    s = grid.summary()
    assert len(s) == 4 * 3 and list(s.columns)[:2] == ["truth", "n"]
    sd = {(int(t), int(n), name): v for t, n, name, v in zip(s.columns["truth"], s.columns["n"], s.names, s.columns["sd"])}
    assert sd[(0, 200, "mu_1")] > sd[(1, 200, "mu_1")] > sd[(1, 1000, "mu_1")]  # closer means, smaller n: noisier


@pytest.mark.slow
def test_given_start_fixed_weights_and_equal_scales():
    truth = M(jnp.asarray([0.3, 0.7], DTYPE), jnp.asarray([0.0, 3.0], DTYPE), jnp.asarray([1.2, 1.2], DTYPE))
    start = M(jnp.asarray([0.5, 0.5], DTYPE), jnp.asarray([-1.0, 4.0], DTYPE), jnp.asarray([1.0, 2.0], DTYPE))
    reps = 2000
    res = jaxgmm.monte_carlo(SEED + 3, truth, 500, reps, init=start, fixed="weights", equal_scales=True)
    s = res.summary()
    assert s.names == ["mu_1", "mu_2", "sigma"]
    np.testing.assert_array_equal(res.estimates.weights, np.broadcast_to(np.asarray(truth.weights), (reps, 2)))
    np.testing.assert_array_equal(res.estimates.scales[:, 0], res.estimates.scales[:, 1])
    assert res.converged.mean() == 1.0
    z = z_for(6)
    for name, est, se in [("mu_1", res.estimates.means[:, 0], res.se.means[:, 0]),
                          ("mu_2", res.estimates.means[:, 1], res.se.means[:, 1]),
                          ("sigma", res.estimates.scales[:, 0], res.se.scales[:, 0])]:
        row = s.row(name)
        assert abs(row["mean_se"] - row["sd"]) <= z * math.hypot(sd_mcse(est), np.std(se) / math.sqrt(reps))
        assert abs(row["coverage"] - 0.95) <= z * math.sqrt(0.95 * 0.05 / reps), (name, row)
