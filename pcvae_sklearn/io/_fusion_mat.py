"""MATLAB files of the TU Delft particle-fusion tools (smlm_datafusion2d/3d, JRMPC).

Two layouts, in MATLAB v5 (read with :func:`scipy.io.loadmat`) or v7.3
(HDF5, read with h5py, where every cell element is an object reference into
the ``#refs#`` group):

- ``particles``: a cell (1 x N or N x 1) of structs with ``points`` (n x 2 or
  n x 3) and optionally ``sigma`` (n x 1 lateral, or n x 2 lateral and axial)
  and ``sigmaz`` (n x 1 axial). smlm_datafusion2d/3d write them in camera
  pixels, JRMPC's 3D demo in nm, and the file does not say which.
- a cell (N x 1 or 1 x N) of (d, n_i) arrays, d = 2 or 3, in nm: JRMPC's
  ``Superparticle`` (the registered particles behind its figures).

Both are first turned into a small neutral form (:class:`_Cell`,
:class:`_Struct`, numeric arrays in MATLAB's orientation), so one
interpreter serves both MATLAB versions.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._common import build_particles, describe, existing_path, require, sanitise

logger = logging.getLogger(__name__)

#: Variable names the fusion tools use for particles, preferred when a file holds several cells.
PREFERRED_VARIABLES = ("particles", "Superparticle")

_V5_MAGIC = b"MATLAB 5.0"
_V73_MAGIC = b"MATLAB 7.3"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_PIXEL_SIZE_HINT = (
    "pass pixel_size=<nm per camera pixel> (command line: --pixel-size <nm>), or pixel_size=1 if the values are "
    "already in nm"
)

_LAYOUTS = (
    "a 'particles' cell of structs with a 'points' field (smlm_datafusion2d/3d, JRMPC), or a cell of (2, n) or "
    "(3, n) arrays in nm (JRMPC's 'Superparticle')"
)


# ------------------------------------------------------------------ neutral form
@dataclass
class _Cell:
    """A MATLAB cell: its shape and its elements in MATLAB's (column-major) linear order."""

    shape: tuple
    items: list = field(default_factory=list)


@dataclass
class _Struct:
    """A MATLAB struct array: its shape and one dict of fields per element (column-major order)."""

    shape: tuple
    items: list = field(default_factory=list)


@dataclass
class _Other:
    """Anything the layouts cannot hold (text, objects, sparse or complex arrays): what it is, for messages."""

    what: str


#: numpy dtypes by the names MATLAB users know them.
_MATLAB_CLASSES = {"f8": "double", "f4": "single", "b1": "logical"}
_MATLAB_CLASSES.update({f"{k}{n}": f"{'u' if k == 'u' else ''}int{8 * n}" for k in "iu" for n in (1, 2, 4, 8)})


def _shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _what(node) -> str:
    if isinstance(node, _Cell):
        return f"{_shape_text(node.shape)} cell"
    if isinstance(node, _Struct):
        return f"{_shape_text(node.shape)} struct"
    if isinstance(node, _Other):
        return node.what
    return f"{_shape_text(node.shape)} {_MATLAB_CLASSES.get(node.dtype.str[1:], str(node.dtype))} array"


def _index_text(i: int) -> str:
    return f"particle {i} (0-based; cell element {{{i + 1}}} in MATLAB)"


