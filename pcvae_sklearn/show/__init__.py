"""Show the results: localization images and the paper's figures.

- :func:`render_particles`, :func:`render_projections`: Gaussian-blurred
  localization images of particles and super-particles (xy, and xz for 3D),
  pixel size and blur defaulting to the localization precision;
  :func:`add_scale_bar`, :func:`scale_bar_length` for drawing.
- Display objects in scikit-learn's style (``from_estimator`` /
  ``from_results``, ``plot(ax=None)``, ``ax_``, ``figure_``), one per figure
  of Haghparast, Zhang et al. (2025): :class:`SuperParticleGridDisplay`,
  :class:`BinRowDisplay`, :class:`LatentScatterDisplay`,
  :class:`BinViolinDisplay`, :class:`SampleRatioDisplay`,
  :class:`TrainingCurveDisplay`, :class:`LatentEmbeddingDisplay`, and
  :class:`AxisStabilityDisplay` (Fig. 12's latent-against-estimate
  correlations, one row per seed).

- :func:`write_report`: one self-contained ``report.html`` of a workflow run.

The data of every figure is computed without matplotlib; ``plot`` imports it
(``pip install 'pcvae-sklearn[plot]'``).

The figures are those of Haghparast, Zhang et al., Sci. Rep. (2025); the full
reference is in :mod:`pcvae_sklearn`.
"""

from ._data import default_bins, sample_ratio_correlations, super_particle_grid
from ._latent_displays import (
    BinViolinDisplay,
    LatentEmbeddingDisplay,
    LatentScatterDisplay,
    SampleRatioDisplay,
    TrainingCurveDisplay,
)
from ._stability_display import AxisStabilityDisplay
from ._super_particle_displays import BinRowDisplay, SuperParticleGridDisplay
from ._render import (
    Rendering,
    add_scale_bar,
    localization_precision,
    render_particles,
    render_projections,
    scale_bar_length,
)
from ._report import write_report

__all__ = [
    "render_particles",
    "render_projections",
    "Rendering",
    "localization_precision",
    "scale_bar_length",
    "add_scale_bar",
    "super_particle_grid",
    "sample_ratio_correlations",
    "default_bins",
    "write_report",
    "SuperParticleGridDisplay",
    "BinRowDisplay",
    "LatentScatterDisplay",
    "BinViolinDisplay",
    "SampleRatioDisplay",
    "TrainingCurveDisplay",
    "LatentEmbeddingDisplay",
    "AxisStabilityDisplay",
]
