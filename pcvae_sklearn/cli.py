"""The pcvae command line: the paper's workflow on simulated or your own particles."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

DESCRIPTION = """\
Find continuous structural heterogeneity in SMLM particles with a point-cloud
variational auto-encoder (PC-VAE, Haghparast, Zhang et al., Sci. Rep. 2025).

  pcvae demo --out DIR       simulate 2D nuclear pores whose radius varies and
                             run the whole workflow on them
  pcvae run FILE --out DIR   the same on your picked localizations

Both fit the PC-VAE, bin the particles along the direction in the latent
space that predicts the per-particle estimate (radius or height), fuse every
bin into a super-particle, test the trend against matched homogeneous twins
and write tables, figures (with matplotlib) and report.html to DIR.
'pcvae demo --help' and 'pcvae run --help' list the options.
"""

# Python keywords in library messages, and the flags that set them here. Names
# that are also English words are translated only where written as keyword=.
_FLAGS = {
    "n_bins": "--n-bins",
    "n_null": "--n-null",
    "n_seeds": "--stability-seeds",
    "pixel_size": "--pixel-size",
    "particle_column": "--particle-column",
    "pick_radius": "--pick-radius",
    "learning_rate": "--learning-rate",
    "picks=": "--picks",
    "format=": "--format",
    "unmix_components": "--unmix-components",
    "latent_dim": "--latent-dim",
    "unmix=": "--unmix",
    "device=": "--device",
    "sep=": "--sep",
    "unit=": "--unit",
    "n_dims=": "--n-dims",
    "variable=": "--variable",
    "structure=": "--estimate",
    "estimate=": "--estimate",
}


#: ``--unmix`` to ``analyse(unmix=...)``
UNMIX = {"no": False, "yes": True, "both": "both"}


def for_command_line(message: str) -> str:
    """A library message with its Python keywords (``n_bins``, ``pixel_size=``, ...) as this command's flags."""
    message = re.sub(r" \(command line: [^)]*\)", "", message)  # the flag is what the message now names itself
    message = re.sub(r"ParticleFuser\(symmetry=(\d+)\)\.fit_transform\(particles\)", r"--register --symmetry \1",
                     message)
    message = re.sub(r"HeightEstimator\(structure='(\w+)'\)",
                     lambda m: f"--estimate {'height' if m[1] == 'auto' else m[1]}", message)
    for name, flag in _FLAGS.items():
        keyword = re.escape(name if name.endswith("=") else name + "=")
        message = re.sub(rf"\b{keyword}(?=[\s,.;:)]|$)", flag, message)  # named alone: "takes no unit= option"
        message = re.sub(rf"\b{keyword}", flag + " ", message)  # with a value: "pixel_size=<nm per pixel>"
        if not name.endswith("="):
            message = re.sub(rf"\b{name}\b", flag, message)
    return message


