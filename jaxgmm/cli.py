"""The ``jaxgmm`` command: Monte Carlo studies and fits of the user's numbers.

``jaxgmm study`` runs a Monte Carlo study (with no options: the textbook example,
n = 1000 from 0.2 N(0, 1) + 0.8 N(5, 2), variance 2, scales known) and prints
the summary table and the throughput. ``jaxgmm fit FILE`` fits a mixture to one
column of a text/CSV file or a ``.npy`` array and prints the estimates with
standard errors, AIC and BIC.

This is the only module of the package that prints, reads files or switches
JAX to float64 (``--float64``, done before any array exists).
"""

from __future__ import annotations

import argparse
import decimal
import math
import os
import re
import sys
from typing import Optional, Sequence

from ._cli_base import PROG, CLIError, _check_float32_range, _enable_x64_if, print_choice, print_fit


class _Parser(argparse.ArgumentParser):
    # Option strings, of every subcommand, that take one value (see _attach_negative_values).
    value_options: set = set()

    def error(self, message):  # one line, no usage dump
        raise CLIError(f"{message} (see '{self.prog} --help')")

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.nargs is None:
            _Parser.value_options.update(action.option_strings)
        return action


# --------------------------------------------------------------------------- #
# Argument parsing helpers
# --------------------------------------------------------------------------- #
def _floats(text: str, what: str, allow_free: bool = False) -> list:
    out = []
    for item in text.split(","):
        item = item.strip()
        if allow_free and item in ("_", "?", "free"):
            out.append(None)
            continue
        try:
            v = float(item)
        except ValueError:
            hint = " (use _ to leave a component free)" if allow_free else ""
            raise CLIError(f"{what}: {item!r} is not a number{hint}") from None
        if not math.isfinite(v):
            raise CLIError(f"{what}: {item!r} is not a finite number")
        out.append(v)
    return out


_FIELD_ALIASES = {"weights": "weights", "weight": "weights", "pi": "weights",
                  "means": "means", "mean": "means", "mu": "means",
                  "scales": "scales", "scale": "scales", "sigma": "scales", "sd": "scales"}


def _parse_fixed(text: str, k: int):
    """``'scales'``, ``'means,scales'``, ``'mu1,sigma2'`` or ``'none'`` -> MixtureParams of bools."""
    from ._params import MixtureParams

    masks = {f: [False] * k for f in MixtureParams._fields}
    for token in filter(None, (t.strip().lower() for t in text.split(","))):
        if token == "none":
            continue
        m = re.fullmatch(r"([a-z]+?)_?(\d*)", token)
        field = _FIELD_ALIASES.get(m.group(1)) if m else None
        if field is None:
            raise CLIError(f"--fixed: unknown parameter {token!r}; use weights, means, scales or "
                           "one component such as mu1, sigma2, pi1")
        if m.group(2):
            j = int(m.group(2))
            if not 1 <= j <= k:
                raise CLIError(f"--fixed: {token!r} names component {j}, but there are {k} (counted from 1)")
            masks[field][j - 1] = True
        else:
            masks[field] = [True] * k
    return MixtureParams(*(tuple(masks[f]) for f in MixtureParams._fields))


def _mixture_text(weights, means, scales) -> str:
    return " + ".join(f"{w:g} N({m:g}, sd {s:.6g})" for w, m, s in zip(weights, means, scales))


# --------------------------------------------------------------------------- #
# Limits checked before any work, so that no run dies (or wraps) half-way
# --------------------------------------------------------------------------- #
# Global replicate indices: jaxgmm._runner.MAX_REPLICATES (two 32-bit words, below 2**63).
MAX_REPLICATES = 2 ** 63
# Bootstrap resample indices are one 32-bit word.
MAX_RESAMPLES = 2 ** 32
# In float32 mode JAX keys a seed by its low 32 bits: seed 2**32 would be seed 0 again.
MAX_SEED = 2 ** 32 - 1
# JAX's default integers (sizes, indices, counts) are 32-bit.
MAX_N = 2 ** 31 - 1
# Starts per dataset: each carries a fit's state, and k-means++ n distances.
MAX_STARTS = 100_000
# Floats kept per component of every replicate: its estimates and SEs of three fields. With
# the log-likelihood, iterations, status and permutation that is the host's bytes per
# replicate, held twice while the chunks are joined.
_REPLICATE_FLOATS = 6


def _memory_bytes() -> tuple:
    """(bytes, where) of the default device: a GPU's memory limit, or the host's RAM."""
    import jax

    device = jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory statistics: fall back to the host's RAM
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.platform} memory"
    return _host_memory_bytes(), "this machine's memory"


def _host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:,.1f} GiB"


def _check_memory(needed: float, available: int, where: str, what: str, advice: str) -> None:
    """Stop before the work where even a lower bound of its memory does not fit."""
    if needed > available:
        raise CLIError(f"{what} needs at least {_gib(needed)}, more than the {_gib(available)} of "
                       f"{where}; {advice}")


