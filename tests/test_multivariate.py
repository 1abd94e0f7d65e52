"""The multivariate family's pure pieces against the float64 NumPy reference.

``tests/mv_reference.py`` is an independent EM written from the equations; every
tolerance derives from the float type (``conftest.EPS``) and the size of the
computation.  Fits here are a few EM iterations of the family's own
:func:`em_update` in standardised units (the engine's loop is not yet plugged in).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import mv_reference as ref
from conftest import DTYPE, EPS, X64, rtol_for
from jaxgmm import _mv_em as mv
from jaxgmm._mv_init import kmeans_start
from jaxgmm._mv_params import COVARIANCE_TYPES, MultivariateParams, MvSpec, make_mv_spec

K, D = 3, 3
TRUE_W = np.array([0.3, 0.3, 0.4])
TRUE_M = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 4.0, 2.0]])
START_W = np.array([0.2, 0.45, 0.35])
START_M = TRUE_M + np.array([[0.5, -0.3, 0.2], [-0.4, 0.2, 0.3], [0.3, 0.4, -0.5]])


def spd(seed, dim=D, k=K):
    """``k`` well-conditioned random covariance matrices (eigenvalues ~0.3 to ~2)."""
    a = np.random.default_rng(seed).normal(size=(k, dim, dim)) * 0.35
    return a @ np.swapaxes(a, -1, -2) + 0.4 * np.eye(dim)


def structured(covs, kind):
    """Covariances of the structure of ``kind``."""
    if kind == "diag":
        return np.stack([np.diag(np.diag(c)) for c in covs])
    if kind == "spherical":
        return np.stack([np.trace(c) / len(c) * np.eye(len(c)) for c in covs])
    if kind == "tied":
        return np.broadcast_to(covs.mean(0), covs.shape).copy()
    return covs


def draw(seed, n=400, weights=TRUE_W, means=TRUE_M, covs=None):
    """Float64 NumPy draws (independent of the library's sampler)."""
    rng = np.random.default_rng(seed)
    covs = spd(100) if covs is None else covs
    z = rng.choice(len(weights), size=n, p=weights)
    return means[z] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[z], rng.standard_normal((n, means.shape[1])))


def start_for(kind, dim=D):
    return (START_W, START_M[:, :dim], structured(spd(7, dim), kind))


def to_params(t, dtype=DTYPE):
    return MultivariateParams(*(jnp.asarray(f, dtype) for f in t))


def as_np(p):
    return tuple(np.asarray(f, np.float64) for f in p)


def sample_weights(n, seed=3):
    return np.random.default_rng(seed).uniform(0.0, 3.0, n)


def data_units(x, w):
    """Weighted sd of each dimension: the units the comparisons are made in."""
    w = np.ones(len(x)) if w is None else w
    mean = w @ x / w.sum()
    return np.sqrt(w @ (x - mean) ** 2 / w.sum())


def max_err(got, want, sd):
    """Largest error of weights (absolute), means (in data sds) and covariance
    entries (in products of data sds), as a dict by field."""
    g, w = as_np(got), tuple(np.asarray(f, np.float64) for f in want)
    return {"weights": np.abs(g[0] - w[0]).max(),
            "means": (np.abs(g[1] - w[1]) / sd).max(),
            "covariances": (np.abs(g[2] - w[2]) / np.outer(sd, sd)).max()}


def budget(x, sd, n_ops):
    """Rounding budget of a step on ``x``: sums of ``n`` terms each of size up to
    ``M^2`` (``M`` the largest standardised coordinate), with ``n_ops`` operations
    per term."""
    m = np.abs((x - x.mean(0)) / sd).max()
    return rtol_for(len(x) * n_ops) * 4 * m * m


def ref_masks(fixed, k=K):
    """Reference kwargs from a ``fixed=`` value."""
    spec = make_mv_spec(fixed, k, "full")
    return dict(fixed_w=spec.fixed_weights, fixed_m=spec.fixed_means, fixed_c=spec.fixed_covariances)


# (id, covariance type, fixed)
MIXED = MultivariateParams((True, False, False), (False, True, False), (False, False, True))
MODELS = [(f"{t}-free", t, ()) for t in COVARIANCE_TYPES] + [
    ("full-mixed", "full", MIXED),
    ("diag-mixed", "diag", MIXED),
    ("spherical-mixed", "spherical", MIXED),
    ("tied-weight-and-mean", "tied", MultivariateParams((True, False, False), (False, True, False), False)),
    ("full-covariances-known", "full", "covariances"),
]


