"""
The paper's figures from a workflow result
==========================================

:func:`pcvae_sklearn.analyse` fits a PC-VAE, bins the particles along the
latent dimension that tracks the radius and fuses every bin. The Display
objects of :mod:`pcvae_sklearn.show` draw what it found, in the way of the
paper's figures: the super-particles along every latent dimension, the
per-bin super-particles with their radius, latent against radius, per-bin
violins, robustness to fewer localizations, training curves and a PCA of the
latents. Every Display has ``from_results`` (from a ``WorkflowResult``) and
``from_estimator`` (from a fitted ``PointCloudVAE`` and particles), and
``plot(ax=None)``.

Set ``PCVAE_EXAMPLE_FAST=1`` for a quick run (fewer particles, one epoch).
"""

import os

import matplotlib.pyplot as plt

from pcvae_sklearn import PointCloudVAE, analyse
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.fuse import ParticleFuser
from pcvae_sklearn.show import (
    BinRowDisplay,
    BinViolinDisplay,
    LatentEmbeddingDisplay,
    LatentScatterDisplay,
    SampleRatioDisplay,
    SuperParticleGridDisplay,
    TrainingCurveDisplay,
    add_scale_bar,
    render_particles,
)

fast = os.environ.get("PCVAE_EXAMPLE_FAST") == "1"
particles, truth = make_npc_2d(200 if fast else 1000, random_state=0)
vae = PointCloudVAE(n_epochs=1 if fast else 4, random_state=0)
n_bins = 10 if fast else 20
result = analyse(particles, vae=vae, n_bins=n_bins, fuser=ParticleFuser(n_restarts=1) if fast else None, random_state=0)
print(result.bin_table.round(2).to_string(index=False))

# %%
# Single particles, rendered as SMLM software shows them: every localization
# a Gaussian as wide as its precision (here each localization's own, the
# ``precision`` field of the simulated data).
r = render_particles(particles[:4], blur="individual")
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2), layout="constrained")
for ax, image in zip(axes, r.normalised()):
    ax.imshow(image, origin="lower", extent=r.extent, cmap="inferno")
    ax.set_axis_off()
    add_scale_bar(ax)

# %%
# The super-particles of bins 1, 5, 10, 15 and 20 along every latent
# dimension (the paper's Figs. 2, 7 and 9), the last row along the latent
# direction of the radius. Every row is oriented so that the radius grows to
# the right; the number on a tile is its radius (nm).
SuperParticleGridDisplay.from_results(
    result, particles, fuser=ParticleFuser(n_restarts=1), register_bins=False, random_state=0
).plot()

# %%
# All bins along the binned axis, the latent direction of the radius, each
# with its radius and precision (Figs. 5, 8, 10, 11).
BinRowDisplay.from_results(result).plot()

# %%
# Latent against radius, with Pearson and Spearman per dimension (Figs. 3, 12).
scatter = LatentScatterDisplay.from_results(result).plot()
print(scatter.to_frame().round(3).to_string(index=False))

# %%
# Per-particle radius in every bin, with the super-particle radius on top (Fig. 4).
BinViolinDisplay.from_results(result).plot()

# %%
# Robustness (Fig. 6): keep a fraction of every particle's localizations,
# encode again, correlate again.
SampleRatioDisplay.from_estimator(result.encoder, particles, ratios=(0.25, 0.5, 0.75, 1.0), random_state=0).plot()

# %%
# Training curves and a PCA of the latents, coloured by the radius.
TrainingCurveDisplay.from_results(result).plot()
LatentEmbeddingDisplay.from_results(result).plot()
