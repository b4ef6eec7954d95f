"""Symmetric Chamfer distance between decoded point sets and ragged targets.

Shapes follow pytorch3d's convention: a ragged batch is a padded tensor plus a
``lengths`` tensor of shape (B,). Padded rows never enter a minimum or a mean.

Every point's nearest neighbour in the other set is found *without
gradient* (an exact, chunked brute-force search, since the decoded set is
small: ``M`` is ~128); the matched points are then gathered and the squared
distances recomputed *with* gradient. Autograd keeps only
``O(B * (L + M) * d)`` values, where the plain formula keeps the whole
``(B, L, M, d)`` difference tensor for the backward pass, so particles of
5,000 localizations train without quadratic memory. The value and the
gradient are those of the plain formula: the gradient of ``min`` flows to its
argmin only, and the search uses the very same arithmetic, so it picks the
same argmin. The plain formula, with autograd through every pairwise
distance, is the tests' reference (``tests/_encode_reference.py``).

With ``weights``, every squared distance is the Mahalanobis one of the
localization involved: ``sum_k w_k (x_k - p_k)**2`` with the localization
``x``'s per-axis weights ``w`` (its inverse variances), in both searches and
in the loss, so a localization known to 20 nm along z counts along z as
much as one known to 8 nm laterally does along x.
"""

from __future__ import annotations

import torch

__all__ = ["chamfer_distance", "nearest_neighbours", "pad_packed"]

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
    weights: torch.Tensor | None = None,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Symmetric Chamfer distance per particle, padding-aware.

    ``CD(P, X) = mean_{x in X} min_{p in P} |x - p|^2 + mean_{p in P} min_{x in X} |x - p|^2``,
    where with ``weights`` every ``|x - p|^2`` is ``sum_k w_xk (x_k - p_k)^2``.

    Parameters
    ----------
    pred : Tensor of shape (B, M, d)
        Decoded points (all valid).
    target : Tensor of shape (B, L, d)
        Padded target points.
    target_lengths : Tensor of shape (B,), optional
        Number of valid rows in each target; all ``L`` when omitted.
    weights : Tensor of shape (B, L, d), optional
        Positive per-axis weights of every target point (for a localization,
        its inverse variances, ``1 / precision**2`` on a common scale); they
        enter the nearest-neighbour searches and the loss alike. Rows of the
        padding are never read. None: all 1 (the Euclidean distance).
    chunk_size : int, default=4096
        Target rows compared with the decoded points at once, so the
        transient memory stays ``O(B * M * chunk_size)``; the backward pass
        keeps ``O(B * (L + M))``.

    Returns
    -------
    Tensor of shape (B,)
        Differentiable with respect to ``pred`` and ``target``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}.")
    B, L, _ = target.shape
    if target_lengths is None:
        target_lengths = torch.full((B,), L, dtype=torch.long, device=target.device)
    valid = torch.arange(L, device=target.device)[None, :] < target_lengths[:, None]  # (B, L)
    n_valid = target_lengths.clamp(min=1).to(pred.dtype)
    if weights is not None and weights.shape != target.shape:
        raise ValueError(f"weights must have the target's shape {tuple(target.shape)}; got {tuple(weights.shape)}.")
    if weights is not None:
        weights = weights.masked_fill(~valid[:, :, None], 1.0)  # the padding's rows are never read
    to_pred, to_target = nearest_neighbours(pred, target, valid, weights=weights, chunk_size=chunk_size)
    # target -> prediction: every valid target point to its nearest decoded point
    d_x = _rowdist(target, _gather(pred, to_pred), weights)  # (B, L)
    # prediction -> target: every decoded point to its nearest valid target point
    d_p = _rowdist(_gather(target, to_target), pred, None if weights is None else _gather(weights, to_target))  # (B, M)
    return (d_x * valid).sum(dim=1) / n_valid + d_p.mean(dim=1)


@torch.no_grad()
def nearest_neighbours(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *, weights: torch.Tensor | None = None,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact nearest neighbours in both directions, without gradient.

    Parameters
    ----------
    pred : Tensor of shape (B, M, d)
    target : Tensor of shape (B, L, d)
    valid : bool Tensor of shape (B, L), optional
        Real target rows; padded rows are never anyone's neighbour.
    weights : Tensor of shape (B, L, d), optional
        Per-axis weights of the target rows: distances are
        ``sum_k w_k (x_k - p_k)**2`` with the target row's weights.
    chunk_size : int, default=4096
        Target rows searched at once: memory ``O(B * M * chunk_size)``.

    Returns
    -------
    to_pred : long Tensor of shape (B, L)
        For every target row, the index of its nearest decoded point
        (meaningless on padded rows).
    to_target : long Tensor of shape (B, M)
        For every decoded point, the index of its nearest valid target row.
    """
    B, L, _ = target.shape
    M = pred.shape[1]
    to_pred = torch.empty((B, L), dtype=torch.long, device=target.device)
    best = torch.full((B, M), float("inf"), dtype=torch.promote_types(pred.dtype, target.dtype), device=pred.device)
    to_target = torch.zeros((B, M), dtype=torch.long, device=pred.device)
    for start in range(0, L, chunk_size):
        w = None if weights is None else weights[:, start : start + chunk_size]
        d2 = _sqdist(target[:, start : start + chunk_size], pred, w)  # (B, l, M), as in the dense form
        to_pred[:, start : start + d2.shape[1]] = d2.argmin(dim=2)
        if valid is not None:
            d2.masked_fill_(~valid[:, start : start + chunk_size, None], float("inf"))
        chunk_best, chunk_arg = d2.min(dim=1)  # (B, M)
        better = chunk_best < best  # strict: on a tie the earlier row wins, as one dense min would
        best = torch.where(better, chunk_best, best)
        to_target = torch.where(better, chunk_arg + start, to_target)
    return to_pred, to_target


def _gather(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points (B, n, d), index (B, m) -> points[b, index[b, j]] of shape (B, m, d), differentiable."""
    return points.gather(1, index[:, :, None].expand(-1, -1, points.shape[-1]))


def _rowdist(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distance row by row, (B, n, d) x (B, n, d) -> (B, n), the arithmetic of :func:`_sqdist`.

    ``w`` (B, n, d): per-axis weights of the rows.
    """
    sq = (a - b).pow(2)
    return (sq if w is None else sq * w).sum(-1)


def _sqdist(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Exact pairwise squared distances (B, n, m) by broadcasting (no cancellation).

    ``w`` (B, n, d): per-axis weights of ``a``'s rows.
    """
    sq = (a[:, :, None, :] - b[:, None, :, :]).pow(2)
    return (sq if w is None else sq * w[:, :, None, :]).sum(-1)
