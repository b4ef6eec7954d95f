"""Study: a rotation-invariant reconstruction loss, so that one encoding per particle would do.

``transform`` averages the encodings of every particle at 8 angles about the
optical axis (``transform_rotations=8``), because part of each latent
depends on the angle at which a particle was picked: to reconstruct the
particle as picked, the decoder needs that angle, so the latent keeps it.
If the Chamfer distance is instead taken at the best of ``K`` rotations of
the decoded points about the optical axis (the search without gradient, the
distance at the chosen angle with gradient), the latent no longer needs the
angle, and one encoding (8 times cheaper) might be enough.

For every seed this fits ``PointCloudVAE(random_state=seed)`` on
``make_npc_2d(1399, random_state=100 + seed)`` twice, with the plain loss
(the defaults) and with the loss minimised over ``K`` rotations (by
replacing the Chamfer function the estimator calls), and prints the best
latent dimension's |Spearman| with the true radius at 8 (exact average) and at 1
rotation(s) in ``transform``, and the fit time. Recorded in
``docs/scaling.md``; not an option of the library.

    OMP_NUM_THREADS=1 python benchmarks/study_rotation_loss.py --seeds 0 1    # ~6 min per seed on one core
"""

from __future__ import annotations

import argparse
import json
import time
from unittest import mock

from _common import best_abs_spearman, rotation_min_chamfer

import pcvae_sklearn.encode._vae as vae_module
from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d

_CHAMFER = vae_module.chamfer_distance


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-angles", type=int, default=32, help="rotations the loss is minimised over")
    ap.add_argument("--n-particles", type=int, default=1399)
    args = ap.parse_args(argv)
    for seed in args.seeds:
        X, truth = make_npc_2d(args.n_particles, random_state=100 + seed)
        for loss in ("plain", f"min over {args.n_angles} rotations"):
            chamfer = _CHAMFER if loss == "plain" else rotation_min_chamfer(_CHAMFER, args.n_angles)
            with mock.patch.object(vae_module, "chamfer_distance", chamfer):
                t0 = time.perf_counter()
                vae = PointCloudVAE(random_state=seed).fit(X)
                fit_s = time.perf_counter() - t0
            record = {"seed": seed, "loss": loss, "fit_s": round(fit_s, 1)}
            for n_rot in (8, 1):
                Z = vae.set_params(transform_rotations=n_rot, rotation_average="exact").transform(X)
                record[f"best_R{n_rot}"] = round(best_abs_spearman(Z, truth["radius"]), 3)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
