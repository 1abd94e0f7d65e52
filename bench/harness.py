"""jaxgmm benchmark harness: ``python bench/run.py`` writes ``bench/RESULTS.md`` (+ ``.json``).

    python bench/run.py                       # every part, full sizes -> bench/RESULTS.md
    python bench/run.py --quick               # small sizes (smoke test) -> a file under $TMPDIR
    python bench/run.py --only tail,hetero    # some parts -> a file under $TMPDIR
    python bench/run.py --only hetero --against /work/old   # also under another source tree
    python -m bench ...                       # the same

Every measurement runs in its own Python subprocess (``bench/child.py``; float64
ones with ``JAX_ENABLE_X64=1``), importing ``jaxgmm`` from the source tree under
test (this checkout, or ``--against TREE`` alternately with it).  The parts are
the modules listed in ``PARTS``, each with ``measure(ctx)`` and
``markdown(results, ctx)``; ``bench/squarem_vs_r.py`` (``run(quick)``,
``markdown(result)``) is included where it exists.  Measured prose written by hand
lives in the dated notes file ``NOTES``, which the report links to.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: python bench/harness.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

HERE, ROOT = common.HERE, common.ROOT
NOTES = os.path.join(HERE, "NOTES-2026-11-27.md")
RESULTS = os.path.join(HERE, "RESULTS.md")

# (name for --only, module, section number), in report order.
PARTS = (
    ("throughput", "bench.throughput", 1),
    ("convergence", "bench.convergence", 2),
    ("scaling", "bench.scaling", 3),
    ("tail", "bench.tail", 4),
    ("memory", "bench.memory", 5),
    ("gpu", "bench.gpu_record", 6),
    ("scale_out", "bench.scale_out", 7),
    ("components", "bench.components", 8),
    ("hetero", "bench.hetero", 9),
    ("squarem_vs_r", "bench.squarem_vs_r", 10),  # another module's; only where the file exists
    ("multivariate", "bench.multivariate", 11),
)
ALIASES = {"fits": "convergence", "scale-out": "scale_out"}
OPTIONAL = {"squarem_vs_r"}
# Parts that interleave the trees themselves (finer than a whole part per tree).
INTERLEAVE_INSIDE = {"hetero"}


class ExternalPart:
    """Adapter for a module with ``run(quick) -> dict`` and ``markdown(result) -> str``
    (``bench/squarem_vs_r.py``): ``run`` in its own float64 process."""

    def __init__(self, name, module_name):
        self.name, self.module_name = name, module_name
        self.module = importlib.import_module(module_name)
        self.TITLE = (self.module.__doc__ or name).strip().splitlines()[0].rstrip(".")

    def measure(self, ctx):
        return {self.name: ctx.spawn(f"{self.module_name}:run", x64=getattr(self.module, "X64", True),
                                     quick=ctx.quick)}

    def markdown(self, r, ctx):
        return self.module.markdown(r[self.name])


def load_parts(only):
    """The selected parts as ``(name, module, number)``."""
    names = [p[0] for p in PARTS]
    wanted = names if not only else [ALIASES.get(v, v) for v in only.split(",")]
    unknown = [v for v in wanted if v not in names]
    if unknown:
        raise SystemExit(f"--only: unknown part(s) {unknown}; parts: {', '.join(names)}")
    out = []
    for name, module_name, number in PARTS:
        if name not in wanted:
            continue
        if name in OPTIONAL:
            if not os.path.exists(os.path.join(HERE, module_name.split(".")[-1] + ".py")):
                if only:
                    print(f"skipping {name}: {module_name} is not there", flush=True)
                continue
            out.append((name, ExternalPart(name, module_name), number))
        else:
            out.append((name, importlib.import_module(module_name), number))
    return out


def git_rev(tree):
    """``abbrev-commit`` of ``tree``, with ``+changes`` where its working tree differs from it."""
    def git(*a):
        return subprocess.run(["git", "-C", tree, *a], capture_output=True, text=True).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "jaxgmm")
    return rev + (" + uncommitted changes to jaxgmm/" if dirty else "")


class Context:
    """What a part's ``measure`` and ``markdown`` get: sizes, options, child processes, trees."""

    def __init__(self, args, info, roof, out_path):
        self.args, self.info, self.roof = args, info, roof
        self.quick = args.quick
        self.tree = ROOT
        self.against = os.path.abspath(args.against) if args.against else None
        self.notes_name = os.path.basename(NOTES)
        out_dir = os.path.dirname(os.path.abspath(out_path))
        inside = os.path.commonpath([out_dir, ROOT]) == ROOT
        self.notes_link = os.path.relpath(NOTES, out_dir) if inside else NOTES

    def opt(self, name, default):
        """A command-line value for this option where one was given, else ``default``."""
        v = getattr(self.args, name, None)
        return default if v is None or v is False else v

    def trees(self):
        """``(label, path)`` of the trees under test: this checkout, then ``--against``'s."""
        return [("current", ROOT)] + ([("old", self.against)] if self.against else [])

    def tree_info(self):
        return [dict(label=label, path=path, rev=git_rev(path)) for label, path in self.trees()]

    def spawn(self, target, x64=False, env=None, tree=None, **kw):
        tree = tree or self.tree
        res = common.spawn(target, x64=x64, env=env, tree=tree, **kw)
        where = "" if tree == ROOT else f" [{tree}]"
        print(f"  {target}{' (x64)' if x64 else ''}{where}: {res.get('_wall_s', 0):.0f} s", flush=True)
        return res


