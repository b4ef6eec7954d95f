"""Kernels against naive references: Chamfer distance, packed pooling, attention isolation, batching."""

import numpy as np
import pytest
import torch
from _helpers import naive_chamfer

from pcvae_sklearn.encode import chamfer_distance
from pcvae_sklearn.encode._batching import chunk_by_budget, gather_rows, rotate_about_z, subsample_rows
from pcvae_sklearn.encode._chamfer import pad_packed
from pcvae_sklearn.encode._networks import (
    AttentionDecoder,
    PCVAEModule,
    PointNetEncoder,
    PooledBatchNorm,
    kl_divergence,
    latent_correlation,
)

SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("chunk_size", [3, 4096])
def test_chamfer_matches_naive_with_gradients(seed, d, chunk_size):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 20, (5,), generator=g)
    targets = [torch.randn(int(n), d, generator=g, dtype=torch.float64, requires_grad=True) for n in lengths]
    pred = torch.randn(5, 7, d, generator=g, dtype=torch.float64, requires_grad=True)

    packed = torch.cat(targets)
    padded, _ = pad_packed(packed, lengths)
    fast = chamfer_distance(pred, padded, lengths, chunk_size=chunk_size)
    ref = naive_chamfer(pred, targets)
    torch.testing.assert_close(fast, ref)

    w = torch.randn(5, dtype=torch.float64, generator=g)
    g_fast = torch.autograd.grad((fast * w).sum(), [pred] + targets)
    g_ref = torch.autograd.grad((ref * w).sum(), [pred] + targets)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)


def test_chamfer_padding_never_counts():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # last two rows are padding
    cd = chamfer_distance(pred, target, torch.tensor([1]))
    assert cd.item() == pytest.approx(2.0)  # 1 (target->pred) + 1 (pred->target), padding at 0 ignored


@pytest.mark.parametrize("seed", SEEDS)
def test_packed_pooling_matches_per_particle_mean(seed):
    torch.manual_seed(seed)
    enc = PointNetEncoder(3, widths=(8, 16), latent_dim=2).eval()
    lengths = torch.randint(1, 30, (6,))
    pts = torch.randn(int(lengths.sum()), 3)
    seg = torch.repeat_interleave(torch.arange(6), lengths)
    pooled = enc.pool(pts, seg, lengths)
    ref = torch.stack([enc.shared(p).mean(0) for p in torch.split(pts, lengths.tolist())])
    torch.testing.assert_close(pooled, ref)


def test_latent_does_not_encode_count():
    """Repeating every localization twice doubles the count but leaves the latent unchanged."""
    torch.manual_seed(0)
    enc = PointNetEncoder(2, widths=(8, 16), latent_dim=3).eval()
    pts = torch.randn(20, 2)
    one = enc(pts, torch.zeros(20, dtype=torch.long), torch.tensor([20]))[0]
    two = enc(torch.cat([pts, pts]), torch.zeros(40, dtype=torch.long), torch.tensor([40]))[0]
    torch.testing.assert_close(one, two)


def test_batch_norm_statistics_see_only_real_localizations():
    torch.manual_seed(0)
    enc = PointNetEncoder(2, widths=(4,), latent_dim=1).train()
    bn = enc.shared[1]
    bn.momentum = 1.0  # running stats = this batch's stats
    lengths = torch.tensor([3, 10])
    pts = torch.randn(13, 2)
    enc(pts, torch.repeat_interleave(torch.arange(2), lengths), lengths)
    feats = enc.shared[0](pts)
    torch.testing.assert_close(bn.running_mean, feats.mean(0).detach())


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_pooled_batch_norm_matches_naive_over_particles(seed):
    """Training: each channel standardised over the particles of the batch, then the affine map."""
    g = torch.Generator().manual_seed(seed)
    bn = PooledBatchNorm(5).train()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(7, 5, generator=g, dtype=torch.float32) * 3.0 + 1.0
    ref = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(bn(x), ref)


def test_pooled_batch_norm_takes_any_leading_axes_in_eval():
    """The rotation read-out passes (R, B, C): the same as normalising every (B, C) slice."""
    torch.manual_seed(0)
    bn = PooledBatchNorm(4)
    bn.train()(torch.randn(9, 4) * 2.0 + 3.0)  # running statistics that are not the identity
    bn.eval()
    x = torch.randn(3, 6, 4)
    torch.testing.assert_close(bn(x), torch.stack([bn(x[r]) for r in range(3)]))
    # a particle's output does not depend on the particles beside it
    torch.testing.assert_close(bn(x[0])[2:3], bn(x[0, 2:3]))


