"""Is the heterogeneity real? Null tests and audits of the latent dimensions.

- :func:`heterogeneity_null_test`: a matched homogeneous null, simulated
  from the data itself (:func:`make_homogeneous_null`), encoded by the same
  VAE fit, and a paired permutation test (:func:`paired_spread_test`) of
  whether the estimate varies more along each latent dimension in the data
  than in the null;
- :func:`trend_null_test`: the workflow's own null (run by
  :func:`pcvae_sklearn.analyse`): the twins encoded by the already fitted
  VAE, binned by the same procedure, their per-bin curves as a band and a
  p-value for the data's trend; :func:`bin_bootstrap_intervals`: per-bin
  intervals that resample particles;
- :func:`axis_stability`: fits with several seeds, their axes matched
  (:func:`match_axes`): which axes come back, and what each tracks;
- :func:`confound_audit`: correlation of every latent dimension with
  nuisances (localization count, precision, in-plane angle), with flags.

They test the latent dimensions of the paper's VAE (Haghparast, Zhang et
al., Sci. Rep. (2025); the full reference is in :mod:`pcvae_sklearn`).
"""

from ._audit import circular_linear_correlation, confound_audit, principal_axis_angles
from ._null import NullTestResult, heterogeneity_null_test, make_homogeneous_null, paired_spread_test
from ._stability import AxisStability, axis_stability, match_axes
from ._trend import TrendNullResult, bin_bootstrap_intervals, per_bin_statistic, trend_null_test

__all__ = [
    "heterogeneity_null_test",
    "NullTestResult",
    "make_homogeneous_null",
    "paired_spread_test",
    "trend_null_test",
    "TrendNullResult",
    "bin_bootstrap_intervals",
    "per_bin_statistic",
    "axis_stability",
    "AxisStability",
    "match_axes",
    "confound_audit",
    "principal_axis_angles",
    "circular_linear_correlation",
]
