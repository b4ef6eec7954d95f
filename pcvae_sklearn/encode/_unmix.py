"""LatentUnmixer: turn the latent axes towards independent structural factors.

ICA on the active latent dimensions, or on the top principal directions.
"""

from __future__ import annotations

from numbers import Integral, Real

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.decomposition import FastICA
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["LatentUnmixer", "negentropy"]

#: what LatentUnmixer.save writes in its file's "format" entry; load refuses anything else
FORMAT = "pcvae_sklearn.LatentUnmixer"
FORMAT_VERSION = 1
_ARRAYS = ("mean_", "active_", "mixing_", "components_")
_SCALARS = ("n_components_", "n_iter_", "negentropy_", "n_features_in_")

# E[log cosh(nu)] for a standard normal nu
_GAUSS_LOGCOSH = 0.37456720749


def negentropy(S: np.ndarray) -> float:
    """Sum over the columns of ``(mean(log cosh(s)) - E[log cosh(nu)])**2`` (columns standardised first).

    Hyvarinen's approximation of negentropy: 0 for Gaussian columns, larger
    the less Gaussian they are. S (n_samples, k) -> float.
    """
    S = np.asarray(S, dtype=np.float64)
    sd = S.std(axis=0)
    S = (S - S.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    logcosh = np.abs(S) + np.log1p(np.exp(-2.0 * np.abs(S))) - np.log(2.0)  # log cosh without overflow
    return float(np.sum((logcosh.mean(axis=0) - _GAUSS_LOGCOSH) ** 2))


class LatentUnmixer(TransformerMixin, BaseEstimator):
    """Turn the latent axes towards independent structural factors.

    A VAE's Gaussian prior is the same in every direction of the latent
    space, so when two structural parameters vary (a pore's radius and its
    ring distance), the network is free to store each of them along a
    mixture of axes, and no single latent dimension then follows one of
    them. When the parameters vary independently and are not Gaussian
    across the particles (a uniform spread, two populations), independent
    component analysis finds the directions that do: this transformer runs
    scikit-learn's :class:`~sklearn.decomposition.FastICA` on the *active*
    latent dimensions and returns one independent component per active
    dimension.

    Dimensions whose posterior means hardly vary over the particles
    (variance below ``activity_threshold`` times that of the most variable
    one) are collapsed: the VAE stores nothing there. They are left out,
    since whitening would blow their noise up to the scale of the
    structure.

    :class:`PointCloudVAE`'s defaults already push its axes towards
    independent factors during training (its ``decorrelation`` and
    ``kurtosis`` penalties); this is the same idea after the fit, and
    ``n_components=4`` still finds a 3D pore's ring distance more often than
    the raw axes do (see Notes). Their batch norm gives every dimension
    about unit variance over a training batch, so which dimensions vary
    least says little there: pass ``n_components`` for them.

    Use it after :class:`PointCloudVAE` in a Pipeline, before
    :class:`LatentBinner` or the scorers, when more than one parameter is
    expected to vary. **Not** when one parameter dominates: then the latent
    is a curve through all active dimensions, and ICA, being linear, cuts
    the curve into several components (see Notes).

    Parameters
    ----------
    activity_threshold : float in [0, 1), default=0.05
        A latent dimension is active when the variance of its values over the
        particles is at least this fraction of the largest one. Used when
        ``n_components`` is None. :class:`PointCloudVAE`'s default latent
        batch norm gives every dimension about unit variance in training;
        after ``transform``'s average over angles, the dimensions that
        follow a particle's angle shrink, so the active ones are those
        that do not (a warning says so where all vary about equally). Use
        ``n_components`` for them.
    n_components : int or None, default=None
        None: one independent component per active latent dimension. An
        integer k: FastICA on the k principal directions of all the latent
        dimensions that carry the most variance, which does not depend on how
        the latent space happens to be oriented. On 3D pores, k=4 found the
        ring distance more reliably than the active dimensions (see Notes).
    max_iter : int, default=1000
        FastICA iterations.
    tol : float, default=1e-4
        FastICA tolerance.
    n_init : int, default=10
        FastICA runs, each from another random initial unmixing matrix; the
        run whose components are the least Gaussian (the largest sum over
        components of the squared log-cosh negentropy approximation,
        Hyvarinen 1999) is kept. On VAE latents FastICA has several local
        optima that differ in how well a component follows a structural
        parameter (see Notes); one run picks one of them at random.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial unmixing matrices.

    Attributes
    ----------
    active_ : ndarray of bool, shape (n_latent,)
        The latent dimensions unmixed, in input order: the active ones, or
        all of them when ``n_components`` is set.
    n_components_ : int
        Independent components returned (``k``: the number of active
        dimensions, or ``n_components``).
    components_ : ndarray of shape (k, n_active)
        Unmixing matrix: ``S = (Z[:, active_] - mean_[active_]) @ components_.T``
        (``n_active = active_.sum()``).
    mixing_ : ndarray of shape (n_active, k)
        Its inverse on the unmixed subspace: ``Z[:, active_] = mean_[active_] +
        S @ mixing_.T`` (with ``n_components`` below ``n_active``, the latent's
        projection onto the top principal directions).
    mean_ : ndarray of shape (n_latent,)
        Mean latent of the training particles.
    n_iter_ : int
        FastICA iterations of the run kept.
    negentropy_ : float
        Its objective: the sum over components of
        ``(mean(log cosh(s)) - E[log cosh(nu)])**2``, ``nu`` standard normal.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When fitted on a DataFrame.

    Notes
    -----
    Components have unit variance over the training particles. They are
    ordered by the latent variance they carry (the squared norm of their
    column of ``mixing_``), largest first, and signed so that the largest
    entry of that column is positive: the same fit gives the same order and
    signs.

    With :class:`PointCloudVAE`'s defaults the raw latent already separates
    much of what this transformer separates; on simulated 3D pores
    ``n_components=3`` or ``4`` still puts the ring distance at or above the
    model-based estimate on more seeds than the raw axes, while on the
    one-parameter 2D pores unmixing costs up to 0.15 of the radius axis's
    |Spearman|: every active dimension follows the radius along a slightly
    curved line, which ICA, being linear, cuts into pieces. So it is a
    separate, optional step (the figures and the commands are in
    ``docs/choosing_parameters.md``).

    On VAE latents FastICA has several local optima of near-equal objective
    that differ in how well a component follows a structural parameter;
    keeping the least Gaussian of ``n_init`` runs makes the result depend
    less on the seed of one run.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn import LatentUnmixer
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.uniform(-1, 1, size=(500, 2))       # two independent parameters
    >>> Z = np.column_stack([factors @ [[1.0, 0.6], [0.5, -1.0]], 1e-3 * rng.normal(size=500)])
    >>> unmixer = LatentUnmixer(random_state=0).fit(Z)
    >>> unmixer.active_.tolist(), unmixer.get_feature_names_out().tolist()
    ([True, True, False], ['ic0', 'ic1'])
    >>> S = unmixer.transform(Z)
    >>> bool(max(abs(np.corrcoef(S[:, 0], factors[:, 0])[0, 1]), abs(np.corrcoef(S[:, 0], factors[:, 1])[0, 1])) > 0.99)
    True
    """

    _parameter_constraints: dict = {
        "activity_threshold": [Interval(Real, 0, 1, closed="left")],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, activity_threshold=0.05, n_components=None, max_iter=1000, tol=1e-4, n_init=10, random_state=None):
        self.activity_threshold = activity_threshold
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, Z, y=None):
        """Find the active dimensions and the independent components among them.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_latent) or DataFrame
            Latents, one row per particle (e.g. ``PointCloudVAE.transform``).
        y : None
            Ignored.

        Returns
        -------
        self : LatentUnmixer
        """
        Z = validate_data(self, Z, dtype=np.float64, ensure_min_samples=2)
        var = Z.var(axis=0)
        if not var.max() > 0:
            raise ValueError("every latent dimension has the same value for all particles (identical particles, or a "
                             "model that encodes them all alike); there is nothing to unmix.")
        if self.n_components is None:
            active = var >= self.activity_threshold * var.max()
            k = int(active.sum())
            if Z.shape[1] > 1 and var.min() >= 0.5 * var.max():
                warnings.warn(
                    f"all {Z.shape[1]} latent dimensions vary about equally (variance {var.min():.3g}-{var.max():.3g}), "
                    "so none counts as collapsed and all are unmixed. PointCloudVAE's latent batch norm (the default) "
                    "gives every dimension about unit variance: pass n_components (4 for 3D pores) to unmix the top "
                    "principal directions instead.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            k = int(self.n_components)
            if k > Z.shape[1]:
                raise ValueError(f"n_components={k} is more than the {Z.shape[1]} latent dimensions.")
            active = np.ones(Z.shape[1], dtype=bool)  # FastICA whitens onto the top k principal directions
        rs = check_random_state(self.random_state)
        best = None
        for _ in range(int(self.n_init)):
            ica = FastICA(n_components=k, whiten="unit-variance", max_iter=self.max_iter, tol=self.tol,
                          random_state=int(rs.randint(np.iinfo(np.int32).max)))
            score = negentropy(ica.fit_transform(Z[:, active]))
            if best is None or score > best[0]:
                best = (score, ica)
        score, ica = best
        mixing = ica.mixing_
        order = np.argsort(-(mixing**2).sum(axis=0), kind="stable")
        mixing = mixing[:, order]
        sign = np.sign(mixing[np.abs(mixing).argmax(axis=0), np.arange(k)])
        sign[sign == 0] = 1.0
        self.mean_ = Z.mean(axis=0)
        self.mean_[active] = ica.mean_
        self.active_ = active
        self.n_components_ = k
        self.mixing_ = mixing * sign
        self.components_ = ica.components_[order] * sign[:, None]
        self.n_iter_ = int(ica.n_iter_)
        self.negentropy_ = float(score)
        return self

    def transform(self, Z):
        """Independent components of the latents.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_latent) or DataFrame

        Returns
        -------
        ndarray of shape (n_samples, k)
            ``k`` is ``n_components_``.
        """
        check_is_fitted(self, "components_")
        Z = validate_data(self, Z, dtype=np.float64, reset=False)
        return (Z[:, self.active_] - self.mean_[self.active_]) @ self.components_.T

    def inverse_transform(self, S):
        """Latents with these independent components (the collapsed dimensions at their mean).

        With :meth:`PointCloudVAE.inverse_transform` this decodes a traversal
        along one independent component.

        Parameters
        ----------
        S : array-like of shape (n_samples, k)
            ``k`` is ``n_components_``.

        Returns
        -------
        ndarray of shape (n_samples, n_latent)
        """
        check_is_fitted(self, "components_")
        S = np.asarray(S, dtype=np.float64)
        if S.ndim != 2 or S.shape[1] != self.n_components_:
            raise ValueError(f"S has shape {S.shape}; expected (n_samples, {self.n_components_}).")
        if not np.isfinite(S).all():
            raise ValueError(f"S of particle {int(np.flatnonzero(~np.isfinite(S).all(axis=1))[0])} contain NaN or inf.")
        Z = np.repeat(self.mean_[None, :], len(S), axis=0)
        Z[:, self.active_] += S @ self.mixing_.T
        return Z

    def save(self, path) -> None:
        """Write the fitted unmixer to a NumPy ``.npz`` file that loads without pickled code.

        The file holds the fitted arrays (``mean_``, ``active_``,
        ``mixing_``, ``components_``), the other fitted attributes, the
        parameters and a format version. With the VAE's model file it maps
        particles to the same components as the fit did: ``pcvae run``
        writes both (``model.pt``, ``unmixer.npz``).

        Parameters
        ----------
        path : str or path-like
            Where to write; NumPy appends ``.npz`` to a name without it.

        Examples
        --------
        >>> import numpy as np, os, tempfile
        >>> from pcvae_sklearn import LatentUnmixer
        >>> Z = np.random.default_rng(0).uniform(-1, 1, size=(200, 3))
        >>> unmixer = LatentUnmixer(random_state=0).fit(Z)
        >>> path = os.path.join(tempfile.mkdtemp(), "unmixer.npz")
        >>> unmixer.save(path)
        >>> bool(np.array_equal(LatentUnmixer.load(path).transform(Z), unmixer.transform(Z)))
        True
        """
        check_is_fitted(self, "components_")
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
            params["random_state"] = None  # a RandomState instance is not plain data
        arrays = {f"fitted.{name}": np.asarray(getattr(self, name)) for name in _ARRAYS + _SCALARS}
        if hasattr(self, "feature_names_in_"):
            arrays["fitted.feature_names_in_"] = np.asarray(self.feature_names_in_, dtype=str)
        for name, value in params.items():
            arrays[f"param.{name}"] = np.asarray(np.nan if value is None else value)
        np.savez(path, format=np.asarray(FORMAT), format_version=np.asarray(FORMAT_VERSION), **arrays)

    @classmethod
    def load(cls, path):
        """Read an unmixer written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        LatentUnmixer
            Fitted: ``transform`` gives what the saved one gave.

        Raises
        ------
        ValueError
            If the file is not a LatentUnmixer file of this format version.
        """
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(f"{path} is not a LatentUnmixer file (written by LatentUnmixer.save).")
        if int(data["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"{path} is a LatentUnmixer file of format version {int(data['format_version'])}; this "
                             f"version of pcvae_sklearn reads version {FORMAT_VERSION} only. Fit the unmixer again.")
        missing = [f"param.{n}" for n in cls._get_param_names() if f"param.{n}" not in data] + [
            f"fitted.{n}" for n in _ARRAYS + _SCALARS if f"fitted.{n}" not in data]
        if missing:
            raise ValueError(f"{path} is an incomplete LatentUnmixer file: it lacks {', '.join(missing)}.")
        params = {}
        for name in cls._get_param_names():
            value = data[f"param.{name}"].item()
            params[name] = None if isinstance(value, float) and np.isnan(value) else value
        unmixer = cls(**params)
        for name in _ARRAYS:
            setattr(unmixer, name, data[f"fitted.{name}"])
        for name in _SCALARS:
            setattr(unmixer, name, data[f"fitted.{name}"].item())
        if "fitted.feature_names_in_" in data:
            unmixer.feature_names_in_ = data["fitted.feature_names_in_"].astype(object)
        return unmixer

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``ic0, ic1, ...``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "components_")
        return np.asarray([f"ic{j}" for j in range(self.n_components_)], dtype=object)
