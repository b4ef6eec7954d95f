"""Reliability of PointCloudVAE: safe model files, checkpoints and resuming,
divergence detection, determinism (issue 6).

Every test uses the tiny network of ``_helpers.TINY_VAE``.
"""

from __future__ import annotations

import copy
import io
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import pcvae_sklearn.encode._persistence as persistence
import pcvae_sklearn.encode._training as training
from _encode_reference import exact_rotation_average
from _helpers import TINY_VAE, ragged_rings
from pcvae_sklearn import PointCloudVAE

SEEDS = [0, 1, 2]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rings():
    return ragged_rings(24, seed=0)[0]


@pytest.fixture(scope="module")
def rings3d():
    return ragged_rings(20, n_dims=3, seed=1)[0]


@pytest.fixture(scope="module")
def fitted(rings):
    return PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)


def _weights(vae):
    return {k: v.detach().clone() for k, v in vae.module_.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _fitted_state(vae):
    return {
        "weights": _weights(vae),
        "history_": copy.deepcopy(vae.history_),
        "scale_": vae.scale_,
        "n_steps_": vae.n_steps_,
        "n_iter_": vae.n_iter_,
    }


def _assert_state_unchanged(vae, before):
    assert _same_weights(_weights(vae), before["weights"])
    assert vae.history_ == before["history_"]
    assert (vae.scale_, vae.n_steps_, vae.n_iter_) == (before["scale_"], before["n_steps_"], before["n_iter_"])


# ------------------------------------------------------------------ model files
def test_save_writes_a_weights_only_file(fitted, tmp_path):
    path = tmp_path / "model.pt"
    fitted.save(path)
    raw = torch.load(path, weights_only=True)  # no pickled code may be needed
    assert raw["format"] == "pcvae_sklearn.PointCloudVAE"
    assert raw["format_version"] == persistence.FORMAT_VERSION == 3
    assert raw["library_version"] == __import__("pcvae_sklearn").__version__
    assert set(raw["state_dict"]) == set(fitted.module_.state_dict())
    assert raw["params"]["architecture"] == TINY_VAE["architecture"]
    assert raw["fitted"]["scale_"] == fitted.scale_
    assert raw["fitted"]["history_"] == fitted.history_
    assert "training" not in raw  # a model file carries no optimizer state
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


@pytest.mark.parametrize("n_dims", [2, 3])
def test_load_gives_identical_transform_and_attributes(rings, rings3d, n_dims, tmp_path):
    X = rings if n_dims == 2 else rings3d
    vae = PointCloudVAE(**TINY_VAE, random_state=1).fit(X)
    vae.save(tmp_path / "m.pt")
    loaded = PointCloudVAE.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(loaded.transform(X), vae.transform(X))
    np.testing.assert_array_equal(loaded.reconstruction_error(X), vae.reconstruction_error(X))
    assert loaded.get_params() == vae.get_params()
    for name in ("scale_", "n_features_in_", "history_", "n_steps_", "n_iter_"):
        assert getattr(loaded, name) == getattr(vae, name)
    assert isinstance(loaded.get_params()["architecture"]["encoder_widths"], tuple)
    assert not loaded.module_.training
    np.testing.assert_array_equal(loaded.get_feature_names_out(), vae.get_feature_names_out())


def test_load_from_a_file_object_and_set_output_survives(rings, tmp_path):
    vae = PointCloudVAE(**TINY_VAE, random_state=0).set_output(transform="pandas").fit(rings)
    buffer = io.BytesIO()
    vae.save(buffer)
    buffer.seek(0)
    loaded = PointCloudVAE.load(buffer)
    out = loaded.transform(rings)
    assert list(out.columns) == ["pcvae0", "pcvae1"]
    np.testing.assert_array_equal(out.to_numpy(), vae.transform(rings).to_numpy())


def test_parameters_are_stored_as_plain_python(rings, tmp_path):
    architecture = dict(TINY_VAE["architecture"], encoder_widths=np.array([16, 32]), n_heads=np.int64(4))
    params = dict(TINY_VAE, latent_dim=np.int64(2), architecture=architecture, beta=np.float32(0.5))
    vae = PointCloudVAE(**params, random_state=np.random.RandomState(0), checkpoint_path=tmp_path / "c.pt").fit(rings)
    vae.save(tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert type(raw["params"]["latent_dim"]) is int
    assert raw["params"]["architecture"]["encoder_widths"] == [16, 32]
    assert type(raw["params"]["architecture"]["n_heads"]) is int
    assert raw["params"]["random_state"] is None  # a RandomState instance is not a setting
    assert raw["params"]["checkpoint_path"] == str(tmp_path / "c.pt")
    loaded = PointCloudVAE.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(loaded.transform(rings), vae.transform(rings))


def test_save_needs_a_fitted_model(tmp_path):
    with pytest.raises(NotFittedError):
        PointCloudVAE(**TINY_VAE).save(tmp_path / "m.pt")


def _rewrite(path, **changes):
    raw = torch.load(path, weights_only=True)
    raw.update(changes)
    torch.save(raw, path)


@pytest.mark.parametrize("version", [0, 1, 2, 99, "3", None])
def test_other_format_versions_are_refused_with_what_to_do(fitted, tmp_path, version):
    """Files of another format version (2: before the precision floor) are not converted: refit."""
    path = tmp_path / "old model.pt"
    fitted.save(path)
    _rewrite(path, format_version=version, library_version="0.0.1")
    match = (rf"old model\.pt is a PointCloudVAE model file of format version {version!r} \(written by pcvae_sklearn "
             r"0\.0\.1\), but this pcvae_sklearn \(.*\) reads format version 3 only\. Refit the model")
    with pytest.raises(ValueError, match=match):
        PointCloudVAE.load(path)
    with pytest.raises(ValueError, match="format version"):  # a checkpoint of an old version does not resume either
        PointCloudVAE(**TINY_VAE, warm_start=True, checkpoint_path=path).fit(ragged_rings(24, seed=0)[0])


class _Payload:  # an arbitrary object: a file holding it needs pickled code to load
    pass


@pytest.mark.parametrize(
    "content, match",
    [
        ({"weights": torch.zeros(2)}, "not a PointCloudVAE model file"),
        ([1, 2, 3], "not a PointCloudVAE model file"),
        (_Payload(), "weights_only"),
    ],
)
def test_foreign_files_are_refused(tmp_path, content, match):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=match):
        PointCloudVAE.load(path)


def test_damaged_and_missing_files(fitted, tmp_path):
    path = tmp_path / "m.pt"
    fitted.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a model file that loads safely"):
        PointCloudVAE.load(path)
    with pytest.raises(FileNotFoundError):
        PointCloudVAE.load(tmp_path / "absent.pt")


def test_gpu_trained_file_loads_on_cpu(fitted, rings, tmp_path):
    """A file whose model was trained with device='cuda' loads with device='cpu'.

    Without a GPU the file is made by rewriting the device parameter; the
    real round trip is ``test_cuda_round_trip`` below.
    """
    path = tmp_path / "m.pt"
    fitted.save(path)
    _rewrite(path, params={**torch.load(path, weights_only=True)["params"], "device": "cuda:0"})
    loaded = PointCloudVAE.load(path)  # device="cpu" by default
    assert loaded.device == "cpu"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.transform(rings), fitted.transform(rings))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_round_trip(rings, tmp_path):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, device="cuda").fit(rings)
    vae.save(tmp_path / "gpu.pt")
    loaded = PointCloudVAE.load(tmp_path / "gpu.pt", device="cpu")
    np.testing.assert_allclose(loaded.transform(rings), vae.transform(rings), rtol=1e-4, atol=1e-5)
    restored = pickle.loads(pickle.dumps(vae))
    np.testing.assert_allclose(restored.transform(rings), vae.transform(rings), rtol=1e-4, atol=1e-5)


