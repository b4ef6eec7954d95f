"""Simulated DNA-origami tetrahedra (3D DNA-PAINT)."""

from __future__ import annotations

import numpy as np

from ._common import check_axial_precision, check_imaging, check_int, check_random_state
from ._common import check_rotation_3d, check_tilt, observe, per_particle

__all__ = ["make_tetrahedron"]

N_SITES = 4


def tetrahedron_sites(height: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Model-frame sites (n, 4, 3): 3 base corners, then the apex.

    The base is an equilateral triangle of side ``edge`` in a plane of
    constant z, its first corner on the +y axis; the apex is ``height``
    above the base centroid. The frame is centred on the centroid of the four
    sites: the base lies at ``z = -height / 4``, the apex at
    ``z = 3 height / 4``.
    """
    n = len(height)
    circumradius = edge / np.sqrt(3.0)
    phi = np.pi / 2 + 2.0 * np.pi * np.arange(3) / 3
    out = np.zeros((n, N_SITES, 3))
    out[:, :3, 0] = circumradius[:, None] * np.cos(phi)
    out[:, :3, 1] = circumradius[:, None] * np.sin(phi)
    out[:, :3, 2] = -height[:, None] / 4
    out[:, 3, 2] = 3 * height / 4
    return out


def make_tetrahedron(
    n_particles=1000,
    *,
    height=(40.0, 100.0), edge=100.0,
    n_localizations=5000, blinking="poisson", dol=1.0, linkage_error=0.0,
    precision=4.0, precision_spread=0.3, z_ratio=None, precision_z=None, precision_field=True,
    background=50.0, outlier_rate=0.0, outlier_count=(1, 3), outlier_distance=(150.0, 300.0),
    picking_offset=5.0, pick_radius=100.0, rotation="z", tilt=0.0,
    random_state=None,
):
    r"""Simulate 3D DNA-origami tetrahedra of varying height (DNA-PAINT).

    The structure is the DNA-origami tetrahedron imaged by Heydarian et al.
    (2021) and Huijben et al. (2021): four DNA-PAINT docking sites, three on
    the base, an equilateral triangle of side ``edge`` nm, and one apex
    ``height`` nm above the base centroid. The origami is flexible, so its
    height varies from particle to particle (Huijben et al. first reported
    three classes of about 45, 65 and 95 nm; pass ``height`` as an array to
    simulate such a mixture). The model frame is centred on the centroid of
    the four sites (base at ``z = -height / 4``, apex at ``3 height / 4``),
    so that rotations turn the structure about its own centre.

    The image formation:

    1. **Labelling.** Each docking site is present with probability ``dol``.
       With ``linkage_error`` the imager sits at an isotropic Gaussian offset
       (standard deviation ``linkage_error`` nm per axis) from its site, one
       offset per site, shared by all its localizations.
    2. **Binding events.** In DNA-PAINT an imager strand binds a docking
       site over and over; the number of localizations of a site is Poisson
       with mean ``(n_localizations - background) / 4``
       (``blinking="poisson"``), or geometric with that mean for a
       dSTORM-like dye (``"geometric"``).
    3. **Background.** A Poisson number (mean ``background``) of
       localizations from unspecific binding, uniform in a cylinder of radius
       ``pick_radius`` and height ``2 * pick_radius`` around the pick centre.
       With ``outlier_rate > 0``, a particle has, with that probability, a
       few far outliers (``outlier_count``) at a uniform distance in
       ``outlier_distance`` from its true centre, in a uniform direction.
    4. **Precision.** Lateral precision per localization lognormal with
       median ``precision`` nm and log-standard deviation
       ``precision_spread``; axial precision ``z_ratio`` times the lateral
       one (astigmatic 3D imaging; or give the median axial precision
       ``precision_z`` in nm); Gaussian localization error. With
       ``precision_field=False`` the precisions are not returned.
    5. **Pose.** A tilt of the origami's axis away from z by an angle uniform
       in [0, ``tilt``] degrees towards a uniform azimuth, then a rotation
       about the optical axis (``rotation="z"``: the origami lies on its base
       on the coverslip), a uniform random 3D rotation (``"3d"``, no tilt
       then) or none, then a Gaussian picking offset of ``picking_offset`` nm
       per axis.

    A fully labelled particle thus has ``n_localizations`` localizations on
    average, background included (outliers come on top); with ``dol < 1``
    the expectation is ``dol * (n_localizations - background) + background``.
    A particle with no localization at all is redrawn (labelling, binding,
    background) until it has one. A nuisance that is off draws nothing from
    the generator: with the defaults the output for a given ``random_state``
    is that of the simulator before these keywords existed.

    Parameters
    ----------
    n_particles : int, default=1000
        Number of particles.
    height : number, tuple (low, high), array-like, dict or scipy.stats distribution, default=(40.0, 100.0)
        Height of the apex above the base, nm: fixed for a number, uniform
        in [low, high] for a tuple, per particle for an array (e.g.
        ``np.repeat([45.0, 65.0, 95.0], 150)`` for three classes),
        ``{"kind": "normal", "mean": m, "std": s}``,
        ``{"kind": "two_state", "values": (a, b), "p": p}`` (``b`` with
        probability ``p``) or a frozen scipy.stats distribution, as for the
        radius of :func:`make_npc_2d`.
    edge : same forms as ``height``, default=100.0
        Side of the base triangle, nm.
    n_localizations : int, default=5000
        Expected localizations of a fully labelled particle, background
        included. Must exceed ``background``.
    blinking : {"poisson", "geometric"}, default="poisson"
        Distribution of the number of localizations per docking site.
    dol : float in (0, 1], default=1.0
        Probability that a docking site is present.
    linkage_error : float, default=0.0
        Standard deviation (nm, per axis) of the offset of a site's imager
        from the site.
    precision : float, default=4.0
        Median lateral localization precision, nm.
    precision_spread : float, default=0.3
        Standard deviation of ``log(precision)``.
    z_ratio : float or None, default=None
        Axial over lateral precision; None means 2.5, or
        ``precision_z / precision`` when ``precision_z`` is given.
    precision_z : float or None, default=None
        Median axial precision, nm; give it or ``z_ratio``, not both.
    precision_field : bool, default=True
        Return the ``precision`` and ``precision_z`` fields.
    background : float, default=50.0
        Mean number of background localizations per particle.
    outlier_rate : float in [0, 1], default=0.0
        Probability that a particle has far outliers.
    outlier_count : int or tuple (low, high) of int, default=(1, 3)
        How many far outliers such a particle has: uniform in [low, high].
    outlier_distance : float or tuple (low, high), default=(150.0, 300.0)
        Their distance (nm) from the true centre: uniform in [low, high].
    picking_offset : float, default=5.0
        Per-axis standard deviation (nm) of the true centre's offset from the
        pick centre.
    pick_radius : float, default=100.0
        The background cylinder's radius and half-height, nm.
    rotation : {None, "z", "3d"}, default="z"
        None, ``"z"`` (uniform about the optical axis) or ``"3d"`` (uniform
        random 3D rotation).
    tilt : float in [0, 90], default=0.0
        Largest tilt (degrees) of the origami's axis away from z; not with
        ``rotation="3d"``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator; the same seed gives the same dataset.

    Returns
    -------
    particles : awkward.Array
        ``n_particles * var * {x, y, z, precision, precision_z, site}``:
        coordinates and precisions (the latter absent with
        ``precision_field=False``) float64 in nm, and ``site`` int32, 0-2 the
        base corners, 3 the apex, -1 background, -2 a far outlier.
    truth : numpy structured array of shape (n_particles,)
        Fields ``height`` and ``edge`` (nm), ``angle`` (rad; NaN for
        ``rotation="3d"``, 0 for None), ``tilt`` (degrees, the angle between
        the axis ``rotation[:, :, 2]`` and z), ``rotation`` (3, 3) ``R``
        (tilt included) and ``offset`` (3,) with
        ``observed = model @ R.T + offset``, ``n_localizations``,
        ``n_fluorophores`` (docking sites present), ``n_background``,
        ``n_outliers``, ``mean_precision`` (lateral, nm), ``sites`` (4, 3):
        the true site positions in the observed frame, ``linkage`` (4, 3):
        the offsets of the imagers from their sites, and ``labelled`` (4,).
        ``pandas.DataFrame`` needs the scalar fields selected, e.g.
        ``pandas.DataFrame(truth[["height", "n_localizations"]])``.

    See Also
    --------
    make_npc_3d : 3D nuclear pores.
    make_npc_2d : 2D nuclear pores.
    make_scenario : named simulations with real data's nuisances.

    References
    ----------
    .. [1] Heydarian, H. et al. "3D particle averaging and detection of
       macromolecular symmetry in localization microscopy." Nat. Commun. 12,
       2847 (2021).
    .. [2] Huijben, T. A. P. M. et al. "Detecting structural heterogeneity in
       single-molecule localization microscopy data." Nat. Commun. 12, 3791
       (2021).
    .. [3] Jungmann, R. et al. "Multiplexed 3D cellular super-resolution
       imaging with DNA-PAINT and Exchange-PAINT." Nat. Methods 11, 313-318
       (2014).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.datasets import make_tetrahedron
    >>> particles, truth = make_tetrahedron(50, n_localizations=1000, random_state=0)
    >>> particles.fields
    ['x', 'y', 'z', 'precision', 'precision_z', 'site']
    >>> truth["sites"].shape
    (50, 4, 3)
    >>> apex_to_base = truth["sites"][:, 3] - truth["sites"][:, :3].mean(axis=1)
    >>> bool(np.allclose(np.linalg.norm(apex_to_base, axis=1), truth["height"]))
    True
    >>> classes = np.repeat([45.0, 65.0, 95.0], 4)
    >>> _, mixture = make_tetrahedron(12, height=classes, n_localizations=1000, random_state=0)
    >>> mixture["height"].tolist() == classes.tolist()
    True
    """
    n = check_int(n_particles, "n_particles", minimum=1)
    n_localizations = check_int(n_localizations, "n_localizations", minimum=1)
    imaging = check_imaging(
        dol, blinking, linkage_error, precision, precision_spread, precision_field, background,
        (outlier_rate, outlier_count, outlier_distance), picking_offset, pick_radius,
    )
    z_ratio = check_axial_precision(imaging["precision"], z_ratio, precision_z)
    background = imaging["background"]
    if background >= n_localizations:
        raise ValueError(
            f"background ({background:g}) must be smaller than n_localizations ({n_localizations}), "
            "which counts background and signal together."
        )
    per_site = (n_localizations - background) / N_SITES
    if imaging["blinking"] == "geometric" and per_site < 1:
        raise ValueError(
            f"blinking='geometric' gives every present site at least one localization, but "
            f"(n_localizations - background) / 4 = {per_site:g} < 1."
        )
    rotation = check_rotation_3d(rotation)
    tilt = check_tilt(tilt, rotation)
    rng = check_random_state(random_state)

    height = per_particle(height, "height", n, rng)
    edge = per_particle(edge, "edge", n, rng)
    sites = tetrahedron_sites(height, edge)
    truth = {"height": height, "edge": edge}
    return observe(sites, truth, rotation=rotation, tilt=tilt, z_ratio=z_ratio, mean_per_dye=per_site, rng=rng, **imaging)
