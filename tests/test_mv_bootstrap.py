"""``jaxgmm.bootstrap`` of a multivariate fit (``x`` of shape ``(n, D)``).

Replicate ``b`` is defined by its key ``fold_in(key, b)``: the tests rebuild
replicates from that definition with the public API and compare.  Default tests
share one dataset and replicate count (one compiled chunk per model); the
statistical comparison with the observed information is ``slow``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from jaxgmm import MultivariateParams, Status
from conftest import DTYPE, rtol_for

N, B = 240, 16


def clusters(seed=0, n=N):
    rng = np.random.default_rng(seed)
    a = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]], n // 2)
    b = rng.multivariate_normal([5.0, 2.0], [[0.5, 0.0], [0.0, 2.0]], n - n // 2)
    return jnp.asarray(np.concatenate([a, b]), DTYPE)


X = clusters()


def fitted(ctype="full", fixed=(), x=X):
    """The best of 3 k-means++ starts (a fixed entry keeps the first start's value)."""
    starts = jaxgmm.init_params(jax.random.key(0), x, 2, n_starts=3, covariance_type=ctype)
    starts = MultivariateParams(*(jnp.broadcast_to(f[:1], f.shape) for f in starts)) if fixed else starts
    return jaxgmm.best_of(jaxgmm.fit(x, starts, covariance_type=ctype, fixed=fixed))


def counts(key, n):
    pick = jax.random.randint(key, (n,), 0, n)
    return jnp.zeros((n,), DTYPE).at[pick].add(1.0)


def stopping_atol(x, n_iter):
    """Two runs of one fit in different programs: rounding over ``n_iter`` EM
    steps, plus one step of the stopping rule (a run may take one more step)."""
    spread = float(np.max(np.std(np.asarray(x), axis=0)))
    return rtol_for(x.size) * np.sqrt(n_iter + 1) * 8 * float(np.max(np.abs(x))) \
        + 2 * jaxgmm.default_tol(DTYPE) * spread ** 2


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_replicates_are_refits_with_multinomial_counts(ctype):
    res = fitted(ctype)
    boot = jaxgmm.bootstrap(jax.random.key(1), X, res, B, progress=False)
    assert boot.estimates.covariances.shape == (B, 2, 2, 2) and boot.kind == "nonparametric"
    keys = [jax.random.fold_in(jax.random.key(1), b) for b in range(B)]
    w = jnp.stack([counts(k, N) for k in keys])
    ref = jaxgmm.fit(X, res.params, sample_weight=w, covariance_type=ctype)
    # The estimate's components are far apart: no replicate is relabelled.
    np.testing.assert_array_equal(boot.status, np.asarray(ref.status))
    atol = stopping_atol(X, int(np.max(ref.n_iter)))
    for got, want in zip(boot.estimates, ref.params):
        np.testing.assert_allclose(got, np.asarray(want), rtol=0, atol=atol)
    ok = boot.converged
    assert ok.sum() >= B - 1
    sd = np.asarray(boot.estimates.means, np.float64)[ok].std(axis=0, ddof=1)
    np.testing.assert_allclose(boot.se.means, sd, rtol=1e-6)
    lo = np.quantile(np.asarray(boot.estimates.weights, np.float64)[ok], 0.025, axis=0)
    np.testing.assert_allclose(boot.lower.weights, lo, rtol=1e-6)
    if ctype == "diag":  # entries the model does not estimate
        assert np.all(boot.se.covariances[:, 0, 1] == 0) and np.all(boot.se.covariances[:, 1, 0] == 0)


def test_parametric_replicates_are_fits_to_draws_from_the_estimate():
    res = fitted("full")
    boot = jaxgmm.bootstrap(jax.random.key(2), X, res, B, kind="parametric", progress=False)
    keys = [jax.random.fold_in(jax.random.key(2), b) for b in range(B)]
    xb = jnp.stack([jaxgmm.sample(k, res.params, N) for k in keys])
    ref = jaxgmm.fit(xb, res.params, covariance_type="full")
    atol = stopping_atol(X, int(np.max(ref.n_iter)))
    for got, want in zip(boot.estimates, ref.params):
        np.testing.assert_allclose(got, np.asarray(want), rtol=0, atol=atol)


def test_replicates_are_aligned_to_the_estimate_s_labels():
    res = fitted("full")
    swapped = MultivariateParams(*(f[::-1] for f in res.params))
    boot = jaxgmm.bootstrap(jax.random.key(1), X, swapped, B, progress=False)
    # Refitting from the swapped estimate keeps its order; alignment must too, and
    # replicates sit near the component they belong to.
    gap = np.abs(np.asarray(boot.estimates.means) - np.asarray(swapped.means)).max()
    assert gap < 1.0, gap
    mean_of_replicates = np.asarray(boot.estimates.means)[boot.converged].mean(axis=0)
    assert np.argmax(mean_of_replicates[:, 0]) == np.argmax(np.asarray(swapped.means)[:, 0])


def test_mv_alignment_undoes_a_relabelling():
    from jaxgmm._align import mv_admissible_permutations, mv_align, mv_permute
    from jaxgmm._mv_params import MvSpec

    res = fitted("full")
    target = res.params
    three = MultivariateParams(*(jnp.stack([f, f[::-1], f]) for f in target))
    perms = mv_admissible_permutations(target, MvSpec.free(2, "full"))
    assert perms == ((0, 1), (1, 0))
    aligned = mv_permute(three, mv_align(three, target, perms))
    for f, t in zip(aligned, target):
        np.testing.assert_array_equal(np.asarray(f), np.broadcast_to(np.asarray(t), f.shape))


def test_fixed_entries_keep_their_values_and_have_zero_se():
    res = fitted("full", fixed=MultivariateParams(False, [False, True], False))
    j = int(np.argmax(np.asarray(res.model.fixed_means)))
    boot = jaxgmm.bootstrap(jax.random.key(3), X, res, B, progress=False)  # the result's model
    np.testing.assert_array_equal(boot.estimates.means[:, j], np.broadcast_to(np.asarray(res.params.means[j]),
                                                                              (B, 2)))
    assert np.all(boot.se.means[j] == 0) and np.all(boot.se.means[1 - j] > 0)
    # fixed= given explicitly frees what it does not name.
    free = jaxgmm.bootstrap(jax.random.key(3), X, res.params, B, fixed=(), progress=False)
    assert np.all(free.se.means > 0)


def test_errors_name_the_problem():
    res = fitted("full")
    with pytest.raises(ValueError, match="sample_weight is only supported by the nonparametric"):
        jaxgmm.bootstrap(0, X, res, 4, kind="parametric", sample_weight=jnp.ones(N, DTYPE))
    with pytest.raises(ValueError, match="equal_scales"):
        jaxgmm.bootstrap(0, X, res, 4, equal_scales=True)
    with pytest.raises(ValueError, match="covariance_type='diag' contradicts"):
        jaxgmm.bootstrap(0, X, res, 4, covariance_type="diag")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, 2\)"):
        jaxgmm.bootstrap(0, X[:, 0], res, 4)
    with pytest.raises(ValueError, match="one dataset x of shape \\(n, D\\)"):
        jaxgmm.bootstrap(0, jnp.stack([X, X]), res, 4)
    uni = jaxgmm.MixtureParams(jnp.array([0.5, 0.5]), jnp.array([0.0, 5.0]), jnp.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="covariance_type='full' applies to multivariate"):
        jaxgmm.bootstrap(0, X[:, 0], uni, 4, covariance_type="full")


@pytest.mark.slow
def test_bootstrap_se_matches_the_observed_information():
    """For a correctly specified model the bootstrap SD and the observed-information
    SE estimate the same thing: they agree within the bootstrap's Monte Carlo
    error (an SD from ``B`` draws has relative SE ``1 / sqrt(2 (B - 1))``), plus
    a margin of 10% for n = 2000 (the two differ at order 1/n relative)."""
    rng = np.random.default_rng(5)
    n = 2000
    a = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]], n // 2)
    b = rng.multivariate_normal([4.0, 2.0], [[0.5, 0.0], [0.0, 2.0]], n // 2)
    x = jnp.asarray(np.concatenate([a, b]), DTYPE)
    res = fitted("full", x=x)
    se = jaxgmm.standard_errors(x, res)
    reps = 400
    boot = jaxgmm.bootstrap(jax.random.key(7), x, res, reps, progress=False)
    assert boot.converged.sum() == reps
    rel = 4 / np.sqrt(2 * (reps - 1)) + 0.10
    for got, want in zip(boot.se, se):
        want = np.asarray(want)
        est = want != 0
        np.testing.assert_allclose(got[est], want[est], rtol=rel)
