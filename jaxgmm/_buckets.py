"""The few dataset lengths programs are compiled for, and padding data to them.

A compiled program has fixed shapes, so every new number of observations ``n``
compiled a new one: a loop of :func:`jaxgmm.fit` over datasets of 2,000 distinct
sizes compiled 2,000 programs (issue 16: about 6 s each).  Worse, XLA:CPU keeps
about three memory mappings per kernel of every program it has compiled (~800
for one default fit program), and a process that passes Linux's
``vm.max_map_count`` (65530 by default) segfaults inside the compiler: about 80
distinct sizes.  Padding each dataset with weight-0 observations to the next
length of a geometric :func:`ladder` makes the number of programs grow like
``log(max n)`` instead.  Weight-0 observations are absent for every fit, so
padding changes a fit only by the rounding of its sums.

:func:`jaxgmm.fit` pads calls of at most :data:`PAD_NUMBERS` numbers of data to
:data:`FIT_LENGTHS_PER_OCTAVE` lengths per doubling (:func:`pad_observations`);
:func:`jaxgmm.fit_groups` uses the ladder with its own spacing.
"""

from __future__ import annotations

import math

import numpy as np

from . import _validate

# No padded length is shorter than this; lengths are multiples of it.
MIN_BUCKET = 8
# fit's lengths per doubling: a padded dataset holds at most 2^(1/2) - 1 = 41% (on
# average ~21%) more observations, and a loop over n = 200..999 compiles 5 programs.
FIT_LENGTHS_PER_OCTAVE = 2
# fit pads calls of at most this many numbers of data (observations x dimensions x
# datasets).  Beyond it one run costs more than a compile, and padding would cost
# every call the weighted passes' time: bench-style A/B on this 2-core Xeon,
# 2,000 datasets x n = 1000 padded to 1024 with weights, 1.14x the unpadded time.
PAD_NUMBERS = 2 ** 22


def ladder(largest: int, per_octave: int, minimum: int = MIN_BUCKET) -> np.ndarray:
    """The padded lengths up to the first one >= ``largest``: ``minimum``, then
    ``2^(j / per_octave)`` rounded up to a multiple of ``minimum``, increasing."""
    rungs = [minimum]
    j = 0
    while rungs[-1] < largest:
        j += 1
        rung = minimum * math.ceil(2 ** (j / per_octave) / minimum)
        if rung > rungs[-1]:
            rungs.append(rung)
    return np.asarray(rungs, dtype=np.int64)


def padded_lengths(counts, per_octave: int, minimum: int = MIN_BUCKET) -> np.ndarray:
    """Each count's padded length: the smallest rung of :func:`ladder` >= it."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return counts
    rungs = ladder(int(counts.max()), per_octave, minimum)
    return rungs[np.searchsorted(rungs, counts, side="left")]


def pad_observations(x, sample_weight, event_ndim: int):
    """``(x, sample_weight)`` with the observations axis padded to its rung.

    ``x`` is ``(..., n)`` (``event_ndim`` 1) or ``(..., n, D)`` (2),
    ``sample_weight`` ``(..., n)`` or ``None``.  Padded observations repeat each
    dataset's last one (a value within its range: a placeholder far outside the
    data could overflow the E-pass, where 0 * inf poisons the sums, see
    ``_validate._fill_absent``) with weight 0; without weights, the real ones get
    weight 1 (a ``(n_padded,)`` vector, broadcast over the batch).  Unchanged
    where ``n`` is on its rung or the call holds more than :data:`PAD_NUMBERS`
    numbers.
    """
    axis = x.ndim - event_ndim
    n = x.shape[axis]
    numbers = math.prod(x.shape)
    if sample_weight is not None:
        numbers = max(numbers, math.prod(sample_weight.shape))
    if numbers > PAD_NUMBERS:
        return x, sample_weight
    m = int(padded_lengths([n], FIT_LENGTHS_PER_OCTAVE)[0])
    if m == n:
        return x, sample_weight
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, m - n)
    # Concrete data in host memory are padded by NumPy: jnp.pad is one more
    # compiled program per shape, the very thing padding is there to avoid.
    xp, (x, sample_weight) = _validate.array_module(x, sample_weight)
    w = xp.ones((n,), x.dtype) if sample_weight is None else sample_weight
    x = xp.pad(x, widths, mode="edge")
    w = xp.pad(w, [(0, 0)] * (w.ndim - 1) + [(0, m - n)])
    return _validate.to_device(x), _validate.to_device(w)
