"""Is the heterogeneity real? A matched homogeneous null and a paired permutation test."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
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


def _sites(centres: np.ndarray, distance: float) -> np.ndarray:
    """Site number of every centre: single-linkage groups of centres closer than ``distance``."""
    if len(centres) < 2 or not distance > 0:
        return np.arange(len(centres))
    return fcluster(linkage(centres, method="single"), t=distance, criterion="distance") - 1


def _site_share(residual: np.ndarray, group: np.ndarray) -> float:
    """The share of the residual variance that a (particle, site) group's localizations have in common.

    ``residual`` (m, k) are localizations less their template centre, along
    k axes that carry no other error; ``group`` numbers each one's
    (particle, site). By the method of moments: the spread about each
    group's own mean is the localization error ``s_loc^2`` (per axis); a
    group mean of ``n`` localizations scatters by ``s_site^2 + s_loc^2 / n``
    about the centre. Returns ``s_site^2 / (s_site^2 + s_loc^2)`` in [0, 1];
    0 where no group has two localizations.
    """
    counts = np.bincount(group)
    k = residual.shape[1]
    means = np.stack([np.bincount(group, weights=residual[:, a], minlength=counts.size) for a in range(k)], 1)
    means /= np.maximum(counts, 1)[:, None]
    pairs = counts >= 2
    if not pairs.any():
        return 0.0
    within = float(((residual - means[group]) ** 2).sum() / ((counts[pairs] - 1).sum() * k))
    between = float(np.mean((means[pairs] ** 2).sum(axis=1) / k - within / counts[pairs]))
    total = max(between, 0.0) + within
    return float(np.clip(between / total, 0.0, 1.0)) if total > 0 else 0.0


def _noise_scales(residual: np.ndarray, pidx: np.ndarray, n_particles: int) -> np.ndarray:
    """Each particle's residual variance relative to the whole data set's, shrunk for its count.

    ``residual`` (m, k) along axes of one kind of error each, ``pidx`` the
    particle of every row. A particle's scale is the mean of its rows'
    ``sum_a r_a^2 / v_a / k`` (``v_a`` the variance of axis ``a`` over all
    rows). Its sampling variance is about ``2 / (n_i k)``; the scales are
    shrunk towards 1 by the share of their spread that this explains
    (empirical Bayes), so a data set of one noise level keeps 1 everywhere.
    """
    k = residual.shape[1]
    axis_var = np.maximum((residual**2).mean(axis=0), np.finfo(float).tiny)
    counts = np.bincount(pidx, minlength=n_particles)
    raw = np.bincount(pidx, weights=(residual**2 / axis_var).sum(axis=1) / k, minlength=n_particles)
    seen = counts > 0
    scale = np.ones(n_particles)
    if seen.sum() < 2:
        return scale
    scale[seen] = raw[seen] / counts[seen]
    spread = scale[seen].var()
    keep = max(0.0, 1.0 - np.mean(2.0 / (counts[seen] * k)) / spread) if spread > 0 else 0.0
    scale[seen] = 1.0 + keep * (scale[seen] - 1.0)
    return np.maximum(scale, 0.0)


def _simulate_twins(p: Particles, fuser: ParticleFuser, rng) -> Particles:
    """One twin of every particle of ``p`` from a ``fuser`` already fitted on ``p`` (see make_homogeneous_null)."""
    d = p.n_dims
    registered = apply_transforms(p.coords, fuser.rotations_, fuser.translations_, p.lengths)
    centres = np.asarray(fuser.centres_, dtype=np.float64)
    sigma2 = float(fuser.sigma2_)
    sd = precision_sd(p, "; precisions must be finite and >= 0 nm.")
    excess = float(fuser.axial_excess_)  # without precisions (3D, full rotations): the axis adds this along z
    nearest, d2 = _nearest_centre(registered, centres)
    loc_var = sigma2 + excess / d + (0.0 if sd is None else (sd**2).mean(axis=1))
    background = d2 > chi2.ppf(_BACKGROUND_QUANTILE, d) * np.maximum(loc_var, np.finfo(float).tiny)
    pidx = p.particle_index()
    # one displacement per (particle, site): a fluorophore near the site, localized over and over
    # (blinking / DNA-PAINT binding). Centres closer than two displacements cannot be told apart as
    # separate dyes: a dye's burst, pushed off its site by linkage, lands on several of them, and
    # drawing one displacement per centre would average that burst's offset away. So such centres
    # share one site.
    site_of_centre = _sites(centres, 2.0 * np.sqrt(sigma2))
    _, site = np.unique(pidx * len(centres) + site_of_centre[nearest], return_inverse=True)
    site_var, scale = sigma2, np.ones(p.n_localizations)
    if sd is None and not background.all():
        # Without precisions sigma2 holds the localization error too. Split it by how much of the
        # residual a site's localizations share (in 3D along each particle's own x and y, which the
        # axial excess leaves alone), and give each twin its particle's own noise level, as a
        # precision field would.
        fore = ~background
        residual = registered[fore] - centres[nearest[fore]]
        if d == 3:
            residual = np.einsum("mab,ma->mb", np.asarray(fuser.rotations_)[pidx[fore]], residual)
        site_var = sigma2 * _site_share(residual[:, :2], site[fore])
        scale = np.sqrt(_noise_scales(residual, pidx[fore], p.n_particles))[pidx]
    site_disp = rng.normal(0.0, np.sqrt(site_var), size=(site.max() + 1, d))
    twin = np.where(background[:, None], registered, centres[nearest] + site_disp[site] * scale[:, None])
    if sd is None:
        noise = rng.normal(0.0, np.sqrt(sigma2 - site_var), size=(p.n_localizations, d)) * scale[:, None]
        twin = np.where(background[:, None], twin, twin + noise)
    # back into the data particle's own pose (the registration inverted): its position, its angle
    # about the optical axis and, in 3D, its tilt, which the twins must share with the data
    shift = np.repeat(np.asarray(fuser.translations_, dtype=np.float64), p.lengths, axis=0)
    inverse = np.transpose(np.asarray(fuser.rotations_, dtype=np.float64), (0, 2, 1))
    coords = apply_transforms(twin - shift, inverse, np.zeros((p.n_particles, d)), p.lengths)
    if sd is not None:
        # each localization's own error, along the data's axes (precision_z along z)
        coords = np.where(background[:, None], p.coords, coords + rng.normal(size=(p.n_localizations, d)) * sd)
    elif excess > 0:
        # the axial excess the fuser estimated, along the data's own z
        coords[:, 2] = np.where(background, p.coords[:, 2],
                                coords[:, 2] + rng.normal(0.0, np.sqrt(excess), size=p.n_localizations) * scale)
    fields = {k: p.fields[k].copy() for k in ("precision", "precision_z") if k in p.fields}
    return Particles(coords=coords, offsets=p.offsets.copy(), fields=fields)


def make_homogeneous_null(X, *, fuser=None, random_state=None):
    """Simulate a homogeneous counterpart of a data set from the data itself.

    All particles are fused into one super-particle with a
    :class:`~pcvae_sklearn.ParticleFuser`. Its Gaussian centres
    (``centres_``) and extra variance (``sigma2_``) are the one structure
    of the null. Every data particle ``i`` gets a twin with the same number
    of localizations and the same precisions, and the same labelling
    pattern: each of its registered localizations is assigned to its
    nearest centre, and the twin puts a localization there instead,

    ``centre + site displacement + localization error``,

    where the site displacement (variance ``sigma2_``) is drawn once per
    (particle, site) pair, like one fluorophore localized again and again
    (centres closer than two displacements, ``2 sqrt(sigma2_)``, form one
    site: a dye's burst, pushed off its site by linkage error, lands on
    several of them), and the localization error is Gaussian with that localization's
    own ``precision`` (``precision_z`` along z, in the data's frame).
    Localizations far from every centre (beyond the 99.9 % chi-square
    quantile) are background and stay where they were. The twin is placed
    in its data particle's own pose, the registration inverted: its
    position, its angle about the optical axis and, for 3D particles
    registered under full rotations, its tilt.

    So the twins differ from the data in one respect only: they all share
    one structure. Missing sites, counts, blinking, precisions and poses
    (tilt included) are the data's own.

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
    Without a ``precision`` field, ``sigma2_`` holds the localization error
    too. It is split by the data's own residuals about the template
    centres: the spread of a (particle, site)'s localizations about their
    own mean is the localization error, drawn independently for every twin
    localization; the rest, the scatter of those means, is the site
    displacement, drawn once per (particle, site). For 3D particles the
    split is read along each particle's own x and y, and the fuser's
    ``axial_excess_`` is added along its own z. Each particle's noise level
    is its own: all of its twin's errors are scaled by its residual
    variance relative to the data set's (shrunk towards 1 by how much of
    its spread the particle's count explains), as a precision field would
    scale them.

    **How many centres.** The twins are only as homogeneous as the
    template is. With about as many centres as the structure has sites,
    heterogeneity in the data widens the centres (a larger ``sigma2_``)
    and the twins all share the average structure. With many more centres
    than sites, the fusion can place centres for each variant (two rings
    for a mixture of small and large pores), and the nearest-centre
    assignment then hands every twin its own variant back: the null keeps
    part of the heterogeneity and the test loses power (it becomes
    conservative, never liberal). So pass a fuser with ``n_components``
    close to the number of sites (8 for the corners of a 2D nuclear pore,
    4 for a tetrahedron) when it is known; ``fuser.centres_`` shows the
    template used.

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
