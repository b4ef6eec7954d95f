"""An imposed cyclic symmetry in the joint registration (``ParticleFuser(symmetry=n)``).

The constrained M-step is checked against a naive reference (numerical
optimisation of the same expected log-likelihood over the orbits' bases),
the axis detection and orbit matching on randomly turned symmetric sets, EM
under the constraint for monotone likelihood, and the fuser end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.utils._param_validation import InvalidParameterError

from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d
from pcvae_sklearn.fuse import ParticleFuser
from pcvae_sklearn.fuse._em import CommonFrameVariances, EMState, run_em
from pcvae_sklearn.fuse._fuser import _mixture_terms
from pcvae_sklearn.fuse._symmetry import (
    CyclicSymmetry,
    SymmetricTemplate,
    detect_symmetry,
    rotations_about,
    symmetric_centres,
)

from test_fuser import dihedral_3d, errors_2d, errors_3d, random_rotations, ring_particles

SEEDS = [0, 1, 2, 3]


def random_symmetry(rng, d, order):
    axis = None
    if d == 3:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
    return CyclicSymmetry(order, rng.normal(0, 10, d), axis)


def same_set(a, b):
    """Largest distance from a point of ``a`` to its nearest in ``b`` and back."""
    dist = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    return max(dist.min(1).max(), dist.min(0).max())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
def test_rotations_about_form_the_cyclic_group(seed, d):
    rng = np.random.default_rng(seed)
    sym = random_symmetry(rng, d, order=int(rng.integers(2, 9)))
    g = sym.group
    np.testing.assert_allclose(g[0], np.eye(d), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(g), 1.0, atol=1e-12)
    np.testing.assert_allclose(g @ np.transpose(g, (0, 2, 1)), np.broadcast_to(np.eye(d), g.shape), atol=1e-12)
    # R_1 ** order is the identity, and R_1 @ R_s = R_{s+1}
    np.testing.assert_allclose(np.linalg.matrix_power(g[1], sym.order), np.eye(d), atol=1e-10)
    np.testing.assert_allclose(g[1] @ g, np.roll(g, -1, axis=0), atol=1e-10)
    if d == 3:
        np.testing.assert_allclose(g @ sym.axis, np.broadcast_to(sym.axis, (sym.order, 3)), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
def test_orbit_is_invariant_under_the_group(seed, d):
    rng = np.random.default_rng(seed)
    sym = random_symmetry(rng, d, order=8)
    centres = sym.orbit(rng.normal(0, 30, (3, d)))
    assert centres.shape == (24, d)
    turned = (centres - sym.point) @ sym.group[1].T + sym.point
    assert same_set(turned, centres) < 1e-9


def naive_solve(sym, mat, rhs):
    """The orbits' bases maximising ``sum_k -1/2 x_k^T A_k x_k + x_k^T v_k`` with ``x_{j n + s} = p + R_s b_j``,
    by numerical optimisation."""
    k, d = rhs.shape
    m = k // sym.order
    g = sym.group

    def objective(flat):
        b = flat.reshape(m, d)
        total, grad = 0.0, np.zeros((m, d))
        for j in range(m):
            for s in range(sym.order):
                idx = j * sym.order + s
                x = sym.point + g[s] @ b[j]
                total += -0.5 * x @ mat[idx] @ x + x @ rhs[idx]
                grad[j] += g[s].T @ (-mat[idx] @ x + rhs[idx])
        return -total, -grad.ravel()

    res = minimize(objective, np.zeros(m * d), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10000})
    return sym.orbit(res.x.reshape(m, d))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("diagonal", [True, False])
def test_constrained_centres_match_numerical_optimum(seed, d, diagonal):
    rng = np.random.default_rng(seed)
    sym = random_symmetry(rng, d, order=int(rng.integers(2, 9)))
    k = 3 * sym.order
    if diagonal:  # the per-axis form of CommonFrameVariances
        mat = np.zeros((k, d, d))
        mat[:, np.arange(d), np.arange(d)] = rng.uniform(0.1, 3.0, (k, d))
    else:  # full precision matrices, as under full 3D rotations
        a = rng.normal(size=(k, d, d))
        mat = a @ np.transpose(a, (0, 2, 1)) + 0.1 * np.eye(d)
    rhs = rng.normal(0, 20, (k, d))
    got = sym.solve(mat, rhs, sym.orbit(np.zeros((3, d))))
    want = naive_solve(sym, mat, rhs)
    np.testing.assert_allclose(got, want, atol=1e-5 * (1 + np.abs(want).max()))


def test_isotropic_constrained_centres_are_turned_back_means():
    # with one weight per centre, each base is the weight-averaged unconstrained centre turned back to the base
    rng = np.random.default_rng(0)
    sym = random_symmetry(rng, 3, order=8)
    k = 16
    w = rng.uniform(0.5, 2.0, k)
    free = rng.normal(0, 30, (k, 3))
    got = sym.solve(w[:, None, None] * np.eye(3), w[:, None] * free, sym.orbit(np.zeros((2, 3))))
    back = np.einsum("sba,jsb->jsa", sym.group, (free - sym.point).reshape(2, 8, 3))
    base = (w.reshape(2, 8, 1) * back).sum(1) / w.reshape(2, 8).sum(1)[:, None]
    np.testing.assert_allclose(got, sym.orbit(base), atol=1e-10)


def test_orbit_without_weight_keeps_its_place():
    rng = np.random.default_rng(1)
    sym = random_symmetry(rng, 2, order=4)
    old = sym.orbit(rng.normal(0, 30, (2, 2)))
    mat = np.zeros((8, 2, 2))
    mat[:4] = np.eye(2)  # the second orbit owns nothing
    rhs = rng.normal(0, 20, (8, 2))
    rhs[4:] = 0.0
    got = sym.solve(mat, rhs, old)
    np.testing.assert_allclose(got[4:], old[4:], atol=1e-12)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("height", [20.0, 120.0])
def test_detects_the_axis_of_a_turned_symmetric_set(seed, height):
    # flat (axis of least spread) and elongated (axis of most spread) symmetric sets, turned at random
    rng = np.random.default_rng(seed)
    base = np.c_[rng.uniform(40, 60, 3), np.zeros(3), rng.uniform(-height, height, 3)]
    base[:, :2] = base[:, :2] @ random_rotations(1, 2, rng)[0].T
    centres = CyclicSymmetry(8, np.zeros(3), np.array([0.0, 0.0, 1.0])).orbit(base)
    turn = random_rotations(1, 3, rng)[0]
    shift = rng.normal(0, 20, 3)
    found = detect_symmetry(centres @ turn.T + shift, 8)
    assert abs(found.axis @ turn[:, 2]) > 1 - 1e-9
    np.testing.assert_allclose(found.point, centres.mean(0) @ turn.T + shift, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_symmetric_centres_recover_a_noisy_symmetric_set(seed):
    rng = np.random.default_rng(seed)
    sym = random_symmetry(rng, 3, order=8)
    truth = sym.orbit(np.array([[50.0, 0.0, 25.0], [50.0, 0.0, -25.0], [30.0, 10.0, 0.0], [60.0, 20.0, 10.0]]))
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    got = symmetric_centres(noisy[rng.permutation(len(noisy))], sym, np.random.default_rng(seed))
    assert got.shape == truth.shape
    assert same_set(got, truth) < 3.0
    turned = (got - sym.point) @ sym.group[1].T + sym.point
    assert same_set(turned, got) < 1e-9


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_em_under_symmetry_never_lowers_the_likelihood(seed):
    X, _ = ring_particles(20, seed, precision=False)
    lengths = np.array([len(p) for p in X])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    src = np.concatenate([p - p.mean(0) for p in X])
    rng = np.random.default_rng(seed)
    sym = CyclicSymmetry(8, np.zeros(2), None)
    start = EMState(random_rotations(20, 2, rng), np.zeros((20, 2)), sym.orbit(rng.normal(0, 40, (2, 2))), 400.0)
    variances = SymmetricTemplate(CommonFrameVariances(np.zeros_like(src)), sym)
    mixture = _mixture_terms(0.01, 200.0, 2)
    objectives = [run_em(src, offsets, start, mixture, variances, max_iter=k, tol=-np.inf, floor=1e-6).objective
                  for k in range(1, 15)]
    assert np.all(np.diff(objectives) >= -1e-9), objectives
    final = run_em(src, offsets, start, mixture, variances, max_iter=14, tol=-np.inf, floor=1e-6)
    assert same_set((final.centres @ sym.group[1].T), final.centres) < 1e-9


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_fuser_2d_symmetric_template(seed):
    X, truth = make_npc_2d(60, radius=50.0, random_state=seed)
    fuser = ParticleFuser(symmetry=8, n_restarts=1, random_state=seed).fit(X)
    c = fuser.centres_ - fuser.centres_.mean(0)
    assert same_set(c @ rotations_about(None, 8, 2)[1].T, c) < 1e-6
    err = errors_2d(fuser.rotations_, truth["rotation"], 8)
    assert np.mean(err < 5) >= 0.95, np.sort(err)[-5:]


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_fuser_3d_symmetry_axis_becomes_z(seed):
    X, truth = make_npc_3d(60, radius=50.0, height=50.0, rotation="3d", z_ratio=1.0, precision=4.0,
                           random_state=seed)
    fuser = ParticleFuser(symmetry=8, n_restarts=1, random_state=seed).fit(X)
    c = fuser.centres_ - fuser.centres_.mean(0)
    assert same_set(c @ rotations_about([0.0, 0.0, 1.0], 8, 3)[1].T, c) < 1e-6
    # the pore's two rings lie along the super-particle's z
    z = np.sort(c[:, 2])
    assert z[-4:].mean() - z[:4].mean() > 35.0
    err = errors_3d(fuser.rotations_, truth["rotation"], dihedral_3d(8))
    assert np.mean(err < 5) >= 0.9, np.sort(err)[-8:]


def test_fuser_about_z_keeps_z_as_the_axis():
    X, _ = make_npc_3d(40, radius=50.0, height=50.0, rotation="z", random_state=0)
    fuser = ParticleFuser(rotation="z", symmetry=8, n_restarts=1, random_state=0).fit(X)
    c = fuser.centres_ - fuser.centres_.mean(0)
    assert same_set(c @ rotations_about([0.0, 0.0, 1.0], 8, 3)[1].T, c) < 1e-6
    np.testing.assert_allclose(fuser.rotations_[:, 2], np.tile([0, 0, 1.0], (40, 1)), atol=1e-12)


def test_symmetry_needs_a_multiple_of_its_order():
    X, _ = make_npc_2d(10, random_state=0)
    with pytest.raises(ValueError, match=r"n_components=30 is not a multiple of symmetry=8.*n_components=32"):
        ParticleFuser(n_components=30, symmetry=8).fit(X)
    with pytest.raises(InvalidParameterError, match="symmetry"):
        ParticleFuser(symmetry=1).fit(X)


def test_symmetry_is_reproducible_and_registers_new_particles():
    X, truth = make_npc_2d(40, radius=50.0, random_state=3)
    a = ParticleFuser(symmetry=8, n_restarts=1, random_state=0).fit(X)
    b = ParticleFuser(symmetry=8, n_restarts=1, random_state=0).fit(X)
    np.testing.assert_array_equal(a.rotations_, b.rotations_)
    np.testing.assert_array_equal(a.centres_, b.centres_)
    rotations, _ = a.register(X[:10])
    err = errors_2d(rotations, truth["rotation"][:10], 8)
    assert np.mean(err < 5) >= 0.9, err
