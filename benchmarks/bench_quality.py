"""Latent quality of PointCloudVAE with default settings on the simulators.

For every data set and seed it fits ``PointCloudVAE(random_state=seed)`` and
prints the best latent dimension's |Spearman| with each true parameter, next
to the |Spearman| of the paper's model-based estimator with the same truth:

* ``npc2d``: make_npc_2d, radius (estimator: mean radial distance);
* ``npc3d``: make_npc_3d, radius (median radial distance) and ring distance
  (median above minus median below the central plane);
* ``tetra``: make_tetrahedron, height (two-Gaussian fit of z).

    python benchmarks/bench_quality.py                       # all, 1000+ particles, 3 seeds
    python benchmarks/bench_quality.py --datasets npc2d --seeds 0 1 2 3 4
    python benchmarks/bench_quality.py --quick               # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from pcvae_sklearn import HeightEstimator, LatentUnmixer, PointCloudVAE, RadiusEstimator
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron

DATASETS = {
    "npc2d": (make_npc_2d, {"radius": RadiusEstimator()}),
    "npc3d": (make_npc_3d, {"radius": RadiusEstimator(), "height": HeightEstimator(structure="pore")}),
    "tetra": (make_tetrahedron, {"height": HeightEstimator(structure="tetrahedron")}),
}


def abs_spearman(a, b):
    r = spearmanr(a, b)[0]
    return 0.0 if np.isnan(r) else abs(r)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="150 particles, 1 epoch, 1 seed")
    args = ap.parse_args(argv)
    n, seeds, extra = (150, [0], {"n_epochs": 1}) if args.quick else (args.n_particles, args.seeds, {})
    print("dataset  param   seed  latent|rho|  dim  estimator|rho|  unmixed|rho|  fit_s")
    summary = {}
    for name in args.datasets:
        make, estimators = DATASETS[name]
        for seed in seeds:
            X, truth = make(n, random_state=500 + seed)
            t0 = time.perf_counter()
            Z = PointCloudVAE(random_state=seed, **extra).fit_transform(X)
            fit_s = time.perf_counter() - t0
            S = LatentUnmixer(random_state=seed).fit_transform(Z)
            for param, est in estimators.items():
                rho = [abs_spearman(Z[:, j], truth[param]) for j in range(Z.shape[1])]
                est_rho = abs_spearman(est.fit_transform(X)[:, 0], truth[param])
                unmixed = max(abs_spearman(S[:, j], truth[param]) for j in range(S.shape[1]))
                j = int(np.argmax(rho))
                summary.setdefault((name, param), []).append((rho[j], est_rho, unmixed))
                print(f"{name:7s}  {param:6s}  {seed:4d}  {rho[j]:11.3f}  {j:3d}  {est_rho:14.3f}  {unmixed:12.3f}  {fit_s:5.0f}",
                      flush=True)
    print("\nmean over seeds (min):")
    for (name, param), vals in summary.items():
        v = np.array(vals)
        print(f"{name:7s}  {param:6s}  latent {v[:, 0].mean():.3f} (min {v[:, 0].min():.3f})   estimator {v[:, 1].mean():.3f}"
              f"   unmixed {v[:, 2].mean():.3f} (min {v[:, 2].min():.3f})")


if __name__ == "__main__":
    main()
