"""Robustness: bad input, degenerate fits and float32 numerics (issue 5).

Every row of ``docs/robustness.md`` names the test here that backs it.  The suite
runs in float32 (JAX's default) and with ``JAX_ENABLE_X64=1``; tolerances come
from the machine epsilon of the dtype under test, never from a random stream.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxgmm
import reference as ref
from conftest import DTYPE, EPS, X64, property_examples, rtol_for
from jaxgmm import MixtureParams, Status
from jaxgmm._fit import DEFAULT_SCALE_FLOOR
from jaxgmm._controls import default_tol
from jaxgmm._engine import solve

EPS32 = float(np.finfo(np.float32).eps)
FLOAT_DTYPES = [jnp.float32, jnp.float64] if X64 else [jnp.float32]

START = MixtureParams(weights=[0.4, 0.6], means=[-1.0, 2.0], scales=[1.0, 1.0])


def mixture_data(seed, n=200, shape=()):
    """Draws from 0.4 N(-1, 0.7^2) + 0.6 N(2, 1.2^2) as float64 NumPy."""
    rng = np.random.default_rng(seed)
    first = rng.random(shape + (n,)) < 0.4
    return np.where(first, rng.normal(-1.0, 0.7, shape + (n,)), rng.normal(2.0, 1.2, shape + (n,)))


def params_of(dtype, weights, means, scales):
    return MixtureParams(*(jnp.asarray(f, dtype) for f in (weights, means, scales)))


def finite(result):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(result.params)) and bool(
        jnp.all(jnp.isfinite(result.loglik)))


# ---------------------------------------------------------------------------
# The public boundary: concrete bad inputs raise, naming argument, expectation,
# what was found and (for batches) the offending dataset indices.
# ---------------------------------------------------------------------------

_X = mixture_data(0, 50)
_XB = mixture_data(1, 50, (4,))


def _with_nan(x, where, value=np.nan):
    x = np.array(x, copy=True)
    x[where] = value
    return x


def _sw(shape, **set_at):
    w = np.ones(shape)
    for value, where in set_at.get("values", []):
        w[where] = value
    return w


BAD_INPUTS = [
    # (id, call, exception type, regex the message must match)
    ("x-scalar", lambda: jaxgmm.fit(1.0, START), ValueError, r"x must have shape \(\.\.\., n\).*scalar"),
    ("x-batch-vs-init-batch", lambda: jaxgmm.fit(np.zeros((3, 10)), MixtureParams(
        np.full((2, 2), 0.5), np.zeros((2, 2)), np.ones((2, 2)))),
     ValueError, r"batch shapes do not broadcast.*x \(3,\), init \(2,\).*x \(3, 10\), init \(2, 2\)"),
    ("x-extra-axis", lambda: jaxgmm.fit(np.zeros((2, 3, 10)), MixtureParams(
        np.full((5, 2), 0.5), np.zeros((5, 2)), np.ones((5, 2)))),
     ValueError, r"batch shapes do not broadcast.*x \(2, 3\), init \(5,\)"),
    ("init-field-scalar", lambda: jaxgmm.fit(_X, MixtureParams(1.0, [0.0], [1.0])),
     ValueError, r"init\.weights must have shape \(\.\.\., K\), got a scalar"),
    ("init-K-mismatch", lambda: jaxgmm.fit(_X, MixtureParams([0.5, 0.5], [0.0, 1.0], [1.0, 1.0, 1.0])),
     ValueError, r"init fields disagree on the number of components K.*'means': \(2,\).*'scales': \(3,\)"),
    ("fixed-mask-wrong-K", lambda: jaxgmm.fit(_X, START, fixed=MixtureParams(False, [True, False, True], False)),
     ValueError, r"fixed\.means must be a bool or have shape \(2,\).*got shape \(3,\)"),
    ("sample-weight-wrong-n", lambda: jaxgmm.fit(_X, START, sample_weight=np.ones(49)),
     ValueError, r"sample_weight must have shape \(\.\.\., n\) with n=50.*got shape \(49,\)"),
    ("sample-weight-batch-mismatch", lambda: jaxgmm.fit(_XB, START, sample_weight=np.ones((3, 50))),
     ValueError, r"sample_weight batch shape \(3,\) does not broadcast with x batch shape \(4,\)"),
    ("x-strings", lambda: jaxgmm.fit(np.array(["a", "b", "c"]), START), TypeError, r"x must be numeric, got dtype <U1"),
    ("x-object-ragged", lambda: jaxgmm.fit([[1.0, 2.0], [3.0]], START), TypeError, r"x must be a numeric array"),
    ("x-complex", lambda: jaxgmm.fit(_X + 1j, START), TypeError, r"x must be real-valued, got complex dtype"),
    ("init-complex", lambda: jaxgmm.fit(_X, START._replace(means=np.array([0j, 1.0]))),
     TypeError, r"init\.means must be real numbers, got dtype complex"),
    ("init-not-params", lambda: jaxgmm.fit(_X, ([0.5, 0.5], [0, 1], [1, 1])),
     TypeError, r"init must be a jaxgmm\.MixtureParams, got tuple"),
    ("x-nan", lambda: jaxgmm.fit(_with_nan(_X, 3), START),
     ValueError, r"x contains NaN or infinite values; drop them, or pass nan_policy='omit'"),
    ("x-inf-in-batch", lambda: jaxgmm.fit(_with_nan(_XB, (2, 7), -np.inf), START),
     ValueError, r"x contains NaN or infinite values in datasets at batch indices \[2\]"),
    ("nan-policy-unknown", lambda: jaxgmm.fit(_X, START, nan_policy="drop"),
     ValueError, r"nan_policy must be 'raise' or 'omit', got 'drop'"),
    ("x-all-nan-omit", lambda: jaxgmm.fit(_with_nan(_XB, (1, slice(None))), START, nan_policy="omit"),
     ValueError, r"x has no finite observation with positive weight at batch indices \[1\] after nan_policy='omit'"),
    ("x-empty", lambda: jaxgmm.fit(np.zeros((3, 0)), START), ValueError, r"x has no observations: shape \(3, 0\)"),
    ("n-below-free-parameters", lambda: jaxgmm.fit(_X[:4], START),
     ValueError, r"x has n=4 observations.*fewer than the 5 free parameters"),
    ("n-below-free-parameters-weighted", lambda: jaxgmm.fit(
        _XB, START, sample_weight=_sw((4, 50), values=[(0.0, (3, slice(2, None)))])),
     ValueError, r"too few observations with positive weight in datasets at batch indices \[3\]: 2 < 5"),
    ("n-below-free-parameters-omit", lambda: jaxgmm.fit(
        _with_nan(_XB, (0, slice(3, None))), START, nan_policy="omit"),
     ValueError, r"too few observations with positive weight in datasets at batch indices \[0\]: 3 < 5"),
    ("weights-negative", lambda: jaxgmm.fit(_X, START._replace(weights=[-0.1, 1.1])),
     ValueError, r"init\.weights must lie in \[0, 1\], got \[-0\.1, 1\.1\]"),
    ("weights-above-one-in-batch", lambda: jaxgmm.fit(_X, MixtureParams(
        [[0.5, 0.5], [1.5, -0.5]], [0.0, 1.0], [1.0, 1.0])),
     ValueError, r"init\.weights must lie in \[0, 1\] at batch indices \[1\], got \[1\.5, -0\.5\]"),
    ("weights-not-summing-to-one", lambda: jaxgmm.fit(_X, START._replace(weights=[0.5, 0.6])),
     ValueError, r"init\.weights must sum to 1 .*got sums \[1\.1"),
    ("scales-zero", lambda: jaxgmm.fit(_X, START._replace(scales=[0.0, 1.0])),
     ValueError, r"init\.scales must be positive and finite, got \[0\.0, 1\.0\]"),
    ("scales-negative-in-batch", lambda: jaxgmm.fit(_X, MixtureParams(
        [0.5, 0.5], [0.0, 1.0], [[1.0, 1.0], [1.0, 1.0], [1.0, -2.0]])),
     ValueError, r"init\.scales must be positive and finite at batch indices \[2\], got \[1\.0, -2\.0\]"),
    ("scales-inf", lambda: jaxgmm.fit(_X, START._replace(scales=[np.inf, 1.0])),
     ValueError, r"init\.scales must be positive and finite"),
    ("means-nan", lambda: jaxgmm.fit(_X, START._replace(means=[np.nan, 1.0])),
     ValueError, r"init\.means must be finite, got \[nan, 1\.0\]"),
    ("sample-weight-negative", lambda: jaxgmm.fit(_XB, START, sample_weight=_sw((4, 50), values=[(-1.0, (2, 0))])),
     ValueError, r"sample_weight must be finite and non-negative at batch indices \[2\]"),
    ("sample-weight-nan", lambda: jaxgmm.fit(_X, START, sample_weight=_sw((50,), values=[(np.nan, 5)])),
     ValueError, r"sample_weight must be finite and non-negative"),
    ("sample-weight-all-zero", lambda: jaxgmm.fit(_XB, START, sample_weight=_sw((4, 50), values=[(0.0, 1)])),
     ValueError, r"sample_weight is all zero at batch indices \[1\]"),
    ("sample-weight-all-subnormal", lambda: jaxgmm.fit(
        _XB, START, sample_weight=_sw((4, 50), values=[(np.finfo(DTYPE).tiny / 4, 2)])),
     ValueError, r"sample_weight is below .*, the smallest normal float(32|64), everywhere at batch indices \[2\]"),
    ("fixed-unknown-name", lambda: jaxgmm.fit(_X, START, fixed=("means", "sigma")),
     ValueError, r"unknown name\(s\) in fixed: \['sigma'\]; expected some of \['weights', 'means', 'scales'\]"),
    ("fixed-wrong-type", lambda: jaxgmm.fit(_X, START, fixed=3), TypeError, r"fixed must be a field name"),
    ("tol-negative", lambda: jaxgmm.fit(_X, START, tol=-1e-6), ValueError, r"tol must be a finite number >= 0, got -1e-06"),
    ("tol-nan", lambda: jaxgmm.fit(_X, START, tol=float("nan")), ValueError, r"tol must be a finite number >= 0"),
    ("tol-not-a-number", lambda: jaxgmm.fit(_X, START, tol="1e-6"), TypeError, r"tol must be a real number"),
    ("max-iter-negative", lambda: jaxgmm.fit(_X, START, max_iter=-1),
     ValueError, r"max_iter must be a non-negative integer, got -1"),
    ("max-iter-fractional", lambda: jaxgmm.fit(_X, START, max_iter=2.5), TypeError, r"max_iter must be an integer"),
    ("max-iter-too-large", lambda: jaxgmm.fit(_X, START, max_iter=2 ** 31), ValueError, r"max_iter must be < 2\*\*31"),
    ("scale-floor-negative", lambda: jaxgmm.fit(_X, START, scale_floor=-1e-3),
     ValueError, r"scale_floor must be a finite number in \[0, 1\)"),
    ("scale-floor-not-below-sd", lambda: jaxgmm.fit(_X, START, scale_floor=1.0),
     ValueError, r"scale_floor must be a finite number in \[0, 1\)"),
]


@pytest.mark.parametrize("call, exc, pattern", [pytest.param(c, e, p, id=i) for i, c, e, p in BAD_INPUTS])
def test_bad_input_is_rejected(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_weights_sum_tolerance_follows_dtype():
    # Rounding-level deviations from 1 are accepted; only real ones are rejected.
    off = 4 * EPS
    result = jaxgmm.fit(_X, START._replace(weights=np.array([0.4 + off, 0.6], DTYPE)))
    assert int(result.status) == Status.CONVERGED


@pytest.mark.parametrize("kind", ["int32", "int64", "uint8", "bool"])
def test_integer_data_is_accepted_and_converted(kind):
    values = np.concatenate([np.arange(20) % 7, np.arange(30) % 3 + 10])
    x = values.astype(kind) if kind != "bool" else (values > 5)
    as_float = np.asarray(x, np.float64).astype(DTYPE)
    start = MixtureParams([0.5, 0.5], [1.0, 9.0], [2.0, 2.0])
    got = jaxgmm.fit(x, start)
    want = jaxgmm.fit(as_float, start)
    assert got.loglik.dtype == DTYPE
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_narrow_floats_are_computed_in_float32():
    got = jaxgmm.fit(_X.astype(np.float16), START)
    want = jaxgmm.fit(_X.astype(np.float16).astype(np.float32), START)
    assert got.loglik.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got.params.means), np.asarray(want.params.means))


def test_nan_policy_omit_equals_dropping_the_values():
    x = _with_nan(_X, [3, 10, 11])
    x[20] = np.inf
    keep = np.isfinite(x)
    got = jaxgmm.fit(x.astype(DTYPE), START, nan_policy="omit")
    want = jaxgmm.fit(_X[keep].astype(DTYPE), START)
    assert int(got.status) == int(want.status) == Status.CONVERGED
    scale = np.std(_X[keep])
    np.testing.assert_allclose(got.params.weights, want.params.weights, rtol=0, atol=rtol_for(x.size) * 8)
    np.testing.assert_allclose(got.params.means, want.params.means, rtol=0, atol=rtol_for(x.size) * 8 * scale)
    np.testing.assert_allclose(got.params.scales, want.params.scales, rtol=rtol_for(x.size) * 8)
    np.testing.assert_allclose(got.loglik, want.loglik, rtol=rtol_for(x.size) * 8)


def test_nonfinite_values_with_zero_weight_are_absent():
    x = _with_nan(_XB, (1, 4))
    x[2, 9] = -np.inf
    w = np.ones_like(x)
    w[1, 4] = w[2, 9] = 0
    got = jaxgmm.fit(x.astype(DTYPE), START, sample_weight=w)
    want = jaxgmm.fit(np.where(w > 0, x, 0.0).astype(DTYPE), START, sample_weight=w)
    assert finite(got) and np.all(np.asarray(got.status) == Status.CONVERGED)
    np.testing.assert_array_equal(np.asarray(got.params.means), np.asarray(want.params.means))
    np.testing.assert_array_equal(np.asarray(got.loglik), np.asarray(want.loglik))


# ---------------------------------------------------------------------------
# Inside jit/vmap: values are traced, nothing can raise; the status tells.
# ---------------------------------------------------------------------------

_jit_fit = jax.jit(lambda x, init: jaxgmm.fit(x, init))
_jit_fit_weighted = jax.jit(lambda x, init, w: jaxgmm.fit(x, init, sample_weight=w))


def assert_truthful(result):
    """``converged`` iff CONVERGED; nothing non-finite unless the status says so."""
    status = np.asarray(result.status)
    assert set(np.unique(status)) <= {int(s) for s in Status}
    np.testing.assert_array_equal(np.asarray(result.converged), status == Status.CONVERGED)
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(result.params)]
    ok = np.all(np.stack([np.all(np.isfinite(leaf), axis=-1) for leaf in leaves]), axis=0)
    ok &= np.isfinite(np.asarray(result.loglik))
    assert np.all(ok | (status == Status.NONFINITE)), "non-finite values under a non-NONFINITE status"
    assert not np.any(np.asarray(result.converged) & ~ok)


def test_traced_nonfinite_data_is_reported_not_raised():
    x = np.stack([_X, _with_nan(_X, 3), _with_nan(_X, 7, np.inf), _with_nan(_X, 0, -np.inf), _XB[0]]).astype(DTYPE)
    starts = params_of(DTYPE, *(np.tile(f, (5, 1)) for f in START))  # shapes shared with the next test
    result = _jit_fit(x, starts)
    assert_truthful(result)
    np.testing.assert_array_equal(np.asarray(result.status), [0] + [Status.NONFINITE] * 3 + [0])
    assert not np.any(np.asarray(result.converged)[1:4])


def test_traced_bad_sample_weight_is_reported():
    x = jnp.asarray(_X, DTYPE)
    w = np.ones((5, 50))
    w[1, 0] = -1.0  # negative
    w[2] = 0.0  # all zero
    w[3, 4] = np.nan
    w[4, 4] = np.inf
    result = _jit_fit_weighted(x, params_of(DTYPE, *START), jnp.asarray(w, DTYPE))
    assert_truthful(result)
    np.testing.assert_array_equal(np.asarray(result.status), [Status.CONVERGED] + [Status.NONFINITE] * 4)


def test_traced_weights_with_concrete_data():
    # x closed over (concrete) while the weights are traced: no host-side value
    # check is possible, and a NaN with weight 0 is still absent.
    x = _with_nan(_XB[:2], (1, 2)).astype(DTYPE)
    f = jax.jit(lambda w: jaxgmm.fit(x, START, sample_weight=w))
    w = np.ones((2, 50), DTYPE)
    w[1, 2] = 0
    result = f(w)
    np.testing.assert_array_equal(np.asarray(result.status), [Status.CONVERGED] * 2)
    w[1, 2] = 1
    np.testing.assert_array_equal(np.asarray(f(w).status), [Status.CONVERGED, Status.NONFINITE])


def test_traced_bad_starts_are_reported():
    weights = [[0.4, 0.6], [1.0, 0.0], [0.4, 0.6], [0.4, 0.6], [np.nan, 0.6]]
    means = [[-1.0, 2.0], [-1.0, 2.0], [-1.0, 2.0], [-1.0, 2.0], [-1.0, 2.0]]
    scales = [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 1.0], [1.0, 1.0]]
    result = _jit_fit(jnp.asarray(np.tile(_X, (5, 1)), DTYPE), params_of(DTYPE, weights, means, scales))
    assert_truthful(result)
    # A start with a zero weight leaves that component empty: degenerate, finite.
    np.testing.assert_array_equal(
        np.asarray(result.status),
        [Status.CONVERGED, Status.DEGENERATE, Status.NONFINITE, Status.NONFINITE, Status.NONFINITE])
    assert finite(jax.tree_util.tree_map(lambda a: a[1], result))


def test_zero_weight_start_is_degenerate_not_nan():
    # Regression: the two-component log-likelihood was a2 + max(a1 - a2, 0) = -inf + inf.
    for k in (2, 3):
        start = MixtureParams([1.0] + [0.0] * (k - 1), np.linspace(-1, 2, k), [1.0] * k)
        result = jaxgmm.fit(_X.astype(DTYPE), start)
        assert int(result.status) == Status.DEGENERATE and finite(result)
        ll = jaxgmm.log_likelihood(_X.astype(DTYPE), params_of(DTYPE, *result.params))
        np.testing.assert_allclose(result.loglik, ll, rtol=rtol_for(_X.size))


def test_max_iter_status():
    result = jaxgmm.fit(_X.astype(DTYPE), START, max_iter=3)
    assert int(result.status) == Status.MAX_ITER and not bool(result.converged)
    assert int(result.n_iter) == 3


def test_tol_max_iter_scale_floor_may_be_traced():
    f = jax.jit(lambda x, tol, max_iter, floor: jaxgmm.fit(x, START, tol=tol, max_iter=max_iter, scale_floor=floor))
    x = jnp.asarray(_X, DTYPE)
    got = f(x, default_tol(DTYPE), 10_000, DEFAULT_SCALE_FLOOR)
    want = jaxgmm.fit(x, START)
    np.testing.assert_array_equal(np.asarray(got.params.means), np.asarray(want.params.means))
    assert int(got.n_iter) == int(want.n_iter)


# ---------------------------------------------------------------------------
# Variance floor and degenerate fits.
# ---------------------------------------------------------------------------


def _outlier_data(at=40.0):
    # One lone point: a free-scale component that sits on it collapses onto it.
    return np.concatenate([mixture_data(3, 49), [at]])


@pytest.mark.parametrize("floor", [DEFAULT_SCALE_FLOOR, 1e-2])
def test_collapsing_scale_stops_at_floor_and_is_degenerate(floor):
    x = _outlier_data().astype(DTYPE)
    start = MixtureParams([0.9, 0.1], [0.5, 40.0], [1.0, 1.0])
    result = jaxgmm.fit(x, start, scale_floor=floor)
    assert int(result.status) == Status.DEGENERATE and not bool(result.converged) and finite(result)
    sd = float(np.std(np.asarray(x, np.float64)))
    np.testing.assert_allclose(float(result.params.scales[1]), floor * sd, rtol=rtol_for(x.size))
    assert float(result.params.scales[0]) > floor * sd


def test_scale_floor_does_not_recompile():
    x = _outlier_data().astype(DTYPE)
    jaxgmm.fit(x, START, scale_floor=1e-5)
    size = solve._cache_size()
    jaxgmm.fit(x, START, scale_floor=1e-3)
    assert solve._cache_size() == size


def test_best_of_skips_floor_spike_for_healthy_fit():
    x = _outlier_data(6.0).astype(DTYPE)
    starts = MixtureParams([[0.99, 0.01], [0.4, 0.6]], [[0.5, 6.0], [-1.0, 2.0]], [[1.0, 0.01], [1.0, 1.0]])
    results = jaxgmm.fit(x, starts)
    np.testing.assert_array_equal(np.asarray(results.status), [Status.DEGENERATE, Status.CONVERGED])
    # The spike on the floor has the higher likelihood; best_of must still skip it.
    assert float(results.loglik[0]) > float(results.loglik[1])
    best = jaxgmm.best_of(results)
    assert int(best.status) == Status.CONVERGED
    np.testing.assert_array_equal(np.asarray(best.params.means), np.asarray(results.params.means[1]))


def test_vanishing_component_is_degenerate():
    x = mixture_data(4, 50).astype(DTYPE)
    start = MixtureParams([0.5, 0.5], [0.5, 1e3], [1.0, 1.0])  # no point near the second mean
    result = jaxgmm.fit(x, start)
    assert int(result.status) == Status.DEGENERATE and finite(result)


@pytest.mark.parametrize("value", [3.25, -1e6, 0.0, 1e-30, 1e19])
@pytest.mark.parametrize("model", ["free", "equal_scales", "fixed_scales"])
def test_constant_data(value, model):
    kw = {"free": {}, "equal_scales": {"equal_scales": True}, "fixed_scales": {"fixed": "scales"}}[model]
    x = np.full(50, value, DTYPE)
    unit = abs(value) if value else 1.0  # a start on the data's own scale
    start = MixtureParams([0.5, 0.5], [value - unit, value + unit], [unit, unit])
    result = jaxgmm.fit(x, start, **kw)
    assert_truthful(result)
    assert finite(result)
    if model == "fixed_scales":
        # A well-posed problem: both means move onto the value.
        assert int(result.status) == Status.CONVERGED
        np.testing.assert_allclose(result.params.means, [value, value], rtol=4 * EPS, atol=EPS)
    else:
        # Scales would collapse to zero; they stop on the floor and the fit says so.
        assert int(result.status) == Status.DEGENERATE
        assert float(jnp.min(result.params.scales)) > 0


# ---------------------------------------------------------------------------
# Numerics: standardised internally, so float32 handles shifted and tiny data.
# ---------------------------------------------------------------------------

SHIFT_SCALE = {"shifted-1e6": (1e6, 1.0), "scaled-1e-6": (0.0, 1e-6), "scaled-1e20": (0.0, 1e20),
               "scaled-1e-30": (0.0, 1e-30)}
_N_NUM = 2000


def _numerics_case(name):
    shift, scale = SHIFT_SCALE[name]
    x32 = (shift + scale * mixture_data(5, _N_NUM)).astype(np.float32)
    start = MixtureParams(np.array([0.5, 0.5]), shift + scale * np.array([-1.5, 2.5]), scale * np.ones(2))
    return x32, start


def _reference_fit(x, start, n_iter=None):
    """float64 reference EM on the standardised data, mapped back (EM is affine-equivariant)."""
    x = np.asarray(x, np.float64)
    c, s = x.mean(), x.std()
    w0, m0, s0 = (np.asarray(f, np.float64) for f in start)
    if n_iter is None:
        (w, m, sc), ll, _ = ref.em_fit((x - c) / s, w0, (m0 - c) / s, s0 / s, tol=1e-13)
    else:
        (w, m, sc), lls = ref.em_iterations((x - c) / s, w0, (m0 - c) / s, s0 / s, n_iter)
        ll = lls[-1]
    return (w, m * s + c, sc * s), ll - x.size * np.log(s), s


def _assert_close_to_reference(result, want, sd, rtol):
    (w, m, s), ll = want
    p = [np.asarray(f, np.float64) for f in result.params]
    np.testing.assert_allclose(p[0], w, rtol=0, atol=rtol)
    # A float32 mean near 1e6 cannot be closer than half its ulp (0.03) to the
    # float64 one: allow that representation error on top.
    np.testing.assert_allclose(p[1], m, rtol=0, atol=rtol * sd + EPS32 * np.max(np.abs(m)))
    np.testing.assert_allclose(p[2], s, rtol=rtol)
    np.testing.assert_allclose(float(result.loglik), ll, rtol=rtol)


@pytest.mark.parametrize("name", list(SHIFT_SCALE))
def test_float32_iterates_match_float64_on_shifted_and_scaled_data(name):
    """Same number of EM steps: float32 agrees with float64 to rounding level."""
    x32, start = _numerics_case(name)
    n_iter = 60
    result = jaxgmm.fit(x32, MixtureParams(*(np.float32(f) for f in start)), tol=0, max_iter=n_iter)
    assert result.loglik.dtype == jnp.float32 and int(result.n_iter) == n_iter
    want, ll, sd = _reference_fit(x32, start, n_iter)
    _assert_close_to_reference(result, (want, ll), sd, 16 * EPS32 * math.sqrt(_N_NUM))
    if X64:  # the library's own float64 path on the same (float32-rounded) data
        r64 = jaxgmm.fit(x32.astype(np.float64), start, tol=0, max_iter=n_iter)
        _assert_close_to_reference(r64, (want, ll), sd, rtol_for(_N_NUM))


@pytest.mark.parametrize("name", list(SHIFT_SCALE))
def test_float32_converged_fit_matches_float64_mle(name):
    """Run to convergence in float32 (tol 1e-6): the float64 MLE to the issue's 1e-4."""
    x32, start = _numerics_case(name)
    result = jaxgmm.fit(x32, MixtureParams(*(np.float32(f) for f in start)), tol=1e-6)
    assert int(result.status) == Status.CONVERGED
    want, ll, sd = _reference_fit(x32, start)
    _assert_close_to_reference(result, (want, ll), sd, 1e-4)