def test_load_on_missing_gpu_is_a_clear_error(fitted, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    fitted.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        PointCloudVAE.load(tmp_path / "m.pt", device="cuda")


@pytest.mark.parametrize("device, said", [("gpu", "not a device torch knows"), ("cuda:x", "not a device torch knows"),
                                          ("mps", "runs on 'cpu' or 'cuda', not 'mps'")])
def test_an_unknown_device_is_a_clear_error(rings, device, said):
    with pytest.raises(ValueError, match=said):
        PointCloudVAE(n_epochs=1, device=device).fit(rings)


@pytest.mark.parametrize("dump", ["pickle", "joblib", "save"])
def test_round_trips_keep_latents(fitted, rings, dump, tmp_path):
    before = fitted.transform(rings)
    if dump == "pickle":
        restored = pickle.loads(pickle.dumps(fitted))
    elif dump == "joblib":
        joblib.dump(fitted, tmp_path / "m.joblib")
        restored = joblib.load(tmp_path / "m.joblib")
    else:
        fitted.save(tmp_path / "m.pt")
        restored = PointCloudVAE.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(restored.transform(rings), before)
    np.testing.assert_array_equal(fitted.transform(rings), before)  # dumping changed nothing


# ------------------------------------------------------------ checkpoints / resume
class _Interrupted(PointCloudVAE):
    """Raises KeyboardInterrupt at the first training step of epoch ``killed_at`` (0-based), through the loss."""

    def __init__(self, *, killed_at=None, **params):
        super().__init__(**params)
        self.killed_at = killed_at

    def _loss(self, *args, **kwargs):
        steps_per_epoch = -(-24 // self.batch_size)
        if self.killed_at is not None and self._steps_seen == self.killed_at * steps_per_epoch:
            raise KeyboardInterrupt("killed for the test")
        self._steps_seen += 1
        return super()._loss(*args, **kwargs)

    _steps_seen = 0


def test_checkpoint_after_every_epoch(rings, tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    seen = []
    original = persistence.save_checkpoint

    def write(est, run):
        original(est, run)
        raw = torch.load(path, weights_only=True)
        seen.append((len(raw["fitted"]["history_"]), raw["fitted"]["n_steps_"]))

    monkeypatch.setattr("pcvae_sklearn.encode._vae.save_checkpoint", write)
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 3}, random_state=0, checkpoint_path=path).fit(rings)
    # 24 particles, batch 8: 3 steps an epoch; the last checkpoint is written again with the rotation read-out
    assert seen == [(1, 3), (2, 6), (3, 9), (3, 9)]
    assert PointCloudVAE.load(path).readout_coef_ is not None
    raw = torch.load(path, weights_only=True)
    assert {"optimizer", "numpy_rng", "torch_rng", "warmup"} <= set(raw["training"])
    assert raw["training"]["optimizer"]["state"]  # Adam moments are there
    np.testing.assert_array_equal(PointCloudVAE.load(path).transform(rings), vae.transform(rings))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("killed_at", [1, 3])
def test_interrupted_fit_resumes_exactly(rings, tmp_path, seed, killed_at):
    params = dict(TINY_VAE, n_epochs=4, random_state=seed)
    reference = PointCloudVAE(**params).fit(rings)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _Interrupted(**params, checkpoint_path=path, killed_at=killed_at).fit(rings)
    assert len(torch.load(path, weights_only=True)["fitted"]["history_"]) == killed_at
    resumed = PointCloudVAE(**params, checkpoint_path=path, warm_start=True).fit(rings)
    assert len(resumed.history_) == resumed.n_iter_ == 4
    assert [h["epoch"] for h in resumed.history_] == [0, 1, 2, 3]
    assert resumed.n_steps_ == reference.n_steps_
    np.testing.assert_array_equal(resumed.transform(rings), reference.transform(rings))
    for a, b in zip(resumed.history_, reference.history_):
        assert a["loss"] == b["loss"] and a["kl"] == b["kl"]


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import torch
    torch.set_num_threads({threads})
    from _helpers import TINY_VAE, ragged_rings
    from pcvae_sklearn import PointCloudVAE

    class Slow(PointCloudVAE):  # slow steps, so that the test can kill the fit in the middle of an epoch
        def _loss(self, *args, **kwargs):
            time.sleep(0.1)
            return super()._loss(*args, **kwargs)
    X = ragged_rings(24, seed=0)[0]
    Slow(**dict(TINY_VAE, n_epochs=20), random_state=5, checkpoint_path={path!r}).fit(X)
    """
)


def test_fit_killed_in_a_subprocess_resumes(rings, tmp_path):
    path = tmp_path / "killed.pt"
    script = _KILL_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), threads=torch.get_num_threads(), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not path.exists():
            if proc.poll() is not None:
                pytest.fail(f"the fit ended before its first checkpoint: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared within 120 s")
            time.sleep(0.01)
        time.sleep(0.35)  # into the next epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(torch.load(path, weights_only=True)["fitted"]["history_"])
    assert 1 <= done < 20
    resumed = PointCloudVAE(**dict(TINY_VAE, n_epochs=20), random_state=5, checkpoint_path=path, warm_start=True).fit(rings)
    assert len(resumed.history_) == 20
    reference = PointCloudVAE(**dict(TINY_VAE, n_epochs=20), random_state=5).fit(rings)
    np.testing.assert_allclose(resumed.transform(rings), reference.transform(rings), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_partial_fit_epochs_equal_fit(rings, seed):
    params = dict(TINY_VAE, n_epochs=3, random_state=seed)
    reference = PointCloudVAE(**params).fit(rings)
    vae = PointCloudVAE(**params)
    for k in range(3):
        assert vae.partial_fit(rings) is vae
        assert len(vae.history_) == vae.n_iter_ == k + 1
    np.testing.assert_array_equal(vae.transform(rings), reference.transform(rings))


def test_partial_fit_continues_from_a_loaded_checkpoint(rings, tmp_path):
    params = dict(TINY_VAE, n_epochs=3, random_state=4)
    reference = PointCloudVAE(**params).fit(rings)
    path = tmp_path / "run.pt"
    PointCloudVAE(**params, checkpoint_path=path).partial_fit(rings).partial_fit(rings)
    vae = PointCloudVAE.load(path)
    assert len(vae.history_) == 2
    vae.partial_fit(rings)
    np.testing.assert_array_equal(vae.transform(rings), reference.transform(rings))
    # after a pickle round trip partial_fit continues the same way
    twice = PointCloudVAE(**params).partial_fit(rings).partial_fit(rings)
    restored = pickle.loads(pickle.dumps(twice)).partial_fit(rings)
    np.testing.assert_array_equal(restored.transform(rings), reference.transform(rings))


def test_partial_fit_rejects_other_dimensionality(rings, rings3d):
    vae = PointCloudVAE(**TINY_VAE, random_state=0).partial_fit(rings)
    with pytest.raises(ValueError, match="3D particles, but .* fitted on 2D"):
        vae.partial_fit(rings3d)


@pytest.mark.parametrize("seed", SEEDS)
def test_warm_start_with_more_epochs_equals_one_long_fit(rings, seed):
    params = dict(TINY_VAE, kl_warmup_steps=6, random_state=seed)
    reference = PointCloudVAE(**{**params, "n_epochs": 4}).fit(rings)
    vae = PointCloudVAE(**{**params, "n_epochs": 2}, warm_start=True).fit(rings)
    vae.set_params(n_epochs=4).fit(rings)
    assert len(vae.history_) == 4
    np.testing.assert_array_equal(vae.transform(rings), reference.transform(rings))


def test_warm_start_with_nothing_missing_warns_and_keeps_the_model(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, warm_start=True).fit(rings)
    before = _fitted_state(vae)
    with pytest.warns(UserWarning, match="no epoch was trained"):
        vae.fit(rings)
    _assert_state_unchanged(vae, before)


def test_warm_start_without_training_state_warns_and_continues(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)  # warm_start=False keeps no optimizer state
    with pytest.warns(UserWarning, match="no training state"):
        vae.set_params(warm_start=True, n_epochs=2).fit(rings)
    assert len(vae.history_) == 2 and vae.n_steps_ == 6


@pytest.mark.parametrize(
    "change, match",
    [
        ({"latent_dim": 3}, "latent_dim: 2 -> 3"),
        ({"architecture": {"encoder_widths": (16, 16)}}, r"encoder_widths: \(16, 32\) -> \(16, 16\)"),
        ({"architecture": {"n_output_points": 8}}, "n_output_points: 16 -> 8"),
        ({"architecture": {"latent_batch_norm": False}}, "latent_batch_norm: True -> False"),
    ],
)
def test_warm_start_refuses_a_changed_architecture(rings, change, match):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, warm_start=True).fit(rings)
    before = _fitted_state(vae)
    if "architecture" in change:
        change = {"architecture": {**TINY_VAE["architecture"], **change["architecture"]}}
    with pytest.raises(ValueError, match=f"warm_start cannot continue a model whose architecture changed .*{match}"):
        vae.set_params(n_epochs=2, **change).fit(rings)
    _assert_state_unchanged(vae, before)


def test_warm_start_continues_after_a_change_of_the_loss_only(rings):
    """The prior and the penalties are not the network: a model continues under new ones."""
    vae = PointCloudVAE(**TINY_VAE, random_state=0, warm_start=True).fit(rings)
    vae.set_params(n_epochs=2, kurtosis=0.0, architecture={**TINY_VAE["architecture"], "prior_shape": 2}).fit(rings)
    assert len(vae.history_) == 2 and "fourth_moment" not in vae.history_[-1]


@pytest.mark.parametrize("architecture", ["tiny", None])
def test_warm_start_refuses_other_dimensionality(rings, rings3d, architecture):
    """Named as such, also where the automatic network (architecture=None) differs between 2D and 3D."""
    params = TINY_VAE if architecture == "tiny" else {**TINY_VAE, "architecture": None}
    vae = PointCloudVAE(**params, random_state=0, warm_start=True).fit(rings)
    with pytest.raises(ValueError, match="3D particles, but the model to continue was fitted on 2D"):
        vae.set_params(n_epochs=2).fit(rings3d)


def test_warm_start_without_model_or_checkpoint_starts_fresh(rings, tmp_path):
    a = PointCloudVAE(**TINY_VAE, random_state=0, warm_start=True, checkpoint_path=tmp_path / "none.pt").fit(rings)
    b = PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)
    np.testing.assert_array_equal(a.transform(rings), b.transform(rings))


def test_a_checkpoint_resumes_only_the_fit_that_wrote_it(rings, tmp_path):
    """In GridSearchCV every clone would otherwise resume the first fold's file and train nothing."""
    from sklearn.model_selection import GridSearchCV

    path = tmp_path / "run.pt"
    params = dict(**{**TINY_VAE, "n_epochs": 2}, random_state=0, warm_start=True, checkpoint_path=path)
    PointCloudVAE(**params).fit(rings)
    with pytest.raises(ValueError, match="run.pt holds a fit on other particles .* its own checkpoint_path"):
        PointCloudVAE(**params).fit(rings[:-1])
    moved = [a + 1.0 for a in rings]  # as many particles, other coordinates
    with pytest.raises(ValueError, match="holds a fit on other particles"):
        PointCloudVAE(**params).fit(moved)
    resumed = PointCloudVAE(**{**params, "n_epochs": 3}).fit(rings)  # the same particles: it resumes
    assert len(resumed.history_) == 3
    with pytest.raises(ValueError, match="holds a fit on other particles"):
        GridSearchCV(PointCloudVAE(**params), {"beta": [1e-3, 0.5]}, cv=2, error_score="raise").fit(rings)


def test_fit_without_warm_start_ignores_an_existing_checkpoint(rings, tmp_path):
    path = tmp_path / "run.pt"
    PointCloudVAE(**TINY_VAE, random_state=1, checkpoint_path=path).fit(rings)
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2}, random_state=0, checkpoint_path=path).fit(rings)
    assert len(vae.history_) == 2
    assert len(torch.load(path, weights_only=True)["fitted"]["history_"]) == 2  # overwritten


