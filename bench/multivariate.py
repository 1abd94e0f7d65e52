"""Section 11: multivariate mixtures: K = 3 full-covariance fits in D = 2 and D = 5
to convergence, fits/s against scikit-learn one dataset at a time, and
point-iterations/s at fixed iterations."""

from __future__ import annotations

import time
import warnings

from bench.common import block, convergence, jax_setup, timed

TITLE = "Multivariate mixtures"


def _problem(np, dim, seed=0):
    """Three components with means at 0, 4 e_1 and 4 e_2 and random covariances
    (eigenvalues in [0.5, 1.5]), weights 0.2/0.3/0.5."""
    rng = np.random.default_rng(seed)
    means = 4.0 * np.stack([np.zeros(dim), np.eye(dim)[0], np.eye(dim)[1]])
    covs = []
    for _ in range(3):
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        covs.append(q @ np.diag(rng.uniform(0.5, 1.5, dim)) @ q.T)
    return np.array([0.2, 0.3, 0.5]), means, np.array(covs)


def _sklearn(x, w0, m0, c0, subset, tol):
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return None
    import numpy as np

    x = np.asarray(x[:subset], np.float64)
    iters = []
    t0 = time.perf_counter()
    for row in x:
        gm = GaussianMixture(3, covariance_type="full", tol=tol, reg_covar=0.0, max_iter=10_000,
                             weights_init=w0, means_init=m0, precisions_init=np.linalg.inv(c0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(row)
        iters.append(gm.n_iter_)
    t = time.perf_counter() - t0
    return dict(subset=len(iters), fits_per_s=len(iters) / t, tol=tol, median_iter=float(np.median(iters)))


def child(batch, subset, sk_tol, dims):
    """For each D: fixed-iteration throughput, fits/s to convergence (plain,
    SQUAREM) and scikit-learn one at a time from the same start."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    n, iters = 1000, 20
    out = dict(dtype=np.dtype(dt).name, batch=batch, n=n, iters=iters, tol=jaxgmm.default_tol(dt), dims={})
    for dim in dims:
        w, m, c = _problem(np, dim)
        truth = jaxgmm.MultivariateParams(*(jnp.asarray(f, dt) for f in (w, m, c)))
        x = jaxgmm.sample(jax.random.key(dim), truth, n, shape=(batch,))
        block(x)
        # The start: equal weights, the means moved by 1 along the first axis,
        # every covariance the identity (the same for scikit-learn).
        w0, m0 = np.full(3, 1.0 / 3), m + np.eye(dim)[0]
        c0 = np.broadcast_to(np.eye(dim), (3, dim, dim)).copy()
        start = jaxgmm.MultivariateParams(*(jnp.asarray(f, dt) for f in (w0, m0, c0)))
        r = {}
        run = lambda: jaxgmm.fit(x, start, tol=0.0, max_iter=iters)
        timed(run)
        t = min(timed(run)[0] for _ in range(2))
        r["pt_it_per_s"] = batch * n * iters / t
        r["plain"], res = convergence(lambda: jaxgmm.fit(x, start), batch)
        r["plain"]["statuses"] = np.bincount(np.asarray(res.status), minlength=4).tolist()
        r["squarem"], _ = convergence(lambda: jaxgmm.fit(x, start, accelerate="squarem"), batch)
        r["sklearn"] = _sklearn(x, w0, m0, c0, min(subset, batch), sk_tol)
        out["dims"][str(dim)] = r
    return out


def measure(ctx):
    return dict(multivariate=ctx.spawn("bench.multivariate:child", batch=ctx.opt("batch", 500 if ctx.quick else 10_000),
                                       subset=ctx.opt("subset", 10 if ctx.quick else 50),
                                       sk_tol=ctx.opt("sk_tol", 1e-6), dims=[2, 5]))


def markdown(r, ctx):
    c = r["multivariate"]
    L = []
    w = L.append
    w(f"K = 3 components, full covariances, all free, B = {c['batch']:,} datasets x n = {c['n']}, {c['dtype']}; "
      "means at 0, 4 e1 and 4 e2, random covariances (eigenvalues 0.5 to 1.5), weights 0.2/0.3/0.5; start: equal weights, means moved by 1, identity "
      f"covariances (scikit-learn from the same start, `reg_covar=0`, tol {c['dims']['2']['sklearn']['tol'] if c['dims']['2']['sklearn'] else '-'} "
      f"on its mean log-likelihood; jaxgmm's default tol {c['tol']:g} on the parameters).\n")
    w("| D | M pt-it/s (fixed iterations) | jaxgmm fits/s | median iterations | SQUAREM fits/s | "
      "scikit-learn fits/s (median iterations) | jaxgmm / scikit-learn |")
    w("|---|---|---|---|---|---|---|")
    for dim, d in c["dims"].items():
        sk = d["sklearn"]
        ratio = f"**{d['plain']['fits_per_s'] / sk['fits_per_s']:.0f}x**" if sk else "-"
        skc = f"{sk['fits_per_s']:.1f} ({sk['median_iter']:.0f})" if sk else "not installed"
        w(f"| {dim} | {d['pt_it_per_s'] / 1e6:.1f} | {d['plain']['fits_per_s']:,.0f} | "
          f"{d['plain']['median_iter']:.0f} | {d['squarem']['fits_per_s']:,.0f} | {skc} | {ratio} |")
    w("")
    return "\n".join(L)
