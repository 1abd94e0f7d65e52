"""The distribution functions against float64 SciPy and scikit-learn references.

Inputs are rounded to the library's float type first, so the reference sees the
same numbers and every difference is the library's own rounding.  Tolerances are
a small multiple of the float's epsilon times the condition number of the
quantity at that point (how much a relative change of the inputs moves it),
computed from the float64 reference: ``|x| f(x) / F(x)`` for a log-CDF, and its
inverse for a quantile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special, stats

import jaxgmm
from jaxgmm import MixtureParams
from conftest import DTYPE, EPS, X64

NP_DTYPE = np.dtype(DTYPE)
# Three overlapping components of unequal weight and scale (one narrow), on a
# location away from zero so the CDF's conditioning matters.
P3 = MixtureParams(weights=[0.25, 0.5, 0.25], means=[-2.0, 1.5, 4.0], scales=[0.5, 1.25, 2.0])
# The textbook mixture: 0.2 N(0, 1) + 0.8 N(5, variance 2).
TEXTBOOK = MixtureParams(weights=[0.2, 0.8], means=[0.0, 5.0], scales=[1.0, 2 ** 0.5])


def as_float(params):
    """The parameters rounded to the library's dtype (as float64 NumPy arrays)."""
    return MixtureParams(*(np.asarray(np.asarray(f, NP_DTYPE), np.float64) for f in params))


def jparams(params):
    return MixtureParams(*(jnp.asarray(np.asarray(f), DTYPE) for f in params))


# --------------------------------------------------------------------------- #
# float64 references
# --------------------------------------------------------------------------- #
def ref_log_joint(x, p):
    x = np.asarray(x, np.float64)[:, None]
    return np.log(p.weights) + stats.norm.logpdf(x, p.means, p.scales)


def ref_log_tail(x, p, upper=False):
    x = np.asarray(x, np.float64)[:, None]
    fn = stats.norm.logsf if upper else stats.norm.logcdf
    return special.logsumexp(np.log(p.weights) + fn(x, p.means, p.scales), axis=-1)


def ref_slope(x, p, upper=False):
    """``|d log F / dx|`` (or ``log S``): the log-scale equation's slope."""
    return np.exp(special.logsumexp(ref_log_joint(x, p), axis=-1) - ref_log_tail(x, p, upper))


def ref_quantile(q, p, upper=False):
    """Root of ``log F(x) = log q`` (or ``log S(x) = log q``) by Brent's method in float64."""
    lo = np.min(p.means - 60 * p.scales)
    hi = np.max(p.means + 60 * p.scales)
    out = []
    for qi in np.asarray(q, np.float64):
        f = lambda x: ref_log_tail([x], p, upper)[0] - np.log(qi)
        out.append(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))
    return np.array(out)


def quantile_tol(x_ref, p, upper):
    """Error bound for a computed quantile: a few ulps of ``x`` plus the rounding of
    the log-tail equation (about ``EPS (1 + |log tail|)``) divided by its slope."""
    log_tail = ref_log_tail(x_ref, p, upper)
    return 16 * EPS * (np.abs(x_ref) + (1 + np.abs(log_tail)) / ref_slope(x_ref, p, upper))


def log_tail_tol(x, p, upper=False):
    """Error bound for a log-tail value at a float ``x``: rounding of ``z`` moves it
    by ``EPS |x| slope``, the log-sum-exp by ``EPS (1 + |value|)``."""
    value = ref_log_tail(x, p, upper)
    return 16 * EPS * (1 + np.abs(value) + np.abs(x) * ref_slope(x, p, upper))


def assert_within(err, tol):
    """``|err| <= tol`` elementwise (broadcasting), reporting the worst ratio."""
    err, tol = np.broadcast_arrays(np.abs(np.asarray(err, np.float64)), np.asarray(tol, np.float64))
    ratio = np.where(err == 0, 0.0, err / tol)
    worst = np.unravel_index(np.argmax(np.nan_to_num(ratio, nan=np.inf)), ratio.shape)
    assert np.all(err <= tol), f"error {err[worst]:.3g} > bound {tol[worst]:.3g} at {worst}"


# --------------------------------------------------------------------------- #
# Responsibilities and densities
# --------------------------------------------------------------------------- #
def sklearn_model(p):
    """scikit-learn's GaussianMixture holding the parameters ``p`` (set by hand)."""
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=len(p.weights), covariance_type="spherical")
    gm.weights_ = np.asarray(p.weights, np.float64)
    gm.means_ = np.asarray(p.means, np.float64)[:, None]
    gm.covariances_ = np.asarray(p.scales, np.float64) ** 2
    gm.precisions_cholesky_ = 1.0 / np.asarray(p.scales, np.float64)
    return gm


