"""SQUAREM acceleration of the EM loop (Varadhan & Roland, 2008, scheme "SqS3").

Plain EM converges linearly, and slowly when the components overlap.  SQUAREM
takes two EM steps ``p1 = F(p0)``, ``p2 = F(p1)`` and extrapolates along them::

    r = theta(p1) - theta(p0),   v = theta(p2) - theta(p1) - r
    alpha = clip(sqrt(|r|^2 / |v|^2), 1, step_max)            # SqS3 step length
    p' = theta^-1(theta(p0) + 2 alpha r + alpha^2 v),  p_new = F(p')

in unconstrained coordinates ``theta`` (log weights, normalised back over the free
weights; means; log scales), so no extrapolated point leaves the parameter space.
``alpha = 1`` is exactly two EM steps.  ``step_max`` starts at 1 and grows four-fold
each time the step reaches it and is accepted (shrinks four-fold when rejected),
as in the SQUAREM reference implementation.

Monotonicity safeguard: ``p_new`` is accepted only if its log-likelihood is at
least that of ``p1`` and it is not degenerate where ``p1`` is not (a free scale
on the floor or an emptied component: with free scales the likelihood is
unbounded there, and extrapolation must not jump into spikes that plain EM does
not reach); otherwise the cycle falls back to plain EM (the next cycle
restarts from ``p1``, whose E-pass is kept, so the fallback costs no extra pass).
The log-likelihood of the accepted state therefore never decreases, and a fit
never ends below where plain EM's step would have taken it.  Where the likelihood
has several local maxima, a long step can carry a fit into another (higher)
one than plain EM from the same start would reach.

Counting and convergence (same rule as plain EM): ``n_iter`` counts **E-steps**
(passes over the data), three per cycle.  A fit stops as soon as one plain EM
step ``p -> F(p)`` changes no parameter by ``tol`` or more (in standardised
units), and returns ``F(p)``, exactly as the plain loop does; it also stops when
``n_iter`` reaches ``max_iter`` (never exceeded; when a single E-step of budget
is left, it is spent on a plain EM step, so every returned point is either
checked or a plain EM step from a checked one) or a value turns non-finite.
Where the plain loop ends with a precise phase (two components in float32, see
:func:`jaxgmm._loop.polish_phase`), so does this one: plain EM steps on the
precise pass until they converge (usually one or two E-steps, counted).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._em import DataMoments, ModelSpec, SuffStats, data_moments, m_step_from_stats, sufficient_stats, \
    two_component_stats
from ._loop import (LoopState, Standardiser, _all_finite, _largest_change, fast_pass_accurate, finish,
                    map_in_blocks, polish_phase, restart_converged, run_em, step_finite, two_passes)
from ._params import Array, FitResult, MixtureParams, over_components
from ._xla import jit

# Step-length growth factor (the reference implementation's ``mstep``).
_STEP_GROWTH = 4.0


class SquaremState(NamedTuple):
    """Carry of the SQUAREM loop for one fit (standardised coordinates)."""

    params: MixtureParams  # candidate for the next cycle's start; the result once done
    backup: MixtureParams  # p1 of the last cycle: the monotone fallback
    backup_stats: SuffStats  # its E-pass (with log-likelihood)
    alpha: Array  # shape=(), step length of the last extrapolation
    step_max: Array  # shape=()
    n_iter: Array  # shape=(), int32: E-steps so far
    change: Array  # shape=(), largest change of the last plain EM step
    finite: Array  # shape=(), bool
    done: Array  # shape=(), bool


def e_pass(x_std, sample_weight, params, spec: ModelSpec, moments: DataMoments,
           loglik: bool = True) -> SuffStats:
    """E-pass of a cycle, with the log-likelihood (static ``loglik``) where the
    safeguard needs it."""
    # The one-tanh pass for two components, except in float32 with free scales:
    # its second moments lose narrow and small components there (see
    # ``_loop.fast_pass_accurate``), and the exact pass runs instead.  Its counts
    # are resolved to eps of the total weight, so in float32 the fit ends with
    # the precise phase, as the plain loop does (fit_one_squarem).
    if uses_tanh_pass(x_std, params, spec):
        return two_component_stats(x_std, params, sample_weight, moments,
                                   second_moments=spec.scales_free, loglik=loglik)
    return sufficient_stats(x_std, params, sample_weight, second_moments=spec.scales_free, loglik=loglik)


def uses_tanh_pass(x_std, params: MixtureParams, spec: ModelSpec) -> bool:
    """Whether the cycles' E-pass is the one-``tanh`` pass (static; see :func:`e_pass`)."""
    return params.means.shape[-1] == 2 and (jnp.finfo(x_std.dtype).bits >= 64 or not spec.scales_free)


def to_free(p: MixtureParams) -> MixtureParams:
    """Unconstrained coordinates: log weights, means, log scales."""
    return MixtureParams(jnp.log(p.weights), p.means, jnp.log(p.scales))


