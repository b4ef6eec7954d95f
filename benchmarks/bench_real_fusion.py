"""ParticleFuser on the raw TU Delft logo picks: time, flagged particles and FRC resolution.

Reads ``../shared/data/real/tud_dol30.mat`` (549 picks, 30 % labelling) and
``tud_dol50_filtered.mat`` (441 picks, 50 %), camera pixels of 130 nm, and
for each prints:

* the fit time of ``ParticleFuser(random_state=0)`` on all picks;
* the fraction of picks it flags (``flagged_``: registration score more
  than 3.5 robust standard deviations below the median);
* the FRC resolution of the super-particle from two independently fused
  halves (``frc_resolution``), and its time;
* how far apart two random halves of a pick end, registered onto the fused
  model, beside the same for their twins drawn from it
  (``pose_reproducibility``: median angles in degrees and their ratio);
* with ``--figure DIR``, a rendering of the raw picks (centred, unregistered)
  next to the fused super-particle, written to ``DIR/<name>_fusion.png``.

Heydarian et al. (Nat. Methods 2018) report FRC resolutions of 5.0 nm at
30 % labelling and 3.3 nm at 80 % (383 particles) for their all-to-all
registration of these origami.

With ``--gp210`` it fuses instead the 304 registered real gp210 pores of
``fig4e_304_2D_gp210.mat``, each turned at random and shifted by up to 20
nm, and prints how many poses lie within 5 degrees (mod the 8-fold
symmetry) of the published registration that they came from, the FRC
resolution of their fusion (``--skip-frc`` to leave it out), and the halves
and their twins (mod 8). With
``--nup107`` the same for the 306 registered real 3D Nup107 pores of
``fig5k_306_3DNUP_PAINT.mat``, turned at random in 3D (they carry no
precision, so the fuser estimates the axial spread), within 5 degrees up to
the pore's 8-fold symmetry and its flip, and the radial interquartile range
of the fused ring beside the published super-particle's (each measured on
the data its registration was fitted to), with the 8-fold azimuthal
contrast of both (``azimuthal_contrast``: how strongly the spokes show), and
``pose_reproducibility``: how far apart two random halves of every pore end,
registered onto the fused model, up to the 8-fold symmetry and the flip,
beside the same for their twins drawn from the fused model (the ratio).
``--symmetry 8`` imposes the pores' symmetry on the fused model;
``--azimuth-null`` first gives every localization a random azimuth about
the pore's axis, the null of the contrast (pores without spokes).

    python benchmarks/bench_real_fusion.py                       # both files (about 10 min on 2 cores)
    python benchmarks/bench_real_fusion.py --files tud_dol30.mat --figure docs/images/real
    python benchmarks/bench_real_fusion.py --gp210 --no-search-shifts
    python benchmarks/bench_real_fusion.py --nup107 --symmetry 8
    python benchmarks/bench_real_fusion.py --nup107 --symmetry 8 --azimuth-null --seeds 0 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import REAL, precision_spread

from pcvae_sklearn.fuse import ParticleFuser, frc_resolution, pose_reproducibility
from pcvae_sklearn.io import read_fusion_mat


def figure(X, fused_xy, path, title):
    """Raw picks (each centred on its centroid) next to the super-particle, turned to its principal axes."""
    import awkward as ak
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = ak.to_numpy(ak.flatten(X.x)), ak.to_numpy(ak.flatten(X.y))
    n = ak.to_numpy(ak.num(X))
    cx, cy = np.repeat(ak.to_numpy(ak.mean(X.x, axis=1)), n), np.repeat(ak.to_numpy(ak.mean(X.y, axis=1)), n)
    centred = fused_xy - np.median(fused_xy, axis=0)
    core = centred[np.abs(centred).max(axis=1) < 60]
    turned = centred @ np.linalg.svd(core - core.mean(axis=0), full_matrices=False)[2].T
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    for ax, (u, v), label in zip(axes, [(x - cx, y - cy), (turned[:, 0], turned[:, 1])],
                                 ["raw picks, centred", "fused super-particle (principal axes)"]):
        ax.hist2d(u, v, bins=300, range=[[-50, 50], [-50, 50]], cmap="magma")
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x (nm)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gp210(settings, frc=True):
    """The registered gp210 pores turned and shifted at random, fused: agreement with their published poses."""
    from bench_fusion import errors_2d
    from bench_logo_fusion import rotations

    from pcvae_sklearn import as_particles

    p = as_particles(read_fusion_mat(REAL / "fig4e_304_2D_gp210.mat"))
    rng = np.random.default_rng(0)
    truth = rotations(rng.uniform(0, 2 * np.pi, p.n_particles))
    X = [p.particle(i) @ truth[i].T + rng.uniform(-20, 20, 2) for i in range(p.n_particles)]
    t0 = time.perf_counter()
    fuser = ParticleFuser(**settings).fit(X)
    fit_s = time.perf_counter() - t0
    err = errors_2d(fuser.rotations_, truth, fold=8)
    resolution = float("nan")
    if frc:
        unseeded = {k: v for k, v in settings.items() if k != "random_state"}
        resolution = frc_resolution(X, ParticleFuser(**unseeded), random_state=0).resolution
    halves = pose_reproducibility(X, fuser, symmetry=8, random_state=0)
    print(f"gp210: {p.n_particles} pores, fit {fit_s:.1f} s, within 5 degrees of the published poses (mod 8) "
          f"{np.mean(err < 5):.1%}, median {np.median(err):.2f} degrees, objective {fuser.objective_:.4f}, "
          f"FRC {resolution:.2f} nm; two halves of a pore apart {halves.median:.1f} degrees (mod 8), their twins' "
          f"{halves.twin_median:.1f} (ratio {halves.ratio:.2f})")


def azimuthal_contrast(coords, fold=8):
    """``|mean exp(i fold phi)|`` of the localizations in a pore's ring (30-70 nm from the z axis, within 60 nm
    of the pore's middle), ``coords`` in the pore's frame: 0 for a uniform ring, larger where its ``fold``
    spokes show."""
    c = coords - np.median(coords, axis=0)
    r = np.hypot(c[:, 0], c[:, 1])
    ring = (r > 30) & (r < 70) & (np.abs(c[:, 2]) < 60)
    return float(np.abs(np.exp(1j * fold * np.arctan2(c[ring, 1], c[ring, 0])).mean()))


def nup107(settings, seeds, azimuth_null=False):
    """The registered 3D Nup107 pores turned at random in 3D and shifted, fused: agreement with their published
    poses, and how well one pore's localizations fix its pose (its two halves registered onto the fused model).

    With ``azimuth_null`` every localization first gets a random azimuth about the published pore's axis (its
    radius and height kept): pores without spokes, the null of the fused model's 8-fold contrast.
    """
    from bench_fusion import common_frame, dihedral_3d, ring_spread
    from scipy.spatial.transform import Rotation

    from pcvae_sklearn import as_particles

    p = as_particles(read_fusion_mat(REAL / "fig5k_306_3DNUP_PAINT.mat"))
    if azimuth_null:
        middle = np.median(p.coords, axis=0)
        c = p.coords - middle
        r, phi = np.hypot(c[:, 0], c[:, 1]), np.random.default_rng(12345).uniform(0, 2 * np.pi, len(c))
        p = p.replace(coords=np.c_[r * np.cos(phi), r * np.sin(phi), c[:, 2]] + middle)
    which = " (azimuths at random)" if azimuth_null else ""
    print(f"nup107{which}: the published super-particle's ring, radial IQR {ring_spread(p.coords):.2f} nm, "
          f"8-fold azimuthal contrast {azimuthal_contrast(p.coords):.3f}")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        truth = Rotation.random(p.n_particles, random_state=seed).as_matrix()
        X = [p.particle(i) @ truth[i].T + rng.uniform(-20, 20, 3) for i in range(p.n_particles)]
        t0 = time.perf_counter()
        fuser = ParticleFuser(**{**settings, "random_state": seed}).fit(X)
        fit_s = time.perf_counter() - t0
        err, frame = common_frame(fuser.rotations_, truth, dihedral_3d())
        fused = as_particles(fuser.super_particle_).coords
        print(f"nup107 seed {seed}: {p.n_particles} pores, fit {fit_s:.1f} s, within 5 degrees of the published poses "
              f"(mod 8 and the flip) {np.mean(err < 5):.1%}, within 10 {np.mean(err < 10):.1%}, median "
              f"{np.median(err):.2f} degrees, axial excess {fuser.axial_excess_:.0f} nm^2, fused ring's radial IQR "
              f"{ring_spread(fused):.2f} nm, 8-fold azimuthal contrast {azimuthal_contrast(fused @ frame):.3f}",
              flush=True)
        # each pore's two random halves registered onto the fused model (pose_reproducibility)
        halves = pose_reproducibility(X, fuser, symmetry=8, mirror=True, random_state=seed)
        apart = halves.angles
        print(f"nup107 seed {seed}: the two halves of a pore registered onto the fused model lie a median "
              f"{np.median(apart):.1f} degrees apart (mod 8 and the flip), within 5 degrees {np.mean(apart < 5):.1%}; "
              f"their twins drawn from the model {halves.twin_median:.1f} degrees (ratio {halves.ratio:.2f})",
              flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", nargs="+", default=["tud_dol30.mat", "tud_dol50_filtered.mat"])
    ap.add_argument("--figure", type=Path, default=None, help="write the raw-vs-fused figures to this folder")
    ap.add_argument("--skip-frc", action="store_true")
    ap.add_argument("--max-iter", type=int, default=ParticleFuser().max_iter, help="ParticleFuser(max_iter=...)")
    ap.add_argument("--no-search-shifts", action="store_true", help="ParticleFuser(search_shifts=False)")
    ap.add_argument("--gp210", action="store_true", help="the gp210 pores, turned and shifted at random, instead")
    ap.add_argument("--nup107", action="store_true", help="the 3D Nup107 pores, turned at random in 3D, instead")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--nup107: the random turns")
    ap.add_argument("--azimuth-null", action="store_true",
                    help="--nup107: give every localization a random azimuth about the pore's axis first (no spokes)")
    ap.add_argument("--symmetry", type=int, default=None, help="ParticleFuser(symmetry=...): 8 for the pores")
    ap.add_argument("--n-components", type=int, default=ParticleFuser().n_components,
                    help="ParticleFuser(n_components=...): the centres of the fused model")
    ap.add_argument("--outlier-weight", type=float, default=ParticleFuser().outlier_weight,
                    help="ParticleFuser(outlier_weight=...): the prior weight of background")
    ap.add_argument("--precision-spread", type=precision_spread, default="auto",
                    help="ParticleFuser(precision_spread=...): auto or a number (0: off)")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        raise SystemExit(f"no real data at {REAL}")
    settings = dict(random_state=0, max_iter=args.max_iter, search_shifts=not args.no_search_shifts,
                    symmetry=args.symmetry, precision_spread=args.precision_spread,
                    n_components=args.n_components, outlier_weight=args.outlier_weight)
    if args.gp210:
        gp210(settings, frc=not args.skip_frc)
        return
    if args.nup107:
        nup107(settings, args.seeds, args.azimuth_null)
        return
    print("file                      picks  fit_s  flagged   FRC_nm  frc_s  halves_deg  twins_deg  ratio")
    for name in args.files:
        X = read_fusion_mat(REAL / name, pixel_size=130.0)
        t0 = time.perf_counter()
        fuser = ParticleFuser(**settings).fit(X)
        fit_s = time.perf_counter() - t0
        frc, frc_s = float("nan"), 0.0
        if not args.skip_frc:
            t0 = time.perf_counter()
            halves = ParticleFuser(n_components=args.n_components, outlier_weight=args.outlier_weight)
            frc = frc_resolution(X, halves, random_state=0).resolution
            frc_s = time.perf_counter() - t0
        repro = pose_reproducibility(X, fuser, random_state=0)  # the logo has no symmetry
        print(f"{name:24s} {len(X):6d} {fit_s:6.1f}  {fuser.flagged_.mean():6.1%}  {frc:7.2f} {frc_s:6.1f}  "
              f"{repro.median:10.1f}  {repro.twin_median:9.1f}  {repro.ratio:5.2f}", flush=True)
        if args.figure:
            args.figure.mkdir(parents=True, exist_ok=True)
            title = f"{name}: {len(X)} picks, {fuser.flagged_.sum()} flagged, FRC {frc:.1f} nm"
            sp = fuser.super_particle_[0]
            fused_xy = np.c_[np.asarray(sp.x), np.asarray(sp.y)]
            figure(X, fused_xy, args.figure / f"{Path(name).stem}_fusion.png", title)


if __name__ == "__main__":
    main()
