"""NumPy-style broadcasting of batch axes, built on nested ``jax.vmap``.

``broadcast_vmap`` maps a single-fit function over the broadcast batch shape of its
arguments *without materialising broadcast copies*: an argument that lacks a batch
axis (or has size 1 there) is passed with ``in_axes=None`` for that axis, so one
dataset fitted from R starts is stored once, not R times.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp


def batch_shape_of(arg, core_ndim: int) -> tuple[int, ...]:
    """Batch shape of an array (or pytree of arrays sharing one) with ``core_ndim`` core axes."""
    leaves = jax.tree_util.tree_leaves(arg)
    shapes = [jnp.shape(leaf)[: jnp.ndim(leaf) - core_ndim] for leaf in leaves]
    return tuple(jnp.broadcast_shapes(*shapes)) if shapes else ()


def broadcast_vmap(
    fn: Callable, args: Sequence, core_ndims: Sequence[int]
) -> tuple[Callable, tuple]:
    """Prepare ``fn(*args)`` to run over the broadcast batch shape of ``args``.

    Args:
      fn: function of single (unbatched) arguments.
      args: arguments; each is ``None`` or a pytree whose leaves share a batch shape
        followed by ``core_ndims[i]`` core axes.
      core_ndims: number of trailing core axes of each argument.

    Returns:
      ``(mapped_fn, mapped_args)``; ``mapped_fn(*mapped_args)`` returns outputs with
      the broadcast batch shape in front.
    """
    batch_shapes = [batch_shape_of(a, c) if a is not None else () for a, c in zip(args, core_ndims)]
    full = tuple(jnp.broadcast_shapes(*batch_shapes))
    nb = len(full)
    mapped_args, present = [], []
    for arg, own, core in zip(args, batch_shapes, core_ndims):
        own = (1,) * (nb - len(own)) + tuple(own)
        # An axis this argument broadcasts along is dropped and mapped with None.
        keep = [own[j] == full[j] for j in range(nb)]
        present.append(keep)
        if arg is None:
            mapped_args.append(None)
            continue

        def squeeze(leaf, own=own, keep=keep, core=core):
            leaf = jnp.reshape(leaf, own + jnp.shape(leaf)[jnp.ndim(leaf) - core:])
            return jnp.reshape(leaf, tuple(s for s, k in zip(own, keep) if k) + leaf.shape[nb:])

        mapped_args.append(jax.tree_util.tree_map(squeeze, arg))
    mapped = fn
    for j in reversed(range(nb)):
        mapped = jax.vmap(mapped, in_axes=tuple(0 if p[j] else None for p in present))
    return mapped, tuple(mapped_args)
