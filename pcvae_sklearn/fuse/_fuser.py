"""ParticleFuser: template-free joint registration of particles into a super-particle."""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._input import as_particles
from .._ragged import Particles, apply_transforms
from ._em import EMState, particle_loglik, run_em
from ._frames import _em_variances, _lateral_only, _loc_variance, _optical_axis_alignment, _registered, _turn_onto_z
from ._orientations import orientation_grid
from ._scale import choose_spread, refine_poses
from ._symmetry import SymmetricTemplate, impose_symmetry
from ._steps import (
    _at_most,
    _estimate_axial_excess,
    _excess_variances,
    _one_restart,
    _polish,
    _search,
    _search_rows,
)

__all__ = ["ParticleFuser"]

logger = logging.getLogger(__name__)

#: candidate orientations tried per particle in each global search, by geometry
_AUTO_ORIENTATIONS = {"2d": 36, "z": 36, "3d": 1152}
#: n_restarts="auto": where tries of other basins follow (below), they decide the poses, and the restart kept (the
#: likeliest before them) is often not the likeliest after them, so two restarts fit as well as three, and sooner.
#: rotation="z" tries no other basins and keeps 3 ("Basin tries in two rounds (2D), and two restarts" in
#: docs/choosing_parameters.md).
_AUTO_RESTARTS = {"2d": 2, "z": 3, "3d": 2}
#: n_basins="auto": after the best restart, every particle also tries this many distinct orientations (the best of the
#: coarse search, non-maximum suppressed at 1.5 grid spacings), each refined by EM against the fixed centres, and
#: keeps the one of highest likelihood. Under full 3D rotations the coarse search often lands in a wrong basin (a
#: pore tilted, or turned by a fraction of its symmetry) less likely than the true one; in 2D an asymmetric, elongated
#: structure has a deep wrong basin at 180 degrees ("Tries of other basins in 2D", "The orientation search under full
#: 3D rotations").
_POLISH_BASINS = {"2d": 6, "z": 0, "3d": 6}
#: 2D: the tries sharpen the centres, and against the sharper model every particle then tries a third as many basins
#: again. Under full 3D rotations one round already makes fusion about 1.4x longer, and the poses of 3D pores without
#: precision are limited by the data, not the search ("Basin tries in two rounds (2D), and two restarts").
_SECOND_ROUND = {"2d": True, "z": False, "3d": False}
#: a particle is flagged when its registration score lies this many robust standard deviations (1.4826 MAD)
#: below the median: the modified z-score cut of Iglewicz and Hoaglin (1993)
FLAG_Z = 3.5


def flag_low_scores(scores: np.ndarray, z: float = FLAG_Z) -> np.ndarray:
    """Boolean mask of the scores more than ``z`` robust standard deviations below their median."""
    scores = np.asarray(scores, dtype=float)
    median = np.median(scores)
    spread = 1.4826 * np.median(np.abs(scores - median))
    if not spread > 1e-9 * (1.0 + abs(median)):  # no spread beyond rounding: nothing to call an outlier
        return np.zeros(len(scores), dtype=bool)
    return scores < median - z * spread


def undetermined_rotations(p: Particles, src: np.ndarray) -> np.ndarray:
    """Particles whose localizations cannot fix a rotation: all at one point (2D), or on one line (3D).

    ``src`` holds the localizations centred on their particle's centroid.
    A single localization, or several at the same place, turn freely about
    their centroid; in 3D, collinear ones turn freely about their line.
    """
    d = p.n_dims
    second = np.empty((p.n_particles, d, d))
    for a in range(d):  # a loop over axes: the (m, d, d) outer products would not fit for large data sets
        for b in range(a, d):
            second[:, a, b] = second[:, b, a] = p.segment_sum(src[:, a] * src[:, b])
    spread = np.linalg.eigvalsh(second / np.maximum(p.lengths, 1)[:, None, None])  # ascending; 2D needs the largest above 0, 3D the two largest
    tiny = 1e-12 * float(spread[:, -1].mean())
    return spread[:, 1 - d] <= tiny


def _mixture_terms(outlier_weight: float, radius: float, d: int):
    """``(log(1 - w), log(w / volume))`` of the outlier term, volume a ball of ``radius``."""
    volume = np.pi * radius**2 if d == 2 else 4.0 / 3.0 * np.pi * radius**3
    out = np.log(outlier_weight / volume) if outlier_weight > 0 else -np.inf
    return (float(np.log1p(-outlier_weight)), float(out))


