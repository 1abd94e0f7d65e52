"""Containers: mixture parameters, fit results and the per-fit status code.

All containers are plain NamedTuples, so they are JAX pytrees: they pass through
``jit``, ``vmap`` and ``lax`` control flow unchanged.  They hold arrays at their
natural shapes (``(K,)`` per component field, ``()`` per scalar); batch axes are
leading axes added by ``vmap``/broadcasting, never hidden inside the types.
Constructors do no validation (that would break ``vmap`` over traced values); the
public functions validate concrete inputs at the boundary instead.
"""

from __future__ import annotations

import enum
import functools
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

Array = Any


class MixtureParams(NamedTuple):
    """Parameters of a univariate Gaussian mixture with ``K`` components.

    Attributes:
      weights: mixing proportions, shape ``(..., K)``, non-negative, summing to 1.
      means: component means, shape ``(..., K)``.
      scales: component standard deviations (not variances), shape ``(..., K)``.

    The same type, holding booleans, is used as a per-component mask for
    ``fit(..., fixed=...)``.
    """

    weights: Array
    means: Array
    scales: Array


class Status(enum.IntEnum):
    """Why a fit stopped; stored per fit as an ``int32`` array in ``FitResult.status``.

    Ordered by severity: when several apply, the larger code is reported.
    """

    CONVERGED = 0
    """The largest standardised parameter change fell below ``tol``."""
    MAX_ITER = 1
    """``max_iter`` iterations ran without meeting the tolerance."""
    DEGENERATE = 2
    """A component's weight vanished or a free scale sits on the variance floor."""
    NONFINITE = 3
    """A parameter or the log-likelihood became NaN or infinite, or traced inputs
    were invalid (NaN/inf data with positive weight, negative or non-finite
    ``sample_weight``), which cannot raise inside ``jit``/``vmap``."""
    TOO_FEW = 4
    """Not fitted: fewer observations than free parameters (per group in
    :func:`jaxgmm.fit_groups`; ``fit`` raises instead).  Estimates and
    log-likelihood are NaN, ``n_iter`` is 0; :func:`jaxgmm.best_of` ranks it with
    the unusable fits."""


class FitResult(NamedTuple):
    """Result of :func:`jaxgmm.fit`; every field has the fit's batch shape in front.

    Attributes:
      params: the final :class:`MixtureParams`.
      loglik: log-likelihood of ``params`` (not of the previous iterate), on the
        user's scale of the data, weighted by ``sample_weight`` when given.
      n_iter: number of EM iterations (E-step + M-step pairs) run, ``int32``.
      status: a :class:`Status` code per fit, ``int32``.
      converged: ``status == Status.CONVERGED``; never true when anything is
        non-finite or degenerate.
      model: the model that was fitted: a static ``ModelSpec`` (which weights,
        means and scales were held fixed, and ``equal_scales``), so that
        :func:`jaxgmm.standard_errors`, :func:`jaxgmm.aic` and the rest use the
        model of the fit without ``fixed=`` being repeated (and reject a
        contradicting one).  It has no array leaves: ``jit``, ``vmap`` and
        ``tree_map`` pass it through unchanged.  ``None`` for results built by
        hand.
    """

    params: MixtureParams
    loglik: Array
    n_iter: Array
    status: Array
    converged: Array
    model: Any = None


def batch_shape(params: MixtureParams) -> tuple[int, ...]:
    """Broadcast batch shape of a :class:`MixtureParams` (all axes but the last)."""
    shapes = [jnp.shape(f)[:-1] for f in params]
    return tuple(jnp.broadcast_shapes(*shapes))


def over_components(op: Callable, a: Array) -> Array:
    """Reduce ``a`` over its last axis (the components) with the binary ``op``
    (``jnp.add``, ``jnp.maximum``, ``jnp.logical_and``), as elementwise operations.

    The loop's per-fit bookkeeping reduces over ``K`` (2 or a few) entries.  As
    ``jnp.sum``/``jnp.max`` under ``vmap`` those are reductions over a tiny inner
    axis, which XLA:CPU hands to a library call of several microseconds each
    (about 30 us of a 180 us iteration for blocks of 2621 fits of n = 100);
    written elementwise they fuse with the arithmetic around them (interleaved
    A/B, B = 100k x n = 100: 1.32 -> 1.47 G point-iterations/s with known
    scales, 0.54 -> 0.57 all free; no change at n = 1000).
    """
    if a.shape[-1] > UNROLL_COMPONENTS:
        # Unrolled, the program grows with K and compile time faster than
        # linearly (K = 60 took 48 s, K = 120 over 200 s): reduce instead.
        return _REDUCTIONS[op](a, axis=-1)
    return functools.reduce(op, [a[..., k] for k in range(a.shape[-1])])


# Up to this many components, per-component work is written out component by
# component (elementwise, as measured faster on CPU for K = 2..5, see
# over_components and _em.sufficient_stats); above it, as stacked arrays and
# reductions over the component axis, so the program's size (and compile time)
# does not grow with K.
UNROLL_COMPONENTS = 8

_REDUCTIONS = {jnp.add: jnp.sum, jnp.maximum: jnp.max, jnp.minimum: jnp.min,
               jnp.logical_and: jnp.all, jnp.logical_or: jnp.any}
