"""Encode: the PC-VAE estimator, its torch networks and the Chamfer loss."""

from ._chamfer import chamfer_distance
from ._vae import PointCloudVAE

__all__ = ["PointCloudVAE", "chamfer_distance"]
