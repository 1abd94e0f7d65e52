"""The per-replicate record of a Monte Carlo study: saving it, merging blocks of it.

A :class:`MonteCarloResult` is a block of global replicates
``offset .. offset + reps - 1`` of one study.  Blocks run by different calls
(processes, job-array tasks, a resumed interrupted run) with the same key and
design merge with :func:`merge_studies` into the result of one run over all of
them: replicate ``g`` is a function of the key and ``g`` alone.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ._masks import free_mask
from ._params import MixtureParams, Status
from ._spec import make_spec
from ._summary import FIELDS, StudySums, Summary, jsonable, param_names, require_pandas, summarise, summary_of_sums

# Design entries that may differ between blocks of one study.
_BLOCK_KEYS = ("reps", "offset", "chunk_size")


def np_params(p) -> MixtureParams:
    return MixtureParams(*(np.asarray(f) for f in p))


@dataclass
class MonteCarloResult:
    """Per-replicate output of :func:`monte_carlo`, as NumPy arrays.

    Attributes:
      truth: the true :class:`MixtureParams` (fields ``(K,)``).
      n, reps: sample size and number of replicates in this block.
      estimates: :class:`MixtureParams` with fields ``(reps, K)``, aligned to the
        truth (see ``jaxgmm/_align.py``); ``None`` when the study kept no
        replicates (``keep_replicates=False``), as are the other per-replicate
        arrays.
      se: observed-information standard errors, same layout (0 for fixed
        entries, NaN where the information was not positive definite or SEs
        were not computed).
      loglik, n_iter, status: ``(reps,)``; ``converged`` is ``status == CONVERGED``.
      permutation: ``(reps, K)``: estimate component ``permutation[r, k]`` was
        matched to true component ``k``.
      free: which entries are estimated (rows of the summary).
      design: the study's settings (JSON-friendly dict); ``design["offset"]``
        is the global index of the block's first replicate.
      timing: ``compile_s``, ``run_s`` (seconds, compile excluded),
        ``fits_per_s`` (replicates times starts over ``run_s``), ``device``.
      sums: the running sums every summary is computed from (see
        :class:`jaxgmm._summary.StudySums`); all a study without kept
        replicates has.
    """

    truth: MixtureParams
    n: int
    reps: int
    estimates: Optional[MixtureParams]
    se: Optional[MixtureParams]
    loglik: Optional[np.ndarray]
    n_iter: Optional[np.ndarray]
    status: Optional[np.ndarray]
    permutation: Optional[np.ndarray]
    free: MixtureParams
    design: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    sums: Optional[StudySums] = None

    @property
    def offset(self) -> int:
        """Global index of this block's first replicate."""
        return int(self.design.get("offset", 0))

    @property
    def kept(self) -> bool:
        """Whether the per-replicate arrays were kept."""
        return self.estimates is not None

    def _need_replicates(self, what: str) -> None:
        if not self.kept:
            raise ValueError(f"{what} needs the replicates, and this study kept none "
                             "(monte_carlo(..., keep_replicates=False)); use .summary(), .status_counts(), "
                             ".mean_n_iter, or stream the replicates with on_chunk")

    @property
    def converged(self) -> np.ndarray:
        self._need_replicates("converged")
        return self.status == Status.CONVERGED

    def status_counts(self) -> dict:
        """``{status name: number of replicates}`` (with or without kept replicates)."""
        if self.kept:
            return {s.name: int(np.sum(self.status == s)) for s in Status}
        return {s.name: int(c) for s, c in zip(Status, self.sums.status)}

    @property
    def mean_n_iter(self) -> float:
        """Mean iteration count over all replicates."""
        if self.kept:
            return float(np.mean(self.n_iter)) if self.reps else float("nan")
        return float(self.sums.n_iter[0] / self.sums.count[0]) if self.sums.count[0] else float("nan")

    def summary(self, *, level: float = 0.95, converged_only: bool = True,
                all_weights: bool = False) -> Summary:
        """Bias, spread and coverage for every free parameter, with Monte Carlo errors.

        Columns: ``true``, ``mean`` (mean estimate), ``bias``, ``mcse_bias``
        (its Monte Carlo standard error, ``sd / sqrt(m)``), ``sd`` (empirical SD
        of the estimates), ``mean_se`` (mean estimated SE), ``rmse``,
        ``coverage`` (share of Wald intervals ``est -/+ z se`` at ``level`` that
        contain the truth) and ``converged`` (share of all replicates that
        converged) -- the printed table -- then ``mcse_sd``, ``mcse_mean_se``,
        ``mcse_rmse``, ``mcse_coverage``, ``rel_err_se`` (``ModSE / sd - 1``)
        and ``mcse_rel_err_se`` (formulas: Morris, White & Crowther 2019,
        Table 6; see ``jaxgmm/_summary.py``). By default statistics use the
        ``m`` converged replicates only.

        Rows: the free coordinates (as many as :func:`jaxgmm.n_parameters`
        counts): of the free weights all but the last, which is one minus the
        others (``all_weights=True`` adds it), the free means and the free
        scales (one ``sigma`` row with ``equal_scales``).

        Without kept replicates ``level`` must be one of
        :data:`jaxgmm._summary.ONLINE_LEVELS`.
        """
        free = self.free
        if all_weights:
            spec = make_spec(MixtureParams(*(np.asarray(self.design["fixed"][f], bool) for f in FIELDS)),
                             len(np.asarray(self.truth.means)), bool(self.design.get("equal_scales")))
            free = free._replace(weights=np.asarray(free_mask(spec, all_weights=True).weights))
        equal_scales = bool(self.design.get("equal_scales", False))
        if self.kept:
            return summarise(self.truth, self.estimates, self.se, self.status, free, level=level,
                             converged_only=converged_only, equal_scales=equal_scales)
        return summary_of_sums(self.sums, free, level=level, converged_only=converged_only,
                               equal_scales=equal_scales)

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
        self._need_replicates("saving to .npz")
        arrays = {}
        for prefix, p in (("truth", self.truth), ("estimates", self.estimates), ("se", self.se),
                          ("free", self.free)):
            for fname, v in zip(FIELDS, p):
                arrays[f"{prefix}_{fname}"] = np.asarray(v)
        arrays.update(loglik=self.loglik, n_iter=self.n_iter, status=self.status,
                      permutation=self.permutation, n=np.asarray(self.n), reps=np.asarray(self.reps),
                      design=np.asarray(json.dumps(self.design)), timing=np.asarray(json.dumps(self.timing)))
        np.savez_compressed(path, **arrays)

    def replicate_columns(self) -> list:
        """Column names of :meth:`replicate_rows` (the CSV header)."""
        cols = [n for f in param_names(len(np.asarray(self.truth.means))) for n in f]
        return ["rep", "status", "n_iter", "loglik"] + cols + [f"se_{c}" for c in cols]

    def replicate_rows(self):
        """One list per replicate: global index, status name, iterations, loglik, estimates, SEs."""
        self._need_replicates("replicate rows")
        est = np.concatenate([np.asarray(f) for f in self.estimates], axis=1)
        se = np.concatenate([np.asarray(f) for f in self.se], axis=1)
        for r in range(self.reps):
            yield ([self.offset + r, Status(int(self.status[r])).name, int(self.n_iter[r]),
                    repr(float(self.loglik[r]))]
                   + [repr(float(v)) for v in est[r]] + [repr(float(v)) for v in se[r]])

    def to_csv(self, path) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.replicate_columns())
            w.writerows(self.replicate_rows())

    def to_json(self, path) -> None:
        doc = {"design": self.design, "timing": self.timing,
               "truth": {f: np.asarray(v).tolist() for f, v in zip(FIELDS, self.truth)},
               "n": self.n, "reps": self.reps,
               "status_counts": self.status_counts(),
               "summary": self.summary().to_dict()}
        with open(path, "w") as fh:
            json.dump(jsonable(doc), fh, indent=2)

    def to_pandas(self):
        """A ``pandas.DataFrame`` with one row per replicate (index ``rep``, global), as in the CSV."""
        pd = require_pandas("MonteCarloResult.to_pandas")
        self._need_replicates("to_pandas")
        cols = self.replicate_columns()
        est = [np.asarray(f, np.float64) for f in self.estimates]
        se = [np.asarray(f, np.float64) for f in self.se]
        data = {"status": [Status(int(s)).name for s in self.status], "n_iter": np.asarray(self.n_iter),
                "loglik": np.asarray(self.loglik)}
        values = np.concatenate(est + se, axis=1) if self.reps else np.zeros((0, len(cols) - 4))
        data.update({c: values[:, j] for j, c in enumerate(cols[4:])})
        return pd.DataFrame(data, index=pd.Index(self.offset + np.arange(self.reps), name="rep"))


