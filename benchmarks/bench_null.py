"""False-positive rate and power of the workflow's matched null (``analyse(..., null=True)``).

For every scenario of :mod:`pcvae_sklearn.datasets` named on the command
line, every seed simulates its own data twice:

* ``make_scenario(name, homogeneous=True)``: every particle has the same
  structure, with all the scenario's nuisances (linkage error, tilt, bursty
  blinking, outliers, ...); the verdict must be "no heterogeneity";
* ``make_scenario(name)``: the structure varies; the verdict must be
  "detected".

Each fits a small VAE (``--vae default``: ``PointCloudVAE``'s defaults)
and runs :func:`pcvae_sklearn.analyse` without fusion (the verdict does
not use the per-bin super-particles), for every estimate
the scenario's structure has (2D pores: radius; 3D pores: radius and ring
distance; tetrahedra: height).

    python benchmarks/bench_null.py --scenarios npc2d_default --seeds 100 --which homogeneous
    python benchmarks/bench_null.py --scenarios npc2d_linkage npc3d_tilt tetra_tilt --seeds 20
    python benchmarks/bench_null.py --scenarios npc3d_default --seeds 3 --which varying --vae default
    python benchmarks/bench_null.py --scenarios npc3d_tilt --seeds 5 --which varying --vae default --pore-method gaussian
    python benchmarks/bench_null.py --scenarios npc3d_tilt --seeds 10 --which homogeneous --axis single --unmix raw   # VAE axes only
    python benchmarks/bench_null.py --scenarios npc3d_axial20 --seeds 10 --which homogeneous --symmetry 8

Only the public API is used. One line per fit, then the rates.
"""

from __future__ import annotations

import argparse
import time
import warnings

from pcvae_sklearn import HeightEstimator, ParticleFuser, PointCloudVAE, analyse
from pcvae_sklearn.datasets import SCENARIOS, list_scenarios, make_scenario

# a small VAE: the null must hold for whatever VAE the user fitted, including a poor one
SMALL_VAE = dict(latent_dim=4, n_epochs=2, batch_size=16,
                 architecture=dict(encoder_widths=(32, 64), decoder_widths=(32, 64), decoder_channels=64,
                                   n_output_points=32))
ESTIMATES = {"npc_2d": ("radius",), "npc_3d": ("radius", "pore"), "tetrahedron": ("tetrahedron",)}


UNMIX = {"raw": False, "unmixed": True, "both": "both"}


def one(name, seed, *, homogeneous, n_particles, n_bins, n_null, vae="small", pore_method="auto", null_restarts=None,
        unmix=None, axis="direction", symmetry=None):
    X, _ = make_scenario(name, n_particles, random_state=seed, homogeneous=homogeneous)
    vae = PointCloudVAE(**(SMALL_VAE if vae == "small" else {}), random_state=seed).fit(X)
    # None: analyse's own template fuser; otherwise its 100 iterations with these restarts and symmetry
    null_fuser = None
    if null_restarts is not None or symmetry is not None:
        null_fuser = ParticleFuser(n_restarts="auto" if null_restarts is None else null_restarts, max_iter=100,
                                   symmetry=symmetry)
    out = []
    for estimate in ESTIMATES[SCENARIOS[name].structure]:
        t = time.perf_counter()
        given = HeightEstimator(structure="pore", method=pore_method) if estimate == "pore" else estimate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = analyse(X, vae=vae, estimate=given, n_bins=n_bins, fuse=False, n_null=n_null, null_fuser=null_fuser,
                          random_state=seed, axis=axis, **({} if unmix is None else {"unmix": UNMIX[unmix]}))
        out.append((estimate, res.heterogeneity, time.perf_counter() - t))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=["npc2d_default"], choices=list_scenarios(), metavar="NAME")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--n-particles", type=int, default=200)
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--n-null", type=int, default=19)
    ap.add_argument("--which", choices=["homogeneous", "varying", "both"], default="both")
    ap.add_argument("--vae", choices=["small", "default"], default="small",
                    help="the small VAE (the null must hold for a poor one), or PointCloudVAE's defaults, as a user fits")
    ap.add_argument("--pore-method", choices=["auto", "median_split", "gaussian"], default="auto",
                    help="HeightEstimator's method for the 3D pores' ring distance (auto: the paper's median split)")
    ap.add_argument("--null-restarts", type=lambda s: s if s == "auto" else int(s), default=None,
                    help="restarts of the null's template fusion (default: analyse's own template fuser)")
    ap.add_argument("--symmetry", type=int, default=None,
                    help="ParticleFuser(symmetry=...) of the null's template fusion (8: the pores'); default none")
    ap.add_argument("--unmix", choices=sorted(UNMIX), default=None,
                    help="the axes analyse bins along (its unmix): raw (False), unmixed (True) or both; default: "
                         "analyse's default")
    ap.add_argument("--axis", choices=["direction", "single"], default="direction",
                    help="analyse's axis: the latent direction (its default) or one latent axis, the paper's choice")
    args = ap.parse_args(argv)
    cases = {"homogeneous": True, "varying": False}
    if args.which != "both":
        cases = {args.which: cases[args.which]}
    rates = {}
    for name in args.scenarios:
        for case, homogeneous in cases.items():
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for estimate, h, sec in one(name, seed, homogeneous=homogeneous, n_particles=args.n_particles,
                                            n_bins=args.n_bins, n_null=args.n_null, vae=args.vae,
                                            pore_method=args.pore_method, null_restarts=args.null_restarts,
                                            unmix=args.unmix, axis=args.axis, symmetry=args.symmetry):
                    rates.setdefault((name, case, estimate), []).append(h["detected"])
                    print(f"{name} {case} {estimate} seed {seed}: detected={h['detected']} p={h['p_value']:.3g} "
                          f"rise={h['rise']:.2f} null {h['null_rise_mean']:.2f}±{h['null_rise_sd']:.2f} "
                          f"callable>{h['detectable_rise']:.2f} nm twins/data spread {h['twin_spread_ratio']:.2f} "
                          f"({sec:.0f} s)",
                          flush=True)
    print("\nscenario            case         estimate     detected")
    for (name, case, estimate), det in rates.items():
        print(f"{name:19s} {case:12s} {estimate:12s} {sum(det):3d}/{len(det)}")


if __name__ == "__main__":
    main()
