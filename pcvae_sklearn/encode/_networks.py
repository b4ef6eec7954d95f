"""The PC-VAE networks as plain torch modules (no estimator logic here).

Encoder: a PointNet on *packed* localizations. The shared per-localization
MLP and its batch norm see only real localizations (there are no padded rows
in a packed tensor), and the pooling is a per-particle mean computed with
``index_add_``, so neither the latent nor the batch-norm statistics can encode
how many localizations a particle has through padding.

Decoder: a tanh MLP from the latent, a learned seed per output point plus a
skip connection of the global feature, two 1x1 convolutions and multi-head
self-attention over the output points of *one* particle (the batch axis of
``nn.MultiheadAttention`` is the particle axis, so particles never attend to
each other), then a linear map to coordinates.

Shapes lead every docstring: ``N`` localizations in a batch, ``B`` particles,
``M`` decoded points, ``d`` spatial dimensions, ``k`` latent dimensions.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

__all__ = [
    "PointNetEncoder",
    "PooledBatchNorm",
    "AttentionDecoder",
    "PCVAEModule",
    "build_module",
    "checked_device",
    "kl_divergence",
    "latent_correlation",
]

# Building a module draws its initial weights from torch's *global* generator
# (seeded under fork_rng). Fits running in threads of one process (joblib's
# threading backend, dask workers with processes=False) would interleave those
# draws and lose reproducibility; this lock serialises the few milliseconds of
# module construction.
_GLOBAL_RNG_LOCK = threading.Lock()


class PooledBatchNorm(nn.BatchNorm1d):
    """Batch norm of per-particle features over the particles of a batch.

    Takes ``(..., C)`` (the rotation read-out passes ``(R, B, C)``) and
    normalises every channel. :class:`PointNetEncoder` ends the head to the
    latent mean with one (``latent_batch_norm``). In training, a batch of one particle has no
    spread to normalise by; it is normalised with the running statistics
    instead (and leaves them unchanged), so a last batch of one particle
    trains rather than fails. In evaluation mode every particle is normalised
    with the running statistics, so a particle's latent does not depend on
    the other particles it is transformed with.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if self.training and flat.shape[0] < 2:
            flat = nn.functional.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        else:
            flat = super().forward(flat)
        return flat.reshape(x.shape)


class PointNetEncoder(nn.Module):
    """PointNet encoder on packed localizations.

    Parameters
    ----------
    in_dim : int
        Spatial dimensions ``d`` (2 or 3).
    widths : tuple of int
        Widths of the shared per-localization MLP (paper: 64, 128, 1024), each
        followed by batch norm and ReLU.
    latent_dim : int
        ``k``.
    head_width : int
        Hidden width of the two MLP heads to the mean and log-variance.
    latent_batch_norm : bool
        End the head to the mean with a batch norm of the means over the
        particles of the batch, without scale or shift
        (:class:`PooledBatchNorm` with ``affine=False``): every latent
        dimension's means then spread over the particles with unit variance,
        as the prior does (Zhu et al. 2020, "BN-VAE"). The paper has none.
    """

    def __init__(
        self,
        in_dim: int,
        widths=(64, 128, 1024),
        latent_dim: int = 8,
        head_width: int = 256,
        latent_batch_norm: bool = False,
    ):
        super().__init__()
        layers = []
        prev = in_dim
        for w in widths:
            layers += [nn.Linear(prev, w), nn.BatchNorm1d(w), nn.ReLU()]
            prev = w
        self.shared = nn.Sequential(*layers)
        self.mu_head = nn.Sequential(nn.Linear(prev, head_width), nn.ReLU(), nn.Linear(head_width, latent_dim))
        self.logvar_head = nn.Sequential(nn.Linear(prev, head_width), nn.ReLU(), nn.Linear(head_width, latent_dim))
        if latent_batch_norm:
            self.mu_head.append(PooledBatchNorm(latent_dim, affine=False))

    def pool(self, points: torch.Tensor, segment: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-particle mean of the shared features.

        points (N, d), segment (N,) particle of each row, lengths (B,) -> (B, C)
        """
        feats = self.shared(points)
        pooled = feats.new_zeros((lengths.shape[0], feats.shape[1]))
        pooled.index_add_(0, segment, feats)
        return pooled / lengths.clamp(min=1).to(feats.dtype)[:, None]

    def forward(self, points, segment, lengths):
        """points (N, d), segment (N,), lengths (B,) -> mu (B, k), logvar (B, k)."""
        g = self.pool(points, segment, lengths)
        return self.mu_head(g), self.logvar_head(g)


class AttentionDecoder(nn.Module):
    """Decoder from a latent vector to a fixed-size point set.

    Parameters
    ----------
    latent_dim : int
        ``k``.
    out_dim : int
        Spatial dimensions ``d``.
    widths : tuple of int
        Widths of the tanh MLP on the latent (paper: 256, 512, 1024).
    channels : int
        Channels of the two 1x1 convolutions and of the attention (paper: 1024).
    n_points : int
        ``M``, the number of decoded points.
    n_heads : int
        Attention heads (paper: 4). ``channels`` must be divisible by it.
    """

    def __init__(self, latent_dim: int, out_dim: int, widths=(256, 512, 1024), channels: int = 1024, n_points: int = 128, n_heads: int = 4):
        super().__init__()
        layers = []
        prev = latent_dim
        for w in widths:
            layers += [nn.Linear(prev, w), nn.Tanh()]
            prev = w
        self.mlp = nn.Sequential(*layers)
        self.lift = nn.Linear(prev, channels)
        self.seeds = nn.Parameter(torch.randn(n_points, channels) / channels**0.5)
        self.conv1 = nn.Linear(channels, channels)  # a 1x1 convolution over the points
        self.conv2 = nn.Linear(channels, channels)
        self.attention = nn.MultiheadAttention(channels, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(channels)
        self.out = nn.Linear(channels, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, k) -> points (B, M, d)."""
        g = self.lift(self.mlp(z))[:, None, :]  # (B, 1, C)
        h = torch.relu(self.conv1(self.seeds[None] + g))
        h = torch.relu(self.conv2(h)) + g  # skip connection of the global feature
        # batch axis = particles: attention only mixes points of the same particle
        a, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + a)
        return self.out(h)


