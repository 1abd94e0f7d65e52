"""One very large dataset is reduced in chunks of observations (``_chunks.py``).

The chunked path must give the fit of the unchunked one. The threshold is
lowered for the test while the chunked program is traced, and that program is
told apart from the unchunked one in the jit cache by its chunk length
(``conftest.fit_in_chunks``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE, EPS, FORCED_CHUNK, FORCED_LARGE_N, fit_in_chunks, rtol_for
from jaxgmm import _chunks
from test_core import START, THREE, THREE_START, TRUTH, as_np, draw, to_params


@pytest.mark.parametrize("truth,start,kw,n", [
    (TRUTH, START, dict(fixed="scales"), 5003),   # K = 2 fast pass (+ float32 polish)
    (TRUTH, START, dict(), 5011),                 # K = 2, free scales
    (THREE, THREE_START, dict(), 5021),           # general K
], ids=["k2-known-scales", "k2-free", "k3-free"])
def test_chunked_fit_equals_unchunked(monkeypatch, truth, start, kw, n):
    x = jnp.asarray(draw(41, truth, n), DTYPE)
    w = jnp.asarray(np.random.default_rng(5).uniform(0.5, 2, n), DTYPE)
    plain = jaxgmm.fit(x, to_params(start), tol=0, max_iter=15, sample_weight=w, **kw)
    # n = 5003: 9 full chunks of 512 + a shifted last one.
    chunked = fit_in_chunks(monkeypatch, x, to_params(start), tol=0, max_iter=15, sample_weight=w, **kw)
    # Same arithmetic summed in another order: rounding of sums of n terms.
    atol = 64 * EPS * np.sqrt(n) * float(jnp.abs(x).max())
    for a, b in zip(as_np(chunked.params), as_np(plain.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose(float(chunked.loglik), float(plain.loglik), rtol=64 * EPS * np.sqrt(n))
    assert int(chunked.status) == int(plain.status) and int(chunked.n_iter) == 15


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_chunked_standardiser_equals_unchunked(monkeypatch, weighted):
    # Data far from zero (1e3 + N(0, 1)): the centre and spread must come from the
    # same exact-scaling two-pass moments whether or not the data are chunked.
    from jaxgmm._units import Standardiser

    n = 5003
    rng = np.random.default_rng(7)
    x = jnp.asarray(1e3 + rng.normal(size=n), DTYPE)
    w = jnp.asarray(rng.uniform(0.5, 2, n), DTYPE) if weighted else None
    # The chunk length is static: the chunked trace gets its own cache entry.
    from_data = jax.jit(Standardiser.from_data, static_argnames="chunk")
    plain = from_data(x, w)
    with monkeypatch.context() as m:
        m.setattr(_chunks, "LARGE_N", FORCED_LARGE_N)
        chunked = from_data(x, w, chunk=FORCED_CHUNK)
    for a, b in zip(chunked, plain):
        # Sums of n terms in another order; the spread is relative to data of size 1e3.
        np.testing.assert_allclose(float(a), float(b), rtol=rtol_for(n) * 1e3)


def test_huge_dataset_fit_makes_no_data_sized_temporary():
    # What XLA allocates for a 1e8-point fit beyond its arguments and result, read
    # from the compiled program (nothing is run): every pass, the standardisation
    # included, reduces chunks, so the temporaries do not grow with n (doubling n
    # adds under 1% of the added data's bytes) and stay within the fixed overhead
    # the performance issue allows (300 MB).
    from jaxgmm._controls import Controls, resolve_tuning
    from jaxgmm._engine import solve
    from jaxgmm._spec import make_spec
    from jaxgmm._univariate import Univariate

    init = jaxgmm.MixtureParams(*(jnp.asarray(v, DTYPE) for v in ([0.5, 0.5], [-1.0, 4.0], [1.0, 1.5])))
    one = lambda v: jnp.asarray(v, DTYPE)
    itemsize = jnp.dtype(DTYPE).itemsize
    for fixed in ("scales", ()):
        temp = {}
        for n in (100_000_000, 200_000_000):
            x = jax.ShapeDtypeStruct((n,), DTYPE)
            compiled = solve.lower(x, None, init, Controls(one(1e-5), jnp.int32(10), one(1e-5)),
                                   family=Univariate(make_spec(fixed, 2)), accelerate=None,
                                   tuning=resolve_tuning(n, 1, DTYPE)).compile()
            stats = compiled.memory_analysis()
            if stats is None:
                pytest.skip("this backend reports no memory analysis")
            temp[n] = stats.temp_size_in_bytes
        assert temp[200_000_000] - temp[100_000_000] < 0.01 * 100_000_000 * itemsize, (fixed, temp)
        assert temp[200_000_000] < 300e6, (fixed, temp)
