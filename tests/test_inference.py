"""Observed-information standard errors, intervals, AIC/BIC and the choice of K.

The standard errors are checked against an independent computation: a central
finite-difference Hessian of the float64 NumPy reference log-likelihood
(``tests/reference.py``) at the reference MLE, inverted and mapped to every
weight by the delta method.  The test parametrises the weights by dropping the
*first* free weight (the library drops the last): the standard errors do not
depend on that choice, so agreement also checks the constraint handling.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference
from conftest import DTYPE, EPS, rtol_for

M = jaxgmm.MixtureParams


def _petal_length():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    return np.asarray(sklearn_datasets.load_iris().data[:, 2], np.float64)  # 150 real measurements


def _textbook_data():
    rng = np.random.default_rng(20261126)
    z = rng.random(1000) < 0.2
    return np.where(z, rng.normal(0.0, 1.0, 1000), rng.normal(5.0, np.sqrt(2.0), 1000))


# (name, data, start, fixed masks as (w, m, s), equal_scales)
CASES = {
    "iris-free": (_petal_length, ([0.33, 0.67], [1.5, 4.9], [0.2, 0.8]), (None, None, None), False),
    "iris-equal-scales": (_petal_length, ([0.33, 0.67], [1.5, 4.9], [0.5, 0.5]), (None, None, None), True),
    "iris-3-one-weight-fixed": (_petal_length, ([1 / 3, 1 / 3, 1 / 3], [1.5, 4.3, 5.6], [0.2, 0.5, 0.5]),
                                ([True, False, False], [False, False, False], [False, False, False]), False),
    "textbook-scales-known": (_textbook_data, ([0.5, 0.5], [-1.0, 4.0], [1.0, np.sqrt(2.0)]),
                              (None, None, [True, True]), False),
    "textbook-mu1-known": (_textbook_data, ([0.5, 0.5], [0.0, 4.0], [1.0, 1.0]),
                           (None, [True, False], None), False),
}


def _masks(fixed, k):
    return [np.zeros(k, bool) if f is None else np.asarray(f, bool) for f in fixed]


def _fd_standard_errors(x, params, fixed, equal_scales):
    """Reference SEs: finite-difference Hessian in free coordinates, delta method to all entries."""
    w0, m0, s0 = (np.asarray(p, np.float64) for p in params)
    k = len(w0)
    fw, fm, fs = _masks(fixed, k)
    free_w = np.flatnonzero(~fw)
    coord_w = free_w[1:] if len(free_w) >= 2 else free_w[:0]  # drop the FIRST free weight
    coord_m = np.flatnonzero(~fm)
    coord_s = np.flatnonzero(~fs)[:1] if equal_scales else np.flatnonzero(~fs)
    sizes = [len(coord_w), len(coord_m), len(coord_s)]
    mass = 1.0 - w0[fw].sum()

    def build(theta):
        tw, tm, ts = np.split(theta, np.cumsum(sizes)[:-1])
        w, m, s = w0.copy(), m0.copy(), s0.copy()
        if len(free_w) >= 2:
            w[coord_w] = tw
            w[free_w[0]] = mass - tw.sum()
        m[coord_m] = tm
        if equal_scales:
            s[~fs] = ts[0]
        else:
            s[coord_s] = ts
        return np.concatenate([w, m, s])

    theta0 = np.concatenate([w0[coord_w], m0[coord_m], s0[coord_s]])
    f = lambda th: reference.loglik(x, *np.split(build(th), 3))
    p = len(theta0)
    h = 5e-5 * np.concatenate([np.ones(sizes[0]), np.full(sizes[1] + sizes[2], x.std())])
    hess = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            ei, ej = np.eye(p)[i] * h[i], np.eye(p)[j] * h[j]
            hess[i, j] = (f(theta0 + ei + ej) - f(theta0 + ei - ej)
                          - f(theta0 - ei + ej) + f(theta0 - ei - ej)) / (4 * h[i] * h[j])
    cov = np.linalg.inv(-hess)
    jac = np.empty((3 * k, p))  # build is affine: exact Jacobian by unit steps
    for i in range(p):
        jac[:, i] = build(theta0 + np.eye(p)[i]) - build(theta0)
    se = np.sqrt(np.diag(jac @ cov @ jac.T))
    # Relative error of the Hessian entries: rounding eps |f| / h^2 of the second
    # difference, plus truncation (h / smallest scale)^2.
    fd_err = (np.finfo(np.float64).eps * abs(f(theta0)) / np.min(h) ** 2 / np.min(np.abs(np.diag(hess)))
              + (np.max(h) / np.min(s0)) ** 2)
    return se.reshape(3, k), np.linalg.cond(hess), fd_err


SLOW_CASES = {"iris-equal-scales", "textbook-mu1-known"}  # same code paths, more compiles


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c
                                  for c in sorted(CASES)])
def test_standard_errors_match_finite_difference_hessian(case):
    load, start, fixed, equal = CASES[case]
    x = load()
    k = len(start[0])
    fw, fm, fs = _masks(fixed, k)
    # The estimate: the float64 reference MLE, rounded to the test dtype so that
    # both computations use the very same point.
    (w, m, s), _, _ = reference.em_fit(x, *start, fixed_w=fw, fixed_m=fm, fixed_s=fs,
                                       equal_scales=equal, tol=1e-8)
    est = M(*(np.asarray(jnp.asarray(v, DTYPE), np.float64) for v in (w, m, s)))
    xd = np.asarray(jnp.asarray(x, DTYPE), np.float64)
    want, cond, fd_err = _fd_standard_errors(xd, est, fixed, equal)
    got = jaxgmm.standard_errors(jnp.asarray(xd, DTYPE), M(*(jnp.asarray(v, DTYPE) for v in est)),
                                 fixed=M(fw, fm, fs), equal_scales=equal)
    got = np.stack([np.asarray(g, np.float64) for g in got])
    # Both Hessians carry relative errors (finite differences: fd_err; the
    # library's: rounding of a sum over n terms), which inverting the information
    # amplifies by its condition number.
    rtol = cond * (fd_err + rtol_for(len(x)))
    fixed_entries = np.stack([fw, fm, fs])
    assert np.all(got[fixed_entries] == 0.0)
    np.testing.assert_allclose(got[~fixed_entries], want[~fixed_entries], rtol=rtol)


def test_weight_constraint_and_covariance_structure():
    xn = _textbook_data()
    x = jnp.asarray(xn, DTYPE)
    mle, _, _ = reference.em_fit(xn, [0.5, 0.5], [-1.0, 4.0], [1.0, 2 ** 0.5], tol=1e-10)
    res = M(*(jnp.asarray(v, DTYPE) for v in mle))
    cov = np.asarray(jaxgmm.covariance(x, res), np.float64)
    se = jaxgmm.standard_errors(x, res)
    assert cov.shape == (6, 6)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e3 * EPS * np.abs(cov).max())
    # The weights sum to one: their covariance rows sum to zero, equal SEs for K = 2.
    np.testing.assert_allclose(cov[:2].sum(0), 0.0, atol=1e3 * EPS * np.abs(cov).max())
    assert float(se.weights[0]) == pytest.approx(float(se.weights[1]), rel=1e2 * EPS)
    # A single free weight is pinned by the constraint: SE 0, as for fixed entries.
    pinned = M([True, True, False], False, False)
    three, _, _ = reference.em_fit(xn, [0.1, 0.1, 0.8], [-1.0, 1.0, 5.0], [1.0, 1.0, 1.0],
                                   fixed_w=pinned.weights, tol=1e-10)
    se3 = jaxgmm.standard_errors(x, M(*(jnp.asarray(v, DTYPE) for v in three)), fixed=pinned)
    assert np.all(np.asarray(se3.weights) == 0.0)
    assert np.all(np.asarray(se3.means) > 0) and np.all(np.asarray(se3.scales) > 0)


def test_standard_errors_broadcast_jit_and_vmap():
    truth = M(jnp.asarray([0.2, 0.8], DTYPE), jnp.asarray([0.0, 5.0], DTYPE), jnp.asarray([1.0, 2 ** 0.5], DTYPE))
    x = jaxgmm.sample(jax.random.key(3), truth, 400, shape=(4,))
    # SEs are defined wherever the information is positive definite; near the
    # truth it is, so no fit is needed here. Four datasets, one parameter point,
    # observation weights 2 (which double the information: SEs shrink by sqrt(2)).
    weighted = jaxgmm.standard_errors(x, truth, fixed="scales", sample_weight=jnp.full((400,), 2.0, DTYPE))
    assert weighted.means.shape == (4, 2)
    per_dataset = M(*(jnp.broadcast_to(f, (4, 2)) for f in truth))
    vm = jax.jit(jax.vmap(lambda xi, pi: jaxgmm.standard_errors(xi, pi, fixed="scales")))(x, per_dataset)
    for f in range(3):
        np.testing.assert_allclose(np.asarray(weighted[f]) * np.sqrt(2), np.asarray(vm[f]), rtol=rtol_for(400))
    assert np.all(np.asarray(vm.means) > 0)


def test_standard_errors_nan_where_information_is_not_positive_definite():
    x = jnp.asarray(_textbook_data(), DTYPE)
    # Both components on top of each other: the means are not identified there.
    p = M(jnp.asarray([0.5, 0.5], DTYPE), jnp.full((2,), float(x.mean()), DTYPE), jnp.full((2,), float(x.std()), DTYPE))
    se = jaxgmm.standard_errors(x, p)
    assert np.all(np.isnan(np.asarray(se.means)))


def test_confidence_intervals_are_wald():
    est = M(jnp.asarray([0.2, 0.8]), jnp.asarray([0.0, 5.0]), jnp.asarray([1.0, 2.0]))
    se = M(jnp.asarray([0.01, 0.01]), jnp.asarray([0.1, 0.05]), jnp.asarray([0.0, 0.0]))
    lo, hi = jaxgmm.confidence_intervals(est, se, level=0.95)
    np.testing.assert_allclose(np.asarray(hi.means) - np.asarray(lo.means), 2 * 1.959963984540054 * np.asarray(se.means),
                               rtol=1e3 * EPS)
    np.testing.assert_array_equal(np.asarray(lo.scales), np.asarray(est.scales))
    with pytest.raises(ValueError, match="level"):
        jaxgmm.confidence_intervals(est, se, level=95)


@pytest.mark.parametrize("k, fixed, equal, expected", [
    (2, (), False, 5),
    (2, "scales", False, 3),                       # the textbook model
    (2, (), True, 4),
    (3, (), False, 8),
    (3, ("weights",), False, 6),
    (3, M([True, False, False], False, False), False, 7),
    (3, M([True, True, False], False, False), False, 6),
    (2, M(False, [True, False], False), False, 4),
    (4, "means", True, 4),
])
def test_n_parameters(k, fixed, equal, expected):
    assert jaxgmm.n_parameters(k, fixed=fixed, equal_scales=equal) == expected


@pytest.mark.parametrize("kind", ["full", "diag", "spherical", "tied"])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_multivariate_n_parameters_are_the_covariance_types_counts(kind, dim):
    k = 3
    per_cov = {"full": dim * (dim + 1) // 2, "diag": dim, "spherical": 1, "tied": dim * (dim + 1) // 2}[kind]
    covs = per_cov if kind == "tied" else k * per_cov  # one shared matrix, or one per component
    assert jaxgmm.n_parameters(k, covariance_type=kind, n_features=dim) == (k - 1) + k * dim + covs
    # Fixed entries do not count: known covariances leave weights and means; one known mean less.
    assert jaxgmm.n_parameters(k, covariance_type=kind, n_features=dim, fixed="covariances") == (k - 1) + k * dim
    held = jaxgmm.MultivariateParams(False, [True, False, False], False)
    assert jaxgmm.n_parameters(k, covariance_type=kind, n_features=dim, fixed=held) == (k - 1) + (k - 1) * dim + covs


def test_multivariate_n_parameters_need_both_the_type_and_the_dimension():
    with pytest.raises(ValueError, match="both covariance_type and n_features"):
        jaxgmm.n_parameters(2, covariance_type="full")
    with pytest.raises(ValueError, match="both covariance_type and n_features"):
        jaxgmm.n_parameters(2, n_features=3)
    with pytest.raises(ValueError, match="n_features must be an integer >= 1"):
        jaxgmm.n_parameters(2, covariance_type="diag", n_features=0)
    with pytest.raises(ValueError, match="covariance_type"):
        jaxgmm.n_parameters(2, covariance_type="banded", n_features=2)
    with pytest.raises(ValueError, match="equal_scales"):
        jaxgmm.n_parameters(2, covariance_type="full", n_features=2, equal_scales=True)


def test_aic_bic_and_select_components():
    x = jnp.asarray(_textbook_data(), DTYPE)
    choice = jaxgmm.select_components(jax.random.key(0), x, 2, n_starts=3, method="quantile")
    assert choice.n_components == (1, 2) and choice.n_params == (2, 5)
    ll = np.asarray(choice.loglik, np.float64)
    np.testing.assert_allclose(np.asarray(choice.aic), 2 * np.array([2, 5]) - 2 * ll, rtol=rtol_for(10))
    np.testing.assert_allclose(np.asarray(choice.bic), np.array([2, 5]) * np.log(1000) - 2 * ll, rtol=rtol_for(10))
    assert ll[1] > ll[0] + 50  # two well separated components
    assert int(choice.best_bic) == 2
    assert float(jaxgmm.aic(choice.results[1], 5)) == pytest.approx(float(choice.aic[1]))
    # The one-component fit is the sample mean and SD.
    one = choice.results[0].params
    assert float(one.means[0]) == pytest.approx(float(x.mean()), rel=1e2 * EPS, abs=1e2 * EPS)


def test_one_component_standard_errors_are_the_textbook_formulas():
    # K = 1: the MLE is the sample mean and the (1/n) SD, with observed-information
    # SEs sd / sqrt(n) and sd / sqrt(2 n) exactly; the single weight is pinned.
    xn = _textbook_data()
    n, mean, sd = len(xn), xn.mean(), xn.std()
    x = jnp.asarray(xn, DTYPE)
    se = jaxgmm.standard_errors(x, M(jnp.ones(1, DTYPE), jnp.asarray([mean], DTYPE), jnp.asarray([sd], DTYPE)))
    assert float(se.weights[0]) == 0.0
    assert float(se.means[0]) == pytest.approx(sd / np.sqrt(n), rel=rtol_for(n))
    assert float(se.scales[0]) == pytest.approx(sd / np.sqrt(2 * n), rel=rtol_for(n))


@pytest.mark.parametrize("scale", [1e-20, 1e18])
def test_starts_and_standard_errors_follow_the_data_scale(scale):
    # On a scale far from 1 for float32, squared deviations underflow (1e-20:
    # starts fell back to an absolute scale of 0.5, standard errors to 0) or sums
    # of squares overflow (1e18: infinite starting scales).  Both are computed
    # on the data mapped to order one, so they must be those of the unscaled
    # data, scaled, up to the rounding of the data themselves.
    x1 = jnp.asarray(_textbook_data(), DTYPE)
    x = jnp.asarray(_textbook_data() * scale, DTYPE)
    units = M(1.0, scale, scale)
    key = jax.random.key(0)
    for method in ("quantile", "kmeans++"):
        starts = jaxgmm.init_params(key, x, 2, method=method, n_starts=4)
        starts1 = jaxgmm.init_params(key, x1, 2, method=method, n_starts=4)
        for got, want, unit in zip(starts, starts1, units):
            assert np.all(np.isfinite(np.asarray(got)))
            np.testing.assert_allclose(np.asarray(got) / unit, np.asarray(want), rtol=rtol_for(x.size))
    fit1 = jaxgmm.fit(x1, M(*(jnp.asarray(v, DTYPE) for v in ([0.5, 0.5], [-1.0, 4.0], [1.0, 1.0]))))
    params = M(*(f * u for f, u in zip(fit1.params, units)))
    se = jaxgmm.standard_errors(x, params)
    se1 = jaxgmm.standard_errors(x1, fit1)
    for got, want, unit in zip(se, se1, units):
        assert np.all(np.asarray(want) > 0)
        np.testing.assert_allclose(np.asarray(got) / unit, np.asarray(want), rtol=rtol_for(x.size))


@pytest.mark.parametrize("value", [0.0, 7e-30, 3.0, 1e30])
def test_starts_of_constant_data_have_positive_scales(value):
    # Mapped to order one, constant data are 0 or rounding noise about it: that
    # noise must not become a starting scale (for 7e-30 it mapped back to 0,
    # which fit rejects).
    x = jnp.full((200,), value, DTYPE)
    for method in ("quantile", "kmeans++"):
        starts = jaxgmm.init_params(jax.random.key(0), x, 2, method=method, n_starts=2)
        scales = np.asarray(starts.scales)
        assert np.all(np.isfinite(scales) & (scales > 0)), (method, scales)
        first = jax.tree_util.tree_map(lambda f: f[0], starts)
        assert int(jaxgmm.fit(x, first).status) == jaxgmm.Status.DEGENERATE


def _numpy_icl(x, params, n_params):
    """ICL from the equations in float64 NumPy: BIC - 2 sum_i log max_k t_ik."""
    x = np.asarray(x, np.float64)
    w, m, s = (np.asarray(f, np.float64) for f in params)
    logj = np.log(w) - np.log(s) - 0.5 * np.log(2 * np.pi) - 0.5 * ((x[:, None] - m) / s) ** 2
    top = logj.max(axis=1)
    lse = top + np.log(np.exp(logj - top[:, None]).sum(axis=1))
    ll = lse.sum()
    return n_params * np.log(x.size) - 2 * ll - 2 * np.sum(top - lse)


def test_icl_is_bic_plus_the_classification_entropy():
    x = jnp.asarray(_textbook_data(), DTYPE)
    choice = jaxgmm.select_components(jax.random.key(0), x, 2, n_starts=3, method="quantile")
    assert choice.icl.shape == (2,) and choice.n_starts == (3, 3)
    for k, res in zip((1, 2), choice.results):
        expected = _numpy_icl(x, res.params, choice.n_params[k - 1])
        np.testing.assert_allclose(float(choice.icl[k - 1]), expected, rtol=rtol_for(1000))
        np.testing.assert_allclose(float(jaxgmm.icl(x, res)), expected, rtol=rtol_for(1000))
    # One component: every t_i1 = 1, so ICL = BIC; two overlapping ones: ICL > BIC.
    np.testing.assert_allclose(float(choice.icl[0]), float(choice.bic[0]), rtol=rtol_for(10))
    assert float(choice.icl[1]) > float(choice.bic[1]) + 1.0
    assert int(choice.best_icl) == 2  # well separated: the entropy term is small next to the fit's gain


def test_icl_with_sample_weights_is_icl_of_repeated_data():
    xn = _textbook_data()[:200]
    x = jnp.asarray(xn, DTYPE)
    res = jaxgmm.best_of(jaxgmm.fit(x, jaxgmm.init_params(jax.random.key(0), x, 2, n_starts=3)))
    twice = jaxgmm.icl(jnp.concatenate([x, x]), res.params, 5)
    weighted = jaxgmm.icl(x, res.params, 5, sample_weight=jnp.full((200,), 2.0, DTYPE))
    np.testing.assert_allclose(float(weighted), float(twice), rtol=rtol_for(400))


GALAXIES = os.path.join(os.path.dirname(__file__), "data", "galaxies.csv")


@pytest.mark.slow
def test_select_components_default_starts_find_galaxies_maxima():
    # MASS::galaxies (82 velocities, km/s).  The reference maxima: the best of
    # 400 k-means++ and 400 quantile starts per K.  The default starts (20 K)
    # must reach them, for several keys, to the stopping error.
    x = jnp.asarray(np.loadtxt(GALAXIES), DTYPE)
    ref = []
    for k in range(1, 6):
        best = -np.inf
        for method in ("kmeans++", "quantile"):
            st = jaxgmm.init_params(jax.random.key(100 + k), x, k, method=method, n_starts=400)
            best = max(best, float(jaxgmm.best_of(jaxgmm.fit(x, st)).loglik))
        ref.append(best)
    tol = 1e-3 if DTYPE == jnp.float32 else 1e-5
    for seed in range(3):
        choice = jaxgmm.select_components(jax.random.key(seed), x, 5)
        assert choice.n_starts == (20, 40, 60, 80, 100)
        got = np.asarray(choice.loglik, np.float64)
        assert np.all(got >= np.array(ref) - tol), (seed, got, ref)
