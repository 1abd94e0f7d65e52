"""Steppers: one iteration of a fit, behind a small protocol the engine drives.

A stepper is a static, hashable object with three methods:

* ``init(family, progress, ctl) -> state``: the stepper's state for a fit
  standing at ``progress`` (a :class:`jaxgmm._progress.Progress`; no pass over
  the data, so the engine can set up every fit's state before any runs);
* ``step(family, problem, state, ctl) -> state``: one iteration (for SQUAREM one
  extrapolation cycle of up to three E-steps), which sets ``progress.done``
  through :func:`jaxgmm._progress.stopped`;
* ``progress(state) -> Progress``.

The engine (``jaxgmm/_engine.py``) owns the loop around ``step``, the phases
and the scheduling; the family (``jaxgmm/_univariate.py``) the model's pieces.
Plain EM is :class:`EM`; SQUAREM is :class:`jaxgmm._squarem.Squarem`.
"""

from __future__ import annotations

from typing import NamedTuple

from ._progress import Progress, stopped
from ._squarem import Squarem


class EM(NamedTuple):
    """Plain EM on the family's pass ``pass_``."""

    pass_: str

    def init(self, family, progress: Progress, ctl) -> Progress:
        return progress

    @staticmethod
    def progress(state: Progress) -> Progress:
        return state

    def step(self, family, problem, s: Progress, ctl) -> Progress:
        # The stopping rule does not use the log-likelihood; a NaN anywhere still
        # shows in the counts (step_finite).
        stats = family.stats(problem, s.params, self.pass_, ctl)
        new = family.m_step(problem, stats, s.params, ctl)
        finite = family.step_finite(new, stats)
        change = family.change(new, s.params)
        n_iter = s.n_iter + 1
        return Progress(new, n_iter, change, finite, stopped(change, n_iter, finite, ctl))


def make(kind: str, pass_: str):
    """The stepper for a phase (``kind`` ``"em"`` or ``"squarem"``)."""
    if kind == "squarem":
        return Squarem(pass_)
    return EM(pass_)
