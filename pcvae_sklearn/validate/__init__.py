"""Is the heterogeneity real? Null tests and audits of the latent dimensions.

- :func:`heterogeneity_null_test`: a matched homogeneous null, simulated
  from the data itself (:func:`make_homogeneous_null`), encoded by the same
  VAE fit, and a paired permutation test (:func:`paired_spread_test`) of
  whether the estimate varies more along each latent dimension in the data
  than in the null;
- :func:`confound_audit`: correlation of every latent dimension with
  nuisances (localization count, precision, in-plane angle), with flags.

They test the latent dimensions of the paper's VAE (Haghparast, Zhang et
al., Sci. Rep. (2025); the full reference is in :mod:`pcvae_sklearn`).
"""

from ._audit import circular_linear_correlation, confound_audit, principal_axis_angles
from ._null import NullTestResult, heterogeneity_null_test, make_homogeneous_null, paired_spread_test

__all__ = [
    "heterogeneity_null_test",
    "NullTestResult",
    "make_homogeneous_null",
    "paired_spread_test",
    "confound_audit",
    "principal_axis_angles",
    "circular_linear_correlation",
]
