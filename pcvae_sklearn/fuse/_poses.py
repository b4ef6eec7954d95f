"""How tightly each particle's localizations fix its pose: two random halves registered onto the fused model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._ragged import as_particles
from ._symmetry import _mismatch, detect_symmetry

__all__ = ["PoseReproducibility", "pose_reproducibility"]

#: ``mirror``: the half-turn axes tried across the symmetry axis, per ``1 / order`` of a half-turn; the one whose
#: half-turn maps the fused centres nearest onto themselves is kept
_FLIP_STEPS = 32


@dataclass(frozen=True)
class PoseReproducibility:
    """The angle between the poses of two random halves of every particle.

    Attributes
    ----------
    angles : ndarray of shape (n_particles,)
        Degrees, up to ``group``; ``nan`` for particles too small to split
        (fewer than 2 localizations per half in 2D, 3 in 3D).
    group : ndarray of shape (g, d, d)
        The rotations of the fused model's frame under which two poses count
        as one (the identity first).
    """

    angles: np.ndarray
    group: np.ndarray

    @property
    def median(self) -> float:
        """Median angle (degrees) over the particles that were split."""
        return float(np.nanmedian(self.angles))

    def __repr__(self):
        n = int(np.isfinite(self.angles).sum())
        return f"PoseReproducibility(median={self.median:.2f} degrees over {n} particles, group of {len(self.group)})"


def group_angles(rotations: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Angle (degrees) from every rotation (n, d, d) to its nearest element of ``group`` (g, d, d).

    The angle between ``g`` and ``R`` is that of ``g^T R``; its cosine
    follows from the trace: ``tr = 2 cos`` in 2D, ``1 + 2 cos`` in 3D.
    """
    d = rotations.shape[-1]
    trace = np.einsum("gab,nab->ng", group, rotations)
    cos = trace / 2.0 if d == 2 else (trace - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos.max(axis=1), -1.0, 1.0)))


def _symmetry_group(fuser, order: int, mirror: bool) -> np.ndarray:
    """The rotations of the fitted model's frame that map it onto itself: ``C_order`` about its axis, with the
    half-turns across that axis where ``mirror`` (``D_order``)."""
    d = fuser.n_dims_
    if mirror and (d == 2 or order < 2):
        raise ValueError("mirror=True needs 3D particles and a symmetry of order 2 or more: the half-turns are "
                         "about axes across the symmetry axis (a nuclear pore turned upside down).")
    if order == 1:
        return np.eye(d)[None]
    # an imposed symmetry, or rotation about z only, leaves its axis along z
    known = d == 3 and (getattr(fuser, "symmetry", None) is not None or fuser._mode_ == "z")
    symmetry = detect_symmetry(fuser.centres_, order, axis=(0.0, 0.0, 1.0) if known else None)
    group = symmetry.group
    if not mirror:
        return group
    a = symmetry.axis
    e1 = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    rel = fuser.centres_ - symmetry.point
    flips = []
    for theta in np.arange(_FLIP_STEPS) * np.pi / (order * _FLIP_STEPS):
        u = np.cos(theta) * e1 + np.sin(theta) * e2
        flips.append(2.0 * np.outer(u, u) - np.eye(3))
    flip = min(flips, key=lambda f: _mismatch(rel, np.stack([np.eye(3), f])))
    return np.concatenate([group, group @ flip])


def pose_reproducibility(X, fuser, *, symmetry=None, mirror=False, random_state=None) -> PoseReproducibility:
    """How tightly every particle's localizations fix its pose.

    The localizations of every particle are split at random into two
    halves; each half is registered onto the fitted model on its own
    (``fuser.register``), and the angle between the two poses is returned,
    up to the model's symmetry. Where a particle's localizations fix its
    pose, the halves end close; where they do not, as for sparse particles
    whose template fits them about as well in wrong poses, they end far
    apart. For independent errors a particle's own pose error is about half
    its halves' angle. The FRC (:func:`frc_resolution`) measures how well
    two fused halves of the particles agree, and two fusions that make the
    same mistakes agree: a wrong fusion of sparse 3D pores can have the FRC
    of a good one while its halves end tens of degrees apart ("Other
    nuisances" in ``docs/choosing_parameters.md``).

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        The particles ``fuser`` was fitted on (or others of the structure).
    fuser : ParticleFuser
        Fitted.
    symmetry : int or None, default=None
        The order of a rotational symmetry of the structure (8 for a nuclear
        pore): two poses turned by ``360 / symmetry`` degrees about the
        fused model's symmetry axis count as one. ``None``: the fuser's own
        ``symmetry`` (none if it imposed none). The axis is z where the fuser
        imposed the symmetry or rotates about z only, else found from the
        fused centres.
    mirror : bool, default=False
        3D only, with a symmetry: poses turned upside down (by a half-turn
        across the symmetry axis) also count as one, as for a pore's two
        rings.
    random_state : int, RandomState instance or None, default=None
        Seeds the split.

    Returns
    -------
    PoseReproducibility
        ``angles`` per particle (degrees) and their ``median``.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.fuse import ParticleFuser, pose_reproducibility
    >>> rng = np.random.default_rng(0)
    >>> sites = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 25.0], [15.0, 10.0]])
    >>> particles = []
    >>> for angle in rng.uniform(0, 2 * np.pi, 12):
    ...     c, s = np.cos(angle), np.sin(angle)
    ...     locs = np.repeat(sites, 15, axis=0) + rng.normal(0, 2, (60, 2))
    ...     particles.append(locs @ np.array([[c, -s], [s, c]]).T)
    >>> fuser = ParticleFuser(random_state=0).fit(particles)
    >>> bool(pose_reproducibility(particles, fuser, random_state=0).median < 5)
    True
    """
    check_is_fitted(fuser, "centres_")
    p = as_particles(X, n_dims=fuser.n_dims_)
    if symmetry is not None and (not isinstance(symmetry, Integral) or isinstance(symmetry, bool) or symmetry < 1):
        raise ValueError(f"symmetry must be a positive integer (8 for a nuclear pore) or None, got {symmetry!r}.")
    order = int(symmetry) if symmetry is not None else int(getattr(fuser, "symmetry", None) or 1)
    group = _symmetry_group(fuser, order, bool(mirror))
    rng = check_random_state(random_state)
    # a random rank of every localization within its particle; the lower half of the ranks is the first half
    keys = rng.random_sample(p.n_localizations)
    index = p.particle_index()
    order_rows = np.lexsort((keys, index))
    rank = np.empty(p.n_localizations, dtype=np.int64)
    rank[order_rows] = np.arange(p.n_localizations) - np.repeat(p.offsets[:-1], p.lengths)
    first = rank < np.repeat(p.lengths // 2, p.lengths)
    enough = p.lengths >= 2 * p.n_dims
    angles = np.full(p.n_particles, np.nan)
    if not enough.all():
        small = np.flatnonzero(~enough)
        names = ", ".join(p.name(i) for i in small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        warnings.warn(f"{names}: fewer than {2 * p.n_dims} localizations, too few to split into two halves that "
                      "each fix a pose; their angle is nan.", UserWarning, stacklevel=2)
    if not enough.any():
        return PoseReproducibility(angles, group)
    kept = p.take(enough)
    first = first[np.repeat(enough, p.lengths)]
    first_poses, _ = fuser.register(kept.take_rows(first))
    second_poses, _ = fuser.register(kept.take_rows(~first))
    between = np.einsum("nab,ncb->nac", first_poses, second_poses)
    angles[enough] = group_angles(between, group)
    return PoseReproducibility(angles, group)
