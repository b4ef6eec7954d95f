"""Clustering of latents and "is the heterogeneity real": the goals of issue 8.

Sections (``--sections``, all by default):

* ``cluster``: a mixture of DNA-origami tetrahedra of height 45, 65 and 95 nm
  (150 each, ~300 localizations per site). ``PointCloudVAE`` then
  ``StandardScaler`` + ``KMeans(3)``: adjusted Rand index with the true
  classes (goal >= 0.8); ``GaussianMixture(3)`` likewise; the k chosen by BIC
  (goal 3); one super-particle per cluster and its height.
* ``null-calibration``: is the paired permutation test calibrated? (a) on
  synthetic exchangeable latents, 100 seeds, no VAE; (b) with a real VAE as a
  fixed map: one ``heterogeneity_null_test`` fit on homogeneous 2D pores
  (radius 50 nm), then, for ``--null-seeds`` fresh homogeneous data sets,
  new twins are simulated and data and twins are encoded by that fitted VAE
  (no refit) and tested. Goal: no dimension significant at p < 0.01 in >= 95 %
  of seeds.
* ``null-npc``: ``heterogeneity_null_test`` on the continuous-radius
  ``make_npc_2d``: is the dimension that tracks the true radius significant?
* ``audit``: homogeneous pores (radius 50 nm) whose degree of labelling is
  0.3 for half and 0.9 for the other half, so that the localization count
  varies twofold: does ``confound_audit`` flag the dimensions that track it?

    python benchmarks/bench_validate.py                 # all sections (~15-30 min on 2 busy cores)
    python benchmarks/bench_validate.py --quick         # smoke run, small data, 1 epoch
    python benchmarks/bench_validate.py --sections cluster --epochs 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from pcvae_sklearn import HeightEstimator, ParticleFuser, PointCloudVAE, RadiusEstimator
from pcvae_sklearn.cluster import choose_n_clusters, fuse_clusters
from pcvae_sklearn.datasets import make_npc_2d, make_tetrahedron
from pcvae_sklearn.validate import confound_audit, heterogeneity_null_test, make_homogeneous_null, paired_spread_test

SECTIONS = ("cluster", "null-calibration", "null-npc", "audit")


def section(title):
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def bench_cluster(args, vae_kw):
    section("cluster: tetrahedra of 45 / 65 / 95 nm")
    per_class = 30 if args.quick else 150
    heights = np.repeat([45.0, 65.0, 95.0], per_class)
    for seed in args.seeds:
        X, truth = make_tetrahedron(len(heights), height=heights, n_localizations=1250, random_state=800 + seed)
        classes = np.repeat([0, 1, 2], per_class)
        t0 = time.perf_counter()
        vae = PointCloudVAE(random_state=seed, **vae_kw)
        Z = vae.fit_transform(X)
        fit_s = time.perf_counter() - t0
        Zs = StandardScaler().fit_transform(Z)
        # the same labels as make_pipeline(vae, [StandardScaler(),] KMeans(3)).fit_predict(X), from one VAE fit
        km_scaled = KMeans(3, n_init=10, random_state=seed).fit_predict(Zs)
        km = KMeans(3, n_init=10, random_state=seed).fit_predict(Z)
        gm = GaussianMixture(3, n_init=3, random_state=seed).fit(Zs).predict(Zs)
        sel = choose_n_clusters(Z, range(1, 7), random_state=seed)
        rho = max(abs(spearmanr(Z[:, j], truth["height"])[0]) for j in range(Z.shape[1]))
        print(f"seed {seed}: {len(X)} particles, {np.mean(truth['n_localizations']):.0f} localizations each, VAE fit+transform {fit_s:.0f} s")
        print(f"  best latent |Spearman| with true height: {rho:.3f}")
        print(f"  ARI  KMeans(3) on the latents: {adjusted_rand_score(classes, km):.3f}   after StandardScaler: "
              f"{adjusted_rand_score(classes, km_scaled):.3f}   GaussianMixture(3) after StandardScaler: {adjusted_rand_score(classes, gm):.3f}")
        print(f"  latent std per dimension: {np.round(Z.std(axis=0), 3).tolist()}")
        print("  choose_n_clusters (PCA to 90 % variance): k chosen by BIC =", sel.n_clusters, "| by silhouette =",
              sel.n_clusters_silhouette, f"| {sel.n_components} component(s)")
        raw = choose_n_clusters(Z, range(1, 7), n_components=None, random_state=seed)
        std = choose_n_clusters(Z, range(1, 7), n_components=None, standardize=True, random_state=seed)
        print(f"  BIC on all latent dimensions: k = {raw.n_clusters}; standardised: k = {std.n_clusters}")
        print(sel.to_frame().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        t0 = time.perf_counter()
        out = fuse_clusters(X, km, estimator=HeightEstimator(structure="tetrahedron"),
                            fuser=ParticleFuser(rotation="z", n_restarts=1), random_state=seed)
        true_median = [np.median(truth["height"][km == c]) for c in out.table["cluster"]]
        table = out.table.assign(true_median_height_nm=true_median)
        print(f"  fuse_clusters ({time.perf_counter() - t0:.0f} s):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


def synthetic_calibration(n_seeds, n_permutations):
    """Exchangeable data/twin pairs; dim 0 tracks the noise-driven estimate, dim 1 a count, dims 2-3 nothing."""
    any_sig = 0
    raw = []
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        n = 300
        e = rng.normal(50, 2, 2 * n)
        count = rng.poisson(150, 2 * n)
        Z = np.c_[e + rng.normal(0, 1, 2 * n), count + rng.normal(0, 5, 2 * n), rng.normal(size=(2 * n, 2))]
        tab = paired_spread_test(Z[:n], Z[n:], e[:n], e[n:], n_permutations=n_permutations, random_state=seed)
        any_sig += bool(tab["significant"].any())
        raw.append(tab["p_value"].to_numpy())
    raw = np.array(raw)
    print(f"(a) synthetic exchangeable latents, {n_seeds} seeds, {n_permutations} permutations:")
    print(f"    seeds with any dimension significant (max-T adjusted p < 0.01): {any_sig}/{n_seeds}")
    print(f"    per-dimension raw p < 0.01: {np.round((raw < 0.01).mean(axis=0), 3).tolist()}, "
          f"p < 0.05: {np.round((raw < 0.05).mean(axis=0), 3).tolist()}")


def bench_null_calibration(args, vae_kw):
    section("null calibration: homogeneous 2D pores (radius 50 nm)")
    synthetic_calibration(100, 199 if args.quick else 999)
    n = 100 if args.quick else 500
    fuser = ParticleFuser(n_restarts=1 if args.quick else 3)
    X, _ = make_npc_2d(n, radius=50.0, random_state=900)
    t0 = time.perf_counter()
    res = heterogeneity_null_test(X, vae=PointCloudVAE(random_state=0, **vae_kw), fuser=fuser,
                                  n_bins=args.n_bins, random_state=0)
    print(f"(b) heterogeneity_null_test on {n} homogeneous pores ({time.perf_counter() - t0:.0f} s, one joint fit of {2 * n}):")
    print(res.table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    vae = res.vae
    n_sig = []
    min_p = []
    t0 = time.perf_counter()
    for s in range(args.null_seeds):
        Xs, _ = make_npc_2d(n, radius=50.0, random_state=1000 + s)
        twins, _ = make_homogeneous_null(Xs, fuser=fuser, random_state=s)
        est = RadiusEstimator()
        tab = paired_spread_test(vae.transform(Xs), vae.transform(twins), est.fit_transform(Xs), est.fit_transform(twins),
                                 n_bins=args.n_bins, random_state=s)
        n_sig.append(int(tab["significant"].sum()))
        min_p.append(float(tab["p_value_adjusted"].min()))
    n_sig = np.array(n_sig)
    print(f"    fixed fitted VAE, {args.null_seeds} fresh homogeneous data sets with their own twins "
          f"({time.perf_counter() - t0:.0f} s): seeds with no significant dimension: {(n_sig == 0).sum()}/{len(n_sig)}; "
          f"adjusted p < 0.05 in {(np.array(min_p) < 0.05).sum()}; smallest adjusted p per seed: {np.round(min_p, 3).tolist()}")


def bench_null_npc(args, vae_kw):
    section("null test on the continuous-radius 2D pores (radius 40-60 nm)")
    n = 100 if args.quick else 500
    for seed in args.seeds:
        X, truth = make_npc_2d(n, random_state=700 + seed)
        t0 = time.perf_counter()
        res = heterogeneity_null_test(X, vae=PointCloudVAE(random_state=seed, **vae_kw),
                                      fuser=ParticleFuser(n_restarts=1 if args.quick else 3), n_bins=args.n_bins, random_state=seed)
        Zd = res.latents[:n]
        rho = np.array([abs(spearmanr(Zd[:, j], truth["radius"])[0]) for j in range(Zd.shape[1])])
        table = res.table.assign(true_radius_abs_spearman=rho)
        j = int(np.argmax(rho))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; radius axis = {table['latent'][j]} (|rho| {rho[j]:.3f}), "
              f"adjusted p = {table['p_value_adjusted'][j]:.4f}, significant: {bool(table['significant'][j])}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


def bench_audit(args, vae_kw):
    section("confound audit: localization count made to vary (dol 0.3 and 0.9)")
    n = 100 if args.quick else 500
    for seed in args.seeds:
        A, _ = make_npc_2d(n // 2, radius=50.0, dol=0.3, random_state=600 + seed)
        B, _ = make_npc_2d(n - n // 2, radius=50.0, dol=0.9, random_state=650 + seed)
        import awkward as ak

        X = ak.concatenate([A, B])
        Z = PointCloudVAE(random_state=seed, **vae_kw).fit_transform(X)
        audit = confound_audit(X, Z)
        counts = ak.num(X, axis=1).to_numpy()
        print(f"seed {seed}: localization counts {counts.min()}-{counts.max()} (median {np.median(counts):.0f})")
        wide = audit.pivot(index="latent", columns="nuisance", values="correlation")
        print(wide.to_string(float_format=lambda v: f"{v:+.3f}"))
        flagged = audit.loc[audit["flagged"], ["latent", "nuisance", "correlation", "p_value"]]
        print("flagged:\n" + (flagged.to_string(index=False, float_format=lambda v: f"{v:.3g}") if len(flagged) else "  none"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--null-seeds", type=int, default=20, help="fresh homogeneous data sets in null-calibration (b)")
    ap.add_argument("--n-bins", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=None, help="PointCloudVAE n_epochs (default: the estimator's)")
    ap.add_argument("--n-rotations", type=int, default=None, help="PointCloudVAE n_rotations")
    ap.add_argument("--quick", action="store_true", help="small data, 1 epoch, 3 null seeds: a smoke run")
    args = ap.parse_args(argv)
    vae_kw = {}
    if args.quick:
        vae_kw["n_epochs"] = 1
        args.null_seeds = min(args.null_seeds, 3)
    if args.epochs is not None:
        vae_kw["n_epochs"] = args.epochs
    if args.n_rotations is not None:
        vae_kw["n_rotations"] = args.n_rotations
    print("PointCloudVAE settings beyond the defaults:", vae_kw or "none")
    print("(timings on a shared 2-core machine are upper bounds)")
    t0 = time.perf_counter()
    for name in args.sections:
        {"cluster": bench_cluster, "null-calibration": bench_null_calibration, "null-npc": bench_null_npc, "audit": bench_audit}[name](
            args, vae_kw
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
