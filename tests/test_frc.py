"""Fourier ring correlation and registration scores: kernels against naive references, then properties."""

from __future__ import annotations

import numpy as np
import pytest
from test_fuser import ring_particles

from pcvae_sklearn.fuse import ParticleFuser, fourier_ring_correlation, frc_resolution
from pcvae_sklearn.fuse._frc import _crossing, render_histogram
from pcvae_sklearn.fuse._fuser import flag_low_scores

SEEDS = [0, 1, 2]


def frc_reference(a, b):
    """Ring sums by a loop over every frequency of the discrete Fourier transforms."""
    n = a.shape[0]
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    size = n // 2 + 1
    cross, pa, pb = np.zeros(size), np.zeros(size), np.zeros(size)
    for i in range(n):
        for j in range(n):
            ki = i if i < n - i else i - n  # signed frequency index
            kj = j if j < n - j else j - n
            r = round(float(np.hypot(ki, kj)))
            if r < size:
                cross[r] += (fa[i, j] * np.conj(fb[i, j])).real
                pa[r] += abs(fa[i, j]) ** 2
                pb[r] += abs(fb[i, j]) ** 2
    out = np.zeros(size)
    ok = pa * pb > 0
    out[ok] = cross[ok] / np.sqrt(pa[ok] * pb[ok])
    return out


