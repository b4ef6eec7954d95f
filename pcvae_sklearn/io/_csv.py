"""CSV readers: one table with a particle id column, ThunderSTORM, a folder of one CSV per particle, DataFrames."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._common import describe, existing_path, require, split_unit
from ._table import particles_from_table


def read_header(path: Path, sep: str = ",") -> list[str]:
    """Column names from the first line, quotes stripped.

    Splitting on ``sep`` before stripping quotes also reads ThunderSTORM
    headers that some tools write with doubled quotes
    (``"id,""frame"",""x [nm]"",...``).
    """
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise ValueError(f"{describe(path)} is empty: no header line.")
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{describe(path)} is not a text file (its first line is not UTF-8).") from None
    line = line.rstrip("\r\n")
    return [h.strip().strip('"').strip("'").strip() for h in line.split(sep)]


def _looks_numeric(headers) -> bool:
    try:
        [float(h) for h in headers]
    except ValueError:
        return False
    return True


def read_columns(path: Path, headers: list[str], sep: str = ",") -> dict:
    """The data rows of a CSV as ``{header: ndarray}``, parsed by pyarrow (multi-threaded).

    A row with too few or too many values (a truncated file, say) is an error
    that names the file, never a silent partial read.
    """
    pa = require("pyarrow", "reading CSV files")
    pacsv = require("pyarrow.csv", "reading CSV files")
    names = [f"c{i}" for i in range(len(headers))]  # headers may repeat or be empty
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        msg = str(exc).splitlines()[0]
        raise ValueError(
            f"{describe(path)} cannot be read as a table of {len(headers)} columns ({msg}); "
            "the file may be truncated or not in the expected format."
        ) from None
    out = {}
    for name, header in zip(names, headers):
        col = table.column(name)
        if col.null_count and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            arr = col.to_numpy().astype(np.float64)  # missing values become NaN
        else:
            arr = col.to_numpy()
        if header in out:
            header = f"{header}_{name}"
        out[header] = arr
    return out


def read_csv(path, *, particle_column=None, picks=None, pick_radius=None, pixel_size=None, unit=None, sep=",",
             n_dims=None):
    """Read particles from one CSV with a particle id column.

    Parameters
    ----------
    path : str or Path
        A CSV file with a header line. Coordinates in columns ``x``, ``y``
        [, ``z``]; a unit may be given in the header (``x [nm]``, ``x [um]``,
        ``x [px]``, ``x_nm``); without one, coordinates are taken to be in
        nm, or in ``unit``.
    particle_column : str, optional
        The column holding the particle id. By default the first of
        ``particle_id``, ``particle``, ``group``, ``pick``, ``site``,
        ``cluster_id`` that is present.
    picks : array-like of shape (n_picks, 2), optional
        Pick centres in nm, if the file has no particle id column. Each pick
        becomes one particle (id = pick number).
    pick_radius : float or array-like of shape (n_picks,), optional
        Radius of the picks in nm.
    pixel_size : float, optional
        nm per camera pixel, needed only for columns in pixels.
    unit : str, optional
        The unit of the length columns (``x``, ``y``, ``z`` and the
        precisions) whose header names none: ``"nm"`` (the default),
        ``"um"``, ``"px"`` (with ``pixel_size``), ... A header's own unit
        (``x [px]``) wins. For coordinates in another unit (a simulation's
        units of 100 nm) pass ``unit="px", pixel_size=100``.
    sep : str, default=","
        Column separator.
    n_dims : {2, 3}, optional
        Force 2D (drop z) or require 3D. By default 3D when there is a z
        column whose values differ (a z that is the same everywhere, as 2D
        exports write it, is dropped with a warning).

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        Coordinates in nm, one particle per id (ascending), other numeric
        columns as per-localization fields under sanitised names
        (``uncertainty`` -> ``precision``, ``intensity`` -> ``photons``).

    See Also
    --------
    read_particles : picks the reader from the file.
    read_thunderstorm, read_dataframe, read_csv_folder
    """
    path = existing_path(path)
    headers = read_header(path, sep)
    if _looks_numeric(headers):
        raise ValueError(f"{describe(path)} has no header line; the first line must name the columns (x, y[, z], ...).")
    raw = read_columns(path, headers, sep)
    return particles_from_table(
        path, raw, particle_column=particle_column, picks=picks, pick_radius=pick_radius, pixel_size=pixel_size,
        unit=unit, n_dims=n_dims
    )


def read_thunderstorm(path, *, particle_column=None, picks=None, pick_radius=None, pixel_size=None, n_dims=None):
    """Read particles from a ThunderSTORM CSV export.

    ThunderSTORM writes units in the header (``"x [nm]"``, ``"y [nm]"``,
    ``"z [nm]"``, ``"sigma [nm]"``, ``"intensity [photon]"``,
    ``"uncertainty [nm]"`` or ``"uncertainty_xy [nm]"`` and
    ``"uncertainty_z [nm]"``). Lengths are converted to nm (``px`` needs
    ``pixel_size``); a coordinate unit that is not a length is an error.

    ThunderSTORM itself does not pick particles: give either a particle id
    column (``particle_column``, e.g. one added by clustering) or circular
    picks (``picks`` centres in nm and ``pick_radius`` in nm).

    Parameters
    ----------
    path : str or Path
    particle_column : str, optional
        See :func:`read_csv`.
    picks : array-like of shape (n_picks, 2), optional
        Pick centres in nm.
    pick_radius : float or array-like, optional
        Pick radius in nm.
    pixel_size : float, optional
        nm per pixel, for columns in ``px``.
    n_dims : {2, 3}, optional

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        Fields renamed: ``uncertainty``/``uncertainty_xy`` -> ``precision``,
        ``uncertainty_z`` -> ``precision_z``, ``intensity`` -> ``photons``,
        ``id`` -> ``localization_id``; others sanitised (``bkgstd``, ``chi2``).

    Raises
    ------
    ValueError
        If the header has no ``x [unit]`` and ``y [unit]`` columns, a unit is
        not understood, the file is truncated, or there are no picks.
    """
    path = existing_path(path)
    headers = read_header(path, ",")
    names = {split_unit(h)[0].lower(): split_unit(h)[1] for h in headers}
    missing = [c for c in ("x", "y") if names.get(c) is None]
    if missing:
        raise ValueError(
            f"{describe(path)} is not a ThunderSTORM CSV: its header has no {' and '.join(repr(c + ' [nm]') for c in missing)} "
            f"column (header: {headers})."
        )
    raw = read_columns(path, headers, ",")
    return particles_from_table(
        path, raw, particle_column=particle_column, picks=picks, pick_radius=pick_radius, pixel_size=pixel_size, n_dims=n_dims
    )


_NUMBER = re.compile(r"(\d+)")


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in _NUMBER.split(p.name)]


def _file_ids(files):
    """The trailing integer of every file name (``file12.csv`` -> 12), else the file stems."""
    nums = []
    for f in files:
        m = re.search(r"(\d+)$", f.stem)
        if m is None:
            break
        nums.append(int(m.group(1)))
    else:
        if len(set(nums)) == len(nums):
            return np.asarray(nums, dtype=np.int64)
    return np.asarray([f.stem for f in files])


def read_csv_folder(path, *, pattern="*.csv", pixel_size=None, unit=None, n_dims=None):
    """Read a folder that holds one CSV per particle.

    This is the layout of the PC-VAE reference implementation:
    ``file0.csv, file1.csv, ...`` with columns ``x, y[, z], uncertainty``
    (nm). Files are taken in natural order (``file2`` before ``file10``);
    each file is one particle, whose id is the number at the end of its name
    (or the file name, when not every name ends in a number).

    Parameters
    ----------
    path : str or Path
        The folder.
    pattern : str, optional
        Which files in it to read (glob pattern); default ``"*.csv"``.
    pixel_size : float, optional
        nm per pixel, for columns with a ``px`` unit.
    unit : str, optional
        The unit of columns whose header names none, as in :func:`read_csv`.
    n_dims : {2, 3}, optional

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        ``uncertainty`` is returned as ``precision``.

    Raises
    ------
    ValueError
        If the folder holds no matching file, a file has no localizations,
        or the files do not all have the same columns (the message names the
        file).
    """
    folder = existing_path(path, "folder")
    files = sorted((f for f in folder.glob(pattern) if f.is_file()), key=_natural_key)
    if not files:
        raise ValueError(f"folder {str(folder)!r} holds no file matching {pattern!r}.")
    ids = _file_ids(files)
    headers0 = read_header(files[0])
    if _looks_numeric(headers0):
        raise ValueError(f"{describe(files[0])} has no header line; the first line must name the columns (x, y[, z], uncertainty).")
    parts, counts = [], np.empty(len(files), dtype=np.int64)
    for k, f in enumerate(files):  # one read per particle file: I/O, not a per-localization loop
        headers = read_header(f)
        if headers != headers0:
            raise ValueError(
                f"{describe(f)} has columns {headers}, but {files[0].name} has {headers0}; all files in the folder "
                "must have the same columns."
            )
        cols = read_columns(f, headers)
        counts[k] = len(next(iter(cols.values())))
        if counts[k] == 0:
            raise ValueError(f"{describe(f)} has no localizations (only a header line).")
        parts.append(cols)
    raw = {h: np.concatenate([p[h] for p in parts]) for h in parts[0]}
    return particles_from_table(folder, raw, ids=np.repeat(ids, counts), pixel_size=pixel_size, unit=unit, n_dims=n_dims)


def read_dataframe(df, *, particle_column=None, picks=None, pick_radius=None, pixel_size=None, unit=None, n_dims=None):
    """Read particles from a pandas DataFrame with a particle id column.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per localization; columns ``x``, ``y`` [, ``z``] (nm, or
        with a unit in the name as in :func:`read_csv`). Not modified.
    particle_column : str, optional
        The particle id column; by default the first of ``particle_id``,
        ``particle``, ``group``, ``pick``, ``site``, ``cluster_id``.
    picks, pick_radius, pixel_size, unit, n_dims
        As in :func:`read_csv`.

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``

    Examples
    --------
    >>> import pandas as pd
    >>> from pcvae_sklearn.io import read_dataframe
    >>> df = pd.DataFrame({"x": [0.0, 10, 500, 510], "y": [0.0, 5, 300, 310],
    ...                    "photons": [900, 1200, 800, 1000], "group": [4, 4, 9, 9]})
    >>> particles = read_dataframe(df)
    >>> print(particles.type)
    2 * var * {x: float64, y: float64, particle_id: int64, photons: int64}
    >>> particles.x.tolist()
    [[0.0, 10.0], [500.0, 510.0]]
    """
    if not (hasattr(df, "columns") and hasattr(df, "to_numpy")):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}.")
    raw = {}
    for c in df.columns:
        key = str(c)
        if key in raw:
            raise ValueError(f"DataFrame has the column {key!r} twice.")
        raw[key] = df[c].to_numpy()
    if particle_column is not None:
        particle_column = str(particle_column)
    return particles_from_table(
        "DataFrame", raw, particle_column=particle_column, picks=picks, pick_radius=pick_radius, pixel_size=pixel_size,
        unit=unit, n_dims=n_dims
    )
