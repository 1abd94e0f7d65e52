"""Multivariate fits through ``jaxgmm.fit`` (issue 18): the multivariate family
on the one engine, against the independent float64 reference
(``tests/mv_reference.py``) and scikit-learn.

Every test shares a few shapes (3 datasets of n = 240 in D = 2, K = 3), so the
file compiles a handful of programs.  Tolerances: ``t`` EM iterations of ``n``
points round each statistic to about ``rtol_for(n)``; EM's map does not amplify
that beyond the iteration count on these well-separated data, so ``t *
rtol_for(n)`` relative to each parameter's scale (means in data sds,
covariances in data variances).
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxgmm
import mv_reference as ref
from conftest import DTYPE, EPS, X64, rtol_for
from jaxgmm import MultivariateParams, Status
from jaxgmm._mv_params import MvSpec

B, N, D, K = 3, 240, 2, 3
TRUE_MEANS = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
MIX = np.array([[1.0, 0.4], [0.0, 0.8]])


def _data(seed, offset=0.0):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(N // K, D)) @ MIX + m for m in TRUE_MEANS]
    return np.concatenate(parts) + offset


X = np.stack([_data(s) for s in range(B)])  # (B, N, D)


def _start(x, kind):
    """A start every model holds: the true means' rows, equal weights, the data's
    covariance in the shape of the model."""
    x = np.asarray(x, np.float64)
    cov = np.cov(x.T)
    if kind == "diag":
        cov = np.diag(np.diag(cov))
    elif kind == "spherical":
        cov = np.mean(np.diag(cov)) * np.eye(D)
    means = x[[0, N // K, 2 * N // K]]  # one point of each cluster
    return np.full(K, 1.0 / K), means, np.broadcast_to(cov, (K, D, D)).copy()


def _stack_starts(kind, offset=0.0):
    starts = [_start(X[b] + offset, kind) for b in range(B)]
    return MultivariateParams(*(np.stack(f).astype(DTYPE) for f in zip(*starts)))


def _scaled_error(got, want, x, mean_ulps=False):
    """Largest error of weights, means (in data sds) and covariances (in data
    variances) of one dataset ``x``; with ``mean_ulps`` the means' errors less
    the rounding of their own representation (an ulp of each mean, in sds)."""
    sd = np.asarray(x, np.float64).std(0)
    w, m, c = (np.asarray(f, np.float64) for f in got)
    mean_err = np.abs(m - want[1])
    if mean_ulps:
        mean_err = np.maximum(mean_err - EPS * np.abs(want[1]), 0.0)
    return max(np.max(np.abs(w - want[0])), np.max(mean_err / sd),
               np.max(np.abs(c - want[2]) / np.outer(sd, sd)))


WEIGHTS = np.random.default_rng(99).uniform(0.5, 2.0, size=(B, N))


@pytest.mark.parametrize("kind", ["full", "diag", "spherical", "tied"])
def test_fixed_iterations_match_the_reference(kind):
    """Weighted batch, ``tol=0``: exactly ``t`` iterations, each dataset's iterate
    equal to the float64 reference's, for every covariance type."""
    t = 15
    init = _stack_starts(kind)
    r = jaxgmm.fit(X.astype(DTYPE), init, covariance_type=kind, tol=0.0, max_iter=t,
                   sample_weight=WEIGHTS.astype(DTYPE))
    assert r.params.covariances.shape == (B, K, D, D) and r.params.weights.dtype == DTYPE
    assert r.model == MvSpec.free(K, kind)
    np.testing.assert_array_equal(r.n_iter, t)
    np.testing.assert_array_equal(r.status, Status.MAX_ITER)
    for b in range(B):
        want, lls = ref.em_iterations(X[b], *(np.asarray(f[b], np.float64) for f in init), t,
                                      sample_weight=WEIGHTS[b], covariance_type=kind)
        assert _scaled_error([f[b] for f in r.params], want, X[b]) <= t * rtol_for(N)
        # loglik is that of the returned parameters.
        np.testing.assert_allclose(float(r.loglik[b]), lls[-1], rtol=t * rtol_for(N))
        assert np.all(np.diff(lls) >= -1e-9 * abs(lls[-1]))  # the reference itself is monotone


