"""Every driver option in every batch layout gives the plain result (issue 15).

Drivers: ``accelerate`` in {None, "squarem"} x ``compact`` in {False, True}.
Layouts: one dataset; a batch; starts broadcast over a batch; starts of one
dataset; datasets of different sizes padded with ``sample_weight`` 0; one huge
dataset reduced in chunks; and ``fit_sharded`` over 4 forced CPU devices
(``tests/scripts/sharded_matrix.py``, run from ``tests/test_sharding.py`` in
one subprocess with the other 4-device scripts).  Each fit is checked against the float64
NumPy reference's optimum of its own dataset (``tests/reference.py``), to the
distance the stopping rule allows (``test_acceleration.stopping_bound``'s
derivation: ``tol r / (1 - r)`` from EM's contraction rate ``r``, plus
rounding).  The model is the seed's, well separated, so every driver reaches
the same (global) maximum from the same start.  No combination is refused
today; one that is must raise a ``ValueError`` naming it, never fit silently
differently.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference as ref
from conftest import DTYPE, fit_in_chunks, rtol_for
from jaxgmm import MixtureParams, Status

TRUTH = MixtureParams(np.array([0.2, 0.8]), np.array([0.0, 5.0]), np.array([1.0, np.sqrt(2.0)]))
START = MixtureParams(np.array([0.5, 0.5]), np.array([-1.0, 4.0]), np.array([1.0, 1.0]))
OTHER = MixtureParams(np.array([0.4, 0.6]), np.array([1.0, 6.0]), np.array([2.0, 1.0]))
N, B = 300, 3

# "plain" is plain EM on blocks (compact=False): the default, compaction on CPU,
# is the "compact" cell, so without it one policy would go untested on CPU.
DRIVERS = {
    "plain": dict(compact=False),
    "compact": dict(compact=True),
    "squarem": dict(accelerate="squarem", compact=False),
    "squarem+compact": dict(accelerate="squarem", compact=True),
}


def draw(seed, n, batch=()):
    rng = np.random.default_rng(seed)
    shape = tuple(batch) + (n,)
    z = rng.choice(2, size=shape, p=TRUTH.weights)
    return TRUTH.means[z] + TRUTH.scales[z] * rng.standard_normal(shape)


def params(*ps):
    """Starts stacked on a leading axis (one start: no axis)."""
    stack = (lambda *f: np.stack(f)) if len(ps) > 1 else (lambda f: np.asarray(f))
    return MixtureParams(*(jnp.asarray(stack(*f), DTYPE) for f in zip(*ps)))


def layouts():
    """``name -> (x, init, fit kwargs, [(index into the result, data, weights, start)])``."""
    xs = draw(1, N, (B,))
    out = {
        "one": (xs[0], params(START), {}, [((), xs[0], None, START)]),
        "batch": (xs, params(START), {}, [((i,), xs[i], None, START) for i in range(B)]),
        # (R, B, K) starts over (B, n) data: no copy of the data per start.
        "restarts": (xs, MixtureParams(*(jnp.broadcast_to(f[:, None], (2, B, 2)) for f in params(START, OTHER))),
                     {}, [((r, i), xs[i], None, s) for r, s in enumerate((START, OTHER)) for i in range(B)]),
        "starts-of-one": (xs[0], params(START, OTHER), {}, [((r,), xs[0], None, s)
                                                            for r, s in enumerate((START, OTHER))]),
    }
    sizes = (N, N - 90, N - 170)
    w = np.zeros((B, N))
    for i, m in enumerate(sizes):
        w[i, :m] = 1.0
    padded = np.where(w > 0, xs, 1e3)  # padding far away: it must weigh nothing
    out["padded"] = (padded, params(START), dict(sample_weight=jnp.asarray(w, DTYPE)),
                     [((i,), xs[i, :m], None, START) for i, m in enumerate(sizes)])
    return out


LAYOUTS = layouts()


def check(result, cases, **kw):
    tol = jaxgmm.default_tol(DTYPE)
    for index, x, w, start in cases:
        assert int(result.status[index]) == Status.CONVERGED, index
        mle, ll, _ = ref.em_fit(x, *start, tol=1e-14, sample_weight=w)
        r = ref.contraction_rate(x, *start)
        rounding = rtol_for(x.size) * np.sqrt(int(result.n_iter[index]) + 1) * 8 * np.abs(x).max()
        bound = 4 * tol * r / (1 - r) * x.std() + rounding
        for got, want in zip(result.params, mle):
            np.testing.assert_allclose(np.asarray(got[index], np.float64), want, rtol=0, atol=bound)
        slack = rtol_for(x.size) * 8 * x.size * (1.0 + np.log1p(np.abs(x).max()))
        assert abs(float(result.loglik[index]) - ll) <= slack + x.size * bound, index


# Each cell compiles its own program (a few seconds each): the plain and
# compacted drivers run in the default suite in every layout, SQUAREM in the
# layouts whose scheduling differs most (a broadcast start axis, padding), the
# remaining cells with -m slow.
DEFAULT_CELLS = {(d, lay) for d in ("plain", "compact") for lay in LAYOUTS} | {
    (d, lay) for d in ("squarem", "squarem+compact") for lay in ("restarts", "padded")}
CELLS = [pytest.param(d, lay, marks=() if (d, lay) in DEFAULT_CELLS else pytest.mark.slow, id=f"{d}-{lay}")
         for lay in LAYOUTS for d in DRIVERS]


@pytest.mark.parametrize("driver,layout", CELLS)
def test_driver_in_layout_gives_the_plain_optimum(driver, layout):
    x, init, kw, cases = LAYOUTS[layout]
    result = jaxgmm.fit(jnp.asarray(x, DTYPE), init, **kw, **DRIVERS[driver])
    assert result.loglik.shape == jnp.broadcast_shapes(jnp.shape(x)[:-1], init.means.shape[:-1])
    check(result, cases)


@pytest.mark.parametrize("driver", [pytest.param(d, marks=() if d in ("plain", "squarem+compact")
                                                 else pytest.mark.slow) for d in DRIVERS])
def test_driver_on_one_huge_chunked_dataset(monkeypatch, driver):
    x = draw(2, 3001)  # 3001 = 5 full chunks of 512 + a shifted last one
    result = fit_in_chunks(monkeypatch, jnp.asarray(x, DTYPE), params(START, OTHER), **DRIVERS[driver])
    check(result, [((r,), x, None, s) for r, s in enumerate((START, OTHER))])
