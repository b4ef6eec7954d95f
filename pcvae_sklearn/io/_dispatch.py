"""One entry point that picks the reader from the file."""

from __future__ import annotations

import inspect
from pathlib import Path

from ._common import describe, require, split_unit
from ._csv import read_csv, read_csv_folder, read_dataframe, read_header, read_thunderstorm
from ._fusion_mat import holds_fusion_layout, mat_variables, neither_layout_error, read_fusion_mat
from ._parquet import read_parquet
from ._picasso import read_picasso
from ._rapidstorm import read_rapidstorm
from ._smap import read_smap

_READERS = {
    "picasso": read_picasso,
    "smap": read_smap,
    "fusion_mat": read_fusion_mat,
    "thunderstorm": read_thunderstorm,
    "rapidstorm": read_rapidstorm,
    "csv_folder": read_csv_folder,
    "csv": read_csv,
    "parquet": read_parquet,
    "dataframe": read_dataframe,
}
FORMATS = tuple(_READERS)


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _hdf5_kind(path: Path) -> str:
    h5py = require("h5py", "reading HDF5 files")
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError as exc:
        raise ValueError(f"{describe(path)} cannot be opened as HDF5 ({exc}); it may be truncated.") from None
    if "locs" in keys:
        return "picasso"
    if "saveloc" in keys:
        return "smap"
    variables = mat_variables(path)
    if holds_fusion_layout(variables):
        return "fusion_mat"
    raise ValueError(
        f"cannot tell the format of {describe(path)}: an HDF5 file with neither a Picasso 'locs' dataset, a SMAP "
        f"'saveloc' group, nor a MATLAB cell or struct of particles as the TU Delft fusion tools write them (it holds "
        f"{sorted(keys)}). Known formats: {', '.join(FORMATS)}."
    )


def _mat_v5_kind(path: Path) -> str:
    variables = mat_variables(path)
    if any(name == "saveloc" for name, _, _ in variables):
        raise ValueError(
            f"{describe(path)} is a MATLAB v5 .mat file with SMAP's 'saveloc'; SMAP files are read in the v7.3 (HDF5) "
            "format SMAP writes. Save it with save(..., '-v7.3')."
        )
    if holds_fusion_layout(variables):
        return "fusion_mat"
    raise neither_layout_error(path, variables)


