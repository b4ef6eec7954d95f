"""Chamfer by nearest neighbours (no-grad search + differentiable gather) against the dense form and a naive reference."""

import numpy as np
import pytest
import torch
from _encode_reference import dense_chamfer
from _helpers import naive_chamfer

from pcvae_sklearn.encode import chamfer_distance
from pcvae_sklearn.encode._chamfer import nearest_neighbours, pad_packed

SEEDS = range(10)


def ragged_batch(seed, d, max_len=40, n_particles=6, n_pred=9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len, (n_particles,), generator=g)
    targets = [torch.randn(int(n), d, generator=g, dtype=dtype, requires_grad=True) for n in lengths]
    pred = torch.randn(n_particles, n_pred, d, generator=g, dtype=dtype, requires_grad=True)
    return g, lengths, targets, pred


def assert_same_gradients(g, lengths, inputs, near, dense, ref):
    """The gradients of a random combination of the per-particle values agree (dense to the last bits)."""
    c = torch.randn(len(lengths), dtype=torch.float64, generator=g)
    g_near = torch.autograd.grad((near * c).sum(), inputs, retain_graph=True)  # the padding's graph is shared
    g_dense = torch.autograd.grad((dense * c).sum(), inputs, retain_graph=True)
    g_ref = torch.autograd.grad((ref * c).sum(), inputs)
    for a, b, r in zip(g_near, g_dense, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_nearest_equals_dense_and_naive_with_gradients(seed, d, chunk_size):
    g, lengths, targets, pred = ragged_batch(seed, d)
    padded, _ = pad_packed(torch.cat(targets), lengths)
    near = chamfer_distance(pred, padded, lengths, chunk_size=chunk_size)
    dense = dense_chamfer(pred, padded, lengths, chunk_size=chunk_size)
    ref = naive_chamfer(pred, targets)
    torch.testing.assert_close(near, dense, rtol=1e-14, atol=0)
    torch.testing.assert_close(near, ref)

    assert_same_gradients(g, lengths, [pred] + targets, near, dense, ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_float32_nearest_matches_dense(seed):
    _, lengths, targets, pred = ragged_batch(seed, 3, max_len=300, n_pred=32, dtype=torch.float32)
    padded, _ = pad_packed(torch.cat(targets), lengths)
    near = chamfer_distance(pred, padded, lengths, chunk_size=64)
    dense = dense_chamfer(pred, padded, lengths, chunk_size=64)
    torch.testing.assert_close(near, dense, rtol=1e-6, atol=1e-7)
    gn = torch.autograd.grad(near.sum(), pred)[0]
    gd = torch.autograd.grad(dense.sum(), pred)[0]
    torch.testing.assert_close(gn, gd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_nearest_neighbours_are_the_brute_force_argmins(seed, chunk_size):
    _, lengths, targets, pred = ragged_batch(seed, 2)
    padded, valid = pad_packed(torch.cat(targets).detach(), lengths)
    to_pred, to_target = nearest_neighbours(pred.detach(), padded, valid, chunk_size=chunk_size)
    for b, t in enumerate(targets):
        d2 = torch.cdist(t.detach(), pred[b].detach()).pow(2)  # (n_b, M), only real rows
        np.testing.assert_array_equal(to_pred[b, : len(t)].numpy(), d2.argmin(dim=1).numpy())
        np.testing.assert_array_equal(to_target[b].numpy(), d2.argmin(dim=0).numpy())
        assert int(to_target[b].max()) < len(t)  # a padded row is never a neighbour


def _saved_elements(fn):
    """Number of tensor elements autograd keeps for the backward pass of ``fn()``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("L", [500, 2000])
def test_backward_memory_is_linear_in_particle_size(L):
    torch.manual_seed(0)
    B, M, d = 2, 128, 3
    pred = torch.randn(B, M, d, requires_grad=True)
    target = torch.randn(B, L, d, requires_grad=True)
    near = _saved_elements(lambda: chamfer_distance(pred, target, chunk_size=256))
    dense = _saved_elements(lambda: dense_chamfer(pred, target, chunk_size=256))
    assert dense >= B * L * M * d  # the dense form keeps every pairwise difference
    assert near <= 8 * B * (L + M) * d  # the gather keeps a few (B, n, d) tensors only


def test_padding_never_counts_for_the_kernel_or_the_reference():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # last two rows are padding
    for chamfer in (chamfer_distance, dense_chamfer):
        cd = chamfer(pred, target, torch.tensor([1]))
        assert cd.item() == pytest.approx(2.0)


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_bad_chunk_size(chunk_size):
    with pytest.raises(ValueError, match=f"chunk_size must be a positive integer; got {chunk_size}"):
        chamfer_distance(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2), chunk_size=chunk_size)


def weighted_batch(seed, d, **kw):
    """A ragged batch with per-axis weights of every localization (lateral equal, axial its own, as precisions give)."""
    g, lengths, targets, pred = ragged_batch(seed, d, **kw)
    weights = []
    for t in targets:
        lateral = torch.rand(len(t), 1, generator=g, dtype=t.dtype) * 3 + 0.1
        w = lateral.repeat(1, d)
        if d == 3:
            w[:, 2] = lateral[:, 0] * (torch.rand(len(t), generator=g, dtype=t.dtype) * 0.5 + 0.05)
        weights.append(w)
    return g, lengths, targets, pred, weights


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_weighted_nearest_equals_dense_and_naive_with_gradients(seed, d, chunk_size):
    g, lengths, targets, pred, weights = weighted_batch(seed, d)
    padded, _ = pad_packed(torch.cat(targets), lengths)
    w_padded, _ = pad_packed(torch.cat(weights), lengths)
    near = chamfer_distance(pred, padded, lengths, weights=w_padded, chunk_size=chunk_size)
    dense = dense_chamfer(pred, padded, lengths, weights=w_padded, chunk_size=chunk_size)
    ref = naive_chamfer(pred, targets, weights)
    torch.testing.assert_close(near, dense, rtol=1e-14, atol=0)
    torch.testing.assert_close(near, ref)
    # the weights matter: the Euclidean value differs
    assert not torch.allclose(near, chamfer_distance(pred, padded, lengths, chunk_size=chunk_size))

    assert_same_gradients(g, lengths, [pred] + targets, near, dense, ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_shared_axis_weights_equal_scaled_coordinates(seed):
    # one weight per axis for every localization is the Euclidean Chamfer of axes scaled by sqrt(w)
    _, lengths, targets, pred = ragged_batch(seed, 3)
    padded, _ = pad_packed(torch.cat(targets), lengths)
    axis = torch.tensor([1.7, 1.7, 0.2], dtype=torch.float64)
    weighted = chamfer_distance(pred, padded, lengths, weights=axis.expand_as(padded).contiguous())
    scaled = chamfer_distance(pred * axis.sqrt(), padded * axis.sqrt(), lengths)
    torch.testing.assert_close(weighted, scaled, rtol=1e-12, atol=1e-14)
    ones = chamfer_distance(pred, padded, lengths, weights=torch.ones_like(padded))
    torch.testing.assert_close(ones, chamfer_distance(pred, padded, lengths), rtol=0, atol=0)


def test_weighted_padding_never_counts_and_shape_is_checked():
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 0.0, 0.0], [1e6, 1e6, 1e6]]])
    weights = torch.tensor([[[2.0, 2.0, 0.5], [float("nan")] * 3]])  # the padded row's weights are never read
    cd = chamfer_distance(pred, target, torch.tensor([1]), weights=weights)
    torch.testing.assert_close(cd, torch.tensor([4.0]))
    with pytest.raises(ValueError, match="weights must have the target's shape"):
        chamfer_distance(pred, target, weights=torch.ones(1, 2, 2))