# ------------------------------------------------------------ validation / early stop
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_validation_split_is_recorded(rings, fraction):
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2}, random_state=0, validation_fraction=fraction).fit(rings)
    n_val = max(round(fraction * len(rings)), 1)
    for record in vae.history_:
        assert np.isfinite(record["validation_reconstruction"]) and record["validation_reconstruction"] > 0
        assert record["steps"] == -(-(len(rings) - n_val) // TINY_VAE["batch_size"])
    assert vae._training_state is None  # warm_start=False keeps no optimizer state in memory


def test_validation_value_is_the_held_out_reconstruction(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, validation_fraction=0.25, warm_start=True).fit(rings)
    val = vae._training_state["validation"]
    assert len(val) == 6
    expected = vae.reconstruction_error([rings[i] for i in val]).mean() / vae.scale_**2
    np.testing.assert_allclose(vae.history_[-1]["validation_reconstruction"], expected, rtol=1e-5)


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping(rings, monkeypatch, patience):
    monkeypatch.setattr(training, "validation_reconstruction", lambda *a: 1.0)  # never improves after epoch 0
    vae = PointCloudVAE(
        **{**TINY_VAE, "n_epochs": 6}, random_state=0, validation_fraction=0.2, n_iter_no_change=patience
    ).fit(rings)
    assert len(vae.history_) == vae.n_iter_ == patience + 1


def test_validation_needs_three_particles(rings):
    with pytest.raises(ValueError, match="at least 3 particles"):
        PointCloudVAE(**TINY_VAE, validation_fraction=0.5).fit(rings[:2])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"warm_start": "yes"}, "warm_start"),
        ({"checkpoint_path": 3}, "checkpoint_path"),
    ],
)
def test_new_parameters_are_validated(rings, params, match):
    with pytest.raises(ValueError, match=match):
        PointCloudVAE(**TINY_VAE, **params).fit(rings)


