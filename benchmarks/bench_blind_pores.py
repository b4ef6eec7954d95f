"""The whole command line on 2D pores from a simulator written blind to the library's own.

A helper who had not read ``pcvae_sklearn.datasets`` or these benchmarks
wrote this simulator from a microscopist's description: 8 corners on a
ring, each of 4 binding sites a few nm apart (Nup96-like), 55 % labelling,
2 nm linkage, Poisson(6.5) blinks, per-localization precision lognormal
(median 6.5 nm, log-SD 0.3), a 3 nm pick offset, 5 % uniform background in
a 150 nm pick, and four nuisances the library was never tuned on: an
area-preserving ellipse (axis ratio 0.9-1), drift blur of 10-25 nm along x
in 30 % of the picks, a fragment of a neighbouring pore 125-150 nm away in
15 %, and one sticky label blinking 4 times as often in 20 %. Particle ids
are not 0..n-1 and the rows are shuffled.

Each case writes a CSV of 400 particles and runs ``pcvae run FILE --out
DIR`` with the defaults, as a user would; one line per run: the verdict's
p-value, the data's and the twins' rise, the |Spearman| of the
per-particle estimate and of the binned direction with the true radius
(joined on the file's ``particle_id``), and the run's time.

* ``hom``: radius 55 nm for all, precision column (the verdict must be "no
  heterogeneity"); ``hom-noprec``: the same without the column;
* ``het``: radius 45-65 nm; ``weak``: 52-58 nm, without the column.

    python benchmarks/bench_blind_pores.py --cases hom het --seeds 11      # ~6 min on 2 cores
    python benchmarks/bench_blind_pores.py --cases hom hom-noprec weak --seeds 11 22
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pcvae_sklearn.cli import main as pcvae

N_PARTICLES = 400
CORNERS = 8
LABELLING = 0.55
BLINKS = 6.5
PRECISION_MEDIAN, PRECISION_LOGSD = 6.5, 0.3
LINKAGE = 2.0
PICK_OFFSET, PICK_RADIUS = 3.0, 150.0
BACKGROUND = 0.05
ELLIPSE = (0.9, 1.0)
DRIFT_SHARE, DRIFT_LENGTH = 0.3, (10.0, 25.0)
NEIGHBOUR_SHARE, NEIGHBOUR_DISTANCE = 0.15, (125.0, 150.0)
STICKY_SHARE, STICKY_FACTOR = 0.2, 4.0
#: binding sites of a corner: radial and tangential offsets (nm)
SITES = np.array([[-2.5, -3.0], [-2.5, 3.0], [2.5, -1.5], [2.5, 1.5]])
CASES = {"hom": (55.0, 55.0, True), "hom-noprec": (55.0, 55.0, False), "het": (45.0, 65.0, True),
         "weak": (52.0, 58.0, False)}


def ring_sites(radius, rng, theta0):
    out = []
    for a in theta0 + 2 * np.pi * np.arange(CORNERS) / CORNERS:
        radial, tangential = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        for dr, dt in SITES:
            out.append((radius + dr) * radial + dt * tangential + rng.normal(0, 0.7, 2))
    return np.array(out)


def emit(sites, rng, sticky=False):
    labelled = sites[rng.random(len(sites)) < LABELLING]
    if len(labelled) == 0:
        return np.zeros((0, 2))
    labelled = labelled + rng.normal(0, LINKAGE, labelled.shape)
    blinks = rng.poisson(BLINKS, len(labelled))
    if sticky:
        blinks[rng.integers(len(labelled))] = rng.poisson(BLINKS * STICKY_FACTOR)
    return np.repeat(labelled, blinks, axis=0)


def pick(radius, rng):
    """One pick's localizations (n, 2) and their precisions (nm)."""
    sites = ring_sites(radius, rng, rng.uniform(0, 2 * np.pi))
    q, phi = rng.uniform(*ELLIPSE), rng.uniform(0, np.pi)
    turn = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    sites = (sites @ turn) * np.array([1 / np.sqrt(q), np.sqrt(q)]) @ turn.T
    points = emit(sites, rng, sticky=rng.random() < STICKY_SHARE)
    n_signal = len(points)
    if rng.random() < NEIGHBOUR_SHARE:
        d, a = rng.uniform(*NEIGHBOUR_DISTANCE), rng.uniform(0, 2 * np.pi)
        other = ring_sites(55.0, rng, rng.uniform(0, 2 * np.pi)) + d * np.array([np.cos(a), np.sin(a)])
        other = other[np.linalg.norm(other, axis=1) < PICK_RADIUS + 10]
        if len(other):
            points = np.vstack([points, emit(other, rng)])
    precision = np.exp(np.log(PRECISION_MEDIAN) + PRECISION_LOGSD * rng.standard_normal(len(points)))
    points = points + rng.standard_normal(points.shape) * precision[:, None]
    if rng.random() < DRIFT_SHARE:
        length = rng.uniform(*DRIFT_LENGTH)
        points[:, 0] += rng.uniform(-length / 2, length / 2, len(points))
    points = points + rng.normal(0, PICK_OFFSET, 2)
    n_background = rng.poisson(BACKGROUND / (1 - BACKGROUND) * max(n_signal, 1))
    r, a = PICK_RADIUS * np.sqrt(rng.random(n_background)), rng.uniform(0, 2 * np.pi, n_background)
    points = np.vstack([points, np.c_[r * np.cos(a), r * np.sin(a)]])
    precision = np.r_[precision, np.exp(np.log(PRECISION_MEDIAN) + PRECISION_LOGSD * rng.standard_normal(n_background))]
    keep = np.linalg.norm(points, axis=1) < PICK_RADIUS
    return points[keep], precision[keep]


def write_case(path, low, high, with_precision, seed):
    """The CSV a user would have, and the true radius of every particle id."""
    rng = np.random.default_rng(seed)
    ids = 1000 + 7 * rng.permutation(N_PARTICLES)
    frames, truth = [], {}
    for pid in ids:
        radius = rng.uniform(low, high) if high > low else low
        points, precision = pick(radius, rng)
        frame = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "particle": pid})
        if with_precision:
            frame.insert(2, "precision", precision)
        frames.append(frame)
        truth[int(pid)] = radius
    pd.concat(frames).sample(frac=1.0, random_state=seed).to_csv(path, index=False, float_format="%.3f")
    return truth


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["hom", "het"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for case in args.cases:
                low, high, with_precision = CASES[case]
                csv = Path(tmp) / f"{case}_{seed}.csv"
                truth = write_case(csv, low, high, with_precision, seed)
                out = Path(tmp) / f"out_{case}_{seed}"
                t = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    rc = pcvae(["run", str(csv), "--out", str(out), "--seed", str(seed)])
                seconds = time.perf_counter() - t
                if rc != 0:
                    print(f"{case} seed {seed}: pcvae run failed (rc {rc})", flush=True)
                    continue
                null = json.loads((out / "settings.json").read_text())["null"]
                latents = pd.read_csv(out / "latents.csv")
                radius = latents["particle_id"].map(truth).to_numpy()
                rho = ""
                if high > low:
                    estimate = abs(spearmanr(latents["radius_nm"], radius)[0])
                    direction = abs(spearmanr(latents["latent_radius_nm"], radius)[0])
                    rho = f", |Spearman| with the true radius: estimate {estimate:.2f}, direction {direction:.2f}"
                print(f"{case} seed {seed}: detected={null['detected']} p={null['p_value']:.3g}, the data rise "
                      f"{null['rise']:.2f} nm, the twins {null['null_rise_mean']:.2f} +- {null['null_rise_sd']:.2f} nm"
                      f"{rho} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