def test_predict_proba_and_score_samples_match_sklearn():
    p = as_float(P3)
    x = np.asarray(np.linspace(-12.0, 16.0, 57), NP_DTYPE)
    gm = sklearn_model(p)
    xs = np.asarray(x, np.float64)[:, None]
    # Each log-joint term is a few roundings of numbers of size |a_k|.
    bound = 16 * EPS * (1 + np.max(np.abs(ref_log_joint(x, p)), axis=-1))
    resp = np.asarray(jaxgmm.predict_proba(x, jparams(p)))
    assert resp.shape == (57, 3) and resp.dtype == NP_DTYPE
    assert_within(resp - gm.predict_proba(xs), bound[:, None] + 4 * EPS)
    score = np.asarray(jaxgmm.score_samples(x, jparams(p)))
    assert_within(score - gm.score_samples(xs), bound)
    np.testing.assert_array_equal(np.asarray(jaxgmm.predict(x, jparams(p))),
                                  np.argmax(ref_log_joint(x, p), axis=-1))
    np.testing.assert_allclose(np.asarray(jaxgmm.pdf(x, jparams(p))), np.exp(gm.score_samples(xs)),
                               rtol=float(np.max(bound)), atol=0)


def test_result_is_accepted_and_zero_weight_components_are_ignored():
    p = jparams(as_float(TEXTBOOK))
    result = jaxgmm.FitResult(p, jnp.zeros((), DTYPE), 0, 0, True)
    x = jnp.linspace(-3.0, 8.0, 7, dtype=DTYPE)
    np.testing.assert_array_equal(jaxgmm.score_samples(x, result), jaxgmm.score_samples(x, result.params))
    # A third component of weight 0 changes nothing, wherever it sits.
    p0 = MixtureParams(*(jnp.concatenate([f, jnp.asarray([v], DTYPE)]) for f, v in zip(p, [0.0, 50.0, 1e-3])))
    q = jnp.asarray(lower_qs(), DTYPE)
    for fn, arg in [(jaxgmm.score_samples, x), (jaxgmm.logcdf, x), (jaxgmm.logsf, x), (jaxgmm.ppf, q)]:
        np.testing.assert_allclose(fn(arg, p0), fn(arg, p), rtol=4 * EPS)
    assert np.all(np.asarray(jaxgmm.predict_proba(x, p0))[:, 2] == 0)


def test_batches_broadcast_and_match_jit_and_vmap():
    # Params (B, K) against one x (n,), and x (B, n) against params (K,).
    base = as_float(TEXTBOOK)
    shift = np.array([0.0, 1.0, -2.5])
    pb = jparams(MixtureParams(np.broadcast_to(base.weights, (3, 2)), base.means + shift[:, None],
                               np.broadcast_to(base.scales, (3, 2))))
    x = jnp.linspace(-4.0, 9.0, 7, dtype=DTYPE)
    q = jnp.asarray(lower_qs(), DTYPE)
    rows = lambda fn, arg: np.stack([fn(arg, MixtureParams(*(f[b] for f in pb))) for b in range(3)])
    for fn, arg, tail in [(jaxgmm.predict_proba, x, (7, 2)), (jaxgmm.score_samples, x, (7,)),
                          (jaxgmm.logcdf, x, (7,)), (jaxgmm.logsf, x, (7,)), (jaxgmm.ppf, q, (7,))]:
        out = fn(arg, pb)
        assert out.shape == (3,) + tail
        one_by_one = rows(fn, arg)
        np.testing.assert_allclose(out, one_by_one, rtol=4 * EPS, atol=4 * EPS)
    # Under the user's jit and vmap (each a fresh compile: two representatives).
    for fn, arg in [(jaxgmm.score_samples, x), (jaxgmm.ppf, q)]:
        one_by_one = rows(fn, arg)
        mapped = jax.vmap(lambda p: fn(arg, p))(pb)
        np.testing.assert_allclose(mapped, one_by_one, rtol=4 * EPS, atol=4 * EPS)
        np.testing.assert_allclose(jax.jit(fn)(arg, pb), one_by_one, rtol=4 * EPS, atol=4 * EPS)
    xs = jnp.stack([x, x + 1.0])
    np.testing.assert_allclose(jaxgmm.cdf(xs, jparams(base))[1], jaxgmm.cdf(x + 1.0, jparams(base)),
                               rtol=4 * EPS)


