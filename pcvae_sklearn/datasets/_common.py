"""The image-formation model shared by all simulators.

A simulator describes a structure by its *sites* (the positions of the
labelled protein copies or DNA docking strands) in a model frame centred on
the structure, per particle. Everything after that is the same physics for
every structure and lives here:

1. **Pose.** The model is rotated (``R``) and shifted by a picking offset
   ``t``: ``observed = model @ R.T + t``. The pick centre, where the user
   clicked, is the origin of the returned coordinates; the true centre of
   the structure sits at ``t``. In 3D ``R`` may include a tilt of the
   structure's axis away from z, applied before the rotation about z.
2. **Labelling.** Each site carries a fluorophore with probability ``dol``
   (the degree of labelling), independently. With a linkage error the
   fluorophore sits at a Gaussian offset from its site, one offset per
   fluorophore, shared by all its localizations.
3. **Blinking / binding.** Each fluorophore gives a random number of
   localizations: geometric for dSTORM blinking, Poisson for DNA-PAINT
   binding events.
4. **Background.** A Poisson number of spurious localizations, uniform in the
   picking region (a disc in 2D, a cylinder in 3D) around the pick centre.
   Optionally, a few far outliers: some particles get one or a few
   localizations at a uniform distance in a given range (150-300 nm, say)
   from the true centre, in a uniform direction.
5. **Localization precision.** Every localization gets its own precision
   ``sigma_xy``, lognormal around a median: ``sigma ~ s / sqrt(photons)``
   and photon counts of single emitters are close to lognormal, so the
   precisions of real data are too. In 3D the axial precision is
   ``sigma_z = z_ratio * sigma_xy`` (astigmatic imaging gives a z precision
   2-3 times worse than the lateral one). The coordinates are drawn from a
   normal distribution with these standard deviations around the true
   position.

A particle that would end with no localization at all (no fluorophore, no
background and no outlier) is redrawn (labelling, blinking and background, not its
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


#: the distributions a structure parameter can be drawn from, given as a
#: dict ``{"kind": ..., <parameters>}``: the parameters each kind needs (and
#: the optional ones with their defaults)
DISTRIBUTION_KINDS = {
    "uniform": (("low", "high"), {}),
    "normal": (("mean", "std"), {}),
    "two_state": (("values",), {"p": 0.5}),
}

_FORMS = (
    "a number, a tuple (low, high), an array of shape (n_particles,), a dict "
    "{'kind': 'uniform' | 'normal' | 'two_state', ...} or a scipy.stats distribution"
)


def _bounds(positive: bool) -> dict:
    return dict(low=0.0, low_open=True) if positive else {}


def _is_number(value) -> bool:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.bool_))


def check_distribution(spec: dict, name: str, *, positive: bool = True) -> dict:
    """Validate a ``{"kind": ...}`` spec; return it with floats and defaults filled in."""
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in DISTRIBUTION_KINDS:
        raise ValueError(
            f"{name} given as a dict needs 'kind' in {sorted(DISTRIBUTION_KINDS)}, got {kind!r} (spec {spec!r})."
        )
    required, optional = DISTRIBUTION_KINDS[kind]
    missing = [k for k in required if k not in spec]
    unknown = sorted(set(spec) - {"kind", *required, *optional})
    if missing or unknown:
        expected = ", ".join([*required, *(f"{k} (optional, default {v})" for k, v in optional.items())])
        problem = f"lacks {missing}" if missing else f"has unknown key(s) {unknown}"
        raise ValueError(f"{name} = {spec!r} {problem}; a {kind!r} distribution takes {expected}.")
    out = {"kind": kind, **optional, **{k: spec[k] for k in spec if k != "kind"}}
    bounds = _bounds(positive)
    if kind == "uniform":
        out["low"] = check_real(out["low"], f"{name}['low']", **bounds)
        out["high"] = check_real(out["high"], f"{name}['high']", **bounds)
        if out["high"] < out["low"]:
            raise ValueError(f"{name} = {spec!r}: low must be <= high.")
    elif kind == "normal":
        out["mean"] = check_real(out["mean"], f"{name}['mean']", **bounds)
        out["std"] = check_real(out["std"], f"{name}['std']", low=0.0)
    else:  # two_state
        values = out["values"]
        if not isinstance(values, (tuple, list, np.ndarray)) or len(values) != 2:
            raise ValueError(f"{name}['values'] must hold the two states (a, b), got {values!r}.")
        out["values"] = tuple(check_real(v, f"{name}['values'][{i}]", **bounds) for i, v in enumerate(values))
        out["p"] = check_real(out["p"], f"{name}['p']", low=0.0, high=1.0)
    return out


def _check_draws(arr: np.ndarray, name: str, source: str, positive: bool) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if positive:
        bad |= ~(arr > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        need = "finite and > 0" if positive else "finite"
        source = f" (drawn from {source}; narrow it or truncate it, e.g. scipy.stats.truncnorm)" if source else ""
        raise ValueError(f"{name} must be {need} for every particle; particle {i} has {arr[i]}{source}.")
    return arr


def per_particle(value, name, n_particles, rng, *, positive=True) -> np.ndarray:
    """One value per particle, shape (n_particles,): a structure parameter.

    - a number: every particle gets it (a homogeneous dataset);
    - a tuple ``(low, high)``: uniform draws in that range;
    - a list or ndarray of shape ``(n_particles,)``: the values themselves
      (mixtures of discrete classes, say);
    - a dict ``{"kind": "uniform", "low": a, "high": b}``,
      ``{"kind": "normal", "mean": m, "std": s}`` or
      ``{"kind": "two_state", "values": (a, b), "p": p}`` (``b`` with
      probability ``p``, default 0.5, else ``a``);
    - a frozen :mod:`scipy.stats` distribution (anything with
      ``rvs(size=, random_state=)``), drawn with the simulator's generator.

    With ``positive`` every value must be > 0 (a draw that is not raises,
    naming the particle); otherwise any finite value is accepted. A number
    draws nothing from ``rng``.
    """
    bounds = _bounds(positive)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} given as a tuple must be (low, high), got {len(value)} values: {value!r}.")
        low = check_real(value[0], f"{name}[0] (low)", **bounds)
        high = check_real(value[1], f"{name}[1] (high)", **bounds)
        if high < low:
            raise ValueError(f"{name} = {value!r}: low must be <= high.")
        return rng.uniform(low, high, size=n_particles)
    if _is_number(value):
        if isinstance(value, np.ndarray):
            value = value[()]
        return np.full(n_particles, check_real(value, name, **bounds))
    if isinstance(value, dict):
        spec = check_distribution(value, name, positive=positive)
        if spec["kind"] == "uniform":
            return rng.uniform(spec["low"], spec["high"], size=n_particles)
        if spec["kind"] == "normal":
            draws = rng.normal(spec["mean"], spec["std"], size=n_particles)
            return _check_draws(draws, name, f"the normal distribution {value!r}", positive)
        second = rng.random(n_particles) < spec["p"]
        return np.where(second, spec["values"][1], spec["values"][0])
    if isinstance(value, (list, np.ndarray)):
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold numbers, got {value!r:.80}.") from None
        if arr.shape != (n_particles,):
            raise ValueError(
                f"{name} given as a list or array must have shape (n_particles,) = ({n_particles},), got {arr.shape}. "
                f"Give a tuple (low, high) for a uniform range or a number for a homogeneous dataset."
            )
        return _check_draws(arr, name, "", positive)
    if callable(getattr(value, "rvs", None)):
        draws = np.asarray(value.rvs(size=n_particles, random_state=rng), dtype=np.float64)
        if draws.shape != (n_particles,):
            raise ValueError(
                f"{name}: the distribution {value!r} drew an array of shape {draws.shape}, "
                f"not one value per particle ({n_particles},); give a univariate distribution."
            )
        return _check_draws(draws, name, f"the distribution {value!r}", positive)
    raise TypeError(f"{name} must be {_FORMS}, got {value!r} ({type(value).__name__}).")


def distribution_mean(value, name, *, positive=True) -> float:
    """The mean of what :func:`per_particle` draws for ``value`` (the value itself for a number)."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} given as a tuple must be (low, high), got {len(value)} values: {value!r}.")
        return (check_real(value[0], f"{name}[0] (low)", **_bounds(positive))
                + check_real(value[1], f"{name}[1] (high)", **_bounds(positive))) / 2
    if _is_number(value):
        return check_real(value[()] if isinstance(value, np.ndarray) else value, name, **_bounds(positive))
    if isinstance(value, dict):
        spec = check_distribution(value, name, positive=positive)
        if spec["kind"] == "uniform":
            return (spec["low"] + spec["high"]) / 2
        if spec["kind"] == "normal":
            return spec["mean"]
        a, b = spec["values"]
        return (1 - spec["p"]) * a + spec["p"] * b
    if isinstance(value, (list, np.ndarray)):
        arr = _check_draws(np.asarray(value, dtype=np.float64).ravel(), name, "", positive)
        return float(arr.mean())
    if callable(getattr(value, "mean", None)) and callable(getattr(value, "rvs", None)):
        mean = float(value.mean())
        if not np.isfinite(mean):
            raise ValueError(f"{name}: the distribution {value!r} has no finite mean ({mean}).")
        return mean
    raise TypeError(f"{name} must be {_FORMS}, got {value!r} ({type(value).__name__}).")


