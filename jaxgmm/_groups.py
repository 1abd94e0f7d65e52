"""Per-group fitting: one mixture per group of a long table, every group in a few compiled calls.

:func:`fit_groups` takes values with group labels (or a sequence/dict of arrays, or a
pandas DataFrame), and fits each group by EM from its own starts, keeping its best.

**Buckets.**  A compiled program has fixed shapes, so fitting groups of 2,000 distinct
sizes one by one compiled 2,000 programs (issue 16: about 6 s a group).  Here each
group is padded with weight-0 observations to the next length of a geometric ladder
(``_buckets.ladder``: ``BUCKETS_PER_OCTAVE`` lengths per doubling, multiples of 8),
and the groups of one length are fitted together, ``rows`` groups per engine call,
``rows`` the power of two that holds them between a minimum and a maximum set by the
call's data size (:func:`plan_calls`): one call shape per length, so the number of
programs grows like ``log(max n)`` and not with the number of distinct sizes.  A bucket
whose move to the next length pads less than about one compile's worth of work
(:data:`MERGE_POINTS` observations) joins it (:func:`merge_buckets`): 2,000 groups of
200..999 run as one bucket of 1024, since each extra program cost more to compile than
the padding costs to fit.  Rows
that pad a call hold *filler* data on which EM stops after a step or two
(:func:`filler_row`), so they cost almost nothing under the engine's compaction.
Weight-0 observations are absent for ``fit`` and ``init_params`` alike
(``sample_weight`` docs), so padding changes a fit only by the rounding of its sums
(``tests/test_groups.py`` checks padded against unpadded fits).

**Keys.**  Group ``label``'s starts are ``init_params(group_key(key, label), x, K,
n_starts=...)`` of its own observations ``x``, where :func:`group_key` folds a 64-bit
BLAKE2b hash of the label's canonical text (:func:`canonical_label`: its kind and
value, so ``3``, ``3.0`` and ``np.int64(3)`` are one label and ``"3"`` another) into
``key``.  A group's starts, hence its fit, do not depend on its position, its
batch-mates or how the table was split into calls or partitions (``init_params``' random
draws for a padded row equal those of the unpadded data: ``jax.random`` draws element
``i`` from counter ``i``).  Results agree across partitions to the rounding of the
sums, which can differ with a call's shape (``fit``'s docstring), not bit for bit.

**Per-group trouble.**  A group with fewer observations than free parameters is not
fitted and gets :data:`Status.TOO_FEW`; constant data and failed fits get ``fit``'s
statuses (``DEGENERATE``, ``NONFINITE``).  No group raises for the call, except under
``nan_policy="raise"``, which names the groups holding NaN/inf.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import numbers
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from ._buckets import padded_lengths
from ._fit import DEFAULT_MAX_ITER, DEFAULT_SCALE_FLOOR, best_of, fit
from ._init import init_params
from ._masks import impose_fixed
from ._params import FitResult, MixtureParams, Status
from ._spec import make_spec, n_free_parameters

# Lengths per doubling of the bucket ladder: pads cost on average (2^(1/b) - 1) / ln 2^(1/b)
# - 1 of the data (b = 1: 44%, b = 2: 21%), and each length is one more program.
BUCKETS_PER_OCTAVE = 1
# Observations (rows x length) per engine call: at least MIN_CALL_POINTS where the groups are
# there (padding a call of short groups with copies costs little, and it keeps one program
# for every small population), at most MAX_CALL_POINTS and MAX_CALL_ROWS rows.
MIN_CALL_POINTS = 2 ** 14
MAX_CALL_POINTS = 2 ** 22
MAX_CALL_ROWS = 2 ** 12
MIN_CALL_ROWS_CAP = 2 ** 8
# A bucket joins the next longer one when that pads at most this many more observations
# (merge_buckets): about one compile's worth of fitting on CPU.  bench/groups.py on the
# loaded 2-core machine: a bucket's programs took ~117 s to compile (SQUAREM; 78 s plain EM)
# and fitting ran at ~35,000 padded observations (x 4 starts to convergence) a second, so
# one compile ~ 4e6 observations.  fit_groups scales it by 4 / (starts per group).
MERGE_POINTS = 2 ** 22


# --------------------------------------------------------------------------- #
# Labels and keys
# --------------------------------------------------------------------------- #
def canonical_label(label) -> str:
    """The text a label's key is hashed from: its kind and value.

    Numbers that compare equal are one label (``True``, ``1``, ``1.0``, ``np.int64(1)``:
    Python's ``==``, which also groups them); NumPy scalars are their Python values;
    strings, bytes, ``None``, tuples and frozensets of these are written out; any other
    type by its qualified name and ``repr``, which must not be ``object``'s default
    (it holds a memory address, different in every process).
    """
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, str):
        return "s:" + label
    if isinstance(label, bytes):
        return "b:" + label.hex()
    if label is None:
        return "none"
    if isinstance(label, numbers.Number):
        if isinstance(label, numbers.Integral):
            return f"n:{int(label)}"
        if isinstance(label, numbers.Real):
            value = float(label)
            if math.isfinite(value) and value == int(value):
                return f"n:{int(value)}"
            return f"n:{value!r}"
        value = complex(label)
        return canonical_label(value.real) if value.imag == 0 else f"c:{value!r}"
    if isinstance(label, tuple):
        return "t(" + ",".join(canonical_label(v) for v in label) + ")"
    if isinstance(label, frozenset):
        return "f(" + ",".join(sorted(canonical_label(v) for v in label)) + ")"
    kind = type(label)
    if kind.__repr__ is object.__repr__:
        raise TypeError(f"group label {label!r} of type {kind.__qualname__} has no stable text form "
                        "(object's default repr holds a memory address); use str, int, float, "
                        "tuple labels or give the type a __repr__")
    return f"o:{kind.__module__}.{kind.__qualname__}:{label!r}"


def label_id(label) -> int:
    """A stable 64-bit id of ``label``: BLAKE2b of :func:`canonical_label`."""
    digest = hashlib.blake2b(canonical_label(label).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def _id_words(ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.uint64)
    return (ids >> np.uint64(32)).astype(np.uint32), (ids & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fold(key, hi, lo):
    return jax.random.fold_in(jax.random.fold_in(key, hi), lo)


def group_key(key, label):
    """The key group ``label``'s starts are drawn from: ``key`` with the label's id
    (:func:`label_id`, high then low 32-bit word) folded in.

    ``init_params(group_key(key, label), x, K, n_starts=R)`` on the group's observations
    ``x`` gives the starts :func:`fit_groups` fits it from.
    """
    _validate.check_key(key)
    hi, lo = _id_words([label_id(label)])
    return _fold(key, hi[0], lo[0])


# --------------------------------------------------------------------------- #
# Buckets and calls (reusable: nothing here is specific to groups)
# --------------------------------------------------------------------------- #
def _pow2_floor(v: float) -> int:
    return 1 << max(int(math.floor(math.log2(max(v, 1)))), 0)


def call_rows(length: int) -> tuple[int, int]:
    """``(smallest, largest)`` rows of an engine call of datasets of ``length``: powers of
    two, from :data:`MIN_CALL_POINTS` (at most :data:`MIN_CALL_ROWS_CAP` rows) and
    :data:`MAX_CALL_POINTS` observations a call."""
    largest = min(_pow2_floor(MAX_CALL_POINTS / length), MAX_CALL_ROWS)
    smallest = min(_pow2_floor(MIN_CALL_POINTS / length), MIN_CALL_ROWS_CAP, largest)
    return smallest, largest


class Call(NamedTuple):
    """One engine call of a plan: ``members`` (indices of groups, at most ``rows``) padded
    to ``length`` observations and to ``rows`` rows."""

    length: int
    rows: int
    members: np.ndarray


def merge_buckets(lengths, merge_points: int = MERGE_POINTS) -> np.ndarray:
    """``lengths`` with small buckets moved up into the next longer one.

    From the shortest bucket up: a bucket of ``p`` datasets of length ``L`` joins the
    next bucket (length ``L'``) when the padding that adds, ``p (L' - L)`` observations,
    is at most ``merge_points``: one program fewer to compile for a little more
    arithmetic.  Buckets far apart (a few short groups and one of 10^5) stay apart.
    """
    lengths = np.array(lengths, dtype=np.int64)
    rungs = np.unique(lengths)
    for short, long in zip(rungs[:-1], rungs[1:]):
        here = lengths == short
        if int(here.sum()) * int(long - short) <= merge_points:
            lengths[here] = long
    return lengths


def plan_calls(counts, per_octave: int = BUCKETS_PER_OCTAVE, merge_points: int = MERGE_POINTS) -> list[Call]:
    """Calls fitting datasets of ``counts`` observations (each >= 1): one call shape per bucket.

    The ``p`` datasets of a bucket (``_buckets.padded_lengths``, then :func:`merge_buckets`) run in calls of ``rows`` rows,
    the smallest power of two holding them, within :func:`call_rows`' range, the last call
    padded with filler rows (:func:`pad_rows`).  So the shapes, and the compiled programs,
    number one per bucket, whatever the sizes; ``rows`` changes only when a bucket's
    population crosses a power of two.  Datasets keep their order within a bucket.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = merge_buckets(padded_lengths(counts, per_octave), merge_points)
    calls = []
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        smallest, largest = call_rows(int(length))
        rows = min(max(1 << (members.size - 1).bit_length(), smallest), largest)
        calls.extend(Call(int(length), rows, members[i:i + rows]) for i in range(0, members.size, rows))
    return calls


def filler_row(length: int, k: int, n_free: int, dtype) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(x, w)`` of one filler row: ``k`` tight clusters of up to 8 points, 1000 apart.

    Rows that pad a call are fitted and thrown away; on these data a data-driven start
    (k-means++ seeds one centre per cluster, then the hard assignment) is the MLE, so
    EM stops after a step or two and the row's lane goes to a waiting fit.  ``None``
    where ``length`` is too short for two points per cluster and ``n_free``.
    """
    per = min(8, length // max(k, 1))
    if per < 2 or per * k < n_free:
        return None
    offsets = np.linspace(-0.5, 0.5, per)
    x = np.full(length, 1000.0 * (k - 1), dtype=np.float64)
    w = np.zeros(length)
    x[:per * k] = (1000.0 * np.arange(k)[:, None] + offsets[None, :]).ravel()
    w[:per * k] = 1.0
    return x.astype(dtype), w.astype(dtype)


def pad_rows(flat: np.ndarray, offsets: np.ndarray, members: np.ndarray, length: int, rows: int,
             dtype, filler: Optional[tuple] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, w)`` of shape ``(rows, length)``: dataset ``members[i]`` (``flat[offsets[m]:
    offsets[m + 1]]``) in row ``i`` with weight 1, padded with weight 0 and its largest value
    (what ``fit`` would put there); rows past ``len(members)`` hold ``filler`` (a row's
    ``(x, w)``, see :func:`filler_row`), or repeat row 0 where it is None."""
    index = np.concatenate([members, np.repeat(members[:1], rows - members.size)])
    start, count = offsets[index], offsets[index + 1] - offsets[index]
    pos = np.arange(length)
    present = pos[None, :] < count[:, None]
    take = np.where(present, start[:, None] + pos[None, :], start[:, None])
    x = flat[take].astype(dtype, copy=False)
    fill = np.max(np.where(present, x, -np.inf), axis=1, keepdims=True)
    x, w = np.where(present, x, fill).astype(dtype), present.astype(dtype)
    if filler is not None and rows > members.size:
        x[members.size:], w[members.size:] = filler
    return x, w


# --------------------------------------------------------------------------- #
# Inputs
# --------------------------------------------------------------------------- #
class _Table(NamedTuple):
    labels: list       # one per group, first-appearance order
    flat: np.ndarray   # the values, group after group
    offsets: np.ndarray  # (G + 1,): group g is flat[offsets[g]:offsets[g + 1]]


def _as_labels(groups, n: int) -> np.ndarray:
    """``groups`` as a 1-D array of length ``n`` (an object array for tuples and mixtures)."""
    if hasattr(groups, "to_numpy") and not isinstance(groups, np.ndarray):
        groups = groups.to_numpy()
    if isinstance(groups, np.ndarray):
        if groups.ndim != 1:
            raise ValueError(f"groups must be 1-D (one label per value), got shape {groups.shape}")
        arr = groups
    else:
        if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
            raise TypeError(f"groups must be a sequence of labels, one per value, got {type(groups).__name__}")
        arr = np.empty(len(groups), dtype=object)
        for i, g in enumerate(groups):
            arr[i] = g
    if arr.shape[0] != n:
        raise ValueError(f"groups has {arr.shape[0]} labels but values has {n} entries; "
                         "give one label per value")
    return arr


def _factorize(labels: np.ndarray) -> tuple[list, np.ndarray]:
    """``(unique labels in first-appearance order, code of each entry)``."""
    if labels.dtype != object:
        try:
            uniq, first, codes = np.unique(labels, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            return [u.item() if isinstance(u, np.generic) else u for u in uniq[order]], rank[codes.ravel()]
        except TypeError:
            pass
    seen: dict = {}
    codes = np.empty(labels.shape[0], dtype=np.int64)
    out = []
    for i, g in enumerate(labels):
        if isinstance(g, np.generic):
            g = g.item()
        try:
            c = seen.get(g)
        except TypeError:
            raise TypeError(f"group label {g!r} (at position {i}) is not hashable") from None
        if c is None:
            c = seen[g] = len(out)
            out.append(g)
        codes[i] = c
    return out, codes


def _as_values(values, what: str) -> np.ndarray:
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    if isinstance(values, jax.Array):
        values = np.asarray(values)
    arr = np.asarray(values)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must hold numbers, got an array of objects") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    return arr


def _is_dataframe(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and hasattr(obj, "groupby")


def _from_dataframe(df, value, by) -> tuple[np.ndarray, np.ndarray]:
    columns = list(df.columns)
    if by is None:
        raise TypeError("a DataFrame needs by= (the group column name, or a list of names)")
    by_list = list(by) if isinstance(by, (list, tuple)) else [by]
    for name in by_list:
        if name not in columns:
            raise ValueError(f"by={name!r}: no such column (columns: {', '.join(map(str, columns))})")
    if value is None:
        rest = [c for c in columns if c not in by_list]
        if len(rest) != 1:
            raise TypeError(f"a DataFrame with columns {', '.join(map(str, rest))} besides by= needs "
                            "value= (the column of numbers to fit)")
        value = rest[0]
    elif value not in columns:
        raise ValueError(f"value={value!r}: no such column (columns: {', '.join(map(str, columns))})")
    if value in by_list:
        raise ValueError(f"value={value!r} is also a group column (by=)")
    vals = _as_values(df[value], f"column {value!r}")
    if len(by_list) == 1 and not isinstance(by, (list, tuple)):
        labels = _as_labels(df[by_list[0]], vals.shape[0])
    else:
        labels = np.empty(vals.shape[0], dtype=object)
        for i, row in enumerate(df[by_list].itertuples(index=False, name=None)):
            labels[i] = tuple(v.item() if isinstance(v, np.generic) else v for v in row)
    return vals, labels


def _float_dtype(arrays) -> np.dtype:
    """The fit's dtype: floats of 32 bits or more keep theirs, everything else float64
    (which ``jnp.asarray`` turns into JAX's default float, as ``fit`` does)."""
    dts = [a.dtype for a in arrays if np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize >= 4]
    others = any(not (np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize >= 4) for a in arrays)
    dt = np.result_type(*dts) if dts else np.dtype(np.float64)
    if others and not dts:
        return np.dtype(np.float64)
    return jax.dtypes.canonicalize_dtype(dt)


def as_table(values, groups=None, *, value=None, by=None) -> _Table:
    """The groups of ``values`` as one flat array with offsets (see :func:`fit_groups`)."""
    if _is_dataframe(values):
        if groups is not None:
            raise TypeError("with a DataFrame, name the group column with by= (groups= must be None)")
        vals, labels = _from_dataframe(values, value, by)
        return _from_labelled(vals, labels)
    if value is not None or by is not None:
        raise TypeError("value= and by= name columns of a pandas DataFrame; values is a "
                        f"{type(values).__name__}")
    if groups is None:
        if isinstance(values, dict):
            labels = list(values.keys())
            parts = [_as_values(v, f"values[{k!r}]") for k, v in values.items()]
        elif isinstance(values, (list, tuple)):
            labels = list(range(len(values)))
            parts = [_as_values(v, f"values[{i}]") for i, v in enumerate(values)]
        else:
            raise TypeError("groups is required unless values is a dict or a list of arrays (one per "
                            f"group) or a DataFrame with by=; got values of type {type(values).__name__}")
        for lab in labels:
            canonical_label(lab)
        dt = _float_dtype(parts) if parts else np.dtype(np.float64)
        flat = np.concatenate([p.astype(dt) for p in parts]) if parts else np.zeros(0, dt)
        offsets = np.concatenate([[0], np.cumsum([p.shape[0] for p in parts])]).astype(np.int64)
        return _Table(labels, flat, offsets)
    vals = _as_values(values, "values")
    return _from_labelled(vals, _as_labels(groups, vals.shape[0]))


def _from_labelled(vals: np.ndarray, labels: np.ndarray) -> _Table:
    uniq, codes = _factorize(labels)
    seen = {}
    for lab in uniq:  # labels equal as Python values but distinct as array entries
        c = canonical_label(lab)
        if c in seen:
            raise ValueError(f"group labels {seen[c]!r} and {lab!r} are the same label; "
                             "make them one (or make them differ)")
        seen[c] = lab
    order = np.argsort(codes, kind="stable")
    dt = _float_dtype([vals])
    flat = vals[order].astype(dt)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(uniq)))]).astype(np.int64)
    return _Table(uniq, flat, offsets)


