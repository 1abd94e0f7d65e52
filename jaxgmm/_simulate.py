"""Sampling from mixtures."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _mv_em, _validate
from ._mv_params import MultivariateParams
from ._params import Array, MixtureParams, batch_shape
from ._xla import jit


def sample(key: Array, params: MixtureParams, n: int, shape: tuple = ()) -> Array:
    """Draw ``n`` observations per mixture.

    Args:
      key: a ``jax.random`` key.
      params: :class:`MixtureParams`, fields of shape ``(..., K)``; or
        :class:`MultivariateParams` (weights ``(..., K)``, means ``(..., K, D)``,
        covariances ``(..., K, D, D)``).
      n: observations per dataset.
      shape: extra leading sample shape, e.g. ``(reps,)`` for ``reps`` datasets
        from each mixture.

    Returns:
      Array of shape ``shape + batch_shape(params) + (n,)`` in the parameters'
      float dtype; ``... + (n, D)`` for multivariate parameters (singular
      covariances allowed: draws then lie in their support).
    """
    n = _validate.as_count(n, "n", minimum=0)  # 2.5 or "3" are errors, not 2 and 3
    if isinstance(params, MultivariateParams):
        return _mv_em.sample(key, params, n, shape)
    dtype = _validate.float_dtype_for(*params)
    params = _validate.as_params(params, dtype, name="params")
    return _sample(key, params, n, tuple(int(s) for s in shape))


@jit
def _cdf(weights):
    return jnp.cumsum(weights, axis=-1)


def _sample_impl(key, params, n, shape):
    out_shape = shape + batch_shape(params) + (n,)
    k_comp, k_noise = jax.random.split(key)
    # Component label = number of CDF cut points below a uniform draw; the last cut
    # point (1) is left out so rounding in the cumulative sum cannot yield label K.
    cuts = _cdf(params.weights)[..., None, :-1]
    u = jax.random.uniform(k_comp, out_shape, params.weights.dtype)
    label = jnp.sum(u[..., None] >= cuts, axis=-1)
    pick = lambda f: jnp.take_along_axis(
        jnp.broadcast_to(f[..., None, :], out_shape[:-1] + (1, f.shape[-1])), label[..., None], axis=-1)[..., 0]
    z = jax.random.normal(k_noise, out_shape, params.means.dtype)
    return pick(params.means) + pick(params.scales) * z


_sample = jit(_sample_impl, static_argnums=(2, 3))
