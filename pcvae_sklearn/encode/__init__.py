"""Encode: the PC-VAE estimator, its torch networks, the Chamfer loss, and the unmixing of latent axes."""

from ._chamfer import chamfer_distance
from ._settings import paper_recipe
from ._unmix import LatentUnmixer
from ._vae import PointCloudVAE

__all__ = ["PointCloudVAE", "LatentUnmixer", "chamfer_distance", "paper_recipe"]
