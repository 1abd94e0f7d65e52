"""jaxgmm's SQUAREM against R's SQUAREM package, in E-steps, on the heavy-tailed case.

    JAX_ENABLE_X64=1 python bench/squarem_vs_r.py            # 1000 datasets, about 3 minutes on 2 cores
    JAX_ENABLE_X64=1 python bench/squarem_vs_r.py --quick    # 100 of them
    PYTHONPATH=/some/checkout python bench/squarem_vs_r.py   # measures whichever jaxgmm is imported

The case (``bench/run.py --part tail``, in float64): pi = 0.3, mu = (0, 1),
sigma = 1 known, n = 1000 points per dataset, 1000 datasets, every fit started
from weights (0.5, 0.5), means (-0.5, 1.5), scales (1, 1).  Our side is
``jaxgmm.fit(x, start, fixed="scales", accelerate="squarem")`` at the default
tolerance; R's side is ``SQUAREM::squarem`` with its default control on an EM
step for (pi, mu1, mu2) and the negative log-likelihood as objective
(``bench/squarem_r.R``), run through ``Rscript`` on a temporary CSV, at its
default tol and at a ladder of tighter ones.  Without ``Rscript`` on the path
the R side is skipped with a note (Debian: ``apt-get install r-cran-squarem``).

What is counted.  Our ``n_iter`` counts passes over the data (E-steps); each of
them also yields the log-likelihood at its point, which the monotonicity
safeguard uses.  R's ``fpevals`` counts EM steps (E-steps); its ``objfevals``
are further passes over the data (the objective at each cycle's new point, and
at the fallback when a cycle is rejected).  The new point's objective is taken
where the next cycle's first EM step takes its E-step, so a fixed-point
function that also returned the log-likelihood (as our pass does) would need no
separate pass for it: the ratio is taken against ``fpevals``, which favours R,
and ``fpevals + objfevals`` (R's passes as run) is reported beside it.

Same log-likelihood.  The two sides stop on different rules (R: the Euclidean
norm of one EM step's change of (pi, mu1, mu2) below tol; ours: no standardised
parameter changing by tol), so their E-steps are compared where both reach the
same maximum.  For each dataset the reference is the highest log-likelihood any
of the runs here reached; a fit *reaches the maximum* when it ends within
``REACH`` nats of it (``REACH`` = 1e-8: about 1e-11 of the log-likelihood,
thousands of times its float64 rounding, and far below any difference that
matters to an estimate).  The R run the ratio uses is the loosest tol of the
ladder at which R reaches the maximum on at least as many fits as ours does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

R_SCRIPT = Path(__file__).with_name("squarem_r.R")
# R's default tol first, then tighter ones until R's log-likelihoods match ours.
R_TOLS = (1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12)
# A fit reaches the maximum when within this many nats of the best log-likelihood found.
REACH = 1e-8
N_POINTS = 1000
# Both sides' cap on E-steps (jaxgmm's default max_iter).
MAX_ITER = 10_000
N_DATASETS = 1000
N_QUICK = 100


def _case():
    """The heavy-tailed case's data (float64) and start."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxgmm
    dt = jnp.float64
    truth = jaxgmm.MixtureParams(jnp.asarray([0.3, 0.7], dt), jnp.asarray([0.0, 1.0], dt),
                                 jnp.asarray([1.0, 1.0], dt))
    start = jaxgmm.MixtureParams(jnp.asarray([0.5, 0.5], dt), jnp.asarray([-0.5, 1.5], dt),
                                 jnp.asarray([1.0, 1.0], dt))
    # Always the same 1000 datasets (as bench/run.py part_tail); quick runs use the first ones.
    x = jaxgmm.sample(jax.random.key(3), truth, N_POINTS, shape=(N_DATASETS,)).astype(dt)
    return x, start


def _ours(x, start):
    import jaxgmm
    res = jaxgmm.fit(x, start, fixed="scales", accelerate="squarem", max_iter=MAX_ITER)
    return dict(n_iter=np.asarray(res.n_iter), loglik=np.asarray(res.loglik, np.float64),
                weights=np.asarray(res.params.weights), means=np.asarray(res.params.means),
                status=np.asarray(res.status), tol=float(jaxgmm.default_tol(np.float64)),
                jaxgmm=str(Path(jaxgmm.__file__).parent))