def machine_info():
    import numpy as np
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for mod in ("jax", "jaxlib", "sklearn"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    cc = shutil.which("gcc")
    ccv = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0] if cc else "none"
    load = os.getloadavg()
    return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), jax=versions["jax"],
                jaxlib=versions["jaxlib"], numpy=np.__version__, sklearn=versions["sklearn"], cc=ccv,
                load=f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def write_report(path, info, results, parts, ctx, command, total_s):
    L = []
    w = L.append
    w("# jaxgmm benchmark results\n")
    w(f"Written by `{command}` on {info['date']} in {total_s:.0f} s.\n")
    w(f"- Machine: {info['cpu']}, {info['cores']} cores (shared with other jobs; load average at start "
      f"{info['load']})")
    w(f"- Python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, NumPy {info['numpy']}, "
      f"scikit-learn {info['sklearn']}, {info['cc']}")
    w("- Every ratio below compares numbers measured in this same run; absolute numbers move with the "
      "machine's load, ratios much less.")
    w(f"- Measured prose written by hand (profiles, probes, the GPU record): [{ctx.notes_name}]({ctx.notes_link}).\n")
    for name, part, number in parts:
        title = part.TITLE
        if name in results.get("_by_tree", {}):
            for label, r in results["_by_tree"][name].items():
                w(f"## {number}. {title} (`{label}` tree)\n")
                w(part.markdown(r, ctx))
        else:
            w(f"## {number}. {title}\n")
            w(part.markdown(results, ctx))
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated parts: " + ", ".join(p[0] for p in PARTS))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--out", help="report path (default bench/RESULTS.md for a full run of every part, "
                                  "else $TMPDIR/jaxgmm-bench/RESULTS-....md); the JSON is written beside it")
    ap.add_argument("--against", metavar="TREE", help="also run the parts under this source tree's jaxgmm, "
                                                      "alternately with this checkout's")
    ap.add_argument("--batch", type=int, help="B of throughput, convergence, tail, memory, components, scale_out")
    ap.add_argument("--reps", type=int, help="throughput: alternating C / JAX runs (3; --quick 2)")
    ap.add_argument("--subset", type=int, help="convergence, components: datasets fitted one at a time")
    ap.add_argument("--sk-tol", type=float, help="convergence, components: scikit-learn's tol (1e-6)")
    ap.add_argument("--n", type=float, help="scale_out: size of the huge dataset (1e8; --quick 1e6)")
    seen = {a.dest for a in ap._actions}
    for _, module_name, _ in PARTS:
        path = os.path.join(HERE, module_name.split(".")[-1] + ".py")
        if module_name.split(".")[-1] in OPTIONAL or not os.path.exists(path):
            continue
        for flag, kind, text in getattr(importlib.import_module(module_name), "OPTIONS", ()):
            if flag.lstrip("-").replace("-", "_") in seen:
                continue
            if kind is bool:
                ap.add_argument(flag, action="store_true", help=text)
            else:
                ap.add_argument(flag, type=kind, help=text)
    args = ap.parse_args(argv)
    parts = load_parts(args.only)
    full = not (args.quick or args.only or args.against)
    if args.out:
        out = os.path.abspath(args.out)
    elif full:
        out = RESULTS
    else:
        tag = ("quick-" if args.quick else "") + ("-".join(p[0] for p in parts) if args.only else "all")
        out = os.path.join(tempfile.gettempdir(), "jaxgmm-bench", f"RESULTS-{tag}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t0 = time.perf_counter()
    info = machine_info()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        names = {p[0] for p in parts}
        roof = common.build_roof(tmp) if names & {"throughput", "scale_out"} else None
        ctx = Context(args, info, roof, out)
        for name, part, _ in parts:
            print(name, flush=True)
            if ctx.against and name not in INTERLEAVE_INSIDE:
                by_tree = results.setdefault("_by_tree", {}).setdefault(name, {})
                for label, tree in ctx.trees():  # A, then B, each in fresh processes
                    ctx.tree = tree
                    by_tree[label] = part.measure(ctx)
                ctx.tree = ROOT
            else:
                results.update(part.measure(ctx))
        command = "python bench/run.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
        write_report(out, info, results, parts, ctx, command, time.perf_counter() - t0)
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(dict(info=info, results=results), fh, indent=1)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return out


if __name__ == "__main__":
    main()
