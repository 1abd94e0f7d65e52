"""Public fitting API: ``fit``, restarts and best-of selection."""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from . import _validate
from ._args import DEFAULT_MAX_ITER, DEFAULT_SCALE_FLOOR, FitArgs, engine_args, loglik_in_weight_units
from ._batching import batch_shape_of
from ._engine import Work, solve
from ._multivariate import Multivariate
from ._mv_fit import prepare_mv_fit
from ._mv_params import MultivariateParams, MvSpec
from ._params import Array, FitResult, MixtureParams, Status
from ._spec import ModelSpec, make_spec, n_free_parameters
from ._univariate import Univariate
from ._xla import jit



def fit(
    x,
    init: MixtureParams,
    *,
    fixed=(),
    equal_scales: bool = False,
    tol: Optional[float] = None,
    max_iter: int = DEFAULT_MAX_ITER,
    sample_weight=None,
    scale_floor: float = DEFAULT_SCALE_FLOOR,
    nan_policy: str = "raise",
    accelerate: Optional[str] = None,
    compact: Optional[bool] = None,
    covariance_type: Optional[str] = None,
) -> FitResult:
    """Fit Gaussian mixtures by EM, one dataset or millions at once.

    Univariate with a :class:`MixtureParams` ``init`` (as documented below);
    ``D``-dimensional with a :class:`MultivariateParams` ``init`` (see
    "Multivariate fits" at the end).

    Args:
      x: observations, shape ``(..., n)``. Integer and boolean data are converted
        to JAX's default float dtype, float16/bfloat16 to float32.
      init: starting :class:`MixtureParams`, fields of shape ``(..., K)``. The
        batch shapes of ``x`` and ``init`` broadcast like NumPy's: ``x`` of shape
        ``(B, n)`` with ``init`` of shape ``(K,)`` fits ``B`` datasets from one
        start; ``x`` of shape ``(n,)`` with ``init`` of shape ``(R, K)`` fits ``R``
        starts of one dataset (the data are not copied ``R`` times).
      fixed: parameters held at their values in ``init``: field names
        (``"scales"`` or ``("weights", "scales")``) or a :class:`MixtureParams` of
        per-component booleans, e.g. ``MixtureParams(weights=False, means=[True,
        False], scales=False)`` holds the first mean. Fixing some weights makes the
        free weights share the remaining mass (the constrained MLE).
      equal_scales: estimate one common scale for all components (mixtools'
        ``arbvar=FALSE``, mclust's model "E").
      tol: convergence tolerance, see below. ``None`` picks
        :func:`default_tol` of the data's dtype (1e-9 for float64, 1e-5 for float32).
      max_iter: iteration cap; fits that reach it get ``Status.MAX_ITER``.
      sample_weight: non-negative observation weights broadcastable to ``x``'s
        shape; weight 0 means "not there", so datasets of different sizes can share
        one padded batch. The log-likelihood is weighted by them.
      scale_floor: free scales never drop below ``scale_floor`` times the
        dataset's (weighted) spread (its standard deviation, or that of the
        observations within 8 of them where some lie beyond, see Convergence); a fit that ends on the floor is
        reported as ``Status.DEGENERATE``. The scale-free analogue of
        scikit-learn's ``reg_covar``; it removes the unbounded-likelihood spikes of
        unequal-variance mixtures. Must lie in ``[0, 1)``. Constant data (zero
        standard deviation) use a spread of 1 in the data's units instead, so a fit
        of them with free scales ends on the floor: ``Status.DEGENERATE``, finite,
        no exception.
      nan_policy: ``"raise"`` (default) rejects NaN/inf in ``x``; ``"omit"`` treats
        them as absent (weight 0).
      accelerate: ``None`` (default): plain EM. ``"squarem"``: SQUAREM
        extrapolation (Varadhan & Roland 2008, SqS3 with a monotonicity
        safeguard; see ``jaxgmm/_squarem.py``): several times fewer passes over
        the data when EM is slow, same stopping rule, and the log-likelihood never
        ends below plain EM's step. With it, ``n_iter`` counts E-steps (passes
        over the data, three per extrapolation cycle), never more than
        ``max_iter``. Each of its E-steps also computes the log-likelihood (for
        the safeguard), so it pays off when fits need many iterations (hundreds,
        or a batch with a long tail); fits that plain EM finishes in a dozen or
        two iterations run slower with it.
      compact: how the batch is scheduled (``jaxgmm/_engine.py``). ``True``:
        fits run in cache-sized blocks whose lanes are refilled from the
        waiting fits as fits finish, so finished fits stop costing time and one
        slow fit (or a long tail of them) holds up only its own lane, not its
        block or the batch. ``False``: each block of fits runs until its slowest
        fit stops. ``None`` (default): ``True`` on CPU, ``False`` on
        accelerators (there blocks hold the whole batch and masked lanes cost
        little; compaction has not been measured on one). Every fit takes the
        same steps either way and its arithmetic never depends on its
        block-mates: results are bit-identical in blocks of one size (the
        8-lane block compaction hands its last running fits to can round a sum
        differently, within the stopping error). Works with either
        ``accelerate``, every batch layout, and inside ``jit``.
      covariance_type: multivariate fits only: ``"full"`` (default), ``"diag"``,
        ``"spherical"`` or ``"tied"`` (scikit-learn's meanings; mclust's VVV,
        VVI, VII, EEE).

    Raises:
      ValueError, TypeError: on concrete bad input (shapes, dtypes, NaN data, bad
        starts or weights, fewer observations than free parameters, options out of
        range); the message names the argument, what was expected and what was
        found, and for batches the offending dataset indices. Traced values (inside
        ``jit``/``vmap``) are never raised on: the per-fit ``status`` reports them.
        The full table is in ``docs/robustness.md``.

    Returns:
      :class:`FitResult` with the broadcast batch shape: ``params``, ``loglik``
      (of the returned params), ``n_iter``, ``status``, ``converged``, and the
      fitted ``model`` (static: what ``fixed`` and ``equal_scales`` said).

    Convergence: a fit stops when the largest change in one iteration of any
    weight, or of any mean or scale in units of the data's spread, is
    below ``tol`` (strictly, so ``tol=0`` runs exactly ``max_iter`` iterations).
    The spread is the (weighted) standard deviation, or, where observations lie
    more than 8 standard deviations from the centre, that of the observations
    within (taken again until none lies beyond, at most 8 times; never from less
    than half of the weight), so that a far outlier cannot inflate the unit.
    A fit's result does not depend on the values of its batch-mates; it can
    depend on the batch's *shape* through rounding (XLA:CPU sums small blocks
    of fits differently), within the stopping error: a step more or less.
    Changing ``tol``, ``max_iter``, ``scale_floor`` or the data values does not
    recompile; changing shapes, dtypes, ``fixed`` or ``equal_scales`` does.
    Calls of up to ``2**22`` numbers of data are padded with weight-0
    observations to one of two lengths ``n`` per doubling (``jaxgmm/_buckets.py``),
    so datasets of many sizes share a handful of programs.

    The computation follows the data's float dtype; the library never enables
    float64 by itself (set ``JAX_ENABLE_X64=1`` or ``jax.config`` for that).

    Multivariate fits: ``x`` of shape ``(..., n, D)`` and ``init`` a
    :class:`MultivariateParams` with weights ``(..., K)``, means ``(..., K,
    D)`` and covariances ``(..., K, D, D)`` (full matrices whatever the
    ``covariance_type``: diagonal for ``"diag"``, multiples of the identity for
    ``"spherical"``, all equal for ``"tied"``; a start that is no point of its
    model is an error). Batch shapes broadcast as above; ``sample_weight`` is
    ``(..., n)``; ``fixed`` names fields (``"covariances"``) or is a
    :class:`MultivariateParams` of per-component booleans. With
    ``nan_policy="omit"`` a row holding any NaN is absent. Each dimension is
    standardised per dataset (centred, scaled by its standard deviation; one
    common scale for ``"spherical"``), and ``tol`` applies to the weights, the
    mean coordinates and the covariance entries there. ``scale_floor`` bounds
    every conditional standard deviation of a component (each Cholesky pivot)
    below by ``scale_floor`` times the data's standard deviation of that
    coordinate, so a component collapsing onto a point or a line ends
    ``Status.DEGENERATE`` with finite values. ``equal_scales`` does not apply
    (use ``covariance_type="tied"``).
    """
    args = prepare(x, init, fixed=fixed, equal_scales=equal_scales, tol=tol, max_iter=max_iter,
                   sample_weight=sample_weight, scale_floor=scale_floor, nan_policy=nan_policy,
                   accelerate=accelerate, compact=compact, covariance_type=covariance_type)
    return run(args)[0]


