"""PointCloudVAE: the scikit-learn contract, tested explicitly on ragged input.

sklearn's common checks skip estimators whose input is not a 2-D array, so
clone, get/set_params, Pipeline, GridSearchCV, pickle, idempotence, order
invariance and NotFittedError are each tested here.
"""

import math
import pickle

import awkward as ak
import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from _encode_reference import exact_rotation_average
from _helpers import TINY_VAE, ragged_rings
from pcvae_sklearn import PointCloudVAE, paper_recipe, as_particles


@pytest.fixture(scope="module")
def rings():
    return ragged_rings(24)[0]


@pytest.fixture(scope="module")
def fitted(rings):
    return PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)


@pytest.mark.parametrize(
    "check", [check_no_attributes_set_in_init, check_get_params_invariance, check_set_params, check_parameters_default_constructible]
)
def test_sklearn_checks_that_need_no_data(check):
    check("PointCloudVAE", PointCloudVAE())


def test_fit_returns_self_and_attributes(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0)
    assert vae.fit(rings) is vae
    assert vae.n_features_in_ == 2
    assert vae.scale_ > 0
    assert len(vae.history_) == TINY_VAE["n_epochs"]
    assert set(vae.history_[0]) >= {"epoch", "loss", "reconstruction", "kl", "beta", "seconds"}
    assert vae.n_steps_ == int(np.ceil(len(rings) / TINY_VAE["batch_size"]))


def test_params_are_not_written_by_fit(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0)
    before = vae.get_params()
    vae.fit(rings)
    assert vae.get_params() == before


def test_clone_and_set_params(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params()
    assert not hasattr(c, "module_")
    c.set_params(latent_dim=3, beta=0.5)
    assert c.latent_dim == 3 and c.beta == 0.5


def test_not_fitted(rings):
    vae = PointCloudVAE(**TINY_VAE)
    for method in (vae.transform, vae.score, vae.reconstruction_error):
        with pytest.raises(NotFittedError):
            method(rings)
    with pytest.raises(NotFittedError):
        vae.inverse_transform(np.zeros((1, 2)))
    with pytest.raises(NotFittedError):
        vae.get_feature_names_out()


def test_transform_outputs(fitted, rings):
    Z = fitted.transform(rings)
    assert Z.shape == (len(rings), 2) and Z.dtype == np.float64 and np.isfinite(Z).all()
    assert list(fitted.get_feature_names_out()) == ["pcvae0", "pcvae1"]
    decoded = fitted.inverse_transform(Z[:3])
    assert len(decoded) == 3
    assert ak.all(ak.num(decoded, axis=1) == TINY_VAE["architecture"]["n_output_points"])
    s = fitted.score(rings)
    assert isinstance(s, float) and s < 0
    np.testing.assert_allclose(-s, fitted.reconstruction_error(rings).mean())


def test_set_output_pandas(rings):
    import pandas as pd
    vae = PointCloudVAE(**TINY_VAE, random_state=0).set_output(transform="pandas")
    out = vae.fit_transform(rings)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["pcvae0", "pcvae1"]
    assert isinstance(vae.transform(rings), pd.DataFrame)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_random_state_same_latents(rings, seed):
    a = PointCloudVAE(**TINY_VAE, random_state=seed).fit_transform(rings)
    vae = PointCloudVAE(**TINY_VAE, random_state=seed)
    b = vae.fit_transform(rings)
    np.testing.assert_array_equal(a, b)
    # fitting again (idempotence) gives the same model
    np.testing.assert_array_equal(vae.fit(rings).transform(rings), a)


def test_different_seeds_differ(rings):
    a = PointCloudVAE(**TINY_VAE, random_state=0).fit_transform(rings)
    b = PointCloudVAE(**TINY_VAE, random_state=1).fit_transform(rings)
    assert not np.allclose(a, b)


def test_fit_does_not_touch_global_torch_rng(rings):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_particle_order_invariance(fitted, rings, seed):
    perm = np.random.default_rng(seed).permutation(len(rings))
    Z = fitted.transform(rings)
    Zp = fitted.transform([rings[i] for i in perm])
    np.testing.assert_allclose(Zp, Z[perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_localization_order_invariance(fitted, rings, seed):
    rng = np.random.default_rng(seed)
    shuffled = [a[rng.permutation(len(a))] for a in rings]
    np.testing.assert_allclose(fitted.transform(shuffled), fitted.transform(rings), rtol=1e-5, atol=1e-5)


def test_subset_invariance(fitted, rings):
    """A particle's latent does not depend on which other particles are transformed with it."""
    Z = fitted.transform(rings)
    np.testing.assert_allclose(fitted.transform(rings[5:9]), Z[5:9], rtol=1e-5, atol=1e-5)


def test_translation_invariance(fitted, rings):
    """Particles are centred on their centroid: a picking offset does not change the latent."""
    moved = [a + np.array([1000.0, -500.0]) for a in rings]
    np.testing.assert_allclose(fitted.transform(moved), fitted.transform(rings), rtol=1e-4, atol=1e-4)


def test_input_forms_give_same_latents(fitted, rings):
    flat = np.concatenate(rings)
    lengths = [len(a) for a in rings]
    Z = fitted.transform(rings)
    for X in (
        ak.unflatten(flat, lengths),
        ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1]}), lengths),
        np.array(rings, dtype=object),
    ):
        np.testing.assert_allclose(fitted.transform(X), Z, rtol=1e-6, atol=1e-6)


