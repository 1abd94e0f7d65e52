"""Saving and loading fitted parameters and results: NumPy ``.npz``, never pickle.

A file holds one array per leaf (``weights``, ``means``, ``scales`` for a
:class:`MixtureParams`, ``weights``, ``means``, ``covariances`` for a
:class:`MultivariateParams`; ``params.weights`` ... ``converged`` for a
:class:`FitResult` of either) and one metadata entry, ``__jaxgmm__``: a JSON string (a
NumPy unicode array, so it loads with ``allow_pickle=False``) holding the format
name and version, the jaxgmm version that wrote it, the kind of object, its
float dtype, the model (fixed masks and ``equal_scales``) where the result
carries one, each array's dtype and shape, and a SHA-256 checksum of the arrays.
Loading checks all of it, so a foreign ``.npz``, a file from a newer format, or
one whose arrays were changed after saving is refused with a message saying
which.  Arrays come back as NumPy arrays with their saved dtype and bits (a
float64 file stays float64 whatever JAX's x64 setting); every jaxgmm function
accepts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import IO, Union

import numpy as np

from ._mv_params import MultivariateParams, MvSpec
from ._params import FitResult, MixtureParams

FORMAT = "jaxgmm"
FORMAT_VERSION = 1
META_KEY = "__jaxgmm__"

PathLike = Union[str, "os.PathLike[str]", IO[bytes]]
_MODEL_FIELDS = ("fixed_weights", "fixed_means", "fixed_scales", "equal_scales")
_MV_MODEL_FIELDS = ("fixed_weights", "fixed_means", "fixed_covariances", "covariance_type")
# The parameter types a file can hold, by the name stored as its "params" entry.
_PARAMS = {"MixtureParams": MixtureParams, "MultivariateParams": MultivariateParams}


def _version() -> str:
    from . import __version__

    return __version__


def _leaves(obj) -> dict:
    """``{name: array}`` for parameters or a FitResult (model excluded)."""
    if isinstance(obj, tuple(_PARAMS.values())):
        return {name: np.asarray(value) for name, value in zip(obj._fields, obj)}
    out = {f"params.{name}": np.asarray(value) for name, value in zip(obj.params._fields, obj.params)}
    for name in ("loglik", "n_iter", "status", "converged"):
        out[name] = np.asarray(getattr(obj, name))
    return out


def _checksum(arrays: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _model_of(obj):
    """The result's static model (a ModelSpec-like NamedTuple), or ``None``."""
    model = obj.model if isinstance(obj, FitResult) else None
    if model is None:
        return None
    if isinstance(model, MvSpec):
        return {name: (list(getattr(model, name)) if name != "covariance_type" else model.covariance_type)
                for name in _MV_MODEL_FIELDS}
    return {name: (list(getattr(model, name)) if name != "equal_scales" else bool(model.equal_scales))
            for name in _MODEL_FIELDS}


