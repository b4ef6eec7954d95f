"""LatentDirection: ridge regression of an estimate on the latents, cross-fitted, against naive references."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pcvae_sklearn import LatentDirection, LatentUnmixer

SEEDS = range(8)


def latents(seed, n=300, k=6):
    """A radius spread over a few randomly turned latent axes, plus noise dimensions of other scales."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(40, 60, n)
    sources = np.c_[(radius - 50) / 6, rng.normal(size=(n, k - 1))]
    Q, _ = np.linalg.qr(rng.normal(size=(k, k)))
    Z = sources @ Q.T * rng.uniform(0.2, 5.0, k) + rng.normal(size=k)
    return Z, radius + rng.normal(0, 2, n), radius  # the latents, the estimate (the radius with noise), the radius


def ridge_reference(Z, y, alpha):
    """sklearn's Ridge on the standardised latents, as a function of the raw ones."""
    scaler = StandardScaler().fit(Z)
    ridge = Ridge(alpha=alpha).fit(scaler.transform(Z), y)
    return lambda Znew: ridge.predict(scaler.transform(Znew))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.0, 1.0, 30.0])
def test_transform_matches_ridge_on_standardised_latents(seed, alpha):
    Z, y, _ = latents(seed)
    d = LatentDirection(alpha=alpha).fit(Z, y)
    Znew = latents(seed + 100)[0]
    np.testing.assert_allclose(d.transform(Znew)[:, 0], ridge_reference(Z, y, alpha)(Znew), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.transform(Znew)[:, 0], Znew @ d.coef_ + d.intercept_)
    assert np.isnan(d.score_)


@pytest.mark.parametrize("seed", SEEDS)
def test_fit_transform_is_cross_fitted_like_the_folds_written_out(seed):
    Z, y, _ = latents(seed)
    d = LatentDirection(n_splits=4, random_state=seed)
    out = d.fit_transform(Z, y)[:, 0]
    expected = np.empty(len(y))
    for train, test in KFold(4, shuffle=True, random_state=seed).split(Z):
        expected[test] = ridge_reference(Z[train], y[train], 1.0)(Z[test])
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)
    assert d.score_ == pytest.approx(np.corrcoef(out, y)[0, 1])
    # fitted on all particles afterwards, as fit alone does
    np.testing.assert_allclose(d.coef_, LatentDirection(n_splits=4).fit(Z, y).coef_)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_direction_does_not_depend_on_how_the_latent_is_turned(seed):
    """Two fits that hold the same information in turned and rescaled axes give the same projection."""
    Z, y, _ = latents(seed)
    rng = np.random.default_rng(seed + 50)
    turned = Z @ rng.normal(size=(Z.shape[1], Z.shape[1])) + rng.normal(size=Z.shape[1])
    a = LatentDirection(alpha=0.0, random_state=0).fit_transform(Z, y)[:, 0]
    b = LatentDirection(alpha=0.0, random_state=0).fit_transform(turned, y)[:, 0]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_fitting_does_not_find_a_direction_in_noise(seed):
    """Pure-noise latents: the in-sample fit correlates with the estimate by chance; the cross-fitted one does not."""
    rng = np.random.default_rng(seed)
    Z, y = rng.normal(size=(60, 20)), rng.normal(size=60)
    in_sample = np.corrcoef(LatentDirection(alpha=0.0).fit(Z, y).transform(Z)[:, 0], y)[0, 1]
    d = LatentDirection(alpha=0.0, random_state=seed)
    d.fit_transform(Z, y)
    assert in_sample > 0.4 and d.score_ < 0.3


def test_recovers_the_radius_spread_over_several_axes():
    Z, y, radius = latents(0, n=1000)
    out = LatentDirection(random_state=0).fit_transform(Z, y)[:, 0]
    single = max(abs(np.corrcoef(Z[:, j], radius)[0, 1]) for j in range(Z.shape[1]))
    assert np.corrcoef(out, radius)[0, 1] > 0.95 and single < 0.8
    assert abs(out.mean() - y.mean()) < 1.0  # in the estimate's unit


def test_sklearn_contract():
    Z, y, _ = latents(1)
    d = LatentDirection(alpha=2.0, n_splits=3, random_state=0)
    assert clone(d).get_params() == {"alpha": 2.0, "n_splits": 3, "random_state": 0}
    with pytest.raises(NotFittedError):
        d.transform(Z)
    out = d.fit_transform(pd.DataFrame(Z), pd.Series(y))
    assert out.shape == (len(y), 1) and d.n_features_in_ == Z.shape[1]
    assert list(d.get_feature_names_out()) == ["latent_direction"]
    again = pickle.loads(pickle.dumps(d))
    np.testing.assert_allclose(again.transform(Z), d.transform(Z))
    np.testing.assert_allclose(clone(d).fit_transform(Z, y[:, None]), out)  # a 2-D estimate: its first column
    # in a Pipeline, y reaches the direction; fit_transform is cross-fitted there too
    pipe = make_pipeline(LatentUnmixer(n_components=3, random_state=0), LatentDirection(random_state=0))
    piped = pipe.fit_transform(Z, y)
    U = pipe[0].transform(Z)
    np.testing.assert_allclose(piped, LatentDirection(random_state=0).fit_transform(U, y))


def test_bad_input():
    Z, y, _ = latents(2, n=40)
    with pytest.raises(ValueError, match="one estimate per particle"):
        LatentDirection().fit(Z, y[:-1])
    bad = y.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"particle\(s\) \[3, 7\]"):
        LatentDirection().fit_transform(Z, bad)
    Zbad = Z.copy()
    Zbad[5, 1] = np.inf
    with pytest.raises(ValueError, match="particle 5"):
        LatentDirection().fit(Zbad, y)
    for kw, match in (({"alpha": -1.0}, "alpha"), ({"n_splits": 1}, "n_splits"), ({"n_splits": 2.5}, "n_splits")):
        with pytest.raises(ValueError, match=match):
            LatentDirection(**kw).fit(Z, y)
    d = LatentDirection().fit(Z, y)
    with pytest.raises(ValueError, match="fitted on 6"):
        d.transform(Z[:, :4])
    # collinear columns (a latent beside its components), without a ridge: the least-squares fit
    Zdup = np.c_[Z, Z[:, :2] @ [[1.0, 2.0], [0.5, -1.0]]]
    np.testing.assert_allclose(LatentDirection(alpha=0.0).fit(Zdup, y).transform(Zdup)[:, 0],
                               LinearRegression().fit(Z, y).predict(Z), rtol=1e-7, atol=1e-7)
    # a constant column carries nothing and is not divided by zero
    Zc = np.c_[Z, np.ones(len(y))]
    out = LatentDirection(random_state=0).fit_transform(Zc, y)
    assert np.isfinite(out).all()
    # fewer particles than folds: one particle left out at a time
    assert LatentDirection(random_state=0).fit_transform(Z[:3], y[:3]).shape == (3, 1)
