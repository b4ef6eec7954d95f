"""The input boundary: whatever the user passed, once into :class:`~pcvae_sklearn._ragged.Particles`.

An awkward array, a list of ``(n_i, d)`` arrays, an object ndarray, the
plain list that scikit-learn's cross-validation hands to each fold, ...:
every public entry point calls :func:`as_particles` exactly once. Input is
validated here, with errors that name the particle and the problem.
Nothing the user passed is modified: coordinates are always copied.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ._ragged import Particles
from ._records import (
    _COORD_NAMES,
    PARTICLE_ID,
    _is_awkward,
    _offsets,
    carried_fields,
    extra_values,
    locate,
    record_fields,
    reject_case_variants,
    unzipped_record,
    warn_left_out,
)

__all__ = ["as_particles"]


def _type_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".replace("builtins.", "")


def _is_sparse(obj) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return sp.issparse(obj)




def _reject_obvious(X, what="X"):
    if X is None:
        raise TypeError(f"{what} is None; expected particles (an awkward array or a list of (n_i, 2) or (n_i, 3) arrays).")
    if _is_sparse(X):
        raise TypeError(
            f"{what} is a scipy sparse matrix ({_type_name(X)}); particles must be dense coordinates, "
            "one (n_i, 2) or (n_i, 3) array of localizations per particle."
        )
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{what} is a string ({X[:40]!r}); expected particles. To read a file use pcvae_sklearn.io.read_particles.")
    if isinstance(X, (numbers.Number, np.generic)):
        raise TypeError(f"{what} is a single number ({X!r}); expected particles.")
    if isinstance(X, dict):
        raise TypeError(f"{what} is a dict; expected particles. Wrap x, y[, z] columns with awkward.zip or pass a list of arrays.")


def _as_float_coords(a, i):
    """Validate one particle given as an array-like; return a float64 (n, d) copy."""
    if a is None:
        raise TypeError(f"particle {i} is None; every particle must be an (n_i, 2) or (n_i, 3) array of localizations.")
    if _is_sparse(a):
        raise TypeError(f"particle {i} is a scipy sparse matrix ({_type_name(a)}); pass dense coordinates.")
    if isinstance(a, (str, bytes)):
        raise TypeError(f"particle {i} is a string ({a[:40]!r}); expected an (n_i, 2) or (n_i, 3) array of numbers.")
    if isinstance(a, (numbers.Number, np.generic)):
        raise TypeError(f"particle {i} is a single number ({a!r}); expected an (n_i, 2) or (n_i, 3) array.")
    if _is_awkward(a):
        return _awkward_particle(a, i)
    if hasattr(a, "to_numpy") and hasattr(a, "columns"):  # a pandas DataFrame
        reject_case_variants(list(a.columns), f"particle {i}")
        cols = [c for c in _COORD_NAMES if c in a.columns]
        if list(a.columns) == list(range(a.shape[1])):  # unnamed columns: a DataFrame made of an array
            a = a.to_numpy()
        elif cols[:2] != ["x", "y"]:
            raise ValueError(
                f"particle {i} is a DataFrame with columns {list(a.columns)} but no x and y: name the coordinate "
                "columns x, y[, z] (nm); the other columns travel along as fields."
            )
        else:
            a = a[cols].to_numpy()
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # nested lists of unequal lengths
        raise ValueError(
            f"particle {i} cannot be read as an (n_i, 2) or (n_i, 3) array: its localizations do not all have the "
            f"same number of coordinates ({exc})."
        ) from None
    if arr.dtype.names is not None:  # structured array with x, y[, z]
        reject_case_variants(list(arr.dtype.names), f"particle {i}")
        names = [c for c in _COORD_NAMES if c in arr.dtype.names]
        if names[:2] != ["x", "y"]:  # z without y is not a 2D particle
            raise ValueError(f"particle {i} is a structured array without x and y fields (fields: {arr.dtype.names}).")
        arr = np.stack([np.asarray(arr[c]) for c in names], axis=-1)
    if arr.dtype == object:
        text = next((v for v in arr.ravel() if isinstance(v, (str, bytes))), None)
        if text is not None:  # as a string array is refused: text is never read as a coordinate
            raise TypeError(f"particle {i} holds text ({text!r}); coordinates must be numbers.")
        flat = arr.ravel()
        missing = [k for k, v in enumerate(flat) if v is None or type(v).__name__ == "NAType"]  # pandas' NA
        if missing:
            j = missing[0] // arr.shape[-1] if arr.ndim == 2 else missing[0]
            raise ValueError(f"particle {i} has a missing (None / NA) coordinate at localization {j}.")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"particle {i} holds values that are not numbers ({exc}).") from None
    if arr.dtype.kind in "USab" or arr.dtype.kind == "V":
        raise TypeError(f"particle {i} has dtype {arr.dtype}; coordinates must be numbers.")
    if arr.dtype.kind == "c":
        raise TypeError(f"particle {i} has complex coordinates; coordinates must be real numbers in nm.")
    if arr.dtype.kind == "b":
        raise TypeError(f"particle {i} has boolean values; coordinates must be numbers in nm.")
    if arr.ndim != 2 and arr.size == 0:  # [] has no columns to check; (0, d) is named with the others below
        raise ValueError(f"particle {i} is empty (shape {arr.shape}): it has no localizations.")
    if arr.ndim != 2:
        raise ValueError(
            f"particle {i} has shape {arr.shape}; every particle must be a 2-D array of shape (n_i, 2) or (n_i, 3), "
            "one row per localization."
        )
    return arr


def _awkward_particle(a, i):
    import awkward as ak

    if isinstance(a, ak.Record):
        raise ValueError(f"particle {i} is a single awkward record, not a list of localizations.")
    fields = ak.fields(a)
    if fields:
        reject_case_variants(fields, f"particle {i}")
        names = [c for c in _COORD_NAMES if c in fields]
        if names[:2] != ["x", "y"]:
            raise ValueError(f"particle {i} has fields {fields} but no x and y.")
        cols = [_ak_to_numpy(a[c], f"particle {i}, field {c!r}") for c in names]
        return np.stack(cols, axis=-1) if len(cols[0]) else np.empty((0, len(names)))
    return np.asarray(_ak_to_numpy(a, f"particle {i}"))


def _ak_to_numpy(a, where):
    import awkward as ak

    try:
        out = ak.to_numpy(a, allow_missing=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} cannot be read as numbers: it has missing values or an irregular layout ({exc}).") from None
    if out.dtype.kind not in "iuf":
        raise TypeError(f"{where} has dtype {out.dtype}; coordinates must be numbers.")
    return out


def _from_awkward(X) -> Particles:
    import awkward as ak

    if isinstance(X, ak.Record):
        raise TypeError("X is a single awkward record; expected an array of particles.")
    _reject_missing(X)
    ndim = X.ndim
    fields = ak.fields(X)
    if fields:
        reject_case_variants(fields, "X")
        names = [c for c in _COORD_NAMES if c in fields]
        if names[:2] != ["x", "y"]:
            raise ValueError(f"the awkward array's records have fields {fields}; particles need at least x and y (nm).")
        if ndim < 2:
            # record of lists: n * {x: var * float, ...}
            inner = X[names[0]]
            if inner.ndim != 2:
                raise ValueError(f"the awkward array has type {X.type}; expected n * var * {{x, y[, z]}} localizations.")
            lengths = _ak_to_numpy(ak.num(inner, axis=1), "X").astype(np.int64)
            for c in names[1:]:
                other = _ak_to_numpy(ak.num(X[c], axis=1), "X")
                if not np.array_equal(other, lengths):
                    bad = int(np.flatnonzero(other != lengths)[0])
                    raise ValueError(f"particle {bad} has {lengths[bad]} x values but {other[bad]} {c} values.")
            flat = {f: X[f] for f in fields}
            flatten = lambda v: ak.flatten(v, axis=1)  # noqa: E731
        else:
            if ndim != 2:
                raise ValueError(f"the awkward array has type {X.type}; expected n * var * {{x, y[, z]}} localizations.")
            lengths = _ak_to_numpy(ak.num(X, axis=1), "X").astype(np.int64)
            flat_rec = ak.flatten(X, axis=1)
            flat = {f: flat_rec[f] for f in fields}
            flatten = lambda v: v  # noqa: E731
        coords_cols, extra, left_out = [], {}, []
        offsets = _offsets(lengths)
        for f in fields:
            col = flatten(flat[f])
            if f not in names:
                values = extra_values(col, f, offsets)
                if values is None:
                    left_out.append(f)
                else:
                    extra[f] = values
                continue
            where = f"field {f!r}"
            if col.ndim != 1:
                raise ValueError(f"{where} is nested ({col.type}); coordinates must be one number per localization.")
            try:
                values = ak.to_numpy(col, allow_missing=False)
            except (ValueError, TypeError):
                missing = np.asarray(ak.fill_none(ak.is_none(col), False), dtype=bool)
                i, j = locate(offsets, int(np.flatnonzero(missing)[0]))
                raise ValueError(f"particle {i}: coordinate {f!r} is missing (None) at localization {j}.") from None
            if values.dtype.kind not in "iuf":
                raise TypeError(f"{where} has dtype {values.dtype}; coordinates must be numbers.")
            coords_cols.append(values)
        warn_left_out(left_out)
        coords = np.stack(coords_cols, axis=-1).astype(np.float64) if coords_cols else np.empty((0, len(names)))
        if coords.shape[0] == 0:
            coords = coords.reshape(0, len(names))
        ids = None
        if PARTICLE_ID in extra and len(lengths) and (lengths > 0).all():
            # the readers in pcvae_sklearn.io tag every localization with its particle's id
            ids = extra.pop(PARTICLE_ID)[offsets[:-1]]
        return _checked(Particles(coords=coords, offsets=offsets, fields=extra, ids=ids))

    # plain numbers: n * var * d * float or n * var * var * float
    if ndim != 3:
        if ndim == 2:
            raise ValueError(
                f"the awkward array has type {X.type}: one list of numbers per particle. Each particle must be "
                "(n_i, 2) or (n_i, 3): n * var * 2 numbers, or records with fields x, y[, z]."
            )
        raise ValueError(f"the awkward array has type {X.type}; expected n * var * d numbers or n * var * {{x, y[, z]}} records.")
    lengths = _ak_to_numpy(ak.num(X, axis=1), "X").astype(np.int64)
    flat = ak.flatten(X, axis=1)
    widths = _ak_to_numpy(ak.num(flat, axis=1), "X")
    offsets = _offsets(lengths)
    if len(widths) and (widths != widths[0]).any():
        bad_row = int(np.flatnonzero(widths != widths[0])[0])
        i, j = locate(offsets, bad_row)
        raise ValueError(
            f"particle {i}: localization {j} has {widths[bad_row]} coordinates but others have {widths[0]}; "
            "a mix of 2D and 3D localizations is not allowed."
        )
    if len(widths) and widths[0] not in (2, 3):
        i = int(np.flatnonzero(lengths)[0])
        raise ValueError(
            f"particle {i} has {widths[0]} coordinate columns; particles must have 2 (x, y) or 3 (x, y, z) columns, in nm."
        )
    coords = _ak_to_numpy(flat, "X") if len(widths) else np.empty((0, 2))
    if coords.ndim != 2:
        raise ValueError(f"the awkward array has type {X.type}; expected n * var * d numbers.")
    return _checked(Particles(coords=np.array(coords, dtype=np.float64), offsets=offsets))








def _reject_missing(X) -> None:
    """Name the first particle that is missing (None) or holds a missing localization or coordinate."""
    import awkward as ak

    what = ("is missing (None)", "has a missing (None) localization", "has a missing (None) coordinate")
    levels = 1 if ak.fields(X) else min(X.ndim, 3)  # missing record fields are named later, by field
    for level in range(levels):
        try:
            missing = ak.is_none(X, axis=level)
            for _ in range(level):
                missing = ak.any(missing, axis=-1)
            missing = np.atleast_1d(np.asarray(ak.to_numpy(ak.fill_none(missing, True))))
        except (ValueError, TypeError):  # an irregular layout: the conversion below names it
            return
        if missing.dtype != bool:  # records of lists: their fields are checked one by one below
            return
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            more = f" (and {int(missing.sum()) - 1} more)" if missing.sum() > 1 else ""
            raise ValueError(f"particle {i} {what[level]}{more}; every particle must be a list of localizations with numbers.")






def _from_sequence(X) -> Particles:
    X = [unzipped_record(a, i) for i, a in enumerate(X)]
    arrays = [_as_float_coords(a, i) for i, a in enumerate(X)]
    if not arrays:
        raise ValueError("X holds no particles.")
    widths = np.fromiter((a.shape[1] for a in arrays), dtype=np.int64, count=len(arrays))
    # report a 2D/3D mix before the per-width check so the message names the mix
    dims_ok = np.isin(widths, (2, 3))
    if not dims_ok.all():
        i = int(np.flatnonzero(~dims_ok)[0])
        raise ValueError(
            f"particle {i} has {widths[i]} coordinate columns; particles must have 2 (x, y) or 3 (x, y, z) columns, in nm."
        )
    if (widths != widths[0]).any():
        i = int(np.flatnonzero(widths != widths[0])[0])
        raise ValueError(
            f"particle {i} is {widths[i]}D but particle 0 is {widths[0]}D; a mix of 2D and 3D particles is not allowed."
        )
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    coords = np.concatenate(arrays, axis=0).astype(np.float64, copy=False)
    if coords is arrays[0] or np.shares_memory(coords, arrays[0]):
        coords = coords.copy()
    fields, ids = carried_fields([record_fields(a, i) for i, a in enumerate(X)], lengths)
    return _checked(Particles(coords=coords, offsets=_offsets(lengths), fields=fields, ids=ids))


def _checked(p: Particles, freeze: bool = True) -> Particles:
    """Validate shape and values of a Particles; ``freeze`` marks freshly built coords read-only."""
    if p.n_dims not in (2, 3):
        raise ValueError(
            f"particles have {p.n_dims} coordinate columns; they must have 2 (x, y) or 3 (x, y, z) columns, in nm."
        )
    lengths = p.lengths
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        more = f" (and {empty.size - 1} more)" if empty.size > 1 else ""
        raise ValueError(f"{p.name(int(empty[0]))} is empty{more}: it has no localizations.")
    finite = np.isfinite(p.coords).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        i, j = p.locate(row)
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{p.name(i)} has a non-finite coordinate (NaN or inf) at localization {j}: "
            f"{p.coords[row].tolist()}; {n_bad} localization(s) in all are non-finite. Remove them before fitting."
        )
    if freeze:
        p.coords.flags.writeable = False
    return p


def as_particles(X, *, min_particles: int = 1, n_dims: int | None = None, what: str = "X") -> Particles:
    """Convert any supported ragged input into :class:`Particles`, validating it.

    Parameters
    ----------
    X : awkward array, list of array-likes, object ndarray, ndarray or Particles
        Accepted forms:

        - an awkward array ``n * var * {x, y[, z], ...}`` (records; extra
          numeric fields such as ``precision`` travel along) or
          ``n * var * d`` numbers;
        - a list / tuple / object ndarray of ``(n_i, d)`` array-likes (this is
          also what scikit-learn's cross-validation passes for each fold;
          elements may be awkward arrays, numpy structured arrays with x, y[, z]
          fields or DataFrames with x, y[, z] columns, whose other numeric
          fields every particle carries travel along, as in an awkward array;
          a field left out is named in a ``UserWarning``);
        - a regular numeric ndarray of shape ``(n_particles, n_points, d)``;
        - a :class:`Particles` (returned as is).
    min_particles : int, default=1
        Raise if fewer particles are given.
    n_dims : {2, 3} or None
        Raise if the particles do not have this dimensionality.

    Returns
    -------
    Particles
        A new object; ``X`` itself is never modified.

    Raises
    ------
    TypeError
        For None, strings, numbers, scipy sparse matrices (checked before
        awkward sees them) and non-numeric coordinates.
    ValueError
        For empty particles, NaN or inf coordinates, 1-D input, a mix of 2D
        and 3D particles, coordinates with other than 2 or 3 columns and too
        few particles. The message names the particle.
    """
    _reject_obvious(X, what)
    if isinstance(X, Particles):
        p = _checked(X, freeze=False)
    elif _is_awkward(X):
        p = _from_awkward(X)
    elif isinstance(X, np.ndarray) and X.dtype != object:
        if X.dtype.names is not None:
            raise TypeError(f"{what} is one structured array; pass a list with one structured array per particle.")
        if X.ndim == 3:
            p = _from_sequence(list(X))
        elif X.ndim == 2:
            raise ValueError(
                f"{what} is a single 2-D array of shape {X.shape}. If this is one particle, pass [X]; "
                "if it holds many particles, split it into one (n_i, d) array per particle "
                "(pcvae_sklearn.io.read_particles does this from a particle-id column)."
            )
        else:
            raise ValueError(
                f"{what} is a {X.ndim}-D array of shape {X.shape}; expected a list of (n_i, 2) or (n_i, 3) arrays, one per particle."
            )
    elif isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
        if isinstance(X, np.ndarray) and X.ndim != 1:
            raise ValueError(f"{what} is an object array of shape {X.shape}; expected a 1-D array of particles.")
        p = _from_sequence(X)
    elif hasattr(X, "to_numpy") and hasattr(X, "columns"):
        raise TypeError(
            f"{what} is a DataFrame; use pcvae_sklearn.io.read_particles(df, particle_column=...) to split it into particles."
        )
    else:
        raise TypeError(
            f"{what} has type {_type_name(X)}; expected an awkward array, a list of (n_i, 2) or (n_i, 3) arrays, "
            "or an object ndarray of such arrays."
        )
    if "precision_z" in p.fields and "precision" not in p.fields and not isinstance(X, Particles):
        warnings.warn(
            "the particles carry an axial precision ('precision_z') but no lateral one ('precision'): the axial "
            "precision is read only beside a lateral one, so no precision is used and none is assumed. Add the "
            "lateral precision as 'precision'.",
            UserWarning,
            stacklevel=3,
        )
    if p.n_particles < min_particles:
        raise ValueError(f"{what} holds {p.n_particles} particle(s); at least {min_particles} are needed.")
    if n_dims is not None and p.n_dims != n_dims:
        raise ValueError(f"{what} holds {p.n_dims}D particles, but {n_dims}D particles were expected.")
    return p
