"""jaxgmm benchmark suite: ``python bench/run.py`` writes ``bench/RESULTS.md``.

Eight measurements (the six of issue 4 and two more), every ratio measured side
by side in the same run because the machines are shared and noisy:

1. Throughput against the C ceiling (``../shared/roofline/roof.c``, built and run
   here), B = 10,000 x n = 1000, 100 EM iterations of the two-component model with
   known scales, float32 and float64, alternating C and JAX runs (best of each).
2. Fits per second to convergence on the motivating example (B = 10,000), against
   scikit-learn's ``GaussianMixture`` one dataset at a time and a plain NumPy EM
   loop (both timed on a subset and extrapolated; the subset size is reported).
3. Scaling in B and n, compile time reported separately.
4. The slowest-fit tax on a heavy-tailed case: plain, compacted, SQUAREM.
5. Peak resident memory of a B = 100,000 x n = 1000 float32 fit, in a subprocess.
6. GPU: ``bench/gpu.sh`` (run separately; its last recorded output, ``bench/gpu_results.txt``, is copied in).
7. Scale-out: one very large dataset and several CPU devices (``bench/scale_out.py``).
8. More than two components: throughput for K = 2..5 and K = 3 fits/s against scikit-learn.

Each measurement runs in its own Python subprocess (float64 ones with
``JAX_ENABLE_X64=1``); ``--quick`` shrinks the sizes for a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # sibling scripts (scale_out)
ROOF_C = os.path.join(ROOT, "..", "shared", "roofline", "roof.c")
if not os.path.exists(ROOF_C):
    ROOF_C = "/work/shared/roofline/roof.c"


# Where the CPU loop's time goes; written by hand from profiles (section 1).
CPU_NOTES = (
    "Where the wall-clock time goes (XLA's profiler and timed calls of one block, float32, one block "
    "of 262 fits x n = 1000, measured on this machine on 2026-11-27): an iteration costs about "
    "100 us, against about 62 us for the C loop on the same points:\n\n"
    "- the `tanh` pass writes `t` for the block, split over both cores: about 42-46 us;\n"
    "- the two sums read it back as two YNNPACK reductions. XLA:CPU's runtime runs the loop body's "
    "kernels as a dataflow graph when there are more than 8 of them (13-20 here), so the two "
    "independent reductions run at the same time, one per core, each single-threaded: `sum t x` "
    "about 58-75 us, `sum t` 32-44 us, the second core then idle. In a probe whose loop body had 6 "
    "kernels the runtime ran them in order, each reduction on both cores (31 us and 18 us): 5% "
    "faster over a whole fit;\n"
    "- about 12 small kernels (the M-step, the masking of finished fits, the loop's predicate, "
    "copies of the loop state), about 1 us each on one core.\n\n"
    "Each block also pays once: standardising the data (about 0.2 ms) and the exact pass for the "
    "reported log-likelihood (about 0.3 ms): some 5% of a 100-iteration run, and about a sixth of a "
    "block of the fits to convergence of section 2 (2.8 ms: 12-14 fast iterations, then one or two "
    "of the precise pass at about 0.25 ms each).\n\n"
    "XLA:CPU does not fuse a reduction into the multi-threaded elementwise pass that feeds it, so `t` "
    "makes a round trip through the cache. Both programs keep both cores busy (jaxgmm's process "
    "time is about twice its wall time; the C loop is OpenMP over both cores), so jaxgmm does about "
    "half of C's work per CPU-second too. Dot products for the sums, the previous default, run 1.25x "
    "slower. Tried in interleaved A/B runs without gain: one reduction of the stacked sums, "
    "reductions split by rows, 2 or 4 concurrent blocks per loop trip, 2 EM steps per loop trip, "
    "XLA's own reduction emitter instead of YNNPACK (2x slower), batch halves dispatched "
    "asynchronously, the loop state packed into one array per fit (fewer kernels, not 8 or fewer), "
    "the M-step nested in a conditional, the largest parameter change taken field by field (two "
    "fewer kernels: 1.5% faster at fixed iterations, 3% slower to convergence with all parameters "
    "free), `tanh` from `exp` (slower: XLA's `exp` costs more than its `tanh`), and XLA's "
    "fast-math options. One CPU device per core helps (`fit_sharded`, section 7).\n")


# What the recorded GPU run (bench/gpu_results.txt) shows; written by hand from it.
GPU_NOTES = (
    "- `default` writes the fixed-scale pass's two sums (`sum t`, `sum t x`) as one reduction of complex "
    "numbers; `sums` as two reductions, for which XLA's GPU compiler keeps the shared `tanh` in memory "
    "(a write and a read of the data's size per iteration, seen in the optimised HLO of a probe run). "
    "The complex form reads the data once: 2.3x the throughput at B = 100,000 and 1.7x the fits/s to "
    "convergence. A variadic `lax.reduce` of the two sums and a stacked reduction were also probed: no "
    "faster than `sums`.\n"
    "- Passes with more sums pair them the same way (the `complex` rows of the table 'passes with more "
    "sums'): three components all free (nine sums) run 1.75x faster than as `sums` (84 against 48 G "
    "point-iterations/s, B = 100,000), two all free (three sums) level (229 against 228). Both are far "
    "from the bandwidth (10% and 26%): XLA still gives the shared softmax or `tanh` a round trip through "
    "memory for the several reductions; a hand-written kernel for the pass would be the next step. One "
    "reduction of all the sums stacked (plain or as complex pairs) derives the shared terms once per "
    "row: no faster than `sums` (K = 3) or slower (K = 2), and removed.\n"
    "- At B = 100,000 x n = 1000 and B = 1,000 x n = 100,000 the loop reaches **0.64-0.65 of the measured "
    "read bandwidth** (target 0.5): 568-574 G point-iterations/s (0.58-0.60 in other runs, the measured "
    "bandwidth moving more than the loop's rate). At B = 10,000 it is 0.31-0.34: an "
    "iteration takes about 34 us, of which reading the 10M points at the measured bandwidth is about "
    "11 us; the rest is the M-step's small kernels and the while loop's predicate sent to the host, "
    "so small batches are launch-bound.\n"
    "- On accelerators the loop takes 4 EM steps per trip (the further steps masked to the fits still "
    "running, so iteration counts and estimates do not change), which pays the predicate's trip to "
    "the host once per 4 steps. Against one step per trip, on the same H200: fixed iterations at "
    "B = 10,000 1.43x faster (209 -> 300 G point-iterations/s), at B = 100,000 1.09x; fits/s to "
    "convergence 1.17x at B = 10,000 and 1.02x at B = 100,000, but 0.6x at B = 1,000 (calls of about "
    "2 ms).\n"
    "- One dataset of 2^27 points runs at 214-222 G point-iterations/s (0.23 of the bandwidth) in "
    "chunks of 2^22 points, each chunk a few kernel launches; the CPU's 2^18-point chunks would give "
    "25, the 2^20 of earlier versions 89, and 2^24 350, at the price of about 700 MB of chunk-sized "
    "temporaries.\n"
    "- The slowest-fit tax on a GPU (section 4's case, `bench/run.py --part tail --batch 1000` on the "
    "H200, 2026-11-27): plain EM 0.104 s (efficiency 0.11), `accelerate=\"squarem\"` **0.035 s** "
    "(3.0x faster), `compact=True` 0.77 s and both 0.27 s. On a GPU the masked lanes of finished fits "
    "cost little and each round of the compacting host loop costs a synchronisation and kernel launches, "
    "so compaction is a CPU tool; SQUAREM helps on both. The GPU ran test_acceleration.py (22 passed) "
    "with this code.\n"
    "- The bandwidth measured in the same run (a 4 GiB sum) varies between lent machines and runs "
    "(from 3.09 to 3.91 TB/s on H200s; 3.84 and 3.52 in two runs on one machine on 2026-11-27).\n")


# ----------------------------------------------------------------------------- helpers

def _jax_setup():
    sys.path.insert(0, ROOT)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import jaxgmm
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return jax, jnp, np, jaxgmm, dt


def _textbook(jnp, np, jaxgmm, dt, batch, n, seed=0):
    """0.2 N(0, 1) + 0.8 N(5, 2) (variance 2), drawn in NumPy float64 then cast."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, n))
    x = np.where(rng.random((batch, n)) < 0.2, z, 5.0 + np.sqrt(2.0) * z)
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-1.0, 4.0], dt),
                                 jnp.asarray([1.0, 2 ** 0.5], dt))
    return x, start


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    _block(out)
    return time.perf_counter() - t, out


