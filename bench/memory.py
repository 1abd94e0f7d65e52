"""Section 5: peak resident memory of a B = 100,000 x n = 1000 float32 fit, in its own process."""

from __future__ import annotations

import resource

from bench.common import block, jax_setup, reset_peak_rss, rss_bytes, timed

TITLE = "Peak memory"


def child(batch):
    """Peak RSS of a fit of B x n float32 data (run in its own process)."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    from jax import lax
    n = 1000
    mib = 2 ** 20
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-1.0, 4.0], dt),
                                 jnp.asarray([1.0, 2 ** 0.5], dt))
    small = jnp.zeros((2, n), dt) + jnp.arange(n, dtype=dt)
    block(jaxgmm.fit(small, start, fixed="scales", tol=0.0, max_iter=2))  # runtime warmed up
    runtime = rss_bytes("VmRSS:") / mib
    # Data made by one fused elementwise op (no temporaries the allocator could
    # keep and the fit then reuse unseen): RSS grows by exactly the data.
    make = jax.jit(lambda: 4.0 + 3.0 * jnp.sin(0.7548776662 * lax.broadcasted_iota(dt, (batch, n), 1)
                                               + 1.3247179572 * lax.broadcasted_iota(dt, (batch, n), 0)))
    x = make()
    block(x)
    with_data = rss_bytes("VmRSS:") / mib
    reset = reset_peak_rss()
    t, res = timed(lambda: jaxgmm.fit(x, start, fixed="scales", tol=0.0, max_iter=5))
    peak = rss_bytes("VmHWM:") / mib if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mb = batch * n * np.dtype(dt).itemsize / mib
    # What the fit itself needs on top of what the process held before it (the
    # runtime, the data and whatever the allocator kept from creating the data).
    working = peak - with_data
    return dict(batch=batch, n=n, dtype=np.dtype(dt).name, data_mb=data_mb, runtime_mb=runtime,
                with_data_mb=with_data, peak_mb=peak, peak_reset=reset, fit_s=t, working_mb=working,
                ratio=(data_mb + max(working, 0.0)) / data_mb)


def measure(ctx):
    return dict(memory=ctx.spawn("bench.memory:child", batch=ctx.opt("batch", 2000 if ctx.quick else 100_000)))


def markdown(r, ctx):
    m = r["memory"]
    return (
        f"`fit` of B = {m['batch']:,} x n = {m['n']} {m['dtype']} (5 iterations), own process. Data "
        f"{m['data_mb']:.0f} MiB. Resident before the data (JAX runtime, compiled fit): {m['runtime_mb']:.0f} MiB; "
        f"after creating the data (one fused op, no temporaries): {m['with_data_mb']:.0f} MiB; peak during the fit: "
        f"{m['peak_mb']:.0f} MiB "
        f"({'peak counter reset just before the fit' if m['peak_reset'] else 'whole-process peak'}).\n\n"
        f"- The fit's own working memory (peak during the fit - resident before it): **{m['working_mb']:.0f} MiB**, "
        f"so data + fit = **{m['ratio']:.2f}x the data** (target: <= 1.5x data + ~300 MB). The data are "
        "never copied: each block of fits slices its rows (`lax.dynamic_slice`) and standardises them in "
        "cache.\n")
