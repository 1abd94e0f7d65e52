"""Section 9: heterogeneous batches (issue 15), optionally side by side with another source tree.

Two workloads, each run for every driver of a list (data: ``DRIVERS``, or
``--drivers`` / ``--driver-json``):

* ``groups``: groups x restarts.  ``--groups`` groups (2,000), n drawn uniformly in
  200..999 (NumPy seed 15), data 0.3 N(0, 1) + 0.7 N(2, 1), all parameters free,
  float32, padded to n = 999 with ``sample_weight`` 0; ``--starts`` (4) starts per
  group from ``jaxgmm.init_params(key, x, 2, n_starts=4, sample_weight=w)`` on the
  padded data; then ``jaxgmm.best_of``.  Layouts: ``broadcast`` (init of shape
  (4, G, 2) broadcast over x of shape (G, 999): no copy of the data) and ``copied``
  (x, weights and starts copied to (4 G, 999) before the timed calls).
* ``tail``: the heavy-tailed case: pi = 0.3, mu = (0, 1), sigma = 1 known
  (``fixed="scales"``), n = 1000, ``--datasets`` (1000) datasets, float64 (NumPy
  seed 16), start (0.5, 0.5) / (-0.5, 1.5) / (1, 1).  Layouts: ``batch`` (x (B, n),
  one start), ``restarts`` (the start broadcast to init (2, B, 2) over x (B, n), both
  restarts the same start so the work is twice ``batch``'s), ``padding`` (n drawn in
  500..1000, the rest weight 0; NumPy seed 17).

Each (workload, driver) runs in a fresh process; with ``--against TREE`` it runs
under this checkout and under TREE alternately (A, B, A, B, ...).  A layout is timed
on its second call (compiled by the first; both reported; ``--calls 1`` times the
first only).  Efficiency = sum over fits of ``n_iter`` / lane-iterations; the
lane-iterations come from the engine where it reports them (one more, untimed call;
``--no-work-call`` skips it), else are estimated as section 4 does: blocks of the
default driver's ``block_rows`` fits each cost rows x its slowest fit's iterations,
and a batch whose arguments do not all share the full batch shape (which the
default driver runs as one ``vmap``) costs fits x the slowest.
"""

from __future__ import annotations

import json

from bench.common import block_rows, blocked_lanes, engine_work, jax_setup, timed

TITLE = "Heterogeneous batches"

# The drivers compared: a name and the keyword arguments given to ``jaxgmm.fit``.
DRIVERS = (
    dict(name="plain", fit_kwargs={}),
    dict(name="compact", fit_kwargs={"compact": True}),
    dict(name="squarem", fit_kwargs={"accelerate": "squarem"}),
    dict(name="compact+squarem", fit_kwargs={"compact": True, "accelerate": "squarem"}),
)
QUICK_DRIVERS = ("plain", "compact+squarem")  # --quick: compiles dominate small runs
WORKLOADS = dict(groups=("broadcast", "copied"), tail=("batch", "restarts", "padding"))
X64 = dict(groups=False, tail=True)
FULL = dict(groups=2000, starts=4, datasets=1000, restarts=2)
QUICK = dict(groups=40, starts=4, datasets=48, restarts=2)

OPTIONS = (
    ("--groups", int, "hetero: number of groups (2000; --quick 40)"),
    ("--starts", int, "hetero: starts per group (4)"),
    ("--datasets", int, "hetero: datasets of the heavy-tailed case (1000; --quick 48)"),
    ("--workloads", str, "hetero: comma-separated, of groups,tail (both)"),
    ("--drivers", str, "hetero: comma-separated driver names of bench/hetero.py's DRIVERS "
                      "(all; --quick plain,compact+squarem)"),
    ("--driver-json", str, 'hetero: the driver list as JSON, [{"name": ..., "fit_kwargs": {...}}, ...]'),
    ("--calls", int, "hetero: 2 (first call compiles, second timed) or 1 (first call only)"),
    ("--pairs", int, "hetero: with --against, how many A, B pairs of each run (1)"),
    ("--no-work-call", bool, "hetero: no extra call for the engine's work accounting (estimate only)"),
)


