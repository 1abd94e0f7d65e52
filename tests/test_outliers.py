"""Far outliers: the fit's units must not be inflated by them (issue 21, #1 and #2).

A fit works in standardised coordinates whose spread is also the unit of the
stopping rule.  One point at 1e12 among 10^4 points of size 1 made the standard
deviation 1e10, so "no mean moved by tol spreads" held after one iteration,
1,500 nats below the maximum; in float32 a centre pulled to 1e11 left the bulk
unrepresentable (both means 25092 for data in [-2.9, 5.7]).  Every fit here is
checked against the float64 NumPy reference EM, with the stopping error bounded
by the reference's contraction rate in units of the *bulk's* spread, so a test
fails if the units are inflated again.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgmm
import reference as ref
from conftest import DTYPE, X64, property_examples, rtol_for
from jaxgmm import MixtureParams, Status

# Plain EM and the combination of both options run by default; each option alone
# (compiled programs of their own, about 30 s a case on the 2-core machine) with -m slow.
DRIVERS = [pytest.param(dict(), id="plain"),
           pytest.param(dict(accelerate="squarem"), id="squarem", marks=pytest.mark.slow),
           pytest.param(dict(compact=True), id="compact", marks=pytest.mark.slow),
           pytest.param(dict(compact=True, accelerate="squarem"), id="compact-squarem")]
# Float32 holds integers exactly only up to 2^24, so its outliers stay below
# 1e9 * 2^7 where the bulk is still resolved next to them after centring.
OUTLIER = 1e12 if X64 else 1e9


def stopping_error(x, start, ref_kw):
    """Distance, in units of the spread the rule uses, at which a fit stopped by
    the default tolerance may stand from the fixed point: ``tol r / (1 - r)``
    for the reference's contraction rate ``r`` (a ratio, free of units), x4."""
    rate = ref.contraction_rate(x, *start, **ref_kw)
    return 4 * jaxgmm.default_tol(DTYPE) * rate / (1 - rate)


def check_against_reference(x, bulk, result, start, ref_kw):
    """The fit equals the reference's fixed point: bulk estimates within the
    stopping error (in units of the bulk's spread) plus rounding, and the
    log-likelihood of the returned parameters within their quadratic loss."""
    want, ll_want, _ = ref.em_fit(x, *start, **ref_kw)
    step = stopping_error(x, start, ref_kw)
    got = tuple(np.asarray(f, np.float64) for f in result.params)
    # Equal known scales and weights make the labels exchangeable (in float32
    # the outlier at 1e15 splits evenly at the start, both squares rounding
    # alike): compare the components ordered by their means.
    got, want = (tuple(f[np.argsort(p[1])] for f in p) for p in (got, want))
    assert int(result.status) == Status.CONVERGED
    bound = (step * bulk.std()
             + rtol_for(x.size) * np.sqrt(int(result.n_iter) + 1) * 8 * np.abs(bulk).max())
    far = np.abs(want[1]) > 1e3 * np.abs(bulk).max()
    np.testing.assert_allclose(got[1][~far], want[1][~far], rtol=0, atol=bound, err_msg="bulk means")
    np.testing.assert_allclose(got[1][far], want[1][far], rtol=8 * rtol_for(x.size), err_msg="outlier means")
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=bound / bulk.std() + 8 * rtol_for(x.size))
    # A mean at 1e10 is held to an ulp of 1024 in float32, which alone costs a
    # point of scale 1 there 1024^2 / 2 nats: the likelihood is compared at the
    # reference's far means (checked to rounding above).
    ll_got = ref.loglik(x, got[0], np.where(far, want[1], got[1]), got[2])
    assert abs(ll_got - ll_want) <= 8 * rtol_for(x.size) * abs(ll_want) + x.size * (bound / bulk.std()) ** 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_one_outlier_does_not_end_em_early(driver):
    """Three components, weights and scales known: the two bulk means converge
    slowly, and an outlier-inflated unit stopped them after one iteration."""
    rng = np.random.default_rng(0)
    bulk = np.concatenate([rng.normal(-1, 1, 3000), rng.normal(1, 1, 3000)])
    x = np.concatenate([bulk, [OUTLIER]])
    # The outlier's own component is wide enough for float32 to resolve it at
    # its location (a scale below the rounding of 1e9, 64, is not).
    start = (np.array([0.4999, 0.4999, 0.0002]), np.array([-0.1, 0.1, OUTLIER]), np.array([1.0, 1.0, 1e-3 * OUTLIER]))
    result = jaxgmm.fit(np.stack([x, x]).astype(DTYPE), MixtureParams(*(f.astype(DTYPE) for f in start)),
                        fixed=("weights", "scales"), **driver)
    one = jaxgmm.best_of(result)  # both rows are the same fit
    check_against_reference(x, bulk, one, start, dict(fixed_w=[True] * 3, fixed_s=[True] * 3))


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("outlier", [1e10, 1e15])
def test_bulk_is_kept_next_to_a_far_outlier(driver, outlier):
    """Points in [-2.9, 5.7] and one at 1e10 or 1e15, scales known: float32 gave
    both means 25092 (and at 1e10 a first mean off by 0.5); float64 stopped
    1.5e-5 away from the maximum, its tanh pass's sums swamped by the outlier."""
    rng = np.random.default_rng(1)
    bulk = rng.uniform(-2.9, 5.7, 5000)
    x = np.concatenate([bulk, [outlier]])
    start = (np.array([0.5, 0.5]), np.array([-1.0, 3.0]), np.ones(2))
    result = jaxgmm.fit(np.stack([x, x]).astype(DTYPE), MixtureParams(*(f.astype(DTYPE) for f in start)),
                        fixed="scales", **driver)
    check_against_reference(x, bulk, jaxgmm.best_of(result), start, dict(fixed_s=[True, True]))


@settings(max_examples=property_examples(6), deadline=None)
@given(exponent=st.integers(3, 14 if X64 else 9), sign=st.sampled_from([-1.0, 1.0]),
       n_out=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_property_outliers_never_change_the_fixed_point(exponent, sign, n_out, seed):
    """Any magnitude of a few far outliers, on either side: the fit (two
    components, scales known) is the reference's, whichever component the
    outliers take."""
    rng = np.random.default_rng(seed)
    bulk = np.concatenate([rng.normal(0, 1, 1000), rng.normal(4, 1, 1000)])
    x = np.concatenate([bulk, sign * 10.0 ** exponent * (1 + np.arange(n_out))])
    start = (np.array([0.5, 0.5]), np.array([-1.0, 5.0]), np.ones(2))
    result = jaxgmm.fit(x.astype(DTYPE), MixtureParams(*(f.astype(DTYPE) for f in start)), fixed="scales")
    check_against_reference(x, bulk, result, start, dict(fixed_s=[True, True]))
