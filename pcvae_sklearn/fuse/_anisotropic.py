"""Anisotropic kernels of the joint registration: variances that turn with the particle.

Under full 3D rotations the axial (z) precision of a localization is fixed in
its *own* particle's frame, and turns with the particle. In the common frame
localization ``i`` of particle ``j`` then has the full covariance
``R_j diag(sigma2 + s_i) R_j^T``. These kernels use it exactly: the E-step
stays one matrix product (the quadratic form is linear in the products
``x_a x_b`` of the centre coordinates), the centres are a precision-matrix
weighted mean, and the rotation step is a few Gauss-Newton steps of the
weighted (anisotropic) Procrustes problem, which has no closed form.
:class:`OwnFrameVariances` hands them to :func:`~pcvae_sklearn.fuse._em.run_em`.
Notation as in :mod:`~pcvae_sklearn.fuse._em`; ``own_var`` (m, 3) is every
localization's per-axis variance in its particle's own frame.
"""

from __future__ import annotations

import copy

import numpy as np

from .._ragged import segment_sum
from ._em import _LOG_2PI, WEIGHTS_DTYPE, Responsibilities, _responsibilities, _sigma2_fixed_point, weighted_procrustes

__all__ = [
    "OwnFrameVariances",
    "local_precisions",
    "e_step_anisotropic",
    "centre_equations_anisotropic",
    "update_centres_anisotropic",
    "update_sigma2_anisotropic",
    "anisotropic_procrustes",
    "rodrigues",
]


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


def e_step_anisotropic(registered, precision, logdet, centres, mixture, dtype=WEIGHTS_DTYPE) -> Responsibilities:
    """E-step with a full covariance per localization (see :func:`~pcvae_sklearn.fuse._em.e_step`).

    Parameters
    ----------
    registered : ndarray of shape (m, d)
    precision : ndarray of shape (m, d, d)
        Inverse covariance of every localization (shared variance included).
    logdet : ndarray of shape (m,)
        Log-determinant of every covariance.
    centres : ndarray of shape (K, d)
    mixture : tuple of float
    dtype : numpy dtype, default=WEIGHTS_DTYPE
        Of the dense responsibilities.

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
    return _responsibilities(left, right, top, mixture, dtype)



def centre_equations_anisotropic(registered, precision, resp):
    """The centres' normal equations with full covariances: ``mat`` (K, d, d) and ``rhs`` (K, d).

    ``mat[k] = sum_i r_ik P_i`` and ``rhs[k] = sum_i r_ik P_i y_i``; the
    unconstrained centre solves ``mat[k] @ x_k = rhs[k]``.
    """
    m, d = registered.shape
    py = np.einsum("mab,mb->ma", precision, registered)
    both = resp.transposed_times(np.concatenate([precision.reshape(m, d * d), py], axis=1))
    return both[:, : d * d].reshape(-1, d, d), both[:, d * d :]


def update_centres_anisotropic(registered, precision, resp, old_centres):
    """Centres maximising the expected log-likelihood with full covariances, shape (K, d).

    ``x_k = (sum_i r_ik P_i)^-1 sum_i r_ik P_i y_i``; a centre that owns
    (almost) no localization keeps its old position.
    """
    mat, rhs = centre_equations_anisotropic(registered, precision, resp)
    scale = np.trace(mat, axis1=1, axis2=2)
    ok = scale > 1e-12 * max(float(scale.max()), 1e-300)
    out = old_centres.copy()
    if ok.any():
        out[ok] = np.linalg.solve(mat[ok], rhs[ok][:, :, None])[:, :, 0]
    return out


def update_sigma2_anisotropic(registered, rotations, index, own_var, resp, centres, sigma2, floor, n_fixed_point=5):
    """Shared variance with per-localization variances fixed in each particle's own frame.

    The expected squared residual of localization ``i`` is taken along the
    axes of its particle's frame, where its covariance is diagonal:
    ``A_ia = sum_k r_ik ((R_j^T (y_i - x_k))_a)^2``; then the stationarity
    condition of :func:`~pcvae_sklearn.fuse._em.update_sigma2`.
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


class OwnFrameVariances:
    """Localization variances fixed in each particle's own frame, turning with it (3D, full rotations).

    Hands the kernels of this module to :func:`~pcvae_sklearn.fuse._em.run_em`
    and :func:`~pcvae_sklearn.fuse._em.particle_loglik`, with the methods of
    :class:`~pcvae_sklearn.fuse._em.CommonFrameVariances`.

    Parameters
    ----------
    own_var : ndarray of shape (m, 3)
        Per-axis localization variance (nm^2) in each particle's own
        (observed) frame.
    offsets : ndarray of shape (n + 1,)
    """

    def __init__(self, own_var, offsets):
        own_var = np.asarray(own_var)
        if own_var.ndim != 2 or own_var.shape[1] != 3 or own_var.shape[0] != offsets[-1]:
            raise ValueError(
                f"own_var has shape {own_var.shape}; variances that turn with the particles are for 3D "
                f"localizations under full 3D rotations: shape ({offsets[-1]}, 3)."
            )
        self.own_var = own_var
        self.index = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))

    def subset(self, rows, offsets):
        """The variances of the localizations ``rows`` (whole particles, packed by ``offsets``)."""
        return OwnFrameVariances(self.own_var[rows], offsets)

    def scaled(self, sigma2, factor):
        """``factor * (sigma2 + own_var)``, ``factor`` (m, 1) or a scalar, for a shared variance of 0 (see ``_scale``)."""
        out = copy.copy(self)
        out.own_var = np.ascontiguousarray(np.broadcast_to(factor * (sigma2 + self.own_var), self.own_var.shape))
        return out

    def e_step(self, registered, rotations, centres, sigma2, mixture) -> Responsibilities:
        """:func:`e_step_anisotropic` with the covariances turned by ``rotations``."""
        precision, _, logdet = local_precisions(rotations, self.index, self.own_var, sigma2)
        return e_step_anisotropic(registered, precision, logdet, centres, mixture)

    def transforms(self, src, target, owned, offsets, rotations, translations, sigma2):
        """Every particle's rigid transform onto its virtual targets: :func:`anisotropic_procrustes`."""
        weights = owned[:, None] / (sigma2 + self.own_var)
        return anisotropic_procrustes(src, target, weights, offsets, rotations, translations)

    def update(self, registered, rotations, resp, centres, sigma2, floor):
        """The centres, then the shared variance: ``(centres, sigma2)``."""
        precision, _, _ = local_precisions(rotations, self.index, self.own_var, sigma2)
        centres = update_centres_anisotropic(registered, precision, resp, centres)
        return centres, self.update_sigma2(registered, rotations, resp, centres, sigma2, floor)

    def centre_equations(self, registered, rotations, resp, sigma2):
        """The centres' normal equations: :func:`centre_equations_anisotropic`."""
        precision, _, _ = local_precisions(rotations, self.index, self.own_var, sigma2)
        return centre_equations_anisotropic(registered, precision, resp)

    def update_sigma2(self, registered, rotations, resp, centres, sigma2, floor):
        """The shared variance given the centres: :func:`update_sigma2_anisotropic`."""
        return update_sigma2_anisotropic(registered, rotations, self.index, self.own_var, resp, centres, sigma2,
                                         floor)
