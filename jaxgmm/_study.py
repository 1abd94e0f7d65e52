"""Monte Carlo studies of the EM estimators: one design, a grid of designs, their data.

A study simulates ``reps`` datasets of size ``n`` from a true mixture (or from
a data generator of the user's), fits each one, computes observed-information
standard errors, aligns the components to the truth (``jaxgmm/_align.py``) and
summarises bias, spread and coverage with their Monte Carlo errors
(``jaxgmm/_summary.py``).  The work runs in chunks of replicates, each chunk one
compiled call (``jaxgmm/_runner.py``), so memory stays bounded whatever
``reps`` is -- with ``keep_replicates=False`` the host keeps only running sums.

Reproducibility: global replicate ``g`` uses the key ``fold_in(key, g)``
(split once into a data key and a start key; above 2**32 the high word is
folded in too), so its data do not depend on the chunk size, on which chunk or
block it falls in, or on ``reps``: the first 100 replicates of a
10,000-replicate study are those of a 100-replicate study, and a block run with
``offset=o`` holds replicates ``o, o + 1, ...`` of the same study.  Each fit's
arithmetic, however, follows the compiled batch shape (XLA's CPU compiler sums
the rows of small batches in blocks of 32 and those of large ones in one pass),
so fits of the same data in chunks of different sizes agree only to the
rounding the stopping rule allows; with the same ``chunk_size``, results are
the same to the bit on CPU.

The pieces live in modules of their own and are re-exported here for the
command line and older imports.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

import jax
import jax.numpy as jnp

from . import _validate
from ._align import admissible_permutations, align, permute
from ._bootstrap import BootstrapResult, bootstrap
from ._em import ModelSpec
from ._fit import DEFAULT_MAX_ITER, best_of, fit
from ._inference import standard_errors
from ._init import METHODS, init_params
from ._masks import free_mask, impose_fixed, spec_mask
from ._params import Array, MixtureParams
from ._results import MonteCarloResult, StudyInterrupted, merge_studies, np_params
from ._runner import (MAX_N, MAX_REPLICATES, abstract, as_indices, as_key, auto_chunk, check_count,
                      concatenate, device_name, gather_processes, index_words, key_words, process_share,
                      replicate_keys, run_chunks, struct, study_mesh)
from ._simulate import sample
from ._spec import make_spec
from ._summary import FIELDS, SUMMARY_COLUMNS, StudySums, Summary, param_names, summarise
from ._xla import jit

__all__ = [  # re-exported for jaxgmm/cli.py and imports from before the split
    "BootstrapResult", "GridResult", "MonteCarloResult", "StudyInterrupted", "Summary",
    "SUMMARY_COLUMNS", "admissible_permutations", "align", "as_key", "bootstrap", "free_mask",
    "impose_fixed", "merge_studies", "monte_carlo", "monte_carlo_grid", "param_names", "permute",
    "simulate_replicates", "spec_mask", "summarise",
]


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
    generate: Optional[Callable] = None  # fn(key, n) -> (n,) data, or None: draws from the truth


def _draw(keys, truth, n: int, generate):
    """Datasets ``(c, n)`` in the truth's dtype, one per key."""
    if generate is None:
        return jax.vmap(lambda k: sample(k, truth, n))(keys)
    x = jax.vmap(lambda k: jnp.asarray(generate(k, n)))(keys)
    if x.shape != (keys.shape[0], n):
        raise ValueError(f"generate(key, n) must return data of shape (n,) = ({n},), got shape {x.shape[1:]}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"generate(key, n) must return real numbers, got dtype {x.dtype}")
    return x.astype(truth.means.dtype)


def _study_chunk(key, lo, hi, truth, given, design: _Design):
    spec = design.spec
    mask = spec_mask(spec)
    data_keys, start_keys = replicate_keys(key, lo, hi)
    x = _draw(data_keys, truth, design.n, design.generate)  # (c, n)
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


@functools.lru_cache(maxsize=32)
def _compiled_chunk(design: _Design, chunk: int, key_s, truth_s, given_s, mesh=None):
    """Ahead-of-time compiled chunk (so compile time is measured apart from run
    time), cached per design and shapes so that repeated studies do not recompile.

    With a ``mesh``, the chunk's replicates are split over its devices with
    ``shard_map``: each device simulates and fits its own share, with its own
    while-loops, and nothing is communicated until the results come back.
    """
    idx = jax.ShapeDtypeStruct((chunk,), jnp.uint32)  # low and high words of the indices
    if mesh is None:
        return _study_chunk_jit.lower(abstract(key_s), idx, idx, abstract(truth_s), abstract(given_s),
                                      design=design).compile()
    from jax.sharding import PartitionSpec as P

    axis = mesh.axis_names[0]
    sharded = jit(jax.shard_map(
        functools.partial(_study_chunk, design=design), mesh=mesh,
        in_specs=(P(), P(axis), P(axis), P(), P()), out_specs=P(axis), check_vma=False))
    return sharded.lower(abstract(key_s), idx, idx, abstract(truth_s), abstract(given_s)).compile()


# --------------------------------------------------------------------------- #
# The study
# --------------------------------------------------------------------------- #
def _empty_piece(k: int, dtype) -> dict:
    """Per-replicate outputs of no replicates (a study interrupted before its first chunk)."""
    params = MixtureParams(*(np.zeros((0, k), dtype) for _ in FIELDS))
    return dict(estimates=params, se=params, loglik=np.zeros((0,), dtype), n_iter=np.zeros((0,), np.int32),
                status=np.zeros((0,), np.int32), permutation=np.zeros((0, k), np.int32))


def _result(out: Optional[dict], sums: StudySums, truth, n: int, free, design_doc: dict, offset: int,
            reps: int, timing: dict) -> MonteCarloResult:
    """A :class:`MonteCarloResult` of the block ``offset .. offset + reps - 1``."""
    get = (lambda name: None) if out is None else (lambda name: out[name])
    est, se = get("estimates"), get("se")
    return MonteCarloResult(
        truth=truth, n=n, reps=reps,
        estimates=None if est is None else np_params(est), se=None if se is None else np_params(se),
        loglik=get("loglik"), n_iter=get("n_iter"), status=get("status"), permutation=get("permutation"),
        free=free, design=dict(design_doc, reps=reps, offset=offset), timing=timing, sums=sums)


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
    offset: int = 0,
    keep_replicates: bool = True,
    on_chunk: Optional[Callable] = None,
    generate: Optional[Callable] = None,
) -> MonteCarloResult:
    """Monte Carlo study of the EM estimators at sample size ``n``.

    Simulates ``reps`` datasets of size ``n`` from ``truth``, fits each one,
    computes observed-information standard errors, aligns components to the
    truth and returns the per-replicate results; ``.summary()`` gives bias, SD,
    RMSE and Wald coverage of every free parameter, each with its Monte Carlo
    standard error.

    Args:
      key: a ``jax.random`` key or an integer seed. Global replicate ``g`` uses
        ``fold_in(key, g)``, so its data do not depend on ``chunk_size`` (its
        fit does only by rounding; see ``chunk_size``).
      truth: the true :class:`MixtureParams` (fields ``(K,)``); its dtype (or
        JAX's default float) is the computation's dtype.
      n: observations per dataset (at most 2**31 - 1).
      reps: number of replicates (offset + reps at most 2**63).
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
      chunk_size: replicates per compiled call, the compiled batch: the last
        (or only) chunk is padded to it. By default each chunk holds about
        2**24 simulated numbers on CPU (2**26 on an accelerator), divided by
        ``n_starts`` for data-driven starts, and at most ``reps`` replicates.
        A fit's sums round according to the batch shape, so runs with different
        chunk sizes agree within the stopping rule's reach, not to the bit;
        blocks meant to merge exactly should pass the same ``chunk_size``.
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
      offset: global index of the first replicate: replicate ``i`` of this call
        is replicate ``offset + i`` of the study, so blocks run by different
        processes or job-array tasks (or a resumed run) merge with
        :func:`jaxgmm.merge_studies` into one run's result.
      keep_replicates: keep the per-replicate arrays (default). ``False`` keeps
        only running sums (float64), so host memory stays bounded whatever
        ``reps`` is; ``.summary()`` still works (coverage at the levels of
        :data:`jaxgmm._summary.ONLINE_LEVELS`), per-replicate fields are ``None``.
      on_chunk: called as ``on_chunk(block)`` after each chunk with the
        :class:`MonteCarloResult` of its replicates (``block.offset`` its first
        global index), replicates kept whatever ``keep_replicates`` is: for
        streaming rows to a file (``block.replicate_rows()``).
      generate: the data generator, ``generate(key, n) -> x`` of shape ``(n,)``,
        jittable and vmappable (e.g. t-distributed or contaminated data, to study
        robustness); ``truth`` is still the target of bias and coverage and the
        fits' start and fixed values. ``None`` (default): draws from ``truth``.

    Returns:
      :class:`MonteCarloResult` of global replicates ``offset .. offset + reps - 1``.

    Raises:
      ValueError, TypeError: bad arguments, named in the message.
      StudyInterrupted: on Ctrl-C (``KeyboardInterrupt``, also one raised by
        ``on_chunk``) during the run; its ``.partial`` holds the finished
        replicates (the chunks handed to ``on_chunk`` so far). A subclass of
        ``KeyboardInterrupt``.
    """
    key_in = key
    key = as_key(key)
    n = check_count(n, "n", maximum=MAX_N)
    reps = check_count(reps, "reps")
    offset = check_count(offset, "offset", minimum=0, maximum=MAX_REPLICATES - 1)
    if offset + reps > MAX_REPLICATES:
        raise ValueError(f"offset + reps must be at most 2**63 (replicate indices), got {offset + reps:,}")
    for name, fn in (("on_chunk", on_chunk), ("generate", generate)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function or None, got {type(fn).__name__}")
    if distributed and not keep_replicates:
        raise ValueError("keep_replicates=False is not supported with distributed=True; run blocks with "
                         "offset= in each process and merge_studies their results instead")
    dtype = _validate.float_dtype_for(*truth)
    truth = _validate.as_params(truth, dtype, name="truth")
    if truth.means.ndim != 1:
        raise ValueError(f"truth must describe one mixture (fields of shape (K,)), got shape {truth.means.shape}")
    k = truth.means.shape[-1]
    spec = make_spec(fixed, k, equal_scales)
    _validate.check_equal_fixed_scales(truth, spec, name="truth")
    given = truth
    if init is None:
        mode, starts = "truth", 1
    elif isinstance(init, MixtureParams):
        given = impose_fixed(_validate.as_params(init, dtype, name="init"), truth, spec)
        if given.means.shape != (k,):
            raise ValueError(f"init must have fields of shape ({k},) like truth, got {given.means.shape}")
        mode, starts = "given", 1
    elif isinstance(init, str) and init in METHODS:
        mode, starts = init, check_count(n_starts, "n_starts")
    else:
        raise ValueError(f"init must be None, a MixtureParams or one of {METHODS}, got {init!r}")
    _validate.check_iteration_args(tol, max_iter)
    _validate.check_accelerate(accelerate)
    if chunk_size is None:
        chunk = auto_chunk(n, reps, starts)
    else:
        chunk = check_count(chunk_size, "chunk_size", maximum=2 ** 31 - 1)
    design = _Design(n=n, spec=spec, init=mode, n_starts=starts if mode not in ("truth", "given") else 1,
                     tol=None if tol is None else float(tol), max_iter=int(max_iter),
                     perms=admissible_permutations(truth, spec),
                     compute_se=bool(compute_se), accelerate=accelerate, generate=generate)
    seed = int(key_in) if isinstance(key_in, (int, np.integer)) else None

    mesh = study_mesh(mesh, devices)
    if distributed and reps < jax.process_count():
        raise ValueError(f"reps={reps} is fewer than the {jax.process_count()} processes")
    first, count = process_share(reps) if distributed else (0, reps)
    if chunk_size is None:
        chunk = min(chunk, count)
    # Each device of the mesh takes an equal share of a chunk.
    size = 1 if mesh is None else mesh.devices.size
    chunk = -(-chunk // size) * size

    free = free_mask(spec)
    free = MixtureParams(*(np.asarray(m) for m in free))
    truth_np = np_params(truth)
    design_doc = dict(
        n=n, reps=reps, seed=seed, key=key_words(key),
        fixed={f: list(m) for f, m in zip(FIELDS, spec_mask(spec))},
        equal_scales=bool(equal_scales), init=mode if mode != "given" else
        {f: np.asarray(v).tolist() for f, v in zip(FIELDS, given)},
        n_starts=design.n_starts, tol=design.tol, max_iter=design.max_iter, accelerate=accelerate,
        chunk_size=chunk, dtype=str(jnp.dtype(dtype)), compute_se=bool(compute_se),
        generate=None if generate is None else getattr(generate, "__qualname__", repr(generate)),
        offset=offset)

    t0 = time.perf_counter()
    compiled = _compiled_chunk(design, chunk, struct(key), struct(truth), struct(given), mesh)
    compile_s = time.perf_counter() - t0

    # Finished chunks: (piece or None, its sums), appended in one step so that a
    # Ctrl-C at any moment leaves a consistent list behind.
    done_chunks = []

    def consume(start, piece):
        sums = StudySums.of(truth_np, piece["estimates"], piece["se"], piece["status"], piece["n_iter"])
        if not keep_replicates and done_chunks:
            done_chunks[0] = (None, done_chunks[0][1] + sums)  # bounded: one running total
        else:
            done_chunks.append((piece if keep_replicates else None, sums))
        if on_chunk is not None:
            on_chunk(_result(piece, sums, truth_np, n, free, design_doc, start, len(piece["status"]), {}))

    def finished():
        """Per-replicate outputs (or None) and sums of the chunks finished so far."""
        sums = StudySums.of(truth_np, *_no_replicates(k, dtype))
        for _, s in done_chunks:
            sums = sums + s
        if not keep_replicates:
            return None, sums
        pieces = [p for p, _ in done_chunks]
        return (concatenate(pieces) if pieces else _empty_piece(k, dtype)), sums

    t1 = time.perf_counter()
    try:
        run_chunks(lambda kk, lo, hi: compiled(kk, lo, hi, truth, given), key, offset + first, count,
                   chunk, progress=progress, desc="jaxgmm monte_carlo", consume=consume)
    except KeyboardInterrupt as interrupt:
        out, sums = finished()
        done = int(sums.count[0])
        partial = _result(out, sums, truth_np, n, free, design_doc, offset + first, done,
                          _timing(compile_s, time.perf_counter() - t1, done, design.n_starts))
        raise StudyInterrupted(partial, count) from interrupt
    out, sums = finished()
    if distributed:
        out = gather_processes(out, count, reps)
        sums = StudySums.of(truth_np, out["estimates"], out["se"], out["status"], out["n_iter"])
        first = 0
    run_s = time.perf_counter() - t1
    return _result(out, sums, truth_np, n, free, design_doc, offset + first, reps,
                   _timing(compile_s, run_s, reps, design.n_starts))


def _no_replicates(k: int, dtype) -> tuple:
    """``(estimates, se, status, n_iter)`` of no replicates: the start of the running sums."""
    e = _empty_piece(k, dtype)
    return e["estimates"], e["se"], e["status"], e["n_iter"]


def _timing(compile_s: float, run_s: float, reps: int, n_starts: int) -> dict:
    return dict(compile_s=compile_s, run_s=run_s,
                fits_per_s=reps * n_starts / run_s if run_s > 0 else float("inf"),
                replicates_per_s=reps / run_s if run_s > 0 else float("inf"),
                device=device_name())


def simulate_replicates(key, truth: MixtureParams, n: int, indices, *, generate: Optional[Callable] = None) -> Array:
    """Regenerate the simulated data of replicates ``indices`` of a study.

    Returns an array ``(len(indices), n)`` equal to the data
    :func:`monte_carlo` (with the same ``key``, ``truth``, ``n`` and
    ``generate``) fitted for those global replicate indices (integers in
    ``[0, 2**63)``): for checking an odd replicate or refitting it another way.
    """
    key = as_key(key)
    n = check_count(n, "n", maximum=MAX_N)
    idx = as_indices(indices, "indices")
    if generate is not None and not callable(generate):
        raise TypeError(f"generate must be a function or None, got {type(generate).__name__}")
    dtype = _validate.float_dtype_for(*truth)
    truth = _validate.as_params(truth, dtype, name="truth")
    lo, hi = index_words(idx)
    return _simulate_jit(key, lo, hi, truth, n, generate)


def _simulate(key, lo, hi, truth, n, generate):
    data_keys, _ = replicate_keys(key, lo, hi)
    return _draw(data_keys, truth, n, generate)


_simulate_jit = jit(_simulate, static_argnums=(4, 5))


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