def _block(out):
    import jax
    jax.block_until_ready(out)


def build_roof(tmp):
    """Compile roof.c for float32 and float64; ``None`` when no compiler is present."""
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


# ----------------------------------------------------------------------------- parts (children)

def part_throughput(a):
    """JAX point-iterations/s, alternating with the C roofline; best of each."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    batch, n, iters = a.batch, 1000, 100
    x, start = _textbook(jnp, np, jaxgmm, dt, batch, n)
    x = jnp.asarray(x, dt)
    run = lambda: jaxgmm.fit(x, start, fixed="scales", tol=0.0, max_iter=iters)
    first, _ = _timed(run)
    jax_rates, c_rates, busy = [], [], []
    for _ in range(a.reps):
        if a.roof:
            c_rates.append(run_roof(a.roof, batch))
        p0 = time.process_time()
        t, res = _timed(run)
        busy.append((time.process_time() - p0) / t)
        assert int(np.max(res.n_iter)) == iters
        jax_rates.append(batch * n * iters / t / 1e9)
    return dict(dtype=np.dtype(dt).name, batch=batch, n=n, iters=iters, first_call_s=first,
                jax=max(jax_rates), jax_all=jax_rates, c=max(c_rates) if c_rates else None, c_all=c_rates,
                jax_cpu_s_per_s=float(np.median(busy)))


def _numpy_em(x, w, m, s, tol, max_iter=100_000):
    """Plain NumPy EM for one dataset, scales known (the textbook loop), same rule."""
    import numpy as np
    sd = x.std()
    for it in range(1, max_iter + 1):
        a = np.log(w) - np.log(s) - 0.5 * ((x[:, None] - m) / s) ** 2
        a -= a.max(1, keepdims=True)
        r = np.exp(a)
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0)
        new_w, new_m = nk / len(x), (r * x[:, None]).sum(0) / nk
        change = max(np.abs(new_w - w).max(), np.abs(new_m - m).max() / sd)
        w, m = new_w, new_m
        if change < tol:
            break
    return w, m, it


def _convergence(run, batch):
    """Time ``run()`` (a batch of fits to convergence) after a first call; its
    summary and the result."""
    import numpy as np
    first, _ = _timed(run)
    t, res = _timed(run)
    return dict(seconds=t, first_call_s=first, fits_per_s=batch / t, median_iter=float(np.median(res.n_iter)),
                converged=float(np.mean(np.asarray(res.converged)))), res


def _sklearn_one_at_a_time(x, weights, means, scales, subset, tol):
    """scikit-learn's ``GaussianMixture`` (all free, spherical, no variance
    regularisation) fitted to the first ``subset`` rows of ``x`` one at a time
    from the given start; ``None`` when scikit-learn is not installed."""
    import warnings

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


def part_fits(a):
    """Fits/s to convergence on the motivating example vs scikit-learn and NumPy."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    batch, n = a.batch, 1000
    x, start = _textbook(jnp, np, jaxgmm, dt, batch, n, seed=1)
    xj = jnp.asarray(x, dt)
    out = dict(dtype=np.dtype(dt).name, batch=batch, n=n, tol=jaxgmm.default_tol(dt))
    for name, kw in (("scales known", dict(fixed="scales")), ("all free", dict())):
        out[f"jax {name}"], _ = _convergence(lambda: jaxgmm.fit(xj, start, **kw), batch)
    # scikit-learn, one dataset at a time, all parameters free (it cannot fix scales).
    out["sklearn all free"] = _sklearn_one_at_a_time(x, [0.5, 0.5], [-1.0, 4.0], [1.0, 2 ** 0.5],
                                                     min(a.subset, batch), a.sk_tol)
    sub = min(a.subset, batch)
    t0 = time.perf_counter()
    iters = []
    for i in range(sub):
        iters.append(_numpy_em(x[i], np.array([0.5, 0.5]), np.array([-1.0, 4.0]), np.array([1.0, 2 ** 0.5]),
                               out["tol"])[2])
    t = time.perf_counter() - t0
    out["numpy scales known"] = dict(subset=sub, seconds_subset=t, fits_per_s=sub / t,
                                     median_iter=float(np.median(iters)))
    return out


