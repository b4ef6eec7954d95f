"""Bins of particles along latent dimensions.

:class:`LatentBinner` orders the particles along every latent dimension and
cuts them into equal-count bins (labels ``0 .. n_bins - 1``, a transformer's
output); :func:`bin_along_axis` is the paper's step for one axis: pick the
dimension that tracks an estimate, orient it and number its bins
``1 .. n_bins`` as the figures and tables do (Haghparast, Zhang et al.,
Sci. Rep. 2025).
"""

from ._axis import LatentAxis, bin_along_axis
from ._binner import LatentBinner
from ._direction import LatentDirection

__all__ = ["LatentBinner", "LatentAxis", "LatentDirection", "bin_along_axis"]
