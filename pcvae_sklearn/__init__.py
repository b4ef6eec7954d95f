"""pcvae_sklearn: point-cloud VAEs for continuous structural heterogeneity in SMLM.

The pipeline, one subpackage a stage::

    io        read localization files into particles, write results back
    encode    PointCloudVAE: one latent vector per particle
    bin       LatentBinner: particles ordered and cut into bins along each latent dimension;
              LatentDirection: the latent direction that predicts an estimate
    fuse      ParticleFuser: joint registration of particles into super-particles
    estimate  RadiusEstimator / HeightEstimator and scorers for model selection
    cluster   discrete classes in the latents: choosing k, one super-particle per cluster
    validate  is the heterogeneity real? a matched homogeneous null test, a confound audit
    show      renderings of (super-)particles and the paper's figures as Display objects
    datasets  simulators with ground truth (2D/3D nuclear pores, tetrahedra)

References
----------
Haghparast, Zhang et al., "Point cloud variational auto-encoder for continuous
structural heterogeneity in single molecule localization microscopy",
Sci. Rep. (2025).
"""

from . import cluster, datasets, io, show, validate
from ._input import as_particles
from ._ragged import Particles
from ._version import __version__
from .bin import LatentBinner, LatentDirection, bin_along_axis
from .cluster import choose_n_clusters, fuse_clusters
from .encode import LatentUnmixer, PointCloudVAE, paper_recipe
from .estimate import (
    HeightEstimator,
    RadiusEstimator,
    best_latent_dimension,
    latent_correlation_scorer,
    latent_correlation_table,
    make_estimator,
    subsample_localizations,
)
from .fuse import BinFusion, ParticleFuser, fuse_bins
from .io import read_particles
from .validate import confound_audit, heterogeneity_null_test
from .workflow import WorkflowResult, analyse

__all__ = [
    "PointCloudVAE",
    "paper_recipe",
    "LatentUnmixer",
    "LatentBinner",
    "LatentDirection",
    "bin_along_axis",
    "ParticleFuser",
    "fuse_bins",
    "BinFusion",
    "RadiusEstimator",
    "HeightEstimator",
    "make_estimator",
    "latent_correlation_scorer",
    "latent_correlation_table",
    "best_latent_dimension",
    "subsample_localizations",
    "choose_n_clusters",
    "fuse_clusters",
    "heterogeneity_null_test",
    "confound_audit",
    "read_particles",
    "analyse",
    "WorkflowResult",
    "Particles",
    "as_particles",
    "datasets",
    "io",
    "cluster",
    "validate",
    "show",
    "__version__",
]
