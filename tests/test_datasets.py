"""Tests of the simulators in pcvae_sklearn.datasets: structure, physics, validation."""

import awkward as ak
import numpy as np
import pytest
from scipy import stats

from pcvae_sklearn import as_particles
from pcvae_sklearn.datasets import (
    SCENARIOS,
    Scenario,
    list_scenarios,
    make_npc_2d,
    make_npc_3d,
    make_scenario,
    make_tetrahedron,
)

SEEDS = [0, 1, 2]

# small, fast settings for every simulator; the tetrahedron with fewer localizations
SIMULATORS = {
    "npc_2d": (make_npc_2d, {}, 2, 32),
    "npc_3d": (make_npc_3d, {}, 3, 32),
    "tetrahedron": (make_tetrahedron, {"n_localizations": 400, "background": 8}, 3, 4),
}


def _simulate(name, n, **kwargs):
    func, defaults, _, _ = SIMULATORS[name]
    return func(n, **{**defaults, **kwargs})


def _flat(particles, field):
    return ak.to_numpy(ak.flatten(particles[field]))


def _coords(particles, n_dims):
    return np.stack([_flat(particles, c) for c in "xyz"[:n_dims]], axis=1)


def _residuals(particles, truth, n_dims):
    """Localization minus its true site, for signal localizations only."""
    counts = ak.to_numpy(ak.num(particles))
    part = np.repeat(np.arange(len(counts)), counts)
    site = _flat(particles, "site")
    signal = site >= 0
    true = truth["sites"][part[signal], site[signal]]
    return _coords(particles, n_dims)[signal] - true, signal


# ------------------------------------------------------------------- structure
@pytest.mark.parametrize("name", list(SIMULATORS))
def test_shapes_types_and_fields(name):
    _, _, d, n_sites = SIMULATORS[name]
    particles, truth = _simulate(name, 40, random_state=0)
    assert isinstance(particles, ak.Array)
    assert len(particles) == 40 and truth.shape == (40,)
    expected = ["x", "y", "z"][:d] + ["precision"] + (["precision_z"] if d == 3 else []) + ["site"]
    assert particles.fields == expected
    for f in expected[:-1]:
        assert _flat(particles, f).dtype == np.float64
    assert _flat(particles, "site").dtype == np.int32
    assert truth["rotation"].shape == (40, d, d)
    assert truth["offset"].shape == (40, d)
    assert truth["sites"].shape == (40, n_sites, d)
    assert truth["labelled"].shape == (40, n_sites) and truth["labelled"].dtype == bool
    for f in ("n_localizations", "n_fluorophores", "n_background"):
        assert truth[f].dtype == np.int64
    counts = ak.to_numpy(ak.num(particles))
    np.testing.assert_array_equal(truth["n_localizations"], counts)
    assert counts.min() >= 1
    site = _flat(particles, "site")
    part = np.repeat(np.arange(40), counts)
    np.testing.assert_array_equal(np.bincount(part[site == -1], minlength=40), truth["n_background"])
    np.testing.assert_array_equal(truth["n_fluorophores"], truth["labelled"].sum(axis=1))
    # every signal localization comes from a labelled site, and every labelled
    # site of a blinking dye (NPC) gives at least one localization
    assert site.min() >= -1 and site.max() < n_sites
    assert truth["labelled"][part[site >= 0], site[site >= 0]].all()
    prec = particles.precision
    np.testing.assert_allclose(truth["mean_precision"], ak.to_numpy(ak.mean(prec, axis=1)))


@pytest.mark.parametrize("name", list(SIMULATORS))
def test_as_particles_accepts_the_output(name):
    _, _, d, _ = SIMULATORS[name]
    particles, truth = _simulate(name, 10, random_state=3)
    p = as_particles(particles)
    assert p.n_dims == d and p.n_particles == 10
    assert {"precision", "site"} <= set(p.fields)
    np.testing.assert_array_equal(p.lengths, truth["n_localizations"])


# ------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("name", list(SIMULATORS))
def test_same_seed_same_data_different_seed_different_data(name):
    _, _, d, _ = SIMULATORS[name]
    a, ta = _simulate(name, 20, random_state=7)
    b, tb = _simulate(name, 20, random_state=7)
    c, tc = _simulate(name, 20, random_state=8)
    assert ak.array_equal(a, b)
    assert ta.tobytes() == tb.tobytes()
    assert ta.dtype == tc.dtype
    assert not np.array_equal(ta["sites"], tc["sites"])
    # a Generator drives it the same way as its seed
    g, tg = _simulate(name, 20, random_state=np.random.default_rng(7))
    assert ak.array_equal(a, g) and tg.tobytes() == ta.tobytes()
    # a legacy RandomState is accepted and reproducible
    r1, _ = _simulate(name, 5, random_state=np.random.RandomState(1))
    r2, _ = _simulate(name, 5, random_state=np.random.RandomState(1))
    assert ak.array_equal(r1, r2)


def test_random_state_none_gives_fresh_data():
    _, t1 = make_npc_2d(5)
    _, t2 = make_npc_2d(5)
    assert not np.array_equal(t1["radius"], t2["radius"])


# ------------------------------------------------------------ counts and rates
@pytest.mark.parametrize("seed", SEEDS)
def test_npc_2d_defaults_give_about_150_localizations(seed):
    _, truth = make_npc_2d(1000, random_state=seed)
    # 32 sites * 0.6 * 7.5 + 6 = 150; per-particle sd is about 40, so the
    # mean of 1000 has sd about 1.3
    assert abs(truth["n_localizations"].mean() - 150) < 6


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "kwargs",
    [dict(dol=0.9, mean_blinks=3.0, background=2.0, sites_per_corner=2), dict(dol=0.3, mean_blinks=12.0, background=0.0)],
)
def test_npc_counts_follow_the_documented_formula(seed, kwargs):
    n = 2000
    particles, truth = make_npc_2d(n, random_state=seed, **kwargs)
    n_sites = 8 * kwargs.get("sites_per_corner", 4)
    expected = n_sites * kwargs["dol"] * kwargs["mean_blinks"] + kwargs["background"]
    assert abs(truth["n_localizations"].mean() / expected - 1) < 0.04
    # degree of labelling (the redraw of empty particles is negligible here)
    assert abs(truth["labelled"].mean() - kwargs["dol"]) < 0.01
    # localizations per fluorophore: geometric, >= 1, mean mean_blinks
    site = _flat(particles, "site")
    part = np.repeat(np.arange(n), truth["n_localizations"])
    per_dye = np.bincount((part * n_sites + site)[site >= 0], minlength=n * n_sites)[truth["labelled"].ravel()]
    assert per_dye.min() >= 1
    assert abs(per_dye.mean() / kwargs["mean_blinks"] - 1) < 0.04
    if kwargs["background"] > 0:
        assert abs(truth["n_background"].mean() / kwargs["background"] - 1) < 0.08


