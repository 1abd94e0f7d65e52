"""jaxgmm: fit Gaussian mixtures by EM, univariate or D-dimensional, thousands of fits at once, with JAX.

Quick start (the textbook example: 0.2 N(0, 1) + 0.8 N(5, 2), reading N(5, 2) as
variance 2 so the second scale is sqrt(2); scales known, estimate means and weights)::

    import jax, jaxgmm
    truth = jaxgmm.MixtureParams(weights=[0.2, 0.8], means=[0.0, 5.0], scales=[1.0, 2 ** 0.5])
    x = jaxgmm.sample(jax.random.key(0), truth, 1000)
    start = jaxgmm.MixtureParams(weights=[0.5, 0.5], means=[-1.0, 4.0], scales=[1.0, 2 ** 0.5])
    result = jaxgmm.fit(x, start, fixed="scales")
"""

from ._distributions import cdf as cdf
from ._distributions import isf as isf
from ._distributions import logcdf as logcdf
from ._distributions import logsf as logsf
from ._distributions import pdf as pdf
from ._distributions import ppf as ppf
from ._distributions import predict as predict
from ._distributions import predict_proba as predict_proba
from ._distributions import score_samples as score_samples
from ._distributions import sf as sf
from ._estimator import GaussianMixture as GaussianMixture
from ._fit import best_of as best_of
from ._fit import fit as fit
from ._groups import fit_groups as fit_groups
from ._inference import ModelChoice as ModelChoice
from ._inference import aic as aic
from ._inference import bic as bic
from ._inference import confidence_intervals as confidence_intervals
from ._inference import covariance as covariance
from ._inference import icl as icl
from ._inference import n_parameters as n_parameters
from ._inference import select_components as select_components
from ._inference import standard_errors as standard_errors
from ._init import init_params as init_params
from ._io import load as load
from ._io import save as save
from ._lrt import LRTResult as LRTResult
from ._lrt import SequentialLRT as SequentialLRT
from ._lrt import bootstrap_lrt as bootstrap_lrt
from ._lrt import sequential_lrt as sequential_lrt
from ._controls import default_tol as default_tol
from ._mv_params import MultivariateParams as MultivariateParams
from ._params import FitResult as FitResult
from ._params import MixtureParams as MixtureParams
from ._params import Status as Status
from ._plot import plot_fit as plot_fit
from ._plot import plot_qq as plot_qq
from ._results import StudyInterrupted as StudyInterrupted
from ._results import merge_studies as merge_studies
from ._sharding import batch_mesh as batch_mesh
from ._sharding import data_sharding as data_sharding
from ._sharding import fit_sharded as fit_sharded
from ._simulate import sample as sample
from ._steps import e_step as e_step
from ._steps import log_likelihood as log_likelihood
from ._steps import m_step as m_step
from ._study import BootstrapResult as BootstrapResult
from ._study import GridResult as GridResult
from ._study import MonteCarloResult as MonteCarloResult
from ._study import Summary as Summary
from ._study import bootstrap as bootstrap
from ._study import monte_carlo as monte_carlo
from ._study import monte_carlo_grid as monte_carlo_grid
from ._study import simulate_replicates as simulate_replicates

try:
    # The installed distribution's version, so the package metadata is the one source.
    from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
    from importlib.metadata import version as _distribution_version

    __version__ = _distribution_version("jaxgmm")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BootstrapResult",
    "FitResult",
    "GaussianMixture",
    "GridResult",
    "LRTResult",
    "MixtureParams",
    "ModelChoice",
    "MonteCarloResult",
    "MultivariateParams",
    "SequentialLRT",
    "Status",
    "StudyInterrupted",
    "Summary",
    "aic",
    "batch_mesh",
    "best_of",
    "bic",
    "bootstrap",
    "bootstrap_lrt",
    "cdf",
    "confidence_intervals",
    "covariance",
    "data_sharding",
    "default_tol",
    "e_step",
    "fit",
    "fit_groups",
    "fit_sharded",
    "icl",
    "init_params",
    "isf",
    "load",
    "log_likelihood",
    "logcdf",
    "logsf",
    "m_step",
    "merge_studies",
    "monte_carlo",
    "monte_carlo_grid",
    "n_parameters",
    "pdf",
    "plot_fit",
    "plot_qq",
    "ppf",
    "predict",
    "predict_proba",
    "sample",
    "save",
    "score_samples",
    "select_components",
    "sequential_lrt",
    "sf",
    "simulate_replicates",
    "standard_errors",
]
