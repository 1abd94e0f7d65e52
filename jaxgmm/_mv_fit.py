"""The public boundary of multivariate fits: :func:`jaxgmm.fit` with a
:class:`~jaxgmm.MultivariateParams` start comes here for its checks and
conversions, then runs on the same engine as every univariate fit
(``jaxgmm/_engine.py``, family ``jaxgmm/_multivariate.py``)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from . import _mv_validate, _validate
from ._args import DEFAULT_MAX_ITER, DEFAULT_SCALE_FLOOR, FitArgs, engine_args
from ._mv_params import COVARIANCE_TYPES, make_mv_spec, mv_n_free_parameters


def prepare_mv_fit(x, init, *, covariance_type="full", fixed=(), tol=None, max_iter=DEFAULT_MAX_ITER,
                   sample_weight=None, scale_floor=DEFAULT_SCALE_FLOOR, nan_policy="raise", accelerate=None,
                   compact=None) -> FitArgs:
    """All of :func:`jaxgmm.fit`'s checks and conversions for a multivariate fit."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    x = _mv_validate.as_mv_data(x)
    dim = x.shape[-1]
    init = _mv_validate.as_mv_params(init, x.dtype, dim)
    rows = _mv_validate.rows_of(x)
    sample_weight = _validate.as_sample_weight(sample_weight, rows)
    _mv_validate.check_mv_batch_shapes(x, sample_weight, init)
    x, sample_weight = _mv_validate.apply_mv_nan_policy(x, sample_weight, nan_policy)
    spec = make_mv_spec(fixed, init.weights.shape[-1], covariance_type)
    _mv_validate.check_mv_structure(init, spec)
    _validate.check_enough_observations(rows, sample_weight, mv_n_free_parameters(spec, dim))
    shapes = [x.shape[:-2], init.weights.shape[:-1]] + ([] if sample_weight is None else [sample_weight.shape[:-1]])
    return engine_args(x, sample_weight, init, spec, tol=tol, max_iter=max_iter, scale_floor=scale_floor,
                       accelerate=accelerate, compact=compact, size=math.prod(jnp.broadcast_shapes(*shapes)), event_ndim=2)
