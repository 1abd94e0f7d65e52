"""The univariate Gaussian mixture as a *model family* of the EM engine.

A family is what the engine (``jaxgmm/_engine.py``) asks for everything that
depends on the model: how a dataset is standardised (once per fit), which E-pass
each phase of the loop uses, the M-step, the change the stopping rule measures,
the degeneracy test and the final pass.  The engine owns the loop, the stopping
rule, the phase walk and the scheduling; the steppers (``jaxgmm/_steppers.py``)
own one iteration.  A multivariate family supplies the same methods.

Passes (``pass_`` names, chosen by :meth:`Univariate.phases`):

* ``"tanh"``: for two components, one ``tanh`` per point
  (:func:`jaxgmm._em.two_component_stats`); its counts are resolved to ``eps``
  of the total weight, so where that is not accurate enough
  (:func:`fast_pass_accurate`) a fit leaves the phase;
* ``"precise"``: two components, every responsibility resolved relative to its
  size (:func:`jaxgmm._em.two_component_stats_precise`);
* ``"general"``: the fused pass for any number of components
  (:func:`jaxgmm._em.sufficient_stats`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._batching import batch_shape_of
from ._chunks import ChunkedData, chunked
from ._controls import Controls
from ._em import (DataMoments, SuffStats, data_moments, m_step_from_stats, sufficient_stats, two_component_stats,
                  two_component_stats_precise)
from ._params import Array, MixtureParams, over_components
from ._spec import ModelSpec
from ._units import Standardiser


class Summary(NamedTuple):
    """What the engine keeps of a dataset between visits: its units and moments."""

    units: Standardiser
    moments: DataMoments  # of the standardised data; per chunk (n_chunks,) for one huge dataset


class Problem(NamedTuple):
    """One fit's standardised problem, built once per fit and carried by the loop."""

    x: Any  # standardised data, shape (n,), or a ChunkedData for one huge dataset
    weight: Optional[Array]  # shape (n,) or None
    units: Standardiser
    moments: DataMoments

    @property
    def whole(self) -> DataMoments:
        """The moments of the whole dataset (summed over chunks)."""
        return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0) if a.ndim else a, self.moments)


class Phase(NamedTuple):
    """One phase of the loop: which stepper, on which pass; ``restart``: converged
    fits run again in this phase (fits that are not done always carry on)."""

    stepper: str  # "em" or "squarem"
    pass_: str
    restart: bool


