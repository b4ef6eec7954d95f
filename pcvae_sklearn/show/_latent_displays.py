"""Displays of latents and estimates: scatter, violins, sample ratio, training curves, embedding."""

from __future__ import annotations

import numpy as np

from .._input import as_particles
from ._data import check_latents, estimate_particles, sample_ratio_correlations
from ._display_base import (
    _encode_and_bin,
    _check_trend,
    _Display,
    _draw_trend,
    _estimated,
    _feature_names,
    _figure_and_axes,
    _pretty,
    _pyplot,
    _trend_from_table,
)

__all__ = [
    "LatentScatterDisplay",
    "BinViolinDisplay",
    "SampleRatioDisplay",
    "TrainingCurveDisplay",
    "LatentEmbeddingDisplay",
]


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
        """From a :class:`~pcvae_sklearn.WorkflowResult`; returns a LatentScatterDisplay."""
        return cls(latents=result.latents, estimate=result.estimates[:, 0], estimate_name=result.estimate_name,
                   feature_names=[str(n) for n in result.feature_names])

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius"):
        """Encode ``X`` with a fitted PointCloudVAE and estimate every particle.

        Parameters
        ----------
        vae, X : PointCloudVAE, particles
            A fitted model and the particles to encode with it.
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

    The paper's Fig. 4 (Haghparast, Zhang et al. 2025). Drawn on top when
    given: the super-particle estimates with their localization-level
    precision FWHM/sqrt(n) (red); the median per-particle estimate of every
    bin with its bootstrap interval over the bin's particles (black); the
    band of the matched homogeneous null (grey), and its verdict as title.

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
    medians, ci_low, ci_high : ndarray of shape (n_bins,), optional
        Median per-particle estimate of every bin and its bootstrap interval
        (``bin_table`` columns ``particle_median_*``, ``ci_low``, ``ci_high``).
    null_low, null_high : ndarray of shape (n_bins,), optional
        The matched null's band (``bin_table`` columns).
    verdict : str, optional
        The null's verdict, drawn as the title.

    Attributes
    ----------
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, estimate, bins, n_bins=None, estimate_name="estimate", feature_name="latent",
                 super_estimates=None, super_precisions=None, medians=None, ci_low=None, ci_high=None, null_low=None,
                 null_high=None, verdict=None):
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
        self.trend = _check_trend(self.n_bins, dict(medians=medians, ci_low=ci_low, ci_high=ci_high, null_low=null_low,
                                                    null_high=null_high))
        self.verdict = verdict

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` (super-particle estimates, intervals and null band when it

        has them)."""
        table = result.bin_table
        heterogeneity = getattr(result, "heterogeneity", None)
        value = [c for c in table.columns if c.startswith("super_particle_") and "precision" not in c]
        prec = [c for c in table.columns if c.startswith("super_particle_") and "precision" in c]
        return cls(estimate=result.estimates[:, 0], bins=result.bins, n_bins=len(table), estimate_name=result.estimate_name,
                   feature_name=[str(n) for n in result.feature_names][result.dimension],
                   super_estimates=table[value[0]].to_numpy() if value else None,
                   super_precisions=table[prec[0]].to_numpy() if prec else None, **_trend_from_table(table),
                   verdict=None if heterogeneity is None else heterogeneity["verdict"])

    @classmethod
    def from_estimator(cls, vae, X, *, estimate="radius", dimension=None, n_bins=20):
        """Encode ``X`` with a fitted PointCloudVAE, estimate every particle and bin along one dimension.

        Parameters
        ----------
        vae, X : PointCloudVAE, particles
            A fitted model and the particles to encode with it.
        estimate : str or estimator, default="radius"
        n_bins : int, default=20
        dimension : int, optional
            Default: the one with the largest |Spearman| with the estimate.

        Returns
        -------
        BinViolinDisplay
        """
        p, Z, values, name, dimension, bins = _encode_and_bin(vae, X, estimate, dimension, n_bins)
        return cls(estimate=values[:, 0], bins=bins, n_bins=n_bins, estimate_name=name,
                   feature_name=_feature_names(vae, Z.shape[1])[dimension])

    def plot(self, ax=None):
        """Draw the violins (and the super-particle estimates) on ``ax`` (a new figure when None); returns the

        BinViolinDisplay."""
        fig, ax = _figure_and_axes(ax, (max(5.0, 0.35 * self.n_bins + 2.0), 3.4))
        groups = {b: self.estimate[self.bins == b] for b in range(1, self.n_bins + 1)}
        positions = [b for b, g in groups.items() if len(g) > 1]
        parts = ax.violinplot([groups[b] for b in positions], positions=positions, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.5)
        _draw_trend(ax, self.trend, super_estimates=self.super_estimates, super_precisions=self.super_precisions)
        if self.super_estimates is not None or any(v is not None for v in self.trend.values()):
            ax.legend(fontsize=6, loc="upper left")
        if self.verdict:
            ax.set_title(self.verdict, fontsize=7, wrap=True)
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
        """Draw |correlation| against the sample ratio (thin: every dimension, thick: the best) on ``ax`` (a new

        figure when None); returns the SampleRatioDisplay."""
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
        """Draw the curves on ``ax`` (a new figure when None); returns the TrainingCurveDisplay."""
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
        """From a :class:`~pcvae_sklearn.WorkflowResult`, coloured by its per-particle estimate.

        The map is of the encoder's axes: the latent direction's column (in
        the estimate's unit, and fitted to it) is left out.
        """
        Z = result.latents if getattr(result, "direction", None) is None else result.latents[:, :-1]
        return cls(latents=Z, colour=result.estimates[:, 0], colour_name=result.estimate_name)

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
