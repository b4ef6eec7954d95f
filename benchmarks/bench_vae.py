"""Speed and latent quality of PointCloudVAE against the paper's training recipe.

Fits 4 epochs on simulated 2D NPC particles (1399 by default, as in the
paper's Nup96 data set) twice, in one run:

* ``pcvae_sklearn``: ``PointCloudVAE()`` with its defaults (packed
  localizations, masked pooling and batch norm, padding-aware Chamfer);
* ``paper recipe``: the same network family at the paper's settings (widths
  64-128-1024 / 256-512-1024, 1024 decoder channels, batch 8, Adam 1e-4,
  weight decay 1e-5, KL warm-up over 5000 steps), fed the way the reference
  implementation feeds it: every particle padded (or cut) to 128 points with
  zeros, pooling, batch norm and Chamfer over all 128 rows, padding included.

It prints both fit times, their ratio, and for each the best latent
dimension's |Spearman| with the true radius.

    python benchmarks/bench_vae.py            # the full comparison (~15 min on 2 cores)
    python benchmarks/bench_vae.py --quick    # a smoke run on 200 particles, 1 epoch
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from pcvae_sklearn import PointCloudVAE, as_particles
from pcvae_sklearn._ragged import subsample_rows
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.encode._chamfer import chamfer_distance
from pcvae_sklearn.encode._networks import PCVAEModule, kl_divergence
from pcvae_sklearn.encode._vae import _sigmoid_warmup

PAD = 128


def best_abs_spearman(Z, truth):
    rho = [abs(spearmanr(Z[:, j], truth)[0]) for j in range(Z.shape[1])]
    rho = np.nan_to_num(rho)
    return float(np.max(rho)), int(np.argmax(rho))


def padded_like_reference(X, pad=PAD, seed=0):
    """Centre, scale by one dataset factor, then pad with zeros / cut to ``pad`` rows."""
    p = as_particles(X)
    c = p.centred()
    scale = float(np.sqrt(np.mean(np.sum(c.coords**2, axis=1))))
    # cut: a random subset of `pad` rows for larger particles
    keep, lengths = subsample_rows(np.arange(p.n_localizations), p.lengths, pad, np.random.default_rng(seed))
    cut = c.replace(coords=c.coords[keep] / scale, offsets=np.concatenate([[0], np.cumsum(lengths)]), fields={})
    padded, _ = cut.to_padded(pad)
    return torch.from_numpy(padded.astype(np.float32))


def fit_paper_recipe(X, n_epochs=4, seed=0):
    data = padded_like_reference(X, seed=seed)
    n, m, d = data.shape
    torch.manual_seed(seed)
    module = PCVAEModule(d, 8, (64, 128, 1024), (256, 512, 1024), 1024, 128, 4)
    opt = torch.optim.Adam(module.parameters(), lr=1e-4, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    full = torch.full((8,), m, dtype=torch.long)
    step = 0
    module.train()
    for _ in range(n_epochs):
        order = rng.permutation(n)
        for b in range(math.ceil(n / 8)):
            idx = order[b * 8 : (b + 1) * 8]
            batch = data[idx]
            lens = full[: len(idx)]
            seg = torch.repeat_interleave(torch.arange(len(idx)), lens)
            decoded, mu, logvar = module(batch.reshape(-1, d), seg, lens, generator=gen)
            loss = chamfer_distance(decoded, batch, lens).mean() + _sigmoid_warmup(step, 5000) * kl_divergence(mu, logvar).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    module.eval()
    with torch.inference_mode():
        lens = torch.full((n,), m, dtype=torch.long)
        seg = torch.repeat_interleave(torch.arange(n), lens)
        mu, _ = module.encoder(data.reshape(-1, d), seg, lens)
    return mu.double().numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 particles, 1 epoch")
    ap.add_argument("--n-particles", type=int, default=1399)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--skip-paper", action="store_true", help="time only pcvae_sklearn's defaults")
    args = ap.parse_args(argv)
    n, epochs = (200, 1) if args.quick else (args.n_particles, 4)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# {n} simulated 2D NPC particles (make_npc_2d), {epochs} epochs")
    print("seed  method          fit_s   best|rho|  dim")
    for seed in args.seeds:
        X, truth = make_npc_2d(n, random_state=1000 + seed)
        t0 = time.perf_counter()
        vae = PointCloudVAE(n_epochs=epochs, random_state=seed).fit(X)
        ours_s = time.perf_counter() - t0
        ours_rho, ours_dim = best_abs_spearman(vae.transform(X), truth["radius"])
        print(f"{seed:4d}  pcvae_sklearn  {ours_s:7.1f}   {ours_rho:8.3f}  {ours_dim:4d}", flush=True)
        if args.skip_paper:
            continue
        t0 = time.perf_counter()
        Z = fit_paper_recipe(X, n_epochs=epochs, seed=seed)
        paper_s = time.perf_counter() - t0
        paper_rho, paper_dim = best_abs_spearman(Z, truth["radius"])
        print(f"{seed:4d}  paper recipe   {paper_s:7.1f}   {paper_rho:8.3f}  {paper_dim:4d}", flush=True)
        print(f"{seed:4d}  speed-up {paper_s / ours_s:.1f}x, quality {ours_rho:.3f} vs {paper_rho:.3f}", flush=True)


if __name__ == "__main__":
    main()
