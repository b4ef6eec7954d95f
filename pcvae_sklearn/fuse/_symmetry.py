"""A cyclic symmetry imposed on the fused model: centres in orbits of ``n`` rotations about one axis.

A nuclear pore has an 8-fold rotational symmetry. A template of free centres
can smear it: the centres move to where the particles registered a little
off (tilted, or turned by a fraction of the symmetry) sit best, and then
nothing pulls those particles back. Heydarian et al. (2021) detect the
symmetry of the fused super-particle and impose it. Here the centres come in
orbits: centre ``j * n + s`` is ``point + R_s b_j`` for the ``n`` rotations
``R_s`` by ``2 pi s / n`` about ``axis`` (2D: about ``point`` in the plane),
and the M-step finds the bases ``b_j`` of highest expected log-likelihood
exactly: ``b_j = (sum_s R_s^T A_js R_s)^-1 sum_s R_s^T (v_js - A_js point)``
from every centre's normal equations ``A_k x_k = v_k``.

References
----------
Heydarian, H., Joosten, M., Przybylski, A. et al., "3D particle averaging
and detection of macromolecular symmetry in localization microscopy",
Nat. Commun. 12, 2847 (2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._em import EMState, run_em

__all__ = ["CyclicSymmetry", "SymmetricTemplate", "detect_symmetry", "impose_symmetry", "symmetric_centres"]


def rotations_about(axis, order: int, n_dims: int) -> np.ndarray:
    """The ``order`` rotations by ``2 pi s / order`` about ``axis`` (3D) or in the plane (2D), shape (order, d, d)."""
    angles = 2.0 * np.pi * np.arange(order) / order
    c, s = np.cos(angles), np.sin(angles)
    if n_dims == 2:
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    a = np.asarray(axis, dtype=float)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + s[:, None, None] * k + (1.0 - c)[:, None, None] * (k @ k)


@dataclass
class CyclicSymmetry:
    """The cyclic group ``C_order`` about the line through ``point`` along ``axis`` (2D: about ``point``)."""

    order: int
    point: np.ndarray  # (d,)
    axis: np.ndarray | None  # (3,) unit vector in 3D, None in 2D

    @property
    def group(self) -> np.ndarray:
        """The rotations, shape (order, d, d); the first is the identity."""
        return rotations_about(self.axis, self.order, len(self.point))

    def orbit(self, base: np.ndarray) -> np.ndarray:
        """Centres ``point + R_s b_j`` in the order ``j * order + s``, from bases (m, d): shape (m * order, d)."""
        return (self.point + np.einsum("sab,jb->jsa", self.group, base)).reshape(-1, len(self.point))

    def solve(self, mat: np.ndarray, rhs: np.ndarray, old_centres: np.ndarray) -> np.ndarray:
        """Symmetric centres of highest expected log-likelihood, given every centre's normal equations.

        Parameters
        ----------
        mat : ndarray of shape (K, d, d)
        rhs : ndarray of shape (K, d)
            Unconstrained, centre ``k`` would solve ``mat[k] @ x_k = rhs[k]``
            (the expected log-likelihood is ``-1/2 x_k^T mat[k] x_k + x_k^T rhs[k]``
            plus terms without the centres).
        old_centres : ndarray of shape (K, d)
            Symmetric; an orbit that owns (almost) no localization keeps its place.

        Returns
        -------
        ndarray of shape (K, d)
        """
        k, d = rhs.shape
        n = self.order
        g = self.group
        a = mat.reshape(k // n, n, d, d)
        v = rhs.reshape(k // n, n, d) - a @ self.point
        lhs = np.einsum("sba,jsbc,scd->jad", g, a, g)  # sum_s R_s^T A_js R_s
        right = np.einsum("sba,jsb->ja", g, v)  # sum_s R_s^T (v_js - A_js p)
        base = old_centres.reshape(k // n, n, d)[:, 0] - self.point
        scale = np.trace(lhs, axis1=1, axis2=2)
        ok = scale > 1e-12 * max(float(scale.max()), 1e-300)
        if ok.any():
            base[ok] = np.linalg.solve(lhs[ok], right[ok][:, :, None])[:, :, 0]
        return self.orbit(base)


def _mismatch(rel: np.ndarray, group: np.ndarray) -> float:
    """Mean squared distance from every centre turned by every non-trivial rotation to its nearest centre."""
    turned = np.einsum("sab,kb->ska", group[1:], rel)
    d2 = ((turned[:, :, None, :] - rel[None, None]) ** 2).sum(-1)
    return float(d2.min(-1).mean())


def _principal_axes(centres: np.ndarray) -> np.ndarray:
    """The principal axes of a set of centres about their mean, as rows (3, 3)."""
    rel = centres - centres.mean(axis=0)
    return np.linalg.eigh(rel.T @ rel)[1].T


def detect_symmetry(centres: np.ndarray, order: int, axis=None) -> CyclicSymmetry:
    """The ``C_order`` symmetry of free centres: its point and, in 3D, its axis.

    The point is the centres' mean. In 3D the axis, unless given, is the
    principal axis of the centres for which the centres turned by the group
    land nearest other centres. (The covariance of a set with a cyclic
    symmetry of order 3 or more has its axis as an eigenvector, and equal
    eigenvalues across it.)
    """
    point = centres.mean(axis=0)
    rel = centres - point
    if centres.shape[1] == 2:
        return CyclicSymmetry(order, point, None)
    if axis is None:
        axes = _principal_axes(centres)
        axis = axes[int(np.argmin([_mismatch(rel, rotations_about(a, order, 3)) for a in axes]))]
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return CyclicSymmetry(order, point, axis)


def symmetric_centres(centres: np.ndarray, symmetry: CyclicSymmetry, rng, n_iter: int = 20) -> np.ndarray:
    """Symmetric centres (as many) that stand for free ones: ``K / order`` orbits found by k-means up to the group.

    The bases start at a random free centre and then, one by one, at the
    free centre farthest from every orbit so far. Every free centre is then
    matched to the orbit and rotation that bring it nearest a base; each
    base is the mean of its centres turned back.
    """
    k = len(centres)
    m = k // symmetry.order
    images = np.einsum("sba,kb->ksa", symmetry.group, centres - symmetry.point)  # R_s^T (x_k - p): (K, n, d)
    base = np.empty((m, images.shape[2]))
    base[0] = images[rng.integers(k), 0]
    for j in range(1, m):
        d2 = ((images[:, :, None, :] - base[None, None, :j]) ** 2).sum(-1).min(axis=(1, 2))
        base[j] = images[int(np.argmax(d2)), 0]
    for _ in range(n_iter):
        d2 = ((images[:, :, None, :] - base[None, None]) ** 2).sum(-1)  # (K, n, m)
        flat = d2.reshape(k, -1).argmin(axis=1)
        turn, orbit = np.divmod(flat, m)
        for j in range(m):
            mine = orbit == j
            if mine.any():
                base[j] = images[mine, turn[mine]].mean(axis=0)
    return symmetry.orbit(base)


class SymmetricTemplate:
    """The kernels of ``variances``, with the centres' M-step kept in the orbits of ``symmetry``.

    Hands :func:`~pcvae_sklearn.fuse._em.run_em` the same methods as
    :class:`~pcvae_sklearn.fuse._em.CommonFrameVariances` and
    :class:`~pcvae_sklearn.fuse._anisotropic.OwnFrameVariances`.
    """

    def __init__(self, variances, symmetry: CyclicSymmetry):
        self.variances = variances
        self.symmetry = symmetry

    def subset(self, rows, offsets):
        return SymmetricTemplate(self.variances.subset(rows, offsets), self.symmetry)

    def scaled(self, sigma2, factor):
        """The scaled variances of ``variances`` alone: where they are used the centres stay fixed."""
        return self.variances.scaled(sigma2, factor)

    def e_step(self, registered, rotations, centres, sigma2, mixture):
        return self.variances.e_step(registered, rotations, centres, sigma2, mixture)

    def transforms(self, src, target, owned, offsets, rotations, translations, sigma2):
        return self.variances.transforms(src, target, owned, offsets, rotations, translations, sigma2)

    def update(self, registered, rotations, resp, centres, sigma2, floor):
        """The symmetric centres, then the shared variance: ``(centres, sigma2)``."""
        mat, rhs = self.variances.centre_equations(registered, rotations, resp, sigma2)
        centres = self.symmetry.solve(mat, rhs, centres)
        return centres, self.variances.update_sigma2(registered, rotations, resp, centres, sigma2, floor)


def impose_symmetry(src, offsets, state, mixture, variances, order, *, axis, rng, max_iter, tol, floor,
                    n_inits=3, probe_iter=10, logger=None):
    """The likeliest symmetric model near ``state``: ``(state, variances)`` with the symmetry imposed.

    Every candidate axis (in 3D the three principal axes of the free
    centres, unless ``axis`` is given; in 2D none is needed) and ``n_inits``
    matchings of the free centres to orbits (:func:`symmetric_centres`)
    start a short EM run of ``probe_iter`` iterations under the symmetry;
    the likeliest runs on to convergence. A free template that registered
    some particles a little off is far from symmetric, and which axis and
    which orbits fit best shows only once the particles have moved.
    """
    centres = state.centres
    axes = [axis] if centres.shape[1] == 2 or axis is not None else _principal_axes(centres)
    best = None
    for a in axes:
        symmetry = detect_symmetry(centres, order, axis=a)
        wrapped = SymmetricTemplate(variances, symmetry)
        for _ in range(n_inits):
            start = EMState(state.rotations, state.translations, symmetric_centres(centres, symmetry, rng),
                            state.sigma2)
            probe = run_em(src, offsets, start, mixture, wrapped, max_iter=probe_iter, tol=tol, floor=floor)
            if logger is not None:
                logger("symmetry about %s: objective %.5f after %d iterations",
                       "the centre" if symmetry.axis is None else np.round(symmetry.axis, 3), probe.objective,
                       probe.n_iter)
            if best is None or probe.objective > best[0].objective:
                best = (probe, wrapped)
    probe, wrapped = best
    final = run_em(src, offsets, probe, mixture, wrapped, max_iter=max_iter, tol=tol, floor=floor)
    final.n_iter += state.n_iter
    return final, wrapped
