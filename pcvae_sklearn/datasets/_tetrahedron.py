"""Simulated DNA-origami tetrahedra (3D DNA-PAINT)."""

from __future__ import annotations

import numpy as np

from ._common import (
    check_int,
    check_random_state,
    check_real,
    check_rotation_3d,
    common_truth,
    draw_pose,
    per_particle,
    pose_sites,
    simulate_localizations,
)

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
    height=(40.0, 100.0),
    edge=100.0,
    n_localizations=5000,
    dol=1.0,
    precision=4.0,
    precision_spread=0.3,
    z_ratio=2.5,
    background=50.0,
    picking_offset=5.0,
    pick_radius=100.0,
    rotation="z",
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
    2. **Binding events.** In DNA-PAINT an imager strand binds a docking
       site over and over; the number of localizations of a site is Poisson
       with mean ``(n_localizations - background) / 4``.
    3. **Background.** A Poisson number (mean ``background``) of
       localizations from unspecific binding, uniform in a cylinder of radius
       ``pick_radius`` and height ``2 * pick_radius`` around the pick centre.
    4. **Precision.** Lateral precision per localization lognormal with
       median ``precision`` nm and log-standard deviation
       ``precision_spread``; axial precision ``z_ratio`` times the lateral
       one (astigmatic 3D imaging); Gaussian localization error.
    5. **Pose.** A rotation about the optical axis (``rotation="z"``: the
       origami lies on its base on the coverslip), a uniform random 3D
       rotation (``"3d"``) or none, then a Gaussian picking offset of
       ``picking_offset`` nm per axis.

    A fully labelled particle thus has ``n_localizations`` localizations on
    average, background included; with ``dol < 1`` the expectation is
    ``dol * (n_localizations - background) + background``. A particle with
    no localization at all is redrawn (labelling, binding, background) until
    it has one.

    Parameters
    ----------
    n_particles : int, default=1000
        Number of particles.
    height : float, tuple (low, high) or array-like of shape (n_particles,), default=(40.0, 100.0)
        Height of the apex above the base, nm: uniform in [low, high] for a
        tuple, fixed for a number, per particle for a list or array (e.g.
        ``np.repeat([45.0, 65.0, 95.0], 150)`` for three classes).
    edge : float, tuple (low, high) or array-like of shape (n_particles,), default=100.0
        Side of the base triangle, nm (same forms as ``height``).
    n_localizations : int, default=5000
        Expected localizations of a fully labelled particle, background
        included. Must exceed ``background``.
    dol : float in (0, 1], default=1.0
        Probability that a docking site is present.
    precision : float, default=4.0
        Median lateral localization precision, nm.
    precision_spread : float, default=0.3
        Standard deviation of ``log(precision)``.
    z_ratio : float, default=2.5
        Axial over lateral precision.
    background : float, default=50.0
        Mean number of background localizations per particle.
    picking_offset : float, default=5.0
        Standard deviation (nm, per axis) of the offset of the true centre
        from the pick centre.
    pick_radius : float, default=100.0
        Radius and half-height (nm) of the cylinder in which background falls.
    rotation : {None, "z", "3d"}, default="z"
        No rotation, a uniform rotation about the optical axis, or a uniform
        random 3D rotation.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator.

    Returns
    -------
    particles : awkward.Array
        ``n_particles * var * {x, y, z, precision, precision_z, site}``
        (float64 in nm; ``site`` int32: 0-2 the base corners, 3 the apex, -1
        background).
    truth : numpy structured array of shape (n_particles,)
        Fields ``height`` and ``edge`` (nm), ``angle`` (rad; NaN for
        ``rotation="3d"``, 0 for None), ``rotation`` (3, 3) ``R`` and
        ``offset`` (3,) with ``observed = model @ R.T + offset``,
        ``n_localizations``, ``n_fluorophores`` (docking sites present),
        ``n_background``, ``mean_precision`` (lateral, nm), ``sites`` (4, 3):
        the true site positions in the observed frame, and ``labelled`` (4,).
        ``pandas.DataFrame`` needs the scalar fields selected, e.g.
        ``pandas.DataFrame(truth[["height", "n_localizations"]])``.

    See Also
    --------
    make_npc_3d : 3D nuclear pores.
    make_npc_2d : 2D nuclear pores.

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
    dol = check_real(dol, "dol", low=0.0, high=1.0, low_open=True)
    precision = check_real(precision, "precision", low=0.0, low_open=True)
    precision_spread = check_real(precision_spread, "precision_spread", low=0.0)
    z_ratio = check_real(z_ratio, "z_ratio", low=0.0, low_open=True)
    background = check_real(background, "background", low=0.0)
    if background >= n_localizations:
        raise ValueError(
            f"background ({background:g}) must be smaller than n_localizations ({n_localizations}), "
            "which counts background and signal together."
        )
    picking_offset = check_real(picking_offset, "picking_offset", low=0.0)
    pick_radius = check_real(pick_radius, "pick_radius", low=0.0, low_open=True)
    rotation = check_rotation_3d(rotation)
    rng = check_random_state(random_state)

    height = per_particle(height, "height", n, rng)
    edge = per_particle(edge, "edge", n, rng)
    model = tetrahedron_sites(height, edge)
    rot, angle, offset = draw_pose(n, 3, rotation, picking_offset, rng)
    sites = pose_sites(model, rot, offset)
    per_site = (n_localizations - background) / N_SITES

    def draw_counts(shape):
        return rng.poisson(per_site, size=shape)

    p, labelled, n_background = simulate_localizations(
        sites,
        dol=dol,
        draw_counts=draw_counts,
        background=background,
        pick_radius=pick_radius,
        precision=precision,
        precision_spread=precision_spread,
        z_ratio=z_ratio,
        rng=rng,
    )
    truth = common_truth(p, labelled, n_background, rot, angle, offset, sites, {"height": height, "edge": edge})
    return p.to_awkward(), truth
