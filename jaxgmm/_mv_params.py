"""Containers and the static model description of the multivariate family.

``MultivariateParams`` is a plain NamedTuple pytree at natural shapes: weights
``(K,)``, means ``(K, D)``, covariances ``(K, D, D)`` (full matrices whatever the
covariance type; a diagonal model simply holds diagonal matrices).  Batch axes
are leading axes added by ``vmap``/broadcasting.  Constructors validate nothing
(that would break ``vmap``); :func:`make_mv_spec` checks the static ``fixed=``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

import jax

Array = Any

# scikit-learn's names; mclust's VVV, VVI, VII, EEE.
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


class MultivariateParams(NamedTuple):
    """Parameters of a ``D``-dimensional Gaussian mixture with ``K`` components.

    Attributes:
      weights: mixing proportions, shape ``(..., K)``, non-negative, summing to 1.
      means: component means, shape ``(..., K, D)``.
      covariances: component covariance matrices, shape ``(..., K, D, D)``, full
        symmetric matrices whatever the covariance type (for ``"tied"`` all ``K``
        are equal, for ``"diag"`` diagonal, for ``"spherical"`` multiples of the
        identity).

    The same type holding booleans (each field a bool or ``K`` bools) is the
    per-component mask of ``fixed=``.
    """

    weights: Array
    means: Array
    covariances: Array


class MvSpec(NamedTuple):
    """Static (trace-time, hashable) description of which parameters EM may change.

    Each ``fixed_*`` is a tuple of ``K`` Python bools; ``covariance_type`` is one
    of :data:`COVARIANCE_TYPES`.  The masks may also be boolean arrays of shape
    ``(K,)`` (e.g. traced, so that one compiled program serves every mask); the
    M-step then takes its general path, skipping no work.
    """

    fixed_weights: tuple
    fixed_means: tuple
    fixed_covariances: tuple
    covariance_type: str = "full"

    @property
    def n_components(self) -> int:
        return len(self.fixed_weights)

    @property
    def covariances_free(self) -> bool:
        """Whether the M-step may change a covariance (and so needs second moments)."""
        return not all_set(self.fixed_covariances)

    @classmethod
    def free(cls, n_components: int, covariance_type: str = "full") -> "MvSpec":
        f = (False,) * int(n_components)
        return cls(f, f, f, covariance_type)


# Static (no leaves), as ModelSpec: a FitResult carries its model through
# jit, vmap and tree_map untouched.
jax.tree_util.register_static(MvSpec)

FIELDS = MultivariateParams._fields


def all_set(mask) -> bool:
    """Whether a static mask (a tuple of bools) has every entry set; False for an
    array mask, whose entries may be traced."""
    return isinstance(mask, tuple) and all(mask)


def make_mv_spec(fixed, n_components: int, covariance_type: str = "full") -> MvSpec:
    """Parse ``fixed`` into a :class:`MvSpec`.

    ``fixed`` may be ``None``/``()`` (all free), a field name or an iterable of
    field names (``"covariances"``, ``("weights", "means")``), or a
    :class:`MultivariateParams` of booleans, each field a bool or ``K`` bools,
    e.g. ``MultivariateParams(False, [True, False], False)`` for one known mean.

    Raises:
      ValueError: an unknown covariance type or field name, a mask of the wrong
        length, or ``"tied"`` with only some covariances fixed (one shared matrix
        is either known or estimated).
      TypeError: ``fixed`` of an unsupported type or a mask not of booleans.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    k = int(n_components)
    if isinstance(fixed, MultivariateParams):
        masks = {}
        for name, value in zip(FIELDS, fixed):
            arr = np.asarray(value)
            if arr.dtype != np.bool_:
                raise TypeError(f"fixed.{name} must hold booleans, got dtype {arr.dtype}")
            if arr.ndim == 0:
                arr = np.full((k,), bool(arr))
            if arr.shape != (k,):
                raise ValueError(
                    f"fixed.{name} must be a bool or have shape ({k},) to match the {k} "
                    f"components of init, got shape {arr.shape}")
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
                "fixed must be a field name, a sequence of field names or a MultivariateParams "
                f"of booleans, got {type(fixed).__name__}")
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise ValueError(f"unknown name(s) in fixed: {unknown}; expected some of {list(FIELDS)}")
        masks = {name: (name in names,) * k for name in FIELDS}
    fixed_cov = masks["covariances"]
    if covariance_type == "tied" and any(fixed_cov) and not all(fixed_cov):
        raise ValueError(
            "covariance_type='tied' shares one covariance among all components, so the covariances "
            f"must be either all fixed or all free; got fixed covariances {list(fixed_cov)}")
    return MvSpec(masks["weights"], masks["means"], fixed_cov, covariance_type)


def n_covariance_parameters(covariance_type: str, n_components: int, dim: int) -> int:
    """Free covariance parameters of ``K`` components in ``D`` dimensions (all free)."""
    k, d = int(n_components), int(dim)
    return {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k,
            "tied": d * (d + 1) // 2}[covariance_type]


def mv_n_free_parameters(spec: MvSpec, dim: int) -> int:
    """Number of free parameters (for AIC/BIC) under ``spec`` in ``D = dim`` dimensions.

    Free weights lose one degree of freedom to the sum-to-one constraint; a
    free mean counts ``D``; a free covariance its type's entries
    (:func:`n_covariance_parameters` per component; a tied matrix once).
    """
    d = int(dim)
    free_w = list(spec.fixed_weights).count(False)
    n = max(free_w - 1, 0) + d * list(spec.fixed_means).count(False)
    free_c = list(spec.fixed_covariances).count(False)
    if spec.covariance_type == "tied":
        return n + (n_covariance_parameters("tied", 1, d) if free_c else 0)
    return n + n_covariance_parameters(spec.covariance_type, free_c, d)