def test_fixed_fields_match_the_reference():
    """One mean and one weight held, the rest free: the constrained M-step, and
    the held values come back exactly as given."""
    t = 15
    init = _stack_starts("full")
    means = init.means.copy()
    means[:, 0] = [-0.5, 0.25]
    init = init._replace(means=means)
    mask = MultivariateParams(weights=[False, True, False], means=[True, False, False], covariances=False)
    r = jaxgmm.fit(X.astype(DTYPE), init, fixed=mask, tol=0.0, max_iter=t)
    np.testing.assert_array_equal(r.params.means[:, 0], init.means[:, 0])
    np.testing.assert_array_equal(r.params.weights[:, 1], init.weights[:, 1])
    for b in range(B):
        want, _ = ref.em_iterations(X[b], *(np.asarray(f[b], np.float64) for f in init), t,
                                    fixed_w=[False, True, False], fixed_m=[True, False, False])
        assert _scaled_error([f[b] for f in r.params], want, X[b]) <= t * rtol_for(N)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_converged_fit_matches_scikit_learn():
    """All free, same start: the same maximum as scikit-learn's GaussianMixture
    (``reg_covar=0``), and ``CONVERGED``."""
    sklearn = pytest.importorskip("sklearn.mixture")
    w0, m0, c0 = _start(X[0], "full")
    # scikit-learn's tol bounds the change of the mean log-likelihood, which is
    # quadratic in the parameters' distance to the maximum (tol=1e-13 stopped
    # 5e-8 away); so no tol, and 1000 iterations at EM's rate here (about 0.6).
    g = sklearn.GaussianMixture(K, weights_init=w0, means_init=m0, precisions_init=np.linalg.inv(c0),
                                reg_covar=0.0, tol=0.0, max_iter=1000).fit(X[0])
    r = jaxgmm.fit(X[0].astype(DTYPE), MultivariateParams(w0, m0, c0))
    assert int(r.status) == Status.CONVERGED
    # Stopping once a step changes nothing by tol leaves a fit about
    # tol * rate / (1 - rate) from the maximum: about 1.3 tol at EM's rate of
    # 0.57 on these data (measured from successive changes at the stop).
    tol = jaxgmm.default_tol(DTYPE)
    want = (g.weights_, g.means_, g.covariances_)
    assert _scaled_error(r.params, want, X[0]) <= 10 * tol + N * rtol_for(N)
    np.testing.assert_allclose(float(r.loglik), g.score(X[0]) * N, rtol=N * rtol_for(N))


def test_far_from_the_origin():
    """Data offset by 1e6 (in float32 their ulp is 1/16 of a data sd): the
    iterates are the reference's on the same (rounded) data to ``t *
    rtol_for(n)`` of the sds, as near the origin, beyond the ulp of the means
    themselves (each fit is standardised per dimension; raw moments would lose
    every digit in float32)."""
    offset = 1e6
    t = 15
    init = _stack_starts("full", offset)
    x = (X + offset).astype(DTYPE)
    r = jaxgmm.fit(x, init, tol=0.0, max_iter=t, sample_weight=WEIGHTS.astype(DTYPE))
    for b in range(B):
        xb = np.asarray(x[b], np.float64)
        want, _ = ref.em_iterations(xb, *(np.asarray(f[b], np.float64) for f in init), t,
                                    sample_weight=WEIGHTS[b].astype(DTYPE))
        # The float64 reference rounds the raw data's deviations too: eps64 * 1e6.
        ref_rounding = 16 * np.finfo(np.float64).eps * offset / xb.std(0).min()
        assert _scaled_error([f[b] for f in r.params], want, xb, mean_ulps=True) <= t * rtol_for(N) + ref_rounding


def _broadcast_case():
    """Two starts per dataset broadcast over the batch of data (no copy)."""
    s = _stack_starts("full")
    starts = [s, s._replace(means=s.means[:, ::-1])]  # the clusters' points in another order
    return MultivariateParams(*(np.stack(f) for f in zip(*starts)))  # (2, B, ...)


@pytest.mark.parametrize("accelerate,compact", [
    (None, True), (None, False), ("squarem", True),
    pytest.param("squarem", False, marks=pytest.mark.slow)])
