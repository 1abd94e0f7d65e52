"""Shared test helpers.

The suite runs twice in CI: in JAX's default float32 mode and with
``JAX_ENABLE_X64=1``. ``DTYPE`` is the float dtype the library computes in for the
current mode, and tolerances derive from its machine epsilon, not from trial and
error.
"""

import contextlib
import os
import sys
import tempfile

# One persistent compilation cache for the whole run: the xdist workers, the
# subprocesses some tests start (CLI, multi-device scripts; they inherit the
# environment) and the recompiles after a mapping-budget clear (below) load a
# program another process or an earlier test compiled instead of compiling it
# again (compiling is ~3/4 of the suite's time).  Set before JAX starts, so
# every process reads it from the environment; a user's own settings win.
# JAXGMM_TEST_NO_CACHE=1 turns it off (to time or debug compiles).
_OWN_CACHE = None
if not os.environ.get("JAXGMM_TEST_NO_CACHE"):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxgmm-test-cache-")
    # Programs that compile in under 0.2 s are cheaper to compile than to look up.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:  # the process that made it (xdist's controller)
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import settings

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


# Property tests (Hypothesis).  By default every run draws the same examples
# (derandomized), so the suite gives the same verdict on every run, here and in
# CI.  HYPOTHESIS_PROFILE=explore draws fresh random examples, ten times as many,
# to hunt for new failures; a failure prints its example, which then belongs in
# a regression test (as the found cases in tests/test_robustness.py are).
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "deterministic")
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(HYPOTHESIS_PROFILE)


def property_examples(n: int) -> int:
    """``max_examples`` for a property test: ``n``, or ``10 n`` when exploring."""
    return 10 * n if HYPOTHESIS_PROFILE == "explore" else n


# The chunked path for one huge dataset, on small data: datasets longer than
# FORCED_LARGE_N are chunked while a test traces them, in chunks of FORCED_CHUNK.
FORCED_LARGE_N, FORCED_CHUNK = 1000, 512


def fit_in_chunks(monkeypatch, x, init, **fit_kwargs):
    """``jaxgmm.fit(x, init, **fit_kwargs)`` reduced in chunks of FORCED_CHUNK.

    The chunk length is the engine's static ``Tuning.chunk``, part of the jit
    cache key: the chunked program is traced afresh next to the unchunked one of
    the same shapes (no ``jax.clear_caches()``, which would make every later
    test recompile).  The threshold (``_chunks.LARGE_N``, read when the program
    is traced) is lowered only for that trace.  Fails unless the chunked path
    was traced.
    """
    from jaxgmm import _chunks
    from jaxgmm._fit import prepare_fit, run

    args = prepare_fit(x, init, **fit_kwargs)
    assert args.tuning.chunk != FORCED_CHUNK
    traced = []
    original = _chunks.ChunkedData.moments
    with monkeypatch.context() as m:
        m.setattr(_chunks, "LARGE_N", FORCED_LARGE_N)
        m.setattr(_chunks.ChunkedData, "moments", lambda self: traced.append(1) or original(self))
        result, _ = run(args._replace(tuning=args.tuning._replace(chunk=FORCED_CHUNK)))
    assert traced, "the chunked path was not used"
    return result


@pytest.fixture
def dtype():
    return DTYPE


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C handler (KeyboardInterrupt) for the test, whatever the
    runner installed: pytest-xdist's workers ignore SIGINT, so a test that sends
    itself one would otherwise see nothing happen."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


# Every compiled XLA:CPU program keeps about three memory mappings per kernel
# (code, read-only data, data); one default fit program has ~270 kernels, so
# ~800 mappings.  A process that keeps compiling new programs reaches Linux's
# vm.max_map_count (65530 by default) after ~80 of them, and then LLVM's next
# mmap fails inside the compiler: a segfault, not an exception.  The whole
# suite compiles far more than that in one process, so once the count passes
# MAP_BUDGET the compiled programs are dropped (later tests recompile what they
# need).  The budget leaves room for the heaviest single test (~2,500 maps).
MAP_BUDGET = 40_000
_MAPS = "/proc/self/maps"


def _n_mappings() -> int:
    try:
        with open(_MAPS, "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to stay under
        return 0


@pytest.fixture(autouse=True)
def _stay_under_the_mapping_limit():
    yield
    if _n_mappings() > MAP_BUDGET:
        from jaxgmm import _sharding, _study

        jax.clear_caches()
        _study._compiled_chunk.cache_clear()  # ahead-of-time compiled, outside jax's caches
        _sharding._sharded_fit.cache_clear()


# Files that take minutes (subprocesses with their own JAX start, bootstrap
# tests) run first, so that under pytest-xdist (`-n 2 --dist loadfile`, as
# .ci/run) the other worker works through the rest meanwhile instead of one of
# them starting a long file last.
FIRST = ("test_sharding.py", "test_lrt.py", "test_distributed.py", "test_acceleration.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: file order otherwise


@contextlib.contextmanager
def backend_compiles():
    """A list that receives one entry per program made inside the block: every
    XLA compilation (however small), and every program loaded from the
    persistent compilation cache instead (the suite shares one, above), so the
    count does not depend on what other tests compiled first."""
    seen = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(duration)

    def listen_hits(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            seen.append(0.0)

    jax.monitoring.register_event_duration_secs_listener(listen)
    jax.monitoring.register_event_listener(listen_hits)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        jax.monitoring.unregister_event_listener(listen_hits)
