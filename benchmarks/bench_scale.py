"""Scale: transform throughput and memory on 100,000 particles, fit time on 3,810 3D pores, linearity of fit.

Prints

1. ``transform`` of 100,000 simulated 2D NPC particles (``make_npc_2d``,
   ~150 localizations each) with a model fitted on 1,000 of them: particles
   per second and the growth of the resident memory during ``transform``
   (peak sampled every 20 ms, minus the resident memory before the call,
   with the particles already in memory), for the default (8 rotations,
   distilled into one encoder pass), the exact 8-angle average (8 passes),
   one rotation, and the default in ``compute_dtype="bfloat16"``;
2. ``fit`` of 3,810 simulated 3D pores (``make_npc_3d``, the paper's largest
   data set), 4 epochs, default settings, seconds per epoch (the paper:
   279 s per epoch on a GPU);
3. ``fit`` time (1 epoch, defaults) on 1,000 / 2,000 / 4,000 / 8,000 2D
   particles, and seconds per 1,000 particles (flat = linear).

    python benchmarks/bench_scale.py            # full run (~15 min on 2 cores)
    python benchmarks/bench_scale.py --quick    # smoke run (5,000 / 400 / 250-2,000 particles)
    python benchmarks/bench_scale.py --device cuda --parts transform fit3d   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import threading
import time

import numpy as np
import torch

from _common import exact_average

from pcvae_sklearn import PointCloudVAE, as_particles
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Current resident memory (Linux /proc; the lifetime peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PeakRSS:
    """Sample the resident memory in a thread; ``growth`` = peak during the block minus before it."""

    def __enter__(self):
        self.before = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        self.growth = self.peak - self.before


def bench_transform(n: int, seed: int = 0, rotations=(8, 1), device: str = "cpu"):
    X, _ = make_npc_2d(n, random_state=seed)
    vae = PointCloudVAE(n_epochs=1, random_state=seed, device=device).fit(X[:1000])
    n_loc = as_particles(X).n_localizations
    print(f"# transform of {n} make_npc_2d particles ({n_loc / n:.0f} localizations each on average), "
          f"model fitted 1 epoch on {min(n, 1000)} of them")
    settings = []
    for r in rotations:
        settings += [(r, "distilled", "float32"), (r, "exact", "float32")] if r > 1 else [(r, "exact", "float32")]
    settings.append((max(rotations), "distilled", "bfloat16"))
    for n_rot, average, precision in settings:
        vae.set_params(n_rotations=n_rot, compute_dtype=precision)
        model = exact_average(vae) if average == "exact" else vae
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            Z = model.transform(X)
            dt = time.perf_counter() - t0
        assert Z.shape == (n, 8) and np.isfinite(Z).all()
        gpu = (f"  GPU peak {torch.cuda.max_memory_allocated() / 2**20:6.0f} MB"
               if device.startswith("cuda") else "")
        print(f"transform  rotations={n_rot} {average:9s} compute_dtype={precision:8s}  {dt:7.1f} s  {n / dt:7.0f} particles/s  "
              f"RSS growth {mem.growth:6.0f} MB{gpu}", flush=True)


def bench_fit_3d(n: int, epochs: int, seed: int = 0, device: str = "cpu"):
    X, _ = make_npc_3d(n, random_state=seed)
    t0 = time.perf_counter()
    vae = PointCloudVAE(n_epochs=epochs, random_state=seed, device=device).fit(X)
    dt = time.perf_counter() - t0
    per_epoch = [round(h["seconds"], 1) for h in vae.history_]
    print(f"fit  {n} make_npc_3d particles, {epochs} epochs: {dt:.1f} s, {dt / epochs:.1f} s/epoch "
          f"(epochs: {per_epoch}); paper: 279 s/epoch on a GPU", flush=True)


def bench_linearity(sizes, seed: int = 0, device: str = "cpu"):
    X, _ = make_npc_2d(max(sizes), random_state=seed)
    for n in sizes:
        t0 = time.perf_counter()
        PointCloudVAE(n_epochs=1, random_state=seed, device=device).fit(X[:n])
        dt = time.perf_counter() - t0
        print(f"fit  {n:5d} make_npc_2d particles, 1 epoch: {dt:6.1f} s  = {1000 * dt / n:5.2f} s per 1000 particles",
              flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run on small sizes")
    ap.add_argument("--parts", nargs="+", default=["transform", "fit3d", "linearity"])
    ap.add_argument("--n-transform", type=int, default=None, help="particles to transform (100,000)")
    ap.add_argument("--rotations", type=int, nargs="+", default=[8, 1], help="n_rotations to time")
    ap.add_argument("--fit3d-epochs", type=int, default=None, help="epochs of the 3D fit (4)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="fit sizes (1000 2000 4000 8000)")
    ap.add_argument("--device", default="cpu", help="PointCloudVAE device, e.g. cuda")
    args = ap.parse_args(argv)
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {args.device}{gpu}")
    if "transform" in args.parts:
        bench_transform(args.n_transform or (5_000 if args.quick else 100_000), rotations=args.rotations,
                        device=args.device)
    if "fit3d" in args.parts:
        bench_fit_3d(400 if args.quick else 3_810, args.fit3d_epochs or (1 if args.quick else 4),
                     device=args.device)
    if "linearity" in args.parts:
        bench_linearity(args.sizes or ([250, 500, 1000, 2000] if args.quick else [1000, 2000, 4000, 8000]),
                        device=args.device)


if __name__ == "__main__":
    main()
