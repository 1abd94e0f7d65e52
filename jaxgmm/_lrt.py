"""The parametric bootstrap likelihood-ratio test for the number of components.

McLachlan (1987): to test ``K0`` against ``K1 > K0`` components, fit both to
the data (statistic ``T = 2 (ll1 - ll0)``), simulate ``reps`` datasets of the
same size from the ``K0`` fit, fit both models to each, and compare ``T`` with
the replicates' statistics: ``p = (1 + #{T_b >= T}) / (reps + 1)`` (the +1
counts the observed data as one draw of the null, so ``p`` is never 0 and the
test has its nominal size for any ``reps``).  mclust's ``mclustBootstrapLRT``
and mixtools' ``boot.comp`` do the same one replicate at a time.

Here every replicate and every start of one model is one batched
:func:`jaxgmm.fit`.  What makes it fast, measured on Old Faithful waiting
(``bench/lrt.py``):

* SQUAREM (``accelerate="squarem"``, the default here).  A ``K + 1`` fit to
  ``K``-component data sits on a ridge: plain EM creeps (mean 1,800
  iterations, 10,000 for some) and, at a given tolerance, stops far from the
  maximum: 12% of replicates' statistics were more than 0.1 low, some by 8.
  SQUAREM took 174 E-steps on average and 7 in 1,000 were off by more than 0.1.
* Fits that still run after a while are continued in smaller batches
  (:func:`_fit_in_stages`): the engine's lanes wait for the slowest fit of a
  block, and the 1% of null ``K + 1`` fits that need thousands of E-steps held
  blocks of ~1,000 lanes (lane work 30x the useful work).  A stage stops every
  fit at its cap; the ones at the cap continue from where they stopped in a
  batch a quarter the size or less, so a block waits at most for its stage.
* The default tolerance is 1e-5 in both float widths (float32's own default;
  float64's 1e-9 would be 10,000x tighter than the statistic needs): with
  SQUAREM the replicates' statistics at 1e-5 and at 1e-6 agreed to 2.4e-4
  (1st-99th percentile of the differences), against a null spread of about 3.

Starts.  Each model gets ``n_starts`` starts per dataset: for the observed
data ``n_starts`` k-means++ starts (:func:`jaxgmm.init_params`) for ``K0``, and
for ``K1`` ``n_starts - 1`` of them plus the *nested start*: the ``K0`` fit with
its heaviest component split into two identical halves.  That start has the
``K0`` fit's log-likelihood exactly and EM never lowers it, so the ``K1`` fit
cannot end below the ``K0`` fit (beyond rounding) as long as some start stays
healthy.  For each replicate the ``K0`` fit starts from the parameters it was
simulated from (plus ``n_starts - 1`` random ones) and the ``K1`` fit from the
observed ``K1`` fit (as mclust does), the nested start from that replicate's
``K0`` fit, and ``n_starts - 2`` random ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

import jax
import jax.numpy as jnp

from . import _validate
from ._fit import DEFAULT_MAX_ITER, best_of, fit
from ._init import init_params
from ._params import FitResult, MixtureParams, Status
from ._runner import as_key, check_count
from ._study import simulate_replicates

# The statistic needs about 1e-2 accuracy (its null spread is about 3): see the
# module docstring for the measurement behind this default.
LRT_TOL = 1e-5
# The first stage's cap of E-steps; each later stage's is four times larger.
FIRST_STAGE = 250
# Continuation batches are padded to one of these sizes (64, 256, 1024, ...),
# so repeated tests reuse a few compiled programs.
_BUCKET_BASE, _BUCKET_GROWTH = 64, 4


@dataclass(frozen=True)
class LRTResult:
    """Output of :func:`bootstrap_lrt` (``reps`` = the number of replicates).

    Attributes:
      k0, k1: the null and alternative numbers of components.
      statistic: observed ``2 (ll1 - ll0)``, a float.
      p_value: ``(1 + #{T_b >= statistic}) / (reps + 1)`` over *all*
        replicates, each with the statistic its fits gave (flagged ones
        included, a NaN statistic counting as not exceeding).
      p_value_max: the same with every flagged replicate counted as
        exceeding: the p-value if each of them had been wrong in the direction
        that matters.  Equal to ``p_value`` when nothing was flagged.
      boot_statistics: ``(reps,)`` float64, the replicates' ``2 (ll1 - ll0)``.
      boot_loglik0, boot_loglik1: ``(reps,)``, the best fit's log-likelihood per
        replicate and model.
      boot_status0, boot_status1: ``(reps,)`` int, the :class:`Status` of the
        best fit per replicate and model.
      below: ``(reps,)`` bool, replicates whose ``K1`` fit ended below their
        ``K0`` fit by more than rounding (:func:`rounding_slack`).
      flagged: ``(reps,)`` bool, replicates with a non-converged (MAX_ITER),
        degenerate or non-finite best fit in either model, or ``below``.
      n_not_converged, n_degenerate, n_nonfinite, n_below: counts of replicates
        (a replicate counts once per kind, whichever model caused it).
      fit0, fit1: the observed data's best fits (fields ``(k0,)``, ``(k1,)``).
      observed_below: whether the observed ``K1`` fit ended below the ``K0`` fit.
      reps, n_starts, n_obs, tol, max_iter, accelerate, equal_scales: as run
        (``n_obs``: observations per replicate).
      n_iter: total E-steps of all replicate fits (all starts, both models).
    """

    k0: int
    k1: int
    statistic: float
    p_value: float
    p_value_max: float
    boot_statistics: np.ndarray
    boot_loglik0: np.ndarray
    boot_loglik1: np.ndarray
    boot_status0: np.ndarray
    boot_status1: np.ndarray
    below: np.ndarray
    flagged: np.ndarray
    n_not_converged: int
    n_degenerate: int
    n_nonfinite: int
    n_below: int
    fit0: FitResult
    fit1: FitResult
    observed_below: bool
    reps: int
    n_starts: int
    n_obs: int
    tol: float
    max_iter: int
    accelerate: Optional[str]
    equal_scales: bool
    n_iter: int

    @property
    def n_flagged(self) -> int:
        return int(np.sum(self.flagged))

    def summary(self) -> str:
        """One line: the test, the statistic, the p-value and what was flagged."""
        flags = (f"{self.n_flagged} flagged (not converged {self.n_not_converged}, degenerate "
                 f"{self.n_degenerate}, non-finite {self.n_nonfinite}, K1 below K0 {self.n_below}); "
                 f"p <= {self.p_value_max:.4g} if all flagged exceeded" if self.n_flagged else "none flagged")
        return (f"{self.k0} vs {self.k1} components: LRT statistic {self.statistic:.4f}, bootstrap "
                f"p = {self.p_value:.4g} ({self.reps} replicates, {self.n_starts} starts; {flags})")


@dataclass(frozen=True)
class SequentialLRT:
    """Output of :func:`sequential_lrt`.

    Attributes:
      steps: the :class:`LRTResult` of each test run, ``1 vs 2, 2 vs 3, ...``.
      n_components: the chosen ``K``: the ``k0`` of the first test not
        rejected at ``alpha``, or ``max_components`` if every test rejected.
      alpha: the level used.
      reached_max: ``True`` when every test up to ``max_components`` rejected
        (the choice is then a lower bound, not a decision).
    """

    steps: tuple
    n_components: int
    alpha: float
    reached_max: bool

    @property
    def p_values(self) -> tuple:
        return tuple(s.p_value for s in self.steps)


def rounding_slack(loglik0, loglik1, dtype) -> np.ndarray:
    """How far ``ll1`` may fall below ``ll0`` by rounding alone: 64 eps (|ll0| + |ll1|).

    Each log-likelihood is a sum of ``n`` terms computed on standardised data
    and mapped back; 64 eps of the total magnitude covers that rounding
    (float32: about 0.02 for Old Faithful's -1,100) and is far below any
    statistic that matters.
    """
    eps = float(np.finfo(dtype).eps)
    return 64 * eps * (np.abs(np.asarray(loglik0, np.float64)) + np.abs(np.asarray(loglik1, np.float64)))


def _bucket(m: int) -> int:
    b = _BUCKET_BASE
    while b < m:
        b *= _BUCKET_GROWTH
    return b


def _fit_in_stages(x, starts: MixtureParams, *, max_iter: int, first_stage: int = FIRST_STAGE, **fit_kw):
    """:func:`jaxgmm.fit` of ``x`` ``(B, n)`` from ``starts`` ``(S, B, K)``, run in stages.

    The first stage fits everything with at most ``first_stage`` E-steps; fits
    stopped at that cap continue from where they stopped, with a cap four times
    larger, in a batch of their own (padded to a bucket size with a fit that
    has already converged, so that its lanes stop at once), and so on until
    ``max_iter`` E-steps in all.  Returns the ``(S, B)`` :class:`FitResult`
    (``n_iter``: E-steps over all stages) with the model of the fit.

    Why here and not in the engine: on null replicates about 1% of the K + 1
    fits need thousands of E-steps, and the engine's compacting blocks (about
    1000 lanes at n = 272) keep all their lanes running for them until at most
    8 remain (lane work 5.5e6 against 3.5e5 useful E-steps on 200 replicates).
    This is a second scheduler outside the engine's loop, and a continued
    SQUAREM fit restarts its step length: it should go once the engine hands
    stragglers to smaller blocks in every phase (issue 15's efficiency item).
    """
    cap = min(first_stage, max_iter)
    res = fit(x, starts, max_iter=cap, **fit_kw)
    model = res.model
    shape = res.loglik.shape
    flat = {name: np.array(getattr(res, name)).reshape(-1) for name in ("loglik", "n_iter", "status", "converged")}
    params = [np.array(f).reshape((-1,) + f.shape[len(shape):]) for f in res.params]
    b = shape[-1]
    used = cap
    while used < max_iter:
        todo = np.nonzero(flat["status"] == Status.MAX_ITER)[0]
        if todo.size == 0:
            break
        done = np.nonzero(flat["status"] == Status.CONVERGED)[0]
        filler = done[0] if done.size else todo[0]
        m = _bucket(todo.size)
        idx = np.concatenate([todo, np.full(m - todo.size, filler)])
        step = min(4 * (used if used > cap else cap), max_iter - used)
        more = fit(x[jnp.asarray(idx % b)], MixtureParams(*(jnp.asarray(p[idx]) for p in params)),
                   max_iter=step, **fit_kw)
        for name in ("loglik", "status", "converged"):
            flat[name][todo] = np.asarray(getattr(more, name))[:todo.size]
        flat["n_iter"][todo] += np.asarray(more.n_iter)[:todo.size]
        for p, q in zip(params, more.params):
            p[todo] = np.asarray(q)[:todo.size]
        used += step
    out = FitResult(MixtureParams(*(jnp.asarray(p.reshape(shape + p.shape[1:])) for p in params)),
                    *(jnp.asarray(flat[name].reshape(shape)) for name in ("loglik", "n_iter", "status", "converged")),
                    model=model)
    return out


def nested_start(params: MixtureParams) -> MixtureParams:
    """A ``K + 1`` start with the log-likelihood of the ``K``-component ``params``:
    the heaviest component split into two identical halves (fields ``(..., K)``
    to ``(..., K + 1)``)."""
    w, m, s = (np.asarray(f) for f in params)
    j = np.argmax(w, axis=-1)[..., None]
    half = np.take_along_axis(w, j, -1) / 2
    w = w.copy()
    np.put_along_axis(w, j, half, -1)
    return MixtureParams(jnp.asarray(np.concatenate([w, half], -1)),
                         jnp.asarray(np.concatenate([m, np.take_along_axis(m, j, -1)], -1)),
                         jnp.asarray(np.concatenate([s, np.take_along_axis(s, j, -1)], -1)))


def _frequency_weights(x, sample_weight):
    """``(x, w, n_obs)``: ``sample_weight`` read as frequency weights (whole
    numbers: how many times each value was observed), so a replicate is
    ``sum(w)`` draws; anything else is refused."""
    if sample_weight is None:
        return x, None, int(x.shape[-1])
    w = _validate.as_sample_weight(sample_weight, x)
    w = jnp.broadcast_to(w, x.shape)
    wn = np.asarray(w, np.float64)
    if not np.all(np.isfinite(wn)) or np.any(wn < 0) or np.any(wn != np.round(wn)):
        raise ValueError("bootstrap_lrt reads sample_weight as frequency weights (how many times each value "
                         "was observed: whole numbers >= 0), so a replicate is sum(sample_weight) new draws; "
                         "got weights that are not whole numbers. For other weights the null distribution of "
                         "the weighted statistic is not that of a simulated sample: the test is not defined")
    total = int(wn.sum())
    if total < 1:
        raise ValueError("sample_weight sums to 0: no observations")
    return x, w, total


def _stack(*parts: MixtureParams) -> MixtureParams:
    return MixtureParams(*(jnp.concatenate(fs, axis=0) for fs in zip(*parts)))


def _tally(loglik0, loglik1, status0, status1, statistic: float, dtype) -> dict:
    """The replicates' statistics, flags, counts and p-values (fields of :class:`LRTResult`)."""
    ll0 = np.asarray(loglik0, np.float64)
    ll1 = np.asarray(loglik1, np.float64)
    s0, s1 = np.asarray(status0), np.asarray(status1)
    t = 2.0 * (ll1 - ll0)
    either = lambda code: (s0 == code) | (s1 == code)
    not_conv, degenerate, nonfinite = either(Status.MAX_ITER), either(Status.DEGENERATE), either(Status.NONFINITE)
    below = t < -2 * rounding_slack(ll0, ll1, dtype)
    flagged = not_conv | degenerate | nonfinite | below | ~np.isfinite(t)
    exceed = t >= statistic  # a NaN statistic compares False: not exceeding
    reps = t.shape[0]
    return dict(p_value=(1 + int(np.sum(exceed))) / (reps + 1),
                p_value_max=(1 + int(np.sum(exceed | flagged))) / (reps + 1),
                boot_statistics=t, boot_loglik0=ll0, boot_loglik1=ll1, boot_status0=s0, boot_status1=s1,
                below=below, flagged=flagged, n_not_converged=int(np.sum(not_conv)),
                n_degenerate=int(np.sum(degenerate)), n_nonfinite=int(np.sum(nonfinite)),
                n_below=int(np.sum(below)))


def bootstrap_lrt(
    key,
    x,
    k0: int,
    *,
    k1: Optional[int] = None,
    reps: int = 999,
    n_starts: int = 10,
    equal_scales: bool = False,
    fixed=(),
    sample_weight=None,
    tol: Optional[float] = None,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: Optional[str] = "squarem",
    nan_policy: str = "raise",
) -> LRTResult:
    """Parametric bootstrap likelihood-ratio test of ``k0`` against ``k1`` components.

    Args:
      key: a ``jax.random`` key or an integer seed.  The observed fits, the
        replicates' data (replicate ``b`` is :func:`jaxgmm.simulate_replicates`'s
        replicate ``b`` of a study of the ``k0`` fit) and each model's starts use
        keys folded from it, so a test is reproducible from ``key``.
      x: one dataset, shape ``(n,)``.
      k0: components under the null (>= 1); ``k1``: under the alternative
        (default ``k0 + 1``, must exceed ``k0``).
      reps: bootstrap replicates (default 999, as mclust; the p-value's
        Monte Carlo standard error is ``sqrt(p (1 - p) / reps)``).
      n_starts: starts per model and dataset (>= 2), counting the informed
        starts described in the module docstring (default 10).
      equal_scales: one common scale (mclust's "E" model); default free scales
        (mclust's "V").
      fixed: only ``()``.  Fixed values would have to be given for both
        numbers of components, and which of ``k1``'s components a fixed value of
        ``k0``'s belongs to is not defined: a ``ValueError`` says so.
      sample_weight: frequency weights (whole numbers, how often each value
        was observed): the observed fits use them and each replicate is
        ``sum(sample_weight)`` unweighted draws.  Other weights are refused.
      tol: convergence tolerance of every fit; ``None``: 1e-5 in both float
        widths (see the module docstring for why).
      max_iter: E-steps per fit at most (over all stages).
      accelerate: ``"squarem"`` (default) or ``None`` (plain EM), as in
        :func:`jaxgmm.fit`.
      nan_policy: as in :func:`jaxgmm.fit`.

    Returns:
      :class:`LRTResult`.  Replicates whose best fit did not converge, was
      degenerate or non-finite in either model, or whose ``k1`` fit ended below
      the ``k0`` fit, are counted and flagged, never dropped or redrawn:
      ``p_value`` uses their statistics as they are, ``p_value_max`` counts
      them all as exceeding the observed statistic.
    """
    k0 = _validate.as_count(k0, "k0")
    k1 = k0 + 1 if k1 is None else _validate.as_count(k1, "k1")
    if k1 <= k0:
        raise ValueError(f"k1 must exceed k0, got k0={k0}, k1={k1}")
    reps = check_count(reps, "reps", maximum=2 ** 31 - 1)
    n_starts = check_count(n_starts, "n_starts", minimum=2, maximum=10_000)
    equal_scales = _validate.check_bool(equal_scales, "equal_scales")
    if fixed not in ((), None, ""):
        raise ValueError(f"bootstrap_lrt takes no fixed= (got {fixed!r}): fixed values would have to be given for "
                         f"both {k0} and {k1} components, and which of the {k1} components a fixed value of the "
                         f"{k0} belongs to is not defined. Test a model with known parameters by simulating from "
                         "it with jaxgmm.simulate_replicates and fitting with jaxgmm.fit(fixed=...)")
    if accelerate not in (None, "squarem"):
        _validate.check_accelerate(accelerate)
    key = as_key(key)
    x = _validate.as_data(x)
    if x.ndim != 1:
        raise ValueError(f"bootstrap_lrt takes one dataset x of shape (n,), got shape {x.shape}")
    w0 = _validate.as_sample_weight(sample_weight, x)
    x, w0 = _validate.apply_nan_policy(x, w0, nan_policy)
    x, w, n_obs = _frequency_weights(x, w0)
    _validate.check_iteration_args(tol, max_iter)
    tol = LRT_TOL if tol is None else float(tol)
    max_iter = int(max_iter)
    kw = dict(equal_scales=equal_scales, tol=tol, accelerate=accelerate)
    keys = [jax.random.fold_in(key, i) for i in range(5)]

    # The observed data: k0 from random starts; k1 from random starts and the nested start.
    fit0 = best_of(fit(x, init_params(keys[0], x, k0, n_starts=n_starts, sample_weight=w),
                       sample_weight=w, max_iter=max_iter, **kw))
    starts1 = _stack(jax.tree_util.tree_map(lambda f: f[None], nested_start(fit0.params)),
                     init_params(keys[1], x, k1, n_starts=n_starts - 1, sample_weight=w))
    fit1 = best_of(fit(x, starts1, sample_weight=w, max_iter=max_iter, **kw))
    statistic = float(2.0 * (np.float64(fit1.loglik) - np.float64(fit0.loglik)))
    observed_below = bool(statistic < -2 * rounding_slack(fit0.loglik, fit1.loglik, x.dtype))

    # The replicates: all of them and all starts of one model in one staged fit.
    xb = simulate_replicates(keys[2], fit0.params, n_obs, np.arange(reps))  # (reps, n_obs)
    bcast = lambda p, k: jax.tree_util.tree_map(lambda f: jnp.broadcast_to(f, (1, reps, k)), p)
    starts0 = _stack(bcast(fit0.params, k0), init_params(keys[3], xb, k0, n_starts=n_starts - 1))
    all0 = _fit_in_stages(xb, starts0, max_iter=max_iter, **kw)
    boot0 = best_of(all0)
    parts = [bcast(fit1.params, k1), jax.tree_util.tree_map(lambda f: f[None], nested_start(boot0.params))]
    if n_starts > 2:
        parts.append(init_params(keys[4], xb, k1, n_starts=n_starts - 2))
    all1 = _fit_in_stages(xb, _stack(*parts), max_iter=max_iter, **kw)
    boot1 = best_of(all1)

    tally = _tally(boot0.loglik, boot1.loglik, boot0.status, boot1.status, statistic, x.dtype)
    n_iter = int(np.sum(np.asarray(all0.n_iter, np.int64)) + np.sum(np.asarray(all1.n_iter, np.int64)))
    return LRTResult(
        k0=k0, k1=k1, statistic=statistic, **tally, fit0=fit0, fit1=fit1, observed_below=observed_below,
        reps=reps, n_starts=n_starts, n_obs=n_obs, tol=tol, max_iter=max_iter, accelerate=accelerate, equal_scales=equal_scales, n_iter=n_iter)


def sequential_lrt(key, x, *, max_components: int = 6, alpha: float = 0.05, **kwargs) -> SequentialLRT:
    """Test 1 vs 2, 2 vs 3, ... components until a test does not reject at ``alpha``.

    Each step is :func:`bootstrap_lrt` (``kwargs`` go to it, not ``k0``/``k1``)
    with the key ``fold_in(key, k0)``.  Stops at the first ``p_value > alpha``
    and chooses its ``k0``; if every test up to ``max_components - 1`` vs
    ``max_components`` rejects, chooses ``max_components`` with
    ``reached_max=True``.  The steps are not a multiplicity-corrected
    procedure (as in mclust, whose ``mclustBootstrapLRT`` without ``maxG`` runs
    the same sequence): each is a level-``alpha`` test given the step before it.
    """
    kmax = _validate.as_count(max_components, "max_components", minimum=2)
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    if "k0" in kwargs or "k1" in kwargs:
        raise TypeError("sequential_lrt chooses k0 and k1 itself (1 vs 2, 2 vs 3, ...)")
    key = as_key(key)
    steps = []
    for k in range(1, kmax):
        step = bootstrap_lrt(jax.random.fold_in(key, k), x, k, **kwargs)
        steps.append(step)
        if step.p_value > a:
            return SequentialLRT(tuple(steps), k, a, False)
    return SequentialLRT(tuple(steps), kmax, a, True)