def check_blinking(blinking) -> str:
    if not isinstance(blinking, str) or blinking not in ("geometric", "poisson"):
        raise ValueError(f"blinking must be 'geometric' (dSTORM) or 'poisson' (DNA-PAINT), got {blinking!r}.")
    return blinking


def blinking_counts(blinking: str, mean: float, rng: np.random.Generator):
    """``draw(shape) -> int ndarray``: localizations per fluorophore.

    ``"geometric"``: support 1, 2, ... with mean ``mean`` (>= 1), the number
    of switching cycles of a dSTORM dye that bleaches with a constant
    probability per cycle. ``"poisson"``: the number of binding events of a
    DNA-PAINT docking strand, mean ``mean`` (0 possible).
    """
    if blinking == "geometric":
        p = 1.0 / mean

        def draw(shape):
            return rng.geometric(p, size=shape)

    else:

        def draw(shape):
            return rng.poisson(mean, size=shape)

    return draw


def check_bool(value, name) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def _check_range(value, name, check_one):
    """``(low, high)`` from a tuple ``(low, high)`` or one value, each checked by ``check_one(value, name)``."""
    if not isinstance(value, tuple):
        one = check_one(value, name)
        return one, one
    if len(value) != 2:
        raise ValueError(f"{name} given as a tuple must be (low, high), got {value!r}.")
    lo = check_one(value[0], f"{name}[0] (low)")
    hi = check_one(value[1], f"{name}[1] (high)")
    if hi < lo:
        raise ValueError(f"{name} = {value!r}: low must be <= high.")
    return lo, hi


