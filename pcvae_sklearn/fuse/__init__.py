"""Particle fusion: joint registration of particles into super-particles.

- :class:`ParticleFuser`: template-free joint registration (JRMPC-style EM,
  Wang et al. 2022) of many particles into one super-particle;
- :func:`fuse_bins`: one super-particle per bin (e.g. of a
  :class:`~pcvae_sklearn.bin.LatentBinner`), fused in parallel and registered
  into one common frame;
- :func:`frc_resolution`: the Fourier ring correlation resolution of a
  super-particle, from two independently fused halves of the particles;
- :func:`pose_reproducibility`: how tightly every particle's localizations
  fix its pose, from two random halves of it registered onto the fused
  model, beside the same for twins drawn from that model
  (:func:`model_twins`).
"""

from ._bins import BinFusion, fuse_bins
from ._frc import FRCResult, fourier_ring_correlation, frc_resolution
from ._fuser import ParticleFuser
from ._poses import PoseReproducibility, model_twins, pose_reproducibility

__all__ = [
    "ParticleFuser",
    "fuse_bins",
    "BinFusion",
    "frc_resolution",
    "FRCResult",
    "fourier_ring_correlation",
    "pose_reproducibility",
    "PoseReproducibility",
    "model_twins",
]
