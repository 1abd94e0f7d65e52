"""Section 7: scale-out: one huge dataset, and many fits over several devices.

    python bench/run.py --only scale_out              # as part of the harness
    python bench/scale_out.py            # prints the markdown section alone
    python bench/scale_out.py --n 1e8    # the size of the huge dataset

1. One dataset of ``n`` (default 10^8) float32 observations, the textbook model with
   known scales: wall time of the fit and the peak resident memory *during the fit*
   (the process's high-water mark is reset once the data are in place), next to the
   size of the data.
2. ``B x n`` fits spread over 1 and 2 CPU devices (``fit`` vs ``fit_sharded``, each in
   a fresh process with ``--xla_force_host_platform_device_count``): point-iterations
   per second, next to the C ceiling (``../shared/roofline/roof.c``) run before and
   after them in the same run.

Each measurement runs in its own subprocess so that memory figures are not
polluted by other measurements.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: python bench/scale_out.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import build_roof, reset_peak_rss, rss_bytes, run_roof, spawn

TITLE = "Scale-out (`bench/scale_out.py`)"


def huge_child(n):
    """One fit of ``n`` float32 points: times and resident memory of a first and a second call."""
    import numpy as np
    n = int(float(n))
    # Simulate in chunks straight into one float32 buffer (no n-sized temporaries).
    rng = np.random.default_rng(0)
    x_np = np.empty(n, np.float32)
    chunk = 10_000_000
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        comp = rng.random(m) < 0.2
        x_np[s:s + m] = np.where(comp, 0.0, 5.0) + np.where(comp, 1.0, 2 ** 0.5) * rng.standard_normal(m, np.float32)
    import jax
    import jax.numpy as jnp

    import jaxgmm
    x = jax.device_put(x_np)
    x.block_until_ready()
    del x_np
    start = jaxgmm.MixtureParams(jnp.array([0.5, 0.5]), jnp.array([-1.0, 4.0]), jnp.array([1.0, 2 ** 0.5]))

    def measured_fit():
        # One fit: (seconds, resident before, peak during, result), peak counter reset first.
        reset_peak_rss()
        before = rss_bytes("VmRSS:")
        t0 = time.perf_counter()
        res = jaxgmm.fit(x, start, fixed="scales")
        res.loglik.block_until_ready()
        return time.perf_counter() - t0, before, rss_bytes("VmHWM:"), res

    # The first call at this shape also compiles; the second is the fit alone.
    first, base, peak_first, _ = measured_fit()
    second, base2, peak, res = measured_fit()
    return dict(n=n, data_bytes=n * 4, rss_before=base, peak_first=peak_first, rss_before_second=base2,
                peak=peak, first_s=first, second_s=second, n_iter=int(res.n_iter), status=int(res.status),
                means=[float(v) for v in res.params.means])


def devices_child(B, n, iters, sharded):
    """G point-iterations/s of ``fit`` (one device) or ``fit_sharded`` over the visible devices."""
    import jax
    import jax.numpy as jnp

    import jaxgmm
    truth = jaxgmm.MixtureParams(jnp.array([0.2, 0.8]), jnp.array([0.0, 5.0]), jnp.array([1.0, 2 ** 0.5]))
    start = truth._replace(weights=jnp.array([0.5, 0.5]), means=jnp.array([-1.0, 4.0]))
    xs = jaxgmm.sample(jax.random.key(0), truth, n, shape=(B,))
    fit = jaxgmm.fit_sharded if sharded else jaxgmm.fit
    run = lambda: fit(xs, start, fixed="scales", tol=0, max_iter=iters).loglik.block_until_ready()
    run()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    t = sorted(times)[1]
    return dict(devices=jax.device_count(), sharded=sharded, seconds=t, gpit=B * n * iters / t / 1e9)


def huge_dataset(n: float, tree=None) -> dict:
    return spawn("bench.scale_out:huge_child", tree=tree, timeout=600, n=float(n))


def multi_device(B: int = 10_000, n: int = 1000, iters: int = 100, counts=(1, 2), roof=None, tree=None) -> list:
    """``fit`` on one device and ``fit_sharded`` on ``count`` forced CPU devices, with the
    C ceiling (``roof``: the harness's built executables, else built here) before and after."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roof = roof if roof is not None else build_roof(tmp)
        c_runs = [run_roof(roof["f32"], B)] if roof else []
        for count in counts:
            env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}
            rows.append(spawn("bench.scale_out:devices_child", env=env, tree=tree, timeout=600,
                              B=B, n=n, iters=iters, sharded=count > 1))
        if roof:
            c_runs.append(run_roof(roof["f32"], B))
    for row in rows:
        row["c_gpit"] = max(c_runs) if c_runs else None
    return rows


def measure(ctx):
    q = ctx.quick
    return dict(scale_out=dict(huge=huge_dataset(ctx.opt("n", 1e6 if q else 1e8), tree=ctx.tree),
                               devices=multi_device(B=ctx.opt("batch", 1000 if q else 10_000),
                                                    roof=ctx.roof, tree=ctx.tree)))


def section(huge: dict, devices: list) -> str:
    gib = 2.0 ** 30
    first = huge["peak_first"] - huge["rss_before"]
    second = huge["peak"] - huge["rss_before_second"]
    mib = 2.0 ** 20
    lines = [
        "### One huge dataset (float32, two components, scales known)",
        "",
        "Resident memory grows during a fit by the amounts below (the peak counter is reset before",
        "each call); the data are not copied. The first call at a new shape also compiles.",
        "",
        "| n | data | wall time, 1st call (compiles) / 2nd call | EM iterations | growth, 1st call | growth, 2nd call | (data + 2nd-call growth) / data |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {huge['n']:.0e} | {huge['data_bytes'] / gib:.2f} GiB | {huge['first_s']:.2f} s / {huge['second_s']:.2f} s "
        f"| {huge['n_iter']} | {first / mib:.0f} MiB | {second / mib:.0f} MiB "
        f"| {(huge['data_bytes'] + second) / huge['data_bytes']:.2f} |",
        "",
        "### Fits spread over CPU devices (B = 10,000 x n = 1000, float32, scales known, 100 iterations)",
        "",
        "One CPU device per core (`XLA_FLAGS=--xla_force_host_platform_device_count=2`) lets",
        "`fit_sharded` run one batch half per core; C is the roofline (OpenMP over both cores),",
        "best of a run before and after the JAX runs.",
        "",
        "| devices | driver | G point-iters/s | vs 1 device | vs C ceiling |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = devices[0]["gpit"]
    for row in devices:
        driver = "fit_sharded" if row["sharded"] else "fit"
        vs_c = f"{row['gpit'] / row['c_gpit']:.2f}x (C {row['c_gpit']:.3f})" if row["c_gpit"] else "no C compiler"
        lines.append(f"| {row['devices']} | {driver} | {row['gpit']:.3f} | {row['gpit'] / base:.2f}x | {vs_c} |")
    return "\n".join(lines) + "\n"


def markdown(r, ctx):
    return section(r["scale_out"]["huge"], r["scale_out"]["devices"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e8, help="size of the huge dataset")
    args = parser.parse_args(argv)
    t0 = time.time()
    text = section(huge_dataset(args.n), multi_device())
    print(text)
    print(f"(scale-out benchmarks took {time.time() - t0:.0f} s)", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
