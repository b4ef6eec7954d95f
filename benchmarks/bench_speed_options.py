"""Speed options side by side: float32 / bfloat16 autocast / torch.compile, with the latent quality of each.

For each setting, fits ``PointCloudVAE`` (defaults otherwise) on simulated 2D
NPC particles (``make_npc_2d``, 1399 by default, 4 epochs), then prints the
fit time, the ``transform`` throughput (particles/s; the default 8-angle
average, distilled into one pass) and the best latent dimension's |Spearman|
with the true radius. For float32 it also times, on the same model, the
exact 8-angle average (the model without its read-out, 8 passes of the
folded encoder) and the encoder pass that ``transform`` used before the
batch norms were folded (the plain module, the whole chunk's feature map at
once, exact average), the reference for the folding speed-up.

    python benchmarks/bench_speed_options.py                    # float32, bfloat16, compile, compile+bfloat16
    python benchmarks/bench_speed_options.py --quick            # 300 particles, 1 epoch
    python benchmarks/bench_speed_options.py --options float32 bfloat16 --seeds 0 1
    python benchmarks/bench_speed_options.py --device cuda      # AMP (bfloat16 autocast) on a GPU
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from _common import best_abs_spearman, exact_average

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d

OPTIONS = {
    "float32": dict(compute_dtype="float32"),
    "bfloat16": dict(compute_dtype="bfloat16"),
    "compile": dict(architecture={"compile": True}),
    "compile+bfloat16": dict(architecture={"compile": True}, compute_dtype="bfloat16"),
}


def unfolded_transform(vae, X):
    """transform as it was before the folded encoder: the module's encoder on whole chunks, angle-major."""
    p = vae._check_particles(X, fitting=False)
    out = np.zeros((p.n_particles, vae.module_.config["latent_dim"]))
    angles = vae._rotation_angles()
    with torch.inference_mode():
        for angle in angles:
            for start, stop, pts, seg, lens in vae._encode_chunks(p, angle):
                out[start:stop] += vae.module_.encoder(pts, seg, lens)[0].double().cpu().numpy()
    return out / len(angles)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 particles, 1 epoch")
    ap.add_argument("--n-particles", type=int, default=1399)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    n, epochs = (300, 1) if args.quick else (args.n_particles, 4)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}")
    print(f"# {n} make_npc_2d particles, {epochs} epochs; transform: the default 8-angle average (distilled)")
    print("seed  option              fit_s   transform_p/s   best|rho|")
    for seed in args.seeds:
        X, truth = make_npc_2d(n, random_state=1000 + seed)
        for name in args.options:
            vae = PointCloudVAE(n_epochs=epochs, device=args.device, random_state=seed, **OPTIONS[name])
            t0 = time.perf_counter()
            vae.fit(X)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            Z = vae.transform(X)
            tr = n / (time.perf_counter() - t0)
            print(f"{seed:4d}  {name:16s} {fit_s:7.1f}   {tr:13.0f}   {best_abs_spearman(Z, truth['radius']):9.3f}", flush=True)
            if name == "float32":
                t0 = time.perf_counter()
                Ze = exact_average(vae).transform(X)
                tre = n / (time.perf_counter() - t0)
                print(f"{seed:4d}  {'(exact average)':16s} {'':7s}   {tre:13.0f}   "
                      f"{best_abs_spearman(Ze, truth['radius']):9.3f}", flush=True)
                t0 = time.perf_counter()
                Z0 = unfolded_transform(vae, X)
                tr0 = n / (time.perf_counter() - t0)
                print(f"{seed:4d}  {'(exact, unfolded)':16s} {'':7s}   {tr0:13.0f}   "
                      f"{best_abs_spearman(Z0, truth['radius']):9.3f}   max |dZ| vs folded exact {np.abs(Z0 - Ze).max():.1e}",
                      flush=True)


if __name__ == "__main__":
    main()
