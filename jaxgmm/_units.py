"""A fit's units: the centre and spread its standardised coordinates are taken in.

Each fit works in standardised coordinates: the data are centred and scaled by
their own (weighted) centre and spread, the parameters mapped in and out.  That
keeps float32 accurate for data far from zero or tiny in scale, makes the
tolerance scale-free, and makes the variance floor relative to the data's
spread.  The units are computed once per dataset (:meth:`Standardiser.from_data`)
and carried by the fit (``jaxgmm._univariate``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax.numpy as jnp
from jax import lax

from ._chunks import over_data
from ._em import times_pow2
from ._params import Array, MixtureParams

# A component with less than this fraction of one (average) observation's weight
# is treated as empty: its mean and scale cannot be estimated.
_MIN_COUNT_FRACTION = 1e-3


def _extent(x: Array, w: Optional[Array]):
    """``(max, min, total weight, number present)`` of the observations present."""
    if w is None:
        n = jnp.asarray(x.shape[-1], x.dtype)
        return jnp.max(x), jnp.min(x), n, n
    present = w > 0
    return (jnp.max(jnp.where(present, x, -jnp.inf)), jnp.min(jnp.where(present, x, jnp.inf)),
            jnp.sum(w), jnp.sum(present).astype(x.dtype))


def _scaled_moments(x: Array, w: Optional[Array], shift, e, second: bool):
    """``sum w d`` and (if ``second``, static) ``sum w d^2`` of ``d = (x - shift) 2^e``."""
    d = times_pow2(x - shift, e)
    wd = d if w is None else w * d
    return jnp.sum(wd), (jnp.sum(wd * d) if second else None)


# Robust units.  A fit's units (the centre and spread of its standardised
# coordinates, which the stopping rule and the variance floor are relative to)
# come from the observations within CLIP spreads of the centre: where any lies
# beyond, centre and spread are recomputed from those within, up to
# CLIP_PASSES times.  One outlier at 1e12 among 10^4 points otherwise inflates
# the standard deviation to 1e10, and the rule "no mean moves by tol spreads"
# stopped EM after one iteration, 1,500 nats below its maximum (issue 21 #1);
# in float32 a centre pulled to 1e11 left the bulk unrepresentable (#2).
# Gaussian data never trigger it (8 sd: P < 1.3e-15 per point); the units of
# other data change, their fixed points do not.  A pass that would leave less
# than half of the weight, or no spread, is not taken.
CLIP = 8.0
CLIP_PASSES = 8


def _mean_and_spread(x: Array, w: Optional[Array], hi, lo, total, reduce):
    """Weighted mean and standard deviation of the observations present, exact
    to rounding whatever their magnitude (moments of the data rescaled by powers
    of two, the second about the mean)."""
    # Moments of data rescaled by a power of two near their largest magnitude
    # (exact in floating point): squares of data ~1e-30 would underflow in
    # float32, and sums of data ~1e30 overflow.
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
    (first, _) = reduce(functools.partial(_scaled_moments, shift=0.0, e=-e, second=False), (jnp.add, None))
    centre = jnp.ldexp(first / total, e)
    _, e = jnp.frexp(jnp.maximum(jnp.abs(hi - centre), jnp.abs(lo - centre)))
    first, second = reduce(functools.partial(_scaled_moments, shift=centre, e=-e, second=True), (jnp.add, jnp.add))
    # The centre is rounded to the data's precision (1e6 + N(0, 1) in float32
    # has a centre off by up to 0.03 sd); take its residual offset out.
    spread = jnp.ldexp(jnp.sqrt(jnp.maximum(second / total - jnp.square(first / total), 0)), e)
    return centre, spread


def _robust_units(x: Array, w: Optional[Array], hi, lo, total, centre, spread, chunk=None):
    """``(centre, spread)`` of the observations within :data:`CLIP` spreads (see there)."""

    def beyond(c, s, hi_, lo_):
        return (jnp.maximum(hi_ - c, c - lo_) > CLIP * s) & (s > 0) & jnp.isfinite(s)

    def body(carry):
        c, s, passes, _ = carry
        bound = CLIP * s

        def kept(xs, ws):
            inside = jnp.abs(xs - c) <= bound
            return jnp.where(inside, 1.0 if ws is None else ws, 0.0).astype(xs.dtype)

        # Reductions over the observations within the bound (chunk by chunk for
        # one very large dataset, as every pass of the standardiser).
        reduce = lambda fn, combine: over_data(x, w, lambda xs, ws: fn(xs, kept(xs, ws)), combine, chunk)
        hi_k, lo_k, total_k, _ = reduce(_extent, (jnp.maximum, jnp.minimum, jnp.add, jnp.add))
        c_k, s_k = _mean_and_spread(x, w, hi_k, lo_k, total_k, reduce)
        take = (total_k >= 0.5 * total) & (s_k > 0) & jnp.isfinite(s_k) & jnp.isfinite(c_k)
        c_new, s_new = jnp.where(take, c_k, c), jnp.where(take, s_k, s)
        return c_new, s_new, passes + 1, take & beyond(c_new, s_new, hi_k, lo_k)

    def cond(carry):
        return carry[3] & (carry[2] < CLIP_PASSES)

    start = (centre, spread, jnp.zeros((), jnp.int32), beyond(centre, spread, hi, lo))
    c, s, _, _ = lax.while_loop(cond, body, start)
    return c, s


class Standardiser(NamedTuple):
    """Per-dataset affine map to standardised coordinates and the data's totals.

    ``centre`` and ``spread`` are the weighted mean and standard deviation of the
    data, or, where observations lie beyond :data:`CLIP` standard deviations,
    those of the observations within (robust units, see :data:`CLIP`).
    """

    centre: Array
    spread: Array
    total_weight: Array
    min_count: Array

    @classmethod
    def from_data(cls, x: Array, sample_weight: Optional[Array], chunk: Optional[int] = None) -> "Standardiser":
        # Passes over the data, each a reduction: one very large dataset is
        # reduced chunk by chunk (over_data), with no temporary of the data's size.
        reduce = functools.partial(over_data, x, sample_weight, chunk=chunk)
        hi, lo, total, n_present = reduce(_extent, (jnp.maximum, jnp.minimum, jnp.add, jnp.add))
        centre, spread = _mean_and_spread(x, sample_weight, hi, lo, total, reduce)
        centre, spread = _robust_units(x, sample_weight, hi, lo, total, centre, spread, chunk)
        # Constant data (the centre may still be off by rounding, so test hi == lo):
        # the data's magnitude |centre| sets the units (1 for all zeros), so that
        # constant 1e19 or 1e-30 stay representable; broken data: the identity map.
        # The fit then reports the problem through its status.
        centre = jnp.where(jnp.isfinite(centre), centre, 0.0).astype(x.dtype)
        magnitude = jnp.where(centre != 0, jnp.abs(centre), 1.0)
        usable = (hi > lo) & jnp.isfinite(spread) & (spread > 0)
        spread = jnp.where(usable, spread, magnitude).astype(x.dtype)
        min_count = _MIN_COUNT_FRACTION * total / jnp.maximum(n_present, 1.0)
        return cls(centre, spread, total, min_count)

    def data(self, x: Array) -> Array:
        return (x - self.centre) / self.spread

    def params_in(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(p.weights, (p.means - self.centre) / self.spread, p.scales / self.spread)

    def params_out(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(p.weights, p.means * self.spread + self.centre, p.scales * self.spread)

    def loglik_out(self, loglik: Array) -> Array:
        # p(x) = p_std((x - c) / s) / s for every observation.
        return loglik - self.total_weight * jnp.log(self.spread)

