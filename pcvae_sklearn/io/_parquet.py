"""Particles to and from Parquet, through awkward: a lossless round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._input import as_particles
from ._common import PARTICLE_ID, describe, existing_path, require


def _as_awkward_particles(particles):
    """The awkward array to write: reader output as is, anything else through ``as_particles``."""
    ak = require("awkward", "writing Parquet")
    if isinstance(particles, ak.Array):
        _check_layout(particles, "particles")
        return particles
    p = as_particles(particles, what="particles")
    arr = p.to_awkward()
    if PARTICLE_ID not in ak.fields(arr):
        ids = np.arange(p.n_particles) if p.ids is None else np.asarray(p.ids)
        arr = ak.with_field(arr, ak.unflatten(np.repeat(ids, p.lengths), p.lengths), PARTICLE_ID)
    return arr


def write_parquet(particles, path, *, overwrite=False):
    """Write particles to a Parquet file (lossless).

    Parameters
    ----------
    particles : awkward.Array, list of (n_i, d) arrays or Particles
        Typically the output of a reader; every field (``particle_id``,
        ``precision``, ``frame``, ...) and every type is kept. Other forms
        are converted with :func:`pcvae_sklearn.as_particles` and get a
        ``particle_id`` field (their ``ids``, or 0, 1, ...).
    path : str or Path
        The ``.parquet`` file to write.
    overwrite : bool, default=False
        Replace an existing file.

    See Also
    --------
    read_parquet : reads it back, unchanged.
    """
    ak = require("awkward", "writing Parquet")
    require("pyarrow", "writing Parquet")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")
    arr = _as_awkward_particles(particles)
    ak.to_parquet(ak.to_packed(arr), path)  # packed: contiguous buffers, no sliced-away data
    return path


def read_parquet(path):
    """Read particles written by :func:`write_parquet` (or any awkward Parquet of particles).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], ...}``
        Exactly what was written.

    Raises
    ------
    ValueError
        If the file is truncated or not Parquet, or does not hold particles
        (records with x and y per localization).
    """
    ak = require("awkward", "reading Parquet")
    pa = require("pyarrow", "reading Parquet")
    path = existing_path(path)
    try:
        arr = ak.from_parquet(path)
    except (pa.ArrowInvalid, OSError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{describe(path)} cannot be read as Parquet ({msg}); it may be truncated or not a Parquet file.") from None
    try:
        _check_layout(arr, describe(path))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{describe(path)} does not hold particles: {exc}") from None
    return arr


def _check_layout(arr, what):
    """Cheap check of the type ``n * var * {x, y, ...}`` (values are checked by ``as_particles`` downstream)."""
    ak = require("awkward", "Parquet")
    fields = ak.fields(arr)
    if arr.ndim != 2 or not {"x", "y"} <= set(fields):
        raise ValueError(f"{what} has type {arr.type}; particles are n * var * {{x, y[, z], ...}} records.")


__all__ = ["write_parquet", "read_parquet"]
