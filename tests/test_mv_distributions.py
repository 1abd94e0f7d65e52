"""Multivariate distribution functions and ``GaussianMixture`` with ``D > 1`` features
(issues 18 and 20), against scikit-learn and the float64 NumPy reference.

Distribution functions: inputs are rounded to the library's float type first, so
the references (``tests/mv_reference.py``, densities from ``slogdet`` and
``solve``; scikit-learn's ``GaussianMixture`` holding the same parameters) see the
same numbers.  The error bound of a log-joint term ``a_ik = log pi_k + log N(x_i |
mu_k, Sigma_k)`` is first order in the float's epsilon: a Cholesky factor and
triangular solve are backward stable with componentwise perturbations of
``Sigma_k`` of about ``D eps``, which move the Mahalanobis distance ``m_ik`` and
the log-determinant by ``D kappa_k eps`` relative (``kappa_k`` the condition number
of ``Sigma_k`` scaled to unit diagonal: componentwise errors do not see the units
of the dimensions), and rounding ``x`` or ``mu`` moves ``m_ik`` by ``2 sqrt(m_ik)
eps (|x_i| + |mu_k|) / sqrt(lambda_min)``.  A safety factor of 16 covers the few
operations per term.

Estimator: iris (150 flowers, 4 measurements, R. A. Fisher 1936, shipped with
scikit-learn), ``K = 3`` from one start for both libraries: ``t`` iterations agree
to ``t * rtol_for(n)`` (as in ``tests/test_mv_fit.py``), converged fits to 100 x
jaxgmm's stopping tolerance in data units (``tests/test_estimator.py``).  Every
estimator test shares the shapes ``(150, 4)``, ``K = 3``, one start per covariance
type, so the file compiles one fit program per type.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import mv_reference as ref
from conftest import DTYPE, EPS, rtol_for
from jaxgmm import FitResult, GaussianMixture, MultivariateParams, Status

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGaussianMixture  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

NP_DTYPE = np.dtype(DTYPE)
KINDS = ["full", "diag", "spherical", "tied"]
N, D, K = 64, 3, 3
MEANS = np.array([[-2.0, 0.0, 1.0], [1.5, 2.0, -1.0], [4.0, -1.0, 0.5]])
WEIGHTS = np.array([0.2, 0.5, 0.3])


def _spd(seed, scales):
    """A symmetric positive definite matrix with standard deviations ``scales``
    and moderate correlations (condition number of the correlations below 10)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(D, D))
    m = a @ a.T + 2 * np.eye(D)
    sd = np.sqrt(np.diag(m))
    return m / np.outer(sd, sd) * np.outer(scales, scales)


def _covariances(kind):
    """``(K, D, D)`` full matrices that are a point of the covariance type."""
    scales = [[0.5, 1.0, 0.8], [1.25, 0.6, 1.0], [2.0, 1.5, 0.7]]
    if kind == "full":
        return np.stack([_spd(k, s) for k, s in enumerate(scales)])
    if kind == "tied":
        return np.broadcast_to(_spd(7, scales[1]), (K, D, D)).copy()
    if kind == "diag":
        return np.stack([np.diag(np.square(s)) for s in scales])
    return np.stack([np.mean(np.square(s)) * np.eye(D) for s in scales])


def as_float(arrays):
    """Arrays rounded to the library's dtype, as float64 NumPy arrays."""
    return type(arrays)(*(np.asarray(np.asarray(f, NP_DTYPE), np.float64) for f in arrays))


def params_of(kind):
    return as_float(MultivariateParams(WEIGHTS, MEANS, _covariances(kind)))


def jparams(p):
    return MultivariateParams(*(jnp.asarray(np.asarray(f), DTYPE) for f in p))


def points(seed=0):
    """Draws from near every component, and a few points 20 to 30 sds away."""
    rng = np.random.default_rng(seed)
    near = MEANS[rng.integers(0, K, N - 4)] + rng.normal(size=(N - 4, D))
    far = np.array([[30.0, 0.0, 0.0], [0.0, -25.0, 0.0], [0.0, 0.0, 20.0], [-20.0, 20.0, -20.0]])
    return np.asarray(np.concatenate([near, far]), NP_DTYPE).astype(np.float64)