@pytest.mark.parametrize("name", list(SHIFT_SCALE))
def test_shift_and_scale_do_not_change_float32_fits(name):
    """At the default tolerance, a + b * x fits like x, mapped: standardisation at work."""
    shift, scale = SHIFT_SCALE[name]
    z = mixture_data(5, _N_NUM)
    x32 = (shift + scale * z).astype(np.float32)
    # The same float32 numbers, standardised by hand in float64 (exact affine image).
    zz = (x32.astype(np.float64) - shift) / scale
    start = MixtureParams(np.array([0.5, 0.5]), np.array([-1.5, 2.5]), np.ones(2))
    base = jaxgmm.fit(zz.astype(np.float32), MixtureParams(*(np.float32(f) for f in start)))
    moved = jaxgmm.fit(x32, MixtureParams(np.float32(start.weights), np.float32(shift + scale * start.means),
                                          np.float32(scale * start.scales)))
    assert int(base.status) == int(moved.status) == Status.CONVERGED
    sd = float(np.std(zz))
    # Equal up to a few rounding steps per iteration; both stop by the same rule.
    tol = 10 * default_tol(jnp.float32)
    np.testing.assert_allclose(moved.params.weights, base.params.weights, rtol=0, atol=tol)
    np.testing.assert_allclose((np.asarray(moved.params.means, np.float64) - shift) / scale, base.params.means,
                               rtol=0, atol=tol * sd + EPS32 * abs(shift) / scale)
    np.testing.assert_allclose(np.asarray(moved.params.scales, np.float64) / scale, base.params.scales, rtol=tol)


