"""The engine's configuration: traced :class:`Controls` and static :class:`Tuning`.

``Controls`` are the per-call numbers a user changes between calls (tolerance,
iteration cap, variance floor): traced, so changing them never recompiles.
``Tuning`` is everything that changes the *program*: the scheduling policy, the
block size, steps per loop trip, how sums are written, chunk length for one
huge dataset.  It is resolved once, at the public boundary, from the backend
and the batch's shapes (:func:`resolve_tuning`), and passed to the compiled
engine as a static argument: so it is part of the jit cache key, and no
compiled function queries ``jax.default_backend()`` or a module global behind
the cache's back.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from . import _chunks, _em
from ._params import Array


def default_tol(dtype) -> float:
    """Default convergence tolerance for a float dtype.

    float64: ``1e-9``; the estimates then agree with the exact MLE to about 1e-7
    even when EM converges slowly (rate 0.99 per iteration).  float32 (and
    narrower): ``1e-5``, a few times above the rounding noise of one EM step, so
    that fits converge instead of running to ``max_iter``.
    """
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-5


class Controls(NamedTuple):
    """Traced stopping and floor controls of a fit (scalars)."""

    tol: Array  # largest parameter change, in standardised units, that counts as converged
    max_iter: Array  # int32: iteration (E-step) cap
    scale_floor: Array  # free scales never go below scale_floor * the data's spread


# Scheduling policies (Tuning.policy):
# "blocks": each block of fits runs until its slowest fit stops, then the next
#   block starts (vmap over while_loop, a block at a time).
# "compact": a block's lanes are refilled from the queue of waiting fits as
#   fits finish, so finished fits stop costing time (jaxgmm/_engine.py).
POLICIES = ("blocks", "compact")

# Fits run in blocks of about this many bytes of data (rows x n x itemsize): each
# block's data and the one data-sized intermediate of its E-pass (the tanh the
# sums share) stay in a core's L2 cache for all of its iterations.  Measured on
# a 2-core Xeon (2 MiB L2 per core), B = 10k x n = 1000, interleaved runs: 1 MiB
# blocks run 1.09x faster than 2 MiB (float32 and float64), and float32 1.3x
# faster than 1/4 MiB, where the per-iteration fixed costs take over.
BLOCK_BYTES = 2 ** 20

# No block has fewer rows than this (when the batch has that many fits): XLA:CPU
# rounds the sums of blocks of 1 to 4 fits differently from larger ones, so a
# fit's result would depend on how many others share its batch
# (tests/test_engine_reliability.py).
MIN_ROWS = 8

# EM steps per trip of the fitting loop on accelerators.  Each trip ends with the
# loop's predicate ("is any fit still running?") copied to the host, which costs
# a GPU about as much as a small batch's EM step.  Measured on an H200 against
# one step per trip (bench/gpu_results.txt): B = 10k x n = 1000, fixed
# iterations 1.43x faster and fits/s to convergence 1.17x; B = 100k, 1.09x and
# 1.02x.  On CPU one step per trip: the predicate is cheap there, and the masked
# further steps cost as much as they save.
ACCELERATOR_STEPS_PER_TRIP = 4

# A compacting block refills its lanes once this fraction of them has stopped:
# each refill gathers and standardises the new fits' data for the whole block
# (about one cheap pass over the block's data), so refilling for every finished
# fit would cost that nearly every iteration, and waiting longer leaves more
# lanes idle (on average about half this fraction of them).
REFILL_FRACTION = 0.125



class Tuning(NamedTuple):
    """Static program choices of one engine call (hashable: a jit cache key)."""

    policy: str  # one of POLICIES
    rows: int  # fits per block (lanes)
    refill: int  # a compacting block refills once this many lanes have stopped
    steps_per_trip: int
    reduction: str  # how a pass's sums are written (jaxgmm._em._row_sums)
    chunk: int  # observations per chunk of a dataset longer than LARGE_N


def default_policy(backend: str) -> str:
    """The scheduling policy used when ``fit``'s ``compact`` is ``None``.

    On CPU compaction: on the heavy-tailed batch it was 2.5x faster than
    blocks with the same iterations (``bench/RESULTS.md``, section 9), and on
    the seed model's uniform batch level with the previous engine's blocks.  On
    accelerators blocks holding the whole batch: finished fits' masked lanes
    cost little there, and compaction has not been measured on one.
    """
    return "compact" if backend == "cpu" else "blocks"


def resolve_tuning(n: int, size: int, dtype, compact: Optional[bool] = None,
                   backend: Optional[str] = None) -> Tuning:
    """The :class:`Tuning` for ``size`` fits of datasets of ``n`` observations.

    ``compact`` ``None`` picks :func:`default_policy`; ``True``/``False`` force
    ``"compact"``/``"blocks"``.  Block rows: on CPU a cache-sized block of at
    least :data:`MIN_ROWS` rows (XLA:CPU splits a block's elementwise work
    across threads by rows, and a one-row block runs on one thread about six
    times slower); on accelerators the whole batch.
    """
    backend = jax.default_backend() if backend is None else backend
    if compact is None:
        policy = default_policy(backend)
    else:
        policy = "compact" if compact else "blocks"
    size = max(int(size), 1)
    if backend == "cpu":
        fit_in_cache = BLOCK_BYTES // max(n * jnp.dtype(dtype).itemsize, 1)
        rows = min(size, max(MIN_ROWS, fit_in_cache))
        if policy == "compact":
            # A block as large as the batch would have no queue to refill from:
            # at least four blocks' worth of fits, so that finished fits' lanes
            # are taken by waiting ones.
            rows = min(rows, max(MIN_ROWS, size // 4))
    else:
        rows = size
    refill = rows if policy == "blocks" else max(1, math.ceil(REFILL_FRACTION * rows))
    on_cpu = backend == "cpu"
    return Tuning(policy=policy, rows=rows, refill=refill,
                  steps_per_trip=1 if on_cpu else ACCELERATOR_STEPS_PER_TRIP,
                  reduction=_em.default_reduction(backend),
                  chunk=_chunks.chunk_size(backend))