def from_free(theta: MixtureParams, ref: MixtureParams, spec: ModelSpec) -> MixtureParams:
    """Back to parameters; fixed weights keep their values, free ones share the rest."""
    fixed_w = jnp.asarray(spec.fixed_weights)
    if all(spec.fixed_weights):
        weights = ref.weights
    else:
        free_mass = 1.0 - over_components(jnp.add, jnp.where(fixed_w, ref.weights, 0.0))
        logits = jnp.where(fixed_w, -jnp.inf, theta.weights)
        weights = jnp.where(fixed_w, ref.weights, free_mass * jax.nn.softmax(logits))
    return MixtureParams(weights, theta.means, jnp.exp(theta.scales))


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def degenerate(p: MixtureParams, stats: SuffStats, spec: ModelSpec, scale_floor, min_count) -> Array:
    """The degeneracy test of the final status (``_loop.finish``), at ``p`` with its E-pass."""
    eps = jnp.finfo(p.scales.dtype).eps
    on_floor = jnp.any(~jnp.asarray(spec.fixed_scales) & (p.scales <= scale_floor * (1 + 16 * eps)))
    any_free = jnp.asarray([not (a and b and c) for a, b, c in
                            zip(spec.fixed_weights, spec.fixed_means, spec.fixed_scales)])
    return on_floor | jnp.any(any_free & (stats.count <= min_count))


def start_state(x_std, sample_weight, params: MixtureParams, spec: ModelSpec,
                moments: DataMoments) -> SquaremState:
    """The :class:`SquaremState` of a fit about to start from ``params``."""
    stats_shape = jax.eval_shape(
        functools.partial(e_pass, x_std, sample_weight, spec=spec, moments=moments), params)
    no_stats = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, -jnp.inf, s.dtype), stats_shape)
    one = jnp.asarray(1.0, x_std.dtype)
    return SquaremState(params, params, no_stats, one, one, jnp.zeros((), jnp.int32),
                        jnp.asarray(jnp.inf, x_std.dtype), jnp.asarray(True), jnp.asarray(False))


def as_loop_state(s: SquaremState) -> LoopState:
    """The plain loop's state at the end of the cycles; a fit that left them
    unfinished (the ``tanh`` pass stopped being accurate) is marked running, so
    that the precise phase carries it on."""
    change = jnp.where(s.done, s.change, jnp.inf).astype(s.change.dtype)
    return LoopState(s.params, s.n_iter, change, s.finite)


def run_squarem(x_std, sample_weight, params: MixtureParams, tol, max_iter, scale_floor, min_count,
                spec: ModelSpec, moments: DataMoments) -> LoopState:
    """SQUAREM cycles from ``params`` until a stopping rule holds; a :class:`LoopState`."""
    start = start_state(x_std, sample_weight, params, spec, moments)
    return as_loop_state(squarem_cycles(x_std, sample_weight, start, tol, max_iter, scale_floor, min_count,
                                        spec, moments))


