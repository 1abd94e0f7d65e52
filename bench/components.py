"""Section 8: more than two components: throughput for K = 2..5, and K = 3 fits/s
to convergence (plain, SQUAREM, compacted, both) against scikit-learn."""

from __future__ import annotations

from bench.common import block, convergence, jax_setup, sklearn_one_at_a_time, timed

TITLE = "More than two components"


def child(batch, subset, sk_tol):
    """Fixed-iteration throughput for K = 2..5, and fits/s to convergence for K = 3
    against scikit-learn one dataset at a time."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    n, iters = 1000, 50
    out = dict(dtype=np.dtype(dt).name, batch=batch, n=n, iters=iters, tol=jaxgmm.default_tol(dt), rates={})
    for k in (2, 3, 4, 5):
        # Components 4 sd apart, equal weights; the start is the truth, moved.
        means = 4.0 * np.arange(k)
        truth = jaxgmm.MixtureParams(np.full(k, 1.0 / k), means, np.ones(k))
        start = jaxgmm.MixtureParams(jnp.full(k, 1.0 / k, dt), jnp.asarray(means + 0.5, dt), jnp.full(k, 1.2, dt))
        x = jaxgmm.sample(jax.random.key(k), jax.tree.map(lambda v: jnp.asarray(v, dt), truth), n, shape=(batch,))
        block(x)
        for name, kw in (("scales known", dict(fixed="scales")), ("all free", dict())):
            run = lambda: jaxgmm.fit(x, start, tol=0.0, max_iter=iters, **kw)
            timed(run)
            t = min(timed(run)[0] for _ in range(2))
            out["rates"][f"{k} {name}"] = batch * n * iters / t / 1e9
        if k == 3:
            out["k3 jax"], res = convergence(lambda: jaxgmm.fit(x, start), batch)
            out["k3 squarem"], acc = convergence(lambda: jaxgmm.fit(x, start, accelerate="squarem"), batch)
            gain = np.asarray(acc.loglik, np.float64) - np.asarray(res.loglik, np.float64)
            out["k3 squarem"].update(dloglik_min=float(gain.min()), dloglik_max=float(gain.max()))
            out["k3 compact"], _ = convergence(lambda: jaxgmm.fit(x, start, compact=True), batch)
            out["k3 both"], _ = convergence(lambda: jaxgmm.fit(x, start, accelerate="squarem", compact=True),
                                            batch)
            out["k3 sklearn"] = sklearn_one_at_a_time(x, np.full(k, 1.0 / k), means + 0.5, np.full(k, 1.2),
                                                      min(subset, batch), sk_tol)
    return out


def measure(ctx):
    return dict(components=ctx.spawn("bench.components:child", batch=ctx.opt("batch", 1000 if ctx.quick else 10_000),
                                     subset=ctx.opt("subset", 10 if ctx.quick else 50),
                                     sk_tol=ctx.opt("sk_tol", 1e-6)))


def markdown(r, ctx):
    c = r["components"]
    L = []
    w = L.append
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
    w(f"Each cache-sized block of fits runs until its slowest stops (how far the slowest fits lie beyond "
      f"the median: [{ctx.notes_name}]({ctx.notes_link}#more-than-two-components)). `compact=True` repacks "
      f"the fits still running between chunks of iterations: {cp['fits_per_s']:,.0f} fits/s "
      f"(**{cp['fits_per_s'] / j['fits_per_s']:.1f}x** plain EM); with `accelerate=\"squarem\"` too, "
      f"{both['fits_per_s']:,.0f} fits/s (**{both['fits_per_s'] / j['fits_per_s']:.1f}x** plain EM"
      + (f", **{both['fits_per_s'] / sk['fits_per_s']:.0f}x** scikit-learn" if sk else "") + ").\n")
    return "\n".join(L)