def _add_model_options(ap, estimates=("radius", "height", "tetrahedron", "pore")):
    from .encode import PointCloudVAE

    d = PointCloudVAE().get_params()
    g = ap.add_argument_group("model")
    g.add_argument("--latent-dim", type=int, default=None, help=f"latent dimensions (default {d['latent_dim']})")
    g.add_argument("--beta", type=float, default=None, help=f"KL weight (default {d['beta']:g})")
    g.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {d['n_epochs']})")
    g.add_argument("--learning-rate", type=float, default=None, help=f"Adam learning rate (default {d['learning_rate']:g})")
    g.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:0, ...) for an NVIDIA GPU")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g = ap.add_argument_group("analysis")
    g.add_argument("--n-bins", type=int, default=20,
                   help="bins along the chosen latent dimension (default 20); every bin needs at least 2 particles "
                        "and about 10 for steady per-bin figures")
    g.add_argument("--estimate", "--estimator", dest="estimate", default="radius", choices=list(estimates),
                   help="model-based estimate (default radius)" if len(estimates) > 1
                   else "model-based estimate: radius, the one the demo's 2D pores allow")
    g.add_argument("--axis", default="direction", choices=["direction", "single"],
                   help="what the bins follow: 'direction' (the default), the latent direction that predicts the "
                        "estimate (LatentDirection, cross-fitted; the column latent_<estimate> of latents.csv), which "
                        "comes back with other seeds; 'single', one latent axis, the one that tracks the estimate "
                        "best among --unmix's candidates, as in the paper")
    g.add_argument("--unmix", nargs="?", const="yes", default="both", choices=sorted(UNMIX),
                   help="the latent axes beside the VAE's: 'both' (the default), the VAE's own and their independent "
                        "components (LatentUnmixer); 'no', the VAE's own; 'yes' (or --unmix alone), the components "
                        "only. With --axis single they are the candidates for binning, and the one that tracks the "
                        "estimate best is binned")
    g.add_argument("--unmix-components", type=int, default=None, metavar="K",
                   help="unmix the K principal directions of the latent (LatentUnmixer's n_components); default 4 "
                        "with --unmix both, and with --unmix yes the active dimensions (those whose values vary "
                        "most)")
    g.add_argument("--no-fusion", action="store_true", help="skip per-bin particle fusion")
    g.add_argument("--symmetry", type=int, default=None, metavar="N",
                   help="impose an N-fold rotational symmetry on every fused super-particle, the null's template "
                        "included (8 for nuclear pores; ParticleFuser(symmetry=N) with the multiple of N at or above "
                        "32 centres); default none")
    g.add_argument("--register", action="store_true",
                   help="first register every particle onto one fused model of them all (ParticleFuser; with 3D "
                        "particles --symmetry is needed, whose axis becomes z), for particles turned out of the "
                        "plane, whose radius in x-y and height along z measure their orientation; the analysis then "
                        "runs on the registered particles")
    g.add_argument("--no-null", action="store_true",
                   help="skip the matched homogeneous null (all particles fused once, homogeneous twins encoded by "
                        "the fitted model and binned the same way); without it the per-bin trend has no verdict")
    g.add_argument("--n-null", type=int, default=19, metavar="R",
                   help="twin replicates of the null (default 19, at least 5)")
    g.add_argument("--stability-seeds", type=int, default=2, metavar="K",
                   help="also fit K-1 other seeds and check that the binned axis (the direction, or with --axis "
                        "single the one axis) comes back in all of them (|Spearman| >= 0.9 between every pair); "
                        "each seed costs one more fit (default 2; 1: off)")
    g.add_argument("--n-jobs", type=int, default=None, help="bins fused in parallel")
    g = ap.add_argument_group("figures and report")
    g.add_argument("--no-figures", action="store_true", help="write the tables and report.html without figures")
    g.add_argument("--no-grid", action="store_true", help="skip the super-particle grid (it fuses 5 bins along every latent dimension)")
    g.add_argument("--sample-ratios", default="0.25,0.5,0.75,1", help="sample ratios of the robustness figure, comma-separated ('none' to skip)")
    g.add_argument("--dpi", type=int, default=120, help="resolution of the PNG figures (default 120)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (created; removed again if the run fails)")
    ap.add_argument("-v", "--verbose", action="count", default=1, help="more progress output")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _parser():
    from .io import FORMATS

    ap = argparse.ArgumentParser(prog="pcvae", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the workflow on simulated 2D nuclear pores",
                          description="Simulate 2D nuclear pores whose radius varies (40-60 nm) and run the whole workflow.")
    demo.add_argument("--n-particles", type=int, default=600,
                      help="simulated particles (default 600: the whole workflow in about a minute on 2 cores)")
    _add_model_options(demo, estimates=("radius",))
    run = sub.add_parser("run", help="run the workflow on a localization file",
                         description="Run the whole workflow on picked localizations read from FILE.")
    run.add_argument("input", type=Path, metavar="FILE", help="localization file or folder")
    g = run.add_argument_group("reading the file")
    g.add_argument("--format", default=None, choices=FORMATS, help="skip format detection and use this reader")
    g.add_argument("--sep", default=None, metavar="CHAR",
                   help="column separator of a CSV file whose columns are not separated by commas (';', say)")
    g.add_argument("--pixel-size", type=float, default=None, metavar="NM",
                   help="camera pixel size in nm, for files whose coordinates are in pixels")
    g.add_argument("--unit", default=None, metavar="UNIT",
                   help="unit of a CSV's coordinate and precision columns whose header names none: nm (the default), "
                        "um, or px with --pixel-size (for a simulation's units of 100 nm: --unit px --pixel-size 100)")
    g.add_argument("--particle-column", default=None, metavar="NAME",
                   help="the column that numbers the particles (Picasso: group)")
    g.add_argument("--picks", type=Path, default=None, metavar="CSV",
                   help="a file of pick centres, one 'x,y' pair in nm per line, for unpicked localizations")
    g.add_argument("--pick-radius", type=float, default=None, metavar="NM", help="radius of every pick, nm (with --picks)")
    g.add_argument("--n-dims", type=int, default=None, choices=[2, 3],
                   help="read the particles as 2D (x, y) or 3D (x, y, z); by default 3D where the file has a z that "
                        "varies (a z that holds one value everywhere is read as 2D, with a warning)")
    g.add_argument("--variable", default=None, metavar="NAME",
                   help="the cell of a MATLAB file (TU Delft fusion format) that holds the particles, where it holds "
                        "several")
    _add_model_options(run)
    return ap


