"""Vectorised kernels of the JRMPC-style joint registration (EM).

All particles share one Gaussian mixture: ``K`` centres, one isotropic
variance ``sigma2`` to which each localization's own precision is added, and
a uniform outlier term. Every kernel works on the packed form of
:class:`~pcvae_sklearn._ragged.Particles` (flat coordinates plus offsets):
one E-step is a few ``(n_localizations, K)`` matrix products and one
``exp``; the M-step is segment sums plus one batched SVD over all particles.
Nothing here loops over particles in Python.

Notation (shapes lead):

- ``src`` (m, d): localizations in their particle's own frame, centred on
  the particle's centroid;
- ``offsets`` (n + 1,): particle ``j`` owns rows ``offsets[j]:offsets[j+1]``;
- ``rotations`` (n, d, d), ``translations`` (n, d): registered localization is
  ``src @ R_j.T + t_j``;
- ``loc_var`` (m, d): each localization's own variance per axis (nm^2), zero
  where no precision is known;
- ``centres`` (K, d), ``sigma2`` (float).

References
----------
Evangelidis, G. D. and Horaud, R., "Joint alignment of multiple point sets
with batch and incremental expectation-maximization", IEEE TPAMI 40 (2018).

Wang, W., Heydarian, H., Huijben, T. A. P. M., Stallinga, S. and Rieger, B.,
"Joint registration of multiple point clouds for fast particle fusion in
localization microscopy", Bioinformatics 38 (2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._ragged import subsample_rows as _subsample_packed

__all__ = [
    "EMState",
    "Responsibilities",
    "e_step",
    "weighted_procrustes",
    "update_centres",
    "update_sigma2",
    "run_em",
    "orientation_grid",
    "search_orientations",
    "top_orientations",
    "particle_loglik",
    "segment_sum",
    "grid_spacing",
    "subsample_rows",
    "local_precisions",
    "e_step_anisotropic",
    "update_centres_anisotropic",
    "update_sigma2_anisotropic",
    "anisotropic_procrustes",
    "rodrigues",
]

# log(2 pi)
_LOG_2PI = float(np.log(2.0 * np.pi))


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum ``values`` (m, ...) over each particle; particles are non-empty."""
    return np.add.reduceat(values, offsets[:-1], axis=0)


def apply_transforms(src, rotations, translations, lengths):
    """Registered coordinates ``src_i @ R_j.T + t_j`` for every localization, shape (m, d)."""
    index = np.repeat(np.arange(len(lengths)), lengths)
    return np.einsum("mab,mb->ma", rotations[index], src) + translations[index]


# ----------------------------------------------------------------- E-step
@dataclass
class Responsibilities:
    """Responsibilities in factored form: ``resp = weights * scale[:, None]``.

    Keeping the row scale apart saves a pass over the ``(m, K)`` matrix:
    products with ``resp`` are products with ``weights``, rescaled per row.
    """

    weights: np.ndarray  # (m, K), unnormalised
    scale: np.ndarray  # (m,)
    owned: np.ndarray  # (m,) sum over centres of resp (1 minus the outlier share)
    loglik: np.ndarray  # (m,) log-density of every localization

    def dense(self) -> np.ndarray:
        """The normalised ``(m, K)`` responsibilities."""
        return self.weights * self.scale[:, None]

    def times(self, right: np.ndarray) -> np.ndarray:
        """``resp @ right`` for ``right`` of shape (K, c)."""
        return (self.weights @ right) * self.scale[:, None]

    def transposed_times(self, right: np.ndarray) -> np.ndarray:
        """``resp.T @ right`` for ``right`` of shape (m, c)."""
        return self.weights.T @ (right * self.scale[:, None])


def e_step(registered, loc_var, centres, sigma2, mixture) -> Responsibilities:
    """Responsibilities of every centre for every localization.

    Parameters
    ----------
    registered : ndarray of shape (m, d)
        Localizations in the common frame.
    loc_var : ndarray of shape (m, d)
        Per-axis localization variance added to ``sigma2``.
    centres : ndarray of shape (K, d)
    sigma2 : float
    mixture : tuple of float
        ``(log(1 - w), log(w / volume))`` for outlier weight ``w``; the
        second is ``-inf`` for no outlier term. Each centre has mixture
        weight ``(1 - w) / K``.

    Returns
    -------
    Responsibilities
        ``resp[i, k]`` is the posterior probability of centre ``k`` for
        localization ``i``; ``loglik`` the log-density of each localization.

    Notes
    -----
    The log-density of localization ``i`` under centre ``k`` is, up to a
    per-localization constant, linear in ``[x_k, x_k**2, 1]``: the whole
    ``(m, K)`` matrix is one matrix product. It is shifted by its upper bound
    (the value at zero distance) instead of its row maximum, which avoids a
    reduction over the rows; rows where every term underflows (points very
    far from every centre) are redone with the exact row maximum.
    """
    m, d = registered.shape
    n_comp = centres.shape[0]
    var = sigma2 + loc_var  # (m, d)
    inv = 1.0 / var
    top = mixture[0] - np.log(n_comp) - 0.5 * (np.log(var).sum(axis=1) + d * _LOG_2PI)
    left = np.empty((m, 2 * d + 1))
    np.multiply(inv, registered, out=left[:, :d])
    left[:, d : 2 * d] = inv
    left[:, 2 * d] = -0.5 * (left[:, :d] * registered).sum(axis=1)
    right = np.empty((2 * d + 1, n_comp))
    right[:d] = centres.T
    right[d : 2 * d] = -0.5 * (centres**2).T
    right[2 * d] = 1.0
    return _responsibilities(left, right, top, mixture)


