"""Helpers shared by the benchmark and study scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

#: the real published sets of ../shared/data (see its README); absent on a machine without ../shared
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def precision_spread(value: str):
    """``ParticleFuser(precision_spread=...)`` from the command line: ``auto`` or a number."""
    return value if value == "auto" else float(value)


def best_abs_spearman(Z, truth) -> float:
    """The largest |Spearman| of one latent dimension (a column of Z) with ``truth``; constant columns are skipped."""
    Z = np.asarray(Z)
    return float(np.nanmax([abs(spearmanr(Z[:, j], truth)[0]) for j in range(Z.shape[1])]))


def exact_average(vae):
    """A copy of a fitted PointCloudVAE whose ``transform`` computes the exact rotation average.

    Without its distilled read-out (``readout_coef_`` None, as documented)
    ``transform`` encodes every particle at every one of the ``n_rotations``
    angles; ``vae`` itself is not changed.
    """
    exact = copy.deepcopy(vae)
    exact.readout_coef_ = None
    return exact