# ---------------------------------------------------------------- the mini driver


def _iterates(x, w, start, spec, n_iter, cov_floor):
    """``n_iter`` EM iterations of the family's pieces in standardised units, as
    the engine will run them: every iterate (stacked, user units) and the
    log-likelihood of each (the start's first)."""
    std = mv.standardiser(x, w, spec.covariance_type)
    xs = std.data_t(x)

    def step(p, _):
        new, stats, _ = mv.em_update(xs, w, p, spec, cov_floor, std.min_count, loglik=True)
        return new, (std.params_out(new), std.loglik_out(stats.loglik))

    last, (iterates, lls) = jax.lax.scan(step, std.params_in(start), None, length=n_iter)
    final = mv.mv_stats(xs, last, w, covariance_type=spec.covariance_type, floor=cov_floor, second_moments=False)
    return iterates, jnp.concatenate([lls, std.loglik_out(final.loglik)[None]])


# Compiling dominates this file's run time, so the tests share programs: masks
# travel as traced arrays (one program per covariance type serves every mask;
# the M-step's general path), weights are always given (ones when unweighted),
# and most data share one shape.  The static-mask shortcuts have their own test.
N_ITER = 12


@functools.partial(jax.jit, static_argnames=("kind", "n_iter"))
def em_iterates(x, w, start, masks, cov_floor, *, kind, n_iter=N_ITER):
    return _iterates(x, w, start, MvSpec(*masks, kind), n_iter, cov_floor)


@functools.partial(jax.jit, static_argnames=("spec", "n_iter"))
def em_iterates_static(x, w, start, cov_floor, *, spec, n_iter=N_ITER):
    return _iterates(x, w, start, spec, n_iter, cov_floor)


@functools.partial(jax.jit, static_argnames=("kind",))
def m_step_masked(x, resp, params, masks, w, *, kind):
    return mv.m_step_spec(x, resp, params, MvSpec(*masks, kind), w)


@functools.partial(jax.jit, static_argnames=("kind",))
def two_updates(x, w, start, masks, cov_floor, *, kind):
    """Two EM iterations from ``start`` (user units) in standardised units: the
    standardiser, the mapped start, and per iteration ``(params, stats, floored)``."""
    spec = MvSpec(*masks, kind)
    std = mv.standardiser(x, w, kind)
    xs = std.data_t(x)
    p0 = std.params_in(start)
    first = mv.em_update(xs, w, p0, spec, cov_floor, std.min_count, loglik=True)
    second = mv.em_update(xs, w, first[0], spec, cov_floor, std.min_count, loglik=True)
    return std, p0, first, second


def masks_of(fixed, k=K):
    spec = make_mv_spec(fixed, k, "full")
    return tuple(jnp.asarray(m) for m in spec[:3])


def weights_or_ones(w, n):
    return jnp.asarray(np.ones(n) if w is None else w, DTYPE)


FLOOR = mv.default_cov_floor(DTYPE)


# ---------------------------------------------------------------- single steps


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_e_step_matches_reference(kind, weighted):
    x = draw(1)
    w = sample_weights(len(x)) if weighted else None
    start = start_for(kind)
    resp, ll = jax.jit(mv.e_step)(jnp.asarray(x, DTYPE), to_params(start), weights_or_ones(w, len(x)))
    want_resp, want_ll = ref.e_step(x, *start, sample_weight=w)
    # A responsibility exp(a_k - lse) inherits the absolute rounding error of its
    # exponent, about eps (|a_k| + |lse|) times the few operations per term (the
    # Mahalanobis distance: D^2 of them).
    a = ref.log_joint(x, *start)
    exponent = np.abs(a) + np.abs(ref.logsumexp(a, 1))[:, None]
    atol = 16 * D * D * EPS * (1 + np.max(exponent))
    np.testing.assert_allclose(np.asarray(resp), want_resp, rtol=0, atol=atol)
    np.testing.assert_allclose(float(ll), want_ll, rtol=rtol_for(x.size * D) * 8)


