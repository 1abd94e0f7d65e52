"""Keyed, vmappable k-means++ starts for one ``(n, D)`` dataset.

k-means++ seeding (Arthur & Vassilvitskii 2007) with observation weights, on the
data in standardised units (each dimension centred and scaled by its own weighted
mean and sd, so no dimension dominates the distances by its units, and float32
data far from zero or tiny in scale lose nothing), then optionally a few Lloyd
steps, then one hard assignment turned into weights, means and covariances of the
requested type by the family's own M-step (with its floor).  Jittable; ``vmap``
over keys gives many starts, over datasets a batch.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from ._mv_em import MvStats, _moments, default_cov_floor, mv_m_step_from_stats, standardiser
from ._mv_params import Array, MultivariateParams, MvSpec


def _sq_dist(z: Array, centres: Array) -> Array:
    """Squared distances ``(K, n)`` of the rows of ``z`` ``(n, D)`` to ``centres`` ``(K, D)``."""
    return jnp.sum(jnp.square(z[None, :, :] - centres[:, None, :]), axis=-1)


def _seed(key: Array, z: Array, w: Array, k: int) -> Array:
    """k-means++ centres ``(K, D)``: the first drawn by weight, each next by weight
    times squared distance to the nearest centre so far."""
    log_w = jnp.log(w)  # -inf for absent rows: never chosen
    first = z[jax.random.categorical(jax.random.fold_in(key, 0), log_w)]
    centres = jnp.broadcast_to(first, (k, z.shape[-1]))
    nearest = jnp.sum(jnp.square(z - first), axis=-1)

    def add_centre(j, carry):
        centres, nearest = carry
        # If every point coincides with a centre already, fall back to weight alone.
        logits = jnp.where(jnp.sum(w * nearest) > 0, log_w + jnp.log(nearest), log_w)
        c = z[jax.random.categorical(jax.random.fold_in(key, j), logits)]
        return centres.at[j].set(c), jnp.minimum(nearest, jnp.sum(jnp.square(z - c), axis=-1))

    centres, _ = lax.fori_loop(1, k, add_centre, (centres, nearest))
    return centres


def _assign(z: Array, centres: Array) -> Array:
    """Hard responsibilities ``(K, n)``: one for the nearest centre (rows of weight
    0 included; their weight removes them from every sum)."""
    label = jnp.argmin(_sq_dist(z, centres), axis=0)
    return (label[None, :] == jnp.arange(centres.shape[0])[:, None]).astype(z.dtype)


def _lloyd(z: Array, w: Array, centres: Array, n_steps) -> Array:
    def step(_, centres):
        member = _assign(z, centres) * w
        count = jnp.sum(member, axis=-1)
        moved = (member @ z) / jnp.where(count > 0, count, 1.0)[:, None]
        return jnp.where((count > 0)[:, None], moved, centres)

    return lax.fori_loop(0, n_steps, step, centres)


def kmeans_start(
    key: Array,
    x: Array,
    n_components: int,
    sample_weight: Optional[Array] = None,
    *,
    covariance_type: str = "full",
    n_steps=0,
    cov_floor=None,
) -> MultivariateParams:
    """Starting values for one dataset ``x`` ``(n, D)``: a :class:`MultivariateParams`
    with weights ``(K,)``, means ``(K, D)``, covariances ``(K, D, D)``, in the data's
    units.

    Args:
      key: a ``jax.random`` key.
      x: data, shape ``(n, D)``.
      n_components: ``K`` (static).
      sample_weight: optional weights ``(n,)``; weight 0 rows are never centres.
      covariance_type: static; the type of the returned covariances.
      n_steps: number of Lloyd (k-means) steps after seeding (may be traced).
      cov_floor: covariance floor in standardised units (default
        :func:`default_cov_floor`).

    Every component gets weight at least ``1e-3 / K`` (renormalised).  A cluster
    that is empty or whose covariance would sit on the floor (one point, or
    duplicates) starts instead from the pooled within-cluster covariance, so the
    start is not degenerate where the data allow.
    """
    k = int(n_components)
    dtype = x.dtype
    std = standardiser(x, sample_weight, covariance_type)
    z = std.data(x)
    w = jnp.ones(x.shape[:1], dtype) if sample_weight is None else jnp.asarray(sample_weight, dtype)
    floor = default_cov_floor(dtype) if cov_floor is None else cov_floor
    centres = _lloyd(z, w, _seed(key, z, w, k), n_steps)
    resp = _assign(z, centres)
    dev = z.T[None, :, :] - centres[:, :, None]  # (K, D, n)
    count, first, second = _moments(resp, dev, w, covariance_type, True)
    stats = MvStats(count, first, second, None)
    dim = x.shape[-1]
    start = MultivariateParams(jnp.full((k,), 1.0 / k, dtype), centres, jnp.broadcast_to(jnp.eye(dim, dtype=dtype), (k, dim, dim)))
    # min_count 0: every cluster with any weight gets its mean.
    own, floored = mv_m_step_from_stats(stats, start, MvSpec.free(k, covariance_type), floor, 0.0)
    # The pooled within-cluster covariance, reduced to the requested structure
    # (the statistics of the diagonal models hold diagonal scatter already).
    pooled, _ = mv_m_step_from_stats(stats, start, MvSpec.free(k, "tied"), floor, 0.0)
    pooled = pooled.covariances
    if covariance_type == "spherical":
        pooled = jnp.mean(jnp.diagonal(pooled, axis1=-2, axis2=-1), axis=-1)[:, None, None] * start.covariances
    bad = floored | (count <= 0)
    covariances = jnp.where(bad[:, None, None], pooled, own.covariances)
    weights = jnp.maximum(count / jnp.sum(count), 1e-3 / k)
    out = MultivariateParams(weights / jnp.sum(weights), own.means, covariances)
    return std.params_out(out)
