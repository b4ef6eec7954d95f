"""PointCloudVAE and fusion on a CUDA GPU (skipped without one)."""

import numpy as np
import pytest
import torch
from _encode_reference import exact_rotation_average
from _helpers import TINY_VAE, ragged_rings

from pcvae_sklearn import ParticleFuser, PointCloudVAE, fuse_bins
from pcvae_sklearn.encode import chamfer_distance

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


@pytest.fixture(scope="module")
def rings():
    return ragged_rings(48, seed=2)


@pytest.mark.parametrize("seed", range(3))
def test_fit_transform_on_cuda(rings, seed):
    X, _ = rings
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2}, device="cuda", random_state=seed).fit(X)
    assert next(vae.module_.parameters()).device.type == "cuda"
    Z = vae.transform(X)
    assert Z.shape == (48, 2) and np.isfinite(Z).all()
    assert np.isfinite(vae.score(X))
    # the same weights on the CPU give the same latents, within float tolerance
    cpu = vae.set_params(device="cpu")
    cpu.module_ = vae.module_.to("cpu")
    np.testing.assert_allclose(cpu.transform(X), Z, rtol=1e-4, atol=1e-5)


def test_bfloat16_on_cuda(rings):
    X, _ = rings
    vae = PointCloudVAE(**TINY_VAE, device="cuda", compute_dtype="bfloat16", random_state=0).fit(X)
    assert np.isfinite(vae.transform(X)).all()


def test_cuda_model_pickles_to_cpu(rings):
    import pickle

    X, _ = rings
    vae = PointCloudVAE(**TINY_VAE, device="cuda", random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(vae))
    np.testing.assert_allclose(again.transform(X), vae.transform(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_chamfer_nearest_on_cuda_matches_cpu(seed):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(4, 32, 3, generator=g, dtype=torch.float64)
    target = torch.randn(4, 500, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([500, 17, 250, 1])
    cpu = chamfer_distance(pred, target, lengths)
    gpu = chamfer_distance(pred.cuda(), target.cuda(), lengths.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_fusion_next_to_a_cuda_model(rings):
    """Fusion runs on the CPU (numpy); a workflow with a GPU model fuses its bins all the same."""
    X, radii = rings
    vae = PointCloudVAE(**TINY_VAE, device="cuda", random_state=0).fit(X)
    labels = (vae.transform(X)[:, 0] > np.median(vae.transform(X)[:, 0])).astype(int)
    result = fuse_bins(X, labels, ParticleFuser(n_components=8, n_restarts=1), random_state=0)
    assert len(result.bin_sizes) == 2


def test_distilled_rotation_average_on_cuda(rings):
    X, _ = rings
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 3}, device="cuda", random_state=0).fit(X)
    assert vae.readout_coef_ is not None
    distilled = vae.transform(X)
    exact = exact_rotation_average(vae, X)
    spread = np.sqrt(np.mean((exact - exact.mean(0)) ** 2))
    assert np.sqrt(np.mean((distilled - exact) ** 2)) < 0.25 * spread