@dataclasses.dataclass(frozen=True)
class Univariate:
    """The univariate family under the constraints of ``spec`` (static, hashable);
    ``reduction``: how the passes write their sums (``Tuning.reduction``)."""

    spec: ModelSpec
    reduction: Optional[str] = None
    event_ndim = 1  # a dataset is (n,)

    # -- shapes (the engine's batch bookkeeping) -------------------------------
    @staticmethod
    def batch_shape(params: MixtureParams) -> tuple:
        return batch_shape_of(params, 1)

    @staticmethod
    def flat_params(params: MixtureParams, index: Array) -> MixtureParams:
        """Fields reshaped to one batch axis and taken at ``index``."""
        return jax.tree_util.tree_map(lambda a: a.reshape((-1, a.shape[-1]))[index], params)

    # -- standardisation, once per dataset -----------------------------------
    def summarise(self, x: Array, w: Optional[Array], chunk: int) -> Summary:
        units = Standardiser.from_data(x, w, chunk)
        problem = self.problem(x, w, Summary(units, None), chunk)
        return Summary(units, problem.moments)

    def problem(self, x: Array, w: Optional[Array], summary: Summary, chunk: int) -> Problem:
        """The fit's problem; with ``summary.moments`` ``None`` they are computed."""
        units = summary.units
        big = chunked(x, w, units.centre, units.spread, chunk)
        if big is not None:  # one very large dataset (see _chunks.py)
            return Problem(big, w, units, big.moments() if summary.moments is None else summary.moments)
        x_std = units.data(x)
        moments = data_moments(x_std, w) if summary.moments is None else summary.moments
        return Problem(x_std, w, units, moments)

    def start(self, summary, init: MixtureParams) -> MixtureParams:
        """``init`` in standardised units (``summary``: a :class:`Summary` or
        :class:`Problem`, whichever holds the dataset's units)."""
        return summary.units.params_in(init)

    # -- the phase schedule ---------------------------------------------------
    def phases(self, dtype, accelerate: Optional[str]) -> tuple:
        """The loop's phases for this model (static).

        For two components a fast phase on the ``tanh`` pass, then a precise
        phase that carries on the fits that left the fast one inaccurate and, in
        floats narrower than 64 bits, restarts the converged ones too: there the
        ``tanh`` pass loses a small component (3 points of 1e6: count resolved
        to ``eps * W = 0.1``) and a tight one far from the centre, so the result
        is the precise pass's fixed point; where the fast one is already close
        (the usual case) this costs one or a few iterations
        (tests/test_robustness.py::test_float32_small_component_of_large_dataset).
        With SQUAREM the fast phase is accelerated; in float32 with free scales
        its cycles use the general pass, whose log-likelihood (for the
        safeguard) and second moments keep narrow components.
        """
        main = accelerate or "em"
        if self.spec.n_components != 2:
            return (Phase(main, "general", False),)
        narrow = jnp.finfo(dtype).bits < 64
        fast = "general" if (main == "squarem" and narrow and self.spec.scales_free) else "tanh"
        return (Phase(main, fast, False), Phase("em", "precise", narrow))

    # -- one iteration's pieces -----------------------------------------------
    def stats(self, problem: Problem, params: MixtureParams, pass_: str, ctl: Controls, loglik: bool = False):
        """Sufficient statistics of ``pass_`` at ``params`` (``loglik``: static;
        ``ctl`` is not needed by these passes)."""
        if isinstance(problem.x, ChunkedData):  # sum over chunks
            return problem.x.reduce(
                lambda xs, ws, mom: self._stats(xs, ws, mom, params, pass_, loglik), problem.moments)
        return self._stats(problem.x, problem.weight, problem.moments, params, pass_, loglik)

    def _stats(self, x, w, moments, params, pass_, loglik):
        second, how = self.spec.scales_free, self.reduction
        if pass_ == "tanh":
            return two_component_stats(x, params, w, moments, second_moments=second, loglik=loglik, reduction=how)
        if pass_ == "precise":
            assert not loglik, "the precise pass does not compute the log-likelihood"
            return two_component_stats_precise(x, params, w, second_moments=second, reduction=how)
        return sufficient_stats(x, params, w, second_moments=second, loglik=loglik, reduction=how)

    @staticmethod
    def no_stats(params: MixtureParams) -> SuffStats:
        """Statistics of no pass (all ``-inf``): a stepper's state before its first pass."""
        full = jnp.full(params.means.shape, -jnp.inf, params.means.dtype)
        return SuffStats(full, full, full, jnp.asarray(-jnp.inf, params.means.dtype))

    def m_step(self, problem: Problem, stats, params: MixtureParams, ctl: Controls) -> MixtureParams:
        return m_step_from_stats(stats, params, self.spec, ctl.scale_floor, problem.units.min_count)

    @staticmethod
    def change(new: MixtureParams, old: MixtureParams) -> Array:
        """The stopping rule's measure: the largest change of any weight, mean or
        scale (in standardised units)."""
        return over_components(jnp.maximum, jnp.abs(jnp.concatenate(new, axis=-1) - jnp.concatenate(old, axis=-1)))

    @staticmethod
    def finite(params: MixtureParams) -> Array:
        return over_components(jnp.logical_and, jnp.isfinite(jnp.concatenate(params, axis=-1)))

    def step_finite(self, new: MixtureParams, stats) -> Array:
        """Whether an EM step produced finite parameters (and log-likelihood, when computed)."""
        finite = self.finite(new) & over_components(jnp.logical_and, jnp.isfinite(stats.count))
        return finite if stats.loglik is None else finite & jnp.isfinite(stats.loglik)

    def accurate(self, problem: Problem, params: MixtureParams, pass_: str) -> Array:
        """Whether ``pass_`` is accurate enough at ``params`` to stay in its phase."""
        if pass_ != "tanh":
            return jnp.asarray(True)
        return fast_pass_accurate(params, problem.whole, self.spec)

    def degenerate(self, problem: Problem, params: MixtureParams, stats, ctl: Controls) -> Array:
        """A free scale on the floor, or a component that could move holding at most
        ``min_count`` of the weight in ``stats`` (the E-pass at ``params``): the
        status rule, and SQUAREM's safeguard."""
        spec = self.spec
        count = stats.count
        eps = jnp.finfo(params.scales.dtype).eps
        on_floor = jnp.any(~jnp.asarray(spec.fixed_scales) & (params.scales <= ctl.scale_floor * (1 + 16 * eps)))
        any_free = jnp.asarray([not (a and b and c) for a, b, c in
                                zip(spec.fixed_weights, spec.fixed_means, spec.fixed_scales)])
        return on_floor | jnp.any(any_free & (count <= problem.units.min_count))

    # -- SQUAREM's extrapolation coordinates -----------------------------------
    @staticmethod
    def to_free(p: MixtureParams) -> MixtureParams:
        """Extrapolation coordinates: weights, means, log scales.

        The weights stay as they are: EM's weight update is an average of
        responsibilities, close to linear in the weights, and an affine
        combination of points on the simplex keeps their sum.  In log weights
        the same steps bend (the weight of a small component is stretched by
        ``1 / w``) and SqS3's step length, a ratio of norms, is then set mostly
        by the weights; on bench/squarem_vs_r.py's case log weights cost more
        E-steps, through refused extrapolations.  Log scales keep every
        extrapolated scale positive.
        """
        return MixtureParams(p.weights, p.means, jnp.log(p.scales))

    @staticmethod
    def sq_norm(theta: MixtureParams) -> Array:
        """Squared length of a step in extrapolation coordinates."""
        return over_components(jnp.add, jnp.square(jnp.concatenate(theta, axis=-1)))

    def from_free(self, theta: MixtureParams, ref: MixtureParams):
        """Back to parameters, and whether they are a mixture (every free weight
        positive); fixed weights keep their values, the free ones share the rest."""
        fixed_w = jnp.asarray(self.spec.fixed_weights)
        if all(self.spec.fixed_weights):
            return MixtureParams(ref.weights, theta.means, jnp.exp(theta.scales)), jnp.asarray(True)
        free_mass = 1.0 - over_components(jnp.add, jnp.where(fixed_w, ref.weights, 0.0))
        raw = jnp.where(fixed_w, 0.0, theta.weights)
        inside = over_components(jnp.logical_and, fixed_w | (raw > 0))
        # The step keeps the free weights' sum up to rounding; rescaling removes that.
        weights = jnp.where(fixed_w, ref.weights, free_mass * raw / over_components(jnp.add, raw))
        return MixtureParams(weights, theta.means, jnp.exp(theta.scales)), inside

    # -- the end of a fit --------------------------------------------------------
    def finish(self, problem: Problem, params: MixtureParams, finite: Array, ctl: Controls):
        """``(params, loglik, finite, degenerate)`` on the user's scale, from one
        exact E-pass at the final ``params`` (counts and log-likelihood only)."""
        final_pass = functools.partial(sufficient_stats, params=params, second_moments=False, first_moments=False,
                                       reduction=self.reduction)
        if isinstance(problem.x, ChunkedData):
            final = problem.x.reduce(lambda xs, ws, _: final_pass(xs, sample_weight=ws))
        else:
            final = final_pass(problem.x, sample_weight=problem.weight)
        finite = final_finite(finite, self.finite(params), final.loglik, problem.weight, params.weights, self.spec)
        degenerate = self.degenerate(problem, params, final, ctl)
        units = problem.units
        return units.params_out(params), units.loglik_out(final.loglik), finite, degenerate


def final_finite(finite, params_finite, loglik, weight, weights, spec) -> Array:
    """Whether a fit ends usable (either family): every step and the final
    parameters and log-likelihood finite, no negative observation weight, and
    fixed weights a valid part of a mixture."""
    finite = finite & params_finite & jnp.isfinite(loglik)
    if weight is not None:
        # Negative weights can only arrive traced (the eager boundary rejects
        # them); the "fit" is then no likelihood fit at all, so flag it.
        finite = finite & jnp.all(weight >= 0)
    return finite & fixed_weights_valid(weights, spec)


def fast_pass_accurate(params: MixtureParams, moments: Optional[DataMoments], spec: ModelSpec) -> Array:
    """Whether the ``tanh`` pass resolves every free mean's first and every free
    scale's second moment to a relative ``sqrt(eps)`` at ``params`` (a traced
    bool).  ``moments`` are those of the whole dataset (summed over chunks).

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
    leaves the fast phase for the precise pass for good.
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