# ----------------------------------------------------------------------------- data

def groups_data(groups, starts):
    """Padded groups and their starts: ``(x, w, init, sizes)`` as JAX arrays (float32)."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    rng = np.random.default_rng(15)
    sizes = rng.integers(200, 1000, groups)
    n_max = 999
    z = rng.standard_normal((groups, n_max))
    x = np.where(rng.random((groups, n_max)) < 0.3, z, 2.0 + z)
    w = (np.arange(n_max) < sizes[:, None]).astype(np.float64)
    x = np.where(w > 0, x, 0.0)
    xj, wj = jnp.asarray(x, dt), jnp.asarray(w, dt)
    init = jaxgmm.init_params(jax.random.key(15), xj, 2, n_starts=starts, sample_weight=wj)
    return xj, wj, jax.block_until_ready(init), sizes


def tail_data(datasets):
    """The heavy-tailed case: ``(x, start, sizes)`` (float64 under x64)."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    n = 1000
    rng = np.random.default_rng(16)
    z = rng.standard_normal((datasets, n))
    x = np.where(rng.random((datasets, n)) < 0.3, z, 1.0 + z)
    sizes = np.random.default_rng(17).integers(500, 1001, datasets)
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-0.5, 1.5], dt),
                                 jnp.asarray([1.0, 1.0], dt))
    return jnp.asarray(x, dt), start, sizes


# ----------------------------------------------------------------------------- one layout

def _batch_shapes(x, w, init):
    return [x.shape[:-1], () if w is None else w.shape[:-1], init.means.shape[:-1]]


