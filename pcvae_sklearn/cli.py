"""The ``pcvae`` command line.

``pcvae demo --out DIR``
    Simulate 2D nuclear pores with a continuous range of radii, then run the
    whole workflow (fit, bin, fuse, estimate) and write the results.
``pcvae run INPUT --out DIR``
    The same on a localization file (Picasso, ThunderSTORM, SMAP,
    rapidSTORM, CSV, a folder of CSVs, Parquet).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _add_model_options(ap):
    g = ap.add_argument_group("model")
    g.add_argument("--latent-dim", type=int, default=None, help="latent dimensions (default: PointCloudVAE's)")
    g.add_argument("--beta", type=float, default=None, help="KL weight (default: PointCloudVAE's)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default: PointCloudVAE's)")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g = ap.add_argument_group("analysis")
    g.add_argument("--n-bins", type=int, default=20, help="bins along the chosen latent dimension (default 20)")
    g.add_argument("--estimate", default="radius", choices=["radius", "height", "tetrahedron", "pore"], help="model-based estimate (default radius)")
    g.add_argument("--no-fusion", action="store_true", help="skip per-bin particle fusion")
    g.add_argument("--n-jobs", type=int, default=None, help="bins fused in parallel")
    ap.add_argument("--out", required=True, type=Path, help="output folder (created)")
    ap.add_argument("-v", "--verbose", action="count", default=1, help="more progress output")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _parser():
    ap = argparse.ArgumentParser(prog="pcvae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the workflow on simulated 2D nuclear pores")
    demo.add_argument("--n-particles", type=int, default=1000, help="simulated particles (default 1000)")
    _add_model_options(demo)
    run = sub.add_parser("run", help="run the workflow on a localization file")
    run.add_argument("input", type=Path, help="localization file or folder")
    run.add_argument("--format", default=None, help="force a reader (see pcvae_sklearn.io.FORMATS)")
    _add_model_options(run)
    return ap


def _vae(args):
    from .encode import PointCloudVAE

    params = {"random_state": args.seed, "device": args.device, "verbose": 0 if args.quiet else args.verbose}
    for opt, name in (("latent_dim", "latent_dim"), ("beta", "beta"), ("epochs", "n_epochs")):
        value = getattr(args, opt)
        if value is not None:
            params[name] = value
    return PointCloudVAE(**params)


def _say(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _run(args, particles, truth=None, source=""):
    import joblib

    from . import __version__
    from .io import write_parquet
    from .workflow import analyse

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    vae = _vae(args)
    _say(args, f"pcvae: {len(particles)} particles from {source}; fitting {vae!r}")
    t0 = time.perf_counter()
    res = analyse(
        particles,
        vae=vae,
        estimate=args.estimate,
        n_bins=args.n_bins,
        fuse=not args.no_fusion,
        n_jobs=args.n_jobs,
        random_state=args.seed,
    )
    import pandas as pd

    latents = pd.DataFrame(res.latents, columns=res.vae.get_feature_names_out())
    latents[res.estimate_name] = res.estimates[:, 0]
    latents[res.estimate_name.replace("_nm", "_precision_nm")] = res.estimates[:, 1]
    latents["bin"] = res.bins
    if truth is not None:
        for name in ("radius", "height"):
            if name in truth.dtype.names:
                latents[f"true_{name}_nm"] = truth[name]
    latents.to_csv(out / "latents.csv", index_label="particle")
    res.correlations.to_csv(out / "correlations.csv", index=False)
    res.bin_table.to_csv(out / "bins.csv", index=False)
    joblib.dump(res.vae, out / "model.joblib")
    if res.fusion is not None:
        write_parquet(res.fusion.super_particles, out / "super_particles.parquet", overwrite=True)
    settings = {
        "command": " ".join(sys.argv),
        "source": str(source),
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in res.vae.get_params().items()},
        "n_bins": args.n_bins,
        "estimate": args.estimate,
        "dimension": res.dimension,
        "seconds": res.seconds,
        "versions": _versions(__version__),
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    _print_summary(res, truth, time.perf_counter() - t0, out)
    return 0


def _versions(own):
    import awkward
    import sklearn
    import torch

    return {
        "pcvae_sklearn": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "awkward": awkward.__version__,
    }


def _print_summary(res, truth, seconds, out):
    import pandas as pd
    from scipy.stats import spearmanr

    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.precision", 3):
        print("Correlation of every latent dimension with the per-particle estimate:")
        print(res.correlations[["latent", "estimate", "pearson_r", "spearman_rho"]].to_string(index=False))
        print()
        print(f"Bins along latent dimension {res.dimension} ({res.vae.get_feature_names_out()[res.dimension]}):")
        print(res.bin_table.to_string(index=False))
    if truth is not None:
        for name in ("radius", "height"):
            if name in truth.dtype.names:
                rho = [abs(spearmanr(res.latents[:, j], truth[name])[0]) for j in range(res.latents.shape[1])]
                print(f"\nbest latent |Spearman| with the TRUE {name}: {np.nanmax(rho):.3f} (dimension {int(np.nanargmax(rho))})")
    col = [c for c in res.bin_table.columns if c.startswith("super_particle_") and "precision" not in c]
    if col:
        rho = spearmanr(res.bin_table["bin"], res.bin_table[col[0]])[0]
        print(f"Spearman of bin index with the super-particle {col[0][len('super_particle_'):]}: {rho:+.3f}")
    print(f"\nDone in {seconds:.0f} s; results in {out}/ (latents.csv, correlations.csv, bins.csv, model.joblib, settings.json)")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("pcvae_sklearn").addHandler(logging.NullHandler())
    try:
        if args.command == "demo":
            from .datasets import make_npc_2d

            particles, truth = make_npc_2d(args.n_particles, random_state=args.seed)
            return _run(args, particles, truth, source=f"make_npc_2d({args.n_particles}, random_state={args.seed})")
        from .io import read_particles

        particles = read_particles(args.input, format=args.format)
        return _run(args, particles, source=args.input)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"pcvae: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