def test_pooled_batch_norm_batch_of_one_uses_running_statistics():
    """A last training batch of one particle normalises with the running statistics and leaves them unchanged."""
    torch.manual_seed(0)
    bn = PooledBatchNorm(4).train()
    bn(torch.randn(9, 4) * 2.0 + 3.0)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(1, 4, requires_grad=True)
    out = bn(x)
    torch.testing.assert_close(out, (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    out.sum().backward()  # still trains the affine map
    assert bn.weight.grad is not None and torch.isfinite(bn.weight.grad).all()


def test_latent_batch_norm_is_an_option_of_the_module():
    config = dict(in_dim=2, latent_dim=3, encoder_widths=(8,), decoder_widths=(8,), decoder_channels=8, n_output_points=4, n_heads=2)
    plain = PCVAEModule(**config)  # the raw means, as in the paper
    assert plain.config["latent_batch_norm"] is False
    assert not any(isinstance(m, PooledBatchNorm) for m in plain.modules())
    new = PCVAEModule(**config, latent_batch_norm=True)
    last = new.encoder.mu_head[-1]
    assert isinstance(last, PooledBatchNorm) and not last.affine and last.num_features == 3
    assert not isinstance(new.encoder.logvar_head[-1], PooledBatchNorm)
    assert new.config["latent_batch_norm"] is True
    # training: every latent mean standardised over the particles of the batch
    new.train()
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(40, 2, generator=g)
    seg = torch.arange(8).repeat_interleave(5)
    lengths = torch.full((8,), 5)
    mu, _ = new.encoder(pts, seg, lengths)
    raw = new.encoder.mu_head[:-1](new.encoder.pool(pts, seg, lengths))
    ref = (raw - raw.mean(0)) / torch.sqrt(raw.var(0, unbiased=False) + last.eps)
    torch.testing.assert_close(mu, ref)
    torch.testing.assert_close(mu.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_divergence_standard_normal_matches_closed_form(seed):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    var = logvar.exp()
    ref = (-0.5 * logvar + 0.5 * (var + mu**2) - 0.5).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar), ref)
    torch.testing.assert_close(kl_divergence(mu, logvar, prior_shape=2), ref)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("shape", [4, 6, 8])
def test_kl_divergence_generalised_normal_prior_matches_quadrature(seed, shape):
    """KL(N(mu, var) || exp(-|z/a|^s) / Z, unit variance): the normaliser and E_q integrated numerically."""
    from numpy.polynomial.hermite_e import hermegauss
    from scipy.special import gamma

    rng = np.random.default_rng(seed)
    mu, logvar = rng.normal(size=3) * 0.7, rng.normal(size=3) * 0.5 - 0.3
    a = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    grid = np.linspace(-8, 8, 200001)
    density = np.exp(-np.abs(grid / a) ** shape)
    log_z = np.log(density.sum() * (grid[1] - grid[0]))
    assert abs(np.sum(grid**2 * density) / density.sum() - 1.0) < 1e-6  # unit variance
    nodes, weights = hermegauss(60)  # E over a standard normal of a polynomial of degree < 120: exact
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * nodes[None, :]
    cross_entropy = (np.abs(z / a) ** shape * weights).sum(1) / weights.sum() + log_z
    entropy = 0.5 * np.log(2 * np.pi * np.e) + 0.5 * logvar
    exact = kl_divergence(torch.tensor(mu[None]), torch.tensor(logvar[None]), prior_shape=shape).item()
    assert exact == pytest.approx((cross_entropy - entropy).sum(), rel=1e-6)
    assert exact >= 0


def test_kl_divergence_rejects_odd_prior_shape():
    with pytest.raises(ValueError, match="even integer"):
        kl_divergence(torch.zeros(1, 2), torch.zeros(1, 2), prior_shape=3)


@pytest.mark.parametrize("seed", SEEDS)
def test_latent_correlation_matches_numpy(seed):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(4, 4, generator=g, dtype=torch.float64)
    mu = (torch.randn(16, 4, generator=g, dtype=torch.float64) @ mixing).requires_grad_()
    c = np.corrcoef(mu.detach().numpy(), rowvar=False)
    ref = (c**2).sum() - np.trace(c**2)
    value = latent_correlation(mu)
    assert value.item() == pytest.approx(ref, rel=1e-9)
    value.backward()  # differentiable, so the penalty trains the encoder
    assert torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0


def test_latent_correlation_edge_cases():
    assert latent_correlation(torch.randn(2, 4)).item() == 0.0  # too few particles to estimate it
    assert latent_correlation(torch.randn(10, 1)).item() == 0.0  # one dimension
    x = torch.randn(10, 1)
    assert latent_correlation(torch.cat([x, 2 * x + 1], 1)).item() == pytest.approx(2.0)  # a copy: corr 1, twice
    assert latent_correlation(torch.cat([x, torch.zeros(10, 1)], 1)).item() == 0.0  # no spread: uncorrelated


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_attention_stays_inside_one_particle(seed):
    torch.manual_seed(seed)
    dec = AttentionDecoder(4, 2, widths=(8,), channels=16, n_points=5, n_heads=4)
    z = torch.randn(3, 4)
    out = dec(z)
    z2 = z.clone()
    z2[1] += 10.0  # change particle 1 only
    out2 = dec(z2)
    torch.testing.assert_close(out[[0, 2]], out2[[0, 2]])
    assert not torch.allclose(out[1], out2[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_batching_kernels_match_naive(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, 12)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    idx = rng.permutation(12)[:7]
    rows, lens = gather_rows(offsets, idx)
    np.testing.assert_array_equal(rows, np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx]))
    np.testing.assert_array_equal(lens, lengths[idx])

    sub, sub_lens = subsample_rows(rows, lens, 10, rng)
    np.testing.assert_array_equal(sub_lens, np.minimum(lens, 10))
    start = 0
    for i, k in zip(idx, sub_lens):
        chosen = sub[start : start + k]
        start += k
        assert len(set(chosen)) == k and set(chosen) <= set(range(offsets[i], offsets[i + 1]))
        if lengths[i] <= 10:
            np.testing.assert_array_equal(chosen, np.arange(offsets[i], offsets[i + 1]))

    pts = rng.normal(size=(int(lens.sum()), 3))
    ang = rng.uniform(0, 2 * np.pi, len(lens))
    rot = rotate_about_z(pts, lens, ang)
    ref = []
    for a, p in zip(ang, np.split(pts, np.cumsum(lens)[:-1])):
        R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        ref.append(p @ R.T)
    np.testing.assert_allclose(rot, np.concatenate(ref))


def test_subsample_is_uniform():
    rng = np.random.default_rng(0)
    counts = np.zeros(20)
    for _ in range(2000):
        rows, _ = subsample_rows(np.arange(20), np.array([20]), 5, rng)
        counts[rows] += 1
    assert np.abs(counts / 2000 - 0.25).max() < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_chunk_by_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 100, 50)
    chunks = chunk_by_budget(lengths, 7, 150)
    assert chunks[0][0] == 0 and chunks[-1][1] == 50
    for (a, b), (c, _) in zip(chunks, chunks[1:]):
        assert b == c
    for a, b in chunks:
        assert b - a <= 7
        assert lengths[a:b].sum() <= 150 or b - a == 1