def _sklearn_layout(cov, kind):
    if kind == "full":
        return cov
    if kind == "tied":
        return cov[0]
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    return var if kind == "diag" else var[:, 0]


def sklearn_model(p, kind):
    """scikit-learn's GaussianMixture holding the parameters ``p`` (set by hand,
    its precision Cholesky factors computed here as its docs define them)."""
    gm = SkGaussianMixture(n_components=len(p.weights), covariance_type=kind)
    gm.weights_ = np.asarray(p.weights)
    gm.means_ = np.asarray(p.means)
    gm.covariances_ = _sklearn_layout(np.asarray(p.covariances), kind)
    if kind in ("full", "tied"):
        chol = np.linalg.inv(np.linalg.cholesky(np.asarray(p.covariances))).swapaxes(-1, -2)
        gm.precisions_cholesky_ = chol if kind == "full" else chol[0]
    else:
        gm.precisions_cholesky_ = 1.0 / np.sqrt(gm.covariances_)
    return gm


def log_joint_bound(x, p):
    """First-order error bound ``(n, K)`` of the computed log-joint terms (module docstring)."""
    x = np.asarray(x, np.float64)
    w, m, c = (np.asarray(f, np.float64) for f in p)
    bounds = []
    for k in range(len(w)):
        sd = np.sqrt(np.diag(c[k]))
        corr = c[k] / np.outer(sd, sd)
        dev = x - m[k]
        maha = np.sum(dev * np.linalg.solve(c[k], dev.T).T, axis=1)
        logdet = np.linalg.slogdet(c[k])[1]
        # Rounding x and mu: |L^-1 d(dev)| <= |S^-1 d(dev)| / sqrt(lambda_min(corr)), S the sds.
        moved = np.linalg.norm((np.abs(x) + np.abs(m[k])) / sd, axis=1) / np.sqrt(np.linalg.eigvalsh(corr)[0])
        bounds.append(D * np.linalg.cond(corr) * (1 + maha + abs(logdet) + D) + 2 * np.sqrt(maha) * moved
                      + abs(np.log(w[k])))
    return 16 * EPS * np.stack(bounds, axis=1)


def assert_within(err, tol):
    """``|err| <= tol`` elementwise (broadcasting), reporting the worst ratio."""
    err, tol = np.broadcast_arrays(np.abs(np.asarray(err, np.float64)), np.asarray(tol, np.float64))
    ratio = np.where(err == 0, 0.0, err / tol)
    worst = np.unravel_index(np.argmax(np.nan_to_num(ratio, nan=np.inf)), ratio.shape)
    assert np.all(err <= tol), f"error {err[worst]:.3g} > bound {tol[worst]:.3g} at {worst}"


