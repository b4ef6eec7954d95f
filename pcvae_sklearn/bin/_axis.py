"""The paper's recipe for one axis: pick a latent dimension, orient it, bin along it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._latents import check_latents
from ..estimate import latent_correlation_table
from ._binner import LatentBinner

__all__ = ["LatentAxis", "bin_along_axis"]


@dataclass(frozen=True)
class LatentAxis:
    """The latent dimension that the bins follow, and the bin of every particle.

    Attributes
    ----------
    dimension : int
        Column of the latents that was binned.
    orientation : {1.0, -1.0}
        Sign applied to that column before binning, so that the estimate
        grows from bin 1 to bin ``n_bins`` (a latent dimension's sign is
        arbitrary). +1 when no estimate was given.
    bins : ndarray of shape (n_particles,), dtype int
        Bin of every particle, numbered ``1 .. n_bins`` as in the paper's
        figures (bin 1 holds the smallest values of
        ``orientation * latents[:, dimension]``).
    n_bins : int
    spearman : ndarray of shape (n_dimensions,)
        Spearman's rho of every latent dimension with the estimate (NaN for a
        constant column, all NaN without an estimate).
    """

    dimension: int
    orientation: float
    bins: np.ndarray
    n_bins: int
    spearman: np.ndarray

    def members(self, b: int) -> np.ndarray:
        """Indices of the particles in bin ``b`` (1-based)."""
        if not 1 <= b <= self.n_bins:
            raise ValueError(f"bins are numbered 1..{self.n_bins}; got {b}.")
        return np.flatnonzero(self.bins == b)


def bin_along_axis(latents, estimate=None, *, dimension=None, n_bins=20, candidates=None) -> LatentAxis:
    """Pick the latent dimension that tracks ``estimate``, orient it and cut it into equal-count bins.

    This is step 2 of the paper's analysis, written once for
    :func:`pcvae_sklearn.analyse`, the Display objects and the null test.

    Parameters
    ----------
    latents : array-like of shape (n_particles, n_dimensions)
        One latent vector per particle.
    estimate : array-like of shape (n_particles,), optional
        A per-particle estimate (radius, height). It picks the dimension
        (largest |Spearman|) unless ``dimension`` is given, and orients it so
        that the estimate grows with the bin number.
    dimension : int, optional
        The dimension to bin along. Required when ``estimate`` is None.
    n_bins : int, default=20
        Equal-count bins; every bin needs at least 2 particles.
    candidates : array-like of int, optional
        The dimensions the choice may take (e.g. the reproducible ones of
        :func:`pcvae_sklearn.validate.axis_stability`); default: all.
        Ignored when ``dimension`` is given.

    Returns
    -------
    LatentAxis

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.bin import bin_along_axis
    >>> rng = np.random.default_rng(0)
    >>> radius = rng.uniform(40, 60, 100)
    >>> Z = np.c_[rng.normal(size=100), -radius + rng.normal(0, 0.1, 100)]
    >>> axis = bin_along_axis(Z, radius, n_bins=4)
    >>> axis.dimension, axis.orientation, np.bincount(axis.bins).tolist()
    (1, -1.0, [0, 25, 25, 25, 25])
    >>> bool(radius[axis.members(1)].max() < radius[axis.members(4)].min())
    True
    """
    Z = check_latents(latents, min_particles=2)
    if estimate is None:
        spearman = np.full(Z.shape[1], np.nan)
        if dimension is None:
            raise ValueError("pass an estimate to choose the dimension, or the dimension to bin along.")
    else:
        y = np.asarray(estimate, dtype=np.float64).ravel()
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"estimate has {y.shape[0]} values for {Z.shape[0]} particles.")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"estimate is not finite for particle(s) {np.flatnonzero(~np.isfinite(y))[:10].tolist()}.")
        spearman = latent_correlation_table(Z, {"estimate": y})["spearman_rho"].to_numpy()
    if dimension is None:
        allowed = np.arange(Z.shape[1]) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
        if len(allowed) == 0 or allowed.min() < 0 or allowed.max() >= Z.shape[1]:
            raise ValueError(f"candidates must be dimensions in 0..{Z.shape[1] - 1}, at least one; got {candidates!r}.")
        if np.all(np.isnan(spearman[allowed])):
            raise ValueError("no latent dimension varies together with the estimate (all correlations undefined).")
        dimension = int(allowed[np.nanargmax(np.abs(spearman[allowed]))])
    elif isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or not 0 <= dimension < Z.shape[1]:
        raise ValueError(f"dimension must be an integer in 0..{Z.shape[1] - 1}; got {dimension!r}.")
    dimension = int(dimension)
    orientation = -1.0 if spearman[dimension] < 0 else 1.0
    labels = LatentBinner(n_bins=n_bins).fit(orientation * Z[:, [dimension]]).labels_[:, 0]
    return LatentAxis(dimension=dimension, orientation=orientation, bins=labels + 1, n_bins=int(n_bins), spearman=spearman)
