"""One very large dataset is reduced in chunks of observations (``_chunks.py``).

The chunked path must give the fit of the unchunked one. The thresholds are
lowered for the test (they are read when a fit is traced; new shapes make sure
nothing cached is reused).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE, EPS
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
    monkeypatch.setattr(_chunks, "LARGE_N", 1000)
    monkeypatch.setattr(_chunks, "CHUNK", 512)  # 5003 = 9 full chunks + a shifted last one
    traced = []
    original = _chunks.ChunkedData.moments
    monkeypatch.setattr(_chunks.ChunkedData, "moments", lambda self: traced.append(1) or original(self))
    jax.clear_caches()  # same shapes as above: force a new trace with the lower thresholds
    chunked = jaxgmm.fit(x, to_params(start), tol=0, max_iter=15, sample_weight=w, **kw)
    jax.clear_caches()  # and leave no chunked trace behind for other tests
    assert traced, "the chunked path was not used"
    # Same arithmetic summed in another order: rounding of sums of n terms.
    atol = 64 * EPS * np.sqrt(n) * float(jnp.abs(x).max())
    for a, b in zip(as_np(chunked.params), as_np(plain.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose(float(chunked.loglik), float(plain.loglik), rtol=64 * EPS * np.sqrt(n))
    assert int(chunked.status) == int(plain.status) and int(chunked.n_iter) == 15
