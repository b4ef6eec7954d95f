"""Latent axes against the estimates, seed by seed (the paper's Fig. 12, for several fits)."""

from __future__ import annotations

import numpy as np

from ._display_base import _Display, _pretty, _pyplot

__all__ = ["AxisStabilityDisplay"]


class AxisStabilityDisplay(_Display):
    """Spearman correlation of every latent axis with every estimate, one row per seed.

    One panel per quantity (the estimates, the localization count, the
    precision where there is one); in each, a row per seed and a column per
    axis of the first seed, every other seed's matched axis below it (turned
    to agree in sign). A column of one colour from top to bottom is an axis
    that means the same in every fit; the column label gives its
    reproducibility (smallest |Spearman| between its matched axes over all
    pairs of seeds), marked with a star where it reaches the threshold.

    Parameters
    ----------
    stability : AxisStability
        From :func:`pcvae_sklearn.validate.axis_stability`, or
        ``WorkflowResult.stability``.

    Attributes
    ----------
    axes_ : ndarray of matplotlib.axes.Axes
        One per quantity.
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, *, stability):
        if stability is None:
            raise ValueError("no axis stability to show: run analyse(..., n_seeds=k) with k >= 2, or axis_stability.")
        self.stability = stability

    @classmethod
    def from_results(cls, result):
        """From a :class:`~pcvae_sklearn.WorkflowResult` of ``analyse(..., n_seeds=k)``."""
        return cls(stability=getattr(result, "stability", None))

    def plot(self, axes=None):
        """Draw one heat map per quantity (a new figure when ``axes`` is None); returns the Display."""
        s = self.stability
        names = list(s.tracks)
        n_seeds, k = next(iter(s.tracks.values())).shape
        if axes is None:
            plt = _pyplot()
            fig, axes = plt.subplots(len(names), 1, figsize=(1.0 + 0.62 * k, 0.9 + (0.32 * n_seeds + 0.7) * len(names)),
                                     layout="constrained", squeeze=False)
            axes = axes[:, 0]
        axes = np.atleast_1d(axes)
        if len(axes) != len(names):
            raise ValueError(f"{len(names)} quantities need {len(names)} axes; got {len(axes)}.")
        labels = [f"{n}\n{r:.2f}{'*' if ok else ''}" for n, r, ok in
                  zip(s.feature_names, s.reproducibility, s.reproducible)]
        image = None
        for ax, q in zip(axes, names):
            values = s.tracks[q]
            image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            for i in range(n_seeds):
                for j in range(k):
                    ax.text(j, i, f"{values[i, j]:+.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(values[i, j]) > 0.6 else "black")
            ax.set_yticks(range(n_seeds), [f"seed {i + 1}" for i in range(n_seeds)], fontsize=7)
            ax.set_xticks(range(k), labels, fontsize=7)
            ax.set_title(f"Spearman with {_pretty(q)}", fontsize=9)
        fig = axes[0].figure
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="Spearman")
        fig.suptitle(f"latent axes across {n_seeds} seeds (column: axis, reproducibility; * >= {s.threshold:g})",
                     fontsize=9)
        self.axes_, self.figure_ = axes, fig
        return self
