"""pose_reproducibility: the group angle against a naive reference, then properties of the halves' poses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.exceptions import NotFittedError
from test_fuser import random_rotations, ring_particles

from pcvae_sklearn.datasets import make_npc_3d
from pcvae_sklearn import as_particles
from pcvae_sklearn.fuse import ParticleFuser, model_twins, pose_reproducibility
from pcvae_sklearn.fuse._poses import group_angles

SEEDS = [0, 1, 2]


def group_angles_reference(rotations, group):
    """The smallest angle of ``g^T R`` over the group, one rotation and one element at a time."""
    out = []
    for r in rotations:
        best = np.inf
        for g in group:
            m = g.T @ r
            if m.shape[0] == 2:
                angle = abs(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
            else:
                angle = np.degrees(np.linalg.norm(Rotation.from_matrix(m).as_rotvec()))
            best = min(best, angle)
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_group_angles_match_the_naive_reference(d, seed):
    rng = np.random.default_rng(seed)
    rotations, group = random_rotations(50, d, rng), random_rotations(5, d, rng)
    group[0] = np.eye(d)
    np.testing.assert_allclose(group_angles(rotations, group), group_angles_reference(rotations, group), atol=1e-5)
    np.testing.assert_allclose(group_angles(group, group), 0.0, atol=1e-5)


def asymmetric_particles(n, seed, *, per_site=15, jitter=2.0):
    """A 2D structure of four sites without symmetry, each particle turned and shifted at random."""
    rng = np.random.default_rng(seed)
    sites = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 25.0], [15.0, 10.0]])
    out = []
    for angle in rng.uniform(0, 2 * np.pi, n):
        c, s = np.cos(angle), np.sin(angle)
        locs = np.repeat(sites, per_site, axis=0) + rng.normal(0, jitter, (len(sites) * per_site, 2))
        out.append(locs @ np.array([[c, -s], [s, c]]).T + rng.normal(0, 5, 2))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_halves_of_a_structure_agree_and_halves_of_noise_do_not(seed):
    X = asymmetric_particles(20, seed)
    fuser = ParticleFuser(random_state=seed).fit(X)
    assert pose_reproducibility(X, fuser, random_state=seed).median < 3.0
    # blobs without structure: nothing fixes their pose
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(0, 15, (60, 2)) for _ in range(20)]
    fuser = ParticleFuser(random_state=seed).fit(blobs)
    assert pose_reproducibility(blobs, fuser, random_state=seed).median > 20.0


@pytest.mark.parametrize("seed", SEEDS)
def test_twins_fix_their_poses_as_the_model_allows(seed):
    X = asymmetric_particles(20, seed)
    fuser = ParticleFuser(random_state=seed).fit(X)
    good = pose_reproducibility(X, fuser, random_state=seed)
    assert good.twin_median < 3.0 and good.ratio < 2.0, good
    # particles unlike the model (blobs, registered onto the structure's model): their halves end far apart,
    # their twins (drawn from the model with the blobs' counts) as close as the structure's own
    rng = np.random.default_rng(seed)
    blobs = [rng.normal(0, 15, (60, 2)) for _ in range(20)]
    bad = pose_reproducibility(blobs, fuser, random_state=seed)
    assert bad.twin_median < 3.0 and bad.ratio > 5.0, bad


def fitted_model(d, centres, sigma2, *, axial_excess=0.0, precision_spread=0.0, mode=None):
    """A ParticleFuser whose fitted model is set by hand: what model_twins reads."""
    fuser = ParticleFuser()
    fuser.centres_, fuser.sigma2_, fuser.n_dims_ = np.asarray(centres, dtype=float), float(sigma2), d
    fuser.axial_excess_, fuser.precision_spread_ = float(axial_excess), float(precision_spread)
    fuser._mode_ = mode or ("2d" if d == 2 else "3d")
    return fuser


@pytest.mark.parametrize("seed", SEEDS)
def test_model_twins_lie_on_the_model_turned_by_their_rotations(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 30, (6, 3))
    X = [rng.normal(0, 1, (n, 3)) for n in rng.integers(5, 40, 25)]
    for mode in ("3d", "z"):
        fuser = fitted_model(3, centres, 1e-10, mode=mode)
        twins, rotations = model_twins(X, fuser, random_state=seed)
        assert [len(t) for t in twins] == [len(x) for x in X]
        for twin, r in zip(as_particles(twins).to_list(), rotations):
            np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
            back = twin @ r  # every localization back on a centre
            assert np.sqrt(((back[:, None] - centres[None]) ** 2).sum(-1)).min(axis=1).max() < 1e-3
        if mode == "z":
            np.testing.assert_allclose(rotations[:, 2], np.tile([0, 0, 1.0], (25, 1)), atol=1e-12)


def test_model_twins_noise_is_the_models_variance():
    # one centre at the origin: a twin's coordinates are its noise, in its own (observed) frame
    n, m = 200, 500
    fuser = fitted_model(3, np.zeros((1, 3)), 16.0, axial_excess=48.0)
    twins, _ = model_twins([np.zeros((m, 3))] * n, fuser, random_state=0)
    coords = as_particles(twins).coords
    np.testing.assert_allclose(coords.var(axis=0), [16.0, 16.0, 64.0], rtol=0.02)
    # the precision fields add each localization's own variance, and travel along unchanged
    precision = np.repeat(np.linspace(1.0, 6.0, n), m)
    with_fields = as_particles([np.zeros((m, 3))] * n).replace(fields={"precision": precision})
    twins, _ = model_twins(with_fields, fitted_model(3, np.zeros((1, 3)), 16.0), random_state=0)
    out = as_particles(twins)
    np.testing.assert_array_equal(out.fields["precision"], precision)
    np.testing.assert_allclose(out.coords.var(axis=0), 16.0 + np.mean(precision**2), rtol=0.02)
    # without them, a lognormal scale of mean 1: the same variance, heavier tails
    twins, _ = model_twins([np.zeros((m, 2))] * n, fitted_model(2, np.zeros((1, 2)), 16.0, precision_spread=0.45),
                           random_state=0)
    coords = as_particles(twins).coords
    np.testing.assert_allclose(coords.var(axis=0), 16.0, rtol=0.03)
    kurtosis = (coords**4).mean(axis=0) / coords.var(axis=0) ** 2
    assert np.all(kurtosis > 3.0 * np.exp(4 * 0.45**2) * 0.95), kurtosis  # 3 E[s^4] for a Gaussian scale mixture


@pytest.mark.parametrize("seed", SEEDS)
def test_a_symmetry_counts_turned_copies_as_one_pose(seed):
    X, _ = ring_particles(30, seed, per_site=12, jitter=2.0)
    fuser = ParticleFuser(n_components=16, random_state=seed).fit(X)
    plain = pose_reproducibility(X, fuser, symmetry=1, random_state=seed)
    folded = pose_reproducibility(X, fuser, symmetry=8, random_state=seed)
    assert np.all(folded.angles <= plain.angles + 1e-9)  # the group holds the identity
    assert np.all(folded.angles <= 22.5 + 1e-9)  # no 2D pose is further than half a turn of 45 degrees
    assert folded.median < 5.0
    assert len(folded.group) == 8


def test_3d_pores_turned_upside_down_count_as_one_pose_with_mirror():
    X, _ = make_npc_3d(30, radius=50.0, height=50.0, rotation="3d", dol=0.9, mean_blinks=10, random_state=0)
    fuser = ParticleFuser(n_components=32, symmetry=8, random_state=0).fit(X)
    cyclic = pose_reproducibility(X, fuser, random_state=0)
    dihedral = pose_reproducibility(X, fuser, mirror=True, random_state=0)
    assert len(cyclic.group) == 8 and len(dihedral.group) == 16
    np.testing.assert_allclose(dihedral.group[:8], cyclic.group)
    assert np.all(dihedral.angles <= cyclic.angles + 1e-9)
    assert dihedral.median < 5.0
    # every element maps the fused centres close onto themselves (the axis is z, the fuser imposed it)
    centres = fuser.centres_ - fuser.centres_.mean(axis=0)
    for g in dihedral.group:
        turned = centres @ g.T
        nearest = np.sqrt(((turned[:, None] - centres[None]) ** 2).sum(-1).min(axis=1))
        assert np.median(nearest) < 5.0


def test_the_split_is_seeded_and_leaves_the_input_alone():
    X = asymmetric_particles(12, 0)
    before = [x.copy() for x in X]
    fuser = ParticleFuser(random_state=0).fit(X)
    a = pose_reproducibility(X, fuser, random_state=3)
    b = pose_reproducibility(X, fuser, random_state=3)
    np.testing.assert_array_equal(a.angles, b.angles)
    np.testing.assert_array_equal(a.twin_angles, b.twin_angles)
    for x, y in zip(X, before):
        np.testing.assert_array_equal(x, y)
    assert "median=" in repr(a) and "twins" in repr(a)
    # the particles' split does not depend on the twins
    alone = pose_reproducibility(X, fuser, twins=False, random_state=3)
    np.testing.assert_array_equal(alone.angles, a.angles)
    assert alone.twin_angles is None and np.isnan(alone.twin_median) and np.isnan(alone.ratio)
    assert "twins" not in repr(alone)


def test_particles_too_small_to_split_get_nan_and_are_named():
    X = asymmetric_particles(12, 0)
    fuser = ParticleFuser(random_state=0).fit(X)
    small = X[:5] + [X[5][:3]] + X[6:]
    with pytest.warns(UserWarning, match="particle 5: fewer than 4 localizations"):
        out = pose_reproducibility(small, fuser, random_state=0)
    assert np.isnan(out.angles[5]) and np.isfinite(np.delete(out.angles, 5)).all()
    with pytest.warns(UserWarning, match="too few to split"):
        none = pose_reproducibility([x[:3] for x in X], fuser, random_state=0)
    assert np.isnan(none.angles).all()


def test_bad_settings_are_refused():
    X = asymmetric_particles(12, 0)
    with pytest.raises(NotFittedError):
        pose_reproducibility(X, ParticleFuser())
    fuser = ParticleFuser(random_state=0).fit(X)
    for bad in (0, -8, 2.5, True, "8"):
        with pytest.raises(ValueError, match="symmetry must be a positive integer"):
            pose_reproducibility(X, fuser, symmetry=bad)
    with pytest.raises(ValueError, match="mirror=True needs 3D particles"):
        pose_reproducibility(X, fuser, symmetry=8, mirror=True)
    with pytest.raises(ValueError):
        pose_reproducibility([np.c_[x, np.zeros(len(x))] for x in X], fuser)  # 3D particles, a 2D fit
