"""Centroid against midrange centring (``PointCloudVAE(centring=...)``).

First, how far each centre lands from the simulated particles' true centre
(RMS per coordinate, nm). Then, for every data set and seed, it fits
``PointCloudVAE(random_state=seed, centring=c)`` on 1000 particles of the
simulator (``random_state=500 + seed``, as ``bench_quality.py``) and prints
the best latent dimension's |Spearman| with each true parameter, and for the
3D pores also that of ``LatentUnmixer``'s best component.

    python benchmarks/study_centring.py                                  # npc2d, npc3d, tetra; seeds 0-4
    python benchmarks/study_centring.py --datasets npc3d --centring midrange --seeds 0 1
    python benchmarks/study_centring.py --quick                          # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_abs_spearman

from pcvae_sklearn import LatentUnmixer, PointCloudVAE, as_particles
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron

DATASETS = {
    "npc2d": (make_npc_2d, ("radius",)),
    "npc3d": (make_npc_3d, ("radius", "height")),
    "tetra": (make_tetrahedron, ("height",)),
}
CENTRINGS = ("centroid", "midrange")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--centring", nargs="+", default=list(CENTRINGS), choices=CENTRINGS)
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--quick", action="store_true", help="150 particles, 1 epoch, 1 seed")
    args = ap.parse_args(argv)
    n, seeds, extra = (150, [0], {"n_epochs": 1}) if args.quick else (args.n_particles, args.seeds, {})

    print("distance of the centre from the true centre (RMS per coordinate, nm; 1000 particles, random_state=500)")
    for name in args.datasets:
        X, truth = DATASETS[name][0](1000, random_state=500)
        p = as_particles(X)
        t0 = time.perf_counter()
        errs = {c: np.sqrt(np.mean((p.centres(c) - truth["offset"]) ** 2, axis=0)) for c in CENTRINGS}
        print(f"  {name:6s} " + "   ".join(f"{c} {np.round(e, 1).tolist()}" for c, e in errs.items())
              + f"   ({time.perf_counter() - t0:.2f} s for both)")

    print("\ndataset  centring  seed  " + "  ".join(f"{p:>8s}" for p in ("radius", "height")) + "  unmixed height  fit_s")
    summary = {}
    for name in args.datasets:
        make, params = DATASETS[name]
        for seed in seeds:
            X, truth = make(n, random_state=500 + seed)
            for centring in args.centring:
                t0 = time.perf_counter()
                Z = PointCloudVAE(random_state=seed, centring=centring, **extra).fit_transform(X)
                fit_s = time.perf_counter() - t0
                rho = {p: best_abs_spearman(Z, truth[p]) for p in params}
                unmixed = (best_abs_spearman(LatentUnmixer(random_state=seed).fit_transform(Z), truth["height"])
                           if name == "npc3d" else np.nan)
                for p, r in rho.items():
                    summary.setdefault((name, p, centring), []).append(r)
                if name == "npc3d":
                    summary.setdefault((name, "unmixed height", centring), []).append(unmixed)
                cells = "  ".join(f"{rho[p]:8.3f}" if p in rho else f"{'':8s}" for p in ("radius", "height"))
                print(f"{name:7s}  {centring:8s}  {seed:4d}  {cells}  {unmixed:14.3f}  {fit_s:5.0f}", flush=True)
    print("\nmean (min) over seeds:")
    for (name, p, centring), v in summary.items():
        print(f"  {name:6s} {p:15s} {centring:8s} {np.mean(v):.3f} ({np.min(v):.3f})")


if __name__ == "__main__":
    main()
