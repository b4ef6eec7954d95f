"""Study: how many components should ``LatentUnmixer`` keep on 3D pores?

``LatentUnmixer`` runs FastICA on the latent dimensions whose values vary
most (``n_components=None``: the *active* dimensions), or on the k principal
directions of the whole latent (``n_components=k``). Which dimensions are
active depends on how the latent space happens to be oriented, which the
VAE does not fix; the principal directions do not.

For every seed this fits ``PointCloudVAE(random_state=seed, **setting)``
(``--setting``, a JSON dict of parameters; the defaults when omitted, with
the threads torch picks: 2 on the development machine, as in
``bench_quality.py``, whose seeds 0-2 it reproduces) on
``make_npc_3d(1000, random_state=500 + seed)`` and prints, for the raw
latent and for each unmixer setting, the best axis's |Spearman| with the
true ring distance and radius, next to the model-based estimates; then, per
setting, on how many seeds the axis is at or above the estimate. Recorded in
``docs/choosing_parameters.md``.

    python benchmarks/study_unmixer.py --seeds 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14
    python benchmarks/study_unmixer.py --n-particles 300 --seeds 0      # a quick look
    python benchmarks/study_unmixer.py --setting '{"kurtosis": 0.003}' --components 4 --seeds 0 1 2
    python benchmarks/study_unmixer.py --scenarios npc3d_tilt npc3d_axial20 --seeds 0 1 2   # the 3D pore family
    python benchmarks/study_unmixer.py --simulate '{"height": 55}' --seeds 0 1 2   # only the radius varies

With ``--scenarios`` the data come from ``make_scenario(name, n,
random_state=500 + seed)`` of the named 3D pore scenarios instead (held-out
ones are marked), so a setting is judged on the family and not on one
simulator.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import best_abs_spearman

from pcvae_sklearn import HeightEstimator, LatentUnmixer, PointCloudVAE, RadiusEstimator
from pcvae_sklearn.datasets import SCENARIOS, make_npc_3d, make_scenario

PARAMS = {"height": HeightEstimator(structure="pore"), "radius": RadiusEstimator()}


def _label(n_components) -> str:
    return "active dims" if n_components is None else f"k={n_components}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--setting", default="{}", help="JSON dict of PointCloudVAE parameters ('{}': the defaults)")
    ap.add_argument("--components", nargs="+", default=["none", "3", "4", "5"],
                    help="n_components settings to compare ('none' for the active dimensions)")
    ap.add_argument("--scenarios", nargs="+", default=None, metavar="NAME",
                    choices=[k for k, v in SCENARIOS.items() if v.structure == "npc_3d"],
                    help="3D pore scenarios of the family (default: make_npc_3d)")
    ap.add_argument("--simulate", default="{}", help="JSON dict of make_npc_3d parameters (without --scenarios)")
    args = ap.parse_args(argv)
    settings = [None if c.lower() == "none" else int(c) for c in args.components]
    setting = json.loads(args.setting)
    print(f"PointCloudVAE settings: {setting or 'the defaults'}")
    columns = ["raw"] + [_label(c) for c in settings]
    for scenario in args.scenarios or [None]:
        if scenario is not None:
            print(f"\n{scenario}" + (" (held out)" if SCENARIOS[scenario].held_out else ""))
        _study(scenario, args, settings, setting, columns)


def _study(scenario, args, settings, setting, columns):
    print("seed  param   estimate  " + "  ".join(f"{c:>11s}" for c in columns) + "  fit_s")
    rows = []  # (seed, param, estimate, {column: |rho|})
    for seed in args.seeds:
        if scenario is None:
            X, truth = make_npc_3d(args.n_particles, random_state=500 + seed, **json.loads(args.simulate))
        else:
            X, truth = make_scenario(scenario, args.n_particles, random_state=500 + seed)
        t0 = time.perf_counter()
        Z = PointCloudVAE(random_state=seed, **setting).fit_transform(X)
        fit_s = time.perf_counter() - t0
        axes = {"raw": Z}
        for c in settings:
            axes[_label(c)] = LatentUnmixer(n_components=c, random_state=seed).fit_transform(Z)
        for param, est in PARAMS.items():
            estimate = best_abs_spearman(est.fit_transform(X)[:, :1], truth[param])
            rho = {name: best_abs_spearman(S, truth[param]) for name, S in axes.items()}
            rows.append((seed, param, estimate, rho))
            print(f"{seed:4d}  {param:6s}  {estimate:8.3f}  " + "  ".join(f"{rho[c]:11.3f}" for c in columns)
                  + f"  {fit_s:5.0f}", flush=True)
    print(f"\nover {len(args.seeds)} seeds: mean |rho| (min), seeds at or above the estimate")
    for param in PARAMS:
        sel = [r for r in rows if r[1] == param]
        for c in columns:
            v = np.array([r[3][c] for r in sel])
            meets = sum(r[3][c] >= r[2] for r in sel)
            print(f"{param:6s}  {c:11s}  {v.mean():.3f} ({v.min():.3f})  {meets}/{len(sel)}")
    both = {c: sum(all(r[3][c] >= r[2] for r in rows if r[0] == s) for s in args.seeds) for c in columns}
    print("both parameters at or above their estimates: " + ", ".join(f"{c} {n}/{len(args.seeds)}" for c, n in both.items()))


if __name__ == "__main__":
    main()