@pytest.mark.parametrize("seed", SEEDS)
def test_npc_3d_defaults_give_about_150_localizations(seed):
    _, truth = make_npc_3d(1000, random_state=seed)
    assert abs(truth["n_localizations"].mean() - 150) < 6


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dol", [1.0, 0.5])
def test_tetrahedron_counts(seed, dol):
    n = 1000
    _, truth = make_tetrahedron(n, n_localizations=2000, background=40, dol=dol, random_state=seed)
    expected = dol * (2000 - 40) + 40
    # a particle's count varies mostly through its number of sites (binomial):
    # sd about sqrt(4 dol (1 - dol)) * 490 + Poisson noise
    sem = (np.sqrt(4 * dol * (1 - dol)) * 490 + np.sqrt(2000)) / np.sqrt(n)
    assert abs(truth["n_localizations"].mean() - expected) < 4 * sem
    # given its sites, a particle's signal is Poisson with mean 490 per site
    signal = truth["n_localizations"] - truth["n_background"]
    assert abs(signal.sum() / truth["n_fluorophores"].sum() / 490 - 1) < 0.005
    assert abs(truth["labelled"].mean() - dol) < 4 * np.sqrt(dol * (1 - dol) / (4 * n)) + 1e-12
    if dol == 1.0:
        # Poisson per site: the count of a particle varies like a Poisson of mean 2000
        assert truth["n_localizations"].std() < 2 * np.sqrt(2000)


@pytest.mark.parametrize("seed", SEEDS)
def test_default_tetrahedron_has_about_5000_localizations(seed):
    _, truth = make_tetrahedron(20, random_state=seed)
    assert abs(truth["n_localizations"].mean() / 5000 - 1) < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_no_empty_particle_even_at_tiny_labelling(seed):
    # P(no fluorophore) = 0.97 ** 8 ~ 0.78: most particles need redraws
    particles, truth = make_npc_2d(300, dol=0.03, sites_per_corner=1, background=0.0, random_state=seed)
    assert ak.to_numpy(ak.num(particles)).min() >= 1
    assert truth["n_fluorophores"].min() >= 1
    as_particles(particles)  # the boundary accepts it (it rejects empty particles)


def test_impossible_labelling_raises_instead_of_hanging():
    with pytest.raises(ValueError, match="too small"):
        make_npc_2d(3, dol=1e-9, sites_per_corner=1, background=0.0, random_state=0)


# ---------------------------------------------------------------------- physics
@pytest.mark.parametrize("seed", SEEDS)
def test_npc_2d_mean_radial_distance_tracks_radius(seed):
    particles, truth = make_npc_2d(500, background=0.0, random_state=seed)
    counts = truth["n_localizations"]
    centre = np.repeat(truth["offset"], counts, axis=0)
    r = np.linalg.norm(_coords(particles, 2) - centre, axis=1)
    mean_r = np.add.reduceat(r, np.concatenate([[0], np.cumsum(counts)[:-1]])) / counts
    assert stats.spearmanr(mean_r, truth["radius"]).statistic > 0.9
    # and it is unbiased up to the precision's radial inflation (~sigma^2 / 2R)
    assert abs(np.mean(mean_r - truth["radius"])) < 2.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sites_per_corner", [1, 2, 4])
def test_npc_2d_sites_lie_on_the_ring_with_8_fold_symmetry(seed, sites_per_corner):
    _, truth = make_npc_2d(50, sites_per_corner=sites_per_corner, random_state=seed)
    rel = truth["sites"] - truth["offset"][:, None, :]
    np.testing.assert_allclose(np.linalg.norm(rel, axis=2), np.repeat(truth["radius"][:, None], rel.shape[1], axis=1))
    # undo the rotation: model = (observed - offset) @ R
    model = np.einsum("nsd,nde->nse", rel, truth["rotation"])
    theta = np.arctan2(model[..., 1], model[..., 0]).reshape(50, 8, sites_per_corner)
    corner_mean = np.angle(np.exp(1j * theta).mean(axis=2))
    np.testing.assert_allclose(
        np.exp(1j * corner_mean), np.broadcast_to(np.exp(2j * np.pi * np.arange(8) / 8), (50, 8)), atol=1e-9
    )
    # the copies of a corner lie within a few nm of it
    arc = np.abs(np.angle(np.exp(1j * (theta - corner_mean[..., None])))) * truth["radius"][:, None, None]
    assert arc.max() <= 6.0 + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rotation", [None, "z", "3d"])
def test_npc_3d_geometry(seed, rotation):
    _, truth = make_npc_3d(60, rotation=rotation, random_state=seed)
    rel = truth["sites"] - truth["offset"][:, None, :]
    axis = truth["rotation"][:, :, 2]  # the pore axis in the observed frame
    along = np.einsum("nsd,nd->ns", rel, axis)
    radial = np.linalg.norm(rel - along[..., None] * axis[:, None, :], axis=2)
    np.testing.assert_allclose(radial, np.repeat(truth["radius"][:, None], 32, axis=1))
    h = truth["height"][:, None]
    np.testing.assert_allclose(along[:, :16], np.repeat(-h / 2, 16, axis=1), atol=1e-9)
    np.testing.assert_allclose(along[:, 16:], np.repeat(h / 2, 16, axis=1), atol=1e-9)
    assert ((truth["radius"] >= 45) & (truth["radius"] <= 60)).all()
    assert ((truth["height"] >= 40) & (truth["height"] <= 70)).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rotation", [None, "z", "3d"])