def test_e_step_in_many_dimensions():
    # Above mv._UNROLL_DIMS the distances come from lax's triangular solve.
    dim = mv._UNROLL_DIMS + 2
    rng = np.random.default_rng(21)
    means = rng.normal(0, 2, (2, dim))
    x = draw(22, 300, np.array([0.5, 0.5]), means, spd(23, dim, 2))
    start = (np.array([0.4, 0.6]), means + 0.3, spd(24, dim, 2))
    resp, ll = jax.jit(mv.e_step)(jnp.asarray(x, DTYPE), to_params(start))
    want_resp, want_ll = ref.e_step(x, *start)
    a = ref.log_joint(x, *start)
    atol = 16 * dim * dim * EPS * (1 + np.max(np.abs(a) + np.abs(ref.logsumexp(a, 1))[:, None]))
    np.testing.assert_allclose(np.asarray(resp), want_resp, rtol=0, atol=atol)
    np.testing.assert_allclose(float(ll), want_ll, rtol=rtol_for(x.size * dim) * 8)


def test_e_step_and_log_likelihood_in_units_far_apart():
    # Dimensions with spreads 1e4 and 1e-2 (variances 16 decades apart): a pivot
    # floor of D eps times the largest variance (about 24 in float32) swamped the
    # small one, and the float32 log-likelihood came out ~1100 too low.  The
    # public steps put each dimension in units of its own spread first.
    rng = np.random.default_rng(31)
    n = 400
    scale = np.array([1e4, 1e-2])
    x = np.where(rng.random(n)[:, None] < 0.4, rng.normal(0, 1, (n, 2)), rng.normal(2, 0.5, (n, 2))) * scale
    x = x.astype(DTYPE).astype(np.float64)  # the data the library sees, exactly
    corr = np.array([[1.0, 0.3], [0.3, 1.0]])
    start = (np.array([0.4, 0.6]), np.array([[0.0, 0.0], [2.0, 2.0]]) * scale,
             np.stack([corr, 0.25 * corr]) * np.outer(scale, scale))
    resp, ll = jaxgmm.e_step(jnp.asarray(x, DTYPE), to_params(start))
    want_resp, want_ll = ref.e_step(x, *start)
    a = ref.log_joint(x, *start)
    atol = 16 * D * D * EPS * (1 + np.max(np.abs(a) + np.abs(ref.logsumexp(a, 1))[:, None]))
    np.testing.assert_allclose(np.asarray(resp), want_resp, rtol=0, atol=atol)
    np.testing.assert_allclose(float(ll), want_ll, rtol=rtol_for(x.size * D) * 8)
    batch = jaxgmm.log_likelihood(jnp.asarray(np.stack([x, x]), DTYPE), to_params(start))
    np.testing.assert_allclose(np.asarray(batch), [want_ll, want_ll], rtol=rtol_for(x.size * D) * 8)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_stats_pass_is_centred_at_the_current_means(kind):
    x = draw(2)
    w = sample_weights(len(x), 4)
    start = start_for(kind)
    stats = jax.jit(mv.mv_stats, static_argnames=("covariance_type",))(
        jnp.asarray(x.T, DTYPE), to_params(start), jnp.asarray(w, DTYPE), covariance_type=kind)
    resp, ll = ref.e_step(x, *start, sample_weight=w)
    wr = w[:, None] * resp
    dev = x[None, :, :] - start[1][:, None, :]
    want_second = np.einsum("nk,knd,kne->kde", wr, dev, dev)
    if kind in ("diag", "spherical"):
        want_second = want_second * np.eye(D)
    scale = np.abs(dev).max() ** 2 * wr.sum()
    tol = rtol_for(len(x) * D) * 8
    np.testing.assert_allclose(np.asarray(stats.count), wr.sum(0), rtol=tol)
    np.testing.assert_allclose(np.asarray(stats.first), np.einsum("nk,knd->kd", wr, dev),
                               rtol=0, atol=tol * np.sqrt(scale))
    np.testing.assert_allclose(np.asarray(stats.second), want_second, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(float(stats.loglik), ll, rtol=tol)


@functools.partial(jax.jit, static_argnames=("kind",))
def m_step_from_stats(stats, params, masks, *, kind):
    return mv.mv_m_step_from_stats(stats, params, MvSpec(*masks, kind))


@pytest.mark.parametrize("name,kind,fixed", MODELS, ids=[m[0] for m in MODELS])
def test_m_step_matches_reference(name, kind, fixed):
    # From statistics about the start's means (in float64, then rounded to the
    # float type): the M-step's own arithmetic, for every model.
    x = draw(3)
    w = sample_weights(len(x), 5)
    start = start_for(kind)
    resp, _ = ref.e_step(x, *start)
    wr = w[:, None] * resp
    dev = x[None, :, :] - start[1][:, None, :]
    stats = mv.MvStats(*(jnp.asarray(f, DTYPE) for f in (
        wr.sum(0), np.einsum("nk,knd->kd", wr, dev), np.einsum("nk,knd,kne->kde", wr, dev, dev))), None)
    got, floored = m_step_from_stats(stats, to_params(start), masks_of(fixed), kind=kind)
    want = ref.m_step(x, resp, *start, covariance_type=kind, sample_weight=w, **ref_masks(fixed))
    sd = data_units(x, w)
    errors = max_err(got, want, sd)
    assert max(errors.values()) <= budget(x, sd, 1), errors
    assert not np.any(np.asarray(floored))
    # Fixed values are returned exactly; covariances are exactly symmetric.
    spec = make_mv_spec(fixed, K, kind)
    for field, mask in zip(range(3), (spec.fixed_weights, spec.fixed_means, spec.fixed_covariances)):
        for k in np.flatnonzero(mask):
            np.testing.assert_array_equal(np.asarray(got[field][k]), np.asarray(start[field][k], DTYPE))
    cov = np.asarray(got.covariances)
    np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))


