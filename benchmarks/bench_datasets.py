"""How fast the simulators are.

Prints the wall time to simulate 100,000 2D nuclear pores (about 150
localizations each), 100,000 3D pores and 1,000 tetrahedra (about 5,000
localizations each), best of ``--repeat`` runs, with the localizations per
second and the peak resident memory of the process.

    OMP_NUM_THREADS=1 python3 benchmarks/bench_datasets.py
    OMP_NUM_THREADS=1 python3 benchmarks/bench_datasets.py --quick
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024


def bench(name, func, n, repeat, **kwargs):
    best = float("inf")
    for seed in range(repeat):
        start = time.perf_counter()
        particles, truth = func(n, random_state=seed, **kwargs)
        best = min(best, time.perf_counter() - start)
        n_locs = int(truth["n_localizations"].sum())
        del particles, truth
    print(
        f"{name:<14} {n:>8,d} particles  {n_locs:>12,d} localizations  "
        f"{best:7.2f} s  {n / best:>10,.0f} particles/s  {n_locs / best / 1e6:6.1f} M loc/s  "
        f"peak RSS {_peak_rss_mb():7.0f} MB"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer particles, one run (a smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per simulator; the best time is printed")
    args = parser.parse_args(argv)
    scale, repeat = (10, 1) if args.quick else (1, args.repeat)
    make_npc_2d(10, random_state=0)  # imports and first-call overhead out of the timings
    bench("make_npc_2d", make_npc_2d, 100_000 // scale, repeat)
    bench("make_npc_3d", make_npc_3d, 100_000 // scale, repeat)
    bench("make_tetrahedron", make_tetrahedron, 1_000 // scale, repeat)


if __name__ == "__main__":
    main()
