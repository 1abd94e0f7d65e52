"""The ``D``-dimensional Gaussian mixture as a *model family* of the EM engine.

The same protocol as the univariate family (``jaxgmm/_univariate.py``): the
engine (``jaxgmm/_engine.py``) owns the loop, the stopping rule, the phases and
the scheduling; this module supplies the model's pieces, built from the pure
functions of ``jaxgmm/_mv_em.py`` (standardiser, E-pass to centred statistics,
constrained M-step with the covariance floor, status tests).

* Data: one dataset is ``(n, D)`` (the engine's ``event_ndim = 2``); a fit's
  problem holds it standardised, in the E-pass's dimension-major layout
  ``(D, n)``, transposed once per fit.
* One phase: plain EM or SQUAREM on the one E-pass (``"general"``).
* The covariance floor is ``Controls.scale_floor ** 2`` in standardised units:
  every conditional standard deviation of a component stays at least
  ``scale_floor`` times the data's own standard deviation of that coordinate,
  the univariate floor's meaning.
* Degenerate: a component not entirely fixed holds at most ``min_count`` of the
  weight, or the M-step at the final parameters lifts an estimated covariance
  to the floor (exactly the test the M-step applies, not a re-derived one).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from . import _mv_em as mv
from ._controls import Controls
from ._mv_params import MultivariateParams, MvSpec, all_set
from ._params import Array, over_components
from ._univariate import Phase, final_finite

# Axes after the batch axes of each field of MultivariateParams.
PARAM_EVENT_NDIMS = MultivariateParams(1, 2, 3)


class MvSummary(NamedTuple):
    """What the engine keeps of a dataset between visits: its units."""

    units: mv.MvStandardiser


class MvProblem(NamedTuple):
    """One fit's standardised problem, built once per fit and carried by the loop."""

    xt: Array  # standardised data, dimension-major, shape (D, n)
    weight: Optional[Array]  # shape (n,) or None
    units: mv.MvStandardiser


def _cov_floor(ctl: Controls) -> Array:
    return jnp.square(ctl.scale_floor)


