"""The matched null where precision varies several-fold between particles: an independent simulator.

The 2D pores here (``precision_spread_pores`` of ``tests/_helpers.py``, which
a test uses too) are not ``pcvae_sklearn.datasets``': 8 corners of 2 sites
12 nm apart on a ring, labelling drawn per particle (0.35-0.75), Poisson(6)
blinks per labelled site, 4 nm linkage error shared by a site's blinks,
per-localization precision lognormal (median 8 nm, log-SD 0.4) times a
per-particle factor of log-SD ``--spread`` (0.8: some particles several
times dimmer than others), a 15 nm pick offset, and 8 uniform background
localizations per pick within 150 nm. The precision field is the true one;
``--no-precision-field`` analyses the same particles without it, as from a
file that carries none (the thirds are still taken by the true precision).

For each seed, ``analyse(X, estimate="radius")`` with its defaults on all
1000 particles, then on each third of them by mean precision
(``fuse=False``, 10 bins), for homogeneous pores (radius 53 nm: the verdict
must be "no heterogeneity") and, with ``--varying``, pores of radius
43-63 nm. The caveat of a verdict along an axis that orders the particles
by precision is printed where it fires. ``--diagnose`` prints instead the
median and the interquartile range of the per-particle radius by fifth of
mean precision, in the data and in one set of the null's twins: along an
axis that sorts the particles by precision, the twins' medians must rise
at least as the data's do.

    python benchmarks/bench_null_precision.py --seeds 0 1 4            # ~6 min on 2 cores
    python benchmarks/bench_null_precision.py --seeds 0 --varying
    python benchmarks/bench_null_precision.py --seeds 0 1 4 --no-precision-field
    python benchmarks/bench_null_precision.py --seeds 1 --diagnose
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import awkward as ak
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers

from pcvae_sklearn import analyse  # noqa: E402
from _helpers import precision_spread_pores  # noqa: E402


def verdict(X, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(X, estimate="radius", **kwargs)
    return res.heterogeneity["verdict"], time.perf_counter() - t0


def diagnose(X):
    """The per-particle radius by fifth of mean precision: data against one set of twins."""
    from pcvae_sklearn import RadiusEstimator
    from pcvae_sklearn.validate import make_homogeneous_null

    mean_precision = ak.to_numpy(ak.mean(X.precision, axis=1))
    fifth = np.searchsorted(np.quantile(mean_precision, [0.2, 0.4, 0.6, 0.8]), mean_precision)
    twins, _ = make_homogeneous_null(X, random_state=0)
    print("  radius by fifth of mean precision, brightest first: median | interquartile range (nm)")
    for name, Y in (("data", X), ("twins", twins)):
        r = RadiusEstimator().fit_transform(Y)[:, 0]
        median = [np.median(r[fifth == k]) for k in range(5)]
        iqr = [np.subtract(*np.percentile(r[fifth == k], [75, 25])) for k in range(5)]
        print(f"  {name:5}: " + " ".join(f"{v:6.2f}" for v in median) + " | " + " ".join(f"{v:5.2f}" for v in iqr),
              flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 4])
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=0.8, help="log-SD of the per-particle precision factor")
    ap.add_argument("--varying", action="store_true", help="radius 43-63 nm instead of 53 nm for all")
    ap.add_argument("--diagnose", action="store_true", help="the radius of data and twins by fifth of precision")
    ap.add_argument("--no-precision-field", action="store_true",
                    help="analyse the particles without their precision field")
    args = ap.parse_args(argv)
    for seed in args.seeds:
        X, _ = precision_spread_pores(args.n_particles, seed, varying=args.varying, spread=args.spread)
        if args.diagnose:
            print(f"seed {seed}:")
            diagnose(X)
            continue
        mean_precision = ak.to_numpy(ak.mean(X.precision, axis=1))
        if args.no_precision_field:
            X = X[["x", "y"]]
        text, dt = verdict(X, random_state=0)
        print(f"seed {seed}, all {len(X)} particles ({dt:.0f} s): {text}", flush=True)
        third = np.searchsorted(np.quantile(mean_precision, [1 / 3, 2 / 3]), mean_precision)
        for k, name in enumerate(("brightest", "middle", "dimmest")):
            text, dt = verdict(X[third == k], random_state=0, n_bins=10, fuse=False)
            print(f"seed {seed}, {name} third ({dt:.0f} s): {text[:110]}", flush=True)


if __name__ == "__main__":
    main()
