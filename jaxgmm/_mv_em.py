"""The EM update for a ``D``-dimensional Gaussian mixture, as pure functions of one dataset.

Everything here acts on one dataset ``x`` of shape ``(n, D)`` and parameters with
weights ``(K,)``, means ``(K, D)`` and covariances ``(K, D, D)``; batches come
from ``jax.vmap``.  The pieces the fitting engine plugs together, all jittable and
vmappable:

* :class:`MvStandardiser`: per-fit centring and scaling of each dimension, and the
  maps of data, parameters and log-likelihood to and from standardised units;
* :func:`mv_stats`: one E-pass reduced straight to centred sufficient statistics
  plus the log-likelihood, on the data in dimension-major layout ``(D, n)``
  (largest intermediates ``(K, D, n)``, observations on the minor axis);
* :func:`mv_m_step_from_stats`: the constrained M-step for the four covariance
  types, with the covariance floor and a per-component "on the floor" flag;
* :func:`em_update`, :func:`largest_change`, :func:`degenerate`,
  :func:`all_finite`: one iteration, the change measure and the status tests;
* :func:`e_step`, :func:`m_step`, :func:`log_likelihood`, :func:`sample`: the
  public single-step functions, in the user's units.

Covariance types (scikit-learn's meanings; mclust's names): ``"full"`` (VVV) one
unrestricted matrix per component, ``"diag"`` (VVI) diagonal matrices,
``"spherical"`` (VII) ``sigma_k^2 I``, ``"tied"`` (EEE) one unrestricted matrix
shared by all components.  The parameters always hold full matrices.  A
spherical model is not invariant under scaling dimensions differently, so its
standardiser scales all dimensions by one common spread.

Densities come from Cholesky factors ``Sigma_k = L_k L_k^T``: the log-determinant
is ``2 sum log diag(L_k)`` and the Mahalanobis distance ``|L_k^{-1} (x - mu_k)|^2``
a triangular solve; responsibilities and the log-likelihood are a softmax and a
log-sum-exp of the log-joint terms, clamped to their exact bounds so that no
rounding makes them overflow.  The factor is computed by :func:`cholesky`, whose
pivots (the conditional variances of each coordinate given the previous ones) are
floored, so a singular or indefinite matrix gives finite values, never NaN.

The covariance floor (``cov_floor``, a traced scalar) acts in standardised units,
where each dimension of the data has variance 1, so it is relative to the data's
own variances and scale-free: every pivot of an estimated covariance, i.e. the
variance of a standardised coordinate conditional on the previous ones within the
component, is at least ``cov_floor`` (for diagonal and spherical models: every
variance; for spherical models relative to the data's mean variance).  Pivots
are taken in the order of the dimensions, so the floor is not rotation-invariant;
at a floor near rounding level that matters only for which degenerate direction
is lifted.  A component whose scatter falls below it is lifted to the floor and
flagged, so the engine reports ``DEGENERATE`` with finite values.  The analogue of
the univariate ``scale_floor``: ``cov_floor = scale_floor**2``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from ._batching import broadcast_vmap
from ._em import times_pow2
from ._mv_params import COVARIANCE_TYPES, Array, MultivariateParams, MvSpec, all_set, make_mv_spec
from ._params import over_components
from ._xla import jit

_LOG_2PI = math.log(2.0 * math.pi)

# A component with less than this fraction of one (average) observation's weight
# is treated as empty (as in the univariate family).
_MIN_COUNT_FRACTION = 1e-3


def default_cov_floor(dtype) -> float:
    """The covariance floor matching the univariate ``scale_floor`` default (1e-5
    standard deviations): ``1e-10`` in standardised units, for every dtype."""
    del dtype
    return 1e-10


# ---------------------------------------------------------------- standardiser


class MvStandardiser(NamedTuple):
    """Per-dataset affine map to standardised units: ``z = (x - centre) / spread``.

    ``centre`` and ``spread`` are the weighted mean and standard deviation of each
    dimension (a constant column gets its magnitude, or 1 for zeros, as spread);
    ``total_weight`` is ``sum w`` and ``min_count`` the count below which a
    component counts as empty.
    """

    centre: Array  # shape=(D,)
    spread: Array  # shape=(D,)
    total_weight: Array  # shape=()
    min_count: Array  # shape=()

    def data(self, x: Array) -> Array:
        """Standardised ``x`` ``(n, D)``, same layout."""
        return (x - self.centre) / self.spread

    def data_t(self, x: Array) -> Array:
        """Standardised ``x`` ``(n, D)`` in the E-pass's dimension-major layout ``(D, n)``
        (transpose once per fit, outside the loop)."""
        return ((x - self.centre) / self.spread).T

    def params_in(self, p: MultivariateParams) -> MultivariateParams:
        s = self.spread
        return MultivariateParams(p.weights, (p.means - self.centre) / s,
                                  p.covariances / (s[:, None] * s[None, :]))

    def params_out(self, p: MultivariateParams) -> MultivariateParams:
        s = self.spread
        return MultivariateParams(p.weights, p.means * s + self.centre,
                                  p.covariances * (s[:, None] * s[None, :]))

    def loglik_out(self, loglik: Array) -> Array:
        # p(x) = p_std((x - c) / s) / prod(s) for every observation.
        return loglik - self.total_weight * jnp.sum(jnp.log(self.spread))


def standardiser(x: Array, sample_weight: Optional[Array] = None, covariance_type: str = "full") -> MvStandardiser:
    """The :class:`MvStandardiser` of one dataset ``x`` of shape ``(n, D)``.

    Each dimension is centred at its weighted mean.  It is scaled by its own
    weighted sd, except for ``covariance_type="spherical"`` (static): a spherical
    model is not invariant under scaling the dimensions differently, so all share
    one spread, the root of the mean variance (and the floor is then relative to
    the data's mean variance).

    Rows of weight 0 are absent (their values are not read).  Moments are taken of
    the data rescaled per column by a power of two near its largest magnitude
    (exact), so float32 data at 1e-30 do not underflow nor data at 1e30 overflow;
    the variance is taken about the (rounded) centre with the residual mean taken
    out, a two-pass formula: no cancellation for data far from zero (1e6 + N(0, 1)).
    """
    n, _ = x.shape
    if sample_weight is None:
        w = jnp.ones((n,), x.dtype)
    else:
        w = jnp.asarray(sample_weight, x.dtype)
    present = (w > 0)[:, None]
    xp = jnp.where(present, x, 0.0)
    hi = jnp.max(jnp.where(present, x, -jnp.inf), axis=0)
    lo = jnp.min(jnp.where(present, x, jnp.inf), axis=0)
    total = jnp.sum(w)
    n_present = jnp.sum(w > 0).astype(x.dtype)
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
    centre = jnp.ldexp(jnp.sum(w[:, None] * times_pow2(xp, -e), axis=0) / total, e)
    centre = jnp.where(jnp.isfinite(centre), centre, 0.0).astype(x.dtype)
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi - centre), jnp.abs(lo - centre)))
    d = jnp.where(present, times_pow2(xp - centre, -e), 0.0)
    first = jnp.sum(w[:, None] * d, axis=0) / total
    second = jnp.sum(w[:, None] * d * d, axis=0) / total
    spread = jnp.ldexp(jnp.sqrt(jnp.maximum(second - first * first, 0.0)), e)
    magnitude = jnp.where(centre != 0, jnp.abs(centre), 1.0)
    usable = (hi > lo) & jnp.isfinite(spread) & (spread > 0)
    if covariance_type == "spherical":
        # Root mean square of the sds, in units of the largest (no overflow).
        top = jnp.max(jnp.where(usable, spread, 0.0))
        unit = jnp.where(top > 0, top, 1.0)
        spread = jnp.broadcast_to(unit * jnp.sqrt(jnp.mean(jnp.square(jnp.where(usable, spread, 0.0) / unit))),
                                  spread.shape)
        magnitude = jnp.broadcast_to(jnp.max(magnitude), spread.shape)
        usable = jnp.broadcast_to(top > 0, spread.shape)
    spread = jnp.where(usable, spread, magnitude).astype(x.dtype)
    min_count = _MIN_COUNT_FRACTION * total / jnp.maximum(n_present, 1.0)
    return MvStandardiser(centre, spread, total, min_count)


# ---------------------------------------------------------------- Cholesky factors


def cholesky(s: Array, floor) -> tuple[Array, Array]:
    """Lower Cholesky factor of the symmetric ``s`` (``(..., D, D)``, lower triangle
    read) with every pivot floored at ``floor``, and whether any pivot was raised.

    Column by column (a ``fori_loop`` over the ``D`` dimensions, each step one
    matrix-vector product, all elementwise across a batch; the program's size
    does not grow with ``D``): pivot ``j`` is the variance of coordinate ``j``
    conditional on coordinates ``< j``.  Where it is below ``floor`` (rounding
    made it negative, or the matrix is singular) it is replaced by ``floor``, so
    the result is finite for any finite ``s`` and ``L L^T`` is positive definite
    when ``floor > 0``.  With ``floor = 0`` a zero pivot gives a zero column (a
    singular factor, as for sampling).  NaN in ``s`` stays NaN.  Returns
    ``(L, raised)`` with ``raised`` of shape ``(...)``.
    """
    d = s.shape[-1]
    idx = jnp.arange(d)
    floor = jnp.asarray(floor, s.dtype)

    def column(j, carry):
        factor, raised = carry
        # Columns >= j of `factor` are still zero, so this subtracts the sum over k < j.
        v = jnp.take(s, j, axis=-1) - jnp.einsum("...ik,...k->...i", factor, jnp.take(factor, j, axis=-2))
        pivot = jnp.take(v, j, axis=-1)
        root = jnp.sqrt(jnp.maximum(pivot, floor))
        inv = jnp.where(root > 0, 1.0 / jnp.where(root > 0, root, 1.0), 0.0)
        col = jnp.where(idx > j, v * inv[..., None], jnp.where(idx == j, root[..., None], 0.0))
        factor = jnp.where(idx == j, col[..., :, None], factor)
        return factor, raised | (pivot < floor)

    return lax.fori_loop(0, d, column, (jnp.zeros_like(s), jnp.zeros(s.shape[:-2], bool)))


def _symmetric(a: Array) -> Array:
    """``(a + a^T) / 2`` over the last two axes.  Exactly symmetric where ``a`` is a
    stored array (a ``dot_general`` output, whose two halves sum their products in
    different association); an elementwise expression may be fused into both reads
    with multiply-adds contracted differently, so those are written symmetric by
    construction instead (the scatter in :func:`mv_m_step_from_stats`)."""
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _rounding_floor(cov: Array) -> Array:
    """A pivot floor at the rounding level of each matrix (``(..., D, D)`` to
    ``(...)``): ``D eps`` times its largest diagonal entry (the smallest normal for
    zero matrices).  Pivots below it are not resolved by the entries' own
    rounding, so the floor changes nothing that the matrix determines."""
    d = cov.shape[-1]
    finfo = jnp.finfo(cov.dtype)
    top = jnp.max(jnp.diagonal(cov, axis1=-2, axis2=-1), axis=-1)
    return jnp.maximum(d * finfo.eps * top, finfo.tiny)


# ---------------------------------------------------------------- E-pass


class MvStats(NamedTuple):
    """Weighted sufficient statistics of one E-step, centred at the current means.

    ``count[k] = sum_i w_i r_ik``; ``first[k] = sum_i w_i r_ik (x_i - mu_k)``;
    ``second[k] = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T`` (diagonal for the
    diagonal and spherical models, zeros when no covariance is free);
    ``loglik = sum_i w_i log p(x_i)`` at the parameters the E-step used (None when
    skipped).
    """

    count: Array  # shape=(K,)
    first: Array  # shape=(K, D)
    second: Array  # shape=(K, D, D)
    loglik: Array  # shape=()


# Up to this many dimensions the Mahalanobis distances come from forward
# substitution written out per dimension (elementwise over (K, n) arrays, which
# fuse and vectorise along n; about 8x faster than a batched triangular solve for
# D = 3 on CPU, B = 500 fits of n = 1000); above it from lax's triangular solve,
# whose program does not grow with D^2.
_UNROLL_DIMS = 8


def _whiten(factor: Array, dev: Array) -> Array:
    """``z_k = L_k^{-1} dev_k`` for lower-triangular ``factor`` ``(K, D, D)`` and
    ``dev`` ``(K, D, n)``."""
    dim = dev.shape[-2]
    if dim > _UNROLL_DIMS:
        return lax.linalg.triangular_solve(factor, dev, left_side=True, lower=True)
    z = []
    for i in range(dim):
        acc = dev[:, i]
        for j in range(i):
            acc = acc - factor[:, i, j, None] * z[j]
        z.append(acc / factor[:, i, i, None])
    return jnp.stack(z, axis=1)


def _log_joint(xt: Array, params: MultivariateParams, covariance_type: str, floor) -> tuple[Array, Array]:
    """Log-joint terms ``a[k, i] = log pi_k + log N(x_i | mu_k, Sigma_k)`` (``(K, n)``)
    and the deviations ``x_i - mu_k`` (``(K, D, n)``), from dimension-major data
    ``xt`` ``(D, n)``: every per-point array has the observations as its minor
    axis, so the work over the ``D`` dimensions and ``K`` components is
    elementwise across ``n`` (with ``D`` minor, vectors of length 3 made the
    pass several times slower on CPU)."""
    dim = xt.shape[0]
    dev = xt[None, :, :] - params.means[:, :, None]  # (K, D, n)
    if covariance_type in ("diag", "spherical"):
        # Diagonal matrices: the Cholesky factor is the standard deviations.
        var = jnp.diagonal(params.covariances, axis1=-2, axis2=-1)  # (K, D)
        sd = jnp.sqrt(jnp.maximum(var, jnp.asarray(floor, xt.dtype)[..., None]))
        z = dev / sd[:, :, None]
        half_log_det = jnp.sum(jnp.log(sd), axis=-1)
    else:
        factor, _ = cholesky(params.covariances, floor)  # (K, D, D)
        z = _whiten(factor, dev)
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), axis=-1)
    const = jnp.log(params.weights) - half_log_det - 0.5 * dim * _LOG_2PI  # (K,)
    return const[:, None] - 0.5 * jnp.sum(z * z, axis=1), dev


def _posterior(a: Array) -> tuple[Array, Array]:
    """Responsibilities ``exp(a - logsumexp(a))`` over axis 0 of ``a`` (``(K, n)``)
    and ``logsumexp(a)`` (``(n,)``), clamped as the univariate ``_em._posterior``:
    ``a_k - max a <= 0`` and the sum of exponentials ``>= 1`` hold exactly, so
    points millions of standard deviations away give finite responsibilities."""
    largest = jnp.max(a, axis=0)
    # A point whose terms are all -inf keeps that log-likelihood, with zero
    # responsibilities rather than NaN.
    shift = jnp.where(jnp.isfinite(largest), largest, 0.0)
    scaled = jnp.exp(jnp.minimum(a - shift, 0.0))
    total = jnp.maximum(jnp.sum(scaled, axis=0), 1.0)
    return scaled / total, largest + jnp.log(total)


def _moments(resp: Array, dev: Array, sample_weight: Optional[Array], covariance_type: str,
             second_moments: bool) -> tuple[Array, Array, Array]:
    """``(count, first, second)`` from responsibilities ``(K, n)`` and deviations
    ``(K, D, n)``, never an ``(n, K, D, D)`` array.

    The sums over ``n`` are contractions (``dot_general`` with the component as
    batch axis): written as a broadcast product reduced over ``n``
    (``sum(wr[:, None] * dev, -1)``), XLA:CPU took about 10x longer for the first
    moments (B = 256 fits, n = 1000, K = 3, D = 2: 32 ms against 2.8 ms), and
    the scatter as one three-operand contraction as long again; column by column
    (``D`` contractions of ``wr * dev_j`` with ``dev``) it takes half that.
    ``precision="highest"``: accelerators would otherwise round float32
    operands of a contraction to fewer bits (TF32).
    """
    wr = resp if sample_weight is None else resp * sample_weight
    dot = functools.partial(jnp.einsum, precision=lax.Precision.HIGHEST)
    count = jnp.sum(wr, axis=-1)
    first = dot("kn,kdn->kd", wr, dev)
    k, dim, _ = dev.shape
    if not second_moments:
        return count, first, jnp.zeros((k, dim, dim), dev.dtype)
    if covariance_type in ("diag", "spherical"):
        second = dot("kn,kdn->kd", wr, dev * dev)[..., None] * jnp.eye(dim, dtype=dev.dtype)
    elif dim > _UNROLL_DIMS:
        second = _symmetric(dot("kdn,ken->kde", wr[:, None, :] * dev, dev))
    else:
        second = _symmetric(jnp.stack([dot("kn,kdn->kd", wr * dev[:, j, :], dev) for j in range(dim)], axis=-1))
    return count, first, second


def mv_stats(
    xt: Array,
    params: MultivariateParams,
    sample_weight: Optional[Array] = None,
    *,
    covariance_type: str = "full",
    floor=0.0,
    second_moments: bool = True,
    loglik: bool = True,
) -> MvStats:
    """One E-pass over the data: centred sufficient statistics and the log-likelihood.

    Args:
      xt: data in dimension-major layout, shape ``(D, n)`` (in the loop: the
        standardised data, :meth:`MvStandardiser.data_t`).
      params: current parameters (same units as ``x``).
      sample_weight: optional non-negative weights, shape ``(n,)``; rows of weight
        0 contribute nothing (their values must be finite).
      covariance_type: static; ``"diag"``/``"spherical"`` read only the diagonals.
      floor: pivot floor of the Cholesky factors (the loop passes ``cov_floor``:
        its covariances come floored from the M-step, so this only absorbs the
        rounding of ``L L^T``).
      second_moments: static; skip the scatter matrices (zeros) when no
        covariance is estimated.
      loglik: static; skip the log-likelihood (then ``None``).

    Why moments about the *current means* ``mu_k``: the M-step needs the scatter
    about the new mean ``mu_k + delta_k`` (``delta_k = first_k / N_k``), which is
    ``second_k - N_k delta_k delta_k^T``.  Each term of ``second_k`` is rounded to
    about ``eps`` of its size, so the scatter carries an absolute error of about
    ``eps N_k (Sigma_k + delta_k delta_k^T)``, a relative error of
    ``eps (1 + |delta_k|^2 / sigma_k^2)``: ``delta_k`` is the step of the mean,
    which shrinks to zero as EM converges, so the estimate is accurate where it
    matters.  Moments about a fixed origin (raw sums of ``x x^T``, or about the
    data centre) would carry ``eps |mu_k|^2 / sigma_k^2`` instead: for a narrow
    component away from the centre (sd 0.01 at 2 data-sds) 4e4 eps, 5e-3 in
    float32.  The deviations are needed for the Mahalanobis distances anyway, so
    the centring costs nothing; with a fixed mean ``delta_k = 0`` and the scatter
    about it is ``second_k`` exactly.
    """
    a, dev = _log_joint(xt, params, covariance_type, floor)
    resp, point_ll = _posterior(a)
    count, first, second = _moments(resp, dev, sample_weight, covariance_type, second_moments)
    ll = None
    if loglik:
        ll = jnp.sum(point_ll if sample_weight is None else point_ll * sample_weight)
    return MvStats(count, first, second, ll)


# ---------------------------------------------------------------- M-step


def mv_m_step_from_stats(
    stats: MvStats,
    params: MultivariateParams,
    spec: MvSpec,
    cov_floor=0.0,
    min_count=0.0,
) -> tuple[MultivariateParams, Array]:
    """M-step from centred sufficient statistics (the constrained MLE), and per
    component whether its estimated covariance was lifted to the floor (``(K,)``).

    * Free weights share the mass the fixed weights leave, in proportion to their
      counts: ``pi_k = (1 - sum_fixed pi) N_k / sum_free N``.
    * Free means move to the responsibility-weighted mean ``mu_k + first_k / N_k``.
    * Covariances from the scatter about the new (or the fixed) mean,
      ``C_k = second_k - N_k delta_k delta_k^T``: ``"full"`` ``C_k / N_k``;
      ``"diag"`` its diagonal; ``"spherical"`` ``tr(C_k) / (D N_k) I``; ``"tied"``
      ``sum_k C_k / sum_k N_k`` for all.  Then floored (see the module docstring):
      Cholesky pivots, or variances, below ``cov_floor`` are raised to it.
    * A component whose count is at most ``min_count`` keeps its mean and
      covariance (no information to move them); the engine reports it degenerate.
    """
    dtype = stats.count.dtype
    k, dim = stats.first.shape
    fixed_w = jnp.asarray(spec.fixed_weights)
    fixed_m = jnp.asarray(spec.fixed_means)
    fixed_c = jnp.asarray(spec.fixed_covariances)
    count = stats.count

    if all_set(spec.fixed_weights):
        weights = params.weights
    else:
        free_mass = 1.0 - over_components(jnp.add, jnp.where(fixed_w, params.weights, 0.0))
        free_count = over_components(jnp.add, jnp.where(fixed_w, 0.0, count))
        weights = jnp.where(fixed_w, params.weights, free_mass * count / free_count)

    alive = count > min_count
    safe_count = jnp.where(alive, count, 1.0)
    shift = jnp.where((fixed_m | ~alive)[:, None], 0.0, stats.first / safe_count[:, None])
    means = params.means + shift
    no_floor = jnp.zeros((k,), bool)
    if not spec.covariances_free:
        return MultivariateParams(weights, means, params.covariances), no_floor

    # Scatter about the new mean; with shift = 0 (fixed or empty) it is `second`.
    # Exactly symmetric: the statistics symmetrised (they are a stored array, so
    # both halves add the same two numbers), then count * (shift_i shift_j), not
    # (count shift_i) shift_j.
    scatter = _symmetric(stats.second) - count[:, None, None] * (shift[:, :, None] * shift[:, None, :])
    floor = jnp.asarray(cov_floor, dtype)
    eye = jnp.eye(dim, dtype=dtype)
    kind = spec.covariance_type
    if kind in ("diag", "spherical"):
        var = jnp.maximum(jnp.diagonal(scatter, axis1=-2, axis2=-1), 0.0) / safe_count[:, None]  # (K, D)
        if kind == "spherical":
            var = jnp.broadcast_to(jnp.mean(var, axis=-1, keepdims=True), var.shape)
        raised = jnp.any(var < floor, axis=-1)
        cov = jnp.maximum(var, floor)[..., None] * eye
    else:
        if kind == "tied":
            pooled = jnp.sum(scatter, axis=0) / over_components(jnp.add, count)
            cov = jnp.broadcast_to(pooled, scatter.shape)
        else:
            cov = scatter / safe_count[:, None, None]
        cov = _symmetric(cov)
        factor, raised = cholesky(cov, floor)
        lifted = _symmetric(jnp.einsum("...ij,...kj->...ik", factor, factor))
        cov = jnp.where(raised[:, None, None], lifted, cov)
    keep = fixed_c if kind == "tied" else fixed_c | ~alive
    covariances = jnp.where(keep[:, None, None], params.covariances, cov)
    return MultivariateParams(weights, means, covariances), raised & ~keep


def floor_covariances(covariances: Array, cov_floor, covariance_type: str = "full") -> tuple[Array, Array]:
    """Lift covariances (standardised units, ``(K, D, D)``) to the floor as the
    M-step does, e.g. for a user's start; returns ``(covariances, raised (K,))``.
    Matrices already above the floor are returned unchanged."""
    if covariance_type in ("diag", "spherical"):
        var = jnp.diagonal(covariances, axis1=-2, axis2=-1)
        raised = jnp.any(var < cov_floor, axis=-1)
        var = jnp.maximum(var, cov_floor)
        off = covariances * (1 - jnp.eye(covariances.shape[-1], dtype=covariances.dtype))
        return off + var[..., None] * jnp.eye(var.shape[-1], dtype=var.dtype), raised
    factor, raised = cholesky(covariances, cov_floor)
    lifted = _symmetric(jnp.einsum("...ij,...kj->...ik", factor, factor))
    return jnp.where(raised[..., None, None], lifted, covariances), raised


def em_update(
    xt_std: Array,
    sample_weight: Optional[Array],
    params: MultivariateParams,
    spec: MvSpec,
    cov_floor,
    min_count,
    *,
    loglik: bool = False,
) -> tuple[MultivariateParams, MvStats, Array]:
    """One EM iteration in standardised units: ``(new_params, stats, floored (K,))``.

    ``xt_std`` is the standardised data in dimension-major layout ``(D, n)``.

    ``stats.loglik`` (when ``loglik``, static) is the log-likelihood of ``params``,
    not of ``new_params``.
    """
    stats = mv_stats(xt_std, params, sample_weight, covariance_type=spec.covariance_type,
                     floor=cov_floor, second_moments=spec.covariances_free, loglik=loglik)
    new, floored = mv_m_step_from_stats(stats, params, spec, cov_floor, min_count)
    return new, stats, floored


# ---------------------------------------------------------------- status pieces


def largest_change(new: MultivariateParams, old: MultivariateParams) -> Array:
    """The largest absolute change of any weight, mean coordinate or covariance
    entry (``()``); in standardised units, means in data standard deviations and
    covariance entries in data variances (products of two dimensions' sds)."""
    return functools.reduce(jnp.maximum, [jnp.max(jnp.abs(a - b)) for a, b in zip(new, old)])


def all_finite(params: MultivariateParams) -> Array:
    """Whether every parameter is finite (``()`` bool)."""
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(f)) for f in params])


