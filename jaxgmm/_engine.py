"""The EM engine: the one owner of the fitting loop, its phases and its scheduling.

Everything model-specific comes from a *family* (``jaxgmm/_univariate.py``:
standardisation, passes, M-step, change, degeneracy, final pass); one iteration
comes from a *stepper* (``jaxgmm/_steppers.py``: plain EM, SQUAREM); the
stopping rule from ``jaxgmm/_progress.py``.  This module walks a fit through
the family's phases (:meth:`~jaxgmm._univariate.Univariate.phases`) and
schedules a batch of fits onto fixed-size blocks of *lanes*:

* ``"blocks"``: a block's lanes take the next ``rows`` fits, run until every one
  has stopped, then take the next ``rows`` (``vmap`` over ``while_loop``, a
  block at a time: each block waits for its slowest fit);
* ``"compact"``: the same loop, but once ``refill`` of a block's lanes have
  stopped they are refilled from the queue of waiting fits, so finished fits
  stop costing time and one slow fit holds up only its own lane.  A slow fit
  (10,000 iterations) among thousands of quick ones made its whole block wait
  under ``"blocks"``.

Either way every fit takes exactly the steps it would take alone in a block of
the same size: the policy changes which fits share a block, never a fit's
arithmetic, so fits are bit-identical under both policies while they run in
blocks of ``Tuning.rows`` lanes (a fit's result can depend on the block *size*
through the rounding of XLA:CPU's sums: compaction's 8-lane tail block, or
``rows`` itself, which follows the batch's size).  The lanes gather their fit's data row by
index when they take it, so starts broadcast over ``x`` are never copied per
start, and each dataset's standardised problem (units and moments) is computed
once per dataset, not per fit or per visit.  One very large dataset (reduced in
chunks, ``jaxgmm/_chunks.py``) runs its fits one at a time instead: a block of
them would hold several copies of the data.  At most
:data:`~jaxgmm._controls.MIN_ROWS` starts of one dataset are one block with
nothing waiting: they run as the ``vmap`` of the one-fit loop, without the
lanes' queue (a program half the size to compile).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from . import _progress
from ._batching import batch_shape_of
from ._chunks import is_large
from ._controls import MIN_ROWS, Controls, Tuning
from ._params import Array, FitResult, Status
from ._progress import Progress
from ._steppers import make as make_stepper
from ._xla import jit


class Work(NamedTuple):
    """Work accounting of one call (for benchmarks): lane E-steps, i.e. for
    every trip of a block's loop, its rows times the E-steps a step takes."""

    lane_iterations: Array  # shape=(), int32 or int64


def _running(family, stepper, problem, state, pass_) -> Array:
    """Whether a fit runs on in its phase: not stopped, and its pass still accurate."""
    p = stepper.progress(state)
    return ~p.done & family.accurate(problem, p.params, pass_)


def _masked(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - pred.ndim)),
                                                         a, b), new, old)


def status_of(progress: Progress, finite: Array, degenerate: Array, ctl: Controls) -> Array:
    """The status rule: NONFINITE, else DEGENERATE, else CONVERGED or MAX_ITER."""
    status = jnp.where(~finite, Status.NONFINITE,
                       jnp.where(degenerate, Status.DEGENERATE,
                                 jnp.where(_progress.converged(progress, ctl), Status.CONVERGED,
                                           Status.MAX_ITER)))
    return status.astype(jnp.int32)


def _finish(family, problem, progress: Progress, ctl: Controls) -> FitResult:
    params, loglik, finite, degenerate = family.finish(problem, progress.params, progress.finite, ctl)
    status = status_of(progress, finite, degenerate, ctl)
    return FitResult(params=params, loglik=loglik, n_iter=progress.n_iter, status=status,
                     converged=status == Status.CONVERGED)


# -- one fit alone ----------------------------------------------------------------

def iterate(family, stepper, problem, state, pass_, ctl: Controls, steps: int):
    """Run one fit's ``stepper`` in its phase until it stops (``steps`` steps per
    trip of the loop, each after the first taken only while the fit runs)."""
    running = functools.partial(_running, family, stepper, problem, pass_=pass_)
    step = functools.partial(stepper.step, family, problem, ctl=ctl)

    def body(s):
        s = step(s)
        for _ in range(steps - 1):
            s = lax.cond(running(s), step, lambda s: s, s)
        return s

    return lax.while_loop(running, body, state)


