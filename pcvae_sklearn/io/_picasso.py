"""Picasso HDF5 localizations (``locs`` record dataset) with their YAML sidecar."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ._common import build_particles, check_pixel_size, describe, existing_path
from ._common import no_picks_error, require, sanitise, select_picks

logger = logging.getLogger(__name__)

#: Picasso columns in camera pixels, and the name each gets (in nm).
_PIXEL_FIELDS = {"lpx": "precision_x", "lpy": "precision_y", "sx": "sigma_x", "sy": "sigma_y"}
#: Picasso columns renamed without conversion.
_RENAMED = {"bg": "background"}


def yaml_path(path: Path) -> Path:
    return path.with_suffix(".yaml")


def read_yaml_documents(path: Path, source) -> list:
    yaml = require("yaml", "reading Picasso YAML files")
    try:
        with open(path, encoding="utf-8") as fh:
            return list(yaml.safe_load_all(fh))
    except yaml.YAMLError as exc:
        raise ValueError(f"{describe(source)}: its YAML sidecar {str(path)!r} cannot be parsed ({exc}).") from None


def picasso_pixel_size(path) -> float:
    """The camera pixel size (nm) that Picasso recorded in the YAML next to an HDF5 file.

    Parameters
    ----------
    path : str or Path
        The ``.hdf5`` localization file; its ``.yaml`` sidecar is read.

    Returns
    -------
    float
        ``Pixelsize`` (or ``Camera.Pixelsize``), nm.

    Raises
    ------
    FileNotFoundError
        If the YAML is missing.
    ValueError
        If it has no pixel size, or several different ones.
    """
    path = Path(path)
    ypath = yaml_path(path)
    if not ypath.exists():
        raise FileNotFoundError(
            f"{describe(path)}: the Picasso YAML sidecar {str(ypath)!r} is missing, so the pixel size is unknown; "
            "put the .yaml next to the .hdf5 or pass pixel_size=<nm per pixel>."
        )
    docs = read_yaml_documents(ypath, path)
    found = []
    for doc in docs:
        if isinstance(doc, dict):
            for key in ("Pixelsize", "Camera.Pixelsize"):
                if key in doc:
                    found.append((key, doc[key]))
    direct = [v for k, v in found if k == "Pixelsize"] or [v for k, v in found if k == "Camera.Pixelsize"]
    if not direct:
        raise ValueError(
            f"{describe(path)}: no 'Pixelsize' entry in any of the {len(docs)} documents of {str(ypath)!r}; "
            "pass pixel_size=<nm per pixel>."
        )
    values = {check_pixel_size(v, ypath) for v in direct}
    if len(values) > 1:
        raise ValueError(
            f"{describe(path)}: the YAML sidecar gives different pixel sizes {sorted(values)}; pass pixel_size= to choose one."
        )
    return values.pop()


def read_locs(path: Path) -> np.ndarray:
    """The ``locs`` record array of a Picasso HDF5, with clear errors."""
    h5py = require("h5py", "reading Picasso HDF5 files")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{describe(path)} cannot be opened as HDF5 ({exc}); it may be truncated or not an HDF5 file.") from None
    with f:
        if "locs" not in f:
            raise ValueError(
                f"{describe(path)} is not a Picasso file: it has no 'locs' dataset (it holds {sorted(f.keys())})."
            )
        try:
            locs = f["locs"][...]
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{describe(path)}: the 'locs' dataset cannot be read ({exc}); the file may be truncated.") from None
    if locs.dtype.names is None or locs.ndim != 1:
        raise ValueError(f"{describe(path)}: 'locs' is not a 1-D record array (dtype {locs.dtype}, shape {locs.shape}).")
    return locs


def read_picasso(path, *, pixel_size=None, particle_column="group", picks=None, pick_radius=None, n_dims=None):
    """Read picked particles from a Picasso HDF5 file.

    Picasso (Schnitzbauer et al. 2017) stores localizations in a ``locs``
    record dataset: ``x`` and ``y`` in camera pixels, ``z`` (3D) in nm,
    ``lpx``/``lpy`` localization precisions and ``sx``/``sy`` PSF widths in
    pixels, and, after picking in Picasso Render, the particle in ``group``.
    Pixel coordinates are converted to nm with ``Pixelsize`` from the YAML
    sidecar ``<name>.yaml`` (all its documents are searched).

    Parameters
    ----------
    path : str or Path
        The ``.hdf5`` file (the ``.yaml`` must sit next to it unless
        ``pixel_size`` is given).
    pixel_size : float, optional
        nm per camera pixel; overrides the YAML.
    particle_column : str, default="group"
        The locs field that holds the particle.
    picks : array-like of shape (n_picks, 2), optional
        Circular picks (centres in nm) for files that were not picked in
        Picasso; each pick becomes one particle, numbered from 0.
    pick_radius : float or array-like, optional
        Pick radius in nm.
    n_dims : {2, 3}, optional
        Force 2D or require 3D; by default 3D when the file has ``z`` and
        its values differ.

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        In nm, particles in ascending ``group`` order. Fields: ``frame``,
        ``photons``, ``precision_x``, ``precision_y`` (``lpx``, ``lpy`` in
        nm), ``precision`` (their quadratic mean, nm), ``sigma_x``,
        ``sigma_y`` (``sx``, ``sy`` in nm), ``background`` (``bg``), and
        every other column unchanged (``ellipticity``, ``net_gradient``,
        ...).

    Raises
    ------
    FileNotFoundError
        If the file, or the YAML sidecar without ``pixel_size``, is missing.
    ValueError
        If the file is truncated, has no ``locs``, lacks x/y, or was not
        picked (no ``group``) and no picks are given.

    References
    ----------
    Schnitzbauer, Strauss, Schlichthaerle, Schueder, Jungmann, "Super-
    resolution microscopy with DNA-PAINT", Nat. Protoc. 12, 1198 (2017).
    """
    path = existing_path(path)
    locs = read_locs(path)
    names = locs.dtype.names
    missing = [c for c in ("x", "y") if c not in names]
    if missing:
        raise ValueError(f"{describe(path)}: 'locs' is missing the column(s) {missing} (columns: {list(names)}).")
    px = check_pixel_size(pixel_size, path) if pixel_size is not None else picasso_pixel_size(path)
    use_group = picks is None
    if use_group and particle_column not in names:
        raise no_picks_error(
            path, f"'locs' has no {particle_column!r} column, so the localizations were not picked (pick them in "
            "Picasso Render and save the picked localizations)"
        )
    columns = {"x": locs["x"].astype(np.float64) * px, "y": locs["y"].astype(np.float64) * px}
    if "z" in names:
        columns["z"] = locs["z"].astype(np.float64)  # Picasso stores z in nm already
    for name in names:
        if name in ("x", "y", "z") or (use_group and name == particle_column):
            continue
        col = locs[name]
        if col.dtype.kind not in "iufb":
            warnings.warn(f"{describe(path)}: column {name!r} is not numeric ({col.dtype}) and is left out of the "
                          "particles; the file is unchanged.", UserWarning, stacklevel=3)
            continue
        if name in _PIXEL_FIELDS:
            columns[_PIXEL_FIELDS[name]] = col.astype(np.float64) * px
        else:
            columns[_RENAMED.get(name, sanitise(name))] = col
    if "precision_x" in columns and "precision_y" in columns:
        columns["precision"] = np.sqrt(0.5 * (columns["precision_x"] ** 2 + columns["precision_y"] ** 2))
    if use_group:
        return build_particles(path, columns, locs[particle_column], n_dims=n_dims)
    rows, pick = select_picks(path, columns, picks, pick_radius)
    return build_particles(path, {k: v[rows] for k, v in columns.items()}, pick, n_dims=n_dims)
