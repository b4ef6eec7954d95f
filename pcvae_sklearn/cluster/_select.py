"""Choosing the number of clusters of the latents: BIC of a Gaussian mixture and silhouette."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from .._latents import check_latents

__all__ = ["ClusterSelection", "choose_n_clusters", "plot_cluster_selection"]

logger = logging.getLogger(__name__)

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass
class ClusterSelection:
    """Result of :func:`choose_n_clusters`.

    Attributes
    ----------
    k_values : ndarray of shape (n_k,)
        The numbers of clusters tried, ascending.
    bic : ndarray of shape (n_k,)
        Bayesian information criterion of a ``GaussianMixture`` with ``k``
        components on the (standardised) latents; lower is better.
    silhouette : ndarray of shape (n_k,)
        Mean silhouette coefficient of that mixture's hard labels (in
        ``[-1, 1]``, higher is better); NaN for ``k = 1`` (undefined) and
        where the mixture used fewer than 2 clusters.
    n_clusters : int
        The ``k`` with the lowest BIC: the choice.
    n_clusters_silhouette : int or None
        The ``k >= 2`` with the highest silhouette (``None`` if no ``k >= 2``
        was tried). Silhouette cannot say "one cluster", so it only ranks
        ``k >= 2``; it is reported as a second opinion.
    labels : ndarray of shape (n_particles,)
        Hard labels of the mixture with ``n_clusters`` components.
    n_components : int
        Dimensions the mixtures were fitted in (after the PCA).
    models : list of GaussianMixture
        The fitted mixtures, one per ``k``, in ``k_values`` order.
    """

    k_values: np.ndarray
    bic: np.ndarray
    silhouette: np.ndarray
    n_clusters: int
    n_clusters_silhouette: int | None
    labels: np.ndarray
    n_components: int
    models: list = field(repr=False)

    def to_frame(self):
        """The scores as a ``pandas.DataFrame`` (columns ``k``, ``bic``, ``silhouette``, ``chosen``)."""
        import pandas as pd

        return pd.DataFrame(
            {"k": self.k_values, "bic": self.bic, "silhouette": self.silhouette, "chosen": self.k_values == self.n_clusters}
        )

    def plot(self, ax=None):
        """Draw the scores; see :func:`plot_cluster_selection`."""
        return plot_cluster_selection(self, ax=ax)


def choose_n_clusters(
    latents,
    k_range=range(1, 7),
    *,
    n_components=0.9,
    standardize=False,
    covariance_type="full",
    n_init=3,
    silhouette_sample_size=2000,
    random_state=None,
):
    """Score numbers of clusters ``k`` of the latents by BIC and silhouette.

    The latents are first reduced to their leading principal components
    (``n_components``). Then for every ``k`` a
    :class:`~sklearn.mixture.GaussianMixture` with ``k`` components is
    fitted; its BIC is recorded, and the mean silhouette coefficient of its
    hard labels. The chosen ``k`` is the BIC minimum, which, unlike the
    silhouette, can also say that there is only one cluster (``k = 1``: no
    discrete classes, the heterogeneity is continuous or absent).

    Why principal components, and no standardising by default: a VAE's
    latent dimensions share one scale (the unit Gaussian prior), and the
    dimensions the data do not need collapse to a small spread of noise and
    leftovers of pose and count. Standardising blows those up to the weight
    of the informative ones, and a Gaussian mixture in all dimensions fits
    their non-Gaussian shape with extra components. On 450 simulated
    tetrahedra of three heights (``benchmarks/bench_validate.py``) the
    height lay in one dimension of spread 0.15 against 0.02-0.06 for the
    other seven: BIC on all eight dimensions chose 6 clusters (standardised
    or not, any covariance type), on the components holding 90 % of the
    variance it chose 3.

    Parameters
    ----------
    latents : array-like of shape (n_particles, n_latent)
        One latent vector per particle (``PointCloudVAE.transform``).
    k_range : iterable of int, default=range(1, 7)
        Numbers of clusters to try (each >= 1 and below the number of particles).
    n_components : int, float in (0, 1) or None, default=0.9
        Principal components kept (:class:`~sklearn.decomposition.PCA`): a
        number, or the fraction of the variance to keep. ``None``: all
        latent dimensions as they are.
    standardize : bool, default=False
        Scale every latent dimension to zero mean and unit variance first
        (before the PCA).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Of the Gaussian mixtures.
    n_init : int, default=3
        Initialisations per mixture; the best is kept.
    silhouette_sample_size : int or None, default=2000
        The silhouette costs O(n^2); above this many particles it is computed
        on a random sample of this size. ``None``: all particles.
    random_state : int, RandomState instance or None, default=None
        Seeds the mixtures and the silhouette sample.

    Returns
    -------
    ClusterSelection
        Scores per ``k``, the chosen ``k`` and its labels; ``.plot()`` draws
        the scores (needs matplotlib) and ``.to_frame()`` tabulates them.

    Raises
    ------
    ValueError
        For an empty ``k_range``, a ``k`` below 1 or not below the number of
        particles, NaN latents.

    See Also
    --------
    fuse_clusters : one super-particle, and its estimate, per cluster.
    sklearn.mixture.GaussianMixture.bic : the criterion.
    sklearn.metrics.silhouette_score : the second opinion.

    References
    ----------
    .. [1] Schwarz, G. "Estimating the dimension of a model." Ann. Stat. 6,
       461-464 (1978).
    .. [2] Rousseeuw, P. J. "Silhouettes: a graphical aid to the
       interpretation and validation of cluster analysis." J. Comput. Appl.
       Math. 20, 53-65 (1987).
    .. [3] Huijben, T. A. P. M. et al. "Detecting structural heterogeneity in
       single-molecule localization microscopy data." Nat. Commun. 12, 3791
       (2021).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.cluster import choose_n_clusters
    >>> rng = np.random.default_rng(0)
    >>> Z = np.concatenate([rng.normal(c, 0.3, (60, 2)) for c in ([0, 0], [3, 0], [0, 3])])
    >>> result = choose_n_clusters(Z, range(1, 6), random_state=0)
    >>> result.n_clusters, result.n_clusters_silhouette
    (3, 3)
    >>> result.bic.shape
    (5,)
    """
    Z = check_latents(latents)
    n = Z.shape[0]
    try:
        ks = np.array(sorted({int(k) for k in k_range}), dtype=np.int64)
    except (TypeError, ValueError):
        raise TypeError("k_range must be an iterable of integers, e.g. range(1, 7).") from None
    if ks.size == 0:
        raise ValueError("k_range is empty; give the numbers of clusters to try, e.g. range(1, 7).")
    if ks[0] < 1 or ks[-1] >= n:
        raise ValueError(f"every k must be in [1, n_particles - 1] = [1, {n - 1}]; k_range holds {ks.tolist()}.")
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {_COVARIANCE_TYPES}; got {covariance_type!r}.")
    if not isinstance(n_init, Integral) or n_init < 1:
        raise ValueError(f"n_init must be an integer >= 1; got {n_init!r}.")
    if silhouette_sample_size is not None and (not isinstance(silhouette_sample_size, Integral) or silhouette_sample_size < 2):
        raise ValueError(f"silhouette_sample_size must be None or an integer >= 2; got {silhouette_sample_size!r}.")
    rng = check_random_state(random_state)
    if standardize:
        Z = StandardScaler().fit_transform(Z)
    if n_components is not None:
        if isinstance(n_components, Integral):
            if not 1 <= n_components <= Z.shape[1]:
                raise ValueError(f"n_components must be in [1, {Z.shape[1]}] (the latent dimensions); got {n_components}.")
        elif not (isinstance(n_components, float) and 0 < n_components < 1):
            raise ValueError(f"n_components must be None, an integer or a float in (0, 1); got {n_components!r}.")
        Z = PCA(n_components, random_state=0).fit_transform(Z)
    sample = None
    if silhouette_sample_size is not None and n > silhouette_sample_size:
        sample = rng.choice(n, silhouette_sample_size, replace=False)
    bic = np.empty(len(ks))
    sil = np.full(len(ks), np.nan)
    models = []
    for a, k in enumerate(ks):  # a loop over candidate k, a handful
        gm = GaussianMixture(int(k), covariance_type=covariance_type, n_init=n_init, random_state=rng.randint(2**31 - 1))
        gm.fit(Z)
        models.append(gm)
        bic[a] = gm.bic(Z)
        if k >= 2:
            labels = gm.predict(Z)
            Zs, ls = (Z, labels) if sample is None else (Z[sample], labels[sample])
            if len(np.unique(ls)) >= 2:
                sil[a] = silhouette_score(Zs, ls)
        logger.info("choose_n_clusters: k=%d BIC=%.1f silhouette=%.3f", k, bic[a], sil[a])
    best = int(np.argmin(bic))
    k_sil = None
    if np.isfinite(sil).any():
        k_sil = int(ks[np.nanargmax(sil)])
    return ClusterSelection(
        k_values=ks,
        bic=bic,
        silhouette=sil,
        n_clusters=int(ks[best]),
        n_clusters_silhouette=k_sil,
        labels=models[best].predict(Z),
        n_components=int(Z.shape[1]),
        models=models,
    )


def plot_cluster_selection(result, ax=None):
    """Plot BIC (left axis) and silhouette (right axis) against ``k``.

    Parameters
    ----------
    result : ClusterSelection
        From :func:`choose_n_clusters`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    ax : matplotlib Axes
        The BIC axes; the silhouette axes is ``ax.right_ax``.

    Raises
    ------
    ImportError
        Without matplotlib (``pip install 'pcvae-sklearn[plot]'``).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install matplotlib (or the package's plot extra).") from exc
    if not isinstance(result, ClusterSelection):
        raise TypeError(f"result must be a ClusterSelection (from choose_n_clusters), got {type(result).__name__}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(result.k_values, result.bic, "o-", color="C0", label="BIC")
    ax.axvline(result.n_clusters, color="C0", ls=":", lw=1)
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("BIC (lower is better)", color="C0")
    right = ax.twinx()
    right.plot(result.k_values, result.silhouette, "s--", color="C1", label="silhouette")
    right.set_ylabel("silhouette (higher is better)", color="C1")
    ax.set_title(f"chosen k = {result.n_clusters} (BIC minimum)")
    ax.right_ax = right
    return ax