def run_one(family, phases, problem, progress: Progress, ctl: Controls, tuning: Tuning) -> Progress:
    """Walk one fit through ``phases``."""
    for phase in phases:
        if phase.restart:
            progress = _progress.restart(progress, ctl)
        stepper = make_stepper(phase.stepper, phase.pass_)
        state = iterate(family, stepper, problem, stepper.init(family, progress, ctl), phase.pass_,
                        ctl, tuning.steps_per_trip)
        progress = stepper.progress(state)
    return progress


# -- a batch of fits on blocks of lanes -------------------------------------------

class _Table(NamedTuple):
    """The batch, flattened: ``F`` fits on ``D`` datasets (no data copied)."""

    X: Array  # (datasets of x, n)
    W: Optional[Array]  # (datasets of the weights, n) or None
    d_x: Array  # (D,): row of X of each dataset
    d_w: Optional[Array]  # (D,): row of W of each dataset
    f_d: Array  # (F,): dataset of each fit


def _flat_index(own: tuple, full: tuple) -> Array:
    """For each flat position of ``full``, the flat index into a batch of shape
    ``own`` that broadcasts to it."""
    own = (1,) * (len(full) - len(own)) + tuple(own)
    ids = jnp.arange(math.prod(own), dtype=jnp.int32).reshape(own)
    return jnp.broadcast_to(ids, full).reshape(-1)


def _rows(table: _Table, d: Array):
    """The data rows of datasets ``d`` (gathered)."""
    x = table.X[table.d_x[d]]
    w = None if table.W is None else table.W[table.d_w[d]]
    return x, w


def _in_blocks(fn, ids: Array, rows: int):
    """``vmap(fn)`` over ``ids``, ``rows`` at a time (one compiled shape; the
    last block repeats the last id, dropped)."""
    size = ids.shape[0]
    n_blocks = -(-size // rows)
    padded = jnp.concatenate([ids, jnp.broadcast_to(ids[-1:], (n_blocks * rows - size,))])
    out = lax.map(jax.vmap(fn), padded.reshape(n_blocks, rows))
    return jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * rows,) + a.shape[2:])[:size], out)


def stages(tuning: Tuning, size: int) -> tuple:
    """Block sizes (lanes) a phase runs through, largest first.

    Blocks: one stage of ``rows``.  Compaction: once no fit waits and at most
    :data:`~jaxgmm._controls.MIN_ROWS` still run, the block hands them to a
    block of that many lanes: one fit of 10,000 iterations among thousands of
    100 then holds 8 lanes for its tail, not a whole block.  (Between "no fit
    waits" and "8 run" the big block's lanes idle for about one typical fit's
    length: a few percent of a batch of many blocks' worth of fits.  More
    stages would cut that further, but each is one more compiled loop, and a
    cascade of four made compilation several times longer.)
    """
    rows = min(tuning.rows, size)
    if tuning.policy == "blocks" or rows <= MIN_ROWS:
        return (rows,)
    return (rows, MIN_ROWS)


