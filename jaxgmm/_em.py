"""The EM update for a univariate Gaussian mixture, as pure functions of one dataset.

Everything here acts on a single dataset ``x`` of shape ``(n,)`` and parameters of
shape ``(K,)``; batches come from ``jax.vmap`` (see ``_fit.py``).

The E-step and the log-likelihood share their terms: for component ``k`` the
log-joint ``a_k(x) = log pi_k + log N(x | mu_k, sigma_k)``; the responsibility is
the softmax of ``a`` over components and the log-likelihood of the point is its
logsumexp.  The fitting loop never materialises the ``(K, n)`` responsibilities:
``_e_pass`` reduces them straight to sufficient statistics, which XLA fuses into
one pass over the data.

Sufficient statistics are *centred at the current means* (``d = x - mu_k``), so
that the new variance ``sum rho d^2 / N - (mean shift)^2`` does not suffer the
cancellation of the raw-moment formula when the data sit far from zero.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._params import Array, MixtureParams

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class ModelSpec(NamedTuple):
    """Static (trace-time) description of which parameters EM may change.

    Each ``fixed_*`` is a tuple of ``K`` Python bools; ``equal_scales`` ties all
    scales to one common value.  Hashable, so it can be a static jit argument.
    """

    fixed_weights: tuple
    fixed_means: tuple
    fixed_scales: tuple
    equal_scales: bool = False

    @property
    def n_components(self) -> int:
        return len(self.fixed_weights)

    @property
    def scales_free(self) -> bool:
        """Whether the M-step changes any scale (and so needs second moments)."""
        return not all(self.fixed_scales)

    @classmethod
    def free(cls, n_components: int, equal_scales: bool = False) -> "ModelSpec":
        f = (False,) * n_components
        return cls(f, f, f, equal_scales)


class SuffStats(NamedTuple):
    """Weighted sufficient statistics of one E-step, centred at the current means.

    ``count[k] = sum_i w_i rho_ik``, ``first[k] = sum_i w_i rho_ik (x_i - mu_k)``,
    ``second[k] = sum_i w_i rho_ik (x_i - mu_k)^2`` (zeros when no scale is free),
    ``loglik = sum_i w_i log p(x_i)`` at the parameters the E-step used.
    """

    count: Array  # shape=(K,)
    first: Array  # shape=(K,)
    second: Array  # shape=(K,)
    loglik: Array  # shape=(); None where the E-pass skips it (the K=2 loop pass)


def _weighted_sum(values: Array, sample_weight: Optional[Array]) -> Array:
    """Sum over the last axis, weighted when weights are given."""
    if sample_weight is not None:
        values = values * sample_weight
    return jnp.sum(values, axis=-1)


def _log_joint(x: Array, params: MixtureParams) -> tuple[Array, Array]:
    """Log-joint terms ``a`` of shape ``(K, n)`` and the deviations ``x - mu_k``.

    Components lie on the leading axis so that the reductions over components are
    elementwise across ``n`` (vectorises on CPU) rather than over a tiny minor axis.
    """
    dev = x[None, :] - params.means[:, None]
    z = dev / params.scales[:, None]
    log_norm = jnp.log(params.weights) - jnp.log(params.scales) - _HALF_LOG_2PI
    return log_norm[:, None] - 0.5 * z * z, dev


def _responsibilities(x: Array, params: MixtureParams) -> tuple[Array, Array, Array]:
    """Responsibilities ``(K, n)``, per-point log-likelihood ``(n,)`` and deviations.

    For two components the responsibility is a logistic function of the log-odds
    ``q = a_1 - a_2``, which costs one ``exp`` and one ``log1p`` per point; for more
    components it is the softmax of the log-joint terms.  Both are computed in log
    space, so a point 40 standard deviations from every mean neither overflows nor
    gives 0/0.
    """
    a, dev = _log_joint(x, params)
    if params.means.shape[-1] == 2:
        q = a[0] - a[1]
        e = jnp.exp(-jnp.abs(q))  # in (0, 1]: never overflows
        r = 1.0 / (1.0 + e)
        rho1 = jnp.where(q >= 0, r, e * r)
        rho2 = jnp.where(q >= 0, e * r, r)
        # max(a1, a2), not a2 + max(q, 0): a zero weight makes a2 = -inf, q = +inf.
        point_ll = jnp.maximum(a[0], a[1]) + jnp.log1p(e)
        return jnp.stack([rho1, rho2]), point_ll, dev
    point_ll = jax.nn.logsumexp(a, axis=0)
    return jnp.exp(a - point_ll[None, :]), point_ll, dev


def sufficient_stats(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array] = None,
    *,
    second_moments: bool = True,
) -> SuffStats:
    """One fused E-pass over ``x``: sufficient statistics and the log-likelihood.

    Args:
      x: data, shape ``(n,)``.
      params: current parameters, fields of shape ``(K,)``.
      sample_weight: optional non-negative weights, shape ``(n,)``.
      second_moments: static; skip the second moments when no scale is estimated.
    """
    rho, point_ll, dev = _responsibilities(x, params)
    count = _weighted_sum(rho, sample_weight)
    weighted_dev = rho * dev
    first = _weighted_sum(weighted_dev, sample_weight)
    if second_moments:
        second = _weighted_sum(weighted_dev * dev, sample_weight)
    else:
        second = jnp.zeros_like(first)
    return SuffStats(count, first, second, _weighted_sum(point_ll, sample_weight))


class DataMoments(NamedTuple):
    """Weighted moments of one dataset about zero: ``sum w``, ``sum w x``, ``sum w x^2``.

    Computed once per fit (in standardised coordinates they are about ``W``, 0 and
    ``W``); the two-component E-pass needs them to turn sums of ``tanh`` terms into
    per-component statistics.
    """

    total: Array  # shape=()
    first: Array  # shape=()
    second: Array  # shape=()


def data_moments(x: Array, sample_weight: Optional[Array] = None) -> DataMoments:
    """The :class:`DataMoments` of ``x`` (shape ``(n,)``)."""
    if sample_weight is None:
        total = jnp.asarray(x.shape[-1], x.dtype)
    else:
        total = jnp.sum(sample_weight)
    return DataMoments(total, _weighted_sum(x, sample_weight), _weighted_sum(x * x, sample_weight))


def _dots_for_sums() -> bool:
    """Whether to write the loop's sums as dot products (trace-time choice).

    On CPU, under ``vmap``, a dot with a vector of ones is a matrix-vector
    product that XLA runs at memory speed, while a reduction over the minor axis
    of a fused elementwise expression costs several passes.  GPU compilers fuse
    the elementwise work into the reductions (one read of the data per pass), and
    a dot would force the intermediate to memory, so there plain sums are used.
    """
    return jax.default_backend() == "cpu"


def _row_sum(values: Array, sample_weight: Optional[Array], other: Optional[Array] = None) -> Array:
    """``sum_i w_i v_i (o_i)``: the loop's reductions (see :func:`_dots_for_sums`)."""
    if sample_weight is None and _dots_for_sums():
        rhs = jnp.ones(values.shape[-1], values.dtype) if other is None else other
        return jnp.dot(values, rhs)
    if other is not None:
        values = values * other
    return _weighted_sum(values, sample_weight)


