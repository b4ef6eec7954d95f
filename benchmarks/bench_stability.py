"""Do the axes that track a varying parameter come back with every seed? (``axis_stability``)

For each data set, fits ``PointCloudVAE()`` with 5 seeds on the same 1000
simulated particles and matches their axes (Hungarian assignment on
|Spearman|). For every varying parameter it prints the reference seed's
axis that tracks it best, that axis's |Spearman| with the truth in each
seed, and its reproducibility: the smallest |Spearman| between its matched
axes over all 10 pairs of seeds. The goal: at least 0.9 on the 2D pores,
the 3D pores and the tetrahedra. It also lists the axes that are not
reproducible and what they track.

    python benchmarks/bench_stability.py                  # ~15 min on 2 cores
    python benchmarks/bench_stability.py --data npc3d --unmix 4   # the axes of LatentUnmixer(n_components=4)
    python benchmarks/bench_stability.py --data npc2d --n-particles 300 --n-seeds 3   # a smoke run
    python benchmarks/bench_stability.py --data npc3d_twist npc3d_axial20 --unmix 4    # scenarios of the family
    python benchmarks/bench_stability.py --data npc2d --params '{"batch_size": 16}'    # other settings
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sklearn.pipeline import make_pipeline

from pcvae_sklearn import LatentUnmixer, PointCloudVAE
from pcvae_sklearn.datasets import SCENARIOS, make_npc_2d, make_npc_3d, make_scenario, make_tetrahedron
from pcvae_sklearn.validate import axis_stability

DATA = {
    "npc2d": (make_npc_2d, ["radius"]),
    "npc3d": (make_npc_3d, ["radius", "height"]),
    "tetra": (make_tetrahedron, ["height"]),
}
# and every scenario of the family, by name
DATA.update({name: (lambda n, random_state, name=name: make_scenario(name, n, random_state=random_state),
                    list(s.varying)) for name, s in SCENARIOS.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", choices=sorted(DATA), default=["npc2d", "npc3d", "tetra"], metavar="NAME")
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--n-seeds", type=int, default=5)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--params", type=json.loads, default={}, help="JSON of PointCloudVAE keywords overriding the defaults")
    ap.add_argument("--unmix", type=int, default=None, metavar="K",
                    help="judge the axes of a Pipeline(PointCloudVAE(), LatentUnmixer(n_components=K))")
    args = ap.parse_args(argv)
    print("data   param    axis  |rho| with truth per seed        reproducibility  fits_s")
    for name in args.data:
        make, params = DATA[name]
        X, truth = make(args.n_particles, random_state=700 + args.data_seed)
        t0 = time.perf_counter()
        vae = PointCloudVAE(**args.params)
        encoder = vae if args.unmix is None else make_pipeline(vae, LatentUnmixer(n_components=args.unmix))
        result = axis_stability(X, encoder, n_seeds=args.n_seeds, random_state=args.data_seed,
                                estimates={p: truth[p] for p in params})
        seconds = time.perf_counter() - t0
        for p in params:
            rho = np.abs(result.tracks[p])  # (n_seeds, k), matched axes
            axis = int(np.argmax(rho[0]))
            per_seed = " ".join(f"{r:.3f}" for r in rho[:, axis])
            print(f"{name:6s} {p:8s} {axis:4d}  {per_seed:32s} {result.reproducibility[axis]:8.3f}  {seconds:7.1f}",
                  flush=True)
        for line in result.describe():
            print(f"    {line}")


if __name__ == "__main__":
    main()
