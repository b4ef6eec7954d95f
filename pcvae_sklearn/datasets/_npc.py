"""Simulated nuclear pore complexes (NPCs), 2D top views and 3D pores."""

from __future__ import annotations

import numpy as np

from ._common import check_axial_precision, check_imaging, check_int, check_random_state, check_real
from ._common import check_rotation_3d, check_tilt, observe, per_particle

__all__ = ["make_npc_2d", "make_npc_3d"]

#: symmetry of the nuclear pore
N_CORNERS = 8
#: arc length (nm) over which the copies of one corner are spread: the two
#: Y-complexes of a spoke put their copies of Nup96 / Nup107 about 12 nm apart
CORNER_ARC = 12.0


def _ring(radius: np.ndarray, sites_per_corner: int, phase=None) -> np.ndarray:
    """Sites on a circle: (n, 8 * sites_per_corner, 2), corner-major.

    Corner ``c`` is at angle ``2 pi c / 8 + phase`` (``phase``: None or one
    angle per particle, rad); its copies sit on the circle of the particle's
    radius at arc offsets evenly spread over ``CORNER_ARC`` nm (one copy: at
    the corner itself). Every site is thus exactly at distance ``radius``
    from the centre.
    """
    corners = 2.0 * np.pi * np.arange(N_CORNERS) / N_CORNERS
    if sites_per_corner == 1:
        arcs = np.zeros(1)
    else:
        arcs = np.linspace(-CORNER_ARC / 2, CORNER_ARC / 2, sites_per_corner)
    corners = corners[None, :, None] if phase is None else corners[None, :, None] + phase[:, None, None]
    # angle of every site, per particle: (n, 8, m)
    theta = corners + arcs[None, None, :] / radius[:, None, None]
    theta = theta.reshape(len(radius), -1)
    return np.stack([radius[:, None] * np.cos(theta), radius[:, None] * np.sin(theta)], axis=-1)


def _check_npc(n_particles, sites_per_corner, mean_blinks, *imaging):
    """``(n, sites_per_corner, imaging)``: the keywords both pore simulators share, validated.

    ``imaging`` are the arguments of :func:`check_imaging`; the dict returned
    adds ``mean_per_dye`` (``mean_blinks``) to its keywords of :func:`observe`.
    """
    n = check_int(n_particles, "n_particles", minimum=1)
    sites_per_corner = check_int(sites_per_corner, "sites_per_corner", minimum=1)
    mean_blinks = check_real(mean_blinks, "mean_blinks", low=1.0)
    return n, sites_per_corner, {**check_imaging(*imaging), "mean_per_dye": mean_blinks}


