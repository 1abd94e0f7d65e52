"""``vmap`` of a one-dataset function over a batch, a cache-sized block of fits at a time.

For batched computations outside the EM engine (the observed information,
``jaxgmm/_inference.py``), which need no scheduling: every block does the same
work.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from ._batching import batch_shape_of, broadcast_vmap
from ._controls import resolve_tuning


def map_in_blocks(one, args, core_ndims, rows: Optional[int] = None):
    """``one`` over the broadcast batch of ``args``, a block of fits at a time.

    Arguments whose batch shape is the full one are cut into consecutive blocks
    of ``rows`` fits (``lax.dynamic_slice``: no padded copy of the data); those
    with no batch axes are shared.  The last block is shifted back to end at the
    last fit, so a few fits are computed twice with identical results.  Other
    broadcasting patterns fall back to one ``vmap`` over the whole batch.
    """
    shapes = [batch_shape_of(a, c) if a is not None else () for a, c in zip(args, core_ndims)]
    full = tuple(jnp.broadcast_shapes(*shapes))
    size = math.prod(full)
    n = jnp.shape(args[0])[-1]  # the data come first
    rows = resolve_tuning(n, size, args[0].dtype, compact=False).rows if rows is None else min(rows, size)
    if rows >= size or any(sh not in (full, ()) for sh in shapes):
        mapped, margs = broadcast_vmap(one, args, core_ndims)
        return mapped(*margs)
    batched = [a is not None and sh == full for a, sh in zip(args, shapes)]
    flat = [jax.tree_util.tree_map(lambda l, c=c: l.reshape((size,) + l.shape[l.ndim - c:]), a) if b else a
            for a, b, c in zip(args, batched, core_ndims)]
    in_axes = tuple(0 if b else None for b in batched)
    block_fn = jax.vmap(one, in_axes=in_axes)
    take = lambda a, start: jax.tree_util.tree_map(lambda l: lax.dynamic_slice_in_dim(l, start, rows), a)
    out_shape = jax.eval_shape(block_fn, *[take(a, 0) if b else a for a, b in zip(flat, batched)])
    out = jax.tree_util.tree_map(lambda o: jnp.zeros((size,) + o.shape[1:], o.dtype), out_shape)
    n_blocks = -(-size // rows)

    def body(i, out):
        start = jnp.minimum(i * rows, size - rows)
        res = block_fn(*[take(a, start) if b else a for a, b in zip(flat, batched)])
        return jax.tree_util.tree_map(lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, 0), out, res)

    out = lax.fori_loop(0, n_blocks, body, out)
    return jax.tree_util.tree_map(lambda o: o.reshape(full + o.shape[1:]), out)
