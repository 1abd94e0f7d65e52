"""``jaxgmm.GaussianMixture``: one dataset, scikit-learn's estimator conventions.

The estimator is a thin shell over :func:`jaxgmm.init_params`,
:func:`jaxgmm.fit`, :func:`jaxgmm.best_of` and the distribution functions.  It
follows scikit-learn's contract (parameters are the ``__init__`` arguments, stored
unchanged and validated in ``fit``; fitted attributes end in ``_``;
``get_params``/``set_params``; ``clone`` and ``Pipeline`` work) without importing
scikit-learn: only :meth:`GaussianMixture.__sklearn_tags__` (called by
scikit-learn itself) and the conversions :meth:`GaussianMixture.to_sklearn` /
:meth:`GaussianMixture.from_sklearn` import it, lazily.

Univariate: ``X`` is ``(n,)`` or ``(n, 1)``.  scikit-learn's four covariance
types then describe two models: ``"full"``, ``"diag"`` and ``"spherical"`` all
mean one free variance per component (they differ only in the shape of
``covariances_``), and ``"tied"`` means one variance shared by all components
(``equal_scales=True``).

Multivariate: ``X`` of shape ``(n, D)`` with ``D > 1`` is fitted as a
``D``-dimensional mixture of the covariance type (:func:`jaxgmm.fit` with a
:class:`MultivariateParams` start, :func:`jaxgmm.init_params` with
``covariance_type``), and the fitted attributes take scikit-learn's shapes for
that type.  The number of features seen in ``fit`` decides the family: one
feature is always the univariate model (``params_`` a :class:`MixtureParams`).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._distributions import predict_proba, score_samples
from ._fit import best_of, fit
from ._inference import n_parameters, standard_errors
from ._init import METHODS, init_params
from ._mv_params import MultivariateParams
from ._params import FitResult, MixtureParams, Status

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class NotFittedError(ValueError, AttributeError):
    """Raised when a method needs a fitted estimator (scikit-learn's convention:
    a subclass of both ``ValueError`` and ``AttributeError``).  Where scikit-learn
    is already imported, the error raised is also an instance of
    ``sklearn.exceptions.NotFittedError``, so code catching that one catches it."""


@functools.lru_cache(maxsize=None)
def _not_fitted_error_type(sklearn_error: Optional[type]) -> type:
    if sklearn_error is None:
        return NotFittedError
    return type("NotFittedError", (NotFittedError, sklearn_error), {"__module__": __name__})


def _key_from(random_state) -> jax.Array:
    """A ``jax.random`` key from scikit-learn's kinds of ``random_state``.

    ``None`` draws the seed from NumPy's global generator (so ``np.random.seed``
    controls it, as in scikit-learn); an int seeds directly; a
    ``np.random.RandomState`` or ``np.random.Generator`` gives a seed; a JAX key
    is used as it is.
    """
    if random_state is None:
        return jax.random.key(np.random.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return jax.random.key(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return jax.random.key(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return jax.random.key(int(random_state.integers(np.iinfo(np.int32).max)))
    if isinstance(random_state, jax.Array) and jnp.issubdtype(random_state.dtype, jax.dtypes.prng_key):
        return random_state
    raise TypeError("random_state must be None, an int, a numpy RandomState or Generator, or a "
                    f"jax.random key, got {type(random_state).__name__}")


def _numpy_rng(random_state) -> np.random.Generator:
    """A NumPy generator for :meth:`GaussianMixture.sample`, seeded like :func:`_key_from`."""
    key = _key_from(random_state)
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _as_observations(X, name: str, n_features_expected: Optional[int] = None) -> np.ndarray:
    """``X`` as a float array with scikit-learn's error messages (its estimator
    checks match on them): ``(n,)`` or ``(n, 1)`` as a 1-D array (one feature),
    ``(n, D)`` with ``D > 1`` as it is.  ``n_features_expected`` (after ``fit``)
    is the number of features the model was fitted to; ``None`` accepts any."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError("GaussianMixture does not accept sparse input; pass a dense array "
                        "(e.g. X.toarray())")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported")
    if arr.dtype.kind not in "fiub":
        # object or string arrays: float() raises a TypeError naming the bad value.
        arr = np.asarray(X, dtype=np.float64)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    # Before the shape checks: scikit-learn's checks expect NaN/inf named first.
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    if arr.ndim == 2:
        if arr.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum "
                             "of 1 is required.")
        if n_features_expected is not None and arr.shape[1] != n_features_expected:
            one = " (fitted to one feature: X must have shape (n,) or (n, 1))" if n_features_expected == 1 else ""
            raise ValueError(f"X has {arr.shape[1]} features, but GaussianMixture is expecting "
                             f"{n_features_expected} features as input{one}, got shape {arr.shape}")
        if arr.shape[1] == 1:
            arr = arr[:, 0]
    elif arr.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, D), got shape {arr.shape}")
    elif n_features_expected is not None and n_features_expected > 1:
        raise ValueError(f"Expected 2D array, got 1D array instead: {name} of shape {arr.shape} for a model "
                         f"of {n_features_expected} features. Reshape your data to (n, {n_features_expected}) "
                         "rows of observations (array.reshape(1, -1) if it holds a single sample).")
    if arr.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={np.shape(X)}) while a minimum of 1 "
                         "is required.")
    return arr


