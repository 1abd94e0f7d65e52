"""Which entries of a model are fixed and which are free, as masks.

A :class:`ModelSpec` stores its fixed masks as tuples of booleans; studies, the
bootstrap and the command line need them as a :class:`MixtureParams` (to pass
as ``fixed=``), as the rows of a summary (the free coordinates), and to set the
fixed entries of data-driven starts to the truth's values.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._em import ModelSpec
from ._params import MixtureParams


def spec_mask(spec: ModelSpec) -> MixtureParams:
    """The spec's fixed masks as a :class:`MixtureParams` of bool tuples (hashable)."""
    return MixtureParams(tuple(spec.fixed_weights), tuple(spec.fixed_means), tuple(spec.fixed_scales))


def free_mask(spec: ModelSpec, all_weights: bool = False) -> MixtureParams:
    """Which entries are free coordinates of the model (the rows of a summary).

    As in :func:`jaxgmm.n_parameters`: of ``F >= 2`` free weights the first
    ``F - 1`` (the last is one minus the others; ``all_weights=True`` lists it
    too), none when ``F = 1``; with ``equal_scales`` only the first scale, the
    others being the same number.
    """
    free_w = [k for k, f in enumerate(spec.fixed_weights) if not f]
    listed = free_w if (all_weights and len(free_w) >= 2) else free_w[:-1]
    weights = tuple(k in listed for k in range(spec.n_components))
    means = tuple(not f for f in spec.fixed_means)
    if spec.equal_scales:
        scales = tuple((not f) and k == 0 for k, f in enumerate(spec.fixed_scales))
    else:
        scales = tuple(not f for f in spec.fixed_scales)
    return MixtureParams(weights, means, scales)


def impose_fixed(start: MixtureParams, values: MixtureParams, spec: ModelSpec) -> MixtureParams:
    """Set the fixed entries of ``start`` (any batch shape) to ``values`` (shape ``(K,)``).

    Free weights are rescaled to share the mass the fixed weights leave.
    """
    fw, fm, fs = (jnp.asarray(m) for m in spec_mask(spec))
    means = jnp.where(fm, values.means, start.means)
    scales = jnp.where(fs, values.scales, start.scales)
    weights = start.weights
    if any(spec.fixed_weights):
        mass = 1.0 - jnp.sum(jnp.where(fw, values.weights, 0.0))
        free_sum = jnp.sum(jnp.where(fw, 0.0, start.weights), axis=-1, keepdims=True)
        weights = jnp.where(fw, values.weights, start.weights * mass / free_sum)
    return MixtureParams(weights, means, scales)
