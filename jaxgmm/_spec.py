"""Turning the user's ``fixed=`` / ``equal_scales=`` into a static :class:`ModelSpec`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import jax
import numpy as np

from ._checks import check_bool
from ._params import MixtureParams


class ModelSpec(NamedTuple):
    """Static (trace-time) description of which parameters EM may change.

    Each ``fixed_*`` is a tuple of ``K`` Python bools; ``equal_scales`` ties all
    scales to one common value.  Hashable, so it can be a static jit argument,
    and registered as a *static* pytree (no leaves), so a :class:`FitResult`
    carries its model through ``jit``, ``vmap`` and ``tree_map`` unchanged.
    """

    fixed_weights: tuple
    fixed_means: tuple
    fixed_scales: tuple
    equal_scales: bool = False

    @property
    def n_components(self) -> int:
        return len(self.fixed_weights)

    @property
    def scales_free(self) -> bool:
        """Whether the M-step changes any scale (and so needs second moments)."""
        return not all(self.fixed_scales)

    @classmethod
    def free(cls, n_components: int, equal_scales: bool = False) -> "ModelSpec":
        f = (False,) * n_components
        return cls(f, f, f, equal_scales)


jax.tree_util.register_static(ModelSpec)

FIELDS = MixtureParams._fields


def make_spec(fixed, n_components: int, equal_scales: bool = False) -> ModelSpec:
    """Parse ``fixed`` into per-component boolean tuples.

    ``fixed`` may be:
      * ``None`` or ``()``: everything estimated;
      * a field name or an iterable of field names, e.g. ``"scales"`` or
        ``("weights", "scales")``: those whole fields held at their initial values;
      * a :class:`MixtureParams` of booleans, each field a bool or ``K`` bools,
        e.g. ``MixtureParams(weights=False, means=[True, False], scales=False)``.

    Raises:
      ValueError: unknown field names, masks of the wrong length, or
        ``equal_scales`` combined with only some scales fixed.
      TypeError: ``fixed`` of an unsupported type, or ``equal_scales`` not a
        bool (``"no"`` would otherwise mean True).

    ``equal_scales=True`` with every scale fixed is allowed here (the values
    are not known yet); the fixed scales must then be equal, which
    :func:`jaxgmm._validate.check_equal_fixed_scales` checks against the values.
    """
    equal_scales = check_bool(equal_scales, "equal_scales")
    k = int(n_components)
    if isinstance(fixed, MixtureParams):
        masks = {}
        for name, value in zip(FIELDS, fixed):
            arr = np.asarray(value)
            if arr.dtype != np.bool_:
                raise TypeError(
                    f"fixed.{name} must hold booleans, got dtype {arr.dtype}")
            if arr.ndim == 0:
                arr = np.full((k,), bool(arr))
            if arr.shape != (k,):
                raise ValueError(
                    f"fixed.{name} must be a bool or have shape ({k},) to match the "
                    f"{k} components of init, got shape {arr.shape}")
            masks[name] = tuple(bool(b) for b in arr)
    else:
        if fixed is None:
            names = ()
        elif isinstance(fixed, str):
            names = (fixed,)
        elif isinstance(fixed, Iterable):
            names = tuple(fixed)
        else:
            raise TypeError(
                "fixed must be a field name, a sequence of field names or a "
                f"MixtureParams of booleans, got {type(fixed).__name__}")
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise ValueError(
                f"unknown name(s) in fixed: {unknown}; expected some of {list(FIELDS)}")
        masks = {name: (name in names,) * k for name in FIELDS}
    fixed_scales = masks["scales"]
    if equal_scales and any(fixed_scales) and not all(fixed_scales):
        raise ValueError(
            "equal_scales=True ties all scales together, so the scales must be either "
            f"all fixed or all free; got fixed scales {list(fixed_scales)}")
    return ModelSpec(masks["weights"], masks["means"], fixed_scales, bool(equal_scales))


def n_free_parameters(spec: ModelSpec) -> int:
    """Number of free parameters (for AIC/BIC) under the constraints of ``spec``.

    Free weights lose one degree of freedom to the sum-to-one constraint; equal
    scales count once.
    """
    free_w = spec.fixed_weights.count(False)
    n = max(free_w - 1, 0)
    n += spec.fixed_means.count(False)
    free_s = spec.fixed_scales.count(False)
    n += min(free_s, 1) if spec.equal_scales else free_s
    return n
