"""The EM driver: one ``lax.while_loop`` per fit, ``vmap`` over the batch.

Each fit works in *standardised* coordinates: the data are centred and scaled by
their own (weighted) mean and standard deviation inside the loop, the parameters
are mapped in and out.  That keeps float32 accurate for data far from zero or
tiny in scale, makes the tolerance scale-free, and makes the variance floor
relative to the data's spread.  The reported log-likelihood is on the user's
scale and belongs to the returned parameters: after the loop, one more E-pass
evaluates it (and the counts used to flag degenerate components).

Convergence rule: a fit has converged when the largest change in one iteration of
any weight, or of any mean or scale measured in units of the data's standard
deviation, is strictly below ``tol``.  ``tol=0`` therefore runs exactly
``max_iter`` iterations (unless a fit turns non-finite, which stops it).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from ._batching import batch_shape_of, broadcast_vmap
from ._chunks import ChunkedData, chunked, over_data
from ._em import (DataMoments, ModelSpec, data_moments, m_step_from_stats, sufficient_stats, times_pow2,
                  two_component_stats, two_component_stats_precise)
from ._params import Array, FitResult, MixtureParams, Status, over_components
from ._xla import jit

# A component with less than this fraction of one (average) observation's weight
# is treated as empty: its mean and scale cannot be estimated.
_MIN_COUNT_FRACTION = 1e-3


def default_tol(dtype) -> float:
    """Default convergence tolerance for a float dtype.

    float64: ``1e-9``; the estimates then agree with the exact MLE to about 1e-7
    even when EM converges slowly (rate 0.99 per iteration).  float32 (and
    narrower): ``1e-5``, a few times above the rounding noise of one EM step, so
    that fits converge instead of running to ``max_iter``.
    """
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-5


class LoopState(NamedTuple):
    """Carry of the EM loop for one fit (standardised coordinates)."""

    params: MixtureParams  # fields shape=(K,)
    n_iter: Array  # shape=(), int32
    change: Array  # shape=(), largest parameter change of the last iteration
    finite: Array  # shape=(), bool: the last E/M step produced finite values


def _extent(x: Array, w: Optional[Array]):
    """``(max, min, total weight, number present)`` of the observations present."""
    if w is None:
        n = jnp.asarray(x.shape[-1], x.dtype)
        return jnp.max(x), jnp.min(x), n, n
    present = w > 0
    return (jnp.max(jnp.where(present, x, -jnp.inf)), jnp.min(jnp.where(present, x, jnp.inf)),
            jnp.sum(w), jnp.sum(present).astype(x.dtype))


def _scaled_moments(x: Array, w: Optional[Array], shift, e, second: bool):
    """``sum w d`` and (if ``second``, static) ``sum w d^2`` of ``d = (x - shift) 2^e``."""
    d = times_pow2(x - shift, e)
    wd = d if w is None else w * d
    return jnp.sum(wd), (jnp.sum(wd * d) if second else None)


# Robust units.  A fit's units (the centre and spread of its standardised
# coordinates, which the stopping rule and the variance floor are relative to)
# come from the observations within CLIP spreads of the centre: where any lies
# beyond, centre and spread are recomputed from those within, up to
# CLIP_PASSES times.  One outlier at 1e12 among 10^4 points otherwise inflates
# the standard deviation to 1e10, and the rule "no mean moves by tol spreads"
# stopped EM after one iteration, 1,500 nats below its maximum (issue 21 #1);
# in float32 a centre pulled to 1e11 left the bulk unrepresentable (#2).
# Gaussian data never trigger it (8 sd: P < 1.3e-15 per point); the units of
# other data change, their fixed points do not.  A pass that would leave less
# than half of the weight, or no spread, is not taken.
CLIP = 8.0
CLIP_PASSES = 8


def _mean_and_spread(x: Array, w: Optional[Array], hi, lo, total, reduce):
    """Weighted mean and standard deviation of the observations present, exact
    to rounding whatever their magnitude (moments of the data rescaled by powers
    of two, the second about the mean)."""
    # Moments of data rescaled by a power of two near their largest magnitude
    # (exact in floating point): squares of data ~1e-30 would underflow in
    # float32, and sums of data ~1e30 overflow.
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
    (first, _) = reduce(functools.partial(_scaled_moments, shift=0.0, e=-e, second=False), (jnp.add, None))
    centre = jnp.ldexp(first / total, e)
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi - centre), jnp.abs(lo - centre)))
    first, second = reduce(functools.partial(_scaled_moments, shift=centre, e=-e, second=True), (jnp.add, jnp.add))
    # The centre is rounded to the data's precision (1e6 + N(0, 1) in float32
    # has a centre off by up to 0.03 sd); take its residual offset out.
    spread = jnp.ldexp(jnp.sqrt(jnp.maximum(second / total - jnp.square(first / total), 0)), e)
    return centre, spread


def _robust_units(x: Array, w: Optional[Array], hi, lo, total, centre, spread):
    """``(centre, spread)`` of the observations within :data:`CLIP` spreads (see there)."""

    def beyond(c, s, hi_, lo_):
        return (jnp.maximum(hi_ - c, c - lo_) > CLIP * s) & (s > 0) & jnp.isfinite(s)

    def body(carry):
        c, s, passes, _ = carry
        bound = CLIP * s

        def kept(xs, ws):
            inside = jnp.abs(xs - c) <= bound
            return jnp.where(inside, 1.0 if ws is None else ws, 0.0).astype(xs.dtype)

        # Reductions over the observations within the bound (chunk by chunk for
        # one very large dataset, as every pass of the standardiser).
        reduce = lambda fn, combine: over_data(x, w, lambda xs, ws: fn(xs, kept(xs, ws)), combine)
        hi_k, lo_k, total_k, _ = reduce(_extent, (jnp.maximum, jnp.minimum, jnp.add, jnp.add))
        c_k, s_k = _mean_and_spread(x, w, hi_k, lo_k, total_k, reduce)
        take = (total_k >= 0.5 * total) & (s_k > 0) & jnp.isfinite(s_k) & jnp.isfinite(c_k)
        c_new, s_new = jnp.where(take, c_k, c), jnp.where(take, s_k, s)
        return c_new, s_new, passes + 1, take & beyond(c_new, s_new, hi_k, lo_k)

    def cond(carry):
        return carry[3] & (carry[2] < CLIP_PASSES)

    start = (centre, spread, jnp.zeros((), jnp.int32), beyond(centre, spread, hi, lo))
    c, s, _, _ = lax.while_loop(cond, body, start)
    return c, s


class Standardiser(NamedTuple):
    """Per-dataset affine map to standardised coordinates and the data's totals.

    ``centre`` and ``spread`` are the weighted mean and standard deviation of the
    data, or, where observations lie beyond :data:`CLIP` standard deviations,
    those of the observations within (robust units, see :data:`CLIP`).
    """

    centre: Array
    spread: Array
    total_weight: Array
    min_count: Array

    @classmethod
    def from_data(cls, x: Array, sample_weight: Optional[Array]) -> "Standardiser":
        # Passes over the data, each a reduction: one very large dataset is
        # reduced chunk by chunk (over_data), with no temporary of the data's size.
        reduce = functools.partial(over_data, x, sample_weight)
        hi, lo, total, n_present = reduce(_extent, (jnp.maximum, jnp.minimum, jnp.add, jnp.add))
        centre, spread = _mean_and_spread(x, sample_weight, hi, lo, total, reduce)
        centre, spread = _robust_units(x, sample_weight, hi, lo, total, centre, spread)
        # Constant data (the centre may still be off by rounding, so test hi == lo):
        # the data's magnitude |centre| sets the units (1 for all zeros), so that
        # constant 1e19 or 1e-30 stay representable; broken data: the identity map.
        # The fit then reports the problem through its status.
        centre = jnp.where(jnp.isfinite(centre), centre, 0.0).astype(x.dtype)
        magnitude = jnp.where(centre != 0, jnp.abs(centre), 1.0)
        usable = (hi > lo) & jnp.isfinite(spread) & (spread > 0)
        spread = jnp.where(usable, spread, magnitude).astype(x.dtype)
        min_count = _MIN_COUNT_FRACTION * total / jnp.maximum(n_present, 1.0)
        return cls(centre, spread, total, min_count)

    def data(self, x: Array) -> Array:
        return (x - self.centre) / self.spread

    def params_in(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(p.weights, (p.means - self.centre) / self.spread, p.scales / self.spread)

    def params_out(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(p.weights, p.means * self.spread + self.centre, p.scales * self.spread)

    def loglik_out(self, loglik: Array) -> Array:
        # p(x) = p_std((x - c) / s) / s for every observation.
        return loglik - self.total_weight * jnp.log(self.spread)


def _largest_change(new: MixtureParams, old: MixtureParams) -> Array:
    return over_components(jnp.maximum, jnp.abs(jnp.concatenate(new, axis=-1) - jnp.concatenate(old, axis=-1)))


def _all_finite(params: MixtureParams) -> Array:
    return over_components(jnp.logical_and, jnp.isfinite(jnp.concatenate(params, axis=-1)))


def loop_stats(x_std, sample_weight, params, spec: ModelSpec, moments: Optional[DataMoments],
               fast: bool = True):
    """Sufficient statistics for the loop.

    For ``K = 2`` with ``moments`` (:func:`data_moments` of ``x_std``): the
    one-``tanh`` pass when ``fast`` (static), else the pass that resolves every
    responsibility relative to its size.  ``None`` moments (or ``K != 2``) use the
    general fused pass (without the log-likelihood).
    """
    # Both K = 2 passes form the log-odds from (x - mu) / sigma (an expanded
    # quadratic in x loses eps * x^2 / sigma^2 of it, garbage near the variance
    # floor in float32: tests/test_robustness.py::
    # test_float32_em_never_lowers_the_likelihood_of_narrow_starts).  The tanh
    # pass's second moments come from raw moments; where that loses a component
    # the loop leaves the fast phase (fast_pass_accurate).
    if isinstance(x_std, ChunkedData):  # one very large dataset: sum over chunks
        return x_std.reduce(lambda xs, ws, mom: loop_stats(xs, ws, params, spec, mom, fast), moments)
    if moments is not None and params.means.shape[-1] == 2:
        if fast:
            return two_component_stats(x_std, params, sample_weight, moments, second_moments=spec.scales_free)
        return two_component_stats_precise(x_std, params, sample_weight, second_moments=spec.scales_free)
    # The loop's stopping rule does not use the log-likelihood; a NaN anywhere
    # still shows in the counts (step_finite).
    return sufficient_stats(x_std, params, sample_weight, second_moments=spec.scales_free, loglik=False)


def fast_pass_accurate(params: MixtureParams, moments: Optional[DataMoments], spec: ModelSpec) -> Array:
    """Whether the ``tanh`` pass resolves every free mean's first and every free
    scale's second moment to a relative ``sqrt(eps)`` at ``params`` (a traced
    bool; static ``True`` where the pass is not the ``K = 2`` one).  ``moments``
    are those of the whole dataset (summed over chunks).

    The pass gets component ``k``'s moments from raw sums of all the data, so
    their rounding errors are about ``eps * sum_i w_i |x_i|`` (at most ``eps *
    sqrt(W sum_i w_i x_i^2)``) for the first, against ``W pi_k sigma_k`` (the
    resolution a mean needs, in units of its own scale), and about ``eps * S_k``
    with ``S_k = sum_i w_i (x_i - mu_k)^2`` for the second, against a second
    moment of ``W pi_k sigma_k^2``.  At a relative error of ``sqrt(eps)`` an
    M-step costs the likelihood at most about ``eps`` per observation, the
    rounding level of the likelihood itself.  A narrow or small component, or
    data with far outliers (one point at 1e15 among points of size 1: its share
    of ``sum x`` swamps the bulk's, in float64 too), fail the test, and the fit
    leaves the fast phase for the precise pass for good (:func:`run_em`).
    """
    if moments is None or params.means.shape[-1] != 2:
        return jnp.asarray(True)
    eps = jnp.finfo(params.scales.dtype).eps
    root_eps = math.sqrt(eps)
    mu = params.means
    total = moments.total
    own_count = total * params.weights
    ok = jnp.asarray(True)
    if not all(spec.fixed_means):
        # Cauchy-Schwarz: sum |x| <= sqrt(W sum x^2).
        first_err = eps * jnp.sqrt(jnp.maximum(total * moments.second, 0.0))
        ok = ok & over_components(jnp.logical_and, jnp.asarray(spec.fixed_means)
                                  | (first_err <= root_eps * own_count * params.scales))
    if spec.scales_free:
        spread_k = moments.second - 2.0 * mu * moments.first + mu * mu * total
        own = own_count * params.scales * params.scales
        ok = ok & over_components(jnp.logical_and, eps * spread_k <= root_eps * own)
    return ok


def polish_phase(x_std, params: MixtureParams, moments) -> bool:
    """Whether the ``K = 2`` loop's converged fits continue with a precise phase (static).

    The ``tanh`` pass gets a component's count as ``(W -/+ sum t) / 2`` and its
    second moment from raw moments: in float64 that is exact enough, but in
    float32 it loses a small component (3 points of 1e6: count resolved to
    ``eps * W = 0.1``) and a tight one far from the centre (relative error
    ``eps * mean^2 / var``; tests/test_robustness.py::
    test_float32_small_component_of_large_dataset).  So narrower floats run the
    fast pass to convergence (or until :func:`fast_pass_accurate` fails), then
    continue with the precise pass until *it* converges: the result is the
    precise pass's fixed point, and where the fast one is already close (the
    usual case) this costs one or a few iterations.  In every dtype, fits that
    left the fast phase because it stopped being accurate continue there.
    """
    return two_passes(params, moments) and jnp.finfo(x_std.dtype).bits < 64


def two_passes(params: MixtureParams, moments) -> bool:
    """Whether the loop runs the ``K = 2`` fast pass, then the precise one (static)."""
    return moments is not None and params.means.shape[-1] == 2


def em_update(x_std, sample_weight, params, spec: ModelSpec, scale_floor, min_count, moments=None,
              fast: bool = True):
    """One EM iteration in standardised coordinates: ``(new_params, stats)``."""
    stats = loop_stats(x_std, sample_weight, params, spec, moments, fast)
    return m_step_from_stats(stats, params, spec, scale_floor, min_count), stats


def step_finite(new: MixtureParams, stats) -> Array:
    """Whether an EM step produced finite parameters (and log-likelihood, when computed)."""
    finite = _all_finite(new) & over_components(jnp.logical_and, jnp.isfinite(stats.count))
    return finite if stats.loglik is None else finite & jnp.isfinite(stats.loglik)


# EM steps per trip of the fitting loop on accelerators.  Each trip ends with the
# loop's predicate ("is any fit still running?") copied to the host, which costs
# a GPU about as much as a small batch's EM step.  Measured on an H200 against
# one step per trip (bench/gpu_results.txt): B = 10k x n = 1000, fixed
# iterations 1.43x faster and fits/s to convergence 1.17x; B = 100k, 1.09x and
# 1.02x; B = 1k converges slower (0.32M against 0.54M fits/s, calls of ~2 ms).
# On CPU one step per trip: the predicate is cheap there, and the masked further
# steps cost as much as they save.
ACCELERATOR_STEPS_PER_TRIP = 4


def steps_per_trip() -> int:
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_STEPS_PER_TRIP


def run_em(x_std, sample_weight, state: LoopState, tol, max_iter, scale_floor, min_count, spec,
           moments: Optional[DataMoments] = None, phases: str = "all"):
    """Iterate EM from ``state`` until converged, non-finite or ``n_iter == max_iter``.

    For two components a fast loop is followed by a precise one, which carries
    on the fits that left the fast one inaccurate and, where
    :func:`polish_phase` holds, restarts the converged ones; ``phases``
    (static) runs ``"all"``, only the ``"fast"`` or only the ``"precise"`` loop
    (the compacting driver schedules the phases itself).
    """

    def cond(s: LoopState):
        return (s.n_iter < max_iter) & s.finite & ~(s.change < tol)

    # The moments of the whole dataset, summed once: one very large dataset
    # carries each chunk's (fields of shape (n_chunks,)).
    whole = None if moments is None else jax.tree_util.tree_map(
        lambda a: jnp.sum(a, axis=0) if a.ndim else a, moments)

    def loop(s: LoopState, fast: bool):
        # A fit leaves the fast phase where the fast pass stops being accurate;
        # the precise phase carries it on.
        running = (lambda s: cond(s) & fast_pass_accurate(s.params, whole, spec)) if fast else cond

        def step(s: LoopState):
            new, stats = em_update(x_std, sample_weight, s.params, spec, scale_floor, min_count, moments, fast)
            finite = step_finite(new, stats)
            return LoopState(new, s.n_iter + 1, _largest_change(new, s.params), finite)

        # The precise phase that polishes converged fits usually takes one or
        # two steps: it gets one per trip, so it never computes masked ones.
        steps = steps_per_trip() if fast else 1

        def body(s: LoopState):
            # A further step is taken only by the fits that the one-step loop
            # would still be running at that point, so every fit's iterations
            # and result are the same; the loop's own cost is paid once a trip.
            s = step(s)
            for _ in range(steps - 1):
                s = lax.cond(running(s), step, lambda s: s, s)
            return s

        return lax.while_loop(running, body, s)

    if not two_passes(state.params, moments):
        return loop(state, True)
    if phases in ("all", "fast"):
        state = loop(state, True)
    if phases == "all" and polish_phase(x_std, state.params, moments):
        state = restart_converged(state, tol)
    if phases in ("all", "precise"):
        state = loop(state, False)
    return state


def restart_converged(state: LoopState, tol) -> LoopState:
    """Mark converged fits as running again (for the precise phase)."""
    return state._replace(change=jnp.where(state.change < tol, jnp.inf, state.change).astype(state.change.dtype))


def finish(x_std, sample_weight, state: LoopState, tol, scale_floor, std: Standardiser, spec):
    """Status, log-likelihood of the final parameters and the map back to user scale."""
    # Only the counts (for the empty-component flag) and the log-likelihood.
    final_pass = functools.partial(sufficient_stats, params=state.params, second_moments=False, first_moments=False)
    if isinstance(x_std, ChunkedData):
        final = x_std.reduce(lambda xs, ws, _: final_pass(xs, sample_weight=ws))
    else:
        final = final_pass(x_std, sample_weight=sample_weight)
    params = state.params
    finite = state.finite & _all_finite(params) & jnp.isfinite(final.loglik)
    if sample_weight is not None:
        # Negative weights can only arrive traced (the eager boundary rejects
        # them); the "fit" is then no likelihood fit at all, so flag it.
        finite = finite & jnp.all(sample_weight >= 0)
    finite = finite & fixed_weights_valid(params.weights, spec)
    any_free = [not (a and b and c) for a, b, c in
                zip(spec.fixed_weights, spec.fixed_means, spec.fixed_scales)]
    empty = jnp.any(jnp.asarray(any_free) & (final.count <= std.min_count))
    eps = jnp.finfo(params.scales.dtype).eps
    on_floor = jnp.any(~jnp.asarray(spec.fixed_scales) & (params.scales <= scale_floor * (1 + 16 * eps)))
    status = jnp.where(
        ~finite, Status.NONFINITE,
        jnp.where(empty | on_floor, Status.DEGENERATE,
                  jnp.where(state.change < tol, Status.CONVERGED, Status.MAX_ITER)))
    status = status.astype(jnp.int32)
    return FitResult(
        params=std.params_out(params),
        loglik=std.loglik_out(final.loglik),
        n_iter=state.n_iter,
        status=status,
        converged=status == Status.CONVERGED,
    )


def fixed_weights_valid(weights: Array, spec: ModelSpec) -> Array:
    """Whether weights held fixed are a valid part of a mixture: non-negative,
    summing to at most 1 (exactly 1, to rounding, when all are fixed).

    The eager boundary rejects such ``init`` weights; traced ones (a user's
    ``jit`` around ``fit``) cannot raise, and a fit from fixed weights summing to
    1.2 came back CONVERGED with a "log-likelihood" above the true maximum
    (issue 21 #5): it is reported NONFINITE (invalid traced input) instead.
    """
    if not any(spec.fixed_weights):
        return jnp.asarray(True)
    fixed = jnp.asarray(spec.fixed_weights)
    eps = jnp.finfo(weights.dtype).eps
    slack = 16 * eps * weights.shape[-1]
    mass = over_components(jnp.add, jnp.where(fixed, weights, 0.0))
    ok = over_components(jnp.logical_and, ~fixed | (weights >= 0)) & (mass <= 1 + slack)
    if all(spec.fixed_weights):
        ok = ok & (mass >= 1 - slack)
    return ok


def fit_one(x, sample_weight, init, tol, max_iter, scale_floor, spec: ModelSpec) -> FitResult:
    """Fit one dataset ``x`` of shape ``(n,)`` from ``init`` (fields ``(K,)``)."""
    std = Standardiser.from_data(x, sample_weight)
    start = LoopState(std.params_in(init), jnp.zeros((), jnp.int32),
                      jnp.asarray(jnp.inf, x.dtype), jnp.asarray(True))
    x_std = chunked(x, sample_weight, std.centre, std.spread)
    if x_std is None:
        x_std = std.data(x)
        moments = data_moments(x_std, sample_weight)
    else:  # one very large dataset (see _chunks.py)
        moments = x_std.moments()
    state = run_em(x_std, sample_weight, start, tol, max_iter, scale_floor, std.min_count, spec, moments)
    return finish(x_std, sample_weight, state, tol, scale_floor, std, spec)


# Fits run in blocks of about this many bytes of data (rows x n x itemsize): each
# block's data and the one data-sized intermediate of its E-pass (the tanh the
# sums share) stay in a core's L2 cache for all of its iterations, and each
# block's loop stops with its own slowest fit rather than the whole batch's.
# Measured on a 2-core Xeon (2 MiB L2 per core), B = 10k x n = 1000, interleaved
# runs: 1 MiB blocks run 1.09x faster than 2 MiB (float32 and float64), and
# float32 1.3x faster than 1/4 MiB, where the per-iteration fixed costs take over.
BLOCK_BYTES = 2 ** 20


def block_rows(n: int, size: int, dtype) -> int:
    """Fits per block for datasets of ``n`` points of ``dtype`` in a batch of ``size`` fits.

    On CPU a cache-sized block, and at least two rows: XLA:CPU splits a block's
    elementwise work across threads by rows, and a one-row block runs on one
    thread about six times slower.  On accelerators the whole batch (they need
    all the parallelism they can get, and have no cache to fit).
    """
    if jax.default_backend() != "cpu":
        return max(1, size)
    fit_in_cache = BLOCK_BYTES // max(n * jnp.dtype(dtype).itemsize, 1)
    return max(1, min(size, max(2, fit_in_cache)))


def map_in_blocks(one, args, core_ndims, rows: Optional[int] = None):
    """``one`` over the broadcast batch of ``args``, a block of fits at a time.

    Arguments whose batch shape is the full one are cut into consecutive blocks
    of ``rows`` fits (``lax.dynamic_slice``: no padded copy of the data); those
    with no batch axes are shared.  The last block is shifted back to end at the
    last fit, so a few fits are computed twice with identical results.  Other
    broadcasting patterns fall back to one ``vmap`` over the whole batch.
    """
    shapes = [batch_shape_of(a, c) if a is not None else () for a, c in zip(args, core_ndims)]
    full = tuple(jnp.broadcast_shapes(*shapes))
    size = math.prod(full)
    n = jnp.shape(args[0])[-1]  # the data come first
    rows = block_rows(n, size, args[0].dtype) if rows is None else min(rows, size)
    if rows >= size or any(sh not in (full, ()) for sh in shapes):
        mapped, margs = broadcast_vmap(one, args, core_ndims)
        return mapped(*margs)
    batched = [a is not None and sh == full for a, sh in zip(args, shapes)]
    flat = [jax.tree_util.tree_map(lambda l, c=c: l.reshape((size,) + l.shape[l.ndim - c:]), a) if b else a
            for a, b, c in zip(args, batched, core_ndims)]
    in_axes = tuple(0 if b else None for b in batched)
    block_fn = jax.vmap(one, in_axes=in_axes)
    take = lambda a, start: jax.tree_util.tree_map(lambda l: lax.dynamic_slice_in_dim(l, start, rows), a)
    out_shape = jax.eval_shape(block_fn, *[take(a, 0) if b else a for a, b in zip(flat, batched)])
    out = jax.tree_util.tree_map(lambda o: jnp.zeros((size,) + o.shape[1:], o.dtype), out_shape)
    n_blocks = -(-size // rows)

    def body(i, out):
        start = jnp.minimum(i * rows, size - rows)
        res = block_fn(*[take(a, start) if b else a for a, b in zip(flat, batched)])
        return jax.tree_util.tree_map(lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, 0), out, res)

    out = lax.fori_loop(0, n_blocks, body, out)
    return jax.tree_util.tree_map(lambda o: o.reshape(full + o.shape[1:]), out)


@jit(static_argnames=("spec",))
def fit_batched(x, sample_weight, init: MixtureParams, tol, max_iter, scale_floor, spec: ModelSpec) -> FitResult:
    """``fit_one`` over the broadcast batch shape of ``x``, ``sample_weight`` and ``init``.

    ``tol``, ``max_iter`` and ``scale_floor`` are traced scalars: changing them
    does not recompile.  Large batches run in cache-sized blocks of fits
    (:func:`map_in_blocks`).
    """
    one = functools.partial(fit_one, tol=tol, max_iter=max_iter, scale_floor=scale_floor, spec=spec)
    return map_in_blocks(lambda x_, w_, p_: one(x_, w_, p_), (x, sample_weight, init), (1, 1, 1))
