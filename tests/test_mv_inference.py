"""Observed-information inference for multivariate mixtures (issue 18).

The standard errors are checked against an independent computation: a central
finite-difference Hessian of the float64 NumPy log-likelihood
(``tests/mv_reference.py``: ``slogdet`` and ``solve``, no Cholesky factors, no
standardisation) in coordinates written here from the definitions, inverted and
mapped to every entry by the (exact, affine) Jacobian.  As in
``tests/test_inference.py`` the weights drop the *first* free weight (the
library drops the last) and covariances are parametrised by their *upper*
triangle (the library: the lower one): the standard errors of the entries do
not depend on those choices, so agreement also checks the constraint handling.

Tolerances.  The finite-difference Hessian is Richardson-extrapolated from
steps ``h``, ``2 h``, ``4 h`` (``h`` = 1e-3 of each coordinate's natural unit);
its error is estimated from the data (truncation: the change between the
extrapolations from ``h`` and ``2 h``, over 15) plus rounding of the float64
log-likelihood over ``h^2``; about 1e-7.  The library's Hessian is a sum of
``n`` per-point terms, rounded like any such sum (``rtol_for(n)``, 4e-5 in
float32 for n = 400).  Inverting the information amplifies relative errors of
its (Jacobi-scaled) entries by at most its condition number, so the standard
errors must agree to ``cond * (fd_err + rtol_for(n))``: 1e-4 to 1e-3 in float32,
1e-7 to 1e-6 with x64 (the finite differences' own error dominates there).
Measured: 1e-7 to 6e-7 in float32, 1e-9 with x64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import mv_reference
import reference
from conftest import DTYPE, EPS, rtol_for
from jaxgmm import FitResult, MixtureParams, MultivariateParams
from jaxgmm._mv_params import make_mv_spec

MV = MultivariateParams
EPS64 = np.finfo(np.float64).eps

# Two components in 3-D, correlated, with dimensions in units far apart.
TRUTH_3D = (np.array([0.4, 0.6]),
            np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0]]),
            np.array([[[1.0, 0.5, 0.2], [0.5, 2.0, 0.3], [0.2, 0.3, 0.5]],
                      [[1.5, -0.4, 0.0], [-0.4, 1.0, 0.2], [0.0, 0.2, 0.8]]]))
UNITS_3D = (np.array([1.0, 100.0, 0.01]), np.array([0.0, 50.0, -3.0]))  # scale, offset per dimension

# Three components in 2-D, for the weight constraints.
TRUTH_2D = (np.array([0.3, 0.3, 0.4]),
            np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 4.0]]),
            np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.7, -0.2], [-0.2, 1.2]], [[1.0, 0.0], [0.0, 1.0]]]))


def _draw(truth, n, seed, units=None):
    """``n`` draws of the mixture ``truth`` (float64), in ``units`` (scale, offset) if given."""
    w, m, c = truth
    rng = np.random.default_rng(seed)
    count = rng.multinomial(n, w)
    z = np.concatenate([rng.multivariate_normal(m[j], c[j], size=count[j]) for j in range(len(w))])
    z = z[rng.permutation(n)]
    if units is not None:
        z = z * units[0] + units[1]
    return z


def _in_units(truth, units):
    w, m, c = truth
    s, o = units
    return w, m * s + o, c * s[:, None] * s[None, :]


def _structured(c, kind):
    """Covariances ``(K, D, D)`` turned into a point of the covariance type's model."""
    if kind == "diag":
        return np.stack([np.diag(np.diag(cj)) for cj in c])
    if kind == "spherical":
        return np.stack([np.mean(np.diag(cj)) * np.eye(c.shape[-1]) for cj in c])
    if kind == "tied":
        return np.broadcast_to(c.mean(0), c.shape).copy()
    return c