def measure_layout(x, init, w, fit_kwargs, calls, work_call, restarts_axis=None, reshape=None, **model):
    """Time ``fit`` (then ``best_of`` along ``restarts_axis``) of one layout; its accounting."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    kw = dict(model, sample_weight=w, **fit_kwargs)

    def run():
        res = jaxgmm.fit(x, init, **kw)
        if reshape is not None:
            res = jax.tree.map(lambda l: l.reshape(reshape + l.shape[1:]), res)
        best = jaxgmm.best_of(res, axis=restarts_axis) if restarts_axis is not None else None
        return res, best

    try:
        first, (res, best) = timed(run)
    except (TypeError, ValueError, NotImplementedError) as e:
        return dict(unsupported=f"{type(e).__name__}: {e}")
    seconds = timed(run)[0] if calls >= 2 else first
    n_iter = np.asarray(res.n_iter)
    out = dict(first_call_s=first, seconds=seconds, timed_call=2 if calls >= 2 else 1, fits=int(n_iter.size),
               status=np.bincount(np.asarray(res.status).reshape(-1), minlength=4).tolist(),
               n_iter_median=float(np.median(n_iter)), n_iter_max=int(n_iter.max()), sum_iter=int(n_iter.sum()))
    if best is not None:
        out["best_status"] = np.bincount(np.asarray(best.status).reshape(-1), minlength=4).tolist()
    lanes, source = None, "no work call"
    if work_call:
        lanes, source = engine_work(jaxgmm, x, init, **kw)[1:]
    if lanes is None:
        shapes = _batch_shapes(x, w, init)
        full = tuple(np.broadcast_shapes(*shapes))
        size = int(np.prod(full))
        if all(s in (full, ()) for s in shapes):
            rows = block_rows(jaxgmm, x.shape[-1], size, x.dtype)
            lanes, source = blocked_lanes(n_iter, rows), f"estimated: blocks of {rows} ({source})"
        else:
            lanes, source = size * int(n_iter.max()), f"estimated: one vmap ({source})"
    out.update(lane_iterations=int(lanes), lanes_source=source, efficiency=float(n_iter.sum() / lanes))
    return out


# ----------------------------------------------------------------------------- children

def child(workload, fit_kwargs, layouts, sizes, calls=2, work_call=True):
    """Every layout of one workload for one driver, in this process."""
    jax, jnp, np, jaxgmm, dt = jax_setup()
    out = dict(jaxgmm=jaxgmm.__file__, dtype=np.dtype(dt).name, layouts={})
    run = lambda *a, **k: measure_layout(*a, fit_kwargs=fit_kwargs, calls=calls, work_call=work_call, **k)
    if workload == "groups":
        x, w, init, n = groups_data(sizes["groups"], sizes["starts"])
        r, g = init.means.shape[:2]
        out.update(groups=g, starts=r, n_min=int(n.min()), n_max=int(n.max()), n_padded=int(x.shape[-1]))
        for layout in layouts:
            if layout == "broadcast":
                out["layouts"][layout] = run(x, init, w, restarts_axis=0)
            elif layout == "copied":
                xc = jnp.broadcast_to(x, (r,) + x.shape).reshape(r * g, -1)
                wc = jnp.broadcast_to(w, (r,) + w.shape).reshape(r * g, -1)
                ic = jax.tree.map(lambda l: l.reshape((r * g,) + l.shape[2:]), init)
                jax.block_until_ready((xc, wc, ic))
                out["layouts"][layout] = run(xc, ic, wc, restarts_axis=0, reshape=(r, g))
                out["layouts"][layout]["copied_mib"] = 2 * xc.size * xc.dtype.itemsize / 2 ** 20
                del xc, wc
    elif workload == "tail":
        x, start, n = tail_data(sizes["datasets"])
        b = x.shape[0]
        out.update(datasets=b, n=int(x.shape[-1]), restarts=sizes["restarts"])
        for layout in layouts:
            if layout == "batch":
                out["layouts"][layout] = run(x, start, None, fixed="scales")
            elif layout == "restarts":
                rs = jax.tree.map(lambda l: jnp.broadcast_to(l, (sizes["restarts"], b) + l.shape), start)
                out["layouts"][layout] = run(x, rs, None, restarts_axis=0, fixed="scales")
            elif layout == "padding":
                w = jnp.asarray(np.arange(x.shape[-1]) < n[:, None], x.dtype)
                out["layouts"][layout] = run(x, start, w, fixed="scales")
                out["layouts"][layout]["n_range"] = [int(n.min()), int(n.max())]
    else:
        raise ValueError(f"unknown workload {workload!r}; known: {sorted(WORKLOADS)}")
    return out


# ----------------------------------------------------------------------------- parent

def drivers_of(ctx):
    text = ctx.opt("driver_json", None)
    drivers = [dict(d) for d in (json.loads(text) if text else DRIVERS)]
    names = ctx.opt("drivers", None) or (",".join(QUICK_DRIVERS) if ctx.quick and not text else None)
    if names:
        wanted = names.split(",")
        unknown = set(wanted) - {d["name"] for d in drivers}
        if unknown:
            raise SystemExit(f"--drivers: unknown {sorted(unknown)}; known: {[d['name'] for d in drivers]}")
        drivers = [d for d in drivers if d["name"] in wanted]
    return drivers


def measure(ctx):
    base = QUICK if ctx.quick else FULL
    sizes = dict(base, **{k: ctx.opt(k, v) for k, v in base.items() if k != "restarts"})
    workloads = (ctx.opt("workloads", None) or ",".join(WORKLOADS)).split(",")
    calls, work_call = ctx.opt("calls", 2), not ctx.opt("no_work_call", False)
    trees = ctx.trees()
    pairs = ctx.opt("pairs", 1) if len(trees) > 1 else 1
    runs = []
    for workload in workloads:
        for driver in drivers_of(ctx):
            for pair in range(pairs):
                for label, tree in trees:  # interleaved: this checkout, the other tree, again ...
                    print(f"  hetero {workload} / {driver['name']} / {label}", flush=True)
                    res = ctx.spawn("bench.hetero:child", x64=X64[workload], tree=tree, workload=workload,
                                    fit_kwargs=driver["fit_kwargs"], layouts=list(WORKLOADS[workload]),
                                    sizes=sizes, calls=calls, work_call=work_call)
                    runs.append(dict(workload=workload, driver=driver, tree=label, pair=pair, result=res))
    return dict(hetero=dict(sizes=sizes, calls=calls, trees=ctx.tree_info(), pairs=pairs, runs=runs))


# ----------------------------------------------------------------------------- report

def _status(v):
    return "/".join(str(c) for c in v)


def _cells(m):
    if m is None:
        return ["not run"] * 5
    if "unsupported" in m:
        return ["unsupported: " + m["unsupported"].splitlines()[0][:120], "", "", "", ""]
    return [f"{m['seconds']:.2f}", f"{m['first_call_s']:.2f}", _status(m["status"]),
            f"{m['n_iter_median']:.0f} / {m['n_iter_max']:,}",
            f"{m['efficiency']:.2f} ({'engine' if m['lanes_source'].startswith('reported') else 'est.'})"]


def markdown(r, ctx):
    import statistics
    h = r["hetero"]
    labels = [t["label"] for t in h["trees"]]
    s = h["sizes"]
    L = []
    w = L.append
    w(f"Measured on {ctx.info['cpu']}, {ctx.info['cores']} cores, {ctx.info['date']}. Trees: "
      + "; ".join(f"`{t['label']}` = {t['path']} at {t['rev']}" for t in h["trees"])
      + (f"; each (workload, driver) run in a fresh process for each tree in turn ({h['pairs']} pair(s), "
         "interleaved), the ratio old / current from the same pair." if len(labels) > 1 else ".") + "\n")
    w(f"`groups`: {s['groups']:,} groups, n uniform in 200..999 padded to 999 with `sample_weight` 0, "
      f"0.3 N(0,1) + 0.7 N(2,1), all free, float32, {s['starts']} starts per group from `init_params` "
      "(with the weights), then `best_of`; `broadcast`: init (starts, G, 2) over x (G, 999), no copy; "
      "`copied`: data and starts copied to (starts x G, 999) beforehand. "
      f"`tail`: pi = 0.3, mu = (0, 1), sigma = 1 known, n = 1000, {s['datasets']:,} datasets, float64; "
      f"`batch`: one start; `restarts`: the start broadcast to ({s['restarts']}, B, 2); `padding`: n uniform in "
      "500..1000, the rest weight 0.\n")
    w(f"Wall s: {'second call (compiled by the first)' if h['calls'] >= 2 else 'first call'}. Status: "
      "CONVERGED/MAX_ITER/DEGENERATE/NONFINITE over all fits (all starts). Efficiency: sum of `n_iter` / "
      "lane-iterations (engine: reported by the engine; est.: estimated from the default driver's blocks, "
      "see `bench/hetero.py`).\n")
    by = {}
    for run in h["runs"]:
        by.setdefault((run["workload"], run["driver"]["name"], run["tree"]), []).append(run["result"])
    drivers = list(dict.fromkeys(run["driver"]["name"] for run in h["runs"]))
    for workload in dict.fromkeys(run["workload"] for run in h["runs"]):
        w(f"### `{workload}`\n")
        head = ["layout", "driver"]
        for label in labels:
            head += [f"{label} wall s", f"{label} first call s", f"{label} status", f"{label} n_iter median / max",
                     f"{label} efficiency"]
        if len(labels) > 1:
            head.append(f"{labels[1]} / {labels[0]} wall")
        w("| " + " | ".join(head) + " |")
        w("|" + "---|" * len(head))
        for layout in WORKLOADS[workload]:
            for name in drivers:
                row = [layout, name]
                secs = []
                for label in labels:
                    results = by.get((workload, name, label), [])
                    ms = [res["layouts"].get(layout) for res in results]
                    row += _cells(ms[0] if ms else None)
                    secs.append([m["seconds"] for m in ms if m and "seconds" in m])
                if len(labels) > 1:
                    ratios = [b / a for a, b in zip(*secs)]
                    row.append(f"**{statistics.median(ratios):.2f}x**" if ratios else "")
                w("| " + " | ".join(row) + " |")
        w("")
    return "\n".join(L)
