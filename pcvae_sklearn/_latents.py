"""The one check of a latent matrix handed in by a user (binning, clustering, figures, audits)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_latents"]


def check_latents(latents, n_particles=None, *, min_particles=1, name="latents") -> np.ndarray:
    """Latents as a finite float64 array of shape (n_particles, n_latent).

    Parameters
    ----------
    latents : array-like or DataFrame
        One row per particle; a 1-D array is one latent dimension.
    n_particles : int or None
        The number of rows required (one per particle of the data they go with).
    min_particles : int, default=1
    name : str, default="latents"
        What the errors call the array.

    Returns
    -------
    ndarray of shape (n_particles, n_latent)

    Raises
    ------
    TypeError
        Not numeric.
    ValueError
        The wrong shape or number of rows, or a NaN or inf (the message names the particle).

    Examples
    --------
    >>> check_latents([1.0, 2.0]).shape
    (2, 1)
    """
    Z = latents.to_numpy() if hasattr(latents, "to_numpy") else latents
    try:
        Z = np.asarray(Z, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array of shape (n_particles, n_latent).") from None
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2 or (n_particles is not None and Z.shape[0] != n_particles):
        expected = "(n_particles, n_latent)" if n_particles is None else f"({n_particles}, n_latent), one row per particle"
        raise ValueError(f"{name} has shape {Z.shape}; expected {expected}.")
    if Z.shape[0] < min_particles:
        raise ValueError(f"{name} has {Z.shape[0]} row(s); at least {min_particles} particles are needed.")
    if not np.isfinite(Z).all():
        row = int(np.flatnonzero(~np.isfinite(Z).all(axis=1))[0])
        raise ValueError(f"{name} of particle {row} contain NaN or inf.")
    return Z
