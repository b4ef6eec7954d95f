"""The anisotropic-precision kernels of the joint registration (3D, full rotations).

Under full 3D rotations a localization's axial precision is fixed in its own
particle's frame and turns with the particle. Every fast kernel is checked
against a naive reference (scipy densities, numerical optimisation) on ragged
input, over several seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar
from scipy.spatial.transform import Rotation
from scipy.stats import multivariate_normal

from pcvae_sklearn._ragged import apply_transforms
from pcvae_sklearn.fuse._anisotropic import (
    OwnFrameVariances,
    anisotropic_procrustes,
    e_step_anisotropic,
    local_precisions,
    rodrigues,
    update_centres_anisotropic,
    update_sigma2_anisotropic,
)
from pcvae_sklearn.fuse._em import CommonFrameVariances, EMState, e_step, particle_loglik, run_em

from _reference_fuse import anisotropic_procrustes_reference, e_step_anisotropic_reference

SEEDS = [0, 1, 2, 3]


def ragged(seed, n=4, k=5):
    """Ragged 3D particles with per-axis variances (z worse) and random rotations."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 12, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = np.repeat(np.arange(n), lengths)
    m = int(offsets[-1])
    src = rng.normal(scale=20.0, size=(m, 3))
    own_var = rng.uniform(1.0, 10.0, size=(m, 3))
    own_var[:, 2] *= rng.uniform(2.0, 8.0)
    rotations = Rotation.random(n, random_state=seed).as_matrix()
    translations = rng.normal(scale=3.0, size=(n, 3))
    centres = rng.normal(scale=20.0, size=(k, 3))
    return rng, lengths, offsets, index, src, own_var, rotations, translations, centres


@pytest.mark.parametrize("seed", SEEDS)
def test_local_precisions_invert_the_turned_covariance(seed):
    _, _, _, index, _, own_var, rotations, _, _ = ragged(seed)
    precision, inv, logdet = local_precisions(rotations, index, own_var, 7.0)
    rot = rotations[index]
    covariance = rot @ (np.eye(3) * (7.0 + own_var)[:, None, :]) @ np.transpose(rot, (0, 2, 1))
    np.testing.assert_allclose(precision @ covariance, np.broadcast_to(np.eye(3), covariance.shape), atol=1e-12)
    np.testing.assert_allclose(logdet, np.log(np.linalg.det(covariance)), rtol=1e-12)
    np.testing.assert_allclose(inv, 1.0 / (7.0 + own_var))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("outlier", [False, True])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-6)])
def test_anisotropic_e_step_matches_scipy_densities(seed, outlier, dtype, tol):
    _, lengths, _, index, src, own_var, rotations, translations, centres = ragged(seed)
    registered = apply_transforms(src, rotations, translations, lengths)
    precision, _, logdet = local_precisions(rotations, index, own_var, 5.0)
    mixture = (np.log(0.9), np.log(0.1 / 1e6)) if outlier else (0.0, -np.inf)
    fast = e_step_anisotropic(registered, precision, logdet, centres, mixture, dtype=dtype)
    ref_resp, ref_ll = e_step_anisotropic_reference(registered, np.linalg.inv(precision), centres, mixture)
    np.testing.assert_allclose(fast.dense(), ref_resp, atol=tol)
    np.testing.assert_allclose(fast.loglik, ref_ll, rtol=tol)


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_e_step_reduces_to_isotropic_one(seed):
    """With the same variance on every axis the rotation drops out: the plain E-step."""
    _, lengths, _, index, src, own_var, rotations, translations, centres = ragged(seed)
    iso = np.repeat(own_var.mean(axis=1, keepdims=True), 3, axis=1)
    registered = apply_transforms(src, rotations, translations, lengths)
    precision, _, logdet = local_precisions(rotations, index, iso, 5.0)
    mixture = (np.log(0.95), np.log(0.05 / 1e6))
    a = e_step_anisotropic(registered, precision, logdet, centres, mixture, dtype=np.float64)
    b = e_step(registered, iso, centres, 5.0, mixture, dtype=np.float64)
    np.testing.assert_allclose(a.dense(), b.dense(), atol=1e-10)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-10)