def _estimate(x, truth, kind, n_iter=60):
    """The float64 reference EM from the truth (near the MLE), rounded to the test
    dtype, so that the library and the reference use the very same point."""
    w, m, c = truth
    (w, m, c), _ = mv_reference.em_iterations(x, w, m, _structured(c, kind), n_iter, covariance_type=kind)
    c = 0.5 * (c + np.swapaxes(c, -1, -2))
    return tuple(np.asarray(jnp.asarray(f, DTYPE), np.float64) for f in (w, m, c))


def _as_test_dtype(x):
    return np.asarray(jnp.asarray(x, DTYPE), np.float64)


def _jax_params(est):
    return MV(*(jnp.asarray(f, DTYPE) for f in est))


def _masks(fixed, k):
    if fixed is None:
        return np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, bool)
    if isinstance(fixed, str):
        fixed = (fixed,)
    if isinstance(fixed, tuple) and all(isinstance(f, str) for f in fixed):
        return tuple(np.full(k, name in fixed) for name in MV._fields)
    return tuple(np.broadcast_to(np.asarray(f, bool), (k,)).copy() for f in fixed)


def _fd_reference(x, est, kind, fixed=None, sample_weight=None):
    """Reference standard errors of every entry ``(P,)`` in
    ``concatenate([weights, means.ravel(), covariances.ravel()])`` order, the
    condition number of the Jacobi-scaled information, and the finite
    differences' relative error."""
    w0, m0, c0 = (np.array(f, np.float64) for f in est)
    k, dim = m0.shape
    fw, fm, fc = _masks(fixed, k)
    free_w = np.flatnonzero(~fw)
    coord_w = list(free_w[1:]) if len(free_w) >= 2 else []  # drop the FIRST free weight
    mass = 1.0 - w0[fw].sum()
    coord_m = [(j, d) for j in np.flatnonzero(~fm) for d in range(dim)]
    free_c = list(np.flatnonzero(~fc))
    upper = [(d, e) for d in range(dim) for e in range(d, dim)]
    if kind == "full":
        coord_c = [([j], d, e) for j in free_c for d, e in upper]
    elif kind == "tied":
        coord_c = [(free_c, d, e) for d, e in upper] if free_c else []
    elif kind == "diag":
        coord_c = [([j], d, d) for j in free_c for d in range(dim)]
    else:  # spherical: one variance sets the whole diagonal
        coord_c = [([j], None, None) for j in free_c]

    def build(theta):
        w, m, c = w0.copy(), m0.copy(), c0.copy()
        it = iter(theta)
        if coord_w:
            for j in coord_w:
                w[j] = next(it)
            w[free_w[0]] = mass - w[coord_w].sum()
        for j, d in coord_m:
            m[j, d] = next(it)
        for comps, d, e in coord_c:
            v = next(it)
            for j in comps:
                if d is None:
                    c[j][np.diag_indices(dim)] = v
                else:
                    c[j, d, e] = c[j, e, d] = v
        return w, m, c

    flat = lambda p: np.concatenate([p[0], p[1].ravel(), p[2].ravel()])
    theta0 = np.array([w0[j] for j in coord_w] + [m0[j, d] for j, d in coord_m]
                      + [c0[comps[0], d, e] if d is not None else c0[comps[0], 0, 0] for comps, d, e in coord_c])
    # Natural unit of each coordinate: a weight's size, a component's sd, a
    # covariance entry's sd product (finite differences relative to those).
    unit = np.array([w0[j] for j in coord_w] + [np.sqrt(c0[j, d, d]) for j, d in coord_m]
                    + [np.sqrt(c0[cs[0], d, d] * c0[cs[0], e, e]) if d is not None else c0[cs[0], 0, 0]
                       for cs, d, e in coord_c])
    p = len(theta0)
    size = k + k * dim + k * dim * dim
    if p == 0:
        return np.zeros(size), 1.0, 0.0
    f = lambda th: mv_reference.loglik(x, *build(th), sample_weight)

    def hessian(h):
        hess = np.empty((p, p))
        for i in range(p):
            for j in range(i + 1):
                ei, ej = np.eye(p)[i] * h[i], np.eye(p)[j] * h[j]
                hess[i, j] = hess[j, i] = (f(theta0 + ei + ej) - f(theta0 + ei - ej)
                                           - f(theta0 - ei + ej) + f(theta0 - ei - ej)) / (4 * h[i] * h[j])
        return hess

    # Steps h, 2 h and 4 h, extrapolated (Richardson: the central difference's
    # error is c h^2 + O(h^4), so R(h) = (4 H(h) - H(2 h)) / 3 is O(h^4), and its
    # error is estimated as |R(2 h) - R(h)| / 15), plus rounding: the loglik's
    # (eps |f| per term, growing like sqrt(n) over the sum) over h^2; both in
    # the entries scaled by the information's diagonal.  With h = 1e-3 natural
    # units both are near 1e-8.
    step = 1e-3
    # Steps that are exact differences of floats (a mean at 1e4 plus 1e-5 is
    # not 1e-5 above it to the last bit).
    exact = lambda h: (theta0 + h) - theta0
    hess_h, hess_2h, hess_4h = (hessian(exact(m * step * unit)) for m in (1, 2, 4))
    hess, coarse = (4 * hess_h - hess_2h) / 3, (4 * hess_2h - hess_4h) / 3
    scale = 1.0 / np.sqrt(np.abs(np.diag(hess)))
    scaled = lambda a: a * scale[:, None] * scale[None, :]
    truncation = np.max(np.abs(scaled(coarse - hess))) / 15.0
    rounding = 2 * EPS64 * np.sqrt(len(x)) * abs(f(theta0)) / np.min(np.abs(np.diag(hess)) * (step * unit) ** 2)
    jac = np.stack([flat(build(np.eye(p)[i])) - flat(build(np.zeros(p))) for i in range(p)], axis=1)
    cov = jac @ np.linalg.inv(-hess) @ jac.T
    return np.sqrt(np.diag(cov)), np.linalg.cond(scaled(-hess)), truncation + rounding


