"""The rotation average of the latent, distilled into one encoder pass.

PointNet is not rotation invariant, so ``PointCloudVAE.transform`` reports
the mean of a particle's latent means at ``R`` angles about the optical axis
(``n_rotations``). Done exactly, that is ``R`` passes of the shared
per-localization MLP, which is where almost all of the work is.

The average is a function of the particle that hardly depends on the angle
it was picked at, and it is an almost exactly *linear* function of the
pooled features of a single pass: a ridge regression from the pooled
features at each of the ``R`` angles to the particle's ``R``-angle average,
fitted on a few hundred training particles at the end of ``fit``, gives on
held-out particles a best latent dimension as good as the exact average's,
and depends less on the picking angle, since it is fitted to one answer for
all the angles of a particle. ``transform`` then costs one pass instead of
``R``. The figures are in ``docs/choosing_parameters.md``
(``benchmarks/study_rotation_readout.py`` measures them).

Shapes: ``B`` particles, ``C`` pooled features (the last encoder width),
``k`` latent dimensions, ``R`` angles.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ._batching import (
    LOCALIZATION_BUDGET,
    PARTICLE_BUDGET,
    chunk_by_budget,
    gather_rows,
    packed_to_device,
    rotate_tensor_about_z,
    subsample_rows,
)
from ._training import report

__all__ = [
    "pooled_at_angles",
    "fit_rotation_readout",
    "distil_rotation_average",
    "MAX_READOUT_PARTICLES",
    "MAX_READOUT_POINTS",
    "READOUT_RIDGE",
]

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


def pooled_at_angles(
    encoder, points: np.ndarray, lengths: np.ndarray, angles, device, budget=(PARTICLE_BUDGET, LOCALIZATION_BUDGET)
) -> torch.Tensor:
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


def distil_rotation_average(est, run, p, coords: np.ndarray, train_idx: np.ndarray) -> dict:
    """Fit the read-out of ``est``'s rotation average at the end of a fit; the fitted attributes it sets.

    Up to ``MAX_READOUT_PARTICLES`` training particles, evenly spaced, each
    subsampled to ``max_points`` localizations, at most
    ``MAX_READOUT_POINTS`` (after centring on all of them), by a fixed-seed
    generator, so the training random streams are untouched and a resumed
    fit distils exactly what an uninterrupted one does. With fewer than 2
    angles there is nothing to distil, and the read-out is None.
    """
    angles = est._rotation_angles()
    attrs = {"readout_coef_": None, "readout_intercept_": None, "readout_rotations_": len(angles), "readout_error_": None}
    if len(angles) < 2:
        return attrs
    t0 = time.perf_counter()
    n = min(MAX_READOUT_PARTICLES, len(train_idx))
    rows, lengths = gather_rows(p.offsets, train_idx[np.linspace(0, len(train_idx) - 1, n).round().astype(np.int64)])
    max_points = est._training_settings(p.n_dims)[1]
    cap = MAX_READOUT_POINTS if max_points is None else min(int(max_points), MAX_READOUT_POINTS)
    rows, lengths = subsample_rows(rows, lengths, cap, np.random.default_rng(0))
    run.module.eval()
    coef, intercept, error = fit_rotation_readout(est._inference_encoder(run.module), coords[rows], lengths, angles, run.device)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        warnings.warn(
            "the rotation read-out could not be fitted (non-finite values); transform computes the exact average "
            f"over {len(angles)} angles instead.",
            UserWarning,
            stacklevel=5,
        )
        return attrs
    report(
        est.verbose,
        f"[PointCloudVAE] rotation average over {len(angles)} angles distilled into a linear read-out "
        f"({n} particles, relative error {error:.3f}) in {time.perf_counter() - t0:.1f} s",
    )
    attrs.update(readout_coef_=coef, readout_intercept_=intercept, readout_error_=error)
    return attrs
