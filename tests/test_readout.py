"""The distilled rotation read-out (``n_rotations`` of 2 or more).

The kernel is checked against a naive reference (per-particle rotations
through the plain torch module, the ridge solution by least squares on the
augmented system); the estimator's use of it against the exact average.
"""

import pickle

import numpy as np
import pytest
import torch

from _encode_reference import exact_rotation_average
from _helpers import TINY_VAE, ragged_rings
from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.encode._batching import model_coordinates
from pcvae_sklearn.encode._fast_encode import FoldedEncoder
from pcvae_sklearn.encode._readout import READOUT_RIDGE, fit_rotation_readout, pooled_at_angles


@pytest.fixture(scope="module")
def rings():
    return ragged_rings(40)[0]


@pytest.fixture(scope="module")
def fitted(rings):
    return PointCloudVAE(**TINY_VAE, random_state=0, n_rotations=4).fit(rings)


def _packed(vae, particles):
    p = vae._check_particles(particles, fitting=False)
    return model_coordinates(p, vae.scale_), p.lengths


def _rotate(a, angle):
    c, s = np.cos(angle), np.sin(angle)
    out = a.copy()
    out[:, 0], out[:, 1] = c * a[:, 0] - s * a[:, 1], s * a[:, 0] + c * a[:, 1]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_rotation_readout_matches_naive_reference(seed):
    particles, _ = ragged_rings(12, seed=seed)
    vae = PointCloudVAE(**TINY_VAE, random_state=seed, n_rotations=3).fit(particles)
    points, lengths = _packed(vae, particles)
    angles = vae._rotation_angles()
    encoder = vae.module_.encoder
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # naive: every particle alone, every angle, through the unfolded module
    feats, means = [], []
    with torch.no_grad():
        for angle in angles:
            f_r, m_r = [], []
            for i in range(len(lengths)):
                pts = torch.from_numpy(_rotate(points[offsets[i] : offsets[i + 1]], angle))
                seg = torch.zeros(len(pts), dtype=torch.int64)
                g = encoder.pool(pts, seg, torch.tensor([len(pts)]))
                f_r.append(g[0].numpy())
                m_r.append(encoder.mu_head(g)[0].numpy())
            feats.append(f_r)
            means.append(m_r)
    F = np.asarray(feats, dtype=np.float64)  # (R, B, C)
    T = np.mean(means, axis=0)  # (B, k)
    A = F.reshape(-1, F.shape[2])
    Y = np.tile(T, (len(angles), 1))
    Ac, Yc = A - A.mean(0), Y - Y.mean(0)
    lam = READOUT_RIDGE * np.sum(Ac**2) / A.shape[1] + 1e-12
    aug_A = np.vstack([Ac, np.sqrt(lam) * np.eye(A.shape[1])])
    aug_Y = np.vstack([Yc, np.zeros((A.shape[1], Y.shape[1]))])
    coef_ref = np.linalg.lstsq(aug_A, aug_Y, rcond=None)[0]
    intercept_ref = Y.mean(0) - A.mean(0) @ coef_ref

    coef, intercept, error = fit_rotation_readout(FoldedEncoder(encoder), points, lengths, angles, torch.device("cpu"))
    np.testing.assert_allclose(A @ coef + intercept, A @ coef_ref + intercept_ref, atol=1e-5 * np.abs(T).max() + 1e-7)
    pred = A @ coef_ref + intercept_ref
    expected_error = np.sqrt(np.mean((pred - Y) ** 2)) / np.sqrt(np.mean((T - T.mean(0)) ** 2))
    assert error == pytest.approx(expected_error, rel=1e-3, abs=1e-6)


def test_pooled_at_angles_chunks_do_not_matter(fitted, rings):
    points, lengths = _packed(fitted, rings)
    enc = FoldedEncoder(fitted.module_.encoder)
    angles = fitted._rotation_angles()
    whole = pooled_at_angles(enc, points, lengths, angles, torch.device("cpu"))
    small = pooled_at_angles(enc, points, lengths, angles, torch.device("cpu"), budget=(3, 50))
    assert whole.shape == (len(angles), len(lengths), TINY_VAE["architecture"]["encoder_widths"][-1])
    torch.testing.assert_close(whole, small, rtol=1e-5, atol=1e-6)