def _apply_nan_policy(table: _Table, nan_policy: str) -> _Table:
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    finite = np.isfinite(table.flat)
    if finite.all():
        return table
    group_of = np.repeat(np.arange(len(table.labels)), np.diff(table.offsets))
    if nan_policy == "raise":
        bad = np.unique(group_of[~finite])
        named = ", ".join(repr(table.labels[g]) for g in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(f"values hold NaN or inf in {bad.size} group(s): {named}; "
                         "pass nan_policy='omit' to drop them")
    counts = np.bincount(group_of[finite], minlength=len(table.labels))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Table(table.labels, table.flat[finite], offsets)


# --------------------------------------------------------------------------- #
# Result
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False)
class GroupFits:
    """Per-group results of :func:`fit_groups`, in the order groups first appear; ``G``
    groups, ``K`` components, all fields NumPy arrays.

    Attributes:
      labels: the group labels, a list of ``G``.
      n: observations fitted per group (after ``nan_policy="omit"``), ``(G,)`` int64.
      params: :class:`MixtureParams`, fields ``(G, K)``; NaN for groups not fitted.
      loglik: ``(G,)``, of ``params``; NaN for groups not fitted.
      status: ``(G,)`` int32 :class:`Status` codes (``TOO_FEW``: not fitted).
      n_iter: ``(G,)`` int32, of the best start.
      converged: ``(G,)`` bool, ``status == CONVERGED``.
      model: the fitted model (``ModelSpec``), as in :class:`FitResult`.

    A plain (frozen) dataclass, not a pytree: ``result[label]`` looks a group up by label.
    ``result[label]`` is that group's :class:`FitResult`; ``len(result)`` is ``G``;
    iterating gives the labels; :meth:`to_pandas` gives a table.
    """

    labels: list
    n: np.ndarray
    params: MixtureParams
    loglik: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    model: Any = None

    def __repr__(self) -> str:
        k = self.params.means.shape[-1]
        return (f"GroupFits({len(self)} groups, K = {k}, {int(np.sum(self.converged))} converged; "
                "fields labels, n, params, loglik, status, n_iter, converged; result[label], .to_pandas())")

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator:
        return iter(self.labels)

    def __contains__(self, label) -> bool:
        return canonical_label(label) in self._positions()

    def _positions(self) -> dict:
        return {canonical_label(lab): i for i, lab in enumerate(self.labels)}

    def index(self, label) -> int:
        """Position of ``label`` among :attr:`labels` (``KeyError`` if absent)."""
        try:
            return self._positions()[canonical_label(label)]
        except KeyError:
            raise KeyError(f"no group {label!r}") from None

    def __getitem__(self, label) -> FitResult:
        i = self.index(label)
        return FitResult(MixtureParams(*(f[i] for f in self.params)), self.loglik[i], self.n_iter[i],
                         self.status[i], self.converged[i], self.model)

    def fits(self) -> FitResult:
        """All groups as one :class:`FitResult` with a leading group axis ``(G,)``."""
        return FitResult(self.params, self.loglik, self.n_iter, self.status, self.converged, self.model)

    def to_pandas(self):
        """A DataFrame, one row per group: ``group``, ``n``, ``status`` (name), ``converged``,
        ``n_iter``, ``loglik``, ``pi_1..K``, ``mu_1..K``, ``sigma_1..K`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("GroupFits.to_pandas needs pandas (pip install pandas); the results "
                              "are NumPy arrays in the fields labels, n, params, loglik, status, "
                              "n_iter, converged") from None
        return pd.DataFrame(self.columns())

    def columns(self) -> dict:
        """The table of :meth:`to_pandas` as a dict of NumPy columns (no pandas needed)."""
        labels = np.empty(len(self.labels), dtype=object)
        for i, lab in enumerate(self.labels):  # element by element: tuples stay labels
            labels[i] = lab
        cols = {"group": labels, "n": self.n,
                "status": np.asarray([Status(int(s)).name for s in self.status], dtype=object),
                "converged": self.converged, "n_iter": self.n_iter, "loglik": self.loglik}
        for field, sym in zip(MixtureParams._fields, ("pi", "mu", "sigma")):
            values = getattr(self.params, field)
            for j in range(values.shape[-1]):
                cols[f"{sym}_{j + 1}"] = values[:, j]
        return cols


# --------------------------------------------------------------------------- #
# Fitting
# --------------------------------------------------------------------------- #
@functools.partial(jax.jit, static_argnames=("k", "method", "n_starts"))
def _group_starts(key, hi, lo, x, w, k: int, method: str, n_starts: int) -> MixtureParams:
    """Starts ``(n_starts, rows, K)``: row ``i`` from ``group_key`` of its id on its data."""
    def one(h, l, xi, wi):
        return init_params(_fold(key, h, l), xi, k, method=method, n_starts=n_starts, sample_weight=wi)

    starts = jax.vmap(one)(hi, lo, x, w)  # (rows, n_starts, K)
    return jax.tree_util.tree_map(lambda f: jnp.swapaxes(f, 0, 1), starts)


def fit_groups(
    values,
    groups=None,
    init_or_K=None,
    *,
    n_starts: Optional[int] = None,
    key=None,
    method: str = "kmeans++",
    fixed=(),
    equal_scales: bool = False,
    tol: Optional[float] = None,
    max_iter: int = DEFAULT_MAX_ITER,
    scale_floor: float = DEFAULT_SCALE_FLOOR,
    accelerate: Optional[str] = "squarem",
    compact: Optional[bool] = None,
    nan_policy: str = "raise",
    value=None,
    by=None,
) -> GroupFits:
    """Fit one mixture per group, every group in a few compiled calls.

    Args:
      values: the data, one of
        * a 1-D array of ``N`` numbers, with ``groups`` their ``N`` labels;
        * a dict ``{label: 1-D array}`` or a list of 1-D arrays (labels ``0, 1, ...``),
          with ``groups`` None;
        * a pandas DataFrame, with ``by=`` naming the group column (or a list of columns:
          labels are then tuples) and ``value=`` the column of numbers (may be left out
          when it is the only other column).
      groups: ``N`` labels (list, NumPy array, pandas Series) for a 1-D ``values``. Labels
        may be any hashable values with a stable ``repr`` (ints, floats, strings, tuples,
        mixed); labels equal as Python values (``1``, ``1.0``, ``True``) are one group.
      init_or_K: ``K``, the number of components: each group's starts are
        ``init_params(group_key(key, label), x, K, method=method, n_starts=n_starts)`` of
        its own observations ``x`` (``n_starts`` default 4). Or a :class:`MixtureParams`
        of shape ``(K,)`` or ``(R, K)``: starts shared by every group; with ``n_starts``
        too, data-driven starts as for ``K`` whose ``fixed`` entries take the values of
        this one. For a dict/list/DataFrame ``values`` it can also be given second
        (``fit_groups(arrays, 2, key=key)``).
      n_starts: starts per group (data-driven starts only).
      key: a ``jax.random`` key, required for data-driven starts.
      method: ``init_params``' method, ``"kmeans++"`` or ``"quantile"``.
      fixed, equal_scales, tol, max_iter, scale_floor, compact: as in :func:`jaxgmm.fit`,
        the same for every group. ``fixed`` needs a :class:`MixtureParams` ``init_or_K``
        (the fixed values).
      accelerate: as in :func:`jaxgmm.fit`; default ``"squarem"`` (measured on
        ``bench/groups.py``'s overlapping mixtures: see ``docs/groups.md``), ``None`` for
        plain EM.
      nan_policy: ``"raise"`` (default): NaN/inf values are an error naming the groups
        that hold them; ``"omit"``: they are dropped from their group.
      value, by: column names of a DataFrame ``values``.

    Returns:
      :class:`GroupFits`: ``labels``, ``n`` ``(G,)``, ``params`` (fields ``(G, K)``),
      ``loglik``, ``status``, ``n_iter``, ``converged`` ``(G,)``, and ``result[label]``,
      that group's :class:`FitResult`. A group with fewer observations than free
      parameters gets ``Status.TOO_FEW`` (NaN estimates, ``n_iter`` 0); constant or
      failing groups get ``fit``'s statuses; none of them raises for the call.

    Raises:
      ValueError, TypeError: bad arguments (naming them), NaN/inf values under
        ``nan_policy="raise"`` (naming the groups).

    Groups are padded (weight 0) to a geometric ladder of lengths and fitted ``rows``
    at a time (``jaxgmm/_groups.py``): a few compiled programs per doubling of the
    largest group, whatever the number of distinct sizes. A group's result does not
    depend on the other groups or on how the table is partitioned, beyond the rounding
    of sums (which can change with a call's shape).
    """
    if init_or_K is None and (isinstance(groups, (numbers.Integral, MixtureParams))
                              and not isinstance(groups, bool)):
        groups, init_or_K = None, groups
    if init_or_K is None:
        raise TypeError("init_or_K is required: the number of components K, or a MixtureParams start")
    table = _apply_nan_policy(as_table(values, groups, value=value, by=by), nan_policy)
    dtype = table.flat.dtype
    _validate.check_accelerate(accelerate)

    if isinstance(init_or_K, MixtureParams):
        shared = _validate.as_params(init_or_K, dtype)
        if shared.means.ndim not in (1, 2):
            raise ValueError(f"init_or_K as MixtureParams must have fields of shape (K,) or (R, K), "
                             f"got {shared.means.shape}")
        k = shared.means.shape[-1]
        data_starts = n_starts is not None
    else:
        if isinstance(init_or_K, bool) or not isinstance(init_or_K, numbers.Integral):
            raise TypeError(f"init_or_K must be an int K or a MixtureParams, got {type(init_or_K).__name__}")
        k = _validate.as_count(init_or_K, "init_or_K (K)")
        shared = None
        data_starts = True
        if fixed is not None and fixed != () and fixed != []:
            raise ValueError("fixed= needs the fixed values: pass a MixtureParams as init_or_K (with "
                             "n_starts= for data-driven starts of the free parameters)")
    spec = make_spec(fixed, k, equal_scales)
    if shared is not None:
        _validate.check_equal_fixed_scales(shared, spec)
    if data_starts:
        n_starts = 4 if n_starts is None else _validate.as_count(n_starts, "n_starts")
        if key is None:
            raise TypeError("key= is required for data-driven starts (e.g. key=jax.random.key(0))")
        _validate.check_key(key)
    n_free = n_free_parameters(spec)

    n_groups = len(table.labels)
    counts = np.diff(table.offsets)
    out_params = MixtureParams(*(np.full((n_groups, k), np.nan, dtype) for _ in range(3)))
    out_ll = np.full(n_groups, np.nan, dtype)
    out_status = np.full(n_groups, int(Status.TOO_FEW), np.int32)
    out_iter = np.zeros(n_groups, np.int32)
    fitted = np.flatnonzero(counts >= max(n_free, 1))
    if fitted.size:
        ids = [label_id(table.labels[g]) for g in fitted]
        hi, lo = _id_words(ids)
        pending = []
        starts_per_group = n_starts if data_starts else (shared.means.shape[0] if shared.means.ndim == 2 else 1)
        # MERGE_POINTS was measured with 4 starts a group: fewer starts, cheaper padding.
        for call in plan_calls(counts[fitted], merge_points=MERGE_POINTS * 4 // starts_per_group):
            members = fitted[call.members]
            filler = filler_row(call.length, k, n_free, dtype) if data_starts and shared is None else None
            x, w = pad_rows(table.flat, table.offsets, members, call.length, call.rows, dtype, filler)
            x, w = jnp.asarray(x), jnp.asarray(w)
            if data_starts:
                rows_hi = np.concatenate([hi[call.members], np.repeat(hi[call.members[:1]], call.rows - members.size)])
                rows_lo = np.concatenate([lo[call.members], np.repeat(lo[call.members[:1]], call.rows - members.size)])
                starts = _group_starts(key, jnp.asarray(rows_hi), jnp.asarray(rows_lo), x, w,
                                       k=k, method=method, n_starts=n_starts)
                if shared is not None and any(spec.fixed_weights + spec.fixed_means + spec.fixed_scales):
                    starts = impose_fixed(starts, MixtureParams(*(jnp.reshape(f, (-1, k))[0] for f in shared)), spec)
            else:
                starts = MixtureParams(*(f[:, None, :] if f.ndim == 2 else f[None, None, :] for f in shared))
            res = fit(x, starts, fixed=fixed, equal_scales=equal_scales, tol=tol, max_iter=max_iter,
                      sample_weight=w, scale_floor=scale_floor, accelerate=accelerate, compact=compact)
            pending.append((members, best_of(res, axis=0)))
        for members, best in pending:  # converted at the end: the calls run while the host packs
            n = members.size
            for out, got in zip(out_params, best.params):
                out[members] = np.asarray(got)[:n]
            out_ll[members] = np.asarray(best.loglik)[:n]
            out_status[members] = np.asarray(best.status)[:n]
            out_iter[members] = np.asarray(best.n_iter)[:n]
    return GroupFits(list(table.labels), counts.astype(np.int64), out_params, out_ll, out_status, out_iter,
                     out_status == int(Status.CONVERGED), spec)
