"""The EM update for a univariate Gaussian mixture, as pure functions of one dataset.

Everything here acts on a single dataset ``x`` of shape ``(n,)`` and parameters of
shape ``(K,)``; batches come from ``jax.vmap`` (see ``_fit.py``).

The E-step and the log-likelihood share their terms: for component ``k`` the
log-joint ``a_k(x) = log pi_k + log N(x | mu_k, sigma_k)``; the responsibility is
the softmax of ``a`` over components and the log-likelihood of the point is its
logsumexp.  The fitting loop never materialises ``(K, n)`` responsibilities:
:func:`sufficient_stats` and the two-component passes reduce them straight to
sufficient statistics (for ``K = 2`` from ``(n,)`` arrays only), written as
:func:`_row_sums` says for the backend.

Sufficient statistics are *centred at the current means* (``d = x - mu_k``), so
that the new variance ``sum rho d^2 / N - (mean shift)^2`` does not suffer the
cancellation of the raw-moment formula when the data sit far from zero.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from . import _validate
from ._params import UNROLL_COMPONENTS, Array, MixtureParams, over_components
from ._spec import ModelSpec as ModelSpec  # re-exported: most modules import it from here
from ._spec import make_spec

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


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


def times_pow2(x: Array, e: Array) -> Array:
    """``x * 2**e`` for a scalar exponent ``e``, exact where the result is normal.

    Two multiplications by powers of two (each factor representable for any
    exponent ``frexp`` returns) instead of ``jnp.ldexp`` on every element, which
    on CPU costs as much as a dozen passes over the data.
    """
    half = e // 2
    one = jnp.ones((), x.dtype)
    return x * jnp.ldexp(one, half) * jnp.ldexp(one, e - half)


def _weighted_sum(values: Array, sample_weight: Optional[Array]) -> Array:
    """Sum over the last axis, weighted when weights are given."""
    if sample_weight is not None:
        values = values * sample_weight
    return jnp.sum(values, axis=-1)


def _component_log_joint(x: Array, params: MixtureParams, k: int) -> Array:
    """``a_k(x) = log pi_k + log N(x | mu_k, sigma_k)`` for component ``k``, shape ``(n,)``."""
    weights, means, scales = params
    return jnp.log(weights[k]) - jnp.log(scales[k]) - _HALF_LOG_2PI - 0.5 * jnp.square((x - means[k]) / scales[k])


def _component_terms(x: Array, params: MixtureParams) -> list:
    """The log-joint terms ``[a_1(x), ..., a_K(x)]``, each of shape ``(n,)``.

    A list rather than a stacked ``(K, n)`` array: the reductions over components
    are then elementwise across ``n`` and vectorise on CPU.
    """
    return [_component_log_joint(x, params, k) for k in range(params.means.shape[-1])]


def _two_component_terms(x: Array, params: MixtureParams) -> tuple[tuple[Array, Array], Array]:
    """Responsibilities ``(rho_1, rho_2)`` and per-point log-likelihood for ``K = 2``.

    The responsibility is a logistic function of the log-odds ``q = a_1 - a_2``,
    which costs one ``exp`` and one ``log1p`` per point, computed in log space so
    that a point 40 standard deviations from both means neither overflows nor
    gives 0/0.  Every array is ``(n,)``: under ``vmap`` on CPU a stacked ``(2, n)``
    intermediate makes this pass about four times slower.
    """
    a = [_component_log_joint(x, params, k) for k in range(2)]
    q = a[0] - a[1]
    e = jnp.exp(-jnp.abs(q))  # in (0, 1]: never overflows
    r = 1.0 / (1.0 + e)
    rho = (jnp.where(q >= 0, r, e * r), jnp.where(q >= 0, e * r, r))
    # max(a1, a2), not a2 + max(q, 0): a zero weight makes a2 = -inf, q = +inf.
    return rho, jnp.maximum(a[0], a[1]) + jnp.log1p(e)


def _posterior(a: list) -> tuple[list, Array]:
    """Responsibilities ``exp(a_k - logsumexp(a))`` from the log-joint terms
    ``a = [a_1, ..., a_K]`` (each ``(n,)``), and ``logsumexp(a)`` itself.

    Written so that no rounding can make the responsibilities non-finite.  For a
    point millions of standard deviations from every component (a scale held at
    1e-6, say) the terms are about -1e12, resolved in float32 only to about 1e5,
    and XLA re-derives them in several fused kernels with different rounding: a
    plain ``exp(a - logsumexp(a))`` then overflowed.  Here ``a_k - max(a)`` is
    clamped to its exact bound 0 and the sum of ``exp`` to its exact bound 1
    (the largest term alone gives 1), and the responsibilities are the scaled
    terms over their sum: one ``exp`` per term rather than two.
    """
    largest = functools.reduce(jnp.maximum, a)
    # A point whose terms are all -inf keeps that log-likelihood, with zero
    # responsibilities rather than NaN.
    shift = jnp.where(jnp.isfinite(largest), largest, 0.0)
    scaled = [jnp.exp(jnp.minimum(a_k - shift, 0.0)) for a_k in a]
    total = jnp.maximum(functools.reduce(jnp.add, scaled), 1.0)
    inv_total = 1.0 / total
    return [s * inv_total for s in scaled], largest + jnp.log(total)


def _stacked_posterior(x: Array, params: MixtureParams) -> tuple[Array, Array]:
    """:func:`_posterior` of all components at once, as ``(K, n)`` arrays (for
    ``K > UNROLL_COMPONENTS``, where written-out terms make programs that grow
    with ``K``); the same clamps, so the same guarantees."""
    weights, means, scales = (f[:, None] for f in params)
    a = jnp.log(weights) - jnp.log(scales) - _HALF_LOG_2PI - 0.5 * jnp.square((x[None, :] - means) / scales)
    largest = jnp.max(a, axis=0)
    shift = jnp.where(jnp.isfinite(largest), largest, 0.0)
    scaled = jnp.exp(jnp.minimum(a - shift, 0.0))
    total = jnp.maximum(jnp.sum(scaled, axis=0), 1.0)
    return scaled * (1.0 / total), largest + jnp.log(total)


def _responsibilities(x: Array, params: MixtureParams) -> tuple[list, Array]:
    """Responsibilities ``[rho_1, ..., rho_K]`` (each ``(n,)``; a ``(K, n)`` array
    above :data:`UNROLL_COMPONENTS`) and the per-point log-likelihood ``(n,)``:
    for two components from the log-odds, for more the softmax of the log-joint
    terms, in log space either way."""
    k = params.means.shape[-1]
    if k == 2:
        return _two_component_terms(x, params)
    if k > UNROLL_COMPONENTS:
        return _stacked_posterior(x, params)
    return _posterior(_component_terms(x, params))


def sufficient_stats(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array] = None,
    *,
    second_moments: bool = True,
    loglik: bool = True,
    first_moments: bool = True,
    reduction: Optional[str] = None,
) -> SuffStats:
    """One fused E-pass over ``x``: sufficient statistics and the log-likelihood.

    Args:
      x: data, shape ``(n,)``.
      params: current parameters, fields of shape ``(K,)``.
      sample_weight: optional non-negative weights, shape ``(n,)``.
      second_moments: static; skip the second moments when no scale is estimated.
      loglik: static; skip the log-likelihood (then ``None``), which costs a
        ``log`` per point and a sum.
      first_moments: static; skip the first and second moments (zeros), for
        callers that need only the counts and the log-likelihood.
      reduction: static; how the sums are written (:func:`_row_sums`; ``None``:
        the backend's default).
    """
    # Per component, as (n,) arrays: under vmap on CPU, stacked (K, n)
    # intermediates made the K > 2 pass 1.5x (K = 3) to 1.8x (K = 4) slower
    # (B = 10k x n = 1000, all free), and the two-component one about 4x.
    if params.means.shape[-1] > UNROLL_COMPONENTS:
        return _stacked_stats(x, params, sample_weight, second_moments, loglik, first_moments)
    rho, point_ll = _responsibilities(x, params)
    k = len(rho)
    dev = [x - params.means[j] for j in range(k)]
    second_moments = second_moments and first_moments
    terms = [(r, None) for r in rho] + ([(r, d) for r, d in zip(rho, dev)] if first_moments else [])
    at_loglik = len(terms)
    if loglik:
        terms.append((point_ll, None))
    if second_moments:
        terms += [(r * d, d) for r, d in zip(rho, dev)]
    sums = _row_sums(terms, sample_weight, reduction)
    count = jnp.stack(sums[:k])
    first = jnp.stack(sums[k:2 * k]) if first_moments else jnp.zeros_like(count)
    second = jnp.stack(sums[len(sums) - k:]) if second_moments else jnp.zeros_like(first)
    return SuffStats(count, first, second, sums[at_loglik] if loglik else None)


def _stacked_stats(x, params, sample_weight, second_moments, loglik, first_moments) -> SuffStats:
    """:func:`sufficient_stats` with ``(K, n)`` arrays (many components)."""
    rho, point_ll = _stacked_posterior(x, params)
    if sample_weight is not None:
        rho = rho * sample_weight
        point_ll = point_ll * sample_weight
    count = jnp.sum(rho, axis=-1)
    zeros = jnp.zeros_like(count)
    first, second = zeros, zeros
    if first_moments:
        dev = x[None, :] - params.means[:, None]
        first = jnp.sum(rho * dev, axis=-1)
        if second_moments:
            second = jnp.sum(rho * dev * dev, axis=-1)
    return SuffStats(count, first, second, jnp.sum(point_ll) if loglik else None)


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


# How a pass's sums over observations are written (a trace-time choice; None picks
# per backend, and bench/gpu.sh times the GPU choices against each other):
# "sums": one reduction per sum, the CPU default.  Compilers fuse each reduction
#   with the elementwise work before it, but give an expensive intermediate used
#   by several reductions (the tanh of the two-component pass, the softmax of the
#   general one) a round trip through memory.  On CPU, in cache-sized blocks, that
#   round trip stays in cache, and XLA:CPU runs the reductions on separate threads
#   (measured against "dots", B = 10k x n = 1000: 1.17x float32 and 1.19x float64
#   with known scales, 1.11x float32 all free; against "complex" and "stacked",
#   K = 3 all free: 1.3x and 2.6x, "stacked" below).
# "dots": dot products with a vector of ones or the data (without sample weights).
# "complex": pairs of sums as one reduction of complex numbers (real part, one
#   sum; imaginary part, the other), the default on accelerators: half as many
#   reductions, each reading the shared intermediate once for two sums.  On an
#   H200 (B = 100k x n = 1000, bench/RESULTS.md) against "sums": 2.3x with known
#   scales (two sums: one reduction with one consumer, so the data are read once),
#   1.75x for three components all free (nine sums), level for two all free
#   (three sums).  All sums as one reduction of the stacked (m, n) values, plain
#   or paired as complex numbers, were also timed: the compilers then derive the
#   shared intermediates once per row, no faster than "sums" on the H200 and
#   slower on CPU ("stacked").
_REDUCTION: Optional[str] = None


def default_reduction(backend: Optional[str] = None) -> str:
    """How sums are written on ``backend`` (default: JAX's): :data:`_REDUCTION`
    where set (benchmarks set it), else ``"sums"`` on CPU, ``"complex"`` elsewhere.
    The fitting engine resolves this once per call (``Tuning.reduction``)."""
    if _REDUCTION is not None:
        return _REDUCTION
    backend = jax.default_backend() if backend is None else backend
    return "sums" if backend == "cpu" else "complex"


def _row_sums(terms, sample_weight: Optional[Array], how: Optional[str] = None) -> tuple:
    """``sum_i w_i v_i o_i`` over the last axis for each ``(v, o)`` in ``terms``.

    ``o`` may be ``None`` (``sum_i w_i v_i``).  Returns a tuple of arrays, written
    as ``how`` says (``None``: :func:`default_reduction`).
    """
    how = default_reduction() if how is None else how
    if how == "dots" and sample_weight is None:
        ones = jnp.ones(terms[0][0].shape[-1], terms[0][0].dtype)
        return tuple(jnp.dot(v, ones if o is None else o) for v, o in terms)
    values = [v if o is None else v * o for v, o in terms]
    if sample_weight is not None:
        values = [v * sample_weight for v in values]
    if how == "complex":
        sums = []
        for re, im in zip(values[0::2], values[1::2]):
            z = jnp.sum(lax.complex(re, im), axis=-1)
            sums += [jnp.real(z), jnp.imag(z)]
        if len(values) % 2:
            sums.append(jnp.sum(values[-1], axis=-1))
        return tuple(sums)
    return tuple(jnp.sum(v, axis=-1) for v in values)


def _log_odds(x: Array, params: MixtureParams, scale: float = 1.0) -> Array:
    """``scale * q`` with ``q = a_1 - a_2`` for two components.  A zero weight gives
    ``q = -inf`` or ``+inf``.

    In narrower floats ``q`` is formed from standardised deviations, as
    ``L - (z_1^2 - z_2^2) / 2`` with ``z_k = (x - mu_k) / sigma_k``: the expanded
    quadratic ``c_0 + c_1 x + c_2 x^2`` loses ``eps x^2 / sigma^2`` of it, garbage
    for a narrow component in float32.  In float64 that loss is below 1e-6 even for
    a scale on the variance floor, and the quadratic (two multiply-adds per point)
    makes the loop about 15% faster on CPU.  ``scale`` (a positive constant) is
    folded into the per-fit coefficients, so it costs nothing per point.
    """
    weights, means, scales = params
    inv = 1.0 / scales
    offset = jnp.log(weights[0]) - jnp.log(weights[1]) + jnp.log(inv[0]) - jnp.log(inv[1])
    if jnp.finfo(x.dtype).bits >= 64:
        h = (0.5 * scale) * inv * inv
        c2 = h[1] - h[0]
        c1 = 2.0 * (means[0] * h[0] - means[1] * h[1])
        c0 = scale * offset + means[1] * means[1] * h[1] - means[0] * means[0] * h[0]
        return c0 + x * (c1 + x * c2)
    # scale * q = scale * L + (u_2^2 - u_1^2) with u_k = sqrt(scale / 2) z_k.
    inv = math.sqrt(0.5 * scale) * inv
    u1 = (x - means[0]) * inv[0]
    u2 = (x - means[1]) * inv[1]
    return scale * offset + (u2 * u2 - u1 * u1)


def two_component_stats(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array],
    moments: DataMoments,
    *,
    second_moments: bool = True,
    loglik: bool = False,
    reduction: Optional[str] = None,
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
    t = jnp.tanh(_log_odds(x, params, scale=0.5))
    terms = [(t, None), (t, x)] + ([(t * x, x)] if second_moments else [])
    if loglik:
        a = [_component_log_joint(x, params, k) for k in range(2)]
        terms.append((jnp.maximum(a[0], a[1]) + (math.log(2.0) - jnp.log1p(jnp.abs(t))), None))
    sums = _row_sums(terms, sample_weight, reduction)
    sign = jnp.asarray([1.0, -1.0], x.dtype)
    count = 0.5 * (moments.total + sign * sums[0])
    raw_first = 0.5 * (moments.first + sign * sums[1])
    first = raw_first - means * count
    if second_moments:
        raw_second = 0.5 * (moments.second + sign * sums[2])
        second = raw_second - 2.0 * means * raw_first + means * means * count
    else:
        second = jnp.zeros_like(first)
    return SuffStats(count, first, second, sums[-1] if loglik else None)


def two_component_stats_precise(
    x: Array,
    params: MixtureParams,
    sample_weight: Optional[Array],
    *,
    second_moments: bool = True,
    reduction: Optional[str] = None,
) -> SuffStats:
    """The ``K = 2`` loop pass with every responsibility resolved relative to its size.

    Each responsibility is a logistic function of the log-odds ``q``,
    ``rho_1 = 1 / (1 + exp(-q))`` and ``rho_2 = 1 / (1 + exp(q))``, both to full
    relative precision, so a component of three points among a million keeps an exact
    count (the ``tanh`` pass of :func:`two_component_stats` resolves it only to
    ``eps`` times the total weight).  Each component's sums are taken separately
    (first moments about zero, second moments about the component's mean).
    ``loglik`` is ``None``.
    """
    weights, means, scales = params
    q = _log_odds(x, params)
    # logistic(q) = 1 / (1 + exp(-q)) is relatively precise at both ends; one
    # self-contained expression per component keeps each a single fused pass.
    rho = (jax.nn.sigmoid(q), jax.nn.sigmoid(-q))
    terms = [(rho[0], None), (rho[1], None), (rho[0], x), (rho[1], x)]
    if second_moments:
        dev = [x - m for m in (means[0], means[1])]
        terms += [(rho[0] * dev[0], dev[0]), (rho[1] * dev[1], dev[1])]
    sums = _row_sums(terms, sample_weight, reduction)
    count = jnp.stack(sums[0:2])
    first = jnp.stack(sums[2:4]) - means * count
    second = jnp.stack(sums[4:6]) if second_moments else jnp.zeros_like(first)
    return SuffStats(count, first, second, None)


def e_step(
    x: Array, params: MixtureParams, sample_weight: Optional[Array] = None
) -> tuple[Array, Array]:
    """The univariate E-step of :func:`jaxgmm.e_step` (``jaxgmm/_steps.py``
    documents it): responsibilities ``(n, K)`` and the log-likelihood of one
    dataset ``x`` ``(n,)``."""
    x, params, sample_weight = _validate.as_step_args(x, params, sample_weight, func="e_step", one_dataset=True)
    x, params = _as_float(x, params)
    rho, point_ll = _responsibilities(x, params)
    resp = rho.T if params.means.shape[-1] > UNROLL_COMPONENTS else jnp.stack(rho, axis=-1)
    return resp, _weighted_sum(point_ll, sample_weight)


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
        free_mass = 1.0 - over_components(jnp.add, jnp.where(fixed_w, params.weights, 0.0))
        free_count = over_components(jnp.add, jnp.where(fixed_w, 0.0, count))
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
        var = jnp.broadcast_to(over_components(jnp.add, within) / over_components(jnp.add, count), count.shape)
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

    Raises:
      ValueError, TypeError: for concrete invalid arguments (params that are
        not a mixture, negative weights, bad ``resp``), naming the argument;
        traced values inside ``jit``/``vmap`` are not checked (shapes are).
    """
    x, resp, params, sample_weight = _validate.as_m_step_args(x, resp, params, sample_weight, fixed, equal_scales)
    x, params = _as_float(x, params)
    resp = jnp.asarray(resp, x.dtype).T
    spec = make_spec(fixed, params.means.shape[-1], equal_scales)
    dev = x[None, :] - params.means[:, None]
    # Deviations (and means and scales) in units of a power of two near the
    # largest deviation, an exact rescaling: squared deviations of float32 data
    # at 1e-20 underflow to 0 and their sums at 1e18 overflow.
    _, e = jnp.frexp(jnp.max(jnp.where(jnp.isfinite(dev), jnp.abs(dev), 0.0)))
    dev = times_pow2(dev, -e)
    scaled = MixtureParams(params.weights, times_pow2(params.means, -e), times_pow2(params.scales, -e))
    weighted_dev = resp * dev
    stats = SuffStats(
        _weighted_sum(resp, sample_weight),
        _weighted_sum(weighted_dev, sample_weight),
        _weighted_sum(weighted_dev * dev, sample_weight),
        jnp.zeros((), x.dtype),
    )
    new = m_step_from_stats(stats, scaled, spec)
    return MixtureParams(new.weights, times_pow2(new.means, e), times_pow2(new.scales, e))


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

    Raises:
      ValueError, TypeError: for concrete invalid arguments (params that are
        not a mixture, negative weights, bad ``resp``), naming the argument;
        traced values inside ``jit``/``vmap`` are not checked (shapes are).
    """
    x, params, sample_weight = _validate.as_step_args(x, params, sample_weight, func="log_likelihood")
    x, params = _as_float(x, params)
    x = x[..., None, :]
    means, scales, weights = (f[..., :, None] for f in (params.means, params.scales, params.weights))
    z = (x - means) / scales
    a = jnp.log(weights) - jnp.log(scales) - _HALF_LOG_2PI - 0.5 * z * z
    return _weighted_sum(jax.nn.logsumexp(a, axis=-2), sample_weight)
