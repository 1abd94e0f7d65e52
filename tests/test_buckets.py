"""Padding to a few lengths (``jaxgmm/_buckets.py``): a loop of ``fit`` over
datasets of distinct sizes compiles one program per rung of the ladder, and the
padding changes no fit beyond the stopping rule's reach."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DTYPE, backend_compiles

import jaxgmm
import reference as ref
from jaxgmm import _buckets
from jaxgmm._engine import solve
from test_acceleration import loglik_slack, stopping_bound

START = (np.array([0.5, 0.5]), np.array([-1.0, 6.0]), np.array([1.0, 1.5]))


def draw(seed, n):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.2, rng.normal(0, 1, n), rng.normal(5, np.sqrt(2), n))


def params(start=START):
    return jaxgmm.MixtureParams(*(jnp.asarray(a, DTYPE) for a in start))


@pytest.mark.parametrize("per_octave", [1, 2, 4])
def test_ladder_rungs_are_multiples_of_the_minimum_and_grow_by_at_most_the_step(per_octave):
    rungs = _buckets.ladder(10 ** 6, per_octave)
    assert rungs[0] == _buckets.MIN_BUCKET and rungs[-1] >= 10 ** 6
    assert np.all(rungs % _buckets.MIN_BUCKET == 0) and np.all(np.diff(rungs) > 0)
    # Each rung is 2^(j/b) rounded up to a multiple of 8: beyond the first few,
    # consecutive rungs are at most a step (plus the rounding) apart.
    big = rungs[:-1] >= 64
    assert np.all(rungs[1:][big] <= rungs[:-1][big] * 2 ** (1 / per_octave) + _buckets.MIN_BUCKET)
    counts = np.arange(1, 5000)
    padded = _buckets.padded_lengths(counts, per_octave)
    assert np.all(padded >= counts)
    # The smallest rung that holds each count: the rung below is too short.
    below = rungs[np.searchsorted(rungs, padded) - 1]
    assert np.all((padded == rungs[0]) | (below < counts))


def test_padding_repeats_the_last_observation_with_weight_zero():
    x = jnp.asarray(np.arange(2 * 300, dtype=float).reshape(2, 300), DTYPE)
    xp, w = _buckets.pad_observations(x, None, event_ndim=1)
    m = int(_buckets.padded_lengths([300], _buckets.FIT_LENGTHS_PER_OCTAVE)[0])
    assert m > 300 and xp.shape == (2, m) and w.shape == (m,)
    np.testing.assert_array_equal(xp[:, :300], x)
    np.testing.assert_array_equal(xp[:, 300:], np.broadcast_to(x[:, -1:], (2, m - 300)))
    np.testing.assert_array_equal(w, np.r_[np.ones(300), np.zeros(m - 300)])
    # Weights of their own keep their batch shape; multivariate rows pad on axis -2.
    xw, ww = _buckets.pad_observations(x, jnp.full((2, 300), 3.0, DTYPE), event_ndim=1)
    assert ww.shape == (2, m) and float(ww[:, 300:].max()) == 0 and float(ww[:, :300].min()) == 3
    y = jnp.ones((300, 3), DTYPE)
    yp, _ = _buckets.pad_observations(y, None, event_ndim=2)
    assert yp.shape == (m, 3)
    # On its rung, or beyond PAD_NUMBERS numbers of data: untouched.
    on_rung = jnp.ones((m,), DTYPE)
    assert _buckets.pad_observations(on_rung, None, 1)[0] is on_rung
    big = jnp.ones((_buckets.PAD_NUMBERS // 300 + 1, 300), DTYPE)
    out, none = _buckets.pad_observations(big, None, 1)
    assert out is big and none is None


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_a_loop_over_sizes_compiles_once_per_rung(weighted):
    """``init_params`` + ``fit`` + ``best_of`` over many sizes: the fit and the
    starts compile once per rung, and the boundary around them (conversion,
    checks, padding) compiles nothing per size."""
    key = jax.random.key(0)

    def one(i, n):
        x = draw(i, n)
        w = np.random.default_rng(i).uniform(0.5, 2, n) if weighted else None
        init = jaxgmm.init_params(jax.random.fold_in(key, i), x, 2, n_starts=2, sample_weight=w)
        return jaxgmm.best_of(jaxgmm.fit(x, init, sample_weight=w))

    first, later = [130, 190], np.r_[np.arange(131, 184, 13), np.arange(191, 256, 16)]  # rungs 184 and 256
    assert set(_buckets.padded_lengths(later, _buckets.FIT_LENGTHS_PER_OCTAVE).tolist()) == {184, 256}
    before = solve._cache_size()
    for i, n in enumerate(first):
        one(i, n)
    assert solve._cache_size() - before <= 2
    with backend_compiles() as compiled:
        for i, n in enumerate(later):
            res = one(i, n)
            assert int(res.status) == jaxgmm.Status.CONVERGED
    assert compiled == []


def test_padding_moves_no_fit_beyond_the_stopping_bound(monkeypatch):
    x = draw(7, 300)
    padded = jaxgmm.fit(jnp.asarray(x, DTYPE), params())
    monkeypatch.setattr(_buckets, "PAD_NUMBERS", 0)
    unpadded = jaxgmm.fit(jnp.asarray(x, DTYPE), params())
    mle, ll, _ = ref.em_fit(x, *START, tol=1e-14)
    bound = stopping_bound(x, START, int(padded.n_iter))
    for got in (padded, unpadded):
        assert int(got.status) == jaxgmm.Status.CONVERGED
        for g, want in zip(got.params, mle):
            np.testing.assert_allclose(np.asarray(g, np.float64), want, rtol=0, atol=bound)
    # The log-likelihood is of the real observations only (padding has weight 0).
    np.testing.assert_allclose(float(padded.loglik), ll, rtol=0, atol=loglik_slack(x))
