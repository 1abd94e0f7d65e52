"""Section 1: throughput against the C ceiling.

B = 10,000 x n = 1000, 100 EM iterations of the two-component model with known
scales, float32 and float64, alternating C (``../shared/roofline/roof.c``, built
by the harness) and JAX runs; best of each.
"""

from __future__ import annotations

import os
import time

from bench.common import jax_setup, run_roof, textbook, timed

TITLE = "Throughput against the C ceiling"


def child(batch, reps, roof=None):
    """JAX point-iterations/s, alternating with the C roofline; best of each."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    n, iters = 1000, 100
    x, start = textbook(jnp, np, jaxgmm, dt, batch, n)
    x = jnp.asarray(x, dt)
    run = lambda: jaxgmm.fit(x, start, fixed="scales", tol=0.0, max_iter=iters)
    first, _ = timed(run)
    jax_rates, c_rates, busy = [], [], []
    for _ in range(reps):
        if roof:
            c_rates.append(run_roof(roof, batch))
        p0 = time.process_time()
        t, res = timed(run)
        busy.append((time.process_time() - p0) / t)
        assert int(np.max(res.n_iter)) == iters
        jax_rates.append(batch * n * iters / t / 1e9)
    return dict(dtype=np.dtype(dt).name, batch=batch, n=n, iters=iters, first_call_s=first,
                jax=max(jax_rates), jax_all=jax_rates, c=max(c_rates) if c_rates else None, c_all=c_rates,
                jax_cpu_s_per_s=float(np.median(busy)))


def measure(ctx):
    b = ctx.opt("batch", 1000 if ctx.quick else 10_000)
    reps = ctx.opt("reps", 2 if ctx.quick else 3)
    roof = ctx.roof or {}
    return dict(tp32=ctx.spawn("bench.throughput:child", batch=b, reps=reps, roof=roof.get("f32")),
                tp64=ctx.spawn("bench.throughput:child", x64=True, batch=b, reps=reps, roof=roof.get("f64")))


def markdown(r, ctx):
    L = []
    w = L.append
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
    w(f"Where the CPU loop's wall-clock time goes, and what was tried without gain, was measured by hand "
      f"from profiles: [{ctx.notes_name}, CPU loop]({ctx.notes_link}#cpu-loop-where-the-time-goes).\n")
    return "\n".join(L)
