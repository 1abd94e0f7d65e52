"""Keyed, vmappable starting values computed from the data.

Two methods, both for one dataset and jittable, so many starts are one ``vmap``:

* ``"quantile"``: stratified random quantiles. Component ``k``'s mean is the
  data's quantile at level ``(k + U_k) / K`` with ``U_k ~ Uniform(0, 1)``: spread
  over the data like the fixed-quantile starts of mixtools, yet different per key.
* ``"kmeans++"``: k-means++ seeding (Arthur & Vassilvitskii 2007) with observation
  weights, then one hard assignment to the nearest centre to get weights, means
  and scales.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from . import _mv_validate, _validate
from ._buckets import pad_observations
from ._units import _extent
from ._mv_init import kmeans_start
from ._mv_params import COVARIANCE_TYPES
from ._params import Array, MixtureParams
from ._xla import jit

METHODS = ("kmeans++", "quantile")


def _unit_map(x, w):
    """``(centre, spread, noise)`` of the data present: the midrange, the half
    range (the magnitude for constant data, 1 for zeros), and the rounding level
    of ``(x - centre) / spread``.

    One pass of ``max``/``min`` and all in halves, so nothing overflows; the
    starts need no more than data of order one (a small program: the fit's
    :class:`~jaxgmm._units.Standardiser` made ``init_params`` compile 1.6x longer).
    """
    hi, lo, _, _ = _extent(x, w)
    centre = 0.5 * hi + 0.5 * lo
    half_range = 0.5 * hi - 0.5 * lo
    magnitude = jnp.where(centre != 0, jnp.abs(centre), 1.0)
    spread = jnp.where(half_range > 0, half_range, magnitude)
    noise = 4 * jnp.finfo(x.dtype).eps * jnp.maximum(jnp.abs(hi), jnp.abs(lo)) / spread
    return centre, spread, noise


def _weighted_moments(x, w, noise):
    """Total weight, mean and sd of ``x``; an sd at the rounding level ``noise``
    (constant data) counts as none and is replaced by 1, the data's half range."""
    total = jnp.sum(w)
    mean = jnp.sum(w * x) / total
    sd = jnp.sqrt(jnp.sum(w * jnp.square(x - mean)) / total)
    return total, mean, jnp.where(sd > noise, sd, 1.0)


def _quantile_start(key, x, w, k: int, noise) -> MixtureParams:
    order = jnp.argsort(x)
    xs = x[order]
    cdf = jnp.cumsum(w[order])
    total, _, sd = _weighted_moments(x, w, noise)
    levels = (jnp.arange(k) + jax.random.uniform(key, (k,), x.dtype)) / k
    idx = jnp.clip(jnp.searchsorted(cdf, levels * total), 0, x.shape[0] - 1)
    means = xs[idx]
    return MixtureParams(jnp.full((k,), 1.0 / k, x.dtype), means, jnp.full((k,), sd / k, x.dtype))


def _kmeanspp_start(key, x, w, k: int, noise) -> MixtureParams:
    total, _, sd = _weighted_moments(x, w, noise)
    log_w = jnp.log(w)  # -inf for absent observations: never chosen
    first = x[jax.random.categorical(jax.random.fold_in(key, 0), log_w)]
    centres = jnp.full((k,), first)
    nearest_sq = jnp.square(x - first)

    def add_centre(j, carry):
        centres, nearest_sq = carry
        # Proportional to weight x squared distance; if every point coincides with
        # a centre already, fall back to weight alone.
        logits = jnp.where(jnp.sum(w * nearest_sq) > 0, log_w + jnp.log(nearest_sq), log_w)
        c = x[jax.random.categorical(jax.random.fold_in(key, j), logits)]
        return centres.at[j].set(c), jnp.minimum(nearest_sq, jnp.square(x - c))

    centres, _ = lax.fori_loop(1, k, add_centre, (centres, nearest_sq))
    centres = jnp.sort(centres)
    label = jnp.argmin(jnp.abs(x[None, :] - centres[:, None]), axis=0)
    member = (label[None, :] == jnp.arange(k)[:, None]) * w[None, :]  # (K, n)
    count = jnp.sum(member, axis=1)
    safe = jnp.where(count > 0, count, 1.0)
    means = jnp.where(count > 0, jnp.sum(member * x, axis=1) / safe, centres)
    var = jnp.sum(member * jnp.square(x[None, :] - means[:, None]), axis=1) / safe
    scales = jnp.where((count > 0) & (jnp.sqrt(var) > noise), jnp.sqrt(var), sd / k)
    # Keep every component alive: an empty cluster still gets a little weight.
    weights = jnp.maximum(count / total, 1e-3 / k)
    return MixtureParams(weights / jnp.sum(weights), means, scales.astype(x.dtype))