def _stage(family, stepper, pass_, table: _Table, summaries, states, ctl: Controls, tuning: Tuning,
           lanes: int, hand_over: int):
    """Run the fits of ``states`` (a table of stepper states, one per fit) that
    have not stopped on a block of ``lanes`` lanes, refilled from the queue once
    ``tuning.refill`` (scaled to the block) lanes have stopped; with
    ``hand_over`` > 0 the stage ends once no fit waits and at most that many
    run (their states go back to the table for a smaller block).  Returns the
    table and the lane E-steps spent."""
    size = table.f_d.shape[0]
    waiting = ~jax.vmap(stepper.progress)(states).done
    m = jnp.sum(waiting, dtype=jnp.int32)
    queue = jnp.nonzero(waiting, size=size, fill_value=0)[0].astype(jnp.int32)
    chunk = tuning.chunk
    per_step = getattr(stepper, "e_steps_per_step", 1)
    refill_at = max(1, (tuning.refill * lanes) // max(tuning.rows, 1))

    def problem_of(fit):
        d = table.f_d[fit]
        return family.problem(*_rows(table, d), jax.tree_util.tree_map(lambda a: a[d], summaries), chunk)

    def load(state_table, fit):
        return problem_of(fit), jax.tree_util.tree_map(lambda a: a[fit], state_table)

    load_lanes = jax.vmap(load, in_axes=(None, 0))
    running = jax.vmap(functools.partial(_running, family, stepper, pass_=pass_))
    step = jax.vmap(functools.partial(stepper.step, family, ctl=ctl))

    def write_out(state_table, lane_fit, which, lane_states):
        out = jnp.where(which, lane_fit, size)  # past the end: dropped
        return jax.tree_util.tree_map(lambda t, v: t.at[out].set(v, mode="drop"), state_table, lane_states)

    # The carry holds ``run``, which lanes hold a fit still running in this
    # phase, so each trip evaluates the predicate once (after its step).
    def refill(carry):
        state_table, lane_fit, problems, lane_states, run, nxt, trips = carry
        free = ~run
        state_table = write_out(state_table, lane_fit, (lane_fit < size) & free, lane_states)
        item = nxt + jnp.cumsum(free.astype(jnp.int32)) - 1
        take = free & (item < m)
        new_fit = jnp.where(take, queue[jnp.minimum(item, size - 1)], 0)
        new_problems, new_states = load_lanes(state_table, new_fit)
        problems = _masked(take, new_problems, problems)
        lane_states = _masked(take, new_states, lane_states)
        lane_fit = jnp.where(take, new_fit, jnp.where(free, size, lane_fit))
        run = run | (take & running(problems, lane_states))
        nxt = jnp.minimum(nxt + jnp.sum(free, dtype=jnp.int32), m)
        return state_table, lane_fit, problems, lane_states, run, nxt, trips

    def body(carry):
        stopped_lanes = lanes - jnp.sum(carry[4], dtype=jnp.int32)
        carry = lax.cond((carry[5] < m) & (stopped_lanes >= refill_at), refill, lambda c: c, carry)
        state_table, lane_fit, problems, lane_states, run, nxt, trips = carry
        for _ in range(tuning.steps_per_trip):
            lane_states = _masked(run, step(problems, lane_states), lane_states)
            run = run & running(problems, lane_states)
        return state_table, lane_fit, problems, lane_states, run, nxt, trips + 1

    def cond(carry):
        run, nxt = carry[4], carry[5]
        return (nxt < m) | (jnp.sum(run, dtype=jnp.int32) > hand_over)

    # Empty lanes to start (the first trip fills them): shapes only, no trace of a load.
    empty = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype),
                                   jax.eval_shape(load_lanes, states, jnp.zeros((lanes,), jnp.int32)))
    idle = jnp.full((lanes,), size, jnp.int32)
    carry = (states, idle, *empty, jnp.zeros((lanes,), bool), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    states, lane_fit, _, lane_states, _, _, trips = lax.while_loop(cond, body, carry)
    states = write_out(states, lane_fit, lane_fit < size, lane_states)
    return states, trips * (lanes * per_step * tuning.steps_per_trip)


def _phase_on_lanes(family, stepper, pass_, table: _Table, summaries, progress: Progress, ctl: Controls,
                    tuning: Tuning, hand_over: bool):
    """One phase for every fit of ``progress`` that has not stopped, through the
    :func:`stages` (only the first of them unless ``hand_over``); returns the
    updated progress and the lane E-steps spent."""
    states = jax.vmap(functools.partial(stepper.init, family, ctl=ctl))(progress)
    sizes = stages(tuning, table.f_d.shape[0])
    sizes = sizes if hand_over else sizes[:1]
    used = jnp.zeros((), jnp.int32)
    for k, lanes in enumerate(sizes):
        hand_over = sizes[k + 1] if k + 1 < len(sizes) else 0
        states, spent = _stage(family, stepper, pass_, table, summaries, states, ctl, tuning, lanes, hand_over)
        used = used + spent
    return jax.vmap(stepper.progress)(states), used


@jit(static_argnames=("family", "accelerate", "tuning"))
def solve(x, sample_weight, init, ctl: Controls, family, accelerate: Optional[str], tuning: Tuning):
    """Fit the broadcast batch of ``x``, ``sample_weight`` and ``init``; ``(FitResult, Work)``.

    ``x`` is ``(..., n)`` followed by the family's ``event_ndim - 1`` axes of
    one observation (univariate ``(..., n)``, multivariate ``(..., n, D)``),
    ``sample_weight`` ``(..., n)`` or ``None``, ``init`` the family's
    parameters (its ``batch_shape`` in front).  ``ctl`` is traced (changing it
    never recompiles); ``family``, ``accelerate`` and ``tuning`` are static.
    """
    event = x.shape[x.ndim - family.event_ndim:]
    n = event[0]
    xb = batch_shape_of(x, family.event_ndim)
    wb = () if sample_weight is None else batch_shape_of(sample_weight, 1)
    pb = family.batch_shape(init)
    full = tuple(jnp.broadcast_shapes(xb, wb, pb))
    db = tuple(jnp.broadcast_shapes(xb, wb))
    size = math.prod(full)
    table = _Table(X=x.reshape((-1,) + event),
                   W=None if sample_weight is None else sample_weight.reshape((-1, n)),
                   d_x=_flat_index(xb, db), d_w=None if sample_weight is None else _flat_index(wb, db),
                   f_d=_flat_index(db, full))
    starts = family.flat_params(init, _flat_index(pb, full))
    phases = family.phases(x.dtype, accelerate)
    chunk = tuning.chunk

    def one(f):
        """Fit ``f`` alone, straight on the caller's array when there is one dataset."""
        if math.prod(db) == 1:  # its problem is then built once for all its fits
            x_, w_ = table.X[0], None if table.W is None else table.W[0]
        else:
            x_, w_ = _rows(table, table.f_d[f])
        problem = family.problem(x_, w_, family.summarise(x_, w_, chunk), chunk)
        params = family.start(problem, jax.tree_util.tree_map(lambda a: a[f], starts))
        progress = run_one(family, phases, problem, _progress.start(params, ctl), ctl, tuning)
        return _finish(family, problem, progress, ctl)

    if is_large(n) or size == 1:
        # One fit, or one very large dataset: fits one at a time, straight on the
        # caller's array (no lanes, so no gathered copy of it: a dataset sharded
        # over its observations stays sharded; see the module docstring).
        if size == 1:
            result = jax.tree_util.tree_map(lambda a: a[None], one(0))
        else:
            result = lax.map(one, jnp.arange(size))
        work = Work(jnp.sum(result.n_iter))
    elif size <= MIN_ROWS and math.prod(db) == 1:
        # A few starts of one dataset: they make one block, no fit ever waits,
        # and there is no smaller block to hand a tail to, so the
        # lanes' queue and refills would do nothing but cost compile time (a
        # program of 260 fusions against 152: 4.7 s against 2.0 s to compile 4
        # starts, measured one after the other on the 2-core box).  The block is
        # the vmap of the one-fit loop, running until its slowest fit stops, as a
        # block of lanes does.  Only for one dataset: a batch of a few datasets
        # (a Monte Carlo chunk of 8) keeps the lanes, so that its fits stay
        # bit-identical to the same fits in larger chunks (XLA:CPU rounds the
        # sums of differently built programs differently,
        # tests/test_study_reliability.py::test_results_do_not_depend_on_chunk_size).
        result = jax.vmap(one)(jnp.arange(size, dtype=jnp.int32))
        # Lane E-steps: the block's lanes run until its slowest fit stops.
        work = Work(size * jnp.max(result.n_iter))
    else:
        rows = min(tuning.rows, math.prod(db))
        summaries = _in_blocks(lambda d: family.summarise(*_rows(table, d), chunk),
                               jnp.arange(math.prod(db), dtype=jnp.int32), rows)
        fit_summaries = jax.tree_util.tree_map(lambda a: a[table.f_d], summaries)
        params = jax.vmap(family.start)(fit_summaries, starts)
        progress = jax.vmap(functools.partial(_progress.start, ctl=ctl))(params)
        lane_iterations = jnp.zeros((), jnp.int32)
        for k, phase in enumerate(phases):
            if phase.restart:
                progress = jax.vmap(functools.partial(_progress.restart, ctl=ctl))(progress)
            stepper = make_stepper(phase.stepper, phase.pass_)
            # The later phases (the precise pass after the fast one) take a step
            # or two for most fits: no tail block, one compiled loop less each.
            progress, used = _phase_on_lanes(family, stepper, phase.pass_, table, summaries, progress, ctl, tuning,
                                             hand_over=k == 0)
            lane_iterations = lane_iterations + used

        def finish_fit(f):
            d = table.f_d[f]
            problem = family.problem(*_rows(table, d), jax.tree_util.tree_map(lambda a: a[d], summaries), chunk)
            return _finish(family, problem, jax.tree_util.tree_map(lambda a: a[f], progress), ctl)

        result = _in_blocks(finish_fit, jnp.arange(size, dtype=jnp.int32), min(tuning.rows, size))
        work = Work(lane_iterations)
    result = jax.tree_util.tree_map(lambda a: a.reshape(full + a.shape[1:]), result)
    return result, work
