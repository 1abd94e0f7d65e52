"""jaxgmm: fit univariate Gaussian mixtures by EM, thousands of fits at once, with JAX.

Quick start (the textbook example: 0.2 N(0, 1) + 0.8 N(5, 2), reading N(5, 2) as
variance 2 so the second scale is sqrt(2); scales known, estimate means and weights)::

    import jax, jaxgmm
    truth = jaxgmm.MixtureParams(weights=[0.2, 0.8], means=[0.0, 5.0], scales=[1.0, 2 ** 0.5])
    x = jaxgmm.sample(jax.random.key(0), truth, 1000)
    start = jaxgmm.MixtureParams(weights=[0.5, 0.5], means=[-1.0, 4.0], scales=[1.0, 2 ** 0.5])
    result = jaxgmm.fit(x, start, fixed="scales")
"""

from ._em import e_step as e_step
from ._em import log_likelihood as log_likelihood
from ._em import m_step as m_step
from ._fit import best_of as best_of
from ._fit import fit as fit
from ._init import init_params as init_params
from ._loop import default_tol as default_tol
from ._params import FitResult as FitResult
from ._params import MixtureParams as MixtureParams
from ._params import Status as Status
from ._simulate import sample as sample

__version__ = "0.1.0"

__all__ = [
    "FitResult",
    "MixtureParams",
    "Status",
    "best_of",
    "default_tol",
    "e_step",
    "fit",
    "init_params",
    "log_likelihood",
    "m_step",
    "sample",
]
