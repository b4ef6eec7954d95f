"""Particles larger than memory: Parquet partitions read and encoded one at a time."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._common import PARTICLE_ID, describe, particle_ids, require
from ._parquet import _check_layout

__all__ = ["parquet_partitions", "iter_parquet_particles", "transform_parquet"]


def _natural_key(path: Path):
    """``part.2`` before ``part.10``: digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def parquet_partitions(source) -> list[Path]:
    """The Parquet files that make up ``source``, in reading order.

    Parameters
    ----------
    source : str, Path or list of them
        A ``.parquet`` file, a folder of them (searched recursively, as
        dask and Spark write them: ``part.0.parquet``, ``key=value/...``), or
        a list of files.

    Returns
    -------
    list of Path
        Sorted naturally (``part.2`` before ``part.10``).
    """
    if isinstance(source, (list, tuple)):
        paths = [Path(s) for s in source]
    else:
        if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
            raise TypeError(f"expected a Parquet file, a folder of them or a list of files; got {type(source).__name__}.")
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"{str(root)!r} does not exist.")
        paths = sorted(root.rglob("*.parquet"), key=_natural_key) if root.is_dir() else [root]
        if not paths:
            raise ValueError(f"folder {str(root)!r} holds no .parquet file.")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"file {str(p)!r} does not exist.")
    return paths


def iter_parquet_particles(source, *, by="row_group"):
    """Read Parquet particles one partition at a time.

    Only one partition is in memory at a time, so a data set larger than
    memory can be encoded (:func:`transform_parquet`) or summarised partition
    by partition.

    Parameters
    ----------
    source : str, Path or list of them
        A file written by :func:`write_parquet`, a folder of such files, or a
        list of them (see :func:`parquet_partitions`).
    by : {"row_group", "file"}, default="row_group"
        The partition: one Parquet row group (the finer unit; a file written
        with ``awkward.to_parquet(..., row_group_size=...)`` or by dask holds
        several), or one whole file.

    Yields
    ------
    particles : awkward.Array of type ``n * var * {x, y[, z], ...}``
        One partition's particles, fields as written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from pcvae_sklearn.io import iter_parquet_particles, write_parquet
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for k in range(3):
    ...     _ = write_parquet([rng.normal(size=(5, 2)) for _ in range(4)], folder / f"part.{k}.parquet")
    >>> [len(part) for part in iter_parquet_particles(folder)]
    [4, 4, 4]
    """
    if by not in ("row_group", "file"):
        raise ValueError(f"by must be 'row_group' or 'file'; got {by!r}.")
    ak = require("awkward", "reading Parquet")
    pa = require("pyarrow", "reading Parquet")
    pq = require("pyarrow.parquet", "reading Parquet")
    for path in parquet_partitions(source):
        try:
            n_groups = pq.ParquetFile(path).num_row_groups if by == "row_group" else 1
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{describe(path)} cannot be read as Parquet ({exc}); it may be truncated.") from None
        for group in range(n_groups):
            part = ak.from_parquet(path, row_groups=[group]) if by == "row_group" else ak.from_parquet(path)
            try:
                _check_layout(part, describe(path))
            except ValueError as exc:
                raise ValueError(f"{describe(path)} does not hold particles: {exc}") from None
            yield part


def transform_parquet(estimator, source, *, by="row_group", return_ids=False):
    """Apply a fitted transformer to Parquet particles, one partition at a time.

    Memory holds one partition and the output, never the whole data set;
    with :class:`~pcvae_sklearn.PointCloudVAE` the encoding itself also
    works in bounded chunks.

    Parameters
    ----------
    estimator : fitted transformer
        Typically a fitted :class:`~pcvae_sklearn.PointCloudVAE`; any object
        whose ``transform`` takes particles and returns an array.
    source : str, Path or list of them
        A Parquet file, a folder of them, or a list (see
        :func:`parquet_partitions`); partitions are read in that order.
    by : {"row_group", "file"}, default="row_group"
        See :func:`iter_parquet_particles`.
    return_ids : bool, default=False
        Also return every particle's ``particle_id`` (the row's position in
        the stream when the files have no such field).

    Returns
    -------
    latents : ndarray of shape (n_particles, n_outputs)
        Rows in reading order.
    ids : ndarray of shape (n_particles,)
        Only when ``return_ids``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pcvae_sklearn import PointCloudVAE
    >>> from pcvae_sklearn.datasets import make_npc_2d
    >>> from pcvae_sklearn.io import transform_parquet, write_parquet
    >>> particles, _ = make_npc_2d(40, random_state=0)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_parquet(particles[:20], folder / "part.0.parquet")
    >>> _ = write_parquet(particles[20:], folder / "part.1.parquet")
    >>> small = {"encoder_widths": (16, 32), "decoder_widths": (16, 32), "decoder_channels": 32, "n_output_points": 16}
    >>> vae = PointCloudVAE(latent_dim=2, n_epochs=1, architecture=small, random_state=0).fit(particles)
    >>> Z, ids = transform_parquet(vae, folder, return_ids=True)
    >>> Z.shape, ids[:3]
    ((40, 2), array([0, 1, 2]))
    """
    ak = require("awkward", "reading Parquet")
    latents, ids = [], []
    seen = 0
    for part in iter_parquet_particles(source, by=by):
        if len(part) == 0:
            continue
        latents.append(np.asarray(estimator.transform(part)))
        if return_ids:
            if PARTICLE_ID in ak.fields(part):
                ids.append(particle_ids(part))
            else:
                ids.append(np.arange(seen, seen + len(part)))
        seen += len(part)
    if not latents:
        raise ValueError(f"{describe(source) if isinstance(source, (str, Path)) else 'source'} holds no particle.")
    Z = np.concatenate(latents)
    return (Z, np.concatenate(ids)) if return_ids else Z
