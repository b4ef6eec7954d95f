"""Equal-count bins of particles along every latent dimension."""

from __future__ import annotations

import hashlib
import logging
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

__all__ = ["LatentBinner"]

logger = logging.getLogger(__name__)


def _fingerprint(Z: np.ndarray) -> str:
    """A digest of a float64 array's shape and bytes (identifies the training latents)."""
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(Z.shape, dtype=np.int64).tobytes())
    h.update(Z.tobytes())
    return h.hexdigest()


class LatentBinner(TransformerMixin, BaseEstimator):
    """Cut the particles into equal-count bins along every latent dimension.

    The paper's analysis (Haghparast, Zhang et al. 2025): the particles are
    ordered by their value along one latent dimension and cut into
    ``n_bins`` consecutive groups of (nearly) equal size; each bin is then
    fused into a super-particle whose radius or height is measured. This
    transformer does the ordering and cutting for every latent dimension at
    once.

    Parameters
    ----------
    n_bins : int, default=20
        Number of bins per latent dimension. Every bin must hold at least 2
        particles, so ``fit`` needs at least ``2 * n_bins`` particles.

    Attributes
    ----------
    bin_edges_ : ndarray of shape ``(n_bins + 1, n_features_in_)``
        Value boundaries of the bins of every dimension. Row 0 is the
        smallest and row ``n_bins`` the largest training value; row ``b``
        (``0 < b < n_bins``) lies half-way between the largest value of bin
        ``b - 1`` and the smallest value of bin ``b``. Non-decreasing down
        every column.
    labels_ : ndarray of shape ``(n_samples, n_features_in_)``, dtype int
        Bin of every training particle along every dimension, in
        ``0 .. n_bins - 1``.
    bin_counts_ : ndarray of shape (n_bins,)
        Number of training particles in every bin (the same for every
        dimension): ``n_samples // n_bins`` or one more.
    n_features_in_ : int
        Number of latent dimensions.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Names of the latent dimensions; only when fit was given a DataFrame
        whose column names are all strings.

    See Also
    --------
    pcvae_sklearn.encode.PointCloudVAE : Gives the latents.

    Notes
    -----
    **Training particles.** Along dimension ``j`` the particles are sorted
    by value with a stable sort, so ties are broken by particle index (the
    row in ``Z``): the particle of rank ``r`` (0-based) goes to bin
    ``r * n_bins // n_samples``. Bin sizes therefore differ by at most one,
    the larger bins come last, and tied values may straddle a bin boundary.
    The labels do not depend on the order of the rows except through such
    ties.

    **New particles.** ``transform`` bins a value ``v`` by the edges:
    ``searchsorted(bin_edges_[1:-1, j], v, side="right")``, so a value
    equal to an inner edge goes to the upper bin, and values outside the
    training range go to the first or last bin. For training values this
    is the same as ``labels_`` except where tied values straddle a bin
    boundary, which no value rule can reproduce; therefore ``transform``
    recognises the exact training array (by a digest of its bytes and
    shape) and returns ``labels_`` for it, so that ``fit(Z).transform(Z)``
    equals ``fit_transform(Z)`` always.

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.bin import LatentBinner
    >>> Z = np.c_[np.arange(8.0), -np.arange(8.0)]
    >>> binner = LatentBinner(n_bins=4).fit(Z)
    >>> binner.labels_.T
    array([[0, 0, 1, 1, 2, 2, 3, 3],
           [3, 3, 2, 2, 1, 1, 0, 0]])
    >>> binner.bin_indices(3, dim=1)
    array([1, 0])
    >>> binner.transform([[2.4, -2.4]])
    array([[1, 2]])
    >>> binner.get_feature_names_out()
    array(['x0_bin', 'x1_bin'], dtype=object)
    """

    _parameter_constraints: dict = {"n_bins": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_bins=20):
        self.n_bins = n_bins

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, Z, y=None):
        """Rank the particles along every latent dimension and cut the bins.

        Parameters
        ----------
        Z : {array-like, DataFrame} of shape (n_samples, n_latent)
            Latents, one row per particle.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted binner.
        """
        Z = validate_data(self, Z, dtype=np.float64, ensure_min_samples=1)
        n, k = Z.shape
        b = self.n_bins
        if b > n:
            raise ValueError(
                f"n_bins={b} is larger than the number of particles (n_samples = {n}); every bin needs at least 2 particles."
            )
        if n < 2 * b:
            raise ValueError(
                f"{n} particles in {b} bins leave fewer than 2 particles in some bin; "
                f"every bin needs at least 2 particles, so use n_bins <= {n // 2} or more particles."
            )
        # stable sort: equal values keep the order of their particle index
        order = np.argsort(Z, axis=0, kind="stable")
        rank_bin = (np.arange(n, dtype=np.int64) * b) // n  # bin of the particle of rank r
        labels = np.empty((n, k), dtype=np.int64)
        np.put_along_axis(labels, order, np.broadcast_to(rank_bin[:, None], (n, k)), axis=0)
        counts = np.bincount(rank_bin, minlength=b)
        starts = np.concatenate([[0], np.cumsum(counts)])
        sorted_z = np.take_along_axis(Z, order, axis=0)
        edges = np.empty((b + 1, k))
        edges[0] = sorted_z[0]
        edges[-1] = sorted_z[-1]
        inner = starts[1:-1]
        edges[1:-1] = 0.5 * sorted_z[inner - 1] + 0.5 * sorted_z[inner]
        self.bin_edges_ = edges
        self.labels_ = labels
        self.bin_counts_ = counts
        self._order = order
        self._bin_starts = starts
        self._fingerprint = _fingerprint(Z)
        ties = int(np.sum(sorted_z[inner - 1] == sorted_z[inner]))
        if ties:
            logger.info("%d bin boundaries fall inside runs of tied latent values; ties broken by particle index.", ties)
        return self

    def transform(self, Z):
        """Bin of every particle along every latent dimension.

        Parameters
        ----------
        Z : {array-like, DataFrame} of shape (n_samples, n_latent)
            Latents. The training latents get exactly ``labels_``; other
            latents are binned by ``bin_edges_`` (see Notes of the class).

        Returns
        -------
        ndarray of shape (n_samples, n_latent), dtype int
            Bins in ``0 .. n_bins - 1``.
        """
        check_is_fitted(self)
        Z = validate_data(self, Z, dtype=np.float64, reset=False)
        if Z.shape == self.labels_.shape and _fingerprint(Z) == self._fingerprint:
            return self.labels_.copy()
        inner = self.bin_edges_[1:-1]
        out = np.empty(Z.shape, dtype=np.int64)
        for j in range(Z.shape[1]):  # one searchsorted per latent dimension (a handful)
            out[:, j] = np.searchsorted(inner[:, j], Z[:, j], side="right")
        return out

    def fit_transform(self, Z, y=None):
        """Fit and return ``labels_``.

        Parameters
        ----------
        Z : {array-like, DataFrame} of shape (n_samples, n_latent)
            The latents to fit, as for :meth:`fit`.
        y : None
            Ignored.

        Returns
        -------
        ndarray of shape (n_samples, n_latent), dtype int
            ``labels_`` (a copy).
        """
        return self.fit(Z, y).labels_.copy()

    def bin_indices(self, b, dim=0):
        """Training particles in bin ``b`` along latent dimension ``dim``.

        Parameters
        ----------
        b : int
            Bin, ``0 .. n_bins - 1`` (0 is the lowest latent values).
        dim : int, default=0
            Latent dimension, ``0 .. n_features_in_ - 1``.

        Returns
        -------
        ndarray of int
            Row indices into the training latents (and so into the training
            particles), sorted by latent value (ties by index).
        """
        check_is_fitted(self)
        n_bins = len(self.bin_counts_)
        if isinstance(b, bool) or not isinstance(b, Integral):
            raise TypeError(f"b must be an int bin number; got {b!r}.")
        if isinstance(dim, bool) or not isinstance(dim, Integral):
            raise TypeError(f"dim must be an int latent dimension; got {dim!r}.")
        if not 0 <= b < n_bins:
            raise ValueError(f"bin {b} does not exist: bins are numbered 0 .. {n_bins - 1}.")
        if not 0 <= dim < self.n_features_in_:
            raise ValueError(f"dimension {dim} does not exist: the latents have dimensions 0 .. {self.n_features_in_ - 1}.")
        return self._order[self._bin_starts[b] : self._bin_starts[b + 1], dim].copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # bins are integers
        return tags

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``<latent name>_bin``.

        Parameters
        ----------
        input_features : array-like of str, optional
            Names of the latent dimensions; default ``feature_names_in_`` or
            ``x0, x1, ...``.

        Returns
        -------
        ndarray of str
            E.g. ``pcvae0_bin, pcvae1_bin, ...`` after a PointCloudVAE.
        """
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        return np.asarray([f"{name}_bin" for name in names], dtype=object)
