"""Gaussian-blurred localization images of particles and super-particles.

SMLM software (Picasso, ThunderSTORM, SMAP) shows localizations as an image:
every localization is a small Gaussian whose width is the localization
precision, summed on a fine pixel grid. This module renders many particles at
once on one shared grid, vectorised over all localizations (no loop over
particles), and picks the pixel size and blur from the precision.

Two blur modes, as in Picasso:

- one blur for all localizations (``blur=None``: the median precision, or a
  number in nm): a 2D histogram smoothed with
  :func:`scipy.ndimage.gaussian_filter`;
- ``blur="individual"``: every localization splatted as its own Gaussian of
  width its own precision (field ``precision``, and ``precision_z`` for z),
  integrated exactly over each pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from .._input import as_particles
from .._ragged import Particles

__all__ = [
    "Rendering",
    "render_particles",
    "render_projections",
    "localization_precision",
    "scale_bar_length",
    "add_scale_bar",
]

_AXES = {"x": 0, "y": 1, "z": 2}
_PROJECTIONS = ("xy", "xz", "yz")
# at most this many pixels along a side of a rendered image
_MAX_SIDE = 512
# a Gaussian splat is cut off this many sigma from its centre
_TRUNCATE = 4.0
# splat at most this many (localization, pixel) pairs at once
_CHUNK = 1 << 22


@dataclass
class Rendering:
    """Gaussian-blurred images of particles on one shared pixel grid.

    Attributes
    ----------
    images : ndarray of shape (n_particles, n_rows, n_cols)
        Image of every particle: expected number of localizations per pixel
        (every image sums to the number of localizations that fall inside
        ``extent``). Row ``r`` is the vertical axis (y or z) and grows
        upwards when shown with ``origin="lower"``.
    extent : tuple of 4 floats
        ``(left, right, bottom, top)`` in nm, as :meth:`matplotlib.axes.Axes.imshow` takes it.
    pixel_size : float
        Side of a pixel, nm.
    blur : tuple of 2 floats or "individual"
        Gaussian width (sigma, nm) along the horizontal and the vertical
        axis, or ``"individual"`` for per-localization precisions.
    projection : str
        ``"xy"``, ``"xz"`` or ``"yz"``: the horizontal then the vertical axis.
    precision_estimated : bool
        True when the data had no ``precision`` field and the blur was
        estimated from the localizations themselves.
    """

    images: np.ndarray
    extent: tuple
    pixel_size: float
    blur: object
    projection: str
    precision_estimated: bool = False

    @property
    def width_nm(self) -> float:
        """Horizontal size of the images in nm."""
        return float(self.extent[1] - self.extent[0])

    def normalised(self, percentile: float = 100.0) -> np.ndarray:
        """Every image divided by its own ``percentile`` (clipped to [0, 1]), for display."""
        top = np.percentile(self.images.reshape(len(self.images), -1), percentile, axis=1) if len(self.images) else []
        top = np.where(np.asarray(top) > 0, top, 1.0)
        return np.clip(self.images / np.asarray(top)[:, None, None], 0.0, 1.0)


def _nearest_neighbour_distances(p: Particles) -> np.ndarray:
    """Distance of every localization to its nearest neighbour in the same particle."""
    from scipy.spatial import cKDTree

    if p.n_localizations < 2:
        return np.zeros(0)
    coords = p.coords - np.repeat(p.centroids(), p.lengths, axis=0)
    # place the particles far apart along x so that neighbours never cross particles
    span = float(np.ptp(coords, axis=0).max()) + 1.0
    shifted = coords.copy()
    shifted[:, 0] += 4.0 * span * p.particle_index()
    dist, _ = cKDTree(shifted).query(shifted, k=2)
    d = dist[:, 1]
    return d[np.isfinite(d) & (d < span)]


def localization_precision(X) -> tuple[float, float | None, bool]:
    """Typical localization precision of particles (median, nm).

    Parameters
    ----------
    X : particles
        Anything :func:`pcvae_sklearn.as_particles` accepts.

    Returns
    -------
    lateral : float
        Median of the per-localization field ``precision``; without that
        field, the median distance of a localization to its nearest neighbour
        in the same particle (a rough stand-in: repeated localizations of a
        blinking fluorophore lie about that far apart).
    axial : float or None
        Median of ``precision_z`` for 3D particles that have it, else
        ``lateral`` for 3D particles and None for 2D ones.
    estimated : bool
        True when the data had no ``precision`` field.

    Examples
    --------
    >>> import numpy as np
    >>> import awkward as ak
    >>> from pcvae_sklearn.show import localization_precision
    >>> X = ak.Array([[{"x": 0.0, "y": 0.0, "precision": 4.0}, {"x": 9.0, "y": 1.0, "precision": 6.0}]] * 2)
    >>> localization_precision(X)
    (5.0, None, False)
    """
    p = as_particles(X)
    return _precision(p)


def _precision(p: Particles) -> tuple[float, float | None, bool]:
    axial = None
    if "precision" in p.fields:
        prec = np.asarray(p.fields["precision"], dtype=np.float64)
        prec = prec[np.isfinite(prec) & (prec > 0)]
        if prec.size:
            lateral = float(np.median(prec))
            if p.n_dims == 3:
                pz = np.asarray(p.fields.get("precision_z", prec), dtype=np.float64)
                pz = pz[np.isfinite(pz) & (pz > 0)]
                axial = float(np.median(pz)) if pz.size else lateral
            return lateral, axial, False
    d = _nearest_neighbour_distances(p)
    d = d[d > 0]
    lateral = float(np.median(d)) if d.size else 1.0
    return lateral, (lateral if p.n_dims == 3 else None), True


def _projection_axes(projection: str, n_dims: int) -> tuple[int, int]:
    if projection not in _PROJECTIONS:
        raise ValueError(f"projection must be one of {_PROJECTIONS}, got {projection!r}.")
    h, v = _AXES[projection[0]], _AXES[projection[1]]
    if max(h, v) >= n_dims:
        raise ValueError(f"projection {projection!r} needs 3D particles; these are {n_dims}D (use 'xy').")
    return h, v


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of nm, got {value!r}.")
    return float(value)


def _blur_pair(blur, default: tuple[float, float]):
    if blur is None:
        return default
    if isinstance(blur, str):
        if blur != "individual":
            raise ValueError(f"blur must be None, a number of nm, a pair of numbers or 'individual', got {blur!r}.")
        return "individual"
    if np.ndim(blur) == 0:
        b = _check_positive(blur, "blur")
        return (b, b)
    if len(blur) != 2:
        raise ValueError(f"blur must be one number or a pair (horizontal, vertical) of nm, got {blur!r}.")
    return (_check_positive(blur[0], "blur"), _check_positive(blur[1], "blur"))


def _extent(extent, h_coords, v_coords, sigma):
    """(left, right, bottom, top) in nm."""
    if extent is None:
        if h_coords.size == 0:
            half = 10.0 * sigma
        else:
            half = float(np.percentile(np.abs(np.r_[h_coords, v_coords]), 99.5)) + 3.0 * sigma
        return (-half, half, -half, half)
    if np.ndim(extent) == 0:
        half = _check_positive(extent, "extent")
        return (-half, half, -half, half)
    ext = np.asarray(extent, dtype=np.float64).ravel()
    if ext.size != 4 or not np.isfinite(ext).all() or ext[1] <= ext[0] or ext[3] <= ext[2]:
        raise ValueError(f"extent must be a half-width in nm or (left, right, bottom, top) with left < right, bottom < top; got {extent!r}.")
    return tuple(float(e) for e in ext)


def _grid(extent, pixel_size):
    """Pixel counts and the extent snapped to whole pixels (left/bottom kept)."""
    n_cols = max(1, int(math.ceil((extent[1] - extent[0]) / pixel_size - 1e-9)))
    n_rows = max(1, int(math.ceil((extent[3] - extent[2]) / pixel_size - 1e-9)))
    snapped = (extent[0], extent[0] + n_cols * pixel_size, extent[2], extent[2] + n_rows * pixel_size)
    return n_rows, n_cols, snapped


def _histogram(pidx, u, v, n, n_rows, n_cols):
    """Counts per pixel, shape (n, n_rows, n_cols); u, v in pixel units from the lower left corner."""
    col = np.floor(u).astype(np.int64)
    row = np.floor(v).astype(np.int64)
    inside = (col >= 0) & (col < n_cols) & (row >= 0) & (row < n_rows)
    flat = (pidx[inside] * n_rows + row[inside]) * n_cols + col[inside]
    counts = np.bincount(flat, minlength=n * n_rows * n_cols)
    return counts.reshape(n, n_rows, n_cols).astype(np.float64)


def _pixel_weights(centre, sigma, start, size):
    """Integral of a 1D Gaussian over pixels ``start + 0 .. size - 1``: shape (m, size)."""
    edges = start[:, None] + np.arange(size + 1)[None, :]
    cdf = erf((edges - centre[:, None]) / (np.sqrt(2.0) * sigma[:, None]))
    return 0.5 * np.diff(cdf, axis=1)


def _splat(pidx, u, v, su, sv, n, n_rows, n_cols):
    """Per-localization Gaussians (pixel units), integrated over pixels; shape (n, n_rows, n_cols)."""
    out = np.zeros(n * n_rows * n_cols)
    if u.size == 0:
        return out.reshape(n, n_rows, n_cols)
    wu = int(2 * math.ceil(_TRUNCATE * float(su.max())) + 2)
    wv = int(2 * math.ceil(_TRUNCATE * float(sv.max())) + 2)
    c0 = np.floor(u).astype(np.int64) - wu // 2
    r0 = np.floor(v).astype(np.int64) - wv // 2
    step = max(1, _CHUNK // (wu * wv))
    cols = np.arange(wu)
    rows = np.arange(wv)
    for s in range(0, u.size, step):  # bounded-memory chunks of localizations
        sl = slice(s, s + step)
        gu = _pixel_weights(u[sl], su[sl], c0[sl].astype(np.float64), wu)  # (m, wu)
        gv = _pixel_weights(v[sl], sv[sl], r0[sl].astype(np.float64), wv)  # (m, wv)
        weights = gv[:, :, None] * gu[:, None, :]  # (m, wv, wu)
        cc = c0[sl, None, None] + cols[None, None, :]
        rr = r0[sl, None, None] + rows[None, :, None]
        inside = (cc >= 0) & (cc < n_cols) & (rr >= 0) & (rr < n_rows)
        flat = (pidx[sl, None, None] * n_rows + rr) * n_cols + cc
        out += np.bincount(flat[inside], weights=weights[inside], minlength=out.size)
    return out.reshape(n, n_rows, n_cols)


def render_particles(X, *, pixel_size=None, blur=None, projection="xy", extent=None, centre=True):
    """Render every particle as a Gaussian-blurred localization image.

    All particles share one pixel grid, so that their images can be compared
    side by side (the super-particles of the bins, say). Vectorised over all
    localizations of all particles.

    Parameters
    ----------
    X : particles
        Anything :func:`pcvae_sklearn.as_particles` accepts; the
        super-particles of :func:`pcvae_sklearn.fuse_bins` for instance.
    pixel_size : float, optional
        Pixel side in nm. Default: half the blur (at least 1/512 of the
        image width).
    blur : None, float, (float, float) or "individual", default=None
        Gaussian width (sigma, nm) of every localization. ``None``: the
        median localization precision (field ``precision``, and
        ``precision_z`` along z; estimated from the localizations when
        absent, see :func:`localization_precision`). A pair gives the
        horizontal and vertical widths. ``"individual"``: every localization
        its own precision (requires the field ``precision``).
    projection : {"xy", "xz", "yz"}, default="xy"
        The two axes shown (horizontal, vertical); "xz" and "yz" need 3D
        particles. The third axis is summed over.
    extent : float or (left, right, bottom, top), optional
        Field of view in nm: a half-width (a square centred on 0) or the
        four edges. Default: a square holding 99.5 % of the localizations
        plus three blur widths. Snapped outwards to whole pixels.
    centre : bool, default=True
        Move every particle's centroid to 0 before rendering. False keeps the
        coordinates (for particles already in one common frame whose offsets
        matter).

    Returns
    -------
    Rendering
        The images (n_particles, n_rows, n_cols) with their extent, pixel
        size and blur.

    See Also
    --------
    render_projections : xy and xz images of 3D particles.
    add_scale_bar : Draw a scale bar on an image shown with matplotlib.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.show import render_particles
    >>> ring = np.c_[np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)] * 50
    >>> r = render_particles([ring, 1.2 * ring], pixel_size=2.0, blur=4.0, extent=80)
    >>> r.images.shape, r.extent
    ((2, 80, 80), (-80.0, 80.0, -80.0, 80.0))
    >>> r.images.sum(axis=(1, 2)).round(3)
    array([8., 8.])
    """
    p = as_particles(X)
    h, v = _projection_axes(projection, p.n_dims)
    lateral, axial, estimated = _precision(p)
    default_blur = (lateral if h < 2 else axial, lateral if v < 2 else axial)
    sigma = _blur_pair(blur, default_blur)
    coords = p.coords
    if centre:
        coords = coords - np.repeat(p.centroids(), p.lengths, axis=0)
    if sigma == "individual":
        if "precision" not in p.fields:
            raise ValueError("blur='individual' needs a per-localization field 'precision' (nm); pass blur=None or a number.")
        prec = np.asarray(p.fields["precision"], dtype=np.float64)
        prec_z = np.asarray(p.fields.get("precision_z", prec), dtype=np.float64)
        s_h = prec if h < 2 else prec_z
        s_v = prec if v < 2 else prec_z
        if not (np.isfinite(s_h).all() and np.isfinite(s_v).all() and (s_h > 0).all() and (s_v > 0).all()):
            raise ValueError("blur='individual' needs finite, positive precisions; some localization has a precision <= 0 or NaN.")
        typical = float(np.median(np.r_[s_h, s_v]))
    else:
        typical = float(min(sigma))
    ext = _extent(extent, coords[:, h], coords[:, v], max(typical, 0.0) if sigma == "individual" else max(sigma))
    if pixel_size is None:
        width = max(ext[1] - ext[0], ext[3] - ext[2])
        pixel_size = max(typical / 2.0, width / _MAX_SIDE)
    pixel_size = _check_positive(pixel_size, "pixel_size")
    n_rows, n_cols, ext = _grid(ext, pixel_size)
    u = (coords[:, h] - ext[0]) / pixel_size
    w = (coords[:, v] - ext[2]) / pixel_size
    pidx = p.particle_index()
    if sigma == "individual":
        images = _splat(pidx, u, w, s_h / pixel_size, s_v / pixel_size, p.n_particles, n_rows, n_cols)
    else:
        images = _histogram(pidx, u, w, p.n_particles, n_rows, n_cols)
        images = gaussian_filter(images, sigma=(0.0, sigma[1] / pixel_size, sigma[0] / pixel_size), mode="constant", truncate=_TRUNCATE)
    return Rendering(
        images=images,
        extent=ext,
        pixel_size=float(pixel_size),
        blur=sigma,
        projection=projection,
        precision_estimated=estimated,
    )


def render_projections(X, **kwargs) -> dict:
    """xy images of 2D particles; xy and xz images of 3D particles.

    Parameters
    ----------
    X : particles
        Anything :func:`pcvae_sklearn.as_particles` accepts.
    **kwargs
        Passed to :func:`render_particles` (not ``projection``). The default
        extent is shared by both projections so that their scales match.

    Returns
    -------
    dict of str to Rendering
        ``{"xy": ...}`` for 2D and ``{"xy": ..., "xz": ...}`` for 3D particles.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.show import render_projections
    >>> rng = np.random.default_rng(0)
    >>> pores = [rng.normal(0, 30, (50, 3)) for _ in range(2)]
    >>> sorted(render_projections(pores, blur=5.0))
    ['xy', 'xz']
    """
    if "projection" in kwargs:
        raise TypeError("render_projections chooses the projections itself; call render_particles for a single one.")
    p = as_particles(X)
    if p.n_dims == 2:
        return {"xy": render_particles(p, **kwargs)}
    if kwargs.get("extent") is None:
        coords = p.coords - np.repeat(p.centroids(), p.lengths, axis=0) if kwargs.get("centre", True) else p.coords
        lateral, axial, _ = _precision(p)
        blur = kwargs.get("blur")
        sigma = max(lateral, axial) if blur is None or isinstance(blur, str) else float(np.max(blur))
        kwargs["extent"] = _extent(None, coords[:, 0], np.r_[coords[:, 1], coords[:, 2]], sigma)
    return {proj: render_particles(p, projection=proj, **kwargs) for proj in ("xy", "xz")}


def scale_bar_length(width_nm: float, fraction: float = 0.25) -> float:
    """A round scale bar length (1, 2 or 5 times a power of 10 nm) near ``fraction * width_nm``.

    Examples
    --------
    >>> from pcvae_sklearn.show import scale_bar_length
    >>> scale_bar_length(160.0), scale_bar_length(1000.0), scale_bar_length(30.0)
    (20.0, 200.0, 5.0)
    """
    target = _check_positive(float(width_nm), "width_nm") * fraction
    power = 10.0 ** math.floor(math.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * power <= target * 1.0000001:
            return m * power
    return power  # pragma: no cover


def add_scale_bar(ax, length_nm=None, *, label=True, color="white", loc="lower right", fontsize=7):
    """Draw a scale bar on an image shown in nm coordinates (``imshow(..., extent=...)``).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes holding the image; its limits are in nm.
    length_nm : float, optional
        Bar length; default :func:`scale_bar_length` of the axes' width.
    label : bool or str, default=True
        Write the length under the bar (``True``), a given text, or nothing.
    color : str, default="white"
    loc : {"lower right", "lower left"}, default="lower right"
    fontsize : float, default=7

    Returns
    -------
    float
        The bar length in nm.
    """
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    width, height = x1 - x0, y1 - y0
    if length_nm is None:
        length_nm = scale_bar_length(width)
    length_nm = _check_positive(float(length_nm), "length_nm")
    margin = 0.06 * width
    if loc == "lower right":
        start = x1 - margin - length_nm
    elif loc == "lower left":
        start = x0 + margin
    else:
        raise ValueError(f"loc must be 'lower right' or 'lower left', got {loc!r}.")
    y = y0 + 0.08 * height
    ax.plot([start, start + length_nm], [y, y], color=color, linewidth=2.5, solid_capstyle="butt")
    if label:
        text = label if isinstance(label, str) else f"{length_nm:g} nm"
        ax.text(start + length_nm / 2, y + 0.03 * height, text, color=color, ha="center", va="bottom", fontsize=fontsize)
    return length_nm
