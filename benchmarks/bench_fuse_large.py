"""Per-bin fusion of large particles: ``ParticleFuser(max_points=...)`` against every localization.

Simulates DNA-origami tetrahedra of about 5,000 localizations each
(``make_tetrahedron``), cuts them into bins by their true height, and fuses
every bin with ``fuse_bins`` for each ``--max-points`` value (``none``: every
localization). For each it prints the time, the height of every bin's
super-particle (``HeightEstimator``) against the bin's true mean height,
and the median distance of every bin's localizations to the nearest one of
the middle bin (how well the bins share one frame).

    python benchmarks/bench_fuse_large.py                          # 300 tetrahedra, 10 bins: none, 2000, 1000
    python benchmarks/bench_fuse_large.py --max-points none 2000 --n-particles 100 --n-bins 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial import cKDTree

from pcvae_sklearn import as_particles
from pcvae_sklearn.datasets import make_tetrahedron
from pcvae_sklearn.estimate import make_estimator
from pcvae_sklearn.fuse import ParticleFuser, fuse_bins


def alignment(super_particles) -> float:
    """Median over bins of the median distance (nm) from a bin's localizations to the middle bin's nearest one."""
    sp = as_particles(super_particles)
    middle = cKDTree(sp.particle(sp.n_particles // 2))
    return float(np.median([np.median(middle.query(sp.particle(b)[::5])[0]) for b in range(sp.n_particles)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-points", nargs="+", default=["none", "2000", "1000"])
    ap.add_argument("--n-particles", type=int, default=300)
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args(argv)
    X, truth = make_tetrahedron(args.n_particles, random_state=args.seed)
    bins = np.argsort(np.argsort(truth["height"])) * args.n_bins // args.n_particles
    true = np.array([truth["height"][bins == b].mean() for b in range(args.n_bins)])
    lengths = as_particles(X).lengths
    print(f"{args.n_particles} tetrahedra ({int(np.median(lengths))} localizations median), {args.n_bins} bins by "
          f"true height; true bin heights {np.round(true, 2).tolist()}")
    print("max_points   fit_s  alignment_nm  max |height - truth| nm  heights")
    for value in args.max_points:
        max_points = None if value == "none" else int(value)
        t0 = time.perf_counter()
        result = fuse_bins(X, bins, ParticleFuser(max_points=max_points), random_state=0)
        dt = time.perf_counter() - t0
        heights = make_estimator("tetrahedron", 3).fit_transform(result.super_particles)[:, 0]
        print(f"{value:>10}  {dt:6.1f}  {alignment(result.super_particles):12.3f}  "
              f"{np.abs(heights - true).max():23.2f}  {np.round(heights, 2).tolist()}", flush=True)


if __name__ == "__main__":
    main()