def test_m_step_fixed_weight_is_constrained_mle():
    """Free weights share the remaining mass: perturbing along the constraint lowers
    the expected complete-data log-likelihood."""
    x = draw(4)
    start = start_for("full")
    resp, _ = ref.e_step(x, *start)
    public = jax.jit(mv.m_step, static_argnames=("fixed", "covariance_type"))
    got = as_np(public(jnp.asarray(x, DTYPE), jnp.asarray(resp, DTYPE), to_params(start),
                       fixed=MultivariateParams((True, False, False), False, False)))
    assert got[0][0] == pytest.approx(START_W[0], abs=4 * EPS)
    # The public M-step (data and responsibilities in, standardised inside).
    want = ref.m_step(x, resp, *start, fixed_w=[True, False, False])
    sd = data_units(x, None)
    errors = max_err(got, want, sd)
    assert max(errors.values()) <= budget(x, sd, D), errors
    np.testing.assert_array_equal(got[2], np.swapaxes(got[2], -1, -2))
    nk = resp.sum(0)
    best = np.sum(nk * np.log(got[0]))
    for delta in (1e-3, -1e-3):
        assert np.sum(nk * np.log(got[0] + np.array([0.0, delta, -delta]))) < best


# ---------------------------------------------------------------- EM iterations


def iteration_budget(x, sd, n_iter):
    """Budget after ``n_iter`` iterations: one step's rounding, growing like the
    square root of the number of steps (EM does not amplify it near the optimum)."""
    return budget(x, sd, D * D) * np.sqrt(n_iter + 1) * 8


