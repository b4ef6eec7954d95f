"""Speed and latent quality of PointCloudVAE against two peers, in one run.

Fits 4 epochs (1399 simulated 2D NPC particles by default, as in the
paper's Nup96 data set) three times:

* ``pcvae_sklearn``: ``PointCloudVAE()`` with its defaults;
* ``reference code``: the recipe as the paper's public code runs it, written
  independently with torch alone (``benchmarks/_reference_recipe.py``): a
  decoder from one global 1024-vector (its attention sees one token),
  particles padded or subsampled to 128 points, batch 8, Adam 1e-4, a
  sigmoid KL warm-up, full pairwise Chamfer. The peer a user would run;
* ``paper_recipe()``: ``PointCloudVAE(**paper_recipe())``, the paper's
  network as this library builds it (a per-point decoder at 1024 channels,
  heavier than the reference code's);
* with ``--params``: a variant of the defaults (``PointCloudVAE(**params)``),
  timed beside them.

It prints each fit time, the ratios against the defaults, and each one's
best latent |Spearman| with the truth (radius for pores, height for
tetrahedra). With ``--flops`` it also counts the floating-point operations
of one default fit (``torch.utils.flop_counter``: matrix products,
convolutions and attention; the Chamfer search and element-wise work are
not counted) and prints the achieved GFLOP/s.

    python benchmarks/bench_vae.py                       # 2D pores (~6 min on 2 cores)
    python benchmarks/bench_vae.py --data npc3d tetra    # 3D pores, tetrahedra
    python benchmarks/bench_vae.py --flops --skip-peers  # the default fit's arithmetic rate
    python benchmarks/bench_vae.py --quick               # a smoke run on 200 particles, 1 epoch
    python benchmarks/bench_vae.py --skip-paper-recipe --params \
        '{"architecture": {"encoder_widths": [64, 128, 256], "decoder_channels": 128, "n_output_points": 64}}'
                                                         # also a lighter network, in the same run
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial

import torch
from _common import best_abs_spearman
from _reference_recipe import fit_transform as reference_fit_transform
from torch.utils.flop_counter import FlopCounterMode

from pcvae_sklearn import PointCloudVAE, paper_recipe
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron

DATA = {
    "npc2d": (make_npc_2d, "radius"),
    "npc3d": (make_npc_3d, "radius"),
    "tetra": (make_tetrahedron, "height"),
}


def fit_library(X, params):
    return PointCloudVAE(**params).fit(X).transform(X)


def timed(fit):
    t0 = time.perf_counter()
    Z = fit()
    return time.perf_counter() - t0, Z


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 particles, 1 epoch")
    ap.add_argument("--n-particles", type=int, default=1399)
    ap.add_argument("--data", nargs="+", choices=sorted(DATA), default=["npc2d"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--skip-peers", action="store_true", help="time only pcvae_sklearn's defaults")
    ap.add_argument("--skip-paper-recipe", action="store_true", help="leave out the heavy paper_recipe() peer")
    ap.add_argument("--flops", action="store_true", help="count the default fit's FLOPs (a second, counted fit)")
    ap.add_argument("--params", type=json.loads, default=None,
                    help="JSON of PointCloudVAE keywords: also fit this variant of the defaults in the same run")
    args = ap.parse_args(argv)
    n, epochs = (200, 1) if args.quick else (args.n_particles, 4)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# {n} particles, {epochs} epochs")
    # Adam's first construction imports torch._dynamo (about 1.3 s); pay it here, not in whichever fit comes first
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    print("data   seed  method           fit_s   best|rho|  vs defaults")
    for name in args.data:
        make, param = DATA[name]
        for seed in args.seeds:
            X, truth = make(n, random_state=1000 + seed)

            runs = [("pcvae_sklearn", partial(fit_library, X, {"n_epochs": epochs, "random_state": seed}))]
            if args.params is not None:
                runs.append(("with --params", partial(fit_library, X, {"n_epochs": epochs, "random_state": seed,
                                                                         **args.params})))
            if not args.skip_peers:
                runs.append(("reference code", partial(reference_fit_transform, X, n_epochs=epochs, random_state=seed)))
                if not args.skip_paper_recipe:
                    params = {**paper_recipe(), "n_epochs": epochs, "random_state": seed}
                    runs.append(("paper_recipe()", partial(fit_library, X, params)))
            base = None
            for label, fit in runs:
                seconds, Z = timed(fit)
                base = base or seconds
                rho = best_abs_spearman(Z, truth[param])
                print(f"{name:6s} {seed:4d}  {label:15s} {seconds:7.1f}   {rho:8.3f}  {seconds / base:6.2f}x", flush=True)
            if args.flops:
                with FlopCounterMode(display=False) as counter:
                    PointCloudVAE(n_epochs=epochs, random_state=seed).fit(X)
                gflop = counter.get_total_flops() / 1e9
                print(f"{name:6s} {seed:4d}  defaults: {gflop:.1f} GFLOP per fit ({gflop / epochs:.1f} per epoch), "
                      f"{gflop / base:.1f} GFLOP/s achieved in the timed fit", flush=True)


if __name__ == "__main__":
    main()
