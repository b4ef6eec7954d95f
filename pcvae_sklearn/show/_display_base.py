"""Display objects for the paper's figures, in scikit-learn's style.

Every Display holds the data of its figure (computed without matplotlib by
``from_estimator`` or ``from_results``) and draws it with ``plot(ax=None)``,
which sets ``ax_`` and ``figure_`` and returns the Display, as
:class:`sklearn.metrics.PredictionErrorDisplay` does. matplotlib is imported
only inside ``plot`` (``pip install pcvae-sklearn[plot]``).

This module holds what every Display shares; the figures are in
``_super_particle_displays`` (super-particles) and ``_latent_displays``
(latents and estimates).
"""

from __future__ import annotations

import numpy as np

from ._render import render_projections, scale_bar_length

_PLOT_EXTRA = "pip install 'pcvae-sklearn[plot]'"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"plotting needs matplotlib: {_PLOT_EXTRA} (or pip install matplotlib).") from exc
    return plt


def _figure_and_axes(ax, figsize):
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def _feature_names(vae, k):
    try:
        return [str(n) for n in vae.get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        return [f"pcvae{j}" for j in range(k)]


def _pretty(name: str) -> str:
    """'radius_nm' -> 'radius (nm)'."""
    return f"{name[:-3].replace('_', ' ')} (nm)" if name.endswith("_nm") else name.replace("_", " ")


def _estimated(name: str) -> str:
    """'radius_nm' -> 'estimated radius (nm)': what the axis of a per-particle estimate shows."""
    return f"estimated {_pretty(name)}"


def _encode_and_bin(vae, X, estimate, dimension, n_bins):
    """Encode particles with a fitted model, estimate them and bin along one dimension.

    Returns (particles, latents, estimates (n, 2), estimate name, dimension, bins 1..n_bins).
    """
    from .._input import as_particles
    from ._data import estimate_particles

    p = as_particles(X, min_particles=2 * n_bins)
    Z = vae.transform(p)
    values, name = estimate_particles(estimate, p)
    dimension, _, bins = _bins_along(Z, values[:, 0], dimension, n_bins)
    return p, Z, values, name, dimension, bins


def _bins_along(latents, estimate, dimension, n_bins):
    """(dimension, orientation, bins 1..n_bins) as :func:`pcvae_sklearn.analyse` makes them."""
    from ..bin import bin_along_axis

    axis = bin_along_axis(latents, estimate, dimension=dimension, n_bins=n_bins)
    return axis.dimension, axis.orientation, axis.bins


# ----------------------------------------------------------------- mosaics
def _tiles(super_particles, pixel_size, blur, extent):
    """Normalised images (n, rows, cols) of every super-particle: xy, and xz beside it in 3D."""
    renders = render_projections(super_particles, pixel_size=pixel_size, blur=blur, extent=extent)
    parts = [r.normalised() for r in renders.values()]
    ref = renders["xy"]
    if len(parts) == 1:
        return parts[0], ref, ("xy",)
    n, h, _ = parts[0].shape
    sep = np.full((n, h, 1), np.nan)
    return np.concatenate([parts[0], sep, parts[1]], axis=2), ref, tuple(renders)


def _mosaic(tiles, n_rows, n_cols, gap=2):
    """Tiles (n_rows * n_cols, h, w), row-major, into one image with NaN gaps; tiles flipped for origin='upper'."""
    _, h, w = tiles.shape
    out = np.full((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap), np.nan)
    for k, tile in enumerate(tiles):  # a few dozen tiles
        r, c = divmod(k, n_cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile[::-1]
    return out


def _draw_mosaic(ax, mosaic, cmap):
    import matplotlib as mpl

    cm = mpl.colormaps[cmap].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest", origin="upper")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


def _mosaic_scale_bar(ax, x_right, y_bottom, tile_w, pixel_size, width_nm, fontsize=7):
    """A scale bar in the lower right corner of a tile of a mosaic (pixel coordinates)."""
    length = scale_bar_length(width_nm, fraction=0.3)
    n_px = length / pixel_size
    x1 = x_right - 0.06 * tile_w
    y = y_bottom - 0.08 * tile_w
    ax.plot([x1 - n_px, x1], [y, y], color="white", linewidth=2.0, solid_capstyle="butt")
    ax.text(x1 - n_px / 2, y - 0.03 * tile_w, f"{length:g} nm", color="white", ha="center", va="bottom", fontsize=fontsize)
    return length


class _Display:
    """Common bits: repr and the matplotlib check."""

    def __repr__(self):
        return f"{type(self).__name__}()"




_TREND_KEYS = ("medians", "ci_low", "ci_high", "null_low", "null_high")


def _trend_from_table(table) -> dict:
    """The per-bin median, its bootstrap interval and the null band from a ``bin_table`` (absent columns: None)."""
    med = [c for c in table.columns if str(c).startswith("particle_median_")]
    cols = {"medians": med[0] if med else None, "ci_low": "ci_low", "ci_high": "ci_high", "null_low": "null_low",
            "null_high": "null_high"}
    return {k: (table[c].to_numpy(dtype=np.float64) if c is not None and c in table.columns else None)
            for k, c in cols.items()}


def _check_trend(n_bins: int, trend: dict) -> dict:
    """Arrays of length ``n_bins`` (or None); ``ci_*`` and ``null_*`` come in pairs."""
    out = {}
    for k in _TREND_KEYS:
        v = trend.get(k)
        if v is not None:
            v = np.asarray(v, dtype=np.float64).ravel()
            if v.shape != (n_bins,):
                raise ValueError(f"{k} has {v.size} values for {n_bins} bins.")
        out[k] = v
    for a, b in (("ci_low", "ci_high"), ("null_low", "null_high")):
        if (out[a] is None) != (out[b] is None):
            raise ValueError(f"{a} and {b} must be given together.")
    if out["ci_low"] is not None and out["medians"] is None:
        raise ValueError("ci_low / ci_high need the per-bin medians they belong to (medians).")
    return out


def _draw_trend(ax, trend: dict, *, bins=None, super_estimates=None, super_precisions=None):
    """Shade the null band and draw the per-bin medians with their bootstrap intervals on ``ax``."""
    given = [v for v in (*trend.values(), super_estimates) if v is not None]
    if not given:
        return
    x = np.arange(1, len(given[0]) + 1) if bins is None else np.asarray(bins, dtype=np.float64)
    if trend.get("null_low") is not None:
        ax.fill_between(x, trend["null_low"], trend["null_high"], color="0.55", alpha=0.3, linewidth=0,
                        label="matched null, 95 % band")
    if trend.get("medians") is not None:
        if trend.get("ci_low") is not None:
            yerr = np.vstack([trend["medians"] - trend["ci_low"], trend["ci_high"] - trend["medians"]])
            ax.errorbar(x, trend["medians"], yerr=np.maximum(yerr, 0.0), fmt="s", color="k", markersize=3, capsize=2,
                        label="median per particle, 95 % bootstrap over particles")
        else:
            ax.plot(x, trend["medians"], "s", color="k", markersize=3, label="median per particle")
    if super_estimates is not None:
        ax.errorbar(x + 0.15, super_estimates, yerr=super_precisions, fmt="o", color="C3", markersize=3, capsize=2,
                    label="super-particle ± FWHM/√n (localization-level)")
