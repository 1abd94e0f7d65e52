"""Inference after a fit: observed-information standard errors, Wald intervals,
AIC/BIC/ICL and choosing the number of components.

Standard errors come from the Hessian of the log-likelihood *at the estimate*,
taken by autodiff of :func:`jaxgmm.log_likelihood`; the EM loop is never
differentiated.  The Hessian is taken with respect to the free parameters only,
in coordinates that respect the model's constraints:

* free weights: with ``F`` free weights sharing the mass ``m = 1 - sum(fixed
  weights)``, the coordinates are the first ``F - 1`` free weights and the last
  free weight is ``m`` minus the others.  Its standard error (and every
  covariance) follows by the delta method, which for this linear map is exact.
  With a single free weight there is nothing to estimate: it equals ``m``.
* free means and free scales (standard deviations) are coordinates themselves;
  with ``equal_scales`` the one common scale is a single coordinate.

The covariance ``(-H)^{-1}`` of those coordinates is mapped to all ``3K``
entries of :class:`MixtureParams` by the Jacobian of the (linear) map from
coordinates to parameters, so every weight gets a standard error and fixed
entries get exactly 0 (a known constant has no sampling variance).  The Hessian
is computed for data standardised by their own mean and standard deviation, and
mapped back, so float32 stays accurate for data far from zero.  When ``-H`` is
not positive definite (the point is not a local maximum: a degenerate or
unconverged fit) the standard errors are NaN.

A :class:`MultivariateParams` (or its :class:`FitResult`) takes the same road in
``jaxgmm/_mv_inference.py``: data standardised per dimension, coordinates per
covariance type (a covariance's lower triangle, its diagonal, one variance, or
one shared triangle), the covariance of all ``K + K D + K D^2`` entries, and
standard errors as a :class:`MultivariateParams`.  Its model is the result's, or
``fixed=`` and ``covariance_type=`` for plain parameters.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from . import _mv_inference, _mv_validate, _validate
from ._batching import broadcast_vmap
from ._em import ModelSpec, log_likelihood
from ._fit import best_of, fit
from ._init import init_params
from ._blocks import map_in_blocks
from ._buckets import pad_observations
from ._distributions import _log_joint, _logsumexp
from ._units import Standardiser
from ._mv_distributions import inputs as mv_inputs
from ._mv_em import _posterior, log_joint_of_data, standardiser
from ._mv_em import log_likelihood as mv_log_likelihood
from ._mv_params import COVARIANCE_TYPES, MultivariateParams, MvSpec, make_mv_spec, mv_n_free_parameters
from ._params import Array, FitResult, MixtureParams
from ._spec import make_spec, n_free_parameters
from ._xla import jit


# --------------------------------------------------------------------------- #
# Coordinates of the free parameters
# --------------------------------------------------------------------------- #
def _free_weight_index(spec: ModelSpec) -> tuple:
    return tuple(k for k, f in enumerate(spec.fixed_weights) if not f)


def _coordinate_layout(spec: ModelSpec):
    """Static layout: (weight coordinate indices, mean indices, scale indices, tied)."""
    free_w = _free_weight_index(spec)
    w_coords = free_w[:-1]  # the last free weight is the remaining mass
    m_coords = tuple(k for k, f in enumerate(spec.fixed_means) if not f)
    s_free = tuple(k for k, f in enumerate(spec.fixed_scales) if not f)
    tied = bool(spec.equal_scales and s_free)
    s_coords = (0,) if tied else s_free
    return w_coords, m_coords, s_coords, tied


def n_coordinates(spec: ModelSpec) -> int:
    w, m, s, _ = _coordinate_layout(spec)
    return len(w) + len(m) + len(s)


def _pack(params: MixtureParams, spec: ModelSpec) -> Array:
    w, m, s, _ = _coordinate_layout(spec)
    parts = [params.weights[jnp.asarray(w, jnp.int32)],
             params.means[jnp.asarray(m, jnp.int32)],
             params.scales[jnp.asarray(s, jnp.int32)]]
    return jnp.concatenate(parts)


def _unpack(theta: Array, base: MixtureParams, spec: ModelSpec) -> MixtureParams:
    """Parameters from coordinates ``theta``; fixed entries are taken from ``base``."""
    w_idx, m_idx, s_idx, tied = _coordinate_layout(spec)
    i = 0
    weights = base.weights
    free_w = _free_weight_index(spec)
    if len(free_w) >= 2:
        fixed_w = jnp.asarray(spec.fixed_weights)
        mass = 1.0 - jnp.sum(jnp.where(fixed_w, base.weights, 0.0))
        tw = theta[i:i + len(w_idx)]
        i += len(w_idx)
        weights = weights.at[jnp.asarray(w_idx)].set(tw)
        weights = weights.at[free_w[-1]].set(mass - jnp.sum(tw))
    means = base.means
    if m_idx:
        means = means.at[jnp.asarray(m_idx)].set(theta[i:i + len(m_idx)])
        i += len(m_idx)
    scales = base.scales
    if tied:
        scales = jnp.where(jnp.asarray(spec.fixed_scales), scales, theta[i])
    elif s_idx:
        scales = scales.at[jnp.asarray(s_idx)].set(theta[i:i + len(s_idx)])
    return MixtureParams(weights, means, scales)


def _covariance_one(x, sample_weight, params: MixtureParams, spec: ModelSpec) -> tuple[Array, Array]:
    """Covariance of (weights, means, scales) for one dataset, in two parts.

    Returns ``(cov, unit)``: the ``(3K, 3K)`` covariance for the data
    standardised by their own spread, and the ``(3K,)`` factors (1 for weights,
    the spread for means and scales) that take it to the data's units as
    ``cov * unit unit^T``.  Kept apart because that product need not be
    representable: data at 1e-20 in float32 have mean variances near 1e-43,
    below the smallest normal float (flushed to 0), though their standard
    errors (``sqrt(diag(cov)) * unit``) are fine.
    """
    k = spec.n_components
    p = n_coordinates(spec)
    unit_for = lambda spread: jnp.concatenate([jnp.ones((k,), x.dtype), jnp.full((2 * k,), spread, x.dtype)])
    if p == 0:
        return jnp.zeros((3 * k, 3 * k), x.dtype), unit_for(jnp.ones((), x.dtype))
    # The Hessian is taken on standardised data (the fit's own map, see _units.py)
    # so that it is well conditioned whatever the data's location and scale.
    std = Standardiser.from_data(x, sample_weight)
    x_std = std.data(x)
    base = std.params_in(params)

    def loglik(theta):
        return log_likelihood(x_std, _unpack(theta, base, spec), sample_weight)

    def flat(theta):
        return jnp.concatenate(list(_unpack(theta, base, spec)))

    theta = _pack(base, spec)
    neg_hess = -jax.hessian(loglik)(theta)
    neg_hess = 0.5 * (neg_hess + neg_hess.T)
    jac = jax.jacfwd(flat)(theta)  # (3K, p); constant: the map is linear
    # cov = J (-H)^{-1} J^T = A^T A with A = L^{-1} J^T, -H = L L^T.  The Cholesky
    # factor is NaN when -H is not positive definite, and so is the result.
    chol = jnp.linalg.cholesky(neg_hess)
    a = solve_triangular(chol, jac.T, lower=True)
    # Known entries (fixed, or a weight pinned by the constraint) have exactly
    # zero (co)variance, also where the rest is NaN.
    known = jnp.asarray(_known_entries(spec))
    # Means and scales scale with the data; weights do not.
    return jnp.where(known[:, None] | known[None, :], 0.0, a.T @ a), unit_for(std.spread)


def _known_entries(spec: ModelSpec) -> tuple:
    """Static mask over the ``3K`` entries that do not vary with the coordinates."""
    pinned = len(_free_weight_index(spec)) < 2
    weights = tuple(f or pinned for f in spec.fixed_weights)
    return weights + tuple(spec.fixed_means) + tuple(spec.fixed_scales)


@jit(static_argnames=("spec",))
def _covariance_batched(x, sample_weight, params, spec):
    # In cache-sized blocks of datasets, like the fits: the Hessian's
    # forward-over-reverse pass makes several data-sized intermediates per
    # coordinate, and one vmap over the whole batch sends them all through
    # memory (B = 10k x n = 1000, scales known: 0.58 s in one vmap, 0.10 s in blocks).
    one = lambda x_, w_, p_: _covariance_one(x_, w_, p_, spec)
    return map_in_blocks(one, (x, sample_weight, params), (1, 1, 1))


def _params_of(result_or_params, name: str = "result_or_params"):
    """The estimate: a :class:`MixtureParams` or :class:`MultivariateParams`."""
    if isinstance(result_or_params, FitResult):
        return result_or_params.params
    if isinstance(result_or_params, (MixtureParams, MultivariateParams)):
        return result_or_params
    raise TypeError(f"{name} must be a jaxgmm.FitResult or MixtureParams, got {type(result_or_params).__name__} "
                    "(or, for a D-dimensional mixture, a MultivariateParams)")


def _is_mv(result_or_params) -> bool:
    return isinstance(_params_of(result_or_params), MultivariateParams)


def _describe(spec: ModelSpec) -> str:
    """``spec`` as the arguments that make it, e.g. ``fixed=('scales',), equal_scales=False``."""
    if isinstance(spec, MvSpec):
        fields, masks = MultivariateParams._fields, (spec.fixed_weights, spec.fixed_means, spec.fixed_covariances)
        owner, last = "MultivariateParams", f"covariance_type={spec.covariance_type!r}"
    else:
        fields, masks = MixtureParams._fields, (spec.fixed_weights, spec.fixed_means, spec.fixed_scales)
        owner, last = "MixtureParams", f"equal_scales={spec.equal_scales}"
    masks = dict(zip(fields, masks))
    if all(all(m) or not any(m) for m in masks.values()):
        fixed = repr(tuple(name for name, m in masks.items() if all(m)))
    else:
        fixed = f"{owner}(" + ", ".join(f"{n}={list(m)}" for n, m in masks.items()) + ")"
    return f"fixed={fixed}, {last}"


def model_spec(result_or_params, k: int, fixed=None, equal_scales=None) -> ModelSpec:
    """The model a result was fitted with, or the one ``fixed``/``equal_scales`` describe.

    A :class:`FitResult` remembers its model (``result.model``): ``None`` for
    either argument means that model, and an explicit argument must agree with it
    (``ValueError`` naming both otherwise).  For a plain :class:`MixtureParams`,
    ``None`` means nothing fixed and ``equal_scales=False``.  ``k``: the number
    of components.
    """
    model = getattr(result_or_params, "model", None) if isinstance(result_or_params, FitResult) else None
    if model is None:
        return make_spec(() if fixed is None else fixed, k, False if equal_scales is None else equal_scales)
    if fixed is not None:
        given = make_spec(fixed, k)
        if (given.fixed_weights, given.fixed_means, given.fixed_scales) != (
                model.fixed_weights, model.fixed_means, model.fixed_scales):
            raise ValueError(f"fixed={fixed!r} contradicts the model the result was fitted with "
                             f"({_describe(model)}); omit fixed= to use the result's model")
    if equal_scales is not None and _validate.check_bool(equal_scales, "equal_scales") != model.equal_scales:
        raise ValueError(f"equal_scales={equal_scales!r} contradicts the model the result was fitted "
                         f"with ({_describe(model)}); omit equal_scales= to use the result's model")
    return model


def mv_model_spec(result_or_params, k: int, fixed=None, covariance_type=None, equal_scales=None) -> MvSpec:
    """The multivariate model of a result, or the one ``fixed``/``covariance_type`` describe.

    As :func:`model_spec`: a :class:`FitResult` with a multivariate model
    (``result.model``, an ``MvSpec``) is that model, and a given ``fixed`` or
    ``covariance_type`` must agree with it; for plain parameters ``None`` means
    nothing fixed and ``"full"``.  ``equal_scales`` has no meaning here (any
    value but ``None`` is an error).
    """
    if equal_scales is not None:
        raise ValueError(f"equal_scales={equal_scales!r} applies to univariate mixtures; a multivariate "
                         "model's covariance structure is its covariance_type (one shared matrix: 'tied')")
    if covariance_type is not None and covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    model = getattr(result_or_params, "model", None) if isinstance(result_or_params, FitResult) else None
    if not isinstance(model, MvSpec):
        return make_mv_spec(() if fixed is None else fixed, k, "full" if covariance_type is None else covariance_type)
    if covariance_type is not None and covariance_type != model.covariance_type:
        raise ValueError(f"covariance_type={covariance_type!r} contradicts the model the result was fitted with "
                         f"({_describe(model)}); omit covariance_type= to use the result's model")
    if fixed is not None:
        given = make_mv_spec(fixed, k, model.covariance_type)
        if given != model:
            raise ValueError(f"fixed={fixed!r} contradicts the model the result was fitted with "
                             f"({_describe(model)}); omit fixed= to use the result's model")
    return model


def _univariate_only(covariance_type) -> None:
    if covariance_type is not None:
        raise ValueError(f"covariance_type={covariance_type!r} applies to multivariate mixtures (a "
                         "MultivariateParams or its FitResult), got a univariate one")


def _prepare_mv(x, result_or_params, sample_weight, nan_policy):
    """Checked multivariate ``(x, params, sample_weight)``: ``x`` ``(..., n, D)``."""
    x, params = mv_inputs(x, _params_of(result_or_params))
    sample_weight = _validate.as_sample_weight(sample_weight, _mv_validate.rows_of(x))
    _mv_validate.check_mv_batch_shapes(x, sample_weight, params)
    x, sample_weight = _mv_validate.apply_mv_nan_policy(x, sample_weight, nan_policy)
    return x, params, sample_weight


def _prepare(x, result_or_params, sample_weight, nan_policy):
    params = _params_of(result_or_params)
    x = _validate.as_data(x)
    params = _validate.as_params(params, x.dtype, name="params")
    sample_weight = _validate.as_sample_weight(sample_weight, x)
    _validate.check_batch_shapes(x, sample_weight, params, name="params")
    x, sample_weight = _validate.apply_nan_policy(x, sample_weight, nan_policy)
    return x, params, sample_weight


def _covariance_parts(x, result_or_params, fixed, equal_scales, sample_weight, nan_policy, covariance_type=None):
    """``(cov, unit)`` of :func:`_covariance_one` (or, multivariate, of
    ``_mv_inference.covariance_one``) for a batch, from the public arguments."""
    if _is_mv(result_or_params):
        x, params, sample_weight = _prepare_mv(x, result_or_params, sample_weight, nan_policy)
        spec = mv_model_spec(result_or_params, params.weights.shape[-1], fixed, covariance_type, equal_scales)
        _mv_validate.check_mv_structure(params, spec, name="params")
        # Weight-0 padding to the fits' lengths: one Hessian program per rung, not
        # per n (a weight-0 row adds nothing to the log-likelihood or its Hessian).
        x, sample_weight = pad_observations(x, sample_weight, event_ndim=2)
        return _mv_inference.covariance_batched(x, sample_weight, params, spec)
    _univariate_only(covariance_type)
    x, params, sample_weight = _prepare(x, result_or_params, sample_weight, nan_policy)
    spec = model_spec(result_or_params, params.means.shape[-1], fixed, equal_scales)
    _validate.check_equal_fixed_scales(params, spec, name="params")
    x, sample_weight = pad_observations(x, sample_weight, event_ndim=1)
    return _covariance_batched(x, sample_weight, params, spec)


def covariance(x, result_or_params, *, fixed=None, equal_scales=None, sample_weight=None,
               nan_policy: str = "raise", covariance_type=None) -> Array:
    """Observed-information covariance of all ``3K`` parameters.

    Same arguments as :func:`standard_errors`. Returns an array of shape
    ``batch + (3K, 3K)`` ordered as ``concatenate([weights, means, scales])``;
    rows and columns of fixed entries are 0, and the weights' block has rows
    summing to 0 (the weights sum to one).  Entries are in the data's units, so
    for data on an extreme scale for their float type (beyond about 1e18 or
    below 1e-18 in float32) the means' and scales' entries can overflow or
    underflow; :func:`standard_errors` stays accurate there.

    For a :class:`MultivariateParams` (or its :class:`FitResult`), all
    ``P = K + K D + K D^2`` entries: shape ``batch + (P, P)``, ordered as
    ``concatenate([weights, means.ravel(), covariances.ravel()])`` (row-major:
    ``means[k, d]`` at ``K + k D + d``, ``covariances[k, d, e]`` at
    ``K + K D + (k D + d) D + e``); the two halves of a symmetric matrix, and a
    tied model's components, have identical rows; entries the model does not
    estimate (fixed, or the off-diagonals of ``"diag"`` and ``"spherical"``
    models) have rows and columns 0.
    """
    cov, unit = _covariance_parts(x, result_or_params, fixed, equal_scales, sample_weight, nan_policy,
                                  covariance_type)
    return cov * unit[..., :, None] * unit[..., None, :]


def standard_errors(
    x, result_or_params, *, fixed=None, equal_scales=None, sample_weight=None, nan_policy: str = "raise",
    covariance_type=None,
) -> Union[MixtureParams, MultivariateParams]:
    """Observed-information standard errors of a fit, for one dataset or a batch.

    Args:
      x: the data the model was fitted to, shape ``(..., n)``; ``(..., n, D)``
        for a multivariate estimate.
      result_or_params: a :class:`FitResult`, :class:`MixtureParams` or
        :class:`MultivariateParams` (the estimate), batch shape broadcasting
        with ``x``'s as in :func:`jaxgmm.fit`.
      fixed, equal_scales: the model that was fitted, as given to
        :func:`jaxgmm.fit`; they decide which parameters are free.  ``None``
        (the default) takes them from a :class:`FitResult` (which remembers its
        model), and means nothing fixed, no equal scales, for a
        :class:`MixtureParams`.  Given with a :class:`FitResult`, they must
        agree with its model (``ValueError`` otherwise).  ``equal_scales`` is
        univariate only (an error with a multivariate estimate).
      sample_weight: the observation weights used in the fit, if any.
      nan_policy: as in :func:`jaxgmm.fit`: ``"omit"`` treats NaN/inf in ``x``
        as absent, ``"raise"`` (default) rejects them.
      covariance_type: multivariate estimates only: the covariance type that was
        fitted (``"full"``, ``"diag"``, ``"spherical"``, ``"tied"``).  ``None``
        takes a :class:`FitResult`'s, and means ``"full"`` for a plain
        :class:`MultivariateParams`; given with a :class:`FitResult`, it must
        agree with its model.

    Returns:
      :class:`MixtureParams` of standard errors with the broadcast batch shape.
      Entries of fixed parameters are exactly ``0``; a weight that the
      constraint determines (the only free weight) is 0 as well. NaN means the
      observed information was not positive definite at this point (e.g. a
      degenerate fit).

      For a multivariate estimate, a :class:`MultivariateParams` of the
      estimate's shapes: the standard errors of every weight, mean entry and
      covariance entry (of the *variances and covariances*, not of standard
      deviations; the two halves of a symmetric matrix share theirs, a tied
      model's repeat for every component), 0 where the model does not estimate
      the entry (fixed, or an off-diagonal of a ``"diag"`` or ``"spherical"``
      model).  The free coordinates of each covariance type are listed in
      ``jaxgmm/_mv_inference.py``.

    The Hessian of the log-likelihood is taken by autodiff at the estimate (see
    the module docstring for the parametrisation of the weights); the estimate
    should be a converged maximum. Jittable and vmappable.
    """
    cov, unit = _covariance_parts(x, result_or_params, fixed, equal_scales, sample_weight, nan_policy,
                                  covariance_type)
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    se = jnp.where(jnp.isnan(var), jnp.nan, jnp.sqrt(jnp.maximum(var, 0.0))) * unit
    params = _params_of(result_or_params)
    if isinstance(params, MultivariateParams):
        return _mv_inference.unflatten(se, *np.shape(params.means)[-2:])
    k = cov.shape[-1] // 3
    return MixtureParams(se[..., :k], se[..., k:2 * k], se[..., 2 * k:])


def normal_quantile(level: float) -> float:
    """Two-sided standard-normal critical value, e.g. 1.95996... for ``level=0.95``."""
    value = _validate._concrete_number(level, "level")
    if value is None:
        raise TypeError("level must be a concrete number, got a traced value")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    from statistics import NormalDist
    return NormalDist().inv_cdf(0.5 + float(value) / 2.0)


def confidence_intervals(
    result_or_params, se, level: float = 0.95, *, fixed=None, equal_scales=None, covariance_type=None
) -> tuple:
    """Wald intervals ``estimate -/+ z * se``; returns ``(lower, upper)`` of the estimate's type.

    Plain Wald intervals, not clipped to the parameter space (a weight's interval
    may cross 0 or 1 when the weight is near the boundary; use
    :func:`jaxgmm.bootstrap` percentile intervals there). Fixed entries (se 0)
    give zero-width intervals.  ``fixed``/``equal_scales`` name the model ``se``
    belongs to, as in :func:`standard_errors` (``None``: a :class:`FitResult`'s
    own model); when ``se`` is concrete, an entry that model fixes must have
    ``se`` 0, else ``se`` was computed for another model (``ValueError``).

    For a :class:`MultivariateParams` estimate (or its :class:`FitResult`),
    ``se`` is the :class:`MultivariateParams` of :func:`standard_errors`, the
    intervals are elementwise (each weight, mean entry and covariance entry),
    ``(lower, upper)`` are :class:`MultivariateParams`, and the model is
    ``fixed``/``covariance_type`` as in :func:`standard_errors`; entries it does
    not estimate (fixed, or off-diagonals of ``"diag"``/``"spherical"`` models)
    must have ``se`` 0.  A covariance matrix's interval is not a matrix
    interval: ``lower.covariances`` need not be positive definite.
    """
    params = _params_of(result_or_params)
    kind = type(params)
    name_of = kind.__name__
    # Types and K only: a batch may hold non-finite fits, whose intervals are NaN.
    dtype = _validate.float_dtype_for(*params)
    params = kind(*(_as_real(f, f"params.{n}", dtype) for n, f in zip(kind._fields, params)))
    if not isinstance(se, kind):
        raise TypeError(f"se must be a jaxgmm.{name_of} (from standard_errors), got {type(se).__name__}")
    se = kind(*(_as_real(f, f"se.{n}", dtype) for n, f in zip(kind._fields, se)))
    if kind is MultivariateParams:
        if np.ndim(params.means) < 2:
            raise ValueError(f"params.means must have shape (..., K, D), got shape {np.shape(params.means)}")
        k, dim = np.shape(params.means)[-2:]
        spec = mv_model_spec(result_or_params, k, fixed, covariance_type, equal_scales)
        masks = _mv_inference.known_entries(spec, dim)
        hint = "pass the fixed= and covariance_type= it was computed with"
    else:
        _univariate_only(covariance_type)
        spec = model_spec(result_or_params, params.means.shape[-1], fixed, equal_scales)
        masks = tuple(np.asarray(m) for m in (spec.fixed_weights, spec.fixed_means, spec.fixed_scales))
        hint = "pass the fixed= it was computed with"
    z = normal_quantile(level)
    for name, p, s_, mask in zip(kind._fields, params, se, masks):
        try:
            jnp.broadcast_shapes(jnp.shape(p), jnp.shape(s_))
        except ValueError:
            raise ValueError(f"se.{name} of shape {jnp.shape(s_)} does not broadcast with the estimate's "
                             f"shape {jnp.shape(p)}") from None
        if np.any(mask) and _validate.is_concrete(s_) and np.any(np.broadcast_to(
                np.asarray(s_), jnp.broadcast_shapes(jnp.shape(s_), mask.shape))[..., mask] != 0):
            raise ValueError(f"se.{name} is not 0 where the model ({_describe(spec)}) fixes it: se was "
                             f"computed for another model; {hint}")
    lower = kind(*(p - z * s for p, s in zip(params, se)))
    upper = kind(*(p + z * s for p, s in zip(params, se)))
    return lower, upper


def _as_real(value, name: str, dtype) -> Array:
    """``value`` as a float array of at least one axis, converted on the host (no value checks)."""
    arr = _validate.host_array(value, name)
    _validate._check_real(arr.dtype, name)
    if np.ndim(arr) < 1:
        raise ValueError(f"{name} must have shape (..., K), got a scalar")
    return jnp.asarray(_validate.to_float(arr, name, dtype))


# One compiled selection instead of a dozen small eager operations.
best_of_jit = jit(best_of, static_argnames=("axis",))


# --------------------------------------------------------------------------- #
# Information criteria and the number of components
# --------------------------------------------------------------------------- #
def n_parameters(n_components: int, *, fixed=(), equal_scales: bool = False, covariance_type=None,
                 n_features=None) -> int:
    """Number of free parameters of a ``K``-component model (for AIC/BIC).

    ``K`` free weights count ``K - 1`` (they sum to one); with some weights fixed
    the ``F`` free ones count ``F - 1``; equal scales count once; fixed entries
    not at all. E.g. the textbook model (scales known, K = 2) has 3.
    ``n_components`` must be an integer >= 1.

    Multivariate models: pass ``covariance_type`` (``"full"``, ``"diag"``,
    ``"spherical"``, ``"tied"``) and ``n_features`` (``D``); a free mean counts
    ``D``, a free covariance ``D (D + 1) / 2`` (full), ``D`` (diag) or 1
    (spherical), a tied one once: scikit-learn's ``_n_parameters``. ``fixed`` as
    in :func:`jaxgmm.fit` for a :class:`MultivariateParams` start.
    """
    k = _validate.as_count(n_components, "n_components")
    if covariance_type is None and n_features is None:
        return n_free_parameters(make_spec(fixed, k, equal_scales))
    if covariance_type is None or n_features is None:
        raise ValueError("a multivariate model needs both covariance_type and n_features, got "
                         f"covariance_type={covariance_type!r}, n_features={n_features!r}")
    if equal_scales:
        raise ValueError("equal_scales applies to univariate models; use covariance_type='tied'")
    return mv_n_free_parameters(make_mv_spec(fixed, k, covariance_type), _validate.as_count(n_features, "n_features"))


def _loglik_of(result_or_loglik):
    if isinstance(result_or_loglik, FitResult):
        return jnp.asarray(result_or_loglik.loglik)
    ll = _validate.host_array(result_or_loglik, "result_or_loglik")
    _validate._check_real(ll.dtype, "result_or_loglik")
    return jnp.asarray(_validate.to_float(ll, "result_or_loglik", _validate.data_float_dtype(ll.dtype)))


def _parameter_count(result_or_loglik, n_params, func: str) -> int:
    """``n_params``, checked; from a :class:`FitResult`'s model when omitted, and
    compared with it when given."""
    model = getattr(result_or_loglik, "model", None) if isinstance(result_or_loglik, FitResult) else None
    if isinstance(model, MvSpec):  # a multivariate fit: its parameters in D dimensions
        counted = mv_n_free_parameters(model, np.shape(result_or_loglik.params.means)[-1])
    else:
        counted = None if model is None else n_free_parameters(model)
    if n_params is None:
        if counted is None:
            raise TypeError(f"{func} needs n_params (the number of free parameters, see jaxgmm.n_parameters) "
                            "unless given a FitResult, which remembers its model")
        return counted
    n_params = _validate.as_count(n_params, "n_params", minimum=0)
    if counted is not None and n_params != counted:
        raise ValueError(f"n_params={n_params} contradicts the model the result was fitted with "
                         f"({_describe(model)}: {counted} free parameters); omit n_params to count "
                         "them from the result")
    return n_params


def aic(result_or_loglik, n_params=None) -> Array:
    """Akaike's criterion ``2 p - 2 loglik`` (smaller is better).

    ``n_params`` (``p``) may be omitted for a :class:`FitResult`: it is counted
    from the model the result remembers, and a given one must agree with it.
    """
    p = _parameter_count(result_or_loglik, n_params, "aic")
    return 2.0 * p - 2.0 * _loglik_of(result_or_loglik)


def bic(result_or_loglik, *counts, n_params=None, n_obs=None) -> Array:
    """Schwarz's criterion ``p log(n) - 2 loglik`` (smaller is better).

    Called as ``bic(result, n_obs)`` for a :class:`FitResult` (``p`` counted
    from its model), or ``bic(result_or_loglik, n_params, n_obs)`` (a given
    ``n_params`` must agree with a result's model); both may be keywords.
    ``n_obs`` is the number of observations (the sum of the weights when the fit
    used ``sample_weight``), positive. Note mclust reports the negative of this.
    """
    if len(counts) > 2:
        raise TypeError(f"bic takes at most n_params and n_obs after the result, got {len(counts)} values")
    if len(counts) == 2:
        if n_params is not None or n_obs is not None:
            raise TypeError("bic got n_params and n_obs both by position and by keyword")
        n_params, n_obs = counts
    elif len(counts) == 1:
        if n_obs is None:
            n_obs = counts[0]  # bic(result, n_obs)
        elif n_params is None:
            n_params = counts[0]  # bic(loglik, n_params, n_obs=...)
        else:
            raise TypeError("bic got n_params and n_obs both by position and by keyword")
    if n_obs is None:
        raise TypeError("bic needs n_obs, the number of observations (the sum of the weights with sample_weight)")
    p = _parameter_count(result_or_loglik, n_params, "bic")
    ll = _loglik_of(result_or_loglik)
    n = _validate.host_array(n_obs, "n_obs")
    _validate._check_real(n.dtype, "n_obs")
    n = _validate.to_float(n, "n_obs", ll.dtype)
    if _validate.is_concrete(n) and not np.all(np.asarray(n) > 0):
        bad = ~(np.asarray(n) > 0)
        got = f", got {np.asarray(n).item():g}" if bad.ndim == 0 else _validate._at_batch(bad)
        raise ValueError(f"n_obs must be positive (the number of observations){got}")
    return p * jnp.log(jnp.asarray(n)) - 2.0 * ll


@jit
def _map_log_responsibility(x, params, sample_weight):
    """``sum_i w_i log t_i,map(i)`` (``<= 0``): the classification log-likelihood
    minus the log-likelihood, per dataset.  Responsibilities are invariant under
    an affine map of the data, so they are taken on the data standardised by
    their own centre and spread (float32 data far from zero stay accurate)."""
    w = jnp.ones_like(x) if sample_weight is None else jnp.broadcast_to(sample_weight, x.shape)
    present = w > 0
    total = jnp.sum(w, axis=-1, keepdims=True)
    centre = jnp.sum(jnp.where(present, w * x, 0.0), -1, keepdims=True) / total
    spread = jnp.sqrt(jnp.sum(jnp.where(present, w * jnp.square(x - centre), 0.0), -1, keepdims=True) / total)
    spread = jnp.where(spread > 0, spread, 1.0)
    z = (x - centre) / spread
    std = MixtureParams(params.weights, (params.means - centre) / spread, params.scales / spread)
    terms = _log_joint(z, std)
    best = functools.reduce(jnp.maximum, terms)
    return jnp.sum(jnp.where(present, w * (best - _logsumexp(terms)), 0.0), axis=-1)


def _mv_map_log_responsibility_one(x, sample_weight, weights, means, covariances):
    # Responsibilities are invariant under an affine map of each dimension (every
    # component's density takes the same Jacobian), so they are taken on the data
    # standardised per dimension (float32 data far from zero stay accurate).
    std = standardiser(x, sample_weight)
    a, _ = log_joint_of_data(std.data(x), std.params_in(MultivariateParams(weights, means, covariances)))
    term = jnp.max(a, axis=0) - _posterior(a)[1]  # (n,), <= 0
    if sample_weight is None:
        return jnp.sum(term)
    return jnp.sum(jnp.where(sample_weight > 0, sample_weight * term, 0.0))


@jit
def _mv_map_log_responsibility(x, params, sample_weight):
    """:func:`_map_log_responsibility` for ``x`` ``(..., n, D)`` and a
    :class:`MultivariateParams`, per dataset."""
    fn, args = broadcast_vmap(_mv_map_log_responsibility_one, (x, sample_weight, *params), (2, 1, 1, 2, 3))
    return fn(*args)


def _n_obs(rows_shape, w):
    """The BIC's ``n`` per dataset: the number of rows, or the sum of their weights."""
    if w is None:
        return rows_shape[-1]
    return jnp.sum(jnp.broadcast_to(w, jnp.broadcast_shapes(w.shape, rows_shape)), -1)


def icl(x, result, n_params=None, *, sample_weight=None, nan_policy: str = "raise") -> Array:
    """The integrated completed likelihood criterion, in :func:`bic`'s sign convention.

    ``ICL = BIC - 2 sum_i w_i log t_i,map(i)`` (smaller is better), where
    ``t_ik`` are the fit's responsibilities and ``map(i)`` each observation's
    most probable component: BIC with the log-likelihood replaced by the
    classification log-likelihood at the MAP labels (Biernacki, Celeux and
    Govaert 2000, IEEE PAMI 22(7); mclust's ``icl``, which reports the negative
    of this, as it does for BIC).  The added term, twice the entropy of the
    hard classification, is >= 0 and grows as components overlap, so ICL
    prefers well-separated clusters over the best density.

    Args:
      x: the data the model was fitted to, ``(..., n)``, or ``(..., n, D)`` for a
        multivariate result.
      result: the :class:`FitResult` (or :class:`MixtureParams` /
        :class:`MultivariateParams` with ``n_params``), batch shape
        broadcasting with ``x``'s.
      n_params: as in :func:`bic` (counted from a :class:`FitResult`'s model).
      sample_weight: the fit's observation weights; ``n_obs`` of the BIC is
        their sum.
      nan_policy: ``"omit"`` treats NaN/inf in ``x`` as absent (a row of a
        multivariate ``x`` holding any).
    """
    if _is_mv(result):
        x, params, w = _prepare_mv(x, result, sample_weight, nan_policy)
        p = _parameter_count(result, n_params, "icl")
        ll = (jnp.asarray(result.loglik) if isinstance(result, FitResult)
              else mv_log_likelihood(x, params, w))
        return bic(ll, p, _n_obs(x.shape[:-1], w)) - 2.0 * _mv_map_log_responsibility(x, params, w)
    x, params, w = _prepare(x, result, sample_weight, nan_policy)
    p = _parameter_count(result, n_params, "icl")
    ll = (jnp.asarray(result.loglik) if isinstance(result, FitResult)
          else log_likelihood(x, params, w))
    return bic(ll, p, _n_obs(x.shape, w)) - 2.0 * _map_log_responsibility(x, params, w)


class ModelChoice(NamedTuple):
    """Result of :func:`select_components`; arrays have a leading axis over ``K``.

    Attributes:
      n_components: ``(1, 2, ..., Kmax)``.
      loglik, aic, bic, icl: shape ``(Kmax,) + batch`` (:func:`icl`: BIC plus the
        classification entropy term).
      n_params: free-parameter count per ``K``.
      results: the best-of-restarts :class:`FitResult` for each ``K`` (a tuple:
        their parameter shapes differ).
      n_starts: the starts each ``K`` was fitted from.
    """

    n_components: tuple
    loglik: Array
    n_params: tuple
    aic: Array
    bic: Array
    results: tuple
    icl: Array = None
    n_starts: tuple = ()

    @property
    def best_aic(self) -> Array:
        """``K`` with the smallest AIC (per dataset)."""
        return jnp.argmin(self.aic, axis=0) + 1

    @property
    def best_bic(self) -> Array:
        """``K`` with the smallest BIC (per dataset)."""
        return jnp.argmin(self.bic, axis=0) + 1

    @property
    def best_icl(self) -> Array:
        """``K`` with the smallest ICL (per dataset)."""
        return jnp.argmin(self.icl, axis=0) + 1


def default_starts(k: int) -> int:
    """Starts :func:`select_components` uses for ``k`` components by default: ``20 k``.

    The number of local maxima grows with ``K``; on the galaxies data (n = 82)
    10 quantile starts missed the K = 4 and 5 maxima (issue 17).  See
    ``tests/test_inference.py::test_select_components_default_starts_find_galaxies_maxima``.
    """
    return 20 * k


def select_components(
    key: Array,
    x,
    max_components: int,
    *,
    n_starts=None,
    method: str = "kmeans++",
    equal_scales: bool = False,
    sample_weight=None,
    covariance_type=None,
    **fit_kwargs,
) -> ModelChoice:
    """Fit ``K = 1..max_components`` with restarts and report loglik, AIC, BIC and ICL.

    For each ``K``: ``n_starts`` starts from :func:`jaxgmm.init_params`, one
    batched :func:`jaxgmm.fit`, and :func:`jaxgmm.best_of`. ``n_starts``:
    ``None`` (default) uses :func:`default_starts` (``20 K`` starts for ``K``
    components), an integer that many for every ``K``, or a function of ``K``.
    All parameters are free (optionally with ``equal_scales``); ``x`` may be a
    batch ``(..., n)``.  Extra keyword arguments go to :func:`jaxgmm.fit` (not
    ``fixed``); ``nan_policy="omit"`` treats NaN/inf as absent in the starts,
    the fits and the number of observations of the BIC.

    ``covariance_type`` (``"full"``, ``"diag"``, ``"spherical"``, ``"tied"``)
    chooses among multivariate mixtures of that type instead: ``x`` has shape
    ``(..., n, D)``, the starts are k-means++ (``method="kmeans++"``), there are
    no ``equal_scales``, and each ``K`` counts
    ``n_parameters(K, covariance_type=..., n_features=D)`` parameters.
    """
    kmax = _validate.as_count(max_components, "max_components")
    if n_starts is None:
        starts_for = default_starts
    elif callable(n_starts):
        starts_for = n_starts
    else:
        fixed_count = _validate.as_count(n_starts, "n_starts")
        starts_for = lambda k: fixed_count
    _validate.check_key(key)
    if "fixed" in fit_kwargs:
        raise TypeError("select_components fits every parameter free (the starts are random), so it "
                        "takes no fixed=; fit such a model with init_params, fit and best_of")
    nan_policy = fit_kwargs.pop("nan_policy", "raise")
    multivariate = covariance_type is not None
    if multivariate:
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
        if equal_scales is not False:
            raise ValueError(f"equal_scales={equal_scales!r} applies to univariate mixtures; with "
                             "covariance_type, one covariance shared by all components is covariance_type='tied'")
        x = _mv_validate.as_mv_data(x)
        w = _validate.as_sample_weight(sample_weight, _mv_validate.rows_of(x))
        x, w = _mv_validate.apply_mv_nan_policy(x, w, nan_policy)
        n_obs = _n_obs(x.shape[:-1], w)
        shape_kwargs = dict(covariance_type=covariance_type)
        count = lambda k: n_parameters(k, covariance_type=covariance_type, n_features=x.shape[-1])
        map_term = _mv_map_log_responsibility
    else:
        x = _validate.as_data(x)
        w = _validate.as_sample_weight(sample_weight, x)
        # Applied once here: NaN/inf become weight-0 values that the starts, the
        # fits and the count of observations all skip.
        x, w = _validate.apply_nan_policy(x, w, nan_policy)
        n_obs = _n_obs(x.shape, w)
        shape_kwargs = dict(equal_scales=equal_scales)
        count = lambda k: n_parameters(k, equal_scales=equal_scales)
        map_term = _map_log_responsibility
    results, lls, ps, aics, bics, icls, counts = [], [], [], [], [], [], []
    for k in range(1, kmax + 1):
        s = _validate.as_count(starts_for(k), "n_starts")
        starts = init_params(jax.random.fold_in(key, k), x, k, method=method, n_starts=s,
                             sample_weight=w, covariance_type=covariance_type)
        res = best_of_jit(fit(x, starts, sample_weight=w, **shape_kwargs, **fit_kwargs), axis=0)
        p = count(k)
        results.append(res)
        lls.append(res.loglik)
        ps.append(p)
        counts.append(s)
        aics.append(aic(res, p))
        b = bic(res, p, n_obs)
        bics.append(b)
        icls.append(b - 2.0 * map_term(x, res.params, w))
    return ModelChoice(tuple(range(1, kmax + 1)), jnp.stack(lls), tuple(ps),
                       jnp.stack(aics), jnp.stack(bics), tuple(results), jnp.stack(icls), tuple(counts))
