"""Structure estimates per particle and scorers for model selection.

- :class:`RadiusEstimator`, :class:`HeightEstimator`: the paper's model-based
  estimates (radius of rings and pores, height of pores and tetrahedra), with
  their precision, for particles and super-particles; both derive from
  :class:`ParticleEstimator`, the base class of such estimates.
- :func:`latent_correlation_scorer`: a ``scoring=`` callable for
  ``GridSearchCV``: the largest |correlation| of a latent dimension with an
  estimate.
- :func:`latent_correlation_table`, :func:`best_latent_dimension`: Pearson and
  Spearman of every latent dimension against estimates.
- :class:`OutOfPlaneWarning`: many 3D particles look turned out of the plane,
  where their estimate measures their orientation.
- :func:`make_estimator`: an estimator from its name (``"radius"``, ``"height"``, ...).
- :func:`subsample_localizations`: keep a random fraction of localizations
  (robustness experiment).

The estimates and correlations are those of Haghparast, Zhang et al.,
Sci. Rep. (2025); the full reference is in :mod:`pcvae_sklearn`.
"""

from ._estimators import HeightEstimator, OutOfPlaneWarning, ParticleEstimator, RadiusEstimator
from ._names import ESTIMATES, make_estimator
from ._scorers import best_latent_dimension, latent_correlation_scorer, latent_correlation_table
from ._segments import segment_median
from ._subsample import subsample_localizations

__all__ = [
    "RadiusEstimator",
    "HeightEstimator",
    "make_estimator",
    "ESTIMATES",
    "ParticleEstimator",
    "OutOfPlaneWarning",
    "latent_correlation_scorer",
    "latent_correlation_table",
    "best_latent_dimension",
    "subsample_localizations",
    "segment_median",
]