class ParticleFuser(TransformerMixin, BaseEstimator):
    """Template-free joint registration of many particles into one super-particle.

    All particles are registered at once onto one Gaussian mixture model that
    is learnt at the same time (JRMPC, Evangelidis & Horaud 2018), as in
    the fast particle fusion of Wang et al. (2022): ``n_components`` Gaussian
    centres shared by all particles, one shared isotropic variance to which
    each localization's own precision variance is added, and a uniform
    outlier term. Each EM iteration computes the responsibility of every
    centre for every localization (E-step), then finds every particle's
    rigid transform by weighted Procrustes (one batched SVD over all
    particles), then moves the centres and updates the variance (M-step).
    The cost of an iteration is linear in the number of localizations.

    EM from one start gets stuck where a particle's first guess is far from
    its true orientation. So after each EM run, every particle is also tried
    in ``n_orientations`` candidate orientations against the current
    centres (a global search, again linear in the data) and keeps the best,
    and EM runs again; this is repeated ``n_cycles`` times. The whole is
    repeated from ``n_restarts`` random initial centres and the restart with
    the highest log-likelihood is kept.

    Under full 3D rotations the coarse search still sends some particles
    into the wrong basin (a pore tilted or turned by a fraction of its
    symmetry). So at the end every particle also starts EM, against the
    fixed centres, from its 6 best candidate orientations in distinct basins
    (non-maximum suppression at 1.5 grid spacings) and keeps the likeliest
    result, its current one included; a last EM run refits the centres.
    In 2D a second, smaller round of these tries follows against the
    sharper centres (see ``n_basins``).
    This never lowers the likelihood, and on simulated pores it turns most
    of the errors beyond 15 degrees into correct registrations ("The
    orientation search under full 3D rotations" in
    ``docs/choosing_parameters.md``).

    Without a ``precision`` field, the localizations' unknown precisions
    are given a lognormal spread, chosen by likelihood, and every particle
    is registered once more onto the fixed centres with each localization
    weighted by its distance from them (see ``precision_spread``).

    Parameters
    ----------
    n_components : int, default=32
        Number of Gaussian centres ``K``; the cost grows linearly with it.
        32 suits a nuclear pore (32 sites in 3D). A structure of more
        distinct sites may need more: on simulated TU Delft logos (37 sites)
        64 registers more particles within 5 degrees and it sharpens the
        real logos' super-particle, but on real gp210 pores it agreed less
        often with the published registration ("Variants measured and not
        adopted" in ``docs/choosing_parameters.md``).
    rotation : {"full", "z"}, default="full"
        The rigid motions searched. ``"full"``: in-plane rotation for 2D
        particles, any 3D rotation for 3D particles. ``"z"``: 3D particles
        rotate about the optical (z) axis only (and translate in x, y, z),
        for structures whose axis is known to lie along z (pores seen from
        the top). ``"z"`` is a 3D-only option: 2D particles raise a
        ValueError, since a 2D input here usually means that the z column
        was lost on the way in.
    symmetry : int or None, default=None
        Impose an ``n``-fold rotational symmetry on the fused model (8 for a
        nuclear pore), as Heydarian et al. (2021) do. After the restarts the
        free centres are replaced by ``n_components / symmetry`` orbits of
        ``symmetry`` centres each, turned by ``360 / symmetry`` degrees
        about one axis, and every later EM step keeps them so. The axis is
        found from the centres (in 2D the rotation is in-plane; with
        ``rotation="z"`` it is the z axis); under full 3D rotations the
        super-particle is then turned so that the symmetry axis is its z.
        A free template can smear: its centres settle where particles
        registered slightly off sit best, and nothing pulls those back. On
        simulated 3D pores without a precision field this raises the poses
        within 5 degrees of the truth ("An imposed symmetry" in
        ``docs/choosing_parameters.md``).
        ``n_components`` must be a multiple of ``symmetry``. ``None``
        imposes none: use it for structures without a rotational symmetry
        (a DNA-origami logo) or where the symmetry is what you want to test.
    n_restarts : int or "auto", default="auto"
        Number of random initialisations; the best by log-likelihood is kept.
        ``"auto"`` is 2 where tries of other basins follow and decide the
        poses (2D, and 3D under full rotations), and 3 with
        ``rotation="z"``, which has none.
    max_iter : int, default=50
        Maximum EM iterations per EM run (there are ``n_cycles`` runs per
        restart). A run that reaches the cap hands the particles on to the
        next orientation search sooner: on simulated TU Delft logos 50
        iterations fit as well as 100, and sooner ("EM iterations per run
        (fusion)" in ``docs/choosing_parameters.md``).
    tol : float, default=1e-4
        An EM run stops when the mean log-likelihood per localization gains
        less than ``tol`` (nats) in one iteration.
    outlier_weight : float in [0, 1), default=0.01
        Prior weight of the uniform outlier component (background
        localizations), uniform over a ball holding all particles.
    n_orientations : int or "auto", default="auto"
        Candidate orientations per particle in each global search: ``"auto"``
        is 36 (10 degrees apart) for in-plane rotations and 1152 (a
        super-Fibonacci set, neighbours about 20 degrees apart) for 3D rotations,
        scored on 32 (in-plane) or 128 (3D) random localizations per particle.
        ``0`` switches the search off (plain JRMPC).
    n_cycles : int, default=3
        EM runs per restart, with a global orientation search before each
        but the first.
    n_basins : int or "auto", default="auto"
        At the end, every particle also starts EM against the fixed centres
        from its ``n_basins`` best candidate orientations in distinct basins
        and keeps the likeliest result (see above). ``"auto"`` is 6 for 2D
        particles and for 3D ones under full 3D rotations, and 0 (off) with
        ``rotation="z"``; each basin costs about one EM run. Elongated,
        asymmetric structures (a DNA-origami logo) need these tries: their
        pose turned by 180 degrees is a deep wrong basin. In 2D a second
        round follows: against the centres the first one sharpened, every
        particle tries its ``n_basins // 3`` best basins again.
    search_shifts : bool, default=True
        2D: the orientation search and the tries of other basins score every
        candidate rotation at its best shift within 1.5 RMS radii of the
        particle's current translation, not at that translation alone. A
        sparsely labelled particle's centroid is not the structure's centre,
        and turned by 180 degrees it lands far from where the right pose
        puts it ("Shifts in the 2D search" in
        ``docs/choosing_parameters.md``). ``False`` suits dense particles
        centred on the structure, such as fused super-particles:
        ``fuse_bins`` registers its bins so. Ignored in 3D.
    max_points : int or None, default=2000
        Localizations per particle (at most, chosen at random) on which the
        registration is found: the restarts, the axial spread and the tries
        of several basins. One last EM run on every localization then
        refines the poses, centres and variance. A pose needs no more, and
        the cost grows with the localizations ("Large particles" in
        ``docs/choosing_parameters.md``). Particles with fewer keep all of
        theirs (real pore and origami picks have at most about 1100);
        ``None``: always all.
        ``register`` and ``transform`` work the same way.
    use_precision : bool, default=True
        Add each localization's precision (field ``precision``, nm; in 3D
        ``precision_z`` for the z axis) to the variance.
        Under full 3D rotations the axial precision is fixed in each
        particle's own (observed) frame and turns with the particle: the EM
        then uses every localization's full covariance in the common frame
        (the rotation step has no closed form and takes guarded Gauss-Newton
        steps); only the coarse orientation search uses the mean variance over
        the three axes ("The orientation search under full 3D rotations" in
        ``docs/choosing_parameters.md``).
        Without a ``precision`` field in 3D, or with one but no
        ``precision_z``, the axial spread is not assumed equal to the
        lateral one: after the restarts, an axial variance along each
        particle's own z on top of the lateral one is chosen by likelihood
        and used for the rest of the fit (``axial_excess_``).
    precision_spread : "auto" or float >= 0, default="auto"
        Without a ``precision`` field the localizations' precisions are
        unknown, but they are not all the same: each localization's variance
        is then the model's times an unknown factor, lognormal with this
        log-standard deviation (about a median that keeps the model's mean
        variance). After the fit, every particle is registered again onto
        the fixed centres under each localization's variance given its
        residuals, so that the localizations close to a centre count more,
        as precise ones would (the EM of that scale mixture).
        ``"auto"`` chooses the spread among 0, 0.15, 0.3, 0.45 and 0.6 by
        likelihood at the fitted poses (``precision_spread_``); ``0``
        switches this off. Ignored where the particles carry a ``precision``
        field (and ``use_precision`` is True): the field says it. It helps
        most on 3D pores without precision fields; in 2D the gain is a few
        particles at most ("Unknown precisions: a scale mixture" in
        ``docs/choosing_parameters.md``).
    n_jobs : int or None, default=None
        Restarts run in parallel with joblib; ``None`` means 1.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial centres and rotations.
    verbose : int, default=0
        Log progress (``logging`` INFO per restart; DEBUG per iteration when
        ``verbose > 1``) through ``logging.getLogger("pcvae_sklearn.fuse._fuser")``.

    Attributes
    ----------
    super_particle_ : awkward.Array
        ``1 * var * {x, y[, z], <fields>, particle}``: all localizations of
        all particles, registered, as one particle (so that estimators taking
        particles accept it as is); the field ``particle`` (int64) says which
        input particle a localization came from (unless the input already
        had a field of that name): an index into ``X``, whose
        ``particle_id`` field holds the file's ids where a reader made it.
    centres_ : ndarray of shape (n_components, n_dims)
        The Gaussian centres, in the output frame.
    sigma2_ : float
        Shared variance of the centres (nm^2), on top of the precisions.
    rotations_ : ndarray of shape (n_particles, n_dims, n_dims)
    translations_ : ndarray of shape (n_particles, n_dims)
        Registered particle ``i`` is ``X_i @ rotations_[i].T + translations_[i]``.
        The output frame is centred on the super-particle's centroid.
    objective_ : float
        Mean log-likelihood per localization of the kept restart.
    objectives_ : ndarray, one entry per restart
        The same for every restart.
    n_iter_ : int
        EM iterations of the kept restart, all cycles together.
    n_dims_ : int
        2 or 3.
    axial_excess_ : float
        3D particles without an axial precision (no ``precision_z``): the
        variance (nm^2) that the optical axis adds to every localization,
        along its own particle's z (the common z with ``rotation="z"``), on
        top of the shared variance and the lateral precision's: the value of
        highest likelihood among 0 to 4 times the isotropic fit's variance
        per localization. 0.0 where isotropy fits best, or where the
        particles carry ``precision_z`` or are 2D.
    precision_spread_ : float
        Without a ``precision`` field: the log-standard deviation of the
        localizations' unknown precisions under which the poses were last
        refined (see ``precision_spread``); 0.0 where the particles carry
        precisions, where the likelihood prefers one variance for all, or
        with ``precision_spread=0``. The centres, ``sigma2_`` and
        ``objective_`` are those of the joint fit before that refinement.
    registration_score_ : ndarray of shape (n_particles,)
        Each particle's log-likelihood per localization under the fused
        model at its registered pose (nats; higher is a better fit). It
        also falls with a particle's own precision variance and with
        background localizations, so compare it across particles of one
        acquisition.
    flagged_ : ndarray of bool, shape (n_particles,)
        Particles whose registration score lies more than 3.5 robust
        standard deviations (1.4826 times the median absolute deviation)
        below the median: likely registered in a wrong basin, damaged, or
        not the structure. Also flagged, with a warning: particles whose
        localizations all lie at one point (or, in 3D, on one line), whose
        rotation nothing fixes. They stay in the super-particle; drop them
        with ``X[~fuser.flagged_]`` and refit if they should not.

    See Also
    --------
    fuse_bins : fuse each bin of a latent binning into its own super-particle, in one frame.
    frc_resolution : the FRC resolution of the super-particle, from two independently fused halves.

    References
    ----------
    .. [1] Wang, W., Heydarian, H., Huijben, T. A. P. M., Stallinga, S. and
       Rieger, B. "Joint registration of multiple point clouds for fast
       particle fusion in localization microscopy." Bioinformatics 38,
       3281-3287 (2022).
    .. [2] Evangelidis, G. D. and Horaud, R. "Joint alignment of multiple
       point sets with batch and incremental expectation-maximization."
       IEEE TPAMI 40, 1397-1410 (2018).
    .. [3] Alexa, M. "Super-Fibonacci spirals: fast, low-discrepancy sampling
       of SO(3)." CVPR (2022).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.fuse import ParticleFuser
    >>> rng = np.random.default_rng(0)
    >>> ring = 50 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
    >>> particles = []
    >>> for angle in rng.uniform(0, 2 * np.pi, 20):
    ...     c, s = np.cos(angle), np.sin(angle)
    ...     locs = np.repeat(ring, 10, axis=0) + rng.normal(0, 3, (80, 2))
    ...     particles.append(locs @ np.array([[c, -s], [s, c]]).T + rng.normal(0, 5, 2))
    >>> fuser = ParticleFuser(n_components=16, random_state=0).fit(particles)
    >>> fuser.rotations_.shape, fuser.translations_.shape
    ((20, 2, 2), (20, 2))
    >>> len(fuser.super_particle_[0])
    1600
    >>> bool(np.sqrt(fuser.sigma2_) < 6)
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "rotation": [StrOptions({"full", "z"})],
        "symmetry": [Interval(Integral, 2, None, closed="left"), None],
        "n_restarts": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "outlier_weight": [Interval(Real, 0, 1, closed="left")],
        "n_orientations": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "n_cycles": [Interval(Integral, 1, None, closed="left")],
        "n_basins": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "search_shifts": ["boolean"],
        "max_points": [Interval(Integral, 1, None, closed="left"), None],
        "use_precision": ["boolean"],
        "precision_spread": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=32,
        *,
        rotation="full",
        symmetry=None,
        n_restarts="auto",
        max_iter=50,
        tol=1e-4,
        outlier_weight=0.01,
        n_orientations="auto",
        n_cycles=3,
        n_basins="auto",
        search_shifts=True,
        max_points=2000,
        use_precision=True,
        precision_spread="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.rotation = rotation
        self.symmetry = symmetry
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.tol = tol
        self.outlier_weight = outlier_weight
        self.n_orientations = n_orientations
        self.n_cycles = n_cycles
        self.n_basins = n_basins
        self.search_shifts = search_shifts
        self.max_points = max_points
        self.use_precision = use_precision
        self.precision_spread = precision_spread
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ helpers
    def _mode(self, n_dims: int) -> str:
        if n_dims == 2:
            if self.rotation == "z":
                raise ValueError(
                    "rotation='z' (rotation about the optical axis only) is a 3D-only option, but the particles "
                    "are 2D (x, y). 2D particles always rotate in plane: use rotation='full', or check that the "
                    "z column was read."
                )
            return "2d"
        return "z" if self.rotation == "z" else "3d"

    def _candidates(self, mode: str, n_dims: int) -> np.ndarray:
        n = _AUTO_ORIENTATIONS[mode] if self.n_orientations == "auto" else int(self.n_orientations)
        if n == 0:
            return np.zeros((0, n_dims, n_dims))
        return orientation_grid(n, n_dims, "z" if mode == "z" else "full")

    def _restarts(self, mode: str) -> int:
        return _AUTO_RESTARTS[mode] if self.n_restarts == "auto" else int(self.n_restarts)

    def _shifts(self, mode: str) -> bool:
        return bool(self.search_shifts) and mode == "2d"

    def _basins(self, mode: str) -> int:
        return _POLISH_BASINS[mode] if self.n_basins == "auto" else int(self.n_basins)

    def _basin_rounds(self, mode: str) -> list[int]:
        n = self._basins(mode)
        return [k for k in ((n, n // 3) if _SECOND_ROUND[mode] else (n,)) if k]

    def _log(self, level, msg, *args):
        if self.verbose:
            logger.log(level, msg, *args)

    # ---------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Register all particles jointly and build the super-particle.

        Parameters
        ----------
        X : awkward array or list of (n_i, d) arrays
            At least 2 particles, 2D or 3D, coordinates in nm. Fields
            ``precision`` (and ``precision_z``) are used when present.
        y : None
            Ignored.

        Returns
        -------
        self : ParticleFuser
        """
        p = as_particles(X, min_particles=2)
        mode = self._mode(p.n_dims)
        if self.symmetry is not None and self.n_components % self.symmetry:
            near = self.symmetry * max(1, round(self.n_components / self.symmetry))
            raise ValueError(
                f"n_components={self.n_components} is not a multiple of symmetry={self.symmetry}: the centres come "
                f"in orbits of {self.symmetry}. Use n_components={near}, for example."
            )
        centroids = p.centroids()
        src = p.coords - np.repeat(centroids, p.lengths, axis=0)
        loc_var, own_var = _loc_variance(p, self.use_precision, mode)
        variances = _em_variances(loc_var, own_var, mode, p.offsets)
        with np.errstate(over="ignore"):
            radius = float(np.sqrt((src**2).sum(axis=1).mean()))
        if not np.isfinite(radius):
            raise ValueError(
                f"the particles' spread about their centroids overflows float64 (coordinates up to "
                f"{float(np.abs(p.coords).max()):.3g} nm); check the units (nm expected)."
            )
        if radius == 0.0:
            raise ValueError("every particle is a single point (or all localizations coincide); nothing to register.")
        undetermined = undetermined_rotations(p, src)
        if undetermined.any():
            which = ", ".join(p.name(i) for i in np.flatnonzero(undetermined)[:5])
            more = f" and {undetermined.sum() - 5} more" if undetermined.sum() > 5 else ""
            shape = "at one point" if p.n_dims == 2 else "at one point or on one line"
            warnings.warn(
                f"{which}{more}: all localizations lie {shape}, so no rotation can be fixed and the pose given is "
                "arbitrary. These particles are marked in flagged_; drop them with X[~fuser.flagged_] and refit.",
                UserWarning,
                stacklevel=2,
            )
        extent = float(np.sqrt((src**2).sum(axis=1).max()))
        mixture = _mixture_terms(self.outlier_weight, 2.0 * extent, p.n_dims)
        candidates = self._candidates(mode, p.n_dims)
        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=self._restarts(mode))
        # the registration is found on a random subset of every large particle, then refined on all
        full_src, full_var, full_variances = src, loc_var, variances
        src, loc_var, variances, offsets = _at_most(src, loc_var, variances, p.offsets, self.max_points,
                                                    np.random.default_rng([int(seeds[0]), 1]))
        settings = dict(
            mode=mode,
            n_components=self.n_components,
            radius=radius,
            mixture=mixture,
            candidates=candidates,
            max_iter=self.max_iter,
            tol=self.tol,
            n_cycles=self.n_cycles,
            verbose=self.verbose,
            variances=variances,
            shifts=self._shifts(mode),
        )
        if self.n_jobs in (None, 1) or len(seeds) == 1:
            states = [_one_restart(src, loc_var, offsets, int(s), r, **settings) for r, s in enumerate(seeds)]
        else:
            from joblib import Parallel, delayed

            states = Parallel(n_jobs=self.n_jobs)(
                delayed(_one_restart)(src, loc_var, offsets, int(s), r, **settings) for r, s in enumerate(seeds)
            )
        objectives = np.array([s.objective for s in states])
        best = states[int(np.argmax(objectives))]
        self._log(logging.INFO, "kept restart %d of %d (objective %.5f)", int(np.argmax(objectives)), len(states), best.objective)
        excess = 0.0
        unknown_precision = own_var is None and not loc_var.any()
        lateral_only = _lateral_only(p, self.use_precision)
        if mode != "2d" and (unknown_precision or lateral_only):
            # no axial precision: the axial spread is estimated from the data, never assumed equal to the lateral
            lateral, full_lateral = (loc_var[:, 0], full_var[:, 0]) if lateral_only else (None, None)
            excess, best = _estimate_axial_excess(src, offsets, best, mixture, mode=mode, max_iter=self.max_iter,
                                                  tol=self.tol, floor=1e-6 * radius**2, lateral=lateral)
            if excess > 0:
                loc_var, variances = _excess_variances(excess, len(src), offsets, mode, lateral)
                full_var, full_variances = _excess_variances(excess, p.n_localizations, p.offsets, mode,
                                                             full_lateral)
            self._log(logging.INFO, "axial excess variance estimated from the data: %.3g nm^2", excess)
        symmetry = None
        if self.symmetry is not None:
            # after the restarts, on the best one's template (see _symmetry.impose_symmetry)
            best, variances = impose_symmetry(
                src, offsets, best, mixture, variances, int(self.symmetry),
                axis=(0.0, 0.0, 1.0) if mode == "z" else None,
                rng=np.random.default_rng(rng.randint(np.iinfo(np.int32).max)), max_iter=self.max_iter,
                tol=self.tol, floor=1e-6 * radius**2, logger=lambda *args: self._log(logging.DEBUG, *args))
            symmetry = variances.symmetry
            full_variances = SymmetricTemplate(full_variances, symmetry)
            self._log(logging.INFO, "%d-fold symmetry imposed (objective %.5f)", self.symmetry, best.objective)
        for n_basins in self._basin_rounds(mode) if len(candidates) else ():
            best, moved = _polish(src, loc_var, offsets, best, mixture, candidates, radius,
                                  variances=variances, n_best=n_basins, mode=mode, max_iter=self.max_iter,
                                  shifts=self._shifts(mode),
                                  tol=self.tol, rng=np.random.default_rng(rng.randint(np.iinfo(np.int32).max)))
            self._log(logging.INFO, "tries of %d basins: %d particle(s) found a likelier transform (objective %.5f)",
                      n_basins, moved, best.objective)
        if offsets is not p.offsets:
            src, loc_var, variances = full_src, full_var, full_variances
            best = run_em(src, p.offsets, best, mixture, variances, max_iter=self.max_iter, tol=self.tol,
                          floor=1e-6 * radius**2)
            self._log(logging.INFO, "refined on every localization (objective %.5f)", best.objective)
        spread = 0.0
        if unknown_precision and self.precision_spread != 0:
            # the localizations' own precisions are unknown, their spread is not (see _scale)
            if self.precision_spread == "auto":
                spread, _ = choose_spread(src, p.offsets, best, mixture, variances,
                                          rng=np.random.default_rng([int(seeds[0]), 2]))
            else:
                spread = float(self.precision_spread)
            best = refine_poses(src, p.offsets, best, mixture, variances, spread, max_iter=self.max_iter,
                                tol=self.tol)
            self._log(logging.INFO, "poses refined under a precision spread of %.2g (log-SD)", spread)

        scores = particle_loglik(src, p.offsets, best, mixture, variances) / p.lengths
        # into the frame of the input coordinates, centred on the super-particle's centroid
        rotations, centres, common = best.rotations, best.centres, best.translations
        if mode == "3d":
            # the joint registration fixes the common frame only up to a global rotation: turn it so that the
            # particles' optical axes, on average, stay the super-particle's z (a height then means a height)
            # with an imposed symmetry: so that its axis is the super-particle's z
            align = (_optical_axis_alignment(rotations) if symmetry is None
                     else _turn_onto_z(symmetry.axis, rotations[:, :, 2]))
            rotations, centres, common = align @ rotations, centres @ align.T, common @ align.T
        translations = common - np.einsum("nab,nb->na", rotations, centroids)
        registered = apply_transforms(p.coords, rotations, translations, p.lengths)
        shift = registered.mean(axis=0)
        self.rotations_ = rotations
        self.translations_ = translations - shift
        self.centres_ = centres - shift
        self.sigma2_ = float(best.sigma2)
        self.objective_ = float(best.objective)
        self.objectives_ = objectives
        self.n_iter_ = int(best.n_iter)
        self.n_dims_ = p.n_dims
        self.axial_excess_ = float(excess)
        self.precision_spread_ = float(spread)
        self.registration_score_ = scores
        self.flagged_ = flag_low_scores(scores) | undetermined
        self._mode_ = mode
        self._mixture_ = mixture
        self._radius_ = radius
        fields = dict(p.fields)
        if "particle" not in fields:
            fields["particle"] = p.particle_index().astype(np.int64)
        fused = Particles(coords=registered - shift, offsets=np.array([0, p.n_localizations]), fields=fields)
        self.super_particle_ = fused.to_awkward()
        return self

    # ---------------------------------------------------------- transform
    def register(self, X):
        """Rigid transforms that register (new) particles onto the fitted centres.

        The centres and variance stay fixed; every particle gets a global
        orientation search and EM on its own transform (under full 3D
        rotations, from its best starts in distinct basins, as in ``fit``).

        Parameters
        ----------
        X : awkward array or list of (n_i, d) arrays

        Returns
        -------
        rotations : ndarray of shape (n_particles, d, d)
        translations : ndarray of shape (n_particles, d)
            Registered particle ``i`` is ``X_i @ rotations[i].T + translations[i]``.
        """
        check_is_fitted(self, "centres_")
        p = as_particles(X, n_dims=self.n_dims_)
        return self._register(p)

    def _register(self, p: Particles):
        mode = self._mode_
        centroids = p.centroids()
        src = p.coords - np.repeat(centroids, p.lengths, axis=0)
        loc_var, own_var = _loc_variance(p, self.use_precision, mode)
        variances = _em_variances(loc_var, own_var, mode, p.offsets)
        unknown_precision = own_var is None and not loc_var.any()
        lateral_only = _lateral_only(p, self.use_precision)
        if self.axial_excess_ > 0 and (unknown_precision or lateral_only):
            loc_var, variances = _excess_variances(self.axial_excess_, p.n_localizations, p.offsets, mode,
                                                   loc_var[:, 0] if lateral_only else None)
        n, d = p.n_particles, p.n_dims
        state = EMState(
            rotations=np.broadcast_to(np.eye(d), (n, d, d)).copy(),
            translations=np.zeros((n, d)),
            centres=self.centres_,
            sigma2=self.sigma2_,
        )
        candidates = self._candidates(mode, d)
        # as in fit: found on at most max_points localizations per particle, refined on all
        full_src, full_variances = src, variances
        src, loc_var, variances, offsets = _at_most(src, loc_var, variances, p.offsets, self.max_points,
                                                    np.random.default_rng(2))
        # the new particles' orientations are arbitrary: a global orientation search first, then EM
        if len(candidates):
            rows, sub_offsets = _search_rows(offsets, mode, np.random.default_rng(0))
            state = _search(src, loc_var, rows, sub_offsets, state, self._mixture_, candidates, self._radius_,
                            self._shifts(mode))
        fixed = {"max_iter": self.max_iter, "tol": self.tol, "floor": 0.0, "fit_centres": False}
        state = run_em(src, offsets, state, self._mixture_, variances, **fixed)
        if self._basins(mode) and len(candidates):
            state, _ = _polish(src, loc_var, offsets, state, self._mixture_, candidates, self._radius_,
                               shifts=self._shifts(mode),
                               variances=variances, n_best=self._basins(mode), mode=mode, max_iter=self.max_iter,
                               tol=self.tol, rng=np.random.default_rng(1), refit_centres=False, floor=0.0)
        if offsets is not p.offsets:
            state = run_em(full_src, p.offsets, state, self._mixture_, full_variances, **fixed)
        if unknown_precision:
            state = refine_poses(full_src, p.offsets, state, self._mixture_, full_variances, self.precision_spread_,
                                 max_iter=self.max_iter, tol=self.tol)
        rotations = state.rotations
        translations = state.translations - np.einsum("nab,nb->na", rotations, centroids)
        return rotations, translations

    def transform(self, X):
        """Register (new) particles onto the fitted super-particle.

        Parameters
        ----------
        X : awkward array or list of (n_i, d) arrays

        Returns
        -------
        awkward.Array
            ``n * var * {x, y[, z], <fields>}``: the registered particles in
            the fitted frame, every other field carried along unchanged. A
            3D particle's ``precision`` and ``precision_z`` stay those of
            its original x-y and z: where more than a tenth of the particles
            turn more than 20 degrees out of the plane, a ``UserWarning``
            says so.
        """
        check_is_fitted(self, "centres_")
        p = as_particles(X, n_dims=self.n_dims_)
        return _registered(p, *self._register(p))

    def fit_transform(self, X, y=None):
        """Fit, then return the fitted particles registered (not re-registered).

        Parameters
        ----------
        X : awkward array or list of (n_i, d) arrays
        y : None
            Ignored.

        Returns
        -------
        awkward.Array
            ``n * var * {x, y[, z], <fields>}``, registered with
            ``rotations_`` and ``translations_``; fields as in
            :meth:`transform`.
        """
        p = as_particles(X)  # converted once: its warnings are said once
        self.fit(p)
        return _registered(p, self.rotations_, self.translations_)

    def set_output(self, *, transform=None):
        """Accept a Pipeline's output setting (checked, and changing nothing): the registered particles are ragged
        and stay awkward arrays, while table steps after the fuser (``RadiusEstimator``) follow the setting."""
        if transform not in (None, "default", "pandas", "polars"):
            raise ValueError(f"transform must be 'default', 'pandas', 'polars' or None; got {transform!r}.")
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags
