"""Naive reference kernels of the joint registration (``pcvae_sklearn.fuse``), for the tests.

Every fast, vectorised kernel of the fusion is tested against one of these:
plain loops over localizations, centres and particles, scipy's densities and
general-purpose optimisers. They are slow and only the tests use them.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.spatial.transform import Rotation
from scipy.stats import multivariate_normal

__all__ = [
    "e_step_reference",
    "weighted_procrustes_reference",
    "update_sigma2_reference",
    "e_step_anisotropic_reference",
    "anisotropic_procrustes_reference",
]


def _posterior(logp, out_term):
    """Responsibilities and log-likelihood from the log densities ``logp`` (m, K) and the outlier term."""
    terms = np.concatenate([logp, np.full((len(logp), 1), out_term)], axis=1)
    top = terms.max(axis=1, keepdims=True)
    loglik = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    return np.exp(logp - loglik[:, None]), loglik


def e_step_reference(registered, loc_var, centres, sigma2, mixture):
    """Naive double loop over localizations and centres, in log space."""
    log_gauss, out_term = mixture
    m, d = registered.shape
    n_comp = centres.shape[0]
    logp = np.zeros((m, n_comp))
    for i in range(m):
        for k in range(n_comp):
            var = sigma2 + loc_var[i]
            diff = registered[i] - centres[k]
            logp[i, k] = log_gauss - np.log(n_comp) + np.sum(-0.5 * diff**2 / var - 0.5 * np.log(2 * np.pi * var))
    return _posterior(logp, out_term)


def weighted_procrustes_reference(src, dst, weights, offsets):
    """One particle at a time, with its own SVD."""
    n = len(offsets) - 1
    d = src.shape[1]
    rotations = np.zeros((n, d, d))
    translations = np.zeros((n, d))
    for j in range(n):
        s = src[offsets[j] : offsets[j + 1]]
        t = dst[offsets[j] : offsets[j + 1]]
        w = weights[offsets[j] : offsets[j + 1], 0]
        ms = (w[:, None] * s).sum(0) / w.sum()
        mt = (w[:, None] * t).sum(0) / w.sum()
        h = ((t - mt) * w[:, None]).T @ (s - ms)
        u, _, vt = np.linalg.svd(h)
        dd = np.eye(d)
        dd[-1, -1] = np.sign(np.linalg.det(u @ vt))
        rotations[j] = u @ dd @ vt
        translations[j] = mt - rotations[j] @ ms
    return rotations, translations


def update_sigma2_reference(registered, loc_var, resp, centres, sigma2, floor):
    """Maximise the expected log-likelihood over ``sigma2`` numerically."""
    diff2 = (registered[:, None, :] - centres[None, :, :]) ** 2  # (m, K, d)

    def negative(log_s2):
        var = np.exp(log_s2) + loc_var[:, None, :]
        return float((resp[:, :, None] * (diff2 / var + np.log(var))).sum())

    res = minimize_scalar(negative, bounds=(np.log(max(floor, 1e-12)), np.log(1e8)), method="bounded",
                          options={"xatol": 1e-10})
    return max(float(np.exp(res.x)), floor)


def e_step_anisotropic_reference(registered, covariance, centres, mixture):
    """Naive double loop with scipy's multivariate normal density."""
    log_gauss, out_term = mixture
    m = registered.shape[0]
    n_comp = centres.shape[0]
    logp = np.zeros((m, n_comp))
    for i in range(m):
        for k in range(n_comp):
            logp[i, k] = log_gauss - np.log(n_comp) + multivariate_normal.logpdf(registered[i], centres[k], covariance[i])
    return _posterior(logp, out_term)


def anisotropic_procrustes_reference(src, dst, weights, offsets):
    """One particle at a time, with scipy's general optimiser over a rotation vector."""
    n = len(offsets) - 1
    rotations = np.zeros((n, 3, 3))
    translations = np.zeros((n, 3))
    for j in range(n):
        y = src[offsets[j] : offsets[j + 1]]
        z = dst[offsets[j] : offsets[j + 1]]
        w = weights[offsets[j] : offsets[j + 1]]

        def cost(params, y=y, z=z, w=w):
            q = Rotation.from_rotvec(params[:3]).as_matrix()
            return float((w * (z @ q.T - params[3:] - y) ** 2).sum())

        best = None
        for start in Rotation.random(8, random_state=j).as_rotvec():
            res = minimize(cost, np.concatenate([start, np.zeros(3)]), method="BFGS", options={"gtol": 1e-10})
            if best is None or res.fun < best.fun:
                best = res
        q = Rotation.from_rotvec(best.x[:3]).as_matrix()
        rotations[j] = q.T
        translations[j] = q.T @ best.x[3:]
    return rotations, translations