@pytest.mark.parametrize("name,kind,fixed", MODELS, ids=[m[0] for m in MODELS])
def test_em_iterations_match_reference(name, kind, fixed):
    x = draw(5)
    w = sample_weights(len(x), 6)
    start = start_for(kind)
    n_iter = N_ITER
    iterates, lls = em_iterates(jnp.asarray(x, DTYPE), jnp.asarray(w, DTYPE), to_params(start), masks_of(fixed), FLOOR,
                                kind=kind)
    sd = data_units(x, w)
    p = start
    for t in range(n_iter):
        resp, _ = ref.e_step(x, *p, sample_weight=w)
        p = ref.m_step(x, resp, *p, covariance_type=kind, sample_weight=w, **ref_masks(fixed))
        errors = max_err(jax.tree_util.tree_map(lambda f: f[t], iterates), p, sd)
        assert max(errors.values()) <= iteration_budget(x, sd, t + 1), (t, errors)
    _, want_lls = ref.em_iterations(x, *start, n_iter, sample_weight=w, covariance_type=kind, **ref_masks(fixed))
    # Each log-likelihood belongs to its iterate; EM never lowers it.
    np.testing.assert_allclose(np.asarray(lls), want_lls, rtol=rtol_for(x.size * D) * 8 * np.sqrt(n_iter))
    slack = rtol_for(x.size * D) * 8 * np.abs(want_lls).max()
    assert np.all(np.diff(np.asarray(lls, np.float64)) >= -slack)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_sklearn_iterates_agree(kind):
    """Each EM iterate equals scikit-learn's GaussianMixture warm-started one
    iteration at a time (reg_covar=0), every parameter free."""
    mixture = pytest.importorskip("sklearn.mixture")
    import warnings

    x = draw(7)
    w0, m0, c0 = start_for(kind)
    prec = np.linalg.inv(c0)
    precisions_init = {"full": prec, "tied": prec[0], "diag": np.diagonal(prec, axis1=1, axis2=2),
                       "spherical": prec[:, 0, 0]}[kind]
    gm = mixture.GaussianMixture(K, covariance_type=kind, reg_covar=0.0, max_iter=1, tol=0.0, warm_start=True,
                                 weights_init=w0, means_init=m0, precisions_init=precisions_init)
    n_iter = N_ITER
    iterates, _ = em_iterates(jnp.asarray(x, DTYPE), weights_or_ones(None, len(x)), to_params((w0, m0, c0)),
                              masks_of(()), FLOOR, kind=kind)
    sd = data_units(x, None)
    for t in range(n_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(x)
        cov = {"full": gm.covariances_, "tied": np.broadcast_to(gm.covariances_, (K, D, D)),
               "diag": gm.covariances_[:, :, None] * np.eye(D) if kind == "diag" else None,
               "spherical": gm.covariances_[:, None, None] * np.eye(D) if kind == "spherical" else None}[kind]
        errors = max_err(jax.tree_util.tree_map(lambda f: f[t], iterates), (gm.weights_, gm.means_, cov), sd)
        assert max(errors.values()) <= (1e-10 if X64 else iteration_budget(x, sd, t + 1)), (t, errors)


# ---------------------------------------------------------------- D = 1, scale, degeneracy


@pytest.mark.parametrize("kind", ["full", "tied"])  # diag and spherical: the same model as full in one dimension
def test_one_dimension_agrees_with_univariate(kind):
    from jaxgmm import MixtureParams

    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, np.sqrt(2), 500)])
    w = sample_weights(len(x), 9)
    scales = np.array([1.0, 1.5]) if kind != "tied" else np.array([1.2, 1.2])
    uni = MixtureParams(np.array([0.5, 0.5]), np.array([-1.0, 4.0]), scales)
    multi = MultivariateParams(uni.weights, uni.means[:, None], (uni.scales ** 2)[:, None, None])
    xj, wj = jnp.asarray(x, DTYPE), jnp.asarray(w, DTYPE)
    resp_u, ll_u = jax.jit(jaxgmm.e_step)(xj, MixtureParams(*(jnp.asarray(f, DTYPE) for f in uni)), wj)
    resp_m, ll_m = jax.jit(mv.e_step)(xj[:, None], to_params(multi), wj)
    tol = rtol_for(x.size) * 8
    np.testing.assert_allclose(np.asarray(resp_m), np.asarray(resp_u), rtol=0, atol=tol * 16)
    np.testing.assert_allclose(float(ll_m), float(ll_u), rtol=tol)
    got = m_step_masked(xj[:, None], resp_u, to_params(multi), masks_of((), 2), wj, kind=kind)
    want = jax.jit(jaxgmm.m_step, static_argnames="equal_scales")(
        xj, resp_u, MixtureParams(*(jnp.asarray(f, DTYPE) for f in uni)), sample_weight=wj, equal_scales=kind == "tied")
    np.testing.assert_allclose(np.asarray(got.weights), np.asarray(want.weights), rtol=tol)
    np.testing.assert_allclose(np.asarray(got.means[:, 0]), np.asarray(want.means), atol=tol * 8)
    np.testing.assert_allclose(np.asarray(got.covariances[:, 0, 0]), np.asarray(want.scales) ** 2, rtol=tol * 8)


