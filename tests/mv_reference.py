"""An independent float64 NumPy reference of multivariate EM, written from the equations.

Nothing shared with the library: densities from ``slogdet`` and ``solve`` (no
Cholesky factors), raw weighted sums in the M-step with the scatter taken about
the new means in a second pass, no standardisation, no centring tricks, plain
loops over components.  Parameters are float64 arrays: weights ``(K,)``, means
``(K, D)``, covariances ``(K, D, D)``.  Covariance types as scikit-learn's.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def mvn_logpdf(x, mean, cov):
    """``log N(x_i | mean, cov)`` for the rows of ``x`` ``(n, D)``."""
    d = x - mean
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0, "covariance must be positive definite"
    maha = np.sum(d * np.linalg.solve(cov, d.T).T, axis=1)
    return -0.5 * (x.shape[1] * LOG_2PI + logdet + maha)


def log_joint(x, weights, means, covs):
    """``(n, K)`` array of log(pi_k) + log N(x_i | mu_k, Sigma_k)."""
    x = np.asarray(x, np.float64)
    return np.stack([np.log(weights[k]) + mvn_logpdf(x, means[k], covs[k]) for k in range(len(weights))], axis=1)


def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _weights_of(x, sample_weight):
    return np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)


def e_step(x, weights, means, covs, sample_weight=None):
    """Responsibilities ``(n, K)`` and the (weighted) log-likelihood."""
    a = log_joint(x, weights, means, covs)
    lse = logsumexp(a, axis=1)
    return np.exp(a - lse[:, None]), float(np.sum(_weights_of(x, sample_weight) * lse))


def loglik(x, weights, means, covs, sample_weight=None):
    return e_step(x, weights, means, covs, sample_weight)[1]


def m_step(x, resp, weights, means, covs, covariance_type="full", fixed_w=None, fixed_m=None, fixed_c=None,
           sample_weight=None):
    """Constrained M-step; ``fixed_*`` are boolean ``(K,)`` masks (None = all free)."""
    x = np.asarray(x, np.float64)
    n, dim = x.shape
    k = resp.shape[1]
    fw, fm, fc = (np.zeros(k, bool) if f is None else np.asarray(f, bool) for f in (fixed_w, fixed_m, fixed_c))
    wr = _weights_of(x, sample_weight)[:, None] * resp
    nk = wr.sum(0)
    # Weights: maximise sum_k nk log pi_k s.t. the free weights sum to 1 - fixed mass.
    new_w = np.array(weights, np.float64)
    if (~fw).any():
        new_w[~fw] = (1.0 - new_w[fw].sum()) * nk[~fw] / nk[~fw].sum()
    new_m = np.array(means, np.float64)
    scatter = np.zeros((k, dim, dim))
    for j in range(k):
        if not fm[j]:
            new_m[j] = (wr[:, j:j + 1] * x).sum(0) / nk[j]
        d = x - new_m[j]
        scatter[j] = (wr[:, j, None] * d).T @ d
    new_c = np.array(covs, np.float64)
    for j in range(k):
        if fc[j]:
            continue
        if covariance_type == "full":
            new_c[j] = scatter[j] / nk[j]
        elif covariance_type == "diag":
            new_c[j] = np.diag(np.diag(scatter[j]) / nk[j])
        elif covariance_type == "spherical":
            new_c[j] = np.trace(scatter[j]) / (dim * nk[j]) * np.eye(dim)
        elif covariance_type == "tied":
            new_c[j] = scatter.sum(0) / nk.sum()
        else:
            raise ValueError(covariance_type)
    return new_w, new_m, new_c


def em_iterations(x, weights, means, covs, n_iter, sample_weight=None, **model):
    """``n_iter`` EM iterations: the parameters and the log-likelihood of every
    iterate (``logliks[0]`` of the start, ``len(logliks) == n_iter + 1``)."""
    p = tuple(np.array(f, np.float64) for f in (weights, means, covs))
    logliks = []
    for _ in range(n_iter):
        resp, ll = e_step(x, *p, sample_weight)
        logliks.append(ll)
        p = m_step(x, resp, *p, sample_weight=sample_weight, **model)
    logliks.append(loglik(x, *p, sample_weight))
    return p, np.array(logliks)
