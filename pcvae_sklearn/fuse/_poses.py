"""How tightly each particle's localizations fix its pose: two random halves registered onto the fused model,
beside the same for twins drawn from that model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy.spatial.transform import Rotation
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._input import as_particles
from .._ragged import Particles, apply_transforms, precision_sd
from ..datasets._common import rotations_2d, rotations_z
from ._symmetry import _mismatch, detect_symmetry

__all__ = ["PoseReproducibility", "model_twins", "pose_reproducibility"]

#: ``mirror``: the half-turn axes tried across the symmetry axis, per ``1 / order`` of a half-turn; the one whose
#: half-turn maps the fused centres nearest onto themselves is kept
_FLIP_STEPS = 32


@dataclass(frozen=True)
class PoseReproducibility:
    """The angle between the poses of two random halves of every particle, and of its twin.

    Attributes
    ----------
    angles : ndarray of shape (n_particles,)
        Degrees, up to ``group``; ``nan`` for particles too small to split
        (fewer than 2 localizations per half in 2D, 3 in 3D).
    group : ndarray of shape (g, d, d)
        The rotations of the fused model's frame under which two poses count
        as one (the identity first).
    twin_angles : ndarray of shape (n_particles,) or None
        The same for every particle's twin: as many localizations drawn
        from the fused model (see :func:`model_twins`); None where
        no twins were drawn.
    """

    angles: np.ndarray
    group: np.ndarray
    twin_angles: np.ndarray | None = None

    @property
    def median(self) -> float:
        """Median angle (degrees) over the particles that were split."""
        return float(np.nanmedian(self.angles))

    @property
    def twin_median(self) -> float:
        """Median angle (degrees) over the twins; nan where no twins were drawn."""
        if self.twin_angles is None or not np.isfinite(self.twin_angles).any():
            return float("nan")
        return float(np.nanmedian(self.twin_angles))

    @property
    def ratio(self) -> float:
        """``median / twin_median``: about 1 where the particles fix their poses as well as the fused model
        allows; well above 1 where they do not (see :func:`pose_reproducibility`)."""
        return self.median / self.twin_median if self.twin_median > 0 else float("nan")

    def __repr__(self):
        n = int(np.isfinite(self.angles).sum())
        twins = "" if self.twin_angles is None else f", twins {self.twin_median:.2f}"
        return (f"PoseReproducibility(median={self.median:.2f} degrees over {n} particles{twins}, "
                f"group of {len(self.group)})")


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


def model_twins(X, fuser, *, random_state=None):
    """A twin of every particle, drawn from the fitted model of ``fuser`` at a random pose: the null of a fusion.

    Each twin has as many localizations as its particle, every one at a
    centre of ``fuser.centres_`` chosen at random (a fully labelled
    particle of the model) plus Gaussian noise of the model's variance:
    ``sigma2_``, the axial excess along the twin's own z
    (``axial_excess_``), and each localization's precision, from the
    particle's ``precision`` fields where the fuser uses them, else a
    lognormal scale of spread ``precision_spread_`` (mean 1). The twin is
    then turned at random (about z only where the fuser rotates about z
    only). Twins hold no background. They fit the fused model exactly, so
    whatever they show (how tightly their poses are fixed, how often a
    registration finds them) is what the model allows; see
    :func:`pose_reproducibility`.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        The particles whose twins are drawn: their numbers of localizations
        and their fields (every field travels along, row by row).
    fuser : ParticleFuser
        Fitted.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    twins : awkward.Array
        ``n * var * {x, y[, z], <fields>}``.
    rotations : ndarray of shape (n_particles, d, d)
        Twin ``i`` is its model points turned by ``rotations[i]``, then
        noise: ``twins[i] @ rotations[i]`` lies on the model, less the noise.
    """
    check_is_fitted(fuser, "centres_")
    p = as_particles(X, n_dims=fuser.n_dims_)
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    twins, rotations = _draw_twins(fuser, p, rng)
    return twins.to_awkward(), rotations


def _draw_twins(fuser, p: Particles, rng: np.random.Generator) -> tuple[Particles, np.ndarray]:
    """``(twins, rotations)`` of :func:`model_twins`, on packed particles."""
    d, m = p.n_dims, p.n_localizations
    centres = fuser.centres_
    points = centres[rng.integers(len(centres), size=m)]
    if d == 2 or fuser._mode_ == "z":
        theta = rng.uniform(0.0, 2.0 * np.pi, p.n_particles)
        turn = rotations_2d(theta) if d == 2 else rotations_z(theta)
    else:
        turn = Rotation.random(p.n_particles, random_state=rng).as_matrix()
    coords = apply_transforms(points, turn, np.zeros((p.n_particles, d)), p.lengths)
    var = np.full((m, d), float(fuser.sigma2_))
    if d == 3:
        var[:, 2] += fuser.axial_excess_  # along each particle's own (observed) z
    sd = precision_sd(p) if fuser.use_precision else None
    if sd is not None:
        var += sd**2
    elif fuser.precision_spread_ > 0:
        # log s ~ N(-spread^2, spread^2): the scale s^2 of the variance has mean 1 (see _scale)
        spread = fuser.precision_spread_
        var *= np.exp(2.0 * (spread * rng.standard_normal(m) - spread**2))[:, None]
    return p.replace(coords=coords + rng.standard_normal((m, d)) * np.sqrt(var)), turn


def _halves_angles(p: Particles, fuser, group: np.ndarray, rng, warn: bool) -> np.ndarray:
    """Angle (degrees, up to ``group``) between the poses of two random halves of every particle; nan where a
    particle has too few localizations to split (with a warning naming them where ``warn``)."""
    # a random rank of every localization within its particle; the lower half of the ranks is the first half
    keys = rng.random_sample(p.n_localizations)
    index = p.particle_index()
    order_rows = np.lexsort((keys, index))
    rank = np.empty(p.n_localizations, dtype=np.int64)
    rank[order_rows] = np.arange(p.n_localizations) - np.repeat(p.offsets[:-1], p.lengths)
    first = rank < np.repeat(p.lengths // 2, p.lengths)
    enough = p.lengths >= 2 * p.n_dims
    angles = np.full(p.n_particles, np.nan)
    if warn and not enough.all():
        small = np.flatnonzero(~enough)
        names = ", ".join(p.name(i) for i in small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        warnings.warn(f"{names}: fewer than {2 * p.n_dims} localizations, too few to split into two halves that "
                      "each fix a pose; their angle is nan.", UserWarning, stacklevel=3)
    if not enough.any():
        return angles
    kept = p.take(enough)
    first = first[np.repeat(enough, p.lengths)]
    first_poses, _ = fuser.register(kept.take_rows(first))
    second_poses, _ = fuser.register(kept.take_rows(~first))
    between = np.einsum("nab,ncb->nac", first_poses, second_poses)
    angles[enough] = group_angles(between, group)
    return angles


def pose_reproducibility(X, fuser, *, symmetry=None, mirror=False, twins=True,
                         random_state=None) -> PoseReproducibility:
    """How tightly every particle's localizations fix its pose, against how tightly the fused model allows.

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

    How close is close depends on the structure and on how many
    localizations a particle has. So the same is measured on twins (the
    null): every particle's twin has as many localizations, drawn from the
    fused model itself with every centre equally likely (its centres,
    variance, axial spread and the particle's own precisions; see
    :func:`model_twins`), at a random pose. The twins fix their poses as
    well as the model allows. ``ratio`` (the particles' median over the
    twins') near 1 says the particles do too; above 1 says they do not,
    and reads the sum of why: registered in wrong poses, or unlike the
    model (fewer sites labelled, background, errors shared by a site's
    localizations, particles that differ from one another). "Other
    nuisances" in ``docs/choosing_parameters.md`` gives it beside the
    poses' errors: it grows, roughly, as the share of right poses falls.

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
    twins : bool, default=True
        Also measure every particle's twin (twice the time). ``False``
        leaves ``twin_angles`` None.
    random_state : int, RandomState instance or None, default=None
        Seeds the split and the twins.

    Returns
    -------
    PoseReproducibility
        ``angles`` per particle (degrees), their ``median``, the twins'
        ``twin_angles`` and ``twin_median``, and ``ratio``.

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
    >>> result = pose_reproducibility(particles, fuser, random_state=0)
    >>> bool(result.median < 5), bool(result.ratio < 2)
    (True, True)
    """
    check_is_fitted(fuser, "centres_")
    p = as_particles(X, n_dims=fuser.n_dims_)
    if symmetry is not None and (not isinstance(symmetry, Integral) or isinstance(symmetry, bool) or symmetry < 1):
        raise ValueError(f"symmetry must be a positive integer (8 for a nuclear pore) or None, got {symmetry!r}.")
    order = int(symmetry) if symmetry is not None else int(getattr(fuser, "symmetry", None) or 1)
    group = _symmetry_group(fuser, order, bool(mirror))
    rng = check_random_state(random_state)
    angles = _halves_angles(p, fuser, group, rng, warn=True)
    twin_angles = None
    if twins:
        twin_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        twin_angles = _halves_angles(_draw_twins(fuser, p, twin_rng)[0], fuser, group, rng, warn=False)
    return PoseReproducibility(angles, group, twin_angles)
