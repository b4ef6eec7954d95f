"""The steps of one fusion: restarts, the orientation search, the axial spread, the tries of other basins.

:class:`~pcvae_sklearn.fuse.ParticleFuser` runs them; each works on packed
localizations (``src``, centred on each particle's centroid, and
``offsets``) and an :class:`~pcvae_sklearn.fuse._em.EMState`.
"""

from __future__ import annotations

import logging

import numpy as np

from .._ragged import subsample_rows
from ._anisotropic import OwnFrameVariances
from ._em import CommonFrameVariances, EMState, run_em
from ._orientations import grid_spacing, search_orientations, search_poses, top_orientations, top_poses

#: ParticleFuser's logger: its ``verbose`` reports each restart's cycles here
logger = logging.getLogger("pcvae_sklearn.fuse._fuser")

#: localizations per particle (at most) used to score the candidate orientations, by geometry. Full 3D
#: rotations need more points and more orientations ("The orientation search under full 3D rotations" in
#: docs/choosing_parameters.md).
_SEARCH_POINTS = {"2d": 32, "z": 32, "3d": 128}
#: 2D: the shifts tried with each candidate rotation reach this many RMS radii of the data from a particle's
#: current translation (``search_poses``). Turned by 180 degrees, simulated TU Delft logos at 30 % labelling
#: landed 10-35 nm (0.5-1.5 RMS radii) from where their right pose puts them.
SHIFT_REACH = 1.5
#: deterministic annealing of the variance in the first EM run of every restart (None: off;
#: 0.9 was tried and did not prevent split templates on exact 8-site rings, see run_em)
_ANNEAL = None
#: the axial excess variances tried without precision fields, in units of the isotropic fit's shared variance
_AXIAL_EXCESS_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def _estimate_axial_excess(src, offsets, state, mixture, *, mode, max_iter, tol, floor, lateral=None):
    """Without an axial precision in 3D: the axial excess variance of highest likelihood.

    The optical axis usually spreads localizations more than the lateral
    axes, along each particle's own z. Every value of ``_AXIAL_EXCESS_GRID``
    times the isotropic fit's variance per localization (the shared
    variance of ``state``, plus the mean of ``lateral``, each localization's
    lateral precision variance where the file gives one but no
    ``precision_z``) is tried as an own-frame axial variance on top of it:
    EM (centres, shared variance and poses) runs from ``state`` under it,
    and the value of highest log-likelihood is kept (0 where isotropic fits
    best). The spread of the residuals is no estimate here: the centres move
    along z to absorb it, and it came out at a tenth of the truth on
    simulated pores. Returns ``(excess, state)``, the state refitted under
    the chosen value.
    """
    best_excess, best_state = 0.0, state
    unit = state.sigma2 + (0.0 if lateral is None else float(np.mean(lateral)))
    for factor in _AXIAL_EXCESS_GRID[1:]:
        excess = factor * unit
        _, variances = _excess_variances(excess, len(src), offsets, mode, lateral)
        out = run_em(src, offsets, state, mixture, variances, max_iter=max_iter, tol=tol, floor=floor)
        if out.objective > best_state.objective:
            best_excess, best_state = excess, out
    return best_excess, best_state


def _excess_variances(excess, m, offsets, mode, lateral=None):
    """``(loc_var, variances)`` of an axial excess variance along every particle's own z.

    ``lateral`` (m,): each localization's lateral precision variance, on
    every axis (the file gives no axial one), under the excess; None: none.
    With ``mode="z"`` the particles turn about the common z only, which is
    then everyone's own z: the excess is a common-frame variance.
    """
    own_var = np.zeros((m, 3)) if lateral is None else np.repeat(np.asarray(lateral, float)[:, None], 3, axis=1)
    own_var[:, 2] += excess
    if mode == "z":
        return own_var, CommonFrameVariances(own_var, "z")
    return np.repeat(own_var.mean(axis=1, keepdims=True), 3, axis=1), OwnFrameVariances(own_var, offsets)


def _at_most(src, loc_var, variances, offsets, max_points, rng):
    """``(src, loc_var, variances, offsets)`` of at most ``max_points`` random localizations per particle.

    Returns the inputs themselves (``offsets`` the same object) where no
    particle has more, or ``max_points`` is None.
    """
    lengths = np.diff(offsets)
    if max_points is None or lengths.max() <= max_points:
        return src, loc_var, variances, offsets
    rows, sub_lengths = subsample_rows(np.arange(offsets[-1]), lengths, max_points, rng)
    sub_offsets = np.concatenate([[0], np.cumsum(sub_lengths)])
    return src[rows], loc_var[rows], variances.subset(rows, sub_offsets), sub_offsets


def _search_rows(offsets, mode: str, rng):
    """The localizations that score the orientation search: at most ``_SEARCH_POINTS[mode]`` random ones per particle.

    Returns the packed rows and their offsets.
    """
    rows, _ = subsample_rows(np.arange(offsets[-1]), np.diff(offsets), _SEARCH_POINTS[mode], rng)
    return rows, np.searchsorted(rows, offsets)