def save(path: PathLike, obj: Union[MixtureParams, MultivariateParams, FitResult]) -> None:
    """Save a :class:`MixtureParams`, :class:`MultivariateParams` or
    :class:`FitResult` to ``path`` (``.npz``).

    Args:
      path: a file name (written exactly as given: no ``.npz`` is appended) or a
        binary file object.
      obj: the parameters or result, any batch shape, as JAX or NumPy arrays.

    The arrays are stored bit for bit; a result's ``model`` (fixed masks and
    ``equal_scales``, or the covariance type), where it has one, is stored in
    the metadata.  Read it back with :func:`load`.
    """
    if isinstance(obj, tuple(_PARAMS.values())):
        kind = params_kind = type(obj).__name__
    elif isinstance(obj, FitResult):
        kind, params_kind = "FitResult", type(obj.params).__name__
        if params_kind not in _PARAMS:
            raise TypeError(f"save: the result's params are a {params_kind}, not parameters jaxgmm fits")
    else:
        raise TypeError(f"save takes a jaxgmm.MixtureParams, MultivariateParams or FitResult, "
                        f"got {type(obj).__name__}")
    arrays = _leaves(obj)
    for name, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"{kind}.{name} holds Python objects, not numbers; cannot save it")
    weights = arrays["params.weights" if kind == "FitResult" else "weights"]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxgmm_version": _version(),
        "kind": kind,
        "params": params_kind,
        "dtype": weights.dtype.name,
        "model": _model_of(obj),
        "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()},
        "sha256": _checksum(arrays),
    }
    payload = dict(arrays)
    payload[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    if hasattr(path, "write"):
        np.savez(path, **payload)
    else:
        with open(os.fspath(path), "wb") as f:
            np.savez(f, **payload)


def _read(path: PathLike) -> dict:
    where = getattr(path, "name", path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{where!s} is not a jaxgmm file (not a readable .npz without pickled "
                         f"objects): {err}") from None


def _meta(entries: dict, where) -> dict:
    if META_KEY not in entries:
        raise ValueError(f"{where!s} is not a jaxgmm file: it has no {META_KEY!r} metadata entry "
                         f"(arrays found: {sorted(entries)})")
    try:
        meta = json.loads(str(entries.pop(META_KEY)))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{where!s}: the jaxgmm metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{where!s} is not a jaxgmm file: metadata format "
                         f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{where!s}: the jaxgmm metadata has no integer format_version")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where!s} was written by jaxgmm {meta.get('jaxgmm_version')} in file format version "
            f"{version}; this jaxgmm ({_version()}) reads format versions up to {FORMAT_VERSION}: "
            "upgrade jaxgmm to read it")
    return meta


def _check_arrays(entries: dict, meta: dict, where) -> None:
    expected = meta.get("arrays", {})
    if set(expected) != set(entries):
        raise ValueError(f"{where!s}: the arrays {sorted(entries)} do not match those the metadata "
                         f"lists {sorted(expected)}: the file was modified after saving")
    for name, spec in expected.items():
        a = entries[name]
        if a.dtype.str != spec.get("dtype") or list(a.shape) != spec.get("shape"):
            raise ValueError(f"{where!s}: array {name!r} has dtype {a.dtype.str} and shape "
                             f"{a.shape}, the metadata says {spec}: the file was modified after saving")
    if _checksum(entries) != meta.get("sha256"):
        raise ValueError(f"{where!s}: the arrays' checksum does not match the metadata: the file "
                         "was modified after saving (or is damaged)")


def _model_from(meta: dict, where):
    model = meta.get("model")
    if model is None:
        return None
    from ._spec import ModelSpec

    try:
        if "covariance_type" in model:
            return MvSpec(*(tuple(bool(b) for b in model[n]) for n in _MV_MODEL_FIELDS[:3]),
                          str(model["covariance_type"]))
        return ModelSpec(*(tuple(bool(b) for b in model[n]) for n in _MODEL_FIELDS[:3]),
                         bool(model["equal_scales"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{where!s}: the saved model is malformed ({err})") from None


def load(path: PathLike) -> Union[MixtureParams, MultivariateParams, FitResult]:
    """Load what :func:`save` wrote: a :class:`MixtureParams`,
    :class:`MultivariateParams` or :class:`FitResult`.

    Arrays come back as NumPy arrays, bit-identical to those saved; a result
    gets its ``model`` back (``None`` if it had none).

    Raises:
      ValueError: the file is not a jaxgmm ``.npz`` (no metadata, pickled
        objects, not a zip), comes from a newer file format or a kind of object
        this version does not know, or its arrays were changed after saving
        (their checksum, names, dtypes or shapes disagree with the metadata).
    """
    where = getattr(path, "name", path)
    entries = _read(path)
    meta = _meta(entries, where)
    _check_arrays(entries, meta, where)
    kind = meta.get("kind")
    # Files written before multivariate parameters existed name no "params".
    params_type = _PARAMS.get(meta.get("params", "MixtureParams"))
    if kind in _PARAMS or (kind == "FitResult" and params_type is not None):
        fields = _PARAMS[kind]._fields if kind in _PARAMS else tuple(f"params.{f}" for f in params_type._fields)
        missing = [f for f in fields if f not in entries]
        if missing:
            raise ValueError(f"{where!s}: the metadata says {kind} but the arrays {missing} are missing: "
                             "the file was modified after saving")
    if kind in _PARAMS:
        return _PARAMS[kind](*(entries[name] for name in _PARAMS[kind]._fields))
    if kind == "FitResult" and params_type is not None:
        params = params_type(*(entries[f"params.{name}"] for name in params_type._fields))
        arrays = (entries[name] for name in ("loglik", "n_iter", "status", "converged"))
        return FitResult(params, *arrays, model=_model_from(meta, where))
    raise ValueError(f"{where!s}: unknown kind of jaxgmm object {kind!r} with params {meta.get('params')!r} "
                     "(this jaxgmm reads MixtureParams, MultivariateParams and FitResult)")
