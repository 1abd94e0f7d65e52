"""Many components: programs that do not grow with K (issue 21: compile time).

Up to ``UNROLL_COMPONENTS`` components the E-pass is written out component by
component (measured faster on CPU); above it, as stacked ``(K, n)`` arrays.
Written out, K = 60 took 48 s and K = 120 over 200 s to compile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference as ref
from conftest import DTYPE, rtol_for
from jaxgmm import MixtureParams
from jaxgmm._engine import solve
from jaxgmm._fit import engine_call, prepare_fit
from jaxgmm._params import UNROLL_COMPONENTS


def components(k, n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n) + 4.0 * rng.integers(0, k, n)
    start = (np.full(k, 1 / k), 4.0 * np.arange(k) + 0.3, np.full(k, 1.2))
    return x, start


def program_size(k, **fit_kw):
    x, start = components(k)
    args = prepare_fit(x.astype(DTYPE), MixtureParams(*(f.astype(DTYPE) for f in start)), **fit_kw)
    arrays, static = engine_call(args)
    return len(solve.lower(*arrays, **static).as_text().splitlines())


@pytest.mark.parametrize("fit_kw", [dict(), dict(fixed="scales"), dict(equal_scales=True)],
                         ids=["free", "scales-known", "equal-scales"])
def test_program_does_not_grow_with_components(fit_kw):
    small, large = UNROLL_COMPONENTS + 1, 4 * UNROLL_COMPONENTS
    assert program_size(large, **fit_kw) == program_size(small, **fit_kw)


@pytest.mark.parametrize("k", [UNROLL_COMPONENTS + 4])
def test_many_components_match_the_reference(k):
    """Fixed iterations, all free, and the public e_step against the float64 reference."""
    x, start = components(k)
    n_iter = 10
    res = jaxgmm.fit(x.astype(DTYPE), MixtureParams(*(f.astype(DTYPE) for f in start)), tol=0, max_iter=n_iter)
    want, lls = ref.em_iterations(x, *start, n_iter=n_iter)
    atol = rtol_for(x.size) * np.sqrt(n_iter + 1) * 8 * np.abs(x).max()
    for name, got, w in zip(MixtureParams._fields, res.params, want):
        np.testing.assert_allclose(np.asarray(got, np.float64), w, rtol=0, atol=atol, err_msg=name)
    np.testing.assert_allclose(float(res.loglik), ref.loglik(x, *want), rtol=8 * rtol_for(x.size) * np.sqrt(n_iter))
    resp, ll = jaxgmm.e_step(jnp.asarray(x, DTYPE), MixtureParams(*(jnp.asarray(f, DTYPE) for f in start)))
    want_resp, want_ll = ref.e_step(x, *start)
    np.testing.assert_allclose(np.asarray(resp, np.float64), want_resp, rtol=0, atol=rtol_for(k) * 8)
    np.testing.assert_allclose(float(ll), want_ll, rtol=rtol_for(x.size) * 8)
    assert jax.tree_util.tree_structure(res.params) == jax.tree_util.tree_structure(MixtureParams(1, 2, 3))
