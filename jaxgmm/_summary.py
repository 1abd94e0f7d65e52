"""Summaries of a Monte Carlo study: the performance measures and their Monte Carlo errors.

Every measure is computed from a few running sums per parameter (counts and
power sums of the errors ``d = estimate - truth`` up to the fourth, sums of the
SEs, their squares and fourth powers, and interval counts at a few levels), so
that a study can be summarised chunk by chunk without keeping its replicates,
blocks of a study merge by adding their sums, and a kept study is summarised by
the same code.  Sums are float64 and about the truth, so the variance's
cancellation costs only ``eps * (bias / sd)**2`` relative.

The Monte Carlo standard errors follow Morris, White & Crowther (2019), "Using
simulation studies to evaluate statistical methods", Statistics in Medicine
38:2074, Table 6, with ``m`` the replicates used:

- bias ``mean(d)``: ``sd / sqrt(m)``;
- empirical SD ``sd = sqrt(sum (est - mean)^2 / (m - 1))``: ``sd / sqrt(2 (m - 1))``;
- RMSE ``sqrt(MSE)``, ``MSE = mean(d^2)``: MSE's ``sqrt(sum (d^2 - MSE)^2 / (m (m - 1)))``
  divided by ``2 RMSE`` (delta method);
- coverage ``c``: ``sqrt(c (1 - c) / m)``;
- mean SE (the mean of the SEs, as printed since 0.1.0): ``sd(se) / sqrt(m_se)``;
- relative error of the SE ``ModSE / sd - 1`` with ``ModSE = sqrt(mean(se^2))`` (Morris
  et al. report 100 times it): ``(ModSE / sd) sqrt(Var(se^2) / (4 m_se ModSE^4) + 1 / (2 (m - 1)))``,

where ``m_se`` counts the used replicates with a finite SE (the SE measures use those).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ._inference import normal_quantile
from ._params import MixtureParams, Status

FIELDS = MixtureParams._fields
_SYMBOL = {"weights": "pi", "means": "mu", "scales": "sigma"}

# The table printed since 0.1.0 (README, `jaxgmm study`) ...
TABLE_COLUMNS = ("true", "mean", "bias", "mcse_bias", "sd", "mean_se", "rmse", "coverage", "converged")
# ... and the further measures and Monte Carlo errors of issue 17, in `columns` too.
EXTRA_COLUMNS = ("mcse_sd", "mcse_mean_se", "mcse_rmse", "mcse_coverage", "rel_err_se", "mcse_rel_err_se")
SUMMARY_COLUMNS = TABLE_COLUMNS + EXTRA_COLUMNS
_HEADERS = {"true": "true", "mean": "mean", "bias": "bias", "mcse_bias": "MCSE(bias)",
            "sd": "emp. SD", "mean_se": "mean SE", "rmse": "RMSE", "coverage": "cover95",
            "converged": "conv.", "mcse_sd": "MCSE(SD)", "mcse_mean_se": "MCSE(SE)",
            "mcse_rmse": "MCSE(RMSE)", "mcse_coverage": "MCSE(cover)", "rel_err_se": "rel.err SE",
            "mcse_rel_err_se": "MCSE(rel.err)"}

# Interval levels whose coverage a study without kept replicates can report.
ONLINE_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


def param_names(k: int) -> MixtureParams:
    """Row labels ``pi_1 .. pi_K``, ``mu_1 ..``, ``sigma_1 ..`` (1-based, as in the textbook)."""
    return MixtureParams(*([f"{_SYMBOL[f]}_{j + 1}" for j in range(k)] for f in FIELDS))


def plain(v):
    """A NumPy scalar as a Python scalar; anything else unchanged."""
    return v.item() if hasattr(v, "item") else v


def jsonable(obj):
    """Plain Python values for strict JSON: NaN and infinities become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    obj = plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def require_pandas(what: str):
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs pandas, which is not installed: pip install pandas") from None
    return pandas


