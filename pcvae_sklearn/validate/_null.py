"""Is the heterogeneity real? A matched homogeneous null and a paired permutation test."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._input import as_particles
from .._latents import check_latents
from .._ragged import Particles, precision_sd
from ..estimate import make_estimator
from ..fuse import ParticleFuser
from ._twins import _fit_template, _simulate_twins

__all__ = ["make_homogeneous_null", "paired_spread_test", "heterogeneity_null_test", "NullTestResult"]

logger = logging.getLogger(__name__)

#: estimates are clipped to these pooled quantiles (and 1 minus) before the test
_CLIP = 0.005
#: largest (permutations x particles) block handled at once in the permutation test
_BLOCK = 4_000_000


def _simulate_null(p: Particles, fuser, rng) -> tuple[Particles, ParticleFuser]:
    # the twins read the precision field whatever the fuser's use_precision: say so before the template's fit
    precision_sd(p, "; the null's twins are drawn with the precision field: correct those values, or drop the "
                    "field to draw them without precisions.")
    fuser = _fit_template(p, fuser, rng)
    return _simulate_twins(p, fuser, rng), fuser


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

       with the site where its localizations sit on average over the
       particles of like localization error (see Notes), and the other
       two drawn once per group: the error of the mean with the variance
       of the mean of the group's localization errors (their
       ``precision``, ``precision_z`` along z, in the data's frame), the
       site displacement with the variance by which the data's group
       means scatter beyond their errors, along each site's own radial,
       tangential (and axial) axes, pooled over all sites.
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
        Settings of the fusion (cloned); ``None``: ``ParticleFuser(max_iter=100)``.
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
    mean of the localizations assigned to its site, rather than to a
    centre: with errors as wide as the gaps between sites, what a site
    keeps sits off its mixture position by the same amount in every
    particle of that error (on 3D pores of 20 nm axial error, 4 nm on the
    ring distance), a property of the assignment and the error, and not
    of any one particle. So the particles are cut, by their mean
    localization error (the ``precision`` field, or without it their
    scatter about their groups' means), into up to 5 equal strata of at
    least 100 particles, and each stratum's groups go where that
    stratum's localizations of the site sit. A dim particle's site keeps
    more background and more strays, which move it, and a radius measured
    on dim particles comes out larger: twins placed where all particles'
    localizations sit missed that, and on simulated homogeneous pores
    whose precision varied several-fold between particles, an axis that
    sorted the particles by precision beat the null
    (``benchmarks/bench_null_precision.py``). A structure that truly
    differs between the strata stays in the twins as that difference:
    variation that follows the localization error is not called.

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
        Settings of the fusion that defines the null structure; ``None``:
        ``ParticleFuser(max_iter=100)``.
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