@pytest.mark.parametrize("seed", range(5))
def test_gradient_norm_matches_a_naive_norm_and_leaves_the_gradients(seed):
    from pcvae_sklearn.encode._training import _gradient_norm

    g = torch.Generator().manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    for p in module.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 10.0 ** seed
    module[2].bias.grad = None  # a parameter without a gradient is left out, as clip_grad_norm_ leaves it
    before = [None if p.grad is None else p.grad.clone() for p in module.parameters()]
    norm = _gradient_norm(module)
    grads = [b for b in before if b is not None]
    naive = torch.sqrt(sum((b.double() ** 2).sum() for b in grads))
    assert float(norm) == pytest.approx(float(naive), rel=1e-6)
    assert all(b is None and p.grad is None or torch.equal(b, p.grad) for b, p in zip(before, module.parameters()))
    # what the check used before, which also multiplies the gradients by 1
    assert float(norm) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(module.parameters(), float("inf"))), rel=1e-6)
    module[0].weight.grad[0, 0] = float("nan")
    assert not torch.isfinite(_gradient_norm(module))


def test_gradient_norm_of_a_module_without_gradients_is_zero():
    from pcvae_sklearn.encode._training import _gradient_norm

    assert float(_gradient_norm(torch.nn.Linear(2, 2))) == 0.0
