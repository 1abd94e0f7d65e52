"""Argument checks needed below ``_validate`` in the import graph.

``_spec`` parses ``fixed=``/``equal_scales=`` and ``_validate`` builds specs to
check ``m_step``'s arguments; the checks both need live here, so that neither
imports the other.
"""

from __future__ import annotations

import numpy as np


def check_bool(value, name: str) -> bool:
    """``value`` as a Python bool: ``True``/``False``, NumPy bools (0-d arrays too).

    Anything else is a ``TypeError``: ``bool("no")`` is ``True``, so a string
    (or 0/1, or ``None``) would silently mean something.
    """
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")