def _vae(args):
    from .encode import PointCloudVAE

    params = {"random_state": args.seed, "device": args.device, "verbose": 0 if args.quiet else args.verbose}
    for opt, name in (("latent_dim", "latent_dim"), ("beta", "beta"), ("epochs", "n_epochs"), ("learning_rate", "learning_rate")):
        value = getattr(args, opt)
        if value is not None:
            params[name] = value
    return PointCloudVAE(**params)


def _binned(res, quantity, rho) -> str:
    """What the bins follow, as a sentence."""
    names = [str(n) for n in res.feature_names]
    if res.binned_direction:
        return (f"Binned along {names[res.dimension]}: the latent direction that predicts the {quantity} estimate, "
                f"every particle's value from the other particles' fit (cross-fitted; Pearson r "
                f"{res.direction.score_:.3f} with the estimate, |Spearman| {abs(rho[res.dimension]):.3f}).")
    if res.dimension_given:
        return (f"Binned along latent dimension {res.dimension} ({names[res.dimension]}), as given (|Spearman| "
                f"{abs(rho[res.dimension]):.3f} with the {quantity} estimate).")
    return (f"Binned along latent dimension {res.dimension} ({names[res.dimension]}): {_among(res)} it tracks the "
            f"{quantity} estimate best (|Spearman| {abs(rho[res.dimension]):.3f}).")


def _among(res) -> str:
    """Which axes the binned dimension was chosen from."""
    if res.stability is None:
        return "of all dimensions"
    if res.stability.reproducible.any():
        return f"of the axes that came back in all {len(res.stability.seeds)} seeds"
    return f"of all dimensions (none came back in all {len(res.stability.seeds)} seeds)"


def _second_choice(res) -> str:
    """What the check's other fits bin when they choose the same way, as a sentence (empty without the check)."""
    from .validate._stability import against

    if res.choice_agreement is None:
        return ""
    rho, threshold = res.choice_agreement, res.stability.threshold
    said = f"(|Spearman| {against(rho, threshold)})"
    if res.binned_direction:
        return (" The fit with another seed gives its own direction, which orders the particles like this one "
                + said + ("." if rho >= threshold else f": below {threshold:g}, so the axis is unconfirmed."))
    return (" The fit with another seed, choosing the same way, bins an axis that orders the particles like it "
            + said + ("." if rho >= threshold else f": below {threshold:g}, so the choice is unconfirmed."))


