"""One super-particle per cluster, with its estimated radius or height."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._input import as_particles
from .._ragged import check_particle_labels
from ..estimate import make_estimator
from ..fuse import BinFusion, fuse_bins

__all__ = ["ClusterFusion", "fuse_clusters"]


@dataclass
class ClusterFusion:
    """Result of :func:`fuse_clusters`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cluster: ``cluster`` (label), ``n_particles``,
        ``particle_median_<q>_nm`` (median of the per-particle estimates),
        ``super_particle_<q>_nm`` and ``super_particle_<q>_precision_nm``
        (the estimate of the cluster's super-particle and its precision,
        FWHM / sqrt(n)); ``<q>`` is ``radius`` or ``height``.
    estimates : ndarray of shape (n_particles, 2)
        Per-particle estimate and precision.
    fusion : BinFusion
        The super-particles (``fusion.super_particles``, in ``table`` order,
        all in one frame) and every particle's transform.
    """

    table: object
    estimates: np.ndarray
    fusion: BinFusion

    @property
    def super_particles(self):
        """``n_clusters * var * {x, y[, z], ...}``, one super-particle per cluster."""
        return self.fusion.super_particles


def fuse_clusters(X, labels, *, estimator=None, fuser=None, register_clusters=True, n_jobs=None, random_state=None):
    """Fuse every cluster into one super-particle and estimate its radius or height.

    The clusters (particles sharing a label, e.g. ``KMeans`` labels of the
    latents) are fused exactly as bins are, by :func:`~pcvae_sklearn.fuse_bins`:
    one :class:`~pcvae_sklearn.ParticleFuser` per cluster, run in parallel,
    then the super-particles registered into one frame. Each super-particle
    is then measured with ``estimator``, which also measures every particle.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        All particles.
    labels : array-like of shape (n_particles,)
        Cluster of every particle. Every cluster needs at least 2 particles.
        Noise labels (``-1`` of DBSCAN/HDBSCAN) are a cluster like any other:
        drop those particles first if they should not be fused.
    estimator : RadiusEstimator, HeightEstimator or None
        Cloned, then fitted on the particles; ``None``: ``RadiusEstimator()``
        for 2D and ``HeightEstimator()`` for 3D particles.
    fuser : ParticleFuser or None
        Settings of the fusion (``ParticleFuser()`` by default). For
        structures lying flat on the coverslip (tetrahedra, pores seen from
        the top) ``ParticleFuser(rotation="z")`` is faster and safer.
    register_clusters : bool, default=True
        Register the clusters' super-particles into one common frame.
    n_jobs : int or None
        Clusters fused in parallel (joblib).
    random_state : int, RandomState instance or None

    Returns
    -------
    ClusterFusion
        The per-cluster table, the per-particle estimates and the fusion.

    Raises
    ------
    ValueError
        For labels of the wrong length or a cluster with fewer than 2
        particles (the errors of :func:`~pcvae_sklearn.fuse_bins`), 2D
        particles given to ``HeightEstimator``.

    See Also
    --------
    choose_n_clusters : pick the number of clusters.
    pcvae_sklearn.fuse_bins : the fusion used here.

    References
    ----------
    .. [1] Huijben, T. A. P. M. et al. "Detecting structural heterogeneity in
       single-molecule localization microscopy data." Nat. Commun. 12, 3791
       (2021).
    .. [2] Wang, W. et al. "Joint registration of multiple point clouds for
       fast particle fusion in localization microscopy." Bioinformatics 38,
       3281-3287 (2022).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn import ParticleFuser
    >>> from pcvae_sklearn.cluster import fuse_clusters
    >>> rng = np.random.default_rng(0)
    >>> def ring(radius):
    ...     phi = np.repeat(np.arange(8) * np.pi / 4 + rng.uniform(0, 2 * np.pi), 8)
    ...     return radius * np.c_[np.cos(phi), np.sin(phi)] + rng.normal(0, 2, (64, 2))
    >>> X = [ring(40.0) for _ in range(6)] + [ring(60.0) for _ in range(6)]
    >>> out = fuse_clusters(X, np.repeat([0, 1], 6), fuser=ParticleFuser(n_components=16, n_restarts=1), random_state=0)
    >>> out.table["super_particle_radius_nm"].round(0).tolist()
    [40.0, 60.0]
    """
    import pandas as pd

    p = as_particles(X, min_particles=2)
    labels = check_particle_labels(labels, p.n_particles)
    est = make_estimator(estimator, p.n_dims)
    E = np.asarray(est.fit_transform(p))
    name = str(est.get_feature_names_out()[0])
    quantity = name.removesuffix("_nm")
    fusion = fuse_bins(p, labels, fuser, n_jobs=n_jobs, register_bins=register_clusters, random_state=random_state)
    sp = np.asarray(est.transform(fusion.super_particles))
    _, inverse = np.unique(labels, return_inverse=True)
    # per-cluster median of the per-particle estimates, vectorised: sort by (cluster, estimate)
    order = np.lexsort((E[:, 0], inverse))
    sizes = fusion.bin_sizes
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sorted_e = E[order, 0]
    medians = 0.5 * (sorted_e[starts + (sizes - 1) // 2] + sorted_e[starts + sizes // 2])
    table = pd.DataFrame(
        {
            "cluster": fusion.labels,
            "n_particles": sizes,
            f"particle_median_{name}": medians,
            f"super_particle_{name}": sp[:, 0],
            f"super_particle_{quantity}_precision_nm": sp[:, 1],
        }
    )
    return ClusterFusion(table=table, estimates=E, fusion=fusion)
