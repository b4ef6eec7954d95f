"""A training step on 5,000-localization 3D particles: nearest-neighbour Chamfer against full pairwise Chamfer.

Builds the default PointCloudVAE network (3D), takes batches of 8 simulated
DNA-origami tetrahedra (``make_tetrahedron``, ~5,000 localizations each,
every localization used: ``max_points=None``) and times a full training step
(forward, Chamfer + KL, backward, Adam) with

* ``nearest``: neighbours found without gradient, then a differentiable gather
  (``chamfer_distance``, what the library trains with), and
* ``dense``: autograd through all pairwise distances (the tests' reference,
  ``dense_chamfer`` in ``tests/_encode_reference.py``).

Each method runs in a fresh subprocess, so the peak resident memory it
reports (``resource.getrusage(...).ru_maxrss``, growth over the process's
peak before the first step) is its own. It also prints the time of the
Chamfer term alone (forward + backward) and the number of float elements
autograd keeps for its backward pass. At this size the step is dominated by
the encoder (40,000 localizations x 1024 features per batch, linear in the
number of localizations), so the step's peak memory and time change less
than the Chamfer term's.

    python benchmarks/bench_big_particles.py            # 10 steps per method
    python benchmarks/bench_big_particles.py --quick    # 2 steps per method
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def run_one(method: str, steps: int, batch: int, seed: int) -> dict:
    from pcvae_sklearn import as_particles
    from pcvae_sklearn.datasets import make_tetrahedron
    from pcvae_sklearn.encode._chamfer import chamfer_distance, pad_packed
    from pcvae_sklearn.encode._networks import PCVAEModule, kl_divergence

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the benchmarks reuse the test helpers
    from _encode_reference import dense_chamfer

    chamfer = {"nearest": chamfer_distance, "dense": dense_chamfer}[method]

    X, _ = make_tetrahedron(batch * steps, random_state=seed)
    p = as_particles(X).centred()
    coords = (p.coords / np.sqrt(np.mean(np.sum(p.coords**2, axis=1)))).astype(np.float32)
    torch.manual_seed(seed)
    module = PCVAEModule(3, 8, (64, 128, 1024), (256, 512, 1024), 256, 128, 4).train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    batches = []
    for s in range(steps):
        lens = torch.from_numpy(p.lengths[s * batch : (s + 1) * batch].astype(np.int64))
        pts = torch.from_numpy(coords[p.offsets[s * batch] : p.offsets[(s + 1) * batch]])
        batches.append((pts, torch.repeat_interleave(torch.arange(batch), lens), lens))
    saved = 0

    def count(t):
        nonlocal saved
        saved += t.numel()
        return t

    base = peak_rss_mb()
    times = []
    for k, (pts, seg, lens) in enumerate(batches):
        t0 = time.perf_counter()
        decoded, mu, logvar = module(pts, seg, lens)
        target, _ = pad_packed(pts, lens)
        if k == 0:
            with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
                recon = chamfer(decoded, target, lens).mean()
        else:
            recon = chamfer(decoded, target, lens).mean()
        loss = recon + 1e-3 * kl_divergence(mu, logvar).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    # the Chamfer term alone (forward + backward), on the last batch's decoded points
    pred = decoded.detach().requires_grad_()
    chamfer_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        chamfer(pred, target, lens).sum().backward()
        chamfer_times.append(time.perf_counter() - t0)
    return {
        "chamfer_s": float(np.median(chamfer_times)),
        "method": method,
        "localizations_per_particle": float(p.lengths.mean()),
        "step_s": float(np.median(times[1:] if len(times) > 1 else times)),
        "peak_growth_mb": peak_rss_mb() - base,
        "chamfer_saved_elements": saved,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 steps per method")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    steps = 2 if args.quick else args.steps
    if args._child:
        print(json.dumps(run_one(args._child, steps, args.batch, args.seed)))
        return
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# training step, batch {args.batch} make_tetrahedron particles, all localizations (max_points=None), "
          f"{steps} steps, median step time")
    results = {}
    for method in ("nearest", "dense"):
        cmd = [sys.executable, __file__, "--_child", method, "--steps", str(steps), "--batch", str(args.batch),
               "--seed", str(args.seed)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[method] = r = json.loads(out)
        print(f"{method:8s} {r['localizations_per_particle']:6.0f} loc/particle  step {r['step_s']:6.3f} s  "
              f"(Chamfer fwd+bwd {r['chamfer_s']:6.3f} s)  "
              f"peak RSS growth {r['peak_growth_mb']:7.0f} MB  Chamfer backward keeps "
              f"{r['chamfer_saved_elements'] / 1e6:7.2f} M elements", flush=True)
    n, d = results["nearest"], results["dense"]
    print(f"nearest vs dense: step {d['step_s'] / n['step_s']:.2f}x faster, Chamfer term "
          f"{d['chamfer_s'] / n['chamfer_s']:.2f}x faster, "
          f"{d['peak_growth_mb'] / max(n['peak_growth_mb'], 1):.2f}x less peak memory growth, "
          f"{d['chamfer_saved_elements'] / n['chamfer_saved_elements']:.0f}x fewer saved elements")


if __name__ == "__main__":
    main()