@pytest.mark.parametrize("accelerate", [None, "squarem"])
@pytest.mark.parametrize("n", [1_000_000])
def test_float32_small_component_of_large_dataset(n, accelerate):
    """Three points of n form their own component: float32 must resolve it.

    Its count (3) is tiny next to the total weight n, so any E-pass that gets it
    as a difference of sums over all points (``n/2 - sum t/2``) loses it to
    rounding (eps * n = 0.1 in float32 at n = 1e6).
    """
    x = np.random.default_rng(8).normal(size=n)
    x[:3] = [7.9, 8.0, 8.1]
    x32 = x.astype(np.float32)
    start = MixtureParams(np.array([1 - 3 / n, 3 / n]), np.array([0.0, 8.0]), np.array([1.0, 0.1]))
    result = jaxgmm.fit(x32, MixtureParams(*(np.float32(f) for f in start)), accelerate=accelerate)
    assert int(result.status) == Status.CONVERGED
    want, ll, sd = _reference_fit(x32, start)
    p = [np.asarray(f, np.float64) for f in result.params]
    np.testing.assert_allclose(p[0], want[0], rtol=1e-4)  # relative: the small weight too
    assert np.all(np.abs(p[1] - want[1]) <= 1e-4 * want[2]), (p[1], want[1])  # in units of each scale
    np.testing.assert_allclose(p[2], want[2], rtol=1e-4)
    np.testing.assert_allclose(float(result.loglik), ll, rtol=16 * EPS32 * math.sqrt(n))


