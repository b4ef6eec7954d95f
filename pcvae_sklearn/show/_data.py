"""The data behind the figures, computed without matplotlib.

Every Display of :mod:`pcvae_sklearn.show` gets its numbers from here, so
they can be computed, tested and saved where matplotlib is not installed.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import clone

from .._input import as_particles
from .._latents import check_latents as _check_latents
from .._ragged import Particles
from ..bin import LatentBinner
from ..estimate import latent_correlation_table, make_estimator, subsample_localizations

__all__ = ["default_bins", "latent_orientation", "super_particle_grid", "sample_ratio_correlations"]

logger = logging.getLogger(__name__)

# the bins of the paper's super-particle grids (Figs. 2, 7, 9), 1-based
PAPER_BINS = (1, 5, 10, 15, 20)


def default_bins(n_bins: int) -> tuple:
    """Bins shown in a grid (1-based): the paper's 1, 5, 10, 15, 20, or 5 spread evenly over ``n_bins``."""
    if n_bins == 20:
        return PAPER_BINS
    return tuple(int(b) for b in np.unique(np.round(np.linspace(1, n_bins, min(5, n_bins)))))


def estimate_particles(estimate, p: Particles):
    """(values (n, 2), name) of ``estimate`` on particles ``p``."""
    est = make_estimator(estimate, p.n_dims)
    values = np.asarray(est.fit_transform(p), dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    try:
        name = str(est.get_feature_names_out()[0])
    except (AttributeError, TypeError, ValueError):
        name = "estimate"
    return values, name


def check_latents(latents, n_particles=None) -> np.ndarray:
    """Latents for a figure: at least 2 particles (see :func:`pcvae_sklearn._latents.check_latents`)."""
    return _check_latents(latents, n_particles, min_particles=2)


def latent_orientation(latents, estimate=None) -> np.ndarray:
    """+1 or -1 per latent dimension, so that the estimate grows along every dimension.

    A latent dimension's sign is arbitrary; the paper's figures orient every
    axis so that bin 1 holds the smallest structures. Without an estimate
    every sign is +1.
    """
    Z = check_latents(latents)
    if estimate is None:
        return np.ones(Z.shape[1])
    table = latent_correlation_table(Z, {"estimate": np.asarray(estimate, dtype=np.float64)})
    rho = np.nan_to_num(table["spearman_rho"].to_numpy())
    return np.where(rho < 0, -1.0, 1.0)


def super_particle_grid(X, latents, *, bins=None, n_bins=20, dimensions=None, orientation=None, fuser=None,
                        register_bins=True, n_jobs=None, random_state=None):
    """Fuse the chosen bins along several latent dimensions into super-particles, all in one frame.

    The particles are cut into ``n_bins`` equal-count bins along every latent
    dimension (:class:`~pcvae_sklearn.bin.LatentBinner`); for every
    dimension in ``dimensions`` and every bin in ``bins`` the particles of
    that bin are fused with :func:`~pcvae_sklearn.fuse.fuse_bins` (all
    ``len(dimensions) * len(bins)`` bins in one call, so in parallel with
    ``n_jobs``, and registered into one common frame).

    Parameters
    ----------
    X : particles
    latents : ndarray of shape (n_particles, latent_dim)
    bins : sequence of int, optional
        1-based bins to fuse; default :func:`default_bins` of ``n_bins``.
    n_bins : int, default=20
    dimensions : sequence of int, optional
        Latent dimensions; default all.
    orientation : ndarray of shape (latent_dim,), optional
        Sign of every latent dimension (see :func:`latent_orientation`).
    fuser : ParticleFuser, optional
    register_bins : bool, default=True
        Register all the super-particles into one common frame (costly for
        many bins); False leaves each in its own frame, centred.
    n_jobs : int, optional
    random_state : int or None

    Returns
    -------
    super_particles : awkward.Array
        ``len(dimensions) * len(bins)`` super-particles, dimension-major.
    dimensions : tuple of int
    bins : tuple of int
        1-based.
    """
    from ..fuse import fuse_bins

    p = as_particles(X, min_particles=2 * n_bins)
    Z = check_latents(latents, p.n_particles)
    dims = tuple(range(Z.shape[1])) if dimensions is None else tuple(int(d) for d in dimensions)
    if not dims or min(dims) < 0 or max(dims) >= Z.shape[1]:
        raise ValueError(f"dimensions must be indices into the {Z.shape[1]} latent dimensions, got {dimensions!r}.")
    shown = default_bins(n_bins) if bins is None else tuple(int(b) for b in bins)
    if not shown or min(shown) < 1 or max(shown) > n_bins:
        raise ValueError(f"bins are 1-based and must lie in 1..{n_bins}, got {bins!r}.")
    signs = np.ones(Z.shape[1]) if orientation is None else np.asarray(orientation, dtype=np.float64)
    labels = LatentBinner(n_bins=n_bins).fit(Z[:, dims] * signs[list(dims)]).labels_
    members, tags = [], []
    for k in range(len(dims)):  # a loop over the shown (dimension, bin) cells, not over particles
        for t, b in enumerate(shown):
            idx = np.flatnonzero(labels[:, k] == b - 1)
            members.append(idx)
            tags.append(np.full(len(idx), k * len(shown) + t))
    order = np.concatenate(members)
    logger.info("fusing %d bins (%d latent dimensions x %d bins) of %d particles", len(members), len(dims), len(shown), len(order))
    fusion = fuse_bins(p.take(order), np.concatenate(tags), fuser, n_jobs=n_jobs, register_bins=register_bins,
                       random_state=random_state)
    return fusion.super_particles, dims, shown


def sample_ratio_correlations(vae, X, *, ratios, estimate="radius", target=None, method="spearman", refit=False,
                              latents=None, random_state=None):
    """Correlation of every latent dimension with the estimate when only a fraction of the localizations is kept.

    ``latents``, when given, are ``vae.transform(X)``, reused at ratio 1
    (unless ``refit``) instead of encoding ``X`` again.

    Returns
    -------
    ndarray of shape (len(ratios), latent_dim)
    """
    from sklearn.utils import check_random_state

    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}.")
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    if ratios.size == 0 or not np.all((ratios > 0) & (ratios <= 1)):
        raise ValueError(f"ratios must be fractions in (0, 1], got {ratios!r}.")
    p = as_particles(X, min_particles=2)
    if target is not None:
        target = np.asarray(target, dtype=np.float64).ravel()
        if target.shape[0] != p.n_particles:
            raise ValueError(f"target has {target.shape[0]} values but X holds {p.n_particles} particles.")
    rng = check_random_state(random_state)
    column = "spearman_rho" if method == "spearman" else "pearson_r"
    rows = []
    for ratio in ratios:  # a handful of ratios
        sub = p if ratio == 1.0 else subsample_localizations(p, float(ratio), random_state=rng.randint(2**31 - 1))
        if ratio == 1.0 and latents is not None and not refit:
            Z = check_latents(latents, p.n_particles)
        else:
            Z = (clone(vae).fit(sub) if refit else vae).transform(sub)
        reference = target if target is not None else estimate_particles(estimate, as_particles(sub))[0][:, 0]
        table = latent_correlation_table(Z, {"reference": reference})
        rows.append(table[column].to_numpy())
        logger.info("sample ratio %.2f: best |%s| %.3f", ratio, method, np.nanmax(np.abs(rows[-1])))
    return np.vstack(rows)
