"""Utilities the measurement modules share: timing, data, the C roofline, memory counters.

Imports nothing from the other ``bench`` modules, and JAX and jaxgmm only inside
functions, so that the parent process of ``bench/run.py`` (which only starts
children) never loads JAX.  A child imports jaxgmm from the source tree the
harness put first on ``sys.path`` (``bench/harness.py``, ``--against``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROOF_C = os.path.join(ROOT, "..", "shared", "roofline", "roof.c")
if not os.path.exists(ROOF_C):
    ROOF_C = "/work/shared/roofline/roof.c"


def jax_setup():
    """``(jax, jnp, np, jaxgmm, dtype)``, dtype float64 under ``JAX_ENABLE_X64=1``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxgmm
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return jax, jnp, np, jaxgmm, dt


def textbook(jnp, np, jaxgmm, dt, batch, n, seed=0):
    """0.2 N(0, 1) + 0.8 N(5, 2) (variance 2), drawn in NumPy float64 then cast; the start."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, n))
    x = np.where(rng.random((batch, n)) < 0.2, z, 5.0 + np.sqrt(2.0) * z)
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-1.0, 4.0], dt),
                                 jnp.asarray([1.0, 2 ** 0.5], dt))
    return x, start


def block(out):
    import jax
    return jax.block_until_ready(out)


def timed(fn):
    """``(seconds, result)`` of ``fn()``, waiting for its arrays."""
    t = time.perf_counter()
    out = fn()
    block(out)
    return time.perf_counter() - t, out


def convergence(run, batch):
    """Time ``run()`` (a batch of fits to convergence) after a first call; its summary and the result."""
    import numpy as np
    first, _ = timed(run)
    t, res = timed(run)
    return dict(seconds=t, first_call_s=first, fits_per_s=batch / t, median_iter=float(np.median(res.n_iter)),
                converged=float(np.mean(np.asarray(res.converged)))), res


def sklearn_one_at_a_time(x, weights, means, scales, subset, tol):
    """scikit-learn's ``GaussianMixture`` (all free, spherical, no variance
    regularisation) fitted to the first ``subset`` rows of ``x`` one at a time
    from the given start; ``None`` when scikit-learn is not installed."""
    import numpy as np
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return None
    x = np.asarray(x[:subset], np.float64)
    iters = []
    t0 = time.perf_counter()
    for row in x:
        gm = GaussianMixture(len(weights), covariance_type="spherical", tol=tol, reg_covar=0.0, max_iter=10_000,
                             weights_init=np.asarray(weights), means_init=np.asarray(means)[:, None],
                             precisions_init=1.0 / np.square(scales))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(row[:, None])
        iters.append(gm.n_iter_)
    t = time.perf_counter() - t0
    sub = len(iters)
    return dict(subset=sub, seconds_subset=t, fits_per_s=sub / t, tol=tol, median_iter=float(np.median(iters)))


def build_roof(tmp):
    """Compile roof.c for float32 and float64 into ``tmp``; ``None`` when no compiler is present."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not os.path.exists(ROOF_C):
        return None
    out = {}
    for name, extra in (("f32", []), ("f64", ["-DF64"])):
        exe = os.path.join(tmp, f"roof_{name}")
        subprocess.run([cc, "-O3", "-march=native", "-ffast-math", "-fopenmp", *extra, ROOF_C, "-o", exe, "-lm"],
                       check=True, capture_output=True)
        out[name] = exe
    return out


def run_roof(exe, batch):
    """C roofline: G point-iters/s by wall clock over its timed loop."""
    text = subprocess.run([exe, str(batch)], check=True, capture_output=True, text=True).stdout
    return float(text.split("->")[1].split()[0])


def rss_bytes(field):
    """A field of ``/proc/self/status`` (``"VmRSS:"``, ``"VmHWM:"``) in bytes; NaN where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def reset_peak_rss():
    """Reset the process's peak-RSS counter (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- work accounting
# Efficiency = (sum over fits of the iterations each needed) / lane-iterations,
# lane-iterations being what the batched loops actually ran (rows x trips).