def test_every_driver_reaches_the_same_maxima(accelerate, compact):
    """Starts broadcast over ``x``: every driver option converges to plain EM's
    maxima; ``best_of`` picks per dataset across the starts."""
    init = _broadcast_case()
    x = X.astype(DTYPE)
    base = jaxgmm.fit(x, init, compact=False)
    r = jaxgmm.fit(x, init, accelerate=accelerate, compact=compact)
    assert r.params.means.shape == (2, B, K, D)
    np.testing.assert_array_equal(r.status, Status.CONVERGED)
    tol = jaxgmm.default_tol(DTYPE)
    for s in range(2):
        for b in range(B):
            got = [f[s, b] for f in r.params]
            want = [np.asarray(f[s, b], np.float64) for f in base.params]
            # Both within about tol of the same maximum (a small EM rate here).
            assert _scaled_error(got, want, X[b]) <= 20 * tol + N * rtol_for(N)
    if accelerate is None and compact:
        # Compaction changes which fits share a block, never a fit's steps.
        np.testing.assert_array_equal(r.n_iter, base.n_iter)
    best = jaxgmm.best_of(r)
    assert best.params.covariances.shape == (B, K, D, D)
    np.testing.assert_array_equal(best.loglik, np.max(np.asarray(r.loglik), axis=0))


def test_bad_datasets_leave_their_batch_mates_alone():
    """A batch holding a constant dataset, a dataset on a line (singular
    covariances), and one with NaN rows (``nan_policy="omit"``) next to healthy
    ones: the bad ones get their own status with finite values, the healthy
    ones are bit-identical to a batch without them."""
    rng = np.random.default_rng(5)
    healthy = X
    constant = np.full((N, D), 3.0)
    t = rng.normal(size=N)
    line = np.stack([t, 2 * t + 1], axis=1)
    holes = X[1].copy()
    holes[::7, 0] = np.nan
    bad = np.stack([constant, line, holes])
    x_mixed = np.concatenate([healthy, bad]).astype(DTYPE)
    x_clean = np.concatenate([healthy, healthy]).astype(DTYPE)
    w0, m0, _ = _start(X[0], "full")
    init = MultivariateParams(w0, m0, np.broadcast_to(np.eye(D), (K, D, D)))
    mixed = jaxgmm.fit(x_mixed, init, nan_policy="omit")
    clean = jaxgmm.fit(x_clean, init, nan_policy="omit")
    for f_m, f_c in zip(mixed.params, clean.params):
        np.testing.assert_array_equal(f_m[:B], f_c[:B])
    np.testing.assert_array_equal(mixed.loglik[:B], clean.loglik[:B])
    status = np.asarray(mixed.status)
    assert np.all(status[B:B + 2] == Status.DEGENERATE), status
    assert status[B + 2] in (Status.CONVERGED, Status.MAX_ITER)
    assert all(np.all(np.isfinite(np.asarray(f))) for f in mixed.params)
    # The NaN rows were absent: the same fit as the dataset without them.
    alone = jaxgmm.fit(X[1][~np.isnan(holes[:, 0])].astype(DTYPE), init)
    tol = jaxgmm.default_tol(DTYPE)
    assert _scaled_error([f[B + 2] for f in mixed.params],
                         [np.asarray(f, np.float64) for f in alone.params], X[1]) <= 20 * tol + N * rtol_for(N)


def test_one_dimension_is_the_univariate_fit():
    """D = 1, all free: the same maximum as the univariate family."""
    x = X[0, :, 0].astype(DTYPE)
    uni = jaxgmm.fit(x, jaxgmm.MixtureParams([0.5, 0.5], [0.0, 5.0], [1.0, 1.0]))
    mv = jaxgmm.fit(x[:, None], MultivariateParams([0.5, 0.5], [[0.0], [5.0]], [[[1.0]], [[1.0]]]))
    assert int(uni.status) == int(mv.status) == Status.CONVERGED
    sd = float(np.std(X[0, :, 0]))
    tol = jaxgmm.default_tol(DTYPE)
    bound = 20 * tol + N * rtol_for(N)
    np.testing.assert_allclose(mv.params.weights, uni.params.weights, atol=bound)
    np.testing.assert_allclose(mv.params.means[:, 0], uni.params.means, atol=bound * sd)
    np.testing.assert_allclose(np.sqrt(mv.params.covariances[:, 0, 0]), uni.params.scales, atol=bound * sd)
    np.testing.assert_allclose(float(mv.loglik), float(uni.loglik), rtol=N * rtol_for(N))


# -- errors at the boundary (no compilation) ------------------------------------

def _good():
    return MultivariateParams(*(np.asarray(f, DTYPE) for f in _start(X[0], "full")))