def test_float32_squarem_with_known_scales_keeps_a_small_component_in_the_tail():
    """Three points of a million, in the tail of the large component, scales known.

    Thousands of points there have fractional responsibilities, so the one-tanh
    pass's count of the small component, ``(W - sum t) / 2``, carries the
    rounding of a float32 sum of a million terms (about 0.06 against a count
    of 3).  SQUAREM takes that pass with known scales and, like plain EM,
    finishes with the precise pass; without it SQUAREM's extrapolation lost the
    component (weight 0.07 of plain EM's, mean 3.6 scales away).  The bounds
    detect that loss; they are not the fit's precision, which the stopping
    rule (weights to 1e-5 absolute) leaves coarse for a weight of 3e-6.  Plain
    EM against the float64 reference: the small-component tests above.
    """
    n = 1_000_000
    x = np.random.default_rng(8).normal(size=n)
    x[:3] = [2.9, 3.0, 3.1]
    x32 = x.astype(np.float32)
    start = MixtureParams(*(np.float32(f) for f in ([1 - 3 / n, 3 / n], [0.0, 3.0], [1.0, 0.1])))
    plain, fast = (jaxgmm.fit(x32, start, fixed="scales", accelerate=a) for a in (None, "squarem"))
    assert int(plain.status) == int(fast.status) == Status.CONVERGED
    assert abs(float(fast.params.weights[1]) / float(plain.params.weights[1]) - 1) < 0.1
    assert np.all(np.abs(np.asarray(fast.params.means) - np.asarray(plain.params.means)) < 0.5 * start.scales)


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_float32_tight_component_away_from_the_centre(accelerate):
    """A component 1000 times narrower than the data, 3 sd from their centre.

    Its variance is 1e-6 of its squared distance from the centre, so any pass
    that takes it from moments about the centre loses it to float32 rounding.
    """
    z = mixture_data(9, _N_NUM)
    z = np.where(z > 0.5, 3.0 + 1e-3 * (z - 2.0) / 1.2, z)  # the right component squeezed
    x32 = z.astype(np.float32)
    start = MixtureParams(np.array([0.5, 0.5]), np.array([-1.0, 3.0]), np.array([1.0, 1e-2]))
    result = jaxgmm.fit(x32, MixtureParams(*(np.float32(f) for f in start)), tol=1e-6, accelerate=accelerate)
    assert int(result.status) == Status.CONVERGED
    (w, m, s), _, _ = _reference_fit(x32, start)
    p = [np.asarray(f, np.float64) for f in result.params]
    np.testing.assert_allclose(p[0], w, rtol=0, atol=1e-4)
    # Within 1e-4 of each scale, plus two roundings of a float32 number near 3.
    assert np.all(np.abs(p[1] - m) <= 1e-4 * s + 2 * EPS32 * np.abs(m)), (p[1], m)
    np.testing.assert_allclose(p[2], s, rtol=1e-4)