def check_outliers(rate, count, distance):
    """Validated ``(rate, (count_low, count_high), (distance_low, distance_high))``."""
    rate = check_real(rate, "outlier_rate", low=0.0, high=1.0)
    count = _check_range(count, "outlier_count", lambda v, name: check_int(v, name, minimum=1))
    distance = _check_range(distance, "outlier_distance", lambda v, name: check_real(v, name, low=0.0))
    return rate, count, distance


def draw_outlier_counts(n: int, rate: float, count: tuple, rng: np.random.Generator) -> np.ndarray:
    """Far outliers per particle: ``count`` (uniform integer range) with probability ``rate``, else 0."""
    if rate == 0:
        return np.zeros(n, dtype=np.int64)
    has = rng.random(n) < rate
    k = rng.integers(count[0], count[1] + 1, size=n)
    return np.where(has, k, 0).astype(np.int64)


def check_axial_precision(precision: float, z_ratio, precision_z):
    """``z_ratio`` from either ``z_ratio`` (default 2.5) or a median axial precision ``precision_z`` (nm)."""
    if precision_z is None:
        return 2.5 if z_ratio is None else check_real(z_ratio, "z_ratio", low=0.0, low_open=True)
    precision_z = check_real(precision_z, "precision_z", low=0.0, low_open=True)
    if z_ratio is not None:
        raise ValueError(
            f"give either z_ratio ({z_ratio!r}) or precision_z ({precision_z:g} nm), not both: "
            "precision_z sets z_ratio = precision_z / precision."
        )
    return precision_z / precision


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


def check_tilt(tilt, rotation) -> float:
    """Maximum tilt (degrees) of the structure's axis from z; only with a rotation about z or none."""
    tilt = check_real(tilt, "tilt", low=0.0, high=90.0)
    if tilt > 0 and rotation == "3d":
        raise ValueError(
            f"tilt={tilt:g} applies to rotation='z' or None; rotation='3d' already turns the axis "
            "uniformly over the sphere."
        )
    return tilt


