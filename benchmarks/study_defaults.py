"""Measure one PointCloudVAE setting over several seeds (the figures of docs/choosing_parameters.md).

    python benchmarks/study_defaults.py '{"beta": 0.01}' --seeds 0 1 2 3 4
    python benchmarks/study_defaults.py '{}' --n-particles 300 --seeds 0     # the defaults, quickly

Each fit uses make_npc_2d(n, random_state=100 + seed) and
PointCloudVAE(random_state=seed, **setting); one JSON line per seed with the
fit time, the best latent dimension's |Spearman| with the true radius
("best"), that of a 5-fold linear regression on all dimensions ("linear")
and the final Chamfer and KL.
"""

import argparse
import json
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_predict

from _common import exact_average

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("setting", help="JSON dict of PointCloudVAE parameters ('{}' for the defaults)")
    ap.add_argument("--n-particles", type=int, default=1399)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-rotations", type=int, nargs="+", default=None,
                    help="also report 'best' for these n_rotations, on the same fitted model, averaged exactly "
                         "(without the distilled read-out)")
    args = ap.parse_args(argv)
    setting = json.loads(args.setting)
    for seed in args.seeds:
        X, truth = make_npc_2d(args.n_particles, random_state=100 + seed)
        t0 = time.perf_counter()
        vae = PointCloudVAE(random_state=seed, **setting).fit(X)
        fit_s = time.perf_counter() - t0
        Z = vae.transform(X)
        r = truth["radius"]
        best = np.nanmax([abs(spearmanr(Z[:, j], r)[0]) for j in range(Z.shape[1])])
        linear = abs(spearmanr(cross_val_predict(LinearRegression(), Z, r, cv=5), r)[0])
        last = vae.history_[-1]
        record = {"setting": setting, "seed": seed, "fit_s": round(fit_s, 1), "best": round(float(best), 3),
                  "linear": round(float(linear), 3), "chamfer": round(last["reconstruction"], 4), "kl": round(last["kl"], 2)}
        for n_rot in args.n_rotations or []:
            Zr = exact_average(vae.set_params(n_rotations=n_rot)).transform(X)
            record[f"best_R{n_rot}"] = round(float(np.nanmax([abs(spearmanr(Zr[:, j], r)[0]) for j in range(Zr.shape[1])])), 3)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
