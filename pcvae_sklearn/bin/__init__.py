"""Bins of particles along latent dimensions.

:class:`LatentBinner` orders the particles along every latent dimension and
cuts them into equal-count bins, the step between the PointCloudVAE and the
per-bin fusion of Haghparast, Zhang et al., Sci. Rep. (2025).
"""

from ._binner import LatentBinner

__all__ = ["LatentBinner"]