# --------------------------------------------------------------------------- #
# Running sums
# --------------------------------------------------------------------------- #
@dataclass
class StudySums:
    """Running sums that every summary measure is computed from.

    Subset axis ``S = 2``: 0 all replicates, 1 the converged ones. ``P = 3``
    fields (weights, means, scales), ``K`` components, ``L = len(levels)``.

    Attributes:
      truth: ``(3, K)`` float64, the point the errors are taken about.
      levels: interval levels counted in ``cover``.
      count: ``(S,)`` replicates in each subset.
      d1, d2, d4: ``(S, 3, K)`` sums of ``d^p``, ``d = estimate - truth``.
      se_count, se1, se2, se4: ``(S, 3, K)`` count of finite SEs and sums of
        ``se``, ``se^2``, ``se^4`` over them.
      cover: ``(S, L, 3, K)`` replicates whose Wald interval at each level
        holds the truth (a non-finite SE never covers).
      n_iter: ``(S,)`` sums of the iteration counts.
      status: ``(len(Status),)`` replicates with each :class:`Status`.
    """

    truth: np.ndarray
    levels: tuple
    count: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d4: np.ndarray
    se_count: np.ndarray
    se1: np.ndarray
    se2: np.ndarray
    se4: np.ndarray
    cover: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray

    _SUMS = ("count", "d1", "d2", "d4", "se_count", "se1", "se2", "se4", "cover", "n_iter", "status")

    @classmethod
    def of(cls, truth: MixtureParams, estimates: MixtureParams, se: MixtureParams,
           status, n_iter, levels: Sequence[float] = ONLINE_LEVELS) -> "StudySums":
        """The sums of per-replicate arrays: fields ``(m, K)``, ``status`` and ``n_iter`` ``(m,)``."""
        t = np.stack([np.asarray(f, np.float64) for f in truth])  # (3, K)
        est = np.stack([np.asarray(f, np.float64) for f in estimates], axis=1)  # (m, 3, K)
        s = np.stack([np.asarray(f, np.float64) for f in se], axis=1)
        status = np.asarray(status)
        converged = status == Status.CONVERGED
        iters = np.asarray(n_iter, np.float64)
        z = np.asarray([normal_quantile(lv) for lv in levels], np.float64)
        subsets = (np.ones_like(converged), converged)
        d = est - t
        finite = np.isfinite(s)
        s0 = np.where(finite, s, 0.0)
        with np.errstate(invalid="ignore"):
            inside = finite[:, None] & (np.abs(d)[:, None] <= z[None, :, None, None] * s[:, None])  # (m, L, 3, K)

        def sums(a):
            return np.stack([a[u].sum(axis=0) for u in subsets])

        return cls(truth=t, levels=tuple(float(v) for v in levels),
                   count=np.asarray([u.sum() for u in subsets], np.int64),
                   d1=sums(d), d2=sums(d ** 2), d4=sums(d ** 4),
                   se_count=sums(finite.astype(np.int64)), se1=sums(s0), se2=sums(s0 ** 2),
                   se4=sums(s0 ** 4), cover=sums(inside.astype(np.int64)),
                   n_iter=np.asarray([iters[u].sum() for u in subsets]),
                   status=np.asarray([np.sum(status == v) for v in Status], np.int64))

    def __add__(self, other: "StudySums") -> "StudySums":
        if self.levels != other.levels or not np.array_equal(self.truth, other.truth):
            raise ValueError("cannot add the sums of studies with different truths or levels")
        return StudySums(self.truth, self.levels, *(getattr(self, a) + getattr(other, a) for a in self._SUMS))

    def measures(self, subset: int, level: float) -> dict:
        """Every summary measure, each ``(3, K)`` float64, from the sums of ``subset``."""
        if level not in self.levels:
            raise ValueError(f"level={level} is not one of the levels summed, {self.levels}; "
                             "keep the replicates (keep_replicates=True) for any level")
        m = float(self.count[subset])
        d1, d2, d4 = self.d1[subset], self.d2[subset], self.d4[subset]
        mf, se1, se2, se4 = self.se_count[subset], self.se1[subset], self.se2[subset], self.se4[subset]
        cover = self.cover[subset, self.levels.index(level)]
        nan = np.full(d1.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_d = d1 / m if m else nan
            var = np.maximum(d2 - d1 * mean_d, 0.0) / (m - 1) if m > 1 else nan
            sd = np.sqrt(var)
            mse = d2 / m if m else nan
            rmse = np.sqrt(mse)
            # sum (d^2 - MSE)^2 = sum d^4 - m MSE^2
            mcse_mse = np.sqrt(np.maximum(d4 - m * mse ** 2, 0.0) / (m * (m - 1))) if m > 1 else nan
            mean_se = np.where(mf > 0, se1 / mf, np.nan)
            var_se = np.where(mf > 1, np.maximum(se2 - se1 * mean_se, 0.0) / (mf - 1), np.nan)
            mod_se = np.where(mf > 0, np.sqrt(se2 / mf), np.nan)
            var_se2 = np.where(mf > 1, np.maximum(se4 - se2 * (se2 / mf), 0.0) / (mf - 1), np.nan)
            coverage = np.where(mf > 0, cover / m, np.nan) if m else nan
            ratio = mod_se / sd
            return dict(
                true=self.truth, mean=self.truth + mean_d, bias=mean_d,
                mcse_bias=sd / math.sqrt(m) if m else nan,
                sd=sd, mean_se=mean_se, rmse=rmse, coverage=coverage,
                converged=np.full(d1.shape, self.count[1] / self.count[0] if self.count[0] else np.nan),
                mcse_sd=sd / math.sqrt(2.0 * (m - 1)) if m > 1 else nan,
                mcse_mean_se=np.sqrt(var_se / mf),
                mcse_rmse=mcse_mse / (2.0 * rmse),
                mcse_coverage=np.sqrt(coverage * (1.0 - coverage) / m) if m else nan,
                rel_err_se=ratio - 1.0,
                mcse_rel_err_se=ratio * np.sqrt(var_se2 / (4.0 * mf * mod_se ** 4)
                                                + (1.0 / (2.0 * (m - 1)) if m > 1 else np.nan)),
            )


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #
@dataclass
class Summary:
    """Per-parameter summary of a Monte Carlo study.

    ``names`` labels the rows (``pi_1``, ``mu_2``, ``sigma_1``... 1-based, as in
    the textbook); ``columns`` maps each of :data:`SUMMARY_COLUMNS` (plus any
    extra design columns of a grid) to a NumPy array with one entry per row:
    the measures and their Monte Carlo standard errors (``mcse_*``; formulas in
    ``jaxgmm/_summary.py``). ``str(summary)`` is the fixed-width table of
    :data:`TABLE_COLUMNS` (and a grid's design columns); :meth:`table` prints
    any columns.
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
        """Write every column as CSV (one row per parameter)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            cols = list(self.columns)
            w.writerow(["parameter"] + cols)
            for i, name in enumerate(self.names):
                w.writerow([name] + [plain(self.columns[c][i]) for c in cols])

    def to_pandas(self):
        """A ``pandas.DataFrame``: one row per parameter (index ``parameter``), every column."""
        pd = require_pandas("Summary.to_pandas")
        return pd.DataFrame({c: np.asarray(v) for c, v in self.columns.items()},
                            index=pd.Index(list(self.names), name="parameter"))

    def table(self, columns: Optional[Sequence[str]] = None) -> str:
        """Fixed-width text table of ``columns`` (default: those ``str`` shows)."""
        cols = [c for c in self.columns if c not in EXTRA_COLUMNS] if columns is None else list(columns)
        unknown = [c for c in cols if c not in self.columns]
        if unknown:
            raise ValueError(f"columns {unknown} are not in this summary; it has {list(self.columns)}")
        heads = ["param"] + [_HEADERS.get(c, c) for c in cols]
        body = []
        for i, name in enumerate(self.names):
            cells = [name]
            for c in cols:
                v = self.columns[c][i]
                if c in ("coverage", "converged"):
                    cells.append(f"{v:.3f}")
                elif c in ("bias", "rel_err_se"):
                    cells.append(f"{v:+.5f}")
                elif isinstance(v, (float, np.floating)):
                    cells.append(f"{v:.5f}")
                else:
                    cells.append(str(v))
            body.append(cells)
        widths = [max(len(r[j]) for r in [heads] + body) for j in range(len(heads))]
        fmt = lambda r: "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
        return "\n".join([fmt(heads)] + [fmt(r) for r in body])

    def __str__(self) -> str:
        return self.table()


def summary_of_sums(sums: StudySums, free: MixtureParams, *, level: float = 0.95,
                    converged_only: bool = True, equal_scales: bool = False) -> Summary:
    """The :class:`Summary` rows of the ``free`` entries (masks ``(K,)``) from running sums."""
    normal_quantile(level)  # validates level
    subset = 1 if converged_only else 0
    values = sums.measures(subset, level)
    k = sums.truth.shape[-1]
    names, rows = [], {c: [] for c in SUMMARY_COLUMNS}
    for p, (fname, labels) in enumerate(zip(FIELDS, param_names(k))):
        mask = np.asarray(getattr(free, fname), bool)
        for j in range(k):
            if not mask[j]:
                continue
            names.append("sigma" if (fname == "scales" and equal_scales and k > 1) else labels[j])
            for c in SUMMARY_COLUMNS:
                rows[c].append(values[c][p, j])
    return Summary(names, {c: np.asarray(v, np.float64) for c, v in rows.items()},
                   used=int(sums.count[subset]), reps=int(sums.count[0]), level=level)


def summarise(truth: MixtureParams, estimates: MixtureParams, se: MixtureParams,
              status: np.ndarray, free: MixtureParams, *, level: float = 0.95,
              converged_only: bool = True, equal_scales: bool = False) -> Summary:
    """Summary table from per-replicate arrays (see :meth:`MonteCarloResult.summary`)."""
    normal_quantile(level)
    sums = StudySums.of(truth, estimates, se, status, np.zeros(np.shape(status)), levels=(float(level),))
    return summary_of_sums(sums, free, level=float(level), converged_only=converged_only,
                           equal_scales=equal_scales)
