"""Shared machinery of the readers: optional imports, units, names, grouping.

Every reader ends in :func:`build_particles`, which groups localizations by
particle id with one stable argsort (skipped when the ids are already
sorted) and wraps the columns zero-copy in an awkward layout
``n * var * {x, y[, z], particle_id, <fields>}``.
"""

from __future__ import annotations

import importlib
import logging
import re
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: Name of the per-localization field that carries each particle's id.
from .._ragged import PARTICLE_ID  # noqa: E402  (one definition, shared with the input boundary)

_COORDS = ("x", "y", "z")

_INSTALL_HINT = "pip install pcvae-sklearn[io]"


def require(module: str, what: str):
    """Import an optional dependency, or raise an ImportError that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional dependency {module.split('.')[0]!r}, which is not installed: {exc}. "
            f"Install the io extra: {_INSTALL_HINT}"
        ) from None


def describe(source) -> str:
    """How error messages name the thing being read."""
    if isinstance(source, (str, Path)):
        return f"file {str(source)!r}"
    return str(source)


def existing_path(path, kind: str = "file") -> Path:
    """``path`` as a Path, or FileNotFoundError naming it."""
    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"expected a path to a {kind}, got {type(path).__name__}.")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{kind} {str(p)!r} does not exist.")
    if kind == "folder" and not p.is_dir():
        raise ValueError(f"{str(p)!r} is not a folder.")
    if kind == "file" and p.is_dir():
        raise ValueError(f"{str(p)!r} is a folder, not a file.")
    return p


# ------------------------------------------------------------------ units
#: Factor to nm for every length unit the readers understand (lower case).
LENGTH_UNITS = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "mm": 1e6,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
}
PIXEL_UNITS = {"px", "pix", "pixel", "pixels", "camera pixel", "camera pixels"}
#: Units that are not lengths and are carried along unchanged.
OTHER_UNITS = {
    "",
    "photon",
    "photons",
    "adu",
    "a/d count",
    "a/d counts",
    "count",
    "counts",
    "frame",
    "frames",
    "fr",
    "dimensionless",
    "s",
    "ms",
    "deg",
    "rad",
    "%",
    "e-",
}


def length_factor(unit: str | None, *, pixel_size, source, column: str) -> float:
    """Factor that converts ``column`` from ``unit`` to nm; a clear error if it cannot."""
    if unit is None:
        return 1.0
    u = unit.strip().lower()
    if u in LENGTH_UNITS:
        return LENGTH_UNITS[u]
    if u in PIXEL_UNITS:
        if pixel_size is None:
            raise ValueError(
                f"{describe(source)}: column {column!r} is in camera pixels ({unit!r}); pass pixel_size=<nm per pixel> "
                "to convert it to nm."
            )
        return float(pixel_size)
    raise ValueError(
        f"{describe(source)}: column {column!r} has the unit {unit!r}, which the reader cannot interpret as a length. "
        f"Known length units: {sorted(set(LENGTH_UNITS) | PIXEL_UNITS)}."
    )


def is_length_unit(unit: str | None) -> bool:
    if unit is None:
        return False
    u = unit.strip().lower()
    return u in LENGTH_UNITS or u in PIXEL_UNITS


def check_pixel_size(pixel_size, source) -> float:
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        raise TypeError(f"{describe(source)}: pixel_size must be a number of nm per pixel, got {pixel_size!r}.") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{describe(source)}: pixel_size must be a positive number of nm per pixel, got {pixel_size!r}.")
    return value


# ------------------------------------------------------------------ names
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def sanitise(name: str) -> str:
    """A column name as a lower-case identifier: ``"Fit Residues"`` -> ``"fit_residues"``."""
    s = _NON_WORD.sub("_", str(name)).strip("_").lower()
    if not s:
        s = "column"
    if s[0].isdigit():
        s = "c" + s
    return s


_UNIT_IN_BRACKETS = re.compile(r"^\s*(?P<name>.*?)\s*[\[(](?P<unit>[^\])]*)[\])]\s*$")
_UNIT_SUFFIX = re.compile(r"^(?P<name>.*?)_(?P<unit>nm|um|px|pix|pixel|pixels)$", re.IGNORECASE)


def split_unit(header: str) -> tuple[str, str | None]:
    """``"x [nm]"`` -> ``("x", "nm")``; ``"x_nm"`` -> ``("x", "nm")``; ``"x"`` -> ``("x", None)``."""
    header = str(header).strip().strip('"').strip("'").strip()
    m = _UNIT_IN_BRACKETS.match(header)
    if m:
        return m.group("name").strip(), m.group("unit").strip()
    m = _UNIT_SUFFIX.match(header)
    if m and m.group("name"):
        return m.group("name"), m.group("unit")
    return header, None


#: Usual names of columns, lower-cased and sanitised, mapped to the names the readers return.
CANONICAL = {
    "x": "x",
    "xnm": "x",
    "x_nm": "x",
    "y": "y",
    "ynm": "y",
    "y_nm": "y",
    "z": "z",
    "znm": "z",
    "z_nm": "z",
    "uncertainty": "precision",
    "uncertainty_xy": "precision",
    "precision": "precision",
    "locprecnm": "precision",
    "loc_prec": "precision",
    "sigma_xy": "precision",
    "uncertainty_x": "precision_x",
    "uncertainty_y": "precision_y",
    "uncertainty_z": "precision_z",
    "precision_z": "precision_z",
    "locprecznm": "precision_z",
    "sigmaz": "precision_z",
    "sigma_z_loc": "precision_z",
    "intensity": "photons",
    "photons": "photons",
    "phot": "photons",
    "frame": "frame",
    "frames": "frame",
    "bg": "background",
    "background": "background",
    "id": "localization_id",
}

#: Column names that hold a particle id (checked in this order).
PARTICLE_COLUMNS = ("particle_id", "particle", "group", "pick", "site", "cluster_id")


def canonical(name: str) -> str:
    s = sanitise(name)
    return CANONICAL.get(s, s)


# ------------------------------------------------------------------ checks
def check_finite_coords(source, coords: dict, rows_hint: str = "row") -> None:
    """Raise if any coordinate is NaN or inf (a truncated or corrupt file, usually)."""
    for name, col in coords.items():
        if col.dtype.kind == "f":
            bad = ~np.isfinite(col)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{describe(source)}: coordinate {name!r} is missing or not finite at {int(bad.sum())} "
                    f"localization(s), the first at {rows_hint} {first}; the file may be truncated or corrupt."
                )


# ------------------------------------------------------------------ picks
def select_picks(source, coords: dict, picks, pick_radius):
    """Rows inside each circular pick and the pick number of each such row.

    Parameters
    ----------
    coords : dict with "x", "y" arrays in nm.
    picks : array-like of shape (n_picks, 2) or (n_picks, 3)
        Pick centres in nm (only x and y are used: picks are circles in the
        image plane, as in Picasso and SMAP).
    pick_radius : float or array-like of shape (n_picks,)
        Radius of each pick in nm.

    Returns
    -------
    rows : ndarray of int64 (localizations inside a pick, pick after pick;
        a localization inside two picks appears twice, as in Picasso)
    pick_of_row : ndarray of int64
    """
    if pick_radius is None:
        raise ValueError(f"{describe(source)}: picks were given without pick_radius; pass pick_radius=<radius in nm>.")
    centres = np.asarray(picks, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] not in (2, 3) or centres.shape[0] == 0:
        raise ValueError(
            f"{describe(source)}: picks must be an array of pick centres of shape (n_picks, 2) in nm, got shape {centres.shape}."
        )
    if not np.isfinite(centres).all():
        raise ValueError(f"{describe(source)}: pick centres must be finite numbers (nm).")
    radius = np.broadcast_to(np.asarray(pick_radius, dtype=np.float64), (centres.shape[0],))
    if not (np.isfinite(radius).all() and (radius > 0).all()):
        raise ValueError(f"{describe(source)}: pick_radius must be positive (nm), got {pick_radius!r}.")
    from scipy.spatial import cKDTree

    xy = np.column_stack([coords["x"], coords["y"]]).astype(np.float64, copy=False)
    tree = cKDTree(xy)
    # one query per pick (not per localization): a loop over picks at most
    hits = tree.query_ball_point(centres[:, :2], radius, return_sorted=True)
    counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
    if counts.sum() == 0:
        raise ValueError(
            f"{describe(source)}: none of the {len(centres)} picks contains a localization; check that the pick centres "
            "and radius are in nm, in the same frame as the localizations."
        )
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        warnings.warn(
            f"{describe(source)}: {empty.size} of {len(centres)} picks contain no localization and are left out "
            f"(pick numbers {empty[:10].tolist()}{' ...' if empty.size > 10 else ''}).",
            UserWarning,
            stacklevel=3,
        )
    rows = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])
    pick_of_row = np.repeat(np.arange(len(centres), dtype=np.int64), counts)
    return rows, pick_of_row


def no_picks_error(source, what: str) -> ValueError:
    return ValueError(
        f"{describe(source)} has no picks: {what}. Particles must be picked first: pass particle_column=<name of a "
        "particle id column>, or picks=<(n, 2) pick centres in nm> and pick_radius=<nm>."
    )


# ------------------------------------------------------------------ building
def _stable_order(ids: np.ndarray) -> np.ndarray:
    """``np.argsort(ids, kind="stable")``, through a 16-bit radix sort when the id range allows it."""
    if ids.dtype.kind in "iu" and len(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if hi - lo < 1 << 16:  # numpy sorts 16-bit integers stably with a linear-time radix sort
            return np.argsort((ids - lo).astype(np.uint16), kind="stable")
    return np.argsort(ids, kind="stable")


def build_particles(source, columns: dict, particle_id, *, n_dims: int | None = None):
    """Group per-localization columns by particle id into an awkward array.

    Parameters
    ----------
    source : path or str, for error messages.
    columns : dict of str to ndarray of shape (n_localizations,)
        Must hold ``x`` and ``y`` (and ``z`` for 3D) in nm; all other columns
        become per-localization fields.
    particle_id : ndarray of shape (n_localizations,)
        The particle each localization belongs to.

    Returns
    -------
    awkward.Array of type ``n * var * {x, y[, z], particle_id, <fields>}``,
    particles in ascending id order, localizations in file order.
    """
    ak = require("awkward", "reading particles")
    for c in ("x", "y"):
        if c not in columns:
            raise ValueError(f"{describe(source)}: no {c!r} coordinate column; found columns {sorted(columns)}.")
    z = columns.get("z")
    if n_dims is None and z is not None and z.size and np.isfinite(z).all() and np.ptp(z) == 0:
        warnings.warn(
            f"{describe(source)}: column 'z' holds {z[0]:g} at every localization, which is no third dimension; "
            "the particles are read as 2D (n_dims=3 keeps z).",
            UserWarning,
            stacklevel=4,
        )
        n_dims = 2
    if n_dims == 2:
        columns = {k: v for k, v in columns.items() if k != "z"}
    elif n_dims == 3 and "z" not in columns:
        raise ValueError(f"{describe(source)}: 3D particles were asked for but there is no 'z' column.")
    ids = np.asarray(particle_id)
    n = len(columns["x"])
    if n == 0:
        raise ValueError(f"{describe(source)}: no localizations to read.")
    if ids.shape != (n,):
        raise ValueError(f"{describe(source)}: {ids.shape[0]} particle ids for {n} localizations.")
    coords = {c: np.asarray(columns[c], dtype=np.float64) for c in _COORDS if c in columns}
    check_finite_coords(source, coords)
    if ids.dtype.kind == "f":
        bad = ~np.isfinite(ids)
        if bad.any():
            raise ValueError(
                f"{describe(source)}: the particle id is missing (NaN) for {int(bad.sum())} localization(s), the first at "
                f"row {int(np.flatnonzero(bad)[0])}."
            )
        if (ids == np.round(ids)).all():
            ids = ids.astype(np.int64)
    elif ids.dtype == object or ids.dtype.kind in "US":
        # a text id that is missing: None / NaN in a DataFrame, an empty cell in a CSV
        if ids.dtype == object:
            bad = np.array([v is None or (isinstance(v, float) and not np.isfinite(v)) or str(v).strip() == ""
                            for v in ids.tolist()], dtype=bool)
        else:
            bad = np.char.strip(ids.astype(str)) == ""
        if bad.any():
            raise ValueError(
                f"{describe(source)}: the particle id is missing (empty) for {int(bad.sum())} localization(s), the "
                f"first at row {int(np.flatnonzero(bad)[0])}."
            )
        ids = ids.astype(str)
    # group: stable argsort, skipped when the ids are already in order
    if ids.dtype.kind in "iu" and n > 1 and (ids[1:] >= ids[:-1]).all():
        order = None
        sorted_ids = ids
    else:
        order = _stable_order(ids)
        sorted_ids = ids[order]
    if n > 1:
        starts = np.concatenate(([0], np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1))
    else:
        starts = np.zeros(1, dtype=np.int64)
    offsets = np.append(starts, n).astype(np.int64)
    take = (lambda a: a) if order is None else (lambda a: a[order])
    out = {c: take(v) for c, v in coords.items()}
    id_col = sorted_ids
    if id_col.dtype.kind in "iu":
        id_col = id_col.astype(np.int64, copy=False)
    out[PARTICLE_ID] = id_col
    for k, v in columns.items():
        if k in _COORDS or k == PARTICLE_ID:
            continue
        out[k] = take(np.asarray(v))
    contents = []
    for k, v in out.items():
        if v.dtype.kind in "US":
            contents.append(ak.to_layout(v))
        else:
            contents.append(ak.contents.NumpyArray(np.ascontiguousarray(v)))
    record = ak.contents.RecordArray(contents, list(out))
    layout = ak.contents.ListOffsetArray(ak.index.Index64(offsets), record)
    logger.debug("%s: %d localizations in %d particles", describe(source), n, len(offsets) - 1)
    return ak.Array(layout)


def particle_ids(particles) -> np.ndarray:
    """The id of every particle of an array returned by a reader.

    Parameters
    ----------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        As returned by :func:`read_particles` or any explicit reader.

    Returns
    -------
    ids : ndarray of shape (n_particles,)
        The Picasso group, pick number, file number, ... of each particle.

    Examples
    --------
    >>> import pandas as pd
    >>> from pcvae_sklearn.io import read_dataframe, particle_ids
    >>> df = pd.DataFrame({"x": [0.0, 1, 5, 6], "y": [0.0, 1, 5, 6], "group": [7, 7, 3, 3]})
    >>> particle_ids(read_dataframe(df, particle_column="group"))
    array([3, 7])
    """
    ak = require("awkward", "particle_ids")
    if not isinstance(particles, ak.Array):
        raise TypeError(f"expected an awkward array returned by a reader, got {type(particles).__name__}.")
    if PARTICLE_ID not in ak.fields(particles):
        raise ValueError(
            f"the particles have no {PARTICLE_ID!r} field (fields: {ak.fields(particles)}); they were not made by a "
            "pcvae_sklearn.io reader."
        )
    ids = particles[PARTICLE_ID]
    counts = ak.to_numpy(ak.num(ids, axis=1))
    if (counts == 0).any():
        raise ValueError(f"particle {int(np.flatnonzero(counts == 0)[0])} is empty, so it has no id.")
    first = ak.drop_none(ak.firsts(ids, axis=1))
    try:
        return ak.to_numpy(first)
    except (TypeError, ValueError):  # string ids: one Python object per particle, not per localization
        return np.asarray(ak.to_list(first))