def prepare(x, init, *, covariance_type=None, equal_scales=False, **kwargs) -> FitArgs:
    """:func:`fit`'s arguments checked and converted for the engine, by the
    family ``init`` belongs to (shared with :func:`jaxgmm.fit_sharded`)."""
    if isinstance(init, MultivariateParams):
        if equal_scales:
            raise ValueError("equal_scales applies to univariate fits; for a multivariate fit with one shared "
                             "covariance pass covariance_type='tied'")
        return prepare_mv_fit(x, init, covariance_type="full" if covariance_type is None else covariance_type,
                              **kwargs)
    if covariance_type is not None:
        raise ValueError("covariance_type applies to multivariate fits (init a jaxgmm.MultivariateParams), "
                         f"got covariance_type={covariance_type!r} with init of type {type(init).__name__}")
    return prepare_fit(x, init, equal_scales=equal_scales, **kwargs)


def run(args: "FitArgs") -> tuple[FitResult, Work]:
    """The engine on prepared arguments: the result as :func:`fit` returns it, and
    the work accounting (for benchmarks)."""
    arrays, static = engine_call(args)
    result, work = solve(*arrays, **static)
    return with_fixed_values(result, args.init, args.weight_exp, args.spec)._replace(model=args.spec), work


def engine_call(args: "FitArgs") -> tuple[tuple, dict]:
    """``(arrays, static)`` of the engine call for ``args``: ``solve(*arrays, **static)``
    (or ``solve.lower(...)`` to inspect the compiled program)."""
    return ((args.x, args.sample_weight, args.init, args.controls),
            dict(family=family_of(args.spec, args.tuning), accelerate=args.accelerate, tuning=args.tuning))


