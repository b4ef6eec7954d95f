"""PointCloudVAE with its defaults on the family of scenarios (pcvae_sklearn.datasets.SCENARIOS).

For every scenario and seed it simulates ``--n-particles`` particles
(``make_scenario(name, n, random_state=500 + seed)``), fits
``PointCloudVAE(random_state=seed, **params)`` and, for every truth column
the scenario varies, computes

* latent: the best |Spearman| of one latent dimension with the truth
  (``best_abs_spearman``);
* estimator: the |Spearman| of the library's model-based estimate with the
  truth: ``RadiusEstimator()`` (the robust ring fit) for the radius,
  ``HeightEstimator(structure="pore")`` for the ring distance of 3D pores and
  ``HeightEstimator(structure="tetrahedron")`` for the height of tetrahedra;
* paper est.: the paper's estimator where it differs (the radius from the
  centroid: ``RadiusEstimator(method="mean")`` in 2D, ``"median"`` in 3D);
* with ``--paper-recipe``: the same best |Spearman| for
  ``PointCloudVAE(**paper_recipe(), random_state=seed)`` on the same data.

``--tc-weight W`` fits ``study_total_correlation.TotalCorrelationVAE``
(a total-correlation penalty of weight ``W``, the beta-TC-VAE) with the same
``--params`` instead, so the disentangling options compare on the whole
family: the defaults' penalties, the plain VAE
(``--params '{"decorrelation": 0, "kurtosis": 0, "architecture":
{"latent_batch_norm": false, "prior_shape": 2}}'``) and the plain VAE with
the penalty (both).

The table gives, per scenario and parameter, the median over seeds and the
worst seed of each, and whether the latent median reaches the paper's
estimator's (the comparison of the paper) and the ring fit's.
Held-out scenarios come in a section of their own: a default must be chosen
without looking at them.

    python benchmarks/bench_family.py                                  # all 15 scenarios, 3 seeds, 1000 particles
    python benchmarks/bench_family.py --scenarios npc3d_default npc3d_axial20 --seeds 0 1 2 3 4 --jobs 2
    python benchmarks/bench_family.py --params '{"latent_dim": 6}' --out family.json
    python benchmarks/bench_family.py --n-particles 200 --seeds 0 --scenarios npc2d_default npc3d_tilt \\
        --params '{"n_epochs": 1}'                                     # smoke run
    python benchmarks/bench_family.py --compare defaults.json tc.json   # side by side, from earlier --out files
    python benchmarks/bench_family.py --n-particles 500 --tc-weight 100 --params "$(python -c \
        'import study_total_correlation as s, json; print(json.dumps(s.PLAIN))')"   # beta-TC-VAE (from benchmarks/)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import best_abs_spearman
from scipy.stats import spearmanr

from pcvae_sklearn import HeightEstimator, PointCloudVAE, RadiusEstimator, paper_recipe
from pcvae_sklearn.datasets import SCENARIOS, list_scenarios, make_scenario


def estimator_for(structure: str, param: str, paper: bool = False):
    """The library's model-based estimator of a structure parameter (``paper``: the paper's own)."""
    if param == "radius":
        return RadiusEstimator(method=("mean" if structure == "npc_2d" else "median") if paper else "ring")
    if param == "height":
        return HeightEstimator(structure="pore" if structure == "npc_3d" else "tetrahedron")
    raise ValueError(f"no estimator of {param!r} for {structure}.")


def abs_spearman(a, b) -> float:
    r = spearmanr(a, b)[0]
    return 0.0 if np.isnan(r) else abs(float(r))


def run_one(name: str, seed: int, n_particles: int, params: dict, threads: int, with_paper_recipe: bool,
            tc_weight: float | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    scenario = SCENARIOS[name]
    X, truth = make_scenario(name, n_particles, random_state=500 + seed)
    t0 = time.perf_counter()
    if tc_weight is None:
        vae = PointCloudVAE(random_state=seed, **params)
    else:
        from study_total_correlation import TotalCorrelationVAE

        torch.manual_seed(seed)  # the penalty's draws come from torch's global generator
        vae = TotalCorrelationVAE(tc_weight=tc_weight, random_state=seed, **params)
    Z = vae.fit_transform(X)
    out = {"scenario": name, "seed": seed, "fit_s": round(time.perf_counter() - t0, 1)}
    if with_paper_recipe:
        t0 = time.perf_counter()
        Zp = PointCloudVAE(**paper_recipe(), random_state=seed).fit_transform(X)
        out["paper_recipe_fit_s"] = round(time.perf_counter() - t0, 1)
    for param in scenario.varying:
        out[param] = round(best_abs_spearman(Z, truth[param]), 4)
        for key, paper in (("_estimator", False), ("_paper_estimator", True)):
            estimate = estimator_for(scenario.structure, param, paper=paper).fit_transform(X)[:, 0]
            out[param + key] = round(abs_spearman(estimate, truth[param]), 4)
        if with_paper_recipe:
            out[param + "_paper_recipe"] = round(best_abs_spearman(Zp, truth[param]), 4)
    return out


def summary(results: list, names: list) -> list:
    """One row per scenario and parameter: medians and worst seeds of latent and estimator."""
    rows = []
    for name in names:
        mine = [r for r in results if r["scenario"] == name]
        if not mine:
            continue
        for param in SCENARIOS[name].varying:
            row = dict(scenario=name, param=param, seeds=len(mine))
            for key, suffix in COLUMNS:
                if param + suffix in mine[0]:
                    v = np.array([r[param + suffix] for r in mine])
                    row[key + "_median"], row[key + "_worst"] = float(np.median(v)), float(v.min())
            row["latent_reaches_paper_estimator"] = bool(row["latent_median"] >= row["paper_estimator_median"])
            row["latent_reaches_estimator"] = bool(row["latent_median"] >= row["estimator_median"])
            rows.append(row)
    return rows


COLUMNS = (("latent", ""), ("estimator", "_estimator"), ("paper_estimator", "_paper_estimator"),
           ("paper_recipe", "_paper_recipe"))


def print_table(title: str, rows: list) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none run)")
        return
    keys = [k for k, _ in COLUMNS if k + "_median" in rows[0]]
    print(f"  {'scenario':18s} {'param':7s} {'seeds':>5s}  " + "  ".join(f"{k[:14]:>14s} {'worst':>5s}" for k in keys)
          + "  latent >= paper est. / ring fit")
    for r in rows:
        print(f"  {r['scenario']:18s} {r['param']:7s} {r['seeds']:5d}  "
              + "  ".join(f"{r[k + '_median']:14.3f} {r[k + '_worst']:5.3f}" for k in keys)
              + f"  {'yes' if r['latent_reaches_paper_estimator'] else 'no'} / {'yes' if r['latent_reaches_estimator'] else 'no'}")
    for key in ("paper_estimator", "estimator"):
        hits = sum(r[f"latent_reaches_{key}"] for r in rows)
        print(f"  latent median >= {key.replace('_', ' ')} median: {hits} of {len(rows)}")
    worst = min(rows, key=lambda r: r["latent_worst"])
    print(f"  worst case of the latent: {worst['latent_worst']:.3f} ({worst['scenario']}, {worst['param']})")


def compare(paths: list) -> None:
    """Print the latent's median (worst seed) per scenario and parameter for several ``--out`` files side by side."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    labels = [Path(p).stem for p in paths]
    cells: dict = {}
    for k, run in enumerate(runs):
        for held, rows in ((False, run["summary"]), (True, run["held_out_summary"])):
            for r in rows:
                cells.setdefault((held, r["scenario"], r["param"]), {})[k] = (r["latent_median"], r["latent_worst"],
                                                                              r["seeds"])
    print(f"{'scenario':18s} {'param':7s} " + " ".join(f"{label[:20]:>20s}" for label in labels))
    for held in (False, True):
        print("HELD-OUT" if held else "visible")
        keys = [key for key in cells if key[0] == held]
        for key in keys:
            row = cells[key]
            text = " ".join(f"{row[k][0]:>9.3f} ({row[k][1]:.3f}) {row[k][2]}" if k in row else f"{'-':>20s}"
                            for k in range(len(runs)))
            print(f"{key[1]:18s} {key[2]:7s} {text}")
        for k, label in enumerate(labels):
            worst = [(cells[key][k][1], key[1], key[2]) for key in keys if k in cells[key]]
            if worst:
                w = min(worst)
                print(f"  worst seed of {label}: {w[0]:.3f} ({w[1]}, {w[2]})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=list_scenarios(), choices=list_scenarios(), metavar="NAME",
                    help=f"default: all ({', '.join(list_scenarios())})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--params", type=json.loads, default={}, help="JSON of PointCloudVAE keywords overriding the defaults")
    ap.add_argument("--jobs", type=int, default=1, help="fits at a time (joblib processes); default 1")
    ap.add_argument("--paper-recipe", action="store_true", help="also fit paper_recipe() on the same data (the peer)")
    ap.add_argument("--tc-weight", type=float, default=None,
                    help="fit the beta-TC-VAE of study_total_correlation.py with this penalty weight")
    ap.add_argument("--compare", type=Path, nargs="+", metavar="JSON",
                    help="print the latent columns of earlier --out files side by side, and fit nothing")
    ap.add_argument("--out", type=Path, help="write the per-fit results and the summary here (JSON)")
    args = ap.parse_args(argv)
    if args.compare:
        compare(args.compare)
        return
    if not isinstance(args.params, dict):
        ap.error(f"--params must be a JSON object of PointCloudVAE keywords, got {args.params!r}")
    try:
        PointCloudVAE(**args.params)  # unknown keywords fail here, before any fit
    except TypeError as exc:
        ap.error(f"--params: {exc}")

    tasks = [(name, seed) for name in args.scenarios for seed in args.seeds]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(tasks)} fits: {len(args.scenarios)} scenarios x {len(args.seeds)} seeds, {args.n_particles} particles, "
          f"params {json.dumps(args.params)}, tc_weight {args.tc_weight}, {args.jobs} job(s) x {threads} thread(s)",
          flush=True)
    if args.jobs == 1:
        results = []
        for name, seed in tasks:
            results.append(run_one(name, seed, args.n_particles, args.params, threads, args.paper_recipe, args.tc_weight))
            print(json.dumps(results[-1]), flush=True)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=args.jobs, verbose=10)(
            delayed(run_one)(name, seed, args.n_particles, args.params, threads, args.paper_recipe, args.tc_weight) for name, seed in tasks
        )
        for r in results:
            print(json.dumps(r))

    visible = [n for n in args.scenarios if not SCENARIOS[n].held_out]
    held = [n for n in args.scenarios if SCENARIOS[n].held_out]
    rows_visible, rows_held = summary(results, visible), summary(results, held)
    print_table("Scenarios (|Spearman| with the truth; median and worst over seeds)", rows_visible)
    print_table("HELD-OUT scenarios (do not tune defaults on these)", rows_held)
    if args.out:
        args.out.write_text(json.dumps(
            {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
             "fits": results, "summary": rows_visible, "held_out_summary": rows_held}, indent=1))
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