@pytest.mark.parametrize("offset,scale", [(1e6, 1.0), (0.0, 1e-6), (-3e5, 1e3)], ids=["offset-1e6", "scale-1e-6", "both"])
@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_far_from_origin_or_tiny_agrees_with_float64(offset, scale, kind):
    """The standardiser's job: float32 data at 1e6 or 1e-6 give the float64 fit
    (the reference on the same, float32-rounded, data) to ~1e-4 relative."""
    shift = offset * np.array([1.0, -0.5, 2.0])
    x = np.asarray((draw(12, covs=structured(spd(11), kind)) * scale + shift).astype(DTYPE), np.float64)
    w0, m0, c0 = start_for(kind)
    start = tuple(np.asarray(np.asarray(f).astype(DTYPE), np.float64) for f in (w0, m0 * scale + shift, c0 * scale ** 2))
    iterates, lls = em_iterates(jnp.asarray(x, DTYPE), weights_or_ones(None, len(x)), to_params(start),
                                masks_of(()), FLOOR, kind=kind)
    want, want_lls = ref.em_iterations(x, *start, N_ITER, covariance_type=kind)
    sd = data_units(x, None)
    got = as_np(jax.tree_util.tree_map(lambda f: f[-1], iterates))
    errors = max_err(got, want, sd)
    # A float32 mean near 1e6 cannot be closer than half its ulp (0.03) to the
    # float64 one: allow that representation error on top.
    errors["means"] = np.max((np.abs(got[1] - want[1]) - EPS * np.abs(want[1])) / sd)
    assert max(errors.values()) < 1e-4, errors
    # The log-likelihood on the user's scale, to 1e-4 per observation.
    assert abs(float(lls[-1]) - want_lls[-1]) < 1e-4 * len(x)


def test_static_shortcuts_agree_with_the_general_path():
    # Static masks let the M-step skip work (all weights fixed, no covariance
    # free: no second moments); the result must be the general path's.
    x = draw(18)
    w = sample_weights(len(x), 19)
    start = start_for("full")
    fixed = ("weights", "covariances")
    args = (jnp.asarray(x, DTYPE), jnp.asarray(w, DTYPE), to_params(start))
    shortcut, lls = em_iterates_static(*args, FLOOR, spec=make_mv_spec(fixed, K, "full"))
    general, want_lls = em_iterates(*args, masks_of(fixed), FLOOR, kind="full")
    sd = data_units(x, w)
    errors = max_err(jax.tree_util.tree_map(lambda f: f[-1], shortcut),
                     jax.tree_util.tree_map(lambda f: f[-1], general), sd)
    assert max(errors.values()) <= iteration_budget(x, sd, N_ITER), errors
    np.testing.assert_array_equal(np.asarray(shortcut.weights), np.broadcast_to(np.asarray(start[0], DTYPE), (N_ITER, K)))
    np.testing.assert_allclose(np.asarray(lls), np.asarray(want_lls), rtol=rtol_for(x.size * D) * 8 * np.sqrt(N_ITER))


def test_constant_column_is_finite_and_on_the_floor():
    x = draw(14)
    x[:, 2] = 7.0
    ones = weights_or_ones(None, len(x))
    std, _, (new, stats, _), (again, stats2, floored) = two_updates(
        jnp.asarray(x, DTYPE), ones, to_params(start_for("full")), masks_of(()), FLOOR, kind="full")
    assert float(std.spread[2]) == 7.0  # the column's magnitude sets its units
    assert bool(mv.all_finite(new)) and np.isfinite(float(stats.loglik))
    # The first step moves every mean onto the column's value (its scatter there
    # is then rounding noise, eps times the squared step); from the second on the
    # scatter is zero and every covariance sits on the floor, finite.
    assert bool(mv.all_finite(again)) and np.isfinite(float(stats2.loglik))
    # (A component the start left empty keeps its start instead.)
    empty = np.asarray(stats2.count) <= float(std.min_count)
    assert np.all(np.asarray(floored) | empty) and np.any(np.asarray(floored))
    assert bool(mv.degenerate(stats2.count, floored, MvSpec.free(K, "full"), std.min_count))
    # The floored covariance is positive definite with its smallest pivot at the floor.
    _, raised = jax.jit(mv.cholesky)(again.covariances, FLOOR * (1 - 64 * EPS))
    assert not np.any(np.asarray(raised))


@pytest.mark.parametrize("kind", ["full", "spherical"])
def test_singular_start_gives_finite_values(kind):
    x = draw(15)
    w0, m0, c0 = start_for(kind)
    v = np.array([1.0, -2.0, 0.5])
    singular = c0.copy()
    singular[0] = np.outer(v, v) if kind in ("full", "tied") else np.diag([1.0, 0.0, 0.0])
    if kind == "tied":
        singular[:] = singular[0]
    if kind == "spherical":
        singular[0] = 0.0
    params = to_params((w0, m0, singular))
    ones = weights_or_ones(None, len(x))
    resp, ll = jax.jit(mv.e_step)(jnp.asarray(x, DTYPE), params, ones)
    assert np.all(np.isfinite(np.asarray(resp))) and np.isfinite(float(ll))
    lifted, raised = jax.jit(mv.floor_covariances, static_argnames="covariance_type")(params.covariances, FLOOR, kind)
    assert bool(raised[0]) and np.all(np.isfinite(np.asarray(lifted)))
    _, _, (new, stats, _), _ = two_updates(jnp.asarray(x, DTYPE), ones, params, masks_of(()), FLOOR, kind=kind)
    assert bool(mv.all_finite(new)) and np.isfinite(float(stats.loglik))