def family_of(spec, tuning):
    """The model family of a model ``spec`` under ``tuning`` (static, hashable)."""
    if isinstance(spec, MvSpec):
        return Multivariate(spec)
    return Univariate(spec, tuning.reduction)


@jit(static_argnames=("spec",))
def with_fixed_values(result: FitResult, init, weight_exp, spec) -> FitResult:
    """Return fixed parameters exactly as given in ``init``, and the log-likelihood
    in the units of the user's ``sample_weight``.

    Fits run on standardised data, and mapping a fixed value there and back moves
    it by an ulp or so (a mean fixed at 0 would come back as -1.6e-8 in float32).
    ``init``'s batch shape broadcasts against the result's, as in :func:`fit`.
    ``weight_exp`` (or ``None``) is the power of two each dataset's weights were
    divided by (:func:`jaxgmm._args.normalise_weights`).
    """
    masks = spec[:3]  # per component, for each field (the specs' first three entries)
    # Each field's axes after the components' (none univariate; D, or D x D).
    inner = (0, 0, 0) if isinstance(spec, ModelSpec) else (0, 1, 2)
    params = type(result.params)(*(
        jnp.where(jnp.asarray(mask).reshape((-1,) + (1,) * k), given, fitted) if any(mask) else fitted
        for mask, k, given, fitted in zip(masks, inner, init, result.params)))
    return result._replace(params=params, loglik=loglik_in_weight_units(result.loglik, weight_exp))


def prepare_fit(x, init, *, fixed=(), equal_scales=False, tol=None, max_iter=DEFAULT_MAX_ITER,
                sample_weight=None, scale_floor=DEFAULT_SCALE_FLOOR, nan_policy="raise",
                accelerate=None, compact=None) -> FitArgs:
    """All of :func:`fit`'s checks and conversions, shared by every caller of the
    engine (:func:`jaxgmm.fit_sharded` re-sizes ``tuning`` for a device's share)."""
    x = _validate.as_data(x)
    init = _validate.as_params(init, x.dtype)
    sample_weight = _validate.as_sample_weight(sample_weight, x)
    _validate.check_batch_shapes(x, sample_weight, init)
    x, sample_weight = _validate.apply_nan_policy(x, sample_weight, nan_policy)
    spec = make_spec(fixed, init.means.shape[-1], equal_scales)
    _validate.check_equal_fixed_scales(init, spec)
    _validate.check_enough_observations(x, sample_weight, n_free_parameters(spec))
    shapes = [batch_shape_of(x, 1), batch_shape_of(init, 1)]
    if sample_weight is not None:
        shapes.append(batch_shape_of(sample_weight, 1))
    return engine_args(x, sample_weight, init, spec, tol=tol, max_iter=max_iter, scale_floor=scale_floor,
                       accelerate=accelerate, compact=compact, size=math.prod(jnp.broadcast_shapes(*shapes)), event_ndim=1)


def _healthy_first_score(result: FitResult) -> Array:
    """Selection score: usable fits by log-likelihood, then degenerate, then broken."""
    healthy = result.status <= Status.MAX_ITER
    finite = jnp.isfinite(result.loglik) & (result.status != Status.NONFINITE)
    # Scores ordered so that any healthy fit beats any degenerate fit, which beats
    # a non-finite one; ties within a class are broken by the log-likelihood.
    rank = jnp.where(healthy, 2, jnp.where(finite, 1, 0))
    ll = jnp.where(finite, result.loglik, -jnp.inf)
    return rank, ll


@jit(static_argnames=("axis",))
def best_of(result: FitResult, axis: int = 0) -> FitResult:
    """Keep, along ``axis`` (the restarts axis), the best fit of each dataset.

    The best fit is the one with the highest log-likelihood among fits that
    converged or ran out of iterations; degenerate fits (a vanished component or a
    scale on the floor) are chosen only when no healthy fit exists, and non-finite
    fits only when nothing else does.

    Returns:
      A :class:`FitResult` with ``axis`` removed.
    """
    _validate.check_best_of_axis(result, axis)
    rank, ll = _healthy_first_score(result)
    axis = axis % rank.ndim
    best_rank = jnp.max(rank, axis=axis, keepdims=True)
    score = jnp.where(rank == best_rank, ll, -jnp.inf)
    # argmax of an all -inf slice (all non-finite) is index 0, which is fine.
    index = jnp.argmax(score, axis=axis, keepdims=True)

    def take(leaf):
        leaf_axis = axis
        idx = index.reshape(index.shape + (1,) * (leaf.ndim - index.ndim))
        return jnp.squeeze(jnp.take_along_axis(leaf, idx, axis=leaf_axis), axis=leaf_axis)

    return jax.tree_util.tree_map(take, result)