def _expected_loglik(registered, covariance, resp, centres):
    """``sum_ik r_ik log N(y_i; x_k, C_i)`` with numpy's slogdet and solve (a direct transcription)."""
    diff = registered[:, None, :] - centres[None, :, :]  # (m, K, d)
    sol = np.linalg.solve(covariance[:, None], diff[..., None])[..., 0]
    _, logdet = np.linalg.slogdet(covariance)
    d = registered.shape[1]
    logpdf = -0.5 * ((diff * sol).sum(-1) + logdet[:, None] + d * np.log(2 * np.pi))
    return float((resp * logpdf).sum())


def test_expected_loglik_helper_matches_scipy():
    _, lengths, _, index, src, own_var, rotations, translations, centres = ragged(0, n=2, k=3)
    registered = apply_transforms(src, rotations, translations, lengths)
    covariance = np.linalg.inv(local_precisions(rotations, index, own_var, 3.0)[0])
    resp = np.random.default_rng(0).uniform(size=(len(registered), len(centres)))
    ref = sum(resp[i, k] * multivariate_normal.logpdf(registered[i], centres[k], covariance[i])
              for i in range(len(registered)) for k in range(len(centres)))
    np.testing.assert_allclose(_expected_loglik(registered, covariance, resp, centres), ref, rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_centre_and_variance_updates_maximise_the_expected_loglik(seed):
    _, lengths, _, index, src, own_var, rotations, translations, centres = ragged(seed)
    registered = apply_transforms(src, rotations, translations, lengths)
    sigma2 = 30.0
    precision, _, logdet = local_precisions(rotations, index, own_var, sigma2)
    resp = e_step_anisotropic(registered, precision, logdet, centres, (0.0, -np.inf))
    dense = resp.dense()
    covariance = np.linalg.inv(precision)

    new_centres = update_centres_anisotropic(registered, precision, resp, centres)
    res = minimize(lambda c: -_expected_loglik(registered, covariance, dense, c.reshape(-1, 3)), centres.ravel(),
                   method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(new_centres, res.x.reshape(-1, 3), atol=1e-3)
    # the closed form is the exact maximiser: at least as good as the numerical one
    assert _expected_loglik(registered, covariance, dense, new_centres) >= -res.fun - 1e-9

    def negative(log_s2):
        cov = np.linalg.inv(local_precisions(rotations, index, own_var, float(np.exp(log_s2)))[0])
        return -_expected_loglik(registered, cov, dense, new_centres)

    ref = np.exp(minimize_scalar(negative, bounds=(-8.0, 10.0), method="bounded", options={"xatol": 1e-10}).x)
    fast = update_sigma2_anisotropic(registered, rotations, index, own_var, resp, new_centres, sigma2, 1e-9,
                                     n_fixed_point=500)
    np.testing.assert_allclose(fast, ref, rtol=1e-5)


def test_rodrigues_matches_scipy():
    omega = np.random.default_rng(0).normal(size=(20, 3))
    omega[0] = 0.0
    np.testing.assert_allclose(rodrigues(omega), Rotation.from_rotvec(omega).as_matrix(), atol=1e-12)


def _cost(rot, trans, src, dst, weights, offsets):
    out = []
    for j in range(len(offsets) - 1):
        sl = slice(offsets[j], offsets[j + 1])
        out.append(float((weights[sl] * ((dst[sl] - trans[j]) @ rot[j] - src[sl]) ** 2).sum()))
    return np.array(out)


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_procrustes_matches_numerical_optimum(seed):
    rng, lengths, offsets, _, _, _, rotations, translations, _ = ragged(seed, n=3)
    lengths = rng.integers(8, 20, size=3)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    m = int(offsets[-1])
    src = rng.normal(scale=20.0, size=(m, 3))
    dst = apply_transforms(src, rotations, translations, lengths) + rng.normal(scale=2.0, size=(m, 3))
    weights = rng.uniform(0.1, 2.0, size=(m, 3))
    eye = np.broadcast_to(np.eye(3), (3, 3, 3)).copy()
    rot, trans, total = anisotropic_procrustes(src, dst, weights, offsets, eye, np.zeros((3, 3)), n_steps=8)
    ref_rot, ref_trans = anisotropic_procrustes_reference(src, dst, weights, offsets)
    np.testing.assert_allclose(_cost(rot, trans, src, dst, weights, offsets),
                               _cost(ref_rot, ref_trans, src, dst, weights, offsets), rtol=1e-7)
    np.testing.assert_allclose(rot, ref_rot, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    np.testing.assert_allclose(total, np.add.reduceat(weights.mean(axis=1), offsets[:-1]))


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_procrustes_never_worse_than_its_start(seed):
    """A guarded step: one Gauss-Newton step from any start can only lower every particle's cost."""
    rng, lengths, offsets, _, src, own_var, rotations, translations, _ = ragged(seed)
    dst = rng.normal(scale=20.0, size=src.shape)  # no good fit exists
    weights = 1.0 / own_var
    start = _cost(rotations, translations, src, dst, weights, offsets)
    rot, trans, _ = anisotropic_procrustes(src, dst, weights, offsets, rotations, translations, n_steps=1)
    assert np.all(_cost(rot, trans, src, dst, weights, offsets) <= start + 1e-9)


def _em_problem(seed, n=12):
    rng = np.random.default_rng(seed)
    model = rng.normal(scale=25.0, size=(10, 3))
    lengths = rng.integers(20, 40, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    truth = Rotation.random(n, random_state=seed).as_matrix()
    own_var = np.tile([4.0, 4.0, 40.0], (int(offsets[-1]), 1))
    pts = model[rng.integers(0, len(model), size=int(offsets[-1]))]
    index = np.repeat(np.arange(n), lengths)
    # observed in each particle's own frame, with the axial noise along that frame's z
    src = np.einsum("mba,mb->ma", truth[index], pts) + rng.normal(size=pts.shape) * np.sqrt(own_var)
    src -= np.repeat(np.add.reduceat(src, offsets[:-1]) / lengths[:, None], lengths, axis=0)
    state = EMState(truth.copy(), np.zeros((n, 3)), model + rng.normal(scale=2.0, size=model.shape), 50.0)
    return src, own_var, offsets, state


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_em_is_monotone(seed):
    src, own_var, offsets, state = _em_problem(seed)
    mixture = (np.log(0.95), np.log(0.05 / 1e6))
    objectives = [
        run_em(src, offsets, state, mixture, OwnFrameVariances(own_var, offsets), max_iter=k, tol=-np.inf,
               floor=1e-6).objective
        for k in range(1, 9)
    ]
    assert np.all(np.diff(objectives) >= -1e-9), objectives


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_em_equals_isotropic_em_on_isotropic_precision(seed):
    src, own_var, offsets, state = _em_problem(seed)
    iso = np.full_like(own_var, 9.0)
    mixture = (np.log(0.95), np.log(0.05 / 1e6))
    # a fixed number of iterations: with a tolerance, a gain within rounding of it can stop one run an
    # iteration before the other
    kw = dict(max_iter=20, tol=-np.inf, floor=1e-6)
    a = run_em(src, offsets, state, mixture, CommonFrameVariances(iso), **kw)
    b = run_em(src, offsets, state, mixture, OwnFrameVariances(iso, offsets), **kw)
    assert a.n_iter == b.n_iter == 20
    # the two kernels round differently in the float32 responsibilities (WEIGHTS_DTYPE)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-7)
    np.testing.assert_allclose(a.rotations, b.rotations, atol=1e-5)
    np.testing.assert_allclose(a.centres, b.centres, atol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["common", "own"])
def test_registration_onto_fixed_centres_treats_every_particle_alone(seed, kind):
    """With the centres fixed every particle stops on its own: registered alone, it gets the same transform."""
    src, own_var, offsets, state = _em_problem(seed)
    n = len(offsets) - 1

    def variances(rows, off):
        if kind == "own":
            return OwnFrameVariances(own_var[rows], off)
        return CommonFrameVariances(np.repeat(own_var[rows].mean(axis=1, keepdims=True), 3, axis=1))

    # starts 5 to 40 degrees off, so that the particles need different numbers of iterations
    tilt = Rotation.from_rotvec(np.radians(np.linspace(5, 40, n))[:, None] * np.array([[0.6, 0.0, 0.8]])).as_matrix()
    start = EMState(tilt @ state.rotations, np.zeros((n, 3)), state.centres, state.sigma2)
    mixture = (np.log(0.95), np.log(0.05 / 1e6))
    kw = {"max_iter": 300, "tol": 1e-7, "floor": 0.0, "fit_centres": False}
    every = np.arange(offsets[-1])
    joint = run_em(src, offsets, start, mixture, variances(every, offsets), **kw)
    iterations = []
    for j in range(n):
        rows = every[offsets[j]:offsets[j + 1]]
        one = np.array([0, len(rows)])
        alone = run_em(src[rows], one, EMState(start.rotations[j:j + 1], start.translations[j:j + 1], state.centres,
                                               state.sigma2), mixture, variances(rows, one), **kw)
        iterations.append(alone.n_iter)
        np.testing.assert_allclose(joint.rotations[j], alone.rotations[0], atol=1e-5)
        np.testing.assert_allclose(joint.translations[j], alone.translations[0], atol=1e-4)
    assert len(set(iterations)) > 1, iterations  # the particles did stop at different iterations
    assert joint.n_iter == max(iterations)
    gain = particle_loglik(src, offsets, joint, mixture, variances(every, offsets)) - particle_loglik(
        src, offsets, start, mixture, variances(every, offsets))
    assert (gain > -1e-6).all()


@pytest.mark.parametrize("max_iter", [1, 2, 300])
@pytest.mark.parametrize("kind", ["common", "own"])
def test_registration_onto_fixed_centres_reports_each_particles_likelihood(max_iter, kind):
    """The per-particle log-likelihoods it hands back are those of the transforms it returns, also when
    ``max_iter`` stops particles that were still moving, and an empty particle scores 0."""
    src, own_var, offsets, state = _em_problem(3)
    keep = np.ones(len(src), dtype=bool)
    keep[offsets[1]:offsets[2]] = False  # an empty particle among the others
    src, own_var = src[keep], own_var[keep]
    lengths = np.diff(offsets)
    lengths[1] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = len(lengths)
    variances = (OwnFrameVariances(own_var, offsets) if kind == "own"
                 else CommonFrameVariances(np.repeat(own_var.mean(axis=1, keepdims=True), 3, axis=1)))
    tilt = Rotation.from_rotvec(np.radians(np.linspace(5, 40, n))[:, None] * np.array([[0.6, 0.0, 0.8]])).as_matrix()
    start = EMState(tilt @ state.rotations, np.zeros((n, 3)), state.centres, state.sigma2)
    mixture = (np.log(0.95), np.log(0.05 / 1e6))
    out = run_em(src, offsets, start, mixture, variances, max_iter=max_iter, tol=1e-7, floor=0.0, fit_centres=False)
    expected = particle_loglik(src, offsets, out, mixture, variances)
    assert out.particle_ll[1] == 0.0
    np.testing.assert_allclose(out.particle_ll, expected, rtol=1e-9, atol=1e-6)
    assert out.objective == pytest.approx(expected.sum() / len(src), rel=1e-9)


def test_own_frame_variances_are_for_3d_localizations():
    _, own_var, offsets, _ = _em_problem(0)
    with pytest.raises(ValueError, match=r"3D localizations under full 3D rotations: shape \(\d+, 3\)"):
        OwnFrameVariances(own_var[:, :2], offsets)
    with pytest.raises(ValueError, match="own_var has shape"):
        OwnFrameVariances(own_var[1:], offsets)


@pytest.mark.parametrize("seed", SEEDS)
def test_optical_axis_alignment_turns_the_mean_axis_onto_z(seed):
    from pcvae_sklearn.fuse._frames import _optical_axis_alignment

    rng = np.random.default_rng(seed)
    tilt = Rotation.from_rotvec(rng.normal(scale=0.4, size=3)).as_matrix()
    about_z = Rotation.from_euler("z", rng.uniform(0, 2 * np.pi, size=(40, 1))).as_matrix()
    align = _optical_axis_alignment(tilt @ about_z)
    np.testing.assert_allclose(align @ align.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(align), 1.0)
    np.testing.assert_allclose((align @ tilt @ about_z)[:, 2, 2], 1.0, atol=1e-10)
    # axes pointing every way: nothing to preserve, the frame is left alone
    every_way = Rotation.random(2000, random_state=seed).as_matrix()
    flipped = tilt @ about_z @ np.diag([1.0, -1.0, -1.0])  # half of them upside down: the same axis
    both = np.concatenate([tilt @ about_z, flipped[:15]])
    np.testing.assert_allclose(np.abs((_optical_axis_alignment(both) @ both)[:, 2, 2]), 1.0, atol=1e-10)
    np.testing.assert_array_equal(_optical_axis_alignment(every_way), np.eye(3))


@pytest.mark.parametrize("seed", [0, 1])
def test_full_3d_fusion_keeps_the_optical_axis(seed):
    """Pores picked upright (rotated about z only), fused with full 3D rotations: the super-particle's z stays z."""
    from pcvae_sklearn.datasets import make_npc_3d
    from pcvae_sklearn.fuse import ParticleFuser

    X, _ = make_npc_3d(30, rotation="z", random_state=seed)
    fuser = ParticleFuser(rotation="full", n_restarts=1, random_state=seed).fit(X)
    # a pore may be registered upside down (its two rings are alike): the axis is compared without sign
    tilt = np.degrees(np.arccos(np.clip(np.abs(fuser.rotations_[:, 2, 2]), 0.0, 1.0)))
    assert np.median(tilt) < 6.0, np.percentile(tilt, [50, 90])  # registration noise: ~3-4 deg; unaligned: 9 deg


def _pores(seed, z_ratio, precision_field=False, n=30):
    from pcvae_sklearn.datasets import make_npc_3d

    return make_npc_3d(n, radius=50.0, height=50.0, rotation="3d", precision=5.0, precision_spread=0.0,
                       z_ratio=z_ratio, precision_field=precision_field, random_state=seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_axial_excess_is_estimated_where_the_file_has_no_precision(seed):
    from pcvae_sklearn.fuse import ParticleFuser

    X, _ = _pores(seed, z_ratio=4.0)  # 5 nm lateral, 20 nm axial: an excess of 375 nm^2 along each particle's z
    fuser = ParticleFuser(n_restarts=1, random_state=seed).fit(X)
    assert 150.0 < fuser.axial_excess_ < 800.0, fuser.axial_excess_
    iso = ParticleFuser(n_restarts=1, random_state=seed).fit(_pores(seed, z_ratio=1.0)[0])
    assert iso.axial_excess_ <= 1.0 * iso.sigma2_  # isotropic data: at most a grid step, never the excess above


def test_axial_excess_stays_zero_with_precision_fields_and_in_2d():
    from pcvae_sklearn.datasets import make_npc_2d
    from pcvae_sklearn.fuse import ParticleFuser

    X, _ = _pores(0, z_ratio=4.0, precision_field=True, n=12)
    assert ParticleFuser(n_restarts=1, random_state=0).fit(X).axial_excess_ == 0.0
    assert ParticleFuser(rotation="z", n_restarts=1, random_state=0).fit(X).axial_excess_ == 0.0
    X2, _ = make_npc_2d(12, random_state=0)
    assert ParticleFuser(n_restarts=1, random_state=0).fit(X2).axial_excess_ == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_axial_excess_never_lowers_the_likelihood(seed):
    from pcvae_sklearn._input import as_particles
    from pcvae_sklearn.fuse._steps import _estimate_axial_excess

    X, truth = _pores(seed, z_ratio=3.0, n=15)
    p = as_particles(X)
    src = p.coords - np.repeat(p.centroids(), p.lengths, axis=0)
    start = EMState(truth["rotation"].transpose(0, 2, 1).copy(), np.zeros((p.n_particles, 3)),
                    (truth["sites"][0] - truth["offset"][0]) @ truth["rotation"][0], 60.0)
    mixture = (np.log(0.99), np.log(0.01 / (4 / 3 * np.pi * 200.0**3)))
    iso = run_em(src, p.offsets, start, mixture, CommonFrameVariances(np.zeros_like(src)), max_iter=50, tol=1e-5,
                 floor=1e-3)
    excess, out = _estimate_axial_excess(src, p.offsets, iso, mixture, mode="3d", max_iter=50, tol=1e-5, floor=1e-3)
    assert excess > 0 and out.objective >= iso.objective


def test_axial_excess_about_z_is_estimated_along_the_common_z():
    """Pores turning about z only, 5 nm lateral and 20 nm axial error, no precision field."""
    from pcvae_sklearn.datasets import make_npc_3d
    from pcvae_sklearn.fuse import ParticleFuser

    X, _ = make_npc_3d(30, radius=50.0, height=50.0, rotation="z", precision=5.0, precision_spread=0.0, z_ratio=4.0,
                       precision_field=False, random_state=0)
    fuser = ParticleFuser(rotation="z", n_restarts=1, random_state=0).fit(X)
    assert 150.0 < fuser.axial_excess_ < 800.0, fuser.axial_excess_
    assert np.allclose(fuser.rotations_[:, 2], [0.0, 0.0, 1.0])  # still turned about z only
    R, _ = fuser.register(X[:5])
    turn = np.arctan2(R[:, 1, 0], R[:, 0, 0]) - np.arctan2(fuser.rotations_[:5, 1, 0], fuser.rotations_[:5, 0, 0])
    off = np.degrees(np.angle(np.exp(8j * turn))) / 8  # the pore's 8-fold symmetry
    assert np.abs(off).max() < 2, off


@pytest.mark.parametrize("seed", [0, 1])
def test_axial_excess_is_estimated_where_the_file_has_no_axial_precision(seed):
    """A lateral ``precision`` but no ``precision_z``: the axial spread is estimated on top of the lateral one."""
    from pcvae_sklearn.fuse import ParticleFuser

    X, _ = _pores(seed, z_ratio=4.0, precision_field=True)  # 5 nm lateral, 20 nm axial: 375 nm^2 more along z
    assert {"precision", "precision_z"} <= set(X.fields)
    lateral = X[[f for f in X.fields if f != "precision_z"]]
    fuser = ParticleFuser(n_restarts=1, random_state=seed).fit(lateral)
    assert 150.0 < fuser.axial_excess_ < 800.0, fuser.axial_excess_
    # the lateral precision is still used: the shared variance holds the rest, not the whole 25 nm^2 again
    plain = ParticleFuser(n_restarts=1, use_precision=False, random_state=seed).fit(lateral)
    assert fuser.sigma2_ < plain.sigma2_ - 10.0, (fuser.sigma2_, plain.sigma2_)
    iso = _pores(seed, z_ratio=1.0, precision_field=True)[0]
    iso = ParticleFuser(n_restarts=1, random_state=seed).fit(iso[[f for f in iso.fields if f != "precision_z"]])
    assert iso.axial_excess_ <= 1.0 * (iso.sigma2_ + 25.0)  # isotropic data: at most a grid step


def test_register_uses_the_axial_excess_over_the_lateral_precision():
    """``register`` adds the fitted axial excess on top of each localization's lateral precision."""
    from test_fuser import dihedral_3d, errors_3d

    from pcvae_sklearn.fuse import ParticleFuser

    X, truth = _pores(0, z_ratio=4.0, precision_field=True)
    lateral = X[[f for f in X.fields if f != "precision_z"]]
    fuser = ParticleFuser(n_restarts=1, random_state=0).fit(lateral)
    assert fuser.axial_excess_ > 0
    fitted = errors_3d(fuser.rotations_, truth["rotation"], dihedral_3d(8))
    R, _ = fuser.register(lateral[:10])
    err = errors_3d(R, truth["rotation"][:10], dihedral_3d(8))
    assert np.median(err) < 5.0, (err, fitted[:10])