def _log_odds(x: Array, params: MixtureParams) -> Array:
    """``q = a_1 - a_2`` for two components, from standardised deviations.

    Formed as ``L - (z_1^2 - z_2^2) / 2`` with ``z_k = (x - mu_k) / sigma_k``, not as
    the expanded quadratic in ``x``, which loses ``eps x^2 / sigma^2`` (garbage for
    a narrow component in float32).  A zero weight gives ``q = -inf`` or ``+inf``.
    """
    weights, means, scales = params
    inv = 1.0 / scales
    z1 = (x - means[0]) * inv[0]
    z2 = (x - means[1]) * inv[1]
    offset = jnp.log(weights[0]) - jnp.log(weights[1]) + jnp.log(inv[0]) - jnp.log(inv[1])
    return offset + 0.5 * (z2 * z2 - z1 * z1)


def two_component_stats(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array],
    moments: DataMoments,
    *,
    second_moments: bool = True,
    loglik: bool = False,
) -> SuffStats:
    """The E-pass of the fitting loop for ``K = 2``: one ``tanh`` per point.

    With ``q(x) = a_1(x) - a_2(x)`` the log-odds (a quadratic in ``x``), the
    responsibilities are ``rho_1 = (1 + t) / 2`` and ``rho_2 = (1 - t) / 2`` with
    ``t = tanh(q / 2)``.  So every per-component statistic follows from the three
    sums ``sum w t``, ``sum w t x`` and ``sum w t x^2`` and the data's own moments:
    one transcendental and two or three reductions per point, nothing of shape
    ``(K, n)``.  The statistics are re-centred at the current means afterwards.

    Precision: a responsibility is resolved to about ``eps`` in absolute terms (not
    relative to its own size), so a component holding a fraction ``f`` of the
    weight has its count resolved to about ``eps / f`` relative; the reported
    log-likelihood and the degeneracy flags come from the exact E-pass
    (:func:`sufficient_stats`) after the loop.  The log-likelihood is computed
    only when ``loglik`` (static) is set, from the same ``t``:
    ``log p(x) = max(a_1, a_2) + log(2 / (1 + |t|))``; otherwise it is ``None``
    (the plain loop's convergence rule does not use it).
    """
    weights, means, scales = params
    t = jnp.tanh(0.5 * _log_odds(x, params))
    t0 = _row_sum(t, sample_weight)
    t1 = _row_sum(t, sample_weight, x)
    sign = jnp.asarray([1.0, -1.0], x.dtype)
    count = 0.5 * (moments.total + sign * t0)
    raw_first = 0.5 * (moments.first + sign * t1)
    first = raw_first - means * count
    if second_moments:
        t2 = _row_sum(t * x, sample_weight, x)
        raw_second = 0.5 * (moments.second + sign * t2)
        second = raw_second - 2.0 * means * raw_first + means * means * count
    else:
        second = jnp.zeros_like(first)
    ll = None
    if loglik:
        a, _ = _log_joint(x, params)
        point_ll = jnp.maximum(a[0], a[1]) + (math.log(2.0) - jnp.log1p(jnp.abs(t)))
        ll = _weighted_sum(point_ll, sample_weight)
    return SuffStats(count, first, second, ll)