def _say(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _check_before_fit(args, particles):
    """Everything that can be checked before the (long) fit; raises ValueError."""
    from ._diagnostics import check_bins
    from ._input import as_particles

    p = as_particles(particles, min_particles=2, what="the particles")
    check_bins(p.n_particles, args.n_bins)
    if args.estimate in ("height", "tetrahedron", "pore") and p.n_dims != 3:
        raise ValueError(f"--estimate {args.estimate} needs 3D particles; these are {p.n_dims}D. Use --estimate radius.")
    if args.symmetry is not None and args.symmetry < 2:
        raise ValueError(f"--symmetry must be 2 or more (the order of the structure's rotational symmetry); got "
                         f"{args.symmetry}. Leave it out for none.")
    if args.register and p.n_dims == 3 and args.symmetry is None:
        raise ValueError("--register needs --symmetry with 3D particles (8 for nuclear pores): only an imposed "
                         "symmetry turns the fused model so that the structure's axis is z, where the radius and "
                         "height are measured.")
    args.sample_ratios = _sample_ratios(args.sample_ratios) if isinstance(args.sample_ratios, str) else args.sample_ratios
    return p


def _fuser(args, **params):
    """The ParticleFuser of every fusion of a run: ``--symmetry`` imposed, on the multiple of it at or above the
    default number of centres."""
    from .fuse import ParticleFuser

    if args.symmetry is None:
        return ParticleFuser(**params)
    n, default = args.symmetry, ParticleFuser().n_components
    return ParticleFuser(n_components=n * -(-default // n), symmetry=n, **params)


def _registered(args, p):
    """``--register``: every particle turned and shifted onto one fused model of them all, fields kept; and what
    the fuser warned of."""
    t = time.perf_counter()
    _say(args, f"pcvae: registering the {p.n_particles} particles onto one fused model (--register)")
    registered, said = _with_warnings(lambda: _fuser(args, random_state=args.seed).fit_transform(p.to_awkward()))
    _say(args, f"pcvae: registered in {time.perf_counter() - t:.0f} s")
    return registered, [f"the registration (--register): {w}" for w in said]


def _with_warnings(step):
    """``step()``'s result and the messages of the UserWarnings it issued, each once, in order."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = step()
    return result, list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))


def _precision_read(p) -> str:
    """Which precision fields the run reads, in words (the data's own, or none: nothing is assumed)."""
    if "precision" not in p.fields:
        axial = " ('precision_z' alone is not read)" if "precision_z" in p.fields else ""
        return (f"none in the data{axial}; none is assumed: the fusion and the null estimate the spread from the "
                "localizations")
    medians = f"median {np.nanmedian(p.fields['precision']):.3g} nm"
    if p.n_dims == 2:
        return f"'precision' read ({medians})"
    if "precision_z" in p.fields:
        return f"'precision' read ({medians}, 'precision_z' median {np.nanmedian(p.fields['precision_z']):.3g} nm)"
    return f"'precision' read ({medians}); no 'precision_z': the axial precision is not assumed, the fusion estimates it"


def _after_registering(res) -> None:
    """With ``--register`` the estimators' remedy, registering, was taken already: where they still find the
    particles turned, their warnings and the verdict say that it did not put them upright."""
    from .workflow import REGISTER_FIRST

    def advises_registering(message):
        return "register rotated particles" in message or "ParticleFuser(symmetry=" in message

    res.warnings = [w + " These particles were registered first (--register), and that did not put them upright: "
                    "check --symmetry, or read the bins by their super-particles." if advises_registering(w) else w
                    for w in res.warnings]
    if res.heterogeneity is not None and res.heterogeneity["verdict"].endswith(REGISTER_FIRST):
        res.heterogeneity["verdict"] = res.heterogeneity["verdict"][: -len(REGISTER_FIRST)] + ", even after --register"


def _null_fuser(args, n_dims):
    """The fuser of the null's template with ``--symmetry``: analyse's default template fuser, the symmetry imposed."""
    from .validate._trend import TEMPLATE_MAX_ITER, TEMPLATE_RESTARTS

    return _fuser(args, n_restarts=TEMPLATE_RESTARTS[n_dims], max_iter=TEMPLATE_MAX_ITER)


def _run(args, particles, truth=None, source="", reading=None):
    from . import __version__
    from .workflow import analyse

    out: Path = args.out
    # what converting the input says joins the run's warnings
    p, converting = _with_warnings(lambda: _check_before_fit(args, particles))
    out.mkdir(parents=True, exist_ok=True)
    registration = []
    if args.register:
        particles, registration = _registered(args, p)
    vae = _vae(args)
    _say(args, f"pcvae: {p.n_particles} particles ({p.n_dims}D, {p.lengths.min()}-{p.lengths.max()} localizations each) from {source}")
    reading = {**(reading or {}), "precision": _precision_read(p)}
    _say(args, f"pcvae: precision: {reading['precision']}")
    _say(args, f"pcvae: fitting {vae!r}, then binning" + ("" if args.no_fusion else f" and fusing {args.n_bins} bins (the longest step)"))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True):  # analyse's warnings are in res.warnings, printed once below
        warnings.simplefilter("always")
        res = analyse(
            particles,
            vae=vae,
            estimate=args.estimate,
            n_bins=args.n_bins,
            fuse=not args.no_fusion,
            fuser=None if args.symmetry is None else _fuser(args),
            null_fuser=None if args.symmetry is None else _null_fuser(args, p.n_dims),
            n_jobs=args.n_jobs,
            random_state=args.seed,
            axis=args.axis,
            unmix=UNMIX[args.unmix],
            unmix_components=args.unmix_components,
            null=not args.no_null,
            n_null=args.n_null,
            n_seeds=args.stability_seeds,
        )
    if args.register:
        _after_registering(res)
    res.warnings[:0] = [w for w in converting if w not in res.warnings] + registration
    _say(args, "pcvae: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items()))
    cautions = [_with_pixel_size(for_command_line(w), getattr(args, "pixel_size", None)) for w in res.warnings]
    for message in cautions:
        print(f"pcvae: warning: {message}", file=sys.stderr, flush=True)
    read = [f"reading the file: {w}" for w in (reading or {}).pop("warnings", [])]  # printed when read
    res.warnings[:0] = read
    cautions[:0] = [for_command_line(w) for w in read]
    import pandas as pd

    latents = pd.DataFrame(res.latents, columns=res.feature_names)
    if p.ids is not None:  # the row is the particle's place in the file's order; this is the file's own id
        latents.insert(0, "particle_id", p.ids)
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
    unmixer = res.latent_unmixer
    if unmixer is not None:  # the ic* columns of latents.csv: LatentUnmixer.load(...).transform(the VAE's latents)
        unmixer.save(out / "unmixer.npz")
    if res.fusion is not None:
        table = res.fusion.to_dataframe()
        if p.ids is not None and "particle" not in p.fields:  # (a field of the data's own name keeps its values)
            table["particle_id"] = p.ids[table["particle"].to_numpy()]
        table.to_parquet(out / "super_particles.parquet", index=False)
    settings = {
        "command": " ".join(sys.argv),
        "source": str(source),
        "reading": reading or {},
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in res.vae.get_params().items()},
        "n_bins": args.n_bins,
        "estimate": args.estimate,
        "axis": args.axis,
        "direction": None if res.direction is None else {
            "column": str(res.feature_names[-1]),
            "fitted_on": [str(n) for n in res.feature_names[:-1]],
            "coef": res.direction.coef_.tolist(),
            "intercept": res.direction.intercept_,
            "cross_fitted_r": res.direction.score_,
        },
        "unmix": UNMIX[args.unmix],
        "unmix_components": args.unmix_components,
        "unmixer": None if unmixer is None else "unmixer.npz",
        "symmetry": args.symmetry,
        "register": args.register,
        "dimension": res.dimension,
        "orientation": res.orientation,
        "null": res.heterogeneity if res.heterogeneity is not None else "skipped (--no-null)",
        "choice_agreement": res.choice_agreement,
        "stability": ("off (--stability-seeds 1)" if res.stability is None
                      else res.stability.to_frame().to_dict(orient="records")),
        "intervals": {
            "ci_low/ci_high": "95% percentile bootstrap over each bin's particles, of the median per-particle estimate",
            "super_particle precision": "FWHM/sqrt(n), localization-level: counts localizations as independent",
        },
        "warnings": cautions,
        "seconds": res.seconds,
        "versions": _versions(__version__),
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    _say(args, f"pcvae: tables and model written in {time.perf_counter() - t0:.0f} s")
    figures, note = ({}, "figures skipped (--no-figures)") if args.no_figures else _figures(args, res, particles, out)
    settings["figures"] = sorted(figures)
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    from .show import write_report

    write_report(out / "report.html", res, figures=figures, settings=settings, note=note,
                 truth_summary=_truth_summary(res, truth), warnings=cautions)
    _print_summary(res, truth, time.perf_counter() - t0, out, cautions)
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

    ratios = args.sample_ratios
    jobs = [
        ("training_curves", "training curves", lambda: show.TrainingCurveDisplay.from_results(res)),
        ("latent_scatter", "latent against estimate", lambda: show.LatentScatterDisplay.from_results(res)),
        ("latent_embedding", "PCA of the latents", lambda: show.LatentEmbeddingDisplay.from_results(res)),
        ("bin_violin", "per-bin violins", lambda: show.BinViolinDisplay.from_results(res)),
    ]
    if res.stability is not None:
        jobs.append(("axis_stability", "latent axes against the estimates, seed by seed",
                     lambda: show.AxisStabilityDisplay.from_results(res)))
    if res.fusion is not None:
        jobs.append(("bin_row", "super-particles of every bin", lambda: show.BinRowDisplay.from_results(res)))
    if not args.no_grid and res.fusion is not None:
        n_dims = res.latents.shape[1]
        shown = show.default_bins(args.n_bins)
        jobs.append((
            "super_particle_grid",
            f"super-particle grid (fusing bins {', '.join(map(str, shown))} along each of {n_dims} latent dimensions, "
            "one restart each)",
            lambda: show.SuperParticleGridDisplay.from_results(
                res, particles, fuser=_fuser(args, n_restarts=1), register_bins=False, n_jobs=args.n_jobs,
                random_state=args.seed
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


def _truth_rows(res, truth):
    """(name, best dimension, its |Spearman|, the binned dimension's |Spearman|) per true parameter."""
    from scipy.stats import spearmanr

    rows = []
    for name in ("radius", "height"):
        if truth is not None and name in truth.dtype.names:
            rho = np.array([abs(spearmanr(res.latents[:, j], truth[name])[0]) for j in range(res.latents.shape[1])])
            best = int(np.nanargmax(rho))
            rows.append((name, best, float(rho[best]), float(rho[res.dimension])))
    return rows


def _truth_summary(res, truth):
    summary = {}
    for name, best, rho_best, rho_binned in _truth_rows(res, truth):
        summary[f"best latent |Spearman| with the true {name} (simulation only)"] = (
            f"{rho_best:.3f} (dimension {best}); the binned dimension {res.dimension}: {rho_binned:.3f}"
        )
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


def _with_pixel_size(message: str, pixel_size) -> str:
    """A units warning that also names the --pixel-size the user gave (nm per pixel: 130, not 0.13)."""
    if pixel_size is None or "median RMS radius" not in message:
        return message
    return (f"{message} --pixel-size {pixel_size:g} was given: it is nm per camera pixel (130 for a 130 nm pixel, "
            "not 0.13), and files in nm need none.")


def _fixed_table(frame) -> str:
    """A table as printed: three decimals everywhere (pandas' own format turns a whole column to 1e-05 notation
    for one tiny value)."""
    return frame.to_string(index=False, float_format="{:.3f}".format)


def _print_summary(res, truth, seconds, out, cautions=()):
    from scipy.stats import spearmanr

    from .estimate._names import quantity_name

    quantity = quantity_name(res.estimate_name, res.estimator)
    rho = res.correlations["spearman_rho"].to_numpy()
    print(f"Correlation of every latent dimension with the per-particle {quantity} estimate:")
    print(_fixed_table(res.correlations[["latent", "estimate", "pearson_r", "spearman_rho"]]))
    print()
    flipped = " Its sign was flipped (orientation -1) so that" if res.orientation < 0 else " Oriented so that"
    print(f"{_binned(res, quantity, rho)}{flipped} the estimate grows from bin 1 to bin {len(res.bin_table)}."
          f"{_second_choice(res)}")
    print(_fixed_table(res.bin_table))
    for name, best, rho_best, rho_binned in _truth_rows(res, truth):
        print(f"\nAgainst the TRUE {name} (known in simulations only): dimension {best} tracks it best "
              f"(|Spearman| {rho_best:.3f}); the binned dimension {res.dimension} gives {rho_binned:.3f}.")
    col = [c for c in res.bin_table.columns if c.startswith("super_particle_") and "precision" not in c]
    if col:
        rho_bins = spearmanr(res.bin_table["bin"], res.bin_table[col[0]])[0]
        print(f"Spearman of the bin number with the super-particle's {quantity}: {rho_bins:+.3f}")
    if res.stability is not None:
        print(f"\nAxes across {len(res.stability.seeds)} seeds:")
        for line in res.stability.describe():
            print(f"  {line}")
    if res.heterogeneity is not None:
        h = res.heterogeneity
        from .validate._trend import _digits

        n = len(res.bin_table)
        digits = _digits(h["rise"], h["detectable_rise"], 2)  # enough to tell the rise from the one called
        print(f"\nMatched null ({h['n_replicates']} sets of homogeneous twins): the line fitted to the bins' median "
              f"{quantity} rises by {h['rise']:.{digits}f} nm over the {n} bins (its slope times {n - 1}); the "
              f"twins' by {h['null_rise_mean']:.2f} ± {h['null_rise_sd']:.2f} nm; a rise above "
              f"{h['detectable_rise']:.{digits}f} nm would be called.")
        print(f"Verdict: {h['verdict']}")
    else:
        print("\nVerdict: none (the null was skipped, --no-null): the per-bin trend alone cannot tell heterogeneity "
              "from selection on noise.")
    if cautions:
        print("\nWarnings (also in report.html):")
        for message in cautions:
            print(f"  - {message}")
    names = ["report.html", "latents.csv", "correlations.csv", "bins.csv", "super_particles.parquet", "model.pt",
             "unmixer.npz", "settings.json"]
    written = [n for n in names if (out / n).exists()] + (["*.png"] if any(out.glob("*.png")) else [])
    print(f"\nDone in {seconds:.0f} s; results in {out}/ ({', '.join(written)})")


def _read(args):
    """(particles, what was used to read them and what the reader warned of) from ``pcvae run``'s options."""
    from .io import picasso_pixel_size, read_particles, sniff_format

    options, reading = {}, {}
    if args.pixel_size is not None:
        if not args.pixel_size > 0:
            raise ValueError(f"--pixel-size must be positive (nm per camera pixel); got {args.pixel_size}.")
        options["pixel_size"] = args.pixel_size
    if args.unit is not None:
        options["unit"] = args.unit
    if args.particle_column is not None:
        options["particle_column"] = args.particle_column
    if args.picks is not None:
        try:
            options["picks"] = np.loadtxt(args.picks, delimiter=",", ndmin=2, dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--picks {args.picks}: expected one 'x,y' pick centre in nm per line ({exc}).") from None
        if options["picks"].shape[1] != 2:
            raise ValueError(f"--picks {args.picks}: expected 2 columns (x, y in nm); found {options['picks'].shape[1]}.")
    if args.pick_radius is not None:
        options["pick_radius"] = args.pick_radius
    if args.n_dims is not None:
        options["n_dims"] = args.n_dims
    if args.variable is not None:
        options["variable"] = args.variable
    fmt = args.format
    if args.sep is not None:
        if args.format not in (None, "csv"):
            raise ValueError(f"--sep is for CSV files; the {args.format!r} reader does not take it.")
        options["sep"] = args.sep.encode().decode("unicode_escape")  # "\t" typed on the command line is a tab
        fmt = "csv"
    particles, said = _with_warnings(lambda: read_particles(args.input, format=fmt, **options))
    for message in said:  # said now, in the flags' words: a later error may need them
        print(f"pcvae: warning: {for_command_line(message)}", file=sys.stderr, flush=True)
    reading["warnings"] = said
    fmt = fmt or sniff_format(args.input)
    reading.update({"format": fmt if args.format or args.sep else f"{fmt} (detected)",
                    **{k: v for k, v in options.items() if k != "picks"}})
    if fmt == "picasso" and args.pixel_size is None:
        reading["pixel_size"] = f"{picasso_pixel_size(Path(args.input)):g} (from the Picasso YAML sidecar)"
    if args.picks is not None:
        reading["picks"] = f"{len(options['picks'])} pick centres from {args.picks}"
    return particles, reading


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("pcvae_sklearn").addHandler(logging.NullHandler())
    if args.out.exists() and not args.out.is_dir():
        print(f"pcvae: error: --out {args.out} is a file; name a folder (it is created if it does not exist).",
              file=sys.stderr)
        return 2
    if args.out.is_dir() and any(args.out.iterdir()):
        held = sorted(p.name for p in args.out.iterdir())
        print(f"pcvae: error: --out {args.out} already holds files ({', '.join(held[:3])}"
              f"{', ...' if len(held) > 3 else ''}); a run writes into a new or empty folder, so that no file of an "
              "earlier run passes for one of this run. Choose another --out, or empty that folder.", file=sys.stderr)
        return 2
    created = not args.out.exists()
    previous = _exit_on_sigterm()
    try:
        if args.command == "demo":
            from .datasets import make_npc_2d

            particles, truth = make_npc_2d(args.n_particles, random_state=args.seed)
            return _run(args, particles, truth, source=f"make_npc_2d({args.n_particles}, random_state={args.seed})",
                        reading={"units": "nm (simulated)"})
        particles, reading = _read(args)
        return _run(args, particles, source=args.input, reading=reading)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"pcvae: error: {for_command_line(str(exc))}", file=sys.stderr)
        return 2
    finally:
        if created and args.out.exists() and not (args.out / "report.html").exists():
            shutil.rmtree(args.out)  # a failed run leaves nothing behind (the folder was made by this run)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm():
    """Make SIGTERM (a killed job, a closed session) end the run like an error, so that its folder is removed.

    Returns the handler it replaced, or None where none could be set (not the main thread).
    """
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # signal handlers can only be set from the main thread
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
