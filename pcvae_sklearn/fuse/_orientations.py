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

In 2D a candidate also gets its best translation: :func:`search_poses` and
:func:`top_poses` score every rotation at every shift of a window around
the particle's current translation, by lookups in a table of the mixture's
log-density. A sparse particle's centroid is not the structure's: turned by
180 degrees, a logo labelled at 30 % lands 10-35 nm from where the right
pose puts it, and EM from the right rotation at the wrong translation ends
in the wrong basin.

References
----------
Alexa, M., "Super-Fibonacci spirals: fast, low-discrepancy sampling of
SO(3)", CVPR (2022).
"""

from __future__ import annotations

import numpy as np

from .._ragged import apply_transforms, segment_sum
from ._em import EMState, e_step

__all__ = [
    "orientation_grid",
    "grid_spacing",
    "search_orientations",
    "top_orientations",
    "search_poses",
    "top_poses",
]

#: 2D: the shift window has at most this many steps either side along each axis (the step grows beyond it)
_MAX_SHIFT_STEPS = 12
#: 2D: scores per block of the shift scoring (particles x shifts)
_SHIFT_BLOCK = 1 << 16


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
    n = len(offsets) - 1
    near = _within_angle(candidates, min_angle)
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
        picks[a:b] = _suppressed_picks(scores, near, n_best)
    return picks


def _within_angle(candidates, angle):
    """(C, C) mask of the candidate pairs less than ``angle`` (radians) apart."""
    # trace(Qa Qb^T) = d - 2 + 2 cos(angle between them), in 2D and 3D
    d = candidates.shape[1]
    return np.einsum("aij,bij->ab", candidates, candidates) > d - 2 + 2 * np.cos(angle)


def _suppressed_picks(scores, near, n_best):
    """Per row of ``scores``, the ``n_best`` best columns, each one striking out its ``near`` neighbours."""
    n = len(scores)
    rows = np.arange(n)
    picks = np.empty((n, n_best), dtype=np.intp)
    for k in range(n_best):
        best = scores.argmax(axis=1)
        exhausted = ~np.isfinite(scores[rows, best])
        if k and exhausted.any():
            best[exhausted] = picks[exhausted, k - 1]
        picks[:, k] = best
        scores[near[best]] = -np.inf
    return picks


class _LogDensityTable:
    """The mixture's log-density per localization at the centres of square pixels of side ``step`` (float32).

    The variance is widened by the rounding to pixel centres (``step**2 /
    12``) and kept at least ``step**2``, so that no narrow peak falls between
    pixels. It covers every point within ``limit`` of the origin along each
    axis, moved by up to ``half`` steps; after it come zeros, where a padded
    lookup (at ``pad``) stays whatever the shift.
    """

    def __init__(self, centres, sigma2, mixture, step, half, limit):
        limit = max(limit, float(np.abs(centres).max()) + 6.0 * step) + (half + 2) * step
        size = int(np.ceil(2.0 * limit / step)) + 1
        self.step, self.half, self.size, self.lower = step, half, size, -limit
        axis = self.lower + step * np.arange(size)
        grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
        self.variance = max(sigma2, step**2) + step**2 / 12.0
        loglik = e_step(grid, np.zeros_like(grid), centres, self.variance, mixture).loglik
        self.pad = size * size + half * size + half
        self.values = np.concatenate([loglik, np.zeros(2 * (half * size + half) + 1)]).astype(np.float32)

    def lookups(self, registered, offsets):
        """Flat table indices of every particle's localizations, (n, longest particle), padded with ``pad``."""
        n, size, half = len(offsets) - 1, self.size, self.half
        lengths = np.diff(offsets)
        index = np.repeat(np.arange(n), lengths)
        pix = np.rint((registered - self.lower) / self.step).astype(np.intp)
        np.clip(pix, half, size - 1 - half, out=pix)
        flat = np.full((n, int(lengths.max()) if n else 0), self.pad, dtype=np.int32)
        flat[index, np.arange(len(registered)) - offsets[index]] = pix[:, 0] * size + pix[:, 1]
        return flat

    def window(self, half):
        """The flat offsets and the shifts (nm) of the window of ``half`` steps either side."""
        steps = np.arange(-half, half + 1)
        flat = (steps[:, None] * self.size + steps[None, :]).ravel().astype(np.int32)
        return flat, np.stack(np.meshgrid(steps, steps, indexing="ij"), axis=-1).reshape(-1, 2) * self.step

    def best(self, flat, shifts):
        """Every row's best total over the flat ``shifts`` and its index."""
        n = len(flat)
        score, which = np.empty(n), np.empty(n, dtype=np.intp)
        chunk = max(1, _SHIFT_BLOCK // len(shifts))
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            total = np.zeros((b - a, len(shifts)), dtype=np.float32)
            for j in range(flat.shape[1]):
                total += np.take(self.values, flat[a:b, j, None] + shifts[None, :])
            which[a:b] = total.argmax(axis=1)
            score[a:b] = total[np.arange(b - a), which[a:b]]
        return score, which


class ShiftScorer:
    """Finds each 2D registered particle's best shift within a square window, by lookups in log-density tables.

    Coarse to fine: every shift of the window at twice the ``step`` is
    scored on a table of twice the step (:class:`_LogDensityTable`), then the
    shifts at ``step`` within a coarse step of the best one (5 x 5) on a
    table of ``step``; a localization is looked up at its nearest pixel
    centre. ``step`` is the scoring variance's standard deviation, or larger
    where the window would otherwise have more than ``_MAX_SHIFT_STEPS``
    steps either side. Meant
    for subsamples of a few dozen localizations per particle (the search's):
    it loops over a particle's localizations in Python.

    Parameters
    ----------
    centres : ndarray of shape (K, 2)
    sigma2 : float
        The scoring variance.
    mixture : tuple of float
        See :func:`~pcvae_sklearn.fuse._em.e_step`.
    reach : float
        How far the shifts go along each axis (nm).
    extent : float
        Every registered localization to be scored lies within ``extent`` of
        the origin along each axis.
    """

    def __init__(self, centres, sigma2, mixture, reach, extent):
        self.step = max(float(np.sqrt(sigma2)), reach / _MAX_SHIFT_STEPS)
        half = int(np.ceil(reach / (2.0 * self.step)))
        self.coarse = _LogDensityTable(centres, sigma2, mixture, 2.0 * self.step, half, extent)
        self.fine = _LogDensityTable(centres, sigma2, mixture, self.step, 2, extent + 2.0 * self.step * half)

    def best(self, registered, offsets):
        """Every particle's best score and the shift (n, 2) that reaches it."""
        lengths = np.diff(offsets)
        flat, moves = self.coarse.window(self.coarse.half)
        _, which = self.coarse.best(self.coarse.lookups(registered, offsets), flat)
        first = moves[which]
        flat, moves = self.fine.window(self.fine.half)
        score, which = self.fine.best(self.fine.lookups(registered + np.repeat(first, lengths, axis=0), offsets), flat)
        return score, first + moves[which]


def _shift_scorer(src, loc_var, state, mixture, sigma2, reach):
    """The :class:`ShiftScorer` of a 2D search of ``src`` (centred per particle) at ``state``."""
    extent = float(np.sqrt((src**2).sum(axis=1).max())) + float(np.abs(state.translations).max())
    # the table is isotropic: each localization's own variance enters as the mean over localizations and axes
    own = float(loc_var.mean()) if loc_var.size else 0.0
    return ShiftScorer(state.centres, sigma2 + own, mixture, reach, extent)


def _candidate_shift_scores(scorer, src, offsets, translations, candidates):
    """Every particle's best score (n, C) and shift (n, C, 2) in every candidate rotation, candidates stacked
    as if they were more particles, a group at a time (at most ``_SHIFT_BLOCK`` x 16 localizations)."""
    n, m = len(offsets) - 1, len(src)
    index = np.repeat(np.arange(n), np.diff(offsets))
    at = translations[index]
    scores, moves = np.empty((n, len(candidates))), np.empty((n, len(candidates), 2))
    group = max(1, (16 * _SHIFT_BLOCK) // max(m, 1))
    for a in range(0, len(candidates), group):
        b = min(a + group, len(candidates))
        registered = (np.einsum("cij,mj->cmi", candidates[a:b], src) + at).reshape(-1, 2)
        stacked = np.concatenate([offsets[:-1] + c * m for c in range(b - a)] + [[(b - a) * m]])
        score, move = scorer.best(registered, stacked)
        scores[:, a:b] = score.reshape(b - a, n).T
        moves[:, a:b] = move.reshape(b - a, n, 2).transpose(1, 0, 2)
    return scores, moves


def search_poses(src, loc_var, offsets, state, mixture, candidates, sigma2, reach):
    """2D :func:`search_orientations` that also moves each particle: every candidate at its best shift.

    Each rotation (the current one and every candidate) is scored at every
    shift of a window around the particle's current translation, up to
    ``reach`` (nm) along each axis (see :class:`ShiftScorer`). The table's
    best pose and the current rotation at its best shift are then scored
    exactly (one E-step each, with each localization's own variance), and
    the particle takes the likeliest of them and its current pose. Returns
    an EMState with new ``rotations`` and ``translations``.
    """
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    scorer = _shift_scorer(src, loc_var, state, mixture, sigma2, reach)
    _, stay = scorer.best(apply_transforms(src, state.rotations, state.translations, lengths), offsets)
    scores, moves = _candidate_shift_scores(scorer, src, offsets, state.translations, candidates)
    pick = scores.argmax(axis=1)

    def exact(rotations, translations):
        registered = apply_transforms(src, rotations, translations, lengths)
        return segment_sum(e_step(registered, loc_var, state.centres, sigma2, mixture).loglik, offsets)

    rotations, translations = state.rotations.copy(), state.translations.copy()
    best = exact(rotations, translations)
    for rot, trans in ((state.rotations, state.translations + stay),
                       (candidates[pick], state.translations + moves[np.arange(n), pick])):
        score = exact(rot, trans)
        better = score > best
        best[better] = score[better]
        rotations[better], translations[better] = rot[better], trans[better]
    return EMState(rotations, translations, state.centres, state.sigma2, state.objective, state.n_iter)


def top_poses(src, loc_var, offsets, state, mixture, candidates, sigma2, n_best, min_angle, reach):
    """2D :func:`top_orientations` with every candidate at its best shift within ``reach`` (see :func:`search_poses`).

    Returns
    -------
    picks : ndarray of int, shape (n, n_best)
        Indices into ``candidates``, best first, at least ``min_angle`` apart.
    translations : ndarray of shape (n, n_best, 2)
        The translation of each pick.
    """
    n = len(offsets) - 1
    scorer = _shift_scorer(src, loc_var, state, mixture, sigma2, reach)
    scores, moves = _candidate_shift_scores(scorer, src, offsets, state.translations, candidates)
    picks = _suppressed_picks(scores, _within_angle(candidates, min_angle), n_best)
    return picks, state.translations[:, None, :] + moves[np.arange(n)[:, None], picks]