@pytest.mark.parametrize("change,message", [
    (lambda p: p._replace(covariances=p.covariances.at[0, 0, 0].set(-1.0)), "positive definite"),
    (lambda p: p._replace(covariances=p.covariances.at[0, 0, 1].add(0.5)), "symmetric"),
    (lambda p: p._replace(weights=p.weights * 2), "sum to 1"),
    (lambda p: p._replace(means=p.means[:, :1]), "D = 2"),
    (lambda p: p._replace(means=p.means.at[1, 0].set(np.nan)), "finite"),
])
def test_bad_starts_are_named(change, message):
    p = _good()
    p = MultivariateParams(*(jnp.asarray(f) for f in p))
    with pytest.raises(ValueError, match=message):
        jaxgmm.fit(X[0], change(p))


def test_bad_options_are_named():
    p = _good()
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        jaxgmm.fit(X[0], p, covariance_type="VVV")
    with pytest.raises(ValueError, match="'diag' needs init.covariances that are diagonal"):
        jaxgmm.fit(X[0], p, covariance_type="diag")
    jaxgmm.fit(X[0], p, covariance_type="tied", max_iter=0)  # equal matrices: a tied start
    unequal = p._replace(covariances=p.covariances * np.array([1.0, 2.0, 1.0])[:, None, None])
    with pytest.raises(ValueError, match="'tied' needs"):
        jaxgmm.fit(X[0], unequal, covariance_type="tied")
    with pytest.raises(ValueError, match="covariance_type='tied'"):
        jaxgmm.fit(X[0], p, equal_scales=True)
    with pytest.raises(ValueError, match="covariance_type applies to multivariate fits"):
        jaxgmm.fit(X[0, :, 0], jaxgmm.MixtureParams([0.5, 0.5], [0.0, 1.0], [1.0, 1.0]), covariance_type="full")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, D\)"):
        jaxgmm.fit(X[0, :, 0], p)
    with pytest.raises(ValueError, match="NaN"):
        jaxgmm.fit(np.where(np.arange(N)[:, None] == 3, np.nan, X[0]), p)
    with pytest.raises(ValueError, match="fewer than the"):
        jaxgmm.fit(X[0, :5], p)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        jaxgmm.fit(X[0], p, sample_weight=np.ones(N + 1))


# -- the rest of the public API on the multivariate family ------------------------

def test_init_params_starts_and_restarts():
    """Keyed k-means++ starts, one per key, of the requested covariance type, in
    one call for a batch; the same key gives the same starts; fit + best_of."""
    x = X.astype(DTYPE)
    key = jax.random.key(3)
    starts = jaxgmm.init_params(key, x, K, n_starts=4, covariance_type="diag")
    assert starts.weights.shape == (4, B, K) and starts.covariances.shape == (4, B, K, D, D)
    off = np.asarray(starts.covariances) * (1 - np.eye(D))
    np.testing.assert_array_equal(off, 0.0)  # diagonal, so a valid diag start
    again = jaxgmm.init_params(key, x, K, n_starts=4, covariance_type="diag")
    for a, b in zip(starts, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(starts.means[0], starts.means[1])  # different starts per restart
    with pytest.raises(ValueError, match="method='kmeans\\+\\+'"):
        jaxgmm.init_params(key, x, K, method="quantile", covariance_type="full")


def test_sample_log_likelihood_and_steps_take_multivariate_params():
    """The public single steps dispatch on the parameters' type and agree with
    the float64 reference."""
    w0, m0, c0 = _start(X[0], "full")
    p = MultivariateParams(*(np.asarray(f, DTYPE) for f in (w0, m0, c0)))
    draws = jaxgmm.sample(jax.random.key(0), p, 50, shape=(2,))
    assert draws.shape == (2, 50, D) and draws.dtype == DTYPE
    ll = jaxgmm.log_likelihood(X.astype(DTYPE), p)
    assert ll.shape == (B,)
    for b in range(B):
        np.testing.assert_allclose(float(ll[b]), ref.loglik(X[b], w0, m0, c0), rtol=rtol_for(N * D))
    resp, ll0 = jaxgmm.e_step(X[0].astype(DTYPE), p)
    want_resp, want_ll = ref.e_step(X[0], w0, m0, c0)
    np.testing.assert_allclose(resp, want_resp, atol=rtol_for(N))
    np.testing.assert_allclose(float(ll0), want_ll, rtol=rtol_for(N * D))
    new = jaxgmm.m_step(X[0].astype(DTYPE), resp, p, covariance_type="tied")
    want = ref.m_step(X[0], want_resp, w0, m0, c0, covariance_type="tied")
    assert _scaled_error(new, want, X[0]) <= rtol_for(N) * 16


def test_save_and_load_a_multivariate_result(tmp_path):
    x = X.astype(DTYPE)
    r = jaxgmm.fit(x, _stack_starts("tied"), covariance_type="tied", max_iter=3)
    jaxgmm.save(tmp_path / "r.npz", r)
    back = jaxgmm.load(tmp_path / "r.npz")
    assert isinstance(back.params, MultivariateParams) and back.model == r.model
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(r)):
        np.testing.assert_array_equal(a, b)


