"""Shared test helpers.

The suite runs twice in CI: in JAX's default float32 mode and with
``JAX_ENABLE_X64=1``. ``DTYPE`` is the float dtype the library computes in for the
current mode, and tolerances derive from its machine epsilon, not from trial and
error.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import reference` from any test

X64 = bool(jax.config.jax_enable_x64)
DTYPE = jnp.float64 if X64 else jnp.float32
EPS = float(jnp.finfo(DTYPE).eps)


def rtol_for(n_ops: float = 1.0) -> float:
    """Relative tolerance for a result accumulated over ``n_ops`` rounding steps.

    Rounding errors of a sum of ``n`` terms grow like ``sqrt(n)`` for random
    signs; a safety factor of 16 covers the few extra operations per term.
    """
    return 16 * EPS * max(1.0, float(np.sqrt(n_ops)))


@pytest.fixture
def dtype():
    return DTYPE
