"""Peer check against R's mixtools (``normalmixEM``) at convergence.

mixtools' iterates are not plain EM iterates, so the comparison is of the fixed
point, the MLE: by default its scale update uses squared deviations about the
*previous* means (not monotone: with ``epsilon=0`` it stops early on a decrease),
and with constrained scales it switches to ECM (a second E-step before the
weights). We run it with ``ECM=TRUE`` throughout, which is monotone and converges
to the same stationary point as EM. mixtools is run with ``epsilon=0``, i.e. until its log-likelihood
stops increasing in float64, which leaves the parameters within about
``sqrt(eps * |loglik| / n)`` (~1e-8 here) of the MLE.

Skips cleanly when R or mixtools is not installed (CI does not install them; on
Debian: ``apt-get install r-cran-mixtools``).
"""

import shutil
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference as ref
from conftest import DTYPE, rtol_for
from jaxgmm import MixtureParams
from test_core import START, TRUTH, draw, iteration_atol


def _have_mixtools() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "library(mixtools)"], capture_output=True, timeout=60)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _have_mixtools(), reason="R with mixtools not installed")

R_SCRIPT = r"""
suppressMessages(library(mixtools))
args <- commandArgs(trailingOnly = TRUE)
x <- scan(args[1], quiet = TRUE)
model <- args[2]
sdc <- if (model == "scales-known") c(1, sqrt(2)) else NULL
# normalmixEM infers arbvar from the length of sigma, so equal scales need one value.
sig0 <- if (model == "equal-scales") 1.2 else c(1, sqrt(2))
set.seed(1)
fit <- suppressWarnings(normalmixEM(x, lambda = c(0.5, 0.5), mu = c(-1, 4), sigma = sig0,
                   sd.constr = sdc, arbvar = (model != "equal-scales"), ECM = TRUE,
                   maxit = 100000, epsilon = 0, verb = FALSE))
sig <- rep_len(fit$sigma, 2)
# mixtools prints its own warnings on stdout, so the numbers go to a file.
writeLines(sprintf("%.17g", c(fit$lambda, fit$mu, sig, tail(fit$all.loglik, 1))), args[3])
"""

MODELS = {
    "all-free": dict(),
    "scales-known": dict(fixed="scales"),
    "equal-scales": dict(equal_scales=True),
}


@pytest.mark.parametrize("model", list(MODELS))
def test_mle_matches_mixtools(tmp_path, model):
    x = draw(31, TRUTH, 1000)
    data = tmp_path / "x.txt"
    np.savetxt(data, x, fmt="%.17g")
    script = tmp_path / "fit.R"
    script.write_text(R_SCRIPT)
    result = tmp_path / "out.txt"
    subprocess.run(["Rscript", str(script), str(data), model, str(result)],
                   capture_output=True, text=True, timeout=120, check=True)
    vals = np.loadtxt(result)
    want = (vals[0:2], vals[2:4], vals[4:6])
    res = jaxgmm.fit(jnp.asarray(x, DTYPE), MixtureParams(*(jnp.asarray(f, DTYPE) for f in START)),
                     **MODELS[model])
    assert bool(res.converged)
    # Our stopping rule leaves at most tol * r / (1 - r) (r: EM's contraction rate,
    # from the reference), plus rounding; mixtools' leaves ~sqrt(eps64 |ll| / n).
    ref_kw = {"all-free": {}, "scales-known": dict(fixed_s=[True, True]),
              "equal-scales": dict(equal_scales=True)}[model]
    r = ref.contraction_rate(x, *START, **ref_kw)
    ours = 4 * jaxgmm.default_tol(DTYPE) * r / (1 - r) * x.std() + iteration_atol(x, int(res.n_iter))
    theirs = 16 * np.sqrt(np.finfo(np.float64).eps * abs(vals[6]) / x.size)
    atol = ours + theirs
    for name, g, w in zip(MixtureParams._fields, res.params, want):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=0, atol=atol, err_msg=name)
    # At the optimum the log-likelihood is flat: it agrees to second order.
    np.testing.assert_allclose(float(res.loglik), vals[6], rtol=rtol_for(x.size) * 8, atol=x.size * atol**2)