def test_tetrahedron_geometry(seed, rotation):
    _, truth = make_tetrahedron(60, n_localizations=200, background=0, rotation=rotation, random_state=seed)
    s = truth["sites"]
    base, apex = s[:, :3], s[:, 3]
    base_centre = base.mean(axis=1)
    np.testing.assert_allclose(np.linalg.norm(apex - base_centre, axis=1), truth["height"])
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        np.testing.assert_allclose(np.linalg.norm(base[:, i] - base[:, j], axis=1), truth["edge"])
    # the apex stands perpendicular above the base centroid
    normal = np.cross(base[:, 1] - base[:, 0], base[:, 2] - base[:, 0])
    cosine = np.abs(np.einsum("nd,nd->n", normal, apex - base_centre)) / (
        np.linalg.norm(normal, axis=1) * truth["height"]
    )
    np.testing.assert_allclose(cosine, 1.0)
    # the model frame is centred on the sites' centroid
    np.testing.assert_allclose(s.mean(axis=1), truth["offset"], atol=1e-9)
    assert ((truth["height"] >= 40) & (truth["height"] <= 100)).all()
    if rotation != "3d":  # the base lies flat, below the apex
        np.testing.assert_allclose(base[..., 2] - truth["offset"][:, None, 2], np.repeat(-truth["height"][:, None] / 4, 3, axis=1))


def _naive_model(name, row, sites_per_corner):
    """The documented model-frame sites of one particle, built site by site."""
    out = []
    if name == "tetrahedron":
        h, e = row["height"], row["edge"]
        for k in range(3):
            phi = np.pi / 2 + 2 * np.pi * k / 3
            out.append([e / np.sqrt(3) * np.cos(phi), e / np.sqrt(3) * np.sin(phi), -h / 4])
        out.append([0.0, 0.0, 3 * h / 4])
        return np.array(out)
    r = row["radius"]
    arcs = np.linspace(-6.0, 6.0, sites_per_corner) if sites_per_corner > 1 else [0.0]
    if name == "npc_2d":
        rings = [(None, 0.0)]
    else:  # the ring at -height / 2 turned by -twist / 2, the other by +twist / 2
        half = np.deg2rad(row["ring_twist"]) / 2
        rings = [(-row["height"] / 2, -half), (row["height"] / 2, half)]
    for z, phase in rings:
        for c in range(8):
            for a in arcs:
                theta = 2 * np.pi * c / 8 + phase + a / r
                out.append([r * np.cos(theta), r * np.sin(theta)] + ([] if z is None else [z]))
    return np.array(out)


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tilted", [False, True])
def test_sites_match_a_naive_reference(name, seed, tilted):
    """observed = model @ R.T + offset, particle by particle (R includes the tilt; 3D pores also twisted)."""
    _, _, d, n_sites = SIMULATORS[name]
    if d == 2:
        if tilted:
            pytest.skip("2D particles have no tilt")
        kwargs = dict(rotation=True)
    elif tilted:
        kwargs = dict(rotation="z", tilt=20.0, **({"ring_twist": (-10.0, 10.0)} if name == "npc_3d" else {}))
    else:
        kwargs = dict(rotation="3d")
    _, truth = _simulate(name, 12, random_state=seed, **kwargs)
    sites_per_corner = {"npc_2d": 4, "npc_3d": 2}.get(name, 0)
    for row in truth:
        expected = _naive_model(name, row, sites_per_corner) @ row["rotation"].T + row["offset"]
        np.testing.assert_allclose(row["sites"], expected, atol=1e-9)


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", SEEDS)
def test_localizations_scatter_around_their_site_with_the_stated_precision(name, seed):
    _, _, d, _ = SIMULATORS[name]
    particles, truth = _simulate(name, 150, random_state=seed)
    res, signal = _residuals(particles, truth, d)
    prec = _flat(particles, "precision")[signal]
    for k in range(2):
        assert abs(np.std(res[:, k] / prec) - 1) < 0.04
        assert abs(np.mean(res[:, k] / prec)) < 0.04
    if d == 3:
        prec_z = _flat(particles, "precision_z")[signal]
        np.testing.assert_allclose(prec_z, 2.5 * prec)
        assert abs(np.std(res[:, 2] / prec_z) - 1) < 0.04


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("median, spread", [(6.0, 0.3), (3.0, 0.5), (8.0, 0.0)])
def test_precision_is_lognormal_around_its_median(seed, median, spread):
    particles, _ = make_npc_2d(200, precision=median, precision_spread=spread, random_state=seed)
    log_prec = np.log(_flat(particles, "precision"))
    assert abs(np.median(log_prec) - np.log(median)) < 0.02
    assert abs(np.std(log_prec) - spread) < 0.02


@pytest.mark.parametrize("name", list(SIMULATORS))
def test_background_is_uniform_in_the_pick_region(name):
    _, _, d, _ = SIMULATORS[name]
    particles, truth = _simulate(
        name, 400, background=30.0, pick_radius=80.0, precision=1e-6, precision_spread=0.0, random_state=0
    )
    coords = _coords(particles, d)[_flat(particles, "site") == -1]
    r = np.linalg.norm(coords[:, :2], axis=1)
    assert r.max() <= 80.0 + 1e-3
    # uniform in a disc: (r / R)^2 is uniform on [0, 1]
    assert stats.kstest((r / 80.0) ** 2, "uniform").pvalue > 1e-3
    if d == 3:
        assert np.abs(coords[:, 2]).max() <= 80.0 + 1e-3
        assert stats.kstest((coords[:, 2] + 80) / 160, "uniform").pvalue > 1e-3
    assert abs(truth["n_background"].mean() / 30 - 1) < 0.05