def _as_sample_weight(sample_weight, n: int) -> Optional[np.ndarray]:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},)!")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not np.any(w > 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w


class GaussianMixture:
    """A Gaussian mixture fitted by EM, with scikit-learn's interface: univariate
    for ``X`` of one feature, ``D``-dimensional for ``X`` of shape ``(n, D)``.

    Args:
      n_components: ``K``.
      covariance_type: ``"full"`` (default), ``"diag"``, ``"spherical"`` or
        ``"tied"``, scikit-learn's meanings. With ``D > 1`` features: one
        unrestricted covariance matrix per component, diagonal matrices,
        multiples of the identity, or one matrix shared by all components. With
        one feature: ``"full"``, ``"diag"`` and ``"spherical"`` are one free
        variance per component (the same model), ``"tied"`` one variance shared
        by all (as ``equal_scales=True``). The type sets the shape of
        ``covariances_`` and ``precisions_cholesky_`` as scikit-learn's would be.
      fixed: parameters held at their starting values, as in :func:`jaxgmm.fit`
        (field names or a :class:`MixtureParams`/:class:`MultivariateParams` of
        booleans). Needs an explicit start: ``init_params`` holding the fixed
        values.
      equal_scales: one common scale for all components (also implied by
        ``covariance_type="tied"``); one feature only (with ``D > 1`` use
        ``covariance_type="tied"``).
      n_init: number of starts; the best healthy fit is kept
        (:func:`jaxgmm.best_of`). All starts are fitted as one batch.
      init_params: ``"kmeans++"`` or (one feature only) ``"quantile"``
        (:func:`jaxgmm.init_params`), or the start itself (then ``n_init`` must
        be 1): a :class:`MixtureParams` with fields of shape ``(K,)`` for one
        feature, a :class:`MultivariateParams` with weights ``(K,)``, means
        ``(K, D)`` and covariances ``(K, D, D)`` (full matrices, a point of the
        covariance type) for ``D > 1``.
      tol: jaxgmm's convergence tolerance on the largest parameter change (in
        units of the data's standard deviation), ``None`` for
        :func:`jaxgmm.default_tol`. Not scikit-learn's tolerance on the change of
        the mean log-likelihood: jaxgmm's default is much tighter.
      max_iter: iteration cap per start.
      random_state: ``None`` (NumPy's global generator draws the seed), an int, a
        ``numpy.random.RandomState``/``Generator``, or a ``jax.random`` key.

    Fitted attributes (after :meth:`fit`): ``weights_`` ``(K,)``; ``means_``
    ``(K, D)``; ``covariances_`` and ``precisions_``, ``precisions_cholesky_``
    shaped as scikit-learn's for the covariance type (full ``(K, D, D)``, tied
    ``(D, D)``, diag ``(K, D)``, spherical ``(K,)``; with one feature ``D = 1``
    and the covariances are variances); ``converged_``; ``n_iter_``;
    ``lower_bound_`` (mean log-likelihood per observation, weighted when fitted
    with weights); ``n_features_in_`` (``D``); jaxgmm's own ``status_``
    (:class:`Status`), ``standard_errors_`` (observed-information standard
    errors as NumPy arrays: a :class:`MixtureParams` for one feature, a
    :class:`MultivariateParams` of the weights', means' and covariance entries'
    for ``D > 1``, see :func:`jaxgmm.standard_errors`; ``None`` after
    :meth:`from_sklearn`), ``params_`` (a
    :class:`MixtureParams`, or a :class:`MultivariateParams` for ``D > 1``) and
    ``result_`` (the :class:`FitResult`).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        fixed: Any = (),
        equal_scales: bool = False,
        n_init: int = 1,
        init_params: Any = "kmeans++",
        tol: Optional[float] = None,
        max_iter: int = 10_000,
        random_state: Any = None,
    ) -> None:
        # scikit-learn's rule: store the arguments unchanged, validate in fit.
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.fixed = fixed
        self.equal_scales = equal_scales
        self.n_init = n_init
        self.init_params = init_params
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ #
    # scikit-learn's estimator protocol, without scikit-learn
    # ------------------------------------------------------------------ #
    @classmethod
    def _get_param_names(cls) -> list:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self")

    def get_params(self, deep: bool = True) -> dict:
        """The ``__init__`` arguments as a dict (``deep`` is accepted for
        scikit-learn; no parameter is itself an estimator)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> "GaussianMixture":
        """Set ``__init__`` arguments by name; returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            same = value is default or (type(value) is type(default) and _plain_equal(value, default))
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Called only by scikit-learn, so importing it here costs nothing otherwise.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False),
                    input_tags=InputTags())

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "params_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            # Never imports scikit-learn: only uses its error class if it is loaded.
            loaded = sys.modules.get("sklearn.exceptions")
            raise _not_fitted_error_type(getattr(loaded, "NotFittedError", None))(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")

    # ------------------------------------------------------------------ #
    # Fitting
    # ------------------------------------------------------------------ #
    def _model(self) -> tuple[int, bool]:
        """Validate the parameters; return ``(K, equal_scales)``."""
        k = self.n_components
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must be an int >= 1, got {k!r}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                             f"got {self.covariance_type!r}")
        if not isinstance(self.n_init, numbers.Integral) or self.n_init < 1:
            raise ValueError(f"n_init must be an int >= 1, got {self.n_init!r}")
        start = self.init_params
        if isinstance(start, (MixtureParams, MultivariateParams)):
            if self.n_init != 1:
                raise ValueError(f"n_init must be 1 when init_params is a {type(start).__name__} (the start), "
                                 f"got n_init={self.n_init}")
            if isinstance(start, MixtureParams) and np.shape(start.means) != (k,):
                raise ValueError(f"init_params must have fields of shape ({k},) for n_components={k}, "
                                 f"got means of shape {np.shape(start.means)}")
        elif not isinstance(start, str) or start not in METHODS:
            raise ValueError(f"init_params must be one of {METHODS}, a MixtureParams or a MultivariateParams, "
                             f"got {start!r}")
        elif self.fixed is not None and not (isinstance(self.fixed, (tuple, list)) and len(self.fixed) == 0):
            raise ValueError("fixed parameters take their values from the start: pass init_params as a "
                             "MixtureParams holding them")
        return int(k), bool(self.equal_scales) or self.covariance_type == "tied"

    def fit(self, X, y=None, sample_weight=None) -> "GaussianMixture":
        """Fit the mixture to ``X`` of shape ``(n,)`` or ``(n, 1)``; ``y`` is ignored.

        ``sample_weight`` (``(n,)``, non-negative) weights the observations, as in
        :func:`jaxgmm.fit`. Returns ``self``.
        """
        k, equal = self._model()
        x = _as_observations(X, "X")
        if x.ndim == 2:
            return self._fit_multivariate(x, k, sample_weight)
        if isinstance(self.init_params, MultivariateParams):
            raise ValueError("init_params is a MultivariateParams (a start for X of D > 1 features), but X "
                             "has one feature: pass a MixtureParams")
        n = x.shape[0]
        if n < k:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, "
                             f"n_samples = {n}")
        fixed = () if self.fixed is None else self.fixed
        n_free = n_parameters(k, fixed=fixed, equal_scales=equal)
        if n < n_free:
            raise ValueError(f"GaussianMixture needs at least as many observations as free parameters: got "
                             f"n_samples = {n} for {n_free} free parameters ({k} components)")
        w = _as_sample_weight(sample_weight, n)
        x = jnp.asarray(x)
        w = None if w is None else jnp.asarray(w, x.dtype)
        if isinstance(self.init_params, MixtureParams):
            # A leading starts axis of 1, so an explicit start and n_init=1 share
            # one compiled program.
            starts = MixtureParams(*(jnp.asarray(f, x.dtype)[None] for f in self.init_params))
        else:
            key = _key_from(self.random_state)
            starts = init_params(key, x, k, method=self.init_params, n_starts=int(self.n_init),
                                 sample_weight=w)
        result = best_of(fit(x, starts, fixed=fixed, equal_scales=equal, tol=self.tol,
                             max_iter=self.max_iter, sample_weight=w), axis=0)
        self._set_fitted(result.params, result, equal)
        total = n if w is None else float(jnp.sum(w))
        self.lower_bound_ = float(result.loglik) / total
        se = standard_errors(x, result, fixed=fixed, equal_scales=equal, sample_weight=w)
        self.standard_errors_ = MixtureParams(*(np.asarray(f) for f in se))
        if not self.converged_:
            warnings.warn(f"jaxgmm.GaussianMixture: the best fit did not converge "
                          f"(status {self.status_.name}, {self.n_iter_} iterations)", RuntimeWarning,
                          stacklevel=2)
        return self

    def _fit_multivariate(self, x: np.ndarray, k: int, sample_weight) -> "GaussianMixture":
        """:meth:`fit` for ``x`` of shape ``(n, D)``, ``D > 1`` (parameters checked by ``_model``)."""
        n, dim = x.shape
        kind = self.covariance_type
        if self.equal_scales:
            raise ValueError("equal_scales applies to one feature; for X of D > 1 features use "
                             "covariance_type='tied' (one covariance matrix shared by all components)")
        start = self.init_params
        if isinstance(start, MixtureParams):
            raise ValueError(f"init_params is a MixtureParams (a start for one feature), but X has {dim} "
                             f"features: pass a MultivariateParams with weights ({k},), means ({k}, {dim}) and "
                             f"covariances ({k}, {dim}, {dim})")
        if isinstance(start, MultivariateParams):
            shapes = tuple(np.shape(f) for f in start)
            if shapes != ((k,), (k, dim), (k, dim, dim)):
                raise ValueError(f"init_params must have weights ({k},), means ({k}, {dim}) and covariances "
                                 f"({k}, {dim}, {dim}) for n_components={k} and X of {dim} features, got "
                                 f"shapes {shapes}")
        elif start != "kmeans++":
            raise ValueError(f"init_params={start!r} applies to one feature; for X of {dim} features use "
                             "'kmeans++' or a MultivariateParams start")
        if n < k:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, "
                             f"n_samples = {n}")
        w = _as_sample_weight(sample_weight, n)
        fixed = () if self.fixed is None else self.fixed
        n_free = n_parameters(k, fixed=fixed, covariance_type=kind, n_features=dim)
        if n < n_free:
            raise ValueError(f"GaussianMixture needs at least as many observations as free parameters: got "
                             f"n_samples = {n} for {n_free} free parameters ({k} components, {dim} features, "
                             f"covariance_type={kind!r})")
        x = jnp.asarray(x)
        w = None if w is None else jnp.asarray(w, x.dtype)
        if isinstance(start, MultivariateParams):
            starts = MultivariateParams(*(jnp.asarray(f, x.dtype)[None] for f in start))
        else:
            starts = init_params(_key_from(self.random_state), x, k, covariance_type=kind,
                                 n_starts=int(self.n_init), sample_weight=w)
        result = best_of(fit(x, starts, fixed=fixed, covariance_type=kind, tol=self.tol, max_iter=self.max_iter,
                             sample_weight=w), axis=0)
        self._set_fitted_multivariate(result.params, result)
        total = n if w is None else float(jnp.sum(w))
        self.lower_bound_ = float(result.loglik) / total
        se = standard_errors(x, result, sample_weight=w)
        self.standard_errors_ = MultivariateParams(*(np.asarray(f) for f in se))
        if not self.converged_:
            warnings.warn(f"jaxgmm.GaussianMixture: the best fit did not converge "
                          f"(status {self.status_.name}, {self.n_iter_} iterations)", RuntimeWarning,
                          stacklevel=3)
        return self

    def _set_fitted_multivariate(self, params: MultivariateParams, result: Optional[FitResult]) -> None:
        """Fitted attributes from ``D``-dimensional ``params``, shaped as scikit-learn's."""
        weights, means, full = (np.asarray(f) for f in params)
        cov = _covariances_of_type(full, self.covariance_type)
        self.params_ = params
        self.result_ = result
        self.weights_ = weights
        self.means_ = means
        self.covariances_ = cov
        chol = _precisions_cholesky(cov, self.covariance_type)
        self.precisions_cholesky_ = chol.astype(cov.dtype)
        self.precisions_ = _precisions(chol, self.covariance_type).astype(cov.dtype)
        self.n_features_in_ = means.shape[-1]
        if result is not None:
            self.status_ = Status(int(result.status))
            self.converged_ = bool(result.converged)
            self.n_iter_ = int(result.n_iter)

    def _set_fitted(self, params: MixtureParams, result: Optional[FitResult], equal: bool) -> None:
        """Fitted attributes from ``params``, shaped as scikit-learn's."""
        k = np.shape(params.means)[-1]
        weights, means, scales = (np.asarray(f) for f in params)
        var = scales ** 2
        kind = self.covariance_type
        if kind == "tied":
            cov = var[:1].reshape(1, 1)
        elif kind == "full":
            cov = var.reshape(k, 1, 1)
        elif kind == "diag":
            cov = var.reshape(k, 1)
        else:
            cov = var.reshape(k)
        self.params_ = params
        self.result_ = result
        self.weights_ = weights
        self.means_ = means.reshape(k, 1)
        self.covariances_ = cov
        self.precisions_ = 1.0 / cov
        self.precisions_cholesky_ = 1.0 / np.sqrt(cov)
        self.n_features_in_ = 1
        if result is not None:
            self.status_ = Status(int(result.status))
            self.converged_ = bool(result.converged)
            self.n_iter_ = int(result.n_iter)

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """:meth:`fit`, then :meth:`predict` on the same data."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ #
    # Using the fit
    # ------------------------------------------------------------------ #
    def _x(self, X) -> jnp.ndarray:
        self._check_fitted()
        return jnp.asarray(_as_observations(X, "X", n_features_expected=self.n_features_in_),
                           self.params_.means.dtype)

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities, shape ``(n, K)``; ``X`` of ``n_features_in_`` features."""
        return np.asarray(predict_proba(self._x(X), self.params_))

    def predict(self, X) -> np.ndarray:
        """The most probable component per observation, shape ``(n,)``."""
        return np.argmax(self.predict_proba(X), axis=1)

    def score_samples(self, X) -> np.ndarray:
        """Log density of each observation, shape ``(n,)``."""
        return np.asarray(score_samples(self._x(X), self.params_))

    def score(self, X, y=None) -> float:
        """Mean log density per observation (scikit-learn's ``score``)."""
        return float(np.mean(self.score_samples(X)))

    def _n_parameters(self) -> int:
        """Free parameters: as scikit-learn's ``_n_parameters`` when all are free
        (``K - 1`` weights, ``K D`` means, the covariance type's entries), less
        the fixed ones."""
        fixed = () if self.fixed is None else self.fixed
        if self.n_features_in_ > 1:
            return n_parameters(len(self.weights_), fixed=fixed, covariance_type=self.covariance_type,
                                n_features=self.n_features_in_)
        equal = bool(self.equal_scales) or self.covariance_type == "tied"
        return n_parameters(len(self.weights_), fixed=fixed, equal_scales=equal)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (smaller is better)."""
        self._check_fitted()
        n = _as_observations(X, "X", n_features_expected=self.n_features_in_).shape[0]
        return -2.0 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (smaller is better)."""
        self._check_fitted()
        n = _as_observations(X, "X", n_features_expected=self.n_features_in_).shape[0]
        return -2.0 * self.score(X) * n + 2.0 * self._n_parameters()

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` observations: ``(X, y)`` with ``X`` of shape
        ``(n_samples, D)`` and component labels ``y``, grouped by component as in
        scikit-learn. Reproducible from ``random_state`` when it is an int."""
        self._check_fitted()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires "
                             "at least one sample.")
        rng = _numpy_rng(self.random_state)
        weights = np.asarray(self.weights_, np.float64)
        counts = rng.multinomial(int(n_samples), weights / weights.sum())
        means = np.asarray(self.params_.means, np.float64)
        y = np.repeat(np.arange(len(counts)), counts)
        if isinstance(self.params_, MultivariateParams):
            cov = np.asarray(self.params_.covariances, np.float64)
            X = np.concatenate([rng.multivariate_normal(means[j], cov[j], size=c) for j, c in enumerate(counts)])
            return X.astype(self.means_.dtype), y
        scales = np.asarray(self.params_.scales, np.float64)
        X = np.concatenate([rng.normal(means[j], scales[j], size=c) for j, c in enumerate(counts)])
        return X.astype(self.means_.dtype)[:, None], y

    # ------------------------------------------------------------------ #
    # scikit-learn conversions
    # ------------------------------------------------------------------ #
    def to_sklearn(self):
        """A fitted ``sklearn.mixture.GaussianMixture`` with these parameters (float64).

        Its ``predict``, ``predict_proba``, ``score_samples`` and ``sample`` then
        agree with this estimator's. Needs scikit-learn.
        """
        self._check_fitted()
        from sklearn.mixture import GaussianMixture as SkGaussianMixture

        random_state = self.random_state if isinstance(self.random_state, (numbers.Integral, type(None))) else None
        sk = SkGaussianMixture(n_components=len(self.weights_), covariance_type=self.covariance_type,
                               n_init=self.n_init, max_iter=self.max_iter, random_state=random_state)
        sk.weights_ = np.asarray(self.weights_, np.float64)
        sk.means_ = np.asarray(self.means_, np.float64)
        sk.covariances_ = np.asarray(self.covariances_, np.float64)
        if self.n_features_in_ > 1:
            sk.precisions_cholesky_ = _precisions_cholesky(sk.covariances_, self.covariance_type)
            sk.precisions_ = _precisions(sk.precisions_cholesky_, self.covariance_type)
        else:
            sk.precisions_ = 1.0 / sk.covariances_
            sk.precisions_cholesky_ = 1.0 / np.sqrt(sk.covariances_)
        sk.converged_ = bool(getattr(self, "converged_", True))
        sk.n_iter_ = int(getattr(self, "n_iter_", 0))
        sk.lower_bound_ = float(getattr(self, "lower_bound_", np.nan))
        sk.n_features_in_ = self.n_features_in_
        return sk

    @classmethod
    def from_sklearn(cls, estimator) -> "GaussianMixture":
        """A fitted jaxgmm estimator from a fitted
        ``sklearn.mixture.GaussianMixture`` of any number of features (its
        parameters, attributes and covariance type). ``standard_errors_`` and
        ``result_`` are ``None``: there is no data to compute them from."""
        means = np.asarray(estimator.means_, np.float64)
        if means.ndim != 2 or means.shape[1] < 1:
            raise ValueError(f"from_sklearn needs means_ of shape (K, D); means_ has shape {means.shape}")
        k, dim = means.shape
        kind = estimator.covariance_type
        cov = np.asarray(estimator.covariances_, np.float64)
        random_state = estimator.random_state
        if not isinstance(random_state, (numbers.Integral, type(None))):
            random_state = None
        new = cls(k, covariance_type=kind, n_init=estimator.n_init, max_iter=estimator.max_iter,
                  random_state=random_state)
        dtype = jnp.result_type(float)
        weights = jnp.asarray(estimator.weights_, dtype)
        if dim > 1:
            params = MultivariateParams(weights, jnp.asarray(means, dtype),
                                        jnp.asarray(_full_covariances(cov, kind, k, dim), dtype))
            new._set_fitted_multivariate(params, None)
        else:
            var = np.broadcast_to(cov.reshape(-1), (k,)) if kind == "tied" else cov.reshape(k)
            params = MixtureParams(weights, jnp.asarray(means[:, 0], dtype), jnp.asarray(np.sqrt(var), dtype))
            new._set_fitted(params, None, kind == "tied")
        new.converged_ = bool(getattr(estimator, "converged_", True))
        new.n_iter_ = int(getattr(estimator, "n_iter_", 0))
        new.lower_bound_ = float(getattr(estimator, "lower_bound_", np.nan))
        new.status_ = Status.CONVERGED if new.converged_ else Status.MAX_ITER
        new.standard_errors_ = None
        return new


# -- scikit-learn's covariance layouts for D > 1 (host NumPy) -----------------------


def _covariances_of_type(full: np.ndarray, kind: str) -> np.ndarray:
    """Full matrices ``(K, D, D)`` in scikit-learn's layout for ``kind``: full
    ``(K, D, D)``, tied ``(D, D)``, diag ``(K, D)``, spherical ``(K,)``."""
    if kind == "full":
        return full
    if kind == "tied":
        return full[0]
    var = np.diagonal(full, axis1=-2, axis2=-1)
    return var.copy() if kind == "diag" else np.mean(var, axis=-1)


def _full_covariances(cov: np.ndarray, kind: str, k: int, dim: int) -> np.ndarray:
    """The inverse of :func:`_covariances_of_type`: ``(K, D, D)`` matrices, full and
    tied ones symmetrised (scikit-learn's tied matrices are symmetric only to about
    50 ulps, its full ones to an ulp)."""
    if kind in ("full", "tied"):
        cov = cov.reshape(-1, dim, dim)
        return np.broadcast_to(0.5 * (cov + np.swapaxes(cov, -1, -2)), (k, dim, dim)).copy()
    var = np.broadcast_to(cov.reshape(k, -1), (k, dim)) if kind == "spherical" else cov.reshape(k, dim)
    return var[:, :, None] * np.eye(dim)


def _precisions_cholesky(cov: np.ndarray, kind: str) -> np.ndarray:
    """scikit-learn's ``precisions_cholesky_`` (float64): for full and tied
    matrices ``L^{-T}`` with ``Sigma = L L^T`` (upper triangular, ``P P^T`` the
    precision matrix), else ``1 / sqrt(variances)``."""
    from scipy.linalg import solve_triangular  # a dependency of jax; only needed here

    cov = np.asarray(cov, np.float64)
    if kind not in ("full", "tied"):
        return 1.0 / np.sqrt(cov)
    eye = np.eye(cov.shape[-1])
    solve = lambda c: solve_triangular(np.linalg.cholesky(c), eye, lower=True).T
    return solve(cov) if kind == "tied" else np.stack([solve(c) for c in cov])


def _precisions(chol: np.ndarray, kind: str) -> np.ndarray:
    """Precision matrices (or inverse variances) from :func:`_precisions_cholesky`."""
    if kind not in ("full", "tied"):
        return chol ** 2
    return chol @ np.swapaxes(chol, -1, -2)


def _plain_equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
