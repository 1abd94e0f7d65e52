"""The bootstrap of one fitted dataset, all replicates of a chunk in one compiled call.

Replicate ``b`` uses ``fold_in(key, b)``: nonparametric replicates resample the
observations as multinomial counts used as observation weights (the data are
stored once, not once per replicate); parametric replicates simulate ``n`` new
observations from the estimate. Every replicate refits from the estimate, and
its components are aligned to it (``jaxgmm/_align.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

import jax

from . import _validate
from ._align import admissible_permutations, align, permute
from ._em import ModelSpec
from ._fit import DEFAULT_MAX_ITER, fit
from ._inference import mv_model_spec, normal_quantile
from ._mv_bootstrap import mv_bootstrap
from ._mv_params import MultivariateParams
from ._masks import spec_mask
from ._params import FitResult, MixtureParams, Status
from ._resample import loop_kwargs, resampled_weights
from ._results import np_params
from ._runner import as_key, auto_chunk, check_count, concatenate, run_chunks
from ._simulate import sample
from ._spec import make_spec
from ._xla import jit


class _BootDesign(NamedTuple):
    spec: ModelSpec
    kind: str
    tol: Optional[float]
    max_iter: int
    perms: tuple
    accelerate: Optional[str] = None


def _boot_chunk(key, lo, hi, x, sample_weight, estimate, design: _BootDesign):
    spec = design.spec
    mask = spec_mask(spec)
    # Bootstrap replicates stay below 2**32 (check_count), so the low word is the index.
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(lo)
    n = x.shape[-1]
    fit_kw = dict(fixed=mask, equal_scales=spec.equal_scales, **loop_kwargs(design))
    if design.kind == "nonparametric":
        res = fit(x, estimate, sample_weight=resampled_weights(keys, n, x.dtype, sample_weight), **fit_kw)
    else:
        xb = jax.vmap(lambda k: sample(k, estimate, n))(keys)
        res = fit(xb, estimate, **fit_kw)
    perm = align(res.params, estimate, design.perms)
    return dict(estimates=permute(res.params, perm), status=res.status, n_iter=res.n_iter)


_boot_chunk_jit = jit(_boot_chunk, static_argnames=("design",))


@dataclass
class BootstrapResult:
    """Output of :func:`bootstrap`.

    Attributes:
      estimate: the estimate the bootstrap was run around (fields ``(K,)``).
      estimates: replicate estimates, fields ``(n_boot, K)``, aligned to
        ``estimate``.
      status, n_iter: ``(n_boot,)``.
      se: bootstrap standard errors (SD of the converged replicates, ``ddof=1``);
        0 for fixed entries.
      lower, upper: percentile intervals at ``level`` from the converged replicates.
      level, kind: as requested.
    """

    estimate: MixtureParams
    estimates: MixtureParams
    status: np.ndarray
    n_iter: np.ndarray
    se: MixtureParams
    lower: MixtureParams
    upper: MixtureParams
    level: float
    kind: str

    @property
    def converged(self) -> np.ndarray:
        return self.status == Status.CONVERGED


def bootstrap(
    key,
    x,
    estimate,
    n_boot: int = 1000,
    *,
    kind: str = "nonparametric",
    fixed=(),
    equal_scales: bool = False,
    sample_weight=None,
    level: float = 0.95,
    tol: Optional[float] = None,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: Optional[str] = None,
    chunk_size: Optional[int] = None,
    progress: Optional[bool] = None,
    covariance_type: Optional[str] = None,
) -> BootstrapResult:
    """Bootstrap standard errors and percentile intervals for one fitted dataset.

    Every replicate refits the model from the original estimate (as mixtools'
    ``boot.se`` does), all replicates of a chunk in one compiled call.

    Args:
      key: key or seed; replicate ``b`` uses ``fold_in(key, b)``.
      x: the data, shape ``(n,)``.
      estimate: the fit (:class:`FitResult` or :class:`MixtureParams`, fields ``(K,)``).
      n_boot: number of bootstrap replicates (at most 2**32).
      kind: ``"nonparametric"`` resamples the observations with replacement
        (implemented as multinomial counts used as observation weights);
        ``"parametric"`` simulates ``n`` new observations from ``estimate``.
      fixed, equal_scales, tol, max_iter, accelerate: the model and the
        iteration, as in :func:`jaxgmm.fit`.
      sample_weight: observation weights of the original fit (nonparametric
        only: resampled observations keep their weights).
      level: coverage of the percentile intervals.
      chunk_size, progress: as in :func:`monte_carlo`.
      covariance_type: for a multivariate estimate (a :class:`MultivariateParams`
        or its :class:`FitResult`, with ``x`` of shape ``(n, D)``): the model's
        covariance type; ``None`` takes a result's (``"full"`` for plain
        parameters), as in :func:`jaxgmm.standard_errors`.  A result's
        ``fixed`` entries are kept unless ``fixed`` is given.

    Returns:
      :class:`BootstrapResult`; for a multivariate estimate its parameter fields
      are :class:`MultivariateParams` (replicates' estimates ``(n_boot, K)``,
      ``(n_boot, K, D)``, ``(n_boot, K, D, D)``), with SE 0 for the entries the
      model does not estimate (fixed ones, off-diagonals of ``"diag"`` and
      ``"spherical"`` models).
    """
    if kind not in ("nonparametric", "parametric"):
        raise ValueError(f"kind must be 'nonparametric' or 'parametric', got {kind!r}")
    n_boot = check_count(n_boot, "n_boot", maximum=2 ** 32)
    normal_quantile(level)  # validates level
    params = estimate.params if isinstance(estimate, FitResult) else estimate
    if isinstance(params, MultivariateParams):
        _validate.check_iteration_args(tol, max_iter)
        _validate.check_accelerate(accelerate)
        spec = mv_model_spec(estimate, np.shape(params.weights)[-1], None if fixed in ((), None) else fixed,
                             covariance_type, True if equal_scales else None)
        est, status, n_iter, known, point = mv_bootstrap(
            key, x, params, spec, n_boot, kind=kind, sample_weight=sample_weight, tol=tol,
            max_iter=max_iter, accelerate=accelerate, chunk_size=chunk_size, progress=progress)
        return _result(point, est, status, n_iter, known, level, kind)
    if covariance_type is not None:
        raise ValueError(f"covariance_type={covariance_type!r} applies to multivariate estimates (a "
                         "MultivariateParams or its FitResult), got a univariate one")
    x = _validate.as_data(x)
    if x.ndim != 1:
        raise ValueError(f"bootstrap takes one dataset x of shape (n,), got shape {x.shape}")
    params = _validate.as_params(params, x.dtype, name="estimate")
    if params.means.ndim != 1:
        raise ValueError(f"estimate must have fields of shape (K,), got {params.means.shape}")
    w = _validate.as_sample_weight(sample_weight, x)
    if w is not None and kind == "parametric":
        raise ValueError("sample_weight is only supported by the nonparametric bootstrap")
    _validate.check_data_values(x, w)
    _validate.check_iteration_args(tol, max_iter)
    _validate.check_accelerate(accelerate)
    spec = make_spec(fixed, params.means.shape[-1], equal_scales)
    _validate.check_equal_fixed_scales(params, spec, name="estimate")
    n = x.shape[-1]
    chunk = auto_chunk(n, n_boot, 1) if chunk_size is None else min(check_count(chunk_size, "chunk_size"), n_boot)
    design = _BootDesign(spec, kind, None if tol is None else float(tol), int(max_iter),
                         admissible_permutations(params, spec), accelerate)
    key = as_key(key)
    run = functools.partial(_boot_chunk_jit, x=x, sample_weight=w, estimate=params, design=design)
    pieces = []
    run_chunks(run, key, 0, n_boot, chunk, progress=progress, desc="jaxgmm bootstrap",
               consume=lambda start, piece: pieces.append(piece))
    out = concatenate(pieces)
    # Fixed entries (and a weight pinned by the constraint) do not vary: SE 0.
    return _result(np_params(params), np_params(out["estimates"]), out["status"], out["n_iter"],
                   spec_mask(spec), level, kind)


def _result(estimate, est, status, n_iter, known, level: float, kind: str) -> BootstrapResult:
    """The :class:`BootstrapResult` of replicates ``est`` (either family's params
    type): SDs and percentile intervals of the converged ones; SE 0 where the
    mask ``known`` (broadcast to each field) is set."""
    ok = status == Status.CONVERGED
    alpha = (1.0 - level) / 2.0
    kind_of = type(est)

    def stat(fn):
        def one(f):
            a = np.asarray(f, np.float64)[ok]
            return fn(a) if a.shape[0] > 1 else np.full(a.shape[1:], np.nan)
        return kind_of(*(one(f) for f in est))

    sd = stat(lambda a: a.std(axis=0, ddof=1))
    se = kind_of(*(np.where(np.asarray(m), 0.0, v) for v, m in zip(sd, known)))
    lower = stat(lambda a: np.quantile(a, alpha, axis=0))
    upper = stat(lambda a: np.quantile(a, 1.0 - alpha, axis=0))
    return BootstrapResult(estimate, est, status, n_iter, se, lower, upper, float(level), kind)
