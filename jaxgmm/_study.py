"""Monte Carlo studies of the EM estimators, and the bootstrap.

A study simulates ``reps`` datasets of size ``n`` from a true mixture, fits each
one, computes observed-information standard errors, aligns the components to the
truth and summarises bias, spread and coverage.  The work runs in chunks of
replicates, each chunk one compiled call, so memory stays bounded whatever
``reps`` is.

Reproducibility: replicate ``r`` uses the key ``jax.random.fold_in(key, r)``
(split once into a data key and a start key), so its data and its fit do not
depend on the chunk size, on which chunk it falls in, or on ``reps``: the first
100 replicates of a 10,000-replicate study are those of a 100-replicate study.

Label switching: the likelihood does not change when components are relabelled,
so an estimate may come back with its components in another order than the
truth.  Each replicate's components are permuted to the *admissible*
permutation that minimises

    sum_k ((mu_hat[p(k)] - mu_k)^2 + (sigma_hat[p(k)] - sigma_k)^2) / tau^2
          + (pi_hat[p(k)] - pi_k)^2,

where ``tau`` is the standard deviation of the true mixture.  A permutation is
admissible when it maps the model onto itself: it only exchanges components
whose fixed entries hold the same values (with the textbook example's known,
unequal scales no relabelling is admissible, so none is done; with everything
free all ``K!`` are).  The permutation applied is kept in ``.permutation``.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence

import numpy as np

import jax
import jax.numpy as jnp

from . import _validate
from ._em import ModelSpec
from ._fit import DEFAULT_MAX_ITER, best_of, fit
from ._inference import normal_quantile, standard_errors
from ._init import METHODS, init_params
from ._params import Array, FitResult, MixtureParams, Status
from ._simulate import sample
from ._spec import make_spec
from ._xla import jit

FIELDS = MixtureParams._fields
_SYMBOL = {"weights": "pi", "means": "mu", "scales": "sigma"}

# Elements of simulated data per chunk when the chunk size is automatic: on CPU
# 2**24 float32 values (64 MiB, a few times that with the fit's and the Hessian's
# temporaries); accelerators get 4 times more, to keep them busy.
_AUTO_CHUNK_ELEMENTS = 2 ** 24
_AUTO_CHUNK_ELEMENTS_ACCELERATOR = 2 ** 26


# --------------------------------------------------------------------------- #
# Helpers shared by studies, the bootstrap and the command line
# --------------------------------------------------------------------------- #
def as_key(key) -> Array:
    """A ``jax.random`` key from a key or an integer seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return key


def spec_mask(spec: ModelSpec) -> MixtureParams:
    """The spec's fixed masks as a :class:`MixtureParams` of bool tuples (hashable)."""
    return MixtureParams(tuple(spec.fixed_weights), tuple(spec.fixed_means), tuple(spec.fixed_scales))


def free_mask(spec: ModelSpec, all_weights: bool = False) -> MixtureParams:
    """Which entries are free coordinates of the model (the rows of a summary).

    As in :func:`jaxgmm.n_parameters`: of ``F >= 2`` free weights the first
    ``F - 1`` (the last is one minus the others; ``all_weights=True`` lists it
    too), none when ``F = 1``; with ``equal_scales`` only the first scale, the
    others being the same number.
    """
    free_w = [k for k, f in enumerate(spec.fixed_weights) if not f]
    listed = free_w if (all_weights and len(free_w) >= 2) else free_w[:-1]
    weights = tuple(k in listed for k in range(spec.n_components))
    means = tuple(not f for f in spec.fixed_means)
    if spec.equal_scales:
        scales = tuple((not f) and k == 0 for k, f in enumerate(spec.fixed_scales))
    else:
        scales = tuple(not f for f in spec.fixed_scales)
    return MixtureParams(weights, means, scales)


def impose_fixed(start: MixtureParams, values: MixtureParams, spec: ModelSpec) -> MixtureParams:
    """Set the fixed entries of ``start`` (any batch shape) to ``values`` (shape ``(K,)``).

    Free weights are rescaled to share the mass the fixed weights leave.
    """
    fw, fm, fs = (jnp.asarray(m) for m in spec_mask(spec))
    means = jnp.where(fm, values.means, start.means)
    scales = jnp.where(fs, values.scales, start.scales)
    weights = start.weights
    if any(spec.fixed_weights):
        mass = 1.0 - jnp.sum(jnp.where(fw, values.weights, 0.0))
        free_sum = jnp.sum(jnp.where(fw, 0.0, start.weights), axis=-1, keepdims=True)
        weights = jnp.where(fw, values.weights, start.weights * mass / free_sum)
    return MixtureParams(weights, means, scales)


