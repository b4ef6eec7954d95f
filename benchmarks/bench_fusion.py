"""Benchmark ParticleFuser: time against the number of particles, and registration accuracy.

Speed goal (issue 3): fusing 1,000 simulated 2D NPC particles of about 150
localizations takes under 30 s on 2 cores, and the time grows linearly.
Accuracy goals: recovered rotations within 5 degrees of the truth (up to the
structure's symmetry) for >= 95% of 2D NPCs and >= 90% of 3D pores under
full 3D rotations. The 3D figure varies by several points between data sets
of 200 pores (a binomial standard error of 2 points), so the defaults are run
on 5 data sets and the fraction is also given pooled over all 1,000 pores.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_fusion.py            # full run
    OMP_NUM_THREADS=1 python benchmarks/bench_fusion.py --quick    # smoke run
    python benchmarks/bench_fusion.py --no-precision-only          # 3D pores without precision fields,
                                                                   # the ceiling any fusion could reach, and
                                                                   # how far apart two halves of a pore end
    python benchmarks/bench_fusion.py --no-precision-only --simulate '{"dol": 0.35}'   # held-out nuisances
    python benchmarks/bench_fusion.py --no-precision-only --simulate '{"dol": 0.35, "rotation": "z"}' --rotation z
    python benchmarks/bench_fusion.py --no-precision-only --symmetry 8   # the same, 8-fold symmetry imposed
    python benchmarks/bench_fusion.py --no-precision-only --known-model 50 50   # registered onto a known model
    python benchmarks/bench_fusion.py --no-precision-only --simulated-spread 0   # every localization 8 / 12 nm
    python benchmarks/bench_fusion.py --no-precision-only --simulate '{"mean_blinks": 15}'   # ~300 per pore
    python benchmarks/bench_fusion.py --wang-nup107 [--symmetry 8] # Wang et al.'s simulated Nup107 pores
    python benchmarks/bench_fusion.py --lateral-only --seeds-3d 0 1 2   # a lateral precision, no precision_z
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' helpers

from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d  # noqa: E402
from pcvae_sklearn._input import _from_awkward  # noqa: E402
from pcvae_sklearn.fuse import ParticleFuser, pose_reproducibility  # noqa: E402
from pcvae_sklearn.fuse._anisotropic import OwnFrameVariances  # noqa: E402
from pcvae_sklearn.fuse._em import EMState, _register_each  # noqa: E402
from pcvae_sklearn.fuse._fuser import _mixture_terms  # noqa: E402
from _common import precision_spread  # noqa: E402
from _helpers import ring_spread  # noqa: E402


def errors_2d(rotations, truth, fold=8):
    comb = rotations @ truth
    theta = np.arctan2(comb[:, 1, 0], comb[:, 0, 0])
    frame = np.angle(np.mean(np.exp(1j * fold * theta))) / fold
    return np.degrees(np.abs((theta - frame + np.pi / fold) % (2 * np.pi / fold) - np.pi / fold))


def _angle(m):
    return np.degrees(np.arccos(np.clip((np.trace(m, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def errors_3d(rotations, truth, symmetry):
    """Angle to the chordal-mean common frame, up to the symmetry group (see tests/test_fuser.py)."""
    return common_frame(rotations, truth, symmetry)[0]


def common_frame(rotations, truth, symmetry):
    """``(errors, frame)``: each pose's angle (degrees) to the chordal-mean common frame, up to ``symmetry``,
    and that frame: the fused output maps into the truth's frame as ``coords @ frame``."""
    comb = rotations @ truth
    cand = np.einsum("nab,scb->nsac", comb, symmetry)
    best = None
    for j in range(0, len(comb), max(1, len(comb) // 20)):
        pick = _angle(np.einsum("ba,nsbc->nsac", comb[j], cand)).argmin(1)
        u, _, vt = np.linalg.svd(cand[np.arange(len(comb)), pick].sum(0))
        u[:, -1] *= np.sign(np.linalg.det(u @ vt))
        err = _angle(np.einsum("ba,nsbc->nsac", u @ vt, cand)).min(1)
        if best is None or np.median(err) < np.median(best[0]):
            best = (err, u @ vt)
    return best


def dihedral_3d(fold=8):
    ang = 2 * np.pi * np.arange(fold) / fold
    c = np.zeros((fold, 3, 3))
    c[:, 0, 0], c[:, 0, 1], c[:, 1, 0], c[:, 1, 1], c[:, 2, 2] = np.cos(ang), -np.sin(ang), np.sin(ang), np.cos(ang), 1
    return np.concatenate([c, c @ np.diag([1.0, -1.0, -1.0])])


def register_from_truth(p, rotation, offset, sites, variances, sigma2, state=False):
    """Rotations (n, d, d) EM reaches when every particle of ``p`` is registered onto the true ``sites``
    from its true pose (observed = ``sites @ rotation.T + offset``), under ``variances`` plus the shared
    ``sigma2`` (nm^2); with ``state``, the whole end state (rotations and translations).

    No joint fit and no search: each particle moves from the truth to the
    likeliest pose nearby. The fraction of these within 5 degrees is a
    ceiling that no fusion can be expected to beat.
    """
    centroids = p.centroids()
    src = p.coords - np.repeat(centroids, p.lengths, axis=0)
    start = EMState(rotation.transpose(0, 2, 1).copy(), np.einsum("nba,nb->na", rotation, centroids - offset),
                    sites, sigma2)
    extent = float(np.sqrt((src**2).sum(axis=1).max()))
    end = _register_each(src, p.offsets, start, _mixture_terms(0.01, 2.0 * extent, p.n_dims), variances,
                         max_iter=200, tol=1e-7)
    return end if state else end.rotations


def _scale_mixture_variances(p, end, sites, median_var, spread, sigma2, nodes=9):
    """Each localization's variance (m, 3) under a lognormal scale of log-SD ``spread`` about ``median_var``
    (3,), given its offsets from the ``sites`` at the pose ``end``: ``median_var / E[1 / s^2 | offsets]``.

    The posterior of the scale ``s`` is taken over Gauss-Hermite nodes and
    over the sites (a Gaussian mixture of equal weights, in the particle's
    own frame); the shared ``sigma2`` is added to every node's variance.
    Unlike the fuser's own step (``fuse._scale``), it has no outlier term:
    the ideal model of these simulations. The fuser's step
    (``fuse._scale.refine_poses``), called here once instead from the same
    true poses and sites, reached 87.0 / 86.0 / 80.5 % at 12 nm and 72.5 /
    72.5 / 68.5 % at 20 nm (seeds 0 / 1 / 2), 0-4 points less.
    """
    index = np.repeat(np.arange(p.lengths.size), p.lengths)
    src = p.coords - np.repeat(p.centroids(), p.lengths, axis=0)
    registered = np.einsum("mab,mb->ma", end.rotations[index], src) + end.translations[index]
    own = np.einsum("mba,mkb->mka", end.rotations[index], registered[:, None, :] - sites[None])  # R^T (y - c)
    t, w = np.polynomial.hermite.hermgauss(nodes)
    log_s = np.sqrt(2.0) * spread * t
    var = np.exp(2 * log_s)[:, None] * median_var[None] + sigma2  # (nodes, 3)
    ll = -0.5 * (own[:, :, None, :] ** 2 / var).sum(-1) - 0.5 * np.log(var).sum(-1)  # (m, K, nodes)
    ll = np.logaddexp.reduce(ll, axis=1) + np.log(w / w.sum())
    post = np.exp(ll - ll.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(median_var[None] / (post @ np.exp(-2 * log_s))[:, None])


def ceiling_3d(X, truth, model, spread=0.3, n_rounds=4):
    """Fraction within 5 degrees registered onto the true sites from the true poses (:func:`register_from_truth`).

    ``model`` says what the registration knows of the localizations'
    variances (lateral and axial):

    * ``"mean"``: the data set's mean, as a fuser without precision fields
      could at best know it;
    * ``"mixture"``: each localization's precision unknown, its distribution
      (lognormal, log-SD ``spread``, the true median) known. Each
      localization's variance is its posterior mean precision's inverse
      given its offsets from the sites (:func:`_scale_mixture_variances`),
      alternated ``n_rounds`` times with the registration: the EM of that
      scale mixture with the sites fixed;
    * ``"own"``: each localization's own, from the precision fields of ``X``.
    """
    p = _from_awkward(X)
    rotation, offset = truth["rotation"], truth["offset"]
    sites = np.einsum("ba,kb->ka", rotation[0], truth["sites"][0] - offset[0])  # particle 0's, in the pore's frame
    own = np.stack([p.fields["precision"] ** 2] * 2 + [p.fields["precision_z"] ** 2], axis=1)
    variance = own if model == "own" else np.ascontiguousarray(np.broadcast_to(own.mean(axis=0), own.shape))
    for _ in range(n_rounds if model == "mixture" else 1):
        end = register_from_truth(p, rotation, offset, sites, OwnFrameVariances(variance, p.offsets), 1.0,
                                  state=True)
        if model == "mixture":
            variance = _scale_mixture_variances(p, end, sites, np.median(own, axis=0), spread, 1.0)
    return np.mean(errors_3d(end.rotations, rotation, dihedral_3d()) < 5)


def no_precision_3d(args):
    """3D pores of 8 nm lateral and 12 or 20 nm axial precision, random 3D rotations (about z only with
    ``--simulate '{"rotation": "z"}'``), the precision fields dropped."""
    n3 = 60 if args.quick else 200
    print("== accuracy without precision fields: 3D pores, full 3D rotations (unless --simulate says), 8 nm lateral "
          "precision ==")
    print("   (ceiling: every particle registered onto the true sites from its true pose, under the data set's mean")
    print("   variances / a lognormal scale of each localization's variance, its spread known / each localization's")
    print("   own precision)")
    for axial in (12.0, 20.0):
        for seed in ([args.seed] if args.quick else args.seeds_3d[:3]):
            simulate = {"rotation": "3d", **args.simulate}
            with_fields, truth = make_npc_3d(n3, radius=50.0, height=50.0, precision=8.0,
                                             z_ratio=axial / 8.0, precision_spread=args.simulated_spread,
                                             random_state=seed, **simulate)  # the fields: the ceiling's
            X = with_fields[[k for k in with_fields.fields if not k.startswith("precision")]]  # as many real files
            ceiling = [ceiling_3d(with_fields, truth, model, spread=args.simulated_spread)
                       for model in ("mean", "mixture", "own")]
            fuser = ParticleFuser(symmetry=args.symmetry, precision_spread=args.precision_spread,
                                  rotation=args.rotation, n_components=args.n_components,
                                  outlier_weight=args.outlier_weight,
                                  n_jobs=args.n_jobs, random_state=seed)
            t0 = time.perf_counter()
            if args.known_model is None:
                fuser.fit(X)
                rotations = fuser.rotations_
            else:  # a model known in advance: fitted on ideal pores, then every pore registered onto it
                fuser.fit(known_model(*args.known_model))
                rotations, _ = fuser.register(X)
            dt = time.perf_counter() - t0
            err = errors_3d(rotations, truth["rotation"], dihedral_3d())
            # what a user can see without the truth: how far apart two halves of a pore end
            halves = pose_reproducibility(X, fuser, symmetry=8, mirror=True, random_state=seed)
            print(f"axial {axial:4.0f} nm, no precision field    seed {seed} n={n3} time {dt:6.1f} s  "
                  f"<5 deg {np.mean(err < 5):.3f}  median {np.median(err):.1f} deg  "
                  + (f"flagged {fuser.flagged_.mean():.3f}  " if args.known_model is None else "")
                  + f"ceiling {ceiling[0]:.3f} / {ceiling[1]:.3f} / {ceiling[2]:.3f}  "
                  f"precision_spread_ {fuser.precision_spread_:.2f}  halves apart {halves.median:.1f} deg "
                  f"(twins {halves.twin_median:.1f}, ratio {halves.ratio:.2f})",
                  flush=True)


def known_model(radius, height, n=50, seed=100):
    """Ideal pores of a known geometry to fit a model on: every site labelled, 3 nm precision, no background, seen
    from the top. The model a user could build from a structure known in advance."""
    ideal, _ = make_npc_3d(n, radius=radius, height=height, dol=1.0, precision=3.0, background=0.0, rotation="z",
                           precision_field=False, random_state=seed)
    return ideal


def wang_nup107(args):
    """Wang et al.'s 200 simulated Nup107 pores (12-73 localizations, random 3D rotations): ring sharpness, fused
    with and without their precision fields. No poses are given, so the figure is the spread of the fused ring."""
    import awkward as ak
    import scipy.io

    from pcvae_sklearn import as_particles

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "fusion" / "simulated_nup107_dol65.mat"
    cells = scipy.io.loadmat(path)["particles"][0]
    pts, sig = [c["points"][0, 0] for c in cells], [c["sigma"][0, 0] for c in cells]
    print(f"== {path.name}: radial interquartile range of the fused ring (nm), symmetry {args.symmetry} ==")
    for with_precision in (True, False):
        fields = {a: ak.Array([q[:, k] for q in pts]) for k, a in enumerate("xyz")}
        if with_precision:
            fields.update(precision=ak.Array([q[:, 0] for q in sig]), precision_z=ak.Array([q[:, 1] for q in sig]))
        X = ak.zip(fields)
        for seed in args.seeds_3d[:2]:
            fuser = ParticleFuser(symmetry=args.symmetry, precision_spread=args.precision_spread, n_jobs=args.n_jobs,
                                  n_components=args.n_components, outlier_weight=args.outlier_weight,
                                  random_state=seed)
            t0 = time.perf_counter()
            fuser.fit(X)
            dt = time.perf_counter() - t0
            spread = ring_spread(as_particles(fuser.super_particle_).coords)
            print(f"precision field {str(with_precision):5}  seed {seed}  ring IQR {spread:5.2f} nm  "
                  f"flagged {fuser.flagged_.mean():.3f}  time {dt:5.1f} s  "
                  f"precision_spread_ {fuser.precision_spread_:.2f}",
                  flush=True)


def lateral_only_3d(args):
    """3D pores whose file gives a lateral precision but no axial one, against the lateral one taken for z."""
    import awkward as ak

    print("== 3D pores, precision 6 nm, axial 15 nm (z_ratio 2.5), full 3D rotations: the file has 'precision' "
          "but no 'precision_z' ==")
    for seed in args.seeds_3d:
        X, truth = make_npc_3d(200, radius=50.0, height=50.0, rotation="3d", random_state=seed)
        lateral = X[[f for f in X.fields if f != "precision_z"]]
        assumed = ak.with_field(lateral, lateral["precision"], "precision_z")
        for label, data in [("no precision_z (axial excess estimated)", lateral),
                            ("precision_z := precision (assumed equal)", assumed)]:
            fuser = ParticleFuser(n_jobs=args.n_jobs, random_state=seed, n_components=args.n_components,
                                  outlier_weight=args.outlier_weight)
            t0 = time.perf_counter()
            fuser.fit(data)
            dt = time.perf_counter() - t0
            err = errors_3d(fuser.rotations_, truth["rotation"], dihedral_3d())
            print(f"{label:<42} seed {seed} time {dt:6.1f} s  <5 deg {np.mean(err < 5):.3f}  median "
                  f"{np.median(err):.2f}  axial_excess_ {fuser.axial_excess_:.0f} nm^2 (true {15.0**2 - 6.0**2:.0f})",
                  flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--n-jobs", type=int, default=2, help="restarts in parallel (default 2: two cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds-3d", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="data sets of 200 pores for the 3D goal; the fraction is also pooled over them")
    parser.add_argument("--symmetry", type=int, default=None,
                        help="ParticleFuser(symmetry=...) for the 3D pores (8: the pore's); default none imposed")
    parser.add_argument("--n-components", type=int, default=ParticleFuser().n_components,
                        help="ParticleFuser(n_components=...): the centres of the fused model")
    parser.add_argument("--outlier-weight", type=float, default=ParticleFuser().outlier_weight,
                        help="ParticleFuser(outlier_weight=...): the prior weight of background")
    parser.add_argument("--lateral-only", action="store_true",
                        help="only 3D pores whose file has a lateral precision but no precision_z (--seeds-3d)")
    parser.add_argument("--no-precision-only", action="store_true",
                        help="only the 3D pores whose files carry no precision field (8 nm lateral, 12 and 20 nm axial)")
    parser.add_argument("--simulated-spread", type=float, default=0.3,
                        help="with --no-precision-only: the log-SD of each localization's precision (default 0.3, "
                             "make_npc_3d's; 0 gives every localization the same precision)")
    parser.add_argument("--simulate", type=json.loads, default={},
                        help="with --no-precision-only: more make_npc_3d arguments, as JSON (e.g. "
                             "'{\"mean_blinks\": 15}' for twice the localizations per pore; the pores turn in 3D "
                             "unless '{\"rotation\": \"z\"}')")
    parser.add_argument("--rotation", choices=["full", "z"], default="full",
                        help="with --no-precision-only: ParticleFuser(rotation=...); 'z' for pores seen from the top "
                             "(--simulate '{\"rotation\": \"z\"}')")
    parser.add_argument("--precision-spread", type=precision_spread, default="auto",
                        help="ParticleFuser(precision_spread=...) for the pores without precision fields "
                             "(--no-precision-only, --wang-nup107)")
    parser.add_argument("--known-model", type=float, nargs=2, default=None, metavar=("RADIUS", "HEIGHT"),
                        help="with --no-precision-only: register every pore onto a model fitted on ideal pores of "
                             "this radius and ring distance (nm) instead of fusing them (the truth: 50 50)")
    parser.add_argument("--wang-nup107", action="store_true",
                        help="only Wang et al.'s simulated Nup107 pores (../shared/data/fusion), ring sharpness")
    args = parser.parse_args(argv)
    if args.wang_nup107:
        wang_nup107(args)
        return
    if args.no_precision_only:
        no_precision_3d(args)
        return
    if args.lateral_only:
        lateral_only_3d(args)
        return
    sizes = [50, 100] if args.quick else [250, 500, 1000, 2000]

    print("== speed: 2D NPC (make_npc_2d defaults, ~150 localizations), ParticleFuser() defaults ==")
    print(f"{'particles':>9} {'locs':>8} {'time s':>8} {'ms/particle':>12} {'<5 deg':>7} {'median deg':>10}")
    for n in sizes:
        X, truth = make_npc_2d(n, radius=50.0, random_state=args.seed)
        fuser = ParticleFuser(n_jobs=args.n_jobs, random_state=args.seed, n_components=args.n_components,
                              outlier_weight=args.outlier_weight)
        t0 = time.perf_counter()
        fuser.fit(X)
        dt = time.perf_counter() - t0
        err = errors_2d(fuser.rotations_, truth["rotation"])
        n_locs = int(truth["n_localizations"].sum())
        print(f"{n:>9} {n_locs:>8} {dt:>8.1f} {1000 * dt / n:>12.1f} {np.mean(err < 5):>7.3f} {np.median(err):>10.2f}")

    print("\n== accuracy: 3D pores under full 3D rotations (make_npc_3d rotation='3d', radius 50, height 50) ==")
    n3 = 60 if args.quick else 200
    seeds_3d = [args.seed] if args.quick else args.seeds_3d
    within = []
    for seed in seeds_3d:
        X, truth = make_npc_3d(n3, radius=50.0, height=50.0, rotation="3d", random_state=seed)
        fuser = ParticleFuser(symmetry=args.symmetry, n_jobs=args.n_jobs, random_state=seed,
                              n_components=args.n_components, outlier_weight=args.outlier_weight)
        t0 = time.perf_counter()
        fuser.fit(X)
        dt = time.perf_counter() - t0
        if seed == args.seed:
            reference = (X, truth, fuser)  # reused below: registration onto the true structure
        err = errors_3d(fuser.rotations_, truth["rotation"], dihedral_3d())
        within.append(err < 5)
        pct = np.percentile(err, [50, 90, 95]).round(1)
        print(f"{'defaults (precision 6 nm, z_ratio 2.5, dol 0.6)':<50} seed {seed} n={n3} time {dt:6.1f} s  "
              f"<5 deg {np.mean(err < 5):.3f}  >20 deg {np.mean(err > 20):.3f}  median/90/95% {pct}", flush=True)
    pooled = np.concatenate(within)
    half = 1.96 * np.sqrt(pooled.mean() * (1 - pooled.mean()) / len(pooled))
    print(f"{'  ... pooled over seeds ' + ','.join(map(str, seeds_3d)):<50} n={len(pooled)}  <5 deg {pooled.mean():.3f} "
          f"(95% interval {pooled.mean() - half:.3f}-{pooled.mean() + half:.3f})", flush=True)
    few = {"precision": 1.6, "z_ratio": 3.0, "dol": 0.65, "mean_blinks": 2.0, "background": 1.0}
    for label, sim, params in [
        ("defaults, n_basins=0 (no final tries)", {}, {"n_basins": 0}),
        ("z_ratio 1 (isotropic precision 6 nm)", {"z_ratio": 1.0}, {}),
        ("precision 3 nm, z_ratio 2.5", {"precision": 3.0}, {}),
        ("~42 loc. of 1.6 nm, z_ratio 3 (Nup107-like)", few, {}),
        ("  same, n_basins=0", few, {"n_basins": 0}),
    ]:
        X, truth = make_npc_3d(n3, radius=50.0, height=50.0, rotation="3d", random_state=args.seed, **sim)
        fuser = ParticleFuser(symmetry=args.symmetry, n_jobs=args.n_jobs, random_state=args.seed,
                              n_components=args.n_components, outlier_weight=args.outlier_weight, **params)
        t0 = time.perf_counter()
        fuser.fit(X)
        dt = time.perf_counter() - t0
        err = errors_3d(fuser.rotations_, truth["rotation"], dihedral_3d())
        pct = np.percentile(err, [50, 90, 95]).round(1)
        print(f"{label:<50} seed {args.seed} n={n3} time {dt:6.1f} s  <5 deg {np.mean(err < 5):.3f}  "
              f"median/90/95% {pct}", flush=True)
    if args.seed in seeds_3d:
        # a reference point: register every particle of the defaults' data set onto the TRUE structure (known
        # sites, no joint fitting), with the variance of that data set's fit
        X, truth, fuser = reference
        fuser.centres_ = (truth["sites"][0] - truth["offset"][0]) @ truth["rotation"][0]
        fuser.sigma2_ = float(fuser.sigma2_)
        t0 = time.perf_counter()
        rotations, _ = fuser.register(X)
        dt = time.perf_counter() - t0
        err = errors_3d(rotations, truth["rotation"], dihedral_3d())
        pct = np.percentile(err, [50, 90, 95]).round(1)
        print(f"{'  ... registered onto the true structure':<50} seed {args.seed} n={n3} time {dt:6.1f} s  "
              f"<5 deg {np.mean(err < 5):.3f}  median/90/95% {pct}", flush=True)


if __name__ == "__main__":
    main()
