"""False-positive rate and power of the workflow's matched null (``analyse(..., null=True)``).

Homogeneous 2D pores (one radius, 50 nm) must give "no heterogeneity"; pores
whose radius varies over 45-65 nm must give "detected". Every seed simulates
its own data, fits a small VAE, and runs :func:`pcvae_sklearn.analyse`
without fusion (the verdict does not use the per-bin super-particles).

    python benchmarks/bench_null.py --seeds 20 --n-particles 200 --n-bins 10

Only the public API is used. One line per seed, then the rates.
"""

from __future__ import annotations

import argparse
import time
import warnings

from pcvae_sklearn import PointCloudVAE, analyse
from pcvae_sklearn.datasets import make_npc_2d

# a small VAE: the null must hold for whatever VAE the user fitted, including a poor one
SMALL_VAE = dict(latent_dim=4, n_epochs=2, batch_size=16,
                 architecture=dict(encoder_widths=(32, 64), decoder_widths=(32, 64), decoder_channels=64,
                                   n_output_points=32))


def one(seed, *, radius, n_particles, n_bins, n_null, linkage_error=0.0):
    X, truth = make_npc_2d(n_particles, radius=radius, linkage_error=linkage_error, random_state=seed)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(X, vae=PointCloudVAE(**SMALL_VAE, random_state=seed), n_bins=n_bins, fuse=False,
                      n_null=n_null, random_state=seed)
    h = res.heterogeneity
    return h, time.perf_counter() - t, res.seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--n-particles", type=int, default=200)
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--n-null", type=int, default=19)
    ap.add_argument("--which", choices=["homogeneous", "varying", "both"], default="both")
    ap.add_argument("--linkage-error", type=float, default=0.0,
                    help="nm, one offset per dye (make_npc_2d): a flaw the twins model only through the template's spread")
    args = ap.parse_args(argv)
    cases = {"homogeneous": 50.0, "varying": (45.0, 65.0)}
    if args.which != "both":
        cases = {args.which: cases[args.which]}
    for case, radius in cases.items():
        detected = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            h, sec, steps = one(seed, radius=radius, n_particles=args.n_particles, n_bins=args.n_bins, n_null=args.n_null,
                              linkage_error=args.linkage_error)
            detected.append(h["detected"])
            print(f"{case} seed {seed}: detected={h['detected']} p={h['p_value']:.3g} p_rank={h['p_value_rank']:.3f} "
                  f"rise={h['rise']:.2f} null {h['null_rise_mean']:.2f}±{h['null_rise_sd']:.2f} nm  "
                  f"({sec:.0f} s; null {steps.get('null', float('nan')):.0f} s)", flush=True)
        print(f"{case} (linkage error {args.linkage_error:g} nm): detected in {sum(detected)}/{len(detected)} seeds", flush=True)


if __name__ == "__main__":
    main()
