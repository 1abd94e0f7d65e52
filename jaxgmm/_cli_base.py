"""What every ``jaxgmm`` subcommand shares: the program name, the one-line error, and
the two checks made before any array exists (float64 switched on, float32's range)."""

from __future__ import annotations

PROG = "jaxgmm"


class CLIError(Exception):
    """An error reported as one line on stderr."""


def _enable_x64_if(args) -> None:
    if getattr(args, "float64", False):
        import jax
        jax.config.update("jax_enable_x64", True)


def _check_float32_range(data, args) -> None:
    """float32 holds magnitudes up to 3.4e38: a larger number would become inf."""
    import numpy as np

    if args.float64 or data.size == 0:
        return
    big = float(np.max(np.abs(data)))
    if big > float(np.finfo(np.float32).max):
        raise CLIError(f"{args.file!r} holds {big:g}, beyond float32's range "
                       f"(+-{float(np.finfo(np.float32).max):.3g}); pass --float64")


def print_choice(choice) -> int:
    """The table of ``select_components``' K = 1..KMAX; returns the BIC's K."""
    print()
    print(f"{'K':>3}  {'log-likelihood':>15}  {'params':>6}  {'AIC':>12}  {'BIC':>12}")
    for i, kk in enumerate(choice.n_components):
        print(f"{kk:>3}  {float(choice.loglik[i]):>15.4f}  {choice.n_params[i]:>6}  "
              f"{float(choice.aic[i]):>12.4f}  {float(choice.bic[i]):>12.4f}")
    k = int(choice.best_bic)
    print(f"smallest AIC: K = {int(choice.best_aic)}; smallest BIC: K = {k} (shown below)")
    return k


def print_fit(result, how: str, table, n_params: int, n_obs) -> int:
    """The report of one fit: its status (``how``: the starts, e.g. "best of 10
    k-means++ starts"), the estimates (``table()`` prints them), the log-likelihood,
    AIC and BIC; returns the command's exit status (1 if the fit did not converge)."""
    from ._inference import aic, bic
    from ._params import Status

    status = Status(int(result.status))
    print(f"K = {result.params.weights.shape[-1]}, {how}: {status.name} after {int(result.n_iter)} EM iterations")
    if status != Status.CONVERGED:
        print(f"warning: the fit did not converge ({status.name}); estimates and SEs are unreliable")
    print()
    table()
    ll = float(result.loglik)
    print()
    print(f"log-likelihood {ll:.4f}   free parameters {n_params}   AIC {float(aic(ll, n_params)):.4f}   "
          f"BIC {float(bic(ll, n_params, n_obs)):.4f}")
    print("standard errors from the observed information (Hessian of the log-likelihood at the estimate)")
    return 0 if status == Status.CONVERGED else 1
