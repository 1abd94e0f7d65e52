"""Checks at the public boundary.

Shapes and dtypes are checked always (they are static, even under ``jit``).
Values are checked only when they are concrete: inside a user's ``jit``/``vmap``
they are tracers, raising is impossible, and the per-fit ``status`` reports
problems instead.  Messages name the argument, what was expected and what was
found, and for batches the offending dataset indices.
"""

from __future__ import annotations

import numbers

import numpy as np

import jax
import jax.numpy as jnp

from ._checks import check_bool as check_bool  # re-exported: most callers import it from here
from ._mv_params import MultivariateParams
from ._params import FitResult, MixtureParams
from ._spec import make_spec
from ._xla import top_level


def is_concrete(*arrays) -> bool:
    """Whether value checks can run on ``arrays``: none is traced, and no
    function is being traced (under a user's ``jit``, even a closed-over
    concrete array turns into a tracer as soon as a ``jnp`` check touches it)."""
    if not top_level():
        return False
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays))


def to_device(arr):
    """A host array as a JAX array, by ``jax.device_put``; JAX arrays and tracers
    as they are.

    ``jnp.asarray`` of a NumPy array runs a small jitted copy, compiled anew for
    every shape: for data that was one more program per dataset length (and its
    memory mappings, see ``jaxgmm/_buckets.py``).  ``device_put`` compiles
    nothing; the dtype is canonicalised on the host first (float64 to float32
    unless x64 is on), as ``jnp.asarray`` would.
    """
    if not isinstance(arr, np.ndarray):
        return jnp.asarray(arr)
    return jax.device_put(arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype), copy=False))


def array_module(*arrays):
    """``(xp, arrays)``: NumPy and NumPy views of ``arrays`` where all are
    concrete and live in host memory (CPU devices), else ``jax.numpy`` and the
    arrays as they are.  Value checks on host data then run in NumPy, compiling
    nothing per shape, while data on an accelerator are reduced where they live
    (only booleans come back).  :func:`to_device` brings either result back."""
    if not is_concrete(*arrays):
        return jnp, list(arrays)
    out = []
    for a in arrays:
        if isinstance(a, jax.Array):
            if any(d.platform != "cpu" for d in a.sharding.device_set):
                return jnp, list(arrays)
            a = np.asarray(a)
        out.append(a)
    return np, out


def _first_indices(mask: np.ndarray, limit: int = 5) -> str:
    idx = [tuple(int(i) for i in t) if len(t) > 1 else int(t[0]) for t in zip(*np.nonzero(mask))]
    more = f" (and {len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{idx[:limit]}{more}"


def _at_batch(bad: np.ndarray, where: str = "at") -> str:
    """`` at batch indices [...]`` naming the offending datasets ("" for one dataset)."""
    return "" if bad.ndim == 0 else f" {where} batch indices {_first_indices(bad)}"


# --------------------------------------------------------------------------- #
# Host conversion: JAX never sees an integer it would wrap
# --------------------------------------------------------------------------- #
# Without x64, JAX keeps integers as int32: int64 data near 3e9 wrapped mod 2**32
# to -1.29e9, int64 weights of 2**32 + 1 acted as 1, and Python ints beyond int32
# raised an OverflowError that named nothing.  So every input that is not already
# a JAX array is turned into a NumPy float array here, on the host, first.


def default_float():
    """JAX's default float dtype: float32, or float64 when x64 is enabled."""
    return jnp.dtype(jnp.result_type(float))


def data_float_dtype(dt):
    """The float dtype a computation on values of dtype ``dt`` uses.

    float32 and float64 keep their width (float64 becomes float32 unless x64 is
    on, as JAX does); float16/bfloat16 are too coarse for EM's sums and become
    float32; integers, booleans and extended precision (``np.longdouble``)
    become JAX's default float.
    """
    if jnp.issubdtype(dt, jnp.floating):
        size = jnp.dtype(dt).itemsize
        if size < 4:
            return jnp.dtype(jnp.float32)
        if size <= 8:
            return jnp.dtype(jax.dtypes.canonicalize_dtype(dt))
    return default_float()


