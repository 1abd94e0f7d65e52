"""The bootstrap LRT against mclust's ``mclustBootstrapLRT`` (issue 17).

Old Faithful waiting (n = 272; 1 vs 2, 2 vs 3) and galaxies (n = 82; 2 vs 3,
3 vs 4), V model (free scales), B = 1000 replicates, 10 starts per model.
Each case runs cold (the first call in this process: tracing and compiling
included), then mclust's one-step loop (``bench/lrt_mclust.R`` "step" mode, at
mclust's default tolerance, B = 1000, timed inside R), then warm (same shapes,
another key: compiled programs reused), interleaved so that load on a shared
machine hits both alike.

    python bench/lrt.py [--reps 1000] [--starts 10] [--no-r] [--json out.json]

Prints one row per case and run; ``uptime``'s load average before and after,
since timings on a loaded machine say little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

import numpy as np

import jax

import jaxgmm

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data")
CASES = [("faithful_waiting", 1), ("faithful_waiting", 2), ("galaxies", 2), ("galaxies", 3)]


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def ours(x, k0, reps, starts, seed):
    t = time.perf_counter()
    res = jaxgmm.bootstrap_lrt(jax.random.key(seed), x, k0, reps=reps, n_starts=starts)
    return time.perf_counter() - t, res


def mclust(path, k0, reps):
    out = subprocess.run(["Rscript", os.path.join(HERE, "lrt_mclust.R"), path, "V", str(k0), str(reps), "step", "1"],
                         capture_output=True, text=True, check=True, timeout=3600).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("lrt"))
    return float(row[4]), float(row[2]), float(row[3])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--cases", default="all", help="comma-separated indices into the case list, or 'all'")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    use_r = not args.no_r and shutil.which("Rscript") is not None
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    print(f"jaxgmm {jaxgmm.__version__}, jax {jax.__version__}, {jax.default_backend()}, "
          f"{'float64' if jax.config.jax_enable_x64 else 'float32'}, {os.cpu_count()} CPUs; "
          f"B = {args.reps}, {args.starts} starts per model; load average before: {load_average()}")
    rows = []
    for name, k0 in cases:
        path = os.path.join(DATA, name + ".csv")
        x = np.loadtxt(path)
        cold, res = ours(x, k0, args.reps, args.starts, seed=0)
        r = mclust(path, k0, args.reps) if use_r else None
        warm, res_w = ours(x, k0, args.reps, args.starts, seed=1)
        row = dict(data=name, n=int(x.size), test=f"{k0} vs {k0 + 1}", cold_s=cold, warm_s=warm,
                   statistic=res.statistic, p_cold=res.p_value, p_warm=res_w.p_value,
                   flagged_cold=res.n_flagged, flagged_warm=res_w.n_flagged, e_steps_warm=res_w.n_iter,
                   flags_warm=dict(not_converged=res_w.n_not_converged, degenerate=res_w.n_degenerate,
                                   nonfinite=res_w.n_nonfinite, below=res_w.n_below),
                   load=load_average())
        if r is not None:
            row.update(mclust_s=r[0], mclust_statistic=r[1], mclust_p=r[2])
        rows.append(row)
        line = (f"{name:17s} {row['test']}: jaxgmm cold {cold:7.2f} s, warm {warm:7.2f} s; T = {res.statistic:9.4f}, "
                f"p = {res.p_value:.4f} / {res_w.p_value:.4f}, flagged {res.n_flagged}/{res_w.n_flagged}")
        if r is not None:
            line += f" | mclust {r[0]:6.2f} s, T = {r[1]:9.4f}, p = {r[2]:.4f}"
        print(line + f" | load {row['load']}", flush=True)
    print(f"load average after: {load_average()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