class StudyInterrupted(KeyboardInterrupt):
    """A :func:`monte_carlo` run stopped by Ctrl-C (``KeyboardInterrupt``).

    ``partial`` is the :class:`MonteCarloResult` of the replicates finished
    before the interrupt (possibly none); resume with ``offset=partial.offset +
    partial.reps`` and ``reps`` the rest, then :func:`merge_studies` the two.
    A subclass of ``KeyboardInterrupt``, so code that does not know it still
    stops as on any Ctrl-C.
    """

    def __init__(self, partial: MonteCarloResult, total: int):
        self.partial = partial
        done = partial.reps
        super().__init__(f"monte_carlo interrupted after {done} of {total} replicates; resume with "
                         f"offset={partial.offset + done}, reps={total - done} and merge_studies")


def _comparable(design: dict) -> dict:
    return {k: v for k, v in design.items() if k not in _BLOCK_KEYS}


def merge_studies(*results: MonteCarloResult) -> MonteCarloResult:
    """Merge blocks of one study (same key and design) into the result of one run.

    Args:
      *results: :class:`MonteCarloResult` blocks, in any order, covering a
        contiguous range of global replicates without gaps or overlaps (e.g.
        ``monte_carlo(key, ..., reps=r1, offset=0)`` and ``(..., reps=r2,
        offset=r1)``). Blocks without kept replicates merge into a result
        without them.

    Returns:
      A :class:`MonteCarloResult` over all the blocks' replicates, equal to one
      run with ``offset`` the first block's and ``reps`` their sum (to the bit
      when every block ran with the same ``chunk_size``, the one run's too;
      otherwise fits may differ by rounding, within the stopping rule's
      reach, and ``design["chunk_size"]`` is ``None``); ``timing`` adds the
      blocks' times.

    Raises:
      TypeError: an argument is not a :class:`MonteCarloResult`.
      ValueError: no blocks; blocks of different studies (the differing design
        entries are named); a gap or an overlap between blocks.
    """
    if not results:
        raise ValueError("merge_studies needs at least one MonteCarloResult")
    for i, r in enumerate(results):
        if not isinstance(r, MonteCarloResult):
            raise TypeError(f"merge_studies: argument {i} must be a MonteCarloResult, got {type(r).__name__}")
    first = results[0]
    ref = _comparable(first.design)
    for i, r in enumerate(results[1:], start=1):
        other = _comparable(r.design)
        differ = sorted(k for k in set(ref) | set(other) if ref.get(k) != other.get(k))
        if r.n != first.n:
            differ = ["n"] + differ
        if not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(r.truth, first.truth)):
            differ = ["truth"] + differ
        if differ:
            raise ValueError(f"merge_studies: result {i} is not a block of the same study as result 0: "
                             f"they differ in {', '.join(differ)}")
    # Empty blocks (a run interrupted before its first chunk) hold nothing to place.
    blocks = sorted([r for r in results if r.reps] or list(results[:1]), key=lambda r: r.offset)
    for a, b in zip(blocks, blocks[1:]):
        end = a.offset + a.reps
        if b.offset != end:
            what = "a gap" if b.offset > end else "an overlap"
            raise ValueError(f"merge_studies: blocks must be contiguous, but the block of replicates "
                             f"{a.offset}..{end - 1} is followed by one starting at {b.offset} ({what})")
    reps = sum(b.reps for b in blocks)
    kept = all(b.kept for b in blocks)

    def join(name):
        if not kept:
            return None
        parts = [getattr(b, name) for b in blocks]
        if isinstance(parts[0], MixtureParams):
            return MixtureParams(*(np.concatenate(f, axis=0) for f in zip(*parts)))
        return np.concatenate(parts, axis=0)

    sums = blocks[0].sums
    for b in blocks[1:]:
        sums = sums + b.sums
    # The compiled batch shape decides the rounding of each fit's sums (XLA's CPU
    # reductions; see tests/test_study.py), so blocks equal one run's numbers
    # to the bit only when they ran with the same chunk size; else it is None.
    chunks = {b.design.get("chunk_size") for b in blocks}
    design = dict(blocks[0].design, reps=reps, offset=blocks[0].offset,
                  chunk_size=chunks.pop() if len(chunks) == 1 else None)
    run_s = sum(float(b.timing.get("run_s", 0.0)) for b in blocks)
    starts = int(design.get("n_starts", 1))
    timing = dict(blocks[0].timing, compile_s=sum(float(b.timing.get("compile_s", 0.0)) for b in blocks),
                  run_s=run_s, fits_per_s=reps * starts / run_s if run_s > 0 else float("inf"),
                  replicates_per_s=reps / run_s if run_s > 0 else float("inf"))
    return MonteCarloResult(
        truth=first.truth, n=first.n, reps=reps, estimates=join("estimates"), se=join("se"),
        loglik=join("loglik"), n_iter=join("n_iter"), status=join("status"),
        permutation=join("permutation"), free=first.free, design=design, timing=timing, sums=sums)
