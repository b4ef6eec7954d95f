"""Write per-particle results (latents, bin labels, estimates) back for other tools."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._ragged import Particles
from .._version import __version__
from ._common import PARTICLE_ID, describe, existing_path, particle_ids, require, sanitise
from ._picasso import read_locs, yaml_path

logger = logging.getLogger(__name__)


def _ids_of(particles_or_ids) -> np.ndarray:
    ak = require("awkward", "writing results")
    if isinstance(particles_or_ids, ak.Array):
        if PARTICLE_ID in ak.fields(particles_or_ids):
            return particle_ids(particles_or_ids)
        return np.arange(len(particles_or_ids))
    if isinstance(particles_or_ids, Particles):
        return np.arange(particles_or_ids.n_particles) if particles_or_ids.ids is None else np.asarray(particles_or_ids.ids)
    ids = np.asarray(particles_or_ids)
    if ids.ndim != 1:
        raise ValueError(
            f"particles_or_ids must be the particles (an awkward array from a reader) or a 1-D array of particle ids; "
            f"got an array of shape {ids.shape}."
        )
    return ids


def _block(values, default_prefix, n, what):
    """``{column: 1-D array}`` from a 1-D/2-D array, a DataFrame or a dict."""
    if values is None:
        return {}
    if isinstance(values, dict):
        items = list(values.items())
    elif hasattr(values, "columns") and hasattr(values, "to_numpy"):
        items = [(str(c), values[c].to_numpy()) for c in values.columns]
    else:
        arr = np.asarray(values)
        if arr.ndim == 1:
            items = [(default_prefix, arr)]
        elif arr.ndim == 2:
            items = [(f"{default_prefix}{k}", arr[:, k]) for k in range(arr.shape[1])]
        else:
            raise ValueError(f"{what} must be 1-D or 2-D (one row per particle), got shape {arr.shape}.")
    out = {}
    for name, col in items:
        col = np.asarray(col)
        if col.ndim != 1 or col.shape[0] != n:
            raise ValueError(f"{what} column {name!r} has shape {col.shape}; expected ({n},), one value per particle.")
        if col.dtype.kind not in "iufb":
            raise TypeError(f"{what} column {name!r} has dtype {col.dtype}; expected numbers.")
        out[sanitise(name) if not name.isidentifier() else name] = col
    return out


def results_table(particles_or_ids, *, latents=None, bins=None, estimates=None):
    """One row per particle: its id, latents, bin labels and estimates.

    Parameters
    ----------
    particles_or_ids : awkward.Array, Particles or array-like of shape (n_particles,)
        The particles the results belong to (their ``particle_id`` is used)
        or the ids themselves.
    latents : array-like of shape (n_particles, latent_dim) or DataFrame, optional
        Columns ``pcvae0, pcvae1, ...`` (a DataFrame keeps its column names).
    bins : array-like of shape (n_particles,) or (n_particles, n_dims), optional
        Bin labels: a column ``bin`` or ``bin0, bin1, ...``.
    estimates : dict of str to array-like, DataFrame or array-like, optional
        Per-particle estimates, e.g. ``{"radius": r}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``particle_id`` then the results.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.io import results_table
    >>> results_table([4, 9], latents=np.array([[0.1, 0.2], [0.3, 0.4]]), bins=[0, 1],
    ...               estimates={"radius": [50.0, 55.0]})
       particle_id  pcvae0  pcvae1  bin  radius
    0            4     0.1     0.2    0    50.0
    1            9     0.3     0.4    1    55.0
    """
    pd = require("pandas", "writing results")
    ids = _ids_of(particles_or_ids)
    n = len(ids)
    columns = {PARTICLE_ID: ids}
    for block in (
        _block(latents, "pcvae", n, "latents"),
        _block(bins, "bin", n, "bins"),
        _block(estimates, "estimate", n, "estimates"),
    ):
        for name, col in block.items():
            if name in columns:
                raise ValueError(f"two result columns are named {name!r}; rename one.")
            columns[name] = col
    if len(columns) == 1:
        raise ValueError("nothing to write: give latents, bins and/or estimates.")
    if len(np.unique(ids)) != n:
        raise ValueError("the particle ids are not unique; each row must be one particle.")
    return pd.DataFrame(columns)


def _check_target(path: Path, overwrite: bool, inputs=()):
    for src in inputs:
        if src is not None and path.resolve() == Path(src).resolve():
            raise ValueError(f"{str(path)!r} is the input file; results are written to a new file, never over the input.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")


def write_picasso(path, source, particles_or_ids, *, latents=None, bins=None, estimates=None, particle_column="group", overwrite=False):
    """Write a copy of a Picasso file with per-particle result columns on every localization.

    Each localization of ``source`` gets its particle's latents, bin labels
    and estimates (joined on ``group``), so the particles can be filtered,
    colour-coded or re-picked by latent in Picasso Render. Localizations of
    particles without results get NaN (and bin -1). The YAML sidecar is
    copied with one more document that lists the added columns.

    Parameters
    ----------
    path : str or Path
        The new ``.hdf5`` file (its ``.yaml`` is written next to it). Never
        the input.
    source : str or Path
        The picked Picasso ``.hdf5`` the particles were read from.
    particles_or_ids, latents, bins, estimates
        As in :func:`results_table`.
    particle_column : str, default="group"
    overwrite : bool, default=False
        Replace an existing output file (the input is never replaced).

    Returns
    -------
    Path
        ``path``.
    """
    h5py = require("h5py", "writing Picasso files")
    yaml = require("yaml", "writing Picasso files")
    path, source = Path(path), existing_path(source)
    _check_target(path, overwrite, inputs=(source, yaml_path(source)))
    if yaml_path(path).resolve() == yaml_path(source).resolve():
        raise ValueError(f"{str(path)!r} would overwrite the input's YAML sidecar; choose another name.")
    table = results_table(particles_or_ids, latents=latents, bins=bins, estimates=estimates)
    locs = read_locs(source)
    if particle_column not in locs.dtype.names:
        raise ValueError(
            f"{describe(source)} has no {particle_column!r} column, so results cannot be joined to its localizations."
        )
    clash = [c for c in table.columns[1:] if c in locs.dtype.names]
    if clash:
        raise ValueError(f"{describe(source)} already has column(s) {clash}; rename the results.")
    ids = table[PARTICLE_ID].to_numpy()
    if ids.dtype.kind not in "iu":
        raise TypeError(f"Picasso groups are integers, but the particle ids have dtype {ids.dtype}.")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    group = locs[particle_column]
    pos = np.clip(np.searchsorted(sorted_ids, group), 0, len(sorted_ids) - 1)
    matched = sorted_ids[pos] == group
    if not matched.any():
        raise ValueError(f"none of the particle ids is a {particle_column!r} of {describe(source)}; wrong source file?")
    row = order[pos]
    new_fields, new_cols = [], {}
    for name in table.columns[1:]:
        col = table[name].to_numpy()
        if col.dtype.kind in "iub":
            out = np.full(len(locs), -1, dtype=np.int32)
        else:
            out = np.full(len(locs), np.nan, dtype=np.float32)
        out[matched] = col[row[matched]]
        new_fields.append((name, out.dtype))
        new_cols[name] = out
    dtype = np.dtype(locs.dtype.descr + new_fields)
    new = np.empty(len(locs), dtype=dtype)
    for name in locs.dtype.names:
        new[name] = locs[name]
    for name, col in new_cols.items():
        new[name] = col
    with h5py.File(path, "w") as f:
        f.create_dataset("locs", data=new)
    info = {
        "Generated by": f"pcvae_sklearn {__version__} write_picasso",
        "Source": str(source),
        "Added columns": list(table.columns[1:]),
        "Particles with results": int(len(ids)),
        "Localizations without results": int((~matched).sum()),
    }
    old_yaml = yaml_path(source)
    text = old_yaml.read_text(encoding="utf-8") if old_yaml.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += ("---\n" if text else "") + yaml.safe_dump(info, sort_keys=False)
    yaml_path(path).write_text(text, encoding="utf-8")
    logger.info("wrote %s with columns %s", path, info["Added columns"])
    return path


def write_results(path, particles_or_ids, *, latents=None, bins=None, estimates=None, source=None, overwrite=False):
    """Write latents, bin labels and estimates for other tools.

    The format follows the extension of ``path``:

    - ``.hdf5`` / ``.h5``: a copy of the Picasso file ``source`` with the
      results as per-localization columns (see :func:`write_picasso`);
    - ``.csv``: a table with one row per particle;
    - ``.parquet``: the same table as Parquet.

    Parameters
    ----------
    path : str or Path
        The new file.
    particles_or_ids : awkward.Array, Particles or array-like of shape (n_particles,)
        The particles (from a reader) or their ids.
    latents, bins, estimates
        See :func:`results_table`.
    source : str or Path, optional
        The Picasso file the particles came from (``.hdf5`` output only).
    overwrite : bool, default=False

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from pcvae_sklearn.io import write_results
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "results.csv"
    >>> _ = write_results(out, [4, 9], latents=np.array([[0.1, 0.2], [0.3, 0.4]]))
    >>> print(out.read_text().strip())
    particle_id,pcvae0,pcvae1
    4,0.1,0.2
    9,0.3,0.4
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        if source is None:
            raise ValueError("writing results to Picasso HDF5 needs source=<the picked Picasso .hdf5 they came from>.")
        return write_picasso(path, source, particles_or_ids, latents=latents, bins=bins, estimates=estimates, overwrite=overwrite)
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"cannot tell the output format of {str(path)!r}; use a .hdf5 (Picasso), .csv or .parquet name.")
    _check_target(path, overwrite, inputs=(source,))
    table = results_table(particles_or_ids, latents=latents, bins=bins, estimates=estimates)
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        require("pyarrow", "writing Parquet")
        table.to_parquet(path, index=False)
    return path