def _flat(se):
    return np.concatenate([np.asarray(se.weights, np.float64).ravel(), np.asarray(se.means, np.float64).ravel(),
                           np.asarray(se.covariances, np.float64).ravel()])


def _known(kind, k, dim, fixed=None):
    """Entries the model does not estimate: fixed ones, a pinned weight, the
    off-diagonals of the diagonal models (from the definitions, not the library)."""
    fw, fm, fc = _masks(fixed, k)
    pinned = (~fw).sum() < 2
    cw = fw | pinned
    cm = np.repeat(fm[:, None], dim, axis=1)
    cc = np.repeat(fc[:, None, None], dim, axis=1).repeat(dim, axis=2)
    if kind in ("diag", "spherical"):
        cc = cc | ~np.eye(dim, dtype=bool)[None]
    return np.concatenate([cw, cm.ravel(), cc.ravel()])


def _check_against_reference(x, est, kind, fixed=None):
    """The library's standard errors against :func:`_fd_reference`; returns them
    (flattened) and the tolerance used."""
    k, dim = est[1].shape
    want, cond, fd_err = _fd_reference(x, est, kind, fixed)
    by_name = fixed is None or isinstance(fixed, str) or all(isinstance(f, str) for f in fixed)
    got = jaxgmm.standard_errors(jnp.asarray(x, DTYPE), _jax_params(est), fixed=fixed if by_name else MV(*fixed),
                                 covariance_type=kind)
    assert got.covariances.shape == est[2].shape and got.means.shape == est[1].shape
    got = _flat(got)
    known = _known(kind, k, dim, fixed)
    assert np.all(got[known] == 0.0)
    assert np.all(want[~known] > 0)
    rtol = cond * (fd_err + rtol_for(len(x)))
    np.testing.assert_allclose(got[~known], want[~known], rtol=rtol)
    return got, rtol