# ------------------------------------------------------------------ MATLAB v5
def _from_v5(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype.names is not None:
            items = [{name: _from_v5(el[name]) for name in obj.dtype.names} for el in obj.ravel(order="F")]
            return _Struct(tuple(obj.shape), items)
        if obj.dtype == object:
            return _Cell(tuple(obj.shape), [_from_v5(el) for el in obj.ravel(order="F")])
        if obj.dtype.kind in "iufb":
            return obj
        return _Other(f"{_shape_text(obj.shape)} {obj.dtype} array")
    return _Other(type(obj).__name__)


def _v5_variables(path) -> list[tuple[str, tuple, str]]:
    import scipy.io

    try:
        return [(name, tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(str(path))]
    except Exception as exc:  # scipy raises many kinds on a damaged file
        raise ValueError(
            f"{describe(path)} is a MATLAB v5 .mat file that cannot be read ({type(exc).__name__}: {exc}); it may be "
            "truncated or corrupt."
        ) from None


def _v5_load(path, name):
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), variable_names=[name], squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # scipy raises many kinds on a damaged file
        raise ValueError(
            f"{describe(path)}: the MATLAB v5 variable {name!r} cannot be read ({type(exc).__name__}: {exc}); the "
            "file may be truncated or corrupt."
        ) from None
    return _from_v5(data[name])


# ------------------------------------------------------------------ MATLAB v7.3 (HDF5)
def _matlab_class(obj) -> str:
    cls = obj.attrs.get("MATLAB_class")
    if cls is None:
        return ""
    if isinstance(cls, np.ndarray):
        cls = cls.tobytes()
    return cls.decode("ascii", errors="replace") if isinstance(cls, bytes) else str(cls)


def _is_ref_dataset(h5py, obj) -> bool:
    return isinstance(obj, h5py.Dataset) and h5py.check_ref_dtype(obj.dtype) is not None


def _from_h5(h5py, f, obj):
    cls = _matlab_class(obj)
    if isinstance(obj, h5py.Group):
        if cls not in ("struct", ""):
            return _Other(f"MATLAB {cls} object")
        names = [k for k in obj.keys()]
        # a struct array keeps each field as an array of references (without a class of its own)
        fields = {k: obj[k] for k in names}
        if fields and all(_is_ref_dataset(h5py, d) and _matlab_class(d) == "" for d in fields.values()):
            shapes = {d.shape for d in fields.values()}
            if len(shapes) == 1:
                h5_shape = shapes.pop()
                refs = {k: d[()].ravel() for k, d in fields.items()}
                n = int(np.prod(h5_shape))
                items = [{k: _from_h5(h5py, f, f[refs[k][j]]) for k in names} for j in range(n)]
                return _Struct(tuple(reversed(h5_shape)), items)
        return _Struct((1, 1), [{k: _from_h5(h5py, f, d) for k, d in fields.items()}])
    if not isinstance(obj, h5py.Dataset):
        return _Other(type(obj).__name__)
    if obj.attrs.get("MATLAB_empty", 0):
        dims = tuple(int(v) for v in np.asarray(obj[()]).ravel())
        if cls == "cell":
            return _Cell(dims, [])
        if cls == "struct":
            return _Struct(dims, [])
        return np.zeros(dims, dtype=np.float64)
    if _is_ref_dataset(h5py, obj):
        refs = obj[()]
        # h5py sees MATLAB's dimensions reversed, so its C order is MATLAB's column-major order
        return _Cell(tuple(reversed(refs.shape)), [_from_h5(h5py, f, f[r]) for r in refs.ravel()])
    if cls in ("char", "function_handle") or obj.dtype.kind not in "iufb":
        return _Other(f"MATLAB {cls or obj.dtype} data")
    return np.asarray(obj[()]).T  # back to MATLAB's orientation (n x 2 is stored as 2 x n)


def _h5_open(path):
    h5py = require("h5py", "reading MATLAB v7.3 files")
    try:
        return h5py, h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{describe(path)} cannot be opened as HDF5/MATLAB v7.3 ({exc}); it may be truncated.") from None


def _h5_variables(path) -> list[tuple[str, tuple, str]]:
    h5py, f = _h5_open(path)
    with f:
        out = []
        for name in f.keys():
            if name.startswith("#"):
                continue
            obj = f[name]
            cls = _matlab_class(obj) or ("group" if isinstance(obj, h5py.Group) else "dataset")
            shape = tuple(reversed(obj.shape)) if isinstance(obj, h5py.Dataset) else ()
            out.append((name, shape, cls))
        return out


def _h5_load(path, name):
    h5py, f = _h5_open(path)
    with f:
        try:
            return _from_h5(h5py, f, f[name])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"{describe(path)}: the MATLAB v7.3 variable {name!r} cannot be read ({type(exc).__name__}: {exc}); the "
                "file may be truncated or corrupt."
            ) from None


