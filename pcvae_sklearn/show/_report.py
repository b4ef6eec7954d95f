"""One self-contained HTML report of a workflow run (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

__all__ = ["write_report"]

_CAPTIONS = {
    "super_particle_grid": "Super-particles of bins 1, 5, 10, 15 and 20 along every latent dimension (paper Figs. 2, 7, 9). "
    "A dimension that encodes a structural change shows it as a steady change along its row; numbers are the "
    "super-particle estimates (nm).",
    "bin_row": "The super-particles of all bins along the chosen latent dimension, each with its estimate and "
    "the localization-level precision FWHM/sqrt(n), which counts localizations as independent and so understates "
    "the uncertainty (paper Figs. 5, 8, 10, 11). The profile underneath: the median per-particle estimate with its "
    "95% bootstrap interval over the bin's particles (black), the super-particle ± FWHM/sqrt(n) (red) and the band "
    "that homogeneous twins of the data produce when binned the same way (grey).",
    "latent_scatter": "Every latent dimension against the per-particle estimate, with Pearson r and Spearman rho "
    "(paper Figs. 3, 12).",
    "bin_violin": "Per-particle estimate in every bin along the chosen dimension (paper Fig. 4); black: the median "
    "with its 95% bootstrap interval over the bin's particles; red: the super-particle estimate with its "
    "localization-level precision FWHM/sqrt(n); grey: the matched null's band, where the median curve of homogeneous "
    "twins lies.",
    "sample_ratio": "Robustness: |correlation| of the latent dimensions with the estimate when only a fraction of "
    "every particle's localizations is kept and the particles are encoded again (paper Fig. 6).",
    "training_curves": "Training curves: the Chamfer reconstruction term, the total training loss (Chamfer + beta KL "
    "+ the latent penalties) and the KL divergence per epoch.",
    "latent_embedding": "The latents projected on their first two principal components, coloured by the "
    "per-particle estimate.",
}
_ORDER = ("super_particle_grid", "bin_row", "latent_scatter", "bin_violin", "sample_ratio", "training_curves",
          "latent_embedding")

_NULL_NOTE = (
    "The verdict compares the rise of the median per-bin estimate with the rises of homogeneous twins of the data "
    "(one fused structure; each particle's own count, labelling pattern, precisions, pose and bursts of one dye, "
    "with every dye moved to its site and displaced as the data's dyes are: linkage error included), encoded by "
    "the same model and binned the same way. The twins do not carry a structure that deforms rather than varies, "
    "or a pick that holds two particles; a flaw of that kind can pass for heterogeneity. Where the structure "
    "varies, part of the variation reaches the twins as noise, so a weak variation can go undetected. "
    "ci_low / ci_high: 95% bootstrap interval of the median per-particle estimate over the bin's particles. "
    "The super-particle precision is FWHM/sqrt(n), localization-level: it counts localizations as independent."
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 2px 8px; text-align: right; }
tr:nth-child(even) { background: #f4f4f4; } th { background: #e4e4e4; }
figure { margin: 1.5em 0; } img { max-width: 100%; } figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 1em; font-size: 0.8em; overflow-x: auto; }
.note { background: #fff4d6; padding: 0.6em 1em; border-left: 4px solid #e0a800; }
.verdict { font-size: 1.1em; padding: 0.6em 1em; border-left: 4px solid #888; background: #f0f0f0; }
.verdict.detected { border-color: #1a7f37; } .verdict.none { border-color: #888; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _p_value(v) -> str:
    """A p-value as a reader wants it: 0.041, 3.2e-07, never 0.000."""
    return "nan" if v != v else (f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}")


def _table(df, precision=3) -> str:
    """A DataFrame as HTML: p-value columns (``*_p``) in scientific notation below 0.001."""
    formatters = {c: _p_value for c in df.columns if str(c).endswith("_p") or str(c) == "p_value"}
    return df.to_html(index=False, formatters=formatters, border=0,
                      float_format=lambda v: f"{v:.{precision}g}" if abs(v) < 1e-3 and v else f"{v:.{precision}f}")


def _estimate_label(result) -> str:
    """The estimate's column, with what a pore's height measures: ``"height_nm (ring distance)"``."""
    from ..estimate._names import quantity_name

    name = result.estimate_name
    said = quantity_name(name, getattr(result, "estimator", None))
    return f"{name} (ring distance)" if said.startswith("ring distance") else name


def _axes_kind(result) -> str:
    unmixer = getattr(result, "latent_unmixer", None)
    if unmixer is None:
        return "the VAE's own axes"
    if unmixer is not result.unmixer:  # analyse(unmix="both"): the axes, then their components
        return (f"the VAE's own axes and, beside them, the independent components (LatentUnmixer) of the latent's "
                f"top {unmixer.n_components_} principal directions")
    what = ("the active latent dimensions" if unmixer.n_components is None
            else f"the latent's top {unmixer.n_components_} principal directions")
    return f"independent components (LatentUnmixer) of {what}"


def _bins_along(result, names) -> str:
    if getattr(result, "binned_direction", False):
        what = (f"{names[result.dimension]}, the latent direction that predicts the estimate (cross-fitted: every "
                "particle's value from the other particles' fit)")
    else:
        what = f"dimension {result.dimension} ({names[result.dimension]}), " + (
            "as given" if getattr(result, "dimension_given", False) else "the one that tracks the estimate best"
            + (" among the axes that come back with another seed" if _chosen_among_reproducible(result) else ""))
    return what + (", sign flipped so that the estimate grows from bin 1 to bin n" if result.orientation < 0 else "")


def _chosen_among_reproducible(result) -> bool:
    stability = getattr(result, "stability", None)
    return stability is not None and bool(stability.reproducible.any())


def write_report(path, result, *, figures=None, settings=None, note="", truth_summary=None, warnings=None):
    """Write ``report.html``: summary, figures (embedded), correlation and bin tables, settings and versions.

    Parameters
    ----------
    path : str or Path
        The HTML file to write.
    result : WorkflowResult
    figures : dict of str to Path, optional
        PNG files by figure name (``"super_particle_grid"``, ``"bin_row"``, ...).
    settings : dict, optional
        Shown as JSON; its ``"versions"`` entry is shown as a table.
    note : str, optional
        A highlighted note (e.g. that figures need matplotlib).
    truth_summary : dict, optional
        Lines comparing with simulated ground truth.
    warnings : list of str, optional
        Shown in a highlighted box under the summary; default
        ``result.warnings``.

    Returns
    -------
    Path
    """
    from scipy.stats import spearmanr

    figures = dict(figures or {})
    settings = dict(settings or {})
    names = result.feature_names
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>pcvae report</title>",
             f"<style>{_STYLE}</style></head><body>", "<h1>PC-VAE analysis report</h1>"]
    heterogeneity = getattr(result, "heterogeneity", None)
    if heterogeneity is not None:
        kind = "detected" if heterogeneity["detected"] else "none"
        parts.append(f'<p class="verdict {kind}"><b>Verdict:</b> {html.escape(heterogeneity["verdict"])}</p>')
        parts.append(f"<p style='font-size:0.85em;color:#444'>{html.escape(_NULL_NOTE)}</p>")
    else:
        parts.append('<p class="verdict none"><b>Verdict:</b> none: the matched null was not run, so the per-bin '
                     "trend alone cannot tell heterogeneity from selection on noise.</p>")
    summary = {
        "source": settings.get("source", ""),
        "particles": len(result.latents),
        "latent dimensions": result.latents.shape[1] - (getattr(result, "direction", None) is not None),
        "latent axes": _axes_kind(result),
        "estimate": _estimate_label(result),
        "bins along": _bins_along(result, names),
    }
    reading = settings.get("reading")
    if reading:
        summary["read with"] = ", ".join(f"{k.replace('pixel_size', 'pixel size (nm)')} {v}" for k, v in reading.items())
    if settings.get("register"):
        summary["registered first"] = "every particle onto one fused model of them all (--register)"
    col = [c for c in result.bin_table.columns if c.startswith("super_particle_") and "precision" not in c]
    if col:
        rho = spearmanr(result.bin_table["bin"], result.bin_table[col[0]])[0]
        summary["Spearman of the bin number with the super-particle estimate"] = f"{rho:+.3f}"
    if heterogeneity is not None:
        summary["rise of the median estimate, bin 1 to bin n (data; twins; the smallest the null calls)"] = (
            f"{heterogeneity['rise']:.2f}; {heterogeneity['null_rise_mean']:.2f} ± {heterogeneity['null_rise_sd']:.2f} "
            f"over {heterogeneity['n_replicates']} twin sets (p = {_p_value(heterogeneity['p_value'])}); "
            f"{heterogeneity['detectable_rise']:.2f}")
    if "n_flagged" in result.bin_table.columns:
        summary["particles flagged by their bin's fusion (registration score 3.5 robust SD below the bin's median)"] = (
            f"{int(result.bin_table['n_flagged'].sum())} of {len(result.latents)}")
    stability = getattr(result, "stability", None)
    if stability is not None:
        good = [str(n) for n, ok in zip(stability.feature_names, stability.reproducible) if ok]
        summary[f"axes that come back in all {len(stability.seeds)} seeds (|Spearman| >= {stability.threshold:g})"] = (
            ", ".join(good) if good else "none")
        agreement = getattr(result, "choice_agreement", None)
        if agreement is not None and getattr(result, "binned_direction", False):
            summary["the latent direction against the other seeds' fits' own directions (smallest |Spearman|)"] = (
                f"{agreement:.2f}" + (f" (below {stability.threshold:g}: the axis does not come back)"
                                      if agreement < stability.threshold else ""))
        elif agreement is not None:
            summary["the binned axis against the one the same choice bins in the other seeds' fits (smallest "
                    "|Spearman|)"] = f"{agreement:.2f}" + (f" (below {stability.threshold:g}: the choice does not come back)"
                                                           if agreement < stability.threshold else "")
    summary.update(truth_summary or {})
    summary.update({f"seconds: {k}": f"{v:.1f}" for k, v in result.seconds.items()})
    parts.append("<table>" + "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
                                      f"{html.escape(str(v))}</td></tr>" for k, v in summary.items()) + "</table>")
    cautions = list(getattr(result, "warnings", []) if warnings is None else warnings)
    if cautions:
        parts.append('<div class="note"><b>Warnings</b><ul>' + "".join(f"<li>{html.escape(w)}</li>" for w in cautions)
                     + "</ul></div>")
    if stability is not None:
        parts.append("<h2>Axes across seeds</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>"
                                                                for line in stability.describe()) + "</ul>")
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    if figures:
        parts.append("<h2>Figures</h2>")
        for name in sorted(figures, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
            caption = _CAPTIONS.get(name, name.replace("_", " "))
            parts.append(f"<figure>{_img(figures[name])}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Correlation of every latent dimension with the estimate</h2>")
    parts.append(_table(result.correlations))
    parts.append(f"<h2>Bins along {html.escape(str(names[result.dimension]))}</h2>")
    parts.append(_table(result.bin_table))
    versions = settings.pop("versions", None)
    if versions:
        parts.append("<h2>Versions</h2><table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in versions.items()) + "</table>")
    parts.append("<h2>Settings</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
