"""The image-formation model shared by all simulators.

A simulator describes a structure by its *sites* (the positions of the
labelled protein copies or DNA docking strands) in a model frame centred on
the structure, per particle. Everything after that is the same physics for
every structure and lives here:

1. **Pose.** The model is rotated (``R``) and shifted by a picking offset
   ``t``: ``observed = model @ R.T + t``. The pick centre, where the user
   clicked, is the origin of the returned coordinates; the true centre of
   the structure sits at ``t``.
2. **Labelling.** Each site carries a fluorophore with probability ``dol``
   (the degree of labelling), independently.
3. **Blinking / binding.** Each fluorophore gives a random number of
   localizations (drawn by the caller: geometric for dSTORM blinking,
   Poisson for DNA-PAINT binding events).
4. **Background.** A Poisson number of spurious localizations, uniform in the
   picking region (a disc in 2D, a cylinder in 3D) around the pick centre.
5. **Localization precision.** Every localization gets its own precision
   ``sigma_xy``, lognormal around a median: ``sigma ~ s / sqrt(photons)``
   and photon counts of single emitters are close to lognormal, so the
   precisions of real data are too. In 3D the axial precision is
   ``sigma_z = z_ratio * sigma_xy`` (astigmatic imaging gives a z precision
   2-3 times worse than the lateral one). The coordinates are drawn from a
   normal distribution with these standard deviations around the true
   position.

A particle that would end with no localization at all (no fluorophore and no
background) is redrawn (labelling, blinking and background, not its
geometry) until it has at least one: the dataset is conditioned on every
particle being non-empty, as a picked particle always is.

All of it is vectorised over particles: the only Python loop is over the
rounds of that redraw, each on the few particles that are still empty.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._ragged import Particles

_MAX_REDRAW_ROUNDS = 10_000


# ------------------------------------------------------------------ validation
def check_random_state(random_state) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from ``random_state``.

    ``None`` (fresh entropy), an int, a :class:`numpy.random.SeedSequence` or
    bit generator give a new generator; a :class:`numpy.random.Generator` is
    used (and advanced) as is; a legacy :class:`numpy.random.RandomState`
    (what :func:`sklearn.utils.check_random_state` returns) seeds a new
    generator with one draw from it.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4))
    if random_state is None or isinstance(random_state, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"random_state must be None, an int or a numpy.random.Generator, got {random_state!r} "
        f"({type(random_state).__name__})."
    )


def check_int(value, name, *, minimum=1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_real(value, name, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite float within [low, high] (or open at either end)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    lo_bad = low is not None and (value <= low if low_open else value < low)
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value:g}.")
    return value


def per_particle(value, name, n_particles, rng) -> np.ndarray:
    """One positive value per particle, shape (n_particles,).

    - a number: every particle gets it (a homogeneous dataset);
    - a tuple ``(low, high)``: uniform draws in that range;
    - a list or ndarray of shape ``(n_particles,)``: the values themselves
      (mixtures of discrete classes, say).
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} given as a tuple must be (low, high), got {len(value)} values: {value!r}.")
        low = check_real(value[0], f"{name}[0] (low)", low=0.0, low_open=True)
        high = check_real(value[1], f"{name}[1] (high)", low=0.0, low_open=True)
        if high < low:
            raise ValueError(f"{name} = {value!r}: low must be <= high.")
        return rng.uniform(low, high, size=n_particles)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.bool_)):
        return np.full(n_particles, check_real(value, name, low=0.0, low_open=True))
    if isinstance(value, (list, np.ndarray)):
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold numbers (nm), got {value!r:.80}.") from None
        if arr.shape != (n_particles,):
            raise ValueError(
                f"{name} given as a list or array must have shape (n_particles,) = ({n_particles},), got {arr.shape}. "
                f"Give a tuple (low, high) for a uniform range or a number for a homogeneous dataset."
            )
        bad = ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} must be finite and > 0 for every particle; particle {i} has {arr[i]}.")
        return arr
    raise TypeError(
        f"{name} must be a number, a tuple (low, high) or an array of shape (n_particles,), "
        f"got {value!r} ({type(value).__name__})."
    )


