"""PointCloudVAE(precision_weighted=...): the Chamfer distance in units of each localization's precision."""

import warnings

import awkward as ak
import numpy as np
import pytest
import torch
from _helpers import TINY_VAE, ragged_rings

from pcvae_sklearn import PointCloudVAE, as_particles
from pcvae_sklearn.encode._precision import FLOOR_FRACTION, precision_weights
from pcvae_sklearn.encode import chamfer_distance
from pcvae_sklearn.encode._chamfer import pad_packed


def with_precisions(particles, lateral, axial=None):
    """An awkward array of the particles with ``precision`` (and ``precision_z``) fields from callables of the count."""
    records = []
    for i, pts in enumerate(particles):
        rec = {name: pts[:, k] for k, name in enumerate("xyz"[: pts.shape[1]])}
        rec["precision"] = lateral(i, len(pts))
        if axial is not None:
            rec["precision_z"] = axial(i, len(pts))
        records.append(rec)
    return ak.Array([{k: v.tolist() for k, v in r.items()} for r in records])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_dims", [2, 3])
def test_equal_precisions_give_the_euclidean_fit(seed, n_dims):
    # every weight is exactly 1: the same numbers as the plain fit, bit for bit
    rings, _ = ragged_rings(24, n_dims=n_dims, seed=seed)
    X = with_precisions(rings, lambda i, n: np.full(n, 7.0), (lambda i, n: np.full(n, 7.0)) if n_dims == 3 else None)
    plain = PointCloudVAE(**TINY_VAE, random_state=seed, precision_weighted=False).fit(X)
    weighted = PointCloudVAE(**TINY_VAE, random_state=seed, precision_weighted=True).fit(X)
    assert weighted.reference_precision_ == pytest.approx(7.0) and plain.reference_precision_ is None
    np.testing.assert_array_equal(weighted.transform(X), plain.transform(X))
    np.testing.assert_allclose(weighted.reconstruction_error(X), plain.reconstruction_error(X), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_weights_are_each_localizations_and_the_reference_averages_them_to_one(seed):
    rng = np.random.default_rng(seed)
    rings, _ = ragged_rings(24, n_dims=3, seed=seed)
    X = with_precisions(rings, lambda i, n: rng.uniform(2, 10, n), lambda i, n: rng.uniform(10, 30, n))
    vae = PointCloudVAE(**TINY_VAE, random_state=seed, precision_weighted=True).fit(X)
    lat = ak.to_numpy(ak.flatten(X["precision"]))
    ax = ak.to_numpy(ak.flatten(X["precision_z"]))
    inverse = np.concatenate([1 / lat**2, 1 / lat**2, 1 / ax**2])
    assert vae.reference_precision_ == pytest.approx(np.sqrt(1 / inverse.mean()), rel=1e-9)
    # reconstruction_error is the weighted Chamfer distance of the decoded posterior mean (one encoding), in nm^2
    errors = vae.reconstruction_error(X)
    p0 = np.asarray(rings[0] - rings[0].mean(axis=0), dtype=np.float32) / vae.scale_
    with torch.inference_mode():
        pts = torch.from_numpy(p0)
        lens = torch.tensor([len(p0)])
        mu, _ = vae.module_.encoder(pts, torch.zeros(len(p0), dtype=torch.long), lens)
        w = np.c_[1 / lat[: len(p0)] ** 2, 1 / lat[: len(p0)] ** 2, 1 / ax[: len(p0)] ** 2] * vae.reference_precision_**2
        cd = chamfer_distance(vae.module_.decoder(mu), pts[None], lens, weights=torch.from_numpy(w.astype(np.float32))[None])
    assert errors[0] == pytest.approx(float(cd) * vae.scale_**2, rel=1e-4)
    # and the weights change the fit
    plain = PointCloudVAE(**TINY_VAE, random_state=seed, precision_weighted=False).fit(X)
    assert not np.allclose(plain.transform(X), vae.transform(X))
    # "auto", the default, weighs when the fields are there: the same fit as True
    auto = PointCloudVAE(**TINY_VAE, random_state=seed).fit(X)
    assert auto.precision_weighted == "auto" and auto.reference_precision_ == vae.reference_precision_
    np.testing.assert_array_equal(auto.transform(X), vae.transform(X))


def test_missing_precisions_are_never_assumed():
    rings2, _ = ragged_rings(12, seed=0)
    with pytest.raises(ValueError, match="no 'precision' field.*no precision is assumed"):
        PointCloudVAE(**TINY_VAE, precision_weighted=True).fit(rings2)
    rings3, _ = ragged_rings(12, n_dims=3, seed=0)
    lateral_only = with_precisions(rings3, lambda i, n: np.full(n, 5.0))
    with pytest.raises(ValueError, match="no 'precision_z' field.*axial precision"):
        PointCloudVAE(**TINY_VAE, precision_weighted=True).fit(lateral_only)
    # "auto" (the default) falls back to the Euclidean distance, and says so in reference_precision_; where
    # the user gave a lateral precision that it leaves unused, with a warning
    for X in (rings2, lateral_only):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            auto = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
        said = [str(w.message) for w in caught if "no 'precision_z'" in str(w.message)]
        assert len(said) == (X is lateral_only), said
        assert auto.reference_precision_ is None
        np.testing.assert_array_equal(auto.transform(X),
                                      PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=False).fit(X).transform(X))