# --------------------------------------------------------------------- rotation
@pytest.mark.parametrize("name", list(SIMULATORS))
def test_rotation_matrices_are_proper_rotations(name):
    _, _, d, _ = SIMULATORS[name]
    modes = [True, False] if d == 2 else [None, "z", "3d"]
    for mode in modes:
        _, truth = _simulate(name, 100, rotation=mode, random_state=0)
        R = truth["rotation"]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(d), R.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(R), 1.0)
        angle = truth["angle"]
        if mode in (False, None):
            np.testing.assert_array_equal(R, np.broadcast_to(np.eye(d), R.shape))
            np.testing.assert_array_equal(angle, 0.0)
        elif mode == "3d":
            assert np.isnan(angle).all()
        else:
            assert ((angle >= 0) & (angle < 2 * np.pi)).all()
            np.testing.assert_allclose(R[:, 0, 0], np.cos(angle))
            np.testing.assert_allclose(R[:, 1, 0], np.sin(angle))
            if d == 3:
                np.testing.assert_allclose(R[:, 2], np.broadcast_to([0.0, 0.0, 1.0], (100, 3)), atol=1e-15)
            # angles uniform on the circle
            assert stats.kstest(angle / (2 * np.pi), "uniform").pvalue > 1e-3


def test_2d_rotation_accepts_the_3d_spellings():
    a, ta = make_npc_2d(20, rotation="z", random_state=4)
    b, tb = make_npc_2d(20, rotation=True, random_state=4)
    assert ak.array_equal(a, b) and ta.tobytes() == tb.tobytes()
    a, ta = make_npc_2d(20, rotation=None, random_state=4)
    b, tb = make_npc_2d(20, rotation=False, random_state=4)
    assert ak.array_equal(a, b) and ta.tobytes() == tb.tobytes()


@pytest.mark.parametrize("seed", SEEDS)
def test_3d_rotations_spread_the_axis_over_the_sphere(seed):
    _, truth = make_npc_3d(2000, rotation="3d", mean_blinks=1.0, random_state=seed)
    axes = truth["rotation"][:, :, 2]  # where the model's z-axis points
    # uniform on the sphere: every coordinate is uniform on [-1, 1], mean ~ 0
    for k in range(3):
        assert stats.kstest((axes[:, k] + 1) / 2, "uniform").pvalue > 1e-3
    assert np.linalg.norm(axes.mean(axis=0)) < 0.1


@pytest.mark.parametrize("name", list(SIMULATORS))
def test_picking_offset(name):
    _, _, d, _ = SIMULATORS[name]
    _, truth = _simulate(name, 2000, picking_offset=4.0, mean_blinks=1.0, random_state=0) if name != "tetrahedron" else _simulate(
        name, 2000, picking_offset=4.0, n_localizations=20, background=0, random_state=0
    )
    off = truth["offset"]
    assert np.all(np.abs(off.mean(axis=0)) < 0.3)
    np.testing.assert_allclose(off.std(axis=0), 4.0, rtol=0.06)
    _, truth = _simulate(name, 10, picking_offset=0.0, random_state=0)
    np.testing.assert_array_equal(truth["offset"], 0.0)


# ------------------------------------------------------------------ parameters
def test_radius_and_height_forms():
    radii = np.linspace(30.0, 70.0, 25)
    before = radii.copy()
    _, truth = make_npc_2d(25, radius=radii, random_state=0)
    np.testing.assert_array_equal(truth["radius"], radii)
    np.testing.assert_array_equal(radii, before)  # not modified
    _, truth = make_npc_2d(25, radius=list(radii), random_state=0)
    np.testing.assert_array_equal(truth["radius"], radii)
    for fixed in (50.0, 50, np.float32(50.0), np.array(50.0)):
        _, truth = make_npc_2d(25, radius=fixed, random_state=0)
        np.testing.assert_array_equal(truth["radius"], 50.0)
    _, truth = make_npc_2d(2, radius=(40.0, 60.0), random_state=0)  # a tuple is a range, even for 2 particles
    assert truth["radius"].shape == (2,) and not np.isin(truth["radius"], [40.0, 60.0]).all()
    classes = np.repeat([45.0, 65.0, 95.0], 5)
    _, truth = make_tetrahedron(15, height=classes, n_localizations=100, background=0, random_state=0)
    np.testing.assert_array_equal(truth["height"], classes)
    _, truth = make_npc_3d(15, radius=50.0, height=classes, random_state=0)
    np.testing.assert_array_equal(truth["height"], classes)
    np.testing.assert_array_equal(truth["radius"], 50.0)