@pytest.fixture(scope="module")
def data_3d():
    return _as_test_dtype(_draw(TRUTH_3D, 400, 1, UNITS_3D))


@pytest.fixture(scope="module")
def data_2d():
    return _as_test_dtype(_draw(TRUTH_2D, 450, 2))


# (a) -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "diag", "spherical", "tied"])
def test_standard_errors_match_finite_difference_hessian(kind, data_3d):
    # Spherical models are not invariant under scaling dimensions apart: their
    # data keep one unit for all.
    if kind == "spherical":
        x, truth = _as_test_dtype(_draw(TRUTH_3D, 400, 1)), TRUTH_3D
    else:
        x, truth = data_3d, _in_units(TRUTH_3D, UNITS_3D)
    est = _estimate(x, truth, kind)
    se, _ = _check_against_reference(x, est, kind)
    se = MV(*(np.asarray(f) for f in jaxgmm.standard_errors(jnp.asarray(x, DTYPE), _jax_params(est),
                                                               covariance_type=kind)))
    # The structure: symmetric entries share their SE, a tied model repeats it.
    np.testing.assert_array_equal(se.covariances, np.swapaxes(se.covariances, -1, -2))
    if kind == "tied":
        np.testing.assert_array_equal(se.covariances[0], se.covariances[1])
    # covariance(): the same numbers, (P, P), symmetric, the weights' rows summing to 0.
    cov = np.asarray(jaxgmm.covariance(jnp.asarray(x, DTYPE), _jax_params(est), covariance_type=kind), np.float64)
    assert cov.shape == (26, 26)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), _flat(se), rtol=16 * EPS)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=16 * EPS * np.abs(cov).max())
    # The weights' rows: a sum of two entries of size |cov[0,0]| rounds to eps of it.
    np.testing.assert_allclose(cov[:2].sum(0), 0.0, atol=16 * EPS * np.abs(cov[:2]).max())


# (b) -------------------------------------------------------------------------
FIXED_CASES = {
    # name: (data fixture, truth, covariance type, fixed)
    "full-one-mean-one-covariance": ("data_3d", "3d", "full", ([False, False], [True, False], [False, True])),
    "diag-one-of-three-weights": ("data_2d", "2d", "diag", ([True, False, False], False, False)),
    "tied-covariance-known": ("data_3d", "3d", "tied", "covariances"),
    # One of two weights known: the other is pinned (1 minus it), not estimated.
    "spherical-pinned-weight-one-mean": ("data_3d", "3d", "spherical", ([True, False], [False, True], False)),
    "full-everything-known": ("data_2d", "2d", "full", ("weights", "means", "covariances")),
}


@pytest.mark.parametrize("case", sorted(FIXED_CASES))
def test_fixed_entries_are_zero_and_the_rest_match(case, request):
    data, truth, kind, fixed = FIXED_CASES[case]
    x = request.getfixturevalue(data)
    truth = _in_units(TRUTH_3D, UNITS_3D) if truth == "3d" else TRUTH_2D
    if kind == "spherical":  # one unit for all dimensions, as in the test above
        x, truth = _as_test_dtype(_draw(TRUTH_3D, 400, 1)), TRUTH_3D
    est = _estimate(x, truth, kind)
    got, _ = _check_against_reference(x, est, kind, fixed)
    if case == "full-everything-known":
        assert np.all(got == 0.0)
    if "pinned" in case:
        assert np.all(got[:2] == 0.0)


