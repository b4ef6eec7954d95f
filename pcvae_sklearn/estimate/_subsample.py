"""Random subsampling of localizations, for the robustness experiment."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state

from .._input import as_particles
from .._ragged import Particles
from ._segments import segment_sort

__all__ = ["subsample_localizations"]


def subsample_localizations(X, fraction, random_state=None):
    """Keep a random fraction of every particle's localizations.

    The robustness experiment of Haghparast, Zhang et al. (2025, Fig. 6):
    fit and score the model on particles of which only a fraction of the
    localizations is left, as if fewer fluorophores had been labelled or
    detected.

    Parameters
    ----------
    X : awkward array or list of array-like of shape (n_i, 2) or (n_i, 3)
        Particles (localizations in nm). Extra per-localization fields of an
        awkward array (precision, photons, frame, ...) are carried along.
    fraction : float in (0, 1]
        Fraction of each particle's localizations to keep. A particle of
        ``n`` localizations keeps ``round(fraction * n)`` of them (halves
        rounded up), and always at least 1.
    random_state : int, RandomState instance or None, default=None
        Controls which localizations are kept.

    Returns
    -------
    awkward.Array
        ``n_particles * var * {x, y[, z], <fields>}``; the kept localizations
        of every particle, in their original order. ``X`` is not modified.

    Notes
    -----
    Vectorised: every localization draws a distinct random key (one random
    permutation of all localizations), the keys are sorted inside every
    particle (no loop over particles), and a particle keeps the
    localizations whose key is at most its quota-th smallest key. Every
    subset of the quota's size is equally likely.

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025), Fig. 6.

    Examples
    --------
    >>> import numpy as np
    >>> import awkward as ak
    >>> from pcvae_sklearn.estimate import subsample_localizations
    >>> X = [np.zeros((10, 2)), np.ones((3, 2))]
    >>> ak.num(subsample_localizations(X, 0.5, random_state=0)).tolist()
    [5, 2]
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real):
        raise TypeError(f"fraction must be a number in (0, 1]; got {fraction!r}.")
    if not (0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}.")
    p = as_particles(X)
    rng = check_random_state(random_state)
    keep = _random_fraction_rows(p, float(fraction), rng)
    lengths = np.bincount(p.particle_index()[keep], minlength=p.n_particles)
    offsets = np.zeros(p.n_particles + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = Particles(
        coords=p.coords[keep],
        offsets=offsets,
        fields={k: v[keep] for k, v in p.fields.items()},
        ids=p.ids,
    )
    return out.to_awkward()


def _random_fraction_rows(p: Particles, fraction: float, rng) -> np.ndarray:
    """Sorted packed rows of a random ``fraction`` of each particle's localizations."""
    lengths = p.lengths
    quota = np.maximum(1, np.floor(fraction * lengths + 0.5)).astype(np.int64)
    quota = np.minimum(quota, lengths)
    # distinct random keys (a random permutation), so exactly the quota is kept
    keys = rng.permutation(p.n_localizations).astype(np.float64)
    sorted_keys = segment_sort(keys, p.offsets)
    threshold = sorted_keys[p.offsets[:-1] + quota - 1]  # the quota-th smallest key of each particle
    return np.flatnonzero(keys <= np.repeat(threshold, lengths))
