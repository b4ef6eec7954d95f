"""From a table of named columns (CSV, ThunderSTORM, DataFrame, CSV folder) to particles."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ._common import (
    LENGTH_UNITS,
    OTHER_UNITS,
    PARTICLE_COLUMNS,
    PIXEL_UNITS,
    build_particles,
    canonical,
    check_pixel_size,
    describe,
    is_length_unit,
    length_factor,
    no_picks_error,
    sanitise,
    select_picks,
    split_unit,
)

logger = logging.getLogger(__name__)

#: Canonical columns that are lengths: their unit, if given, must be a length.
_LENGTH_COLUMNS = {"x", "y", "z", "precision", "precision_x", "precision_y", "precision_z"}


def _find_particle_column(source, headers, particle_column):
    """Index of the particle id column in ``headers`` (None if absent and not asked for)."""
    if particle_column is not None:
        wanted = str(particle_column)
        for i, h in enumerate(headers):
            if h == wanted:
                return i
        for i, h in enumerate(headers):
            if sanitise(split_unit(h)[0]) == sanitise(wanted):
                return i
        raise ValueError(
            f"{describe(source)}: particle_column={particle_column!r} is not a column; columns are {list(headers)}."
        )
    names = [sanitise(split_unit(h)[0]) for h in headers]
    for candidate in PARTICLE_COLUMNS:
        if candidate in names:
            return names.index(candidate)
    return None


def _counts_rows(values) -> bool:
    """Whether a column holds 0, 1, 2, ...: a DataFrame's index written out with it."""
    values = np.asarray(values)
    return values.dtype.kind in "iu" and np.array_equal(values, np.arange(len(values)))


def _first_non_number(values):
    """The first of ``values`` that does not read as a number (a text marker such as 'n/a', say)."""
    for v in np.asarray(values, dtype=object).ravel():
        try:
            float(v)
        except (TypeError, ValueError):
            return v
    return None


def particles_from_table(
    source,
    raw: dict,
    *,
    particle_column=None,
    picks=None,
    pick_radius=None,
    pixel_size=None,
    n_dims=None,
    ids=None,
    unit: str | None = None,
):
    """Turn raw columns ``{header: values}`` into particles.

    Headers may carry a unit (``"x [nm]"``, ``"x_nm"``, ``"x [px]"``); columns
    with a length unit are converted to nm. Length columns (coordinates,
    precisions) without a unit are taken to be in ``unit`` (nm when None).

    ``ids`` (one per row) overrides ``particle_column`` and ``picks``: the CSV
    folder reader knows each row's particle from its file.
    """
    headers = list(raw)
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, source)
    if unit is not None and not (isinstance(unit, str) and is_length_unit(unit)):
        raise ValueError(
            f"{describe(source)}: unit={unit!r} is not a length unit the readers know; known units: "
            f"{sorted(set(LENGTH_UNITS) | PIXEL_UNITS)}."
        )
    unit_used = False
    if ids is None:
        pidx = _find_particle_column(source, headers, particle_column)
        if pidx is not None and picks is not None:
            if particle_column is not None:
                raise ValueError(
                    f"{describe(source)}: give either particle_column or picks, not both."
                )
            logger.info("%s: picks given, so column %r is kept as a field, not used as particle id", describe(source), headers[pidx])
            pidx = None
    else:
        pidx = None

    columns: dict[str, np.ndarray] = {}
    header_of: dict[str, str] = {}
    renamed = []
    in_pixels = 0
    not_numbers = []
    for i, header in enumerate(headers):
        if i == pidx:
            continue
        name, unit_of_header = split_unit(header)
        if name == "" or sanitise(name) == "unnamed_0" or (sanitise(name) == "index" and _counts_rows(raw[header])):
            continue  # a written-out DataFrame index
        key = canonical(name)
        values = np.asarray(raw[header])
        if values.dtype.kind not in "iufb":
            if values.dtype == object:
                try:
                    values = values.astype(np.float64)
                except (TypeError, ValueError):
                    values = None
            else:
                values = None
        if values is None:
            if key in ("x", "y", "z"):
                raise ValueError(f"{describe(source)}: coordinate column {header!r} does not hold numbers.")
            not_numbers.append(f"{header!r} (first: {_first_non_number(raw[header])!r})")
            continue
        if unit_of_header is None and key in _LENGTH_COLUMNS and unit is not None:
            unit_of_header, unit_used = unit, True
        if key in _LENGTH_COLUMNS or is_length_unit(unit_of_header):
            factor = length_factor(unit_of_header, pixel_size=pixel_size, source=source, column=header)
            in_pixels += unit_of_header is not None and unit_of_header.strip().lower() in PIXEL_UNITS
            if factor != 1.0:
                values = values.astype(np.float64) * factor
        elif unit_of_header is not None and unit_of_header.strip().lower() not in OTHER_UNITS:
            logger.info("%s: column %r has unit %r, carried along unchanged", describe(source), header, unit_of_header)
        if key == "frame" and values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
            values = values.astype(np.int64)
        if key in columns:  # two columns map to one name: keep both, the later one under its own name
            first = header_of[key]
            key = sanitise(name)
            base, k = key, 2
            while key in columns:
                key, k = f"{base}_{k}", k + 1
            renamed.append(f"{header!r} (read as {key!r}; {first!r} was read first)")
        columns[key] = values
        header_of[key] = header

    if not_numbers:
        warnings.warn(
            f"{describe(source)}: column(s) {', '.join(not_numbers)} hold values that are not numbers and are left "
            "out of the particles; the file is unchanged.",
            UserWarning,
            stacklevel=3,
        )
    if renamed:
        warnings.warn(
            f"{describe(source)}: column(s) {', '.join(renamed)} name a quantity that an earlier column already "
            "gives; the earlier one is used, and the later travels as a field under the name shown. Rename or drop "
            "the column you do not mean.",
            UserWarning,
            stacklevel=3,
        )
    if unit is not None and not unit_used:
        raise ValueError(
            f"{describe(source)}: unit={unit!r} was given, but every length column names its own unit (columns "
            f"{headers}); leave out the unit."
        )
    if pixel_size is not None and not in_pixels:
        raise ValueError(
            f"{describe(source)}: pixel_size={pixel_size:g} was given, but no column is in camera pixels (columns "
            f"{headers}); columns without a unit are read as nm. If the coordinates are in pixels, pass unit='px' "
            "or name the columns with their unit ('x [px]', 'y [px]'); if they are in nm, leave out the pixel size."
        )
    missing = [c for c in ("x", "y") if c not in columns]
    if missing:
        raise ValueError(
            f"{describe(source)}: missing column(s) {missing}; found columns {headers}. "
            "Coordinates must be in columns named x, y[, z] (optionally with a unit, e.g. 'x [nm]')."
        )

    if ids is not None:
        return build_particles(source, columns, ids, n_dims=n_dims)
    if pidx is not None:
        return build_particles(source, columns, np.asarray(raw[headers[pidx]]), n_dims=n_dims)
    if picks is None:
        raise no_picks_error(source, f"no particle id column (looked for {list(PARTICLE_COLUMNS)}) and no picks given")
    rows, pick = select_picks(source, columns, picks, pick_radius)
    return build_particles(source, {k: v[rows] for k, v in columns.items()}, pick, n_dims=n_dims)

