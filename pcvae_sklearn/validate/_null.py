"""Is the heterogeneity real? A matched homogeneous null and a paired permutation test."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from scipy.stats import chi2, spearmanr
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._latents import check_latents
from .._ragged import Particles, apply_transforms, as_particles, precision_sd, subsample_rows
from ..estimate import make_estimator
from ..fuse import ParticleFuser

__all__ = ["make_homogeneous_null", "paired_spread_test", "heterogeneity_null_test", "NullTestResult"]

logger = logging.getLogger(__name__)

#: estimates are clipped to these pooled quantiles (and 1 minus) before the test
_CLIP = 0.005
#: localizations farther than this chi-square quantile from every centre count as background
_BACKGROUND_QUANTILE = 0.999
#: largest (permutations x particles) block handled at once in the permutation test
_BLOCK = 4_000_000


#: localizations per particle (at most) on which the null's template is fused; the twins get them all
TEMPLATE_POINTS = 1000


# ------------------------------------------------------------- the null data set
def _nearest_centre(coords, centres, block=200_000):
    """Index of and squared distance to the nearest centre of every row (chunked)."""
    idx = np.empty(len(coords), dtype=np.int64)
    d2 = np.empty(len(coords))
    c2 = (centres**2).sum(axis=1)
    for start in range(0, len(coords), block):  # a loop over memory blocks, not particles
        x = coords[start : start + block]
        dist = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centres.T + c2[None, :]
        idx[start : start + block] = dist.argmin(axis=1)
        d2[start : start + block] = np.maximum(dist[np.arange(len(x)), idx[start : start + block]], 0.0)
    return idx, d2


def _fit_template(p: Particles, fuser, rng) -> ParticleFuser:
    """A clone of ``fuser`` fitted on ``p``: the one structure of the null.

    Particles of more than ``TEMPLATE_POINTS`` localizations are registered
    on a random subset of that many: the poses, centres and shared variance
    need no more, and a fusion's cost grows with the localizations. The
    twins are drawn for every localization all the same.
    """
    fuser = ParticleFuser() if fuser is None else fuser
    if not isinstance(fuser, ParticleFuser):
        raise TypeError(f"fuser must be a ParticleFuser or None, got {type(fuser).__name__}.")
    fuser = clone(fuser).set_params(random_state=rng.randint(2**31 - 1))
    if p.lengths.max() > TEMPLATE_POINTS:
        rows, _ = subsample_rows(np.arange(p.n_localizations), p.lengths, TEMPLATE_POINTS,
                                 np.random.default_rng(rng.randint(2**31 - 1)))
        keep = np.zeros(p.n_localizations, dtype=bool)
        keep[rows] = True
        p = p.take_rows(keep)
    return fuser.fit(p)


def _simulate_null(p: Particles, fuser, rng) -> tuple[Particles, ParticleFuser]:
    fuser = _fit_template(p, fuser, rng)
    return _simulate_twins(p, fuser, rng), fuser


#: a (particle, site) group counts as evidence on a pair of sites when it holds at least this many
#: localizations and this share of the other's
_PAIR_MIN, _PAIR_SHARE = 3, 0.1
#: two sites are one when, in the median particle that has localizations at both, their union spreads
#: along the line between them by less than this many times one dye's localization error: two dyes a
#: distance ``delta`` apart spread by ``s^2 + delta^2 / 4``, so this keeps apart the sites more than
#: 1.4 localization errors apart
_ONE_DYE_RATIO = 1.5
#: fewest particles with evidence on a pair before its median is believed
_PAIR_PARTICLES = 5


def _dye_spread_ratios(stats, g_particle, g_site, position, rotations, sigma2, excess):
    """Median, over particles, of how two sites' localizations spread together, as a share of one dye's spread.

    ``stats`` = (size, first, second, var): per (particle, site) group
    (sorted by particle) its localizations, their sum, the sum of their
    outer products (registered frame) and the sum of their precisions'
    variances along the data's axes. Returns ``pairs`` (k, 2) and their
    ``median`` ratio, for the pairs with evidence in enough particles.
    """
    size, first, second, var = stats
    d = first.shape[1]
    left, right = [], []
    for step in range(1, int(np.bincount(g_particle).max())):  # a loop over the sites of one particle
        a = np.arange(len(size) - step)
        b = a + step
        a, b = a[g_particle[a] == g_particle[b]], b[g_particle[a] == g_particle[b]]
        small, large = np.minimum(size[a], size[b]), np.maximum(size[a], size[b])
        ok = (small >= _PAIR_MIN) & (small >= _PAIR_SHARE * large)
        left.append(a[ok])
        right.append(b[ok])
    a, b = np.concatenate(left), np.concatenate(right)
    if not len(a):
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
    u = position[g_site[b]] - position[g_site[a]]
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), np.finfo(float).tiny)
    n = size[a] + size[b]
    mean = (first[a] + first[b]) / n[:, None]
    scatter = second[a] + second[b] - n[:, None, None] * mean[:, :, None] * mean[:, None, :]
    spread = np.einsum("pi,pij,pj->p", u, scatter, u) / np.maximum(n - 1, 1)
    w = np.einsum("pji,pj->pi", rotations[g_particle[a]], u) ** 2  # the line, along the data's axes
    expected = sigma2 + (w * (var[a] + var[b])).sum(axis=1) / n + (excess * w[:, 2] if d == 3 else 0.0)
    ratio = spread / np.maximum(expected, np.finfo(float).tiny)
    lo, hi = np.minimum(g_site[a], g_site[b]), np.maximum(g_site[a], g_site[b])
    n_s = len(position)
    pair = lo * n_s + hi
    order = np.lexsort((ratio, pair))
    pair, ratio = pair[order], ratio[order]
    uniq, start, count = np.unique(pair, return_index=True, return_counts=True)
    median = 0.5 * (ratio[start + (count - 1) // 2] + ratio[start + count // 2])
    return np.c_[uniq // n_s, uniq % n_s], median, count


def _one_dye_sites(registered, nearest, pidx, centres, own_var, rotations, sigma2, excess):
    """Site number of every centre: centres whose localizations are, particle by particle, one dye.

    A site that sits elsewhere in every particle (a tetrahedron's apex at
    every height) is fitted with a row of centres, and each particle's dye
    covers one or two neighbours of the row; two separate sites each hold a
    dye of their own. For every particle that has localizations at two
    sites, the union of those localizations is projected on the line
    between the sites: one dye spreads there by its localization error
    (``sigma2`` plus the precisions, ``own_var`` (m, d) in the data's frame,
    or the axial ``excess``), two dyes by that plus a quarter of their
    distance squared. A pair on which fewer than ``_PAIR_PARTICLES``
    particles tell (a sparse dSTORM pore: a corner's few blinks rarely fall
    on two of its centres in one particle) gets the ratio that two dyes as
    far apart as the two sites would give. The pair of lowest ratio below
    ``_ONE_DYE_RATIO`` becomes one site, and the ratios are computed again
    for the merged site, until no pair is left: a centre between two rings,
    holding strays of both, joins one ring and never chains the two. A
    corner left split in two would measure each dye's displacement only up
    to the border between its halves, and the twins would scatter less
    than the data.
    """
    m, d = registered.shape
    n_c = len(centres)
    keys, group = np.unique(pidx * n_c + nearest, return_inverse=True)
    g_particle, g_centre = keys // n_c, keys % n_c
    size = np.bincount(group, minlength=len(keys)).astype(float)
    first = _group_sums(registered, group, len(keys))
    second = _group_sums((registered[:, :, None] * registered[:, None, :]).reshape(m, d * d), group,
                         len(keys)).reshape(-1, d, d)
    var = np.zeros((len(keys), d)) if own_var is None else _group_sums(own_var, group, len(keys))
    site = np.arange(n_c)
    lateral_sd = np.sqrt(sigma2 + (float(own_var[:, 0].mean()) if own_var is not None and m else 0.0))
    for _ in range(n_c - 1):
        s_keys, s_group = np.unique(g_particle * n_c + site[g_centre], return_inverse=True)
        n_s = len(s_keys)
        stats = [np.bincount(s_group, weights=size, minlength=n_s), _group_sums(first, s_group, n_s),
                 _group_sums(second.reshape(-1, d * d), s_group, n_s).reshape(-1, d, d), _group_sums(var, s_group, n_s)]
        mass = np.bincount(site[g_centre], weights=size, minlength=n_c)
        members = np.bincount(site, minlength=n_c)
        position = np.where((mass > 0)[:, None],
                            _group_sums(first, site[g_centre], n_c) / np.maximum(mass, 1.0)[:, None],
                            _group_sums(centres, site, n_c) / np.maximum(members, 1)[:, None])
        pairs, median, count = _dye_spread_ratios(stats, s_keys // n_c, s_keys % n_c, position, rotations, sigma2,
                                                  excess)
        # the pairs' ratios; where too few particles tell, the ratio of two dyes as far apart as the sites
        score = np.full((n_c, n_c), np.inf)
        told = count >= _PAIR_PARTICLES
        score[pairs[told, 0], pairs[told, 1]] = median[told]
        # between the fitted centres, not the means of what each kept: two halves of one dye's localizations
        # sit farther apart than their centres
        weight = np.bincount(g_centre, weights=size, minlength=n_c) + 1e-9
        fitted = _group_sums(centres * weight[:, None], site, n_c) / np.maximum(
            np.bincount(site, weights=weight, minlength=n_c), 1e-12)[:, None]
        gap = np.sqrt(((fitted[:, None, :] - fitted[None, :, :]) ** 2).sum(axis=-1))
        untold = np.ones((n_c, n_c), dtype=bool)
        untold[pairs[told, 0], pairs[told, 1]] = False
        live = (members > 0)[:, None] & (members > 0)[None, :] & np.triu(untold, 1)
        score[live] = 1.0 + gap[live] ** 2 / (4.0 * lateral_sd**2)
        if not np.isfinite(score).any() or score.min() >= _ONE_DYE_RATIO:
            break
        a, b = np.unravel_index(np.argmin(score), score.shape)
        site[site == b] = a
    return np.unique(site, return_inverse=True)[1]


def _group_sums(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``values`` (m, k) per group, shape (n_groups, k)."""
    return np.stack([np.bincount(group, weights=values[:, a], minlength=n_groups) for a in range(values.shape[1])], 1)


