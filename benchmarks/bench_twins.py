"""How homogeneous are the matched null's twins? Each particle's estimate on the data against its twin's.

For every scenario and seed named on the command line, simulates the data
(``make_scenario``, homogeneous and varying), draws one set of twins with
:func:`pcvae_sklearn.validate.make_homogeneous_null` (default fuser), and
prints, for every estimate the scenario's structure has, the standard
deviation of the per-particle estimate over the data and over the twins,
and the Spearman correlation between a particle's estimate and its twin's.

* homogeneous data: the two SDs should match; twins that scatter less
  than the data make the null liberal (false detections);
* varying data: the twins should not track the data (|Spearman| near 0)
  and should scatter less than the data; twins that keep each particle's
  own variant make the null hold the heterogeneity (lost power).

    python benchmarks/bench_twins.py --scenarios npc2d_linkage --seeds 3 --which homogeneous
    python benchmarks/bench_twins.py --scenarios tetra_tilt --first-seed 2 --seeds 1

Only the public API is used. One line per (scenario, case, estimate, seed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.stats import spearmanr

from pcvae_sklearn.datasets import SCENARIOS, list_scenarios, make_scenario
from pcvae_sklearn.estimate import make_estimator
from pcvae_sklearn.validate import make_homogeneous_null

ESTIMATES = {"npc_2d": ("radius",), "npc_3d": ("radius", "pore"), "tetrahedron": ("tetrahedron",)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=["npc2d_linkage"], choices=list_scenarios(), metavar="NAME")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--n-particles", type=int, default=200)
    ap.add_argument("--which", choices=["homogeneous", "varying", "both"], default="both")
    args = ap.parse_args(argv)
    cases = {"homogeneous": True, "varying": False}
    if args.which != "both":
        cases = {args.which: cases[args.which]}
    print("scenario            case         estimate     seed  data SD  twins' SD  Spearman(data, twin)  time")
    for name in args.scenarios:
        structure = SCENARIOS[name].structure
        for case, homogeneous in cases.items():
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                X, _ = make_scenario(name, args.n_particles, random_state=seed, homogeneous=homogeneous)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    twins, _ = make_homogeneous_null(X, random_state=seed)
                sec = time.perf_counter() - t
                n_dims = 3 if "z" in X.fields else 2
                for estimate in ESTIMATES[structure]:
                    est = make_estimator(estimate, n_dims=n_dims)
                    data = est.fit_transform(X)[:, 0]
                    twin = est.transform(twins)[:, 0]
                    rho = spearmanr(data, twin)[0]
                    print(f"{name:19s} {case:12s} {estimate:12s} {seed:4d}  {np.std(data):7.2f}  {np.std(twin):9.2f}"
                          f"  {rho:20.3f}  {sec:4.0f} s", flush=True)


if __name__ == "__main__":
    main()
