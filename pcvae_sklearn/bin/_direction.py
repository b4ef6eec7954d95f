"""The latent direction that predicts an estimate: one axis that comes back with every seed."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from .._latents import check_latents

__all__ = ["LatentDirection"]


class LatentDirection(TransformerMixin, BaseEstimator):
    """Project the latents onto the direction that predicts a per-particle estimate.

    A VAE's single axes are not identifiable: another seed can split,
    merge or turn them, and the axis that tracks the radius best in one fit
    may have no counterpart in the next. What every fit that has learnt the
    radius shares is the *direction* in its latent space along which the
    radius changes. This transformer finds it by ridge regression of the
    estimate on the standardised latents, and its output is the estimate
    that the latent predicts (same unit, nm for a radius).

    ``fit_transform(Z, y)`` is *cross-fitted*, like scikit-learn's
    ``TargetEncoder``: each particle's value comes from a regression fitted
    on the other folds, never on its own estimate, so that binning by it
    does not sort particles by their own estimate's noise. It therefore
    differs from ``fit(Z, y).transform(Z)``, which uses the regression on
    all particles (for new particles).

    Parameters
    ----------
    alpha : float, default=1.0
        Ridge penalty on the standardised latents (the ``alpha`` of
        ``sklearn.linear_model.Ridge``); with hundreds of particles it
        hardly matters, and it keeps collinear columns (a latent and its
        components side by side) well posed. 0: least squares (the
        minimum-norm solution where columns are collinear).
    n_splits : int, default=5
        Folds of the cross-fitting (fewer when there are fewer particles).
    random_state : int, RandomState instance or None
        Shuffles the particles into folds.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Weights of the raw latent columns: ``transform(Z) = Z @ coef_ + intercept_``.
    intercept_ : float
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation the ridge penalty was applied in.
    score_ : float
        Pearson's r between the cross-fitted projection and the estimate
        (set by ``fit_transform``; NaN after ``fit`` alone).
    n_features_in_ : int
        Number of latent columns seen in fit (``n_features``).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.bin import LatentDirection
    >>> rng = np.random.default_rng(0)
    >>> radius = rng.uniform(40, 60, 200)
    >>> Z = np.c_[radius + rng.normal(0, 2, 200), radius - rng.normal(0, 2, 200), rng.normal(size=200)]
    >>> d = LatentDirection(random_state=0).fit_transform(Z, radius)
    >>> d.shape, bool(np.corrcoef(d[:, 0], radius)[0, 1] > 0.95)
    ((200, 1), True)
    """

    def __init__(self, alpha=1.0, n_splits=5, random_state=None):
        self.alpha = alpha
        self.n_splits = n_splits
        self.random_state = random_state

    def _check(self, Z, y):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, Real) or not self.alpha >= 0:
            raise ValueError(f"alpha must be a number >= 0; got {self.alpha!r}.")
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, Integral) or self.n_splits < 2:
            raise ValueError(f"n_splits must be an integer of at least 2; got {self.n_splits!r}.")
        Z = check_latents(Z, min_particles=2)
        y = np.asarray(y, dtype=np.float64)
        y = y[:, 0] if y.ndim == 2 else y
        if y.shape != (Z.shape[0],):
            raise ValueError(f"y has shape {y.shape}; expected one estimate per particle, ({Z.shape[0]},).")
        if not np.isfinite(y).all():
            bad = np.flatnonzero(~np.isfinite(y))[:10].tolist()
            raise ValueError(f"the estimate is not finite for particle(s) {bad}.")
        return Z, y

    def _solve(self, Z, y):
        mean = Z.mean(axis=0)
        scale = Z.std(axis=0)
        scale[scale == 0] = 1.0
        S = (Z - mean) / scale
        if self.alpha > 0:
            w = np.linalg.solve(S.T @ S + self.alpha * np.eye(S.shape[1]), S.T @ (y - y.mean()))
        else:  # least squares, the minimum-norm solution where columns are collinear
            w = np.linalg.lstsq(S, y - y.mean(), rcond=None)[0]
        coef = w / scale
        return mean, scale, coef, float(y.mean() - mean @ coef)

    def fit(self, Z, y):
        """Fit the direction on all particles.

        Parameters
        ----------
        Z : array-like of shape (n_particles, n_latent)
        y : array-like of shape (n_particles,)
            The per-particle estimate (a 2-D estimate uses its first column).

        Returns
        -------
        self
        """
        Z, y = self._check(Z, y)
        self.mean_, self.scale_, self.coef_, self.intercept_ = self._solve(Z, y)
        self.n_features_in_ = Z.shape[1]
        self.score_ = float("nan")
        return self

    def fit_transform(self, Z, y):
        """Fit on all particles, and return every particle's cross-fitted projection.

        Returns
        -------
        ndarray of shape (n_particles, 1)
            Each particle's estimate as predicted from its latent by the
            regression fitted on the folds that leave it out.
        """
        Z, y = self._check(Z, y)
        self.fit(Z, y)
        out = np.empty(Z.shape[0])
        folds = KFold(n_splits=min(int(self.n_splits), Z.shape[0]), shuffle=True, random_state=self.random_state)
        for train, test in folds.split(Z):
            _, _, coef, intercept = self._solve(Z[train], y[train])
            out[test] = Z[test] @ coef + intercept
        self.score_ = float(np.corrcoef(out, y)[0, 1]) if np.std(out) > 0 and np.std(y) > 0 else float("nan")
        return out[:, None]

    def transform(self, Z):
        """Project with the regression fitted on all particles: ``Z @ coef_ + intercept_``, shape (n_particles, 1)."""
        check_is_fitted(self, "coef_")
        Z = check_latents(Z)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(f"Z has {Z.shape[1]} columns; this direction was fitted on {self.n_features_in_}.")
        return (Z @ self.coef_ + self.intercept_)[:, None]

    def get_feature_names_out(self, input_features=None):
        """``["latent_direction"]``."""
        return np.asarray(["latent_direction"], dtype=object)
