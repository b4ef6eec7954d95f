"""Precision-weighted fits when the precisions spread widely (``precision_weighted``'s floor).

The project's simulators draw lognormal precisions of log-spread 0.3; the
real TU Delft logos spread about 0.6, and some simulators draw precisions
uniformly from 0 nm, where weights of 1/precision**2 have no bounded mean.
Two parts:

* the tetrahedra of ``../shared/data/fusion/tetrahedron_gt`` (100 particles,
  precisions uniform from 0 nm; skipped without ``../shared``): the share of
  the Chamfer weight that the top 1 % of localizations carry, and the
  training reconstruction per epoch, Euclidean and precision-weighted,
  seeds 0-2 (one rising over the epochs is a fit that follows a handful of
  localizations);
* ``make_npc_2d`` / ``make_npc_3d(precision_spread=s)`` for each ``--spreads``,
  500 particles, seeds 0-2: the best latent |Spearman| with the true radius
  (and ring distance), Euclidean against precision-weighted.

Run it at two commits to compare two weightings.

    python benchmarks/bench_precision_spread.py                 # ~20 min on 2 cores
    python benchmarks/bench_precision_spread.py --spreads 1.0 --seeds 0 --dims 2d
"""

from __future__ import annotations

import argparse
import warnings

import awkward as ak
import numpy as np
from _common import REAL, best_abs_spearman

from pcvae_sklearn import PointCloudVAE, as_particles
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d
from pcvae_sklearn.encode._precision import precision_weights

TETRAHEDRA = REAL.parent / "fusion" / "tetrahedron_gt"


def tetrahedra():
    """The 100 simulated tetrahedra in nm (unit edge x 100), with their lateral and axial precisions."""
    import pandas as pd

    frames = [pd.read_csv(TETRAHEDRA / f"smlm_sample{i}.csv") for i in range(100)]
    cols = {"x": "x", "y": "y", "z": "z", "precision": "sigma_xy", "precision_z": "sigmaz"}
    return ak.zip({k: ak.Array([f[c].to_numpy() * 100 for f in frames]) for k, c in cols.items()})


def top_share(X) -> float:
    """The share of the lateral Chamfer weight that the top 1 % of localizations carry."""
    weights = np.sort(precision_weights(as_particles(X), True)[0][:, 0])[::-1]
    return float(weights[: max(len(weights) // 100, 1)].sum() / weights.sum())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spreads", type=float, nargs="+", default=[0.6, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dims", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    ap.add_argument("--n-particles", type=int, default=500)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if TETRAHEDRA.is_dir():
        X = tetrahedra()
        print(f"tetrahedron_gt: the top 1 % of localizations carry {100 * top_share(X):.1f} % of the lateral weight")
        for weighted in (False, True):
            for seed in args.seeds:
                vae = PointCloudVAE(precision_weighted=weighted, random_state=seed).fit(X)
                rec = " ".join(f"{h['reconstruction']:.3f}" for h in vae.history_)
                print(f"  {'weighted ' if weighted else 'Euclidean'} seed {seed}: reconstruction by epoch {rec}")
    else:
        print(f"tetrahedron_gt not found at {TETRAHEDRA}; skipped")
    print(f"\n{'data':4s} {'spread':>6s} {'seed':>4s}  {'Euclidean':>17s}  {'weighted':>17s}   (radius / ring distance)")
    for dim in args.dims:
        for spread in args.spreads:
            for seed in args.seeds:
                if dim == "2d":
                    X, truth = make_npc_2d(args.n_particles, precision_spread=spread, random_state=100 + seed)
                else:
                    X, truth = make_npc_3d(args.n_particles, precision_spread=spread, random_state=500 + seed)
                cells = []
                for weighted in (False, True):
                    Z = PointCloudVAE(precision_weighted=weighted, random_state=seed).fit_transform(X)
                    cells.append(" / ".join(f"{best_abs_spearman(Z, truth[k]):.3f}"
                                            for k in (("radius",) if dim == "2d" else ("radius", "height"))))
                print(f"{dim:4s} {spread:6.1f} {seed:4d}  {cells[0]:>17s}  {cells[1]:>17s}", flush=True)


if __name__ == "__main__":
    main()
