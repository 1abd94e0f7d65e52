"""``plot_fit`` and ``plot_qq``: PNGs with the Agg backend, and what the axes hold."""

import os
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jax.numpy as jnp  # noqa: E402

import jaxgmm  # noqa: E402
from jaxgmm import FitResult, MixtureParams  # noqa: E402
from conftest import DTYPE, rtol_for  # noqa: E402

# A two-component mixture and data drawn from it (the plots show any fit; no
# fitting is needed to test the drawing).
PARAMS = MixtureParams(jnp.asarray([0.35, 0.65], DTYPE), jnp.asarray([54.6, 80.1], DTYPE),
                       jnp.asarray([5.9, 5.9], DTYPE))


def data(n=272):
    import jax
    return np.asarray(jaxgmm.sample(jax.random.key(1), PARAMS, n))


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_fit_draws_histogram_mixture_components_and_legend(tmp_path):
    x = data()
    result = FitResult(PARAMS, jnp.zeros((), DTYPE), 0, 0, True)
    ax = jaxgmm.plot_fit(x, result)
    path = tmp_path / "fit.png"
    ax.figure.savefig(path, dpi=80)
    if os.environ.get("JAXGMM_KEEP_PLOTS"):  # to look at them: set it to a folder
        ax.figure.savefig(os.path.join(os.environ["JAXGMM_KEEP_PLOTS"], "fit.png"), dpi=100)
    assert is_png(path) and path.stat().st_size > 10_000
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "density"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "data (n = 272)"
    assert labels[1] == "fitted mixture (K = 2)"
    assert [s[:11] for s in labels[2:]] == ["component 1", "component 2"]
    mixture, *components = ax.get_lines()
    assert len(components) == 2
    grid, density = mixture.get_data()
    np.testing.assert_allclose(density, jaxgmm.pdf(jnp.asarray(grid, DTYPE), PARAMS), rtol=rtol_for(1))
    # The weighted components add up to the mixture.
    np.testing.assert_allclose(sum(c.get_ydata() for c in components), density, rtol=rtol_for(1e3),
                               atol=rtol_for(1e3) * density.max())
    # The histogram is a density: bar areas sum to one.
    bars = [p for p in ax.patches]
    area = sum(b.get_width() * b.get_height() for b in bars)
    np.testing.assert_allclose(area, 1.0, rtol=1e-9)
    plt.close(ax.figure)


def test_plot_qq_against_the_mixture_quantiles(tmp_path):
    x = data()
    fig, given = plt.subplots()
    ax = jaxgmm.plot_qq(x, PARAMS, ax=given)
    assert ax is given
    path = tmp_path / "qq.png"
    fig.savefig(path, dpi=80)
    if os.environ.get("JAXGMM_KEEP_PLOTS"):
        fig.savefig(os.path.join(os.environ["JAXGMM_KEEP_PLOTS"], "qq.png"), dpi=100)
    assert is_png(path)
    points, diagonal = ax.get_lines()
    theory, sample = points.get_data()
    np.testing.assert_array_equal(sample, np.sort(x))
    positions = (np.arange(1, 273) - 0.5) / 272
    np.testing.assert_allclose(theory, jaxgmm.ppf(jnp.asarray(positions, DTYPE), PARAMS), rtol=rtol_for(1))
    assert ax.get_xlabel() == "fitted mixture quantile" and ax.get_ylabel() == "sample quantile"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data (n = 272)", "y = x"]
    plt.close(fig)


def test_clear_errors(monkeypatch):
    batch = MixtureParams(*(jnp.stack([f, f]) for f in PARAMS))
    with pytest.raises(ValueError, match="one fitted mixture"):
        jaxgmm.plot_fit(data(), batch)
    with pytest.raises(ValueError, match="NaN"):
        jaxgmm.plot_qq(np.array([1.0, np.nan]), PARAMS)
    # Without matplotlib: an ImportError that says how to get it.
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"jaxgmm\[plot\]"):
        jaxgmm.plot_fit(data(), PARAMS)
