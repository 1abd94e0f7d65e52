"""Checks at the public boundary.

Shapes and dtypes are checked always (they are static, even under ``jit``).
Values are checked only when they are concrete: inside a user's ``jit``/``vmap``
they are tracers, raising is impossible, and the per-fit ``status`` reports
problems instead.  Messages name the argument, what was expected and what was
found, and for batches the offending dataset indices.
"""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

from ._params import MixtureParams


def is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays))


def _first_indices(mask: np.ndarray, limit: int = 5) -> str:
    idx = [tuple(int(i) for i in t) if len(t) > 1 else int(t[0]) for t in zip(*np.nonzero(mask))]
    more = f" (and {len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{idx[:limit]}{more}"


def _at_batch(bad: np.ndarray, where: str = "at") -> str:
    """`` at batch indices [...]`` naming the offending datasets ("" for one dataset)."""
    return "" if bad.ndim == 0 else f" {where} batch indices {_first_indices(bad)}"


def float_dtype_for(*arrays):
    """The float dtype a computation on ``arrays`` follows: the first float input's.

    Integer or boolean inputs are converted to JAX's default float dtype (float32
    unless x64 is enabled).  Complex inputs are rejected.
    """
    for a in arrays:
        dt = jnp.asarray(a).dtype if not hasattr(a, "dtype") else a.dtype
        if jnp.issubdtype(dt, jnp.floating):
            return jnp.dtype(dt) if jnp.dtype(dt).itemsize >= 4 else jnp.dtype(jnp.float32)
    return jnp.dtype(jnp.result_type(float))


def as_data(x, name: str = "x"):
    """Validate and convert data of shape ``(..., n)`` to a float array."""
    if isinstance(x, MixtureParams):
        raise TypeError(f"{name} must be an array of observations, got MixtureParams")
    try:
        dt = np.asarray(x).dtype if not hasattr(x, "dtype") else np.dtype(x.dtype)
    except Exception as err:  # e.g. ragged lists
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {err}") from None
    if jnp.issubdtype(dt, jnp.complexfloating):
        raise TypeError(f"{name} must be real-valued, got complex dtype {dt}")
    if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or dt == np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {dt}")
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape (..., n) with at least one axis, got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has no observations: shape {x.shape} (the last axis is n)")
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize < 4:
        # Integers and booleans become JAX's default float; float16/bfloat16 are
        # too coarse for EM's sums and become float32.
        x = x.astype(float_dtype_for(x))
    return x