# ------------------------------------------------------------------ which file, which variable
def mat_version(path) -> str | None:
    """``"v5"``, ``"v7.3"`` (any HDF5) or None (neither) from the first bytes of ``path``."""
    with open(path, "rb") as fh:
        head = fh.read(2048 + 8)
    if head.startswith(_V5_MAGIC):
        return "v5"
    if head.startswith(_V73_MAGIC) or any(head[o : o + 8] == _HDF5_MAGIC for o in (0, 512, 1024, 2048)):
        return "v7.3"
    return None


def mat_variables(path) -> list[tuple[str, tuple, str]]:
    """``(name, MATLAB shape, MATLAB class)`` of every variable of a v5 or v7.3 .mat file."""
    version = mat_version(path)
    if version == "v5":
        return _v5_variables(path)
    return _h5_variables(path)


def _listing(variables) -> str:
    if not variables:
        return "no variables"
    return ", ".join(f"{name} ({_shape_text(shape)} {cls})" for name, shape, cls in variables)


def neither_layout_error(path, variables) -> ValueError:
    return ValueError(
        f"{describe(path)} holds no particles in a layout of the TU Delft fusion tools: expected {_LAYOUTS}; "
        f"it holds {_listing(variables)}."
    )


def holds_fusion_layout(variables) -> bool:
    """Whether a .mat file's variable list has a cell or struct that may hold particles (checked fully on reading)."""
    return any(cls in ("cell", "struct") for _, _, cls in variables)


def _choose_variable(path, variables, variable):
    names = [name for name, _, _ in variables]
    if variable is not None:
        if variable not in names:
            raise ValueError(f"{describe(path)} has no variable {variable!r}; it holds {_listing(variables)}.")
        return variable
    candidates = [name for name, _, cls in variables if cls in ("cell", "struct")]
    if not candidates:
        raise neither_layout_error(path, variables)
    preferred = [name for name in candidates if name in PREFERRED_VARIABLES]
    if len(preferred) == 1:
        return preferred[0]
    if len(candidates) == 1:
        return candidates[0]
    choice = preferred or candidates
    raise ValueError(
        f"{describe(path)} holds several cells or structs that could be particles ({', '.join(choice)}); pass "
        "variable=<name> to choose one."
    )


# ------------------------------------------------------------------ interpretation
def _as_list_of_particles(path, name, node) -> list:
    """The elements of a 1 x N / N x 1 cell or struct array."""
    if not isinstance(node, (_Cell, _Struct)):
        raise ValueError(
            f"{describe(path)}: variable {name!r} is a {_what(node)}, not a cell of particles; expected {_LAYOUTS}."
        )
    shape = node.shape
    if len(shape) > 2 or (len(shape) == 2 and min(shape) > 1):
        raise ValueError(
            f"{describe(path)}: variable {name!r} is a {_what(node)}; a cell of particles must be 1 x N or N x 1."
        )
    if not node.items:
        raise ValueError(f"{describe(path)}: variable {name!r} is an empty {_what(node)}; it holds no particles.")
    if isinstance(node, _Struct):  # a struct array: each element is one particle's struct
        return [_Struct((1, 1), [item]) for item in node.items]
    return node.items


def _scalar_struct_fields(item):
    if isinstance(item, _Struct) and len(item.items) == 1:
        return item.items[0]
    return None


def _check_finite(path, i, name, values):
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{describe(path)}: {_index_text(i)} has {rows.size} localization(s) with NaN or infinite {name}, the first "
            f"at row {int(rows[0])} (0-based); the fusion tools cannot have used it as is. Remove those localizations "
            "or the particle."
        )