def block_rows(jaxgmm, n, size, dtype):
    """Fits per block of the default driver: ``jaxgmm._loop.block_rows`` where the
    installed jaxgmm has it, else the same rule (a 2**20-byte block, at least two
    rows, on CPU; the whole batch on accelerators) with its ``BLOCK_BYTES``."""
    import jax
    import numpy as np
    try:
        from jaxgmm._loop import block_rows as rows_of
        return rows_of(n, size, dtype)
    except ImportError:
        pass
    if jax.default_backend() != "cpu":
        return max(1, size)
    block_bytes = 2 ** 20
    for name in ("jaxgmm._controls", "jaxgmm._loop"):
        try:
            block_bytes = getattr(__import__(name, fromlist=["BLOCK_BYTES"]), "BLOCK_BYTES")
            break
        except (ImportError, AttributeError):
            continue
    fit_in_cache = block_bytes // max(n * np.dtype(dtype).itemsize, 1)
    return max(1, min(size, max(2, fit_in_cache)))


def blocked_lanes(n_iter, rows):
    """Lane-iterations of consecutive blocks of ``rows`` fits, each running until its slowest
    stops (the last block shifted back to end at the last fit, as the default driver does)."""
    import numpy as np
    n_iter = np.asarray(n_iter).reshape(-1)
    batch = n_iter.size
    rows = min(rows, batch)
    lanes = 0
    for i in range(-(-batch // rows)):
        s = min(i * rows, batch - rows)
        lanes += rows * int(np.max(n_iter[s:s + rows]))
    return lanes


def engine_work(jaxgmm, x, init, **kw):
    """Lane-iterations as the installed engine reports them, from one more (untimed) call:
    ``(result, lane_iterations, source)``, or ``(None, None, why)`` where it reports none.

    Engines that return a ``Work`` record (``jaxgmm._fit.run``) report every driver; the
    old engine only its compacting driver (``jaxgmm._compact.fit_compacted``'s
    ``CompactInfo``), and there only for batches it did compact.
    """
    try:
        from jaxgmm import _fit
    except ImportError:
        return None, None, "no jaxgmm._fit"
    if hasattr(_fit, "run"):
        try:
            result, work = _fit.run(_fit.prepare_fit(x, init, **kw))
            return result, int(work.lane_iterations), "reported by the engine (jaxgmm._fit.run)"
        except (TypeError, AttributeError) as e:
            return None, None, f"jaxgmm._fit.run failed: {e}"
    if not kw.get("compact"):
        return None, None, "not reported by this engine"
    try:
        from jaxgmm._compact import fit_compacted
    except ImportError:
        return None, None, "no jaxgmm._compact"
    accelerate = kw.pop("accelerate", None)
    kw.pop("compact")
    args = _fit.prepare_fit(x, init, **kw)
    result, info = fit_compacted(*args.arrays, spec=args.spec, accelerate=accelerate)
    if not info.compiles_shapes:  # the batch's layout fell back to the uncompacted driver
        return result, None, "fit_compacted fell back to the uncompacted driver"
    return result, int(info.lane_iterations), "reported by fit_compacted (CompactInfo)"


# ----------------------------------------------------------------------------- child processes

def spawn(target, *, x64=False, env=None, tree=None, timeout=None, **kwargs):
    """Run ``target`` (``"bench.module:function"``) with ``kwargs`` (JSON) in a fresh
    Python process (``bench/child.py``) and return its dict, plus ``_wall_s``.

    ``JAX_ENABLE_X64`` is set from ``x64``; ``tree`` (default: this checkout) is the
    source tree whose ``jaxgmm`` the child imports: it is the child's ``PYTHONPATH``
    (so that the child's own children inherit it) and is put first on its
    ``sys.path``, while the ``bench`` modules always come from this checkout.
    """
    import json
    import sys
    tree = os.path.abspath(tree or ROOT)
    cmd = [sys.executable, os.path.join(HERE, "child.py"), target, json.dumps(kwargs)]
    full_env = dict(os.environ, JAX_ENABLE_X64="1" if x64 else "0", PYTHONPATH=tree, JAXGMM_BENCH_TREE=tree)
    full_env.update(env or {})
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    wall = time.perf_counter() - t
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            if isinstance(res, dict):
                res["_wall_s"] = wall
            return res
    raise RuntimeError(f"{target} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