# ------------------------------------------------------------------ divergence
class _Diverging(PointCloudVAE):
    """The loss of step ``bad_step`` of a fit (counting this estimator's steps) is NaN, or has a NaN gradient."""

    def __init__(self, *, bad_step=0, what="loss", **params):
        super().__init__(**params)
        self.bad_step = bad_step
        self.what = what

    def _loss(self, decoded, *args, **kwargs):
        loss, terms = super()._loss(decoded, *args, **kwargs)
        if self._steps_seen == self.bad_step:
            if self.what == "loss":
                loss = loss * torch.tensor(float("nan"))
            else:  # finite loss, non-finite gradient: d sqrt(x)/dx at 0 times 0
                loss = loss + 0.0 * torch.sqrt((decoded * 0.0).sum())
        self._steps_seen += 1
        return loss, terms

    _steps_seen = 0


@pytest.mark.parametrize("bad_step, epoch", [(0, 0), (4, 1), (8, 2)])
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_divergence_names_epoch_step_and_remedy(rings, bad_step, epoch, what):
    vae = _Diverging(**{**TINY_VAE, "n_epochs": 3}, random_state=0, bad_step=bad_step, what=what)
    match = rf"{'training loss' if what == 'loss' else 'gradient of the training loss'} became nan at epoch {epoch}, step {bad_step}"
    with pytest.raises(FloatingPointError, match=match) as info:
        vae.fit(rings)
    assert "learning_rate" in str(info.value) and "scale" in str(info.value)
    assert not hasattr(vae, "module_")  # nothing half-fitted is left behind


