"""rapidSTORM text files: one XML header line, then space-separated columns."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import numpy as np

from ._common import OTHER_UNITS, build_particles, check_pixel_size, describe, existing_path
from ._common import length_factor, no_picks_error, require, sanitise, select_picks

logger = logging.getLogger(__name__)

#: rapidSTORM field identifiers and the names they get.
_IDENTIFIERS = {
    "Position-0-0": "x",
    "Position-1-0": "y",
    "Position-2-0": "z",
    "Position-0-0-uncertainty": "precision_x",
    "Position-1-0-uncertainty": "precision_y",
    "Position-2-0-uncertainty": "precision_z",
    "ImageNumber-0-0": "frame",
    "Amplitude-0-0": "amplitude",
    "FitResidues-0-0": "fit_residues",
    "LocalBackground-0-0": "background",
    "PSFWidth-0-0": "sigma_x",
    "PSFWidth-1-0": "sigma_y",
    "TwoKernelImprovement-0-0": "two_kernel_improvement",
}
_LENGTH_FIELDS = {"x", "y", "z", "precision_x", "precision_y", "precision_z", "sigma_x", "sigma_y"}


def parse_header(path):
    """``[(identifier, unit, semantic), ...]`` from the XML header line."""
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace").strip()
    if not first.startswith("#") or "<localizations" not in first:
        raise ValueError(
            f"{describe(path)} is not a rapidSTORM file: its first line does not start with '# <localizations'."
        )
    try:
        root = ET.fromstring(first.lstrip("#").strip())
    except ET.ParseError as exc:
        raise ValueError(f"{describe(path)}: the rapidSTORM XML header cannot be parsed ({exc}).") from None
    fields = [(el.get("identifier", ""), el.get("unit"), el.get("semantic", "")) for el in root.iter("field")]
    if not fields:
        raise ValueError(f"{describe(path)}: the rapidSTORM header lists no fields.")
    return fields


def read_rapidstorm(path, *, picks=None, pick_radius=None, pixel_size=None, particle_column=None, n_dims=None):
    """Read particles from a rapidSTORM localization file.

    The first line is an XML ``<localizations>`` element whose ``<field>``
    children name each column (``Position-0-0`` = x, ``Position-1-0`` = y,
    ``ImageNumber-0-0`` = frame, ...) with its unit; the rest are
    space-separated values. Positions, uncertainties and PSF widths are
    converted to nm from the unit given (nanometer, micrometer, meter, or
    pixel with ``pixel_size``).

    rapidSTORM does not pick particles: give ``picks`` (centres, nm) and
    ``pick_radius`` (nm), or a ``particle_column`` among the field names
    returned.

    Parameters
    ----------
    path : str or Path
    picks : array-like of shape (n_picks, 2), optional
    pick_radius : float or array-like, optional
    pixel_size : float, optional
        nm per pixel, for fields in pixels.
    particle_column : str, optional
        A returned field name (after renaming) holding a particle id.
    n_dims : {2, 3}, optional

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        Fields: ``frame``, ``amplitude``, ``fit_residues``, ``background``,
        ``precision_x``/``precision_y`` (and ``precision``, their quadratic
        mean) when rapidSTORM wrote uncertainties, ``sigma_x``/``sigma_y``.

    Raises
    ------
    ValueError
        For a missing or unparsable header, a position unit that is not a
        length, a row with too few values (truncated file), no picks.
    """
    path = existing_path(path)
    fields = parse_header(path)
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, path)
    names = []
    for ident, unit, _ in fields:
        name = _IDENTIFIERS.get(ident, sanitise(ident))
        base, k = name, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    missing = [c for c in ("x", "y") if c not in names]
    if missing:
        raise ValueError(
            f"{describe(path)}: the rapidSTORM header has no {missing} position field(s) "
            f"(Position-0-0, Position-1-0); fields: {[f[0] for f in fields]}."
        )
    pd = require("pandas", "reading rapidSTORM files")
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, skiprows=1, dtype=np.float64, engine="c")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{describe(path)}: no localizations after the header line.") from None
    except (ValueError, pd.errors.ParserError) as exc:
        msg = str(exc).splitlines()[0]
        raise ValueError(f"{describe(path)} cannot be read as rapidSTORM columns ({msg}); it may be truncated or corrupt.") from None
    if df.shape[1] != len(fields):
        raise ValueError(
            f"{describe(path)}: the header lists {len(fields)} fields but the rows hold {df.shape[1]} values."
        )
    data = df.to_numpy()
    bad = np.isnan(data).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{describe(path)}: data row {row} has fewer than the {len(fields)} values the header lists; the file is "
            "truncated or corrupt."
        )
    columns = {}
    for k, ((ident, unit, _), name) in enumerate(zip(fields, names)):
        values = data[:, k]
        if name in _LENGTH_FIELDS:
            factor = length_factor(unit, pixel_size=pixel_size, source=path, column=f"{ident} ({name})")
            values = values * factor
        elif unit is not None and unit.strip().lower() not in OTHER_UNITS:
            logger.info("%s: field %r has unit %r, carried along unchanged", describe(path), ident, unit)
        if name == "frame" and (values == np.round(values)).all():
            values = values.astype(np.int64)
        columns[name] = values
    if "precision_x" in columns and "precision_y" in columns and "precision" not in columns:
        columns["precision"] = np.sqrt(0.5 * (columns["precision_x"] ** 2 + columns["precision_y"] ** 2))
    if particle_column is not None:
        if picks is not None:
            raise ValueError(f"{describe(path)}: give either particle_column or picks, not both.")
        if particle_column not in columns:
            raise ValueError(f"{describe(path)}: particle_column={particle_column!r} is not a field; fields are {names}.")
        ids = columns.pop(particle_column)
        return build_particles(path, columns, ids, n_dims=n_dims)
    if picks is None:
        raise no_picks_error(path, "rapidSTORM files hold no particle ids")
    rows, pick = select_picks(path, columns, picks, pick_radius)
    return build_particles(path, {k: v[rows] for k, v in columns.items()}, pick, n_dims=n_dims)