def test_input_not_modified(rings):
    before = [a.copy() for a in rings]
    PointCloudVAE(**TINY_VAE, random_state=0).fit(rings)
    for a, b in zip(rings, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip(fitted, rings, dump, tmp_path):
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(fitted))
    else:
        joblib.dump(fitted, tmp_path / "m.joblib")
        loaded = joblib.load(tmp_path / "m.joblib")
    assert hasattr(fitted, "module_"), "pickling must not strip the original"
    np.testing.assert_array_equal(loaded.transform(rings), fitted.transform(rings))
    assert loaded.get_params() == fitted.get_params()


def test_last_batch_of_one_particle_trains(rings):
    """The latent batch norm normalises over the particles of a batch; a batch of one particle must still train."""
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(rings[:17])  # batches of 8, 8 and 1
    assert vae.n_steps_ == 3
    assert np.isfinite(vae.history_[-1]["loss"])
    assert np.isfinite(vae.transform(rings[:17])).all()


@pytest.mark.parametrize("latent_batch_norm", [True, False])
def test_latents_are_independent_of_other_particles_and_persist(rings, tmp_path, latent_batch_norm):
    """With or without the latent batch norm, in transform a particle's latent never depends on the others."""
    architecture = {**TINY_VAE["architecture"], "latent_batch_norm": latent_batch_norm}
    vae = PointCloudVAE(**{**TINY_VAE, "architecture": architecture}, random_state=0).fit(rings)
    assert vae.module_.config["latent_batch_norm"] is latent_batch_norm
    Z = vae.transform(rings)
    order = np.random.default_rng(0).permutation(len(rings))
    np.testing.assert_allclose(vae.transform([rings[i] for i in order]), Z[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.transform(rings[3:4]), Z[3:4], rtol=1e-5, atol=1e-6)  # alone, the same latent
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vae)).transform(rings), Z)
    vae.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(PointCloudVAE.load(tmp_path / "m.pt").transform(rings), Z)


