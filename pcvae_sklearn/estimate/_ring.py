"""Robust ring fit: centre and radius of every particle, all particles at once.

The centroid of a ring's localizations is pulled towards the dyes that
blinked most, towards the sites that happened to be labelled and towards far
outliers; every localization is then closer to it on one side and farther on
the other, and the mean distance comes out low and noisy (by -0.6 nm and
2.2 nm per particle on ``make_npc_2d`` pores of 50 nm). A circle fit finds the
centre from the ring's shape instead, whichever of its sites carry the
localizations.

Each iteration is a weighted algebraic (Kasa) circle fit in xy, solved as one
batch of 3x3 normal equations from segment sums, followed by Tukey biweights
on the residuals of the radial distances (cut at 4.685 robust standard
deviations), so that background and outliers drop out. The shift of the
centre is ridge-regularised towards the current centre: a particle whose
localizations cover only a short arc keeps a centre near its start (the
coordinate-wise median) rather than an arbitrary one.

The fit runs from two starts: every localization, and only those within
``START_TRIM`` times the particle's median distance from its coordinate-wise
median. The algebraic fit weighs a localization by its squared distance, so a
few background localizations far out in a wide pick can pull the first fit
off the ring, and the reweighting never recovers (a neighbouring structure
that holds a third of the pick's localizations pulls both starts alike); the trimmed start avoids that, but on a ring
that is only partly labelled it can cut real localizations. Each particle
keeps the trimmed start's fit only where its radial distances scatter
clearly less (a median absolute deviation below ``TIGHTER`` times the
other's): the tighter ring.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._ragged import Particles
from ._segments import segment_median

#: Tukey biweight cut-off in robust standard deviations (95% efficiency at the normal).
TUKEY_C = 4.685
#: Normalized median absolute deviation: MAD * 1.4826 estimates the standard deviation of a normal.
MAD_TO_SD = 1.4826
#: Ridge on the centre's shift, relative to the second moment of the localizations about the centre.
RIDGE = 1e-3
#: The second start keeps the localizations within this many times the particle's median distance from its median.
START_TRIM = 2.0
#: The trimmed start's fit is kept where its radial MAD is below this fraction of the other fit's.
TIGHTER = 0.9


def _tukey(residual, scale):
    u = residual / (TUKEY_C * scale)
    return np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)


def ring_fit(p: Particles, *, n_iter: int = 4, lateral_sd=None):
    """Centre and radius of a ring in every particle's xy plane.

    Parameters
    ----------
    p : Particles
        Particles with at least one localization each (2D or 3D; z is ignored).
    n_iter : int, default=4
        Reweighted circle fits from each of the two starts (see the module
        docstring).
    lateral_sd : ndarray of shape (n_localizations,) or None
        Per-localization lateral precision (nm). When given, the radius is
        corrected for the outward bias of distances under noise: for a point
        at distance R with Gaussian error of standard deviation s per axis the
        mean distance is about R + s**2 / (2 R), so R is the root of
        ``R**2 - m R + s2 / 2 = 0`` with ``m`` the weighted mean distance and
        ``s2`` the weighted mean variance. Without it the radius is biased up
        by that amount (0.4 nm at s = 6 nm, R = 50 nm).

    Returns
    -------
    radius : ndarray of shape (n_particles,)
        Tukey-weighted mean radial distance from the fitted centre (corrected
        as above when ``lateral_sd`` is given).
    spread : ndarray of shape (n_particles,)
        Weighted standard deviation of the radial distances.
    n_effective : ndarray of shape (n_particles,)
        Sum of the weights (the localizations that count).
    centres : ndarray of shape (n_particles, 2)
        The fitted centres.
    weights : ndarray of shape (n_localizations,)
        Final weight of every localization in [0, 1].
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer of at least 1; got {n_iter!r}.")
    xy = np.asarray(p.coords[:, :2], dtype=np.float64)
    lengths = p.lengths
    start = p.quantiles(0.5)[:, :2]
    dist = np.linalg.norm(xy - np.repeat(start, lengths, axis=0), axis=1)
    near = (dist <= START_TRIM * np.repeat(segment_median(dist, p.offsets), lengths)).astype(np.float64)
    fits = [_reweighted_fits(p, xy, start, np.ones(len(xy)), n_iter), _reweighted_fits(p, xy, start, near, n_iter)]
    # per particle, the trimmed start where its ring is clearly tighter (none lies beyond the trim: a tie, the first)
    trimmed = fits[1][3] < TIGHTER * fits[0][3]
    centres = np.where(trimmed[:, None], fits[1][0], fits[0][0])
    per_loc = np.repeat(trimmed, lengths)
    dist = np.where(per_loc, fits[1][1], fits[0][1])
    weights = np.where(per_loc, fits[1][2], fits[0][2])
    wsum = p.segment_sum(weights)
    radius = p.segment_sum(weights * dist) / wsum
    spread = np.sqrt(np.maximum(p.segment_sum(weights * (dist - np.repeat(radius, lengths)) ** 2) / wsum, 0.0))
    if lateral_sd is not None:
        s2 = p.segment_sum(weights * np.asarray(lateral_sd, dtype=np.float64) ** 2) / wsum
        unresolved = radius**2 < 2.0 * s2
        if unresolved.any():
            i = int(np.flatnonzero(unresolved)[0])
            warnings.warn(
                f"{int(unresolved.sum())} of {p.n_particles} particles (the first {p.name(i)}, mean distance "
                f"{radius[i]:.3g} nm from its centre, precision {np.sqrt(s2[i]):.3g} nm) have a precision too large "
                "for any ring of that size: their radius is the noise's, not a structure's. Check that the precision "
                "field and the coordinates are both in nm.",
                UserWarning,
                stacklevel=4,
            )
        radius = 0.5 * (radius + np.sqrt(np.maximum(radius**2 - 2.0 * s2, 0.0)))
    return radius, spread, wsum, centres, weights


