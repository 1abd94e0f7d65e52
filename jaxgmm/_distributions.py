"""The fitted mixture as a distribution: classification, densities, CDFs and quantiles.

Every function takes data (or probabilities) of shape ``(..., n)`` and a
:class:`MixtureParams` (or a :class:`FitResult`, whose ``params`` are used) with
fields of shape ``(..., K)``; the batch shapes broadcast like NumPy's, exactly as
in :func:`jaxgmm.fit`, so one call evaluates many fitted mixtures on their own
data.  All of them are pure, jittable and vmappable; they follow the data's float
dtype.

:func:`predict_proba`, :func:`predict`, :func:`score_samples` and :func:`pdf`
also take a :class:`MultivariateParams` (weights ``(..., K)``, means ``(..., K,
D)``, covariances ``(..., K, D, D)``) with data ``(..., n, D)``: they dispatch on
the parameters' type to ``jaxgmm/_mv_distributions.py``.  The CDFs and quantiles
are univariate only.

Everything is computed on the log scale from the per-component terms
``log pi_k + log N(x | mu_k, sigma_k)`` (densities) and ``log pi_k + log Phi(+-z_k)``
(``jax.scipy.special.log_ndtr``, with a continued fraction in the far
lower tail; CDFs), combined by log-sum-exp, so tails do not
underflow: the log-CDF at 40 standard deviations below every component is about
-800, not ``log(0)``.

Quantiles (:func:`ppf`, :func:`isf`) solve ``logcdf(x) = log q`` (lower half) or
``logsf(x) = log(1 - q)`` (upper half) by Newton's method on that log scale,
safeguarded by a bracket: the mixture's ``q``-quantile lies between the smallest
and the largest of its components' ``q``-quantiles (``F`` is a weighted mean of
the components' CDFs), and a Newton step that leaves the current bracket is
replaced by bisection.  On the log scale the equation is nearly linear in the
tails, so Newton takes a handful of steps and the result is accurate to a few
ulps of ``x``; the achievable accuracy is set by the float type (see
:func:`ppf`).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import log_ndtr, ndtri

from . import _mv_distributions, _validate
from ._mv_params import MultivariateParams
from ._params import Array, FitResult, MixtureParams
from ._xla import jit

# What the functions take for data or probabilities: arrays, scalars, lists.
ArrayLike = Union[jax.typing.ArrayLike, Sequence[float]]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

ParamsLike = Union[MixtureParams, MultivariateParams, FitResult]

# Newton steps with a bisection fallback: bisection alone halves the bracket per
# step, and the bracket (between component quantiles) is at most a few hundred
# standard deviations wide, so 200 covers even the all-bisection case in float64
# (2^-200 of the width is far below one ulp).  Newton needs about 5 to 10.
_MAX_QUANTILE_STEPS = 200


def _params_of(params: ParamsLike):
    """The parameters themselves (a :class:`FitResult`'s ``params``)."""
    return params.params if isinstance(params, FitResult) else params


def _univariate_only(params: ParamsLike, func: str) -> None:
    if isinstance(_params_of(params), MultivariateParams):
        raise TypeError(f"{func} applies to univariate mixtures (params a jaxgmm.MixtureParams), got a "
                        "MultivariateParams; a D-dimensional mixture has predict_proba, predict, "
                        "score_samples and pdf")


def _inputs(x, params: ParamsLike, name: str = "x", func: str = "") -> tuple[Array, MixtureParams]:
    """Validate ``x`` (shape ``(..., n)``) and ``params``; cast both to one float dtype.
    ``func`` names a univariate-only function, refusing a :class:`MultivariateParams`."""
    if func:
        _univariate_only(params, func)
    params = _params_of(params)
    x = _validate.as_data(x, name=name)
    params = _validate.as_params(params, x.dtype, name="params")
    return x, params


def _component(params: MixtureParams, k: int) -> tuple[Array, Array, Array]:
    """Component ``k``'s ``(pi, mu, sigma)``, each ``(..., 1)`` to broadcast with ``(..., n)``."""
    return tuple(f[..., k, None] for f in params)


def _log_joint(x: Array, params: MixtureParams) -> list:
    """``[log pi_k + log N(x | mu_k, sigma_k) for each k]``, each of shape ``(..., n)``.

    A list over components rather than a stacked ``(..., n, K)`` array, as in
    ``_em.py``: reductions over ``K`` are then elementwise, and the XLA programs
    compile about twice as fast (the quantile solver's loop: 4 s to 2 s).
    """
    terms = []
    for k in range(params.means.shape[-1]):
        w, mu, sd = _component(params, k)
        # A component of weight 0 contributes log 0 = -inf: excluded, never NaN.
        terms.append(jnp.log(w) - jnp.log(sd) - _HALF_LOG_2PI - 0.5 * jnp.square((x - mu) / sd))
    return terms


def _logsumexp(terms: list) -> Array:
    """``log sum_k exp(a_k)`` over a list of arrays; all ``-inf`` gives ``-inf``."""
    largest = functools.reduce(jnp.maximum, terms)
    shift = jnp.where(jnp.isfinite(largest), largest, 0.0)
    return shift + jnp.log(functools.reduce(jnp.add, [jnp.exp(a - shift) for a in terms]))


def _log_ndtr(z: Array) -> Array:
    """``log Phi(z)``, accurate to about an ulp for every ``z``.

    ``jax.scipy.special.log_ndtr`` switches to an asymptotic series at
    ``z = -20`` whose float64 error reaches 9e4 ulps there (a relative 2e-11;
    still 90 ulps at ``z = -40``).  From -20 down this uses the Mills ratio's
    continued fraction instead: ``Phi(-t) = phi(t) / f(t)`` with
    ``f = t + 1/(t + 2/(t + 3/(t + ...)))``; 12 terms give full float64 precision
    for ``t >= 20`` (8 already do).
    """
    t = jnp.maximum(-z, 20.0)  # the branch not taken stays finite
    f = t
    for k in range(12, 0, -1):
        f = t + k / f
    tail = -0.5 * t * t - _HALF_LOG_2PI - jnp.log(f)
    # JAX takes its series from z = -20 itself on (where its error is largest).
    return jnp.where(z > -20.0, log_ndtr(z), tail)


def _log_tail(x: Array, params: MixtureParams, upper) -> Array:
    """``log P(X <= x)`` or, where ``upper`` (a bool or a boolean array broadcasting
    with ``x``) is true, ``log P(X > x)``; shape ``(..., n)``."""
    # P(X > x) = sum_k pi_k Phi(-z_k): the same formula with z reflected.
    sign = jnp.where(upper, -1.0, 1.0).astype(x.dtype)
    terms = []
    for k in range(params.means.shape[-1]):
        w, mu, sd = _component(params, k)
        terms.append(jnp.log(w) + _log_ndtr(sign * (x - mu) / sd))
    return _logsumexp(terms)


@jit
def _predict_proba(x, params):
    terms = _log_joint(x, params)
    total = _logsumexp(terms)
    return jnp.stack([jnp.exp(a - total) for a in terms], axis=-1)


@jit
def _predict(x, params):
    return jnp.argmax(jnp.stack(_log_joint(x, params), axis=-1), axis=-1).astype(jnp.int32)


@jit
def _score_samples(x, params):
    return _logsumexp(_log_joint(x, params))


_logcdf = jit(lambda x, params: _log_tail(x, params, upper=False))
_logsf = jit(lambda x, params: _log_tail(x, params, upper=True))


def predict_proba(x: ArrayLike, params: ParamsLike) -> Array:
    """Responsibilities ``P(component k | x_i)`` for any data.

    Args:
      x: observations, shape ``(..., n)``; ``(..., n, D)`` for a
        :class:`MultivariateParams`.
      params: :class:`MixtureParams` with fields ``(..., K)``, or
        :class:`MultivariateParams` with weights ``(..., K)``, means ``(..., K,
        D)`` and covariances ``(..., K, D, D)`` (or a :class:`FitResult` of
        either); batch shapes broadcast with ``x``'s.

    Returns:
      Array of shape ``batch + (n, K)``, rows summing to one: the softmax over
      components of ``log pi_k + log N(x_i | mu_k, sigma_k)`` (multivariate:
      ``N(x_i | mu_k, Sigma_k)``).

    Raises:
      ValueError, TypeError: for concrete invalid arguments, naming them
        (multivariate: ``x``'s ``D`` not the parameters', fields disagreeing on
        ``K``, batch shapes that do not broadcast).
    """
    params = _params_of(params)
    if isinstance(params, MultivariateParams):
        return _mv_distributions.predict_proba(x, params)
    return _predict_proba(*_inputs(x, params))


def predict(x: ArrayLike, params: ParamsLike) -> Array:
    """The most probable component of each observation, ``int32`` of shape ``batch + (n,)``.

    ``x`` of shape ``(..., n)``, or ``(..., n, D)`` for a :class:`MultivariateParams`
    (see :func:`predict_proba`).
    """
    params = _params_of(params)
    if isinstance(params, MultivariateParams):
        return _mv_distributions.predict(x, params)
    return _predict(*_inputs(x, params))


def score_samples(x: ArrayLike, params: ParamsLike) -> Array:
    """Log density ``log p(x_i)`` of each observation, shape ``batch + (n,)``.

    ``x`` of shape ``(..., n)``, or ``(..., n, D)`` for a :class:`MultivariateParams`
    (see :func:`predict_proba`).  Summed over ``n`` it is
    :func:`jaxgmm.log_likelihood` (without weights).
    """
    params = _params_of(params)
    if isinstance(params, MultivariateParams):
        return _mv_distributions.score_samples(x, params)
    return _score_samples(*_inputs(x, params))


def pdf(x: ArrayLike, params: ParamsLike) -> Array:
    """Density ``p(x_i)``, shape ``batch + (n,)``; ``exp`` of :func:`score_samples`
    (``x`` of shape ``(..., n)``, or ``(..., n, D)`` for a :class:`MultivariateParams`)."""
    return jnp.exp(score_samples(x, params))


def logcdf(x: ArrayLike, params: ParamsLike) -> Array:
    """``log P(X <= x_i)``, shape ``batch + (n,)``, accurate far into the lower tail.
    Univariate only (a :class:`MultivariateParams` is a ``TypeError``), as are
    :func:`logsf`, :func:`cdf`, :func:`sf`, :func:`ppf` and :func:`isf`."""
    return _logcdf(*_inputs(x, params, func="logcdf"))


def logsf(x: ArrayLike, params: ParamsLike) -> Array:
    """``log P(X > x_i)`` (log survival function), shape ``batch + (n,)``,
    accurate far into the upper tail."""
    return _logsf(*_inputs(x, params, func="logsf"))


def cdf(x: ArrayLike, params: ParamsLike) -> Array:
    """``P(X <= x_i)``, shape ``batch + (n,)``; ``exp`` of :func:`logcdf`, so small
    lower-tail probabilities keep their relative accuracy."""
    _univariate_only(params, "cdf")
    return jnp.exp(logcdf(x, params))


def sf(x: ArrayLike, params: ParamsLike) -> Array:
    """``P(X > x_i) = 1 - cdf``, shape ``batch + (n,)``; ``exp`` of :func:`logsf`,
    so small upper-tail probabilities keep their relative accuracy (``1 - cdf``
    would round them to 0 once they fall below the float's epsilon)."""
    _univariate_only(params, "sf")
    return jnp.exp(logsf(x, params))


# --------------------------------------------------------------------------- #
# Quantiles
# --------------------------------------------------------------------------- #
def _solve_log_tail(target: Array, params: MixtureParams, upper: Array) -> Array:
    """Solve ``log_tail(x) = target`` elementwise; ``target`` ``(..., n)`` is the log
    of a lower-tail probability, or of an upper-tail one where ``upper`` (boolean,
    same shape) is true.

    ``g(x) = s (log_tail(x) - target)`` with ``s = +1`` (lower) or ``-1`` (upper)
    increases in ``x``, with ``g'(x) = exp(log p(x) - log_tail(x))``.
    """
    sign = jnp.where(upper, -1.0, 1.0).astype(target.dtype)

    def g_and_slope(x):
        tail = _log_tail(x, params, upper)
        log_density = _logsumexp(_log_joint(x, params))
        return sign * (tail - target), jnp.exp(log_density - tail)

    # Bracket: the smallest and largest component quantile among components that
    # carry weight.  Component k's quantile for tail probability p: mu_k +- sigma_k z_p.
    z = ndtri(jnp.exp(target))
    z = jnp.where(upper, -z, z)
    lo = hi = None
    for k in range(params.means.shape[-1]):
        w, mu, sd = _component(params, k)
        at = mu + sd * z
        lo_k, hi_k = jnp.where(w > 0, at, jnp.inf), jnp.where(w > 0, at, -jnp.inf)
        lo = lo_k if lo is None else jnp.minimum(lo, lo_k)
        hi = hi_k if hi is None else jnp.maximum(hi, hi_k)
    x0 = 0.5 * (lo + hi)
    tiny = jnp.finfo(target.dtype).tiny
    eps = jnp.finfo(target.dtype).eps

    def close(a, b):
        # Two ulps of the larger magnitude: below that the bracket cannot shrink.
        return jnp.abs(a - b) <= 2 * eps * jnp.maximum(jnp.maximum(jnp.abs(a), jnp.abs(b)), tiny)

    def cond(state):
        i, _, _, _, done = state
        return (i < _MAX_QUANTILE_STEPS) & ~jnp.all(done)

    def body(state):
        i, x, lo, hi, done = state
        g, slope = g_and_slope(x)
        lo = jnp.where(g < 0, x, lo)
        hi = jnp.where(g > 0, x, hi)
        newton = x - g / slope
        inside = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        x_new = jnp.where(inside, newton, 0.5 * (lo + hi))
        stop = done | (g == 0) | close(x_new, x) | close(lo, hi)
        # A finished element keeps its value; the others take the step.
        return i + 1, jnp.where(done, x, x_new), lo, hi, stop

    done0 = close(lo, hi) | ~jnp.isfinite(x0)
    state = (jnp.zeros((), jnp.int32), x0, lo, hi, done0)
    return lax.while_loop(cond, body, state)[1]


@jit
def _quantile(q: Array, params: MixtureParams, upper_input: Array) -> Array:
    """Quantile of lower-tail probability ``q`` (``upper_input`` false) or of
    upper-tail probability ``q`` (true); shape ``batch + (n,)``.

    ``upper_input`` is a traced boolean so that :func:`ppf` and :func:`isf` share
    one compiled program (the solver's loop takes seconds to compile).
    """
    batch = jnp.broadcast_shapes(q.shape[:-1], params.means.shape[:-1])
    q = jnp.broadcast_to(q, batch + q.shape[-1:])
    params = MixtureParams(*(jnp.broadcast_to(f, batch + f.shape[-1:]) for f in params))
    # Work in the tail that holds q's information: below 1/2 the lower tail, above
    # it the other one, where 1 - q is exact (Sterbenz) and its log is log1p(-q).
    use_upper = (q > 0.5) != upper_input
    target = jnp.where(use_upper == upper_input, jnp.log(q), jnp.log1p(-q))
    safe = jnp.where((q > 0) & (q < 1), target, jnp.log(jnp.asarray(0.5, q.dtype)))
    x = _solve_log_tail(safe, params, use_upper)
    at_zero = jnp.where(upper_input, jnp.inf, -jnp.inf).astype(q.dtype)
    x = jnp.where(q == 0, at_zero, jnp.where(q == 1, -at_zero, x))
    return jnp.where((q >= 0) & (q <= 1), x, jnp.nan)


def ppf(q: ArrayLike, params: ParamsLike) -> Array:
    """Quantile function (inverse of :func:`cdf`): ``x`` with ``P(X <= x) = q_i``.

    Args:
      q: probabilities, shape ``(..., n)``; 0 gives ``-inf``, 1 gives ``+inf``,
        values outside ``[0, 1]`` or NaN give NaN.
      params: :class:`MixtureParams` (or a :class:`FitResult`), fields ``(..., K)``.

    Returns:
      Array of shape ``batch + (n,)``.

    Accuracy: a few ulps of ``x`` for the ``q`` given.  Below 1/2 the solver
    works on ``log q`` (so ``q = 1e-300`` in float64 or ``1e-37`` in float32 is
    fine); above 1/2 on ``log(1 - q)``, which is exact for the float ``q``.  Upper
    tails are limited by how finely floats near 1 are spaced: in float32
    ``1 - 1e-12`` *is* 1.0 (so the quantile is ``inf``), and in float64 it carries
    only about 4 significant digits of ``1 - q``.  For upper tails give the tail
    probability itself to :func:`isf`: ``isf(1e-12, params)`` is accurate in both
    float types.
    """
    q, params = _inputs(q, params, name="q", func="ppf")
    return _quantile(q, params, jnp.asarray(False))


def isf(q: ArrayLike, params: ParamsLike) -> Array:
    """Inverse survival function: ``x`` with ``P(X > x) = q_i`` (``ppf(1 - q)``
    without the rounding of ``1 - q``), shape ``batch + (n,)``.

    The upper-tail counterpart of :func:`ppf`, inverse of :func:`sf`:
    ``isf(1e-12, params)`` is accurate to a few ulps in float32 too.
    """
    q, params = _inputs(q, params, name="q", func="isf")
    return _quantile(q, params, jnp.asarray(True))
