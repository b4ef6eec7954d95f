"""Coverage of the per-bin intervals on 2D demo-like data with known per-bin truth.

Bins come from sorting the particles by their TRUE radius plus noise (a
stand-in for a latent dimension that tracks the radius; no VAE is needed to
test an interval). For each bin the truth is the mean true radius of its
particles. Reported:

- the bootstrap interval of the median per-particle radius
  (``ci_low`` / ``ci_high`` of ``analyse``'s bin table);
- with ``--fuse``: the super-particle radius ± its FWHM/sqrt(n) precision,
  the interval the workflow showed before.

    python benchmarks/bench_intervals.py --seeds 20 --n-particles 400 --n-bins 10 [--fuse]

Only the public API is used.
"""

from __future__ import annotations

import argparse

import numpy as np

from pcvae_sklearn import ParticleFuser, RadiusEstimator, fuse_bins
from pcvae_sklearn.bin import bin_along_axis
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.validate import bin_bootstrap_intervals, per_bin_statistic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n-particles", type=int, default=400)
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--sort-noise", type=float, default=2.0, help="nm of noise added to the true radius before sorting")
    ap.add_argument("--fuse", action="store_true", help="also fuse every bin (slow) for the super-particle ± precision")
    args = ap.parse_args(argv)
    # the per-particle estimator's own bias, from an independent homogeneous simulation (50 nm pores)
    Xh, _ = make_npc_2d(2000, radius=50.0, random_state=10_000)
    est_bias = float(np.median(RadiusEstimator().fit_transform(Xh)[:, 0]) - 50.0)
    new, shifted, old, old95, bias_new, bias_old = [], [], [], [], [], []
    for seed in range(args.seeds):
        X, truth = make_npc_2d(args.n_particles, random_state=seed)
        rng = np.random.default_rng(seed)
        key = truth["radius"] + rng.normal(0, args.sort_noise, args.n_particles)
        bins = bin_along_axis(key[:, None], dimension=0, n_bins=args.n_bins).bins
        true_mean = per_bin_statistic(truth["radius"], bins, args.n_bins, statistic="mean")
        E = RadiusEstimator().fit_transform(X)[:, 0]
        med = per_bin_statistic(E, bins, args.n_bins)
        lo, hi = bin_bootstrap_intervals(E, bins, args.n_bins, random_state=seed)
        cov = (lo <= true_mean) & (true_mean <= hi)
        new.extend(cov)
        shifted.extend((lo <= true_mean + est_bias) & (true_mean + est_bias <= hi))
        bias_new.extend(med - true_mean)
        line = f"seed {seed}: bootstrap covers {cov.sum()}/{args.n_bins} (median - truth {np.mean(med - true_mean):+.2f} nm, " \
               f"mean width {np.mean(hi - lo):.2f} nm)"
        if args.fuse:
            fusion = fuse_bins(X, bins, ParticleFuser(), random_state=seed)
            sp = RadiusEstimator().fit_transform(fusion.super_particles)
            c1 = np.abs(sp[:, 0] - true_mean) <= sp[:, 1]
            c2 = np.abs(sp[:, 0] - true_mean) <= 1.96 * sp[:, 1]
            old.extend(c1)
            old95.extend(c2)
            bias_old.extend(sp[:, 0] - true_mean)
            line += f"; super-particle ± precision covers {c1.sum()}/{args.n_bins} (±1.96x: {c2.sum()}), " \
                    f"super - truth {np.mean(sp[:, 0] - true_mean):+.2f} nm, precision {np.mean(sp[:, 1]):.2f} nm"
        print(line, flush=True)
    print(f"bootstrap interval of the median per-particle radius: coverage {np.mean(new):.3f} over {len(new)} bins "
          f"(mean median - truth {np.mean(bias_new):+.2f} nm)")
    print(f"the same, against the truth shifted by the estimator's own bias ({est_bias:+.2f} nm, measured on independent "
          f"homogeneous pores): coverage {np.mean(shifted):.3f}")
    if args.fuse:
        print(f"super-particle ± FWHM/sqrt(n): coverage {np.mean(old):.3f}; ±1.96 x: {np.mean(old95):.3f} over {len(old)} bins "
              f"(mean super - truth {np.mean(bias_old):+.2f} nm)")


if __name__ == "__main__":
    main()
