"""How jaxgmm compiles its programs: ``jax.jit`` with the compiler options below.

JAX accepts compiler options only on the outermost jitted function, so every
jitted entry point of the package is a :class:`Jitted`: compiled with
:data:`COMPILER_OPTIONS` when called at top level, and an ordinary nested
``jax.jit`` when called while another function is being traced (a user's
``jax.jit`` around :func:`jaxgmm.fit`, or one jaxgmm program inside another).
"""

from __future__ import annotations

import functools

import jax

# XLA:CPU vectorises loops with 256-bit vectors by default, also on CPUs with
# 512-bit (AVX-512) units.  The EM passes are bound by arithmetic (a tanh or a
# logistic per point), and 512-bit vectors made the fitting loop 15-20% faster on
# an AVX-512 Xeon (both compiled in one process and timed alternately, B = 10,000 x
# n = 1000: float32 0.96 -> 1.15, float64 0.45 -> 0.51 G point-iterations/s).
# It is a preference: where the CPU's vectors are narrower
# LLVM uses those, and other backends ignore ``xla_cpu_*`` options.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def top_level() -> bool:
    """Whether JAX is evaluating eagerly (no function is being traced).

    JAX has no public query for this; where its internals change, assume a trace
    (the safe answer: programs then compile without :data:`COMPILER_OPTIONS`, and
    ``tests/test_core.py`` fails to say so).
    """
    try:
        from jax._src import core
        return bool(core.trace_ctx.is_top_level())
    except (ImportError, AttributeError):
        return False


class Jitted:
    """A function jitted twice: with :data:`COMPILER_OPTIONS` and without.

    Calls at top level use the first, calls under a trace the second.  Each
    compiles on first use only, so a function only ever called one way is
    compiled once.
    """

    def __init__(self, fun, **jit_kwargs):
        self.tuned = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **jit_kwargs)
        self.nested = jax.jit(fun, **jit_kwargs)
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        return (self.tuned if top_level() else self.nested)(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return (self.tuned if top_level() else self.nested).lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return self.tuned._cache_size() + self.nested._cache_size()


def jit(fun=None, **jit_kwargs):
    """``jax.jit`` for jaxgmm's programs (see :class:`Jitted`); a decorator factory without ``fun``."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    return Jitted(fun, **jit_kwargs)