def _check_study_limits(args, k: int, itemsize: int) -> None:
    starts = 1 if args.init == "truth" else args.starts
    # One chunk's simulated data must fit on the device: n numbers per replicate.
    chunk = 1 if args.chunk_size is None else min(args.chunk_size, args.reps)
    available, where = _memory_bytes()
    kmeans = args.init == "kmeans++"  # each start keeps n distances to its nearest centre
    _check_memory(float(chunk) * args.n * itemsize * (starts if kmeans else 1), available, where,
                  f"a chunk of {chunk} replicate(s) of n = {args.n}"
                  + (f" with {starts} k-means++ starts each" if kmeans else ""),
                  "use a smaller --n" + (" or --chunk-size" if chunk > 1 else "")
                  + (" or fewer --starts" if kmeans else ""))
    if args.offset + args.reps > MAX_REPLICATES:
        raise CLIError(f"--offset + --reps must be at most {MAX_REPLICATES} (2**63 replicate "
                       f"indices), got {args.offset + args.reps}")
    if not _keeps_replicates(args):
        return  # running sums only: memory does not grow with --reps
    per_rep = (_REPLICATE_FLOATS * k + 1) * itemsize + 4 * (k + 2)
    _check_memory(2.0 * args.reps * per_rep, _host_memory_bytes(), "this machine's memory",
                  f"keeping {args.reps} replicates ({per_rep} B each, twice while joined) for "
                  f"{'--plot' if args.plot else '--out .npz'}",
                  "run fewer --reps, or write .csv/.json (streamed, bounded memory)")


# --------------------------------------------------------------------------- #
# jaxgmm study
# --------------------------------------------------------------------------- #
_STUDY_OUT = (".npz", ".csv", ".json")


def _study_truth(args):
    """The true mixture from --weights/--means/--scales, checked."""
    weights = _floats(args.weights, "--weights")
    means = _floats(args.means, "--means")
    scales = _floats(args.scales, "--scales")
    k = len(means)
    if not (len(weights) == len(scales) == k):
        raise CLIError(f"--weights, --means and --scales must have the same number of components, "
                       f"got {len(weights)}, {len(means)} and {len(scales)}")
    if abs(sum(weights) - 1.0) > 1e-6:
        raise CLIError(f"--weights must sum to 1, got {sum(weights):g}")
    if any(w <= 0 for w in weights) or any(s <= 0 for s in scales):
        raise CLIError("--weights and --scales must be positive")
    return weights, means, scales


def _study_outputs(args) -> dict:
    """The --out and --plot files, checked (and their temporary files made) before the study."""
    from ._outputs import OutputError, OutputFile

    outputs = {}
    try:
        if args.out is not None:
            outputs["out"] = OutputFile("--out", args.out, _STUDY_OUT, args.force)
        if args.plot is not None:
            _require_matplotlib()
            outputs["plot"] = OutputFile("--plot", args.plot, _plot_extensions(), args.force)
    except (OutputError, CLIError) as err:
        _discard(outputs)
        raise CLIError(str(err)) from None
    return outputs


def _discard(outputs: dict) -> None:
    for output in outputs.values():
        output.discard()


def _study(args) -> int:
    weights, means, scales = _study_truth(args)
    k = len(means)
    fixed = _parse_fixed(args.fixed, k)
    _enable_x64_if(args)
    _check_study_limits(args, k, 8 if args.float64 else 4)
    outputs = _study_outputs(args)
    try:
        return _run_study(args, weights, means, scales, fixed, outputs)
    finally:
        _discard(outputs)  # a failed or interrupted study leaves no temporary files


def _keeps_replicates(args) -> bool:
    """Whether the study must hold every replicate: for a .npz file or the plot's histograms.

    Otherwise the host keeps running sums only, and a .csv --out receives the rows as the
    chunks finish: memory stays bounded whatever --reps is.
    """
    return args.plot is not None or (args.out or "").lower().endswith(".npz")


def _run_study(args, weights, means, scales, fixed, outputs: dict) -> int:
    import jax.numpy as jnp

    from ._params import MixtureParams
    from ._study import StudyInterrupted, monte_carlo

    dtype = jnp.float64 if args.float64 else None
    truth = MixtureParams(*(jnp.asarray(v, dtype) for v in (weights, means, scales)))
    init = None if args.init == "truth" else args.init
    rows = _RowSink(outputs.get("out"))
    try:
        res = monte_carlo(args.seed, truth, args.n, args.reps, init=init, n_starts=args.starts,
                          fixed=fixed, equal_scales=args.equal_scales, chunk_size=args.chunk_size,
                          accelerate=None if args.accelerate == "none" else args.accelerate,
                          progress=False if args.no_progress else None, offset=args.offset,
                          keep_replicates=_keeps_replicates(args), on_chunk=rows.on_chunk)
    except StudyInterrupted as stop:
        return _interrupted(args, stop, outputs, rows, (weights, means, scales, fixed, init))
    summary = res.summary()
    _print_study(args, res, summary, weights, means, scales, fixed, init)
    if "out" in outputs:
        rows.commit() if rows.streaming else outputs["out"].write(res.save)
        print(f"saved: {args.out}")
    if "plot" in outputs:
        title = _mixture_text(weights, means, scales)
        outputs["plot"].write(lambda path: _plot(res, summary, path, title, args.n))
        print(f"plot: {args.plot}")
    return 0


class _RowSink:
    """Streams a study's per-replicate rows into a .csv --out as each chunk finishes."""

    def __init__(self, output):
        self.output = output
        self.streaming = output is not None and output.extension == ".csv"
        self.stream = None

    @property
    def on_chunk(self):
        return self._add if self.streaming else None

    @property
    def rows(self) -> int:
        return 0 if self.stream is None else self.stream.rows

    def _add(self, block) -> None:
        from ._outputs import RowStream

        if self.stream is None:  # the header comes with the first block
            self.stream = RowStream(self.output, block.replicate_columns())
        self.stream.add(block.replicate_rows())

    def commit(self) -> None:
        self.stream.commit()