def tilt_rotations(n: int, max_tilt: float, rng: np.random.Generator):
    """Rotations (n, 3, 3) that tilt the z-axis by an angle uniform in [0, max_tilt] degrees.

    The axis is tilted towards a uniform azimuth ``phi``: the rotation is
    about the horizontal axis ``(-sin phi, cos phi, 0)``, so that it takes
    ``e_z`` to ``(sin t cos phi, sin t sin phi, cos t)``. Returns the
    matrices and the tilt angles in degrees.
    """
    tilt = rng.uniform(0.0, max_tilt, size=n)
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    t = np.deg2rad(tilt)
    u = np.stack([-np.sin(phi), np.cos(phi), np.zeros(n)], axis=1)
    c, s = np.cos(t), np.sin(t)
    cross = np.zeros((n, 3, 3))  # [u]_x
    cross[:, 0, 1], cross[:, 0, 2] = -u[:, 2], u[:, 1]
    cross[:, 1, 0], cross[:, 1, 2] = u[:, 2], -u[:, 0]
    cross[:, 2, 0], cross[:, 2, 1] = -u[:, 1], u[:, 0]
    rot = (
        c[:, None, None] * np.eye(3)
        + s[:, None, None] * cross
        + (1 - c)[:, None, None] * np.einsum("ni,nj->nij", u, u)
    )
    return rot, tilt


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


def _far_outliers(n: int, n_dims: int, distance: tuple, rng: np.random.Generator) -> np.ndarray:
    """``n`` displacements of uniform length in ``distance`` (nm) and uniform direction."""
    r = rng.uniform(distance[0], distance[1], size=n)
    u = rng.standard_normal((n, n_dims))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return r[:, None] * u


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
    n_outliers=None,
    outlier_distance=(150.0, 300.0),
    centres=None,
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
    rng : numpy.random.Generator
    n_outliers : ndarray of int, shape (n_particles,), optional
        Far outliers per particle (none if None).
    outlier_distance : tuple (low, high)
        Range (nm) of the uniform distance of an outlier from its particle's
        centre, before the localization error.
    centres : ndarray of shape (n_particles, n_dims), optional
        True centres of the particles (needed with outliers).

    Returns
    -------
    particles : Particles
        Fields ``precision`` (and ``precision_z`` in 3D) and ``site``
        (-1 background, -2 far outlier).
    labelled : ndarray of bool, shape (n_particles, n_sites)
    n_background : ndarray of int, shape (n_particles,)
    """
    n, n_sites, n_dims = sites.shape
    if n_outliers is None:
        n_outliers = np.zeros(n, dtype=np.int64)
    labelled = rng.random((n, n_sites)) < dol
    counts = np.where(labelled, draw_counts((n, n_sites)), 0)
    n_background = rng.poisson(background, size=n) if background > 0 else np.zeros(n, dtype=np.int64)
    # condition on non-empty particles: redraw labelling, blinking and
    # background of the (few) empty ones until none is left
    empty = np.flatnonzero(counts.sum(axis=1) + n_background + n_outliers == 0)
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
    # n_sites site slots, one background slot and one outlier slot (the
    # last two), and each slot is repeated as often as it emits; this gives
    # the packed order directly
    slot_counts = np.concatenate([counts, n_background[:, None], n_outliers[:, None]], axis=1)
    lengths = slot_counts.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    item = np.repeat(np.arange(slot_counts.size, dtype=np.int64), slot_counts.ravel())
    site = (item % (n_sites + 2)).astype(np.int32)  # slot n_sites is background, n_sites + 1 outliers
    is_background = site == n_sites
    is_outlier = site == n_sites + 1
    coords = np.empty((total, n_dims))
    for k in range(n_dims):
        table = np.zeros((n, n_sites + 2))
        table[:, :n_sites] = sites[:, :, k]
        if centres is not None:
            table[:, n_sites + 1] = centres[:, k]
        coords[:, k] = table.ravel()[item]
    del item, table
    n_bg_total = int(n_background.sum())
    if n_bg_total:
        coords[is_background] = _uniform_background(n_bg_total, n_dims, pick_radius, rng)
    n_out_total = int(n_outliers.sum())
    if n_out_total:
        if centres is None:
            raise ValueError("outliers need the particles' centres.")
        coords[is_outlier] += _far_outliers(n_out_total, n_dims, outlier_distance, rng)
    site[is_background] = -1
    site[is_outlier] = -2
    del is_background, is_outlier

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


def common_truth(
    particles: Particles, labelled, n_background, rot, angle, offset, sites, extra: dict, *, n_outliers, linkage, tilt=None
) -> np.ndarray:
    """The truth table: ``extra`` columns first, then the shared ones (``tilt`` after ``angle`` in 3D)."""
    n = particles.n_particles
    mean_precision = particles.segment_sum(particles.fields["precision"]) / particles.lengths
    columns = dict(extra)
    columns["angle"] = np.asarray(angle, dtype=np.float64)
    if tilt is not None:
        columns["tilt"] = np.asarray(tilt, dtype=np.float64)
    columns.update(
        rotation=np.asarray(rot, dtype=np.float64),
        offset=np.asarray(offset, dtype=np.float64),
        n_localizations=particles.lengths.astype(np.int64),
        n_fluorophores=labelled.sum(axis=1).astype(np.int64),
        n_background=np.asarray(n_background, dtype=np.int64),
        n_outliers=np.asarray(n_outliers, dtype=np.int64),
        mean_precision=mean_precision,
        sites=np.asarray(sites, dtype=np.float64),
        linkage=np.asarray(linkage, dtype=np.float64),
        labelled=np.asarray(labelled, dtype=bool),
    )
    return truth_table(n, columns)


def draw_linkage(shape, linkage_error: float, rng: np.random.Generator) -> np.ndarray:
    """Offsets (n, n_sites, d) of every site's fluorophore from the site: isotropic Gaussian, zeros without error."""
    if linkage_error > 0:
        return rng.normal(0.0, linkage_error, size=shape)
    return np.zeros(shape)


