"""SMAP ``*_sml.mat`` files (MATLAB v7.3, which is HDF5)."""

from __future__ import annotations

import logging

import numpy as np

from ._common import build_particles, describe, existing_path, no_picks_error, require, sanitise, select_picks

logger = logging.getLogger(__name__)

#: SMAP ``saveloc.loc`` fields and the names they get (all already in nm).
_SMAP_NAMES = {
    "xnm": "x", "ynm": "y", "znm": "z",
    "locprecnm": "precision", "locprecznm": "precision_z", "xnmerr": "precision_x", "ynmerr": "precision_y",
    "phot": "photons", "bg": "background", "frame": "frame",
}  # fmt: skip


def _open(path):
    h5py = require("h5py", "reading SMAP .mat files")
    with open(path, "rb") as fh:
        head = fh.read(128)
    if head.startswith(b"MATLAB 5.0"):
        raise ValueError(
            f"{describe(path)} is a MATLAB v5 .mat file; SMAP localization files are read in the v7.3 (HDF5) format "
            "that SMAP writes (_sml.mat). Save it with save(..., '-v7.3')."
        )
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{describe(path)} cannot be opened as HDF5/MATLAB v7.3 ({exc}); it may be truncated.") from None


def _site_centres(f, path):
    """Site centres (nm) from ``saveloc/siteexplorer`` when SMAP found sites; None when it has none."""
    se = f.get("saveloc/siteexplorer")
    if se is None:
        return None
    n_sites = 0
    if "numberOfSites" in se:
        n_sites = int(np.asarray(se["numberOfSites"]).ravel()[0])
    if n_sites == 0:
        return None
    sites = se.get("sites")
    # plain MATLAB struct array saved from a script: sites.pos (n x 2 or 3, nm)
    if sites is not None and hasattr(sites, "keys") and "pos" in sites:
        pos = np.asarray(sites["pos"], dtype=np.float64)
        pos = pos.T if pos.shape[0] in (2, 3) and pos.shape[1] not in (2, 3) else pos
        return pos.reshape(-1, pos.shape[-1])
    raise ValueError(
        f"{describe(path)}: SMAP's site explorer holds {n_sites} sites, but they are stored as MATLAB objects "
        "(interfaces.SEsites) that cannot be decoded outside MATLAB. Export the site positions from SMAP (or MATLAB: "
        "vertcat(g.locData.SE.sites.pos)) and pass them as picks=<(n, 2) centres in nm> with pick_radius=<nm>."
    )


def read_smap(path, *, particle_column=None, picks=None, pick_radius=None, n_dims=None):
    """Read particles from a SMAP localization file (``*_sml.mat``).

    SMAP (Ries 2020) saves MATLAB v7.3 files, which are HDF5: one dataset per
    localization field under ``saveloc/loc`` (``xnm``, ``ynm``, ``znm``,
    ``locprecnm``, ``locprecznm``, ``frame``, ``phot``, ``bg``, ...), all
    lengths in nm.

    Particles come from, in this order: ``particle_column`` (a loc field
    that holds a site or cluster id), ``picks`` (circles, centres in nm),
    or the sites of SMAP's site explorer (``saveloc/siteexplorer``) with
    ``pick_radius``.

    Parameters
    ----------
    path : str or Path
    particle_column : str, optional
        A ``saveloc/loc`` field holding the particle of each localization.
    picks : array-like of shape (n_picks, 2), optional
        Pick centres in nm.
    pick_radius : float or array-like, optional
        Pick radius in nm (also for site-explorer sites).
    n_dims : {2, 3}, optional
        By default 3D when ``znm`` is present and not all zero.

    Returns
    -------
    particles : awkward.Array of type ``n * var * {x, y[, z], particle_id, ...}``
        Fields: ``precision`` (``locprecnm``), ``precision_z``
        (``locprecznm``), ``precision_x``/``precision_y`` (``xnmerr``,
        ``ynmerr``), ``photons`` (``phot``), ``background`` (``bg``),
        ``frame`` and all other numeric loc fields, lower-cased.

    Raises
    ------
    ValueError
        If the file is truncated or not v7.3, has no ``saveloc/loc/xnm`` and
        ``ynm``, or has no picks (no sites, no particle column, no picks).

    References
    ----------
    Ries, "SMAP: a modular super-resolution microscopy analysis platform for
    SMLM data", Nat. Methods 17, 870 (2020).
    """
    path = existing_path(path)
    with _open(path) as f:
        loc = f.get("saveloc/loc")
        if loc is None or not hasattr(loc, "keys"):
            raise ValueError(f"{describe(path)} is not a SMAP localization file: it has no 'saveloc/loc' group.")
        missing = [c for c in ("xnm", "ynm") if c not in loc]
        if missing:
            raise ValueError(f"{describe(path)}: 'saveloc/loc' is missing the field(s) {missing} (fields: {sorted(loc.keys())}).")
        n = int(np.prod(loc["xnm"].shape))
        columns = {}
        ids = None
        for name in loc:
            ds = loc[name]
            if not hasattr(ds, "dtype") or ds.dtype.kind not in "iufb":
                continue
            if int(np.prod(ds.shape)) != n:
                if name in _SMAP_NAMES:
                    raise ValueError(
                        f"{describe(path)}: 'saveloc/loc/{name}' has {int(np.prod(ds.shape))} values but xnm has {n}; "
                        "the file may be truncated."
                    )
                continue
            try:
                values = np.asarray(ds[...]).reshape(-1)
            except (OSError, RuntimeError) as exc:
                raise ValueError(f"{describe(path)}: 'saveloc/loc/{name}' cannot be read ({exc}); the file may be truncated.") from None
            if particle_column is not None and name == particle_column:
                ids = values
                continue
            key = _SMAP_NAMES.get(name, sanitise(name))
            if key == "frame" and values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
                values = values.astype(np.int64)
            columns[key] = values
        if particle_column is not None and ids is None:
            raise ValueError(
                f"{describe(path)}: particle_column={particle_column!r} is not a field of 'saveloc/loc' "
                f"(fields: {sorted(loc.keys())})."
            )
        centres = None if (ids is not None or picks is not None) else _site_centres(f, path)
    if n_dims is None and "z" in columns:
        z = columns["z"]
        if not (np.isfinite(z).all() and (z != 0).any()):
            columns.pop("z")
    if ids is not None:
        if picks is not None:
            raise ValueError(f"{describe(path)}: give either particle_column or picks, not both.")
        return build_particles(path, columns, ids, n_dims=n_dims)
    if picks is None:
        if centres is None:
            raise no_picks_error(path, "SMAP's site explorer holds no sites and no particle column was given")
        if pick_radius is None:
            raise ValueError(
                f"{describe(path)}: SMAP's site explorer holds {len(centres)} sites; pass pick_radius=<nm> to take the "
                "localizations around each site."
            )
        picks = centres
    rows, pick = select_picks(path, columns, picks, pick_radius)
    return build_particles(path, {k: v[rows] for k, v in columns.items()}, pick, n_dims=n_dims)
