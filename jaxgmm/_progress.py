"""A fit's progress and the stopping rule, defined once for every stepper.

Every stepper's state carries a :class:`Progress`: the current parameters, the
iterations (E-steps) spent, the largest change of the last plain EM step, and
whether the fit has stopped.  :func:`stopped` is the only place the stopping
rule is written; :func:`restart` the only place a converged fit is set running
again (for a phase that polishes converged fits).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from ._params import Array


class Progress(NamedTuple):
    """Where one fit stands (standardised coordinates)."""

    params: Any  # the family's parameters
    n_iter: Array  # shape=(), int32: E-steps so far
    change: Array  # shape=(), largest parameter change of the last plain EM step
    finite: Array  # shape=(), bool: every step so far produced finite values
    done: Array  # shape=(), bool: a stopping rule holds


def stopped(change, n_iter, finite, ctl) -> Array:
    """The stopping rule: converged (the last plain EM step changed no parameter
    by ``tol`` or more, strictly, so ``tol=0`` runs ``max_iter`` steps), the
    iteration cap reached, or a value turned non-finite."""
    return (change < ctl.tol) | (n_iter >= ctl.max_iter) | ~finite


def converged(p: Progress, ctl) -> Array:
    return p.change < ctl.tol


def start(params, ctl) -> Progress:
    """A fit about to take its first step (done at once when ``max_iter <= 0``)."""
    change = jnp.asarray(jnp.inf, jnp.result_type(*[jnp.asarray(l).dtype for l in params]))
    n_iter = jnp.zeros((), jnp.int32)
    finite = jnp.asarray(True)
    return Progress(params, n_iter, change, finite, stopped(change, n_iter, finite, ctl))


def restart(p: Progress, ctl) -> Progress:
    """A converged fit running again (a fit stopped by the cap or a non-finite
    value stays stopped)."""
    change = jnp.where(converged(p, ctl), jnp.inf, p.change).astype(p.change.dtype)
    return p._replace(change=change, done=stopped(change, p.n_iter, p.finite, ctl))