def _responsibilities(left, right, top, mixture) -> Responsibilities:
    """Shared tail of the E-steps: ``left @ right`` is the log density minus ``top``."""
    n_comp = right.shape[1]
    weights = left @ right  # log density minus ``top``: <= 0 up to rounding
    np.exp(weights, out=weights)
    gauss = weights @ np.ones(n_comp)
    lost = np.flatnonzero(gauss < 1e-250)
    if lost.size:
        redo = left[lost] @ right
        shift = redo.max(axis=1)
        if np.isfinite(mixture[1]):
            np.maximum(shift, mixture[1] - top[lost], out=shift)
        weights[lost] = np.exp(redo - shift[:, None])
        top[lost] += shift
        gauss[lost] = weights[lost].sum(axis=1)
    total = gauss.copy()
    if np.isfinite(mixture[1]):
        total += np.exp(mixture[1] - top)
    scale = 1.0 / total
    return Responsibilities(weights, scale, gauss * scale, top + np.log(total))


def e_step_reference(registered, loc_var, centres, sigma2, mixture):
    """Naive double loop over localizations and centres, in log space (for tests)."""
    log_gauss, out_term = mixture
    m, d = registered.shape
    n_comp = centres.shape[0]
    logp = np.zeros((m, n_comp))
    for i in range(m):
        for k in range(n_comp):
            var = sigma2 + loc_var[i]
            diff = registered[i] - centres[k]
            logp[i, k] = log_gauss - np.log(n_comp) + np.sum(-0.5 * diff**2 / var - 0.5 * np.log(2 * np.pi * var))
    terms = np.concatenate([logp, np.full((m, 1), out_term)], axis=1)
    top = terms.max(axis=1, keepdims=True)
    loglik = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    return np.exp(logp - loglik[:, None]), loglik


# ----------------------------------------------------------------- M-step
def weighted_procrustes(src, dst, weights, offsets, mode="full"):
    """Per-particle rigid transform minimising a weighted squared distance, batched.

    Finds, for every particle ``j``, ``R_j`` and ``t_j`` minimising
    ``sum_i sum_a weights[i, a] * (R_j src_i + t_j - dst_i)_a**2``.

    Parameters
    ----------
    src, dst : ndarray of shape (m, d)
    weights : ndarray of shape (m, d)
        Non-negative. With ``mode="full"`` only the first column is used
        (isotropic weights: the closed form needs them). With ``mode="z"``
        (3D only) the rotation acts in the xy plane with the weights of
        column 0 and the z translation uses column 2.
    offsets : ndarray of shape (n + 1,)
    mode : {"full", "z"}

    Returns
    -------
    rotations : ndarray of shape (n, d, d)
        Proper rotations (determinant +1).
    translations : ndarray of shape (n, d)
    total_weight : ndarray of shape (n,)
        Sum of the (first-column) weights of each particle; zero means the
        particle is unconstrained and its transform is meaningless.
    """
    d = src.shape[1]
    lengths = np.diff(offsets)
    if mode == "z":
        rot2, t2, total = weighted_procrustes(src[:, :2], dst[:, :2], weights[:, :2], offsets, "full")
        n = len(lengths)
        rotations = np.zeros((n, 3, 3))
        rotations[:, :2, :2] = rot2
        rotations[:, 2, 2] = 1.0
        wz = weights[:, 2]
        wz_sum = segment_sum(wz, offsets)
        tz = segment_sum(wz * (dst[:, 2] - src[:, 2]), offsets) / np.where(wz_sum > 0, wz_sum, 1.0)
        translations = np.concatenate([t2, tz[:, None]], axis=1)
        return rotations, translations, total
    w = weights[:, 0]
    total = segment_sum(w, offsets)
    safe = np.where(total > 0, total, 1.0)
    mu_src = segment_sum(w[:, None] * src, offsets) / safe[:, None]
    mu_dst = segment_sum(w[:, None] * dst, offsets) / safe[:, None]
    src_c = src - np.repeat(mu_src, lengths, axis=0)
    dst_c = dst - np.repeat(mu_dst, lengths, axis=0)
    # cross-covariance M_j = sum_i w_i dst_i src_i^T, shape (n, d, d)
    cross = segment_sum((w[:, None] * dst_c)[:, :, None] * src_c[:, None, :], offsets)
    u, _, vt = np.linalg.svd(cross)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    sign[sign == 0] = 1.0
    u[:, :, d - 1] *= sign[:, None]
    rotations = u @ vt
    translations = mu_dst - np.einsum("nab,nb->na", rotations, mu_src)
    return rotations, translations, total


