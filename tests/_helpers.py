"""Shared test helpers: tiny models and tiny ragged data (benchmarks reuse them)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A PointCloudVAE small enough to train in a fraction of a second on one core.
TINY_VAE = dict(
    latent_dim=2,
    n_epochs=1,
    batch_size=8,
    architecture=dict(encoder_widths=(16, 32), decoder_widths=(16, 32), decoder_channels=32, n_output_points=16, n_heads=4),
    learning_rate=1e-3,
)


def ragged_rings(n_particles=24, n_dims=2, seed=0, min_points=10, max_points=40):
    """Noisy rings of random radius: (list of (n_i, d) arrays, radii)."""
    rng = np.random.default_rng(seed)
    radii = rng.uniform(30.0, 60.0, n_particles)
    out = []
    for r in radii:
        n = int(rng.integers(min_points, max_points + 1))
        a = rng.uniform(0, 2 * np.pi, n)
        pts = np.c_[r * np.cos(a), r * np.sin(a)]
        if n_dims == 3:
            pts = np.c_[pts, rng.choice([-25.0, 25.0], n)]
        out.append(pts + rng.normal(0, 3.0, (n, n_dims)) + rng.normal(0, 200.0, n_dims))
    return out, radii


def naive_chamfer(pred, targets, weights=None):
    """Symmetric Chamfer distance, one particle at a time, with torch.cdist on the unpadded target.

    ``weights``: a list of (n_i, d) per-axis weights of the targets' points; the distance from
    localization x to point p is then ``sum_k w_xk (x_k - p_k)**2``, computed as the Euclidean
    distance of ``sqrt(w_x) * x`` to ``sqrt(w_x) * p``, one localization at a time.
    """
    import torch

    out = []
    for i, (p, t) in enumerate(zip(pred, targets)):
        if weights is None:
            d2 = torch.cdist(t[None], p[None])[0].pow(2)
        else:
            s = weights[i].sqrt()
            d2 = torch.stack([torch.cdist((t[j] * s[j])[None, None], (p * s[j])[None])[0, 0].pow(2) for j in range(len(t))])
        out.append(d2.min(dim=1).values.mean() + d2.min(dim=0).values.mean())
    return torch.stack(out)


def ring_spread(coords, n_axes=800):
    """Interquartile range (nm) of the distances from a pore's axis, about the axis that makes it smallest.

    (The axis of least variance is not always the pore's: with unequal ring populations it tilts.)
    """
    c = coords - coords.mean(0)
    i = np.arange(n_axes) + 0.5
    polar, azimuth = np.arccos(1 - i / n_axes), np.pi * (1 + 5**0.5) * i  # a Fibonacci hemisphere
    axes = np.c_[np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)]
    along = c @ axes.T
    r = np.sqrt(np.maximum((c**2).sum(1)[:, None] - along**2, 0.0))
    q25, q75 = np.percentile(r, [25, 75], axis=0)
    return float((q75 - q25).min())


def precision_spread_pores(n, seed, *, varying=False, spread=0.8, background=8, linkage=4.0):
    """``n`` picked 2D pores (awkward, with ``precision``) and their true radii, from a simulator not the library's.

    8 corners of 2 sites 12 nm apart on a ring (radius 53 nm, or 43-63 nm
    with ``varying``), labelling drawn per particle (0.35-0.75), Poisson(6)
    blinks per labelled site, ``linkage`` nm shared by a site's blinks,
    per-localization precision lognormal (median 8 nm, log-SD 0.4) times a
    per-particle factor of log-SD ``spread``, a 15 nm pick offset and
    Poisson(``background``) uniform background localizations within 150 nm.
    The precision field is the true one.
    """
    rng = np.random.default_rng(seed)
    xs, ys, ps, radii = [], [], [], []
    while len(xs) < n:
        radius = rng.uniform(43, 63) if varying else 53.0
        labelling, factor = rng.uniform(0.35, 0.75), np.exp(rng.normal(0, spread))
        turn, centre = rng.uniform(0, 2 * np.pi), rng.normal(0, 15, 2)
        corner = np.arange(8) * 2 * np.pi / 8 + turn
        angle = np.concatenate([corner - 6.0 / radius, corner + 6.0 / radius])
        sites = radius * np.c_[np.cos(angle), np.sin(angle)] + centre
        locs, prec = [], []
        for site in sites[rng.random(len(sites)) < labelling]:
            k = rng.poisson(6)
            sigma = 8 * np.exp(rng.normal(0, 0.4, k)) * factor
            locs.append(site + rng.normal(0, linkage, 2) + rng.normal(size=(k, 2)) * sigma[:, None])
            prec.append(sigma)
        k = rng.poisson(background)
        r, t = 150 * np.sqrt(rng.random(k)), rng.uniform(0, 2 * np.pi, k)
        locs.append(np.c_[r * np.cos(t), r * np.sin(t)] + centre)
        prec.append(8 * np.exp(rng.normal(0, 0.4, k)) * factor)
        locs, prec = np.concatenate(locs), np.concatenate(prec)
        if len(locs) < 20:
            continue
        xs.append(locs[:, 0])
        ys.append(locs[:, 1])
        ps.append(prec)
        radii.append(radius)
    return ak.zip({"x": ak.Array(xs), "y": ak.Array(ys), "precision": ak.Array(ps)}), np.array(radii)