def make_npc_2d(
    n_particles=1000,
    *,
    radius=(40.0, 60.0),
    dol=0.6, sites_per_corner=4, mean_blinks=7.5, blinking="geometric", linkage_error=0.0,
    precision=6.0, precision_spread=0.3, precision_field=True,
    background=6.0, outlier_rate=0.0, outlier_count=(1, 3), outlier_distance=(150.0, 300.0),
    picking_offset=5.0, pick_radius=100.0, rotation=True,
    random_state=None,
):
    r"""Simulate top views of nuclear pores (2D SMLM), with ground truth.

    The model is the Nup96 layout of Thevathasan et al. (2019), seen from
    above: 8 corners on a ring, each carrying ``sites_per_corner`` copies of
    the protein (Nup96: 2 in the cytoplasmic and 2 in the nuclear ring, which
    project onto the same corner). The copies of a corner are spread evenly
    along a 12 nm arc of the ring (the two Y-complexes of a spoke hold their
    Nup96 copies about 12 nm apart), so every site lies exactly at the
    particle's radius from its centre. The radius varies from particle to
    particle, which is the continuous structural heterogeneity to recover.

    The image formation, per particle:

    1. **Labelling.** Each site carries a fluorophore with probability
       ``dol`` (degree of labelling), independently. With ``linkage_error``
       the fluorophore sits at an isotropic Gaussian offset (standard
       deviation ``linkage_error`` nm per axis) from its site, one offset per
       fluorophore, shared by all its localizations (the size of antibodies
       or tags).
    2. **Blinking.** With ``blinking="geometric"`` a fluorophore gives a
       geometric number of localizations (support 1, 2, ...; mean
       ``mean_blinks``), the distribution of the number of switching cycles
       of a dSTORM dye that bleaches with a constant probability per cycle.
       ``"poisson"`` gives a Poisson number of mean ``mean_blinks`` (0
       possible), as the binding events of DNA-PAINT: its counts scatter
       less (variance ``mean_blinks`` against
       ``mean_blinks * (mean_blinks - 1)``).
    3. **Background.** A Poisson number (mean ``background``) of spurious
       localizations, uniform in the pick disc of radius ``pick_radius``
       around the pick centre. With ``outlier_rate > 0``, a particle has,
       with that probability, a few far outliers (``outlier_count``) at a
       uniform distance in ``outlier_distance`` from its true centre, in a
       uniform direction.
    4. **Precision.** Every localization has its own precision ``sigma``,
       lognormal with median ``precision`` nm and log-standard deviation
       ``precision_spread`` (photon counts are near lognormal and
       ``sigma ~ 1 / sqrt(photons)``); its coordinates are Gaussian around
       the true position with standard deviation ``sigma`` per axis. With
       ``precision_field=False`` the output has no ``precision`` field (as
       files without it), the error is applied all the same.
    5. **Pose.** The ring is rotated by a uniform angle in [0, 2 pi) (when
       ``rotation``) and its centre is shifted from the pick centre by a
       Gaussian picking offset of ``picking_offset`` nm per axis.

    The expected number of localizations per particle is
    ``8 * sites_per_corner * dol * mean_blinks + background`` (plus the
    outliers): 150 with the defaults (32 x 0.6 x 7.5 + 6). A particle that
    would have no localization at all (no fluorophore, no background and no
    outlier, probability ``(1 - dol) ** 32`` with the defaults) has its
    labelling, blinking and background redrawn until it has one: no empty
    particle is ever returned.

    A nuisance that is off (``linkage_error=0``, ``outlier_rate=0``) draws
    nothing from the generator: with the defaults the output for a given
    ``random_state`` is that of the simulator before these keywords existed.

    Parameters
    ----------
    n_particles : int, default=1000
        Number of particles.
    radius : number, tuple (low, high), array-like, dict or scipy.stats distribution, default=(40.0, 60.0)
        Ring radius in nm, drawn per particle from:

        - a number: every particle gets it (a homogeneous dataset);
        - a tuple ``(low, high)``: uniform in [low, high];
        - an array-like of shape (n_particles,): each particle's radius
          (mixtures);
        - ``{"kind": "uniform", "low": a, "high": b}`` (as the tuple),
          ``{"kind": "normal", "mean": m, "std": s}`` or
          ``{"kind": "two_state", "values": (a, b), "p": p}`` (``b`` with
          probability ``p``, default 0.5, else ``a``);
        - a frozen scipy.stats distribution such as
          ``scipy.stats.norm(50, 5)`` (drawn with ``random_state``).

        Every radius must be > 0: a draw that is not raises a ValueError
        naming the particle.
    dol : float in (0, 1], default=0.6
        Degree of labelling: probability that a site carries a fluorophore.
    sites_per_corner : int, default=4
        Copies of the protein at each of the 8 corners (4 for Nup96).
    mean_blinks : float >= 1, default=7.5
        Mean number of localizations per fluorophore.
    blinking : {"geometric", "poisson"}, default="geometric"
        Distribution of the number of localizations per fluorophore:
        geometric (dSTORM) or Poisson (DNA-PAINT).
    linkage_error : float, default=0.0
        Standard deviation (nm, per axis) of the offset of a fluorophore from
        its site; 0 puts it on the site.
    precision : float, default=6.0
        Median localization precision (standard deviation per axis) in nm.
    precision_spread : float, default=0.3
        Standard deviation of ``log(precision)``; 0 gives every localization
        the same precision.
    precision_field : bool, default=True
        Return the ``precision`` field; False leaves it out (the error is
        still applied).
    background : float, default=6.0
        Mean number of background localizations per particle.
    outlier_rate : float in [0, 1], default=0.0
        Probability that a particle has far outliers.
    outlier_count : int or tuple (low, high) of int, default=(1, 3)
        Number of far outliers of such a particle, uniform in [low, high].
    outlier_distance : float or tuple (low, high), default=(150.0, 300.0)
        Distance (nm) of a far outlier from the true centre, uniform in
        [low, high], before its localization error.
    picking_offset : float, default=5.0
        Standard deviation (nm, per axis) of the offset between the pick
        centre and the true centre of the ring.
    pick_radius : float, default=100.0
        Radius (nm) of the picking disc in which background falls.
    rotation : bool, default=True
        Rotate every particle by a uniform random angle about its centre.
        ``"z"`` (about the optical axis) means True and ``None`` False, as for
        the 3D simulators.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator; the same seed gives the same dataset.

    Returns
    -------
    particles : awkward.Array
        ``n_particles * var * {x, y, precision, site}``. ``x``, ``y``
        (float64, nm) relative to the pick centre; ``precision`` (float64,
        nm) the sigma used for that localization (absent with
        ``precision_field=False``); ``site`` (int32) the index of the true
        site it came from (corner ``site // sites_per_corner``), -1 for
        background, -2 for a far outlier.
    truth : numpy structured array of shape (n_particles,)
        One row per particle, fields:

        - ``radius`` (float64): ring radius, nm;
        - ``angle`` (float64): in-plane rotation, rad, in [0, 2 pi) (0
          without rotation);
        - ``rotation`` (float64, (2, 2)): the rotation matrix ``R``;
        - ``offset`` (float64, (2,)): true centre relative to the pick centre,
          nm, so that ``observed = model @ R.T + offset``;
        - ``n_localizations`` (int64): localizations of the particle,
          background and outliers included;
        - ``n_fluorophores`` (int64): labelled sites;
        - ``n_background`` (int64): background localizations;
        - ``n_outliers`` (int64): far outliers;
        - ``mean_precision`` (float64): mean precision of its localizations,
          nm (also without the precision field);
        - ``sites`` (float64, (8 * sites_per_corner, 2)): true site positions
          in the observed frame (after rotation and offset), nm;
        - ``linkage`` (float64, (8 * sites_per_corner, 2)): offset of each
          site's fluorophore from the site, nm (zeros without linkage error):
          its localizations scatter around ``sites + linkage``;
        - ``labelled`` (bool, (8 * sites_per_corner,)): which sites carry a
          fluorophore.

        ``pandas.DataFrame(truth)`` does not accept the sub-array fields;
        select the scalar ones, e.g.
        ``pandas.DataFrame(truth[["radius", "angle", "n_localizations"]])``.

    See Also
    --------
    make_npc_3d : both rings of the pore in 3D.
    make_tetrahedron : a 3D DNA-origami tetrahedron of varying height.
    make_scenario : named simulations with real data's nuisances.

    References
    ----------
    .. [1] Thevathasan, J. V. et al. "Nuclear pores as versatile reference
       standards for quantitative superresolution microscopy." Nat. Methods
       16, 1045-1053 (2019).
    .. [2] Haghparast, S., Zhang, Y. et al. "Point cloud variational
       auto-encoder for continuous structural heterogeneity in single
       molecule localization microscopy." Sci. Rep. (2025).

    Examples
    --------
    >>> from pcvae_sklearn.datasets import make_npc_2d
    >>> particles, truth = make_npc_2d(200, random_state=0)
    >>> len(particles), particles.fields
    (200, ['x', 'y', 'precision', 'site'])
    >>> truth["sites"].shape
    (200, 32, 2)
    >>> bool(((truth["radius"] >= 40) & (truth["radius"] <= 60)).all())
    True
    >>> bool(120 < truth["n_localizations"].mean() < 180)
    True

    Two populations of pores, DNA-PAINT counts and no precision field:

    >>> particles, truth = make_npc_2d(
    ...     200, radius={"kind": "two_state", "values": (45.0, 60.0)}, blinking="poisson",
    ...     precision_field=False, random_state=0)
    >>> sorted(set(truth["radius"].tolist())), particles.fields
    ([45.0, 60.0], ['x', 'y', 'site'])
    """
    n, sites_per_corner, imaging = _check_npc(
        n_particles, sites_per_corner, mean_blinks, dol, blinking, linkage_error, precision, precision_spread,
        precision_field, background, (outlier_rate, outlier_count, outlier_distance), picking_offset, pick_radius,
    )
    if isinstance(rotation, str) and rotation == "z":
        rotation = True  # about the optical axis: the only rotation a 2D particle has
    elif rotation is None:
        rotation = False
    elif not isinstance(rotation, (bool, np.bool_)):
        raise ValueError(
            f"rotation must be True, False (or 'z', None) for 2D particles, got {rotation!r}; "
            "a full 3D rotation needs make_npc_3d."
        )
    rng = check_random_state(random_state)

    radius = per_particle(radius, "radius", n, rng)
    return observe(
        _ring(radius, sites_per_corner), {"radius": radius}, rotation=bool(rotation), tilt=0.0, z_ratio=1.0, rng=rng, **imaging
    )


