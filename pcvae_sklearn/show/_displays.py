"""Display objects for the paper's figures, in scikit-learn's style.

Every Display holds the data of its figure (computed without matplotlib by
``from_estimator`` or ``from_results``) and draws it with ``plot(ax=None)``,
which sets ``ax_`` and ``figure_`` and returns the Display, as
:class:`sklearn.metrics.PredictionErrorDisplay` does. matplotlib is imported
only inside ``plot`` (``pip install pcvae-sklearn[plot]``).
"""

from __future__ import annotations

import numpy as np

from .._ragged import as_particles
from ._data import (
    check_latents,
    estimate_particles,
    latent_orientation,
    sample_ratio_correlations,
    super_particle_grid,
)
from ._render import render_projections, scale_bar_length

__all__ = [
    "SuperParticleGridDisplay",
    "BinRowDisplay",
    "LatentScatterDisplay",
    "BinViolinDisplay",
    "SampleRatioDisplay",
    "TrainingCurveDisplay",
    "LatentEmbeddingDisplay",
]

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


# ------------------------------------------------------------ (a) the grid
class SuperParticleGridDisplay(_Display):
    """Super-particles of bins 1, 5, 10, 15 and 20 along every latent dimension.

    The paper's overview figure (Haghparast, Zhang et al. 2025, Figs. 2, 7
    and 9): one row per latent dimension, one column per bin; a dimension
    that encodes a structural change shows it as a steady change along its
    row. 3D super-particles are shown as xy and xz projections side by side.

    Parameters
    ----------
    super_particles : awkward array or list of (n_i, d) arrays
        ``len(dimensions) * len(bins)`` super-particles, dimension-major.
    dimensions : sequence of int
        The latent dimensions (rows).
    bins : sequence of int
        The bins (columns), 1-based.
    n_bins : int
        Number of bins the particles were cut into.
    feature_names : list of str, optional
        Names of all latent dimensions (default ``pcvae0, ...``).
    estimates : ndarray of shape (len(dimensions), len(bins)), optional
        The estimate of every super-particle, written on its tile.
    estimate_name : str, optional

    Attributes
    ----------
    mosaic_ : ndarray of shape (height, width)
        The tiles in one image (NaN between tiles), set by :meth:`plot`.
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure

    See Also
    --------
    BinRowDisplay : All bins along one dimension.
    pcvae_sklearn.show.render_particles : The rendering of every tile.

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025), Figs. 2, 7 and 9.
    """

    def __init__(self, *, super_particles, dimensions, bins, n_bins, feature_names=None, estimates=None, estimate_name=None):
        self.super_particles = super_particles
        self.dimensions = tuple(dimensions)
        self.bins = tuple(bins)
        self.n_bins = int(n_bins)
        self.feature_names = feature_names
        self.estimates = None if estimates is None else np.asarray(estimates, dtype=np.float64)
        self.estimate_name = estimate_name
        n = as_particles(super_particles).n_particles
        if n != len(self.dimensions) * len(self.bins):
            raise ValueError(f"got {n} super-particles for {len(self.dimensions)} dimensions x {len(self.bins)} bins.")

    @classmethod
    def from_results(cls, result, X, *, bins=None, dimensions=None, fuser=None, register_bins=True, n_jobs=None,
                     random_state=None):
        """Fuse the grid's bins from a :class:`~pcvae_sklearn.WorkflowResult` and the particles it was made from.

        Parameters
        ----------
        result : WorkflowResult
            From :func:`pcvae_sklearn.analyse`; its latents and per-particle
            estimates are reused (the particles are not encoded again).
        X : particles
            The particles given to ``analyse``.
        bins : sequence of int, optional
            1-based bins; default 1, 5, 10, 15, 20 (or 5 bins spread over ``n_bins``).
        dimensions : sequence of int, optional
            Latent dimensions; default all.
        fuser : ParticleFuser, optional
            Settings of the fusion of every bin; ``ParticleFuser()`` by default
            (``ParticleFuser(n_restarts=1)`` is about 4 times faster).
        register_bins : bool, default=True
            Register all super-particles into one frame; False leaves every
            one in its own frame (faster; fine for symmetric structures).
        n_jobs : int, optional
            Bins fused in parallel.
        random_state : int or None

        Returns
        -------
        SuperParticleGridDisplay
        """
        n_bins = len(result.bin_table)
        return cls._compute(X, result.latents, result.estimates[:, 0], result.estimate_name,
                            [str(n) for n in result.feature_names], n_bins=n_bins, bins=bins,
                            dimensions=dimensions, fuser=fuser, register_bins=register_bins, n_jobs=n_jobs,
                            random_state=random_state, estimate="radius" if result.estimate_name.startswith("radius") else "height")

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius", n_bins=20, bins=None, dimensions=None, fuser=None,
                       register_bins=True, n_jobs=None, random_state=None):
        """Encode ``X`` with a fitted PointCloudVAE, then bin and fuse along every latent dimension.

        Parameters
        ----------
        vae : PointCloudVAE
            Fitted.
        X : particles
        estimate : str or estimator, default="radius"
            Orients every dimension so that the estimate grows with the bin,
            and is written on every tile; ``None`` for neither.
        n_bins : int, default=20
        bins, dimensions, fuser, register_bins, n_jobs, random_state
            As in :meth:`from_results`.

        Returns
        -------
        SuperParticleGridDisplay
        """
        p = as_particles(X, min_particles=2 * n_bins)
        Z = vae.transform(p)
        values, name = (None, None) if estimate is None else estimate_particles(estimate, p)
        return cls._compute(p, Z, None if values is None else values[:, 0], name, _feature_names(vae, Z.shape[1]),
                            n_bins=n_bins, bins=bins, dimensions=dimensions, fuser=fuser, register_bins=register_bins,
                            n_jobs=n_jobs, random_state=random_state, estimate=estimate)

    @classmethod
    def _compute(cls, X, Z, values, name, feature_names, *, n_bins, bins, dimensions, fuser, register_bins, n_jobs,
                 random_state, estimate):
        p = as_particles(X)
        signs = latent_orientation(Z, values)
        supers, dims, shown = super_particle_grid(p, Z, bins=bins, n_bins=n_bins, dimensions=dimensions, orientation=signs,
                                                  fuser=fuser, register_bins=register_bins, n_jobs=n_jobs,
                                                  random_state=random_state)
        est = None
        if estimate is not None:
            est = estimate_particles(estimate, as_particles(supers))[0][:, 0].reshape(len(dims), len(shown))
        return cls(super_particles=supers, dimensions=dims, bins=shown, n_bins=n_bins, feature_names=feature_names,
                   estimates=est, estimate_name=name)

    def plot(self, ax=None, *, pixel_size=None, blur=None, extent=None, cmap="inferno", scale_bar=True):
        """Draw the grid.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure by default.
        pixel_size, blur, extent : optional
            Passed to :func:`~pcvae_sklearn.show.render_particles`.
        cmap : str, default="inferno"
        scale_bar : bool, default=True
            Draw a scale bar on the first tile.

        Returns
        -------
        SuperParticleGridDisplay
        """
        n_r, n_c = len(self.dimensions), len(self.bins)
        tiles, ref, projections = _tiles(self.super_particles, pixel_size, blur, extent)
        h, w = tiles.shape[1:]
        gap = max(2, w // 20)
        self.mosaic_ = _mosaic(tiles, n_r, n_c, gap)
        fig, ax = _figure_and_axes(ax, (1.3 * n_c * len(projections) + 1.0, 1.3 * n_r + 0.8))
        _draw_mosaic(ax, self.mosaic_, cmap)
        names = self.feature_names or [f"pcvae{j}" for j in range(max(self.dimensions) + 1)]
        ax.set_xticks([c * (w + gap) + w / 2 for c in range(n_c)], [f"bin {b}" for b in self.bins])
        ax.set_yticks([r * (h + gap) + h / 2 for r in range(n_r)], [names[d] for d in self.dimensions])
        ax.tick_params(length=0)
        if self.estimates is not None:
            for r in range(n_r):
                for c in range(n_c):
                    ax.text(c * (w + gap) + 0.04 * w, r * (h + gap) + 0.04 * h, f"{self.estimates[r, c]:.1f}",
                            color="white", ha="left", va="top", fontsize=6)
        if scale_bar:
            _mosaic_scale_bar(ax, ref.images.shape[2], h, ref.images.shape[2], ref.pixel_size, ref.width_nm, fontsize=6)
        title = f"super-particles of bins {', '.join(map(str, self.bins))} of {self.n_bins} along every latent dimension"
        if len(projections) > 1:
            title += " (xy | xz)"
        if self.estimates is not None:
            title += f"\nnumbers: {_pretty(self.estimate_name or 'estimate')}"
        ax.set_title(title, fontsize=9)
        self.ax_, self.figure_ = ax, fig
        return self


# ---------------------------------------------------------- (b) a bin row
class BinRowDisplay(_Display):
    """The super-particles of all bins along one latent dimension, with their estimates.

    The paper's per-bin figures (Haghparast, Zhang et al. 2025, Figs. 5, 8,
    10 and 11): a structural change encoded by the dimension shows as a
    steadily growing (or shrinking) radius or height along the row. 3D
    super-particles are shown as xy (top) and xz (bottom) projections.

    Parameters
    ----------
    super_particles : awkward array or list of (n_i, d) arrays
        One super-particle per bin, in bin order.
    estimates : ndarray of shape (n_bins,)
        The estimate of every super-particle (nm).
    precisions : ndarray of shape (n_bins,)
        Its precision, FWHM / sqrt(n) (nm).
    estimate_name : str, default="estimate"
    dimension : int, default=0
    feature_name : str, optional

    Attributes
    ----------
    mosaic_ : ndarray
        The tiles in one image, set by :meth:`plot`.
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025), Figs. 5, 8, 10 and 11.
    """

    def __init__(self, *, super_particles, estimates, precisions, estimate_name="estimate", dimension=0, feature_name=None):
        self.super_particles = super_particles
        self.estimates = np.asarray(estimates, dtype=np.float64).ravel()
        self.precisions = np.asarray(precisions, dtype=np.float64).ravel()
        self.estimate_name = estimate_name
        self.dimension = int(dimension)
        self.feature_name = feature_name or f"pcvae{dimension}"
        n = as_particles(super_particles).n_particles
        if not n == len(self.estimates) == len(self.precisions):
            raise ValueError(f"got {n} super-particles, {len(self.estimates)} estimates and {len(self.precisions)} precisions.")

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` made with ``fuse=True``.

        Parameters
        ----------
        result : WorkflowResult

        Returns
        -------
        BinRowDisplay
        """
        if result.fusion is None:
            raise ValueError("this WorkflowResult has no super-particles; run analyse(..., fuse=True).")
        table = result.bin_table
        value = [c for c in table.columns if c.startswith("super_particle_") and "precision" not in c][0]
        prec = [c for c in table.columns if c.startswith("super_particle_") and "precision" in c][0]
        return cls(super_particles=result.fusion.super_particles, estimates=table[value].to_numpy(),
                   precisions=table[prec].to_numpy(), estimate_name=result.estimate_name, dimension=result.dimension,
                   feature_name=[str(n) for n in result.feature_names][result.dimension])

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius", dimension=None, n_bins=20, fuser=None, n_jobs=None,
                       random_state=None):
        """Encode ``X`` with a fitted PointCloudVAE, bin along one dimension, fuse every bin and estimate.

        Parameters
        ----------
        vae : PointCloudVAE
            Fitted.
        X : particles
        estimate : str or estimator, default="radius"
        dimension : int, optional
            Default: the dimension with the largest |Spearman| with the
            per-particle estimate. Oriented so that the estimate grows along
            the bins.
        n_bins : int, default=20
        fuser : ParticleFuser, optional
        n_jobs : int, optional
        random_state : int or None

        Returns
        -------
        BinRowDisplay
        """
        from ..fuse import fuse_bins

        p = as_particles(X, min_particles=2 * n_bins)
        Z = vae.transform(p)
        values, name = estimate_particles(estimate, p)
        dimension, _, bins = _bins_along(Z, values[:, 0], dimension, n_bins)
        fusion = fuse_bins(p.to_awkward(), bins, fuser, n_jobs=n_jobs, random_state=random_state)
        sp, _ = estimate_particles(estimate, as_particles(fusion.super_particles))
        return cls(super_particles=fusion.super_particles, estimates=sp[:, 0], precisions=sp[:, 1], estimate_name=name,
                   dimension=dimension, feature_name=_feature_names(vae, Z.shape[1])[dimension])

    def to_frame(self):
        """The estimate and precision of every bin as a DataFrame."""
        import pandas as pd

        return pd.DataFrame({"bin": np.arange(1, len(self.estimates) + 1), self.estimate_name: self.estimates,
                             "precision_nm": self.precisions})

    def plot(self, ax=None, *, pixel_size=None, blur=None, extent=None, cmap="inferno", scale_bar=True):
        """Draw the row of super-particles with estimate ± precision under each.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        pixel_size, blur, extent : optional
            Passed to :func:`~pcvae_sklearn.show.render_particles`.
        cmap : str, default="inferno"
        scale_bar : bool, default=True

        Returns
        -------
        BinRowDisplay
        """
        renders = render_projections(self.super_particles, pixel_size=pixel_size, blur=blur, extent=extent)
        n = len(self.estimates)
        tiles = np.concatenate([r.normalised() for r in renders.values()])  # projection-major
        h, w = tiles.shape[1:]
        gap = max(2, w // 20)
        self.mosaic_ = _mosaic(tiles, len(renders), n, gap)
        width = max(6.0, 0.75 * n + 1.0)
        fig, ax = _figure_and_axes(ax, (width, (width - 0.8) / n * len(renders) + 1.2))
        _draw_mosaic(ax, self.mosaic_, cmap)
        ax.set_xticks([c * (w + gap) + w / 2 for c in range(n)],
                      [f"{b + 1}\n{e:.1f}\n±{s:.1f}" for b, (e, s) in enumerate(zip(self.estimates, self.precisions))],
                      fontsize=6)
        ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(renders))], list(renders))
        ax.tick_params(length=0)
        ax.set_xlabel(f"bin along {self.feature_name}, {_pretty(self.estimate_name)} ± precision", fontsize=8)
        ax.set_title(f"super-particles of the {n} bins along {self.feature_name}", fontsize=9)
        if scale_bar:
            ref = renders["xy"]
            _mosaic_scale_bar(ax, w, h, w, ref.pixel_size, ref.width_nm, fontsize=5)
        self.ax_, self.figure_ = ax, fig
        return self


# ------------------------------------------------------- (c) the scatter
class LatentScatterDisplay(_Display):
    """Every latent dimension against a per-particle estimate, with Pearson and Spearman.

    The paper's Figs. 3 and 12 (Haghparast, Zhang et al. 2025).

    Parameters
    ----------
    latents : ndarray of shape (n_particles, latent_dim)
    estimate : ndarray of shape (n_particles,)
    estimate_name : str, default="estimate"
    feature_names : list of str, optional

    Attributes
    ----------
    pearson_ : ndarray of shape (latent_dim,)
    spearman_ : ndarray of shape (latent_dim,)
        Correlations of every latent dimension with the estimate (computed
        at construction, no matplotlib needed).
    axes_ : ndarray of matplotlib.axes.Axes
        One panel per dimension, set by :meth:`plot`.
    ax_ : matplotlib.axes.Axes or ndarray of Axes
        The panel, or all panels when there are several.
    figure_ : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.show import LatentScatterDisplay
    >>> r = np.linspace(40, 60, 30)
    >>> d = LatentScatterDisplay(latents=np.c_[r, -r**2], estimate=r, estimate_name="radius_nm")
    >>> d.spearman_.round(3)
    array([ 1., -1.])
    """

    def __init__(self, *, latents, estimate, estimate_name="estimate", feature_names=None):
        from ..estimate import latent_correlation_table

        self.latents = check_latents(latents)
        self.estimate = np.asarray(estimate, dtype=np.float64).ravel()
        if self.estimate.shape[0] != self.latents.shape[0]:
            raise ValueError(f"estimate has {self.estimate.shape[0]} values for {self.latents.shape[0]} particles.")
        self.estimate_name = estimate_name
        self.feature_names = list(feature_names) if feature_names is not None else [f"pcvae{j}" for j in range(self.latents.shape[1])]
        table = latent_correlation_table(self.latents, {estimate_name: self.estimate}, feature_names=self.feature_names)
        self.pearson_ = table["pearson_r"].to_numpy()
        self.spearman_ = table["spearman_rho"].to_numpy()

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult`.

        Parameters
        ----------
        result : WorkflowResult

        Returns
        -------
        LatentScatterDisplay
        """
        return cls(latents=result.latents, estimate=result.estimates[:, 0], estimate_name=result.estimate_name,
                   feature_names=[str(n) for n in result.feature_names])

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius"):
        """Encode ``X`` with a fitted PointCloudVAE and estimate every particle.

        Parameters
        ----------
        vae : PointCloudVAE
            Fitted.
        X : particles
        estimate : str or estimator, default="radius"

        Returns
        -------
        LatentScatterDisplay
        """
        p = as_particles(X, min_particles=2)
        Z = vae.transform(p)
        values, name = estimate_particles(estimate, p)
        return cls(latents=Z, estimate=values[:, 0], estimate_name=name, feature_names=_feature_names(vae, Z.shape[1]))

    def to_frame(self):
        """Pearson and Spearman of every dimension as a DataFrame."""
        import pandas as pd

        return pd.DataFrame({"latent": self.feature_names, "pearson_r": self.pearson_, "spearman_rho": self.spearman_})

    def plot(self, ax=None, *, n_cols=4, scatter_kwargs=None):
        """Draw one scatter panel per latent dimension.

        Parameters
        ----------
        ax : matplotlib.axes.Axes or array-like of Axes, optional
            One Axes per latent dimension; a new figure by default.
        n_cols : int, default=4
            Panels per row of a new figure.
        scatter_kwargs : dict, optional
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        LatentScatterDisplay
        """
        plt = _pyplot()
        k = self.latents.shape[1]
        if ax is None:
            n_cols = min(n_cols, k)
            n_rows = -(-k // n_cols)
            fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.4 * n_rows), layout="constrained", squeeze=False)
            axes = axes.ravel()
            for extra in axes[k:]:
                extra.set_visible(False)
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) != k:
                raise ValueError(f"ax holds {len(axes)} Axes; {k} are needed, one per latent dimension.")
            fig = axes[0].figure
        kw = {"s": 4, "alpha": 0.5, "linewidths": 0}
        kw.update(scatter_kwargs or {})
        for j in range(k):
            a = axes[j]
            a.scatter(self.latents[:, j], self.estimate, **kw)
            a.set_title(f"{self.feature_names[j]}: r={self.pearson_[j]:+.2f}, ρ={self.spearman_[j]:+.2f}", fontsize=8)
            a.set_xlabel(self.feature_names[j], fontsize=8)
            a.set_ylabel(_estimated(self.estimate_name), fontsize=8)
            a.tick_params(labelsize=7)
        self.axes_ = axes[:k]
        self.ax_ = axes[0] if k == 1 else self.axes_
        self.figure_ = fig
        return self


# -------------------------------------------------------- (d) the violins
class BinViolinDisplay(_Display):
    """Violin plot of the per-particle estimate in every bin along one latent dimension.

    The paper's Fig. 4 (Haghparast, Zhang et al. 2025). The super-particle
    estimates with their precision are drawn on top when given.

    Parameters
    ----------
    estimate : ndarray of shape (n_particles,)
    bins : ndarray of shape (n_particles,)
        Bin of every particle, numbered ``1 .. n_bins`` (as
        ``WorkflowResult.bins``).
    n_bins : int, optional
        Default ``bins.max()``.
    estimate_name : str, default="estimate"
    feature_name : str, default="latent"
    super_estimates, super_precisions : ndarray of shape (n_bins,), optional

    Attributes
    ----------
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, estimate, bins, n_bins=None, estimate_name="estimate", feature_name="latent",
                 super_estimates=None, super_precisions=None):
        self.estimate = np.asarray(estimate, dtype=np.float64).ravel()
        self.bins = np.asarray(bins).astype(np.int64).ravel()
        if self.bins.shape != self.estimate.shape:
            raise ValueError(f"bins has {self.bins.size} entries for {self.estimate.size} estimates.")
        self.n_bins = int(self.bins.max()) if n_bins is None else int(n_bins)
        if self.bins.size and (self.bins.min() < 1 or self.bins.max() > self.n_bins):
            raise ValueError(f"bins are numbered 1..{self.n_bins}; got values from {self.bins.min()} to {self.bins.max()}.")
        self.estimate_name = estimate_name
        self.feature_name = feature_name
        self.super_estimates = None if super_estimates is None else np.asarray(super_estimates, dtype=np.float64)
        self.super_precisions = None if super_precisions is None else np.asarray(super_precisions, dtype=np.float64)

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` (super-particle estimates drawn when it has them)."""
        table = result.bin_table
        value = [c for c in table.columns if c.startswith("super_particle_") and "precision" not in c]
        prec = [c for c in table.columns if c.startswith("super_particle_") and "precision" in c]
        return cls(estimate=result.estimates[:, 0], bins=result.bins, n_bins=len(table), estimate_name=result.estimate_name,
                   feature_name=[str(n) for n in result.feature_names][result.dimension],
                   super_estimates=table[value[0]].to_numpy() if value else None,
                   super_precisions=table[prec[0]].to_numpy() if prec else None)

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius", dimension=None, n_bins=20):
        """Encode ``X`` with a fitted PointCloudVAE, estimate every particle and bin along one dimension.

        Parameters
        ----------
        vae : PointCloudVAE
            Fitted.
        X : particles
        estimate : str or estimator, default="radius"
        dimension : int, optional
            Default: the one with the largest |Spearman| with the estimate.
        n_bins : int, default=20

        Returns
        -------
        BinViolinDisplay
        """
        p = as_particles(X, min_particles=2 * n_bins)
        Z = vae.transform(p)
        values, name = estimate_particles(estimate, p)
        dimension, _, bins = _bins_along(Z, values[:, 0], dimension, n_bins)
        return cls(estimate=values[:, 0], bins=bins, n_bins=n_bins, estimate_name=name,
                   feature_name=_feature_names(vae, Z.shape[1])[dimension])

    def plot(self, ax=None):
        """Draw the violins (and the super-particle estimates).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        BinViolinDisplay
        """
        fig, ax = _figure_and_axes(ax, (max(5.0, 0.35 * self.n_bins + 2.0), 3.4))
        groups = {b: self.estimate[self.bins == b] for b in range(1, self.n_bins + 1)}
        positions = [b for b, g in groups.items() if len(g) > 1]
        parts = ax.violinplot([groups[b] for b in positions], positions=positions, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.5)
        if self.super_estimates is not None:
            ax.errorbar(np.arange(1, len(self.super_estimates) + 1), self.super_estimates, yerr=self.super_precisions,
                        fmt="o", color="C3", markersize=3, capsize=2,
                        label="super-particle ± FWHM/√n (localization-level)")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xlabel(f"bin along {self.feature_name}")
        ax.set_ylabel(f"per-particle {_estimated(self.estimate_name)}")
        ax.set_xticks(np.arange(1, self.n_bins + 1))
        ax.tick_params(labelsize=7)
        self.ax_, self.figure_ = ax, fig
        return self


# ---------------------------------------------------- (e) the sample ratio
class SampleRatioDisplay(_Display):
    """Correlation of the latent dimensions with an estimate against the fraction of localizations kept.

    The robustness experiment of the paper's Fig. 6 (Haghparast, Zhang et
    al. 2025): every particle keeps a random fraction (the sample ratio) of
    its localizations (:func:`~pcvae_sklearn.subsample_localizations`), is
    encoded again, and every latent dimension is correlated with the
    reference (the estimate on the subsampled particles, or a given truth).

    Parameters
    ----------
    ratios : ndarray of shape (n_ratios,)
    correlations : ndarray of shape (n_ratios, latent_dim)
    method : {"spearman", "pearson"}, default="spearman"
    feature_names : list of str, optional
    reference_name : str, default="estimate"

    Attributes
    ----------
    best_ : ndarray of shape (n_ratios,)
        The largest |correlation| of any dimension at every ratio.
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, ratios, correlations, method="spearman", feature_names=None, reference_name="estimate"):
        self.ratios = np.asarray(ratios, dtype=np.float64).ravel()
        self.correlations = np.atleast_2d(np.asarray(correlations, dtype=np.float64))
        if self.correlations.shape[0] != self.ratios.shape[0]:
            raise ValueError(f"correlations has {self.correlations.shape[0]} rows for {self.ratios.shape[0]} ratios.")
        self.method = method
        k = self.correlations.shape[1]
        self.feature_names = list(feature_names) if feature_names is not None else [f"pcvae{j}" for j in range(k)]
        self.reference_name = reference_name
        self.best_ = np.nanmax(np.abs(self.correlations), axis=1)

    @classmethod
    def from_estimator(cls, vae, X, *, ratios=(0.2, 0.4, 0.6, 0.8, 1.0), estimate="radius", target=None,
                       method="spearman", refit=False, latents=None, random_state=None):
        """Run the robustness experiment.

        Parameters
        ----------
        vae : PointCloudVAE
            Fitted on the full particles.
        X : particles
        ratios : sequence of float in (0, 1], default=(0.2, 0.4, 0.6, 0.8, 1.0)
        estimate : str or estimator, default="radius"
            The reference, computed on the subsampled particles (unless ``target`` is given).
        target : ndarray of shape (n_particles,), optional
            A fixed reference, e.g. the simulated truth.
        method : {"spearman", "pearson"}, default="spearman"
        refit : bool, default=False
            Fit a clone of ``vae`` on every subsampled set (as when the data
            themselves had fewer localizations) instead of encoding with ``vae``.
        latents : ndarray of shape (n_particles, latent_dim), optional
            ``vae.transform(X)`` if already computed: reused at ratio 1.
        random_state : int or None

        Returns
        -------
        SampleRatioDisplay
        """
        corr = sample_ratio_correlations(vae, X, ratios=ratios, estimate=estimate, target=target, method=method,
                                         refit=refit, latents=latents, random_state=random_state)
        if target is not None:
            ref = "truth"
        else:
            ref = estimate if isinstance(estimate, str) else type(estimate).__name__
        return cls(ratios=ratios, correlations=corr, method=method, feature_names=_feature_names(vae, corr.shape[1]),
                   reference_name=ref)

    @classmethod
    def from_results(cls, ratios, correlations, *, method="spearman", feature_names=None, reference_name="estimate"):
        """From precomputed correlations (e.g. those of several models or repeats, averaged)."""
        return cls(ratios=ratios, correlations=correlations, method=method, feature_names=feature_names,
                   reference_name=reference_name)

    def to_frame(self):
        """One row per ratio: the correlation of every dimension and the best |correlation|."""
        import pandas as pd

        df = pd.DataFrame(self.correlations, columns=self.feature_names)
        df.insert(0, "sample_ratio", self.ratios)
        df["best_abs"] = self.best_
        return df

    def plot(self, ax=None):
        """Draw |correlation| against the sample ratio (thin: every dimension, thick: the best).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        SampleRatioDisplay
        """
        fig, ax = _figure_and_axes(ax, (4.2, 3.2))
        for j, name in enumerate(self.feature_names):
            ax.plot(self.ratios, np.abs(self.correlations[:, j]), color="0.7", linewidth=0.8, marker=".",
                    label="every dimension" if j == 0 else None)
        ax.plot(self.ratios, self.best_, color="C0", linewidth=2.0, marker="o", label="best dimension")
        ax.set_xlabel("sample ratio (fraction of localizations kept)")
        ax.set_ylabel(f"|{self.method.capitalize()}| with {self.reference_name}")
        ax.set_ylim(0.0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
        self.ax_, self.figure_ = ax, fig
        return self


# ------------------------------------------------------ (f) training curves
class TrainingCurveDisplay(_Display):
    """Training curves of a PointCloudVAE: Chamfer reconstruction, total loss, KL and beta per epoch.

    Parameters
    ----------
    history : list of dict
        ``PointCloudVAE.history_``: one dict per epoch with ``loss``,
        ``reconstruction``, ``kl`` and ``beta``.

    Attributes
    ----------
    epochs, loss, reconstruction, kl, beta : ndarray of shape (n_epochs,)
    ax_ : matplotlib.axes.Axes
        Reconstruction and loss.
    ax_kl_ : matplotlib.axes.Axes
        KL (right axis).
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, history):
        if not history:
            raise ValueError("history is empty; fit the PointCloudVAE first.")
        self.history = list(history)
        self.epochs = np.arange(1, len(self.history) + 1)
        for key in ("loss", "reconstruction", "kl", "beta"):
            setattr(self, key, np.array([float(h.get(key, np.nan)) for h in self.history]))

    @classmethod
    def from_estimator(cls, vae):
        """From a fitted PointCloudVAE's ``history_``."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(vae, "history_")
        return cls(history=vae.history_)

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` (its model's ``history_``)."""
        return cls.from_estimator(result.vae)

    def plot(self, ax=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional

        Returns
        -------
        TrainingCurveDisplay
        """
        fig, ax = _figure_and_axes(ax, (4.4, 3.2))
        ax.plot(self.epochs, self.reconstruction, marker="o", color="C0", label="Chamfer (reconstruction)")
        ax.plot(self.epochs, self.loss, marker=".", linestyle=":", color="C0", label="total loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (normalised units)")
        ax.set_xticks(self.epochs if len(self.epochs) <= 12 else ax.get_xticks())
        kl_ax = ax.twinx()
        kl_ax.plot(self.epochs, self.kl, marker="s", markersize=3, linestyle="--", color="C1", label="KL")
        kl_ax.set_ylabel("KL divergence", color="C1")
        for axis, values in ((ax, np.r_[self.reconstruction, self.loss]), (kl_ax, self.kl)):
            finite = values[np.isfinite(values)]
            if finite.size and finite.min() > 0 and finite.max() > 20 * finite.min():
                axis.set_yscale("log")  # the first epoch is often far above the rest
        lines = ax.get_lines() + kl_ax.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper right")
        n = len(self.epochs)
        ax.set_title(f"training: {n} epoch{'s' if n > 1 else ''}, final beta {self.beta[-1]:.3g}", fontsize=9)
        self.ax_, self.ax_kl_, self.figure_ = ax, kl_ax, fig
        return self


# ------------------------------------------------------ (g) the embedding
class LatentEmbeddingDisplay(_Display):
    """The latents in two dimensions (PCA), coloured by a per-particle estimate.

    Parameters
    ----------
    latents : ndarray of shape (n_particles, latent_dim)
    colour : ndarray of shape (n_particles,), optional
        The values that colour the points (an estimate).
    colour_name : str, default="estimate"

    Attributes
    ----------
    embedding_ : ndarray of shape (n_particles, 2)
        The first two principal components of the latents.
    explained_variance_ratio_ : ndarray of shape (2,)
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, latents, colour=None, colour_name="estimate"):
        from sklearn.decomposition import PCA

        Z = check_latents(latents)
        self.latents = Z
        self.colour = None if colour is None else np.asarray(colour, dtype=np.float64).ravel()
        if self.colour is not None and self.colour.shape[0] != Z.shape[0]:
            raise ValueError(f"colour has {self.colour.shape[0]} values for {Z.shape[0]} particles.")
        self.colour_name = colour_name
        if Z.shape[1] >= 2:
            pca = PCA(n_components=2).fit(Z)
            self.embedding_ = pca.transform(Z)
            self.explained_variance_ratio_ = pca.explained_variance_ratio_
        else:  # one latent dimension: show it against the particle index
            self.embedding_ = np.c_[Z[:, 0] - Z[:, 0].mean(), np.zeros(Z.shape[0])]
            self.explained_variance_ratio_ = np.array([1.0, 0.0])

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult`, coloured by its per-particle estimate."""
        return cls(latents=result.latents, colour=result.estimates[:, 0], colour_name=result.estimate_name)

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius"):
        """Encode ``X`` with a fitted PointCloudVAE and colour by ``estimate`` (None: no colour)."""
        p = as_particles(X, min_particles=2)
        Z = vae.transform(p)
        if estimate is None:
            return cls(latents=Z)
        values, name = estimate_particles(estimate, p)
        return cls(latents=Z, colour=values[:, 0], colour_name=name)

    def plot(self, ax=None, *, cmap="viridis"):
        """Draw the embedding.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        cmap : str, default="viridis"

        Returns
        -------
        LatentEmbeddingDisplay
        """
        fig, ax = _figure_and_axes(ax, (4.4, 3.6))
        sc = ax.scatter(self.embedding_[:, 0], self.embedding_[:, 1], c=self.colour, cmap=cmap if self.colour is not None else None,
                        s=6, alpha=0.8, linewidths=0)
        if self.colour is not None:
            fig.colorbar(sc, ax=ax, label=_pretty(self.colour_name))
        v = self.explained_variance_ratio_
        ax.set_xlabel(f"PC 1 ({100 * v[0]:.0f} % of the latent variance)")
        ax.set_ylabel(f"PC 2 ({100 * v[1]:.0f} %)")
        ax.set_title("latents, PCA", fontsize=9)
        self.ax_, self.figure_ = ax, fig
        return self