def weighted_procrustes_reference(src, dst, weights, offsets):
    """One particle at a time, with its own SVD (for tests)."""
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


def update_centres(registered, loc_var, resp, sigma2, old_centres):
    """Precision-weighted mean of the registered localizations for every centre, shape (K, d).

    A centre that owns (almost) no localization keeps its old position.
    """
    d = registered.shape[1]
    inv = 1.0 / (sigma2 + loc_var)
    both = resp.transposed_times(np.concatenate([inv * registered, inv], axis=1))
    num, den = both[:, :d], both[:, d:]
    ok = den > 1e-12 * max(float(den.max()), 1e-300)
    return np.where(ok, num / np.where(ok, den, 1.0), old_centres)


def update_sigma2(registered, loc_var, resp, centres, sigma2, floor, n_fixed_point=5):
    """Maximise the expected log-likelihood over the shared variance.

    With no localization variance this is the closed form
    ``sum_ik r_ik |y_i - x_k|^2 / (d sum_ik r_ik)``; with it, a few
    fixed-point steps of the stationarity condition
    ``sum_ia (A_ia - r_i (sigma2 + s_ia)) / (sigma2 + s_ia)^2 = 0``.
    """
    d = registered.shape[1]
    owned = resp.owned  # (m,)
    both = resp.times(np.concatenate([centres, centres**2], axis=1))
    # A_ia = sum_k r_ik (y_ia - x_ka)^2
    spread = owned[:, None] * registered**2 - 2.0 * registered * both[:, :d] + both[:, d:]
    np.maximum(spread, 0.0, out=spread)
    return _sigma2_fixed_point(spread, owned, loc_var, sigma2, floor, n_fixed_point)


def update_sigma2_reference(registered, loc_var, resp, centres, sigma2, floor):
    """Maximise the expected log-likelihood over ``sigma2`` numerically (for tests)."""
    from scipy.optimize import minimize_scalar

    diff2 = (registered[:, None, :] - centres[None, :, :]) ** 2  # (m, K, d)

    def negative(log_s2):
        var = np.exp(log_s2) + loc_var[:, None, :]
        return float((resp[:, :, None] * (diff2 / var + np.log(var))).sum())

    res = minimize_scalar(negative, bounds=(np.log(max(floor, 1e-12)), np.log(1e8)), method="bounded",
                          options={"xatol": 1e-10})
    return max(float(np.exp(res.x)), floor)


# ------------------------------------------- anisotropic precision (3D)
# Under full 3D rotations the axial (z) precision of a localization is fixed in
# its *own* particle's frame, and turns with the particle. In the common frame
# localization ``i`` of particle ``j`` then has the full covariance
# ``R_j diag(sigma2 + s_i) R_j^T``. These kernels use it exactly: the E-step
# stays one matrix product (the quadratic form is linear in the products
# ``x_a x_b`` of the centre coordinates), the centres are a precision-matrix
# weighted mean, and the rotation step is a few Gauss-Newton steps of the
# weighted (anisotropic) Procrustes problem, which has no closed form.
def _pairs(d):
    return np.triu_indices(d)


def local_precisions(rotations, index, own_var, sigma2):
    """Common-frame precision matrices of every localization.

    Parameters
    ----------
    rotations : ndarray of shape (n, d, d)
    index : ndarray of shape (m,)
        Particle of every localization.
    own_var : ndarray of shape (m, d)
        Per-axis localization variance in the particle's own (observed) frame.
    sigma2 : float

    Returns
    -------
    precision : ndarray of shape (m, d, d)
        ``R_j diag(1 / (sigma2 + s_i)) R_j^T``.
    inv : ndarray of shape (m, d)
        ``1 / (sigma2 + s_i)``, the precision in the particle's own frame.
    logdet : ndarray of shape (m,)
        Log-determinant of the covariance.
    """
    var = sigma2 + own_var
    inv = 1.0 / var
    rot = rotations[index]
    precision = np.matmul(rot * inv[:, None, :], np.transpose(rot, (0, 2, 1)))
    return precision, inv, np.log(var).sum(axis=1)