@pytest.mark.parametrize("compact", [False, True], ids=["plain", "compact"])
def test_float32_fits_leave_the_fast_pass_where_it_would_lose_a_component(monkeypatch, compact):
    """With free scales in float32 the loop runs the one-tanh pass while it
    resolves every component's second moment (``_univariate.fast_pass_accurate``), then
    the precise pass.  In a batch that mixes ordinary starts with starts whose
    narrow component that pass would lose, every fit ends where the precise pass
    alone ends it, under either scheduling policy.
    """
    from jaxgmm import _univariate, _units
    from jaxgmm._fit import prepare_fit, run
    x = mixture_data(11, 400, shape=(8,)).astype(np.float32)
    narrow = np.arange(8) % 2 == 1
    starts = MixtureParams(np.full((8, 2), 0.5, np.float32),
                           np.stack([np.where(narrow, x[:, 0], -1.0), np.full(8, 4.0)], -1).astype(np.float32),
                           np.stack([np.where(narrow, 1e-3, 1.0), np.full(8, 1.5)], -1).astype(np.float32))

    def accurate_at_start(x_, p_):
        std = _units.Standardiser.from_data(x_, None)
        moments = jaxgmm._em.data_moments(std.data(x_))
        return _univariate.fast_pass_accurate(std.params_in(p_), moments, jaxgmm._em.ModelSpec.free(2))

    accurate = jax.vmap(accurate_at_start)(jnp.asarray(x), jax.tree.map(jnp.asarray, starts))
    # The test means something only if both kinds of fit are in the batch.
    np.testing.assert_array_equal(np.asarray(accurate), ~narrow)
    kw = dict(tol=1e-6, max_iter=5000, compact=compact)
    mixed = jaxgmm.fit(x, starts, **kw)
    # The precise pass alone: the guard patched to refuse the fast pass while a
    # program of its own is traced.  Its Tuning differs from the call above only
    # in the chunk length, unused at n = 400 but part of the jit cache key, so
    # no cached program is reused or left behind for other calls (and no
    # jax.clear_caches() makes every later test recompile).
    args = prepare_fit(x, starts, **kw)
    with monkeypatch.context() as m:
        m.setattr(_univariate, "fast_pass_accurate", lambda *a: jnp.asarray(False))
        precise, _ = run(args._replace(tuning=args.tuning._replace(chunk=args.tuning.chunk + 1)))
    assert_truthful(mixed)
    np.testing.assert_array_equal(np.asarray(mixed.status), np.asarray(precise.status))
    for got, want in zip(mixed.params, precise.params):
        # Both stop within tol / (1 - rate) of the precise pass's fixed point.
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-4 * x.std())