def degenerate(count: Array, floored: Array, spec: MvSpec, min_count) -> Array:
    """Whether a fit is degenerate (``()`` bool): a component not entirely fixed
    holds a count at most ``min_count`` (empty), or an estimated covariance sits on
    the floor (``floored`` from :func:`mv_m_step_from_stats`, ``(K,)``)."""
    fixed_c = jnp.asarray(spec.fixed_covariances)
    any_free = ~(jnp.asarray(spec.fixed_weights) & jnp.asarray(spec.fixed_means) & fixed_c)
    empty = jnp.any(any_free & (count <= min_count))
    return empty | jnp.any(floored & ~fixed_c)


# ---------------------------------------------------------------- public single steps


def _as_float(x: Array, params: MultivariateParams) -> tuple[Array, MultivariateParams]:
    dtype = jnp.result_type(jnp.asarray(x).dtype, *(jnp.asarray(f).dtype for f in params), jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    return jnp.asarray(x, dtype), MultivariateParams(*(jnp.asarray(f, dtype) for f in params))


def log_joint_of_data(x: Array, params: MultivariateParams) -> tuple[Array, Array]:
    """Log-joint terms ``(K, n)`` of one dataset ``x`` ``(n, D)`` in its own units,
    and the log of the units they come in (``()``): ``log p(x_i)`` is the
    log-sum-exp of the terms minus it.

    The fit works on standardised data; data as given can have dimensions in
    units far apart (spreads 1e4 and 1e-2), where the pivot floor ``D eps`` times
    the *largest* variance swamped the small one: float32 log-likelihoods off by
    a thousand.  So each dimension is first divided by a power of two near its
    largest component sd (exact: no rounding), and the terms' constant carries
    the units back.
    """
    _, e = jnp.frexp(jnp.max(jnp.diagonal(params.covariances, axis1=-2, axis2=-1), axis=0))  # (D,)
    half = e // 2  # 2**half is within a factor sqrt(2) of the largest sd
    scaled = MultivariateParams(params.weights, jnp.ldexp(params.means, -half),
                                jnp.ldexp(params.covariances, -(half[:, None] + half[None, :])))
    a, _ = _log_joint(jnp.ldexp(x, -half).T, scaled, "full", _rounding_floor(scaled.covariances))
    return a, math.log(2.0) * jnp.sum(half).astype(x.dtype)


def e_step(x: Array, params: MultivariateParams, sample_weight: Optional[Array] = None) -> tuple[Array, Array]:
    """E-step for one dataset: responsibilities ``(n, K)`` and the log-likelihood.

    Args:
      x: data, shape ``(n, D)``.
      params: :class:`MultivariateParams` (weights ``(K,)``, means ``(K, D)``,
        covariances ``(K, D, D)``).
      sample_weight: optional non-negative observation weights, shape ``(n,)``.

    Returns ``(resp, loglik)``, ``loglik = sum_i w_i log p(x_i | params)``.  Pivots
    of the Cholesky factors below their rounding level (``D eps`` times the largest
    variance, after :func:`log_joint_of_data` has put every dimension in units of
    its own spread) are floored there, so a singular covariance gives finite values.
    """
    x, params = _as_float(x, params)
    a, log_unit = log_joint_of_data(x, params)
    resp, point_ll = _posterior(a)
    point_ll = point_ll - log_unit
    ll = jnp.sum(point_ll if sample_weight is None else point_ll * sample_weight)
    return resp.T, ll


def m_step(
    x: Array,
    resp: Array,
    params: MultivariateParams,
    *,
    fixed=(),
    covariance_type: str = "full",
    sample_weight: Optional[Array] = None,
    cov_floor=0.0,
) -> MultivariateParams:
    """M-step for one dataset, given responsibilities ``(n, K)`` from :func:`e_step`.

    Computed in the data's standardised units (so data far from zero or tiny in
    scale lose nothing) and mapped back; ``params`` supplies fixed values and the
    centring points.  ``cov_floor`` is in standardised units (0: the plain MLE, a
    singular scatter giving a singular covariance).
    """
    x, params = _as_float(x, params)
    spec = make_mv_spec(fixed, params.means.shape[-2], covariance_type)
    return m_step_spec(x, resp, params, spec, sample_weight, cov_floor)


def m_step_spec(x: Array, resp: Array, params: MultivariateParams, spec: MvSpec,
                sample_weight: Optional[Array] = None, cov_floor=0.0) -> MultivariateParams:
    """:func:`m_step` with the model given as a :class:`MvSpec` (float inputs)."""
    std = standardiser(x, sample_weight, spec.covariance_type)
    p = std.params_in(params)
    dev = std.data_t(x)[None, :, :] - p.means[:, :, None]
    count, first, second = _moments(jnp.asarray(resp, x.dtype).T, dev, sample_weight, spec.covariance_type,
                                    spec.covariances_free)
    new, _ = mv_m_step_from_stats(MvStats(count, first, second, None), p, spec, cov_floor)
    new = std.params_out(new)
    # Fixed values exactly as given (the round trip through standardised units
    # rounds them).
    keep = [jnp.asarray(m).reshape((-1,) + (1,) * (f.ndim - 1)) for m, f in
            zip((spec.fixed_weights, spec.fixed_means, spec.fixed_covariances), params)]
    return MultivariateParams(*(jnp.where(m, f, g) for m, f, g in zip(keep, params, new)))


def _log_likelihood_one(x, sample_weight, weights, means, covariances):
    return e_step(x, MultivariateParams(weights, means, covariances), sample_weight)[1]


def log_likelihood(x: Array, params: MultivariateParams, sample_weight: Optional[Array] = None) -> Array:
    """Log-likelihood ``sum_i w_i log p(x_i | params)``, batched by broadcasting.

    ``x`` has shape ``(..., n, D)``, the fields of ``params`` ``(..., K)``,
    ``(..., K, D)``, ``(..., K, D, D)`` and ``sample_weight`` ``(..., n)``; their
    batch shapes broadcast (nothing is copied along a broadcast axis).  Returns an
    array of the broadcast batch shape.
    """
    x, params = _as_float(x, params)
    if sample_weight is not None:
        sample_weight = jnp.asarray(sample_weight, x.dtype)
    return _log_likelihood(x, sample_weight, params)


@jit
def _log_likelihood(x, sample_weight, params):
    fn, args = broadcast_vmap(_log_likelihood_one, (x, sample_weight, *params), (2, 1, 1, 2, 3))
    return fn(*args)


def sample(key: Array, params: MultivariateParams, n: int, shape: tuple = ()) -> Array:
    """Draw ``n`` observations per mixture: shape ``shape + batch_shape + (n, D)``.

    The batch shape is the broadcast of the fields' leading axes.  Singular
    covariances are allowed (draws then lie in their support).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    dtype = jnp.result_type(*(jnp.asarray(f).dtype for f in params), jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    params = MultivariateParams(*(jnp.asarray(f, dtype) for f in params))
    return _sample(key, params, n, tuple(int(s) for s in shape))


def _sample_impl(key, params: MultivariateParams, n: int, shape: tuple):
    batch = tuple(jnp.broadcast_shapes(jnp.shape(params.weights)[:-1], jnp.shape(params.means)[:-2],
                                       jnp.shape(params.covariances)[:-3]))
    dim = params.means.shape[-1]
    dtype = params.means.dtype
    out = shape + batch + (n,)
    k_comp, k_noise = jax.random.split(key)
    # Label = number of CDF cut points below a uniform draw (the last cut point,
    # 1, left out so rounding cannot give label K).
    cuts = jnp.cumsum(params.weights, axis=-1)[..., None, :-1]
    label = jnp.sum(jax.random.uniform(k_comp, out, dtype)[..., None] >= cuts, axis=-1)  # out
    z = jax.random.normal(k_noise, out + (dim,), dtype)
    factor, _ = cholesky(params.covariances, 0.0)  # (..., K, D, D)
    # Every component's transform of every draw, (..., n, K, D); then pick.
    y = jnp.einsum("...kde,...ne->...nkd", factor, z) + params.means[..., None, :, :]
    return jnp.take_along_axis(y, label[..., None, None], axis=-2)[..., 0, :]


_sample = jit(_sample_impl, static_argnums=(2, 3))

__all__ = ["COVARIANCE_TYPES", "MvStandardiser", "MvStats", "all_finite", "cholesky", "default_cov_floor",
           "degenerate", "e_step", "em_update", "floor_covariances", "largest_change", "log_likelihood",
           "m_step", "m_step_spec", "mv_m_step_from_stats", "mv_stats", "sample", "standardiser"]