def as_params(params, dtype, name: str = "init") -> MixtureParams:
    """Validate a :class:`MixtureParams`, cast it to ``dtype`` and broadcast its fields."""
    if not isinstance(params, MixtureParams):
        raise TypeError(f"{name} must be a jaxgmm.MixtureParams, got {type(params).__name__}")
    fields = []
    for fname, value in zip(MixtureParams._fields, params):
        arr = jnp.asarray(value)
        if jnp.issubdtype(arr.dtype, jnp.complexfloating) or not (
                jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
            raise TypeError(f"{name}.{fname} must be real numbers, got dtype {arr.dtype}")
        if arr.ndim < 1:
            raise ValueError(f"{name}.{fname} must have shape (..., K), got a scalar")
        fields.append(arr.astype(dtype))
    ks = {f.shape[-1] for f in fields}
    if len(ks) != 1:
        shapes = {n: f.shape for n, f in zip(MixtureParams._fields, fields)}
        raise ValueError(f"{name} fields disagree on the number of components K (last axis): {shapes}")
    if fields[0].shape[-1] < 1:
        raise ValueError(f"{name} must have at least one component, got K=0")
    try:
        bshape = jnp.broadcast_shapes(*(f.shape for f in fields))
    except ValueError:
        shapes = {n: f.shape for n, f in zip(MixtureParams._fields, fields)}
        raise ValueError(f"{name} fields have batch shapes that do not broadcast: {shapes}") from None
    params = MixtureParams(*(jnp.broadcast_to(f, bshape) for f in fields))
    if is_concrete(params):
        check_param_values(params, name)
    return params


def check_param_values(params: MixtureParams, name: str = "init") -> None:
    """Raise ``ValueError`` for weights outside the simplex or bad scales."""
    w = np.asarray(params.weights)
    s = np.asarray(params.scales)
    m = np.asarray(params.means)
    tol = 1e-4 if w.dtype.itemsize <= 4 else 1e-10
    # The first offending row, as found.
    got = lambda values, bad: ", got " + str([float(f"{v:.6g}") for v in (
        values[bad][0] if values.ndim > 1 else values)])
    bad = ~np.all(np.isfinite(w) & (w >= 0) & (w <= 1), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.weights must lie in [0, 1]{_at_batch(bad)}{got(w, bad)}")
    bad = np.abs(w.sum(-1) - 1) > tol * w.shape[-1]
    if bad.any():
        raise ValueError(f"{name}.weights must sum to 1 (within {tol:g} per component), "
                         f"got sums {np.unique(w.sum(-1)[bad])[:5]}{_at_batch(bad)}")
    bad = ~np.all(np.isfinite(m), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.means must be finite{_at_batch(bad)}{got(m, bad)}")
    bad = ~np.all(np.isfinite(s) & (s > 0), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.scales must be positive and finite{_at_batch(bad)}{got(s, bad)}")


def as_sample_weight(sample_weight, x):
    """Validate observation weights against data ``x``; returns an array or None."""
    if sample_weight is None:
        return None
    w = jnp.asarray(sample_weight)
    if jnp.issubdtype(w.dtype, jnp.complexfloating) or not (
            jnp.issubdtype(w.dtype, jnp.number) or w.dtype == jnp.bool_):
        raise TypeError(f"sample_weight must be real numbers, got dtype {w.dtype}")
    if w.ndim < 1 or w.shape[-1] != x.shape[-1]:
        raise ValueError(f"sample_weight must have shape (..., n) with n={x.shape[-1]} "
                         f"matching x of shape {x.shape}, got shape {w.shape}")
    try:
        jnp.broadcast_shapes(w.shape[:-1], x.shape[:-1])
    except ValueError:
        raise ValueError(f"sample_weight batch shape {w.shape[:-1]} does not broadcast "
                         f"with x batch shape {x.shape[:-1]}") from None
    w = w.astype(x.dtype)
    if is_concrete(w):
        wn = np.asarray(w)
        bad = ~np.all(np.isfinite(wn) & (wn >= 0), axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"sample_weight must be finite and non-negative{at}")
        bad = ~np.any(wn > 0, axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"sample_weight is all zero{at}: no observation to fit")
        # XLA on CPUs and GPUs flushes subnormal numbers to zero: weights that
        # are all below the smallest normal float would act as all zero (NaN fits).
        tiny = np.finfo(wn.dtype).tiny
        bad = ~np.any(wn >= tiny, axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"sample_weight is below {tiny:.3g}, the smallest normal {wn.dtype}, everywhere{at}; "
                             "such values count as zero on CPUs and GPUs. Rescale the weights (the estimates "
                             "depend only on their ratios)")
    return w


def check_data_values(x, sample_weight=None) -> bool:
    """Raise ``ValueError`` naming the datasets that hold NaN or infinite values.

    Values with weight 0 are absent and allowed.  Returns whether ``x`` holds
    any non-finite value at all (then only where the weight is 0); ``True`` when
    that is unknown because ``x`` or ``sample_weight`` is traced.
    """
    if not is_concrete(x, sample_weight):
        return True
    # Reduce where the data live (a GPU, say); only booleans come to the host.
    finite = jnp.isfinite(x)
    if bool(jnp.all(finite)):
        return False
    if sample_weight is not None:
        finite = finite | (sample_weight == 0)
    bad = ~np.asarray(jnp.all(finite, axis=-1))
    if bad.any():
        at = _at_batch(bad, "in datasets at")
        raise ValueError(f"x contains NaN or infinite values{at}; drop them, or pass "
                         "nan_policy='omit' to treat them as absent")
    return True


def _concrete_number(value, name: str, kind=float):
    """``value`` as a Python number, or None when it is traced (unknown until run time)."""
    if isinstance(value, jax.core.Tracer):
        return None
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or (kind is float and np.issubdtype(arr.dtype, np.floating))):
        expected = "a real number" if kind is float else "an integer"
        raise TypeError(f"{name} must be {expected}, got {value!r} of type {type(value).__name__}")
    return arr.item()


def check_accelerate(accelerate) -> None:
    """``accelerate`` is one of the accelerations :func:`jaxgmm.fit` knows."""
    if accelerate not in (None, "squarem"):
        raise ValueError(f"accelerate must be None or 'squarem', got {accelerate!r}")


def check_iteration_args(tol, max_iter) -> None:
    """Range checks for ``tol`` (finite, >= 0) and ``max_iter`` (integer in [0, 2**31))."""
    t = None if tol is None else _concrete_number(tol, "tol")
    if t is not None and not (np.isfinite(t) and t >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if isinstance(max_iter, (float, np.floating)) and float(max_iter).is_integer():
        max_iter = int(max_iter)  # 100.0 is an acceptable way to write 100
    m = _concrete_number(max_iter, "max_iter", kind=int)
    if m is not None and m < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if m is not None and m > np.iinfo(np.int32).max:
        raise ValueError(f"max_iter must be < 2**31, got {max_iter!r}")


def check_scale_floor(scale_floor) -> None:
    f = _concrete_number(scale_floor, "scale_floor")
    if f is not None and not (np.isfinite(f) and 0 <= f < 1):
        raise ValueError(f"scale_floor must be a finite number in [0, 1) (a fraction of the "
                         f"data's standard deviation), got {scale_floor!r}")


def _fill_absent(x, present):
    """``x`` with its absent entries replaced by a present value of the same dataset.

    Absent entries carry weight 0, but their values still pass through the
    E-pass, and a placeholder far outside the data (0 for data near 1e5) lies
    about 1e5 standard deviations from every component: in float32 its log-joint
    terms (about -1e10) round by up to 1e3, their exponential overflows, and 0 *
    inf poisons the sums.  The dataset's largest present value is always within
    its own range (0 where none is present).
    """
    fill = jnp.max(jnp.where(present, x, -jnp.inf), axis=-1, keepdims=True)
    fill = jnp.where(jnp.isfinite(fill), fill, 0)
    return jnp.where(present, x, fill).astype(x.dtype)


def apply_nan_policy(x, sample_weight, nan_policy: str):
    """``"raise"``: reject NaN/inf in ``x``; ``"omit"``: give them weight 0.

    Returns ``(x, sample_weight)``; with ``"omit"`` the non-finite values are
    replaced by a finite value of the same dataset (:func:`_fill_absent`: they
    are absent, but must not poison the sums) and ``sample_weight`` is always an
    array.
    """
    if nan_policy == "raise":
        nonfinite = check_data_values(x, sample_weight)
        if sample_weight is not None and (nonfinite or not is_concrete(sample_weight)
                                          or bool(jnp.any(sample_weight == 0))):
            # Values with weight 0 are absent: whatever they hold (NaN, inf, or a
            # finite value far from the data) must not reach the sums, where
            # 0 * NaN would poison the whole fit.
            x = _fill_absent(x, sample_weight > 0)
        return x, sample_weight
    if nan_policy != "omit":
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    present = jnp.isfinite(x)
    ones = jnp.ones((), x.dtype) if sample_weight is None else sample_weight
    sample_weight = jnp.where(present, ones, 0).astype(x.dtype)
    x = _fill_absent(x, present)
    if is_concrete(sample_weight):
        bad = ~np.any(np.asarray(sample_weight) > 0, axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"x has no finite observation with positive weight{at} "
                             "after nan_policy='omit': nothing to fit")
    return x, sample_weight


def check_batch_shapes(x, sample_weight, init: MixtureParams) -> None:
    """The batch shapes (all axes but the last) of ``x``, ``sample_weight`` and ``init`` must broadcast."""
    shapes = {"x": x.shape[:-1], "init": init.means.shape[:-1]}
    if sample_weight is not None:
        shapes["sample_weight"] = sample_weight.shape[:-1]
    try:
        jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        got = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(
            "batch shapes do not broadcast: x has shape (..., n), init fields (..., K), "
            f"and their leading (batch) axes must broadcast like NumPy's; got batch shapes {got} "
            f"(full shapes: x {x.shape}, init {init.means.shape}"
            + ("" if sample_weight is None else f", sample_weight {sample_weight.shape}") + ")"
        ) from None


def check_enough_observations(x, sample_weight, n_free: int) -> None:
    """Raise when a dataset has fewer observations (with positive weight) than free parameters."""
    if sample_weight is None:
        n = x.shape[-1]
        if n < n_free:
            raise ValueError(f"x has n={n} observations (last axis of shape {x.shape}), fewer "
                             f"than the {n_free} free parameters of the model; fix some "
                             "parameters or use fewer components")
        return
    if not is_concrete(sample_weight):
        return
    counts = np.sum(np.asarray(sample_weight) > 0, axis=-1)
    bad = counts < n_free
    if bad.any():
        at = _at_batch(bad, "in datasets at")
        raise ValueError(f"too few observations with positive weight{at}: "
                         f"{int(np.min(counts))} < {n_free} free parameters of the model; "
                         "fix some parameters or use fewer components")
