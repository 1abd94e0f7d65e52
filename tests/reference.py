"""An independent float64 NumPy reference of EM, written straight from the equations.

No tricks shared with the library: responsibilities from the densities themselves
(via logsumexp only to avoid underflow), raw weighted sums in the M-step, no
standardisation, no centring.  Parameters are plain ``(K,)`` float64 arrays.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def normal_logpdf(x, mean, scale):
    return -0.5 * LOG_2PI - np.log(scale) - 0.5 * ((x - mean) / scale) ** 2


def log_joint(x, weights, means, scales):
    """``(n, K)`` array of log(pi_k) + log N(x_i | mu_k, sigma_k)."""
    x = np.asarray(x, np.float64)[:, None]
    return np.log(weights)[None, :] + normal_logpdf(x, np.asarray(means)[None, :], np.asarray(scales)[None, :])


def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def e_step(x, weights, means, scales, sample_weight=None):
    """Responsibilities ``(n, K)`` and the (weighted) log-likelihood."""
    a = log_joint(x, weights, means, scales)
    lse = logsumexp(a, axis=1)
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return np.exp(a - lse[:, None]), float(np.sum(w * lse))


def loglik(x, weights, means, scales, sample_weight=None):
    return e_step(x, weights, means, scales, sample_weight)[1]


def m_step(x, resp, weights, means, scales, fixed_w=None, fixed_m=None, fixed_s=None,
           equal_scales=False, sample_weight=None):
    """Constrained M-step. ``fixed_*`` are boolean ``(K,)`` masks (None = all free)."""
    x = np.asarray(x, np.float64)
    k = resp.shape[1]
    fw = np.zeros(k, bool) if fixed_w is None else np.asarray(fixed_w, bool)
    fm = np.zeros(k, bool) if fixed_m is None else np.asarray(fixed_m, bool)
    fs = np.zeros(k, bool) if fixed_s is None else np.asarray(fixed_s, bool)
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    wr = w[:, None] * resp
    nk = wr.sum(0)
    # Weights: maximise sum_k nk log pi_k s.t. free weights sum to 1 - fixed mass.
    new_w = np.array(weights, np.float64)
    free_mass = 1.0 - new_w[fw].sum()
    if (~fw).any():
        new_w[~fw] = free_mass * nk[~fw] / nk[~fw].sum()
    new_m = np.where(fm, means, (wr * x[:, None]).sum(0) / nk)
    ss = (wr * (x[:, None] - new_m[None, :]) ** 2).sum(0)
    if equal_scales:
        pooled = np.sqrt(ss.sum() / w.sum())
        new_s = np.where(fs, scales, pooled)
    else:
        new_s = np.where(fs, scales, np.sqrt(ss / nk))
    return new_w, new_m, new_s


def em_iterations(x, weights, means, scales, n_iter, sample_weight=None, **model):
    """Run ``n_iter`` EM iterations; returns the parameters and every log-likelihood.

    ``logliks[t]`` is the log-likelihood of the t-th iterate (``logliks[0]`` of the
    start), so ``len(logliks) == n_iter + 1``.
    """
    p = (np.asarray(weights, np.float64), np.asarray(means, np.float64), np.asarray(scales, np.float64))
    logliks = []
    for _ in range(n_iter):
        resp, ll = e_step(x, *p, sample_weight)
        logliks.append(ll)
        p = m_step(x, resp, *p, sample_weight=sample_weight, **model)
    logliks.append(loglik(x, *p, sample_weight))
    return p, np.array(logliks)


def em_fit(x, weights, means, scales, tol=1e-13, max_iter=100_000, sample_weight=None, **model):
    """EM to (numerical) convergence: stops when no parameter moves by more than tol."""
    p = (np.asarray(weights, np.float64), np.asarray(means, np.float64), np.asarray(scales, np.float64))
    for it in range(max_iter):
        resp, _ = e_step(x, *p, sample_weight)
        new = m_step(x, resp, *p, sample_weight=sample_weight, **model)
        change = max(np.max(np.abs(a - b)) for a, b in zip(new, p))
        p = new
        if change < tol:
            break
    return p, loglik(x, *p, sample_weight), it + 1


def contraction_rate(x, weights, means, scales, sample_weight=None, **model):
    """Linear convergence rate of EM near the optimum, from the reference iterates.

    The ratio of successive largest parameter changes (measured in the same units
    as the library's rule: weights absolute, means and scales over the data's sd),
    maximised over the iterations where it is well defined (changes between 1e-3
    and 1e-11, above rounding); conservative by construction.
    """
    x = np.asarray(x, np.float64)
    sd = x.std()
    p = (np.asarray(weights, np.float64), np.asarray(means, np.float64), np.asarray(scales, np.float64))
    changes = []
    for _ in range(100_000):
        resp, _ = e_step(x, *p, sample_weight)
        new = m_step(x, resp, *p, sample_weight=sample_weight, **model)
        changes.append(max(np.max(np.abs(new[0] - p[0])),
                           np.max(np.abs(new[1] - p[1])) / sd, np.max(np.abs(new[2] - p[2])) / sd))
        p = new
        if changes[-1] < 1e-12:
            break
    c = np.array(changes)
    ratios = c[1:] / c[:-1]
    ok = (c[:-1] < 1e-3) & (c[1:] > 1e-11)
    if not ok.any():
        ok = np.ones_like(ratios, bool)
    return float(np.clip(np.max(ratios[ok]), 0.0, 0.9999))