def _pandas_numeric(value):
    """A pandas object of nullable numeric dtypes (``Int64``, ``Float64``,
    ``boolean``, Arrow numbers) as a float NumPy array with NaN for ``pd.NA``;
    ``None`` for anything else (NumPy-backed pandas objects convert exactly with
    ``np.asarray``).  pandas is never imported."""
    if not type(value).__module__.startswith("pandas"):
        return None
    dt = getattr(value, "dtype", None)  # Series, Index, arrays; a DataFrame has dtypes
    dts = [dt] if dt is not None else list(getattr(value, "dtypes", []))
    if not dts or all(isinstance(d, np.dtype) for d in dts):
        return None
    if not all(getattr(d, "kind", "O") in "biuf" for d in dts):
        return None  # strings, categories: np.asarray gives objects, rejected below
    single = all(getattr(d, "kind", "") == "f" and getattr(d, "itemsize", 8) == 4 for d in dts)
    return value.to_numpy(dtype=np.float32 if single else np.float64, na_value=np.nan)


def _object_to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of real numbers (e.g. Python ints beyond int64) as float64."""
    for v in arr.flat:
        if not isinstance(v, numbers.Real):
            kind = type(v).__name__
            hint = ("numeric strings are not parsed: convert them first, e.g. np.asarray(..., dtype=float)"
                    if isinstance(v, (str, bytes)) else
                    "use NaN for a missing value (nan_policy='omit' treats it as absent)"
                    if v is None or kind == "NAType" else "pass real numbers")
            raise TypeError(f"{name} must hold real numbers, got {kind} {v!r} in an array of "
                            f"Python objects; {hint}")
    try:
        return arr.astype(np.float64)
    except OverflowError:
        raise ValueError(f"{name} holds an integer too large for float64 (largest "
                         f"{np.finfo(np.float64).max:.3g}); rescale it") from None


def host_array(value, name: str):
    """``value`` as a NumPy array before JAX sees it; JAX arrays and tracers as they are.

    pandas nullable numeric columns become floats with NaN for ``pd.NA``; object
    arrays of real numbers (Python ints of any size) become float64; object
    arrays holding anything else (strings, ``None``) and ragged lists are a
    ``TypeError`` naming ``name``.  The dtype is left to the caller's check.
    """
    if isinstance(value, (jax.Array, jax.core.Tracer)):
        return value
    if isinstance(value, (list, tuple)) and any(
            isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value)):
        return jnp.asarray(value)  # e.g. [p, 1 - p] with p traced: stacked by JAX
    converted = _pandas_numeric(value)
    if converted is not None:
        return converted
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as err:  # ragged lists, say
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}: {err}") from None
    if arr.dtype == object:
        arr = _object_to_float(arr, name)
    return arr


def to_float(arr, name: str, dtype):
    """``arr`` (from :func:`host_array`) as the float ``dtype``.

    Host arrays are converted by NumPy (integers round to the nearest float,
    never wrap); a finite value that overflows the target (float64 or
    longdouble data beyond 3.4e38 in float32) is a ``ValueError`` naming
    ``name``, not an infinity that ``nan_policy`` would then drop or reject as
    "NaN or infinite".  JAX arrays and tracers are cast by JAX.
    """
    dtype = jnp.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    if not isinstance(arr, np.ndarray):
        return jnp.asarray(arr).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(dtype)
    if jnp.issubdtype(arr.dtype, jnp.floating) and not np.all(np.isfinite(out)):
        lost = np.isfinite(arr) & ~np.isfinite(out)
        if lost.any():
            x64 = "" if dtype.itemsize >= 8 else ", or enable float64 (JAX_ENABLE_X64=1)"
            raise ValueError(f"{name} holds {arr[lost].flat[0]!s}, beyond the range of {dtype} "
                             f"(largest {np.finfo(dtype).max:.3g}): rescale it{x64}")
    return out


def _dtype_of(value):
    """The dtype of ``value`` as :func:`host_array` would give it (``None`` if it cannot)."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array, jax.core.Tracer)):
        return np.dtype(value.dtype)
    try:
        return host_array(value, "value").dtype
    except (TypeError, ValueError):
        return None  # the caller's own check raises with the argument's name