def test_loss_adds_the_latent_penalties(rings):
    """Without warm-up every step's loss is Chamfer + beta * KL + decorrelation * correlation + kurtosis * fourth
    moment (so the epoch means are too)."""
    params = {**TINY_VAE, "latent_dim": 3, "kl_warmup_steps": 0, "beta": 0.01}
    vae = PointCloudVAE(**params, decorrelation=0.5, kurtosis=0.2, random_state=0).fit(rings)
    h = vae.history_[-1]
    assert h["correlation"] >= 0 and h["fourth_moment"] > 0
    expected = h["reconstruction"] + 0.01 * h["kl"] + 0.5 * h["correlation"] + 0.2 * h["fourth_moment"]
    assert h["loss"] == pytest.approx(expected, rel=1e-5)
    plain = PointCloudVAE(**params, decorrelation=0.0, kurtosis=0.0, random_state=0).fit(rings)
    assert "correlation" not in plain.history_[-1] and "fourth_moment" not in plain.history_[-1]
    assert plain.history_[-1]["loss"] == pytest.approx(
        plain.history_[-1]["reconstruction"] + 0.01 * plain.history_[-1]["kl"], rel=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_penalties_act_from_the_first_step_while_the_kl_term_warms_up(rings, seed):
    """A warm-up far longer than the fit holds the KL weight at ``1 / (1 + e**6)`` throughout; the penalties
    have their full weight from the first step."""
    params = {**TINY_VAE, "latent_dim": 3, "kl_warmup_steps": 10**9, "beta": 0.01}
    h = PointCloudVAE(**params, decorrelation=0.5, kurtosis=0.2, random_state=seed).fit(rings).history_[-1]
    warm = 1.0 / (1.0 + math.exp(6.0))
    expected = h["reconstruction"] + warm * 0.01 * h["kl"] + 0.5 * h["correlation"] + 0.2 * h["fourth_moment"]
    assert h["loss"] == pytest.approx(expected, rel=1e-5)
    assert h["beta"] == pytest.approx(0.01 * warm)


def test_decorrelation_decorrelates_the_latent_means(rings):
    """A strong penalty leaves the latent means of the training particles less correlated than none.

    Without rotation augmentation: with it, the encoder can lower the penalty by encoding each step's random
    angle instead, and the rotation-averaged latents need not decorrelate.
    """
    def mean_sq_corr(vae):
        c = np.corrcoef(vae.transform(rings), rowvar=False)
        return float(((c**2).sum() - np.trace(c**2)) / (c.shape[0] * (c.shape[0] - 1)))

    params = {**TINY_VAE, "latent_dim": 4, "n_epochs": 6, "kl_warmup_steps": 0, "n_rotations": 0}
    with_penalty = [mean_sq_corr(PointCloudVAE(**params, decorrelation=1.0, random_state=s).fit(rings)) for s in range(3)]
    without = [mean_sq_corr(PointCloudVAE(**params, decorrelation=0.0, random_state=s).fit(rings)) for s in range(3)]
    assert np.mean(with_penalty) < np.mean(without)


@pytest.mark.parametrize("prior_shape", [2, 4, 6])
def test_prior_shape_is_an_architecture_key(rings, prior_shape):
    arch = {**TINY_VAE["architecture"], "prior_shape": prior_shape}
    vae = PointCloudVAE(**{**TINY_VAE, "architecture": arch}, random_state=0).fit(rings)
    assert np.isfinite(vae.history_[-1]["kl"]) and vae.history_[-1]["kl"] >= 0


@pytest.mark.parametrize("n_dims, widths, n_points", [(2, (64, 128, 256), 32), (3, (64, 128, 1024), 128)])
def test_architecture_keys_not_given_keep_their_defaults(n_dims, widths, n_points):
    X, _ = ragged_rings(6, n_dims=n_dims)
    vae = PointCloudVAE(**{**TINY_VAE, "architecture": {"decoder_channels": 8, "n_heads": 2}}, random_state=0)
    config = vae.fit(X).module_.config
    assert config["decoder_channels"] == 8 and config["n_heads"] == 2
    assert config["encoder_widths"] == widths and config["n_output_points"] == n_points  # the dimension's defaults
    assert config["latent_batch_norm"] is True
    assert vae.architecture == {"decoder_channels": 8, "n_heads": 2}  # the parameter is never written


@pytest.mark.parametrize("n_dims, channels", [(2, 128), (3, 256)])
def test_default_network_depends_on_the_dimension(n_dims, channels):
    X, _ = ragged_rings(4, n_dims=n_dims)
    config = PointCloudVAE(n_epochs=1, n_rotations=0, random_state=0).fit(X).module_.config
    assert config["decoder_channels"] == channels and config["decoder_widths"] == (256, 512, 1024)


@pytest.mark.parametrize("n_dims, expected", [(2, (32, 128)), (3, (16, 256))])
def test_auto_batch_size_and_max_points(n_dims, expected):
    assert PointCloudVAE()._training_settings(n_dims) == expected
    # numbers given are kept as they are, and so is None
    assert PointCloudVAE(batch_size=8, max_points=None)._training_settings(n_dims) == (8, None)
    assert PointCloudVAE(max_points=64)._training_settings(n_dims) == (expected[0], 64)


@pytest.mark.parametrize("n_dims, steps", [(2, 2), (3, 3)])  # 40 particles in batches of 32 / 16
def test_auto_batch_size_sets_the_steps_of_a_fit(n_dims, steps):
    X, _ = ragged_rings(40, n_dims=n_dims)
    vae = PointCloudVAE(**{**TINY_VAE, "batch_size": "auto"}, random_state=0).fit(X)
    assert vae.n_steps_ == steps and vae.history_[0]["steps"] == steps


@pytest.mark.parametrize(
    "architecture, match",
    [
        ({"encoder_width": (16,)}, r"unknown key\(s\) 'encoder_width'; the keys are encoder_widths, decoder_widths"),
        ({"pooled_batch_norm": True}, r"unknown key\(s\) 'pooled_batch_norm'"),
        ({"encoder_widths": (16, 0)}, r"architecture\['encoder_widths'\] must be a non-empty sequence of positive integers"),
        ({"encoder_widths": ()}, r"architecture\['encoder_widths'\] must be a non-empty sequence"),
        ({"decoder_widths": 32}, r"architecture\['decoder_widths'\] must be a non-empty sequence"),
        ({"decoder_widths": (16.5,)}, r"architecture\['decoder_widths'\] must be a non-empty sequence"),
        ({"decoder_channels": 30, "n_heads": 4}, r"decoder_channels'\]=30 must be divisible by architecture\['n_heads'\]=4"),
        ({"n_output_points": 0}, r"architecture\['n_output_points'\] must be a positive integer, got 0"),
        ({"n_heads": True}, r"architecture\['n_heads'\] must be a positive integer, got True"),
        ({"prior_shape": 3}, r"architecture\['prior_shape'\] must be an even integer \(2, 4, 6, ...\), got 3"),
        ({"latent_batch_norm": "yes"}, r"architecture\['latent_batch_norm'\] must be True or False, got 'yes'"),
        ({"compile": 1}, r"architecture\['compile'\] must be True or False, got 1"),
    ],
)
def test_bad_architecture_is_a_clear_error(rings, architecture, match):
    vae = PointCloudVAE(**{**TINY_VAE, "architecture": architecture})
    with pytest.raises(ValueError, match=match):
        vae.fit(rings)
    assert not hasattr(vae, "module_")


def test_architecture_must_be_a_dict(rings):
    with pytest.raises(ValueError, match="'architecture' parameter of PointCloudVAE must be an instance of 'dict' or None"):
        PointCloudVAE(**{**TINY_VAE, "architecture": [("encoder_widths", (16,))]}).fit(rings)


def test_constructor_parameters_stay_few():
    # 20 after the simplification; precision_weighted (the outlook issue's precision-aware loss) is the 21st
    assert len(PointCloudVAE().get_params()) <= 21


def test_paper_recipe_builds_and_fits_the_papers_network():
    recipe = paper_recipe()
    assert recipe is not paper_recipe() and recipe == paper_recipe()  # a new dict every call
    recipe["architecture"]["decoder_channels"] = 8
    assert paper_recipe()["architecture"]["decoder_channels"] == 1024  # changing one changes nothing else
    X, _ = ragged_rings(12, seed=3, min_points=100, max_points=200)
    vae = PointCloudVAE(**paper_recipe(), random_state=0)
    assert (vae.latent_dim, vae.beta, vae.n_epochs, vae.batch_size) == (8, 1.0, 4, 8)
    assert (vae.learning_rate, vae.weight_decay, vae.kl_warmup_steps) == (1e-4, 1e-5, 5000)
    assert (vae.decorrelation, vae.kurtosis, vae.n_rotations, vae.max_points) == (0.0, 0.0, 0, 128)
    assert vae.precision_weighted is False  # the paper's Euclidean Chamfer distance, whatever the fields
    vae.set_params(n_epochs=1).fit(X)
    assert vae.module_.config == {
        "in_dim": 2, "latent_dim": 8, "encoder_widths": (64, 128, 1024), "decoder_widths": (256, 512, 1024),
        "decoder_channels": 1024, "n_heads": 4, "n_output_points": 128, "latent_batch_norm": False,
    }
    assert vae._architecture(2)["prior_shape"] == 2  # the standard normal prior
    h = vae.history_[0]
    assert h["steps"] == 2 and "correlation" not in h and "fourth_moment" not in h
    assert h["beta"] == pytest.approx(1.0 / (1.0 + math.exp(-12.0 * (1 / 5000 - 0.5))))  # the sigmoid over 5000 steps
    first = 1.0 / (1.0 + math.exp(6.0))  # the KL weight of step 0 (beta 1); step 1's is h["beta"]
    assert h["reconstruction"] + first * h["kl"] <= h["loss"] * (1 + 1e-6)
    assert h["loss"] <= (h["reconstruction"] + h["beta"] * h["kl"]) * (1 + 1e-6)
    assert vae.readout_coef_ is None  # no rotation averaging: one encoding as picked
    Z = vae.transform(X)
    assert Z.shape == (12, 8) and np.isfinite(Z).all()
    assert ak.all(ak.num(vae.inverse_transform(Z[:2]), axis=1) == 128)


class _L1Latent(PointCloudVAE):
    """An experiment through the extension point: an L1 penalty on the latent means, with its own parameter."""

    def __init__(self, *, l1=0.0, **params):
        super().__init__(**params)
        self.l1 = l1

    def _loss(self, decoded, target, lengths, mu, logvar, kl_weight, weights=None):
        loss, terms = super()._loss(decoded, target, lengths, mu, logvar, kl_weight, weights)
        terms["l1"] = mu.float().abs().mean()
        return loss + self.l1 * terms["l1"], terms


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_subclass_changes_the_loss_through_the_extension_point(rings, seed):
    """Overriding _loss changes what is minimised; its extra terms are recorded; the rest is the estimator's."""
    params = {**TINY_VAE, "latent_dim": 3, "kl_warmup_steps": 0, "beta": 0.01, "random_state": seed}
    plain = PointCloudVAE(**params).fit(rings)
    vae = _L1Latent(l1=0.0, **params).fit(rings)
    np.testing.assert_array_equal(vae.transform(rings), plain.transform(rings))  # weight 0: the same fit
    assert vae.history_[-1]["l1"] > 0 and "l1" not in plain.history_[-1]
    strong = _L1Latent(l1=5.0, **params).fit(rings)
    h = strong.history_[-1]
    expected = h["reconstruction"] + 0.01 * h["kl"] + 0.01 * h["correlation"] + 0.01 * h["fourth_moment"] + 5.0 * h["l1"]
    assert h["loss"] == pytest.approx(expected, rel=1e-5)
    assert clone(strong).get_params()["l1"] == 5.0


def test_3d(rings):
    X, _ = ragged_rings(20, n_dims=3)
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
    assert vae.n_features_in_ == 3
    assert vae.transform(X).shape == (20, 2)
    with pytest.raises(ValueError, match="fitted on 3D"):
        vae.transform(rings)


def test_large_particles_are_subsampled_in_training_not_in_transform():
    rng = np.random.default_rng(0)
    X = [rng.normal(scale=30, size=(int(n), 2)) for n in rng.integers(300, 600, 10)]
    vae = PointCloudVAE(**{**TINY_VAE, "max_points": 32}, random_state=0).fit(X)
    Z = vae.transform(X)
    # the transform uses every localization: dropping half of them changes the latent
    half = [a[::2] for a in X]
    assert not np.allclose(vae.transform(half), Z)


def test_pipeline_with_clustering(rings):
    pipe = make_pipeline(PointCloudVAE(**TINY_VAE, random_state=0), StandardScaler(), KMeans(2, n_init=2, random_state=0))
    labels = pipe.fit_predict(rings)
    assert labels.shape == (len(rings),)
    np.testing.assert_array_equal(pipe.predict(rings), labels)


def test_grid_search_over_latent_dim_and_beta(rings):
    pipe = Pipeline([("vae", PointCloudVAE(**TINY_VAE, random_state=0))])
    search = GridSearchCV(pipe, {"vae__latent_dim": [1, 2], "vae__beta": [0.1, 1.0]}, cv=3)
    search.fit(rings)
    assert set(search.best_params_) == {"vae__latent_dim", "vae__beta"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.transform(rings).shape[1] == search.best_params_["vae__latent_dim"]


def test_grid_search_on_awkward_input(rings):
    flat = np.concatenate(rings)
    X = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1]}), [len(a) for a in rings])
    search = GridSearchCV(PointCloudVAE(**TINY_VAE, random_state=0), {"beta": [0.5, 1.0]}, cv=3).fit(X)
    assert np.isfinite(search.best_score_)


