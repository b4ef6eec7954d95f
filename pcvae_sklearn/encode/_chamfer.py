"""Symmetric Chamfer distance between decoded point sets and ragged targets.

Shapes follow pytorch3d's convention: a ragged batch is a padded tensor plus a
``lengths`` tensor of shape (B,). Padded rows never enter a minimum or a mean.
"""

from __future__ import annotations

import torch

__all__ = ["chamfer_distance", "pad_packed"]


def pad_packed(points: torch.Tensor, lengths: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter packed points into a zero-padded tensor.

    Parameters
    ----------
    points : Tensor of shape (N, d)
        Packed points, particle after particle.
    lengths : Tensor of shape (B,)
        Points per particle; ``lengths.sum() == N``.
    width : int, optional
        Padded length; defaults to ``lengths.max()``.

    Returns
    -------
    padded : Tensor of shape (B, width, d)
    mask : bool Tensor of shape (B, width)
        True where a row holds a real point.
    """
    B = lengths.shape[0]
    width = int(lengths.max()) if width is None else int(width)
    mask = torch.arange(width, device=points.device)[None, :] < lengths[:, None]
    padded = points.new_zeros((B, width, points.shape[-1]))
    padded[mask] = points
    return padded, mask


def chamfer_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    target_lengths: torch.Tensor | None = None,
    *,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Symmetric Chamfer distance per particle, padding-aware.

    ``CD(P, X) = mean_{x in X} min_{p in P} |x - p|^2 + mean_{p in P} min_{x in X} |x - p|^2``

    Parameters
    ----------
    pred : Tensor of shape (B, M, d)
        Decoded points (all valid).
    target : Tensor of shape (B, L, d)
        Padded target points.
    target_lengths : Tensor of shape (B,), optional
        Number of valid rows in each target; all ``L`` when omitted.
    chunk_size : int, default=4096
        Target rows processed at once, so memory stays ``O(B * M * chunk_size)``
        for particles with thousands of localizations.

    Returns
    -------
    Tensor of shape (B,)
        Differentiable with respect to ``pred`` and ``target``.
    """
    B, L, _ = target.shape
    if target_lengths is None:
        target_lengths = torch.full((B,), L, dtype=torch.long, device=target.device)
    valid = torch.arange(L, device=target.device)[None, :] < target_lengths[:, None]  # (B, L)
    inf = torch.finfo(pred.dtype).max
    sum_x_to_p = pred.new_zeros(B)
    min_p_to_x = None
    for start in range(0, L, chunk_size):
        t = target[:, start : start + chunk_size]
        v = valid[:, start : start + chunk_size]
        d2 = _sqdist(t, pred)  # (B, l, M)
        # target -> prediction: every valid target point to its nearest decoded point
        sum_x_to_p = sum_x_to_p + (d2.min(dim=2).values * v).sum(dim=1)
        # prediction -> target: padded target rows can never be the nearest
        d2 = d2.masked_fill(~v[:, :, None], inf)
        chunk_min = d2.min(dim=1).values  # (B, M)
        min_p_to_x = chunk_min if min_p_to_x is None else torch.minimum(min_p_to_x, chunk_min)
    n_valid = target_lengths.clamp(min=1).to(pred.dtype)
    return sum_x_to_p / n_valid + min_p_to_x.mean(dim=1)


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact pairwise squared distances (B, n, m) by broadcasting (no cancellation)."""
    return (a[:, :, None, :] - b[:, None, :, :]).pow(2).sum(-1)