def output(particles: Particles, precision_field: bool):
    """The awkward array returned to the user, without the precision fields if asked."""
    if not precision_field:
        fields = {k: v for k, v in particles.fields.items() if k not in ("precision", "precision_z")}
        particles = particles.replace(fields=fields)
    return particles.to_awkward()


def check_imaging(
    dol, blinking, linkage_error, precision, precision_spread, precision_field, background, outliers, picking_offset, pick_radius
) -> dict:
    """Validated imaging keywords that every simulator passes on to :func:`observe` alike.

    ``outliers`` is ``(outlier_rate, outlier_count, outlier_distance)``; the
    other arguments are the simulators' keywords of the same names. The
    result goes on as ``observe(..., **imaging)``.
    """
    return {
        "dol": check_real(dol, "dol", low=0.0, high=1.0, low_open=True),
        "blinking": check_blinking(blinking),
        "linkage_error": check_real(linkage_error, "linkage_error", low=0.0),
        "precision": check_real(precision, "precision", low=0.0, low_open=True),
        "precision_spread": check_real(precision_spread, "precision_spread", low=0.0),
        "precision_field": check_bool(precision_field, "precision_field"),
        "background": check_real(background, "background", low=0.0),
        "outliers": check_outliers(*outliers),
        "picking_offset": check_real(picking_offset, "picking_offset", low=0.0),
        "pick_radius": check_real(pick_radius, "pick_radius", low=0.0, low_open=True),
    }


def observe(
    model: np.ndarray,
    extra: dict,
    *,
    rotation,
    tilt: float,
    picking_offset: float,
    linkage_error: float,
    outliers: tuple,
    dol: float,
    blinking: str,
    mean_per_dye: float,
    background: float,
    pick_radius: float,
    precision: float,
    precision_spread: float,
    z_ratio: float,
    precision_field: bool,
    rng: np.random.Generator,
):
    """Pose, label, blink and localize model-frame sites; the particles and their truth table.

    The draws, in order: pose (rotation about z, picking offset), tilt (3D,
    if ``tilt > 0``), linkage offsets (if ``linkage_error > 0``), outlier
    counts (if their rate is > 0), then :func:`simulate_localizations`. A
    nuisance that is off draws nothing, so switching one on leaves the draws
    before it unchanged.
    """
    n, _, n_dims = model.shape
    rot, angle, offset = draw_pose(n, n_dims, rotation, picking_offset, rng)
    tilt_deg = None
    if n_dims == 3:
        tilt_deg = np.zeros(n)
        if tilt > 0:
            r_tilt, tilt_deg = tilt_rotations(n, tilt, rng)
            rot = rot @ r_tilt  # tilt first, then the rotation about z
    sites = pose_sites(model, rot, offset)
    linkage = draw_linkage(sites.shape, linkage_error, rng)
    rate, count, distance = outliers
    n_outliers = draw_outlier_counts(n, rate, count, rng)
    p, labelled, n_background = simulate_localizations(
        sites + linkage if linkage_error > 0 else sites,
        dol=dol,
        draw_counts=blinking_counts(blinking, mean_per_dye, rng),
        background=background,
        pick_radius=pick_radius,
        precision=precision,
        precision_spread=precision_spread,
        z_ratio=z_ratio,
        rng=rng,
        n_outliers=n_outliers,
        outlier_distance=distance,
        centres=offset,
    )
    truth = common_truth(
        p, labelled, n_background, rot, angle, offset, sites, extra, n_outliers=n_outliers, linkage=linkage, tilt=tilt_deg
    )
    return output(p, precision_field), truth
