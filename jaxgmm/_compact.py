"""Compacting driver: no slowest-fit tax for batches with heavy-tailed iteration counts.

Under ``vmap`` a ``lax.while_loop`` runs every fit of a batch until the slowest one
stops; the finished fits ride along as masked lanes.  When iteration counts are
heavy-tailed (overlapping components: median ~900, maximum ~6000) most of that
work is wasted.  This driver runs the same EM loop in *chunks* of iterations
(8, then half as many again each time, up to ``chunk``): after each chunk the
host gathers the fits that are still running and packs them into blocks of a
fixed number of rows, so finished fits stop costing anything.  Block sizes are the cache-sized block of
:func:`jaxgmm._loop.block_rows` (rounded to a power of two) and its quarter,
sixteenth, ... down to 8, so a whole run compiles a handful of shapes; the
running fits are covered greedily by them and only a last block of fewer than 8
is padded (by repeating one of its fits).

Every fit goes through exactly the iterations, stopping rule and final E-pass of
the plain loop (the loop state, in standardised coordinates, is carried across
chunks unchanged), so its result equals plain :func:`jaxgmm.fit`'s up to the
rounding of reductions over differently shaped blocks.  The data are gathered one
block at a time: no copy of the whole batch is made.

SQUAREM fits (``accelerate="squarem"``) are chunked the same way by E-steps: a
fit pauses after the extrapolation cycle that reaches the chunk's end and resumes
from its full SQUAREM state (``jaxgmm._squarem.squarem_cycles``), so a pause
changes none of its steps.

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
from ._loop import (LoopState, Standardiser, block_rows, finish, fit_batched, polish_phase, restart_converged, run_em,
                    two_passes)
from ._squarem import as_loop_state, fit_batched_squarem, squarem_cycles, start_state
from ._xla import jit

# Chunk lengths: the first chunk of each phase is FIRST_CHUNK iterations and each
# later one 1.5 times the last, up to DEFAULT_CHUNK.  Short chunks waste little
# on batches whose fits all stop within a few dozen iterations (three
# components, B = 4000, all free: a median of 34 and a maximum of 103
# iterations ran 4.0k fits/s uncompacted, 4.7k in chunks of 64 and 7.0k in
# chunks of 8); long ones keep the host's rounds few where fits run for
# thousands (the heavy-tailed case of bench/run.py's section 4: chunks of 128
# and 256 tie, 64 is slower).  Growing chunks serve both: 6.2k fits/s (5.4k
# with doubling) and the heavy-tailed case as fast as chunks of 128.
FIRST_CHUNK = 8
DEFAULT_CHUNK = 128


class CompactInfo(NamedTuple):
    """Work accounting of a compacted run (for benchmarks)."""

    fit_iterations: int  # sum over fits of the iterations each ran
    lane_iterations: int  # sum over blocks of rows x iterations the block's loop ran
    rounds: int  # number of chunks
    compiles_shapes: tuple  # block row counts used


def _axes(batched):
    return tuple(0 if b else None for b in batched)


@jit(static_argnames=("spec", "batched", "squarem"))
def _start(x, w, init, spec: ModelSpec, batched, squarem):
    def one(x_, w_, p_):
        std = Standardiser.from_data(x_, w_)
        if squarem:
            x_std = std.data(x_)
            return start_state(x_std, w_, std.params_in(p_), spec, data_moments(x_std, w_))
        return LoopState(std.params_in(p_), jnp.zeros((), jnp.int32),
                         jnp.asarray(jnp.inf, x_.dtype), jnp.asarray(True))
    return jax.vmap(one, in_axes=_axes(batched))(x, w, init)


@jit(static_argnames=("spec", "batched", "phases"))
def _advance(x, w, state, cap, tol, max_iter, scale_floor, spec: ModelSpec, batched, phases):
    """Run each fit of a block until it stops or reaches ``cap`` iterations; the
    ``"squarem"`` phase runs SQUAREM cycles, pausing after the one that reaches ``cap``."""
    def one(x_, w_, s_, cap_):
        std = Standardiser.from_data(x_, w_)
        x_std = std.data(x_)
        moments = data_moments(x_std, w_)
        if phases == "squarem":
            return squarem_cycles(x_std, w_, s_, tol, max_iter, scale_floor, std.min_count, spec, moments,
                                  pause_at=cap_)
        return run_em(x_std, w_, s_, tol, cap_, scale_floor, std.min_count, spec, moments, phases=phases)
    return jax.vmap(one, in_axes=_axes(batched[:2]) + (0, 0))(x, w, state, cap)


@jit(static_argnames=("spec", "batched"))
def _finish(x, w, state, tol, scale_floor, spec: ModelSpec, batched):
    def one(x_, w_, s_):
        std = Standardiser.from_data(x_, w_)
        return finish(std.data(x_), w_, s_, tol, scale_floor, std, spec)
    return jax.vmap(one, in_axes=_axes(batched[:2]) + (0,))(x, w, state)


# Rows of a block are gathered from, and written back to, the whole batch by
# index in one compiled call per block shape: done eagerly, one small operation
# per array of the state, the host's dispatching took about two thirds of a
# compacted run (B = 1000, 73 rounds).
@jit
def _gather(tree, idx):
    return jax.tree_util.tree_map(lambda leaf: leaf[idx], tree)


@jit
def _scatter(tree, idx, rows):
    """``tree`` with ``rows`` written at ``idx``; indices past the end (padding) are dropped."""
    return jax.tree_util.tree_map(lambda leaf, r: leaf.at[idx].set(r, mode="drop"), tree, rows)


# No block has fewer rows than this: XLA:CPU rounds the sums of blocks of 1 to
# 4 fits differently from larger ones (a SQUAREM fit in a 4-row block ended 1e-3
# from the same fit in a larger one), so a fit's result would depend on how many
# others were still running (tests/test_engine_reliability.py).
MIN_ROWS = 8


def _bucket(m: int, rows: int) -> int:
    """Block rows for ``m`` running fits: ``rows`` (a power of two) or a quarter, a
    sixteenth... of it, the smallest covering ``m`` (at least MIN_ROWS); few shapes to compile."""
    r = rows
    while r // 4 >= max(m, MIN_ROWS):
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
        while r // 4 >= MIN_ROWS and r > rem:
            r //= 4
        out.append((j, r))
        j += r
    return out


def fit_compacted(x, sample_weight, init, tol, max_iter, scale_floor, spec: ModelSpec,
                  chunk: int = DEFAULT_CHUNK, rows=None, accelerate=None):
    """The compacting driver on validated arguments; returns ``(FitResult, CompactInfo)``.

    Arguments are those of :func:`jaxgmm._loop.fit_batched`; ``accelerate`` as in
    :func:`jaxgmm.fit` (``"squarem"``: SQUAREM cycles, chunked by E-steps, then
    the precise phase where the plain loop has one).  Batches whose arguments do
    not all share the full batch shape (or have none) fall back to the
    uncompacted driver.
    """
    squarem = accelerate == "squarem"
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of iterations, got {chunk}")
    args = (x, sample_weight, init)
    shapes = [batch_shape_of(a, 1) if a is not None else () for a in args]
    full = tuple(jnp.broadcast_shapes(*shapes))
    size = math.prod(full)
    if any(sh not in (full, ()) for sh in shapes) or size <= 1:
        if squarem:
            out = fit_batched_squarem(x, sample_weight, init, tol, max_iter, scale_floor, spec=spec)
        else:
            out = fit_batched(x, sample_weight, init, tol, max_iter, scale_floor, spec=spec)
        it = int(np.sum(np.asarray(out.n_iter)))
        return out, CompactInfo(it, it * 1, 1, ())
    batched = tuple(a is not None and sh == full for a, sh in zip(args, shapes))
    flat = [jax.tree_util.tree_map(lambda l: l.reshape((size,) + l.shape[-1:]), a) if b else a
            for a, b in zip(args, batched)]
    rows = block_rows(x.shape[-1], size, x.dtype) if rows is None else int(rows)
    rows = 1 << (max(rows, MIN_ROWS).bit_length() - 1)  # a power of two, at least MIN_ROWS
    max_iter_h = int(max_iter)
    tol_h = float(tol)

    # Initial state of every fit (one pass, blocks of consecutive fits).
    state = _start(*flat, spec=spec, batched=batched, squarem=squarem)
    n_iter = np.zeros(size, np.int64)
    active = np.arange(size)
    lane = 0
    n_rounds = 0
    shapes_used = set()

    def take(ids):
        data, st = _gather(([a for a, b in zip(flat, batched) if b], state), jnp.asarray(ids))
        data = iter(data)
        return [next(data) if b else a for a, b in zip(flat, batched)], st

    def rounds(active, phases):
        nonlocal state, lane, n_rounds
        length = min(FIRST_CHUNK, chunk)
        while active.size:
            started = n_iter.copy()
            results = []
            for j, r in _blocks(active.size, rows):
                shapes_used.add(r)
                ids = active[j:j + r]
                padded = np.concatenate([ids, np.full(r - ids.size, ids[0])]) if ids.size < r else ids
                (xb, wb, pb), sb = take(padded)
                cap = jnp.asarray(np.minimum(n_iter[padded] + length, max_iter_h), jnp.int32)
                results.append((ids, padded, _advance(xb, wb, sb, cap, tol, max_iter, scale_floor, spec=spec,
                                                      batched=batched, phases=phases)))
            for ids, padded, out in results:
                k = ids.size
                # Padding rows (repeats of the block's first fit) go past the end: dropped.
                state = _scatter(state, jnp.asarray(np.where(np.arange(padded.size) < k, padded, size)), out)
                before = n_iter[padded]
                after = np.asarray(out.n_iter)
                lane += padded.size * int(np.max(after - before))
                n_iter[ids] = after[:k]
            n_rounds += 1
            length = min(length + (length + 1) // 2, chunk)
            # A fit that took no step this round has left the phase (the fast
            # phase stops a fit where the fast pass loses accuracy; see
            # jaxgmm._loop.fast_pass_accurate): without this it would be sent
            # back to the same phase forever.
            active = active[running(active, phases) & (n_iter[active] > started[active])]

    def running(ids, phases=None):
        if phases == "squarem":
            return ~np.asarray(state.done)[ids]
        change = np.asarray(state.change)[ids]
        finite = np.asarray(state.finite)[ids]
        return (n_iter[ids] < max_iter_h) & finite & ~(change < tol_h)

    # The phases of the plain loop (see jaxgmm._loop.run_em), each to completion
    # for every fit before the next starts.
    two = two_passes(init, True)
    if squarem:
        if max_iter_h > 0:  # else no pass at all: the start is returned, as by plain EM
            rounds(active, "squarem")
        state = as_loop_state(state)
    else:
        rounds(active, "fast" if two else "all")
    if two:
        if polish_phase(x, init, True):
            state = restart_converged(state, tol)
        everyone = np.arange(size)
        rounds(everyone[running(everyone)], "precise")

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
