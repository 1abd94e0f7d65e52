"""The bootstrap of one fitted multivariate dataset (``x`` of shape ``(n, D)``).

The univariate design (``jaxgmm/_bootstrap.py``) with the multivariate family:
replicate ``b`` uses ``fold_in(key, b)``; a nonparametric replicate resamples the
rows as multinomial counts used as observation weights (the data are stored
once), a parametric one simulates ``n`` new rows from the estimate; every
replicate refits from the estimate with the same covariance type and fixed
entries, and its components are aligned to the estimate (``_align.mv_align``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import numpy as np

import jax

from . import _mv_em, _mv_validate, _validate
from ._align import mv_admissible_permutations, mv_align, mv_permute
from ._fit import fit
from ._mv_distributions import inputs
from ._mv_inference import known_entries
from ._mv_params import MultivariateParams, MvSpec
from ._resample import loop_kwargs, resampled_weights
from ._runner import as_key, auto_chunk, check_count, concatenate, run_chunks
from ._xla import jit


class MvBootDesign(NamedTuple):
    spec: MvSpec
    kind: str
    tol: Optional[float]
    max_iter: int
    perms: tuple
    accelerate: Optional[str] = None


def _mask(spec: MvSpec) -> MultivariateParams:
    return MultivariateParams(tuple(spec.fixed_weights), tuple(spec.fixed_means), tuple(spec.fixed_covariances))


def _boot_chunk(key, lo, hi, x, sample_weight, estimate, design: MvBootDesign):
    spec = design.spec
    # Bootstrap replicates stay below 2**32 (check_count), so the low word is the index.
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(lo)
    n = x.shape[-2]
    fit_kw = dict(fixed=_mask(spec), covariance_type=spec.covariance_type, **loop_kwargs(design))
    if design.kind == "nonparametric":
        res = fit(x, estimate, sample_weight=resampled_weights(keys, n, x.dtype, sample_weight), **fit_kw)
    else:
        xb = jax.vmap(lambda k: _mv_em.sample(k, estimate, n))(keys)
        res = fit(xb, estimate, **fit_kw)
    perm = mv_align(res.params, estimate, design.perms)
    return dict(estimates=mv_permute(res.params, perm), status=res.status, n_iter=res.n_iter)


_boot_chunk_jit = jit(_boot_chunk, static_argnames=("design",))


def mv_bootstrap(key, x, estimate: MultivariateParams, spec: MvSpec, n_boot: int, *, kind: str, sample_weight,
                 tol, max_iter: int, accelerate, chunk_size, progress):
    """:func:`jaxgmm.bootstrap` for a multivariate estimate (arguments checked by
    the caller except the data's and the estimate's shapes); returns the fields of
    a :class:`jaxgmm.BootstrapResult`: the replicates' aligned estimates, statuses
    and iterations, the mask of entries with SE 0, and the estimate as NumPy."""
    x, params = inputs(x, estimate, name="x")
    if x.ndim != 2 or params.weights.ndim != 1:
        raise ValueError(f"bootstrap takes one dataset x of shape (n, D) and an estimate with weights (K,), got x "
                         f"of shape {x.shape} and weights {params.weights.shape}")
    w = _validate.as_sample_weight(sample_weight, _mv_validate.rows_of(x))
    if w is not None and kind == "parametric":
        raise ValueError("sample_weight is only supported by the nonparametric bootstrap")
    x, w = _mv_validate.apply_mv_nan_policy(x, w, "raise")
    _mv_validate.check_mv_structure(params, spec, name="estimate")
    n, dim = x.shape
    chunk = (auto_chunk(n * dim, n_boot, 1) if chunk_size is None
             else min(check_count(chunk_size, "chunk_size"), n_boot))
    design = MvBootDesign(spec, kind, None if tol is None else float(tol), int(max_iter),
                          mv_admissible_permutations(params, spec), accelerate)
    run = functools.partial(_boot_chunk_jit, x=x, sample_weight=w, estimate=params, design=design)
    pieces = []
    run_chunks(run, as_key(key), 0, n_boot, chunk, progress=progress, desc="jaxgmm bootstrap",
               consume=lambda start, piece: pieces.append(piece))
    out = concatenate(pieces)
    est = MultivariateParams(*(np.asarray(f) for f in out["estimates"]))
    # Entries the model does not estimate (fixed ones, a pinned weight, the
    # off-diagonals of diag and spherical models) have SE exactly 0.
    return est, out["status"], out["n_iter"], known_entries(spec, dim), \
        MultivariateParams(*(np.asarray(f) for f in params))