# (c) -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "tied"])
def test_one_dimension_agrees_with_the_univariate_standard_errors(kind):
    # D = 1: "full" is the univariate model, "tied" its equal_scales.  The
    # univariate SE is for the scale sigma, the multivariate one for the variance
    # v = sigma^2; by the delta method se(v) = 2 sigma se(sigma), exactly at a
    # maximum.  Elsewhere the information in v gains the term g sigma''(v) (g the
    # gradient in sigma), relative to it |g| sigma / (2 n_k) (Fisher's
    # information 2 n_k / sigma^2 with n_k = n pi_k observations): the rounded
    # reference MLE is a maximum to that.
    equal = kind == "tied"
    rng = np.random.default_rng(3)
    xn = _as_test_dtype(np.concatenate([rng.normal(0.0, 1.0, 150), rng.normal(4.0, 1.5, 250)]))
    (w, m, s), _, _ = reference.em_fit(xn, [0.4, 0.6], [0.0, 4.0], [1.0, 1.5], equal_scales=equal)
    w, m, s = (_as_test_dtype(f) for f in (w, m, s))
    resp, _ = reference.e_step(xn, w, m, s)
    grad = np.sum(resp * (((xn[:, None] - m) / s) ** 2 - 1) / s, axis=0)  # d loglik / d sigma_k
    n_k = len(xn) * w
    off_maximum = abs(grad.sum()) * s[0] / (2 * len(xn)) if equal else np.max(np.abs(grad) * s / (2 * n_k))
    x = jnp.asarray(xn, DTYPE)
    uni = jaxgmm.standard_errors(x, MixtureParams(*(jnp.asarray(f, DTYPE) for f in (w, m, s))), equal_scales=equal)
    var = _as_test_dtype(s ** 2)
    mv = jaxgmm.standard_errors(x[:, None], MV(jnp.asarray(w, DTYPE), jnp.asarray(m[:, None], DTYPE),
                                               jnp.asarray(var[:, None, None], DTYPE)), covariance_type=kind)
    _, cond, _ = _fd_reference(xn[:, None], (w, m[:, None], var[:, None, None]), kind)
    rtol = cond * (4 * rtol_for(len(xn)) + off_maximum)  # two library Hessians, each rounded over n terms
    np.testing.assert_allclose(np.asarray(mv.weights), np.asarray(uni.weights), rtol=rtol)
    np.testing.assert_allclose(np.asarray(mv.means)[:, 0], np.asarray(uni.means), rtol=rtol)
    np.testing.assert_allclose(np.asarray(mv.covariances)[:, 0, 0], 2 * s * np.asarray(uni.scales), rtol=rtol)


# (d) -------------------------------------------------------------------------
def _coordinate_condition(cov, k, dim):
    """Condition number of the (Jacobi-scaled) covariance of a full model's
    coordinates: the first K - 1 weights, the means, the lower triangles."""
    lower = [k + k * dim + (j * dim + d) * dim + e for j in range(k) for d in range(dim) for e in range(d + 1)]
    idx = list(range(k - 1)) + list(range(k, k + k * dim)) + lower
    c = cov[np.ix_(idx, idx)]
    sd = np.sqrt(np.diag(c))
    return np.linalg.cond(c / sd[:, None] / sd[None, :])


def _check_batch(xs, truth, indices):
    batch = jaxgmm.standard_errors(xs, truth)
    assert batch.covariances.shape == (len(xs), 3, 2, 2)
    # The two computations round differently (batched or not); inverting the
    # information amplifies that by its condition number.
    cond = _coordinate_condition(np.asarray(jaxgmm.covariance(xs[0], truth), np.float64), 3, 2)
    rtol = cond * rtol_for(xs.shape[-2])
    for b in indices:
        one = jaxgmm.standard_errors(xs[b], truth)
        np.testing.assert_allclose(_flat(MV(*(f[b] for f in batch))), _flat(one), rtol=rtol)
    return batch, rtol


