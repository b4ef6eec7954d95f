"""Speed options of PointCloudVAE: the folded inference encoder, bfloat16, torch.compile, torch rotations."""

import numpy as np
import pytest
import torch
from _encode_reference import exact_rotation_average
from _helpers import TINY_VAE, ragged_rings
from scipy.stats import spearmanr

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.encode._batching import rotate_about_z, rotate_tensor_about_z
from pcvae_sklearn.encode._fast_encode import FoldedEncoder
from pcvae_sklearn.encode._networks import PointNetEncoder

SEEDS = range(5)


def trained_encoder(seed, d, widths):
    """An encoder whose batch norms hold non-trivial running statistics and affine weights."""
    torch.manual_seed(seed)
    enc = PointNetEncoder(d, widths=widths, latent_dim=3)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
        enc.train()
        for _ in range(3):
            n = 500
            enc(torch.randn(n, d) * 3 + 1, torch.zeros(n, dtype=torch.long), torch.tensor([n]))
    return enc.eval()


def packed(seed, d, n_particles=7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 60, (n_particles,), generator=g)
    pts = torch.randn(int(lengths.sum()), d, generator=g)
    seg = torch.repeat_interleave(torch.arange(n_particles), lengths)
    return pts, seg, lengths


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("widths, block", [((8, 16), 5), ((16, 32, 64), 2048), ((64, 128, 1024), 37)])
def test_folded_encoder_matches_module(seed, d, widths, block):
    enc = trained_encoder(seed, d, widths)
    pts, seg, lengths = packed(seed, d)
    with torch.inference_mode():
        ref, _ = enc(pts, seg, lengths)
        fast = FoldedEncoder(enc, block=block)(pts, seg, lengths)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_folded_encoder_bfloat16_is_close(seed):
    enc = trained_encoder(seed, 2, (16, 32, 64))
    pts, seg, lengths = packed(seed, 2)
    with torch.inference_mode():
        ref, _ = enc(pts, seg, lengths)
        fast = FoldedEncoder(enc, dtype=torch.bfloat16)(pts, seg, lengths)
    assert fast.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: ~1 % of the latents' spread at worst
    assert (fast - ref).abs().max() <= 0.02 * ref.abs().max()


def test_folded_encoder_rejects_other_architectures():
    enc = trained_encoder(0, 2, (8,))
    enc.shared = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU())
    with pytest.raises(TypeError, match="Linear, BatchNorm1d, ReLU"):
        FoldedEncoder(enc)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 3])
def test_torch_rotation_equals_numpy_rotation(seed, d):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(50, d)).astype(np.float32)
    angle = float(rng.uniform(0, 2 * np.pi))
    ref = rotate_about_z(pts, np.array([50]), np.array([angle])).astype(np.float32)
    out = rotate_tensor_about_z(torch.from_numpy(pts), angle).numpy()
    np.testing.assert_array_equal(out, ref)


@pytest.fixture(scope="module")
def rings():
    return ragged_rings(48, seed=1)


@pytest.mark.parametrize("seed", range(3))
def test_transform_uses_the_folded_encoder_consistently(rings, seed):
    """transform (folded encoder, chunk-major loop) equals the plain module's means, angle by angle."""
    X, _ = rings
    vae = PointCloudVAE(**TINY_VAE, n_rotations=3, random_state=seed).fit(X)

    p = vae._check_particles(X, fitting=False)
    ref = np.zeros((len(X), 2))
    with torch.inference_mode():
        for angle in vae._rotation_angles():
            for start, stop, pts, seg, lens in vae._encode_chunks(p, angle):
                ref[start:stop] += vae.module_.encoder(pts, seg, lens)[0].double().numpy()
    np.testing.assert_allclose(exact_rotation_average(vae, X), ref / 3, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_bfloat16_fit_and_transform(rings, seed):
    X, radii = rings
    kw = dict(TINY_VAE, n_epochs=3, random_state=seed)
    z32 = PointCloudVAE(**kw).fit_transform(X)
    vae = PointCloudVAE(**kw, compute_dtype="bfloat16").fit(X)
    z16 = vae.transform(X)
    assert z16.shape == z32.shape and np.isfinite(z16).all()
    assert all(np.isfinite(h["loss"]) for h in vae.history_)
    # the bfloat16 model and the float32 model learn the same thing
    rho16 = max(abs(spearmanr(z16[:, j], radii)[0]) for j in range(2))
    rho32 = max(abs(spearmanr(z32[:, j], radii)[0]) for j in range(2))
    assert rho16 >= rho32 - 0.2
    # a bfloat16 transform of a float32 model is close to the float32 transform
    vae32 = PointCloudVAE(**kw).fit(X)
    z = vae32.set_params(compute_dtype="bfloat16").transform(X)
    assert np.abs(z - z32).max() <= 0.05 * np.abs(z32).max()


def test_compile_goes_through_torch_compile(rings, monkeypatch):
    """architecture["compile"] trains through torch.compile(module, dynamic=True); module_ stays the plain module.

    (A real compilation takes over a minute on two shared cores; with it the
    latents of this tiny model matched the eager ones to 1e-6.)
    """
    X, _ = rings
    calls = []

    def fake_compile(module, **kwargs):
        calls.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    vae = PointCloudVAE(**{**TINY_VAE, "architecture": {**TINY_VAE["architecture"], "compile": True}}, random_state=0).fit(X)
    assert calls and all(c == {"dynamic": True} for c in calls)
    assert type(vae.module_).__name__ == "PCVAEModule"
    np.testing.assert_array_equal(vae.transform(X), PointCloudVAE(**TINY_VAE, random_state=0).fit(X).transform(X))


@pytest.mark.parametrize(
    "params, match",
    [({"compute_dtype": "float16"}, "compute_dtype"), ({"compute_dtype": None}, "compute_dtype"),
     ({"architecture": {"compile": "yes"}}, r"architecture\['compile'\] must be True or False")],
)
def test_bad_speed_parameters(rings, params, match):
    X, _ = rings
    with pytest.raises(ValueError, match=match):
        PointCloudVAE(**{**TINY_VAE, **params}).fit(X)


def test_fits_in_threads_are_reproducible(rings):
    """Fits in threads of one process (joblib threading, dask with processes=False) give the serial latents."""
    from joblib import Parallel, delayed

    X, _ = rings

    def fit(seed):
        return PointCloudVAE(**TINY_VAE, random_state=seed).fit(X).transform(X)

    serial = [fit(s) for s in range(4)]
    threaded = Parallel(n_jobs=4, backend="threading")(delayed(fit)(s) for s in range(4))
    for a, b in zip(serial, threaded):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