def _reweighted_fits(p: Particles, xy, centres, weights, n_iter):
    """``n_iter`` weighted circle fits, each followed by Tukey biweights; the centres, distances, weights and MAD."""
    lengths = p.lengths
    dist = mad = None
    for _ in range(n_iter):
        d = xy - np.repeat(centres, lengths, axis=0)
        x, y = d[:, 0], d[:, 1]
        r2 = x * x + y * y

        def s(v, w=weights):
            return p.segment_sum(v * w)

        n, sx, sy = s(np.ones_like(x)), s(x), s(y)
        sxx, syy, sxy = s(x * x), s(y * y), s(x * y)
        ridge = 4.0 * RIDGE * (sxx + syy)
        a = np.empty((p.n_particles, 3, 3))
        a[:, 0] = np.stack([4 * sxx + ridge, 4 * sxy, 2 * sx], axis=-1)
        a[:, 1] = np.stack([4 * sxy, 4 * syy + ridge, 2 * sy], axis=-1)
        a[:, 2] = np.stack([2 * sx, 2 * sy, n], axis=-1)
        b = np.stack([2 * s(r2 * x), 2 * s(r2 * y), s(r2)], axis=-1)
        # a particle whose weighted localizations all sit on its centre has nothing to fit: keep the centre
        degenerate = ~(ridge > 0) | ~(n > 0)
        a[degenerate] = np.eye(3)
        b[degenerate] = 0.0
        shift = np.linalg.solve(a, b[..., None])[:, :2, 0]
        centres = centres + shift
        dist = np.linalg.norm(xy - np.repeat(centres, lengths, axis=0), axis=1)
        median = segment_median(dist, p.offsets)
        residual = dist - np.repeat(median, lengths)
        mad = MAD_TO_SD * segment_median(np.abs(residual), p.offsets)
        floor = 1e-9 * np.maximum(median, 1.0)
        weights = _tukey(residual, np.repeat(np.maximum(mad, floor), lengths))
    return centres, dist, weights, mad


def central_fraction(p: Particles) -> np.ndarray:
    """Per particle, the fraction of localizations within half its median radial (xy) distance of its centroid.

    Near 0 for rings (their centre is empty), 0.125 for a uniformly filled
    disc and larger for grids and compact shapes.
    """
    xy = p.coords[:, :2]
    d = np.linalg.norm(xy - np.repeat(p.centroids()[:, :2], p.lengths, axis=0), axis=1)
    median = segment_median(d, p.offsets)
    inside = d < 0.5 * np.repeat(median, p.lengths)
    return p.segment_sum(inside.astype(np.float64)) / p.lengths
