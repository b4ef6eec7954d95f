"""Correlations of latent dimensions with structure estimates, for model selection.

The paper (Haghparast, Zhang et al. 2025) judges a latent space by how well
one of its dimensions tracks a model-based estimate of the structure (radius,
height): Pearson and Spearman correlations per latent dimension (its Figs. 3
and 12). Here that becomes a scorer for ``GridSearchCV`` and a table.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import stats
from sklearn.base import clone

__all__ = ["latent_correlation_scorer", "latent_correlation_table", "best_latent_dimension"]

_METHODS = ("spearman", "pearson")


# ------------------------------------------------------------------ kernels
def _as_2d_float(a, what):
    if hasattr(a, "columns") and hasattr(a, "to_numpy"):
        a = a.to_numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be numeric ({exc}).") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 1-D or 2-D; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(arr)))
        raise ValueError(f"{what} holds a non-finite value (NaN or inf) at row {row}, column {col}.")
    return arr


def _pearson_matrix(a, b):
    """Pearson r of every column of ``a`` (n, k) with every column of ``b`` (n, m).

    A constant column gives NaN (the correlation is undefined).
    """
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    na = np.sqrt((a * a).sum(axis=0))
    nb = np.sqrt((b * b).sum(axis=0))
    num = a.T @ b
    denom = np.outer(na, nb)
    out = np.full(num.shape, np.nan)
    ok = denom > 0
    out[ok] = np.clip(num[ok] / denom[ok], -1.0, 1.0)
    return out


def _rank(a):
    return stats.rankdata(a, axis=0)


def _constant_columns(a):
    return np.ptp(a, axis=0) == 0


def _correlations(a, b, method):
    """Correlation matrix (k, m) with NaN where a column is constant."""
    if method == "spearman":
        r = _pearson_matrix(_rank(a), _rank(b))
    else:
        r = _pearson_matrix(a, b)
    r[_constant_columns(a), :] = np.nan
    r[:, _constant_columns(b)] = np.nan
    return r


def _p_values(r, n, method):
    """Two-sided p-values of correlations ``r`` from ``n`` pairs, as ``scipy.stats.pearsonr`` / ``spearmanr``."""
    r = np.asarray(r, dtype=np.float64)
    out = np.full(r.shape, np.nan)
    if n < 3:
        return out
    ok = np.isfinite(r)
    if method == "pearson":
        # the exact null distribution of r for normal data: a beta distribution
        # on [-1, 1] with a = b = n/2 - 1 (what scipy.stats.pearsonr uses)
        dist = stats.beta(n / 2 - 1, n / 2 - 1, loc=-1, scale=2)
        out[ok] = np.clip(2 * dist.sf(np.abs(r[ok])), 0.0, 1.0)
    else:  # Spearman's rho: a t distribution with n - 2 degrees of freedom (as scipy.stats.spearmanr)
        rho = r[ok]
        with np.errstate(divide="ignore"):
            t = rho * np.sqrt((n - 2) / ((1.0 - rho) * (1.0 + rho)))
        out[ok] = 2 * stats.t.sf(np.abs(t), n - 2)
    return out


# ---------------------------------------------------------------- latents
def _latents(fitted, X):
    """The latents of ``X``: up to the last PointCloudVAE of a Pipeline, else ``transform``."""
    from sklearn.pipeline import Pipeline

    if isinstance(fitted, Pipeline):
        try:
            from ..encode import PointCloudVAE
        except ImportError:  # encode not available: the whole pipeline's transform
            PointCloudVAE = None
        if PointCloudVAE is not None:
            last = None
            for i, (_, step) in enumerate(fitted.steps):
                if isinstance(step, PointCloudVAE):
                    last = i
            if last is not None:
                return fitted[: last + 1].transform(X)
    if not hasattr(fitted, "transform"):
        raise TypeError(
            f"the estimator {type(fitted).__name__} has no transform; latent_correlation_scorer needs an "
            "estimator that maps particles to latents (a PointCloudVAE or a Pipeline holding one)."
        )
    return fitted.transform(X)


class _LatentCorrelationScorer:
    """Callable returned by :func:`latent_correlation_scorer` (picklable, for joblib)."""

    def __init__(self, estimator, method, column):
        self.estimator = estimator
        self.method = method
        self.column = column

    def __repr__(self):
        return f"latent_correlation_scorer({self.estimator!r}, method={self.method!r}, column={self.column})"

    def estimate(self, X):
        """The estimate of every particle (column ``column`` of ``fit_transform``)."""
        est = np.asarray(clone(self.estimator).fit_transform(X), dtype=np.float64)
        if est.ndim == 1:
            est = est[:, None]
        if not -est.shape[1] <= self.column < est.shape[1]:
            raise ValueError(
                f"column={self.column} is out of range: {type(self.estimator).__name__} gives {est.shape[1]} column(s)."
            )
        return est[:, self.column]

    def __call__(self, estimator, X, y=None):
        latents = _as_2d_float(np.asarray(_latents(estimator, X)), "the latents")
        estimate = _as_2d_float(self.estimate(X), "the estimate")
        if latents.shape[0] != estimate.shape[0]:
            raise ValueError(
                f"the latents have {latents.shape[0]} rows but the estimate has {estimate.shape[0]}; "
                "the estimator must give one latent vector per particle."
            )
        if latents.shape[0] < 3 or np.ptp(estimate) == 0:
            return float("nan")  # no correlation is defined: the data's doing, not the model's
        r = _correlations(latents, estimate, self.method)[:, 0]
        return float(np.max(np.abs(np.nan_to_num(r, nan=0.0)))) if r.size else 0.0


def latent_correlation_scorer(estimator, *, method="spearman", column=0):
    """A scorer: the largest |correlation| of any latent dimension with an estimate.

    Use it as ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV`
    to choose the PointCloudVAE settings (latent_dim, beta, ...) whose latent
    space best tracks a model-based structure estimate, as in the paper.

    Parameters
    ----------
    estimator : transformer
        Maps particles to per-particle estimates, e.g.
        :class:`RadiusEstimator` or :class:`HeightEstimator`. A clone of it is
        fitted on each scored ``X`` (``clone(estimator).fit_transform(X)``).
    method : {"spearman", "pearson"}, default="spearman"
        Rank (Spearman) or linear (Pearson) correlation.
    column : int, default=0
        Which column of the estimator's output is the estimate (column 0 is
        the value, column 1 the precision for the estimators here).

    Returns
    -------
    scorer : callable
        ``scorer(fitted_estimator, X, y=None) -> float`` in [0, 1]. The
        latents are ``fitted_estimator.transform(X)``; for a
        :class:`~sklearn.pipeline.Pipeline`, ``X`` goes through the steps up
        to and including the last ``PointCloudVAE`` (the whole pipeline if it
        holds none). A latent dimension that is constant on ``X`` counts as
        correlation 0. The score is NaN where no correlation is defined
        whatever the model: an estimate that is the same for every particle
        of ``X``, or fewer than 3 particles (``GridSearchCV`` then warns of
        non-finite scores and ranks them last). Picklable, so ``n_jobs``
        works.

    See Also
    --------
    latent_correlation_table : Pearson and Spearman of every dimension, with p-values.
    best_latent_dimension : The dimension that tracks an estimate best.

    References
    ----------
    .. [1] Haghparast, Zhang et al., Sci. Rep. (2025), Figs. 3 and 12: latent
       dimensions against estimates as a score (the full reference: :mod:`pcvae_sklearn`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from pcvae_sklearn.estimate import RadiusEstimator, latent_correlation_scorer
    >>> angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    >>> X = [r * np.c_[np.cos(angles), np.sin(angles)] for r in (40.0, 50.0, 60.0, 70.0)]
    >>> spread = FunctionTransformer(lambda P: np.array([[np.ptp(p[:, 0])] for p in P])).fit(X)
    >>> scorer = latent_correlation_scorer(RadiusEstimator())
    >>> round(scorer(spread, X), 6)
    1.0
    """
    if not (hasattr(estimator, "fit_transform") or (hasattr(estimator, "fit") and hasattr(estimator, "transform"))):
        raise TypeError(
            f"estimator must be a transformer from particles to estimates (such as RadiusEstimator()); "
            f"got {type(estimator).__name__}."
        )
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}.")
    if not isinstance(column, Integral) or isinstance(column, bool):
        raise TypeError(f"column must be an int; got {column!r}.")
    return _LatentCorrelationScorer(estimator, method, int(column))


# ----------------------------------------------------------------- tables
def _latent_names(latents, feature_names, k):
    if feature_names is not None:
        names = [str(n) for n in feature_names]
        if len(names) != k:
            raise ValueError(f"feature_names has {len(names)} names but the latents have {k} dimensions.")
        return names
    if hasattr(latents, "columns"):
        return [str(c) for c in latents.columns]
    return [f"pcvae{j}" for j in range(k)]


def _estimates(estimates, estimate_names, n):
    """Normalise ``estimates`` to (names, (n, m) array)."""
    if isinstance(estimates, dict):
        if not estimates:
            raise ValueError("estimates is an empty dict; give at least one name -> 1-D array.")
        names = [str(k) for k in estimates]
        cols = []
        for name, v in estimates.items():
            arr = np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v)
            if arr.ndim == 2 and arr.shape[1] >= 1:
                arr = arr[:, 0]  # an estimator's (value, precision) output: the value
            cols.append(_as_2d_float(arr, f"estimates[{name!r}]")[:, 0])
        lengths = {len(c) for c in cols}
        if len(lengths) > 1:
            raise ValueError(f"the estimates have different lengths {sorted(lengths)}.")
        arr = np.column_stack(cols)
    else:
        names = None
        if hasattr(estimates, "columns"):
            names = [str(c) for c in estimates.columns]
        elif hasattr(estimates, "name") and getattr(estimates, "ndim", 0) == 1:  # a pandas Series
            names = [str(estimates.name)]
        arr = _as_2d_float(estimates, "estimates")
        if estimate_names is not None:
            names = [str(x) for x in estimate_names]
        if names is None:
            names = [f"estimate{j}" for j in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise ValueError(f"{len(names)} estimate name(s) for {arr.shape[1]} estimate column(s).")
    if arr.shape[0] != n:
        raise ValueError(f"the estimates have {arr.shape[0]} rows but the latents have {n}; one row per particle is needed.")
    return names, arr


def latent_correlation_table(latents, estimates, *, feature_names=None, estimate_names=None):
    """Pearson and Spearman correlation of every latent dimension with every estimate.

    The data behind the paper's scatter plots of latent against radius or
    height (Figs. 3 and 12).

    Parameters
    ----------
    latents : array-like of shape (n_particles, n_latent) or DataFrame
        One latent vector per particle (``PointCloudVAE.transform``).
    estimates : dict of str to array-like of shape (n_particles,), or array-like of shape (n_particles, n_estimates)
        The per-particle estimates, e.g. ``{"radius_nm": radius}``. In a dict,
        a 2-D value (an estimator's ``[value, precision]`` output) uses its
        first column. A DataFrame's columns name its estimates.
    feature_names : list of str, optional
        Names of the latent dimensions; default: the DataFrame's columns or
        ``pcvae0, pcvae1, ...``.
    estimate_names : list of str, optional
        Names of the columns of a 2-D array of estimates; default: the
        DataFrame's columns or ``estimate0, estimate1, ...``.

    Returns
    -------
    table : pandas.DataFrame
        One row per (latent dimension, estimate), with columns ``latent``,
        ``estimate``, ``pearson_r``, ``pearson_p``, ``spearman_rho`` and
        ``spearman_p`` (two-sided p-values, as ``scipy.stats.pearsonr`` and
        ``scipy.stats.spearmanr`` give them). Correlations with a constant
        column are undefined and reported as NaN.

    Raises
    ------
    ImportError
        If pandas is not installed.

    See Also
    --------
    latent_correlation_scorer : The largest |correlation| as a model-selection score.
    best_latent_dimension : The dimension that tracks an estimate best.

    References
    ----------
    .. [1] Haghparast, Zhang et al., Sci. Rep. (2025), Figs. 3 and 12: the correlations
       of Pearson and Spearman (the full reference: :mod:`pcvae_sklearn`).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.estimate import latent_correlation_table
    >>> radius = np.array([40.0, 45.0, 50.0, 55.0, 60.0])
    >>> latents = np.c_[radius**2, [1.0, -1.0, 2.0, 0.5, -0.5]]
    >>> table = latent_correlation_table(latents, {"radius_nm": radius})
    >>> table[["latent", "estimate", "spearman_rho"]].round(3)
       latent   estimate  spearman_rho
    0  pcvae0  radius_nm           1.0
    1  pcvae1  radius_nm          -0.2
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "latent_correlation_table returns a pandas DataFrame; install pandas "
            "(pip install pandas, or pip install 'pcvae-sklearn[io]')."
        ) from exc
    z = _as_2d_float(latents, "latents")
    n, k = z.shape
    if n < 2:
        raise ValueError(f"the latents have {n} row(s); correlations need at least 2 particles.")
    lnames = _latent_names(latents, feature_names, k)
    enames, e = _estimates(estimates, estimate_names, n)
    r = _correlations(z, e, "pearson")
    rho = _correlations(z, e, "spearman")
    table = pd.DataFrame(
        {
            "latent": np.repeat(lnames, len(enames)),
            "estimate": np.tile(enames, k),
            "pearson_r": r.ravel(),
            "pearson_p": _p_values(r, n, "pearson").ravel(),
            "spearman_rho": rho.ravel(),
            "spearman_p": _p_values(rho, n, "spearman").ravel(),
        }
    )
    return table


def best_latent_dimension(latents, estimate, *, method="spearman"):
    """Index of the latent dimension whose |correlation| with an estimate is largest.

    Parameters
    ----------
    latents : array-like of shape (n_particles, n_latent) or DataFrame
    estimate : array-like of shape (n_particles,) or (n_particles, 2)
        The estimate of every particle; of an estimator's ``[value,
        precision]`` output, the value is used.
    method : {"spearman", "pearson"}, default="spearman"

    Returns
    -------
    int
        The dimension (ties: the first). A constant dimension counts as
        correlation 0.

    See Also
    --------
    latent_correlation_table : All correlations with p-values.

    Notes
    -----
    The latent dimension that follows a structural parameter, as in
    Haghparast, Zhang et al., Sci. Rep. (2025) (the full reference is in
    :mod:`pcvae_sklearn`).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.estimate import best_latent_dimension
    >>> radius = np.array([40.0, 45.0, 50.0, 55.0, 60.0])
    >>> best_latent_dimension(np.c_[[3.0, 1, 2, 5, 4], -radius], radius)
    1
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}.")
    z = _as_2d_float(latents, "latents")
    e = np.asarray(estimate.to_numpy() if hasattr(estimate, "to_numpy") else estimate)
    if e.ndim == 2:
        e = e[:, 0]
    e = _as_2d_float(e, "estimate")
    if e.shape[0] != z.shape[0]:
        raise ValueError(f"the estimate has {e.shape[0]} rows but the latents have {z.shape[0]}.")
    if z.shape[0] < 2:
        raise ValueError("correlations need at least 2 particles.")
    r = np.nan_to_num(_correlations(z, e, method)[:, 0], nan=0.0)
    return int(np.argmax(np.abs(r)))
