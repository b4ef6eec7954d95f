"""
Discrete classes: clustering DNA-origami tetrahedra by their latent
===================================================================

The DNA-origami tetrahedron was first reported as three classes of about 45,
65 and 95 nm height (Huijben et al., Nat. Commun. 2021). Here we simulate
such a mixture and

1. put a clusterer after the :class:`~pcvae_sklearn.PointCloudVAE` in one
   scikit-learn pipeline, and predict the class of new particles,
2. choose the number of clusters by the BIC of a Gaussian mixture
   (:func:`~pcvae_sklearn.cluster.choose_n_clusters`),
3. fuse every cluster into one super-particle and measure its height
   (:func:`~pcvae_sklearn.cluster.fuse_clusters`),
4. check that no latent dimension merely tracks the localization count,
   the precision or the in-plane angle
   (:func:`~pcvae_sklearn.validate.confound_audit`).

Set ``PCVAE_EXAMPLE_FAST=1`` for a quick run (fewer particles, one epoch).
"""

import os

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline

from pcvae_sklearn import HeightEstimator, ParticleFuser, PointCloudVAE
from pcvae_sklearn.cluster import choose_n_clusters, fuse_clusters
from pcvae_sklearn.datasets import make_tetrahedron
from pcvae_sklearn.validate import confound_audit

fast = os.environ.get("PCVAE_EXAMPLE_FAST") == "1"
per_class = 20 if fast else 150

# %%
# Three classes of height, about 300 localizations per docking site.
heights = np.repeat([45.0, 65.0, 95.0], per_class)
particles, truth = make_tetrahedron(len(heights), height=heights, n_localizations=1250, random_state=0)
classes = np.repeat([0, 1, 2], per_class)
print(f"{len(particles)} tetrahedra, {truth['n_localizations'].mean():.0f} localizations each on average")

# %%
# VAE then KMeans, as one estimator. No ``StandardScaler`` in between: the
# latent dimensions share one scale, and scaling would give the dimensions
# the VAE hardly uses (noise) the weight of the one that carries the height.
vae = PointCloudVAE(n_epochs=1 if fast else 4, random_state=0)
pipe = make_pipeline(vae, KMeans(3, n_init=10, random_state=0))
labels = pipe.fit_predict(particles)
print(f"adjusted Rand index with the true classes: {adjusted_rand_score(classes, labels):.3f}")

new_particles, new_truth = make_tetrahedron(6, height=[45.0, 95.0] * 3, n_localizations=1250, random_state=1)
print("clusters of 6 new particles (heights 45, 95, 45, 95, ...):", pipe.predict(new_particles))

# %%
# How many clusters? BIC of a Gaussian mixture on the latents' leading
# principal components, with the silhouette as a second opinion.
latents = pipe[0].transform(particles)
selection = choose_n_clusters(latents, range(1, 7), random_state=0)
print(selection.to_frame().to_string(index=False))
print(f"k chosen by BIC: {selection.n_clusters}")
try:
    import matplotlib

    matplotlib.use("Agg")
    selection.plot()
except ImportError:
    pass

# %%
# One super-particle per cluster; its height from a two-Gaussian fit of z,
# with its precision (FWHM / sqrt(n)).
fusion = fuse_clusters(
    particles,
    labels,
    estimator=HeightEstimator(structure="tetrahedron"),
    fuser=ParticleFuser(rotation="z", n_restarts=1 if fast else 3),
    random_state=0,
)
table = fusion.table.assign(true_median_height_nm=[np.median(truth["height"][labels == c]) for c in fusion.table["cluster"]])
print(table.round(1).to_string(index=False))

# %%
# Does any latent dimension track a nuisance rather than the structure?
audit = confound_audit(particles, latents)
print(audit.pivot(index="latent", columns="nuisance", values="correlation").round(2).to_string())
flagged = audit.loc[audit["flagged"], ["latent", "nuisance", "correlation"]]
print("flagged:", "none" if flagged.empty else "\n" + flagged.to_string(index=False))