# --------------------------------------------------------------------------- #
# Responsibilities and densities
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", KINDS)
def test_predict_proba_and_score_samples_match_sklearn_and_the_reference(kind):
    p = params_of(kind)
    x = points()
    gm = sklearn_model(p, kind)
    a_ref = ref.log_joint(x, *p)
    score_ref = ref.logsumexp(a_ref, axis=1)
    # The two float64 references agree far below the float's rounding.
    np.testing.assert_allclose(gm.score_samples(x), score_ref, rtol=1e-12)
    bound = log_joint_bound(x, p)
    top = np.max(bound, axis=1)

    score = np.asarray(jaxgmm.score_samples(jnp.asarray(x, DTYPE), jparams(p)))
    assert score.shape == (N,) and score.dtype == NP_DTYPE
    # A log-sum-exp is a weighted mean of its terms' errors, plus its own rounding.
    assert_within(score - score_ref, top + 4 * EPS * (1 + np.abs(score_ref)))
    assert_within(score - gm.score_samples(x), top + 4 * EPS * (1 + np.abs(score_ref)))

    resp = np.asarray(jaxgmm.predict_proba(jnp.asarray(x, DTYPE), jparams(p)))
    assert resp.shape == (N, K) and resp.dtype == NP_DTYPE
    # d r_k = r_k (d a_k - sum_j r_j d a_j): at most 2 r_k max |d a| (and below 1).
    resp_ref = gm.predict_proba(x)
    assert_within(resp - resp_ref, 2 * resp_ref * top[:, None] + 4 * EPS)
    np.testing.assert_allclose(resp_ref, np.exp(a_ref - score_ref[:, None]), atol=1e-12)

    labels = np.asarray(jaxgmm.predict(jnp.asarray(x, DTYPE), jparams(p)))
    assert labels.dtype == np.int32
    ordered = np.sort(a_ref, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * top  # no rounding can swap the top two
    assert clear.sum() > N // 2
    np.testing.assert_array_equal(labels[clear], np.argmax(a_ref, axis=1)[clear])
    np.testing.assert_array_equal(labels[clear], gm.predict(x)[clear])

    density = np.asarray(jaxgmm.pdf(jnp.asarray(x, DTYPE), jparams(p)), np.float64)
    near = score_ref > -60  # exp of the far points' log densities underflows float32
    log_err = top[near] + 4 * EPS * (1 + np.abs(score_ref[near]))
    assert_within(density[near] / np.exp(score_ref[near]) - 1, 2 * log_err)


def test_dimensions_in_very_different_units():
    """Variances from 1e8 to 1e-8 (float32 data measured in units 1e8 apart): still
    the reference's densities, and such parameters are accepted.  Factored as they
    stand, the pivot floor of the E-step (``D eps`` times the largest variance, 36
    in float32) would replace the small variances."""
    units = np.array([1e4, 1.0, 1e-4])
    base = params_of("full")
    p = as_float(MultivariateParams(base.weights, base.means * units,
                                    base.covariances * np.outer(units, units)))
    x = np.asarray(points() * units, NP_DTYPE).astype(np.float64)
    a_ref = ref.log_joint(x, *p)
    score_ref = ref.logsumexp(a_ref, axis=1)
    top = np.max(log_joint_bound(x, p), axis=1)
    score = np.asarray(jaxgmm.score_samples(jnp.asarray(x, DTYPE), jparams(p)), np.float64)
    assert_within(score - score_ref, top + 4 * EPS * (1 + np.abs(score_ref)))
    resp = np.asarray(jaxgmm.predict_proba(jnp.asarray(x, DTYPE), jparams(p)), np.float64)
    resp_ref = np.exp(a_ref - score_ref[:, None])
    assert_within(resp - resp_ref, 2 * resp_ref * top[:, None] + 4 * EPS)


def test_result_is_accepted_and_zero_weight_components_are_ignored():
    p = jparams(params_of("full"))
    x = jnp.asarray(points(), DTYPE)
    result = FitResult(p, jnp.zeros((), DTYPE), 0, 0, True)
    for fn in (jaxgmm.predict_proba, jaxgmm.predict, jaxgmm.score_samples):
        np.testing.assert_array_equal(fn(x, result), fn(x, p))
    # A fourth component of weight 0 (its covariance one of the others', so the
    # per-dimension units stay the same) changes nothing, wherever it sits.
    p0 = MultivariateParams(jnp.concatenate([p.weights, jnp.zeros((1,), DTYPE)]),
                            jnp.concatenate([p.means, jnp.full((1, D), 50.0, DTYPE)]),
                            jnp.concatenate([p.covariances, p.covariances[:1]]))
    resp = np.asarray(jaxgmm.predict_proba(x, p0))
    assert np.all(resp[:, 3] == 0)
    np.testing.assert_allclose(resp[:, :3], jaxgmm.predict_proba(x, p), rtol=4 * EPS, atol=4 * EPS)


def test_the_data_decide_the_float_type():
    p = params_of("diag")  # float64 NumPy parameters
    x32 = np.asarray(points(), np.float32)
    out = jaxgmm.score_samples(x32, p)
    assert out.dtype == jnp.float32
    integers = np.round(points()).astype(np.int64)
    assert jaxgmm.predict_proba(integers, p).dtype == DTYPE  # integers: JAX's default float


# --------------------------------------------------------------------------- #
# Batches, jit and vmap
# --------------------------------------------------------------------------- #
def _batch_of_params():
    """Two mixtures ``(2, K, ...)``: the full one and a shifted tied one."""
    a, b = params_of("full"), params_of("tied")
    b = b._replace(means=b.means + 0.5)
    return MultivariateParams(*(np.stack(f) for f in zip(a, b)))


def test_batches_broadcast_like_fit():
    """x ``(3, 1, n, D)`` against params ``(2, K, ...)``: out ``(3, 2, ...)``, each the
    unbatched call."""
    pb = _batch_of_params()
    xs = np.stack([points(s) for s in range(3)])[:, None]

    def one(fn, i, j):
        return np.asarray(fn(jnp.asarray(xs[i, 0], DTYPE), jparams(MultivariateParams(*(f[j] for f in pb)))))

    for fn, tail in [(jaxgmm.predict_proba, (N, K)), (jaxgmm.score_samples, (N,)), (jaxgmm.predict, (N,))]:
        out = np.asarray(fn(jnp.asarray(xs, DTYPE), jparams(pb)))
        assert out.shape == (3, 2) + tail
        for i in range(3):
            for j in range(2):
                np.testing.assert_allclose(out[i, j], one(fn, i, j), rtol=4 * EPS, atol=4 * EPS)


def test_jit_and_vmap():
    pb = jparams(_batch_of_params())
    x = jnp.asarray(points(), DTYPE)
    batched = np.asarray(jaxgmm.score_samples(x, pb))
    np.testing.assert_allclose(jax.vmap(lambda p: jaxgmm.score_samples(x, p))(pb), batched,
                               rtol=4 * EPS, atol=4 * EPS)
    p = jparams(params_of("full"))
    jitted = jax.jit(jaxgmm.score_samples)
    np.testing.assert_allclose(jitted(x, p), jaxgmm.score_samples(x, p), rtol=4 * EPS, atol=4 * EPS)
    # Traced values are never raised on: a singular covariance under jit gives
    # finite values (the concrete one is refused).
    singular = p._replace(covariances=p.covariances.at[0].set(jnp.ones((D, D), DTYPE)))
    assert np.all(np.isfinite(jitted(x, singular)))
    with pytest.raises(ValueError, match="positive definite"):
        jaxgmm.score_samples(x, singular)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_errors_are_clear():
    p = jparams(params_of("full"))
    x = jnp.asarray(points(), DTYPE)
    with pytest.raises(ValueError, match=r"means \(\.\.\., K, 2\).*D = 2"):
        jaxgmm.predict_proba(x[:, :2], p)
    with pytest.raises(ValueError, match="number of components K"):
        jaxgmm.score_samples(x, p._replace(weights=p.weights[:2] / jnp.sum(p.weights[:2])))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n, 3\)"):
        jaxgmm.predict(x[:, 0], p)
    with pytest.raises(ValueError, match="batch shapes do not broadcast"):
        jaxgmm.score_samples(jnp.stack([x, x]), MultivariateParams(*(jnp.stack([f] * 3) for f in p)))
    with pytest.raises(ValueError, match="sum to 1"):
        jaxgmm.pdf(x, p._replace(weights=p.weights * 2))
    result = FitResult(p, jnp.zeros((), DTYPE), 0, 0, True)
    for fn in (jaxgmm.cdf, jaxgmm.sf, jaxgmm.logcdf, jaxgmm.logsf, jaxgmm.ppf, jaxgmm.isf):
        for params in (p, result):
            with pytest.raises(TypeError, match=f"{fn.__name__} applies to univariate mixtures"):
                fn(x, params)


