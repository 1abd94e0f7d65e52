"""Section 3: scaling in B and n, compile time reported separately."""

from __future__ import annotations

from bench.common import jax_setup, timed

TITLE = "Scaling"


def child(b_grid, n_grid, n_batch):
    """Time of a fixed number of iterations over B and n; compile time separately."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    iters = 20
    rows = []
    grid = [(b, 1000) for b in b_grid] + [(n_batch, nn) for nn in n_grid if nn != 1000]
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
        first, _ = timed(run)
        best = min(timed(run)[0] for _ in range(2))
        rows.append(dict(batch=batch, n=n, first_s=first, run_s=best, compile_s=max(first - best, 0.0),
                         gpis=batch * n * iters / best / 1e9))
        del x
    return dict(dtype=np.dtype(dt).name, iters=iters, rows=rows)


def measure(ctx):
    q = ctx.quick
    return dict(scaling=ctx.spawn("bench.scaling:child",
                                  b_grid=[1, 10, 100, 1000] if q else [1, 10, 100, 1000, 10_000, 100_000],
                                  n_grid=[100, 1000, 10_000] if q else [100, 1000, 10_000, 100_000],
                                  n_batch=10 if q else 100))


def markdown(r, ctx):
    s = r["scaling"]
    L = [f"{s['iters']} iterations (`tol=0`), scales known, {s['dtype']}. `first` = first call (trace + "
         "compile + run), `run` = best of two later calls, compile = first - run.\n",
         "| B | n | B*n | first call s | run s | compile s | G pt-it/s |",
         "|---|---|---|---|---|---|---|"]
    for row in s["rows"]:
        L.append(f"| {row['batch']:,} | {row['n']:,} | {row['batch'] * row['n']:,} | {row['first_s']:.2f} | "
                 f"{row['run_s']:.3f} | {row['compile_s']:.2f} | {row['gpis']:.3f} |")
    L.append("")
    return "\n".join(L)
