"""Study: a total-correlation penalty (beta-TCVAE) so that raw latent axes separate the 3D pores' parameters.

On ``make_npc_3d`` the ring distance is in the latent but spread over several
axes (``docs/defaults.md``). The beta-TCVAE of Chen et al. (2018) penalises
the total correlation of the aggregate posterior, the statistical dependence
between latent dimensions, during training, which is what ICA undoes after
it (``LatentUnmixer``). Here the KL term of every training step becomes
``KL + lam * TC``, with TC estimated on the batch by minibatch-weighted
sampling from one fresh draw of every particle's latent (the KL term, and so
the penalty, is weighted by the warmed-up ``beta``). The draws come from
torch's global generator, seeded with the seed before every fit.

For every data set and seed this fits ``PointCloudVAE(random_state=seed)``
(defaults otherwise) on the data of ``bench_quality.py`` (1000 particles,
``random_state=500 + seed``) and prints the best latent dimension's
|Spearman| with each true parameter. Recorded in ``docs/defaults.md``; not an
option of the library.

    OMP_NUM_THREADS=1 python benchmarks/study_total_correlation.py --lam 0 100 1000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from unittest import mock

import torch
from _common import best_abs_spearman

import pcvae_sklearn.encode._vae as vae_module
from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d

_KL = vae_module.kl_divergence
BEFORE_LATENT_ICA = dict(vae_module._BEFORE_THEY_EXISTED)  # the defaults of the time
DATASETS = {"npc2d": (make_npc_2d, ["radius"]), "npc3d": (make_npc_3d, ["radius", "height"])}


def total_correlation(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted-sampling estimate of TC(z) on one batch (constants dropped)."""
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / logvar[None].exp())
    joint = torch.logsumexp(log_q.sum(2), dim=1)  # log q(z_i), up to a constant
    marginals = torch.logsumexp(log_q, dim=1).sum(1)  # sum_d log q(z_id), up to a constant
    return (joint - marginals).mean()


def kl_with_tc(lam: float):
    def kl(mu, logvar, *prior):
        out = _KL(mu, logvar, *prior)
        if lam and mu.shape[0] > 1 and torch.is_grad_enabled():
            out = out + lam * total_correlation(mu, logvar)
        return out

    return kl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lam", type=float, nargs="+", default=[0.0, 100.0, 1000.0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-particles", type=int, default=1000)
    args = ap.parse_args(argv)
    for name in args.datasets:
        make, params = DATASETS[name]
        for seed in args.seeds:
            X, truth = make(args.n_particles, random_state=500 + seed)
            for lam in args.lam:
                torch.manual_seed(seed)  # the penalty's draws come from torch's global generator
                with mock.patch.object(vae_module, "kl_divergence", kl_with_tc(lam)):
                    t0 = time.perf_counter()
                    # the defaults of the time of docs/defaults.md's table (before the training-time ICA)
                    Z = PointCloudVAE(random_state=seed, **BEFORE_LATENT_ICA).fit_transform(X)
                    fit_s = time.perf_counter() - t0
                record = {"dataset": name, "seed": seed, "lam": lam, "fit_s": round(fit_s, 1)}
                for p in params:
                    record[p] = round(best_abs_spearman(Z, truth[p]), 3)
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