# --------------------------------------------------------------------------- #
# CDFs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("p", [P3, TEXTBOOK], ids=["three", "textbook"])
def test_logcdf_logsf_cdf_match_scipy_into_both_tails(p):
    p = as_float(p)
    # Far enough that both tails are tiny (about e^-200) yet above float32's range
    # of normal numbers for the log, which the log scale never leaves.
    x = np.asarray(np.concatenate([np.linspace(-40.0, 40.0, 81), [0.1234, 1.5]]), NP_DTYPE)
    for upper, fn in [(False, jaxgmm.logcdf), (True, jaxgmm.logsf)]:
        got = np.asarray(fn(x, jparams(p)), np.float64)
        assert_within(got - ref_log_tail(x, p, upper), log_tail_tol(x, p, upper))
    # cdf and sf keep relative accuracy where they are small (1 - cdf would not).
    lower = ref_log_tail(x, p) > np.log(1e-30 if X64 else 1e-30)
    for fn, upper in [(jaxgmm.cdf, False), (jaxgmm.sf, True)]:
        keep = ref_log_tail(x, p, upper) > -60
        got = np.asarray(fn(x[keep], jparams(p)), np.float64)
        ref = np.exp(ref_log_tail(x[keep], p, upper))
        assert_within(got / ref - 1, log_tail_tol(x[keep], p, upper) + 2 * EPS)
    assert lower.any()


def test_log_ndtr_to_an_ulp_in_the_far_lower_tail():
    """JAX's log_ndtr is off by up to 9e4 ulps in float64 just below z = -20;
    the library's replacement must hold a few ulps everywhere."""
    from jaxgmm._distributions import _log_ndtr

    z = np.asarray([-1e4, -300.0, -68.0, -40.0, -37.5, -30.0, -25.0, -20.5, -20.0, -19.5, -10.0,
                    -3.0, -0.5, 0.0], NP_DTYPE)
    got = np.asarray(_log_ndtr(jnp.asarray(z)), np.float64)
    ref = special.log_ndtr(z.astype(np.float64))
    # The same float z on both sides; a few roundings of terms of the result's size.
    assert_within(got / ref - 1, 8 * EPS)


# --------------------------------------------------------------------------- #
# Quantiles
# --------------------------------------------------------------------------- #
def lower_qs():
    return np.asarray([1e-12, 1e-9, 1e-6, 1e-3, 0.05, 0.25, 0.5], NP_DTYPE)


def upper_tail_ps():
    """Upper-tail probabilities 1 - q, down to 1e-12."""
    return np.asarray([0.5, 0.25, 0.05, 1e-3, 1e-6, 1e-9, 1e-12], NP_DTYPE)


@pytest.mark.parametrize("p", [P3, TEXTBOOK], ids=["three", "textbook"])
def test_ppf_and_isf_match_float64_reference(p):
    p = as_float(p)
    q = lower_qs()
    x = np.asarray(jaxgmm.ppf(q, jparams(p)), np.float64)
    ref = ref_quantile(q, p)
    assert_within(x - ref, quantile_tol(ref, p, False))
    s = upper_tail_ps()
    x = np.asarray(jaxgmm.isf(s, jparams(p)), np.float64)
    ref = ref_quantile(s, p, upper=True)
    assert_within(x - ref, quantile_tol(ref, p, True))


@pytest.mark.parametrize("p", [P3, TEXTBOOK], ids=["three", "textbook"])
def test_cdf_of_ppf_round_trips_including_1e_12(p):
    p = as_float(p)
    q = lower_qs()
    x = jaxgmm.ppf(q, jparams(p))
    xr = np.asarray(x, np.float64)
    # Relative in q: the log-CDF's own rounding at the computed x.
    tol = log_tail_tol(xr, p) + 16 * EPS
    assert_within(np.asarray(jaxgmm.logcdf(x, jparams(p))) - np.log(q), tol)
    np.testing.assert_allclose(np.asarray(jaxgmm.cdf(x, jparams(p))), q, rtol=np.max(tol), atol=0)
    # The upper tail, through the tail probability (isf/sf), in both float types.
    s = upper_tail_ps()
    x = jaxgmm.isf(s, jparams(p))
    tol = log_tail_tol(np.asarray(x, np.float64), p, True) + 16 * EPS
    assert_within(np.asarray(jaxgmm.logsf(x, jparams(p))) - np.log(s), tol)
    np.testing.assert_allclose(np.asarray(jaxgmm.sf(x, jparams(p))), s, rtol=np.max(tol), atol=0)