# -- against R's mclust at the MLE (skipped without R) ------------------------------

MCLUST = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII"}

R_SCRIPT = r"""
suppressMessages(library(mclust))
x <- as.matrix(faithful)
write.table(x, stdout(), row.names = FALSE, col.names = FALSE)
for (m in c("VVV", "EEE", "VVI", "VII")) {
  # tol 0: 20,000 iterations, past any rounding (a tolerance on the relative
  # log-likelihood change, quadratic in the parameters, stopped VII 2e-6 short).
  f <- Mclust(x, G = 2, modelNames = m, verbose = FALSE, control = emControl(tol = c(0, 0), itmax = c(2e4, 2e4)))
  v <- c(f$loglik, f$parameters$pro, as.vector(f$parameters$mean), as.vector(f$parameters$variance$sigma))
  cat("MODEL", m, sprintf("%.17g", v), "\n")
}
"""


@pytest.fixture(scope="module")
def mclust_fits():
    import shutil
    import subprocess

    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed")
    out = subprocess.run(["Rscript", "-e", R_SCRIPT], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.skip(f"R's mclust is not available: {out.stderr[-300:]}")
    rows, fits = [], {}
    for line in out.stdout.splitlines():
        if line.startswith("MODEL"):
            parts = line.split()
            v = np.array(parts[2:], np.float64)
            # loglik, pro (2), mean (D x G) and sigma (D x D x G), R's column-major order.
            cov = v[7:15].reshape(2, 2, 2).transpose(0, 2, 1)
            fits[parts[1]] = dict(loglik=v[0], weights=v[1:3], means=v[3:7].reshape(2, 2), covariances=cov)
        elif line.strip():
            rows.append([float(t) for t in line.split()])
    return np.array(rows), fits


@pytest.mark.parametrize("kind", list(MCLUST))
def test_the_maximum_of_mclust(kind, mclust_fits):
    """Old Faithful (n = 272, D = 2), K = 2: from mclust's own estimate (run
    to rounding) jaxgmm stays at that maximum: it stops after a step or two
    that change nothing beyond rounding, with the same log-likelihood and
    parameters."""
    x, fits = mclust_fits
    f = fits[MCLUST[kind]]
    init = MultivariateParams(f["weights"], f["means"], f["covariances"])
    r = jaxgmm.fit(x.astype(DTYPE), init, covariance_type=kind)
    assert int(r.status) == Status.CONVERGED
    n = x.shape[0]
    np.testing.assert_allclose(float(r.loglik), f["loglik"], rtol=n * rtol_for(n))
    tol = jaxgmm.default_tol(DTYPE)
    assert _scaled_error(r.params, (f["weights"], f["means"], f["covariances"]), x, mean_ulps=True) <= (
        20 * tol + n * rtol_for(n))


def test_information_criteria_count_the_covariance_type():
    """aic/bic of a multivariate result count its free parameters per
    covariance type: full K(D + D(D+1)/2) + K - 1, tied one matrix."""
    x = X[0].astype(DTYPE)
    w0, m0, c0 = _start(X[0], "full")
    r = jaxgmm.fit(x, MultivariateParams(w0, m0, c0), max_iter=2, tol=0.0)
    p_full = (K - 1) + K * D + K * D * (D + 1) // 2
    np.testing.assert_allclose(float(jaxgmm.aic(r)), 2 * p_full - 2 * float(r.loglik), rtol=rtol_for(1))
    np.testing.assert_allclose(float(jaxgmm.bic(r, n_obs=N)), p_full * np.log(N) - 2 * float(r.loglik),
                               rtol=rtol_for(1))
    tied = jaxgmm.fit(x, MultivariateParams(w0, m0, c0), covariance_type="tied", max_iter=2, tol=0.0)
    p_tied = (K - 1) + K * D + D * (D + 1) // 2
    np.testing.assert_allclose(float(jaxgmm.aic(tied)), 2 * p_tied - 2 * float(tied.loglik), rtol=rtol_for(1))
    with pytest.raises(ValueError, match="contradicts"):
        jaxgmm.aic(r, n_params=p_tied)
