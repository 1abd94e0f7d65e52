#!/usr/bin/env bash
# GPU throughput of jaxgmm's EM loop against the GPU's memory-bandwidth ceiling.
#
# Run from anywhere on a machine with a CUDA GPU and JAX with CUDA installed:
#     bash bench/gpu.sh
# Installs nothing (the repository is put on PYTHONPATH). About 1-3 minutes.
#
# Prints, for the two-component model with known scales (tol=0, fixed iterations),
# once for each way of writing a pass's sums (jaxgmm._em._REDUCTION: one reduction
# per sum, or the default, where the pass's two sums are one complex reduction):
#   G point-iters/s = B * n * iterations / seconds / 1e9
#   bandwidth needed = 4 bytes read per point per iteration (float32) * point-iters/s
#   fraction of the measured memory bandwidth (a large on-device reduction,
#   best of several runs) and of the device's nominal peak where known;
# then one large dataset, three components (all free), each way of writing the
# sums of the passes with more than two (three components and two, all free), and
# fits/s to convergence for the textbook example.  With $OUT set, the table
# is also written to $OUT/gpu_results.txt.  The GPU tests run separately:
#     PYTHONPATH=. python -m pytest -q tests/test_core.py tests/test_large_data.py
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" - <<'EOF'
import os
import time

import jax
import jax.numpy as jnp

import jaxgmm

dev = jax.devices()[0]
if dev.platform != "gpu":
    raise SystemExit(f"no GPU visible to JAX (devices: {jax.devices()}); nothing to measure")
name = getattr(dev, "device_kind", str(dev))
NOMINAL_TBPS = {"H100 80GB HBM3": 3.35, "H100 SXM": 3.35, "H100 PCIe": 2.0, "H100 NVL": 3.9,
                "H200": 4.8, "A100-SXM4-80GB": 2.04, "A100-SXM4-40GB": 1.56}
nominal = next((v for k, v in NOMINAL_TBPS.items() if k.lower() in name.lower()), None)


def best_time(fn, reps=5):
    jax.block_until_ready(fn())  # compile / warm up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return min(ts)


# Measured memory-bandwidth ceiling: read 4 GiB once (sum over a float32 array).
big = jnp.ones((1 << 30,), jnp.float32)
read = jax.jit(lambda a: jnp.sum(a))
t_read = best_time(lambda: read(big))
bw = big.size * 4 / t_read / 1e12  # TB/s
del big

truth = jaxgmm.MixtureParams(jnp.asarray([0.2, 0.8]), jnp.asarray([0.0, 5.0]), jnp.asarray([1.0, 2 ** 0.5]))
start = truth._replace(weights=jnp.asarray([0.5, 0.5]), means=jnp.asarray([-1.0, 4.0]))
p = jaxgmm.MixtureParams(*(f.astype(jnp.float32) for f in start))
# How each pass's sums are written (jaxgmm._em._REDUCTION): one reduction per sum,
# or the default (None: on a GPU, two sums as one complex reduction).
STRATEGIES = ("sums", None)
rows, conv = [], []
for batch, n, iters in ((10_000, 1000, 500), (100_000, 1000, 200), (1_000, 100_000, 200)):
    x = jaxgmm.sample(jax.random.key(0), truth, n, shape=(batch,)).astype(jnp.float32)
    means = {}
    for how in STRATEGIES:
        jaxgmm._em._REDUCTION = how
        jax.clear_caches()
        run = lambda: jaxgmm.fit(x, p, fixed="scales", tol=0.0, max_iter=iters)
        t0 = time.perf_counter()
        means[how] = jax.block_until_ready(run()).params.means
        first = time.perf_counter() - t0
        t = best_time(lambda: run().loglik, reps=3)
        gpis = batch * n * iters / t / 1e9
        rows.append((how, batch, n, iters, first, t, gpis, gpis * 4 / 1e3))
    diff = float(jnp.max(jnp.abs(means[STRATEGIES[0]] - means[STRATEGIES[1]])))
    print(f"B={batch} n={n}: max |difference of means| between strategies {diff:.2e}", flush=True)
    if batch == 100_000:  # fits/s to convergence, textbook example (default tol), per strategy
        for how in STRATEGIES:
            jaxgmm._em._REDUCTION = how
            jax.clear_caches()
            fit_conv = lambda: jaxgmm.fit(x, p, fixed="scales")
            res = jax.block_until_ready(fit_conv())
            t = best_time(lambda: fit_conv().loglik, reps=3)
            conv.append((how, batch, n, batch / t, float(jnp.median(res.n_iter)), float(jnp.mean(res.converged))))
    del x
jaxgmm._em._REDUCTION = None

# One large dataset (reduced in chunks of jaxgmm._chunks.chunk_size() points).
n_huge, iters_huge = 1 << 27, 50
x = jaxgmm.sample(jax.random.key(1), truth, n_huge).astype(jnp.float32)
run = lambda: jaxgmm.fit(x, p, fixed="scales", tol=0.0, max_iter=iters_huge)
t0 = time.perf_counter()
jax.block_until_ready(run())
first_huge = time.perf_counter() - t0
t_huge = best_time(lambda: run().loglik, reps=3)
gpis_huge = n_huge * iters_huge / t_huge / 1e9
del x

