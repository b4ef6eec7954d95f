"""Speed of the per-particle estimators, the binner and subsampling (vectorised, packed form);
with ``--accuracy``, the radius estimators' bias, spread and Spearman on simulated pores;
with ``--ring-distance``, the pore's two height estimators (the paper's median split and the
two-Gaussian fit) on the 3D pore scenarios and, where ``../shared`` has them, the real Nup107 pores;
with ``--turned``, the ring distance and radius of pores turned at random in 3D, as read and after
``ParticleFuser(symmetry=8).fit_transform``, against pores seen along z.

Run:  OMP_NUM_THREADS=1 python3 benchmarks/bench_estimate.py [--quick]
      python3 benchmarks/bench_estimate.py --accuracy
      python3 benchmarks/bench_estimate.py --ring-distance
      python3 benchmarks/bench_estimate.py --turned
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import REAL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers

from _helpers import precision_spread_pores
from pcvae_sklearn._ragged import Particles
from pcvae_sklearn.bin import LatentBinner
from pcvae_sklearn.estimate import HeightEstimator, RadiusEstimator, subsample_localizations


def packed(n_particles, n_loc, n_dims, rng, z_levels=None):
    """Ragged rings (or two-level 3D particles) straight into packed form."""
    lengths = rng.poisson(n_loc, n_particles).clip(2)
    offsets = np.r_[0, np.cumsum(lengths)]
    n = offsets[-1]
    a = rng.uniform(0, 2 * np.pi, n)
    r = np.repeat(rng.uniform(40, 60, n_particles), lengths)
    cols = [r * np.cos(a), r * np.sin(a)]
    if n_dims == 3:
        levels = rng.choice(z_levels, n)
        cols.append(levels)
    coords = np.column_stack(cols) + rng.normal(0, 5, (n, n_dims))
    return Particles(coords=coords, offsets=offsets)


def timed(label, fn, n_particles, n_loc):
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    print(f"{label:<55s} {dt:8.3f} s   {n_particles / dt:12.0f} particles/s   {n_loc / dt / 1e6:7.1f} M loc/s")


def accuracy():
    """Ring fit against the paper's centroid statistics: bias and spread on one radius, Spearman on a range."""
    from scipy.stats import spearmanr

    from pcvae_sklearn.datasets import make_npc_2d, make_scenario

    methods = {"ring fit (default)": RadiusEstimator(), "paper (centroid)": None}
    print(f"{'data':28s} {'estimator':20s} {'bias nm':>8s} {'sd nm':>6s} {'Spearman':>9s}")
    cases = [("make_npc_2d", lambda n, r, s: make_npc_2d(n, **({"radius": r} if r else {}), random_state=s), "mean")]
    for name in ("npc2d_linkage", "npc2d_low_dol", "npc2d_background", "npc3d_default", "npc3d_axial20",
                 "npc3d_outliers", "npc3d_tilt"):
        cases.append((name, lambda n, r, s, name=name: make_scenario(name, n, random_state=s, homogeneous=bool(r)),
                      "mean" if "2d" in name else "median"))
    # pores from a simulator that is not the library's: bursts, per-particle precision and labelling, and
    # uniform background in a 150 nm pick, where the background falls far outside the ring
    for spread, background in ((0.3, 0), (0.3, 8), (0.3, 20), (0.8, 8)):
        cases.append((f"independent, spread {spread}, bg {background}",
                      lambda n, r, s, spread=spread, background=background: _independent(n, s, bool(r), spread, background),
                      "mean"))
    for name, make, paper in cases:
        methods["paper (centroid)"] = RadiusEstimator(method=paper)
        Xh, th = make(1000, 50.0 if name == "make_npc_2d" else True, 10_000)
        X, t = make(1000, None, 1)
        for label, est in methods.items():
            e = est.fit_transform(Xh)[:, 0] - th["radius"]
            rho = spearmanr(est.fit_transform(X)[:, 0], t["radius"])[0]
            print(f"{name:28s} {label:20s} {np.median(e):+8.2f} {e.std():6.2f} {rho:9.3f}")


def _independent(n, seed, homogeneous, spread, background):
    """``precision_spread_pores`` of ``tests/_helpers.py`` (53 nm, or 43-63 nm), with its truth as a record."""
    X, radius = precision_spread_pores(n, seed, varying=not homogeneous, spread=spread, background=background)
    return X, {"radius": radius}