@pytest.mark.parametrize(
    "func, kwargs, error, match",
    [
        (make_npc_2d, dict(n_particles=0), ValueError, "n_particles must be >= 1"),
        (make_npc_2d, dict(n_particles=2.5), TypeError, "n_particles must be an int"),
        (make_npc_2d, dict(n_particles=True), TypeError, "n_particles must be an int"),
        (make_npc_2d, dict(dol=0.0), ValueError, r"dol must be in \(0, 1\]"),
        (make_npc_2d, dict(dol=1.2), ValueError, r"dol must be in \(0, 1\]"),
        (make_npc_2d, dict(dol="high"), TypeError, "dol must be a number"),
        (make_npc_2d, dict(mean_blinks=0.5), ValueError, "mean_blinks must be in"),
        (make_npc_2d, dict(precision=0.0), ValueError, "precision must be in"),
        (make_npc_2d, dict(precision=np.nan), ValueError, "precision must be finite"),
        (make_npc_2d, dict(precision_spread=-0.1), ValueError, "precision_spread must be in"),
        (make_npc_2d, dict(background=-1.0), ValueError, "background must be in"),
        (make_npc_2d, dict(picking_offset=-1.0), ValueError, "picking_offset must be in"),
        (make_npc_2d, dict(pick_radius=0.0), ValueError, "pick_radius must be in"),
        (make_npc_2d, dict(sites_per_corner=0), ValueError, "sites_per_corner must be >= 1"),
        (make_npc_2d, dict(radius=(60.0, 40.0)), ValueError, "low must be <= high"),
        (make_npc_2d, dict(radius=(40.0, 50.0, 60.0)), ValueError, r"must be \(low, high\)"),
        (make_npc_2d, dict(radius=(-5.0, 40.0)), ValueError, r"radius\[0\] \(low\) must be in"),
        (make_npc_2d, dict(radius=-50.0), ValueError, "radius must be in"),
        (make_npc_2d, dict(n_particles=10, radius=[40.0, 60.0]), ValueError, r"shape \(n_particles,\) = \(10,\)"),
        (make_npc_2d, dict(n_particles=3, radius=[40.0, np.nan, 50.0]), ValueError, "particle 1 has nan"),
        (make_npc_2d, dict(radius="big"), TypeError, "radius must be a number"),
        (make_npc_2d, dict(rotation="3d"), ValueError, "rotation must be True, False"),
        (make_npc_2d, dict(rotation=1.0), ValueError, "rotation must be True, False"),
        (make_npc_2d, dict(random_state="seed"), TypeError, "random_state must be None"),
        (make_npc_2d, dict(random_state=-1), ValueError, "random_state must be a non-negative"),
        (make_npc_3d, dict(rotation="xyz"), ValueError, "rotation must be None, 'z' or '3d'"),
        (make_npc_3d, dict(rotation=True), ValueError, "rotation must be None, 'z' or '3d'"),
        (make_npc_3d, dict(height=(70.0, 40.0)), ValueError, "low must be <= high"),
        (make_npc_3d, dict(z_ratio=0.0), ValueError, "z_ratio must be in"),
        (make_tetrahedron, dict(n_localizations=0), ValueError, "n_localizations must be >= 1"),
        (make_tetrahedron, dict(n_localizations=40, background=50.0), ValueError, "must be smaller than n_localizations"),
        (make_tetrahedron, dict(n_particles=4, height=np.ones(5)), ValueError, r"\(4,\)"),
        (make_tetrahedron, dict(edge=0.0), ValueError, "edge must be in"),
        (make_tetrahedron, dict(rotation="x"), ValueError, "rotation must be None"),
    ],
)
def test_parameter_validation(func, kwargs, error, match):
    kwargs = {"n_particles": 3, **kwargs}
    n = kwargs.pop("n_particles")
    with pytest.raises(error, match=match):
        func(n, **kwargs)


# ------------------------------------------------------- real data's nuisances
# the keywords of every simulator at the values that switch their nuisance off
NEUTRAL = {
    "npc_2d": dict(blinking="geometric", linkage_error=0.0, precision_field=True, outlier_rate=0.0, outlier_count=2,
                   outlier_distance=400.0),
    "npc_3d": dict(blinking="geometric", linkage_error=0.0, precision_field=True, outlier_rate=0.0, tilt=0.0,
                   ring_twist=0.0, z_ratio=2.5),
    "tetrahedron": dict(blinking="poisson", linkage_error=0.0, precision_field=True, outlier_rate=0.0, tilt=0.0,
                        precision_z=None),
}


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("other", [{}, {"dol": 0.5, "background": 0.0, "precision_spread": 0.0}])
def test_nuisances_at_their_neutral_values_change_nothing(name, seed, other):
    """A nuisance that is off draws nothing: the defaults give the data they gave before the keywords existed."""
    rotation = {} if name == "npc_2d" else {"rotation": None}
    a, ta = _simulate(name, 30, random_state=seed, **other)
    b, tb = _simulate(name, 30, random_state=seed, **other, **NEUTRAL[name])
    assert ak.array_equal(a, b) and ta.tobytes() == tb.tobytes()
    a, ta = _simulate(name, 30, random_state=seed, **other, **rotation)
    b, tb = _simulate(name, 30, random_state=seed, **other, **rotation, **NEUTRAL[name])
    assert ak.array_equal(a, b) and ta.tobytes() == tb.tobytes()
    assert (ta["n_outliers"] == 0).all() and (ta["linkage"] == 0).all()
    if name != "npc_2d":
        assert (ta["tilt"] == 0).all()


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", SEEDS)
def test_linkage_error_offsets_every_dye_and_widens_the_spread(name, seed):
    _, _, d, _ = SIMULATORS[name]
    link, prec = 5.0, 3.0
    kwargs = dict(background=0.0, precision=prec, precision_spread=0.0, linkage_error=link)
    if d == 3:
        kwargs["z_ratio"] = 1.0
    particles, truth = _simulate(name, 300 if name != "tetrahedron" else 600, random_state=seed, **kwargs)
    # the recorded offsets: isotropic Gaussian of the given std, zero mean
    offsets = truth["linkage"].reshape(-1, d)
    assert abs(offsets.std() / link - 1) < 0.05 and np.abs(offsets.mean(axis=0)).max() < 0.3
    # around site + offset the localizations scatter with the precision only
    counts = truth["n_localizations"]
    part = np.repeat(np.arange(len(counts)), counts)
    site = _flat(particles, "site")
    res, _ = _residuals(particles, truth, d)
    around_label = res - truth["linkage"][part[site >= 0], site[site >= 0]]
    assert abs(around_label.std(axis=0) / prec - 1).max() < 0.03
    # around the site they spread by sqrt(precision^2 + linkage^2) (per axis)
    assert abs(res.std() / np.hypot(prec, link) - 1) < 0.06
    # all localizations of one dye share its offset: the mean residual of a
    # dye is its offset, up to precision / sqrt(count)
    dye = part[site >= 0] * truth["labelled"].shape[1] + site[site >= 0]
    n_per = np.bincount(dye)
    seen = np.flatnonzero(n_per >= 3)
    mean_res = np.stack([np.bincount(dye, res[:, k])[seen] / n_per[seen] for k in range(d)], axis=1)
    true_off = truth["linkage"].reshape(-1, d)[seen]
    assert stats.pearsonr(mean_res.ravel(), true_off.ravel()).statistic > 0.8