def e_step_anisotropic(registered, precision, logdet, centres, mixture) -> Responsibilities:
    """E-step with a full covariance per localization (see :func:`e_step`).

    Parameters
    ----------
    registered : ndarray of shape (m, d)
    precision : ndarray of shape (m, d, d)
        Inverse covariance of every localization (shared variance included).
    logdet : ndarray of shape (m,)
        Log-determinant of every covariance.
    centres : ndarray of shape (K, d)
    mixture : tuple of float

    Notes
    -----
    ``-(y - x)^T P (y - x) / 2 = (P y) . x - sum_{a<=b} c_ab P_ab x_a x_b - y^T P y / 2``
    with ``c_aa = 1/2`` and ``c_ab = 1`` otherwise: one ``(m, d + d(d+1)/2 + 1)``
    by ``(d + d(d+1)/2 + 1, K)`` matrix product.
    """
    m, d = registered.shape
    n_comp = centres.shape[0]
    ia, ib = _pairs(d)
    n_pairs = len(ia)
    py = np.einsum("mab,mb->ma", precision, registered)
    top = mixture[0] - np.log(n_comp) - 0.5 * (logdet + d * _LOG_2PI)
    left = np.empty((m, d + n_pairs + 1))
    left[:, :d] = py
    left[:, d : d + n_pairs] = -np.where(ia == ib, 0.5, 1.0) * precision[:, ia, ib]
    left[:, -1] = -0.5 * (py * registered).sum(axis=1)
    right = np.empty((d + n_pairs + 1, n_comp))
    right[:d] = centres.T
    right[d : d + n_pairs] = (centres[:, ia] * centres[:, ib]).T
    right[-1] = 1.0
    return _responsibilities(left, right, top, mixture)


def e_step_anisotropic_reference(registered, covariance, centres, mixture):
    """Naive double loop with scipy's multivariate normal density (for tests)."""
    from scipy.stats import multivariate_normal

    log_gauss, out_term = mixture
    m = registered.shape[0]
    n_comp = centres.shape[0]
    logp = np.zeros((m, n_comp))
    for i in range(m):
        for k in range(n_comp):
            logp[i, k] = log_gauss - np.log(n_comp) + multivariate_normal.logpdf(registered[i], centres[k], covariance[i])
    terms = np.concatenate([logp, np.full((m, 1), out_term)], axis=1)
    top = terms.max(axis=1, keepdims=True)
    loglik = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1))
    return np.exp(logp - loglik[:, None]), loglik


def update_centres_anisotropic(registered, precision, resp, old_centres):
    """Centres maximising the expected log-likelihood with full covariances, shape (K, d).

    ``x_k = (sum_i r_ik P_i)^-1 sum_i r_ik P_i y_i``; a centre that owns
    (almost) no localization keeps its old position.
    """
    m, d = registered.shape
    py = np.einsum("mab,mb->ma", precision, registered)
    both = resp.transposed_times(np.concatenate([precision.reshape(m, d * d), py], axis=1))
    mat = both[:, : d * d].reshape(-1, d, d)
    rhs = both[:, d * d :]
    scale = np.trace(mat, axis1=1, axis2=2)
    ok = scale > 1e-12 * max(float(scale.max()), 1e-300)
    out = old_centres.copy()
    if ok.any():
        out[ok] = np.linalg.solve(mat[ok], rhs[ok][:, :, None])[:, :, 0]
    return out


def _sigma2_fixed_point(spread, owned, loc_var, sigma2, floor, n_fixed_point):
    """Fixed-point steps of ``sum_ia (A_ia - r_i (sigma2 + s_ia)) / (sigma2 + s_ia)^2 = 0``."""
    d = spread.shape[1]
    total = owned.sum()
    if total <= 0:
        return sigma2
    if not loc_var.any():
        return max(float(spread.sum() / (d * total)), floor)
    s2 = sigma2
    owned_d = owned[:, None]
    for _ in range(n_fixed_point):
        w2 = 1.0 / (s2 + loc_var) ** 2
        num = (w2 * (spread - owned_d * loc_var)).sum()
        den = (w2 * owned_d).sum()
        s2 = max(float(num / den), floor)
    return s2


def update_sigma2_anisotropic(registered, rotations, index, own_var, resp, centres, sigma2, floor, n_fixed_point=5):
    """Shared variance with per-localization variances fixed in each particle's own frame.

    The expected squared residual of localization ``i`` is taken along the
    axes of its particle's frame, where its covariance is diagonal:
    ``A_ia = sum_k r_ik ((R_j^T (y_i - x_k))_a)^2``; then the stationarity
    condition of :func:`update_sigma2`.
    """
    m, d = registered.shape
    ia, ib = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    owned = resp.owned
    moments = resp.times(np.concatenate([centres, centres[:, ia] * centres[:, ib]], axis=1))
    mean = moments[:, :d]  # sum_k r_ik x_k
    second = moments[:, d:].reshape(m, d, d)  # sum_k r_ik x_k x_k^T
    scatter = (
        owned[:, None, None] * registered[:, :, None] * registered[:, None, :]
        - registered[:, :, None] * mean[:, None, :]
        - mean[:, :, None] * registered[:, None, :]
        + second
    )
    rot = rotations[index]
    spread = (rot * np.matmul(scatter, rot)).sum(axis=1)  # diag(R^T S R)
    np.maximum(spread, 0.0, out=spread)
    return _sigma2_fixed_point(spread, owned, own_var, sigma2, floor, n_fixed_point)