def make_npc_3d(
    n_particles=1000,
    *,
    radius=(45.0, 60.0), height=(40.0, 70.0), ring_twist=0.0,
    dol=0.6, sites_per_corner=2, mean_blinks=7.5, blinking="geometric", linkage_error=0.0,
    precision=6.0, precision_spread=0.3, z_ratio=None, precision_z=None, precision_field=True,
    background=6.0, outlier_rate=0.0, outlier_count=(1, 3), outlier_distance=(150.0, 300.0),
    picking_offset=5.0, pick_radius=100.0, rotation="z", tilt=0.0,
    random_state=None,
):
    r"""Simulate 3D nuclear pores (two 8-fold rings), with ground truth.

    The model is a Nup107-like pore: two 8-fold rings, the cytoplasmic and
    the nuclear one, at ``z = -height / 2`` and ``z = +height / 2`` (which of
    the two faces the coverslip depends on the side of the nucleus imaged).
    Each corner of each ring carries ``sites_per_corner`` copies (2 for
    Nup107, one per Y-complex of the spoke), spread along a 12 nm arc of the
    ring: 32 sites in all with the defaults, all at distance ``radius`` from
    the pore axis. The rings are in register, or turned against each other
    by ``ring_twist`` degrees (the ring at ``-height / 2`` by
    ``-ring_twist / 2``, the other by ``+ring_twist / 2``; in real Nup107
    pores the two rings are offset by a few degrees). Both the radius and the
    ring distance ``height`` vary from particle to particle.

    The image formation is that of :func:`make_npc_2d` (labelling with
    probability ``dol`` and an optional linkage error, geometric or Poisson
    counts of mean ``mean_blinks``, Poisson background, optional far
    outliers, lognormal lateral precision), in 3D: the axial precision of
    every localization is ``z_ratio`` times its lateral one, as for
    astigmatic 3D imaging (give ``precision_z`` instead to set the median
    axial precision in nm), and background falls uniformly in a cylinder of
    radius ``pick_radius`` and height ``2 * pick_radius`` around the pick
    centre. The pore's axis is tilted away from z by an angle uniform in
    [0, ``tilt``] degrees, towards a uniform azimuth; then the pore is
    rotated about the optical axis (``rotation="z"``), uniformly in 3D
    (``"3d"``, for registration tests; no tilt then) or not at all
    (``None``), and shifted by a Gaussian picking offset (x, y and z).

    The expected number of localizations per particle is
    ``16 * sites_per_corner * dol * mean_blinks + background`` (plus the
    outliers): 150 with the defaults. Particles without any localization are
    redrawn (labelling, blinking, background) until they have one. A
    nuisance that is off draws nothing from the generator: with the defaults
    the output for a given ``random_state`` is that of the simulator before
    these keywords existed.

    Parameters
    ----------
    n_particles : int, default=1000
        Number of particles.
    radius : number, tuple (low, high), array-like, dict or scipy.stats distribution, default=(45.0, 60.0)
        Ring radius in nm, drawn per particle as in :func:`make_npc_2d`:
        fixed for a number, uniform for a tuple, per particle for an array,
        ``{"kind": "normal", "mean": m, "std": s}``,
        ``{"kind": "two_state", "values": (a, b), "p": p}`` or a frozen
        scipy.stats distribution.
    height : same forms as ``radius``, default=(40.0, 70.0)
        Distance between the two rings along the pore axis, in nm, drawn the
        same way (independently of the radius).
    ring_twist : same forms as ``radius``, default=0.0
        Azimuthal offset between the two rings, in degrees; any finite value
        (0 and negative ones too).
    dol : float in (0, 1], default=0.6
        Degree of labelling.
    sites_per_corner : int, default=2
        Copies of the protein at each corner of each ring.
    mean_blinks : float >= 1, default=7.5
        Mean number of localizations per fluorophore.
    blinking : {"geometric", "poisson"}, default="geometric"
        Distribution of the number of localizations per fluorophore.
    linkage_error : float, default=0.0
        Standard deviation (nm, per axis) of a fluorophore's offset from its
        site.
    precision : float, default=6.0
        Median lateral localization precision, nm.
    precision_spread : float, default=0.3
        Standard deviation of ``log(precision)``.
    z_ratio : float or None, default=None
        Axial over lateral precision, ``precision_z = z_ratio * precision``
        per localization; None means 2.5, or ``precision_z / precision``
        when ``precision_z`` is given.
    precision_z : float or None, default=None
        Median axial precision, nm (e.g. 20 with ``precision=8``); give it or
        ``z_ratio``, not both.
    precision_field : bool, default=True
        Return the ``precision`` and ``precision_z`` fields; False leaves
        them out (the error is still applied).
    background : float, default=6.0
        Mean number of background localizations per particle.
    outlier_rate : float in [0, 1], default=0.0
        Probability that a particle has far outliers (about a third of real
        3D pores have a localization more than 150 nm from the centre).
    outlier_count : int or tuple (low, high) of int, default=(1, 3)
        Number of far outliers of such a particle, uniform in [low, high].
    outlier_distance : float or tuple (low, high), default=(150.0, 300.0)
        Distance (nm) of a far outlier from the true centre, uniform in
        [low, high], in a uniform direction in 3D.
    picking_offset : float, default=5.0
        Standard deviation (nm, per axis) of the offset of the true centre
        from the pick centre.
    pick_radius : float, default=100.0
        Radius and half-height (nm) of the cylinder in which background falls.
    rotation : {None, "z", "3d"}, default="z"
        No rotation, a uniform rotation about the optical axis, or a uniform
        random 3D rotation.
    tilt : float in [0, 90], default=0.0
        Largest tilt (degrees) of the pore's axis away from z (0-20 is
        typical of pores in a flat nuclear envelope); not with
        ``rotation="3d"``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator.

    Returns
    -------
    particles : awkward.Array
        ``n_particles * var * {x, y, z, precision, precision_z, site}``
        (coordinates and precisions float64 in nm, the precisions absent
        with ``precision_field=False``; ``site`` int32, -1 for background,
        -2 for a far outlier). Site ``k`` is in ring
        ``k // (8 * sites_per_corner)`` (0: ``z = -height / 2`` in the model
        frame), corner ``(k // sites_per_corner) % 8``.
    truth : numpy structured array of shape (n_particles,)
        Fields ``radius``, ``height`` (nm) and ``ring_twist`` (degrees), then
        as in :func:`make_npc_2d` in 3D: ``angle`` (rad; NaN for
        ``rotation="3d"``, 0 for None), ``tilt`` (degrees: the angle between
        the pore axis ``rotation[:, :, 2]`` and z; 0 without tilt),
        ``rotation`` (3, 3) (tilt included: ``R = R_z(angle) @ R_tilt``),
        ``offset`` (3,), ``n_localizations``, ``n_fluorophores``,
        ``n_background``, ``n_outliers``, ``mean_precision`` (lateral),
        ``sites`` (16 * sites_per_corner, 3) in the observed frame,
        ``linkage`` (16 * sites_per_corner, 3) and ``labelled``
        (16 * sites_per_corner,).

    See Also
    --------
    make_npc_2d : the 2D top view.
    make_tetrahedron : a 3D DNA-origami tetrahedron.
    make_scenario : 3D pores, among other named simulations with the
        nuisances of real data.

    References
    ----------
    .. [1] Thevathasan, J. V. et al. "Nuclear pores as versatile reference
       standards for quantitative superresolution microscopy." Nat. Methods
       16, 1045-1053 (2019).
    .. [2] Heydarian, H. et al. "3D particle averaging and detection of
       macromolecular symmetry in localization microscopy." Nat. Commun. 12,
       2847 (2021).
    .. [3] Wang, W. et al. "Joint registration of multiple point clouds for
       fast particle fusion in localization microscopy." Bioinformatics 38,
       3281-3287 (2022).

    Examples
    --------
    >>> from pcvae_sklearn.datasets import make_npc_3d
    >>> particles, truth = make_npc_3d(100, rotation="3d", random_state=0)
    >>> particles.fields
    ['x', 'y', 'z', 'precision', 'precision_z', 'site']
    >>> truth["sites"].shape, truth["rotation"].shape
    ((100, 32, 3), (100, 3, 3))
    >>> import numpy as np
    >>> bool(np.allclose(truth["rotation"] @ truth["rotation"].transpose(0, 2, 1), np.eye(3)))
    True

    Tilted, twisted pores imaged at 8 nm lateral and 20 nm axial precision,
    without precision fields:

    >>> particles, truth = make_npc_3d(
    ...     100, tilt=15.0, ring_twist=7.5, precision=8.0, precision_z=20.0,
    ...     precision_field=False, random_state=0)
    >>> particles.fields
    ['x', 'y', 'z', 'site']
    >>> bool((truth["tilt"] <= 15.0).all()), float(truth["ring_twist"][0])
    (True, 7.5)
    """
    n, sites_per_corner, imaging = _check_npc(
        n_particles, sites_per_corner, mean_blinks, dol, blinking, linkage_error, precision, precision_spread,
        precision_field, background, (outlier_rate, outlier_count, outlier_distance), picking_offset, pick_radius,
    )
    z_ratio = check_axial_precision(imaging["precision"], z_ratio, precision_z)
    rotation = check_rotation_3d(rotation)
    tilt = check_tilt(tilt, rotation)
    rng = check_random_state(random_state)

    radius = per_particle(radius, "radius", n, rng)
    height = per_particle(height, "height", n, rng)
    twist = per_particle(ring_twist, "ring_twist", n, rng, positive=False)
    if np.any(twist != 0):
        half = np.deg2rad(twist) / 2
        lower, upper = _ring(radius, sites_per_corner, -half), _ring(radius, sites_per_corner, half)
    else:
        lower = upper = _ring(radius, sites_per_corner)  # (n, 8 m, 2)
    per_ring = lower.shape[1]
    model = np.empty((n, 2 * per_ring, 3))
    model[:, :per_ring, :2] = lower
    model[:, per_ring:, :2] = upper
    model[:, :per_ring, 2] = -height[:, None] / 2
    model[:, per_ring:, 2] = height[:, None] / 2
    truth = {"radius": radius, "height": height, "ring_twist": twist}
    return observe(model, truth, rotation=rotation, tilt=tilt, z_ratio=z_ratio, rng=rng, **imaging)