def _numeric(path, i, label, value):
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iufb":
        raise ValueError(f"{describe(path)}: {_index_text(i)}: {label} is a {_what(value)}, not a numeric array.")
    if value.ndim > 2:
        raise ValueError(f"{describe(path)}: {_index_text(i)}: {label} has {value.ndim} dimensions ({_shape_text(value.shape)}).")
    arr = np.asarray(value, dtype=np.float64)
    return arr if arr.ndim == 2 else arr.reshape(-1, 1)


def _column(path, i, label, value, n):
    """An n x 1 (or 1 x n) per-localization vector."""
    arr = _numeric(path, i, label, value)
    if arr.size == n and 1 in arr.shape:
        return arr.reshape(-1)
    raise ValueError(
        f"{describe(path)}: {_index_text(i)}: {label} has shape {_shape_text(arr.shape)}, but the particle has {n} "
        f"localizations; expected {n} x 1."
    )


def _read_struct_particles(path, name, items, pixel_size):
    """The ``particles`` layout: structs with points (n x d), sigma (n x 1 or n x 2), sigmaz (n x 1)."""
    if pixel_size is None:
        spans = []
        for item in items[:50]:
            fields = _scalar_struct_fields(item)
            pts = None if fields is None else fields.get("points")
            if isinstance(pts, np.ndarray) and pts.ndim == 2 and pts.size and np.isfinite(pts).all():
                spans.append(float(np.max(pts.max(axis=0) - pts.min(axis=0))))
        seen = f" (its particles span a median of {np.median(spans):.3g} in the file's unit)" if spans else ""
        raise ValueError(
            f"{describe(path)}: variable {name!r} is a cell of structs with 'points' as smlm_datafusion2d/3d (camera "
            f"pixels) and JRMPC (nm) write it, and the file does not say which unit it is in{seen}; {_PIXEL_SIZE_HINT}."
        )
    coords, lateral, axial, counts = [], [], [], []
    extra: dict[str, list] = {}
    dims = None
    has_sigma = None
    left_out: set[str] = set()
    for i, item in enumerate(items):
        fields = _scalar_struct_fields(item)
        if fields is None:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} of {name!r} is a {_what(item)}, not a struct with a 'points' field."
            )
        if "points" not in fields:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} of {name!r} has no 'points' field (its fields: {sorted(fields)})."
            )
        pts = _numeric(path, i, "'points'", fields["points"])
        if pts.size == 0:
            raise ValueError(f"{describe(path)}: {_index_text(i)} of {name!r} is empty (its 'points' hold no localization).")
        if pts.shape[1] not in (2, 3):
            raise ValueError(
                f"{describe(path)}: {_index_text(i)}: 'points' has shape {_shape_text(pts.shape)}; expected n x 2 or n x 3 "
                "(x, y[, z] columns, one row per localization)."
            )
        if dims is None:
            dims = pts.shape[1]
        elif pts.shape[1] != dims:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} has {pts.shape[1]}D points but the particles before it are {dims}D."
            )
        _check_finite(path, i, "coordinates", pts)
        n = pts.shape[0]
        sigma_here = "sigma" in fields or "sigmaz" in fields
        if has_sigma is None:
            has_sigma = sigma_here
        elif sigma_here != has_sigma:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} {'has' if sigma_here else 'has no'} 'sigma' field but particle 0 "
                f"{'has none' if sigma_here else 'has one'}; the localization precision must be given for all particles "
                "or for none."
            )
        lat = ax = None
        if "sigma" in fields:
            sig = _numeric(path, i, "'sigma'", fields["sigma"])
            if sig.shape == (1, n) and n != 1:
                sig = sig.T
            if sig.shape == (n, 1):
                lat = sig[:, 0]
            elif sig.shape == (n, 2) and dims == 3:
                lat, ax = sig[:, 0], sig[:, 1]
            else:
                expected = f"{n} x 1 (lateral)" + (f" or {n} x 2 (lateral, axial)" if dims == 3 else "")
                raise ValueError(
                    f"{describe(path)}: {_index_text(i)}: 'sigma' has shape {_shape_text(sig.shape)} for {n} {dims}D "
                    f"localizations; expected {expected}."
                )
        if "sigmaz" in fields:
            if ax is not None:
                raise ValueError(
                    f"{describe(path)}: {_index_text(i)} gives the axial precision twice: in the second column of 'sigma' "
                    "and in 'sigmaz'."
                )
            if dims != 3:
                raise ValueError(f"{describe(path)}: {_index_text(i)} has 'sigmaz' (axial precision) but 2D points.")
            ax = _column(path, i, "'sigmaz'", fields["sigmaz"], n)
        if has_sigma and lat is None:
            raise ValueError(f"{describe(path)}: {_index_text(i)} has 'sigmaz' but no lateral 'sigma'.")
        for label, values in (("'sigma'", lat), ("'sigmaz'", ax)):
            if values is not None and not (np.isfinite(values).all() and (values >= 0).all()):
                bad = int(np.flatnonzero(~(np.isfinite(values) & (values >= 0)))[0])
                raise ValueError(
                    f"{describe(path)}: {_index_text(i)}: {label} must be finite and not negative, but is "
                    f"{float(values[bad])!r} at row {bad} (0-based)."
                )
        if i == 0:
            axial_first = ax is not None
        elif (ax is not None) != axial_first:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} {'has' if ax is not None else 'has no'} axial precision but particle "
                f"0 {'has none' if ax is not None else 'has one'}."
            )
        coords.append(pts)
        counts.append(n)
        if lat is not None:
            lateral.append(lat)
        if ax is not None:
            axial.append(ax)
        for key, value in fields.items():
            if key in ("points", "sigma", "sigmaz"):
                continue
            if (
                isinstance(value, np.ndarray)
                and value.dtype.kind in "iufb"
                and value.size == n
                and (value.ndim < 2 or 1 in value.shape)
                and (i == 0 or key in extra)
            ):
                extra.setdefault(key, []).append(np.asarray(value).reshape(-1))
            else:
                left_out.add(key)
    # a per-localization field kept for some particles only is left out for all
    for key in list(extra):
        if len(extra[key]) != len(items):
            left_out.add(key)
            del extra[key]
    if left_out:
        warnings.warn(
            f"{describe(path)}: the struct field(s) {sorted(left_out)} of {name!r} do not hold one number per "
            "localization in every particle and are left out.",
            UserWarning,
            stacklevel=4,
        )
    xyz = np.concatenate(coords) * pixel_size
    columns = {c: xyz[:, k] for k, c in enumerate("xyz"[:dims])}
    if lateral:
        columns["precision"] = np.concatenate(lateral) * pixel_size
    if axial:
        columns["precision_z"] = np.concatenate(axial) * pixel_size
    for key, values in extra.items():
        out_name = sanitise(key)
        if out_name in columns or out_name == "particle_id":
            out_name = f"{out_name}_field"
        columns[out_name] = np.concatenate(values)
    return columns, np.asarray(counts, dtype=np.int64)


