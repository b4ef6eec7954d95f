"""The fields of particles given as records: which travel with the localizations, and what is said of the rest.

:func:`~pcvae_sklearn.as_particles` reads coordinates; this module reads
everything else a record carries (``precision``, ``frame``, the readers'
``particle_id``), for an awkward array as a whole and for the elements of
a list (what scikit-learn's cross-validation hands over). A field that
cannot travel per localization is named in a ``UserWarning``; nothing is
dropped unseen.
"""

from __future__ import annotations

import warnings

import numpy as np

_COORD_NAMES = ("x", "y", "z")
# per-localization field with which pcvae_sklearn.io tags each particle's id
PARTICLE_ID = "particle_id"


def _is_awkward(obj) -> bool:
    mod = type(obj).__module__
    return mod.startswith("awkward") and type(obj).__name__ in {"Array", "Record"}


def locate(offsets: np.ndarray, row: int) -> tuple[int, int]:
    """``(particle, localization within it)`` of the flat row ``row`` of particles cut at ``offsets``."""
    i = int(np.searchsorted(offsets, row, side="right") - 1)
    return i, int(row - offsets[i])


def _offsets(lengths):
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def reject_case_variants(names, where: str) -> None:
    """Refuse a field or column named like a coordinate in other letters (``X``, ``Z``): never read as 2D or 3D by chance."""
    present = {str(n) for n in names}
    for c in _COORD_NAMES:
        variants = sorted(n for n in present if n.lower() == c and n != c)
        if variants and c not in present:
            raise ValueError(
                f"{where} has a field {variants[0]!r}, but coordinates must be named {', '.join(_COORD_NAMES)} "
                f"(lower case, nm): rename {variants[0]!r} to {c!r}, or drop it, so that no coordinate is taken "
                "for another field or left out."
            )


def _missing_as_nan(col, missing, name, offsets, first_particle=0):
    """A numeric extra field with missing (None) values as float64 with NaN there, with a warning; None otherwise."""
    import awkward as ak

    try:
        values = ak.to_numpy(ak.fill_none(col, np.nan), allow_missing=False)
    except (ValueError, TypeError):
        return None
    if values.dtype.kind not in "iuf":
        return None
    _warn_missing(name, missing, offsets, first_particle)
    return values.astype(np.float64)


def _warn_missing(name, missing, offsets, first_particle=0) -> None:
    """Say that a numeric field's missing (None) values are kept as NaN."""
    i, j = locate(offsets, int(np.flatnonzero(missing)[0]))
    warnings.warn(
        f"field {name!r} is missing (None) at {int(missing.sum())} localization(s), the first in particle "
        f"{first_particle + i} at localization {j}; they are kept as NaN.",
        UserWarning,
        stacklevel=5,
    )


def warn_left_out(names) -> None:
    """Say which of the user's fields cannot travel with the localizations (text, nested lists)."""
    if names:
        warnings.warn(
            f"field(s) {', '.join(repr(n) for n in names)} are not one number per localization (text or nested "
            "lists) and are left out of the particles; the input itself is unchanged.",
            UserWarning,
            stacklevel=4,
        )


def extra_values(col, name, offsets, first_particle=0):
    """One non-coordinate field of the flat localizations (awkward, one entry each) as an array, or None.

    Numbers travel as they are, missing (None) ones as NaN with a warning
    (:func:`_missing_as_nan`), the readers' text ids as text; a field of
    text or nested lists gives None (the caller names it).
    """
    import awkward as ak

    if col.ndim != 1:
        return None
    try:
        values = ak.to_numpy(col, allow_missing=False)
    except (ValueError, TypeError):
        missing = np.asarray(ak.fill_none(ak.is_none(col), False), dtype=bool)
        values = _missing_as_nan(col, missing, name, offsets, first_particle)
        if values is None:
            return None
    if values.dtype.kind in "iufb":
        return np.array(values)
    if name == PARTICLE_ID and values.dtype.kind in "US":  # the readers' text ids ('p1', a file name)
        return values.astype(str)
    return None


def record_fields(a, i) -> tuple[dict, list]:
    """The extra numeric fields of one particle given as records (DataFrame, structured or awkward array).

    Returns ``(fields, left_out)``: one 1-D array per field, and the names
    of the fields that cannot travel per localization (text, nested lists).
    """
    fields, left_out = {}, []
    if hasattr(a, "to_numpy") and hasattr(a, "columns"):  # a pandas DataFrame
        for c in a.columns:
            if c in _COORD_NAMES:
                continue
            values = np.asarray(a[c].to_numpy())
            if values.dtype.kind in "iufb":
                fields[str(c)] = values.copy()
            elif c == PARTICLE_ID:  # the readers' text ids
                fields[c] = values.astype(str)
            elif values.dtype == object:
                try:
                    fields[str(c)] = values.astype(np.float64)
                except (TypeError, ValueError):
                    left_out.append(str(c))
            else:
                left_out.append(str(c))
            nullable = values.dtype == object or not isinstance(a[c].dtype, np.dtype)  # Int64, Float64, objects
            if nullable and c != PARTICLE_ID and str(c) in fields:  # their None / NA became NaN: say so
                missing = a[c].isna().to_numpy()
                if missing.any():
                    _warn_missing(str(c), missing, np.array([0, len(a)]), first_particle=i)
    elif isinstance(a, np.ndarray) and a.dtype.names is not None:
        for c in a.dtype.names:
            if c in _COORD_NAMES:
                continue
            values = np.asarray(a[c])
            if values.ndim == 1 and values.dtype.kind in "iufb":
                fields[c] = values.copy()
            else:
                left_out.append(c)
    elif _is_awkward(a):
        import awkward as ak

        for c in ak.fields(a):
            if c not in _COORD_NAMES:
                values = extra_values(a[c], c, np.array([0, len(a)]), first_particle=i)
                if values is None:
                    left_out.append(c)
                else:
                    fields[c] = values
    return fields, left_out


def carried_fields(extras, lengths) -> tuple[dict, np.ndarray | None]:
    """One array per field that every particle of a list carries, and the readers' particle ids if there."""
    names = [f for f in extras[0][0] if all(f in e for e, _ in extras)]
    partial = sorted({f for e, _ in extras for f in e} - set(names))
    left_out = sorted({f for _, out in extras for f in out})
    warn_left_out(left_out)
    if partial:
        first = next(i for i, (e, _) in enumerate(extras) if partial[0] not in e)
        warnings.warn(
            f"field(s) {', '.join(repr(f) for f in partial)} are not in every particle (particle {first} has no "
            f"{partial[0]!r}) and are left out of the particles; the input itself is unchanged.",
            UserWarning,
            stacklevel=4,
        )
    fields = {f: np.concatenate([e[f] for e, _ in extras]) for f in names}
    ids = None
    if PARTICLE_ID in fields and len(lengths) and (lengths > 0).all():
        ids = fields.pop(PARTICLE_ID)[_offsets(lengths)[:-1]]
    return fields, ids


def unzipped_record(a, i):
    """A particle given as one awkward record of lists ``{x: [...], y: [...], ...}`` (a cross-validation fold of
    an ``n * {x: var * float, ...}`` array holds these) as a list of records; anything else as it is."""
    import awkward as ak

    if not (_is_awkward(a) and isinstance(a, ak.Record)):
        return a
    fields = ak.fields(a)
    if not fields or not all(isinstance(a[f], ak.Array) and a[f].ndim == 1 for f in fields):
        return a
    lengths = {f: len(a[f]) for f in fields}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"particle {i} is a record of lists of unequal lengths ({lengths}).")
    return ak.zip({f: a[f] for f in fields})
