"""``jaxgmm fit FILE --columns a,b``: a D-dimensional mixture of several columns.

Reads the columns (a row with a missing cell is dropped whole, so the columns stay
aligned; ``_reader.read_columns``), fits ``-k`` components of ``--covariance-type``
from ``--restarts`` k-means++ starts (or chooses ``K`` by BIC with ``--kmax``), and
prints the weights, means and covariance entries with observed-information standard
errors, then the log-likelihood, AIC and BIC.  Options of the univariate command that
have no multivariate meaning yet are refused, one line each (never ignored).
"""

from __future__ import annotations

from ._cli_base import PROG, CLIError, _check_float32_range, _enable_x64_if, print_choice, print_fit

# Univariate-only options: (attribute, how it is written, its default).
_REFUSED = (("weights", "--weights", None), ("means", "--means", None), ("scales", "--scales", None),
            ("equal_scales", "--equal-scales", False), ("column", "--column", None),
            ("lrt", "--lrt", False), ("bootstrap", "--bootstrap", 0), ("plot", "--plot", None),
            ("group_by", "--group-by", None), ("out", "--out", None))


def column_names(text: str) -> list:
    """``"a,b"`` as ``["a", "b"]`` (names or 0-based indices, comma-separated)."""
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or any(not c for c in names):
        raise CLIError(f"--columns takes two or more comma-separated column names or indices, got {text!r} "
                       "(one column: use --column)")
    return names


def _refuse_univariate_options(args) -> None:
    for attr, flag, default in _REFUSED:
        if getattr(args, attr) != default:
            raise CLIError(f"{flag} is not available with --columns (multivariate fits)")
    if args.init != "kmeans++":
        raise CLIError("--columns starts from k-means++ only (--init quantile is univariate)")


def fit_columns(args) -> int:
    """Run ``jaxgmm fit FILE --columns ...``; returns the exit status."""
    import numpy as np

    from ._reader import ReadError, read_columns

    _refuse_univariate_options(args)
    names = column_names(args.columns)
    try:
        data, dropped = read_columns(args.file, names, args.decimal)
    except ReadError as err:
        raise CLIError(str(err)) from None
    n, d = data.shape
    if n < 2:
        raise CLIError(f"{args.file!r} holds {n} complete row(s) in columns {', '.join(names)}; need at least 2")
    _check_float32_range(data, args)
    _enable_x64_if(args)
    import jax
    import jax.numpy as jnp

    from ._fit import fit
    from ._inference import best_of_jit, n_parameters, select_components, standard_errors
    from ._init import init_params
    ctype = args.covariance_type
    x = jnp.asarray(data, jnp.float64 if args.float64 else None)
    key = jax.random.key(args.seed)
    print(f"{PROG} fit {args.file}: n = {n} rows of columns {', '.join(names)} (D = {d})"
          + (f" ({dropped} rows with a missing value dropped)" if dropped else "") + f", {x.dtype}, "
          f"covariance type {ctype}")
    if args.kmax is not None:
        if args.k_given:
            raise CLIError("--kmax chooses K itself: leave out -k")
        choice = select_components(key, x, args.kmax, n_starts=args.restarts, covariance_type=ctype)
        k = print_choice(choice)
        result, p = choice.results[k - 1], choice.n_params[k - 1]
    else:
        k = args.k
        p = n_parameters(k, covariance_type=ctype, n_features=d)
        if n < p:
            raise CLIError(f"{n} complete rows are fewer than the {p} free parameters of {k} components "
                           f"with {ctype} covariances in D = {d}; use fewer components or a simpler "
                           "--covariance-type")
        starts = init_params(key, x, k, n_starts=args.restarts, covariance_type=ctype)
        result = best_of_jit(fit(x, starts, covariance_type=ctype), axis=0)
    se = standard_errors(x, result)
    return print_fit(result, f"best of {args.restarts} k-means++ starts",
                     lambda: _print_estimates(result.params, se, names, ctype), p, n)


def _entries(names: list, ctype: str) -> list:
    """The covariance entries ``(label, d, e)`` the model estimates (lower triangle)."""
    d = len(names)
    if ctype in ("diag", "spherical"):
        pairs = [(i, i) for i in range(d)] if ctype == "diag" else [(0, 0)]
    else:
        pairs = [(i, j) for i in range(d) for j in range(i + 1)]
    label = lambda i, j: f"var({names[i]})" if i == j else f"cov({names[i]},{names[j]})"
    if ctype == "spherical":
        return [("var (each column)", 0, 0)]
    return [(label(i, j), i, j) for i, j in pairs]


def _print_estimates(params, se, names: list, ctype: str) -> None:
    """One row per parameter, one column per component: ``value (SE)``."""
    import numpy as np

    w, m, c = (np.asarray(f) for f in params)
    sw, sm, sc = (np.asarray(f) for f in se)
    k = w.shape[-1]
    cell = lambda v, s: f"{v:.6g} ({s:.3g})"
    rows = [["weight"] + [cell(w[j], sw[j]) for j in range(k)]]
    rows += [[f"mean({name})"] + [cell(m[j, i], sm[j, i]) for j in range(k)] for i, name in enumerate(names)]
    shared = " (all components)" if ctype == "tied" else ""
    rows += [[label + shared] + [cell(c[j, i, e], sc[j, i, e]) for j in range(k)]
             for label, i, e in _entries(names, ctype)]
    heads = ["parameter"] + [f"component {j + 1}" for j in range(k)]
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    for r in [heads] + rows:
        print("  ".join(v.ljust(wd) if i == 0 else v.rjust(wd) for i, (v, wd) in enumerate(zip(r, widths))))
