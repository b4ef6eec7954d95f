"""Helpers shared by the benchmark and study scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr


def best_abs_spearman(Z, truth) -> float:
    """The largest |Spearman| of one latent dimension (a column of Z) with ``truth``; constant columns are skipped."""
    Z = np.asarray(Z)
    return float(np.nanmax([abs(spearmanr(Z[:, j], truth)[0]) for j in range(Z.shape[1])]))


def rotate_z(points: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate (B, M, d) points about the optical axis, one angle per particle."""
    c, s = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
    x, y = points[..., 0], points[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y] + ([points[..., 2]] if points.shape[-1] == 3 else []), -1)


def rotation_min_chamfer(chamfer_distance, n_angles: int):
    """``chamfer_distance`` taken at the best of ``n_angles`` rotations of the prediction about the optical axis.

    The search runs without gradient; the distance at the chosen angle carries it.
    """

    def chamfer(pred, target, lengths, **kwargs):
        angles = torch.arange(n_angles, dtype=pred.dtype, device=pred.device) * (2 * torch.pi / n_angles)
        with torch.no_grad():
            costs = torch.stack(
                [chamfer_distance(rotate_z(pred, a.expand(len(pred))), target, lengths, **kwargs) for a in angles]
            )
        return chamfer_distance(rotate_z(pred, angles[costs.argmin(0)]), target, lengths, **kwargs)

    return chamfer