@pytest.mark.parametrize("warm_start", [False, True])
def test_divergence_leaves_a_fitted_model_as_it_was(rings, warm_start, tmp_path):
    path = tmp_path / "run.pt"
    vae = _Diverging(**TINY_VAE, random_state=0, warm_start=warm_start, checkpoint_path=path, bad_step=10**9).fit(rings)
    latents = vae.transform(rings)
    before = _fitted_state(vae)
    checkpoint = path.read_bytes()
    vae.set_params(bad_step=vae._steps_seen + 1)  # the second step of the next fit
    with pytest.raises(FloatingPointError, match="at epoch 1, step 4" if warm_start else "at epoch 0, step 1"):
        vae.set_params(n_epochs=2).fit(rings)
    _assert_state_unchanged(vae, before)
    np.testing.assert_array_equal(vae.transform(rings), latents)
    assert path.read_bytes() == checkpoint  # the last good checkpoint is kept
    assert all(torch.isfinite(v).all() for v in vae.module_.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_huge_learning_rate_diverges_with_a_clear_error(rings, seed):
    vae = PointCloudVAE(**{**TINY_VAE, "n_epochs": 2, "learning_rate": 1e20}, random_state=seed)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        vae.fit(rings)


@pytest.mark.parametrize("average", ["distilled", "exact"])
def test_transform_never_returns_a_nan_latent(fitted, rings, average):
    broken = pickle.loads(pickle.dumps(fitted))
    with torch.no_grad():
        broken.module_.encoder.shared[0].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="latent of particle 0 is not finite"):
        broken.transform(rings) if average == "distilled" else exact_rotation_average(broken, rings)


