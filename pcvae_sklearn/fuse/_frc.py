"""Fourier ring correlation (FRC) resolution of a fused super-particle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._input import as_particles

__all__ = ["FRCResult", "fourier_ring_correlation", "frc_resolution", "render_histogram"]

#: the field's fixed threshold (Nieuwenhuizen et al. 2013; Banterle et al. 2013)
FRC_THRESHOLD = 1.0 / 7.0


def render_histogram(coords: np.ndarray, pixel_size: float, origin: np.ndarray, n_pixels: int) -> np.ndarray:
    """Counts of ``coords`` (m, >= 2; x and y used) on an ``n_pixels`` square grid starting at ``origin`` (x, y)."""
    idx = np.floor((coords[:, :2] - origin) / pixel_size).astype(np.int64)
    keep = np.all((idx >= 0) & (idx < n_pixels), axis=1)
    image = np.zeros((n_pixels, n_pixels))
    np.add.at(image, (idx[keep, 1], idx[keep, 0]), 1.0)
    return image


def fourier_ring_correlation(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """The FRC of two square images of the same shape, ring by ring.

    Ring ``k`` holds the spatial frequencies whose radius rounds to ``k``
    (in units of 1 / image width), ``k = 0 .. n // 2``. Its value is
    ``Re sum F1 conj(F2) / sqrt(sum |F1|^2 sum |F2|^2)`` over the ring; a ring
    where either image has no power gets 0.

    Returns
    -------
    ndarray of shape (n // 2 + 1,)
    """
    image1, image2 = np.asarray(image1, float), np.asarray(image2, float)
    if image1.shape != image2.shape or image1.ndim != 2 or image1.shape[0] != image1.shape[1]:
        raise ValueError(f"FRC needs two square images of the same shape, got {image1.shape} and {image2.shape}.")
    n = image1.shape[0]
    f1, f2 = np.fft.fft2(image1), np.fft.fft2(image2)
    k = np.fft.fftfreq(n) * n
    ring = np.rint(np.hypot(k[:, None], k[None, :])).astype(np.int64).ravel()
    inside = ring <= n // 2
    ring = ring[inside]
    size = n // 2 + 1
    cross = np.bincount(ring, (f1 * np.conj(f2)).real.ravel()[inside], minlength=size)
    p1 = np.bincount(ring, (np.abs(f1) ** 2).ravel()[inside], minlength=size)
    p2 = np.bincount(ring, (np.abs(f2) ** 2).ravel()[inside], minlength=size)
    den = np.sqrt(p1 * p2)
    return np.where(den > 0, cross / np.where(den > 0, den, 1.0), 0.0)


def _smooth(curve: np.ndarray) -> np.ndarray:
    """A centred moving average over about 1/20 of the rings (at least 3), edges reflected."""
    width = max(3, (len(curve) // 20) | 1)
    padded = np.pad(curve, width // 2, mode="reflect")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


@dataclass(frozen=True)
class FRCResult:
    """The FRC of two independently fused halves of a set of particles.

    Attributes
    ----------
    resolution : float
        ``1 / q`` (nm) at the first spatial frequency ``q`` where the smoothed
        FRC drops below ``threshold``; ``nan`` when it never does before the
        Nyquist frequency (the pixel is too coarse to measure it).
    frequencies : ndarray
        Spatial frequencies of the rings (1/nm).
    frc : ndarray
        The raw FRC per ring.
    frc_smoothed : ndarray
        Its moving average, from which ``resolution`` is read.
    threshold : float
    pixel_size : float
        Rendering pixel (nm).
    halves : tuple of two ndarrays
        Indices of the particles in each half.
    """

    resolution: float
    frequencies: np.ndarray
    frc: np.ndarray
    frc_smoothed: np.ndarray
    threshold: float
    pixel_size: float
    halves: tuple

    def __repr__(self):
        return (f"FRCResult(resolution={self.resolution:.2f} nm, pixel_size={self.pixel_size:.3g} nm, "
                f"halves of {len(self.halves[0])} and {len(self.halves[1])} particles)")


def _crossing(frequencies, smoothed, threshold) -> float:
    below = np.flatnonzero(smoothed[1:] < threshold)
    if len(below) == 0:
        return float("nan")
    k = below[0] + 1
    # interpolate between the last ring above and the first below the threshold
    f0, f1, c0, c1 = frequencies[k - 1], frequencies[k], smoothed[k - 1], smoothed[k]
    q = f1 if c0 == c1 else f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
    return float(1.0 / q) if q > 0 else float("nan")


def frc_resolution(X, fuser=None, *, pixel_size=None, threshold=FRC_THRESHOLD, random_state=None) -> FRCResult:
    """FRC resolution of the super-particle of ``X``, from two independently fused halves.

    The particles are split at random into two halves; each half is fused on
    its own with a clone of ``fuser``; the second super-particle is
    registered onto the first (``fuser.register`` with the whole
    super-particle as one particle); both are rendered as histograms of
    their x, y coordinates on one grid, and their Fourier ring correlation
    is read at ``threshold``. Because no particle and no registration is
    shared between the halves, noise does not correlate across them; an FRC
    of one fusion split afterwards would be optimistic (the shared template
    correlates the halves). 3D particles give the resolution of the x-y
    projection. The cost is about that of one fusion of all particles, plus
    the registration of the second half.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        At least 4 particles.
    fuser : ParticleFuser or None
        Its parameters are used (cloned, never fitted in place); ``None``
        means ``ParticleFuser(random_state=random_state)``.
    pixel_size : float or None
        Rendering pixel (nm). ``None``: the larger extent of the fused
        super-particle over 512 pixels, which resolves features far finer
        than any SMLM resolution of particles up to a few hundred nm.
    threshold : float, default=1/7
        The field's fixed threshold.
    random_state : int, RandomState instance or None
        Seeds the split, and the fusions when ``fuser`` has no
        ``random_state`` of its own.

    Returns
    -------
    FRCResult

    References
    ----------
    .. [1] Nieuwenhuizen, R. P. J. et al. "Measuring image resolution in
       optical nanoscopy." Nature Methods 10, 557-562 (2013).
    .. [2] Heydarian, H. et al. "Template-free 2D particle fusion in
       localization microscopy." Nature Methods 15, 781-784 (2018).
    """
    from ._fuser import ParticleFuser

    p = as_particles(X, min_particles=4)
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of nm, got {pixel_size!r}.")
    rng = check_random_state(random_state)
    fuser = ParticleFuser() if fuser is None else clone(fuser)
    order = rng.permutation(p.n_particles)
    if fuser.random_state is None:
        fuser.set_params(random_state=rng.randint(np.iinfo(np.int32).max))
    halves = (np.sort(order[: p.n_particles // 2]), np.sort(order[p.n_particles // 2:]))
    first, second = (clone(fuser).fit(p.take(half).to_awkward()) for half in halves)
    # the super-particles' coordinates alone: the second is registered as one particle, without its fields
    a, b = (as_particles(f.super_particle_).replace(fields={}) for f in (first, second))
    rot, trans = first.register(b.to_awkward())
    b_coords = b.coords @ rot[0].T + trans[0]
    both = np.vstack([a.coords[:, :2], b_coords[:, :2]])
    low, high = both.min(axis=0), both.max(axis=0)
    span = float(np.max(high - low))
    if span == 0:
        raise ValueError("the fused halves are single points; there is no image to correlate.")
    pixel = span / 512 if pixel_size is None else float(pixel_size)
    n_pixels = int(np.ceil(1.1 * span / pixel)) + 2
    n_pixels += n_pixels % 2
    origin = (low + high) / 2 - n_pixels * pixel / 2
    frc = fourier_ring_correlation(render_histogram(a.coords, pixel, origin, n_pixels),
                                   render_histogram(b_coords, pixel, origin, n_pixels))
    frequencies = np.arange(len(frc)) / (n_pixels * pixel)
    smoothed = _smooth(frc)
    return FRCResult(resolution=_crossing(frequencies, smoothed, threshold), frequencies=frequencies, frc=frc,
                     frc_smoothed=smoothed, threshold=float(threshold), pixel_size=pixel, halves=halves)
