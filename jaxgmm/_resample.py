"""What every bootstrap chunk does the same way, whichever the family.

A nonparametric replicate resamples the ``n`` observations with replacement;
it is fitted as multinomial counts used as observation weights, so the data are
stored once, not once per replicate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def resampled_weights(keys, n: int, dtype, sample_weight=None):
    """Counts ``(B, n)``: how often each observation is drawn in each replicate
    (one key per replicate), times the original ``sample_weight`` if any."""
    def counts(k):
        pick = jax.random.randint(k, (n,), 0, n)
        return jnp.zeros((n,), dtype).at[pick].add(1.0)

    w = jax.vmap(counts)(keys)
    return w if sample_weight is None else w * sample_weight


def loop_kwargs(design) -> dict:
    """The iteration arguments of a bootstrap design for :func:`jaxgmm.fit`
    (``tol`` left out when ``None``: the float type's default)."""
    kw = dict(max_iter=design.max_iter, accelerate=design.accelerate)
    if design.tol is not None:
        kw["tol"] = design.tol
    return kw