def _per_dye_counts(particles, truth):
    """Localizations of every labelled site (zeros included)."""
    n, n_sites = truth["labelled"].shape
    site = _flat(particles, "site")
    part = np.repeat(np.arange(n), truth["n_localizations"])
    return np.bincount((part * n_sites + site)[site >= 0], minlength=n * n_sites)[truth["labelled"].ravel()]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("blinking", ["geometric", "poisson"])
def test_blinking_geometric_or_poisson_counts(seed, blinking):
    mean = 4.0
    particles, truth = make_npc_2d(400, mean_blinks=mean, blinking=blinking, background=0.0, random_state=seed)
    counts = _per_dye_counts(particles, truth)
    assert abs(counts.mean() / mean - 1) < 0.05
    # dispersion index var / mean: 1 for Poisson, mean - 1 for the geometric law on 1, 2, ...
    expected = 1.0 if blinking == "poisson" else mean - 1
    assert abs(counts.var() / counts.mean() / expected - 1) < 0.15
    if blinking == "poisson":
        p0 = np.exp(-mean)  # a labelled site without any binding event
        assert abs((counts == 0).sum() - p0 * counts.size) < 4 * np.sqrt(counts.size * p0 * (1 - p0))
    else:
        assert counts.min() >= 1


@pytest.mark.parametrize("blinking", ["geometric", "poisson"])
def test_tetrahedron_blinking(blinking):
    per_site = 10.0
    particles, truth = make_tetrahedron(1500, n_localizations=48, background=8.0, blinking=blinking, random_state=0)
    counts = _per_dye_counts(particles, truth)
    assert abs(counts.mean() / per_site - 1) < 0.05
    expected = 1.0 if blinking == "poisson" else per_site - 1
    assert abs(counts.var() / counts.mean() / expected - 1) < 0.15