def _interrupted(args, stop, outputs: dict, rows: _RowSink, design) -> int:
    """Ctrl-C: show and save the replicates that finished, and say how to go on from there."""
    part = stop.partial
    # A streamed file holds whole chunks only: it, not the study, says where to resume.
    done = rows.rows if rows.streaming else part.reps
    saved = ""
    if done and "out" in outputs:
        rows.commit() if rows.streaming else outputs["out"].write(part.save)
        saved = f"; replicates {args.offset}..{args.offset + done - 1} saved to {args.out}"
    if part.reps:
        weights, means, scales, fixed, init = design
        _print_study(args, part, part.summary(), weights, means, scales, fixed, init)
    rest = args.reps - done
    chunk = part.design.get("chunk_size")
    print(f"{PROG}: interrupted after {done} of {args.reps} replicates{saved or '; nothing saved'}; "
          f"resume with --offset {args.offset + done} --reps {rest}"
          + (f" --chunk-size {chunk}" if chunk else "")
          + " and the other options as before" + (" (and another --out)" if saved else ""),
          file=sys.stderr)
    return 130


def _print_study(args, res, summary, weights, means, scales, fixed, init) -> None:
    from ._params import MixtureParams

    k = len(means)
    fixed_names = [f"{sym}_{j + 1}" for f, sym in zip(MixtureParams._fields, ("pi", "mu", "sigma"))
                   for j in range(k) if getattr(fixed, f)[j]]
    start = "the truth" if init is None else f"the best of {args.starts} {init} starts"
    block = f" (replicates {res.offset}..{res.offset + res.reps - 1})" if res.offset else ""
    print(f"{PROG} study: {res.reps} replicates{block} of n = {args.n} from "
          f"{_mixture_text(weights, means, scales)}")
    print(f"estimated: {', '.join(summary.names) or 'nothing'}; fixed at the truth: {', '.join(fixed_names) or 'nothing'}"
          f"{'; equal scales' if args.equal_scales else ''}; fits start at {start}"
          f"{'; SQUAREM' if args.accelerate == 'squarem' else ''}; {res.design['dtype']}")
    print()
    print(summary)
    print()
    steps = "E-steps" if args.accelerate == "squarem" else "EM iterations"
    print(f"converged: {res.status_counts()['CONVERGED']} of {res.reps} replicates; mean {steps} "
          f"{res.mean_n_iter:.1f}; statistics use the converged replicates; "
          "cover95 = share of 95% Wald intervals (observed information) holding the truth")
    t = res.timing
    n_fits = res.reps * res.design["n_starts"]
    print(f"throughput: {n_fits} fits of n = {args.n} in {t['run_s']:.2f} s = {t['fits_per_s']:,.0f} fits/s "
          f"on {t['device']} (compile {t['compile_s']:.1f} s, not counted)")
    hint = _compile_cache_hint(_compile_cache_dir(), t["compile_s"])
    if hint:
        print(hint)


def _compile_cache_dir() -> Optional[str]:
    """JAX's persistent compilation cache folder, or None where none is set."""
    import jax
    return getattr(jax.config, "jax_compilation_cache_dir", None) or None


# Below this many seconds of compilation a hint is not worth a line.
_HINT_COMPILE_S = 1.0


def _compile_cache_hint(cache_dir: Optional[str], compile_s: float) -> Optional[str]:
    """A one-line hint to keep compiled programs across runs, where it would pay.

    Compilation is most of a default study's wall time (2.6 of 3.7 s on the 2-core
    benchmark machine); with JAX's persistent cache a repeat run took 1.8 s.  The
    cache stays the user's choice: JAX's CPU cache entries are rejected (and
    recompiled) on some CPUs and across jaxlib versions, so jaxgmm does not turn it
    on by itself.
    """
    if cache_dir is not None or compile_s < _HINT_COMPILE_S:
        return None
    return (f"compile time: {compile_s:.1f} s in every run; to reuse compiled programs across runs set "
            "JAX_COMPILATION_CACHE_DIR, e.g. JAX_COMPILATION_CACHE_DIR=~/.cache/jax")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib, which is not installed; "
                       "install it with: pip install 'jaxgmm[plot]'") from None