def two_component_stats_precise(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array],
    *,
    second_moments: bool = True,
) -> SuffStats:
    """The ``K = 2`` loop pass with every responsibility resolved relative to its size.

    Each responsibility is a logistic function of the log-odds ``q``,
    ``rho_1 = 1 / (1 + exp(-q))`` and ``rho_2 = 1 / (1 + exp(q))``, both to full
    relative precision, so a component of three points among a million keeps an exact
    count (the ``tanh`` pass of :func:`two_component_stats` resolves it only to
    ``eps`` times the total weight).  Each component's sums are taken separately
    (first moments about zero, second moments about the component's mean), as
    dot products on CPU.  ``loglik`` is ``None``.
    """
    weights, means, scales = params
    q = _log_odds(x, params)
    # logistic(q) = 1 / (1 + exp(-q)) is relatively precise at both ends; one
    # self-contained expression per component keeps each a single fused pass.
    rho = (jax.nn.sigmoid(q), jax.nn.sigmoid(-q))
    count = jnp.stack([_row_sum(r, sample_weight) for r in rho])
    first = jnp.stack([_row_sum(r, sample_weight, x) for r in rho]) - means * count
    if second_moments:
        dev = [x - m for m in (means[0], means[1])]
        second = jnp.stack([_row_sum(r * d, sample_weight, d) for r, d in zip(rho, dev)])
    else:
        second = jnp.zeros_like(first)
    return SuffStats(count, first, second, None)


def e_step(
    x: Array, params: MixtureParams, sample_weight: Optional[Array] = None
) -> tuple[Array, Array]:
    """E-step for one dataset: responsibilities and the log-likelihood.

    Args:
      x: data, shape ``(n,)``.
      params: :class:`MixtureParams` with fields of shape ``(K,)``.
      sample_weight: optional non-negative observation weights, shape ``(n,)``.

    Returns:
      ``(resp, loglik)``: ``resp[i, k]`` is the posterior probability that ``x[i]``
      came from component ``k`` (shape ``(n, K)``, rows sum to 1); ``loglik`` is
      ``sum_i w_i log p(x_i | params)``, the log-likelihood *of* ``params``.

    Pure and jittable; ``jax.vmap`` it for batches.
    """
    x, params = _as_float(x, params)
    rho, point_ll, _ = _responsibilities(x, params)
    return rho.T, _weighted_sum(point_ll, sample_weight)