# --------------------------------------------------------------------------- #
# The estimator with D > 1 features
# --------------------------------------------------------------------------- #
IRIS = load_iris().data  # (150, 4), float64
IRIS_SD = IRIS.std(0)
N_IRIS = IRIS.shape[0]
# Converged estimates meet the exact MLE to about 100 x the stopping tolerance, in
# units of the data's standard deviations (README, "Convergence rule").
PARAM_TOL = 100 * jaxgmm.default_tol(DTYPE)


def iris_start(kind, x=IRIS):
    """Equal weights, one flower of each species as means, the data's covariance
    in the shape of the model: a start both libraries take."""
    cov = np.cov(np.asarray(x).T, bias=True)
    if kind == "diag":
        cov = np.diag(np.diag(cov))
    elif kind == "spherical":
        cov = np.mean(np.diag(cov)) * np.eye(cov.shape[0])
    means = np.asarray(x)[[0, 50, 100]]
    return MultivariateParams(np.full(3, 1 / 3), means, np.broadcast_to(cov, (3,) + cov.shape).copy())


def sklearn_from(start, kind, max_iter):
    """scikit-learn's EM from ``start`` for exactly ``max_iter`` iterations
    (``tol=0``), no covariance regularisation."""
    precision = np.linalg.inv(np.asarray(start.covariances))
    init = {"full": precision, "tied": precision[0], "diag": np.diagonal(precision, axis1=1, axis2=2),
            "spherical": precision[:, 0, 0]}[kind]
    sk = SkGaussianMixture(3, covariance_type=kind, weights_init=start.weights, means_init=start.means,
                           precisions_init=init, reg_covar=0.0, tol=0.0, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return sk.fit(IRIS)


def ours_from(start, kind, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "jaxgmm.GaussianMixture: the best fit did not converge")
        return GaussianMixture(3, covariance_type=kind, init_params=start, **kwargs).fit(IRIS)


def full_covariances(est_or_sk, kind):
    cov = np.asarray(est_or_sk.covariances_, np.float64)
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (3, 4, 4))
    var = cov if kind == "diag" else cov[:, None] * np.ones(4)
    return var[:, :, None] * np.eye(4)


