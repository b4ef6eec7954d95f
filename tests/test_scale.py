"""Tests for pcvae_sklearn.fuse._scale: the lognormal scale of the localizations' unknown precisions."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from pcvae_sklearn.fuse import ParticleFuser
from pcvae_sklearn.fuse._anisotropic import OwnFrameVariances
from pcvae_sklearn.fuse._em import CommonFrameVariances, EMState, _register_each
from pcvae_sklearn.fuse._fuser import _mixture_terms
from pcvae_sklearn.fuse._scale import (
    SPREAD_GRID,
    choose_spread,
    node_loglik,
    refine_poses,
    scaled_variances,
    variance_factors,
)
from pcvae_sklearn.fuse._symmetry import CyclicSymmetry, SymmetricTemplate

SEEDS = [0, 1, 2]
NO_OUTLIERS = (0.0, -np.inf)


def rings(n, seed, spread, *, per_site=4, median_sd=4.0, fold=8, radius=40.0):
    """2D rings posed at random, each localization's error lognormal (log-SD ``spread``) about ``median_sd``.

    Returns ``(src, offsets, rotations, translations, sites)``: the
    localizations centred on each particle's centroid, and the true
    transforms that carry them onto ``sites`` (``src @ R.T + t``).
    """
    rng = np.random.default_rng(seed)
    phi = np.arange(fold) * 2 * np.pi / fold
    sites = radius * np.c_[np.cos(phi), np.sin(phi)]
    src, rots, trans, lengths = [], [], [], []
    for _ in range(n):
        locs = np.repeat(sites, per_site, axis=0)
        sd = median_sd * np.exp(spread * rng.normal(size=len(locs)))
        locs = locs + rng.normal(size=locs.shape) * sd[:, None]
        a = rng.uniform(0, 2 * np.pi)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        observed = locs @ r  # model = observed @ r.T
        centroid = observed.mean(axis=0)
        src.append(observed - centroid)
        rots.append(r)
        trans.append(centroid @ r.T)
        lengths.append(len(locs))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return np.concatenate(src), offsets, np.stack(rots), np.stack(trans), sites


def at_truth(src, offsets, rot, trans, sites):
    """The localizations registered by the true transforms, and the shared variance a fit would find there."""
    lengths = np.diff(offsets)
    registered = np.einsum("nab,nb->na", np.repeat(rot, lengths, axis=0), src) + np.repeat(trans, lengths, axis=0)
    nearest = sites[np.argmin(((registered[:, None] - sites) ** 2).sum(-1), axis=1)]
    return registered, float(((registered - nearest) ** 2).sum(axis=1).mean() / 2)


def angle_errors(rotations, truth, fold=1):
    """Rotation error (degrees) of 2D poses, up to the ``fold`` symmetry, about their common frame.

    With ``fold=1`` the frame is the truth's (the poses found onto the true sites).
    """
    comb = np.einsum("nab,ncb->nac", rotations, truth)  # R_est R_true^T
    theta = np.arctan2(comb[:, 1, 0], comb[:, 0, 0])
    frame = np.angle(np.mean(np.exp(1j * fold * theta))) / fold if fold > 1 else 0.0
    return np.degrees(np.abs((theta - frame + np.pi / fold) % (2 * np.pi / fold) - np.pi / fold))


# ------------------------------------------------------------------ the variances
def test_scaled_variances_scale_the_whole_variance():
    rng = np.random.default_rng(0)
    loc_var = rng.uniform(1, 4, (6, 2))
    factor = rng.uniform(0.5, 2.0, 6)
    out = scaled_variances(CommonFrameVariances(loc_var, "full"), 3.0, factor)
    np.testing.assert_allclose(out.loc_var, factor[:, None] * (3.0 + loc_var))
    assert out.mode == "full"
    np.testing.assert_allclose(scaled_variances(CommonFrameVariances(loc_var), 3.0, 2.0).loc_var, 2 * (3 + loc_var))
    own = rng.uniform(1, 4, (6, 3))
    offsets = np.array([0, 2, 6])
    out = scaled_variances(OwnFrameVariances(own, offsets), 1.5, factor)
    np.testing.assert_allclose(out.own_var, factor[:, None] * (1.5 + own))
    np.testing.assert_array_equal(out.index, [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(own, OwnFrameVariances(own, offsets).own_var)  # the input is not changed
    symmetric = SymmetricTemplate(CommonFrameVariances(loc_var), CyclicSymmetry(8, np.zeros(2), None))
    np.testing.assert_allclose(scaled_variances(symmetric, 3.0, factor).loc_var, factor[:, None] * (3.0 + loc_var))
    with pytest.raises(TypeError, match="no scale mixture"):
        scaled_variances(object(), 1.0, 1.0)


@pytest.mark.parametrize("spread", [0.2, 0.45, 0.6])
def test_variance_factors_match_a_numerical_integral(spread):
    """median / E[1/s^2 | r] against the posterior integrated on a fine grid of log s (one centre, no outliers)."""
    rng = np.random.default_rng(1)
    sigma2 = 9.0
    registered = rng.normal(size=(20, 2)) * np.sqrt(sigma2) * np.exp(rng.normal(size=(20, 1)) * spread)
    state = EMState(np.eye(2)[None], np.zeros((1, 2)), np.zeros((1, 2)), sigma2)
    factors = variance_factors(*node_loglik(registered, state, NO_OUTLIERS, CommonFrameVariances(np.zeros((20, 2))),
                                            spread), spread)
    median = sigma2 * np.exp(-2 * spread**2)
    log_s = np.linspace(-8 * spread, 8 * spread, 20001)
    r2 = (registered**2).sum(axis=1)[:, None]
    var = median * np.exp(2 * log_s)[None]
    log_post = -0.5 * (log_s / spread) ** 2 - r2 / (2 * var) - np.log(var)  # prior x 2D normal density
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    expected = (post * np.exp(-2 * log_s)).sum(axis=1) / post.sum(axis=1)
    # the nodes lose a little in the far tail of the residuals only
    rel = np.abs(factors * sigma2 / (median / expected) - 1)
    assert rel.max() < 0.03 and np.median(rel) < 1e-3, (rel.max(), np.median(rel))


def test_node_loglik_at_zero_spread_is_the_model():
    rng = np.random.default_rng(2)
    registered = rng.normal(size=(30, 2)) * 5
    state = EMState(np.eye(2)[None], np.zeros((1, 2)), rng.normal(size=(4, 2)) * 10, 7.0)
    variances = CommonFrameVariances(rng.uniform(0, 2, (30, 2)))
    mixture = _mixture_terms(0.05, 100.0, 2)
    ll, _, weights = node_loglik(registered, state, mixture, variances, 0.0)
    expected = variances.e_step(registered, state.rotations, state.centres, state.sigma2, mixture).loglik
    np.testing.assert_allclose(ll, np.repeat(expected[:, None], len(weights), axis=1), rtol=1e-10)
    np.testing.assert_allclose(variance_factors(ll, np.zeros(len(weights)), weights, 0.0), 1.0)


# ------------------------------------------------------------------ the spread
@pytest.mark.parametrize("seed", SEEDS)
def test_choose_spread_finds_the_simulated_spread(seed):
    """At the true poses, the likelihood picks the grid value nearest the simulated log-SD of the precisions."""
    for spread in (0.0, 0.3, 0.6):
        src, offsets, rot, trans, sites = rings(150, seed, spread)
        _, sigma2 = at_truth(src, offsets, rot, trans, sites)
        state = EMState(rot, trans, sites, sigma2)
        chosen, _ = choose_spread(src, offsets, state, NO_OUTLIERS, CommonFrameVariances(np.zeros_like(src)))
        assert chosen in SPREAD_GRID
        assert abs(chosen - spread) <= 0.15, (spread, chosen)


def test_refine_poses_with_zero_spread_returns_the_state():
    src, offsets, rot, trans, sites = rings(5, 0, 0.3)
    state = EMState(rot, trans, sites, 16.0)
    assert refine_poses(src, offsets, state, NO_OUTLIERS, CommonFrameVariances(np.zeros_like(src)), 0.0,
                        max_iter=10, tol=1e-6) is state


def test_refine_poses_beats_one_variance_for_all():
    """Onto the true sites from the true poses: the poses under the scale mixture are nearer the truth."""
    plain, mixed = [], []
    for seed in SEEDS:
        src, offsets, rot, trans, sites = rings(300, seed, 0.6, per_site=2)
        variances = CommonFrameVariances(np.zeros_like(src))
        _, sigma2 = at_truth(src, offsets, rot, trans, sites)
        state = EMState(rot, trans, sites, sigma2)
        one = _register_each(src, offsets, state, NO_OUTLIERS, variances, max_iter=100, tol=1e-8)
        plain.append(angle_errors(one.rotations, rot))
        refined = refine_poses(src, offsets, state, NO_OUTLIERS, variances, 0.6, max_iter=100, tol=1e-8)
        mixed.append(angle_errors(refined.rotations, rot))
        np.testing.assert_array_equal(refined.centres, sites)
        assert refined.sigma2 == sigma2
    plain, mixed = np.concatenate(plain), np.concatenate(mixed)
    assert np.sqrt(np.mean(mixed**2)) < 0.95 * np.sqrt(np.mean(plain**2)), (np.sqrt(np.mean(mixed**2)),
                                                                              np.sqrt(np.mean(plain**2)))


# ------------------------------------------------------------------ in ParticleFuser
def _as_particles(src, offsets):
    return [src[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def test_fuser_estimates_the_spread_only_without_precision_fields():
    src, offsets, rot, _, _ = rings(60, 3, 0.5, per_site=6)
    X = _as_particles(src, offsets)
    fuser = ParticleFuser(n_components=16, random_state=0).fit(X)
    assert fuser.precision_spread_ >= 0.3
    off = ParticleFuser(n_components=16, random_state=0, precision_spread=0).fit(X)
    assert off.precision_spread_ == 0.0
    assert not np.allclose(fuser.rotations_, off.rotations_)  # the poses moved
    for fit in (fuser, off):  # both registered
        assert np.median(angle_errors(fit.rotations_, rot, fold=8)) < 3
    # with a precision field the field says it: nothing is refined, bit for bit the same as switched off
    with_field = ak.zip({"x": [p[:, 0] for p in X], "y": [p[:, 1] for p in X],
                         "precision": [np.full(len(p), 4.0) for p in X]})
    a = ParticleFuser(n_components=16, random_state=0).fit(with_field)
    b = ParticleFuser(n_components=16, random_state=0, precision_spread=0).fit(with_field)
    assert a.precision_spread_ == 0.0
    np.testing.assert_array_equal(a.rotations_, b.rotations_)
    # a fixed spread is used as given
    fixed = ParticleFuser(n_components=16, random_state=0, precision_spread=0.45).fit(X)
    assert fixed.precision_spread_ == 0.45


@pytest.mark.parametrize("bad", [-0.1, "yes"])
def test_fuser_rejects_a_bad_precision_spread(bad):
    with pytest.raises(InvalidParameterError, match="precision_spread"):
        ParticleFuser(precision_spread=bad).fit([np.random.default_rng(0).normal(size=(20, 2))] * 3)


def test_choose_spread_on_a_subset_of_particles_agrees_with_all():
    src, offsets, rot, trans, sites = rings(400, 4, 0.45)
    _, sigma2 = at_truth(src, offsets, rot, trans, sites)
    state = EMState(rot, trans, sites, sigma2)
    variances = CommonFrameVariances(np.zeros_like(src))
    everything = choose_spread(src, offsets, state, NO_OUTLIERS, variances, max_points=10**9)
    subset = choose_spread(src, offsets, state, NO_OUTLIERS, variances, max_points=3000,
                           rng=np.random.default_rng(0))
    assert everything[0] == subset[0] == 0.45
    assert subset[1] != everything[1]  # scored on fewer localizations
    # particles in one's own frame (3D, turning variances) are cut whole, their variances with them
    own = OwnFrameVariances(np.full((offsets[-1], 3), 2.0), offsets)
    src3 = np.c_[src, np.zeros(len(src))]
    rot3 = np.zeros((len(rot), 3, 3))
    rot3[:, :2, :2], rot3[:, 2, 2] = rot, 1.0
    state3 = EMState(rot3, np.c_[trans, np.zeros(len(trans))], np.c_[sites, np.zeros(len(sites))], sigma2)
    full = choose_spread(src3, offsets, state3, NO_OUTLIERS, own, max_points=10**9)
    part = choose_spread(src3, offsets, state3, NO_OUTLIERS, own, max_points=3000, rng=np.random.default_rng(0))
    assert full[0] == part[0]


def test_register_applies_the_fitted_spread():
    """New particles are registered under the fitted spread: the training particles land where the fit put them."""
    src, offsets, _, _, _ = rings(60, 3, 0.5, per_site=6)
    X = _as_particles(src, offsets)
    fuser = ParticleFuser(n_components=16, random_state=0).fit(X)
    assert fuser.precision_spread_ > 0
    rotations, _ = fuser.register(X)
    turn = np.einsum("nab,ncb->nac", rotations, fuser.rotations_)
    # up to the ring's 8-fold symmetry; under one variance for all they differ by a median 0.4 degrees
    error = np.degrees(np.abs(np.arctan2(turn[:, 1, 0], turn[:, 0, 0]))) % 45
    assert np.median(np.minimum(error, 45 - error)) < 0.05