# Three components, all free (the general pass: one exp per point and component).
truth3 = jaxgmm.MixtureParams(jnp.full(3, 1 / 3), jnp.asarray([0.0, 4.0, 8.0]), jnp.ones(3))
p3 = jaxgmm.MixtureParams(jnp.full(3, 1 / 3, jnp.float32), jnp.asarray([0.5, 4.5, 8.5], jnp.float32),
                          jnp.full(3, 1.2, jnp.float32))
b3, n3, iters3 = 100_000, 1000, 100
x = jaxgmm.sample(jax.random.key(3), truth3, n3, shape=(b3,)).astype(jnp.float32)
t3 = best_time(lambda: jaxgmm.fit(x, p3, tol=0.0, max_iter=iters3).loglik, reps=3)
gpis3 = b3 * n3 * iters3 / t3 / 1e9
del x

# Passes with more than two sums: each way of writing them (jaxgmm._em._REDUCTION),
# for three components all free (nine sums) and two all free (the float32 fast
# pass: three sums), with the number of kernels XLA makes of the whole fit.
def kernel_counts(fn, *args):
    try:
        text = jax.jit(fn).lower(*args).compile().as_text()
    except Exception as err:  # a diagnostic only
        return f"({type(err).__name__})"
    return "/".join(str(text.count(f"kind={k}")) for k in ("kInput", "kLoop", "kCustom"))


WAYS = ("sums", "complex")
ways_rows = []
b_w, n_w, iters_w = 100_000, 1000, 100
for label, tr, st in (("K = 3, all free", truth3, p3), ("K = 2, all free", truth, p)):
    x = jaxgmm.sample(jax.random.key(4), tr, n_w, shape=(b_w,)).astype(jnp.float32)
    ref = None
    for how in WAYS:
        jaxgmm._em._REDUCTION = how
        jax.clear_caches()
        run = lambda: jaxgmm.fit(x, st, tol=0.0, max_iter=iters_w)
        means = jax.block_until_ready(run()).params.means
        ref = means if ref is None else ref
        t = best_time(lambda: run().loglik, reps=3)
        g = b_w * n_w * iters_w / t / 1e9
        kc = kernel_counts(lambda xx: jaxgmm.fit(xx, st, tol=0.0, max_iter=iters_w).loglik, x)
        ways_rows.append((label, how, t, g, float(jnp.max(jnp.abs(means - ref))), kc))
        print(ways_rows[-1], flush=True)
    del x
jaxgmm._em._REDUCTION = None

lines = [f"device: {name}   jax {jax.__version__}",
         f"measured read bandwidth (4 GiB sum): {bw:.2f} TB/s" + (f"   nominal peak: {nominal:.2f} TB/s" if nominal else ""),
         "",
         f"{'sums as':>9} {'B':>8} {'n':>7} {'iters':>5} {'first s':>8} {'run s':>7} {'G pt-it/s':>10} {'TB/s @4B':>9} {'of measured':>11}"
         + (f" {'of nominal':>10}" if nominal else "")]
for how, batch, n, iters, first, t, gpis, need in rows:
    line = f"{how or 'default':>9} {batch:>8,} {n:>7,} {iters:>5} {first:>8.2f} {t:>7.3f} {gpis:>10.1f} {need:>9.2f} {need / bw:>10.0%}"
    lines.append(line + (f" {need / nominal:>10.0%}" if nominal else ""))
lines.append(f"{'default':>9} {1:>8,} {n_huge:>7,} {iters_huge:>5} {first_huge:>8.2f} {t_huge:>7.3f} {gpis_huge:>10.1f} "
             f"{gpis_huge * 4 / 1e3:>9.2f} {gpis_huge * 4 / 1e3 / bw:>10.0%}  (one dataset, chunks of "
             f"{jaxgmm._chunks.chunk_size():,})")
lines.append(f"{'default':>9} {b3:>8,} {n3:>7,} {iters3:>5} {'':>8} {t3:>7.3f} {gpis3:>10.1f} "
             f"{gpis3 * 4 / 1e3:>9.2f} {gpis3 * 4 / 1e3 / bw:>10.0%}  (K = 3, all free)")
lines += ["", "(target: >= 50% of the measured bandwidth; 'first s' includes compilation)", "",
          f"passes with more sums, each way of writing them, B = {b_w:,} x n = {n_w:,}, {iters_w} iterations "
          "(kernels: input/loop/custom fusions in the compiled fit):"]
for label, how, t, g, diff, kc in ways_rows:
    lines.append(f"  {label}: {how:>15} {t:7.3f} s {g:8.1f} G pt-it/s {g * 4 / 1e3 / bw:5.0%} of bandwidth"
                 f"   max |d means| vs sums {diff:.1e}   kernels {kc}")
lines += ["",
          "fits/s to convergence, textbook example (scales known, f32, default tol):"]
for how, batch, n, fps, med, frac in conv:
    lines.append(f"{how or 'default':>9} B={batch:,} n={n:,}: {fps:,.0f} fits/s, median {med:.0f} iterations, {frac:.1%} converged")
print("\n".join(lines))
out = os.environ.get("OUT")
if out:
    with open(os.path.join(out, "gpu_results.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
EOF