def _read_array_particles(path, name, items, pixel_size):
    """A cell of (d, n_i) arrays, d in {2, 3}."""
    scale = 1.0 if pixel_size is None else pixel_size
    arrays, counts = [], []
    dims = None
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray) or item.dtype.kind not in "iufb":
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} of {name!r} is a {_what(item)}; expected a (2, n) or (3, n) array "
                "of localizations in nm."
            )
        if item.size == 0:
            raise ValueError(f"{describe(path)}: {_index_text(i)} of {name!r} is empty (a {_what(item)}).")
        arr = np.asarray(item, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] not in (2, 3):
            hint = ""
            if arr.ndim == 2 and arr.shape[1] in (2, 3):
                hint = (
                    f"; it looks like one localization per row (n x {arr.shape[1]}), while the cell layout of the fusion "
                    "tools has one per column: transpose the arrays (in MATLAB: cellfun(@transpose, c, "
                    "'UniformOutput', false))"
                )
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} of {name!r} is a {_what(item)}; expected 2 or 3 rows (x, y[, z]), one "
                f"column per localization{hint}."
            )
        if dims is None:
            dims = arr.shape[0]
        elif arr.shape[0] != dims:
            raise ValueError(
                f"{describe(path)}: {_index_text(i)} of {name!r} has {arr.shape[0]} rows (coordinates) but the particles "
                f"before it have {dims}."
            )
        _check_finite(path, i, "coordinates", arr.T)
        arrays.append(arr.T)
        counts.append(arr.shape[1])
    xyz = np.concatenate(arrays) * scale
    return {c: xyz[:, k] for k, c in enumerate("xyz"[:dims])}, np.asarray(counts, dtype=np.int64)