def squarem_cycles(x_std, sample_weight, start: SquaremState, tol, max_iter, scale_floor, min_count,
                   spec: ModelSpec, moments: DataMoments, pause_at=None) -> SquaremState:
    """SQUAREM cycles from ``start`` until a stopping rule holds.

    With ``pause_at`` (E-steps, traced) the loop also pauses after the first cycle
    that reaches it, and a later call resumes from the returned state: the
    compacting driver runs fits in such chunks (``jaxgmm/_compact.py``).  A pause
    changes nothing in the cycles themselves (``max_iter`` still decides when a
    fit stops), so chunked and unchunked runs take the same steps.
    """
    e = functools.partial(e_pass, x_std, sample_weight, spec=spec, moments=moments)
    m = functools.partial(m_step_from_stats, spec=spec, min_scale=scale_floor, min_count=min_count)
    one = jnp.asarray(1.0, x_std.dtype)

    # Cycles on the tanh pass stop (unfinished) where it stops being accurate,
    # as the plain loop's fast phase does; the precise phase carries the fit on.
    tanh = uses_tanh_pass(x_std, start.params, spec)
    accurate = (lambda p: fast_pass_accurate(p, moments, spec)) if tanh else (lambda p: True)

    def cond(s: SquaremState):
        go = ~s.done & accurate(s.params)
        return go if pause_at is None else go & (s.n_iter < pause_at)

    def body(s: SquaremState):
        # Safeguard: keep last cycle's extrapolated point only if it is no worse than
        # its p1 (backup); otherwise restart from p1 with its stored E-pass.
        stats_new = e(s.params)
        first = s.n_iter == 0
        # An extrapolated point is also refused when it lands on a degenerate
        # solution (a free scale on the floor or a component emptied) that the
        # fallback is not on: with free scales the likelihood is unbounded there,
        # so "higher" would pull fits into spikes plain EM does not reach.
        went_degenerate = degenerate(s.params, stats_new, spec, scale_floor, min_count) & ~degenerate(
            s.backup, s.backup_stats, spec, scale_floor, min_count)
        accept = first | (_all_finite(s.params) & (stats_new.loglik >= s.backup_stats.loglik) & ~went_degenerate)
        p0 = _select(accept, s.params, s.backup)
        stats0 = _select(accept, stats_new, s.backup_stats)
        at_max = s.alpha >= s.step_max
        step_max = jnp.where(at_max, jnp.where(accept, s.step_max * _STEP_GROWTH,
                                               jnp.maximum(one, s.step_max / _STEP_GROWTH)), s.step_max)
        step_max = jnp.where(first, one, step_max)

        p1 = m(stats0, p0)
        change1 = _largest_change(p1, p0)
        n1 = s.n_iter + 1
        finite1 = _all_finite(p1) & jnp.isfinite(stats0.loglik)
        stop1 = ~(change1 >= tol) | (n1 >= max_iter) | ~finite1
        change1 = jnp.where(finite1, change1, jnp.inf)

        stats1 = e(p1)
        p2 = m(stats1, p1)
        change2 = _largest_change(p2, p1)
        n2 = n1 + 1
        finite2 = _all_finite(p2) & jnp.isfinite(stats1.loglik)
        stop2 = ~(change2 >= tol) | (n2 >= max_iter) | ~finite2

        th0, th1, th2 = to_free(p0), to_free(p1), to_free(p2)
        r = jax.tree_util.tree_map(lambda a, b: jnp.nan_to_num(b - a, nan=0.0, posinf=0.0, neginf=0.0), th0, th1)
        v = jax.tree_util.tree_map(lambda a, b, c: jnp.nan_to_num(b - a - c, nan=0.0, posinf=0.0, neginf=0.0),
                                   th1, th2, r)
        sr2 = over_components(jnp.add, jnp.square(jnp.concatenate(r, axis=-1)))
        sv2 = over_components(jnp.add, jnp.square(jnp.concatenate(v, axis=-1)))
        alpha = jnp.sqrt(sr2 / sv2)
        alpha = jnp.where(jnp.isfinite(alpha), jnp.clip(alpha, one, step_max), one)
        theta = jax.tree_util.tree_map(lambda t, a, b: t + 2.0 * alpha * a + alpha * alpha * b, th0, r, v)
        # With one E-step of budget left there is no pass to check an extrapolated
        # point: spend it on a plain EM step from p2 instead.
        last = n2 + 1 >= max_iter
        p_ext = _select(last, p2, from_free(theta, p0, spec))
        # The stabilising EM step; its point's log-likelihood is not compared
        # (the next cycle's first pass evaluates the step's result).
        stats_ext = e(p_ext, loglik=False)
        p_new = m(stats_ext, p_ext)
        n3 = n2 + 1
        change3 = _largest_change(p_new, p2)
        finite3 = step_finite(p_new, stats_ext)

        running = SquaremState(p_new, p1, stats1, alpha, step_max, n3, change2, jnp.asarray(True),
                               jnp.asarray(False))
        at3 = SquaremState(p_new, p1, stats1, alpha, step_max, n3, change3, finite3, jnp.asarray(True))
        at2 = SquaremState(p2, p1, stats1, alpha, step_max, n2, change2, finite2, jnp.asarray(True))
        at1 = SquaremState(p1, p0, stats0, alpha, step_max, n1, change1, finite1, jnp.asarray(True))
        return _select(stop1, at1, _select(stop2, at2, _select(last, at3, running)))

    return lax.while_loop(cond, body, start)


def fit_one_squarem(x, sample_weight, init, tol, max_iter, scale_floor, spec: ModelSpec) -> FitResult:
    """SQUAREM fit of one dataset ``x`` of shape ``(n,)`` from ``init`` (fields ``(K,)``)."""
    std = Standardiser.from_data(x, sample_weight)
    x_std = std.data(x)
    moments = data_moments(x_std, sample_weight)
    state = run_squarem(x_std, sample_weight, std.params_in(init), tol, max_iter, scale_floor,
                        std.min_count, spec, moments)
    if two_passes(init, moments):
        # As in the plain loop: fits the tanh pass left unfinished, and where it
        # is not precise enough (float32) the converged ones too, finish with
        # plain EM on the precise pass until it converges.
        if polish_phase(x_std, init, moments):
            state = restart_converged(state, tol)
        state = run_em(x_std, sample_weight, state, tol, max_iter, scale_floor,
                       std.min_count, spec, moments, phases="precise")
    # max_iter = 0: no pass at all, the start is returned (as in the plain loop).
    none = max_iter <= 0
    state = LoopState(_select(none, std.params_in(init), state.params), jnp.where(none, 0, state.n_iter),
                      jnp.where(none, jnp.inf, state.change), state.finite | none)
    return finish(x_std, sample_weight, state, tol, scale_floor, std, spec)


@jit(static_argnames=("spec",))
def fit_batched_squarem(x, sample_weight, init: MixtureParams, tol, max_iter, scale_floor,
                        spec: ModelSpec) -> FitResult:
    """:func:`fit_one_squarem` over the broadcast batch (as ``fit_batched``)."""
    one = functools.partial(fit_one_squarem, tol=tol, max_iter=max_iter, scale_floor=scale_floor, spec=spec)
    return map_in_blocks(lambda x_, w_, p_: one(x_, w_, p_), (x, sample_weight, init), (1, 1, 1))
