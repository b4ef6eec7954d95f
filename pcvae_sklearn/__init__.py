"""pcvae_sklearn: point-cloud VAEs for continuous structural heterogeneity in SMLM.

The pipeline, one subpackage a stage::

    io        read localization files into particles, write results back
    encode    PointCloudVAE: one latent vector per particle
    bin       LatentBinner: particles ordered and cut into bins along each latent dimension
    fuse      ParticleFuser: joint registration of particles into super-particles
    estimate  RadiusEstimator / HeightEstimator and scorers for model selection
    datasets  simulators with ground truth (2D/3D nuclear pores, tetrahedra)

References
----------
Haghparast, Zhang et al., "Point cloud variational auto-encoder for continuous
structural heterogeneity in single molecule localization microscopy",
Sci. Rep. (2025).
"""

from ._ragged import Particles, as_particles
from .encode import PointCloudVAE
from ._version import __version__

__all__ = ["PointCloudVAE", "Particles", "as_particles", "__version__"]