def test_transform_of_a_far_out_particle_is_a_clear_error(fitted, rings):
    far = [np.array([[0.0, 0.0], [1e300, 1e300], [-1e300, 0.0]])]
    with pytest.raises(ValueError, match="particle 2 has a localization too far from its centre"):
        fitted.transform(rings[:2] + far)


def test_fit_on_overflowing_spread_is_a_clear_error():
    X = [np.array([[0.0, 0.0], [1e200, 0.0]]), np.array([[0.0, 0.0], [0.0, -1e200]])]
    with pytest.raises(ValueError, match="overflows float64"):
        PointCloudVAE(**TINY_VAE).fit(X)
    from pcvae_sklearn.fuse import ParticleFuser

    with pytest.raises(ValueError, match="overflows float64 .*check the units"):
        ParticleFuser(n_restarts=1).fit(X)


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims", [2, 3])
def test_same_random_state_identical_latents(rings, rings3d, seed, n_dims, tmp_path):
    X = rings if n_dims == 2 else rings3d
    params = dict(TINY_VAE, n_epochs=2, random_state=seed)
    a = PointCloudVAE(**params).fit(X)
    b = clone(a).fit(X)
    za = a.transform(X)
    np.testing.assert_array_equal(za, b.transform(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).transform(X), za)
    a.save(tmp_path / "a.pt")
    np.testing.assert_array_equal(PointCloudVAE.load(tmp_path / "a.pt").transform(X), za)
    np.testing.assert_array_equal(a.transform(X), za)  # transform itself is repeatable


def test_single_localization_particles_train(rings):
    # 25 particles, batch 8: the last batch is one particle of one localization
    X = list(rings) + [np.array([[5.0, 5.0]])]
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
    assert np.isfinite(vae.transform(X)).all()
    X1 = [np.array([[float(i), 0.0]]) for i in range(3)] + list(rings[:3])
    vae = PointCloudVAE(**{**TINY_VAE, "batch_size": 1}, random_state=0).fit(X1)
    assert vae.history_[0]["steps"] == 3  # the single-localization batches were skipped
    assert np.isfinite(vae.transform(X1)).all()


def test_pickle_of_another_format_version_is_refused(fitted):
    """A pickle of an older layout (no version in its state, or an older one) is not converted: refit."""
    state = fitted.__getstate__()
    assert state["_format_version"] == 3
    for version in (None, 1, 2):
        old = dict(state, _format_version=version) if version is not None else {k: v for k, v in state.items() if k != "_format_version"}
        with pytest.raises(ValueError, match=rf"pickled by a pcvae_sklearn of model format version {version!r}; .* Refit"):
            PointCloudVAE.__new__(PointCloudVAE).__setstate__(old)