def ring_distance():
    """|Spearman| of each height method with the true ring distance, 500 pores per scenario, seeds 0-2."""
    from scipy.stats import spearmanr

    from pcvae_sklearn import read_particles
    from pcvae_sklearn.datasets import make_scenario

    methods = ("median_split", "gaussian")

    def heights(X):
        return {m: HeightEstimator(structure="pore", method=m).fit_transform(X)[:, 0] for m in methods}

    print(f"{'scenario':16s} {'seed':>4s} " + " ".join(f"{m:>13s}" for m in methods) + "   1st-99th percentile (nm), each")
    for name in ("npc3d_default", "npc3d_tilt", "npc3d_axial20", "npc3d_outliers", "npc3d_twist"):
        for seed in range(3):
            X, truth = make_scenario(name, 500, random_state=500 + seed)
            est = heights(X)
            rho = [abs(spearmanr(est[m], truth["height"])[0]) for m in methods]
            ranges = "  ".join("%.0f-%.0f" % tuple(np.percentile(est[m], [1, 99])) for m in methods)
            print(f"{name:16s} {seed:4d} " + " ".join(f"{r:13.3f}" for r in rho) + f"   {ranges}")
    print("\none ring distance (homogeneous, 1000 pores): bias (median error) and spread (IQR / 1.35) in nm")
    for name in ("npc3d_default", "npc3d_tilt", "npc3d_axial20", "npc3d_outliers"):
        X, truth = make_scenario(name, 1000, random_state=10_000, homogeneous=True)
        cells = []
        for m, height in heights(X).items():
            error = height - truth["height"]
            q1, q2, q3 = np.percentile(error, [25, 50, 75])
            cells.append(f"{m} {q2:+.2f} / {(q3 - q1) / 1.349:.2f}")
        print(f"{name:16s} " + "   ".join(cells))
    real = REAL / "fig5k_306_3DNUP_PAINT.mat"
    if real.exists():
        X = read_particles(real)
        est = heights(X)
        print(f"real Nup107 ({len(X)} pores): the two agree at Spearman {spearmanr(*est.values())[0]:.3f}")
        # the set is registered (the published fusion put every pore in one frame): pooled, it is the
        # super-particle, whose ring distance both methods agree on; per-particle medians can be held to it
        pooled = [np.concatenate([np.column_stack([np.asarray(X[i][c]) for c in "xyz"]) for i in range(len(X))])]
        for m in methods:
            q = np.percentile(est[m], [1, 25, 50, 75, 99])
            whole = HeightEstimator(structure="pore", method=m).fit_transform(pooled)[0, 0]
            print(f"  {m:13s} percentiles 1/25/50/75/99: " + " / ".join(f"{v:.1f}" for v in q)
                  + f" nm; on the pooled super-particle {whole:.1f} nm")


def turned(seeds=(0, 1, 2), n_particles=100):
    """|Spearman| of the ring distance and the radius with the truth for pores turned out of the plane, and whether
    each estimator warns."""
    import warnings

    from scipy.stats import spearmanr

    from pcvae_sklearn import ParticleFuser
    from pcvae_sklearn.datasets import make_npc_3d

    def measured(X, truth):
        said = []
        for estimator, name in ((HeightEstimator(structure="pore"), "height"), (RadiusEstimator(), "radius")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = estimator.fit_transform(X)[:, 0]
            warned = any("do not look like rings seen along z" in str(w.message) for w in caught)
            said.append(f"{abs(spearmanr(value, truth[name])[0]):.3f} ({'warns' if warned else 'quiet'})")
        return " / ".join(said)

    print(f"{n_particles} pores, |Spearman| of the ring distance / the radius with the truth (and the estimator's "
          "warning)")
    for seed in seeds:
        X, truth = make_npc_3d(n_particles, rotation="3d", random_state=seed)
        t0 = time.perf_counter()
        registered = ParticleFuser(symmetry=8, random_state=seed).fit_transform(X)
        seconds = time.perf_counter() - t0
        upright, truth_z = make_npc_3d(n_particles, random_state=seed)
        print(f"seed {seed}: turned, as read {measured(X, truth)}; registered {measured(registered, truth)} "
              f"({seconds:.0f} s); seen along z {measured(upright, truth_z)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--accuracy", action="store_true", help="bias, spread and Spearman of the radius estimators instead")
    parser.add_argument("--ring-distance", action="store_true",
                        help="the pore's two height estimators against the true ring distance instead")
    parser.add_argument("--turned", action="store_true",
                        help="the ring distance of pores turned out of the plane, as read and registered")
    args = parser.parse_args()
    if args.turned:
        turned()
        return
    if args.accuracy:
        accuracy()
        return
    if args.ring_distance:
        ring_distance()
        return
    rng = np.random.default_rng(0)
    scale = 10 if args.quick else 1

    n = 100_000 // scale
    p2 = packed(n, 150, 2, rng)
    timed(f"RadiusEstimator 2D mean,  {n} particles x ~150 loc", lambda: RadiusEstimator().fit_transform(p2), n, p2.n_localizations)
    p3 = packed(n, 150, 3, rng, z_levels=(-25.0, 25.0))
    timed(f"RadiusEstimator 3D median, {n} particles x ~150 loc", lambda: RadiusEstimator().fit_transform(p3), n, p3.n_localizations)
    timed(f"HeightEstimator pore,     {n} particles x ~150 loc", lambda: HeightEstimator(structure="pore").fit_transform(p3), n, p3.n_localizations)
    nt = 1000 // scale
    pt = packed(nt, 5000, 3, rng, z_levels=(0.0, 0.0, 0.0, 70.0))
    timed(f"HeightEstimator tetrahedron (EM), {nt} x ~5000 loc", lambda: HeightEstimator().fit_transform(pt), nt, pt.n_localizations)
    Z = rng.normal(size=(n, 8))
    timed(f"LatentBinner(20).fit_transform, {n} x 8 latents", lambda: LatentBinner().fit_transform(Z), n, 0)
    ak_p2 = p2.to_awkward()
    timed(f"subsample_localizations(0.5), {n} particles (awkward)", lambda: subsample_localizations(ak_p2, 0.5, random_state=0), n, p2.n_localizations)


if __name__ == "__main__":
    main()
