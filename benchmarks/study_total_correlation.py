"""Study: a total-correlation penalty (beta-TCVAE) so that raw latent axes separate the 3D pores' parameters.

An example of an experiment on the documented extension point: a subclass of
``PointCloudVAE`` that overrides ``_loss`` and adds one parameter, nothing
patched. On ``make_npc_3d`` the ring distance is in the latent but spread
over several axes. The beta-TCVAE of Chen et al. (2018) penalises the total
correlation of the aggregate posterior, the statistical dependence between
latent dimensions, during training, which is what ICA undoes after it
(``LatentUnmixer``). Here every training step adds ``kl_weight * lam * TC``
to the loss, with TC estimated on the batch by minibatch-weighted sampling
from one fresh draw of every particle's latent (so the penalty is warmed up
with the KL term). The draws come from torch's global generator, seeded with
the seed before every fit.

For every data set and seed this fits the plain VAE the penalty was first
measured against (``--on plain``: no latent batch norm, no decorrelation or
kurtosis penalty, a Gaussian prior) or the current defaults (``--on
defaults``) on the data of ``bench_quality.py`` (1000 particles,
``random_state=500 + seed``) and prints the best latent dimension's
|Spearman| with each true parameter. The conclusion is in
``docs/choosing_parameters.md``; it is not an option of the library.

    OMP_NUM_THREADS=1 python benchmarks/study_total_correlation.py --lam 0 100 1000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from _common import best_abs_spearman

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d

DATASETS = {"npc2d": (make_npc_2d, ["radius"]), "npc3d": (make_npc_3d, ["radius", "height"])}
PLAIN = dict(decorrelation=0.0, kurtosis=0.0, architecture={"latent_batch_norm": False, "prior_shape": 2})


def total_correlation(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted-sampling estimate of TC(z) on one batch (constants dropped)."""
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / logvar[None].exp())
    joint = torch.logsumexp(log_q.sum(2), dim=1)  # log q(z_i), up to a constant
    marginals = torch.logsumexp(log_q, dim=1).sum(1)  # sum_d log q(z_id), up to a constant
    return (joint - marginals).mean()


class TotalCorrelationVAE(PointCloudVAE):
    """PointCloudVAE whose loss adds ``kl_weight * tc_weight * TC`` (beta-TCVAE's decomposition of the KL term)."""

    def __init__(self, *, tc_weight=0.0, **params):
        super().__init__(**params)
        self.tc_weight = tc_weight

    def _loss(self, decoded, target, lengths, mu, logvar, kl_weight, weights=None):
        loss, terms = super()._loss(decoded, target, lengths, mu, logvar, kl_weight, weights)
        if self.tc_weight and mu.shape[0] > 1:
            terms["total_correlation"] = tc = total_correlation(mu.float(), logvar.float())
            loss = loss + kl_weight * self.tc_weight * tc
        return loss, terms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lam", type=float, nargs="+", default=[0.0, 100.0, 1000.0])
    ap.add_argument("--on", choices=["plain", "defaults"], default="plain", help="the VAE the penalty is added to")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None, help="n_epochs (default: the estimator's)")
    args = ap.parse_args(argv)
    base = dict(PLAIN) if args.on == "plain" else {}
    if args.epochs is not None:
        base["n_epochs"] = args.epochs
    for name in args.datasets:
        make, params = DATASETS[name]
        for seed in args.seeds:
            X, truth = make(args.n_particles, random_state=500 + seed)
            for lam in args.lam:
                torch.manual_seed(seed)  # the penalty's draws come from torch's global generator
                t0 = time.perf_counter()
                vae = TotalCorrelationVAE(tc_weight=lam, random_state=seed, **base)
                Z = vae.fit_transform(X)
                record = {"dataset": name, "seed": seed, "lam": lam, "on": args.on, "fit_s": round(time.perf_counter() - t0, 1)}
                if "total_correlation" in vae.history_[-1]:
                    record["tc"] = round(vae.history_[-1]["total_correlation"], 3)
                for p in params:
                    record[p] = round(best_abs_spearman(Z, truth[p]), 3)
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