def _as_float(x: Array, params: MixtureParams) -> tuple[Array, MixtureParams]:
    dtype = jnp.result_type(jnp.asarray(x).dtype, *(jnp.asarray(f).dtype for f in params), jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    return jnp.asarray(x, dtype), MixtureParams(*(jnp.asarray(f, dtype) for f in params))


def m_step_from_stats(
    stats: SuffStats,
    params: MixtureParams,
    spec: ModelSpec,
    min_scale: Array = 0.0,
    min_count: Array = 0.0,
) -> MixtureParams:
    """M-step from centred sufficient statistics (the constrained MLE).

    * Free weights share the mass the fixed weights leave, in proportion to their
      counts: maximising ``sum_k N_k log pi_k`` subject to ``sum_free pi_k = 1 -
      sum_fixed pi_k`` gives ``pi_k = (1 - sum_fixed pi) N_k / sum_free N``.
    * Free means move to the responsibility-weighted mean.
    * Free scales are the responsibility-weighted RMS deviation about the new mean
      (about the fixed mean when the mean is held); with ``equal_scales`` one
      pooled variance for all components.  Scales never go below ``min_scale``.
    * A component whose count is at most ``min_count`` keeps its mean and scale
      (there is no information to move them); the fit reports it as degenerate.
    """
    dtype = stats.count.dtype
    fixed_w = jnp.asarray(spec.fixed_weights)
    fixed_m = jnp.asarray(spec.fixed_means)
    fixed_s = jnp.asarray(spec.fixed_scales)
    count = stats.count

    if all(spec.fixed_weights):
        weights = params.weights
    else:
        free_mass = 1.0 - jnp.sum(jnp.where(fixed_w, params.weights, 0.0))
        free_count = jnp.sum(jnp.where(fixed_w, 0.0, count))
        weights = jnp.where(fixed_w, params.weights, free_mass * count / free_count)

    alive = count > min_count
    safe_count = jnp.where(alive, count, 1.0)
    shift = jnp.where(fixed_m | ~alive, 0.0, stats.first / safe_count)
    means = params.means + shift

    if not spec.scales_free:
        return MixtureParams(weights, means, params.scales)
    # Sum of rho (x - new mean)^2, from moments about the old mean.
    within = jnp.maximum(stats.second - count * shift * shift, 0.0)
    if spec.equal_scales:
        var = jnp.broadcast_to(jnp.sum(within) / jnp.sum(count), count.shape)
        keep = fixed_s
    else:
        var = within / safe_count
        keep = fixed_s | ~alive
    scales = jnp.maximum(jnp.sqrt(var), jnp.asarray(min_scale, dtype))
    return MixtureParams(weights, means, jnp.where(keep, params.scales, scales))


def m_step(
    x: Array,
    resp: Array,
    params: MixtureParams,
    *,
    fixed=(),
    equal_scales: bool = False,
    sample_weight: Optional[Array] = None,
) -> MixtureParams:
    """M-step for one dataset, given responsibilities from :func:`e_step`.

    Args:
      x: data, shape ``(n,)``.
      resp: responsibilities, shape ``(n, K)``.
      params: current parameters; supplies the values of fixed parameters (and the
        centring point of the statistics).
      fixed: which parameters to hold, as in :func:`jaxgmm.fit`.
      equal_scales: estimate one common scale for all components.
      sample_weight: optional observation weights, shape ``(n,)``.

    Returns:
      The updated :class:`MixtureParams`.
    """
    from ._spec import make_spec  # local import: _spec depends on this module

    x, params = _as_float(x, params)
    resp = jnp.asarray(resp, x.dtype).T
    spec = make_spec(fixed, params.means.shape[-1], equal_scales)
    dev = x[None, :] - params.means[:, None]
    weighted_dev = resp * dev
    stats = SuffStats(
        _weighted_sum(resp, sample_weight),
        _weighted_sum(weighted_dev, sample_weight),
        _weighted_sum(weighted_dev * dev, sample_weight),
        jnp.zeros((), x.dtype),
    )
    return m_step_from_stats(stats, params, spec)


def log_likelihood(
    x: Array, params: MixtureParams, sample_weight: Optional[Array] = None
) -> Array:
    """Log-likelihood ``sum_i w_i log p(x_i | params)``, batched by broadcasting.

    Args:
      x: data, shape ``(..., n)``.
      params: fields of shape ``(..., K)``; batch shapes broadcast with ``x``'s.
      sample_weight: optional weights broadcastable to ``x``.

    Returns:
      Array of the broadcast batch shape.
    """
    x, params = _as_float(x, params)
    x = x[..., None, :]
    means, scales, weights = (f[..., :, None] for f in (params.means, params.scales, params.weights))
    z = (x - means) / scales
    a = jnp.log(weights) - jnp.log(scales) - _HALF_LOG_2PI - 0.5 * z * z
    return _weighted_sum(jax.nn.logsumexp(a, axis=-2), sample_weight)