def test_batch_equals_one_at_a_time_broadcasts_jits_and_vmaps():
    # Near the truth the information is positive definite: no fit needed.
    truth = MV(*(jnp.asarray(f, DTYPE) for f in TRUTH_2D))
    n = 450  # the length of data_2d: the one-dataset program is shared with other tests
    xs = jnp.asarray(np.stack([_draw(TRUTH_2D, n, 20 + b) for b in range(3)]), DTYPE)
    batch, rtol = _check_batch(xs, truth, range(3))
    # One dataset, two parameter points on a leading axis, under jit and vmap;
    # weights 2 double the information (SEs shrink by sqrt 2).
    two = MV(*(jnp.stack([f, f]) for f in truth))
    w2 = jnp.full((n,), 2.0, DTYPE)
    vm = jax.jit(jax.vmap(lambda p: jaxgmm.standard_errors(xs[0], p, sample_weight=w2)))(two)
    assert vm.means.shape == (2, 3, 2)
    np.testing.assert_allclose(_flat(MV(*(f[1] for f in vm))) * np.sqrt(2.0), _flat(MV(*(f[0] for f in batch))),
                               rtol=rtol)


@pytest.mark.slow  # two programs and 10 x 16384 points: ~13 s on a loaded 2-core machine
def test_batches_in_blocks_equal_one_at_a_time():
    # Long datasets make cache-sized blocks of 8 datasets, so a batch of 10
    # takes two blocks, the second shifted back to end at the last dataset.
    truth = MV(*(jnp.asarray(f, DTYPE) for f in TRUTH_2D))
    xs = jnp.asarray(np.stack([_draw(TRUTH_2D, 2 ** 14, 30 + b) for b in range(10)]), DTYPE)
    _check_batch(xs, truth, (0, 7, 8, 9))


# (e) -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "spherical"])
def test_data_far_from_zero_and_tiny_in_scale(kind):
    # Offset 1e4, spread 1e-2: float32 holds these data to 1e-3, a tenth of
    # their spread (that is the data), and a Hessian on the data as given would
    # lose the rest; standardised, it is as accurate as for data of order one.
    # Compared with the float64 reference on the very same (rounded) data and
    # estimate; the bound itself must be ~1e-3 or better in float32.
    units = (np.full(2, 1e-2), np.full(2, 1e4))
    truth = (TRUTH_2D[0][:2] / TRUTH_2D[0][:2].sum(), TRUTH_2D[1][:2], TRUTH_2D[2][:2])
    x = _as_test_dtype(_draw(truth, 400, 5, units))
    est = _estimate(x, _in_units(truth, units), kind)
    _, rtol = _check_against_reference(x, est, kind)
    assert rtol < (3e-3 if DTYPE == jnp.float32 else 1e-5)


# (f) -------------------------------------------------------------------------
def test_not_a_maximum_gives_nan_not_an_exception(data_2d):
    x = jnp.asarray(data_2d, DTYPE)
    # Both components at the data's mean and covariance: moving the means apart
    # raises the likelihood of clustered data, so -H is not positive definite.
    mean, cov = data_2d.mean(0), np.cov(data_2d.T, bias=True)
    same = MV(jnp.full((3,), 1 / 3, DTYPE), jnp.asarray(np.stack([mean] * 3), DTYPE),
              jnp.asarray(np.stack([np.diag(np.diag(cov))] * 3), DTYPE))
    se = _flat(jaxgmm.standard_errors(x, same, covariance_type="diag"))
    known = _known("diag", 3, 2)
    assert np.all(np.isnan(se[~known])) and np.all(se[known] == 0.0)
    # An emptied component (weight 0): NaN as well.
    est = _estimate(data_2d, TRUTH_2D, "full")
    empty = MV(jnp.asarray([0.0, 0.5, 0.5], DTYPE), *(jnp.asarray(f, DTYPE) for f in est[1:]))
    assert np.all(np.isnan(np.asarray(jaxgmm.standard_errors(x, empty).means)))


# (g) -------------------------------------------------------------------------
def _numpy_icl(x, est, n_params, sample_weight=None):
    """ICL from the equations in float64 NumPy: BIC - 2 sum_i w_i log max_k t_ik."""
    resp, ll = mv_reference.e_step(x, *est, sample_weight)
    w = np.ones(len(x)) if sample_weight is None else sample_weight
    return n_params * np.log(w.sum()) - 2 * ll - 2 * np.sum(w * np.log(resp.max(axis=1))), ll