def float_dtype_for(*arrays):
    """The float dtype a computation on ``arrays`` follows: the first float input's.

    Integer or boolean inputs are converted to JAX's default float dtype (float32
    unless x64 is enabled).  Complex inputs are rejected.
    """
    for a in arrays:
        dt = _dtype_of(a)
        if dt is not None and jnp.issubdtype(dt, jnp.floating):
            return data_float_dtype(dt)
    return default_float()


def _check_real(dt, name: str, what: str = "real numbers") -> None:
    """``TypeError`` unless ``dt`` is a real number (or boolean) dtype."""
    if jnp.issubdtype(dt, jnp.complexfloating):
        got = f"complex dtype {dt}" if what == "real-valued" else f"dtype {dt}"
        raise TypeError(f"{name} must be {what}, got {got}")
    if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or dt == np.bool_):
        hint = (" (strings are not parsed as numbers: convert them first, e.g. "
                "np.asarray(..., dtype=float))" if dt.kind in "US" else "")
        raise TypeError(f"{name} must be numeric, got dtype {dt}{hint}")


def float_observations(x, name: str = "x"):
    """``x`` converted on the host to a float JAX array (the conversions of
    :func:`as_data`, for data of any shape); parameters passed as data are an
    error."""
    if isinstance(x, (MixtureParams, MultivariateParams)):
        raise TypeError(f"{name} must be an array of observations, got {type(x).__name__}")
    arr = host_array(x, name)
    _check_real(arr.dtype, name, "real-valued")
    return to_device(to_float(arr, name, data_float_dtype(arr.dtype)))


def as_data(x, name: str = "x"):
    """Validate and convert data of shape ``(..., n)`` to a float array.

    Integers and booleans (of any size: Python ints beyond int64, too) are
    converted on the host to JAX's default float; float16/bfloat16 become
    float32; ``np.longdouble`` the default float; pandas nullable columns
    floats with NaN for ``pd.NA`` (``nan_policy`` then applies).
    """
    x = float_observations(x, name)
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape (..., n) with at least one axis, got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has no observations: shape {x.shape} (the last axis is n)")
    return x


def as_params(params, dtype, name: str = "init") -> MixtureParams:
    """Validate a :class:`MixtureParams`, cast it to ``dtype`` and broadcast its fields.

    Fields are converted on the host like data (integers of any size round to
    the nearest float, never wrap); concrete values are checked by
    :func:`check_param_values`.
    """
    if not isinstance(params, MixtureParams):
        raise TypeError(f"{name} must be a jaxgmm.MixtureParams, got {type(params).__name__}")
    fields = []
    for fname, value in zip(MixtureParams._fields, params):
        arr = host_array(value, f"{name}.{fname}")
        _check_real(arr.dtype, f"{name}.{fname}")
        if arr.ndim < 1:
            raise ValueError(f"{name}.{fname} must have shape (..., K), got a scalar")
        fields.append(jnp.asarray(to_float(arr, f"{name}.{fname}", dtype)))
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


def _got(values, bad) -> str:
    """``, got [...]``: the first offending row, as found."""
    return ", got " + str([float(f"{v:.6g}") for v in (values[bad][0] if values.ndim > 1 else values)])