def admissible_permutations(truth: MixtureParams, spec: ModelSpec) -> tuple:
    """Permutations of the components that map the constrained model onto itself.

    ``truth`` holds concrete ``(K,)`` values. Components ``j`` and ``k`` may be
    exchanged only if, field by field, both are free or both are fixed at the
    same value. For ``K > 7`` only the identity and the sort by mean are tried.
    """
    k = spec.n_components
    masks = spec_mask(spec)
    values = [np.asarray(v, np.float64) for v in truth]

    def signature(j):
        return tuple((bool(m[j]), float(v[j]) if m[j] else None) for m, v in zip(masks, values))

    sigs = [signature(j) for j in range(k)]
    if k > 7:
        return (tuple(range(k)),)
    return tuple(p for p in itertools.permutations(range(k))
                 if all(sigs[p[j]] == sigs[j] for j in range(k)))


def _mixture_sd(p: MixtureParams) -> Array:
    mean = jnp.sum(p.weights * p.means, -1, keepdims=True)
    return jnp.sqrt(jnp.sum(p.weights * (jnp.square(p.scales) + jnp.square(p.means - mean)), -1))


def align(estimates: MixtureParams, target: MixtureParams, perms: tuple) -> Array:
    """Index ``(..., K)`` of the admissible permutation closest to ``target``.

    ``estimates`` have batch axes in front, ``target`` is one mixture; apply the
    result with :func:`permute`. See the module docstring for the distance.
    """
    tau = _mixture_sd(target)
    p = jnp.asarray(perms, jnp.int32)  # (P, K)
    pick = lambda f: jnp.take(f, p, axis=-1)  # (..., P, K)
    cost = (jnp.sum(jnp.square(pick(estimates.means) - target.means), -1) / tau ** 2
            + jnp.sum(jnp.square(pick(estimates.scales) - target.scales), -1) / tau ** 2
            + jnp.sum(jnp.square(pick(estimates.weights) - target.weights), -1))
    cost = jnp.where(jnp.isnan(cost), jnp.inf, cost)
    return p[jnp.argmin(cost, axis=-1)]


def permute(params: MixtureParams, perm: Array) -> MixtureParams:
    return MixtureParams(*(jnp.take_along_axis(f, perm, axis=-1) for f in params))