@pytest.mark.parametrize("n", [8, 15, 32])
@pytest.mark.parametrize("seed", SEEDS)
def test_frc_matches_the_naive_ring_sums(n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.poisson(2.0, (n, n)).astype(float), rng.poisson(2.0, (n, n)).astype(float)
    np.testing.assert_allclose(fourier_ring_correlation(a, b), frc_reference(a, b), atol=1e-12)


def test_frc_of_an_image_with_itself_is_one_and_is_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    np.testing.assert_allclose(fourier_ring_correlation(a, a), 1.0)
    np.testing.assert_allclose(fourier_ring_correlation(a, b), fourier_ring_correlation(b, a))
    assert np.all(np.abs(fourier_ring_correlation(a, b)) <= 1.0 + 1e-12)


def test_frc_refuses_images_of_different_shapes():
    with pytest.raises(ValueError, match="square images of the same shape"):
        fourier_ring_correlation(np.zeros((8, 8)), np.zeros((8, 10)))


def test_render_histogram_matches_numpy_histogram2d():
    rng = np.random.default_rng(0)
    xy = rng.normal(0, 10, (500, 3))
    origin, pixel, n = np.array([-20.0, -25.0]), 1.7, 24
    edges_x, edges_y = origin[0] + pixel * np.arange(n + 1), origin[1] + pixel * np.arange(n + 1)
    expected = np.histogram2d(xy[:, 1], xy[:, 0], bins=[edges_y, edges_x])[0]
    np.testing.assert_allclose(render_histogram(xy, pixel, origin, n), expected)


def test_crossing_interpolates_between_rings():
    freqs = np.array([0.0, 0.1, 0.2, 0.3])
    assert _crossing(freqs, np.array([1.0, 0.5, 0.1, 0.0]), 0.3) == pytest.approx(1 / 0.15)
    assert np.isnan(_crossing(freqs, np.array([1.0, 0.9, 0.8, 0.7]), 1 / 7))


@pytest.mark.parametrize("seed", SEEDS)
def test_frc_resolution_follows_the_localization_precision(seed):
    def resolution(jitter):
        X, _ = ring_particles(40, seed, jitter=jitter)
        return frc_resolution(X, ParticleFuser(n_components=16, random_state=seed), random_state=seed).resolution

    sharp, blurred = resolution(1.5), resolution(8.0)
    assert 1.0 < sharp < blurred
    assert blurred > 8.0  # a structure blurred by 8 nm cannot be resolved to better than its blur


def test_frc_resolution_splits_into_disjoint_halves_and_is_reproducible():
    X, _ = ring_particles(21, 0)
    fuser = ParticleFuser(n_components=16)
    first = frc_resolution(X, fuser, random_state=3)
    second = frc_resolution(X, fuser, random_state=3)
    a, b = first.halves
    assert len(a) == 10 and len(b) == 11 and not set(a) & set(b) and sorted(set(a) | set(b)) == list(range(21))
    assert first.resolution == second.resolution
    assert not hasattr(fuser, "centres_")  # the user's fuser is cloned, never fitted in place
    assert first.frequencies.shape == first.frc.shape == first.frc_smoothed.shape


def test_frc_resolution_refuses_too_few_particles_and_bad_pixels():
    X, _ = ring_particles(3, 0)
    with pytest.raises(ValueError, match="particle"):
        frc_resolution(X)
    X, _ = ring_particles(8, 0)
    with pytest.raises(ValueError, match="pixel_size"):
        frc_resolution(X, pixel_size=-1.0)


def test_flag_low_scores_uses_a_robust_cut():
    scores = np.r_[np.random.default_rng(0).normal(-5, 0.1, 50), -9.0]
    flags = flag_low_scores(scores)
    assert flags[-1] and flags.sum() == 1
    assert not flag_low_scores(np.full(10, -3.0)).any()  # no spread, nothing to call an outlier
    assert not flag_low_scores(-3.0 + np.r_[0.0, 1e-15, -1e-15, 2e-15, -1e-15, -4e-14, 0.0]).any()  # nor rounding
    assert not flag_low_scores(np.r_[scores[:-1], 0.0])[-1]  # only the low side is flagged


@pytest.mark.parametrize("seed", SEEDS)
def test_registration_score_flags_a_particle_that_is_not_the_structure(seed):
    X, _ = ring_particles(30, seed, precision=False)
    rng = np.random.default_rng(seed)
    X[7] = rng.uniform(-60, 60, (60, 2))  # a patch of background, not a ring
    fuser = ParticleFuser(n_components=16, random_state=seed).fit(X)
    assert fuser.registration_score_.shape == (30,) and fuser.flagged_.dtype == bool
    assert fuser.flagged_[7]
    assert fuser.registration_score_[7] == fuser.registration_score_.min()
    assert fuser.flagged_.sum() <= 2


def test_undetermined_rotations_naive():
    from pcvae_sklearn._input import as_particles
    from pcvae_sklearn.fuse._fuser import undetermined_rotations

    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=6), [1.0, 2.0, -1.0])
    parts3 = [rng.normal(size=(5, 3)), np.array([[1.0, 2.0, 3.0]]), line + 4.0, np.repeat([[0.0, 1.0, 2.0]], 4, 0)]
    parts2 = [rng.normal(size=(5, 2)), np.array([[1.0, 2.0]]), np.repeat([[3.0, 1.0]], 3, 0), line[:, :2]]
    for parts, expected in [(parts3, [False, True, True, True]), (parts2, [False, True, True, False])]:
        p = as_particles(parts)
        src = p.coords - np.repeat(p.centroids(), p.lengths, axis=0)
        assert undetermined_rotations(p, src).tolist() == expected


@pytest.mark.parametrize("n_dims", [2, 3])
def test_a_particle_whose_rotation_nothing_fixes_is_warned_about_and_flagged(n_dims):
    X, _ = ring_particles(20, 0, precision=False)
    if n_dims == 3:
        rng = np.random.default_rng(1)
        X = [np.c_[x, rng.normal(0, 5, len(x))] for x in X]
    X[4] = X[4][:1]  # one localization
    X[9] = np.repeat(X[9][:1], 6, axis=0)  # six at one place
    with pytest.warns(UserWarning, match=r"particle 4, particle 9: all localizations lie at one point"):
        fuser = ParticleFuser(n_components=16, n_restarts=1, random_state=0).fit(X)
    assert fuser.flagged_[4] and fuser.flagged_[9]
    assert fuser.flagged_.sum() <= 4


def test_a_bin_of_identical_particles_fuses_and_flags_none():
    import warnings

    X, _ = ring_particles(1, 3, precision=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fuser = ParticleFuser(n_components=16, random_state=0).fit([X[0].copy() for _ in range(10)])
    assert not fuser.flagged_.any()
    np.testing.assert_allclose(fuser.registration_score_, fuser.registration_score_[0])