def _site_frames(seen: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Every site's own axes in the template's frame, (n_sites, d, d), rows radial, tangential[, axial].

    Radial points from the structure's centre (the weighted mean of the
    sites) to the site in the x-y plane; axial is the template's z.
    """
    n, d = seen.shape
    centre = (seen * weight[:, None]).sum(axis=0) / max(weight.sum(), np.finfo(float).tiny)
    phi = np.arctan2(seen[:, 1] - centre[1], seen[:, 0] - centre[0])
    frames = np.zeros((n, d, d))
    frames[:, 0, 0], frames[:, 0, 1] = np.cos(phi), np.sin(phi)
    frames[:, 1, 0], frames[:, 1, 1] = -np.sin(phi), np.cos(phi)
    if d == 3:
        frames[:, 2, 2] = 1.0
    return frames


def _less_particle_shift(mean, mean_error, size, group_particle, n_particles):
    """Group means less their particle's average, with the variance of their errors and their weights.

    A registration a few nm off shifts all of a particle's sites alike: a
    rigid move, not a change of structure, which the twin (placed by the
    same registration) does not need to repeat site by site. With ``k``
    groups in a particle, the centred mean ``c = m - mean(m)`` of a group
    with error ``e`` has variance ``v (1 - 1/k) + e (1 - 2/k) + sum(e) / k^2``
    for a displacement ``v`` per site: returns ``c / sqrt(1 - 1/k)``, the
    error terms divided alike, and 0 weight where ``k < 2``.
    """
    kept = size > 0
    k = np.bincount(group_particle[kept], minlength=n_particles).astype(float)
    pmean = _group_sums(mean * kept[:, None], group_particle, n_particles) / np.maximum(k, 1)[:, None]
    perr = _group_sums(mean_error * kept[:, None], group_particle, n_particles)
    kg = k[group_particle]
    scale = np.where(kg >= 2, 1.0 - 1.0 / np.maximum(kg, 1), 1.0)[:, None]
    centred = (mean - pmean[group_particle]) / np.sqrt(scale)
    error = (mean_error * (1.0 - 2.0 / np.maximum(kg, 1))[:, None] + perr[group_particle] / np.maximum(kg, 1)[:, None] ** 2) / scale
    return centred, error, (kept & (kg >= 2)).astype(float)


def _site_variance(local_mean: np.ndarray, local_error: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """How far a dye sits from its site, along each site's own axes (d,), by the method of moments.

    ``local_mean`` (g, d) is every (particle, site) group's mean less its
    site, along its site's radial, tangential (and axial) axes;
    ``local_error`` (g, d) the variance of that from the localization
    errors alone, along the same axes; ``weight`` (g,) 1 for the groups
    that count. What the means scatter beyond their errors is the
    displacement: linkage, the unresolved copies of a site, and, where the
    structure varies, the variation. It is pooled over all sites, never one
    site's own: a site that moves alone (a tetrahedron's apex) would
    otherwise move alone in the twins too, and the null would hold the
    heterogeneity.
    """
    if not weight.any():
        return np.zeros(local_mean.shape[1])
    excess = ((local_mean**2 - local_error) * weight[:, None]).sum(axis=0) / weight.sum()
    return np.maximum(excess, 0.0)


#: pseudo degrees of freedom with which a particle's own localization error is shrunk towards the data set's
_SHRINK_DOF = 10.0


def _simulate_twins(p: Particles, fuser: ParticleFuser, rng) -> Particles:
    """One twin of every particle of ``p`` from a ``fuser`` already fitted on ``p`` (see make_homogeneous_null)."""
    d = p.n_dims
    rotations = np.asarray(fuser.rotations_, dtype=np.float64)
    translations = np.asarray(fuser.translations_, dtype=np.float64)
    registered = apply_transforms(p.coords, rotations, translations, p.lengths)
    centres = np.asarray(fuser.centres_, dtype=np.float64)
    sigma2 = float(fuser.sigma2_)
    sd = precision_sd(p, "; precisions must be finite and >= 0 nm.")
    excess = float(fuser.axial_excess_)  # without precisions (3D, full rotations): the axis adds this along z
    nearest, _ = _nearest_centre(registered, centres)
    pidx = p.particle_index()
    # background: farther from its centre than the localization error reaches, along the data's axes (the
    # lateral and the axial error apart: in 3D a ball as wide as the axial error holds most of a pick's
    # background, and each background localization in a group pulls its mean)
    off = np.einsum("nji,nj->ni", rotations[pidx], registered - centres[nearest])
    loc_var = np.full((len(off), d), sigma2)
    if sd is not None:
        loc_var += sd**2
    if d == 3:
        loc_var[:, 2] += excess
    background = (off**2 / np.maximum(loc_var, np.finfo(float).tiny)).sum(axis=1) > chi2.ppf(_BACKGROUND_QUANTILE, d)
    fore = ~background
    # one group per (particle, site): a fluorophore near the site, localized over and over (blinking /
    # DNA-PAINT binding). Centres whose localizations are one dye in each particle are one site: the
    # row of centres a fusion spreads along a site that moves from particle to particle (a
    # tetrahedron's apex at every height) would otherwise hand every twin its own variant back
    site_of_centre = _one_dye_sites(registered[fore], nearest[fore], pidx[fore], centres,
                                    None if sd is None else sd[fore] ** 2, rotations, sigma2, excess)
    n_sites = int(site_of_centre.max()) + 1
    site = site_of_centre[nearest]
    keys, group = np.unique(pidx * n_sites + site, return_inverse=True)
    n_groups, group_particle = len(keys), keys // n_sites
    # where each site's localizations sit, on average over all particles: with errors as wide as the
    # gaps between sites, the ones that strayed far went to another site, and what a site keeps is
    # off its mixture position by the same amount in every particle (a share of the structure, not of
    # any one particle)
    n_assigned = np.bincount(site[fore], minlength=n_sites)
    seen = _group_sums(registered[fore], site[fore], n_sites) / np.maximum(n_assigned, 1)[:, None]
    unseen = _group_sums(centres, site_of_centre, n_sites) / np.bincount(site_of_centre, minlength=n_sites)[:, None]
    seen = np.where(n_assigned[:, None] > 0, seen, unseen)
    # every localization's site in its data particle's own frame (the registration inverted: its
    # position, its angle about the optical axis and, in 3D, its tilt), and its offset from it there
    inverse = np.transpose(rotations, (0, 2, 1))
    site_here = apply_transforms(seen[site] - translations[pidx], inverse, np.zeros_like(translations), p.lengths)
    residual = p.coords - site_here
    size = np.bincount(group[fore], minlength=n_groups)
    mean = _group_sums(residual[fore], group[fore], n_groups) / np.maximum(size, 1)[:, None]
    within = residual - mean[group]
    if sd is not None:
        # the error of a group's mean: its localizations' own precisions, along the data's axes
        mean_error = _group_sums(sd[fore] ** 2, group[fore], n_groups) / np.maximum(size, 1)[:, None] ** 2
    else:
        # without precisions: each particle's scatter about its groups' means, per axis of the data (the
        # axial spread included), shrunk towards the data set's. It is the scatter of the localizations a
        # group kept: those that strayed far went to another group, and the group's mean scatters as the
        # mean of what it kept, not of what was drawn
        ss = _group_sums(within[fore] ** 2, pidx[fore], p.n_particles)
        dof = np.maximum(np.bincount(pidx[fore], minlength=p.n_particles)
                         - np.bincount(group_particle[size > 0], minlength=p.n_particles), 0)
        pooled = ss.sum(axis=0) / max(dof.sum(), 1)
        own = (ss + _SHRINK_DOF * pooled) / (dof + _SHRINK_DOF)[:, None]
        mean_error = own[group_particle] / np.maximum(size, 1)[:, None]
    # the displacement of a site's dye, along the site's own axes (radial, tangential, axial), the same
    # for all sites; the means and their errors turned there from the data's frame
    frames = _site_frames(seen, n_assigned)
    turn = np.einsum("gij,gjk->gik", frames[keys % n_sites], rotations[group_particle])  # data -> site axes
    shifted, shifted_error, weight = _less_particle_shift(mean, mean_error, size, group_particle, p.n_particles)
    local_mean = np.einsum("gij,gj->gi", turn, shifted)
    local_error = np.einsum("gij,gj->gi", turn**2, shifted_error)
    site_var = _site_variance(local_mean, local_error, weight)
    logger.debug("null twins: %d centres in %d sites, site displacement SD %s nm", len(centres), n_sites,
                 np.round(np.sqrt(site_var), 2).tolist())
    displacement = np.einsum("gji,gj->gi", turn, rng.normal(size=(n_groups, d)) * np.sqrt(site_var))
    # the twin keeps each localization's scatter about its group's mean (its error, its burst, whatever
    # the data did); only the group's mean moves: to where its site's localizations sit, displaced as
    # a dye is and off by as much as the mean of that many localizations is
    offset = displacement + rng.normal(size=(n_groups, d)) * np.sqrt(mean_error)
    twin = site_here + within + offset[group]
    coords = np.where(background[:, None], p.coords, twin)
    fields = {k: p.fields[k].copy() for k in ("precision", "precision_z") if k in p.fields}
    return Particles(coords=coords, offsets=p.offsets.copy(), fields=fields)


def make_homogeneous_null(X, *, fuser=None, random_state=None):
    """Simulate a homogeneous counterpart of a data set from the data itself.

    All particles are fused into one super-particle with a
    :class:`~pcvae_sklearn.ParticleFuser`: its Gaussian centres
    (``centres_``) are the one structure of the null. Every data particle
    ``i`` gets a twin with the same localizations, moved:

    1. **Sites.** Each registered localization is assigned to its nearest
       centre. Centres whose localizations are, particle by particle, one
       dye form one site: a dye pushed off its site by linkage lands on
       several centres, and a site that sits elsewhere in every particle
       (a tetrahedron's apex at every height) is fitted with a row of them.
       Two centres are one site when, in the median particle with
       localizations at both, their union spreads along the line between
       them by less than 1.5 times one dye's localization error; two dyes
       spread by that plus a quarter of their distance squared. Pairs are
       merged one at a time, lowest first, and the spread is measured
       again for every merged site, so a centre between two rings, holding
       strays of both, joins one ring and never chains the two.
    2. **Groups.** The localizations of one (particle, site), a fluorophore
       localized again and again, form a group. The twin keeps every
       localization's offset from its group's mean, and puts the group's
       mean at

       ``site + site displacement + error of the mean``,

       with the site where its localizations sit on average over all
       particles (see Notes), and the other two drawn once per group: the
       error of the mean with the variance of the mean of the group's
       localization errors (their ``precision``, ``precision_z`` along z,
       in the data's frame), the site displacement with the variance by
       which the data's group means scatter beyond their errors, along
       each site's own radial, tangential (and axial) axes, pooled over
       all sites.
    3. Localizations far from every centre (beyond the 99.9 % chi-square
       quantile of their offset over their error, the lateral and the
       axial error apart, in the data's frame) are background and stay
       where they were. The twin is in
       its data particle's own pose, the registration inverted: its
       position, its angle about the optical axis and, for 3D particles
       registered under full rotations, its tilt.

    So the twins differ from the data in one respect only: every site sits
    where the shared structure puts it, displaced as any site's dye is.
    Missing sites, counts, blinking, the localizations' scatter about their
    sites (the errors, their anisotropy, a localization that strayed
    towards another site), precisions and poses (tilt included) are the
    data's own. Redrawing each localization's error instead would move the
    strays back to the site they were assigned to: with a 3D pore's axial
    error, that evens out the counts of its two rings, and the twins' ring
    distances scatter less than the data's.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        The data particles.
    fuser : ParticleFuser or None
        Settings of the fusion (cloned); ``None``: ``ParticleFuser()``.
    random_state : int, RandomState instance or None

    Returns
    -------
    null : awkward.Array
        ``n_particles * var * {x, y[, z], precision[, precision_z]}``: twin
        ``i`` of data particle ``i``.
    fuser : ParticleFuser
        The fitted fuser whose super-particle defines the null structure.

    Notes
    -----
    Without a ``precision`` field, the error of a group's mean is read
    from the data: each particle's scatter about its groups' means, per
    axis of the data (the axial spread included), shrunk towards the data
    set's with 10 pseudo degrees of freedom, divided by the group's size.
    That is the scatter of what a group kept (a localization that strayed
    far was assigned to another group), and the group's mean scatters as
    the mean of what it kept.

    **The site displacement** is estimated by the method of moments from
    the group means less their particle's average (a registration a few
    nm off moves all of a particle's sites alike, which the twin, placed
    by the same registration, need not repeat). It holds linkage error,
    the unresolved copies of a site (a pore corner's several
    nucleoporins), and, where the structure varies, the variation. Pooled
    over all sites, that variation reaches the twins as independent noise
    on every site: they scatter more than a homogeneous data set would,
    and the test is conservative there, never liberal. A site's own
    displacement is never used: a site that moves alone would move alone
    in the twins too.

    **Where a site's localizations sit.** The group's mean goes to the
    mean of all localizations assigned to its site, over all particles,
    rather than to a centre: with errors as wide as the gaps between
    sites, what a site keeps sits off its mixture position by the same
    amount in every particle (on 3D pores of 20 nm axial error, 4 nm on
    the ring distance), which is a property of the assignment, shared by
    all particles, and not of any one of them.

    **What the sites cannot tell.** Variants whose sites lie farther apart
    than the localization error in every particle (two classes of pores,
    35 and 65 nm) are fitted as separate sites, and each twin keeps its
    own class: the null holds that heterogeneity and the test loses
    power. Pass a fuser with ``n_components`` close to the number of sites
    (8 for the corners of a 2D nuclear pore, 4 for a tetrahedron) when it
    is known; ``fuser.centres_`` shows the template used.

    See Also
    --------
    heterogeneity_null_test : the test that uses the twins.

    Examples
    --------
    >>> from pcvae_sklearn import ParticleFuser
    >>> from pcvae_sklearn.datasets import make_npc_2d
    >>> from pcvae_sklearn.validate import make_homogeneous_null
    >>> X, _ = make_npc_2d(20, random_state=0)
    >>> null, fuser = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    >>> import awkward as ak
    >>> ak.num(null, axis=1).tolist() == ak.num(X, axis=1).tolist()
    True
    >>> null.fields
    ['x', 'y', 'precision']
    """
    p = as_particles(X, min_particles=2)
    null, fuser = _simulate_null(p, fuser, check_random_state(random_state))
    return null.to_awkward(), fuser


# ------------------------------------------------------------------ the test
def _bin_layout(n, n_bins):
    rank = np.arange(n)
    b = rank * n_bins // n  # LatentBinner's rule: equal-count bins by rank
    sizes = np.bincount(b, minlength=n_bins)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return b, rank - starts[b], sizes


def _bin_medians(vals, layout):
    """``vals`` (c, n) in latent order -> per-bin medians, shape (c, n_bins)."""
    b, slot, sizes = layout
    n_bins = len(sizes)
    pad = np.full((vals.shape[0], n_bins, int(sizes.max())), np.inf)
    pad[:, b, slot] = vals
    pad.sort(axis=2)
    cols = np.arange(n_bins)
    return 0.5 * (pad[:, cols, (sizes - 1) // 2] + pad[:, cols, sizes // 2])


def _systematic_variance(vals, layout):
    """Between-bin variance of the estimate beyond what a random order gives, shape (c,).

    ``vals`` (c, n) in latent order. With ``SSB = sum_b m_b (mean_b - mean)^2``
    and ``SST = sum_i (v_i - mean)^2``, a random order gives on average
    ``E[SSB] = (n_bins - 1) SST / (n - 1)`` (one-way ANOVA under
    permutation); the excess, divided by ``n``, is the variance of the
    per-bin mean estimate that the latent order explains.
    """
    _, _, sizes = layout
    n = vals.shape[1]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    mean = vals.mean(axis=1, keepdims=True)
    centred = vals - mean
    bin_sums = np.add.reduceat(centred, starts, axis=1)
    ssb = (bin_sums**2 / sizes).sum(axis=1)
    sst = (centred**2).sum(axis=1)
    return (ssb - (len(sizes) - 1) * sst / (n - 1)) / n


def _as_float_1d(a, n, what):
    a = a.to_numpy() if hasattr(a, "to_numpy") else a
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, 0]  # an estimator's [value, precision] output
    if a.shape != (n,):
        raise ValueError(f"{what} has shape {a.shape}; expected one value per particle, ({n},).")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf.")
    return a


def paired_spread_test(
    latents,
    null_latents,
    estimates,
    null_estimates,
    *,
    n_bins=10,
    n_permutations=999,
    alpha=0.01,
    feature_names=None,
    random_state=None,
):
    """Permutation test: does the estimate vary more along each latent dimension in the data than in its null twins?

    **The spread.** Along latent dimension ``j`` the data particles are cut
    into ``n_bins`` equal-count bins (LatentBinner's rule) and the mean
    estimate of every bin is taken. Even along a dimension unrelated to the
    estimate these bin means scatter, by chance, and more so the more the
    estimate varies overall; so the chance part, known exactly for a random
    order (one-way ANOVA under permutation: ``E[SSB] = (n_bins - 1) SST /
    (n - 1)``), is subtracted. What is left is the variance of the per-bin
    mean estimate that the order along ``j`` explains; its square root
    (0 if negative) is the *data spread*, in the unit of the estimate. The
    same on the twins gives the *null spread*. Without the correction an
    unrelated dimension of a heterogeneous data set would show an excess
    too, and the test could not say *which* dimension carries the
    heterogeneity. The range of the per-bin medians, what a per-bin figure
    shows, is reported alongside (``data_bin_range``, ``null_bin_range``).

    **The p-value.** The statistic is the difference of the two
    chance-corrected variances. For every permutation each particle trades
    places with its twin with probability 1/2 and the statistic is
    recomputed (no refit). Under the null hypothesis that each data
    particle and its twin are exchangeable (the data are as homogeneous as
    the twins, and the latents were computed without knowing which is
    which, e.g. by one VAE fitted on both), every swap pattern is equally
    likely, so ``p_value = (1 + #{T_perm >= T}) / (1 + n_permutations)``
    is an exact one-sided permutation p-value. ``p_value_adjusted``
    controls the family-wise error over the latent dimensions (max-T of
    Westfall & Young: ``T_j`` against the largest permuted ``T`` over all
    dimensions); ``significant`` uses it.

    Parameters
    ----------
    latents, null_latents : array-like of shape (n_particles, n_latent)
        Latents of the data particles and of their twins (row ``i`` of
        ``null_latents`` is the twin of data particle ``i``).
    estimates, null_estimates : array-like of shape (n_particles,) or (n_particles, 2)
        Per-particle estimate (radius, height, ...); of an estimator's
        ``[value, precision]`` output the value is used. Both are clipped
        together to the 0.5-99.5 % quantiles of the pooled values (failed
        fits must not dominate a mean; pooled, so the clipping does not
        know data from twin).
    n_bins : int, default=10
        Bins per dimension; at least 2, and at most ``n_particles // 2``.
    n_permutations : int, default=999
        Swap patterns drawn. The smallest p-value is ``1 / (1 + n_permutations)``.
    alpha : float, default=0.01
        Family-wise level of the ``significant`` column.
    feature_names : list of str, optional
        Names of the latent dimensions (default ``pcvae0, pcvae1, ...``).
    random_state : int, RandomState instance or None

    Returns
    -------
    pandas.DataFrame
        One row per latent dimension: ``latent``; ``data_spread``,
        ``null_spread`` and ``excess`` (their difference), in the unit of the
        estimate; ``data_bin_range`` and ``null_bin_range`` (range of the
        per-bin median estimate); ``data_spearman`` and ``null_spearman``
        (of the dimension with the estimate); ``p_value``,
        ``p_value_adjusted`` and ``significant``.

    See Also
    --------
    heterogeneity_null_test : simulates the twins and fits the VAE, then calls this.

    References
    ----------
    .. [1] Good, P. "Permutation, Parametric, and Bootstrap Tests of
       Hypotheses", 3rd ed., Springer (2005).
    .. [2] Westfall, P. H. and Young, S. S. "Resampling-Based Multiple
       Testing", Wiley (1993).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.validate import paired_spread_test
    >>> rng = np.random.default_rng(0)
    >>> radius = rng.uniform(40, 60, 200)                  # heterogeneous data
    >>> null_radius = np.full(200, 50.0)                   # homogeneous twins
    >>> est, null_est = radius + rng.normal(0, 2, 200), null_radius + rng.normal(0, 2, 200)
    >>> Z = np.c_[radius, rng.normal(size=200)]            # dimension 0 tracks the radius
    >>> Z0 = np.c_[null_radius + rng.normal(0, 0.5, 200), rng.normal(size=200)]
    >>> table = paired_spread_test(Z, Z0, est, null_est, n_permutations=199, random_state=0)
    >>> table["significant"].tolist()
    [True, False]
    """
    import pandas as pd

    Z = check_latents(latents)
    Z0 = check_latents(null_latents, name="null_latents")
    n, k = Z.shape
    if Z0.shape != Z.shape:
        raise ValueError(f"null_latents has shape {Z0.shape} but latents has shape {Z.shape}; give one twin per data particle.")
    E = _as_float_1d(estimates, n, "estimates")
    E0 = _as_float_1d(null_estimates, n, "null_estimates")
    if not isinstance(n_bins, Integral) or n_bins < 2 or n_bins > n // 2:
        raise ValueError(f"n_bins must be an integer in [2, n_particles // 2] = [2, {n // 2}]; got {n_bins!r}.")
    if not isinstance(n_permutations, Integral) or n_permutations < 1:
        raise ValueError(f"n_permutations must be an integer >= 1; got {n_permutations!r}.")
    names = [f"pcvae{j}" for j in range(k)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != k:
        raise ValueError(f"feature_names has {len(names)} names for {k} latent dimensions.")
    rng = check_random_state(random_state)
    layout = _bin_layout(n, n_bins)
    Zall = np.concatenate([Z, Z0])
    Eall = np.concatenate([E, E0])
    Eall = np.clip(Eall, *np.quantile(Eall, [_CLIP, 1.0 - _CLIP]))
    swaps = rng.random_sample((n_permutations, n)) < 0.5
    sysvar = np.empty((2, k))
    bin_range = np.empty((2, k))
    permuted = np.empty((n_permutations, k))
    block = max(1, _BLOCK // (2 * n))
    for j in range(k):  # a loop over latent dimensions
        order = np.argsort(Zall[:, j], kind="stable")
        Es = Eall[order]
        # observed: data particles are rows 0..n-1 of the stacked arrays
        G = (order < n)[None, :]
        groups = np.concatenate([Es[None, :][G].reshape(1, n), Es[None, :][~G].reshape(1, n)])
        sysvar[:, j] = _systematic_variance(groups, layout)
        bin_range[:, j] = np.ptp(_bin_medians(groups, layout), axis=1)
        for start in range(0, n_permutations, block):  # memory blocks of permutations
            s = swaps[start : start + block]
            G = np.concatenate([~s, s], axis=1)[:, order]
            vals = np.broadcast_to(Es, G.shape)
            d = _systematic_variance(vals[G].reshape(len(s), n), layout)
            o = _systematic_variance(vals[~G].reshape(len(s), n), layout)
            permuted[start : start + len(s), j] = d - o
    observed = sysvar[0] - sysvar[1]
    # a relative tolerance, so that ties up to rounding (e.g. a swap that changes nothing) count as >=
    tol = 1e-9 * np.maximum(np.abs(sysvar).max(axis=0), np.finfo(float).tiny)
    p_raw = (1 + (permuted >= observed - tol).sum(axis=0)) / (1 + n_permutations)
    max_perm = permuted.max(axis=1)
    p_adj = (1 + (max_perm[:, None] >= observed[None, :] - tol).sum(axis=0)) / (1 + n_permutations)
    spread = np.sqrt(np.maximum(sysvar, 0.0))
    rho = np.array([spearmanr(Z[:, j], E)[0] if np.ptp(Z[:, j]) > 0 else np.nan for j in range(k)])
    rho0 = np.array([spearmanr(Z0[:, j], E0)[0] if np.ptp(Z0[:, j]) > 0 else np.nan for j in range(k)])
    return pd.DataFrame(
        {
            "latent": names,
            "data_spread": spread[0],
            "null_spread": spread[1],
            "excess": spread[0] - spread[1],
            "data_bin_range": bin_range[0],
            "null_bin_range": bin_range[1],
            "data_spearman": rho,
            "null_spearman": rho0,
            "p_value": p_raw,
            "p_value_adjusted": p_adj,
            "significant": p_adj < alpha,
        }
    )


@dataclass
class NullTestResult:
    """Result of :func:`heterogeneity_null_test`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per latent dimension (see :func:`paired_spread_test`).
    latents : ndarray of shape (2 * n_particles, n_latent)
        Latents of the data particles (first ``n_particles`` rows), then of
        their twins.
    estimates : ndarray of shape (2 * n_particles, 2)
        Per-particle estimate and precision, same order.
    null_particles : awkward.Array
        The twins (see :func:`make_homogeneous_null`).
    vae : PointCloudVAE
        The VAE fitted on data and twins together.
    fuser : ParticleFuser
        The fusion of all data particles that defines the null structure.
    """

    table: object
    latents: np.ndarray
    estimates: np.ndarray
    null_particles: object = field(repr=False)
    vae: object = field(repr=False)
    fuser: object = field(repr=False)

    @property
    def significant_dimensions(self) -> list:
        """Names of the latent dimensions with ``significant`` true."""
        return self.table.loc[self.table["significant"], "latent"].tolist()


def heterogeneity_null_test(
    X,
    *,
    estimator=None,
    vae=None,
    fuser=None,
    n_bins=10,
    n_permutations=999,
    alpha=0.01,
    random_state=None,
):
    """Is the heterogeneity real? Compare the data with a matched homogeneous null.

    1. **Simulate** a homogeneous twin of every particle from the data
       itself (:func:`make_homogeneous_null`): the fused super-particle of
       all particles, relabelled with each particle's own localization
       count, labelling pattern, precisions and pose (tilt included).
    2. **Fit** one clone of ``vae`` on data and twins together (the VAE is
       not told which is which), and encode both; measure every particle
       with ``estimator``.
    3. **Compare**, along every latent dimension, the spread of the per-bin
       mean estimate beyond chance in the data with that in the twins, with
       a paired permutation p-value (:func:`paired_spread_test`).

    Why one joint fit and twin swaps, and not a permutation of the estimates
    against the latents of the data alone: that simpler test asks whether a
    dimension is *associated* with the estimate, and on perfectly
    homogeneous particles it is, since a particle that lost some sites or
    has few localizations both looks different to the VAE and gets a
    different estimate. Its null distribution is that of unrelated latents,
    which is the wrong null. The question here is whether a dimension shows
    *more* variation of the estimate than labelling, counts and noise alone
    produce, which is what the twins have. With the VAE fitted blind to the
    labels, data and twin are exchangeable under that null, so swapping
    them gives an exact permutation test, and no second fit is needed. The
    latent dimensions of two separate fits would not correspond, so a data
    fit and a null fit could only be compared through one number per fit.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        The data particles, at least ``2 * n_bins``.
    estimator : RadiusEstimator, HeightEstimator or None
        The structure estimate (cloned); ``None``: ``RadiusEstimator()`` for
        2D, ``HeightEstimator()`` for 3D particles.
    vae : PointCloudVAE or None
        The VAE settings (cloned, fitted on ``2 * n_particles`` particles);
        ``None``: ``PointCloudVAE()``. If its ``random_state`` is None it is
        seeded from ``random_state``.
    fuser : ParticleFuser or None
        Settings of the fusion that defines the null structure.
    n_bins : int, default=10
    n_permutations : int, default=999
        See :func:`paired_spread_test`.
    alpha : float, default=0.01
        Family-wise level of the ``significant`` column.
    random_state : int, RandomState instance or None

    Returns
    -------
    NullTestResult
        ``.table``: per latent dimension, data and null spread, excess,
        p-values and whether it is significant.

    See Also
    --------
    confound_audit : does a dimension track a nuisance instead of structure?

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025).
    .. [2] Huijben, T. A. P. M. et al. "Detecting structural heterogeneity in
       single-molecule localization microscopy data." Nat. Commun. 12, 3791
       (2021).

    Examples
    --------
    >>> from pcvae_sklearn import ParticleFuser, PointCloudVAE
    >>> from pcvae_sklearn.datasets import make_npc_2d
    >>> from pcvae_sklearn.validate import heterogeneity_null_test
    >>> X, _ = make_npc_2d(40, random_state=0)
    >>> small = {"encoder_widths": (16, 32), "decoder_widths": (16, 32), "decoder_channels": 32, "n_output_points": 16}
    >>> vae = PointCloudVAE(latent_dim=2, n_epochs=1, architecture=small, n_rotations=1)
    >>> result = heterogeneity_null_test(X, vae=vae, fuser=ParticleFuser(n_restarts=1), n_bins=4,
    ...                                  n_permutations=99, random_state=0)
    >>> list(result.table.columns[:4])
    ['latent', 'data_spread', 'null_spread', 'excess']
    """
    from ..encode import PointCloudVAE

    p = as_particles(X, min_particles=2 * n_bins if isinstance(n_bins, Integral) else 2)
    rng = check_random_state(random_state)
    est = make_estimator(estimator, p.n_dims)
    null, fuser = _simulate_null(p, fuser, rng)
    n = p.n_particles
    union = Particles(
        coords=np.concatenate([p.coords, null.coords]),
        offsets=np.concatenate([p.offsets, p.offsets[1:] + p.offsets[-1]]),
        fields={k: np.concatenate([p.fields[k], null.fields[k]]) for k in null.fields},
    )
    vae = PointCloudVAE() if vae is None else clone(vae)
    if vae.get_params().get("random_state", 0) is None:
        vae.set_params(random_state=rng.randint(2**31 - 1))
    Z = np.asarray(vae.fit(union).transform(union))
    E = np.asarray(est.fit_transform(union))
    names = [str(f) for f in vae.get_feature_names_out()]
    table = paired_spread_test(
        Z[:n], Z[n:], E[:n, 0], E[n:, 0], n_bins=n_bins, n_permutations=n_permutations,
        alpha=alpha, feature_names=names, random_state=rng,
    )
    logger.info("heterogeneity_null_test: significant dimensions %s", table.loc[table["significant"], "latent"].tolist())
    return NullTestResult(table=table, latents=Z, estimates=E, null_particles=null.to_awkward(), vae=vae, fuser=fuser)