@dataclasses.dataclass(frozen=True)
class Multivariate:
    """The multivariate family under the constraints of ``spec`` (static, hashable)."""

    spec: MvSpec
    event_ndim = 2  # a dataset is (n, D)

    # -- shapes (the engine's batch bookkeeping) -------------------------------
    @staticmethod
    def batch_shape(params: MultivariateParams) -> tuple:
        return tuple(jnp.broadcast_shapes(*(f.shape[:f.ndim - e] for f, e in zip(params, PARAM_EVENT_NDIMS))))

    @staticmethod
    def flat_params(params: MultivariateParams, index: Array) -> MultivariateParams:
        """Fields reshaped to one batch axis and taken at ``index``."""
        return MultivariateParams(*(f.reshape((-1,) + f.shape[f.ndim - e:])[index]
                                    for f, e in zip(params, PARAM_EVENT_NDIMS)))

    # -- standardisation, once per dataset -----------------------------------
    def summarise(self, x: Array, w: Optional[Array], chunk: int) -> MvSummary:
        del chunk  # one (n, D) dataset is never reduced in chunks
        return MvSummary(mv.standardiser(x, w, self.spec.covariance_type))

    def problem(self, x: Array, w: Optional[Array], summary: MvSummary, chunk: int) -> MvProblem:
        del chunk
        return MvProblem(summary.units.data_t(x), w, summary.units)

    def start(self, summary, init: MultivariateParams) -> MultivariateParams:
        """``init`` in standardised units (``summary``: an :class:`MvSummary` or
        :class:`MvProblem`)."""
        return summary.units.params_in(init)

    # -- the phase schedule ---------------------------------------------------
    def phases(self, dtype, accelerate: Optional[str]) -> tuple:
        """One phase on the one E-pass: the pass resolves every component's
        statistics about its own mean (``jaxgmm/_mv_em.py``), so there is no
        fast pass to leave."""
        del dtype
        return (Phase(accelerate or "em", "general", False),)

    # -- one iteration's pieces -----------------------------------------------
    def stats(self, problem: MvProblem, params: MultivariateParams, pass_: str, ctl: Controls,
              loglik: bool = False) -> mv.MvStats:
        del pass_
        return mv.mv_stats(problem.xt, params, problem.weight, covariance_type=self.spec.covariance_type,
                           floor=_cov_floor(ctl), second_moments=self.spec.covariances_free, loglik=loglik)

    @staticmethod
    def no_stats(params: MultivariateParams) -> mv.MvStats:
        """Statistics of no pass (all ``-inf``): a stepper's state before its first pass."""
        full = lambda a: jnp.full(a.shape, -jnp.inf, a.dtype)
        return mv.MvStats(full(params.weights), full(params.means), full(params.covariances),
                          jnp.asarray(-jnp.inf, params.means.dtype))

    def m_step(self, problem: MvProblem, stats: mv.MvStats, params: MultivariateParams,
               ctl: Controls) -> MultivariateParams:
        return mv.mv_m_step_from_stats(stats, params, self.spec, _cov_floor(ctl), problem.units.min_count)[0]

    @staticmethod
    def change(new: MultivariateParams, old: MultivariateParams) -> Array:
        """The stopping rule's measure: the largest change of any weight, mean
        coordinate or covariance entry (standardised units:
        :func:`jaxgmm._mv_em.largest_change`)."""
        return mv.largest_change(new, old)

    @staticmethod
    def finite(params: MultivariateParams) -> Array:
        return mv.all_finite(params)

    def step_finite(self, new: MultivariateParams, stats: mv.MvStats) -> Array:
        finite = self.finite(new) & jnp.all(jnp.isfinite(stats.count))
        return finite if stats.loglik is None else finite & jnp.isfinite(stats.loglik)

    def accurate(self, problem: MvProblem, params: MultivariateParams, pass_: str) -> Array:
        return jnp.asarray(True)

    def degenerate(self, problem: MvProblem, params: MultivariateParams, stats: mv.MvStats,
                   ctl: Controls) -> Array:
        """A component that could move holding at most ``min_count`` of the weight,
        or an estimated covariance that the M-step from ``stats`` (the E-pass at
        ``params``) lifts to the floor."""
        min_count = problem.units.min_count
        floored = jnp.zeros(stats.count.shape, bool)
        if self.spec.covariances_free:
            _, floored = mv.mv_m_step_from_stats(stats, params, self.spec, _cov_floor(ctl), min_count)
        return mv.degenerate(stats.count, floored, self.spec, min_count)

    # -- SQUAREM's extrapolation coordinates -----------------------------------
    @staticmethod
    def to_free(p: MultivariateParams) -> MultivariateParams:
        """Extrapolation coordinates: weights, means, and each covariance's
        Cholesky factor with the log of its diagonal (the log-Cholesky
        parametrisation: any value maps back to a positive definite matrix, as
        log scales keep a univariate scale positive; diagonal and spherical
        matrices become log standard deviations, a tied matrix stays tied)."""
        factor, _ = mv.cholesky(p.covariances, 0.0)
        diag = jnp.diagonal(factor, axis1=-2, axis2=-1)
        eye = jnp.eye(factor.shape[-1], dtype=bool)
        return MultivariateParams(p.weights, p.means, jnp.where(eye, jnp.log(diag)[..., None, :], factor))

    def from_free(self, theta: MultivariateParams, ref: MultivariateParams):
        """Back to parameters, and whether they are a mixture (every free weight
        positive); fixed entries keep ``ref``'s values exactly."""
        spec = self.spec
        eye = jnp.eye(theta.covariances.shape[-1], dtype=bool)
        factor = jnp.where(eye, jnp.exp(theta.covariances), jnp.tril(theta.covariances))
        cov = mv._symmetric(jnp.einsum("...ij,...kj->...ik", factor, factor))
        fixed_c = jnp.asarray(spec.fixed_covariances)[:, None, None]
        cov = jnp.where(fixed_c, ref.covariances, cov)
        fixed_w = jnp.asarray(spec.fixed_weights)
        if all_set(spec.fixed_weights):
            return MultivariateParams(ref.weights, theta.means, cov), jnp.asarray(True)
        free_mass = 1.0 - over_components(jnp.add, jnp.where(fixed_w, ref.weights, 0.0))
        raw = jnp.where(fixed_w, 0.0, theta.weights)
        inside = over_components(jnp.logical_and, fixed_w | (raw > 0))
        weights = jnp.where(fixed_w, ref.weights, free_mass * raw / over_components(jnp.add, raw))
        return MultivariateParams(weights, theta.means, cov), inside

    @staticmethod
    def sq_norm(theta: MultivariateParams) -> Array:
        """Squared length of a step in extrapolation coordinates."""
        return functools.reduce(jnp.add, [jnp.sum(jnp.square(f)) for f in theta])

    # -- the end of a fit --------------------------------------------------------
    def finish(self, problem: MvProblem, params: MultivariateParams, finite: Array, ctl: Controls):
        """``(params, loglik, finite, degenerate)`` on the user's scale, from one
        exact E-pass at the final ``params``."""
        final = self.stats(problem, params, "general", ctl, loglik=True)
        finite = final_finite(finite, self.finite(params), final.loglik, problem.weight, params.weights, self.spec)
        degenerate = self.degenerate(problem, params, final, ctl)
        units = problem.units
        return units.params_out(params), units.loglik_out(final.loglik), finite, degenerate

