"""Compacting driver: no slowest-fit tax for batches with heavy-tailed iteration counts.

Under ``vmap`` a ``lax.while_loop`` runs every fit of a batch until the slowest one
stops; the finished fits ride along as masked lanes.  When iteration counts are
heavy-tailed (overlapping components: median ~900, maximum ~6000) most of that
work is wasted.  This driver runs the same EM loop in *chunks* of at most
``chunk`` iterations: after each chunk the host gathers the fits that are still
running and packs them into blocks of a fixed number of rows, so finished fits
stop costing anything.  Block sizes are the cache-sized block of
:func:`jaxgmm._loop.block_rows` (rounded to a power of two) and its quarter,
sixteenth, ... down to 8, so a whole run compiles a handful of shapes; the
running fits are covered greedily by them and only a last block of fewer than 8
is padded (by repeating one of its fits).

Every fit goes through exactly the iterations, stopping rule and final E-pass of
the plain loop (the loop state, in standardised coordinates, is carried across
chunks unchanged), so its result equals plain :func:`jaxgmm.fit`'s up to the
rounding of reductions over differently shaped blocks.  The data are gathered one
block at a time: no copy of the whole batch is made.

It is a host loop (not jittable): use it through ``jaxgmm.fit(..., compact=True)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._batching import batch_shape_of
from ._em import ModelSpec, data_moments
from ._loop import LoopState, Standardiser, block_rows, finish, fit_batched, polish_phase, restart_converged, run_em
from ._xla import jit

DEFAULT_CHUNK = 128


class CompactInfo(NamedTuple):
    """Work accounting of a compacted run (for benchmarks)."""

    fit_iterations: int  # sum over fits of the iterations each ran
    lane_iterations: int  # sum over blocks of rows x iterations the block's loop ran
    rounds: int  # number of chunks
    compiles_shapes: tuple  # block row counts used


def _axes(batched):
    return tuple(0 if b else None for b in batched)


@jit(static_argnames=("spec", "batched"))
def _start(x, w, init, spec: ModelSpec, batched):
    def one(x_, w_, p_):
        std = Standardiser.from_data(x_, w_)
        return LoopState(std.params_in(p_), jnp.zeros((), jnp.int32),
                         jnp.asarray(jnp.inf, x_.dtype), jnp.asarray(True))
    return jax.vmap(one, in_axes=_axes(batched))(x, w, init)


@jit(static_argnames=("spec", "batched", "phases"))
def _advance(x, w, state, cap, tol, scale_floor, spec: ModelSpec, batched, phases):
    def one(x_, w_, s_, cap_):
        std = Standardiser.from_data(x_, w_)
        x_std = std.data(x_)
        return run_em(x_std, w_, s_, tol, cap_, scale_floor, std.min_count, spec, data_moments(x_std, w_),
                      phases=phases)
    return jax.vmap(one, in_axes=_axes(batched[:2]) + (0, 0))(x, w, state, cap)


@jit(static_argnames=("spec", "batched"))
def _finish(x, w, state, tol, scale_floor, spec: ModelSpec, batched):
    def one(x_, w_, s_):
        std = Standardiser.from_data(x_, w_)
        return finish(std.data(x_), w_, s_, tol, scale_floor, std, spec)
    return jax.vmap(one, in_axes=_axes(batched[:2]) + (0,))(x, w, state)


def _bucket(m: int, rows: int) -> int:
    """Block rows for ``m`` running fits: ``rows`` (a power of two) or a quarter, a
    sixteenth... of it, the smallest covering ``m`` (at least 8); few shapes to compile."""
    r = rows
    while r > 8 and r // 4 >= m:
        r //= 4
    return r


def _blocks(m: int, rows: int):
    """Cover ``m`` fits with blocks of the bucket sizes: ``(start, rows)`` pairs.

    Full blocks of ``rows`` first, the rest greedily with the largest bucket that
    fits in it; only the last block (under 8 fits) is padded.
    """
    out, j = [], 0
    while j < m:
        rem = m - j
        r = rows
        while r > 8 and r > rem:
            r //= 4
        out.append((j, r))
        j += r
    return out


def fit_compacted(x, sample_weight, init, tol, max_iter, scale_floor, spec: ModelSpec,
                  chunk: int = DEFAULT_CHUNK, rows=None):
    """The compacting driver on validated arguments; returns ``(FitResult, CompactInfo)``.

    Arguments are those of :func:`jaxgmm._loop.fit_batched`.  Batches whose
    arguments do not all share the full batch shape (or have none) fall back to
    the plain driver.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of iterations, got {chunk}")
    args = (x, sample_weight, init)
    shapes = [batch_shape_of(a, 1) if a is not None else () for a in args]
    full = tuple(jnp.broadcast_shapes(*shapes))
    size = math.prod(full)
    if any(sh not in (full, ()) for sh in shapes) or size <= 1:
        out = fit_batched(x, sample_weight, init, tol, max_iter, scale_floor, spec=spec)
        it = int(np.sum(np.asarray(out.n_iter)))
        return out, CompactInfo(it, it * 1, 1, ())
    batched = tuple(a is not None and sh == full for a, sh in zip(args, shapes))
    flat = [jax.tree_util.tree_map(lambda l: l.reshape((size,) + l.shape[-1:]), a) if b else a
            for a, b in zip(args, batched)]
    rows = block_rows(x.shape[-1], size, x.dtype) if rows is None else int(rows)
    rows = 1 << (max(rows, 1).bit_length() - 1)  # a power of two
    max_iter_h = int(max_iter)
    tol_h = float(tol)

    # Initial state of every fit (one pass, blocks of consecutive fits).
    state = _start(*flat, spec=spec, batched=batched)
    n_iter = np.zeros(size, np.int64)
    active = np.arange(size)
    lane = 0
    n_rounds = 0
    shapes_used = set()

    def take(ids):
        idx = jnp.asarray(ids)
        sub = [jax.tree_util.tree_map(lambda l: l[idx], a) if b else a for a, b in zip(flat, batched)]
        return sub, jax.tree_util.tree_map(lambda l: l[idx], state)

    def rounds(active, phases):
        nonlocal state, lane, n_rounds
        while active.size:
            started = n_iter.copy()
            results = []
            for j, r in _blocks(active.size, rows):
                shapes_used.add(r)
                ids = active[j:j + r]
                padded = np.concatenate([ids, np.full(r - ids.size, ids[0])]) if ids.size < r else ids
                (xb, wb, pb), sb = take(padded)
                cap = jnp.minimum(jnp.asarray(sb.n_iter) + chunk, max_iter)
                results.append((ids, padded, _advance(xb, wb, sb, cap, tol, scale_floor, spec=spec,
                                                      batched=batched, phases=phases)))
            for ids, padded, out in results:
                k = ids.size
                idx = jnp.asarray(ids)
                state = jax.tree_util.tree_map(lambda a, o: a.at[idx].set(o[:k]), state, out)
                before = n_iter[padded]
                after = np.asarray(out.n_iter)
                lane += padded.size * int(np.max(after - before))
                n_iter[ids] = after[:k]
            n_rounds += 1
            # A fit that took no step this round has left the phase (the fast
            # phase stops a fit where the fast pass loses accuracy; see
            # jaxgmm._loop.fast_pass_accurate): without this it would be sent
            # back to the same phase forever.
            active = active[running(active) & (n_iter[active] > started[active])]

    def running(ids):
        change = np.asarray(state.change)[ids]
        finite = np.asarray(state.finite)[ids]
        return (n_iter[ids] < max_iter_h) & finite & ~(change < tol_h)

    # The phases of the plain loop (see jaxgmm._loop.run_em), each to completion
    # for every fit before the next starts.
    if polish_phase(x, init, True):
        rounds(active, "fast")
        state = restart_converged(state, tol)
        everyone = np.arange(size)
        rounds(everyone[running(everyone)], "precise")
    else:
        rounds(active, "all")

    # Final E-pass and status, in consecutive blocks.
    parts = []
    for j in range(0, size, rows):
        ids = np.arange(j, min(j + rows, size))
        r = _bucket(ids.size, rows)
        padded = np.concatenate([ids, np.full(r - ids.size, ids[0])]) if ids.size < r else ids
        (xb, wb, _), sb = take(padded)
        out = _finish(xb, wb, sb, tol, scale_floor, spec=spec, batched=batched)
        parts.append(jax.tree_util.tree_map(lambda o: o[:ids.size], out))
    result = jax.tree_util.tree_map(lambda *o: jnp.concatenate(o).reshape(full + o[0].shape[1:]), *parts)
    info = CompactInfo(int(n_iter.sum()), lane, n_rounds, tuple(sorted(shapes_used)))
    return result, info