def _plot_extensions() -> tuple:
    """The file types matplotlib can save (``.png``, ``.pdf``, ``.svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted("." + ext for ext in FigureCanvasBase.get_supported_filetypes()))


def _plot(res, summary, path: str, title: str, n: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ._params import MixtureParams

    free = [(f, j) for f in MixtureParams._fields for j in range(len(res.truth.means))
            if np.asarray(getattr(res.free, f))[j]]
    cols = min(3, max(1, len(free)))
    rows = max(1, math.ceil(len(free) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    ok = res.converged
    for ax, (f, j), name in zip(axes.ravel(), free, summary.names):
        est = np.asarray(getattr(res.estimates, f))[ok, j]
        true = float(np.asarray(getattr(res.truth, f))[j])
        ax.hist(est, bins=60, density=True, color="0.75", edgecolor="0.55", linewidth=0.3)
        row = summary.row(name)
        if np.isfinite(row["mean_se"]) and row["mean_se"] > 0:
            grid = np.linspace(est.min(), est.max(), 200)
            dens = np.exp(-0.5 * ((grid - true) / row["mean_se"]) ** 2) / (row["mean_se"] * math.sqrt(2 * math.pi))
            ax.plot(grid, dens, color="tab:blue", linewidth=1.2, label="N(true, mean SE²)")
        ax.axvline(true, color="tab:red", linewidth=1.5, label="true value")
        ax.axvline(row["mean"], color="k", linestyle="--", linewidth=1.0, label="mean estimate")
        ax.set_title(name)
    for ax in axes.ravel()[len(free):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Sampling distributions, {res.reps} replicates of n = {n}: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- #
# jaxgmm fit
# --------------------------------------------------------------------------- #
def read_column(path: str, column: Optional[str] = None, decimal: str = "auto"):
    """One column of numbers from ``.npy`` or a text/CSV file: float64 NumPy and the
    number of missing cells dropped (see :mod:`jaxgmm._reader` for what is refused)."""
    from ._reader import ReadError, read_column as read

    try:
        return read(path, column, decimal)
    except ReadError as err:
        raise CLIError(str(err)) from None


def _fixed_values(args) -> dict:
    """``--weights/--means/--scales`` as ``{field: [value or None per component]}``, checked."""
    k = args.k
    given = {}
    for name in ("weights", "means", "scales"):
        text = getattr(args, name)
        if text is not None:
            vals = _floats(text, f"--{name}", allow_free=True)
            if len(vals) != k:
                raise CLIError(f"--{name} gives {len(vals)} values but -k is {k} (use _ for free components)")
            given[name] = vals
    fixed_w = [v for v in given.get("weights", []) if v is not None]
    if fixed_w:
        mass = sum(fixed_w)
        if any(v < 0 for v in fixed_w):
            raise CLIError("--weights: fixed weights must be >= 0")
        if len(fixed_w) == k and abs(mass - 1) > 1e-6:
            raise CLIError(f"--weights: fixed weights must sum to 1, got {mass:g}")
        if len(fixed_w) < k and not mass < 1:
            raise CLIError(f"--weights: fixed weights must leave some mass for the free ones, got {mass:g}")
    if any(v is not None and v <= 0 for v in given.get("scales", [])):
        raise CLIError("--scales: fixed scales must be positive")
    return given


def _fit(args) -> int:
    import numpy as np

    if args.columns is not None:
        from ._cli_multivariate import fit_columns
        return fit_columns(args)
    if args.covariance_type != "full":
        raise CLIError("--covariance-type applies to multivariate fits: name the columns with --columns")
    if args.group_by is not None:
        return _fit_groups(args)
    if args.out is not None:
        raise CLIError("--out writes the per-group table of --group-by; without it the fit is printed")
    data, dropped = read_column(args.file, args.column, args.decimal)
    k = args.k
    given = _fixed_values(args)
    if args.kmax is not None and (given or args.k_given):
        raise CLIError("--kmax chooses K itself: leave out -k and fixed values")
    if args.lrt and given:
        raise CLIError("--lrt tests models with every parameter free (or --equal-scales): leave out fixed values")
    if args.lrt and not 0.0 < args.lrt_alpha < 1.0:
        raise CLIError(f"--lrt-alpha must lie strictly between 0 and 1, got {args.lrt_alpha}")
    if args.lrt and args.kmax == 1:
        raise CLIError("--lrt with --kmax needs KMAX >= 2 (it tests 1 vs 2 first)")
    if data.size < 2:
        raise CLIError(f"{args.file!r} holds {data.size} usable number(s); need at least 2")
    _check_float32_range(data, args)

    plot_out = _fit_plot_output(args)  # checked before the fit, as the study's outputs are
    _enable_x64_if(args)
    _check_fit_limits(args, data.size, 8 if args.float64 else 4)
    import jax
    import jax.numpy as jnp

    from ._fit import fit
    from ._inference import best_of_jit, n_parameters, select_components, standard_errors
    from ._init import init_params
    from ._params import MixtureParams
    from ._spec import make_spec
    from ._study import bootstrap, impose_fixed, spec_mask

    x = jnp.asarray(data, jnp.float64 if args.float64 else None)
    key = jax.random.key(args.seed)
    print(f"{PROG} fit {args.file}: n = {data.size}"
          + (f" ({dropped} missing values dropped)" if dropped else "") + f", {x.dtype}")
    lrt_kwargs = dict(reps=args.lrt_reps, n_starts=args.restarts, equal_scales=args.equal_scales)
    if args.kmax is not None and args.lrt:
        from ._lrt import sequential_lrt

        seq = sequential_lrt(jax.random.fold_in(key, 2 * 10 ** 6), x, max_components=args.kmax,
                             alpha=args.lrt_alpha, **lrt_kwargs)
        print()
        _print_lrt_steps(seq.steps)
        k = seq.n_components
        print(f"bootstrap LRT at level {args.lrt_alpha:g}: K = {k}"
              + (f" (every test up to {args.kmax} rejected: K >= {k})" if seq.reached_max else "")
              + " (shown below)")
        starts = init_params(key, x, k, method=args.init, n_starts=args.restarts)
        result = best_of_jit(fit(x, starts, equal_scales=args.equal_scales), axis=0)
        fixed = spec_mask(make_spec((), k, args.equal_scales))
    elif args.kmax is not None:
        choice = select_components(key, x, args.kmax, n_starts=args.restarts, method=args.init,
                                   equal_scales=args.equal_scales)
        k = print_choice(choice)
        result = choice.results[k - 1]
        fixed = spec_mask(make_spec((), k, args.equal_scales))
    else:
        masks = MixtureParams(*(tuple(v is not None for v in given.get(f, [None] * k))
                                for f in MixtureParams._fields))
        spec = make_spec(masks, k, args.equal_scales)
        values = MixtureParams(*(jnp.asarray([0.0 if v is None else v for v in given.get(f, [None] * k)], x.dtype)
                                 for f in MixtureParams._fields))
        starts = init_params(key, x, k, method=args.init, n_starts=args.restarts)
        starts = impose_fixed(starts, values, spec)
        fixed = spec_mask(spec)
        result = best_of_jit(fit(x, starts, fixed=fixed, equal_scales=args.equal_scales), axis=0)
    equal = args.equal_scales
    se = standard_errors(x, result, fixed=fixed, equal_scales=equal)
    p = n_parameters(k, fixed=fixed, equal_scales=equal)
    code = print_fit(result, f"best of {args.restarts} {args.init} starts" + (", equal scales" if equal else ""),
                     lambda: _print_table(result.params, se, fixed, k), p, data.size)
    if args.lrt and args.kmax is None:
        from ._lrt import bootstrap_lrt

        test = bootstrap_lrt(jax.random.fold_in(key, 2 * 10 ** 6), x, k, **lrt_kwargs)
        print()
        _print_lrt_steps([test])
    if args.bootstrap:
        b = bootstrap(jax.random.fold_in(key, 10 ** 6), x, result, args.bootstrap, fixed=fixed,
                      equal_scales=equal, progress=False)
        print()
        print(f"nonparametric bootstrap, {args.bootstrap} resamples ({int(b.converged.sum())} converged): "
              "SE and 95% percentile interval")
        for f, sym in zip(MixtureParams._fields, ("pi", "mu", "sigma")):
            for j in range(k):
                if getattr(fixed, f)[j]:
                    continue
                print(f"  {sym + '_' + str(j + 1):<8} SE {np.asarray(getattr(b.se, f))[j]:.6g}   "
                      f"[{np.asarray(getattr(b.lower, f))[j]:.6g}, {np.asarray(getattr(b.upper, f))[j]:.6g}]")
    if plot_out is not None:
        plot_out.write(lambda path: _plot_fitted(data, result, path, args.file))
        print(f"plot of the fit written to {args.plot}")
    return code


def read_groups(path: str, column: Optional[str], group_by: str, decimal: str = "auto"):
    """``(values, labels, dropped)`` of a text/CSV file with a header: the numbers of
    ``column`` (float64; the only column besides ``group_by`` when None) and the text of
    ``group_by`` on each row; rows whose number is missing are dropped and counted.

    The layout (delimiter, header, decimal mark) and the cells are read as
    :func:`read_column` reads them (``jaxgmm/_reader.py``); a group cell is its text.
    """
    import numpy as np

    from . import _reader
    from ._reader import ReadError

    def fail(message):
        raise CLIError(message)

    if path.endswith(".npy"):
        fail("--group-by needs a text/CSV file with a header line (a .npy array has no group column)")
    if decimal not in _reader.DECIMALS:
        fail(f"--decimal must be one of {', '.join(_reader.DECIMALS)}, got {decimal!r}")
    if not os.path.exists(path) or os.path.isdir(path):
        fail(f"cannot read {path!r}: " + ("it is a folder" if os.path.isdir(path) else "no such file"))
    try:
        with open(path, "rb") as fh:
            blocks = _reader._blocks(fh, path)
            pending = list(_reader._first_blocks(blocks))
            layout = _reader._layout(pending, path, decimal)
            if layout.header is None:
                fail(f"--group-by {group_by!r}: {path!r} has no header line (a first line of column names)")
            try:
                g = _reader.column_index(group_by, layout.header, layout.width, path)
            except ReadError as err:  # its message names --column
                fail(str(err).replace("--column", "--group-by", 1))
            if column is None:
                others = [j for j in range(layout.width) if j != g]
                if len(others) != 1:
                    fail(f"{path!r} has {layout.width} columns ({', '.join(layout.header)}); choose the "
                         "numbers with --column")
                j = others[0]
            else:
                j = _reader.column_index(column, layout.header, layout.width, path)
            if j == g:
                fail(f"--column and --group-by name the same column {layout.header[j]!r}")
            values, labels, dropped = [], [], 0
            lineno = 0
            for first, block in _reader._chain(pending, blocks):
                for offset, raw in enumerate(block.split(b"\n")):
                    lineno = first + offset  # 1-based; the first first_data lines precede the data
                    text = raw.strip()
                    if lineno <= layout.first_data or not text or text.startswith(b"#"):
                        continue
                    cells = _reader._split(text, layout.delimiter)
                    if len(cells) != layout.width:
                        fail(_reader._width_message(path, lineno, len(cells), layout, text))
                    v = _reader._value(cells[j], lineno, layout, path)
                    if v is None:
                        dropped += 1
                        continue
                    values.append(v)
                    labels.append(cells[g].decode("utf-8", "replace").strip('"'))
    except ReadError as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"cannot read {path!r}: {err.strerror or err}") from None
    return np.asarray(values, np.float64), labels, dropped


def _fit_groups(args) -> int:
    """``jaxgmm fit FILE --group-by COLUMN``: one fit per group, one CSV row per group."""
    import numpy as np

    for flag, bad in (("--kmax", args.kmax is not None), ("--bootstrap", args.bootstrap),
                      ("--plot", args.plot is not None), ("--lrt", args.lrt)):
        if bad:
            raise CLIError(f"{flag} is not available with --group-by")
    k = args.k
    given = _fixed_values(args)
    values, labels, dropped = read_groups(args.file, args.column, args.group_by, args.decimal)
    if values.size == 0:
        raise CLIError(f"{args.file!r} holds no numbers")
    _check_float32_range(values, args)
    out = None
    if args.out is not None:
        from ._outputs import OutputError, OutputFile
        try:
            out = OutputFile("--out", args.out, (".csv",), args.force)
        except OutputError as err:
            raise CLIError(str(err)) from None
    _enable_x64_if(args)
    import jax
    import jax.numpy as jnp

    from ._groups import fit_groups
    from ._params import MixtureParams, Status

    dt = jnp.float64 if args.float64 else jnp.float32
    key = jax.random.key(args.seed)
    if given:
        mask = MixtureParams(*(tuple(v is not None for v in given.get(f, [None] * k)) for f in MixtureParams._fields))
        fixed_w = [v for v in given.get("weights", []) if v is not None]
        free_w = (1.0 - sum(fixed_w)) / max(k - len(fixed_w), 1)
        fill = {"weights": free_w, "means": 0.0, "scales": 1.0}
        values_given = MixtureParams(*(np.asarray([fill[f] if v is None else v for v in given.get(f, [None] * k)], dt)
                                       for f in MixtureParams._fields))
        res = fit_groups(values.astype(dt), labels, values_given, n_starts=args.restarts, key=key, method=args.init,
                         fixed=mask, equal_scales=args.equal_scales)
    else:
        res = fit_groups(values.astype(dt), labels, k, n_starts=args.restarts, key=key, method=args.init,
                         equal_scales=args.equal_scales)
    cols = res.columns()
    names = list(cols)

    def write(fh):
        import csv
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(names)
        for i in range(len(res)):
            w.writerow([_csv_cell(cols[c][i]) for c in names])

    converged = int(res.converged.sum())
    summary = (f"{PROG} fit {args.file} --group-by {args.group_by}: {len(res)} groups, {values.size} values"
               + (f" ({dropped} missing values dropped)" if dropped else "")
               + f", K = {k}, best of {args.restarts} {args.init} starts, {np.dtype(dt).name}; "
               f"{converged} of {len(res)} groups converged")
    counts = {Status(s).name: int(np.sum(res.status == s)) for s in np.unique(res.status) if s != Status.CONVERGED}
    if counts:
        summary += " (" + ", ".join(f"{name}: {c}" for name, c in counts.items()) + ")"
    if out is not None:
        with out.open("w", newline="") as fh:
            write(fh)
        out.commit()
        print(summary)
        print(f"one row per group written to {args.out}")
    else:
        write(sys.stdout)
        print(summary, file=sys.stderr)
    return 0 if converged == len(res) else 1


def _csv_cell(v) -> str:
    """A table cell as CSV text: floats round-trip (``repr``), booleans ``true``/``false``."""
    import numpy as np

    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _fit_plot_output(args):
    """The ``jaxgmm fit --plot`` file, checked (and its temporary made) now, or None."""
    if args.plot is None:
        return None
    from ._outputs import OutputError, OutputFile

    _require_matplotlib()
    try:
        return OutputFile("--plot", args.plot, _plot_extensions(), args.force)
    except OutputError as err:
        raise CLIError(str(err)) from None


def _plot_fitted(data, result, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._plot import plot_fit

    ax = plot_fit(data, result)
    ax.set_title(f"jaxgmm fit {title}")
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)


def _check_fit_limits(args, n: int, itemsize: int) -> None:
    """Work that cannot fit in memory stops here, not as an out-of-memory crash later."""
    if args.init == "kmeans++":
        # k-means++ keeps each start's distances to its nearest centre: n numbers per start.
        available, where = _memory_bytes()
        _check_memory(float(args.restarts) * n * itemsize, available, where,
                      f"--restarts {args.restarts} k-means++ starts on n = {n} numbers",
                      f"use fewer --restarts (at most about {max(1, available // (n * itemsize))} here)")
    k = args.kmax or args.k
    per_resample = (_REPLICATE_FLOATS * k + 1) * itemsize + 4 * (k + 2)
    _check_memory(2.0 * args.bootstrap * per_resample, _host_memory_bytes(), "this machine's memory",
                  f"keeping {args.bootstrap} bootstrap resamples ({per_resample} B each, twice while "
                  "joined)", "use fewer --bootstrap resamples")


def _print_lrt_steps(steps) -> None:
    """One line per bootstrap likelihood-ratio test: K0 vs K1, the statistic, its
    p-value (and the bound counting every flagged replicate as exceeding)."""
    import numpy as np

    print(f"{'test':>8}  {'2 (ll1 - ll0)':>14}  {'p-value':>8}  {'p (flagged exceed)':>18}  {'replicates':>10}  flagged")
    for t in steps:
        print(f"{f'{t.k0} vs {t.k1}':>8}  {t.statistic:>14.4f}  {t.p_value:>8.4f}  {t.p_value_max:>18.4f}  "
              f"{t.boot_statistics.size:>10}  {int(np.sum(t.flagged))}")


def _print_table(params, se, fixed, k: int) -> None:
    import numpy as np

    from ._params import MixtureParams

    heads = ["component", "weight (SE)", "mean (SE)", "scale (SE)"]
    body = []
    for j in range(k):
        row = [str(j + 1)]
        for f in MixtureParams._fields:
            v = float(np.asarray(getattr(params, f))[j])
            s = float(np.asarray(getattr(se, f))[j])
            is_fixed = bool(np.asarray(getattr(fixed, f))[j])
            if is_fixed:
                row.append(f"{v:.6g} (fixed)")
            elif f == "weights" and s == 0.0:
                row.append(f"{v:.6g} (1 - fixed)")  # the only free weight: pinned
            else:
                row.append(f"{v:.6g} ({s:.3g})")
        body.append(row)
    widths = [max(len(r[i]) for r in [heads] + body) for i in range(len(heads))]
    for r in [heads] + body:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #
def _int_at_least(lowest: int, what: str, highest: Optional[int] = None, why: str = ""):
    """An argparse type: an integer in [lowest, highest], with a one-line error otherwise."""

    def parse(text: str) -> int:
        v = _integer(text)
        if v is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        shown = text if len(text) < 40 else text[:20] + "..."  # 1e999 is 1000 digits long
        if v < lowest:
            raise argparse.ArgumentTypeError(f"must be {what}, got {shown}")
        if highest is not None and v > highest:
            raise argparse.ArgumentTypeError(f"must be at most {highest}{why}, got {shown}")
        return v

    return parse


def _integer(text: str) -> Optional[int]:
    """``text`` as an exact integer: ``1000000``, ``1_000_000`` or ``1e6``; None otherwise."""
    try:
        return int(text)
    except ValueError:
        pass
    if not re.fullmatch(r"\s*\d+(\.\d*)?[eE]\+?\d{1,3}\s*", text):
        return None
    try:  # decimal arithmetic: 1e20 is exactly 10**20, 1.5e0 is no integer
        v = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return int(v) if v == v.to_integral_value() else None


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, ">= 0")
_seed = _int_at_least(0, ">= 0", MAX_SEED, " (2**32 - 1: in JAX's 32-bit mode a larger seed repeats a smaller one)")
_sample_size = _int_at_least(1, "a positive integer", MAX_N, " (2**31 - 1: JAX sizes are 32-bit integers)")
_replicates = _int_at_least(1, "a positive integer", MAX_REPLICATES, " (2**63 replicate indices)")
_offset = _int_at_least(0, ">= 0", MAX_REPLICATES - 1, " (2**63 replicate indices)")
_resamples = _int_at_least(0, ">= 0", MAX_RESAMPLES, " (2**32 resample indices)")
_starts = _int_at_least(1, "a positive integer", MAX_STARTS,
                        " (each start is a whole fit; beyond that their state alone fills memory)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fit univariate Gaussian mixtures by EM, thousands at once.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{study,fit}", parser_class=_Parser)

    s = sub.add_parser("study", help="Monte Carlo study of the EM estimators",
                       description="Monte Carlo study: simulate, fit, summarise bias/SD/SE/coverage. "
                       "With no options: the textbook example, n = 1000 from 0.2 N(0, 1) + 0.8 N(5, 2) "
                       "(variance 2, so sd sqrt(2)), scales known, estimating mu_1, mu_2 and the weights.")
    s.add_argument("--n", type=_sample_size, default=1000, help="observations per dataset (default 1000)")
    s.add_argument("--reps", type=_replicates, default=10_000, help="replicates (default 10000)")
    s.add_argument("--weights", default="0.2,0.8", help="true weights, comma-separated (default 0.2,0.8)")
    s.add_argument("--means", default="0,5", help="true means (default 0,5)")
    s.add_argument("--scales", default=f"1,{math.sqrt(2)!r}",
                   help="true standard deviations (default 1,sqrt(2))")
    s.add_argument("--fixed", default="scales",
                   help="parameters known and held at the truth: weights, means, scales, one component "
                   "such as mu1 or sigma2, comma-separated, or none (default scales)")
    s.add_argument("--equal-scales", action="store_true", help="fit one common scale")
    s.add_argument("--init", choices=("truth", "kmeans++", "quantile"), default="truth",
                   help="start each fit at the truth (default) or from data-driven starts")
    s.add_argument("--starts", type=_starts, default=10, help="data-driven starts per replicate (default 10)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    s.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")
    s.add_argument("--accelerate", choices=("none", "squarem"), default="none",
                   help="SQUAREM extrapolation: fewer passes over the data where EM is slow, "
                        "e.g. overlapping components (default none)")
    s.add_argument("--offset", type=_offset, default=0,
                   help="global index of the first replicate (default 0): replicates OFFSET.. of the same "
                        "study, to resume an interrupted run or split one over jobs")
    s.add_argument("--chunk-size", type=_positive_int, default=None, help="replicates per compiled call")
    s.add_argument("--out", metavar="FILE", help="save results: .npz (all arrays), .csv (per replicate) or .json (summary)")
    s.add_argument("--plot", metavar="FILE.png", help="draw the sampling distributions (needs matplotlib)")
    s.add_argument("--force", action="store_true", help="overwrite existing --out/--plot files")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(run=_study)

    f = sub.add_parser("fit", help="fit a mixture to one column of numbers (or several: --columns)",
                       description="Fit a K-component mixture to one column of a text/CSV file or a .npy "
                       "array (or a multivariate mixture to several columns, --columns); print estimates "
                       "with standard errors, AIC and BIC. Values given with --weights/--means/--scales "
                       "are held fixed (write _ for a free component).")
    f.add_argument("file", help="data: .npy, or text/CSV with one column (or pick one with --column)")
    f.add_argument("-k", type=_positive_int, default=None, help="number of components (default 2)")
    f.add_argument("--kmax", type=_positive_int, default=None, help="fit K = 1..KMAX and report AIC/BIC; show the BIC choice")
    f.add_argument("--restarts", type=_starts, default=10, help="random starts (default 10)")
    f.add_argument("--init", choices=("kmeans++", "quantile"), default="kmeans++", help="start method")
    f.add_argument("--weights", help="fixed weights, e.g. 0.2,_ ")
    f.add_argument("--means", help="fixed means, e.g. 55,_ holds mu_1 at 55")
    f.add_argument("--scales", help="fixed standard deviations, e.g. 1,1.4142")
    f.add_argument("--equal-scales", action="store_true", help="one common scale")
    f.add_argument("--column", help="column to use (0-based index or header name)")
    f.add_argument("--columns", metavar="A,B,...",
                   help="fit a multivariate mixture to these columns (names or 0-based indices, "
                        "comma-separated); a row with a missing value is dropped")
    f.add_argument("--covariance-type", choices=("full", "diag", "spherical", "tied"), default="full",
                   help="with --columns: the components' covariance model, scikit-learn's names "
                        "(mclust's VVV, VVI, VII, EEE; default full)")
    f.add_argument("--decimal", choices=("auto", ".", ","), default="auto",
                   help="decimal mark: ',' reads 1,5 as 1.5; '.' reads commas as column separators; "
                        "auto (default) stops with a message on numbers that look like 1,5")
    f.add_argument("--lrt", action="store_true",
                   help="bootstrap likelihood-ratio test for the number of components (mclust's "
                        "mclustBootstrapLRT): with --kmax, choose K by testing 1 vs 2, 2 vs 3, ... "
                        "instead of by BIC; without it, test the fitted K against K + 1")
    f.add_argument("--lrt-reps", type=_positive_int, default=999, metavar="B",
                   help="bootstrap replicates per test (default 999)")
    f.add_argument("--lrt-alpha", type=float, default=0.05, help="level of each test (default 0.05)")
    f.add_argument("--bootstrap", type=_resamples, default=0, metavar="B",
                   help="also report nonparametric bootstrap SEs and percentile intervals from B resamples")
    f.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    f.add_argument("--float64", action="store_true", help="compute in float64")
    f.add_argument("--plot", metavar="FILE.png",
                   help="draw the fitted density and its components over the data's histogram (needs matplotlib)")
    f.add_argument("--force", action="store_true", help="overwrite an existing --plot or --out file")
    f.add_argument("--group-by", metavar="COLUMN",
                   help="fit one mixture per group of this column (name or 0-based index of a CSV file with "
                        "a header); writes one CSV row per group to stdout, or to --out")
    f.add_argument("--out", metavar="FILE.csv", help="with --group-by: write the per-group table here (atomically)")
    f.set_defaults(run=_fit)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 fit did not converge, 2 error)."""
    try:
        parser = build_parser()
        argv = sys.argv[1:] if argv is None else list(argv)
        args = parser.parse_args(_attach_negative_values(argv))
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "fit":
            args.k_given = args.k is not None
            args.k = 2 if args.k is None else args.k
        return args.run(args)
    except BrokenPipeError:  # e.g. `jaxgmm study | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # host memory, e.g. a .npy file larger than the machine's memory
        print(f"{PROG}: error: out of memory (host); {_memory_advice(argv)}", file=sys.stderr)
        return 2
    except Exception as err:  # device out of memory is the user's to fix; anything else is a bug
        if "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err):
            print(f"{PROG}: error: out of device memory; {_memory_advice(argv)}", file=sys.stderr)
            return 2
        raise