BAD_FIT_INPUT = [
    ([np.ones((3, 2))], ValueError, "at least 2"),
    (None, TypeError, "None"),
    ("file.hdf5", TypeError, "string"),
    (np.ones(4), ValueError, "1-D"),
    ([np.ones((3, 2)), np.zeros((0, 2))], ValueError, "particle 1 is empty"),
    ([np.ones((3, 2)), np.full((3, 2), np.nan)], ValueError, "particle 1 has a non-finite"),
    ([np.ones((3, 2)), np.ones((3, 3))], ValueError, "mix of 2D and 3D"),
    ([np.ones((3, 4)), np.ones((3, 4))], ValueError, "4 coordinate columns"),
    ([np.zeros((3, 2)), np.zeros((4, 2))], ValueError, "zero spread"),
]


@pytest.mark.parametrize("X, exc, match", BAD_FIT_INPUT)
def test_bad_fit_input(X, exc, match):
    with pytest.raises(exc, match=match):
        PointCloudVAE(**TINY_VAE).fit(X)


def test_sparse_rejected_before_awkward():
    import scipy.sparse as sp
    with pytest.raises(TypeError, match="sparse"):
        PointCloudVAE(**TINY_VAE).fit(sp.random(10, 3, density=0.5, format="csr"))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"beta": -1.0}, "beta"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"architecture": {"decoder_channels": 30, "n_heads": 4}}, "divisible"),
        ({"n_rotations": -1}, "n_rotations"),
        ({"device": "cuda:0"} if not torch.cuda.is_available() else {"latent_dim": -1}, "CUDA|latent_dim"),
    ],
)
def test_bad_parameters(rings, params, match):
    with pytest.raises(ValueError, match=match):
        PointCloudVAE(**{**TINY_VAE, **params}).fit(rings)


