"""The public single-step functions, for either family: :func:`e_step`,
:func:`m_step` and :func:`log_likelihood` take a :class:`MixtureParams`
(univariate, ``jaxgmm/_em.py``) or a :class:`MultivariateParams`
(``jaxgmm/_mv_em.py``) and check their arguments at this boundary."""

from __future__ import annotations

from typing import Optional

from . import _em, _mv_em, _mv_validate, _validate
from ._mv_params import MultivariateParams
from ._params import Array


def _mv_args(x, params, sample_weight, one_dataset: bool):
    x = _mv_validate.as_mv_data(x)
    if one_dataset and x.ndim != 2:
        raise ValueError(f"x must be one dataset of shape (n, D), got shape {x.shape}; jax.vmap for batches")
    params = _mv_validate.as_mv_params(params, x.dtype, x.shape[-1], name="params")
    if one_dataset and params.weights.ndim != 1:
        raise ValueError(f"params must be one mixture (weights (K,)), got weights of shape {params.weights.shape}")
    sample_weight = _validate.as_sample_weight(sample_weight, _mv_validate.rows_of(x), something_to_fit=False)
    return x, params, sample_weight


def e_step(x: Array, params, sample_weight: Optional[Array] = None) -> tuple[Array, Array]:
    """E-step for one dataset: responsibilities and the log-likelihood.

    Args:
      x: data, shape ``(n,)``; or ``(n, D)`` with a :class:`MultivariateParams`.
      params: :class:`MixtureParams` with fields of shape ``(K,)``, or
        :class:`MultivariateParams` (weights ``(K,)``, means ``(K, D)``,
        covariances ``(K, D, D)``).
      sample_weight: optional non-negative observation weights, shape ``(n,)``.

    Returns:
      ``(resp, loglik)``: ``resp[i, k]`` is the posterior probability that ``x[i]``
      came from component ``k`` (shape ``(n, K)``, rows sum to 1); ``loglik`` is
      ``sum_i w_i log p(x_i | params)``, the log-likelihood *of* ``params``.

    Pure and jittable; ``jax.vmap`` it for batches.

    Raises:
      ValueError, TypeError: for concrete invalid arguments (params that are
        not a mixture, negative weights), naming the argument; traced values
        inside ``jit``/``vmap`` are not checked (shapes are).
    """
    if isinstance(params, MultivariateParams):
        return _mv_em.e_step(*_mv_args(x, params, sample_weight, one_dataset=True))
    return _em.e_step(x, params, sample_weight)


def m_step(x: Array, resp: Array, params, *, fixed=(), equal_scales: bool = False,
           sample_weight: Optional[Array] = None, covariance_type: Optional[str] = None):
    """M-step for one dataset, given responsibilities from :func:`e_step`.

    Args:
      x: data, shape ``(n,)``; or ``(n, D)`` with a :class:`MultivariateParams`.
      resp: responsibilities, shape ``(n, K)``.
      params: current parameters; supplies the values of fixed parameters (and the
        centring point of the statistics).
      fixed: which parameters to hold, as in :func:`jaxgmm.fit`.
      equal_scales: univariate: estimate one common scale for all components.
      sample_weight: optional observation weights, shape ``(n,)``.
      covariance_type: multivariate: ``"full"`` (default), ``"diag"``,
        ``"spherical"`` or ``"tied"``; the plain MLE (no covariance floor).

    Returns:
      The updated parameters, of the type of ``params``.
    """
    if isinstance(params, MultivariateParams):
        if equal_scales:
            raise ValueError("equal_scales applies to univariate mixtures; use covariance_type='tied'")
        x, params, sample_weight = _mv_args(x, params, sample_weight, one_dataset=True)
        return _mv_em.m_step(x, resp, params, fixed=fixed, sample_weight=sample_weight,
                             covariance_type="full" if covariance_type is None else covariance_type)
    if covariance_type is not None:
        raise ValueError("covariance_type applies to multivariate mixtures (params a MultivariateParams)")
    return _em.m_step(x, resp, params, fixed=fixed, equal_scales=equal_scales, sample_weight=sample_weight)


def log_likelihood(x: Array, params, sample_weight: Optional[Array] = None) -> Array:
    """Log-likelihood ``sum_i w_i log p(x_i | params)``, batched by broadcasting.

    Args:
      x: data, shape ``(..., n)``; or ``(..., n, D)`` with a
        :class:`MultivariateParams`.
      params: fields of shape ``(..., K)`` (multivariate: ``(..., K)``,
        ``(..., K, D)``, ``(..., K, D, D)``); batch shapes broadcast with ``x``'s.
      sample_weight: optional weights, shape ``(..., n)``, broadcastable.

    Returns:
      Array of the broadcast batch shape.
    """
    if isinstance(params, MultivariateParams):
        return _mv_em.log_likelihood(*_mv_args(x, params, sample_weight, one_dataset=False))
    return _em.log_likelihood(x, params, sample_weight)