def _skew(v):
    """Cross-product matrices ``[v]_x`` of shape (m, 3, 3)."""
    out = np.zeros(v.shape + (3,))
    out[:, 0, 1], out[:, 0, 2] = -v[:, 2], v[:, 1]
    out[:, 1, 0], out[:, 1, 2] = v[:, 2], -v[:, 0]
    out[:, 2, 0], out[:, 2, 1] = -v[:, 1], v[:, 0]
    return out


def rodrigues(omega):
    """Rotation matrices ``exp([omega]_x)`` of shape (n, 3, 3)."""
    theta = np.linalg.norm(omega, axis=1)
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    k = _skew(omega / safe[:, None])
    s = np.where(small, 0.0, np.sin(theta))[:, None, None]
    c = np.where(small, 0.0, 1.0 - np.cos(theta))[:, None, None]
    return np.eye(3) + s * k + c * (k @ k)


def _anisotropic_cost(q, s, src, dst, weights, index, offsets):
    """Per-particle ``sum_i sum_a w_ia ((Q_j dst_i - s_j - src_i)_a)^2``."""
    resid = np.einsum("mab,mb->ma", q[index], dst) - s[index] - src
    return segment_sum((weights * resid**2).sum(axis=1), offsets)


def _normal_equations(p, resid, weights, offsets):
    """Per-particle Gauss-Newton system ``(J^T W J, J^T W e)`` of the anisotropic Procrustes cost.

    With ``p = Q dst`` and residual ``e = p - s - src`` the Jacobian of
    ``e`` in ``(omega, s)`` is ``[-[p]_x, -I]`` for every localization; the
    6 x 6 blocks are written out so that one segment sum over 21 columns
    gives them all (no per-localization 6 x 6 matrices).
    """
    w0, w1, w2 = weights.T
    p0, p1, p2 = p.T
    we = weights * resid
    cols = np.stack(
        [
            w0, w1, w2,  # 0-2: H_ss diagonal
            w0 * p1, w0 * p2, w1 * p0, w1 * p2, w2 * p0, w2 * p1,  # 3-8: H_s,omega
            w1 * p2 * p2 + w2 * p1 * p1, w0 * p2 * p2 + w2 * p0 * p0, w0 * p1 * p1 + w1 * p0 * p0,  # 9-11
            w2 * p0 * p1, w1 * p0 * p2, w0 * p1 * p2,  # 12-14: H_omega,omega off-diagonal (negated)
        ],
        axis=1,
    )
    sums = segment_sum(np.concatenate([cols, np.cross(p, we), we], axis=1), offsets)
    n = len(sums)
    hess = np.zeros((n, 6, 6))
    hess[:, 0, 0], hess[:, 1, 1], hess[:, 2, 2] = sums[:, 9], sums[:, 10], sums[:, 11]
    hess[:, 0, 1] = hess[:, 1, 0] = -sums[:, 12]
    hess[:, 0, 2] = hess[:, 2, 0] = -sums[:, 13]
    hess[:, 1, 2] = hess[:, 2, 1] = -sums[:, 14]
    # rows s_a, columns omega_b: w_a [p]_x[a, b]
    block = np.zeros((n, 3, 3))
    block[:, 0, 1], block[:, 0, 2] = -sums[:, 4], sums[:, 3]
    block[:, 1, 0], block[:, 1, 2] = sums[:, 6], -sums[:, 5]
    block[:, 2, 0], block[:, 2, 1] = -sums[:, 8], sums[:, 7]
    hess[:, 3:, :3] = block
    hess[:, :3, 3:] = np.transpose(block, (0, 2, 1))
    hess[:, 3, 3], hess[:, 4, 4], hess[:, 5, 5] = sums[:, 0], sums[:, 1], sums[:, 2]
    grad = np.concatenate([sums[:, 15:18], -sums[:, 18:21]], axis=1)
    return hess, grad


def _gauss_newton(q, s, src, dst, weights, index, offsets, active, n_steps):
    """``n_steps`` guarded Gauss-Newton steps: a particle takes a step only where it lowers its cost."""
    q, s = q.copy(), s.copy()
    eye6 = np.eye(6)
    cost = _anisotropic_cost(q, s, src, dst, weights, index, offsets)
    for _ in range(n_steps):
        p = np.einsum("mab,mb->ma", q[index], dst)
        hess, grad = _normal_equations(p, p - s[index] - src, weights, offsets)
        hess, grad = hess[active], grad[active]
        damp = (1e-9 * np.trace(hess, axis1=1, axis2=2) + 1e-300)[:, None, None] * eye6
        step = -np.linalg.solve(hess + damp, grad[:, :, None])[:, :, 0]
        new_q, new_s = q.copy(), s.copy()
        new_q[active] = rodrigues(step[:, :3]) @ q[active]
        new_s[active] = s[active] + step[:, 3:]
        new_cost = _anisotropic_cost(new_q, new_s, src, dst, weights, index, offsets)
        better = active & (new_cost < cost)
        if not better.any():
            break
        q[better], s[better], cost[better] = new_q[better], new_s[better], new_cost[better]
    return q, s, cost