def _check_pixel_size(path, pixel_size):
    if pixel_size is None:
        return None
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        raise TypeError(
            f"{describe(path)}: pixel_size must be a number of nm per camera pixel (command line: --pixel-size), got "
            f"{pixel_size!r}."
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(
            f"{describe(path)}: pixel_size must be a positive number of nm per camera pixel (command line: "
            f"--pixel-size), got {pixel_size!r}."
        )
    return value


def read_fusion_mat(path, *, pixel_size=None, variable=None, n_dims=None):
    """Read particles from a MATLAB file of the TU Delft particle-fusion tools.

    smlm_datafusion2d, smlm_datafusion3d (Heydarian et al. 2018, 2021) and
    JRMPC particle fusion (Wang et al. 2022) read and write particles in
    two layouts, both read here from MATLAB v5 and v7.3 (HDF5) files:

    - ``particles``: a cell (1 x N or N x 1) of structs with ``points``
      (n x 2 or n x 3: x, y[, z]) and optionally ``sigma`` (n x 1 lateral
      localization precision, or n x 2: lateral and axial) and ``sigmaz``
      (n x 1 axial). smlm_datafusion2d/3d store them in camera pixels,
      JRMPC's 3D demo in nm; the file does not say which, so
      ``pixel_size`` is required for this layout (``pixel_size=1`` when the
      values are in nm).
    - a cell (N x 1 or 1 x N) of (d, n_i) arrays, d = 2 or 3, one
      localization per column, in nm: JRMPC's ``Superparticle``.

    Parameters
    ----------
    path : str or Path
        A ``.mat`` file, MATLAB v5 (``save``) or v7.3 (``save -v7.3``).
    pixel_size : float, optional
        nm per camera pixel; multiplies the coordinates and the
        precisions. Required for the ``particles`` layout; a cell of
        arrays holds nm, and any other value than 1 is an error there.
    variable : str, optional
        The variable that holds the particles. By default ``particles`` or
        ``Superparticle``, else the only cell or struct in the file.
    n_dims : {2, 3}, optional
        Force 2D (drops z and ``precision_z``) or require 3D.

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        Coordinates in nm. ``particle_id`` is the particle's 0-based
        position in the cell (MATLAB's index minus one). ``precision``
        (lateral) and ``precision_z`` (axial) hold ``sigma`` (and
        ``sigmaz``) times ``pixel_size`` where the file gives them, and are
        absent where it does not. Other struct fields with one number per
        localization are kept under their (sanitised) names.

    Raises
    ------
    ValueError
        If the file holds neither layout, if ``pixel_size`` is missing for
        the ``particles`` layout, or if a particle is empty, has NaN or
        infinite coordinates, an array with other than 2 or 3 rows
        (columns for ``points``), or a ``sigma`` of the wrong shape. The
        message names the file and the particle (0-based, and its MATLAB
        cell index).

    See Also
    --------
    read_particles : picks this reader for such files by their content.

    Notes
    -----
    The registered sets (``Superparticle``) come as the fusion left them:
    every particle in one common frame. Give each particle a random angle
    about the optical axis before using them as picked particles, or as a
    fusion test whose answer is known (see the last example); the library
    has no public function for it.

    The localization precision ``sigma`` is a standard deviation, as the
    fusion tools use it (they square it into a variance).

    References
    ----------
    Heydarian et al., "Template-free 2D particle fusion in localization
    microscopy", Nat. Methods 15, 781 (2018).
    Heydarian et al., "3D particle averaging and detection of
    macromolecular symmetry in localization microscopy", Nat. Commun. 12,
    2847 (2021).
    Wang, Heydarian, Huijben, Stallinga, Rieger, "Joint registration of
    multiple point clouds for fast particle fusion in localization
    microscopy", Bioinformatics 38, 3281 (2022).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, scipy.io
    >>> from pcvae_sklearn.io import read_fusion_mat
    >>> cell = np.empty((1, 2), dtype=object)
    >>> cell[0, 0] = {"points": np.array([[0.0, 0.0], [0.5, 0.1]]), "sigma": np.array([[0.05], [0.08]])}
    >>> cell[0, 1] = {"points": np.array([[1.0, 2.0], [1.2, 2.4], [0.9, 2.1]]), "sigma": np.full((3, 1), 0.06)}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "logos.mat"
    >>> scipy.io.savemat(path, {"particles": cell})
    >>> particles = read_fusion_mat(path, pixel_size=130)
    >>> particles.fields
    ['x', 'y', 'particle_id', 'precision']
    >>> particles.x[0].tolist(), particles.precision[0].tolist()
    ([0.0, 65.0], [6.5, 10.4])

    A random angle about the optical axis for each particle (for registered
    sets):

    >>> import awkward as ak
    >>> angle = np.random.default_rng(0).uniform(0, 2 * np.pi, len(particles))
    >>> c, s = np.cos(angle), np.sin(angle)
    >>> turned = ak.with_field(particles, c * particles.x - s * particles.y, "x")
    >>> turned = ak.with_field(turned, s * particles.x + c * particles.y, "y")
    >>> bool(np.allclose(ak.to_numpy(ak.flatten(turned.x**2 + turned.y**2)),
    ...                  ak.to_numpy(ak.flatten(particles.x**2 + particles.y**2))))
    True
    """
    path = existing_path(path)
    pixel_size = _check_pixel_size(path, pixel_size)
    version = mat_version(path)
    if version is None:
        raise ValueError(
            f"{describe(path)} is not a MATLAB .mat file (no 'MATLAB 5.0' or 'MATLAB 7.3' header at its start)."
        )
    variables = mat_variables(path)
    name = _choose_variable(path, variables, variable)
    node = _v5_load(path, name) if version == "v5" else _h5_load(path, name)
    items = _as_list_of_particles(path, name, node)
    if all(isinstance(item, np.ndarray) for item in items):
        if pixel_size not in (None, 1.0):
            raise ValueError(
                f"{describe(path)}: {name!r} is a cell of arrays, which holds nm (JRMPC's Superparticle), but "
                f"pixel_size={pixel_size:g} was given: it would multiply nm by {pixel_size:g}. Leave out pixel_size "
                "(command line: --pixel-size); convert the values first if this file holds another unit."
            )
        columns, counts = _read_array_particles(path, name, items, pixel_size)
    elif isinstance(items[0], _Struct) or isinstance(node, _Struct):
        columns, counts = _read_struct_particles(path, name, items, pixel_size)
    else:
        first = next((i for i, item in enumerate(items) if not isinstance(item, np.ndarray)), 0)
        raise ValueError(
            f"{describe(path)}: variable {name!r} is a {_what(node)} whose {_index_text(first)} is a "
            f"{_what(items[first])}; expected {_LAYOUTS}."
        )
    if n_dims == 2:
        columns.pop("precision_z", None)
    ids = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    logger.debug("%s: variable %r, %d particles", describe(path), name, len(counts))
    return build_particles(path, columns, ids, n_dims=n_dims)