def test_icl_matches_numpy(data_2d):
    est = _estimate(data_2d, TRUTH_2D, "diag")
    params = _jax_params(est)
    x = jnp.asarray(data_2d, DTYPE)
    p = jaxgmm.n_parameters(3, covariance_type="diag", n_features=2)
    want, ll = _numpy_icl(data_2d, est, p)
    rtol = rtol_for(len(data_2d))
    np.testing.assert_allclose(float(jaxgmm.icl(x, params, p)), want, rtol=rtol)
    # A FitResult counts its parameters from its model and uses its loglik.
    result = FitResult(params, jnp.asarray(ll, DTYPE), jnp.asarray(5), jnp.asarray(0), jnp.asarray(True),
                       make_mv_spec((), 3, "diag"))
    np.testing.assert_allclose(float(jaxgmm.icl(x, result)), want, rtol=rtol)
    # Observation weights are repeated observations.
    w = np.where(np.arange(len(data_2d)) % 3 == 0, 2.0, 1.0)
    want_w, _ = _numpy_icl(data_2d, est, p, w)
    np.testing.assert_allclose(float(jaxgmm.icl(x, params, p, sample_weight=jnp.asarray(w, DTYPE))), want_w,
                               rtol=rtol)


def test_select_components_multivariate_errors(data_2d):
    key = jax.random.key(0)
    x = jnp.asarray(data_2d, DTYPE)
    with pytest.raises(ValueError, match=r"equal_scales=True applies to univariate.*'tied'"):
        jaxgmm.select_components(key, x, 2, covariance_type="full", equal_scales=True)
    with pytest.raises(ValueError, match=r"covariance_type must be one of"):
        jaxgmm.select_components(key, x, 2, covariance_type="banded")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n, D\)"):
        jaxgmm.select_components(key, x[:, 0], 2, covariance_type="full")
    with pytest.raises(ValueError, match=r"method='kmeans\+\+'"):
        jaxgmm.select_components(key, x, 2, covariance_type="diag", method="quantile", n_starts=1)
    with pytest.raises(TypeError, match=r"takes no fixed="):
        jaxgmm.select_components(key, x, 2, covariance_type="full", fixed="means")


@pytest.mark.slow  # three multivariate fit programs: ~30 s
def test_select_components_multivariate_picks_two_clusters():
    truth = (np.array([0.5, 0.5]), np.array([[0.0, 0.0], [5.0, 3.0]]),
             np.array([[[1.0, 0.4], [0.4, 1.0]], [[0.8, -0.2], [-0.2, 0.6]]]))
    xn = _as_test_dtype(_draw(truth, 300, 7))
    x = jnp.asarray(xn, DTYPE)
    choice = jaxgmm.select_components(jax.random.key(1), x, 3, n_starts=2, covariance_type="full")
    assert choice.n_params == tuple(jaxgmm.n_parameters(k, covariance_type="full", n_features=2) for k in (1, 2, 3))
    assert choice.n_params == (5, 11, 17)
    assert int(choice.best_bic) == 2 and int(choice.best_icl) == 2
    ll = np.asarray(choice.loglik, np.float64)
    np.testing.assert_allclose(np.asarray(choice.bic), np.array(choice.n_params) * np.log(300) - 2 * ll,
                               rtol=rtol_for(10))
    two = choice.results[1]
    assert two.params.covariances.shape == (2, 2, 2) and two.model.covariance_type == "full"
    np.testing.assert_allclose(float(choice.icl[1]), float(jaxgmm.icl(x, two)), rtol=rtol_for(300))
    # Its standard errors: the result's model, finite and positive.
    se = jaxgmm.standard_errors(x, two)
    assert np.all(np.isfinite(_flat(se))) and np.all(np.asarray(se.means) > 0)