def check_weight_values(w: np.ndarray, name: str = "init") -> None:
    """Raise ``ValueError`` for mixing weights (``(..., K)``) outside the simplex."""
    tol = _sum_tolerance(w.dtype)
    bad = ~np.all(np.isfinite(w) & (w >= 0) & (w <= 1), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.weights must lie in [0, 1]{_at_batch(bad)}{_got(w, bad)}")
    bad = np.abs(w.sum(-1) - 1) > tol * w.shape[-1]
    if bad.any():
        raise ValueError(f"{name}.weights must sum to 1 (within {tol:g} per component), "
                         f"got sums {np.unique(w.sum(-1)[bad])[:5]}{_at_batch(bad)}")


def check_param_values(params: MixtureParams, name: str = "init") -> None:
    """Raise ``ValueError`` for weights outside the simplex or bad scales."""
    w = np.asarray(params.weights)
    s = np.asarray(params.scales)
    m = np.asarray(params.means)
    check_weight_values(w, name)
    bad = ~np.all(np.isfinite(m), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.means must be finite{_at_batch(bad)}{_got(m, bad)}")
    bad = ~np.all(np.isfinite(s) & (s > 0), axis=-1)
    if bad.any():
        raise ValueError(f"{name}.scales must be positive and finite{_at_batch(bad)}{_got(s, bad)}")


def as_sample_weight(sample_weight, x, *, something_to_fit: bool = True):
    """Validate observation weights against data ``x``; returns an array or None.

    Converted on the host like data (int64 weights of 2**32 + 1 wrapped to 1).
    ``something_to_fit`` (for fits and starts): a dataset whose weights are all
    zero, or all below the smallest normal float, is an error; the
    log-likelihood and the EM steps take them (a sum of nothing).
    """
    if sample_weight is None:
        return None
    w = host_array(sample_weight, "sample_weight")
    _check_real(w.dtype, "sample_weight")
    if w.ndim < 1 or w.shape[-1] != x.shape[-1]:
        raise ValueError(f"sample_weight must have shape (..., n) with n={x.shape[-1]} "
                         f"matching x of shape {x.shape}, got shape {w.shape}")
    try:
        jnp.broadcast_shapes(w.shape[:-1], x.shape[:-1])
    except ValueError:
        raise ValueError(f"sample_weight batch shape {w.shape[:-1]} does not broadcast "
                         f"with x batch shape {x.shape[:-1]}") from None
    w = to_device(to_float(w, "sample_weight", x.dtype))
    if is_concrete(w):
        wn = np.asarray(w)
        bad = ~np.all(np.isfinite(wn) & (wn >= 0), axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"sample_weight must be finite and non-negative{at}")
        if not something_to_fit:
            return w
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
    xp, (x, sample_weight) = array_module(x, sample_weight)
    finite = xp.isfinite(x)
    if bool(xp.all(finite)):
        return False
    if sample_weight is not None:
        finite = finite | (sample_weight == 0)
    bad = ~np.asarray(xp.all(finite, axis=-1))
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


def _fill_absent(x, present, xp=jnp):
    """``x`` with its absent entries replaced by a present value of the same dataset.

    Absent entries carry weight 0, but their values still pass through the
    E-pass, and a placeholder far outside the data (0 for data near 1e5) lies
    about 1e5 standard deviations from every component: in float32 its log-joint
    terms (about -1e10) round by up to 1e3, their exponential overflows, and 0 *
    inf poisons the sums.  The dataset's largest present value is always within
    its own range (0 where none is present).
    """
    fill = xp.max(xp.where(present, x, -np.inf), axis=-1, keepdims=True)
    fill = xp.where(xp.isfinite(fill), fill, 0)
    return xp.where(present, x, fill).astype(x.dtype)


def apply_nan_policy(x, sample_weight, nan_policy: str):
    """``"raise"``: reject NaN/inf in ``x``; ``"omit"``: give them weight 0.

    Returns ``(x, sample_weight)``; with ``"omit"`` the non-finite values are
    replaced by a finite value of the same dataset (:func:`_fill_absent`: they
    are absent, but must not poison the sums) and ``sample_weight`` is always an
    array.
    """
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    if nan_policy == "raise":
        nonfinite = check_data_values(x, sample_weight)
        if sample_weight is None:
            return x, None
        xp, (hx, hw) = array_module(x, sample_weight)
        if nonfinite or not is_concrete(sample_weight) or bool(xp.any(hw == 0)):
            # Values with weight 0 are absent: whatever they hold (NaN, inf, or a
            # finite value far from the data) must not reach the sums, where
            # 0 * NaN would poison the whole fit.
            x = to_device(_fill_absent(hx, hw > 0, xp))
        return x, sample_weight
    xp, (x, sample_weight) = array_module(x, sample_weight)
    present = xp.isfinite(x)
    ones = xp.ones((), x.dtype) if sample_weight is None else sample_weight
    sample_weight = xp.where(present, ones, 0).astype(x.dtype)
    x = _fill_absent(x, present, xp)
    if is_concrete(sample_weight):
        bad = ~np.any(np.asarray(sample_weight) > 0, axis=-1)
        if bad.any():
            at = _at_batch(bad)
            raise ValueError(f"x has no finite observation with positive weight{at} "
                             "after nan_policy='omit': nothing to fit")
    return to_device(x), to_device(sample_weight)


def check_batch_shapes(x, sample_weight, init: MixtureParams, name: str = "init") -> None:
    """The batch shapes (all axes but the last) of ``x``, ``sample_weight`` and
    ``init`` (called ``name`` in the message) must broadcast."""
    shapes = {"x": x.shape[:-1], name: init.means.shape[:-1]}
    if sample_weight is not None:
        shapes["sample_weight"] = sample_weight.shape[:-1]
    try:
        jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        got = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(
            f"batch shapes do not broadcast: x has shape (..., n), {name} fields (..., K), "
            f"and their leading (batch) axes must broadcast like NumPy's; got batch shapes {got} "
            f"(full shapes: x {x.shape}, {name} {init.means.shape}"
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


# --------------------------------------------------------------------------- #
# Options and counts
# --------------------------------------------------------------------------- #
def as_count(value, name: str, minimum: int = 1) -> int:
    """A Python int in ``[minimum, 2**31)`` from an integer ``value`` (``3.0`` counts as 3).

    Counts set shapes and loop lengths at trace time, so a traced value is a
    ``TypeError`` too.
    """
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete integer (it sets a shape), got a traced value")
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = int(value)  # Python ints of any size
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        number = int(value)  # 100.0 is an acceptable way to write 100
    else:
        number = _concrete_number(value, name, kind=int)
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if number > np.iinfo(np.int32).max:
        raise ValueError(f"{name} must be an integer < 2**31, got {value!r}")
    return int(number)


def check_key(key, name: str = "key") -> None:
    """``key`` is one ``jax.random`` key: a typed key of shape ``()`` or a raw
    ``uint32`` key (``jax.random.PRNGKey``)."""
    dt = getattr(key, "dtype", None)
    if dt is not None and jnp.issubdtype(dt, jax.dtypes.prng_key):
        if jnp.shape(key) != ():
            raise ValueError(f"{name} must be a single key, got a key array of shape {jnp.shape(key)}; "
                             "one key draws every start (split it yourself for separate calls)")
        return
    if dt is not None and np.dtype(dt) == np.uint32 and jnp.ndim(key) == 1:
        return
    raise TypeError(f"{name} must be a jax.random key, e.g. jax.random.key(0), got "
                    f"{type(key).__name__}" + ("" if dt is None else f" of dtype {dt}"))


def check_equal_fixed_scales(params: MixtureParams, spec, name: str = "init") -> None:
    """With ``equal_scales`` and every scale fixed, the fixed scales must be equal.

    Otherwise one of the two options would be ignored (the fixed values won,
    unequal).  Equal fixed scales are consistent: one common scale, known.
    Equal means to a few ulps of the dtype (values that are equal as written
    but computed differently pass).  Checked only for concrete ``params``.
    """
    if not (spec.equal_scales and all(spec.fixed_scales)) or spec.n_components < 2:
        return
    if not is_concrete(params.scales):
        return
    s = np.asarray(params.scales)
    spread = np.max(s, -1) - np.min(s, -1)
    bad = spread > 4 * np.finfo(s.dtype).eps * np.max(np.abs(s), -1)
    if np.any(bad):
        first = s[bad][0] if s.ndim > 1 else s
        raise ValueError(
            f"equal_scales=True asks for one common scale, but fixed holds the scales at unequal "
            f"values {name}.scales = {[float(f'{v:.6g}') for v in first]}{_at_batch(bad)}; pass "
            "equal scales, or drop equal_scales (fixed scales are not estimated), or free the scales")


def check_best_of_axis(result, axis) -> None:
    """``best_of(result, axis)`` needs a :class:`FitResult` with a restarts axis ``axis``.

    Shapes only, so it can run inside ``jit`` too.
    """
    if not isinstance(result, FitResult):
        raise TypeError(f"result must be a jaxgmm.FitResult, got {type(result).__name__}")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r} of type {type(axis).__name__}")
    shape = jnp.shape(result.status)
    if not shape:
        raise ValueError("best_of picks the best of several fits along an axis of starts, but result "
                         "is one fit (batch shape ()); fit a stack of starts, e.g. "
                         "init_params(key, x, K, n_starts=10)")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for a result of batch shape {shape}")


# --------------------------------------------------------------------------- #
# The EM steps: e_step, m_step, log_likelihood
# --------------------------------------------------------------------------- #
def _sum_tolerance(dtype) -> float:
    """Per-component tolerance on sums that must be 1 (weights, responsibilities)."""
    return 1e-4 if jnp.dtype(dtype).itemsize <= 4 else 1e-10


def as_step_args(x, params, sample_weight=None, *, func: str, one_dataset: bool = False):
    """Checks and host conversion for ``e_step`` and ``log_likelihood`` (``func``).

    ``x`` as data, ``params`` and ``sample_weight`` in the float dtype of the
    inputs (the widest float among them, ints counting as none); concrete
    ``params`` must be a valid mixture (:func:`check_param_values`: weights in
    [0, 1] summing to 1, finite means, positive finite scales) and concrete
    weights finite and non-negative.  Traced values (inside ``jit``/``vmap``)
    cannot raise and are passed as they are.  ``one_dataset``: the fields must
    have shape ``(K,)`` (``vmap`` for batches of parameters).

    Returns ``(x, params, sample_weight)``.
    """
    x = as_data(x)
    dts = [_dtype_of(f) for f in (params if isinstance(params, MixtureParams) else ())]
    dtype = jnp.result_type(x.dtype, *(data_float_dtype(d) for d in dts
                                       if d is not None and jnp.issubdtype(d, jnp.floating)))
    x = x.astype(dtype)
    params = as_params(params, dtype, name="params")
    if one_dataset and params.means.ndim != 1:
        raise ValueError(f"{func} works on one set of parameters: params fields must have shape (K,), "
                         f"got {params.means.shape}; use jax.vmap for a batch")
    sample_weight = as_sample_weight(sample_weight, x, something_to_fit=False)
    check_batch_shapes(x, sample_weight, params, name="params")
    return x, params, sample_weight


def as_m_step_args(x, resp, params, sample_weight=None, fixed=(), equal_scales=False):
    """Checks and host conversion for ``m_step``: :func:`as_step_args` for one
    dataset ``x`` of shape ``(n,)``, and responsibilities ``resp`` of shape
    ``(n, K)``, which when concrete must be finite, in [0, 1], and sum to 1 in
    every row with positive weight (within the weights' tolerance); rows of
    weight 0 are absent and not checked.  ``fixed``/``equal_scales`` must be a
    consistent model (:func:`check_equal_fixed_scales`).

    Returns ``(x, resp, params, sample_weight)``.
    """
    x, params, sample_weight = as_step_args(x, params, sample_weight, func="m_step", one_dataset=True)
    if x.ndim != 1 or (sample_weight is not None and sample_weight.shape != x.shape):
        got = x.shape if x.ndim != 1 else f"{x.shape} and sample_weight {sample_weight.shape}"
        raise ValueError(f"m_step works on one dataset: x and sample_weight must have shape (n,), got "
                         f"{got}; use jax.vmap for a batch")
    k = params.means.shape[-1]
    check_equal_fixed_scales(params, make_spec(fixed, k, equal_scales), name="params")
    r = host_array(resp, "resp")
    _check_real(r.dtype, "resp")
    resp = jnp.asarray(to_float(r, "resp", x.dtype))
    if resp.shape != x.shape + (k,):
        raise ValueError(f"resp must have shape (n, K) = {x.shape + (k,)} for x of shape {x.shape} and "
                         f"{k} components, got {resp.shape}")
    if is_concrete(resp, sample_weight):
        rn = np.asarray(resp)
        rows = np.ones(x.shape, bool) if sample_weight is None else np.asarray(sample_weight) > 0
        bad = rows & ~np.all(np.isfinite(rn) & (rn >= 0) & (rn <= 1), axis=-1)
        if bad.any():
            raise ValueError(f"resp must lie in [0, 1] (probabilities), got {rn[bad][0].tolist()} in rows "
                             f"{_first_indices(bad)}")
        tol = _sum_tolerance(x.dtype)
        bad = rows & (np.abs(rn.sum(-1) - 1) > tol * k)
        if bad.any():
            raise ValueError(f"resp rows must sum to 1 (within {tol:g} per component), got sums "
                             f"{np.unique(rn.sum(-1)[bad])[:5]} in rows {_first_indices(bad)}")
    return x, resp, params, sample_weight