@settings(max_examples=property_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), log_scale=st.floats(-4.0, -1.0), outlier=st.floats(3.0, 30.0),
       n_iter=st.sampled_from([1, 2, 5, 50]))
def test_float32_em_never_lowers_the_likelihood_of_narrow_starts(seed, log_scale, outlier, n_iter):
    """EM (with the floor, a generalised EM) never lowers the likelihood, also
    from a start with a narrow component on one data point (scale 1e-4 to 0.1
    sd, above the floor).  In float32 that needs log-odds formed from
    (x - mu) / sigma: expanded as a quadratic in x they lose eps x^2 / sigma^2.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=50)
    x[0] = outlier
    x = x.astype(DTYPE)
    sd = float(np.std(x))
    start = params_of(DTYPE, [0.98, 0.02], [x.mean(), x[rng.integers(50)]], [sd, 10.0 ** log_scale * sd])
    before = float(jaxgmm.log_likelihood(x, start))
    result = jaxgmm.fit(x, start, tol=0, max_iter=n_iter)
    assert_truthful(result)
    assert float(result.loglik) >= before - rtol_for(x.size) * (abs(before) + x.size), (before, result)


@pytest.mark.parametrize("k", [2, 3])
def test_points_40_sigma_from_every_mean(k):
    params = params_of(DTYPE, np.full(k, 1.0 / k), np.linspace(-1.0, 1.0, k), np.full(k, 0.5))
    x = jnp.asarray([-1.0 - 40 * 0.5, 1.0 + 40 * 0.5, 1e3, -1e4, 0.0], DTYPE)
    resp, ll = jaxgmm.e_step(x, params)
    resp = np.asarray(resp)
    assert np.all(np.isfinite(resp)) and np.all((resp >= 0) & (resp <= 1))
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=4 * EPS)
    want_resp, want_ll = ref.e_step(np.asarray(x, np.float64), *(np.asarray(f, np.float64) for f in params))
    # Far points: the component with the nearer mean takes all the responsibility.
    np.testing.assert_allclose(resp, want_resp, atol=4 * EPS)
    np.testing.assert_allclose(float(ll), want_ll, rtol=rtol_for(x.size))
    # A fit with such points stays finite and truthful.
    data = np.concatenate([mixture_data(6, 48), [60.0, -45.0]]).astype(DTYPE)
    result = jaxgmm.fit(data, params)
    assert_truthful(result)
    assert finite(result) and int(result.status) != Status.NONFINITE


# ---------------------------------------------------------------------------
# Batch isolation: odd datasets never change the others.
# ---------------------------------------------------------------------------


def _isolation_batch(dtype):
    n = 300
    good = [mixture_data(s, n) for s in (10, 11, 12)]
    nan_data = mixture_data(13, n)
    nan_data[[5, 17]] = [np.nan, np.inf]
    constant = np.full(n, 3.25)
    degenerate = mixture_data(14, n)
    x = np.stack([good[0], nan_data, good[1], constant, good[2], degenerate]).astype(dtype)
    means = np.tile([-1.5, 2.5], (6, 1))
    means[5] = [0.0, 1e3]  # a start whose second component never gets any point
    init = params_of(dtype, np.full((6, 2), 0.5), means, np.ones((6, 2)))
    # The same batch with every odd dataset replaced by a healthy one.
    swapped = x.copy()
    swapped[[1, 3, 5]] = np.stack([mixture_data(s, n) for s in (20, 21, 22)]).astype(dtype)
    return x, init, swapped, init._replace(means=init.means.at[5].set(jnp.asarray([-1.5, 2.5], dtype)))


def _assert_same_fit(got, want, x, dtype, exact):
    np.testing.assert_array_equal(np.asarray(got.status), np.asarray(want.status))
    if exact:
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        return
    # A different compiled program (batch vs single) rounds differently, so the
    # stopping test may fire one iteration apart; the last step moved every
    # parameter by less than tol (weights; means and scales in units of the sd).
    tol = default_tol(dtype)
    sd = float(np.std(x))
    assert abs(int(got.n_iter) - int(want.n_iter)) <= 1
    np.testing.assert_allclose(got.params.weights, want.params.weights, rtol=0, atol=tol)
    np.testing.assert_allclose(got.params.means, want.params.means, rtol=0, atol=tol * sd)
    np.testing.assert_allclose(got.params.scales, want.params.scales, rtol=0, atol=tol * sd)
    # Near the maximum the log-likelihood moves by far less than n * tol.
    np.testing.assert_allclose(got.loglik, want.loglik, rtol=0, atol=x.size * tol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("path", ["omit", "traced"])
def test_batch_isolation(dtype, path):
    x, init, swapped, swapped_init = _isolation_batch(dtype)
    if path == "omit":
        run = lambda x_, p_: jaxgmm.fit(x_, p_, nan_policy="omit")
    else:  # NaN data inside jit cannot be rejected: it is reported instead
        run = _jit_fit
    result = run(x, init)
    assert_truthful(result)
    status = np.asarray(result.status)
    assert status[1] == (Status.CONVERGED if path == "omit" else Status.NONFINITE)
    assert status[3] == Status.DEGENERATE and status[5] == Status.DEGENERATE
    good = [0, 2, 4]
    assert np.all(status[good] == Status.CONVERGED)
    pick = lambda r: jax.tree_util.tree_map(lambda a: a[np.array(good)], r)
    # Same compiled program with the odd datasets swapped for healthy ones: bit-identical.
    _assert_same_fit(pick(result), pick(run(swapped, swapped_init)), None, dtype, exact=True)
    # Each healthy dataset fitted alone: the same fit, up to rounding.
    for i in good:
        one = jax.tree_util.tree_map(lambda a: a[i], result)
        alone = run(x[i], jax.tree_util.tree_map(lambda a: a[i], init))
        _assert_same_fit(one, alone, x[i], dtype, exact=False)


# ---------------------------------------------------------------------------
# Determinism.
# ---------------------------------------------------------------------------


def test_same_key_and_inputs_give_identical_results():
    x = jnp.asarray(mixture_data(7, 200, (2,)), DTYPE)

    def run():
        starts = jaxgmm.init_params(jax.random.key(42), x, 2, n_starts=3)
        return jaxgmm.fit(x, starts)

    first, second = run(), run()
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------------------
# Property-based: random shapes, magnitudes, duplicates, NaNs, degenerate starts.
# ---------------------------------------------------------------------------

_EXPONENT = 30 if not X64 else 150  # data magnitudes 10**[-e, e] (squares would not fit otherwise)
_MAX_ITER = 300
_CONFIGS = [((), 4, 2, "free"), ((3,), 24, 2, "free"), ((), 24, 3, "free"), ((3,), 4, 1, "free"),
            ((), 24, 2, "equal-scales"), ((3,), 24, 3, "fixed-scales"), ((), 4, 3, "fixed-means")]


@st.composite
def problems(draw):
    # Shapes and models come from a short list so that compilations stay few.
    batch, n, k, model = draw(st.sampled_from(_CONFIGS))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    scale = 10.0 ** draw(st.integers(-_EXPONENT, _EXPONENT))
    shift = scale * draw(st.sampled_from([0.0, 1.0, -1e3, 1e5]))
    shape_kind = draw(st.sampled_from(["normal", "mixture", "duplicates", "constant", "outlier"]))
    n_bad = draw(st.sampled_from([0, 0, 1, n]))  # NaN/inf per dataset
    nan_policy = draw(st.sampled_from(["raise", "omit"]))
    start_kind = draw(st.sampled_from(["spread", "zero-weight", "equal-means", "tiny-scales", "huge-scales",
                                       "far-means"]))
    rng = np.random.default_rng(seed)
    shape = batch + (n,)
    z = {"normal": lambda: rng.normal(size=shape),
         "mixture": lambda: np.where(rng.random(shape) < 0.3, rng.normal(-2, 0.5, shape), rng.normal(1, 1, shape)),
         "duplicates": lambda: rng.integers(0, 3, shape).astype(float),
         "constant": lambda: np.ones(shape),
         "outlier": lambda: np.where(np.arange(n) == 0, 1e3, rng.normal(size=shape))}[shape_kind]()
    x = (shift + scale * z).astype(DTYPE)
    if n_bad:
        where = rng.permutation(n)[:n_bad]
        x[..., where] = rng.choice([np.nan, np.inf, -np.inf], size=batch + (n_bad,))
    centre, sd = shift, scale
    weights = np.full(k, 1.0 / k)
    means = centre + sd * np.linspace(-1.0, 1.0, k)
    scales = np.full(k, sd)
    if start_kind == "zero-weight" and k > 1:
        weights = np.zeros(k)
        weights[0] = 1.0
    elif start_kind == "equal-means":
        means = np.full(k, centre)
    elif start_kind == "tiny-scales":
        scales = scales * 1e-6
    elif start_kind == "huge-scales":
        scales = scales * 1e6
    elif start_kind == "far-means":
        means = means + 1e4 * sd
    init = MixtureParams(weights, means, scales)
    fixed = {"free": (), "fixed-scales": "scales", "equal-scales": (), "fixed-means": "means"}[model]
    return x, init, dict(fixed=fixed, equal_scales=model == "equal-scales", nan_policy=nan_policy)


def _free_parameters(k, kw):
    from jaxgmm._spec import make_spec, n_free_parameters
    return n_free_parameters(make_spec(kw["fixed"], k, kw["equal_scales"]))


@settings(max_examples=property_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_property_only_documented_errors_and_truthful_results(problem):
    x, init, kw = problem
    k = len(init.weights)
    present = np.isfinite(x)
    n_present = present.sum(axis=-1)
    if kw["nan_policy"] == "raise" and not present.all():
        with pytest.raises(ValueError, match="x contains NaN or infinite values"):
            jaxgmm.fit(x, init, max_iter=_MAX_ITER, **kw)
        return
    if np.any(n_present < max(_free_parameters(k, kw), 1)):
        with pytest.raises(ValueError, match="observation"):
            jaxgmm.fit(x, init, max_iter=_MAX_ITER, **kw)
        return
    result = jaxgmm.fit(x, init, max_iter=_MAX_ITER, **kw)
    assert_truthful(result)
    status = np.asarray(result.status)
    assert np.all(np.asarray(result.n_iter) <= _MAX_ITER)
    # Valid input and starts within 1e4 sd of the data: never a non-finite fit.
    assert not np.any(status == Status.NONFINITE), status
    w = np.asarray(result.params.weights, np.float64)
    s = np.asarray(result.params.scales, np.float64)
    assert np.all((w >= 0) & (w <= 1)) and np.all(s > 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=k * rtol_for(x.shape[-1]))
    # A healthy status is truthful: no free scale sits on the floor.
    xs = np.where(present, x.astype(np.float64), np.nan)
    sd = np.nanstd(xs, axis=-1)
    sd = np.where(sd > 0, sd, 1.0)
    if kw["fixed"] != "scales":
        healthy = status <= Status.MAX_ITER
        floor = DEFAULT_SCALE_FLOOR * sd[..., None] * (1 + 64 * EPS)
        assert np.all(np.where(healthy[..., None], s > floor, True))


@settings(max_examples=property_examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, -0.25, 1.25, np.nan]), min_size=2, max_size=2),
       scales=st.lists(st.sampled_from([1.0, 0.5, 0.0, -1.0, np.inf, np.nan, 1e-30, 1e30]), min_size=2, max_size=2),
       means=st.lists(st.sampled_from([0.0, -3.0, 1e30, np.inf, np.nan]), min_size=2, max_size=2))
def test_property_bad_starts_raise_exactly_when_documented(weights, scales, means):
    w, s, m = np.array(weights), np.array(scales), np.array(means)
    if not X64:  # float32 cannot hold 1e30 squared but can hold the values themselves
        s = s.astype(np.float32)
    valid = (np.all(np.isfinite(w) & (w >= 0) & (w <= 1)) and abs(w.sum() - 1) <= 1e-4
             and np.all(np.isfinite(m)) and np.all(np.isfinite(s) & (s > 0)))
    x = _X.astype(DTYPE)
    if not valid:
        with pytest.raises(ValueError, match=r"init\.(weights|means|scales) must"):
            jaxgmm.fit(x, MixtureParams(w, m, s), max_iter=50)
        return
    result = jaxgmm.fit(x, MixtureParams(w, m, s), max_iter=50)
    assert_truthful(result)


# Found by test_property_only_documented_errors_and_truthful_results: three
# datasets near 1e5 with one value missing in each (NaN or -inf, omitted).
_FAR_ROWS = [
    [100000.34, 100000.82, 100000.33, 99998.695, 100000.91, 100000.445, 99999.46, 100000.58,
     100000.37, 100000.3, 100000.03, 100000.55, 99999.266, 99999.836, 99999.516, np.nan,
     100000.04, 99999.71, 99999.22, 99999.74, 100000.01, 99999.73, 100001.3, 100001.01],
    [99997.29, 99998.11, 99999.83, 99999.58, 100000.21, 100000.22, 100002.12, 99998.89,
     99999.625, 100002.04, 100000.65, 100000.664, 99999.484, 99998.35, 100000.164, np.nan,
     99998.77, 99999.32, 99999.93, 99999.055, 99999.9, 100000.09, 100000.04, 99999.49],
    [100000.59, 100000.89, 100000.32, 99999.18, 100000.734, 99999.5, 100000.88, 99998.93,
     100000.914, 99999.98, 99998.75, 99999.69, 100000.055, 100000.27, 99999.016, -np.inf,
     100000.2, 99999.53, 100000.234, 100000.76, 99998.35, 100000.26, 100001.23, 99999.7],
]


@pytest.mark.parametrize("how", ["nan_policy", "zero_weight"])
def test_absent_values_of_data_far_from_zero_do_not_poison_the_fit(how):
    # Absent values (omitted, or given weight 0) used to be filled with 0: for
    # data near 1e5 that is 1e5 standard deviations from every component, where
    # float32 log-joint terms (about -1e10) round by about 1e3, exp() overflowed
    # and 0 * inf made the third fit NONFINITE in the batched program (fitted
    # alone it converged).  Absent values now take a value from their own data.
    x = np.asarray(_FAR_ROWS, DTYPE)
    init = MixtureParams(np.full(3, 1 / 3), np.array([99999.0, 100000.0, 100001.0]), np.ones(3))
    if how == "nan_policy":
        kw = dict(nan_policy="omit")
    else:
        present = np.isfinite(x)
        kw = dict(sample_weight=present.astype(DTYPE))
        x = np.where(present, x, -1e30).astype(DTYPE)  # any value: its weight is 0
    batched = jaxgmm.fit(x, init, fixed="scales", max_iter=_MAX_ITER, **kw)
    assert_truthful(batched)
    assert not np.any(np.asarray(batched.status) == Status.NONFINITE), np.asarray(batched.status)
    for i in range(len(x)):
        one_kw = {k: (v[i] if k == "sample_weight" else v) for k, v in kw.items()}
        alone = jaxgmm.fit(x[i], init, fixed="scales", max_iter=_MAX_ITER, **one_kw)
        assert int(batched.status[i]) == int(alone.status)
        # The same fit compiled batched and unbatched: rounding of sums of 23
        # terms over at most _MAX_ITER steps, relative to data near 1e5.
        np.testing.assert_allclose(np.asarray(batched.params.means[i]), np.asarray(alone.params.means),
                                   rtol=0, atol=1e5 * rtol_for(x.shape[-1]) * np.sqrt(_MAX_ITER))


def test_points_millions_of_sds_from_every_component_keep_a_finite_fit():
    # Found by the property test: K = 3 with scales held at 1e-6 over N(0, 1)
    # data, so every point lies ~1e6 sd from every component and its log-joint
    # terms are ~-1e12, resolved in float32 only to ~1e5.  XLA re-derived those
    # terms in several kernels with different rounding, so a - logsumexp(a) came
    # out far from <= 0 and exp() overflowed: every fit of the batch NONFINITE,
    # while each fitted alone converged.  The softmax now clamps to its exact bounds.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 24)).astype(DTYPE)
    init = MixtureParams(np.full(3, 1 / 3), np.array([-1.0, 0.0, 1.0]), np.full(3, 1e-6))
    batched = jaxgmm.fit(x, init, fixed="scales", max_iter=_MAX_ITER)
    assert_truthful(batched)
    assert not np.any(np.asarray(batched.status) == Status.NONFINITE), np.asarray(batched.status)
    for i in range(len(x)):
        alone = jaxgmm.fit(x[i], init, fixed="scales", max_iter=_MAX_ITER)
        assert int(batched.status[i]) == int(alone.status)
        # log-likelihoods of ~-1e12: agreement to the float's relative precision
        # times the number of terms.
        np.testing.assert_allclose(float(batched.loglik[i]), float(alone.loglik), rtol=rtol_for(x.shape[-1]) * 8)
