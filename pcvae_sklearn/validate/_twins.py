"""The matched homogeneous twins: a particle's structure replaced by the fused template, all else kept.

The template is one fusion of all particles. Every localization keeps its
particle, its pose, its scatter about its dye's mean (error, bursts,
whatever the data did) and, if it is background, its place; each dye's
mean moves to its site of the template, displaced as the data's dyes are
from their sites (linkage, unresolved copies), and off by as much as the
mean of that many localizations is. :func:`_twin_model` measures all of
that once; :func:`_draw_twins` draws one twin of every particle from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2
from sklearn.base import clone

from .._ragged import Particles, apply_transforms, precision_sd
from ..fuse import ParticleFuser

logger = logging.getLogger(__name__)

#: localizations farther than this chi-square quantile from every centre count as background
_BACKGROUND_QUANTILE = 0.999

#: localizations per particle (at most) on which the null's template is fused; the twins get them all
TEMPLATE_POINTS = 1000
#: EM iterations per run of the template's fusion when none is given (``ParticleFuser``'s own default is 50): the
#: null's false-positive rates were measured with 100, and at 50 the twins of 3D pores with 24 nm axial error kept
#: less of how each pore's localizations split between its rings ("EM iterations per run (fusion)" in
#: docs/choosing_parameters.md)
TEMPLATE_MAX_ITER = 100


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


def _template_fuser(p: Particles, fuser, rng) -> tuple[ParticleFuser, Particles]:
    """An unfitted clone of ``fuser`` with its own seed, and the particles the template is fused on.

    Particles of more than ``TEMPLATE_POINTS`` localizations are registered
    on a random subset of that many: the poses, centres and shared variance
    need no more, and a fusion's cost grows with the localizations. The
    twins are drawn for every localization all the same.
    """
    fuser = ParticleFuser(max_iter=TEMPLATE_MAX_ITER) if fuser is None else fuser
    if not isinstance(fuser, ParticleFuser):
        raise TypeError(f"fuser must be a ParticleFuser or None, got {type(fuser).__name__}.")
    fuser = clone(fuser).set_params(random_state=rng.randint(2**31 - 1))
    if p.lengths.max() > TEMPLATE_POINTS:
        p = p.subsample(TEMPLATE_POINTS, np.random.default_rng(rng.randint(2**31 - 1)))
    return fuser, p


def _fit_template(p: Particles, fuser, rng) -> ParticleFuser:
    """A clone of ``fuser`` fitted on ``p`` (see :func:`_template_fuser`): the one structure of the null."""
    fuser, p = _template_fuser(p, fuser, rng)
    return fuser.fit(p)


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


def _precision_strata(level: np.ndarray) -> np.ndarray:
    """Every particle's stratum (n_particles,) by its localization error ``level``: equal-count, at most
    ``_STRATA``, each of at least ``_STRATUM_PARTICLES`` particles."""
    n_strata = int(np.clip(len(level) // _STRATUM_PARTICLES, 1, _STRATA))
    cuts = np.quantile(level, np.arange(1, n_strata) / n_strata)
    return np.searchsorted(cuts, level, side="right") if n_strata > 1 else np.zeros(len(level), dtype=np.int64)


#: pseudo degrees of freedom with which a particle's own localization error is shrunk towards the data set's
_SHRINK_DOF = 10.0
#: the particles are cut into this many strata by their localization error (fewer for few particles), and
#: each stratum's groups go where that stratum's localizations of the site sit
_STRATA = 5
#: fewest particles per stratum
_STRATUM_PARTICLES = 100


@dataclass
class _TwinModel:
    """What every twin of the particles shares; each draw only displaces the (particle, site) groups."""

    base: np.ndarray  # (m, d): every localization at its site, plus its scatter about its group's mean
    background: np.ndarray  # (m,) bool: kept where the data have it
    coords: np.ndarray  # (m, d): the data's localizations
    group: np.ndarray  # (m,): the (particle, site) group of every localization
    turn: np.ndarray  # (g, d, d): every group's data axes onto its site's own axes
    site_var: np.ndarray  # (d,): a dye's displacement from its site, along the site's own axes
    mean_error: np.ndarray  # (g, d): the variance of every group's mean, along the data's axes
    offsets: np.ndarray
    fields: dict


def _simulate_twins(p: Particles, fuser: ParticleFuser, rng) -> Particles:
    """One twin of every particle of ``p`` from a ``fuser`` already fitted on ``p`` (see make_homogeneous_null)."""
    return _draw_twins(_twin_model(p, fuser), rng)


def _draw_twins(model: _TwinModel, rng) -> Particles:
    """One twin of every particle from ``model``: each group's dye displaced, and its mean off by its error."""
    n_groups, d = model.mean_error.shape
    displacement = np.einsum("gji,gj->gi", model.turn, rng.normal(size=(n_groups, d)) * np.sqrt(model.site_var))
    offset = displacement + rng.normal(size=(n_groups, d)) * np.sqrt(model.mean_error)
    twin = model.base + offset[model.group]
    coords = np.where(model.background[:, None], model.coords, twin)
    return Particles(coords=coords, offsets=model.offsets.copy(), fields={k: v.copy() for k, v in model.fields.items()})


