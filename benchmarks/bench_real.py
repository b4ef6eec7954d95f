"""The defaults against other models on the real published pores in ../shared/data/real.

For each set and seed it fits each of ``--models`` on the same particles
and prints the best latent dimension's |Spearman| with each model-based
estimate (there is no truth in real data). The models:

* ``defaults``: ``PointCloudVAE(random_state=seed)``;
* ``paper_recipe``: ``PointCloudVAE(**paper_recipe(), random_state=seed)``;
* ``plain``: the plain VAE (no latent batch norm, no decorrelation or
  kurtosis penalty, a Gaussian prior: ``study_total_correlation.PLAIN``);
* ``tc``: the plain VAE with a total-correlation penalty of weight 100
  (``study_total_correlation.TotalCorrelationVAE``, the beta-TC-VAE);
* ``unmix4``: the defaults followed by ``LatentUnmixer(n_components=4)``,
  as ``analyse(..., unmix=True, unmix_components=4)`` does;
* ``params``: ``PointCloudVAE(**params, random_state=seed)`` with the JSON
  of ``--params``, a variant of the defaults.

The sets:

* ``gp210``: 304 real 2D dSTORM gp210 pores (radius: ``RadiusEstimator()``);
* ``nup107``: 306 real 3D DNA-PAINT Nup107 pores (radius, and ring distance:
  ``HeightEstimator(structure="pore")``).

Both sets come registered by their authors; every particle is first turned by
its own random angle about the optical axis (seeded), as picked particles
would be.

    python benchmarks/bench_real.py --seeds 0 1 2
    python benchmarks/bench_real.py --sets nup107 --seeds 0 --models defaults
    python benchmarks/bench_real.py --models defaults plain tc
    python benchmarks/bench_real.py --sets nup107 --models defaults unmix4
    python benchmarks/bench_real.py --sets gp210 --models defaults params --params '{"batch_size": 32}'
"""

from __future__ import annotations

import argparse
import json
import time

import awkward as ak
import numpy as np
from _common import REAL, best_abs_spearman

from study_total_correlation import PLAIN, TotalCorrelationVAE

from pcvae_sklearn import HeightEstimator, LatentUnmixer, PointCloudVAE, RadiusEstimator, paper_recipe, read_particles

SETS = {
    "gp210": ("fig4e_304_2D_gp210.mat", {"radius": RadiusEstimator()}),
    "nup107": ("fig5k_306_3DNUP_PAINT.mat", {"radius": RadiusEstimator(), "ring distance": HeightEstimator(structure="pore")}),
}


def turned(particles, seed):
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(particles))
    c, s = np.cos(angle), np.sin(angle)
    out = ak.with_field(particles, c * particles.x - s * particles.y, "x")
    return ak.with_field(out, s * particles.x + c * particles.y, "y")


def model(label: str, seed: int, params: dict | None = None):
    """The unfitted model ``label`` (see the module's docstring) with seed ``seed``."""
    if label == "defaults":
        return PointCloudVAE(random_state=seed)
    if label == "params":
        return PointCloudVAE(**(params or {}), random_state=seed)
    if label == "paper_recipe":
        return PointCloudVAE(**paper_recipe(), random_state=seed)
    if label == "unmix4":
        from sklearn.pipeline import make_pipeline

        return make_pipeline(PointCloudVAE(random_state=seed), LatentUnmixer(n_components=4, random_state=seed))
    if label == "plain":
        return PointCloudVAE(**PLAIN, random_state=seed)
    import torch

    torch.manual_seed(seed)  # the penalty's draws come from torch's global generator
    return TotalCorrelationVAE(tc_weight=100.0, **PLAIN, random_state=seed)


MODELS = ("defaults", "paper_recipe", "plain", "tc", "unmix4", "params")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["defaults", "paper_recipe"], choices=MODELS)
    ap.add_argument("--params", type=json.loads, default={}, help="JSON of PointCloudVAE keywords for the model 'params'")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        raise SystemExit(f"{REAL} is absent: these are the real sets of ../shared/data (see its README).")
    print("set     seed  model         estimate        best |rho|  fit_s")
    rows = {}
    for name in args.sets:
        file, estimators = SETS[name]
        X = turned(read_particles(REAL / file), seed=12345)
        estimates = {k: est.fit_transform(X)[:, 0] for k, est in estimators.items()}
        for seed in args.seeds:
            for label in args.models:
                t = time.perf_counter()
                Z = model(label, seed, args.params).fit_transform(X)
                fit_s = time.perf_counter() - t
                for k, e in estimates.items():
                    rho = best_abs_spearman(Z, e)
                    rows.setdefault((name, k, label), []).append(rho)
                    print(f"{name:7s} {seed:4d}  {label:12s}  {k:14s}  {rho:10.3f}  {fit_s:5.0f}", flush=True)
    print("\nmedian over seeds (worst):")
    for (name, k, label), v in rows.items():
        print(f"{name:7s} {k:14s} {label:12s} {np.median(v):.3f} ({min(v):.3f})")


if __name__ == "__main__":
    main()