def anisotropic_procrustes(src, dst, weights, offsets, rotations, translations, n_steps=2):
    """Per-particle rigid transform with per-axis weights fixed in the particle's frame.

    Minimises, for every particle ``j``,
    ``sum_i sum_a weights[i, a] * (R_j^T (dst_i - t_j) - src_i)_a**2``: the
    residual measured along the axes of the particle's own frame, where each
    localization's covariance is diagonal. This has no closed form. Two
    starts are refined by ``n_steps`` Gauss-Newton steps on the rotation
    (left-multiplied by ``exp([omega]_x)``) and translation jointly: the given
    transform, and the closed form with every localization's mean weight
    (exact for isotropic weights). A step is taken only where it lowers the
    cost, and every particle keeps the better of the two results, so it is
    never worse than the given transform and an EM using it stays monotone.

    Parameters
    ----------
    src, dst : ndarray of shape (m, 3)
    weights : ndarray of shape (m, 3)
        Non-negative, in the particle's frame.
    offsets : ndarray of shape (n + 1,)
    rotations, translations : ndarray of shape (n, 3, 3), (n, 3)
        The current transforms: a start, and the result for particles whose
        weights are all zero.
    n_steps : int

    Returns
    -------
    rotations : ndarray of shape (n, 3, 3)
    translations : ndarray of shape (n, 3)
    total_weight : ndarray of shape (n,)
    """
    lengths = np.diff(offsets)
    index = np.repeat(np.arange(len(lengths)), lengths)
    mean_w = weights.mean(axis=1, keepdims=True)
    rot0, trans0, total = weighted_procrustes(src, dst, np.repeat(mean_w, 3, axis=1), offsets)
    active = total > 1e-300
    # in the particle's frame: residual = Q dst - s - src with Q = R^T, s = Q t
    best_q = best_s = best_cost = None
    for rot, trans in ((rotations, translations), (rot0, trans0)):
        q = np.ascontiguousarray(np.transpose(rot, (0, 2, 1)))
        s = np.einsum("nab,nb->na", q, trans)
        q, s, cost = _gauss_newton(q, s, src, dst, weights, index, offsets, active, n_steps)
        if best_q is None:
            best_q, best_s, best_cost = q, s, cost
        else:
            better = cost < best_cost
            best_q[better], best_s[better], best_cost[better] = q[better], s[better], cost[better]
    rot = np.transpose(best_q, (0, 2, 1))
    trans = np.einsum("nab,nb->na", rot, best_s)
    return rot, trans, total


def anisotropic_procrustes_reference(src, dst, weights, offsets):
    """One particle at a time, with scipy's general optimiser over a rotation vector (for tests)."""
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation

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


# --------------------------------------------------------------- the loop
@dataclass
class EMState:
    """Parameters of the joint registration (one restart)."""

    rotations: np.ndarray  # (n, d, d)
    translations: np.ndarray  # (n, d)
    centres: np.ndarray  # (K, d)
    sigma2: float
    objective: float = -np.inf  # mean log-likelihood per localization
    n_iter: int = 0