def test_a_weighted_model_names_the_refit_for_particles_without_precision():
    """A model fitted with precision weights cannot drop them: setting the flag alone would change nothing."""
    rings2, _ = ragged_rings(12, seed=0)
    weighted = PointCloudVAE(**TINY_VAE, random_state=0).fit(with_precisions(rings2, lambda i, n: np.full(n, 5.0)))
    assert weighted.reference_precision_ is not None
    for call in (weighted.score, weighted.partial_fit):
        with pytest.raises(ValueError, match="fitted with precision weights.*no 'precision' field.*fit the model "
                                             "again with precision_weighted=False"):
            call(rings2)


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf])
def test_bad_precisions_name_the_particle(bad):
    rings, _ = ragged_rings(12, seed=1)

    def lateral(i, n):
        out = np.full(n, 5.0)
        if i == 7:
            out[3] = bad
        return out

    X = with_precisions(rings, lateral)
    with pytest.raises(ValueError, match=r"particle 7 has the precision \[.*\] nm at localization 3 \(1 localization"):
        PointCloudVAE(**TINY_VAE, precision_weighted=True).fit(X)
    # "auto" warns, names the particle, and fits with the Euclidean distance; nothing is dropped
    with pytest.warns(UserWarning, match="particle 7 has the precision .* uses the Euclidean distance"):
        auto = PointCloudVAE(**TINY_VAE, random_state=0).fit(X)
    assert auto.reference_precision_ is None


def test_a_zero_precision_is_raised_to_the_floor():
    # 0 nm is a valid precision (finite, >= 0, as the estimators take it): it weighs as the floor, no fallback
    rings, _ = ragged_rings(12, seed=1)
    X = with_precisions(rings, lambda i, n: np.where(np.arange(n) == 3, 0.0, 5.0) if i == 7 else np.full(n, 5.0))
    p = as_particles(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights, (reference, floor) = precision_weights(p, "auto")
    assert floor[0] == pytest.approx(FLOOR_FRACTION * 5.0)
    row = p.offsets[7] + 3
    np.testing.assert_allclose(weights[row], (reference / floor[0]) ** 2, rtol=1e-6)
    np.testing.assert_allclose(weights[row + 1], (reference / 5.0) ** 2, rtol=1e-6)


def test_a_median_precision_of_zero_leaves_no_floor():
    rings, _ = ragged_rings(12, seed=1)
    X = with_precisions(rings, lambda i, n: np.zeros(n))
    with pytest.warns(UserWarning, match="median of 'precision' is 0 nm.*Euclidean distance"):
        assert precision_weights(as_particles(X), "auto") == (None, None)
    with pytest.raises(ValueError, match="median of 'precision' is 0 nm"):
        precision_weights(as_particles(X), True)


def test_the_reference_precision_persists_and_scores_use_it(tmp_path):
    rng = np.random.default_rng(3)
    rings, _ = ragged_rings(24, seed=3)
    X = with_precisions(rings, lambda i, n: rng.uniform(2, 10, n))
    vae = PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=True).fit(X)
    vae.save(tmp_path / "m.pt")
    back = PointCloudVAE.load(tmp_path / "m.pt")
    assert back.reference_precision_ == vae.reference_precision_ and back.precision_weighted
    np.testing.assert_array_equal(back.reconstruction_error(X), vae.reconstruction_error(X))
    with pytest.raises(ValueError, match="no 'precision' field"):
        vae.score(rings)  # scored with the distance it was trained on, or not at all


