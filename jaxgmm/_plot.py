"""Plots of one fitted mixture: density over the histogram, and a QQ plot.

matplotlib is an optional dependency (``pip install "jaxgmm[plot]"``), imported
only when a plot is drawn without an ``ax`` to draw on.  Each function draws on
``ax`` (or on a new figure's axes) and returns the axes, so the caller decides
about saving and showing: ``jaxgmm.plot_fit(x, result).figure.savefig("fit.png")``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from ._distributions import ArrayLike, pdf, ppf
from ._params import FitResult, MixtureParams

ParamsLike = Union[MixtureParams, FitResult]


def _axes(ax):
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("jaxgmm's plots need matplotlib, which is not installed: "
                          'pip install "jaxgmm[plot]" (or pip install matplotlib)') from err
    return plt.subplots(figsize=(7, 4.5))[1]


def _one_fit(x, params_or_result: ParamsLike) -> tuple[np.ndarray, MixtureParams]:
    """The data as a finite 1-D float64 array and one mixture's parameters ``(K,)``."""
    params = params_or_result.params if isinstance(params_or_result, FitResult) else params_or_result
    if not isinstance(params, MixtureParams):
        raise TypeError(f"params_or_result must be a MixtureParams or FitResult, got {type(params).__name__}")
    fields = [np.asarray(f) for f in params]
    if any(f.ndim != 1 for f in fields):
        raise ValueError("plots show one fitted mixture: params fields must have shape (K,), got "
                         f"{[f.shape for f in fields]}; select one fit from a batch first")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be one dataset of shape (n,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values; drop them before plotting")
    return x, MixtureParams(*fields)


def plot_fit(x: ArrayLike, params_or_result: ParamsLike, ax: Optional[Any] = None, *, bins: Any = "auto",
             components: bool = True) -> Any:
    """The fitted mixture density over a density histogram of ``x``.

    Args:
      x: one dataset, shape ``(n,)`` (or ``(n, 1)``).
      params_or_result: the fit, a :class:`MixtureParams` or :class:`FitResult`
        with fields of shape ``(K,)``.
      ax: matplotlib axes to draw on; ``None`` makes a new figure.
      bins: histogram bins, as for ``matplotlib.axes.Axes.hist``.
      components: also draw each weighted component ``pi_k N(x | mu_k, sigma_k)``.

    Returns:
      The axes, with labels and a legend.
    """
    x, params = _one_fit(x, params_or_result)
    ax = _axes(ax)
    ax.hist(x, bins=bins, density=True, color="0.82", edgecolor="0.6", label=f"data (n = {x.size})")
    weights, means, scales = (np.asarray(f, np.float64) for f in params)
    spread = max(float(np.max(scales)), float(np.std(x)) / 10, np.finfo(float).tiny)
    lo = min(float(np.min(x)), float(np.min(means - 3 * scales))) - spread
    hi = max(float(np.max(x)), float(np.max(means + 3 * scales))) + spread
    grid = np.linspace(lo, hi, 600)
    density = np.asarray(pdf(grid.astype(params.means.dtype), params), np.float64)
    # On top of the dashed components, which it meets where one component dominates.
    ax.plot(grid, density, color="C0", lw=2, zorder=3, label=f"fitted mixture (K = {weights.size})")
    if components:
        for k in range(weights.size):
            z = (grid - means[k]) / scales[k]
            comp = weights[k] * np.exp(-0.5 * z * z) / (scales[k] * np.sqrt(2 * np.pi))
            ax.plot(grid, comp, ls="--", lw=1.3, color=f"C{k + 1}",
                    label=f"component {k + 1}: π = {weights[k]:.3g}, μ = {means[k]:.4g}, σ = {scales[k]:.3g}")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("Gaussian mixture fit")
    ax.set_xlim(lo, hi)
    ax.legend(fontsize="small")
    return ax


def plot_qq(x: ArrayLike, params_or_result: ParamsLike, ax: Optional[Any] = None) -> Any:
    """QQ plot of ``x`` against the fitted mixture.

    The ``i``-th smallest observation is plotted against the mixture's quantile
    at ``(i - 1/2) / n`` (Hazen's plotting positions, computed by :func:`ppf`);
    points on the diagonal mean the fitted mixture describes the data.

    Args:
      x: one dataset, shape ``(n,)`` (or ``(n, 1)``).
      params_or_result: the fit, fields of shape ``(K,)``.
      ax: matplotlib axes to draw on; ``None`` makes a new figure.

    Returns:
      The axes, with labels, the diagonal and a legend.
    """
    x, params = _one_fit(x, params_or_result)
    ax = _axes(ax)
    n = x.size
    positions = (np.arange(1, n + 1) - 0.5) / n
    theory = np.asarray(ppf(positions.astype(params.means.dtype), params), np.float64)
    sample = np.sort(x)
    ax.plot(theory, sample, "o", ms=3.5, color="C0", alpha=0.8, label=f"data (n = {n})")
    lo = min(theory[0], sample[0])
    hi = max(theory[-1], sample[-1])
    ax.plot([lo, hi], [lo, hi], color="C3", lw=1.2, label="y = x")
    ax.set_xlabel("fitted mixture quantile")
    ax.set_ylabel("sample quantile")
    ax.set_title(f"QQ plot against the fitted mixture (K = {np.asarray(params.weights).size})")
    ax.legend(fontsize="small")
    return ax