# (h) -------------------------------------------------------------------------
def test_clear_errors_for_bad_combinations(data_2d):
    x = jnp.asarray(data_2d, DTYPE)
    est = _jax_params(_estimate(data_2d, TRUTH_2D, "diag"))
    result = FitResult(est, jnp.asarray(0.0, DTYPE), jnp.asarray(5), jnp.asarray(0), jnp.asarray(True),
                       make_mv_spec(MV(False, [True, False, False], False), 3, "diag"))
    for func in (jaxgmm.standard_errors, jaxgmm.covariance):
        with pytest.raises(ValueError, match=r"equal_scales=False applies to univariate mixtures"):
            func(x, est, equal_scales=False)
    with pytest.raises(ValueError, match=r"covariance_type='full' contradicts the model the result was fitted "
                                         r"with \(fixed=MultivariateParams\(.*covariance_type='diag'\)"):
        jaxgmm.standard_errors(x, result, covariance_type="full")
    with pytest.raises(ValueError, match=r"fixed=\(\) contradicts the model"):
        jaxgmm.standard_errors(x, result, fixed=())
    with pytest.raises(ValueError, match=r"covariance_type must be one of"):
        jaxgmm.standard_errors(x, est, covariance_type="banded")
    # The result's model, or the same model repeated: the same numbers.
    own = _flat(jaxgmm.standard_errors(x, result))
    np.testing.assert_array_equal(own, _flat(jaxgmm.standard_errors(
        x, est, fixed=MV(False, [True, False, False], False), covariance_type="diag")))
    assert np.all(own[3:5] == 0.0)  # the known mean
    # The estimate must be a point of the model: full matrices are not diagonal.
    full = _jax_params(_estimate(data_2d, TRUTH_2D, "full"))
    with pytest.raises(ValueError, match=r"covariance_type='diag' needs params\.covariances that are diagonal"):
        jaxgmm.standard_errors(x, full, covariance_type="diag")
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n, 2\) for a MultivariateParams"):
        jaxgmm.standard_errors(x[:, 0], est)
    # covariance_type with a univariate estimate.
    uni = MixtureParams(jnp.asarray([0.5, 0.5]), jnp.asarray([0.0, 4.0]), jnp.asarray([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"covariance_type='full' applies to multivariate mixtures"):
        jaxgmm.standard_errors(x[:, 0], uni, covariance_type="full")
    # Intervals: elementwise Wald, se of the estimate's type and model.
    se = jaxgmm.standard_errors(x, result)
    lo, hi = jaxgmm.confidence_intervals(result, se, 0.9)
    z = 1.6448536269514722
    for f in range(3):
        np.testing.assert_allclose(np.asarray(hi[f]) - np.asarray(lo[f]), 2 * z * np.asarray(se[f]),
                                   rtol=1e3 * EPS, atol=1e3 * EPS * np.abs(np.asarray(est[f])).max())
    np.testing.assert_array_equal(np.asarray(lo.means)[0], np.asarray(est.means)[0])
    with pytest.raises(TypeError, match=r"se must be a jaxgmm\.MultivariateParams \(from standard_errors\)"):
        jaxgmm.confidence_intervals(est, MixtureParams(*se[:2], se.weights))
    with pytest.raises(ValueError, match=r"equal_scales=True applies to univariate"):
        jaxgmm.confidence_intervals(est, se, equal_scales=True)
    # se of the full model for the diagonal estimate: non-zero off-diagonals.
    se_full = jaxgmm.standard_errors(x, est, covariance_type="full")
    with pytest.raises(ValueError, match=r"se\.covariances is not 0 where the model .* fixes it"):
        jaxgmm.confidence_intervals(est, se_full, covariance_type="diag")
    with pytest.raises(ValueError, match=r"se\.means is not 0 where the model"):
        jaxgmm.confidence_intervals(result, jaxgmm.standard_errors(x, est, covariance_type="diag"))
