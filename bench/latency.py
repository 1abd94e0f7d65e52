"""First-call latency (issue 16): a fresh process, ``import jaxgmm``, one fit.

    python bench/latency.py             # 3 fresh processes per row, rows interleaved
    python bench/latency.py --reps 5

Each row runs ``--reps`` fresh Python processes, alternating between rows, and
reports the median of each timing:

* ``import``: ``import jaxgmm`` (JAX's own import included);
* ``first fit``: ``init_params`` + ``fit`` + ``best_of`` on one dataset of n = 1000
  (0.3 N(0, 1) + 0.7 N(2, 1), K = 2 all free, 4 starts), compiling included;
* ``next n``: the same for n = 999 in the same process (same padded length: only
  the run, nothing compiles);
* ``next length``: the same for n = 700 (another padded length: compiles again).

Rows: ``cold`` (no compilation cache), and ``persistent cache`` (JAX's compilation
cache in a fresh temporary directory, filled by one untimed process first, with
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``).  The target is 1.0 s for the first
fit beyond the import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, time
t0 = time.perf_counter()
import jax, numpy as np
import jaxgmm
t_import = time.perf_counter() - t0

def data(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    return np.where(rng.random(n) < 0.3, z, 2.0 + z)

def one(n, seed):
    x = data(n, seed)
    t = time.perf_counter()
    starts = jaxgmm.init_params(jax.random.key(seed), x, 2, n_starts=4)
    best = jaxgmm.best_of(jaxgmm.fit(x, starts))
    best.loglik.block_until_ready()
    return time.perf_counter() - t

print(json.dumps(dict(import_s=t_import, first_s=one(1000, 0), next_n_s=one(999, 1), next_length_s=one(700, 2))))
"""


def child(env) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    # cwd=ROOT: "python -c" puts the working directory first on sys.path.
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cached = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        child(cached)  # fill the cache, untimed
        rows = {"cold": [], "persistent cache": []}
        for _ in range(args.reps):
            rows["cold"].append(child({"JAX_COMPILATION_CACHE_DIR": ""}))
            rows["persistent cache"].append(child(cached))
    print(f"fresh processes, median of {args.reps} each (interleaved); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end")
    print(f"{'row':<18}{'import':>9}{'first fit':>11}{'next n':>9}{'next length':>13}")
    summary = {}
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        summary[name] = dict(median=med, runs=runs)
        print(f"{name:<18}{med['import_s']:8.2f}s{med['first_s']:10.2f}s{med['next_n_s']:8.3f}s"
              f"{med['next_length_s']:12.2f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