def test_collapsed_component_is_flagged():
    # Component 0 sits on two coincident points far from the rest: its scatter is
    # zero, so its covariance goes to the floor and the fit is degenerate.
    x = draw(16)
    x[:2] = np.array([20.0, 20.0, 20.0])
    start = to_params((START_W, np.vstack([[20.0, 20.0, 20.0], START_M[1:]]), spd(7)))
    ones = weights_or_ones(None, len(x))
    std, _, (new, stats, floored), _ = two_updates(jnp.asarray(x, DTYPE), ones, start, masks_of(()), FLOOR, kind="full")
    assert bool(floored[0]) and not np.any(np.asarray(floored[1:]))
    assert bool(mv.degenerate(stats.count, floored, MvSpec.free(K, "full"), std.min_count))
    assert bool(mv.all_finite(new))
    # Not degenerate when that covariance is known.
    fixed = MultivariateParams(False, False, (True, False, False))
    _, _, (_, stats, floored), _ = two_updates(jnp.asarray(x, DTYPE), ones, start, masks_of(fixed), FLOOR, kind="full")
    assert not bool(mv.degenerate(stats.count, floored, make_mv_spec(fixed, K, "full"), std.min_count))


def test_empty_component_and_change_measure():
    x = draw(17)
    start = to_params((START_W, np.vstack([[1e3, 1e3, 1e3], START_M[1:]]), spd(7)))
    ones = weights_or_ones(None, len(x))
    std, p, (new, stats, floored), _ = two_updates(jnp.asarray(x, DTYPE), ones, start, masks_of(()), FLOOR, kind="full")
    assert float(stats.count[0]) <= float(std.min_count)
    assert bool(mv.degenerate(stats.count, floored, MvSpec.free(K, "full"), std.min_count))
    # The empty component keeps its mean and covariance.
    np.testing.assert_array_equal(np.asarray(new.means[0]), np.asarray(p.means[0]))
    np.testing.assert_array_equal(np.asarray(new.covariances[0]), np.asarray(p.covariances[0]))
    # The change measure is the largest absolute change over every entry.
    want = max(np.abs(a - b).max() for a, b in zip(as_np(new), as_np(p)))
    assert float(mv.largest_change(new, p)) == pytest.approx(want, rel=4 * EPS)
    assert not bool(mv.all_finite(p._replace(means=p.means.at[1, 2].set(jnp.nan))))


# ---------------------------------------------------------------- memory, batching, sampling, starts


def test_e_pass_has_no_n_k_d_d_intermediate():
    n = 64
    x = jnp.zeros((D, n), DTYPE)  # dimension-major
    jaxpr = jax.make_jaxpr(functools.partial(mv.mv_stats, covariance_type="full"))(x, to_params(start_for("full")))
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars]
    assert max(sizes) <= n * K * D, max(sizes)


def test_em_update_vmaps_over_datasets():
    xs = np.stack([draw(20 + i) for i in range(3)])
    start = to_params(start_for("full"))
    run = functools.partial(two_updates, w=weights_or_ones(None, xs.shape[1]), start=start, masks=masks_of(()),
                            cov_floor=FLOOR, kind="full")
    batch = jax.vmap(run)(jnp.asarray(xs, DTYPE))
    for i in range(3):
        one = run(jnp.asarray(xs[i], DTYPE))
        sd = data_units(xs[i], None) / np.asarray(one[0].spread)  # standardised units
        errors = max_err(jax.tree_util.tree_map(lambda f: f[i], batch[3][0]), one[3][0], sd)
        assert max(errors.values()) <= iteration_budget(xs[i], sd, 2), errors


