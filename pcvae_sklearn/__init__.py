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

from . import datasets, io
from ._ragged import Particles, as_particles
from ._version import __version__
from .bin import LatentBinner
from .encode import PointCloudVAE
from .estimate import (
    HeightEstimator,
    RadiusEstimator,
    best_latent_dimension,
    latent_correlation_scorer,
    latent_correlation_table,
    subsample_localizations,
)
from .fuse import BinFusion, ParticleFuser, fuse_bins
from .io import read_particles
from .workflow import WorkflowResult, analyse

__all__ = [
    "PointCloudVAE",
    "LatentBinner",
    "ParticleFuser",
    "fuse_bins",
    "BinFusion",
    "RadiusEstimator",
    "HeightEstimator",
    "latent_correlation_scorer",
    "latent_correlation_table",
    "best_latent_dimension",
    "subsample_localizations",
    "read_particles",
    "analyse",
    "WorkflowResult",
    "Particles",
    "as_particles",
    "datasets",
    "io",
    "__version__",
]
