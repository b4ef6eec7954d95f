"""Displays of super-particles: the grid along every latent dimension and the row of bins along one."""

from __future__ import annotations

import textwrap

import numpy as np

from .._input import as_particles
from ._data import estimate_particles, latent_orientation, super_particle_grid
from ._render import render_projections
from ._display_base import (
    _encode_and_bin,
    _check_trend,
    _Display,
    _draw_mosaic,
    _draw_trend,
    _feature_names,
    _figure_and_axes,
    _mosaic,
    _mosaic_scale_bar,
    _pretty,
    _pyplot,
    _tiles,
    _trend_from_table,
)

__all__ = ["SuperParticleGridDisplay", "BinRowDisplay"]


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
        vae, X : PointCloudVAE, particles
            A fitted model and the particles to encode with it.
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

    When the per-bin medians, their bootstrap intervals or the matched
    null's band are given, a profile under the row draws them: the null
    band shaded grey, the median per-particle estimate with its bootstrap
    interval over the bin's particles in black, the super-particle estimate
    with its localization-level precision FWHM/sqrt(n) in red; the null's
    verdict is the title.

    Parameters
    ----------
    super_particles : awkward array or list of (n_i, d) arrays
        One super-particle per bin, in bin order.
    estimates : ndarray of shape (n_bins,)
        The estimate of every super-particle (nm).
    precisions : ndarray of shape (n_bins,)
        Its precision, FWHM / sqrt(n) (nm): localization-level, it counts
        localizations as independent.
    estimate_name : str, default="estimate"
    dimension : int, default=0
    feature_name : str, optional
    medians, ci_low, ci_high : ndarray of shape (n_bins,), optional
        Median per-particle estimate of every bin and its bootstrap interval.
    null_low, null_high : ndarray of shape (n_bins,), optional
        The matched null's band.
    verdict : str, optional
        The null's verdict.
    n_flagged : ndarray of shape (n_bins,), optional
        Particles each bin's fusion flagged (``ParticleFuser.flagged_``); the
        title gives their total.

    Attributes
    ----------
    mosaic_ : ndarray
        The tiles in one image, set by :meth:`plot`.
    ax_ : matplotlib.axes.Axes
    profile_ax_ : matplotlib.axes.Axes or None
        The profile under the row (None without medians, intervals or band).
    figure_ : matplotlib.figure.Figure

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025), Figs. 5, 8, 10 and 11.
    """

    def __init__(self, *, super_particles, estimates, precisions, estimate_name="estimate", dimension=0, feature_name=None,
                 medians=None, ci_low=None, ci_high=None, null_low=None, null_high=None, verdict=None, n_flagged=None):
        self.super_particles = super_particles
        self.estimates = np.asarray(estimates, dtype=np.float64).ravel()
        self.precisions = np.asarray(precisions, dtype=np.float64).ravel()
        self.estimate_name = estimate_name
        self.dimension = int(dimension)
        self.feature_name = feature_name or f"pcvae{dimension}"
        n = as_particles(super_particles).n_particles
        if not n == len(self.estimates) == len(self.precisions):
            raise ValueError(f"got {n} super-particles, {len(self.estimates)} estimates and {len(self.precisions)} precisions.")
        self.trend = _check_trend(n, dict(medians=medians, ci_low=ci_low, ci_high=ci_high, null_low=null_low,
                                          null_high=null_high))
        self.verdict = verdict
        self.n_flagged = None if n_flagged is None else np.asarray(n_flagged, dtype=np.int64).ravel()
        if self.n_flagged is not None and len(self.n_flagged) != n:
            raise ValueError(f"n_flagged has {len(self.n_flagged)} values for {n} bins.")

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` made with ``fuse=True``; returns a BinRowDisplay."""
        if result.fusion is None:
            raise ValueError("this WorkflowResult has no super-particles; run analyse(..., fuse=True).")
        table = result.bin_table
        value = [c for c in table.columns if c.startswith("super_particle_") and "precision" not in c][0]
        prec = [c for c in table.columns if c.startswith("super_particle_") and "precision" in c][0]
        heterogeneity = getattr(result, "heterogeneity", None)
        return cls(super_particles=result.fusion.super_particles, estimates=table[value].to_numpy(),
                   precisions=table[prec].to_numpy(), estimate_name=result.estimate_name, dimension=result.dimension,
                   feature_name=[str(n) for n in result.feature_names][result.dimension], **_trend_from_table(table),
                   verdict=None if heterogeneity is None else heterogeneity["verdict"],
                   n_flagged=table["n_flagged"].to_numpy() if "n_flagged" in table.columns else None)

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius", dimension=None, n_bins=20, fuser=None, n_jobs=None,
                       random_state=None):
        """Encode ``X`` with a fitted PointCloudVAE, bin along one dimension, fuse every bin and estimate.

        Parameters
        ----------
        vae, X : PointCloudVAE, particles
            A fitted model and the particles to encode with it.
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

        p, Z, values, name, dimension, bins = _encode_and_bin(vae, X, estimate, dimension, n_bins)
        fusion = fuse_bins(p, bins, fuser, n_jobs=n_jobs, random_state=random_state)
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
        height = (width - 0.8) / n * len(renders) + 1.2
        profile = any(v is not None for v in self.trend.values())
        self.profile_ax_ = None
        if profile and ax is None:
            plt = _pyplot()
            fig, (ax, self.profile_ax_) = plt.subplots(2, 1, figsize=(width, height + 2.4), layout="constrained",
                                                       gridspec_kw={"height_ratios": [height, 2.4]})
        else:
            fig, ax = _figure_and_axes(ax, (width, height))
            if profile:
                self.profile_ax_ = ax.inset_axes([0.0, -1.1, 1.0, 0.8])
        _draw_mosaic(ax, self.mosaic_, cmap)
        ax.set_xticks([c * (w + gap) + w / 2 for c in range(n)],
                      [f"{b + 1}\n{e:.1f}\n±{s:.1f}" for b, (e, s) in enumerate(zip(self.estimates, self.precisions))],
                      fontsize=6)
        ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(renders))], list(renders))
        ax.tick_params(length=0)
        ax.set_xlabel(f"bin along {self.feature_name}, {_pretty(self.estimate_name)} ± precision", fontsize=8)
        flagged = "" if self.n_flagged is None else f"; {int(self.n_flagged.sum())} particle(s) flagged by their bin's fusion"
        # the verdict wrapped to the figure's width (9 pt characters are about 0.6 x 9 pt wide)
        chars = max(40, int(ax.figure.get_figwidth() * 72 / (0.6 * 9)))
        ax.set_title(f"super-particles of the {n} bins along {self.feature_name}{flagged}"
                     + (f"\n{textwrap.fill(self.verdict, chars)}" if self.verdict else ""), fontsize=9)
        if self.profile_ax_ is not None:
            pa = self.profile_ax_
            _draw_trend(pa, self.trend, super_estimates=self.estimates, super_precisions=self.precisions)
            pa.set_xlim(0.5, n + 0.5)
            pa.set_xticks(np.arange(1, n + 1))
            pa.tick_params(labelsize=6)
            pa.set_ylabel(_pretty(self.estimate_name), fontsize=7)
            pa.set_xlabel(f"bin along {self.feature_name}", fontsize=7)
            pa.legend(fontsize=5, loc="upper left")
        if scale_bar:
            ref = renders["xy"]
            _mosaic_scale_bar(ax, w, h, w, ref.pixel_size, ref.width_nm, fontsize=5)
        self.ax_, self.figure_ = ax, fig
        return self