def run_em(src, loc_var, offsets, state, mixture, *, mode, max_iter, tol, floor, fit_centres=True, anneal=None,
           logger=None, own_var=None):
    """Run EM from ``state`` until the mean log-likelihood gains less than ``tol``.

    Parameters
    ----------
    fit_centres : bool
        ``False`` keeps ``centres`` and ``sigma2`` fixed and only moves the
        particles (registration onto a fitted model).
    anneal : float in (0, 1) or None
        Deterministic annealing: the variance may not fall below
        ``sigma2_start * anneal**iteration``, so the mixture stays smooth
        while the particles find a common orientation, and cannot split into
        several interleaved copies of the structure early on. The run does
        not stop on ``tol`` while this bound is active.
    own_var : ndarray of shape (m, 3) or None
        3D with ``mode="full"`` only: per-axis localization variance in each
        particle's own frame (axial precision worse than lateral). The
        covariances then turn with the particles (the ``*_anisotropic``
        kernels) and ``loc_var`` is not used.

    Returns
    -------
    EMState
        A new state; ``objective`` is the mean log-likelihood per
        localization at the returned parameters.
    """
    lengths = np.diff(offsets)
    rot, trans = state.rotations.copy(), state.translations.copy()
    centres, sigma2 = state.centres.copy(), float(state.sigma2)
    m = src.shape[0]
    obj = -np.inf
    converged = False
    n_iter = 0
    aniso = own_var is not None
    if aniso and (mode != "full" or src.shape[1] != 3):
        raise ValueError("own_var is for full 3D rotations (mode='full', 3D) only")
    index = np.repeat(np.arange(len(lengths)), lengths) if aniso else None

    def expectation(registered, rot, sigma2):
        if not aniso:
            return e_step(registered, loc_var, centres, sigma2, mixture)
        precision, _, logdet = local_precisions(rot, index, own_var, sigma2)
        return e_step_anisotropic(registered, precision, logdet, centres, mixture)

    for n_iter in range(1, max_iter + 1):
        registered = apply_transforms(src, rot, trans, lengths)
        resp = expectation(registered, rot, sigma2)
        new_obj = float(resp.loglik.sum() / m)
        if logger is not None:
            logger.debug("EM iteration %d: objective %.6f, sigma2 %.4g", n_iter, new_obj, sigma2)
        gain = new_obj - obj
        obj = new_obj
        # while the annealing bound holds the variance up, a small gain does not mean convergence
        annealing = anneal is not None and state.sigma2 * anneal ** (n_iter - 1) > floor
        if gain < tol and not annealing:
            converged = True
            break
        # M-step 1: every particle's rigid transform, onto its virtual targets
        owned = resp.owned
        target = resp.times(centres) / np.maximum(owned, 1e-300)[:, None]
        if aniso:
            weights = owned[:, None] / (sigma2 + own_var)
            new_rot, new_trans, total = anisotropic_procrustes(src, target, weights, offsets, rot, trans)
        else:
            weights = owned[:, None] / (sigma2 + loc_var)
            new_rot, new_trans, total = weighted_procrustes(src, target, weights, offsets, mode)
        keep = total > 1e-300
        rot[keep], trans[keep] = new_rot[keep], new_trans[keep]
        if fit_centres:
            # M-step 2 and 3: the centres, then the shared variance
            registered = apply_transforms(src, rot, trans, lengths)
            bound = floor if anneal is None else max(floor, state.sigma2 * anneal**n_iter)
            if aniso:
                precision, _, _ = local_precisions(rot, index, own_var, sigma2)
                centres = update_centres_anisotropic(registered, precision, resp, centres)
                sigma2 = update_sigma2_anisotropic(registered, rot, index, own_var, resp, centres, sigma2, bound)
            else:
                centres = update_centres(registered, loc_var, resp, sigma2, centres)
                sigma2 = update_sigma2(registered, loc_var, resp, centres, sigma2, bound)
    if not converged:
        registered = apply_transforms(src, rot, trans, lengths)
        obj = float(expectation(registered, rot, sigma2).loglik.sum() / m)
    return EMState(rot, trans, centres, sigma2, objective=obj, n_iter=n_iter)


# ---------------------------------------------------- orientation search
def orientation_grid(n: int, n_dims: int, mode: str = "full") -> np.ndarray:
    """``n`` rotations spread evenly over the rotation group, shape (n, d, d).

    2D (and 3D with ``mode="z"``): ``n`` equally spaced in-plane angles.
    3D full rotations: the super-Fibonacci spiral of Alexa (CVPR 2022), a
    deterministic near-uniform set of unit quaternions.
    """
    if n_dims == 2 or mode == "z":
        theta = 2.0 * np.pi * np.arange(n) / n
        c, s = np.cos(theta), np.sin(theta)
        r2 = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
        if n_dims == 2:
            return r2
        out = np.zeros((n, 3, 3))
        out[:, :2, :2] = r2
        out[:, 2, 2] = 1.0
        return out
    phi = np.sqrt(2.0)
    psi = 1.533751168755204288118041
    s = np.arange(n) + 0.5
    r = np.sqrt(s / n)
    big_r = np.sqrt(1.0 - s / n)
    alpha = 2.0 * np.pi * s / phi
    beta = 2.0 * np.pi * s / psi
    quat = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], -1)
    return quaternion_to_matrix(quat)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from quaternions ``(x, y, z, w)``, shape (..., 3, 3)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def grid_spacing(candidates: np.ndarray) -> float:
    """Median angle (rad) between a candidate rotation and its nearest neighbour in the set."""
    n = len(candidates)
    if n < 2:
        return np.pi
    trace = np.einsum("iab,jab->ij", candidates, candidates)  # trace(R_i^T R_j)
    cos = trace / 2.0 if candidates.shape[1] == 2 else (trace - 1.0) / 2.0
    np.fill_diagonal(cos, -1.0)
    return float(np.median(np.arccos(np.clip(cos.max(axis=1), -1.0, 1.0))))