def _memory_advice(argv) -> str:
    if argv and argv[0] == "study":
        return "try a smaller --chunk-size, --n or --starts"
    if argv and argv[0] == "fit":
        return "try fewer --restarts or --bootstrap resamples, or a smaller -k/--kmax"
    return "try a smaller problem"


def _attach_negative_values(argv: list) -> list:
    """``--means -1,5`` as ``--means=-1,5``.

    argparse takes a word that starts with ``-`` for an option unless it is one plain
    negative number, so ``--means -1,5`` stopped with "expected one argument". An option
    that takes a value, followed by a word that starts like a negative number (``-1``,
    ``-.5``, ``-1,5``, ``-1e3``, ``-inf``), gets that word as its value.
    """
    takes_value = _Parser.value_options
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":  # everything after it is positional
            return out + argv[i:]
        if (i + 1 < len(argv) and _resolve(word, takes_value)
                and re.match(r"-(\.?\d|inf|nan)", argv[i + 1], re.IGNORECASE)):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _resolve(word: str, options: set) -> bool:
    """Whether ``word`` names a value option, written out or abbreviated (``--mean``)."""
    if "=" in word or not word.startswith("-"):
        return False
    if word in options:
        return True
    matches = [o for o in options if o.startswith("--") and o.startswith(word) and len(word) > 2]
    return len(set(matches)) == 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
