"""The distilled rotation read-out against the exact rotation average.

For every data set and seed it fits ``PointCloudVAE(random_state=seed)`` on
particles of one simulation and encodes particles of *another* simulation
(held out, never seen in fit) three ways:

* ``single``: one encoder pass, the posterior mean as picked
  (``n_rotations=1``);
* ``exact``: the mean of the posterior means at 8 angles (the model without
  its read-out, 8 passes);
* ``distilled``: the default, one pass and the linear read-out fitted in
  ``fit``.

It prints the best latent dimension's |Spearman| with each true parameter,
the read-out's difference from the exact average (RMS, as a fraction of the
latent spread), how much each latent moves when every held-out particle is
rotated by a random angle about the optical axis (RMS change over RMS
spread: 0 would be rotation invariant), and the speed of each ``transform``.

    python benchmarks/study_rotation_readout.py                        # npc2d, npc3d; seeds 0-2
    python benchmarks/study_rotation_readout.py --datasets tetra --seeds 0
    python benchmarks/study_rotation_readout.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_abs_spearman, exact_average

from pcvae_sklearn import Particles, PointCloudVAE, as_particles
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron

DATASETS = {
    "npc2d": (make_npc_2d, ["radius"]),
    "npc3d": (make_npc_3d, ["radius", "height"]),
    "tetra": (make_tetrahedron, ["height"]),
}


def rotated(X, seed):
    """Every particle rotated by its own random angle about the optical axis (the z column is kept)."""
    p = as_particles(X)
    angles = np.repeat(np.random.default_rng(seed).uniform(0, 2 * np.pi, p.n_particles), p.lengths)
    c, s = np.cos(angles), np.sin(angles)
    coords = p.coords.copy()
    coords[:, 0], coords[:, 1] = c * p.coords[:, 0] - s * p.coords[:, 1], s * p.coords[:, 0] + c * p.coords[:, 1]
    return Particles(coords=coords, offsets=p.offsets).to_awkward()


def rms_over_spread(A, B, reference):
    return float(np.sqrt(np.mean((A - B) ** 2)) / np.sqrt(np.mean((reference - reference.mean(axis=0)) ** 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["npc2d", "npc3d"], choices=list(DATASETS))
    ap.add_argument("--n-particles", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu", help="PointCloudVAE device, e.g. cuda")
    args = ap.parse_args(argv)
    print("dataset  seed  param   single  exact  distilled  | readout_error(fit)  held-out rms/spread  "
          "| moved by rotation: single exact distilled | transform particles/s: single exact distilled | fit_s")
    for name in args.datasets:
        make, params = DATASETS[name]
        for seed in args.seeds:
            X, _ = make(args.n_particles, random_state=500 + seed)
            X_new, truth = make(args.n_particles, random_state=900 + seed)
            X_rot = rotated(X_new, seed)
            t0 = time.perf_counter()
            vae = PointCloudVAE(random_state=seed, device=args.device).fit(X)
            fit_s = time.perf_counter() - t0
            out, speed, moved = {}, {}, {}
            for label, model in [
                ("single", exact_average(vae).set_params(n_rotations=1)),
                ("exact", exact_average(vae)),
                ("distilled", vae),
            ]:
                t0 = time.perf_counter()
                out[label] = model.transform(X_new)
                speed[label] = len(X_new) / (time.perf_counter() - t0)
                moved[label] = rms_over_spread(model.transform(X_rot), out[label], out[label])
            held_out = rms_over_spread(out["distilled"], out["exact"], out["exact"])
            for param in params:
                r = {k: best_abs_spearman(v, truth[param]) for k, v in out.items()}
                print(f"{name:7s}  {seed:4d}  {param:6s}  {r['single']:6.3f}  {r['exact']:5.3f}  {r['distilled']:9.3f}  | "
                      f"{vae.readout_error_:18.3f}  {held_out:19.3f}  | {moved['single']:24.3f} {moved['exact']:5.3f} "
                      f"{moved['distilled']:9.3f} | {speed['single']:10.0f} {speed['exact']:6.0f} "
                      f"{speed['distilled']:9.0f} | {fit_s:5.1f}", flush=True)


if __name__ == "__main__":
    main()