def scaled_error(ours, sk, kind):
    """Largest difference of weights, means (in data sds) and covariance entries
    (in data variances)."""
    w = np.max(np.abs(ours.weights_ - sk.weights_))
    m = np.max(np.abs(ours.means_ - sk.means_) / IRIS_SD)
    c = np.max(np.abs(full_covariances(ours, kind) - full_covariances(sk, kind)) / np.outer(IRIS_SD, IRIS_SD))
    return max(w, m, c)


@pytest.mark.parametrize("kind", KINDS)
def test_same_iterations_as_sklearn_on_iris(kind):
    """``tol=0``: exactly ``t`` EM iterations from one start, the same iterate as
    scikit-learn's, and every fitted attribute in scikit-learn's shape."""
    t = 20
    start = iris_start(kind)
    sk = sklearn_from(start, kind, t)
    ours = ours_from(start, kind, tol=0.0, max_iter=t)
    assert ours.n_iter_ == t and ours.status_ == Status.MAX_ITER and not ours.converged_
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(ours, name).shape == getattr(sk, name).shape, name
        assert getattr(ours, name).dtype == NP_DTYPE, name
    assert ours.n_features_in_ == 4
    # Standard errors are the function's, at the returned (here not converged) iterate.
    se = jaxgmm.standard_errors(np.asarray(IRIS, NP_DTYPE), ours.result_)
    assert isinstance(ours.standard_errors_, MultivariateParams)
    for got, want in zip(ours.standard_errors_, se):
        np.testing.assert_array_equal(got, np.asarray(want))
    assert ours.standard_errors_.covariances.shape == (3, 4, 4)
    assert isinstance(ours.params_, MultivariateParams) and ours.params_.covariances.shape == (3, 4, 4)
    assert scaled_error(ours, sk, kind) <= t * rtol_for(N_IRIS)
    # scikit-learn's lower_bound_ belongs to the iterate before its last M-step;
    # score() is of the returned parameters on both sides.
    np.testing.assert_allclose(ours.score(IRIS), sk.score(IRIS), rtol=t * rtol_for(N_IRIS))
    assert ours._n_parameters() == sk._n_parameters()
    # The precisions are the covariances' inverses, their factors scikit-learn's kind.
    chol = np.asarray(ours.precisions_cholesky_, np.float64)
    if kind in ("full", "tied"):
        cov = np.asarray(ours.covariances_, np.float64)
        product = chol @ np.swapaxes(chol, -1, -2)
        kappa = np.linalg.cond(cov)
        eye = np.broadcast_to(np.eye(4), cov.shape)
        np.testing.assert_allclose(product @ cov, eye, atol=16 * EPS * np.max(kappa))
        assert np.all(np.tril(chol, -1) == 0)  # upper triangular
        # Each entry of P P^T sums products rounded to EPS of |P|'s entries: at
        # most EPS times the largest diagonal entry.
        np.testing.assert_allclose(ours.precisions_, product, rtol=0, atol=4 * EPS * np.max(np.abs(product)))
    else:
        np.testing.assert_allclose(chol ** 2 * ours.covariances_, 1.0, rtol=4 * EPS)