def _start_one(key, x, w, k: int, method: str) -> MixtureParams:
    # On the data mapped to [-1, 1], then mapped back: squared deviations of
    # float32 data at 1e-20 underflow (every scale fell back to an absolute 0.5),
    # and sums of squares of data at 1e18 overflow (infinite scales).
    centre, spread, noise = _unit_map(x, w)
    z = (x - centre) / spread
    w = jnp.ones_like(z) if w is None else w
    start = (_quantile_start if method == "quantile" else _kmeanspp_start)(key, z, w, k, noise)
    return MixtureParams(start.weights, centre + spread * start.means, spread * start.scales)


def init_params(
    key: Array,
    x,
    n_components: int,
    *,
    method: str = "kmeans++",
    n_starts: Optional[int] = None,
    sample_weight=None,
    nan_policy: str = "raise",
    covariance_type: Optional[str] = None,
):
    """Starting values from the data, for one dataset or a batch, one or many starts.

    Args:
      key: a ``jax.random`` key (one key; every start is drawn from it);
        different keys give different starts.
      x: data of shape ``(..., n)``; integers of any size are converted on the
        host, as in :func:`jaxgmm.fit`.
      n_components: ``K``, an integer >= 1.
      method: ``"kmeans++"`` or ``"quantile"`` (see the module docstring).
      n_starts: if given, an integer >= 1: that many independent starts are
        drawn and stacked on a new leading axis.
      sample_weight: optional observation weights broadcastable to ``x``.
      nan_policy: ``"raise"`` (default) rejects NaN/inf in ``x``; ``"omit"``
        treats them as absent (weight 0), as in :func:`jaxgmm.fit`.
      covariance_type: ``None`` for univariate starts; ``"full"``, ``"diag"``,
        ``"spherical"`` or ``"tied"`` for multivariate starts of that type from
        ``x`` of shape ``(..., n, D)`` (k-means++ seeding on the standardised
        data, then one hard assignment turned into weights, means and
        covariances; a cluster too small for a covariance of its own takes the
        pooled within-cluster one; ``jaxgmm/_mv_init.py``). Only
        ``method="kmeans++"`` applies; with ``nan_policy="omit"`` a row holding
        a NaN is absent.

    Returns:
      :class:`MixtureParams` with fields of shape ``(n_starts,) + batch + (K,)``
      (no leading axis when ``n_starts`` is None); with ``covariance_type`` a
      :class:`MultivariateParams` with weights ``(n_starts,) + batch + (K,)``,
      means ``(..., K, D)`` and covariances ``(..., K, D, D)``. Pass it straight
      to :func:`jaxgmm.fit` with the same ``x`` (and ``nan_policy``, and
      ``covariance_type``), then :func:`jaxgmm.best_of`.

    Raises:
      ValueError, TypeError: for bad arguments, naming the argument (as
        :func:`jaxgmm.fit`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    k = _validate.as_count(n_components, "n_components")
    if n_starts is not None:
        n_starts = _validate.as_count(n_starts, "n_starts")
    _validate.check_key(key)
    if covariance_type is not None:
        if method != "kmeans++":
            raise ValueError(f"multivariate starts (covariance_type={covariance_type!r}) use method='kmeans++', "
                             f"got method={method!r}")
        return mv_init_params(key, x, k, n_starts=n_starts, sample_weight=sample_weight, nan_policy=nan_policy,
                              covariance_type=covariance_type)
    x = _validate.as_data(x)
    w = _validate.as_sample_weight(sample_weight, x)
    # NaN data would give NaN starts, and fit would then blame init; say so here.
    x, w = _validate.apply_nan_policy(x, w, nan_policy)
    # As in fit: a loop over sizes compiles a program per rung, not per n.  The
    # starts do not change: weight-0 observations are never drawn, and
    # jax.random draws element i of a longer array as of the shorter one.
    x, w = pad_observations(x, w, event_ndim=1)
    if w is not None:
        w = jnp.broadcast_to(w, jnp.broadcast_shapes(w.shape, x.shape))
        x = jnp.broadcast_to(x, w.shape)
    return _init_jit(key, x, w, k, method, n_starts)


def _init_jit(key, x, w, k, method, n_starts):
    batch = x.shape[:-1]
    flat_x = x.reshape((-1, x.shape[-1]))
    flat_w = None if w is None else w.reshape(flat_x.shape)
    n_fits = flat_x.shape[0]
    reps = 1 if n_starts is None else n_starts
    keys = jax.random.split(key, reps * n_fits)
    keys = keys.reshape((reps, n_fits) + keys.shape[1:])
    out = _many_starts(keys, flat_x, flat_w, k, method)
    out = jax.tree_util.tree_map(lambda f: f.reshape((reps,) + batch + (k,)), out)
    if n_starts is None:
        out = jax.tree_util.tree_map(lambda f: f[0], out)
    return out


@jit(static_argnames=("k", "method"))
def _many_starts(keys, x, w, k, method):
    one = lambda key, xi, wi: _start_one(key, xi, wi, k, method)
    over_data = jax.vmap(one, in_axes=(0, 0, 0 if w is not None else None))
    return jax.vmap(over_data, in_axes=(0, None, None))(keys, x, w)


def mv_init_params(key, x, k: int, *, n_starts, sample_weight, nan_policy, covariance_type):
    """:func:`init_params` for ``x`` of shape ``(..., n, D)`` (checked arguments)."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    x = _mv_validate.as_mv_data(x)
    w = _validate.as_sample_weight(sample_weight, _mv_validate.rows_of(x))
    x, w = _mv_validate.apply_mv_nan_policy(x, w, nan_policy)
    x, w = pad_observations(x, w, event_ndim=2)  # as in init_params
    batch = x.shape[:-2] if w is None else tuple(jnp.broadcast_shapes(x.shape[:-2], w.shape[:-1]))
    x = jnp.broadcast_to(x, batch + x.shape[-2:])
    if w is not None:
        w = jnp.broadcast_to(w, batch + w.shape[-1:])
    return _mv_starts(key, x, w, k, 1 if n_starts is None else n_starts, n_starts is None, covariance_type)


@jit(static_argnames=("k", "reps", "squeeze", "covariance_type"))
def _mv_starts(key, x, w, k, reps, squeeze, covariance_type):
    batch = x.shape[:-2]
    flat_x = x.reshape((-1,) + x.shape[-2:])
    flat_w = None if w is None else w.reshape((-1, w.shape[-1]))
    n_fits = flat_x.shape[0]
    keys = jax.random.split(key, reps * n_fits).reshape((reps, n_fits) + key.shape)
    one = lambda kk, xi, wi: kmeans_start(kk, xi, k, wi, covariance_type=covariance_type)
    over_data = jax.vmap(one, in_axes=(0, 0, None if w is None else 0))
    out = jax.vmap(over_data, in_axes=(0, None, None))(keys, flat_x, flat_w)
    out = jax.tree_util.tree_map(lambda f: f.reshape((reps,) + batch + f.shape[2:]), out)
    return jax.tree_util.tree_map(lambda f: f[0], out) if squeeze else out