def subsample_rows(offsets: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of at most ``cap`` random localizations per particle, particle after particle."""
    rows, _ = _subsample_packed(np.arange(offsets[-1]), np.diff(offsets), cap, rng)
    return rows


def search_orientations(src, loc_var, offsets, state, mixture, candidates, sigma2=None):
    """Give every particle the best of ``candidates`` rotations against the current centres.

    Each candidate ``Q`` is tried with the particle's centroid kept where the
    current transform puts it; the particle keeps its current rotation unless
    a candidate scores a higher log-likelihood. Cost: one E-step per
    candidate, linear in the number of localizations (pass a subsample of
    each particle's localizations to make it cheaper).

    Parameters
    ----------
    src : ndarray of shape (m, d)
        Localizations centred on their particle's centroid.
    sigma2 : float or None
        Variance used for scoring; ``None`` uses the state's. A value larger
        than the state's widens the basin that a coarse grid must hit.

    Returns
    -------
    EMState
        With new ``rotations`` and ``translations`` (centres unchanged).
    """
    sigma2 = state.sigma2 if sigma2 is None else sigma2
    registered = apply_transforms(src, state.rotations, state.translations, np.diff(offsets))
    best = segment_sum(e_step(registered, loc_var, state.centres, sigma2, mixture).loglik, offsets)
    best_rot = state.rotations.copy()
    for q, score in zip(candidates, _candidate_scores(src, loc_var, offsets, state, mixture, candidates, sigma2)):
        better = score > best
        best[better] = score[better]
        best_rot[better] = q
    return EMState(best_rot, state.translations.copy(), state.centres, state.sigma2, state.objective, state.n_iter)


def _candidate_scores(src, loc_var, offsets, state, mixture, candidates, sigma2):
    """Yield, candidate after candidate, every particle's log-likelihood when turned by that candidate.

    ``src`` is centred per particle, so the centroid stays where the current
    transform puts it: at the particle's translation.
    """
    index = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    for q in candidates:
        registered = src @ q.T + state.translations[index]
        yield segment_sum(e_step(registered, loc_var, state.centres, sigma2, mixture).loglik, offsets)


def top_orientations(src, loc_var, offsets, state, mixture, candidates, sigma2, n_best, min_angle, chunk=2048):
    """The ``n_best`` best-scoring candidate rotations of every particle, at least ``min_angle`` apart.

    Every candidate ``Q`` is scored as in :func:`search_orientations` (the
    particle's centroid kept where the current transform puts it); then, per
    particle, the best candidate is taken, the candidates within
    ``min_angle`` of it are struck out, and so on (non-maximum suppression),
    so that the picks are starts in different basins, not neighbours of one.
    Particles are taken ``chunk`` at a time, so the score table in memory is
    at most ``chunk x n_candidates``.

    Parameters
    ----------
    min_angle : float
        Radians.
    chunk : int, default=2048
        Particles scored at once.

    Returns
    -------
    picks : ndarray of int, shape (n, n_best)
        Indices into ``candidates``, best first (a particle with fewer
        distinct basins than ``n_best`` repeats its last pick).
    """
    n, d = len(offsets) - 1, src.shape[1]
    # trace(Qa Qb^T) = d - 2 + 2 cos(angle between them), in 2D and 3D
    near = np.einsum("aij,bij->ab", candidates, candidates) > d - 2 + 2 * np.cos(min_angle)
    picks = np.empty((n, n_best), dtype=np.intp)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        part = EMState(state.rotations[a:b], state.translations[a:b], state.centres, sigma2)
        rows = slice(offsets[a], offsets[b])
        sub_offsets = offsets[a : b + 1] - offsets[a]
        scores = np.empty((b - a, len(candidates)))
        for c, score in enumerate(_candidate_scores(src[rows], loc_var[rows], sub_offsets, part, mixture, candidates,
                                                    sigma2)):
            scores[:, c] = score
        for k in range(n_best):
            best = scores.argmax(axis=1)
            exhausted = ~np.isfinite(scores[np.arange(b - a), best])
            if k and exhausted.any():
                best[exhausted] = picks[a:b][exhausted, k - 1]
            picks[a:b, k] = best
            scores[near[best]] = -np.inf
    return picks


def particle_loglik(src, loc_var, offsets, state, mixture, own_var=None):
    """Log-likelihood of every particle at ``state`` (anisotropic when ``own_var`` is given, as in ``run_em``)."""
    lengths = np.diff(offsets)
    registered = apply_transforms(src, state.rotations, state.translations, lengths)
    if own_var is None:
        resp = e_step(registered, loc_var, state.centres, state.sigma2, mixture)
    else:
        index = np.repeat(np.arange(len(lengths)), lengths)
        precision, _, logdet = local_precisions(state.rotations, index, own_var, state.sigma2)
        resp = e_step_anisotropic(registered, precision, logdet, state.centres, mixture)
    return segment_sum(resp.loglik, offsets)
