"""Simulated SMLM particles with ground truth, written from the physics.

Every simulator returns ``(particles, truth)``: an awkward array
``n * var * {x, y[, z], precision[, precision_z], site}`` of localizations in
nm, and a numpy structured array with one row of true parameters per
particle (radius or height, pose, counts and the true site positions).

- :func:`make_npc_2d`: top views of nuclear pores (8-fold ring, varying radius);
- :func:`make_npc_3d`: 3D pores (two 8-fold rings, varying radius and ring distance);
- :func:`make_tetrahedron`: 3D DNA-origami tetrahedra of varying height.

Their keywords add the flaws of real data: linkage error, geometric
(dSTORM) or Poisson (DNA-PAINT) counts, background, far outliers, picking
offset, tilt (3D), ring twist (3D pores), no precision field; structure
parameters may be fixed, uniform, Gaussian, two-state or any scipy.stats
distribution.

- :data:`SCENARIOS`, :func:`list_scenarios`, :func:`make_scenario`: a named
  family of such datasets across the three structures, a third of them held
  out, each with its matched homogeneous counterpart.
"""

from ._npc import make_npc_2d, make_npc_3d
from ._scenarios import SCENARIOS, Scenario, list_scenarios, make_scenario
from ._tetrahedron import make_tetrahedron

__all__ = [
    "make_npc_2d",
    "make_npc_3d",
    "make_tetrahedron",
    "Scenario",
    "SCENARIOS",
    "list_scenarios",
    "make_scenario",
]