def _one_restart(src, loc_var, offsets, seed, index, *, mode, n_components, radius, mixture, candidates,
                 max_iter, tol, n_cycles, verbose, variances, shifts):
    """One restart: random centres, then EM, orientation search, EM, ..."""
    rng = np.random.default_rng(seed)
    n = len(offsets) - 1
    d = src.shape[1]
    # centres uniform in a ball (disc) of the data's RMS radius
    direction = rng.normal(size=(n_components, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    centres = direction * radius * rng.uniform(size=(n_components, 1)) ** (1.0 / d)
    if mode == "z":
        centres[:, 2] *= 0.5
    # a wide initial variance (JRMPC): mean squared distance of localizations to centres
    sq = (src**2).sum(1).mean() + (centres**2).sum(1).mean() - 2.0 * src.mean(0) @ centres.mean(0)
    state = EMState(
        rotations=np.broadcast_to(np.eye(d), (n, d, d)).copy(),
        translations=np.zeros((n, d)),
        centres=centres,
        sigma2=float(sq / d),
    )
    floor = 1e-6 * radius**2
    log = logger.debug if verbose > 1 else None
    n_iter = 0
    # the search scores a subsample of every particle, with the variance widened by half the grid spacing
    rows, sub_offsets = _search_rows(offsets, mode, rng)
    best = None
    for cycle in range(n_cycles):
        if cycle > 0:
            if not len(candidates):
                break
            state = _search(src, loc_var, rows, sub_offsets, best, mixture, candidates, radius, shifts)
        state = run_em(src, offsets, state, mixture, variances, max_iter=max_iter, tol=tol, floor=floor,
                       anneal=_ANNEAL if cycle == 0 else None, logger=logger if log else None)
        n_iter += state.n_iter
        if verbose:
            logger.info("restart %d, cycle %d: objective %.5f after %d iterations, sigma %.3g",
                        index, cycle, state.objective, state.n_iter, np.sqrt(state.sigma2))
        # a search never makes things worse: keep the best state of all cycles
        if best is None or state.objective > best.objective:
            best = state
        else:
            break
    best.n_iter = n_iter
    return best


def _search(src, loc_var, rows, sub_offsets, state, mixture, candidates, radius, shifts=False):
    """Global orientation search on the localizations ``rows`` (see ``search_orientations``); 2D with ``shifts``:
    each candidate at its best shift (``search_poses``)."""
    widen = (radius * grid_spacing(candidates) / 2.0) ** 2
    # the coarse search scores with the axis-averaged (isotropic) variance: scoring every candidate with the
    # turned anisotropic covariances (``own_var``) cost 1.5-2x and did not register more pores within 5 degrees
    if shifts:
        # each candidate also gets its best shift (a sparse particle's centroid is not the structure's)
        return search_poses(src[rows], loc_var[rows], sub_offsets, state, mixture, candidates, state.sigma2 + widen,
                            SHIFT_REACH * radius)
    found = search_orientations(src[rows], loc_var[rows], sub_offsets, state, mixture, candidates, state.sigma2 + widen)
    # the subsample's centroid is not the particle's: keep the translation of the full particle's centroid
    return EMState(found.rotations, state.translations.copy(), state.centres, state.sigma2, state.objective, state.n_iter)


def _polish(src, loc_var, offsets, state, mixture, candidates, radius, *, variances, n_best, mode, max_iter, tol,
            rng, refit_centres=True, floor=None, shifts=False):
    """Every particle tries ``n_best`` distinct orientations against the fixed centres and keeps the likeliest.

    The coarse search picks one candidate per particle, scored with the
    axis-averaged variance on a subsample; EM from it can end in the wrong
    basin. Here each of the ``n_best`` best candidates (in different basins,
    see ``top_orientations``) is refined by EM against the fixed centres with
    the model of the fit (``variances``, as in ``run_em``), and every
    particle keeps the refinement of highest log-likelihood, its current
    transform included. With ``shifts`` (2D) each candidate starts at its
    best shift (``top_poses``), else at the particle's current translation.
    A last EM run then refits the centres (unless ``refit_centres`` is
    False: registration onto a fitted model). The state
    returned is never less likely than ``state``.

    Returns
    -------
    state : EMState
    moved : int
        Particles for which another start gave a likelier transform than their current one.
    """
    floor = 1e-6 * radius**2 if floor is None else floor
    rows, sub_offsets = _search_rows(offsets, mode, rng)
    spacing = grid_spacing(candidates)
    widen = (radius * spacing / 2.0) ** 2
    if shifts:
        # each pick with its best shift (see search_poses)
        picks, starts = top_poses(src[rows], loc_var[rows], sub_offsets, state, mixture, candidates,
                                  state.sigma2 + widen, n_best, min_angle=1.5 * spacing, reach=SHIFT_REACH * radius)
    else:
        picks = top_orientations(src[rows], loc_var[rows], sub_offsets, state, mixture, candidates,
                                 state.sigma2 + widen, n_best, min_angle=1.5 * spacing)
        starts = np.broadcast_to(state.translations[:, None, :], (*picks.shape, src.shape[1]))
    fixed = dict(max_iter=max_iter, tol=tol, floor=floor, fit_centres=False)
    current = run_em(src, offsets, state, mixture, variances, **fixed)
    rotations, translations = current.rotations.copy(), current.translations.copy()
    best = current.particle_ll.copy()
    moved = np.zeros(len(best), dtype=bool)
    for k in range(n_best):
        start = EMState(candidates[picks[:, k]], starts[:, k].copy(), state.centres, state.sigma2)
        out = run_em(src, offsets, start, mixture, variances, **fixed)
        ll = out.particle_ll
        better = ll > best
        best[better] = ll[better]
        rotations[better], translations[better] = out.rotations[better], out.translations[better]
        moved |= better
    if not refit_centres:
        return EMState(rotations, translations, state.centres, state.sigma2, float(best.sum() / len(src)),
                       state.n_iter), int(moved.sum())
    polished = EMState(rotations, translations, state.centres, state.sigma2)
    final = run_em(src, offsets, polished, mixture, variances, max_iter=max_iter, tol=tol, floor=floor)
    final.n_iter += state.n_iter
    if final.objective < state.objective:
        return state, 0
    return final, int(moved.sum())

