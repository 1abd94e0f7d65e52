"""Checks at the public boundary for multivariate fits (``x`` of shape ``(..., n, D)``).

The same conventions as ``jaxgmm/_validate.py``: shapes and dtypes always,
values only when concrete, messages naming the argument, what was expected and
what was found, and for batches the offending dataset indices.
"""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

from ._mv_params import FIELDS, MultivariateParams, MvSpec
from ._validate import (_at_batch, _check_real, check_weight_values, float_observations, host_array,
                        array_module, is_concrete, to_device, to_float)


def rows_of(x) -> jax.ShapeDtypeStruct:
    """The shape ``(..., n)`` of ``x``'s observations (one entry per row), for the
    univariate checks of weights and counts."""
    return jax.ShapeDtypeStruct(x.shape[:-1], x.dtype)


def as_mv_data(x, name: str = "x"):
    """Validate and convert multivariate data ``(..., n, D)`` to a float array
    (integers converted on the host, as univariate data)."""
    x = float_observations(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., n, D) for a multivariate fit (init is a "
                         f"MultivariateParams), got shape {x.shape}; for D = 1 pass x[..., None]")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} has no observations or no dimensions: shape {x.shape} (axes (..., n, D))")
    return x


def as_mv_params(params, dtype, dim: int, name: str = "init") -> MultivariateParams:
    """Validate a :class:`MultivariateParams` against ``D = dim``, cast it to
    ``dtype`` and broadcast its fields to one batch shape."""
    if not isinstance(params, MultivariateParams):
        raise TypeError(f"{name} must be a jaxgmm.MultivariateParams, got {type(params).__name__}")
    fields = []
    for fname, value, core in zip(FIELDS, params, (1, 2, 3)):
        arr = host_array(value, f"{name}.{fname}")
        _check_real(arr.dtype, f"{name}.{fname}")
        if arr.ndim < core:
            want = {1: "(..., K)", 2: "(..., K, D)", 3: "(..., K, D, D)"}[core]
            raise ValueError(f"{name}.{fname} must have shape {want}, got shape {arr.shape}")
        fields.append(jnp.asarray(to_float(arr, f"{name}.{fname}", dtype)))
    w, m, c = fields
    shapes = {n: f.shape for n, f in zip(FIELDS, fields)}
    if not (w.shape[-1] == m.shape[-2] == c.shape[-3]):
        raise ValueError(f"{name} fields disagree on the number of components K: {shapes}")
    if w.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one component, got K=0")
    if not (m.shape[-1] == c.shape[-1] == c.shape[-2] == dim):
        raise ValueError(f"{name} must have means (..., K, {dim}) and covariances (..., K, {dim}, {dim}) "
                         f"for data of D = {dim} dimensions, got {shapes}")
    try:
        batch = jnp.broadcast_shapes(w.shape[:-1], m.shape[:-2], c.shape[:-3])
    except ValueError:
        raise ValueError(f"{name} fields have batch shapes that do not broadcast: {shapes}") from None
    k = w.shape[-1]
    params = MultivariateParams(jnp.broadcast_to(w, batch + (k,)), jnp.broadcast_to(m, batch + (k, dim)),
                                jnp.broadcast_to(c, batch + (k, dim, dim)))
    if is_concrete(params):
        check_mv_param_values(params, name)
    return params


def check_mv_param_values(params: MultivariateParams, name: str = "init") -> None:
    """Raise ``ValueError`` for weights outside the simplex, non-finite means, or
    covariances that are not finite, symmetric and positive definite."""
    w, m, c = (np.asarray(f) for f in params)
    check_weight_values(w, name)
    bad = ~np.all(np.isfinite(m), axis=(-2, -1))
    if bad.any():
        raise ValueError(f"{name}.means must be finite{_at_batch(bad)}")
    bad = ~np.all(np.isfinite(c), axis=(-3, -2, -1))
    if bad.any():
        raise ValueError(f"{name}.covariances must be finite{_at_batch(bad)}")
    eps = np.finfo(c.dtype).eps
    scale = np.max(np.abs(c), axis=(-2, -1), keepdims=True)
    asym = np.abs(c - np.swapaxes(c, -1, -2)) > 16 * eps * scale
    bad = np.any(asym, axis=(-3, -2, -1))
    if bad.any():
        raise ValueError(f"{name}.covariances must be symmetric matrices{_at_batch(bad)}")
    # Positive definite: positive variances, and the smallest eigenvalue of the
    # matrix scaled to unit diagonal (the correlations) above rounding of the
    # largest.  Scaled, as the fit and the densities work per dimension: on the
    # raw matrix, variances 1e8 and 1e-8 (float32 data in two units) read as
    # singular, and the fit refused init_params' own start.
    c64 = c.astype(np.float64)
    var = np.diagonal(c64, axis1=-2, axis2=-1)
    inv_sd = 1.0 / np.sqrt(np.where(var > 0, var, 1.0))
    low = np.linalg.eigvalsh(c64 * inv_sd[..., :, None] * inv_sd[..., None, :])
    singular = low[..., 0] <= c.shape[-1] * eps * np.maximum(low[..., -1], 0)
    bad = np.any(np.any(var <= 0, axis=-1) | singular, axis=-1)
    if bad.any():
        raise ValueError(f"{name}.covariances must be positive definite{_at_batch(bad)} (a singular or "
                         "indefinite start has no density); start from the data's covariance, or "
                         "use jaxgmm.init_params")