def test_inverse_transform_validates(fitted):
    with pytest.raises(ValueError, match="shape"):
        fitted.inverse_transform(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.inverse_transform(np.full((1, 2), np.nan))


def test_verbose_goes_to_stderr(rings, capsys):
    PointCloudVAE(**TINY_VAE, random_state=0, verbose=1).fit(rings)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and captured.out == ""


def _rotated(particles, angle):
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    return [a @ R.T for a in particles]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_n_rotations_average_rotated_encodings(rings, seed):
    vae = PointCloudVAE(**TINY_VAE, random_state=seed, n_rotations=3).fit(rings)
    angles = vae._rotation_angles()
    assert len(angles) == 3 and len(np.unique(np.round(np.mod(angles, np.pi / 4), 6))) == 3  # not all 8-fold equivalent
    Z = exact_rotation_average(vae, rings)
    once = vae.set_params(n_rotations=1)
    # rotating about the centroid equals rotating about the origin after centring
    centred = [a - a.mean(axis=0) for a in rings]
    expected = np.mean([once.transform(_rotated(centred, a)) for a in angles], axis=0)
    np.testing.assert_allclose(Z, expected, rtol=1e-4, atol=1e-5)


def test_no_rotations_means_no_augmentation_and_one_encoding(rings):
    vae = PointCloudVAE(**TINY_VAE, random_state=0, n_rotations=0).fit(rings)
    assert vae.readout_coef_ is None and vae.readout_rotations_ == 1
    Z = vae.transform(rings)
    np.testing.assert_array_equal(Z, vae.set_params(n_rotations=1).transform(rings))
    # n_rotations=1 trains with augmentation: other random draws, another model
    augmented = PointCloudVAE(**TINY_VAE, random_state=0, n_rotations=1).fit(rings)
    assert not np.allclose(augmented.transform(rings), Z)


def test_a_far_localization_leaves_the_latent_where_it_was(fitted, rings):
    """One localization 300 nm from a particle is an outlier: neither encoded nor used to centre it."""
    rng = np.random.default_rng(0)
    far = [np.r_[a, [a.mean(axis=0) + 300.0 * np.r_[np.cos(t), np.sin(t)]]]
           for a, t in zip(as_particles(rings).to_list(), rng.uniform(0, 6.3, len(rings)))]
    np.testing.assert_allclose(fitted.transform(far), fitted.transform(rings), rtol=0, atol=1e-5)
    assert fitted.outlier_fraction_ == 0.0
    refit = PointCloudVAE(**TINY_VAE, random_state=0).fit(far)
    assert refit.outlier_fraction_ == pytest.approx(len(rings) / sum(len(a) for a in far))
    np.testing.assert_allclose(refit.transform(far), fitted.transform(rings), rtol=0, atol=1e-5)
    assert refit.scale_ == fitted.scale_


def test_transform_warns_for_particles_far_outside_the_fitted_scale():
    """Particles in other units than the fit's (um for nm, say) are encoded, with a warning naming both scales."""
    import warnings

    X, _ = ragged_rings(16, seed=0)
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vae.transform(X)
        vae.transform([a * 3.0 for a in X])  # a 3x larger structure is data, not a unit error
    assert not [w for w in caught if "RMS radius" in str(w.message)]
    for factor, said in ((1e3, r"1(\.\d+)?e\+03 times"), (1e-3, r"0\.001\d* times")):
        with pytest.warns(UserWarning, match=said + " the scale of the data the model was fitted on"):
            vae.transform([a * factor for a in X])


def test_partial_fit_warns_for_particles_far_outside_the_fitted_scale():
    """Training goes on in the fit's units: a batch in other units is warned of, at the caller's line."""
    import warnings

    X, _ = ragged_rings(16, seed=0)
    vae = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vae.partial_fit([a * 3.0 for a in X])
        vae.partial_fit([a * 1e3 for a in X])
    scale = [w for w in caught if "RMS radius" in str(w.message)]
    assert len(scale) == 1 and "1e+03 times the scale" in str(scale[0].message)
    assert scale[0].filename == __file__
