#!/usr/bin/env bash
# GPU throughput of jaxgmm's EM loop against the GPU's memory-bandwidth ceiling.
#
# Run from anywhere on a machine with a CUDA GPU and JAX with CUDA installed:
#     bash bench/gpu.sh
# Installs nothing (the repository is put on PYTHONPATH). About 1-3 minutes.
#
# Prints, for the two-component model with known scales (tol=0, fixed iterations):
#   G point-iters/s = B * n * iterations / seconds / 1e9
#   bandwidth needed = 4 bytes read per point per iteration (float32) * point-iters/s
#   fraction of the measured memory bandwidth (a large on-device reduction,
#   best of several runs) and of the device's nominal peak where known.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" - <<'EOF'
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
rows = []
for batch, n, iters in ((10_000, 1000, 500), (100_000, 1000, 200), (1_000, 100_000, 200)):
    x = jaxgmm.sample(jax.random.key(0), truth, n, shape=(batch,)).astype(jnp.float32)
    p = jaxgmm.MixtureParams(*(f.astype(jnp.float32) for f in start))
    run = lambda: jaxgmm.fit(x, p, fixed="scales", tol=0.0, max_iter=iters).loglik
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    first = time.perf_counter() - t0
    t = best_time(run, reps=3)
    gpis = batch * n * iters / t / 1e9
    need = gpis * 4 / 1e3  # TB/s at 4 bytes per point-iteration
    rows.append((batch, n, iters, first, t, gpis, need))
    del x

print(f"\ndevice: {name}   jax {jax.__version__}")
print(f"measured read bandwidth (4 GiB sum): {bw:.2f} TB/s" + (f"   nominal peak: {nominal:.2f} TB/s" if nominal else ""))
print()
hdr = f"{'B':>8} {'n':>7} {'iters':>5} {'first s':>8} {'run s':>7} {'G pt-it/s':>10} {'TB/s @4B':>9} {'of measured':>11}"
if nominal:
    hdr += f" {'of nominal':>10}"
print(hdr)
for batch, n, iters, first, t, gpis, need in rows:
    line = f"{batch:>8,} {n:>7,} {iters:>5} {first:>8.2f} {t:>7.3f} {gpis:>10.1f} {need:>9.2f} {need / bw:>10.0%}"
    if nominal:
        line += f" {need / nominal:>10.0%}"
    print(line)
print("\n(target: >= 50% of the measured bandwidth; 'first s' includes compilation)")
EOF