def check_mv_structure(params: MultivariateParams, spec: MvSpec, name: str = "init") -> None:
    """A start must be a point of its covariance type's model: ``"diag"``
    matrices diagonal, ``"spherical"`` multiples of the identity, ``"tied"`` all
    equal (to a few ulps).  Otherwise the first E-step would read a matrix the
    model cannot hold (the diagonal models read only the diagonal), and a fixed
    covariance would be silently replaced."""
    kind = spec.covariance_type
    if kind == "full" or not is_concrete(params.covariances):
        return
    c = np.asarray(params.covariances)
    eps = np.finfo(c.dtype).eps
    scale = np.max(np.abs(c), axis=(-3, -2, -1), keepdims=True)
    dim = c.shape[-1]
    off = c * (1 - np.eye(dim, dtype=c.dtype))
    if kind in ("diag", "spherical"):
        bad = np.any(np.abs(off) > 16 * eps * scale, axis=(-3, -2, -1))
        what = "diagonal"
        if kind == "spherical":
            d = np.diagonal(c, axis1=-2, axis2=-1)
            bad |= np.any(np.ptp(d, axis=-1) > 16 * eps * scale[..., 0, 0], axis=-1)
            what = "multiples of the identity"
    else:
        bad = np.any(np.abs(c - c[..., :1, :, :]) > 16 * eps * scale, axis=(-3, -2, -1))
        what = "one matrix shared by all components (equal)"
    if bad.any():
        raise ValueError(f"covariance_type={kind!r} needs {name}.covariances that are {what}{_at_batch(bad)}")


def apply_mv_nan_policy(x, sample_weight, nan_policy: str):
    """``"raise"``: reject a row holding NaN/inf (unless its weight is 0);
    ``"omit"``: a row with any non-finite value is absent (weight 0).

    Absent rows' values are replaced, column by column, by a present value of
    the same dataset (as the univariate ``_validate._fill_absent``: they carry
    weight 0 but still pass through the E-pass, where a far placeholder would
    overflow).  Returns ``(x, sample_weight)``.
    """
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    # Concrete data in host memory are checked and filled by NumPy, compiling
    # nothing per shape (_validate.array_module).
    given = x
    xp, (x, sample_weight) = array_module(x, sample_weight)
    finite_rows = xp.all(xp.isfinite(x), axis=-1)
    if nan_policy == "raise":
        if is_concrete(x, sample_weight) and not bool(xp.all(finite_rows)):
            ok = finite_rows if sample_weight is None else finite_rows | (sample_weight == 0)
            bad = ~np.asarray(xp.all(ok, axis=-1))
            if bad.any():
                raise ValueError(f"x contains NaN or infinite values{_at_batch(bad, 'in datasets at')}; drop "
                                 "those rows, or pass nan_policy='omit' to treat them as absent")
        if sample_weight is None:
            return given, None
        present = sample_weight > 0
    else:
        ones = xp.ones((), x.dtype) if sample_weight is None else sample_weight
        sample_weight = xp.where(finite_rows, ones, 0).astype(x.dtype)
        present = sample_weight > 0
        if is_concrete(sample_weight):
            bad = ~np.any(np.asarray(present), axis=-1)
            if bad.any():
                raise ValueError(f"x has no finite row with positive weight{_at_batch(bad)} "
                                 "after nan_policy='omit': nothing to fit")
    fill = xp.max(xp.where(present[..., None], x, -np.inf), axis=-2, keepdims=True)
    fill = xp.where(xp.isfinite(fill), fill, 0)
    x = xp.where(present[..., None], x, fill).astype(x.dtype)
    return to_device(x), to_device(sample_weight)


def check_mv_batch_shapes(x, sample_weight, init: MultivariateParams) -> None:
    shapes = {"x": x.shape[:-2], "init": init.weights.shape[:-1]}
    if sample_weight is not None:
        shapes["sample_weight"] = sample_weight.shape[:-1]
    try:
        jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        got = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"batch shapes do not broadcast: x has shape (..., n, D), init's weights (..., K), "
                         f"sample_weight (..., n), and their batch axes must broadcast like NumPy's; got "
                         f"batch shapes {got}") from None