def _twin_model(p: Particles, fuser: ParticleFuser) -> _TwinModel:
    """The twins' model of ``p`` from a ``fuser`` already fitted on ``p``: sites, groups and their displacement."""
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
    own = None if sd is not None else _own_error(p, group, fore, len(keys), keys // n_sites)
    # every particle's lateral localization error, which sets its stratum
    if sd is not None:
        level = (_group_sums(sd[fore] ** 2, pidx[fore], p.n_particles)[:, :2].mean(axis=1)
                 / np.maximum(np.bincount(pidx[fore], minlength=p.n_particles), 1))
    else:
        level = own[:, :2].mean(axis=1)
    stratum = _precision_strata(level)
    # where each site's localizations sit, on average over the particles of one stratum: with errors as wide
    # as the gaps between sites, the ones that strayed far went to another site, and what a site keeps is off
    # its mixture position by the same amount in every particle of that error (a share of the structure and
    # of the error, not of any one particle). A dim particle's site also keeps more background, which pulls
    # outwards
    groups = _group_offsets(p, registered, rotations, translations, centres, site_of_centre, site, group, keys,
                            fore, stratum, sd, own)
    site_var = _site_variance(groups.local_mean, groups.local_error, groups.weight)
    logger.debug("null twins: %d centres in %d sites, %d strata, site displacement SD %s nm", len(centres), n_sites,
                 stratum.max() + 1, np.round(np.sqrt(site_var), 2).tolist())
    # the twin keeps each localization's scatter about its group's mean (its error, its burst, whatever
    # the data did); only the group's mean moves: to where its site's localizations sit, displaced as
    # a dye is and off by as much as the mean of that many localizations is (:func:`_draw_twins`)
    fields = {k: p.fields[k] for k in ("precision", "precision_z") if k in p.fields}
    return _TwinModel(base=groups.site_here + groups.within, background=background, coords=p.coords, group=group,
                      turn=groups.turn, site_var=site_var, mean_error=groups.mean_error, offsets=p.offsets,
                      fields=fields)


@dataclass
class _GroupOffsets:
    """Every (particle, site) group's mean about its site, and what the twins need of it."""

    site_here: np.ndarray  # (m, d): every localization's site, in its particle's frame
    within: np.ndarray  # (m, d): every localization's offset from its group's mean
    mean_error: np.ndarray  # (g, d): the variance of every group's mean, along the data's axes
    turn: np.ndarray  # (g, d, d): every group's data axes onto its site's own axes
    local_mean: np.ndarray  # (g, d): group mean less its site and its particle's shift, along the site's axes
    local_error: np.ndarray  # (g, d): the variance of that from the localization errors alone
    weight: np.ndarray  # (g,): 1 for the groups that count


def _own_error(p: Particles, group, fore, n_groups, group_particle) -> np.ndarray:
    """Each particle's scatter about its groups' means, per axis of the data (the axial spread included), (n, d).

    Shrunk towards the data set's. It is the scatter of the localizations a
    group kept: those that strayed far went to another group, and the
    group's mean scatters as the mean of what it kept. A group's site is
    one point in its particle's frame, so the scatter does not depend on
    where the site is placed.
    """
    pidx = p.particle_index()
    size = np.bincount(group[fore], minlength=n_groups)
    mean = _group_sums(p.coords[fore], group[fore], n_groups) / np.maximum(size, 1)[:, None]
    ss = _group_sums((p.coords[fore] - mean[group[fore]]) ** 2, pidx[fore], p.n_particles)
    dof = np.maximum(np.bincount(pidx[fore], minlength=p.n_particles)
                     - np.bincount(group_particle[size > 0], minlength=p.n_particles), 0)
    return (ss + _SHRINK_DOF * ss.sum(axis=0) / max(dof.sum(), 1)) / (dof + _SHRINK_DOF)[:, None]


def _group_offsets(p, registered, rotations, translations, centres, site_of_centre, site, group, keys, fore, stratum,
                   sd, own) -> _GroupOffsets:
    """The groups' means about their sites, with the sites placed per ``stratum`` of the particles.

    ``own`` (n, d): each particle's scatter about its groups' means (:func:`_own_error`), the error of a
    group's mean where ``sd`` is None (and then only).
    """
    d, n_sites, n_groups = p.n_dims, int(site_of_centre.max()) + 1, len(keys)
    pidx = p.particle_index()
    group_particle = keys // n_sites
    n_strata = int(stratum.max()) + 1
    # where the localizations of each (stratum, site) sit; a site that a stratum never kept goes where all
    # strata's localizations of it sit, and one that none kept to its centres
    key = stratum[pidx] * n_sites + site
    n_assigned = np.bincount(key[fore], minlength=n_strata * n_sites).reshape(n_strata, n_sites)
    seen = (_group_sums(registered[fore], key[fore], n_strata * n_sites).reshape(n_strata, n_sites, d)
            / np.maximum(n_assigned, 1)[:, :, None])
    per_site = n_assigned.sum(axis=0)
    pooled = _group_sums(registered[fore], site[fore], n_sites) / np.maximum(per_site, 1)[:, None]
    unseen = _group_sums(centres, site_of_centre, n_sites) / np.bincount(site_of_centre, minlength=n_sites)[:, None]
    pooled = np.where(per_site[:, None] > 0, pooled, unseen)
    seen = np.where(n_assigned[:, :, None] > 0, seen, pooled[None]).reshape(n_strata * n_sites, d)
    # every localization's site in its data particle's own frame (the registration inverted: its
    # position, its angle about the optical axis and, in 3D, its tilt), and its offset from it there
    inverse = np.transpose(rotations, (0, 2, 1))
    site_here = apply_transforms(seen[key] - translations[pidx], inverse, np.zeros_like(translations), p.lengths)
    residual = p.coords - site_here
    size = np.bincount(group[fore], minlength=n_groups)
    mean = _group_sums(residual[fore], group[fore], n_groups) / np.maximum(size, 1)[:, None]
    within = residual - mean[group]
    if sd is not None:
        # the error of a group's mean: its localizations' own precisions, along the data's axes
        mean_error = _group_sums(sd[fore] ** 2, group[fore], n_groups) / np.maximum(size, 1)[:, None] ** 2
    else:
        # without precisions, the scatter of what the group kept
        mean_error = own[group_particle] / np.maximum(size, 1)[:, None]
    # the displacement of a site's dye, along the site's own axes (radial, tangential, axial), the same
    # for all sites; the means and their errors turned there from the data's frame
    frames = _site_frames(pooled, per_site)
    turn = np.einsum("gij,gjk->gik", frames[keys % n_sites], rotations[group_particle])  # data -> site axes
    shifted, shifted_error, weight = _less_particle_shift(mean, mean_error, size, group_particle, p.n_particles)
    # the site's place was taken from the same groups, so a group sits nearer to it than to the truth: with
    # sizes n_g summing to N at the (stratum, site), by a share 2 n_g / N - sum(n^2) / N^2 of its variance
    group_key = stratum[group_particle] * n_sites + keys % n_sites
    total = np.bincount(group_key, weights=size, minlength=n_strata * n_sites)[group_key]
    squares = np.bincount(group_key, weights=size.astype(float) ** 2, minlength=n_strata * n_sites)[group_key]
    share = 1.0 - 2.0 * size / np.maximum(total, 1) + squares / np.maximum(total, 1) ** 2
    shifted = shifted / np.sqrt(np.maximum(share, 0.5))[:, None]
    local_mean = np.einsum("gij,gj->gi", turn, shifted)
    local_error = np.einsum("gij,gj->gi", turn**2, shifted_error)
    return _GroupOffsets(site_here=site_here, within=within, mean_error=mean_error, turn=turn, local_mean=local_mean,
                         local_error=local_error, weight=weight)