def _auto_chunk(n: int, reps: int, starts: int) -> int:
    budget = _AUTO_CHUNK_ELEMENTS if jax.default_backend() == "cpu" else _AUTO_CHUNK_ELEMENTS_ACCELERATOR
    return int(max(1, min(reps, budget // max(1, n * max(1, starts)))))


def _device_name() -> str:
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", "") or ""
    return f"{d.platform}" + (f" ({kind})" if kind and kind.lower() != d.platform else "")


def _run_chunks(compiled, key, total: int, chunk: int, progress, desc: str, first: int = 0):
    """Run ``compiled(key, indices)`` over replicates ``first .. first + total - 1``
    in ``ceil(total/chunk)`` chunks; NumPy outputs.

    The last chunk is padded to the full chunk size (one compiled shape) and the
    padding dropped. The next chunk is dispatched before the previous one is
    copied back, so the device never waits on the host.
    """
    from tqdm import tqdm

    starts = range(first, first + total, chunk)
    show = (len(starts) > 1) if progress is None else bool(progress)
    bar = tqdm(total=total, desc=desc, unit="fit", disable=None if show else True, leave=False)
    pieces, pending = [], None

    def collect(item):
        out, count = item
        host = jax.tree_util.tree_map(lambda a: np.asarray(a)[:count], out)
        pieces.append(host)
        bar.update(count)

    try:
        for s in starts:
            idx = jnp.arange(s, s + chunk, dtype=jnp.uint32)
            out = compiled(key, idx)
            if pending is not None:
                collect(pending)
            pending = (out, min(chunk, first + total - s))
        collect(pending)
    finally:
        bar.close()
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *pieces)


# --------------------------------------------------------------------------- #
# One chunk of a Monte Carlo study
# --------------------------------------------------------------------------- #
class _Design(NamedTuple):
    """Static description of a study (hashable: a jit static argument)."""

    n: int
    spec: ModelSpec
    init: str  # "truth", "given", or an init_params method
    n_starts: int
    tol: Optional[float]
    max_iter: int
    perms: tuple
    compute_se: bool
    accelerate: Optional[str] = None


def _replicate_keys(key, idx):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
    split = jax.vmap(jax.random.split)(keys)
    return split[:, 0], split[:, 1]


def _simulate(key, idx, truth, n):
    data_keys, _ = _replicate_keys(key, idx)
    return jax.vmap(lambda k: sample(k, truth, n))(data_keys)


def _study_chunk(key, idx, truth, given, design: _Design):
    spec = design.spec
    mask = spec_mask(spec)
    data_keys, start_keys = _replicate_keys(key, idx)
    x = jax.vmap(lambda k: sample(k, truth, design.n))(data_keys)  # (c, n)
    fit_kw = dict(fixed=mask, equal_scales=spec.equal_scales, max_iter=design.max_iter,
                  accelerate=design.accelerate)
    if design.tol is not None:
        fit_kw["tol"] = design.tol
    if design.init in ("truth", "given"):
        start = truth if design.init == "truth" else given
        res = fit(x, start, **fit_kw)
    else:
        k = spec.n_components
        starts = jax.vmap(lambda kk, xi: init_params(kk, xi, k, method=design.init,
                                                     n_starts=design.n_starts))(start_keys, x)
        starts = jax.tree_util.tree_map(lambda f: jnp.moveaxis(f, 1, 0), starts)  # (R, c, K)
        starts = impose_fixed(starts, truth, spec)
        res = best_of(fit(x, starts, **fit_kw), axis=0)
    if design.compute_se:
        se = standard_errors(x, res, fixed=mask, equal_scales=spec.equal_scales)
    else:
        se = jax.tree_util.tree_map(lambda f: jnp.full_like(f, jnp.nan), res.params)
    perm = align(res.params, truth, design.perms)
    return dict(
        estimates=permute(res.params, perm),
        se=permute(se, perm),
        loglik=res.loglik,
        n_iter=res.n_iter,
        status=res.status,
        permutation=perm,
    )


_study_chunk_jit = jit(_study_chunk, static_argnames=("design",))


def _struct(tree):
    """Hashable shape/dtype description of a pytree of arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(a.shape), a.dtype) for a in leaves)


@functools.lru_cache(maxsize=32)
def _compiled_chunk(design: _Design, chunk: int, key_s, truth_s, given_s, mesh=None):
    """Ahead-of-time compiled chunk (so compile time is measured apart from run
    time), cached per design and shapes so that repeated studies do not recompile.

    With a ``mesh``, the chunk's replicates are split over its devices with
    ``shard_map``: each device simulates and fits its own share, with its own
    while-loops, and nothing is communicated until the results come back.
    """
    abstract = lambda s: jax.tree_util.tree_unflatten(s[0], [jax.ShapeDtypeStruct(sh, dt) for sh, dt in s[1]])
    idx = jax.ShapeDtypeStruct((chunk,), jnp.uint32)
    if mesh is None:
        chunk_fn = _study_chunk_jit
        return chunk_fn.lower(abstract(key_s), idx, abstract(truth_s), abstract(given_s),
                              design=design).compile()
    from jax.sharding import PartitionSpec as P

    axis = mesh.axis_names[0]
    sharded = jit(jax.shard_map(
        functools.partial(_study_chunk, design=design), mesh=mesh,
        in_specs=(P(), P(axis), P(), P()), out_specs=P(axis), check_vma=False))
    return sharded.lower(abstract(key_s), idx, abstract(truth_s), abstract(given_s)).compile()


def _study_mesh(mesh, devices):
    if mesh is not None and devices is not None:
        raise ValueError("pass either mesh or devices, not both")
    if mesh is not None:
        if len(mesh.axis_names) != 1:
            raise ValueError(f"monte_carlo needs a 1-D mesh, got axes {mesh.axis_names}")
        return mesh
    if devices is None:
        return None
    from ._sharding import batch_mesh

    return batch_mesh(jax.local_devices() if isinstance(devices, str) and devices == "all" else devices)


def _process_share(reps: int) -> tuple[int, int]:
    """This process's contiguous block ``[first, first + count)`` of replicates."""
    per = -(-reps // jax.process_count())
    first = min(reps, jax.process_index() * per)
    return first, min(per, reps - first)


def _gather_processes(out: dict, count: int, reps: int) -> dict:
    """All-gather every process's block of per-replicate outputs, in replicate order."""
    from jax.experimental import multihost_utils

    per = -(-reps // jax.process_count())
    counts = [min(per, max(0, reps - p * per)) for p in range(jax.process_count())]

    def gather(a):
        padded = np.zeros((per,) + a.shape[1:], a.dtype)
        padded[:count] = a
        everyone = np.asarray(multihost_utils.process_allgather(padded))  # (processes, per, ...)
        return np.concatenate([everyone[p, :c] for p, c in enumerate(counts)])

    return jax.tree_util.tree_map(gather, out)


# --------------------------------------------------------------------------- #
# Summaries
# --------------------------------------------------------------------------- #
SUMMARY_COLUMNS = ("true", "mean", "bias", "mcse_bias", "sd", "mean_se", "rmse", "coverage", "converged")
_HEADERS = {"true": "true", "mean": "mean", "bias": "bias", "mcse_bias": "MCSE(bias)",
            "sd": "emp. SD", "mean_se": "mean SE", "rmse": "RMSE", "coverage": "cover95",
            "converged": "conv."}


@dataclass
class Summary:
    """Per-parameter summary of a Monte Carlo study.

    ``names`` labels the rows (``pi_1``, ``mu_2``, ``sigma_1``... 1-based, as in
    the textbook); ``columns`` maps each of :data:`SUMMARY_COLUMNS` (plus any
    extra design columns of a grid) to a NumPy array with one entry per row.
    ``str(summary)`` is a fixed-width table.
    """

    names: list
    columns: dict
    used: int = 0
    reps: int = 0
    level: float = 0.95

    def __len__(self) -> int:
        return len(self.names)

    def row(self, name: str) -> dict:
        """The row of parameter ``name`` as a dict of floats."""
        i = self.names.index(name)
        return {c: v[i].item() if hasattr(v[i], "item") else v[i] for c, v in self.columns.items()}

    def to_dict(self) -> dict:
        return {"rows": [dict(parameter=n, **self.row(n)) for n in self.names],
                "replicates_used": self.used, "replicates": self.reps, "level": self.level}

    def to_csv(self, path) -> None:
        """Write the table as CSV (one row per parameter)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            cols = list(self.columns)
            w.writerow(["parameter"] + cols)
            for i, name in enumerate(self.names):
                w.writerow([name] + [_plain(self.columns[c][i]) for c in cols])

    def __str__(self) -> str:
        cols = list(self.columns)
        heads = ["param"] + [_HEADERS.get(c, c) for c in cols]
        body = []
        for i, name in enumerate(self.names):
            cells = [name]
            for c in cols:
                v = self.columns[c][i]
                if c in ("coverage", "converged"):
                    cells.append(f"{v:.3f}")
                elif c == "bias":
                    cells.append(f"{v:+.5f}")
                elif isinstance(v, (float, np.floating)):
                    cells.append(f"{v:.5f}")
                else:
                    cells.append(str(v))
            body.append(cells)
        widths = [max(len(r[j]) for r in [heads] + body) for j in range(len(heads))]
        fmt = lambda r: "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
        return "\n".join([fmt(heads)] + [fmt(r) for r in body])


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _jsonable(obj):
    """Plain Python values for strict JSON: NaN and infinities become null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    obj = _plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def param_names(k: int) -> MixtureParams:
    return MixtureParams(*([f"{_SYMBOL[f]}_{j + 1}" for j in range(k)] for f in FIELDS))


def summarise(truth: MixtureParams, estimates: MixtureParams, se: MixtureParams,
              status: np.ndarray, free: MixtureParams, *, level: float = 0.95,
              converged_only: bool = True, equal_scales: bool = False) -> Summary:
    """Summary table from per-replicate arrays (see :meth:`MonteCarloResult.summary`)."""
    status = np.asarray(status)
    converged = status == Status.CONVERGED
    use = converged if converged_only else np.ones_like(converged)
    m = int(use.sum())
    z = normal_quantile(level)
    k = len(np.asarray(truth.means))
    names, rows = [], {c: [] for c in SUMMARY_COLUMNS}
    for fname, labels in zip(FIELDS, param_names(k)):
        mask = np.asarray(getattr(free, fname), bool)
        for j in range(k):
            if not mask[j]:
                continue
            label = "sigma" if (fname == "scales" and equal_scales and k > 1) else labels[j]
            t = float(np.asarray(getattr(truth, fname))[j])
            est = np.asarray(getattr(estimates, fname), np.float64)[use, j]
            s = np.asarray(getattr(se, fname), np.float64)[use, j]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = est.mean() if m else np.nan
                sd = est.std(ddof=1) if m > 1 else np.nan
                finite = np.isfinite(s)
                rows["true"].append(t)
                rows["mean"].append(mean)
                rows["bias"].append(mean - t)
                rows["mcse_bias"].append(sd / math.sqrt(m) if m else np.nan)
                rows["sd"].append(sd)
                rows["mean_se"].append(s[finite].mean() if finite.any() else np.nan)
                rows["rmse"].append(np.sqrt(np.mean((est - t) ** 2)) if m else np.nan)
                # A replicate whose SE is not finite counts as not covering
                # (NaN when no replicate has one, e.g. compute_se=False).
                covered = np.mean(finite & (np.abs(est - t) <= z * s)) if (m and finite.any()) else np.nan
                rows["coverage"].append(covered)
                rows["converged"].append(converged.mean())
            names.append(label)
    return Summary(names, {c: np.asarray(v, np.float64) for c, v in rows.items()},
                   used=m, reps=len(status), level=level)


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #
def _np_params(p) -> MixtureParams:
    return MixtureParams(*(np.asarray(f) for f in p))


@dataclass
class MonteCarloResult:
    """Per-replicate output of :func:`monte_carlo`, as NumPy arrays.

    Attributes:
      truth: the true :class:`MixtureParams` (fields ``(K,)``).
      n, reps: sample size and number of replicates.
      estimates: :class:`MixtureParams` with fields ``(reps, K)``, aligned to the
        truth (see the module docstring).
      se: observed-information standard errors, same layout (0 for fixed
        entries, NaN where the information was not positive definite or SEs
        were not computed).
      loglik, n_iter, status: ``(reps,)``; ``converged`` is ``status == CONVERGED``.
      permutation: ``(reps, K)``: estimate component ``permutation[r, k]`` was
        matched to true component ``k``.
      free: which entries are estimated (rows of the summary).
      design: the study's settings (JSON-friendly dict).
      timing: ``compile_s``, ``run_s`` (seconds, compile excluded),
        ``fits_per_s`` (replicates times starts over ``run_s``), ``device``.
    """

    truth: MixtureParams
    n: int
    reps: int
    estimates: MixtureParams
    se: MixtureParams
    loglik: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray
    permutation: np.ndarray
    free: MixtureParams
    design: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)

    @property
    def converged(self) -> np.ndarray:
        return self.status == Status.CONVERGED

    def summary(self, *, level: float = 0.95, converged_only: bool = True,
                all_weights: bool = False) -> Summary:
        """Bias, spread and coverage for every free parameter.

        Columns: ``true``, ``mean`` (mean estimate), ``bias``, ``mcse_bias``
        (its Monte Carlo standard error, ``sd / sqrt(m)``), ``sd`` (empirical SD
        of the estimates), ``mean_se`` (mean estimated SE), ``rmse``,
        ``coverage`` (share of Wald intervals ``est -/+ z se`` at ``level`` that
        contain the truth) and ``converged`` (share of all replicates that
        converged). By default statistics use the ``m`` converged replicates only.

        Rows: the free coordinates (as many as :func:`jaxgmm.n_parameters`
        counts): of the free weights all but the last, which is one minus the
        others (``all_weights=True`` adds it), the free means and the free
        scales (one ``sigma`` row with ``equal_scales``).
        """
        free = self.free
        if all_weights:
            spec = make_spec(MixtureParams(*(np.asarray(self.design["fixed"][f], bool) for f in FIELDS)),
                             len(np.asarray(self.truth.means)), bool(self.design.get("equal_scales")))
            free = free._replace(weights=np.asarray(free_mask(spec, all_weights=True).weights))
        return summarise(self.truth, self.estimates, self.se, self.status, free,
                         level=level, converged_only=converged_only,
                         equal_scales=bool(self.design.get("equal_scales", False)))

    # -- saving --------------------------------------------------------------
    def save(self, path) -> None:
        """Save by extension: ``.npz`` (every array), ``.csv`` (one row per
        replicate: status, iterations, loglik, estimates and SEs) or ``.json``
        (design, timing and the summary table). Read back with ``numpy.load``,
        any CSV reader or ``json.load``.
        """
        path = str(path)
        if path.endswith(".npz"):
            self.to_npz(path)
        elif path.endswith(".csv"):
            self.to_csv(path)
        elif path.endswith(".json"):
            self.to_json(path)
        else:
            raise ValueError(f"unknown file type for {path!r}: use .npz, .csv or .json")

    def to_npz(self, path) -> None:
        arrays = {}
        for prefix, p in (("truth", self.truth), ("estimates", self.estimates), ("se", self.se),
                          ("free", self.free)):
            for fname, v in zip(FIELDS, p):
                arrays[f"{prefix}_{fname}"] = np.asarray(v)
        arrays.update(loglik=self.loglik, n_iter=self.n_iter, status=self.status,
                      permutation=self.permutation, n=np.asarray(self.n), reps=np.asarray(self.reps),
                      design=np.asarray(json.dumps(self.design)), timing=np.asarray(json.dumps(self.timing)))
        np.savez_compressed(path, **arrays)

    def to_csv(self, path) -> None:
        k = len(np.asarray(self.truth.means))
        names = param_names(k)
        cols = [n for f in names for n in f]
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["rep", "status", "n_iter", "loglik"] + cols + [f"se_{c}" for c in cols])
            est = np.concatenate([np.asarray(f) for f in self.estimates], axis=1)
            se = np.concatenate([np.asarray(f) for f in self.se], axis=1)
            for r in range(self.reps):
                w.writerow([r, Status(int(self.status[r])).name, int(self.n_iter[r]), repr(float(self.loglik[r]))]
                           + [repr(float(v)) for v in est[r]] + [repr(float(v)) for v in se[r]])

    def to_json(self, path) -> None:
        doc = {"design": self.design, "timing": self.timing,
               "truth": {f: np.asarray(v).tolist() for f, v in zip(FIELDS, self.truth)},
               "n": self.n, "reps": self.reps,
               "status_counts": {s.name: int(np.sum(self.status == s)) for s in Status},
               "summary": self.summary().to_dict()}
        with open(path, "w") as fh:
            json.dump(_jsonable(doc), fh, indent=2)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def monte_carlo(
    key,
    truth: MixtureParams,
    n: int,
    reps: int,
    *,
    init=None,
    n_starts: int = 10,
    fixed=(),
    equal_scales: bool = False,
    tol: Optional[float] = None,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: Optional[str] = None,
    compute_se: bool = True,
    chunk_size: Optional[int] = None,
    progress: Optional[bool] = None,
    mesh=None,
    devices=None,
    distributed: bool = False,
) -> MonteCarloResult:
    """Monte Carlo study of the EM estimators at sample size ``n``.

    Simulates ``reps`` datasets of size ``n`` from ``truth``, fits each one,
    computes observed-information standard errors, aligns components to the
    truth and returns the per-replicate results; ``.summary()`` gives bias, SD,
    RMSE and Wald coverage of every free parameter.

    Args:
      key: a ``jax.random`` key or an integer seed. Replicate ``r`` uses
        ``fold_in(key, r)``, so results do not depend on ``chunk_size``.
      truth: the true :class:`MixtureParams` (fields ``(K,)``); its dtype (or
        JAX's default float) is the computation's dtype.
      n: observations per dataset.
      reps: number of replicates.
      init: where each fit starts: ``None`` (default) the truth; a
        :class:`MixtureParams` the same start for every replicate; or
        ``"kmeans++"`` / ``"quantile"`` for ``n_starts`` data-driven starts per
        replicate (see :func:`jaxgmm.init_params`), keeping the best by
        :func:`jaxgmm.best_of`. Fixed entries always take the truth's values.
      n_starts: starts per replicate for data-driven ``init``.
      fixed, equal_scales, tol, max_iter: the model and stopping rule, as in
        :func:`jaxgmm.fit`. Fixed values are the truth's.
      accelerate: ``None`` (plain EM) or ``"squarem"``, as in :func:`jaxgmm.fit`:
        for designs where EM is slow (overlapping components); ``n_iter`` then
        counts E-steps.
      compute_se: compute observed-information SEs (needed for the SE and
        coverage columns).
      chunk_size: replicates per compiled call; by default each chunk holds
        about 2**24 simulated numbers on CPU (2**26 on an accelerator), divided
        by ``n_starts`` for data-driven starts.
      progress: show a tqdm progress bar; ``None`` shows one when the study runs
        in more than one chunk (and stderr is a terminal).
      mesh, devices: spread each chunk's replicates over several devices: a 1-D
        :class:`jax.sharding.Mesh`, or a list of devices (``"all"`` for
        ``jax.local_devices()``). The chunk size is rounded up to a multiple of
        the number of devices. Results are those of one device.
      distributed: in a multi-process JAX job (``jax.distributed.initialize``),
        each process runs its own contiguous block of replicates on its local
        devices and the blocks are all-gathered, so every process returns the
        whole study, the same as a one-process run with the same key.

    Returns:
      :class:`MonteCarloResult`.
    """
    n = _check_positive_int(n, "n")
    reps = _check_positive_int(reps, "reps")
    dtype = _validate.float_dtype_for(*truth)
    truth = _validate.as_params(truth, dtype, name="truth")
    if truth.means.ndim != 1:
        raise ValueError(f"truth must describe one mixture (fields of shape (K,)), got shape {truth.means.shape}")
    k = truth.means.shape[-1]
    spec = make_spec(fixed, k, equal_scales)
    given = truth
    if init is None:
        mode, starts = "truth", 1
    elif isinstance(init, MixtureParams):
        given = impose_fixed(_validate.as_params(init, dtype, name="init"), truth, spec)
        if given.means.shape != (k,):
            raise ValueError(f"init must have fields of shape ({k},) like truth, got {given.means.shape}")
        mode, starts = "given", 1
    elif isinstance(init, str) and init in METHODS:
        mode, starts = init, _check_positive_int(n_starts, "n_starts")
    else:
        raise ValueError(f"init must be None, a MixtureParams or one of {METHODS}, got {init!r}")
    _validate.check_iteration_args(tol, max_iter)
    _validate.check_accelerate(accelerate)
    chunk = _auto_chunk(n, reps, starts) if chunk_size is None else min(_check_positive_int(chunk_size, "chunk_size"), reps)
    design = _Design(n=n, spec=spec, init=mode, n_starts=starts if mode not in ("truth", "given") else 1,
                     tol=None if tol is None else float(tol), max_iter=int(max_iter),
                     perms=admissible_permutations(truth, spec),
                     compute_se=bool(compute_se), accelerate=accelerate)
    seed = int(key) if isinstance(key, (int, np.integer)) else None
    key = as_key(key)

    mesh = _study_mesh(mesh, devices)
    if distributed and reps < jax.process_count():
        raise ValueError(f"reps={reps} is fewer than the {jax.process_count()} processes")
    first, count = _process_share(reps) if distributed else (0, reps)
    # Each device of the mesh takes an equal share of a chunk.
    size = 1 if mesh is None else mesh.devices.size
    chunk = -(-min(chunk, count) // size) * size

    t0 = time.perf_counter()
    compiled = _compiled_chunk(design, chunk, _struct(key), _struct(truth), _struct(given), mesh)
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = _run_chunks(lambda kk, idx: compiled(kk, idx, truth, given), key, count, chunk, progress,
                      desc="jaxgmm monte_carlo", first=first)
    if distributed:
        out = _gather_processes(out, count, reps)
    run_s = time.perf_counter() - t1

    free = free_mask(spec)
    design_doc = dict(
        n=n, reps=reps, seed=seed, fixed={f: list(m) for f, m in zip(FIELDS, spec_mask(spec))},
        equal_scales=bool(equal_scales), init=mode if mode != "given" else
        {f: np.asarray(v).tolist() for f, v in zip(FIELDS, given)},
        n_starts=design.n_starts, tol=design.tol, max_iter=design.max_iter, accelerate=accelerate,
        chunk_size=chunk, dtype=str(jnp.dtype(dtype)), compute_se=bool(compute_se))
    timing = dict(compile_s=compile_s, run_s=run_s,
                  fits_per_s=reps * design.n_starts / run_s if run_s > 0 else float("inf"),
                  replicates_per_s=reps / run_s if run_s > 0 else float("inf"),
                  device=_device_name())
    return MonteCarloResult(
        truth=_np_params(truth), n=n, reps=reps,
        estimates=_np_params(out["estimates"]), se=_np_params(out["se"]),
        loglik=out["loglik"], n_iter=out["n_iter"], status=out["status"],
        permutation=out["permutation"], free=MixtureParams(*(np.asarray(m) for m in free)),
        design=design_doc, timing=timing)


def simulate_replicates(key, truth: MixtureParams, n: int, indices) -> Array:
    """Regenerate the simulated data of replicates ``indices`` of a study.

    Returns an array ``(len(indices), n)`` equal to the data
    :func:`monte_carlo` (with the same ``key``, ``truth`` and ``n``) fitted for
    those replicates: for checking an odd replicate or refitting it another way.
    """
    n = _check_positive_int(n, "n")
    dtype = _validate.float_dtype_for(*truth)
    truth = _validate.as_params(truth, dtype, name="truth")
    idx = jnp.asarray(np.asarray(indices, np.uint32).reshape(-1))
    return _simulate_jit(as_key(key), idx, truth, n)


_simulate_jit = jit(_simulate, static_argnums=(3,))


# --------------------------------------------------------------------------- #
# Grids of designs
# --------------------------------------------------------------------------- #
@dataclass
class GridResult:
    """Output of :func:`monte_carlo_grid`: one :class:`MonteCarloResult` per design point.

    ``points[i]`` is ``{"truth": t, "n": n}`` (``t`` indexes the ``truths``
    given) and ``results[i]`` its study.
    """

    points: list
    results: list

    def summary(self, **kwargs) -> Summary:
        """All studies' summaries stacked, with ``truth`` and ``n`` columns in front."""
        names, cols, used, reps = [], {}, 0, 0
        for point, res in zip(self.points, self.results):
            s = res.summary(**kwargs)
            names += s.names
            for c, v in [("truth", np.full(len(s), point["truth"])), ("n", np.full(len(s), point["n"]))] + list(s.columns.items()):
                cols.setdefault(c, []).append(np.asarray(v))
            used += s.used
            reps += s.reps
        return Summary(names, {c: np.concatenate(v) for c, v in cols.items()}, used=used, reps=reps)


def monte_carlo_grid(key, truths, ns: Sequence[int], reps: int, **kwargs) -> GridResult:
    """Run :func:`monte_carlo` over every pair of a true mixture and a sample size.

    Args:
      key: key or seed; the study of ``(truths[t], n)`` uses
        ``fold_in(fold_in(key, t), n)``, so adding design points leaves the others
        unchanged.
      truths: a :class:`MixtureParams` or a sequence of them (e.g. means moved
        apart to vary the separation).
      ns: sample sizes.
      reps: replicates per design point.
      **kwargs: passed to :func:`monte_carlo`.
    """
    key = as_key(key)
    if isinstance(truths, MixtureParams):
        truths = [truths]
    points, results = [], []
    for t, truth in enumerate(truths):
        for n in ns:
            sub = jax.random.fold_in(jax.random.fold_in(key, t), int(n))
            points.append({"truth": t, "n": int(n)})
            results.append(monte_carlo(sub, truth, int(n), reps, **kwargs))
    return GridResult(points, results)


# --------------------------------------------------------------------------- #
# Bootstrap
# --------------------------------------------------------------------------- #
class _BootDesign(NamedTuple):
    spec: ModelSpec
    kind: str
    tol: Optional[float]
    max_iter: int
    perms: tuple
    accelerate: Optional[str] = None


def _boot_chunk(key, idx, x, sample_weight, estimate, design: _BootDesign):
    spec = design.spec
    mask = spec_mask(spec)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
    n = x.shape[-1]
    fit_kw = dict(fixed=mask, equal_scales=spec.equal_scales, max_iter=design.max_iter,
                  accelerate=design.accelerate)
    if design.tol is not None:
        fit_kw["tol"] = design.tol
    if design.kind == "nonparametric":
        # Resampling n observations with replacement = multinomial counts as weights:
        # the data are stored once, not once per replicate.
        def counts(k):
            pick = jax.random.randint(k, (n,), 0, n)
            return jnp.zeros((n,), x.dtype).at[pick].add(1.0)

        w = jax.vmap(counts)(keys)
        if sample_weight is not None:
            w = w * sample_weight
        res = fit(x, estimate, sample_weight=w, **fit_kw)
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
) -> BootstrapResult:
    """Bootstrap standard errors and percentile intervals for one fitted dataset.

    Every replicate refits the model from the original estimate (as mixtools'
    ``boot.se`` does), all replicates of a chunk in one compiled call.

    Args:
      key: key or seed; replicate ``b`` uses ``fold_in(key, b)``.
      x: the data, shape ``(n,)``.
      estimate: the fit (:class:`FitResult` or :class:`MixtureParams`, fields ``(K,)``).
      n_boot: number of bootstrap replicates.
      kind: ``"nonparametric"`` resamples the observations with replacement
        (implemented as multinomial counts used as observation weights);
        ``"parametric"`` simulates ``n`` new observations from ``estimate``.
      fixed, equal_scales, tol, max_iter, accelerate: the model and the
        iteration, as in :func:`jaxgmm.fit`.
      sample_weight: observation weights of the original fit (nonparametric
        only: resampled observations keep their weights).
      level: coverage of the percentile intervals.
      chunk_size, progress: as in :func:`monte_carlo`.
    """
    if kind not in ("nonparametric", "parametric"):
        raise ValueError(f"kind must be 'nonparametric' or 'parametric', got {kind!r}")
    n_boot = _check_positive_int(n_boot, "n_boot")
    normal_quantile(level)  # validates level
    params = estimate.params if isinstance(estimate, FitResult) else estimate
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
    n = x.shape[-1]
    chunk = _auto_chunk(n, n_boot, 1) if chunk_size is None else min(_check_positive_int(chunk_size, "chunk_size"), n_boot)
    design = _BootDesign(spec, kind, None if tol is None else float(tol), int(max_iter),
                         admissible_permutations(params, spec), accelerate)
    key = as_key(key)
    run = functools.partial(_boot_chunk_jit, x=x, sample_weight=w, estimate=params, design=design)
    out = _run_chunks(lambda kk, idx: run(kk, idx), key, n_boot, chunk, progress, desc="jaxgmm bootstrap")
    est = _np_params(out["estimates"])
    status = out["status"]
    ok = status == Status.CONVERGED
    alpha = (1.0 - level) / 2.0
    fixed_mask = spec_mask(spec)

    def stat(fn):
        def one(f):
            a = np.asarray(f, np.float64)[ok]
            return fn(a) if a.shape[0] > 1 else np.full(a.shape[1:], np.nan)
        return MixtureParams(*(one(f) for f in est))

    sd = stat(lambda a: a.std(axis=0, ddof=1))
    # Fixed entries (and a weight pinned by the constraint) do not vary: SE 0.
    se = MixtureParams(*(np.where(np.asarray(fm), 0.0, v) for v, fm in zip(sd, fixed_mask)))
    lower = stat(lambda a: np.quantile(a, alpha, axis=0))
    upper = stat(lambda a: np.quantile(a, 1.0 - alpha, axis=0))
    return BootstrapResult(_np_params(params), est, status, out["n_iter"], se, lower, upper, float(level), kind)
