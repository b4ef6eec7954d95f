"""The global orientation search of the joint registration.

EM from one start gets stuck where a particle's first guess is far from its
true orientation. These kernels try every particle in a set of candidate
rotations against the current centres: :func:`orientation_grid` spreads the
candidates evenly over the rotation group, :func:`search_orientations` gives
every particle its best-scoring one, and :func:`top_orientations` picks
every particle's best candidates in distinct basins (non-maximum
suppression), the starts of further EM runs. Scoring a candidate costs one
E-step (:func:`~pcvae_sklearn.fuse._em.e_step`), linear in the number of
localizations; nothing loops over particles in Python. Notation as in
:mod:`~pcvae_sklearn.fuse._em`.

References
----------
Alexa, M., "Super-Fibonacci spirals: fast, low-discrepancy sampling of
SO(3)", CVPR (2022).
"""

from __future__ import annotations

import numpy as np

from .._ragged import apply_transforms, segment_sum
from ._em import EMState, e_step

__all__ = ["orientation_grid", "grid_spacing", "search_orientations", "top_orientations"]


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