def test_ppf_near_one():
    """ppf(q) for q close to 1: in float64 1 - 1e-12 round-trips; in float32 it is
    1.0 itself, so its quantile is +inf (isf(1e-12) is the way there)."""
    p = as_float(TEXTBOOK)
    q = np.asarray([0.5, 0.6, 0.75, 0.95, 1 - 1e-6, 1 - 1e-9, 1 - 1e-12], NP_DTYPE)
    x = jaxgmm.ppf(q, jparams(p))
    if not X64:
        assert q[-1] == 1.0  # the float32 fact behind the docstring
        assert np.isposinf(np.asarray(x)[-1])
        q, x = q[:5], x[:5]
    # ppf solves log S(x) = log1p(-q), exact for the float q: compare there.
    tol = log_tail_tol(np.asarray(x, np.float64), p, True) + 16 * EPS
    assert_within(np.asarray(jaxgmm.logsf(x, jparams(p))) - np.log1p(-q.astype(float)), tol)
    # and literally, cdf(ppf(q)) == q to a couple of ulps of q (close to 1).
    np.testing.assert_allclose(np.asarray(jaxgmm.cdf(x, jparams(p))), q, rtol=4 * EPS, atol=0)
    ref = ref_quantile(1 - q.astype(float), p, upper=True)
    assert_within(np.asarray(x, float) - ref, quantile_tol(ref, p, True))


@pytest.mark.parametrize("p", [P3, TEXTBOOK], ids=["three", "textbook"])
def test_ppf_of_cdf_round_trips(p):
    """x -> cdf -> ppf gives x back (lower half), x -> sf -> isf (upper half)."""
    p = as_float(p)
    x = np.asarray(np.linspace(-10.0, 14.0, 49), NP_DTYPE)
    xr = np.asarray(x, np.float64)
    upper = ref_log_tail(x, p) > np.log(0.5)
    # Both inversions on the whole grid (one shape, one compiled program), each
    # checked on its half.
    back_lower = np.asarray(jaxgmm.ppf(jaxgmm.cdf(x, jparams(p)), jparams(p)), np.float64)
    back_upper = np.asarray(jaxgmm.isf(jaxgmm.sf(x, jparams(p)), jparams(p)), np.float64)
    back = np.where(upper, back_upper, back_lower)
    # The probability is rounded once more (EPS relative) before inverting.
    tol = np.where(upper, quantile_tol(xr, p, True) + 4 * EPS / ref_slope(xr, p, True),
                   quantile_tol(xr, p, False) + 4 * EPS / ref_slope(xr, p))
    assert_within(back - xr, tol)


def test_one_component_is_the_normal_quantile():
    mu, sd = 3.0, 0.25
    p = jparams(MixtureParams([1.0], [mu], [sd]))
    q = np.asarray([1e-12, 1e-5, 0.3, 0.5, 0.8, 1 - 1e-5, 1 - 1e-3], NP_DTYPE)
    ref = stats.norm.ppf(q.astype(float), mu, sd)
    np.testing.assert_allclose(np.asarray(jaxgmm.ppf(q, p)), ref, rtol=16 * EPS)


def test_quantile_in_a_gap_between_modes():
    """Between two separated modes the CDF is nearly flat: Newton steps overshoot
    and the bracket takes over; the answer still meets its (large) error bound."""
    p = as_float(MixtureParams([0.3, 0.7], [0.0, 12.0], [1.0, 1.0]))
    q = np.asarray([0.3, 0.2999, 0.30001, 0.29, 0.31, 0.1, 0.5], NP_DTYPE)
    x = np.asarray(jaxgmm.ppf(q, jparams(p)), np.float64)
    ref = ref_quantile(q, p)
    assert_within(x - ref, quantile_tol(ref, p, False))


def test_edge_probabilities():
    p = jparams(as_float(TEXTBOOK))
    q = jnp.asarray([0.0, 1.0, -0.1, 1.1, jnp.nan, 0.5, 0.5], DTYPE)
    np.testing.assert_array_equal(jaxgmm.ppf(q, p)[:5], [-np.inf, np.inf, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(jaxgmm.isf(q, p)[:5], [np.inf, -np.inf, np.nan, np.nan, np.nan])


def test_bad_inputs_raise_clearly():
    p = jparams(as_float(TEXTBOOK))
    with pytest.raises(TypeError, match="params must be a jaxgmm.MixtureParams"):
        jaxgmm.cdf(jnp.zeros(3), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="scalar"):
        jaxgmm.ppf(0.5, p)
    with pytest.raises(ValueError, match="weights"):
        jaxgmm.pdf(jnp.zeros(3), p._replace(weights=jnp.asarray([0.5, 0.6], DTYPE)))