def part_scaling(a):
    """Time of a fixed number of iterations over B and n; compile time separately."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    iters = 20
    rows = []
    grid = [(b, 1000) for b in a.b_grid] + [(a.n_batch, nn) for nn in a.n_grid if nn != 1000]
    for batch, n in grid:
        key = jax.random.key(batch * 7 + n)
        truth = jaxgmm.MixtureParams(jnp.asarray([0.2, 0.8], dt), jnp.asarray([0.0, 5.0], dt),
                                     jnp.asarray([1.0, 2 ** 0.5], dt))
        # Ready before timing: sampling is dispatched asynchronously, and the
        # first call would otherwise wait for it (it once added 1.5 s to
        # B = 100,000's 'compile' time).
        x = jax.block_until_ready(jaxgmm.sample(key, truth, n, shape=(batch,)).astype(dt))
        start = truth._replace(weights=jnp.asarray([0.5, 0.5], dt), means=jnp.asarray([-1.0, 4.0], dt))
        run = lambda: jaxgmm.fit(x, start, fixed="scales", tol=0.0, max_iter=iters)
        first, _ = _timed(run)
        best = min(_timed(run)[0] for _ in range(2))
        rows.append(dict(batch=batch, n=n, first_s=first, run_s=best, compile_s=max(first - best, 0.0),
                         gpis=batch * n * iters / best / 1e9))
        del x
    return dict(dtype=np.dtype(dt).name, iters=iters, rows=rows)


def part_tail(a):
    """Slowest-fit tax: pi = 0.3, mu = (0, 1), sigma = 1 known, n = 1000."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    from jaxgmm._compact import fit_compacted
    from jaxgmm._fit import prepare_fit
    from jaxgmm._loop import block_rows
    batch, n = a.batch, 1000
    truth = jaxgmm.MixtureParams(jnp.asarray([0.3, 0.7], dt), jnp.asarray([0.0, 1.0], dt), jnp.asarray([1.0, 1.0], dt))
    x = jax.block_until_ready(jaxgmm.sample(jax.random.key(3), truth, n, shape=(batch,)).astype(dt))
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-0.5, 1.5], dt), jnp.asarray([1.0, 1.0], dt))
    kw = dict(fixed="scales")

    def blocked_lanes(n_iter):
        rows = block_rows(n, batch, dt)
        lanes = 0
        for i in range(-(-batch // rows)):
            s = min(i * rows, batch - rows)
            lanes += rows * int(np.max(n_iter[s:s + rows]))
        return lanes

    out = dict(dtype=np.dtype(dt).name, batch=batch, n=n, tol=jaxgmm.default_tol(dt))
    # Every driver is timed on its second call, compiled for these shapes by the first.
    _timed(lambda: jaxgmm.fit(x, start, **kw))
    t, plain = _timed(lambda: jaxgmm.fit(x, start, **kw))
    it = np.asarray(plain.n_iter)
    out["plain"] = dict(seconds=t, sum_iter=int(it.sum()), median=float(np.median(it)), max=int(it.max()),
                        eff_one_vmap=float(it.sum() / (batch * it.max())),
                        eff_blocks=float(it.sum() / blocked_lanes(it)),
                        status=np.bincount(np.asarray(plain.status), minlength=4).tolist())
    args = prepare_fit(x, start, **kw)

    def compacted(reference, accelerate=None):
        """``fit_compacted``'s second call: time, work accounting, and distance from ``reference``."""
        run = lambda: fit_compacted(*args.arrays, spec=args.spec, accelerate=accelerate)
        t_first, _ = _timed(run)
        t, (res, info) = _timed(run)
        return dict(seconds=t, first_call_s=t_first, sum_iter=int(np.sum(np.asarray(res.n_iter))),
                    eff=info.fit_iterations / info.lane_iterations, rounds=info.rounds,
                    shapes=list(info.compiles_shapes),
                    max_abs_dmean=float(np.abs(np.asarray(res.params.means - reference.params.means)).max()),
                    max_abs_dloglik=float(np.abs(np.asarray(res.loglik - reference.loglik)).max()),
                    same_status=bool(np.array_equal(np.asarray(res.status), np.asarray(reference.status))))

    out["compact"] = compacted(plain)
    _timed(lambda: jaxgmm.fit(x, start, accelerate="squarem", **kw))
    t, sq = _timed(lambda: jaxgmm.fit(x, start, accelerate="squarem", **kw))
    isq = np.asarray(sq.n_iter)
    dll = np.asarray(sq.loglik - plain.loglik)
    out["squarem"] = dict(seconds=t, sum_e_steps=int(isq.sum()), median=float(np.median(isq)), max=int(isq.max()),
                          e_step_reduction=float(it.sum() / isq.sum()),
                          eff_one_vmap=float(isq.sum() / (batch * isq.max())),
                          eff_blocks=float(isq.sum() / blocked_lanes(isq)),
                          dloglik_min=float(dll.min()), dloglik_median=float(np.median(dll)),
                          dloglik_max=float(dll.max()),
                          status=np.bincount(np.asarray(sq.status), minlength=4).tolist())
    out["compact_squarem"] = compacted(sq, accelerate="squarem")
    return out


def part_memory(a):
    """Peak RSS of a fit of B x n float32 data (run in its own process)."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    from jax import lax
    batch, n = a.batch, 1000

    def rss_mb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        return float("nan")

    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-1.0, 4.0], dt),
                                 jnp.asarray([1.0, 2 ** 0.5], dt))
    small = jnp.zeros((2, n), dt) + jnp.arange(n, dtype=dt)
    _block(jaxgmm.fit(small, start, fixed="scales", tol=0.0, max_iter=2))  # runtime warmed up
    runtime = rss_mb("VmRSS")
    # Data made by one fused elementwise op (no temporaries the allocator could
    # keep and the fit then reuse unseen): RSS grows by exactly the data.
    make = jax.jit(lambda: 4.0 + 3.0 * jnp.sin(0.7548776662 * lax.broadcasted_iota(dt, (batch, n), 1)
                                               + 1.3247179572 * lax.broadcasted_iota(dt, (batch, n), 0)))
    x = make()
    _block(x)
    with_data = rss_mb("VmRSS")
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS counter (VmHWM)
    except OSError:
        reset = False
    t, res = _timed(lambda: jaxgmm.fit(x, start, fixed="scales", tol=0.0, max_iter=5))
    peak = rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mb = batch * n * np.dtype(dt).itemsize / 2 ** 20
    # What the fit itself needs on top of what the process held before it (the
    # runtime, the data and whatever the allocator kept from creating the data).
    working = peak - with_data
    return dict(batch=batch, n=n, dtype=np.dtype(dt).name, data_mb=data_mb, runtime_mb=runtime,
                with_data_mb=with_data, peak_mb=peak, peak_reset=reset, fit_s=t, working_mb=working,
                ratio=(data_mb + max(working, 0.0)) / data_mb)


def part_components(a):
    """More than two components: fixed-iteration throughput for K = 2..5, and
    fits/s to convergence for K = 3 against scikit-learn one dataset at a time."""
    jax, jnp, np, jaxgmm, dt = _jax_setup()
    batch, n, iters = a.batch, 1000, 50
    out = dict(dtype=np.dtype(dt).name, batch=batch, n=n, iters=iters, tol=jaxgmm.default_tol(dt), rates={})
    for k in (2, 3, 4, 5):
        # Components 4 sd apart, equal weights; the start is the truth, moved.
        means = 4.0 * np.arange(k)
        truth = jaxgmm.MixtureParams(np.full(k, 1.0 / k), means, np.ones(k))
        start = jaxgmm.MixtureParams(jnp.full(k, 1.0 / k, dt), jnp.asarray(means + 0.5, dt), jnp.full(k, 1.2, dt))
        x = jaxgmm.sample(jax.random.key(k), jax.tree.map(lambda v: jnp.asarray(v, dt), truth), n, shape=(batch,))
        _block(x)
        for name, kw in (("scales known", dict(fixed="scales")), ("all free", dict())):
            run = lambda: jaxgmm.fit(x, start, tol=0.0, max_iter=iters, **kw)
            _timed(run)
            t = min(_timed(run)[0] for _ in range(2))
            out["rates"][f"{k} {name}"] = batch * n * iters / t / 1e9
        if k == 3:
            out["k3 jax"], res = _convergence(lambda: jaxgmm.fit(x, start), batch)
            out["k3 squarem"], acc = _convergence(lambda: jaxgmm.fit(x, start, accelerate="squarem"), batch)
            gain = np.asarray(acc.loglik, np.float64) - np.asarray(res.loglik, np.float64)
            out["k3 squarem"].update(dloglik_min=float(gain.min()), dloglik_max=float(gain.max()))
            out["k3 compact"], _ = _convergence(lambda: jaxgmm.fit(x, start, compact=True), batch)
            out["k3 both"], _ = _convergence(lambda: jaxgmm.fit(x, start, accelerate="squarem", compact=True),
                                             batch)
            out["k3 sklearn"] = _sklearn_one_at_a_time(x, np.full(k, 1.0 / k), means + 0.5, np.full(k, 1.2),
                                                       min(a.subset, batch), a.sk_tol)
    return out


PARTS = dict(throughput=part_throughput, fits=part_fits, scaling=part_scaling, tail=part_tail, memory=part_memory,
             components=part_components)


def child(args):
    out = PARTS[args.part](args)
    print("RESULT " + json.dumps(out))


def spawn(part, x64=False, **kw):
    cmd = [sys.executable, os.path.abspath(__file__), "--part", part]
    for k, v in kw.items():
        if v is None:
            continue
        cmd += [f"--{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)]
    env = dict(os.environ, JAX_ENABLE_X64="1" if x64 else "0", PYTHONPATH=ROOT)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["_wall_s"] = wall
            print(f"  {part}{' (x64)' if x64 else ''}: {wall:.0f} s", flush=True)
            return res
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise RuntimeError(f"part {part} failed")


# ----------------------------------------------------------------------------- report

def machine_info():
    import jax
    import jaxlib
    import numpy as np
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import sklearn
        skv = sklearn.__version__
    except ImportError:
        skv = "not installed"
    cc = shutil.which("gcc")
    ccv = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0] if cc else "none"
    load = os.getloadavg()
    return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), jax=jax.__version__,
                jaxlib=jaxlib.__version__, numpy=np.__version__, sklearn=skv, cc=ccv,
                load=f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def write_report(path, info, r, quick, total_s):
    L = []
    w = L.append
    w("# jaxgmm benchmark results\n")
    w(f"Written by `python bench/run.py{' --quick' if quick else ''}` on {info['date']} in {total_s:.0f} s.\n")
    w(f"- Machine: {info['cpu']}, {info['cores']} cores (shared with other jobs; load average at start "
      f"{info['load']})")
    w(f"- Python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, NumPy {info['numpy']}, "
      f"scikit-learn {info['sklearn']}, {info['cc']}")
    w("- Every ratio below compares numbers measured in this same run; absolute numbers move with the "
      "machine's load, ratios much less.\n")

    w("## 1. Throughput against the C ceiling\n")
    w("Two components, scales known, 100 EM iterations, B = 10,000 datasets x n = 1000, `tol=0`. "
      "C: `../shared/roofline/roof.c` (gcc -O3 -march=native -ffast-math -fopenmp), built and run here, "
      "alternating with the JAX runs; best of each. G point-iters/s = B x n x iterations / s / 1e9.\n")
    w("| dtype | jaxgmm G pt-it/s | C G pt-it/s | ratio | all jaxgmm runs | all C runs |")
    w("|---|---|---|---|---|---|")
    for t in (r["tp32"], r["tp64"]):
        c = t["c"]
        ratio = f"{t['jax'] / c:.2f}x" if c else "n/a (no C compiler)"
        w(f"| {t['dtype']} | {t['jax']:.3f} | {c:.3f} | **{ratio}** | "
          f"{', '.join(f'{v:.2f}' for v in t['jax_all'])} | {', '.join(f'{v:.2f}' for v in t['c_all'])} |"
          if c else f"| {t['dtype']} | {t['jax']:.3f} | - | {ratio} | | |")
    w("")
    w(f"jaxgmm's process used {r['tp32']['jax_cpu_s_per_s']:.2f} (float32) and "
      f"{r['tp64']['jax_cpu_s_per_s']:.2f} (float64) CPU-seconds per wall-clock second during its runs "
      f"on these {os.cpu_count()} cores (its worker threads busy or spin-waiting), so the gap to C is not idle cores.\n")
    w("The C loop computes the log-likelihood every iteration; jaxgmm's loop does not (its convergence "
      "rule does not use it; the log-likelihood of the returned parameters comes from one extra exact "
      "pass after the loop). The loop's pass costs one `tanh` per point (responsibility = (1 +/- t) / 2) "
      "and each of its sums is one reduction. In float32 a fit that converges then continues with a "
      "precise pass (a logistic per component, every responsibility resolved relative to its size) "
      "until that converges too, usually one or two iterations (with `tol=0`, as here, only the fast "
      "pass runs). With free scales in float32 a fit leaves the fast pass early where it would not "
      "resolve a component's second moment to sqrt(eps) (a narrow or small component).\n")
    w(CPU_NOTES)

    f = r["fits"]
    w("## 2. Fits per second to convergence (motivating example)\n")
    w(f"0.2 N(0,1) + 0.8 N(5, 2) (variance 2), B = {f['batch']:,} datasets of n = {f['n']}, start "
      f"(0.5, 0.5), (-1, 4), {f['dtype']}, jaxgmm default tol = {f['tol']:g} (largest standardised "
      "parameter change). scikit-learn and NumPy are timed one dataset at a time on the first "
      "`subset` datasets and their fits/s extrapolated.\n")
    w("| method | model | fits/s | median iterations | note |")
    w("|---|---|---|---|---|")
    for k in ("jax scales known", "jax all free"):
        v = f[k]
        w(f"| jaxgmm.fit (batch of {f['batch']:,}) | {k[4:]} | {v['fits_per_s']:,.0f} | {v['median_iter']:.0f} | "
          f"{v['seconds']:.2f} s (first call incl. compile {v['first_call_s']:.2f} s), "
          f"{100 * v['converged']:.0f}% converged |")
    sk = f.get("sklearn all free")
    if sk:
        w(f"| scikit-learn GaussianMixture, one at a time | all free | {sk['fits_per_s']:,.1f} | "
          f"{sk['median_iter']:.0f} | subset of {sk['subset']} in {sk['seconds_subset']:.1f} s; tol={sk['tol']:g} "
          "on the mean log-likelihood, reg_covar=0 |")
    nv = f["numpy scales known"]
    w(f"| plain NumPy EM loop, one at a time | scales known | {nv['fits_per_s']:,.1f} | {nv['median_iter']:.0f} | "
      f"subset of {nv['subset']} in {nv['seconds_subset']:.1f} s; same stopping rule |")
    w("")
    if sk:
        w(f"- jaxgmm / scikit-learn (both all free): **{f['jax all free']['fits_per_s'] / sk['fits_per_s']:,.0f}x**")
        need = 1000 * sk["fits_per_s"] * f["n"] * f["jax all free"]["median_iter"] / 1e9
        c32 = r["tp32"]["c"]
        if c32:
            w(f"- For 1000x scikit-learn here, jaxgmm would need about {need:.1f} G point-iters/s on the "
              f"all-free model: {need / c32:.1f}x the C ceiling measured above for the cheaper known-scale "
              "iteration. That target is out of reach of any implementation on this CPU; it is one for "
              "the GPU (bench/gpu.sh).")
    w(f"- jaxgmm / NumPy loop (both scales known): "
      f"**{f['jax scales known']['fits_per_s'] / nv['fits_per_s']:,.0f}x**\n")

    s = r["scaling"]
    w("## 3. Scaling\n")
    w(f"{s['iters']} iterations (`tol=0`), scales known, {s['dtype']}. `first` = first call (trace + "
      "compile + run), `run` = best of two later calls, compile = first - run.\n")
    w("| B | n | B*n | first call s | run s | compile s | G pt-it/s |")
    w("|---|---|---|---|---|---|---|")
    for row in s["rows"]:
        w(f"| {row['batch']:,} | {row['n']:,} | {row['batch'] * row['n']:,} | {row['first_s']:.2f} | "
          f"{row['run_s']:.3f} | {row['compile_s']:.2f} | {row['gpis']:.3f} |")
    w("")

    t = r["tail"]
    p, c, q, cq = t["plain"], t["compact"], t["squarem"], t["compact_squarem"]
    w("## 4. The slowest-fit tax\n")
    w(f"pi = 0.3, mu = (0, 1), sigma = 1 known, n = {t['n']}, B = {t['batch']:,}, {t['dtype']}, "
      f"default tol {t['tol']:g}. Efficiency = (sum over fits of iterations each needed) / (fits x "
      "iterations actually run); for SQUAREM, iterations are E-steps.\n")
    w(f"Plain EM iterations: median {p['median']:.0f}, max {p['max']}.\n")
    w("| driver | efficiency | sum of iterations (E-steps) | wall s | note |")
    w("|---|---|---|---|---|")
    w(f"| plain, one vmap over the batch (B x max) | {p['eff_one_vmap']:.2f} | {p['sum_iter']:,} | | the tax as defined |")
    w(f"| plain, as run (cache-sized blocks, each stops with its slowest) | {p['eff_blocks']:.2f} | {p['sum_iter']:,} | "
      f"{p['seconds']:.1f} | default driver |")
    w(f"| `fit(compact=True)` | **{c['eff']:.2f}** | {c['sum_iter']:,} | {c['seconds']:.1f} | {c['rounds']} chunks "
      f"(8 iterations, growing 1.5x a round to 128), block shapes {c['shapes']}; first call "
      f"{c['first_call_s']:.1f} s incl. compiles |")
    w(f"| `fit(accelerate='squarem')` (one vmap) | {q['eff_one_vmap']:.2f} | {q['sum_e_steps']:,} | | |")
    w(f"| `fit(accelerate='squarem')` as run (blocks) | {q['eff_blocks']:.2f} | {q['sum_e_steps']:,} | "
      f"{q['seconds']:.1f} | median {q['median']:.0f}, max {q['max']} E-steps |")
    w(f"| `fit(accelerate='squarem', compact=True)` | **{cq['eff']:.2f}** | {cq['sum_iter']:,} | "
      f"**{cq['seconds']:.2f}** | {cq['rounds']} chunks (8 to 128 E-steps); first call {cq['first_call_s']:.1f} s "
      f"incl. compiles |")
    w("")
    w(f"- Compacted vs plain results: max |d mean| {c['max_abs_dmean']:.2g}, max |d loglik| "
      f"{c['max_abs_dloglik']:.2g}, identical status: {c['same_status']} (differences are rounding of "
      "sums over differently shaped blocks, moving a fit across the stopping threshold by a few "
      "iterations; the tolerance-level spread of slowly converging fits).")
    w(f"- SQUAREM: **{q['e_step_reduction']:.1f}x fewer E-steps** than plain EM; final log-likelihood minus "
      f"plain EM's: min {q['dloglik_min']:.3g}, median {q['dloglik_median']:.3g}, max {q['dloglik_max']:.3g} "
      f"(status counts CONVERGED/MAX_ITER/DEGENERATE/NONFINITE: plain {p['status']}, SQUAREM {q['status']}).")
    w(f"- SQUAREM compacted vs SQUAREM as run: max |d mean| {cq['max_abs_dmean']:.2g}, max |d loglik| "
      f"{cq['max_abs_dloglik']:.2g}, identical status: {cq['same_status']} (SQUAREM's accept/reject "
      "decisions and step lengths follow the rounding of differently shaped blocks, so its paths part more "
      "than plain EM's and slow fits stop at different points of a flat likelihood ridge, with equal "
      "log-likelihoods to float32 rounding; halving the default driver's block size moved SQUAREM's means by "
      "up to 1.3e-3 in a probe). Wall time against the default "
      f"driver: **{p['seconds'] / cq['seconds']:.1f}x** faster; against `compact=True` alone "
      f"{c['seconds'] / cq['seconds']:.1f}x, against SQUAREM alone {q['seconds'] / cq['seconds']:.1f}x.\n")

    m = r["memory"]
    w("## 5. Peak memory\n")
    w(f"`fit` of B = {m['batch']:,} x n = {m['n']} {m['dtype']} (5 iterations), own process. Data "
      f"{m['data_mb']:.0f} MiB. Resident before the data (JAX runtime, compiled fit): {m['runtime_mb']:.0f} MiB; "
      f"after creating the data (one fused op, no temporaries): {m['with_data_mb']:.0f} MiB; peak during the fit: {m['peak_mb']:.0f} MiB "
      f"({'peak counter reset just before the fit' if m['peak_reset'] else 'whole-process peak'}).\n")
    w(f"- The fit's own working memory (peak during the fit - resident before it): **{m['working_mb']:.0f} MiB**, "
      f"so data + fit = **{m['ratio']:.2f}x the data** (target: <= 1.5x data + ~300 MB). The data are "
      "never copied: each block of fits slices its rows (`lax.dynamic_slice`) and standardises them in "
      "cache.\n")
    w("## 6. GPU\n")
    w("`bench/gpu.sh` measures the same throughput on a GPU and the fraction of the measured memory-"
      "bandwidth ceiling (4 bytes read per point per iteration). This machine has no GPU, so this run "
      "does not measure it; below is the output of `gpu.sh` from its last run on a lent GPU, kept in "
      "`bench/gpu_results.txt` (first line: when, and the commit it measured).\n")
    gpu_file = os.path.join(HERE, "gpu_results.txt")
    if os.path.exists(gpu_file):
        with open(gpu_file) as fh:
            w("```\n" + fh.read().rstrip() + "\n```\n")
    else:
        w("(no GPU run recorded)\n")
    w(GPU_NOTES)
    if r.get("scale_out"):
        w("## 7. Scale-out (`bench/scale_out.py`)\n")
        w(r["scale_out"])
    c = r.get("components")
    if c:
        w("## 8. More than two components\n")
        w(f"K components 4 sd apart with equal weights, B = {c['batch']:,} x n = {c['n']}, {c['dtype']}, "
          f"{c['iters']} EM iterations (`tol=0`), start = truth moved by 0.5 (means) and 1.2x (scales). "
          "K = 2 runs the one-`tanh` pass of section 1; K > 2 the general pass (one `exp` per point and "
          "component, one reduction per sum). G pt-it/s = B x n x iterations / s / 1e9.\n")
        w("| K | scales known G pt-it/s | all free G pt-it/s |")
        w("|---|---|---|")
        for k in (2, 3, 4, 5):
            w(f"| {k} | {c['rates'][f'{k} scales known']:.3f} | {c['rates'][f'{k} all free']:.3f} |")
        w("")
        j, sk = c["k3 jax"], c["k3 sklearn"]
        w(f"K = 3, all free, to convergence (jaxgmm default tol {c['tol']:g}): jaxgmm "
          f"{j['fits_per_s']:,.0f} fits/s (batch of {c['batch']:,}, {j['seconds']:.2f} s, "
          f"median {j['median_iter']:.0f} iterations, "
          f"{100 * j['converged']:.0f}% converged)" + (
              f"; scikit-learn one at a time {sk['fits_per_s']:.1f} fits/s (subset of {sk['subset']}, "
              f"tol={sk['tol']:g}, median {sk['median_iter']:.0f} iterations): **"
              f"{j['fits_per_s'] / sk['fits_per_s']:.0f}x**.\n" if sk else "; scikit-learn not installed.\n"))
        q = c["k3 squarem"]
        w(f"With `accelerate=\"squarem\"` the same fits run at {q['fits_per_s']:,.0f} fits/s "
          f"(**{q['fits_per_s'] / j['fits_per_s']:.1f}x** plain EM; median {q['median_iter']:.0f} E-steps, "
          f"{100 * q['converged']:.0f}% converged); final log-likelihood minus plain EM's: min "
          f"{q['dloglik_min']:.3g}, max {q['dloglik_max']:.3g}.\n")
        cp, both = c["k3 compact"], c["k3 both"]
        w(f"Plain EM takes up to three times its median number of iterations here, and each cache-sized "
          f"block of fits runs until its slowest stops. `compact=True` repacks the fits still running "
          f"between chunks of iterations: {cp['fits_per_s']:,.0f} fits/s "
          f"(**{cp['fits_per_s'] / j['fits_per_s']:.1f}x** plain EM); with `accelerate=\"squarem\"` too, "
          f"{both['fits_per_s']:,.0f} fits/s (**{both['fits_per_s'] / j['fits_per_s']:.1f}x** plain EM"
          + (f", **{both['fits_per_s'] / sk['fits_per_s']:.0f}x** scikit-learn" if sk else "") + ").\n")
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=sorted(PARTS))
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--roof", default=None)
    ap.add_argument("--subset", type=int, default=100)
    ap.add_argument("--sk-tol", type=float, default=1e-6)
    ap.add_argument("--b-grid", default="1,10,100,1000,10000,100000")
    ap.add_argument("--n-grid", default="100,1000,10000,100000")
    ap.add_argument("--n-batch", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    if args.part:
        args.b_grid = [int(v) for v in str(args.b_grid).split(",")]
        args.n_grid = [int(v) for v in str(args.n_grid).split(",")]
        return child(args)
    q = args.quick
    t0 = time.perf_counter()
    info = machine_info()
    r = {}
    with tempfile.TemporaryDirectory() as tmp:
        roof = build_roof(tmp)
        print("throughput", flush=True)
        b = 1000 if q else 10_000
        r["tp32"] = spawn("throughput", batch=b, reps=2 if q else 3, roof=roof and roof["f32"])
        r["tp64"] = spawn("throughput", x64=True, batch=b, reps=2 if q else 3, roof=roof and roof["f64"])
    print("fits", flush=True)
    r["fits"] = spawn("fits", batch=1000 if q else 10_000, subset=10 if q else 100)
    print("scaling", flush=True)
    r["scaling"] = spawn("scaling", b_grid="1,10,100,1000" if q else "1,10,100,1000,10000,100000",
                         n_grid="100,1000,10000" if q else "100,1000,10000,100000", n_batch=10 if q else 100)
    print("tail", flush=True)
    r["tail"] = spawn("tail", batch=64 if q else 1000)
    print("memory", flush=True)
    r["memory"] = spawn("memory", batch=2000 if q else 100_000)
    print("components", flush=True)
    r["components"] = spawn("components", batch=1000 if q else 10_000, subset=10 if q else 50)
    print("scale-out", flush=True)
    import scale_out
    r["scale_out"] = scale_out.markdown(scale_out.huge_dataset(1e6 if q else 1e8),
                                        scale_out.multi_device(B=1000 if q else 10_000))
    write_report(args.out, info, r, q, time.perf_counter() - t0)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump(dict(info=info, results=r), fh, indent=1)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
