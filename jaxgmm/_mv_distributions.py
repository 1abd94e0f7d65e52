"""A fitted ``D``-dimensional mixture as a distribution: responsibilities,
classification and densities.

The multivariate half of :mod:`jaxgmm._distributions` (whose public functions
dispatch here on a :class:`MultivariateParams`).  Data ``x`` have shape
``(..., n, D)``; the parameters weights ``(..., K)``, means ``(..., K, D)`` and
covariances ``(..., K, D, D)`` (full matrices whatever the covariance type); the
batch shapes broadcast like NumPy's, as in :func:`jaxgmm.fit`, without copies
(``jaxgmm/_batching.py``).  Pure, jittable and vmappable; the computation
follows the data's float dtype.

The log-joint terms ``log pi_k + log N(x_i | mu_k, Sigma_k)`` come from the E-pass's
own code (``jaxgmm/_mv_em.py``: Cholesky factors, forward substitution, the
softmax and log-sum-exp clamped to their exact bounds), so a responsibility here
is exactly what the public :func:`jaxgmm.e_step` computes
(``_mv_em.log_joint_of_data``).  For data whose dimensions have very different
units, before factoring every dimension is rescaled by a
power of two near its largest component standard deviation.  That is exact (no
rounding: the terms are those of the user's units, the log density shifted by the
log of the units), but it makes the pivot floor (``D eps`` times a matrix's
largest variance, which keeps a singular traced covariance finite) relative to
each dimension's own scale: without it, variances 1e8 and 1e-8 in float32 (a
floor of 24) would be read as 24 and 24.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _mv_validate, _validate
from ._batching import broadcast_vmap
from ._mv_em import _posterior, log_joint_of_data
from ._mv_params import Array, MultivariateParams
from ._xla import jit



def inputs(x, params: MultivariateParams, name: str = "x") -> tuple[Array, MultivariateParams]:
    """Validate ``x`` (``(..., n, D)``) against ``params``; cast both to the data's
    float dtype and check that the batch shapes broadcast."""
    x = _validate.float_observations(x, name)
    if x.ndim < 2:
        mean_shape = np.shape(params.means)
        want = f"(..., n, {mean_shape[-1]})" if mean_shape else "(..., n, D)"
        raise ValueError(f"{name} must have shape {want} for a MultivariateParams (D-dimensional observations "
                         f"in rows), got shape {x.shape}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} has no observations or no dimensions: shape {x.shape} (axes (..., n, D))")
    params = _mv_validate.as_mv_params(params, x.dtype, x.shape[-1], name="params")
    try:
        jnp.broadcast_shapes(x.shape[:-2], params.weights.shape[:-1])
    except ValueError:
        raise ValueError(f"batch shapes do not broadcast: {name} has shape {x.shape} (batch {x.shape[:-2]} before "
                         f"(n, D)), params' weights {params.weights.shape} (batch {params.weights.shape[:-1]} "
                         "before (K,)); they must broadcast like NumPy's") from None
    return x, params


def _resp_one(x, weights, means, covariances):
    a, _ = log_joint_of_data(x, MultivariateParams(weights, means, covariances))
    return _posterior(a)[0].T


def _label_one(x, weights, means, covariances):
    a, _ = log_joint_of_data(x, MultivariateParams(weights, means, covariances))
    return jnp.argmax(a, axis=0).astype(jnp.int32)


def _log_density_one(x, weights, means, covariances):
    a, log_unit = log_joint_of_data(x, MultivariateParams(weights, means, covariances))
    return _posterior(a)[1] - log_unit


def _over_batch(fn, x, params):
    mapped, args = broadcast_vmap(fn, (x, *params), (2, 1, 2, 3))
    return mapped(*args)


_predict_proba = jit(lambda x, params: _over_batch(_resp_one, x, params))
_predict = jit(lambda x, params: _over_batch(_label_one, x, params))
_score_samples = jit(lambda x, params: _over_batch(_log_density_one, x, params))


def predict_proba(x, params: MultivariateParams) -> Array:
    """Responsibilities ``P(component k | x_i)``, shape ``batch + (n, K)``."""
    return _predict_proba(*inputs(x, params))


def predict(x, params: MultivariateParams) -> Array:
    """Most probable component, ``int32`` of shape ``batch + (n,)``."""
    return _predict(*inputs(x, params))


def score_samples(x, params: MultivariateParams) -> Array:
    """Log density ``log p(x_i)``, shape ``batch + (n,)``."""
    return _score_samples(*inputs(x, params))