def test_log_likelihood_broadcasts():
    xs = np.stack([draw(30 + i, 200) for i in range(2)])[:, None]  # (2, 1, n, D)
    covs = np.stack([spd(40 + j) for j in range(3)])  # (3, K, D, D)
    params = (np.broadcast_to(START_W, (3, K)), START_M, covs)  # means shared: no batch axis
    got = mv.log_likelihood(jnp.asarray(xs, DTYPE), to_params(params))
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            want = ref.loglik(xs[i, 0], START_W, START_M, covs[j])
            np.testing.assert_allclose(float(got[i, j]), want, rtol=rtol_for(200 * D) * 8)


def test_sample_shapes_and_moments():
    covs = spd(50)
    covs[2] = np.diag([1.0, 0.0, 2.0])  # singular: draws lie in its support
    truth = to_params((TRUE_W, TRUE_M, covs))
    # One call (one program): batch shapes broadcast, weights (2, K) with shared
    # means and covariances, two replicates each: (2, 2, n, D).
    batched = truth._replace(weights=jnp.stack([truth.weights, truth.weights[::-1]]))
    draws = mv.sample(jax.random.key(0), batched, 10000, shape=(2,))
    assert draws.shape == (2, 2, 10000, D)
    x = np.asarray(draws[:, 0], np.float64).reshape(-1, D)  # the first mixture's
    n = len(x)
    assert np.all(np.isfinite(x))
    # The mixture's mean and covariance, each within 5 Monte Carlo standard errors.
    mean = TRUE_W @ TRUE_M
    cov = np.einsum("k,kij->ij", TRUE_W, covs + np.einsum("ki,kj->kij", TRUE_M - mean, TRUE_M - mean))
    assert np.all(np.abs(x.mean(0) - mean) <= 5 * np.sqrt(np.diag(cov) / n))
    centred = x - mean
    prods = centred[:, :, None] * centred[:, None, :]
    assert np.all(np.abs(prods.mean(0) - cov) <= 5 * prods.std(0) / np.sqrt(n))
    # The singular component's draws lie in its support (coordinate 1 at its mean).
    assert np.mean(x[:, 1] == TRUE_M[2, 1]) > 0.3


@pytest.mark.parametrize("kind", ["full", "spherical", "tied"])  # diag shares their code paths
def test_kmeans_starts(kind):
    # Clusters ~1000 of their sds apart: a k-means++ seed misses one with
    # probability ~1e-6 (sd^2 / distance^2), so the check below does not hang on
    # the random stream.
    means = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]])
    x = draw(60, 300, means=means, covs=spd(61) * 1e-4)
    # Rows of weight zero far away are never centres.
    x = np.vstack([x, np.full((5, D), 1e3)])
    w = np.r_[np.ones(300), np.zeros(5)]
    keys = jax.random.split(jax.random.key(0), 4)
    starts = jax.jit(jax.vmap(lambda key: kmeans_start(key, jnp.asarray(x, DTYPE), K, jnp.asarray(w, DTYPE),
                                                       covariance_type=kind, n_steps=5)))(keys)
    assert starts.means.shape == (4, K, D) and starts.covariances.dtype == DTYPE
    np.testing.assert_allclose(np.asarray(starts.weights).sum(-1), 1.0, rtol=8 * EPS)
    cov = np.asarray(starts.covariances, np.float64)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    if kind == "spherical":
        assert np.all(cov == cov[..., :1, :1] * np.eye(D))
    if kind == "tied":
        assert np.all(cov == cov[:, :1])
    for s in np.asarray(starts.means, np.float64):
        # Well-separated clusters: each start finds every one.
        found = s[np.argsort(s[:, 0] + 2 * s[:, 1])]
        assert np.abs(found - means[np.argsort(means[:, 0] + 2 * means[:, 1])]).max() < 1.0, s


def test_spec_parsing():
    spec = make_mv_spec(MultivariateParams(False, [True, False], False), 2, "diag")
    assert spec == MvSpec((False, False), (True, False), (False, False), "diag")
    assert make_mv_spec("covariances", 2).fixed_covariances == (True, True)
    with pytest.raises(ValueError, match="tied"):
        make_mv_spec(MultivariateParams(False, False, [True, False]), 2, "tied")
    with pytest.raises(ValueError, match="covariance_type"):
        make_mv_spec((), 2, "VVV")
    with pytest.raises(ValueError, match="unknown"):
        make_mv_spec("scales", 2)
    with pytest.raises(ValueError, match="shape"):
        make_mv_spec(MultivariateParams(False, [True], False), 2)
    with pytest.raises(TypeError):
        make_mv_spec(MultivariateParams(0, False, False), 2)
