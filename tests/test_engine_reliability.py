"""Silent wrong results the engine owned (issue 21 #5, #7's extreme weights, #8).

Each test fails on the code before its fix: traced fixed weights outside the
simplex came back CONVERGED with a "log-likelihood" above the maximum; uniform
weights of 1e-37 (float32) gave a biased fit marked CONVERGED and 1e36 a
NONFINITE one; compaction used blocks of 4 fits, whose sums XLA:CPU rounds
differently from larger blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE, X64
from jaxgmm import MixtureParams, Status

TRUTH = MixtureParams(np.array([0.3, 0.7]), np.array([0.0, 3.0]), np.array([1.0, 1.0]))
START = MixtureParams(*(jnp.asarray(f, DTYPE) for f in ([0.5, 0.5], [-1.0, 4.0], [1.0, 1.0])))


def data(n=1000, shape=(), seed=0):
    truth = MixtureParams(*(jnp.asarray(f, DTYPE) for f in TRUTH))
    return jaxgmm.sample(jax.random.key(seed), truth, n, shape=shape)


@pytest.mark.parametrize("weights,fixed", [
    ([0.6, 0.6], "weights"),  # all fixed, summing to 1.2
    ([0.4, 0.4], "weights"),  # all fixed, summing to 0.8
    ([1.2, 0.5], MixtureParams([True, False], False, False)),  # one fixed above 1
    ([-0.1, 0.5], MixtureParams([True, False], False, False)),  # one fixed below 0
])
def test_traced_fixed_weights_outside_the_simplex_are_flagged(weights, fixed):
    x = data()
    run = jax.jit(lambda w: jaxgmm.fit(x, START._replace(weights=w), fixed=fixed))
    bad = run(jnp.asarray(weights, DTYPE))
    assert int(bad.status) == Status.NONFINITE and not bool(bad.converged)
    good = run(jnp.asarray([0.3, 0.7], DTYPE))  # the same program, valid weights
    assert int(good.status) == Status.CONVERGED


# Uniform weights far from 1: normal floats whose products with responsibilities
# and squared deviations underflow (or whose sums overflow) in the fit's passes.
EXTREME = [1e-300, 1e300] if X64 else [1e-37, 1e36]


@pytest.mark.parametrize("scale", EXTREME)
def test_extreme_uniform_weights_fit_like_their_normalised_weights(scale):
    """Weights c and c * 2^-e (in [0.5, 1)) give the same fit bit for bit, and
    log-likelihoods in the ratio 2^e (the only thing the weights' units change)."""
    x = data()
    c = np.asarray(scale, DTYPE)
    mantissa, e = np.frexp(c)
    got = jaxgmm.fit(x, START, sample_weight=jnp.full(x.shape, c, DTYPE))
    want = jaxgmm.fit(x, START, sample_weight=jnp.full(x.shape, mantissa, DTYPE))
    assert int(got.status) == int(want.status) == Status.CONVERGED
    for g, w in zip(got.params, want.params):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    ll = np.ldexp(np.float64(want.loglik), int(e))
    if abs(ll) <= np.finfo(DTYPE).max:  # representable in the data's dtype
        assert float(got.loglik) == pytest.approx(ll, rel=4 * float(jnp.finfo(DTYPE).eps))
    else:  # -inf is the honest value of a log-likelihood beyond the dtype's range
        assert float(got.loglik) == -np.inf


@pytest.mark.parametrize("driver", [dict(), dict(compact=True), dict(compact=True, accelerate="squarem")],
                         ids=["plain", "compact", "compact-squarem"])
def test_a_fit_does_not_depend_on_its_batch_mates(driver):
    """The same dataset at different positions of batches of different sizes
    and contents (5 to 40 fits, so every block has at least 5 rows) gets the same
    result bit for bit, with every driver; XLA:CPU rounded the sums of blocks of
    1 to 4 fits differently (compaction's smallest blocks were 4 rows: a
    SQUAREM fit there ended 1e-3 away)."""
    xs = np.asarray(data(shape=(41,), seed=1))
    target = xs[0]
    start = MixtureParams(*(jnp.asarray(f, DTYPE) for f in ([0.5, 0.5], [-1.0, 2.0], [1.0, 1.0])))

    def fit_at(size, pos):
        batch = xs[1:size + 1].copy()
        batch[pos] = target
        res = jaxgmm.fit(batch, start, fixed="scales", max_iter=300, **driver)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[pos], res)

    ref = fit_at(8, 0)
    for size, pos in [(5, 4), (40, 39)]:
        got = fit_at(size, pos)
        for g, w in zip(got.params, ref.params):
            np.testing.assert_array_equal(g, w)
        assert int(got.n_iter) == int(ref.n_iter) and int(got.status) == int(ref.status)