def test_weights_ignore_the_padding_in_training():
    # a long and a short particle in one batch: the short one's padded rows carry no weight and no gradient
    pred = torch.zeros(2, 3, 2, requires_grad=True)
    target, _ = pad_packed(torch.tensor([[1.0, 0], [0, 1], [2, 2], [5, 5]]), torch.tensor([3, 1]))
    w, _ = pad_packed(torch.tensor([[1.0, 1], [2, 2], [3, 3], [0.5, 0.5]]), torch.tensor([3, 1]))
    w[1, 1:] = float("nan")
    cd = chamfer_distance(pred, target, torch.tensor([3, 1]), weights=w)
    assert torch.isfinite(cd).all()
    (g,) = torch.autograd.grad(cd.sum(), pred)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(cd[1], torch.tensor(25.0 + 25.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precisions_near_zero_are_floored_at_a_fraction_of_the_median(seed):
    # uniform precisions from 0 (as some simulators draw them): 1/precision**2 has no bounded mean
    from pcvae_sklearn import as_particles
    from pcvae_sklearn.encode._precision import FLOOR_FRACTION, precision_weights

    rng = np.random.default_rng(seed)
    rings, _ = ragged_rings(30, n_dims=3, seed=seed)
    X = with_precisions(rings, lambda i, n: rng.uniform(1e-4, 15, n), lambda i, n: rng.uniform(1e-4, 40, n))
    p = as_particles(X)
    weights, (reference, floor) = precision_weights(p, True)
    lat = ak.to_numpy(ak.flatten(X["precision"]))
    ax = ak.to_numpy(ak.flatten(X["precision_z"]))
    assert floor == pytest.approx((FLOOR_FRACTION * np.median(lat), FLOOR_FRACTION * np.median(ax)))
    # the naive reference: every precision raised to its axis's floor, then 1/variance averaged to 1
    sd = np.c_[np.maximum(lat, floor[0]), np.maximum(lat, floor[0]), np.maximum(ax, floor[1])]
    naive = 1 / sd**2
    assert reference == pytest.approx(np.sqrt(1 / naive.mean()), rel=1e-9)
    np.testing.assert_allclose(weights, naive * reference**2, rtol=1e-6)
    top = np.sort(weights[:, 0])[::-1]
    assert top[: len(top) // 100].sum() < 0.2 * top.sum()  # unfloored, the top 1 % carry nearly everything
    # a fit keeps the floor and the reference, and other data are weighed with them
    vae = PointCloudVAE(**TINY_VAE, random_state=seed, precision_weighted=True).fit(X)
    assert vae.precision_floor_ == pytest.approx(floor) and vae.reference_precision_ == pytest.approx(reference)
    other = with_precisions(rings[:5], lambda i, n: np.full(n, 1e-3), lambda i, n: np.full(n, 1e-3))
    w_other, fitted = precision_weights(as_particles(other), True, (vae.reference_precision_, vae.precision_floor_))
    assert fitted == (vae.reference_precision_, vae.precision_floor_)
    np.testing.assert_allclose(w_other[:, 0], (reference / floor[0]) ** 2, rtol=1e-6)
    np.testing.assert_allclose(w_other[:, 2], (reference / floor[1]) ** 2, rtol=1e-6)


def test_the_precision_floor_persists(tmp_path):
    rng = np.random.default_rng(4)
    rings, _ = ragged_rings(24, seed=4)
    X = with_precisions(rings, lambda i, n: rng.uniform(0.01, 10, n))
    vae = PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=True).fit(X)
    assert len(vae.precision_floor_) == 1 and vae.precision_floor_[0] > 0.01
    vae.save(tmp_path / "m.pt")
    back = PointCloudVAE.load(tmp_path / "m.pt")
    assert back.precision_floor_ == vae.precision_floor_
    np.testing.assert_array_equal(back.reconstruction_error(X), vae.reconstruction_error(X))
    assert PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=False).fit(X).precision_floor_ is None


@pytest.mark.parametrize("setting", [True, "auto"])
def test_cross_validation_folds_keep_the_precision(setting):
    """sklearn hands each fold over as a list of awkward records: their precision must travel, or "auto" would
    select models with the Euclidean distance and refit the winner with precisions (True would fail)."""
    from sklearn.model_selection import GridSearchCV, cross_validate

    rings, _ = ragged_rings(12, seed=3)
    X = with_precisions(rings, lambda i, n: np.random.default_rng(i).uniform(3.0, 9.0, n))
    cv = cross_validate(PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=setting), X, cv=3,
                        return_estimator=True)
    full = PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=setting).fit(X)
    assert full.reference_precision_ is not None
    assert all(est.reference_precision_ is not None for est in cv["estimator"])
    search = GridSearchCV(PointCloudVAE(**TINY_VAE, random_state=0, precision_weighted=setting), {"beta": [0.5, 1.0]},
                          cv=3).fit(X)
    assert np.isfinite(search.best_score_)
