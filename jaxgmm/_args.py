"""The engine's arguments as the public boundary prepares them (:class:`FitArgs`),
shared by the univariate (``jaxgmm/_fit.py``) and multivariate
(``jaxgmm/_mv_fit.py``) boundaries."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from . import _validate
from ._buckets import pad_observations
from ._controls import Controls, Tuning, default_tol, resolve_tuning
from ._em import times_pow2
from ._params import Array
from ._xla import jit

DEFAULT_MAX_ITER = 10_000
DEFAULT_SCALE_FLOOR = 1e-5


class FitArgs(NamedTuple):
    """Validated, converted arguments of :func:`fit` for the engine."""

    x: Array  # (..., n), or (..., n, D) for a multivariate fit
    sample_weight: Optional[Array]  # broadcastable to x, each dataset's divided by 2**weight_exp
    init: Any  # the family's parameters: MixtureParams (..., K) or MultivariateParams
    controls: Controls  # traced
    spec: Any  # static: ModelSpec, or MvSpec for a multivariate fit
    accelerate: Optional[str]  # static
    tuning: Tuning  # static, resolved here from the backend and the shapes
    weight_exp: Optional[Array] = None  # see normalise_weights


def loglik_in_weight_units(loglik, weight_exp):
    """``loglik`` of weights divided by ``2**weight_exp`` (:func:`normalise_weights`)
    in the units of the user's weights; ``None`` means they were not divided."""
    if weight_exp is None:
        return loglik
    return times_pow2(loglik, jnp.broadcast_to(weight_exp, jnp.shape(loglik)))


@jit
def normalise_weights(sample_weight):
    """Each dataset's weights divided by a power of two near their largest:
    ``(weights, exponent)`` with the largest weight in ``[0.5, 1)``.

    Exact, so no estimate changes; but weights of 1e-37 in float32 made products
    ``w rho d^2`` underflow (a biased fit reported as converged) and weights of
    1e36 overflowed sums (NONFINITE), issue 21 #7.  The log-likelihood is scaled
    back by the same power (:func:`with_fixed_values`).
    """
    largest = jnp.max(sample_weight, axis=-1)
    _, e = jnp.frexp(largest)
    e = jnp.where(jnp.isfinite(largest) & (largest > 0), e, 0)
    return times_pow2(sample_weight, -e[..., None]), e


def engine_args(x, sample_weight, init, spec, *, tol, max_iter, scale_floor, accelerate, compact, size: int,
                event_ndim: int) -> FitArgs:
    """The part of the boundary both families share, after their own checks:
    option checks, the default ``tol``, padding the observations to one of a few
    lengths (``_buckets.pad_observations``: a loop over sizes compiles a handful
    of programs), the weights' power-of-two normalisation, traced
    :class:`Controls` and the static :class:`Tuning` for ``size`` fits.  ``x``
    is ``(..., n)`` followed by ``event_ndim - 1`` axes of one observation."""
    _validate.check_iteration_args(tol, max_iter)
    _validate.check_scale_floor(scale_floor)
    _validate.check_accelerate(accelerate)
    if compact is not None:
        compact = _validate.check_bool(compact, "compact")
    tol = default_tol(x.dtype) if tol is None else tol
    x, sample_weight = pad_observations(x, sample_weight, event_ndim)
    # A block's bytes: a dataset is its observations' numbers (D each when multivariate).
    row_length = math.prod(x.shape[x.ndim - event_ndim:])
    weight_exp = None
    if sample_weight is not None:
        sample_weight, weight_exp = normalise_weights(sample_weight)
    controls = Controls(jnp.asarray(tol, x.dtype), jnp.asarray(max_iter, jnp.int32), jnp.asarray(scale_floor, x.dtype))
    tuning = resolve_tuning(row_length, size, x.dtype, compact)
    return FitArgs(x, sample_weight, init, controls, spec, accelerate, tuning, weight_exp)
