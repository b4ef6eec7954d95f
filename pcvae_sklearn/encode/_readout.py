"""The rotation average of the latent, distilled into one encoder pass.

PointNet is not rotation invariant, so ``PointCloudVAE.transform`` reports
the mean of a particle's latent means at ``R`` angles about the optical axis
(``transform_rotations``). Done exactly, that is ``R`` passes of the shared
per-localization MLP, which is where almost all of the work is.

The average is a function of the particle that hardly depends on the angle it
was picked at, and it turns out to be an almost exactly *linear* function of
the pooled features of a single pass: a ridge regression from the pooled
features at each of the ``R`` angles to the particle's ``R``-angle average,
fitted on a few hundred training particles at the end of ``fit``, reproduces
the average on new simulated pores to 8-16 % of the latent spread (RMS;
3-9 % with the defaults before 2026-11-26), whatever the angle the single
pass sees, and the best dimension's |Spearman| with a true parameter differs
from the exact average's by -0.001 to +0.015 (before 2026-11-26: -0.004
to +0.009; ``benchmarks/study_rotation_readout.py``; ``docs/scaling.md``). Being fitted
to one answer for all the angles of a particle, it depends 4.3-5.5 times less
on the angle than the exact average does (on DNA-origami tetrahedra, whose
8-angle average still depends on the picking angle, it differs from that
average by ~50 % and tracks their height better). ``transform`` then costs
one pass instead of ``R``.

Shapes: ``B`` particles, ``C`` pooled features (the last encoder width),
``k`` latent dimensions, ``R`` angles.
"""

from __future__ import annotations

import numpy as np
import torch

from ._batching import chunk_by_budget, packed_to_device, rotate_tensor_about_z

__all__ = ["pooled_at_angles", "fit_rotation_readout", "MAX_READOUT_PARTICLES", "MAX_READOUT_POINTS", "READOUT_RIDGE"]

# training particles the read-out is fitted on (evenly spaced over the
# training set): 128, 256, 512 and 1000 gave the same held-out quality on
# make_npc_2d (seeds 0, 2); 512 keeps a margin for more varied data at about
# one second of a 2D fit on 2 cores.
MAX_READOUT_PARTICLES = 512
# localizations per particle the read-out sees: max_points, but at most this
# many (with max_points=None, 512 DNA origami of 5,000 localizations at 8
# angles would cost as much as encoding 20 million localizations)
MAX_READOUT_POINTS = 1024
# ridge penalty, relative to the mean variance of the pooled features;
# 1e-4 and 1e-2 gave the same held-out quality
READOUT_RIDGE = 1e-2


def pooled_at_angles(encoder, points: np.ndarray, lengths: np.ndarray, angles, device, budget=(512, 65_536)) -> torch.Tensor:
    """Pooled features of packed particles at every angle about the optical axis.

    Parameters
    ----------
    encoder : FoldedEncoder
    points : ndarray (N, d) float32
        Centred, scaled localizations, packed.
    lengths : ndarray (B,)
    angles : sequence of R floats (radians)
    device : torch.device
    budget : (int, int)
        Particles and localizations per chunk.

    Returns
    -------
    Tensor (R, B, C), float32, on ``device``.
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = None
    with torch.inference_mode():
        for start, stop in chunk_by_budget(lengths, *budget):
            pts, seg, lens = packed_to_device(points[offsets[start] : offsets[stop]], lengths[start:stop], device)
            for r, angle in enumerate(angles):
                pooled = encoder.pool(rotate_tensor_about_z(pts, angle) if angle else pts, seg, lens)
                if out is None:
                    out = torch.empty((len(angles), len(lengths), pooled.shape[1]), dtype=torch.float32, device=device)
                out[r, start:stop] = pooled
    return out


def fit_rotation_readout(encoder, points: np.ndarray, lengths: np.ndarray, angles, device, ridge: float = READOUT_RIDGE):
    """Fit the linear read-out that maps one pass's pooled features to the rotation average.

    The targets are the exact averages ``mean_r mu_head(pool(R_r x))`` of the
    given particles; the inputs are their pooled features at every one of the
    ``R`` angles, so the read-out learns to ignore the angle.

    Parameters
    ----------
    encoder : FoldedEncoder
        Its ``mu_head`` defines the exact average.
    points, lengths, angles, device
        As in :func:`pooled_at_angles`.
    ridge : float
        Penalty, relative to the mean variance of the pooled features.

    Returns
    -------
    coef : ndarray (C, k) float32
    intercept : ndarray (k,) float32
    error : float
        Root-mean-square difference between the read-out and the exact
        average over the fitting pairs, divided by the root-mean-square
        spread of the exact averages (0 is perfect).
    """
    features = pooled_at_angles(encoder, points, lengths, angles, device)
    with torch.inference_mode():
        target = encoder.mu_head(features).mean(dim=0)  # (B, k): the exact rotation average
    n_angles, n, width = features.shape
    A = features.reshape(n_angles * n, width).double().cpu().numpy()
    T = target.double().cpu().numpy()
    Y = np.tile(T, (n_angles, 1))
    a_mean, y_mean = A.mean(axis=0), Y.mean(axis=0)
    A -= a_mean
    gram = A.T @ A
    penalty = ridge * np.trace(gram) / width + 1e-12  # positive definite even for constant features
    gram[np.diag_indices_from(gram)] += penalty
    coef = np.linalg.solve(gram, A.T @ (Y - y_mean))
    intercept = y_mean - a_mean @ coef
    residual = A @ coef + (a_mean @ coef + intercept) - Y
    spread = np.sqrt(np.mean((T - T.mean(axis=0)) ** 2))
    error = float(np.sqrt(np.mean(residual**2)) / spread) if spread > 0 else 0.0
    return coef.astype(np.float32), intercept.astype(np.float32), error
