"""The PC-VAE as the paper's public reference code runs it: an independent peer for ``bench_vae.py``.

Written from the paper's description and its reference code's structure,
with torch alone (nothing of ``pcvae_sklearn`` is used to train it):

* every particle is centred on its centroid, divided by one dataset-wide
  length scale (the RMS distance of all localizations from their centroid,
  as the library's ``scale_``) and brought to exactly 128 points: larger
  particles are subsampled without replacement, smaller ones padded by
  repeating their own localizations (kinder to the peer than zero padding,
  which would drag every pooled feature towards the origin). A new random
  draw every epoch;
* encoder: a PointNet, shared 1x1 convolutions 64-128-1024 with batch norm
  and ReLU, mean pooling over the 128 points, then linear maps to the mean
  and log-variance of an 8-dimensional latent;
* decoder from one global vector: a tanh MLP 256-512-1024 with batch norm,
  a skip connection from its first layer to its last, two 1024-channel 1x1
  convolutions on a sequence of length 1, 4-head self-attention over that
  single token, and a linear map to 128 output points;
* loss: the symmetric Chamfer distance (mean of squared nearest-neighbour
  distances, full pairwise) plus beta = 1 times the KL divergence from a
  standard normal, under a sigmoid warm-up over 5000 steps;
* Adam at learning rate 1e-4, weight decay 1e-5, batches of 8, 4 epochs.

The latent of a particle is the posterior mean of its 128-point draw.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import torch
from torch import nn

N_POINTS = 128


def _to_list(X):
    """Particles as a list of (n_i, d) float arrays (x, y[, z])."""
    dims = [f for f in ("x", "y", "z") if f in ak.fields(X)]
    counts = ak.to_numpy(ak.num(X))
    flat = np.column_stack([ak.to_numpy(ak.flatten(X[f])) for f in dims]).astype(np.float64)
    return np.split(flat, np.cumsum(counts)[:-1])


def _fixed_size(particles, rng):
    """(n, 128, d): each particle subsampled, or padded with repeats of its own localizations."""
    out = np.empty((len(particles), N_POINTS, particles[0].shape[1]), dtype=np.float32)
    for i, p in enumerate(particles):
        if len(p) >= N_POINTS:
            out[i] = p[rng.choice(len(p), N_POINTS, replace=False)]
        else:
            out[i] = np.concatenate([p, p[rng.choice(len(p), N_POINTS - len(p), replace=True)]])
    return out


class Encoder(nn.Module):
    def __init__(self, d, latent_dim):
        super().__init__()
        layers, width = [], d
        for w in (64, 128, 1024):
            layers += [nn.Conv1d(width, w, 1), nn.BatchNorm1d(w), nn.ReLU()]
            width = w
        self.shared = nn.Sequential(*layers)
        self.mu = nn.Linear(1024, latent_dim)
        self.logvar = nn.Linear(1024, latent_dim)

    def forward(self, x):  # x: (B, d, N)
        g = self.shared(x).mean(dim=2)
        return self.mu(g), self.logvar(g)


class Decoder(nn.Module):
    def __init__(self, d, latent_dim):
        super().__init__()
        self.d = d
        self.fc1 = nn.Sequential(nn.Linear(latent_dim, 256), nn.BatchNorm1d(256), nn.Tanh())
        self.fc2 = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512), nn.Tanh())
        self.fc3 = nn.Sequential(nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.Tanh())
        self.skip = nn.Linear(256, 1024)
        self.conv = nn.Sequential(nn.Conv1d(1024, 1024, 1), nn.ReLU(), nn.Conv1d(1024, 1024, 1), nn.ReLU())
        self.attention = nn.MultiheadAttention(1024, 4, batch_first=True)
        self.out = nn.Linear(1024, N_POINTS * d)

    def forward(self, z):
        h1 = self.fc1(z)
        h = self.fc3(self.fc2(h1)) + self.skip(h1)
        h = self.conv(h[:, :, None])[:, :, 0]  # a sequence of length 1
        tokens = h[:, None, :]
        h = self.attention(tokens, tokens, tokens, need_weights=False)[0][:, 0]
        return self.out(h).view(-1, N_POINTS, self.d)


def chamfer(a, b):
    """Symmetric Chamfer distance, full pairwise: mean squared nearest-neighbour distance both ways."""
    d2 = torch.cdist(a, b).square()
    return d2.min(dim=2).values.mean(dim=1) + d2.min(dim=1).values.mean(dim=1)


def fit_transform(X, *, n_epochs=4, latent_dim=8, batch_size=8, lr=1e-4, weight_decay=1e-5, beta=1.0,
                  warmup_steps=5000, random_state=0):
    """Train the reference recipe on awkward particles ``X``; return the (n, latent_dim) posterior means."""
    torch.manual_seed(random_state)
    rng = np.random.default_rng(random_state)
    particles = [p - p.mean(axis=0) for p in _to_list(X)]
    scale = math.sqrt(np.mean(np.concatenate([np.sum(p**2, axis=1) for p in particles])))
    particles = [p / scale for p in particles]
    d = particles[0].shape[1]
    encoder, decoder = Encoder(d, latent_dim), Decoder(d, latent_dim)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    step = 0
    for _ in range(n_epochs):
        data = torch.from_numpy(_fixed_size(particles, rng))
        order = rng.permutation(len(particles))
        for start in range(0, len(order) - 1, batch_size):  # a last batch of 1 would break batch norm
            x = data[order[start:start + batch_size]]
            mu, logvar = encoder(x.transpose(1, 2))
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1)
            weight = 1.0 / (1.0 + math.exp(-12.0 * (min(step, warmup_steps) / warmup_steps - 0.5)))
            loss = (chamfer(decoder(z), x) + beta * weight * kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    encoder.eval()
    with torch.no_grad():
        data = torch.from_numpy(_fixed_size(particles, rng))
        return torch.cat([encoder(data[i:i + 256].transpose(1, 2))[0] for i in range(0, len(data), 256)]).numpy()