def test_distilled_transform_is_one_pass_through_the_readout(fitted, rings):
    points, lengths = _packed(fitted, rings)
    pooled = pooled_at_angles(FoldedEncoder(fitted.module_.encoder), points, lengths, [0.0], torch.device("cpu"))[0]
    expected = pooled.double().numpy() @ fitted.readout_coef_.astype(np.float64) + fitted.readout_intercept_
    np.testing.assert_allclose(fitted.transform(rings), expected, rtol=1e-4, atol=1e-5)
    assert fitted.readout_rotations_ == 4
    assert fitted.readout_coef_.shape == (fitted.module_.config["encoder_widths"][-1], fitted.latent_dim)
    assert 0 <= fitted.readout_error_ < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distilled_average_follows_the_exact_one(seed):
    # on held-out particles, and better than one encoding as picked
    train, _ = ragged_rings(60, seed=seed)
    new, _ = ragged_rings(30, seed=100 + seed)
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 3}, random_state=seed).fit(train)
    distilled = vae.transform(new)
    exact = exact_rotation_average(vae, new)
    single = vae.set_params(n_rotations=1).transform(new)
    spread = np.sqrt(np.mean((exact - exact.mean(0)) ** 2))
    rms = np.sqrt(np.mean((distilled - exact) ** 2))
    assert rms < 0.25 * spread
    assert rms < np.sqrt(np.mean((single - exact) ** 2))


def test_changed_rotations_fall_back_to_the_exact_average(fitted, rings):
    vae = pickle.loads(pickle.dumps(fitted))
    at5 = vae.set_params(n_rotations=5).transform(rings)
    np.testing.assert_array_equal(at5, exact_rotation_average(vae, rings))
    # the exact average, angle by angle through the module, is what the read-out was fitted to reproduce
    p = vae._check_particles(rings, fitting=False)
    naive = np.zeros_like(at5)
    with torch.inference_mode():
        for angle in vae._rotation_angles():
            for start, stop, pts, seg, lens in vae._encode_chunks(p, angle):
                naive[start:stop] += vae.module_.encoder(pts, seg, lens)[0].double().numpy()
    np.testing.assert_allclose(at5, naive / 5, rtol=1e-4, atol=1e-5)
    assert not np.allclose(vae.set_params(n_rotations=4).transform(rings), exact_rotation_average(vae, rings))


@pytest.mark.parametrize("params", [dict(n_rotations=1), dict(n_rotations=0)])
def test_nothing_to_distil(rings, params):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, **params).fit(rings)
    assert vae.readout_coef_ is None and vae.readout_intercept_ is None and vae.readout_error_ is None


def test_partial_fit_distils_and_leaves_training_streams_alone(rings):
    a = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2}, random_state=3)
    for _ in range(2):
        a.partial_fit(rings)
    b = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2}, random_state=3).fit(rings)  # distils once, at the end
    for (name, wa), wb in zip(a.module_.state_dict().items(), b.module_.state_dict().values()):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0, msg=name)  # distilling draws no training random number
    assert a.readout_coef_ is not None
    np.testing.assert_array_equal(exact_rotation_average(a, rings), exact_rotation_average(b, rings))
    np.testing.assert_array_equal(a.transform(rings), b.transform(rings))


def test_readout_survives_save_and_load(fitted, rings, tmp_path):
    path = tmp_path / "m.pt"
    fitted.save(path)
    loaded = PointCloudVAE.load(path)
    np.testing.assert_array_equal(loaded.readout_coef_, fitted.readout_coef_)
    np.testing.assert_array_equal(loaded.transform(rings), fitted.transform(rings))


@pytest.mark.parametrize("max_points, cap", [(None, 40), (30, 40), (64, 40)])
def test_readout_sees_at_most_max_points_and_the_cap(monkeypatch, max_points, cap):
    import pcvae_sklearn.encode._readout as readout_module

    seen = []
    original = readout_module.fit_rotation_readout

    def spy(encoder, points, lengths, *args, **kwargs):
        seen.append((len(lengths), int(lengths.max())))
        return original(encoder, points, lengths, *args, **kwargs)

    monkeypatch.setattr(readout_module, "fit_rotation_readout", spy)
    monkeypatch.setattr(readout_module, "MAX_READOUT_POINTS", cap)
    monkeypatch.setattr(readout_module, "MAX_READOUT_PARTICLES", 10)
    particles, _ = ragged_rings(16, min_points=50, max_points=90)
    PointCloudVAE(**{**TINY_VAE, "max_points": max_points}, random_state=0).fit(particles)
    expected = cap if max_points is None else min(max_points, cap)
    assert seen == [(10, expected)]