def _axis(truth, name):
    """The structure's axis, from its sites: ring to ring (pores), base to apex (tetrahedra)."""
    s = truth["sites"]
    v = s[:, 16:].mean(axis=1) - s[:, :16].mean(axis=1) if name == "npc_3d" else s[:, 3] - s[:, :3].mean(axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["npc_3d", "tetrahedron"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rotation", ["z", None])
def test_tilt_is_recorded_and_tilts_the_axis(name, seed, rotation):
    _, plain = _simulate(name, 300, rotation=rotation, random_state=seed)
    _, truth = _simulate(name, 300, rotation=rotation, tilt=20.0, random_state=seed)
    tilt = truth["tilt"]
    assert ((tilt >= 0) & (tilt <= 20)).all()
    assert stats.kstest(tilt / 20, "uniform").pvalue > 1e-3
    # the axis read from the sites and the axis of R both lie at the recorded tilt from z
    for axis in (_axis(truth, name), truth["rotation"][:, :, 2]):
        np.testing.assert_allclose(np.degrees(np.arccos(np.clip(axis[:, 2], -1, 1))), tilt, atol=1e-6)
    # towards a uniform azimuth
    tilted = tilt > 2
    azimuth = np.arctan2(truth["rotation"][tilted, 1, 2], truth["rotation"][tilted, 0, 2])
    assert stats.kstest((azimuth + np.pi) / (2 * np.pi), "uniform").pvalue > 1e-3
    # the tilt comes after the pose: the in-plane angle and the offset are those without tilt
    np.testing.assert_array_equal(truth["angle"], plain["angle"])
    np.testing.assert_array_equal(truth["offset"], plain["offset"])
    np.testing.assert_array_equal(plain["tilt"], 0.0)
    np.testing.assert_allclose(_axis(plain, name), np.broadcast_to([0.0, 0.0, 1.0], (300, 3)), atol=1e-12)


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", SEEDS)
def test_far_outliers_at_the_given_rate_and_distance(name, seed):
    _, _, d, _ = SIMULATORS[name]
    n, rate = 1500, 0.3
    kwargs = dict(background=0.0, precision=1.0, precision_spread=0.0, outlier_rate=rate, outlier_count=(1, 3),
                  outlier_distance=(160.0, 300.0))
    if name == "tetrahedron":
        kwargs.update(n_localizations=40)
    particles, truth = _simulate(name, n, random_state=seed, **kwargs)
    has = truth["n_outliers"] > 0
    assert abs(has.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    assert set(np.unique(truth["n_outliers"][has])) == {1, 2, 3}
    site = _flat(particles, "site")
    part = np.repeat(np.arange(n), truth["n_localizations"])
    np.testing.assert_array_equal(np.bincount(part[site == -2], minlength=n), truth["n_outliers"])
    # the particles with a localization more than 150 nm from the true centre are exactly those with outliers
    dist = np.linalg.norm(_coords(particles, d) - truth["offset"][part], axis=1)
    far = np.bincount(part[dist > 150], minlength=n) > 0
    np.testing.assert_array_equal(far, has)
    out = dist[site == -2]
    assert out.min() > 160 - 6 and out.max() < 300 + 6
    assert stats.kstest((out - 160) / 140, "uniform").pvalue > 1e-4  # uniform in distance (1 nm noise)


def test_outliers_count_the_particle_as_non_empty():
    # nothing but outliers: no particle is redrawn empty, and every one has its outlier
    _, truth = make_npc_2d(50, dol=1e-9, background=0.0, outlier_rate=1.0, outlier_count=1, random_state=0)
    np.testing.assert_array_equal(truth["n_outliers"], 1)
    np.testing.assert_array_equal(truth["n_localizations"], 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_ring_twist_turns_the_rings_against_each_other(seed):
    twist = 7.5
    _, truth = make_npc_3d(40, ring_twist=twist, tilt=10.0, random_state=seed)
    np.testing.assert_array_equal(truth["ring_twist"], twist)
    # back to the model frame: model = (observed - offset) @ R
    model = np.einsum("nsd,nde->nse", truth["sites"] - truth["offset"][:, None], truth["rotation"])
    phi = np.arctan2(model[..., 1], model[..., 0])
    diff = np.degrees(np.angle(np.exp(1j * (phi[:, 16:] - phi[:, :16]))))
    np.testing.assert_allclose(diff, twist, atol=1e-9)
    # a per-particle twist (any sign) is drawn and recorded
    _, truth = make_npc_3d(200, ring_twist=(-10.0, 10.0), rotation=None, picking_offset=0.0, random_state=seed)
    phi = np.arctan2(truth["sites"][..., 1], truth["sites"][..., 0])
    diff = np.degrees(np.angle(np.exp(1j * (phi[:, 16:] - phi[:, :16]))))
    np.testing.assert_allclose(diff, np.repeat(truth["ring_twist"][:, None], 16, axis=1), atol=1e-9)
    assert truth["ring_twist"].min() < 0 < truth["ring_twist"].max()


@pytest.mark.parametrize("name", list(SIMULATORS))
@pytest.mark.parametrize("seed", [0, 5])
def test_without_precision_field_the_noise_is_the_same(name, seed):
    _, _, d, _ = SIMULATORS[name]
    a, ta = _simulate(name, 30, random_state=seed)
    b, tb = _simulate(name, 30, precision_field=False, random_state=seed)
    assert b.fields == ["x", "y", "z"][:d] + ["site"]
    assert ak.array_equal(a[b.fields], b)  # the same localizations, errors included
    assert ta.tobytes() == tb.tobytes()  # the truth still has the mean precision


@pytest.mark.parametrize("name", ["npc_3d", "tetrahedron"])
@pytest.mark.parametrize("seed", SEEDS)
def test_axial_precision_given_directly(name, seed):
    particles, truth = _simulate(name, 150, precision=8.0, precision_z=20.0, random_state=seed)
    lateral, axial = _flat(particles, "precision"), _flat(particles, "precision_z")
    np.testing.assert_allclose(axial, 2.5 * lateral)
    assert abs(np.median(axial) / 20.0 - 1) < 0.03 and abs(np.median(lateral) / 8.0 - 1) < 0.03
    res, signal = _residuals(particles, truth, 3)
    assert abs(np.std(res[:, 2] / axial[signal]) - 1) < 0.04
    # the same as z_ratio = precision_z / precision
    same, _ = _simulate(name, 150, precision=8.0, z_ratio=2.5, random_state=seed)
    np.testing.assert_allclose(_flat(same, "z"), _flat(particles, "z"))


# ------------------------------------------------- structure parameter draws
@pytest.mark.parametrize("seed", SEEDS)
def test_two_state_draws_only_the_two_values(seed):
    spec = {"kind": "two_state", "values": (45.0, 60.0), "p": 0.3}
    _, truth = make_npc_2d(2000, radius=spec, mean_blinks=1.0, random_state=seed)
    values, counts = np.unique(truth["radius"], return_counts=True)
    assert values.tolist() == [45.0, 60.0]
    assert abs(counts[1] / 2000 - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 2000)
    _, truth = make_tetrahedron(20, height={"kind": "two_state", "values": [50, 90]}, n_localizations=20,
                                background=0, random_state=seed)
    assert set(truth["height"].tolist()) <= {50.0, 90.0}
    assert spec == {"kind": "two_state", "values": (45.0, 60.0), "p": 0.3}  # not modified


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_and_scipy_distributions(seed):
    n = 3000
    _, truth = make_npc_3d(n, height={"kind": "normal", "mean": 55.0, "std": 6.0}, mean_blinks=1.0, random_state=seed)
    h = truth["height"]
    assert abs(h.mean() - 55.0) < 4 * 6 / np.sqrt(n) and abs(h.std() / 6.0 - 1) < 0.05
    assert stats.kstest((h - 55.0) / 6.0, "norm").pvalue > 1e-3
    # a frozen scipy.stats distribution is drawn with the simulator's generator (the radius comes first)
    dist = stats.gamma(a=50.0, scale=1.0)
    _, truth = make_npc_2d(50, radius=dist, random_state=seed)
    np.testing.assert_array_equal(truth["radius"], dist.rvs(size=50, random_state=np.random.default_rng(seed)))
    # a uniform spec is the tuple
    _, a = make_npc_2d(20, radius={"kind": "uniform", "low": 40.0, "high": 60.0}, random_state=seed)
    _, b = make_npc_2d(20, radius=(40.0, 60.0), random_state=seed)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "func, kwargs, error, match",
    [
        (make_npc_2d, dict(radius={"kind": "lognormal", "mean": 1}), ValueError, r"needs 'kind' in \['normal'"),
        (make_npc_2d, dict(radius={"mean": 50, "std": 5}), ValueError, "needs 'kind' in"),
        (make_npc_2d, dict(radius={"kind": "normal", "mean": 50}), ValueError, r"lacks \['std'\]"),
        (make_npc_2d, dict(radius={"kind": "normal", "mean": 50, "std": 5, "sd": 1}), ValueError,
         r"unknown key\(s\) \['sd'\]"),
        (make_npc_2d, dict(radius={"kind": "normal", "mean": 50, "std": -5}), ValueError, r"radius\['std'\] must be in"),
        (make_npc_2d, dict(radius={"kind": "normal", "mean": -50, "std": 5}), ValueError, r"radius\['mean'\] must be in"),
        (make_npc_2d, dict(n_particles=200, radius={"kind": "normal", "mean": 5, "std": 5}), ValueError,
         r"radius must be finite and > 0 for every particle; particle \d+ has -"),
        (make_npc_2d, dict(radius={"kind": "uniform", "low": 60, "high": 40}), ValueError, "low must be <= high"),
        (make_npc_2d, dict(radius={"kind": "two_state", "values": (40, 50, 60)}), ValueError, "the two states"),
        (make_npc_2d, dict(radius={"kind": "two_state", "values": (40, 50), "p": 1.5}), ValueError,
         r"radius\['p'\] must be in \[0, 1\]"),
        (make_npc_2d, dict(radius={"kind": "two_state", "values": (0, 50)}), ValueError, r"radius\['values'\]\[0\]"),
        (make_npc_2d, dict(radius=stats.norm(-50, 1)), ValueError, "particle 0 has .* scipy.stats.truncnorm"),
        (make_npc_2d, dict(radius=stats.multivariate_normal([50, 50])), ValueError, "univariate"),
        (make_npc_2d, dict(radius={40, 60}), TypeError, "radius must be a number, a tuple"),
        (make_npc_2d, dict(blinking="poison"), ValueError, "blinking must be 'geometric'"),
        (make_npc_2d, dict(linkage_error=-1.0), ValueError, "linkage_error must be in"),
        (make_npc_2d, dict(precision_field="no"), TypeError, "precision_field must be True or False"),
        (make_npc_2d, dict(outlier_rate=1.5), ValueError, r"outlier_rate must be in \[0, 1\]"),
        (make_npc_2d, dict(outlier_count=0), ValueError, "outlier_count must be >= 1"),
        (make_npc_2d, dict(outlier_count=(3, 1)), ValueError, "low must be <= high"),
        (make_npc_2d, dict(outlier_count=1.5), TypeError, "outlier_count must be an int"),
        (make_npc_2d, dict(outlier_distance=(300.0, 150.0)), ValueError, "low must be <= high"),
        (make_npc_2d, dict(outlier_distance=-1.0), ValueError, "outlier_distance must be in"),
        (make_npc_2d, dict(tilt=10.0), TypeError, "unexpected keyword argument 'tilt'"),
        (make_npc_3d, dict(tilt=95.0), ValueError, r"tilt must be in \[0, 90\]"),
        (make_npc_3d, dict(tilt=10.0, rotation="3d"), ValueError, "tilt=10 applies to rotation='z' or None"),
        (make_npc_3d, dict(ring_twist=np.inf), ValueError, "ring_twist must be finite"),
        (make_npc_3d, dict(precision_z=20.0, z_ratio=2.0), ValueError, "either z_ratio"),
        (make_npc_3d, dict(precision_z=0.0), ValueError, "precision_z must be in"),
        (make_tetrahedron, dict(tilt=5.0, rotation="3d"), ValueError, "tilt=5 applies"),
        (make_tetrahedron, dict(blinking="geometric", n_localizations=10, background=8.0), ValueError,
         r"\(n_localizations - background\) / 4 = 0.5 < 1"),
        (make_tetrahedron, dict(edge={"kind": "normal", "mean": 100}), ValueError, r"edge = .* lacks \['std'\]"),
    ],
)
def test_nuisance_validation(func, kwargs, error, match):
    kwargs = {"n_particles": 3, **kwargs}
    n = kwargs.pop("n_particles")
    with pytest.raises(error, match=match):
        func(n, **kwargs)


# -------------------------------------------------------------------- scenarios
def test_scenario_family_spans_the_structures_and_holds_out_a_third():
    names = list_scenarios()
    assert names == list(SCENARIOS) and 10 <= len(names) <= 16
    held = list_scenarios(held_out=True)
    assert 0.25 <= len(held) / len(names) <= 0.4
    assert set(held) | set(list_scenarios(held_out=False)) == set(names)
    for structure in ("npc_2d", "npc_3d", "tetrahedron"):
        mine = list_scenarios(structure=structure)
        assert mine and all(SCENARIOS[n].structure == structure for n in mine)
        assert set(mine) & set(held) and set(mine) - set(held)  # held-out and visible ones in every structure
    # the hard 3D case: 8 nm lateral, 20 nm axial, no precision field
    hard = [s for s in SCENARIOS.values() if s.params.get("precision_z") == 20.0 and s.params.get("precision_field") is False]
    assert len(hard) == 1 and hard[0].structure == "npc_3d"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_and_its_homogeneous_twin(name):
    scenario = SCENARIOS[name]
    n = 40 if scenario.structure != "tetrahedron" else 6
    particles, truth = make_scenario(name, n, random_state=1)
    again, truth2 = make_scenario(name, n, random_state=1)
    assert ak.array_equal(particles, again) and truth.tobytes() == truth2.tobytes()
    assert len(particles) == n
    for column in scenario.varying:
        assert truth[column].std() > 0
    flat_particles, flat = make_scenario(name, n, random_state=1, homogeneous=True)
    params = scenario.homogeneous_params()
    for column in scenario.varying:
        np.testing.assert_array_equal(flat[column], params[column])
        assert isinstance(params[column], float)
    # the nuisances are kept
    assert flat_particles.fields == particles.fields
    assert {k: params[k] for k in scenario.nuisances} == scenario.nuisances


def test_homogeneous_is_the_mean_of_each_distribution():
    means = {name: SCENARIOS[name].homogeneous_params() for name in SCENARIOS}
    assert means["npc2d_default"]["radius"] == 50.0
    assert means["npc2d_two_state"]["radius"] == 51.5
    assert means["npc3d_default"]["height"] == 55.0 and means["npc3d_default"]["ring_twist"] == 0.0
    assert means["npc3d_twist"]["ring_twist"] == 7.5
    assert means["tetra_gaussian"]["height"] == 70.0 and means["tetra_default"]["edge"] == 100.0
    s = Scenario("t", "npc_2d", "", {"radius": stats.norm(48.0, 2.0)}, ("radius",))
    assert s.homogeneous_params()["radius"] == 48.0


def test_scenario_errors():
    with pytest.raises(ValueError, match="unknown scenario 'npc2d_defualt'. Did you mean 'npc2d_default'"):
        make_scenario("npc2d_defualt", 5)
    with pytest.raises(ValueError, match="unknown scenario 3"):
        make_scenario(3, 5)
    with pytest.raises(TypeError, match="homogeneous must be True or False"):
        make_scenario("npc2d_default", 5, homogeneous="yes")
    with pytest.raises(ValueError, match="structure must be None or one of"):
        list_scenarios(structure="npc")
    with pytest.raises(ValueError, match=r"\['tilt'\] are not keywords of make_npc_2d"):
        Scenario("bad", "npc_2d", "", {"tilt": 5.0}, ("radius",))
    with pytest.raises(ValueError, match="varying must name structure parameters"):
        Scenario("bad", "npc_3d", "", {}, ("tilt",))
    with pytest.raises(TypeError):
        SCENARIOS["x"] = SCENARIOS["npc2d_default"]  # read-only