class PCVAEModule(nn.Module):
    """Encoder + decoder with the reparameterisation trick."""

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        encoder_widths,
        decoder_widths,
        decoder_channels: int,
        n_output_points: int,
        n_heads: int,
        latent_batch_norm: bool = False,
    ):
        super().__init__()
        self.config = dict(
            in_dim=in_dim,
            latent_dim=latent_dim,
            encoder_widths=tuple(encoder_widths),
            decoder_widths=tuple(decoder_widths),
            decoder_channels=decoder_channels,
            n_output_points=n_output_points,
            n_heads=n_heads,
            latent_batch_norm=bool(latent_batch_norm),
        )
        self.encoder = PointNetEncoder(in_dim, encoder_widths, latent_dim, latent_batch_norm=latent_batch_norm)
        self.decoder = AttentionDecoder(latent_dim, in_dim, decoder_widths, decoder_channels, n_output_points, n_heads)

    def forward(self, points, segment, lengths, generator=None):
        """Returns decoded points (B, M, d), mu (B, k), logvar (B, k)."""
        mu, logvar = self.encoder(points, segment, lengths)
        logvar = logvar.clamp(-20.0, 10.0)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def checked_device(device) -> torch.device:
    """``torch.device(device)``; a clear ValueError for a name torch does not know, for a CUDA device on a machine
    where torch sees no GPU, and for a device type other than CPU and CUDA."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device torch knows; use 'cpu', or 'cuda' (or 'cuda:0') for an "
                         "NVIDIA GPU.") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA GPU on this machine; use device='cpu'.")
    if target.type not in ("cpu", "cuda"):  # others (Apple's mps: no float64) are not tested here
        raise ValueError(f"device={device!r}: this library runs on 'cpu' or 'cuda', not {target.type!r}.")
    return target


def build_module(config: dict, seed: int | None = None, device=None) -> PCVAEModule:
    """A :class:`PCVAEModule` of ``config`` on ``device`` (default the CPU), built without touching the global RNG.

    With ``seed`` its initial weights are those of ``torch.manual_seed(seed)``;
    without, they are arbitrary (a state dict is loaded into it next).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        if seed is not None:
            torch.manual_seed(seed)
        module = PCVAEModule(**config).to(device)
    return module


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, prior_shape: int = 2) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per particle: mu, logvar (B, k) -> (B,).

    ``q`` is the diagonal Gaussian ``N(mu, exp(logvar))``. The prior ``p`` is
    factorised: with ``prior_shape=2`` the standard normal; with an even
    ``prior_shape = s > 2`` a generalised normal of unit variance in every
    dimension, ``p(z_i) ∝ exp(-|z_i / a|**s)`` with
    ``a = sqrt(Gamma(1/s) / Gamma(3/s))``, flatter than a Gaussian. Both are
    exact: ``E_q[z_i**s]`` is a polynomial in ``mu_i`` and the variance.
    """
    if prior_shape == 2:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
    s = int(prior_shape)
    if s < 2 or s % 2:
        raise ValueError(f"prior_shape must be an even integer >= 2, got {prior_shape!r}.")
    scale = math.sqrt(math.gamma(1.0 / s) / math.gamma(3.0 / s))  # unit variance
    log_norm = math.log(2.0 * scale * math.gamma(1.0 + 1.0 / s))
    var = logvar.exp()
    # E[(mu + sigma eps)**s] = sum_j C(s, 2j) (2j - 1)!! mu**(s - 2j) var**j
    moment = sum(
        math.comb(s, 2 * j) * math.prod(range(1, 2 * j, 2)) * mu.pow(s - 2 * j) * var.pow(j) for j in range(s // 2 + 1)
    )
    neg_entropy = -0.5 * (math.log(2.0 * math.pi * math.e) + logvar)
    return (neg_entropy + moment / scale**s + log_norm).sum(dim=1)


def latent_correlation(mu: torch.Tensor) -> torch.Tensor:
    """Sum of the squared correlations between different latent dimensions over a batch.

    mu (B, k) -> scalar: ``sum_{i != j} corr(mu_i, mu_j)**2`` over the B
    particles, 0 for ``B < 3`` or ``k < 2`` (no correlation to estimate). A
    dimension with no spread in the batch counts as uncorrelated.
    """
    n, k = mu.shape
    if n < 3 or k < 2:
        return mu.new_zeros(())
    centred = mu - mu.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    sd = cov.diagonal().clamp(min=1e-8).sqrt()
    corr = cov / sd[:, None] / sd[None, :]
    return corr.pow(2).sum() - corr.diagonal().pow(2).sum()