def _r(csv: Path, start, tol: float, max_iter: int, workdir: Path):
    """One run of bench/squarem_r.R over every row of ``csv``."""
    out = workdir / f"r_{tol:g}.csv"
    w, m, s = (np.asarray(f) for f in start)
    cmd = ["Rscript", str(R_SCRIPT), str(csv), str(out), repr(float(w[0])), repr(float(m[0])),
           repr(float(m[1])), repr(float(s[0])), repr(tol), str(max_iter)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    table = np.genfromtxt(out, delimiter=",", names=True)
    return dict(tol=tol, fpevals=table["fpevals"], objfevals=table["objfevals"], loglik=table["loglik"],
                pi=table["pi"], mu1=table["mu1"], mu2=table["mu2"], convergence=table["convergence"],
                error=table["error"], log=done.stdout.strip())


def _counts(v):
    v = np.asarray(v, np.float64)
    return dict(sum=float(np.nansum(v)), median=float(np.nanmedian(v)), max=float(np.nanmax(v)))


def run(quick: bool) -> dict:
    """Fit the case both ways; E-step counts, ratios and log-likelihood differences."""
    x, start = _case()
    batch = N_QUICK if quick else N_DATASETS
    x = x[:batch]
    ours = _ours(x, start)
    result = dict(quick=quick, batch=batch, n=N_POINTS, reach=REACH, tol_ours=ours["tol"],
                  jaxgmm=ours["jaxgmm"], ours=_counts(ours["n_iter"]),
                  ours_status=np.bincount(ours["status"], minlength=4).tolist())
    if shutil.which("Rscript") is None:
        result["note"] = "Rscript not found: R's side skipped (Debian: apt-get install r-cran-squarem)."
        return result
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        csv = workdir / "data.csv"
        np.savetxt(csv, np.asarray(x), delimiter=",", fmt="%.17g")
        runs = [_r(csv, start, tol, MAX_ITER, workdir) for tol in R_TOLS]
    best = np.nanmax(np.stack([ours["loglik"]] + [r["loglik"] for r in runs]), axis=0)
    reached_ours = int(np.sum(best - ours["loglik"] <= REACH))
    result["ours_reached"] = reached_ours
    result["r_version"] = runs[0]["log"]
    rows = []
    for r in runs:
        fp, obj = r["fpevals"], r["objfevals"]
        dll = ours["loglik"] - r["loglik"]
        per_fit = ours["n_iter"] / fp
        rows.append(dict(
            tol=r["tol"], fpevals=_counts(fp), passes=_counts(fp + obj),
            reached=int(np.sum(best - r["loglik"] <= REACH)),
            ratio_total=float(np.sum(ours["n_iter"]) / np.nansum(fp)),
            ratio_total_passes=float(np.sum(ours["n_iter"]) / np.nansum(fp + obj)),
            ratio_median_per_fit=float(np.nanmedian(per_fit)),
            ratio_max_per_fit=float(np.nanmax(per_fit)),
            ratio_slowest=float(np.max(ours["n_iter"]) / np.nanmax(fp)),
            dloglik_min=float(np.nanmin(dll)), dloglik_median=float(np.nanmedian(dll)),
            dloglik_max=float(np.nanmax(dll)), n_apart=int(np.sum(np.abs(dll) > REACH)),
            converged=int(np.sum(r["convergence"])), errors=int(np.sum(r["error"]))))
    result["r"] = rows
    matched = [i for i, row in enumerate(rows) if row["reached"] >= reached_ours]
    result["matched"] = matched[0] if matched else len(rows) - 1
    # The fits ours needs the most E-steps for, against R's at the matched tol.
    fp = runs[result["matched"]]["fpevals"]
    slow = np.argsort(ours["n_iter"])[::-1][:5]
    result["slowest"] = [dict(index=int(i), ours=int(ours["n_iter"][i]), r=float(fp[i]),
                              status=int(ours["status"][i]),
                              dloglik=float(ours["loglik"][i] - runs[result["matched"]]["loglik"][i]))
                         for i in slow]
    return result


def _g(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def markdown(result: dict) -> str:
    """The measurement as a Markdown section."""
    out = ["### SQUAREM E-steps against R's SQUAREM (heavy-tailed case, float64)", "",
           f"pi = 0.3, mu = (0, 1), sigma = 1 known, n = {result['n']}, {result['batch']} datasets; "
           f"jaxgmm from `{result['jaxgmm']}` at tol {result['tol_ours']:g}. "
           f"Ours: E-steps sum {_g(result['ours']['sum'])}, median {_g(result['ours']['median'])}, "
           f"max {_g(result['ours']['max'])}; status counts CONVERGED/MAX_ITER/DEGENERATE/NONFINITE "
           f"{result['ours_status']}.", ""]
    if "note" in result:
        return "\n".join(out + [result["note"], ""])
    out += [f"R: {result['r_version']}. A fit reaches the maximum when it ends within {result['reach']:g} "
            f"nats of the highest log-likelihood any run here found for its dataset; ours reaches it on "
            f"{result['ours_reached']} of {result['batch']} fits. Ratios are ours / R in E-steps "
            f"(R's fpevals); 'passes' adds R's objective evaluations (objfevals).", "",
            "| R tol | R E-steps sum / median / max | R passes sum | R reached | ratio total | "
            "ratio total (passes) | per-fit ratio median / max | slowest (max / max) | "
            "loglik ours - R min / median / max | apart > reach | R converged / errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(result["r"]):
        mark = "**" if i == result["matched"] else ""
        out.append(
            f"| {mark}{r['tol']:g}{mark} | {_g(r['fpevals']['sum'])} / {_g(r['fpevals']['median'])} / "
            f"{_g(r['fpevals']['max'])} | {_g(r['passes']['sum'])} | {r['reached']} | "
            f"{mark}{r['ratio_total']:.2f}{mark} | {r['ratio_total_passes']:.2f} | "
            f"{r['ratio_median_per_fit']:.2f} / {r['ratio_max_per_fit']:.1f} | {r['ratio_slowest']:.2f} | "
            f"{r['dloglik_min']:.3g} / {r['dloglik_median']:.3g} / {r['dloglik_max']:.3g} | "
            f"{r['n_apart']} | {r['converged']} / {r['errors']} |")
    m = result["r"][result["matched"]]
    out += ["", f"The row in bold is the loosest R tol at which R reaches the maximum on at least as many "
            f"fits as ours: there ours needs **{m['ratio_total']:.2f}x** R's E-steps in total "
            f"({m['ratio_total_passes']:.2f}x R's passes), {m['ratio_median_per_fit']:.2f}x per fit "
            f"(median), and {m['ratio_slowest']:.2f}x on the slowest fit.", "",
            "Ours' slowest fits (index: ours / R E-steps at that tol, our status, loglik ours - R): "
            + "; ".join(f"{s['index']}: {s['ours']} / {_g(s['r'])}, {s['status']}, {s['dloglik']:.3g}"
                        for s in result["slowest"]) + ".", ""]
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"the first {N_QUICK} datasets only")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    res = run(a.quick)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    sys.stdout.write(markdown(res))