def check_rotation_3d(rotation) -> str | None:
    if rotation is None:
        return None
    if not isinstance(rotation, str) or rotation not in ("z", "3d"):
        raise ValueError(f"rotation must be None, 'z' or '3d', got {rotation!r}.")
    return rotation


# ------------------------------------------------------------------- rotations
def rotations_2d(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 2, 2) for angles (n,) in rad, counter-clockwise."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], axis=-1), np.stack([s, c], axis=-1)], axis=-2)


def rotations_z(angle: np.ndarray) -> np.ndarray:
    """Rotations (n, 3, 3) about the optical (z) axis by ``angle`` (n,) rad."""
    out = np.zeros((len(angle), 3, 3))
    out[:, :2, :2] = rotations_2d(angle)
    out[:, 2, 2] = 1.0
    return out


def uniform_rotations_3d(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices uniform on SO(3) (Haar measure).

    Drawn as normalised 4-D Gaussian vectors (uniform unit quaternions),
    converted to matrices.
    """
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def draw_pose(n: int, n_dims: int, mode, picking_offset: float, rng: np.random.Generator):
    """Rotation matrices, in-plane angles and picking offsets.

    ``mode`` is True/False in 2D, None/"z"/"3d" in 3D. The angle is uniform
    in [0, 2 pi) about the optical axis ("z", True), 0 without rotation and
    NaN for a full 3D rotation (which has no single in-plane angle). The
    offset is Gaussian with standard deviation ``picking_offset`` nm per axis.
    """
    if mode is None or mode is False:
        angle = np.zeros(n)
        rot = np.broadcast_to(np.eye(n_dims), (n, n_dims, n_dims)).copy()
    elif mode == "3d":
        angle = np.full(n, np.nan)
        rot = uniform_rotations_3d(n, rng)
    else:  # True in 2D, "z" in 3D
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        rot = rotations_2d(angle) if n_dims == 2 else rotations_z(angle)
    offset = rng.normal(0.0, picking_offset, size=(n, n_dims)) if picking_offset > 0 else np.zeros((n, n_dims))
    return rot, angle, offset


def pose_sites(model_sites: np.ndarray, rot: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``model_sites @ R.T + offset`` per particle: (n, S, d)."""
    return np.einsum("nsd,ned->nse", model_sites, rot) + offset[:, None, :]


# ------------------------------------------------------------------ the engine
def _uniform_background(n: int, n_dims: int, pick_radius: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in a disc (2D) or a cylinder of height 2 r (3D)."""
    r = pick_radius * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    out = np.empty((n, n_dims))
    out[:, 0] = r * np.cos(phi)
    out[:, 1] = r * np.sin(phi)
    if n_dims == 3:
        out[:, 2] = rng.uniform(-pick_radius, pick_radius, size=n)
    return out


def simulate_localizations(
    sites: np.ndarray,
    *,
    dol: float,
    draw_counts,
    background: float,
    pick_radius: float,
    precision: float,
    precision_spread: float,
    z_ratio: float,
    rng: np.random.Generator,
):
    """Localizations of every particle from its true sites (observed frame).

    Parameters
    ----------
    sites : ndarray of shape (n_particles, n_sites, n_dims)
        True site positions after rotation and offset, in nm.
    dol : float
        Probability that a site carries a fluorophore.
    draw_counts : callable
        ``draw_counts(shape) -> int ndarray``: localizations per fluorophore.
    background : float
        Mean number of background localizations per particle (Poisson).
    pick_radius : float
        Radius of the picking region (disc in 2D; cylinder of radius and
        half-height ``pick_radius`` in 3D), centred at the origin.
    precision, precision_spread : float
        Median (nm) and log standard deviation of the lognormal lateral
        precision.
    z_ratio : float
        ``sigma_z / sigma_xy`` in 3D.

    Returns
    -------
    particles : Particles
        Fields ``precision`` (and ``precision_z`` in 3D) and ``site``.
    labelled : ndarray of bool, shape (n_particles, n_sites)
    n_background : ndarray of int, shape (n_particles,)
    """
    n, n_sites, n_dims = sites.shape
    labelled = rng.random((n, n_sites)) < dol
    counts = np.where(labelled, draw_counts((n, n_sites)), 0)
    n_background = rng.poisson(background, size=n) if background > 0 else np.zeros(n, dtype=np.int64)
    # condition on non-empty particles: redraw labelling, blinking and
    # background of the (few) empty ones until none is left
    empty = np.flatnonzero(counts.sum(axis=1) + n_background == 0)
    rounds = 0
    while empty.size:
        rounds += 1
        if rounds > _MAX_REDRAW_ROUNDS:
            raise ValueError(
                f"after {_MAX_REDRAW_ROUNDS} redraws {empty.size} particle(s) still have no localization; "
                f"dol={dol:g} and background={background:g} are too small to simulate non-empty particles."
            )
        lab = rng.random((empty.size, n_sites)) < dol
        labelled[empty] = lab
        counts[empty] = np.where(lab, draw_counts((empty.size, n_sites)), 0)
        if background > 0:
            n_background[empty] = rng.poisson(background, size=empty.size)
        still = counts[empty].sum(axis=1) + n_background[empty] == 0
        empty = empty[still]

    # ---- one row per localization, particle-major: every particle has
    # n_sites site slots and one background slot (the last), and each slot is
    # repeated as often as it emits; this gives the packed order directly
    slot_counts = np.concatenate([counts, n_background[:, None]], axis=1)
    lengths = slot_counts.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    item = np.repeat(np.arange(slot_counts.size, dtype=np.int64), slot_counts.ravel())
    site = (item % (n_sites + 1)).astype(np.int32)  # slot n_sites is background
    is_background = site == n_sites
    coords = np.empty((total, n_dims))
    for k in range(n_dims):
        table = np.zeros((n, n_sites + 1))
        table[:, :n_sites] = sites[:, :, k]
        coords[:, k] = table.ravel()[item]
    del item, table
    n_bg_total = int(n_background.sum())
    if n_bg_total:
        coords[is_background] = _uniform_background(n_bg_total, n_dims, pick_radius, rng)
    site[is_background] = -1
    del is_background

    # ---- localization precision and the localization error
    if precision_spread > 0:
        sigma = precision * np.exp(precision_spread * rng.standard_normal(total))
    else:
        sigma = np.full(total, precision)
    for k in range(2):
        coords[:, k] += sigma * rng.standard_normal(total)
    fields = {"precision": sigma}
    if n_dims == 3:
        sigma_z = z_ratio * sigma
        coords[:, 2] += sigma_z * rng.standard_normal(total)
        fields["precision_z"] = sigma_z
    fields["site"] = site
    return Particles(coords=coords, offsets=offsets, fields=fields), labelled, n_background


def truth_table(n_particles: int, columns: dict) -> np.ndarray:
    """A structured array from ``{name: ndarray (n_particles, ...)}``."""
    dtype = [(name, arr.dtype, arr.shape[1:]) if arr.ndim > 1 else (name, arr.dtype) for name, arr in columns.items()]
    out = np.empty(n_particles, dtype=dtype)
    for name, arr in columns.items():
        out[name] = arr
    return out


def common_truth(particles: Particles, labelled, n_background, rot, angle, offset, sites, extra: dict) -> np.ndarray:
    """The truth table: ``extra`` columns first, then the shared ones."""
    n = particles.n_particles
    mean_precision = particles.segment_sum(particles.fields["precision"]) / particles.lengths
    columns = dict(extra)
    columns.update(
        angle=np.asarray(angle, dtype=np.float64),
        rotation=np.asarray(rot, dtype=np.float64),
        offset=np.asarray(offset, dtype=np.float64),
        n_localizations=particles.lengths.astype(np.int64),
        n_fluorophores=labelled.sum(axis=1).astype(np.int64),
        n_background=np.asarray(n_background, dtype=np.int64),
        mean_precision=mean_precision,
        sites=np.asarray(sites, dtype=np.float64),
        labelled=np.asarray(labelled, dtype=bool),
    )
    return truth_table(n, columns)