def _kinds_converged():
    # scikit-learn needs ~1000 iterations for the full model's slow EM rate here (0.9):
    # seconds on a loaded machine; the other three reach float64's limit in 200.
    return [pytest.param("full", marks=pytest.mark.slow), "diag", "spherical", "tied"]


@pytest.mark.parametrize("kind", _kinds_converged())
def test_same_start_same_fit_as_sklearn_on_iris(kind):
    """Converged from one start (scikit-learn run to its float64 limit): the same
    maximum, and the same predictions and criteria."""
    start = iris_start(kind)
    sk = sklearn_from(start, kind, 1000 if kind == "full" else 200)
    ours = ours_from(start, kind)
    assert ours.converged_ and ours.status_ == Status.CONVERGED
    assert scaled_error(ours, sk, kind) <= PARAM_TOL
    # The log-likelihood is flat at the maximum: parameter errors enter squared.
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=rtol_for(N_IRIS) + PARAM_TOL ** 2)
    resp, resp_sk = ours.predict_proba(IRIS), sk.predict_proba(IRIS)
    np.testing.assert_allclose(resp, resp_sk, atol=100 * PARAM_TOL)
    np.testing.assert_allclose(ours.score_samples(IRIS), sk.score_samples(IRIS), rtol=100 * PARAM_TOL)
    ordered = np.sort(resp_sk, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 200 * PARAM_TOL
    np.testing.assert_array_equal(ours.predict(IRIS)[clear], sk.predict(IRIS)[clear])
    np.testing.assert_allclose(ours.bic(IRIS), sk.bic(IRIS), rtol=100 * PARAM_TOL)
    np.testing.assert_allclose(ours.aic(IRIS), sk.aic(IRIS), rtol=100 * PARAM_TOL)


def test_pipeline_clone_and_fixed_with_features():
    """In a Pipeline after StandardScaler, the same fit as on the scaled data; clone
    keeps a MultivariateParams start and mask; a held mean stays exactly put."""
    z = StandardScaler().fit_transform(IRIS)
    start = iris_start("tied", z)
    pipe = Pipeline([("scale", StandardScaler()), ("gmm", GaussianMixture(3, covariance_type="tied",
                                                                          init_params=start))])
    labels = pipe.fit(IRIS).predict(IRIS)
    alone = GaussianMixture(3, covariance_type="tied", init_params=start).fit(z)
    np.testing.assert_array_equal(labels, alone.predict(z))
    np.testing.assert_allclose(pipe.score(IRIS), alone.score(z), rtol=rtol_for(N_IRIS))
    mask = MultivariateParams(weights=False, means=[True, False, False], covariances=False)
    est = GaussianMixture(3, covariance_type="tied", init_params=start, fixed=mask, tol=1e-4)
    twin = clone(est)
    assert est.get_params()["fixed"] is mask  # stored unchanged
    assert twin is not est and twin.get_params()["fixed"] == mask and not hasattr(twin, "weights_")
    held = twin.fit(z)
    np.testing.assert_array_equal(held.means_[0], np.asarray(start.means[0], NP_DTYPE))
    assert held._n_parameters() == alone._n_parameters() - 4


def test_kmeans_start_and_the_methods():
    """A k-means++ start: attributes, methods and sampling for D = 4 (one start:
    the fit is the program of the explicit starts above)."""
    est = GaussianMixture(3, covariance_type="full", random_state=0).fit(IRIS)
    assert est.converged_ and est.n_features_in_ == 4
    assert est.means_.shape == (3, 4) and est.covariances_.shape == (3, 4, 4)
    np.testing.assert_array_equal(est.fit_predict(IRIS), est.predict(IRIS))
    np.testing.assert_allclose(est.score(IRIS), np.mean(est.score_samples(IRIS)), rtol=4 * EPS)
    np.testing.assert_allclose(est.lower_bound_, est.score(IRIS), rtol=rtol_for(N_IRIS))
    np.testing.assert_allclose(est.predict_proba(IRIS).sum(1), 1.0, rtol=4 * EPS)
    samples, labels = est.sample(500)
    assert samples.shape == (500, 4) and samples.dtype == NP_DTYPE and labels.shape == (500,)
    np.testing.assert_array_equal(samples, est.sample(500)[0])  # int random_state: reproducible
    assert np.all(np.diff(labels) >= 0)  # grouped by component, as scikit-learn's
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 4 features"):
        est.predict(IRIS[:, :3])
    with pytest.raises(ValueError, match="Reshape your data"):
        est.score_samples(IRIS[0])


@pytest.mark.parametrize("kind", KINDS)
def test_sklearn_conversions_round_trip(kind):
    sk = SkGaussianMixture(3, covariance_type=kind, random_state=0).fit(IRIS)
    ours = GaussianMixture.from_sklearn(sk)
    assert ours.n_features_in_ == 4 and ours.covariance_type == kind
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(ours, name).shape == getattr(sk, name).shape, name
    # Stored in the library's float: rounded once (and matrices symmetrised:
    # scikit-learn's tied ones are symmetric to about 50 ulps).
    sk_cov = sk.covariances_
    if kind in ("full", "tied"):
        sk_cov = 0.5 * (sk_cov + np.swapaxes(sk_cov, -1, -2))
    np.testing.assert_allclose(ours.covariances_, sk_cov, rtol=EPS)
    x = np.asarray(IRIS, NP_DTYPE)
    params = MultivariateParams(sk.weights_, sk.means_, full_covariances(sk, kind))
    top = np.max(log_joint_bound(x, params), axis=1)
    score_sk = sk.score_samples(x.astype(np.float64))
    assert_within(ours.score_samples(IRIS) - score_sk, top + 4 * EPS * (1 + np.abs(score_sk)))
    back = ours.to_sklearn()
    assert back.n_features_in_ == 4
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(back, name).shape == getattr(sk, name).shape, name
    np.testing.assert_allclose(back.covariances_, sk_cov, rtol=EPS)
    kappa = np.max(np.linalg.cond(full_covariances(sk, kind)))
    np.testing.assert_allclose(back.precisions_cholesky_, sk.precisions_cholesky_, rtol=4 * EPS * kappa,
                               atol=4 * EPS * kappa * np.max(np.abs(sk.precisions_cholesky_)))
    np.testing.assert_allclose(back.predict_proba(x), ours.predict_proba(x), atol=2 * np.max(top) + 4 * EPS)
    assert back.sample(3)[0].shape == (3, 4)


def test_estimator_errors_for_features():
    start = iris_start("full")
    with pytest.raises(ValueError, match="init_params='quantile' applies to one feature"):
        GaussianMixture(3, init_params="quantile").fit(IRIS)
    with pytest.raises(ValueError, match="init_params is a MixtureParams"):
        GaussianMixture(2, init_params=jaxgmm.MixtureParams([0.5, 0.5], [0.0, 1.0], [1.0, 1.0])).fit(IRIS)
    with pytest.raises(ValueError, match="init_params is a MultivariateParams"):
        GaussianMixture(3, init_params=start).fit(IRIS[:, 0])
    with pytest.raises(ValueError, match=r"init_params must have weights \(3,\), means \(3, 3\)"):
        GaussianMixture(3, init_params=start).fit(IRIS[:, :3])
    with pytest.raises(ValueError, match="covariance_type='tied'"):
        GaussianMixture(3, equal_scales=True).fit(IRIS)
    with pytest.raises(ValueError, match="at least as many observations as free parameters"):
        GaussianMixture(3).fit(IRIS[:20])
    with pytest.raises(ValueError, match="fixed parameters take their values from the start"):
        GaussianMixture(3, fixed="means").fit(IRIS)
    univariate = GaussianMixture.from_sklearn(SkGaussianMixture(2, random_state=0).fit(IRIS[:, :1]))
    with pytest.raises(ValueError, match="expecting 1 features as input"):
        univariate.predict(IRIS)
