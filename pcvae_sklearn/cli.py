"""The ``pcvae`` command line.

``pcvae demo --out DIR``
    Simulate 2D nuclear pores with a continuous range of radii, then run the
    whole workflow (fit, bin, fuse, estimate) and write the results.
``pcvae run INPUT --out DIR``
    The same on a localization file (Picasso, ThunderSTORM, SMAP,
    rapidSTORM, CSV, a folder of CSVs, Parquet).

Both write the latents, the model, the bin and correlation tables, the
figures as PNG (with matplotlib: pip install 'pcvae-sklearn[plot]') and one
self-contained report.html.
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
    g.add_argument("--estimate", "--estimator", dest="estimate", default="radius", choices=["radius", "height", "tetrahedron", "pore"],
                   help="model-based estimate (default radius)")
    g.add_argument("--unmix", action="store_true",
                   help="turn the latent axes towards independent factors (LatentUnmixer) before binning: for "
                        "structures where several parameters vary, e.g. 3D pores (radius and ring distance)")
    g.add_argument("--unmix-components", type=int, default=None, metavar="K",
                   help="with --unmix (implied): unmix the K principal directions of the latent instead of the active "
                        "dimensions, which with the default latent batch norm are all of them (LatentUnmixer's "
                        "n_components; 4 on simulated 3D pores, see docs/choosing_parameters.md)")
    g.add_argument("--no-fusion", action="store_true", help="skip per-bin particle fusion")
    g.add_argument("--n-jobs", type=int, default=None, help="bins fused in parallel")
    g = ap.add_argument_group("figures and report")
    g.add_argument("--no-figures", action="store_true", help="write the tables and report.html without figures")
    g.add_argument("--no-grid", action="store_true", help="skip the super-particle grid (it fuses 5 bins along every latent dimension)")
    g.add_argument("--sample-ratios", default="0.25,0.5,0.75,1", help="sample ratios of the robustness figure, comma-separated ('none' to skip)")
    g.add_argument("--dpi", type=int, default=120, help="resolution of the PNG figures (default 120)")
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
    from . import __version__
    from .io import write_parquet
    from .workflow import analyse

    out: Path = args.out
    args.sample_ratios = _sample_ratios(args.sample_ratios) if isinstance(args.sample_ratios, str) else args.sample_ratios
    out.mkdir(parents=True, exist_ok=True)
    vae = _vae(args)
    _say(args, f"pcvae: {len(particles)} particles from {source}")
    _say(args, f"pcvae: fitting {vae!r}, then binning" + ("" if args.no_fusion else f" and fusing {args.n_bins} bins (the longest step)"))
    t0 = time.perf_counter()
    res = analyse(
        particles,
        vae=vae,
        estimate=args.estimate,
        n_bins=args.n_bins,
        fuse=not args.no_fusion,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        unmix=args.unmix or args.unmix_components is not None,
        unmix_components=args.unmix_components,
    )
    _say(args, "pcvae: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items()))
    import pandas as pd

    latents = pd.DataFrame(res.latents, columns=res.feature_names)
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
    res.vae.save(out / "model.pt")  # opens with torch.load(weights_only=True): PointCloudVAE.load
    if res.fusion is not None:
        write_parquet(res.fusion.super_particles, out / "super_particles.parquet", overwrite=True)
    settings = {
        "command": " ".join(sys.argv),
        "source": str(source),
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in res.vae.get_params().items()},
        "n_bins": args.n_bins,
        "estimate": args.estimate,
        "unmix": args.unmix or args.unmix_components is not None,
        "unmix_components": args.unmix_components,
        "dimension": res.dimension,
        "seconds": res.seconds,
        "versions": _versions(__version__),
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    _say(args, f"pcvae: tables and model written in {time.perf_counter() - t0:.0f} s")
    figures, note = ({}, "figures skipped (--no-figures)") if args.no_figures else _figures(args, res, particles, out)
    settings["figures"] = sorted(figures)
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    from .show._report import write_report

    write_report(out / "report.html", res, figures=figures, settings=settings, note=note, truth_summary=_truth_summary(res, truth))
    _print_summary(res, truth, time.perf_counter() - t0, out)
    if note:
        print(f"Note: {note}")
    return 0


def _sample_ratios(text):
    if text.strip().lower() in ("", "none", "no"):
        return ()
    try:
        ratios = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise ValueError(f"--sample-ratios must be comma-separated fractions such as 0.25,0.5,1; got {text!r}.") from None
    if not all(0 < r <= 1 for r in ratios):
        raise ValueError(f"--sample-ratios must lie in (0, 1]; got {text!r}.")
    return ratios


def _figures(args, res, particles, out):
    """Write the figures as PNG; returns ({name: path}, note)."""
    try:
        import matplotlib
    except ImportError:
        msg = "figures need matplotlib, which is not installed: pip install 'pcvae-sklearn[plot]' (tables and report.html are written)."
        _say(args, f"pcvae: {msg}")
        return {}, msg
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import show
    from .fuse import ParticleFuser

    ratios = args.sample_ratios
    jobs = [
        ("training_curves", "training curves", lambda: show.TrainingCurveDisplay.from_results(res)),
        ("latent_scatter", "latent against estimate", lambda: show.LatentScatterDisplay.from_results(res)),
        ("latent_embedding", "PCA of the latents", lambda: show.LatentEmbeddingDisplay.from_results(res)),
        ("bin_violin", "per-bin violins", lambda: show.BinViolinDisplay.from_results(res)),
    ]
    if res.fusion is not None:
        jobs.append(("bin_row", "super-particles of every bin", lambda: show.BinRowDisplay.from_results(res)))
    if not args.no_grid and res.fusion is not None:
        n_dims = res.latents.shape[1]
        jobs.append((
            "super_particle_grid",
            f"super-particle grid (fusing 5 bins along each of {n_dims} latent dimensions, one restart each)",
            lambda: show.SuperParticleGridDisplay.from_results(
                res, particles, fuser=ParticleFuser(n_restarts=1), register_bins=False, n_jobs=args.n_jobs, random_state=args.seed
            ),
        ))
    if ratios:
        jobs.append((
            "sample_ratio",
            f"robustness: encoding at sample ratios {', '.join(f'{r:g}' for r in ratios)}",
            lambda: show.SampleRatioDisplay.from_estimator(
                res.encoder, particles, ratios=ratios, estimate="radius" if res.estimate_name.startswith("radius") else args.estimate,
                latents=res.latents, random_state=args.seed
            ),
        ))
    figures = {}
    for name, what, make in jobs:
        t = time.perf_counter()
        _say(args, f"pcvae: figure {name}: {what} ...")
        display = make().plot()
        path = out / f"{name}.png"
        display.figure_.savefig(path, dpi=args.dpi)
        plt.close(display.figure_)
        figures[name] = path
        _say(args, f"pcvae: figure {name} written ({time.perf_counter() - t:.1f} s)")
    return figures, ""


def _truth_summary(res, truth):
    if truth is None:
        return {}
    from scipy.stats import spearmanr

    summary = {}
    for name in ("radius", "height"):
        if name in truth.dtype.names:
            rho = [abs(spearmanr(res.latents[:, j], truth[name])[0]) for j in range(res.latents.shape[1])]
            summary[f"best latent |Spearman| with the true {name}"] = f"{np.nanmax(rho):.3f} (dimension {int(np.nanargmax(rho))})"
    return summary


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
        "matplotlib": _matplotlib_version(),
    }


def _matplotlib_version():
    try:
        import matplotlib
    except ImportError:
        return "not installed"
    return matplotlib.__version__


def _print_summary(res, truth, seconds, out):
    import pandas as pd
    from scipy.stats import spearmanr

    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.precision", 3):
        print("Correlation of every latent dimension with the per-particle estimate:")
        print(res.correlations[["latent", "estimate", "pearson_r", "spearman_rho"]].to_string(index=False))
        print()
        print(f"Bins along latent dimension {res.dimension} ({res.feature_names[res.dimension]}):")
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
    print(f"\nDone in {seconds:.0f} s; results in {out}/ (report.html, latents.csv, correlations.csv, bins.csv, model.pt, settings.json, *.png)")


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
