"""Label switching: matching each estimate's components to the truth.

The likelihood does not change when components are relabelled, so an estimate
may come back with its components in another order than the truth.  Each
replicate's components are permuted to the *admissible* permutation that
minimises

    sum_k ((mu_hat[p(k)] - mu_k)^2 + (sigma_hat[p(k)] - sigma_k)^2) / tau^2
          + (pi_hat[p(k)] - pi_k)^2,

where ``tau`` is the standard deviation of the true mixture.  A permutation is
admissible when it maps the model onto itself: it only exchanges components
whose fixed entries hold the same values (with the textbook example's known,
unequal scales no relabelling is admissible, so none is done; with everything
free all ``K!`` are).

Multivariate mixtures (:func:`mv_align`) use the same distance with each
dimension in units of the target mixture's sd along it: squared mean
differences over ``tau_d^2``, covariance entries' over ``tau_d^2 tau_e^2``.
"""

from __future__ import annotations

import itertools

import numpy as np

import jax.numpy as jnp

from ._em import ModelSpec
from ._masks import spec_mask
from ._mv_params import MultivariateParams, MvSpec
from ._params import Array, MixtureParams


def admissible_permutations(truth: MixtureParams, spec: ModelSpec) -> tuple:
    """Permutations of the components that map the constrained model onto itself.

    ``truth`` holds concrete ``(K,)`` values. Components ``j`` and ``k`` may be
    exchanged only if, field by field, both are free or both are fixed at the
    same value. For ``K > 7`` only the identity and the sort by mean are tried.
    """
    k = spec.n_components
    masks = spec_mask(spec)
    values = [np.asarray(v, np.float64) for v in truth]

    def signature(j):
        return tuple((bool(m[j]), float(v[j]) if m[j] else None) for m, v in zip(masks, values))

    return _signature_permutations([signature(j) for j in range(k)])


def _signature_permutations(sigs: list) -> tuple:
    k = len(sigs)
    if k > 7:
        return (tuple(range(k)),)
    return tuple(p for p in itertools.permutations(range(k))
                 if all(sigs[p[j]] == sigs[j] for j in range(k)))


def mv_admissible_permutations(truth: MultivariateParams, spec: MvSpec) -> tuple:
    """:func:`admissible_permutations` for a multivariate model: components may be
    exchanged only if, field by field, both are free or both are fixed at the
    same values (``truth`` concrete, fields ``(K,)``, ``(K, D)``, ``(K, D, D)``)."""
    masks = (spec.fixed_weights, spec.fixed_means, spec.fixed_covariances)
    values = [np.asarray(v, np.float64) for v in truth]
    sigs = [tuple((bool(m[j]), tuple(np.ravel(v[j]).tolist()) if m[j] else None) for m, v in zip(masks, values))
            for j in range(spec.n_components)]
    return _signature_permutations(sigs)


def mv_align(estimates: MultivariateParams, target: MultivariateParams, perms: tuple) -> Array:
    """:func:`align` for multivariate estimates (batch axes in front, ``target`` one
    mixture): index ``(..., K)`` of the closest admissible permutation."""
    w, m, c = target
    centre = jnp.sum(w[:, None] * m, axis=0)
    var = jnp.sum(w[:, None] * (jnp.diagonal(c, axis1=-2, axis2=-1) + jnp.square(m - centre)), axis=0)  # (D,)
    tau = jnp.sqrt(var)
    p = jnp.asarray(perms, jnp.int32)  # (P, K)
    axis = estimates.weights.ndim - 1  # the components' axis, after the batch axes
    pick = lambda f: jnp.take(f, p, axis=axis)  # batch + (P, K) + the field's own axes
    cost = (jnp.sum(jnp.square((pick(estimates.means) - m) / tau), (-2, -1))
            + jnp.sum(jnp.square((pick(estimates.covariances) - c) / (tau[:, None] * tau[None, :])), (-3, -2, -1))
            + jnp.sum(jnp.square(pick(estimates.weights) - w), -1))
    cost = jnp.where(jnp.isnan(cost), jnp.inf, cost)
    return p[jnp.argmin(cost, axis=-1)]


def mv_permute(params: MultivariateParams, perm: Array) -> MultivariateParams:
    """Reorder the components of every field by ``perm`` (shape ``(..., K)``)."""
    w, m, c = params
    return MultivariateParams(jnp.take_along_axis(w, perm, axis=-1),
                              jnp.take_along_axis(m, perm[..., None], axis=-2),
                              jnp.take_along_axis(c, perm[..., None, None], axis=-3))


def _mixture_sd(p: MixtureParams) -> Array:
    mean = jnp.sum(p.weights * p.means, -1, keepdims=True)
    return jnp.sqrt(jnp.sum(p.weights * (jnp.square(p.scales) + jnp.square(p.means - mean)), -1))


def align(estimates: MixtureParams, target: MixtureParams, perms: tuple) -> Array:
    """Index ``(..., K)`` of the admissible permutation closest to ``target``.

    ``estimates`` have batch axes in front, ``target`` is one mixture; apply the
    result with :func:`permute`. See the module docstring for the distance.
    """
    tau = _mixture_sd(target)
    p = jnp.asarray(perms, jnp.int32)  # (P, K)
    pick = lambda f: jnp.take(f, p, axis=-1)  # (..., P, K)
    cost = (jnp.sum(jnp.square(pick(estimates.means) - target.means), -1) / tau ** 2
            + jnp.sum(jnp.square(pick(estimates.scales) - target.scales), -1) / tau ** 2
            + jnp.sum(jnp.square(pick(estimates.weights) - target.weights), -1))
    cost = jnp.where(jnp.isnan(cost), jnp.inf, cost)
    return p[jnp.argmin(cost, axis=-1)]


def permute(params: MixtureParams, perm: Array) -> MixtureParams:
    """Reorder every field's last axis by ``perm`` (shape ``(..., K)``)."""
    return MixtureParams(*(jnp.take_along_axis(f, perm, axis=-1) for f in params))
