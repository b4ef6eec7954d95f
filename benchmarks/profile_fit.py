"""Where the time of a default PointCloudVAE fit goes, by kind of operation.

Runs one default fit (1399 simulated 2D pores, 4 epochs unless told) under
``torch.profiler`` and sorts every operator's own time into:

* matrix products and convolutions (the encoder's shared MLP, the decoder's
  layers and 1x1 convolutions, forward and backward);
* attention (``scaled_dot_product_attention`` and its backward);
* nearest-neighbour search and distances (the Chamfer term);
* batch norm; the optimizer (Adam); element-wise and reduction kernels;
* everything else inside torch.

Time that no operator accounts for (wall time minus the operators' own
time) is Python, numpy and data handling: batching, the rotation
augmentation of the input (numpy), the read-out after training.

    python benchmarks/profile_fit.py              # ~1-2 min on 2 cores
    python benchmarks/profile_fit.py --epochs 1 --n-particles 400
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d

KINDS = [
    ("attention", ("attention", "_efficient_attention", "_flash_attention")),
    ("matrix products / convolutions", ("addmm", "::mm", "bmm", "matmul", "linear", "conv", "baddbmm", "::mv")),
    ("nearest neighbours / distances (Chamfer)", ("cdist", "topk", "::min", "argmin", "sort", "gather", "index_select",
                                                 "_euclidean_dist", "scatter")),
    ("batch norm", ("batch_norm",)),
    ("optimizer (Adam)", ("adam", "_foreach", "lerp", "addcdiv", "addcmul")),
    ("element-wise / reductions", ("::add", "::sub", "::mul", "::div", "tanh", "relu", "threshold", "exp", "log", "sum",
                                   "mean", "pow", "sqrt", "clamp", "where", "neg", "sigmoid", "abs", "square")),
]


def kind(name: str) -> str:
    low = name.lower()
    for label, keys in KINDS:
        if any(k in low for k in keys):
            return label
    return "other torch operators"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-particles", type=int, default=1399)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--top", type=int, default=12, help="also list the N most expensive operators")
    args = ap.parse_args(argv)
    X, _ = make_npc_2d(args.n_particles, random_state=1000)
    vae = PointCloudVAE(n_epochs=args.epochs, random_state=0)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        vae.fit(X)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    shares, ops = defaultdict(float), []
    for e in events:
        seconds = e.self_cpu_time_total / 1e6
        shares[kind(e.key)] += seconds
        ops.append((seconds, e.key, e.count))
    inside = sum(shares.values())
    print(f"# default fit, {args.n_particles} particles, {args.epochs} epochs, {torch.get_num_threads()} threads: "
          f"{wall:.1f} s wall under the profiler")
    for label, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"{label:45s} {seconds:7.1f} s  {seconds / wall:6.1%}")
    rest = max(wall - inside, 0.0)
    print(f"{'outside torch operators (Python, numpy, data)':45s} {rest:7.1f} s  {rest / wall:6.1%}")
    print(f"\n# the {args.top} most expensive operators (own time)")
    for seconds, name, count in sorted(ops, reverse=True)[: args.top]:
        print(f"{name:45s} {seconds:7.2f} s  {count:8d} calls")


if __name__ == "__main__":
    main()
