"""Fuzzed input boundary (issue 6): hypothesis over ragged shapes, dtypes,
non-finite values, extreme scales, duplicates, single-localization particles,
huge particles and awkward arrays with missing fields or option types.

Every public estimator must give either a correct output or a clear
ValueError / TypeError: never a crash, a hang or a silent NaN.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import TINY_VAE, ragged_rings
from pcvae_sklearn import HeightEstimator, LatentBinner, ParticleFuser, PointCloudVAE, RadiusEstimator, as_particles

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
DTYPES = ["int16", "int32", "int64", "float16", "float32", "float64"]
SCALES = [1e-6, 1.0, 50.0, 1e7]  # nm
CLEAR = (ValueError, TypeError)
FAST_FUSER = dict(n_components=4, n_restarts=1, max_iter=10, n_cycles=1, n_orientations=4, random_state=0)


@st.composite
def particle_sets(draw, n_dims=None, min_particles=1, max_particles=8, max_points=30):
    """(list of (n_i, d) arrays as the user passes them, description)."""
    d = draw(st.sampled_from([2, 3])) if n_dims is None else n_dims
    n = draw(st.integers(min_particles, max_particles))
    lengths = draw(st.lists(st.integers(1, max_points), min_size=n, max_size=n))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    scale = draw(st.sampled_from(SCALES))
    offset = draw(st.sampled_from([0.0, 1e3, 1e7]))
    duplicates = draw(st.booleans())
    bad = draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = []
    for length in lengths:
        pts = rng.normal(scale=scale, size=(length, d)) + rng.normal(scale=offset + 1e-12, size=d)
        if duplicates and length > 1:
            pts[1:] = pts[rng.integers(0, length, length - 1)]  # every row repeats an earlier one
        out.append(pts)
    if bad is not None:
        i = int(rng.integers(n))
        out[i][int(rng.integers(lengths[i])), int(rng.integers(d))] = bad
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        out = [np.clip(np.nan_to_num(np.round(a), nan=0.0), info.min, info.max).astype(dtype) for a in out]
        bad = None  # integers cannot hold NaN or inf
    else:
        with np.errstate(over="ignore"):
            out = [a.astype(dtype) for a in out]
    return out, dict(dtype=dtype, bad=bad, n_dims=d)


def _expect(X, call, *, extra_ok=()):
    """Run ``call(X)``; a non-finite input must raise a clear error naming a particle."""
    nonfinite = any(not np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in X)
    try:
        out = call(X)
    except CLEAR as exc:
        message = str(exc)
        assert message and len(message) > 20, message  # an explanation, not a bare error
        if nonfinite:
            assert "non-finite" in message or "NaN" in message, message
        return None
    assert not nonfinite, "non-finite coordinates were accepted"
    return out


def _spread(X):
    p = as_particles(X)
    return float(np.sqrt(np.mean(np.sum(p.centred().coords ** 2, axis=1))))


# ------------------------------------------------------------------ the boundary
@FUZZ
@given(particle_sets())
def test_as_particles(data):
    X, meta = data
    originals = [a.copy() for a in X]
    p = _expect(X, as_particles)
    for a, b in zip(X, originals):
        np.testing.assert_array_equal(a, b)  # input never modified
    if p is not None:
        assert p.coords.dtype == np.float64 and p.n_dims == meta["n_dims"]
        np.testing.assert_array_equal(p.lengths, [len(a) for a in X])
        np.testing.assert_array_equal(p.coords, np.concatenate(X).astype(np.float64))


@settings(FUZZ, max_examples=40)
@given(particle_sets(), st.sampled_from(["records", "numbers"]), st.sampled_from(["none", "drop_y", "option", "missing", "missing_particle"]))
def test_awkward_forms(data, form, damage):
    X, meta = data
    lengths = [len(a) for a in X]
    flat = np.concatenate(X).astype(np.float64)
    names = "xyz"[: meta["n_dims"]]
    if form == "records":
        cols = {c: flat[:, k] for k, c in enumerate(names)}
        if damage == "drop_y":
            cols.pop("y")
        if damage in ("option", "missing"):
            mask = np.ones(len(flat), bool)
            if damage == "missing":
                mask[len(flat) // 2] = False
            cols["x"] = ak.mask(ak.Array(cols["x"]), mask)
        arr = ak.unflatten(ak.zip(cols), lengths)
    else:
        arr = ak.unflatten(ak.Array(flat), lengths)
        if damage in ("option", "missing", "drop_y"):
            arr = ak.Array([[list(r) for r in a] for a in X]) if damage == "drop_y" else arr
            if damage != "drop_y":
                mask = np.ones(len(flat), bool)
                if damage == "missing":
                    mask[len(flat) // 2] = False
                arr = ak.unflatten(ak.mask(ak.Array(flat), mask), lengths)
    if damage == "missing_particle":
        arr = ak.mask(arr, np.arange(len(X)) != len(X) - 1)
    # without y, {x, z} records are not a 2D particle: a clear error, never a silent (x, z) particle
    expect_error = damage in ("drop_y", "missing", "missing_particle") and not (form == "numbers" and damage == "drop_y")
    try:
        p = as_particles(arr)
    except CLEAR as exc:
        assert expect_error or meta["bad"] is not None, str(exc)
        if damage in ("missing", "missing_particle") and meta["bad"] is None:
            assert "missing" in str(exc) and "particle" in str(exc), str(exc)
        return
    assert not expect_error and meta["bad"] is None
    np.testing.assert_array_equal(p.coords, flat)


# ------------------------------------------------------------------ PointCloudVAE
@pytest.fixture(scope="module")
def vae2d():
    return PointCloudVAE(**TINY_VAE, random_state=0, n_rotations=2).fit(ragged_rings(16, seed=0)[0])


@settings(FUZZ, max_examples=40)
@given(particle_sets(min_particles=2, max_particles=10), st.integers(1, 4))
def test_vae_fit(data, batch_size):
    X, meta = data
    vae = PointCloudVAE(**{**TINY_VAE, "batch_size": batch_size}, random_state=0)
    Z = _expect(X, vae.fit_transform)
    if Z is None:
        return
    assert len(X) >= 2 and _spread(X) > 0
    assert Z.shape == (len(X), TINY_VAE["latent_dim"]) and np.isfinite(Z).all()
    assert all(np.isfinite(h["loss"]) for h in vae.history_)


@FUZZ
@given(particle_sets(n_dims=2, max_particles=10))
def test_vae_transform(vae2d, data):
    X, _ = data
    Z = _expect(X, vae2d.transform)
    if Z is not None:
        assert Z.shape == (len(X), TINY_VAE["latent_dim"]) and np.isfinite(Z).all()
        errors = vae2d.reconstruction_error(X)
        assert errors.shape == (len(X),) and np.isfinite(errors).all() and (errors >= 0).all()


@pytest.mark.parametrize("n_dims", [2, 3])
def test_vae_particle_of_100k_localizations(n_dims):
    rng = np.random.default_rng(n_dims)
    X = ragged_rings(6, n_dims=n_dims, seed=2)[0] + [rng.normal(scale=40.0, size=(100_000, n_dims))]
    vae = PointCloudVAE(**{**TINY_VAE, "max_points": 64}, random_state=0, n_rotations=1).fit(X)
    Z = vae.transform(X)
    assert Z.shape == (7, 2) and np.isfinite(Z).all()
    # every localization is encoded; the latent does not depend on their order
    perm = [X[-1][rng.permutation(100_000)]]
    np.testing.assert_allclose(vae.transform(perm)[0], Z[-1], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ LatentBinner
@st.composite
def latents(draw):
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([1e-300, 1e-6, 1.0, 1e7, 1e300]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Z = rng.normal(scale=scale, size=(n, k))
    if draw(st.booleans()):  # ties
        Z = np.round(Z / scale) * scale
    bad = draw(st.sampled_from([None, None, np.nan, np.inf]))
    if bad is not None:
        Z[rng.integers(n), rng.integers(k)] = bad
    with np.errstate(over="ignore", invalid="ignore"):
        Z = Z.astype(dtype) if np.dtype(dtype).kind == "f" else np.clip(np.nan_to_num(Z), -1e4, 1e4).astype(dtype)
    return Z, draw(st.integers(1, 8))


@FUZZ
@given(latents())
def test_latent_binner(data):
    Z, n_bins = data
    binner = LatentBinner(n_bins=n_bins)
    nonfinite = not np.isfinite(Z.astype(np.float64)).all()
    try:
        labels = binner.fit_transform(Z)
    except CLEAR as exc:
        assert nonfinite or len(Z) < 2 * n_bins, str(exc)
        return
    assert not nonfinite
    n, k = Z.shape
    assert labels.shape == (n, k) and labels.min() >= 0 and labels.max() < n_bins
    assert (binner.bin_counts_ >= 2).all() and binner.bin_counts_.sum() == n
    z64 = Z.astype(np.float64)
    for j in range(k):  # bins follow the order of the latent values
        order = np.argsort(z64[:, j], kind="stable")
        assert (np.diff(labels[order, j]) >= 0).all()
    np.testing.assert_array_equal(binner.transform(Z), labels)


# ------------------------------------------------------------------ estimators
@FUZZ
@given(particle_sets())
def test_radius_estimator(data):
    X, _ = data
    out = _expect(X, RadiusEstimator().fit_transform)
    if out is not None:
        assert min(len(a) for a in X) >= 2
        assert out.shape == (len(X), 2) and np.isfinite(out).all() and (out >= 0).all()


@FUZZ
@given(particle_sets(n_dims=3))
def test_height_estimator(data):
    X, _ = data
    out = _expect(X, HeightEstimator().fit_transform)
    if out is not None:
        assert min(len(a) for a in X) >= 2
        assert out.shape == (len(X), 2) and np.isfinite(out).all()


@pytest.mark.parametrize("estimator", [RadiusEstimator(), HeightEstimator()])
def test_estimators_on_100k_localizations(estimator):
    rng = np.random.default_rng(0)
    X = [rng.normal(scale=[50.0, 50.0, 30.0], size=(100_000, 3)), rng.normal(scale=[40.0, 40.0, 20.0], size=(50, 3))]
    out = estimator.fit_transform(X)
    assert out.shape == (2, 2) and np.isfinite(out).all()


# ------------------------------------------------------------------ ParticleFuser
@settings(FUZZ, max_examples=30)
@given(particle_sets(min_particles=2, max_particles=5, max_points=20))
def test_particle_fuser(data):
    X, meta = data
    fuser = ParticleFuser(**FAST_FUSER, rotation="z" if meta["n_dims"] == 3 else "full")
    out = _expect(X, fuser.fit_transform)
    if out is None:
        return
    d = meta["n_dims"]
    assert len(X) >= 2
    assert np.isfinite(as_particles(fuser.super_particle_).coords).all()
    R, t = fuser.rotations_, fuser.translations_
    assert R.shape == (len(X), d, d) and np.isfinite(R).all() and np.isfinite(t).all()
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(d), R.shape), atol=1e-6)
    registered = as_particles(out).coords
    assert registered.shape == (sum(len(a) for a in X), d) and np.isfinite(registered).all()


def test_particle_fuser_on_100k_localizations():
    rng = np.random.default_rng(0)
    X = ragged_rings(4, seed=3)[0] + [rng.normal(scale=40.0, size=(100_000, 2))]
    fuser = ParticleFuser(**FAST_FUSER).fit(X)
    assert np.isfinite(as_particles(fuser.super_particle_).coords).all() and np.isfinite(fuser.rotations_).all()


@pytest.mark.parametrize(
    "X",
    [
        ak.Array([[{"x": 1.0, "z": 2.0}, {"x": 2.0, "z": 3.0}]]),
        [np.array([(1.0, 2.0), (2.0, 1.0)], dtype=[("x", "f8"), ("z", "f8")])],
        [__import__("pandas").DataFrame({"x": [1.0, 2.0], "z": [2.0, 1.0]})],
    ],
)
def test_x_and_z_without_y_is_not_a_2d_particle(X):
    with pytest.raises(ValueError, match="no x and y|at least x and y|without x and y"):
        as_particles(X)
