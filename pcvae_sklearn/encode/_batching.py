"""Vectorised batch assembly from the packed form, in the network's units (no per-particle Python loop)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._ragged import gather_rows, subsample_rows  # shared with Particles.take and the fuser

__all__ = [
    "model_coordinates",
    "gather_rows",
    "subsample_rows",
    "rotate_about_z",
    "rotate_tensor_about_z",
    "chunk_by_budget",
    "packed_to_device",
    "PARTICLE_BUDGET",
    "LOCALIZATION_BUDGET",
]

# Encoding without gradient (transform, validation, the rotation read-out) works
# in chunks of at most this many particles and localizations, so that a dataset
# of 5,000-localization particles never materialises an (N, 1024) feature map
# much larger than ~256 MB.
PARTICLE_BUDGET = 512
LOCALIZATION_BUDGET = 65_536


def rotate_about_z(points: np.ndarray, lengths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate each particle's points about the optical (z) axis by its own angle.

    points (N, d) with d in {2, 3}, lengths (B,), angles (B,) radians -> (N, d).
    """
    c = np.repeat(np.cos(angles), lengths)
    s = np.repeat(np.sin(angles), lengths)
    out = points.copy()
    out[:, 0] = c * points[:, 0] - s * points[:, 1]
    out[:, 1] = s * points[:, 0] + c * points[:, 1]
    return out


def chunk_by_budget(lengths: np.ndarray, max_particles: int, max_localizations: int) -> list[tuple[int, int]]:
    """Split ``range(len(lengths))`` into consecutive chunks.

    Each chunk holds at most ``max_particles`` particles and at most
    ``max_localizations`` localizations (a single larger particle gets a chunk
    of its own). The loop runs once per chunk, not once per particle.
    """
    cum = np.concatenate([[0], np.cumsum(lengths)])
    n = len(lengths)
    chunks = []
    start = 0
    while start < n:
        stop = int(np.searchsorted(cum, cum[start] + max_localizations, side="right")) - 1
        stop = min(max(stop, start + 1), start + max_particles, n)
        chunks.append((start, stop))
        start = stop
    return chunks


def packed_to_device(points: np.ndarray, lengths: np.ndarray, device):
    """Packed particles as tensors on ``device``: points (N, d), segment (N,) particle of each row, lengths (B,)."""
    pts = torch.from_numpy(np.ascontiguousarray(points)).to(device)
    lens = torch.from_numpy(np.asarray(lengths, dtype=np.int64)).to(device)
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=device), lens)
    return pts, seg, lens


def rotate_tensor_about_z(points, angle: float):
    """Rotate packed points (a torch tensor, (N, d), d in {2, 3}) by one angle about the optical axis.

    The arithmetic is that of :func:`rotate_about_z` (float64, then back to
    the input's dtype), so the two give identical results.
    """
    c, s = float(np.cos(angle)), float(np.sin(angle))
    x, y = points[:, 0].double(), points[:, 1].double()
    out = points.clone()
    out[:, 0] = c * x - s * y
    out[:, 1] = s * x + c * y
    return out


def model_coordinates(p, scale: float, stacklevel: int = 4) -> np.ndarray:
    """Every particle centred on its centroid and divided by the dataset scale ``scale`` (float32): the network's
    units, checked (a localization too far out is an error naming it; data far off the scale are warned of, at
    ``stacklevel``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        coords = (p.centred().coords / scale).astype(np.float32)
    finite = np.isfinite(coords).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        i, _ = p.locate(row)
        raise ValueError(
            f"{p.name(i)} has a localization too far from its centre to encode ({p.coords[row].tolist()} nm; "
            f"the model's scale is {scale:.3g} nm); check the coordinates' units (nm expected)."
        )
    # the fitted data have an RMS radius of 1 in these units (scale): far from it, latents are extrapolations
    rms = float(np.sqrt(np.mean((coords.astype(np.float64) ** 2).sum(axis=1)))) if len(coords) else 1.0
    if rms > 0 and not 0.1 <= rms <= 10.0:  # (no spread at all says nothing of the units)
        warnings.warn(
            f"these particles' RMS radius is {rms * scale:.3g} nm, {rms:.3g} times the scale of the data "
            f"the model was fitted on ({scale:.3g} nm): check their units (nm expected). Latents of "
            "particles far outside the fitted scale are extrapolations.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return coords
