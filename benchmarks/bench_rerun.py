"""Does ``analyse`` bin along the same axis when it runs again with another seed?

A user who runs ``analyse`` (or ``pcvae run --seed``) again with another seed
gets other fits. For every seed this runs
``analyse(X, estimate=..., random_state=seed, fuse=False, null=False)``
and prints the binned axis, its |Spearman| with the estimate, and with two
axes of the check's second fit: its match, and the axis the same choice
picks there (``choice_agreement``); below 0.9 either makes the verdict
call the axis unconfirmed. Then, over every pair of runs, the smallest
|Spearman| between their binned axes: the outlook issue's bar is 0.9.
On simulations it also gives each binned axis's |Spearman| with the truth.

The data are the real sets of ``bench_real.py`` (each particle turned by
its own random angle, as picked particles would be) or scenarios of
:mod:`pcvae_sklearn.datasets` (``make_scenario(name, n, random_state=700 +
data seed)``, as ``study_axis_choice.py`` simulates them).

    python benchmarks/bench_rerun.py --sets gp210 nup107
    python benchmarks/bench_rerun.py --scenarios npc2d_default --n-particles 500 --data-seeds 0 1
    python benchmarks/bench_rerun.py --sets nup107 --axis single             # one latent axis, as the paper
    python benchmarks/bench_rerun.py --sets nup107 --axis single --unmix no  # the VAE's axes alone

Runs on one torch thread. 5 runs took about 1 minute on gp210 and 6 on nup107 (both parameters).
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch
from _common import REAL
from bench_real import SETS, turned
from scipy.stats import spearmanr

from study_axis_choice import ESTIMATES

from pcvae_sklearn import analyse, read_particles
from pcvae_sklearn.cli import UNMIX
from pcvae_sklearn.datasets import SCENARIOS, list_scenarios, make_scenario

REAL_ESTIMATES = {"gp210": {"radius": "radius"}, "nup107": {"radius": "radius", "ring distance": "pore"}}


def data_sets(args):
    """(label, particles, {parameter: (estimate, truth or None)}) for every set the command line names."""
    for name in args.sets:
        if not REAL.is_dir():
            raise SystemExit(f"{REAL} is absent: these are the real sets of ../shared/data (see its README).")
        X = turned(read_particles(REAL / SETS[name][0]), seed=12345)
        yield name, X, {k: (e, None) for k, e in REAL_ESTIMATES[name].items()}
    for name in args.scenarios:
        structure = SCENARIOS[name].structure
        for data_seed in args.data_seeds:
            X, truth = make_scenario(name, args.n_particles, random_state=700 + data_seed)
            params = {k: (e, np.asarray(truth[k])) for k, e in ESTIMATES[structure].items() if np.std(truth[k]) > 0}
            yield f"{name} (data seed {data_seed})", X, params


def rerun(X, estimate, truth, seeds, unmix, axis):
    """One line per run, then the smallest |Spearman| between two runs' binned axes."""
    axes = []
    for seed in seeds:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = analyse(X, estimate=estimate, random_state=seed, fuse=False, null=False, unmix=unmix, axis=axis)
        z = r.latents[:, r.dimension]
        axes.append(z)
        line = (f"  seed {seed}: {r.feature_names[r.dimension]:8s}"
                f"  |rho| estimate {abs(spearmanr(z, r.estimates[:, 0]).correlation):.3f}")
        if r.direction is None:
            line += (f"  second fit: its match {r.stability.reproducibility[r.dimension]:.3f},"
                     f" its choice {r.choice_agreement:.3f}")
        else:
            line += f"  second fit's direction {r.choice_agreement:.3f}"
        if truth is not None:
            line += f"  truth {abs(spearmanr(z, truth).correlation):.3f}"
        print(line + f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    pairs = [abs(spearmanr(a, b).correlation) for a, b in itertools.combinations(axes, 2)]
    return min(pairs), float(np.median(pairs))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=[], choices=list(SETS), help="real sets of ../shared/data")
    ap.add_argument("--scenarios", nargs="*", default=[], choices=list_scenarios(), metavar="NAME")
    ap.add_argument("--data-seeds", nargs="+", type=int, default=[0], help="simulations: one data set per seed")
    ap.add_argument("--n-particles", type=int, default=1000, help="simulations: particles per data set")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="analyse's random_state, one run each")
    ap.add_argument("--unmix", choices=list(UNMIX), default="both", help="analyse's unmix (default: its default)")
    ap.add_argument("--axis", choices=["direction", "single"], default="direction",
                    help="analyse's axis: the latent direction (its default) or one latent axis")
    args = ap.parse_args(argv)
    if not args.sets and not args.scenarios:
        ap.error("name --sets, --scenarios or both")
    torch.set_num_threads(1)
    summary = []
    for label, X, params in data_sets(args):
        for param, (estimate, truth) in params.items():
            print(f"{label}, {param} (estimate {estimate!r}, axis {args.axis}, unmix {args.unmix}):", flush=True)
            worst, median = rerun(X, estimate, truth, args.seeds, UNMIX[args.unmix], args.axis)
            summary.append((label, param, worst, median))
            print(f"  between runs: smallest |Spearman| {worst:.3f}, median {median:.3f}", flush=True)
    print("\nset, parameter: smallest (median) |Spearman| between the binned axes of two runs")
    for label, param, worst, median in summary:
        print(f"{label}, {param}: {worst:.3f} ({median:.3f})")


if __name__ == "__main__":
    main()
