"""Discrete classes in the latents: how many clusters, and what each one looks like.

Clustering itself is scikit-learn's: ``make_pipeline(PointCloudVAE(),
KMeans(3))`` or ``GaussianMixture(3)`` after the VAE fit ragged particles and
``predict`` new ones. ``StandardScaler`` is not needed and can hurt: the
structure usually lives in one or two latent dimensions and the others are
near-collapsed noise, which scaling blows up to the same weight (on three
classes of tetrahedra the adjusted Rand index fell from 1.0 to 0.5 for one
model; it stayed 1.0 for another). This stage adds

- :func:`choose_n_clusters`: BIC of a Gaussian mixture and silhouette for
  ``k = 1..K`` (BIC can also answer "one cluster"), with a plot;
- :func:`fuse_clusters`: one super-particle per cluster (the fusion of
  :func:`~pcvae_sklearn.fuse_bins`) with its radius or height and precision.

Whether the differences the clusters show are real is the job of
:mod:`pcvae_sklearn.validate`.

References
----------
Huijben, T. A. P. M. et al., "Detecting structural heterogeneity in
single-molecule localization microscopy data", Nat. Commun. 12, 3791 (2021).
"""

from ._fuse import ClusterFusion, fuse_clusters
from ._select import ClusterSelection, choose_n_clusters, plot_cluster_selection

__all__ = ["choose_n_clusters", "ClusterSelection", "plot_cluster_selection", "fuse_clusters", "ClusterFusion"]
