"""SQUAREM acceleration of the EM loop (Varadhan & Roland, 2008, scheme "SqS3").

Plain EM converges linearly, and slowly when the components overlap.  SQUAREM
takes two EM steps ``p1 = F(p0)``, ``p2 = F(p1)`` and extrapolates along them::

    r = theta(p1) - theta(p0),   v = theta(p2) - theta(p1) - r
    alpha = clip(sqrt(|r|^2 / |v|^2), 1, step_max)            # SqS3 step length
    p' = theta^-1(theta(p0) + 2 alpha r + alpha^2 v),  p_new = F(p')

in the family's coordinates ``theta`` (univariate: the weights themselves, the
step keeps their sum; the means; log scales, so no extrapolated scale is
negative; see :meth:`jaxgmm._univariate.Univariate.to_free`).  A step that
leaves the parameter space (a free weight not positive) is refused on the spot
and the cycle ends with a plain EM step instead.  ``alpha = 1`` is exactly two
EM steps.  ``step_max`` starts at 1 and grows four-fold each time the step
reaches it and is accepted, as in the SQUAREM reference implementation; a
refused step caps the next ones at its own length over ``_STEP_SHRINK``.
Against R's ``SQUAREM`` package on the heavy-tailed case of
``bench/squarem_vs_r.py`` (whose acceptance is not monotone: it takes steps
that lower the log-likelihood by up to one unit) these two choices took the
E-steps from 3.3x R's to about 1.2x.

Monotonicity safeguard: ``p_new`` is accepted only if its log-likelihood is at
least that of ``p1`` and it is not degenerate where ``p1`` is not (a free scale
on the floor or an emptied component: with free scales the likelihood is
unbounded there, and extrapolation must not jump into spikes that plain EM does
not reach); otherwise the cycle falls back to plain EM (the next cycle
restarts from ``p1``, whose E-pass is kept, so the fallback costs no extra pass).
The log-likelihood of the accepted state therefore never decreases, and a fit
never ends below where plain EM's step would have taken it.  Where the likelihood
has several local maxima, a long step can carry a fit into another one than
plain EM from the same start would reach, usually higher, not always (on
bench/squarem_vs_r.py's case one fit in a thousand ends on the boundary, a
weight emptied, about one unit of log-likelihood below plain EM's interior
maximum; R's SQUAREM ends that fit there too).

Counting and convergence (same rule as plain EM): ``n_iter`` counts **E-steps**
(passes over the data), three per cycle.  A fit stops as soon as one plain EM
step ``p -> F(p)`` changes no parameter by ``tol`` or more (in standardised
units), and returns ``F(p)``, exactly as the plain loop does; it also stops when
``n_iter`` reaches ``max_iter`` (never exceeded; when a single E-step of budget
is left, it is spent on a plain EM step, so every returned point is either
checked or a plain EM step from a checked one) or a value turns non-finite.
SQUAREM accelerates the loop's main phase; where a precise phase follows (two
components; :meth:`jaxgmm._univariate.Univariate.phases`), it is plain EM, as
after plain EM's fast phase (usually one or two E-steps, counted).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._params import Array
from ._progress import Progress, stopped

# Step-length growth factor (the reference implementation's ``mstep``).
_STEP_GROWTH = 4.0
# After a refused step the cap is its length over this.  A design constant, as
# _STEP_GROWTH is: bench/squarem_vs_r.py measures E-steps against R's SQUAREM,
# and larger factors (the reference's 4 among them) cost more E-steps there, as
# every later step stays short until accepted steps regrow the cap; exactly 1
# could repeat the same refused step indefinitely.
_STEP_SHRINK = 1.25


class SquaremState(NamedTuple):
    """Carry of a SQUAREM fit (standardised coordinates)."""

    progress: Progress  # params: candidate for the next cycle's start; the result once done
    backup: object  # p1 of the last cycle: the monotone fallback
    backup_stats: object  # its E-pass (with log-likelihood)
    alpha: Array  # shape=(), step length of the last extrapolation
    step_max: Array  # shape=()
    fresh: Array  # shape=(), bool: no cycle yet, so nothing to compare with


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


class Squarem(NamedTuple):
    """SQUAREM cycles on the family's pass ``pass_`` (the stepper protocol of
    ``jaxgmm/_steppers.py``)."""

    pass_: str
    e_steps_per_step = 3  # a cycle's passes over the data (work accounting)

    @staticmethod
    def progress(state: SquaremState) -> Progress:
        return state.progress

    def init(self, family, progress: Progress, ctl) -> SquaremState:
        one = jnp.ones((), progress.change.dtype)
        return SquaremState(progress, progress.params, family.no_stats(progress.params), one, one,
                            jnp.asarray(True))

    def step(self, family, problem, s: SquaremState, ctl) -> SquaremState:
        """One cycle: the safeguard's check of the last extrapolated point, two EM
        steps, the extrapolation and its stabilising EM step; stops (with the
        point the stopping rule was checked at) inside the cycle where a rule holds."""
        e = functools.partial(family.stats, problem, pass_=self.pass_, ctl=ctl)
        m = lambda stats, p: family.m_step(problem, stats, p, ctl)
        change = family.change
        finite = family.finite
        one = jnp.ones((), s.alpha.dtype)
        pr = s.progress
        # Safeguard: keep last cycle's extrapolated point only if it is no worse than
        # its p1 (backup); otherwise restart from p1 with its stored E-pass.
        stats_new = e(pr.params, loglik=True)
        first = s.fresh
        # An extrapolated point is also refused when it lands on a degenerate
        # solution (a free scale on the floor or a component emptied) that the
        # fallback is not on: with free scales the likelihood is unbounded there,
        # so "higher" would pull fits into spikes plain EM does not reach.
        went_degenerate = family.degenerate(problem, pr.params, stats_new, ctl) & ~family.degenerate(
            problem, s.backup, s.backup_stats, ctl)
        accept = first | (finite(pr.params) & (stats_new.loglik >= s.backup_stats.loglik) & ~went_degenerate)
        p0 = _select(accept, pr.params, s.backup)
        stats0 = _select(accept, stats_new, s.backup_stats)
        # Step length: the cap grows when a step that reached it is accepted (as in
        # the reference implementation); a refused step caps the next ones below
        # its own length, whether or not it had reached the cap (the reference
        # shrinks only a cap the step reached, so a too-long step under a high cap
        # is refused cycle after cycle, each costing a cycle of three E-steps).
        at_max = s.alpha >= s.step_max
        step_max = jnp.where(accept, jnp.where(at_max, s.step_max * _STEP_GROWTH, s.step_max),
                             jnp.maximum(one, s.alpha / _STEP_SHRINK))
        step_max = jnp.where(first, one, step_max)

        p1 = m(stats0, p0)
        change1 = change(p1, p0)
        n1 = pr.n_iter + 1
        finite1 = finite(p1) & jnp.isfinite(stats0.loglik)
        change1 = jnp.where(finite1, change1, jnp.inf)
        stop1 = stopped(change1, n1, finite1, ctl)

        stats1 = e(p1, loglik=True)
        p2 = m(stats1, p1)
        change2 = change(p2, p1)
        n2 = n1 + 1
        finite2 = finite(p2) & jnp.isfinite(stats1.loglik)
        stop2 = stopped(change2, n2, finite2, ctl)

        th0, th1, th2 = family.to_free(p0), family.to_free(p1), family.to_free(p2)
        r = jax.tree_util.tree_map(lambda a, b: jnp.nan_to_num(b - a, nan=0.0, posinf=0.0, neginf=0.0), th0, th1)
        v = jax.tree_util.tree_map(lambda a, b, c: jnp.nan_to_num(b - a - c, nan=0.0, posinf=0.0, neginf=0.0),
                                   th1, th2, r)
        sr2, sv2 = family.sq_norm(r), family.sq_norm(v)
        alpha = jnp.sqrt(sr2 / sv2)
        alpha = jnp.where(jnp.isfinite(alpha), jnp.clip(alpha, one, step_max), one)
        theta = jax.tree_util.tree_map(lambda t, a, b: t + 2.0 * alpha * a + alpha * alpha * b, th0, r, v)
        # With one E-step of budget left there is no pass to check an extrapolated
        # point: spend it on a plain EM step from p2 instead.  A step that leaves
        # the parameter space is refused on the spot (its cap shrinks as for a
        # refused step) and the cycle also ends with a plain EM step from p2: no
        # pass is spent on a point that is no mixture.
        last = n2 + 1 >= ctl.max_iter
        extrapolated, inside = family.from_free(theta, p0)
        outside = ~inside & ~last
        p_ext = _select(last | outside, p2, extrapolated)
        step_max = jnp.where(outside, jnp.maximum(one, alpha / _STEP_SHRINK), step_max)
        alpha = jnp.where(outside, one, alpha)
        # The stabilising EM step; its point's log-likelihood is not compared
        # (the next cycle's first pass evaluates the step's result).
        stats_ext = e(p_ext)
        p_new = m(stats_ext, p_ext)
        n3 = n2 + 1
        change3 = change(p_new, p2)
        finite3 = family.step_finite(p_new, stats_ext)
        no = jnp.asarray(False)

        def state(params, n_iter, chg, fin, done, backup, backup_stats):
            return SquaremState(Progress(params, n_iter, chg, fin, done), backup, backup_stats, alpha, step_max, no)

        running = state(p_new, n3, change2, jnp.asarray(True), no, p1, stats1)
        at3 = state(p_new, n3, change3, finite3, jnp.asarray(True), p1, stats1)
        at2 = state(p2, n2, change2, finite2, jnp.asarray(True), p1, stats1)
        at1 = state(p1, n1, change1, finite1, jnp.asarray(True), p0, stats0)
        return _select(stop1, at1, _select(stop2, at2, _select(last, at3, running)))