def sniff_format(path) -> str:
    """The format name of a file or folder, from its content (and, failing that, its extension)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist.")
    if path.is_dir():
        return "csv_folder"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise ValueError(f"{describe(path)} is empty.")
    if head.startswith(b"PAR1"):
        return "parquet"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in (0, 512, 1024, 2048)):
        return _hdf5_kind(path)
    suffix = path.suffix.lower()
    if head.startswith(b"MATLAB 5.0"):
        return _mat_v5_kind(path)
    if suffix in (".hdf5", ".h5", ".mat", ".parquet"):
        raise ValueError(
            f"{describe(path)} has the extension {suffix!r} but is not a valid {'Parquet' if suffix == '.parquet' else 'HDF5'} "
            "file (no signature at its start); it may be truncated or corrupt."
        )
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    if first.startswith("#") and "<localizations" in first:
        return "rapidstorm"
    if "," in first or suffix == ".csv":
        headers = read_header(path, ",")
        parsed = [split_unit(h) for h in headers]
        if any(name.lower() == "x" and unit is not None and "[" in h for (name, unit), h in zip(parsed, headers)):
            return "thunderstorm"
        names = {name.lower() for name, _ in parsed}
        if {"x", "y"} <= names:
            return "csv"
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if sep in first and "," not in first:
            raise ValueError(
                f"cannot tell the format of {describe(path)}: its columns look separated by {name}. Read it with "
                f"format='csv', sep={sep!r} (command line: --sep {sep!r}). (Its first line is {first[:80]!r}.)"
            )
    if first.startswith("#ASDF") or suffix in (".asdf", ".xlsx", ".xls", ".json", ".npy", ".npz", ".zip"):
        raise ValueError(
            f"{describe(path)} is {'an ASDF' if first.startswith('#ASDF') else 'a ' + repr(suffix)} file, which none "
            f"of the readers ({', '.join(FORMATS)}) reads: export the localizations as a CSV with columns x, y[, z] "
            "in nm and a particle id, or load them yourself and pass a DataFrame (read_dataframe)."
        )
    raise ValueError(
        f"cannot tell the format of {describe(path)}; pass format= one of {', '.join(FORMATS)}. "
        f"(Its first line is {first[:80]!r}.)"
    )


def read_particles(path_or_dataframe, *, format=None, **kwargs):
    """Read picked particles from any supported localization file.

    The reader is chosen from the content of the file:

    ==============================================  ======================
    what is found                                   reader
    ==============================================  ======================
    HDF5 with a ``locs`` dataset                    :func:`read_picasso`
    MATLAB v7.3 (HDF5) with ``saveloc``             :func:`read_smap`
    MATLAB v5 or v7.3 with a cell of particles      :func:`read_fusion_mat`
    (``particles`` structs, or (d, n) arrays)
    CSV whose header has ``x [nm]`` (units)         :func:`read_thunderstorm`
    first line ``# <localizations ...>``            :func:`read_rapidstorm`
    a folder (one CSV per particle)                 :func:`read_csv_folder`
    Parquet (``PAR1``)                              :func:`read_parquet`
    CSV with x, y and a particle id column          :func:`read_csv`
    a pandas DataFrame                              :func:`read_dataframe`
    ==============================================  ======================

    Parameters
    ----------
    path_or_dataframe : str, Path or pandas.DataFrame
    format : str, optional
        Skip detection (command line: ``--format``): one of
        ``"picasso"``, ``"smap"``, ``"fusion_mat"``, ``"thunderstorm"``,
        ``"rapidstorm"``, ``"csv_folder"``, ``"csv"``, ``"parquet"``,
        ``"dataframe"``.
    **kwargs
        Passed to the reader: ``pixel_size`` (nm per camera pixel, for
        files in camera pixels; required for the ``particles`` layout of
        :func:`read_fusion_mat`, an error for formats that are always in
        nm), ``particle_column``, ``picks``, ``pick_radius``, ``n_dims``,
        ``variable``, ... (see each reader). An option that the file's
        reader does not take is an error that names it.

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, <fields>}``
        Coordinates in nm. ``particle_id`` holds each particle's id (the
        same for all its localizations; :func:`particle_ids` gives one per
        particle). Fields use the same names for every format:
        ``precision`` (lateral localization precision, nm),
        ``precision_x``, ``precision_y``, ``precision_z`` (nm),
        ``photons``, ``frame``, ``background``, ``sigma_x``, ``sigma_y``
        (PSF width, nm); other numeric columns keep their (sanitised) names.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the format cannot be told, or the reader finds the file
        truncated, missing columns, in units it cannot interpret (or in
        camera pixels without ``pixel_size``), or without picks. The
        message names the file.

    See Also
    --------
    particle_ids : the id of each particle.
    write_parquet : save particles losslessly.
    write_results : latents, bins and estimates back to Picasso, CSV, Parquet.

    Examples
    --------
    >>> import pandas as pd
    >>> from pcvae_sklearn.io import read_particles
    >>> df = pd.DataFrame({"x": [0.0, 10, 500, 510], "y": [0.0, 5, 300, 310], "group": [4, 4, 9, 9]})
    >>> particles = read_particles(df)
    >>> len(particles), particles.particle_id[:, 0].tolist()
    (2, [4, 9])
    """
    if format is not None:
        if format not in _READERS:
            raise ValueError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}.")
        return _read(format, path_or_dataframe, kwargs)
    obj = path_or_dataframe
    if hasattr(obj, "columns") and hasattr(obj, "to_numpy"):
        return _read("dataframe", obj, kwargs)
    if type(obj).__module__.startswith("awkward"):
        raise TypeError("read_particles got an awkward array, which is already particles; use it directly.")
    if not isinstance(obj, (str, Path)) and not hasattr(obj, "__fspath__"):
        raise TypeError(f"read_particles expects a path or a pandas DataFrame, got {type(obj).__name__}.")
    return _read(sniff_format(obj), obj, kwargs)


def _read(format, source, kwargs):
    """Call the reader of ``format``; an option it does not take is an error that names the format."""
    reader = _READERS[format]
    accepted = inspect.signature(reader).parameters
    extra = sorted(k for k in kwargs if k not in accepted)
    if extra:
        takes = sorted(k for k, v in accepted.items() if v.kind is inspect.Parameter.KEYWORD_ONLY)
        where = describe(source) if isinstance(source, (str, Path)) else "the DataFrame"
        if extra == ["pixel_size"]:
            raise ValueError(
                f"{where} is read by the {format!r} reader, whose coordinates are always in nm; leave out pixel_size=."
            )
        raise ValueError(
            f"{where} is read as {format!r}, which takes no {', '.join(k + '=' for k in extra)} option "
            f"(its options: {', '.join(k + '=' for k in takes) or 'none'})."
        )
    return reader(source, **kwargs)
