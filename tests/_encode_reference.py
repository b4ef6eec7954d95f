"""Naive references for the encode kernels: used by the tests (and ``benchmarks/bench_big_particles.py``), never by the library."""

from __future__ import annotations

import copy

import torch


def dense_chamfer(pred: torch.Tensor, target: torch.Tensor, target_lengths=None, *, weights=None,
                  chunk_size: int = 4096) -> torch.Tensor:
    """Symmetric Chamfer distance with autograd through every pairwise distance.

    The plain formula that ``pcvae_sklearn.encode.chamfer_distance`` computes
    with a no-gradient search and a gather: pred (B, M, d), target (B, L, d)
    padded, target_lengths (B,) -> (B,). Chunked over target rows in the
    forward pass, but the backward pass keeps the whole ``(B, L, M, d)``
    difference tensor. Same squared-distance arithmetic as the library, so
    the values agree to the last bit. ``weights`` (B, L, d): per-axis
    weights of the target points, multiplying their squared differences.
    """
    B, L, _ = target.shape
    if target_lengths is None:
        target_lengths = torch.full((B,), L, dtype=torch.long, device=target.device)
    valid = torch.arange(L, device=target.device)[None, :] < target_lengths[:, None]
    n_valid = target_lengths.clamp(min=1).to(pred.dtype)
    inf = torch.finfo(pred.dtype).max
    sum_x_to_p = pred.new_zeros(B)
    min_p_to_x = None
    for start in range(0, L, chunk_size):
        t = target[:, start : start + chunk_size]
        v = valid[:, start : start + chunk_size]
        sq = (t[:, :, None, :] - pred[:, None, :, :]).pow(2)
        d2 = (sq if weights is None else sq * weights[:, start : start + chunk_size, None, :]).sum(-1)  # (B, l, M)
        sum_x_to_p = sum_x_to_p + (d2.min(dim=2).values * v).sum(dim=1)
        d2 = d2.masked_fill(~v[:, :, None], inf)  # padded target rows can never be the nearest
        chunk_min = d2.min(dim=1).values  # (B, M)
        min_p_to_x = chunk_min if min_p_to_x is None else torch.minimum(min_p_to_x, chunk_min)
    return sum_x_to_p / n_valid + min_p_to_x.mean(dim=1)


def exact_rotation_average(vae, X):
    """``vae.transform(X)`` with the exact average over the angles, never the distilled read-out.

    A copy of the fitted model without a read-out (``readout_coef_`` None)
    encodes every particle at every one of its ``transform_rotations``
    angles; ``vae`` itself is not changed.
    """
    exact = copy.deepcopy(vae)
    exact.readout_coef_ = None
    return exact.transform(X)
