"""Speed and latent quality of PointCloudVAE against the paper's training recipe.

Fits 4 epochs on simulated 2D NPC particles (1399 by default, as in the
paper's Nup96 data set) twice, in one run:

* ``pcvae_sklearn``: ``PointCloudVAE()`` with its defaults (packed
  localizations, masked pooling and batch norm, padding-aware Chamfer);
* ``paper recipe``: ``PointCloudVAE(**paper_recipe())``, the paper's
  network and training as closely as the library builds them (widths
  64-128-1024 / 256-512-1024, 1024 decoder channels, batch 8, Adam 1e-4,
  weight decay 1e-5, KL warm-up over 5000 steps, no rotation augmentation,
  no latent penalties; particles subsampled to 128 localizations in
  training, never padded; see ``pcvae_sklearn.paper_recipe``).

It prints both fit times, their ratio, and for each the best latent
dimension's |Spearman| with the true radius.

    python benchmarks/bench_vae.py            # the full comparison (~15 min on 2 cores)
    python benchmarks/bench_vae.py --quick    # a smoke run on 200 particles, 1 epoch
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from pcvae_sklearn import PointCloudVAE, paper_recipe
from pcvae_sklearn.datasets import make_npc_2d


def best_abs_spearman(Z, truth):
    rho = [abs(spearmanr(Z[:, j], truth)[0]) for j in range(Z.shape[1])]
    rho = np.nan_to_num(rho)
    return float(np.max(rho)), int(np.argmax(rho))


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
        paper = PointCloudVAE(**{**paper_recipe(), "n_epochs": epochs}, random_state=seed).fit(X)
        paper_s = time.perf_counter() - t0
        Z = paper.transform(X)
        paper_rho, paper_dim = best_abs_spearman(Z, truth["radius"])
        print(f"{seed:4d}  paper recipe   {paper_s:7.1f}   {paper_rho:8.3f}  {paper_dim:4d}", flush=True)
        print(f"{seed:4d}  speed-up {paper_s / ours_s:.1f}x, quality {ours_rho:.3f} vs {paper_rho:.3f}", flush=True)


if __name__ == "__main__":
    main()
