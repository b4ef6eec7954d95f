"""latent_correlation_scorer, latent_correlation_table and best_latent_dimension."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pcvae_sklearn.bin import LatentBinner
from pcvae_sklearn.estimate import (
    HeightEstimator,
    RadiusEstimator,
    best_latent_dimension,
    latent_correlation_scorer,
    latent_correlation_table,
)
from pcvae_sklearn.estimate._scorers import _correlations, _p_values

SEEDS = [0, 1, 2, 3, 4]


def rings(n=60, seed=0, n_points=60):
    rng = np.random.default_rng(seed)
    radii = rng.uniform(35, 65, n)
    X = []
    for r in radii:
        a = rng.uniform(0, 2 * np.pi, n_points)
        X.append(np.c_[r * np.cos(a), r * np.sin(a)] + rng.normal(0, 2, (n_points, 2)) + rng.normal(0, 300, 2))
    return X, radii


class RingLatents(TransformerMixin, BaseEstimator):
    """A stand-in for PointCloudVAE: latent 0 is the rms radius plus noise, the others are noise."""

    def __init__(self, noise=0.0, n_latent=3, constant_dim=False):
        self.noise = noise
        self.n_latent = n_latent
        self.constant_dim = constant_dim

    def fit(self, X, y=None):
        self.n_fit_ = len(X)
        return self

    def transform(self, X):
        rms = np.array([np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()) for x in X])
        rng = np.random.default_rng(len(X))
        Z = rng.normal(0, 1, (len(X), self.n_latent))
        Z[:, 0] = rms + self.noise * rng.normal(0, 1, len(X))
        if self.constant_dim:
            Z[:, 1] = 4.0
        return Z


# ------------------------------------------------------------ kernels vs scipy
@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_and_p_values_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    z = rng.normal(size=(n, 4))
    z[:, 0] += np.linspace(0, 3, n)
    z[:, 3] = np.round(z[:, 3])  # ties
    e = np.c_[np.linspace(0, 1, n) + rng.normal(0, 0.3, n), rng.normal(size=n)]
    r = _correlations(z, e, "pearson")
    rho = _correlations(z, e, "spearman")
    pr, ps = _p_values(r, n, "pearson"), _p_values(rho, n, "spearman")
    for i in range(4):
        for j in range(2):
            ref = stats.pearsonr(z[:, i], e[:, j])
            np.testing.assert_allclose([r[i, j], pr[i, j]], [ref.statistic, ref.pvalue], rtol=1e-8, atol=1e-12)
            ref = stats.spearmanr(z[:, i], e[:, j])
            np.testing.assert_allclose([rho[i, j], ps[i, j]], [ref.statistic, ref.pvalue], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_table_matches_scipy_and_names(seed):
    import pandas as pd
    rng = np.random.default_rng(seed)
    n = 40
    radius, height = rng.uniform(40, 60, n), rng.uniform(30, 70, n)
    Z = pd.DataFrame({"a": radius + rng.normal(0, 3, n), "b": rng.normal(size=n), "c": -height})
    table = latent_correlation_table(Z, {"radius_nm": radius, "height_nm": np.c_[height, np.ones(n)]})
    assert list(table.columns) == ["latent", "estimate", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"]
    assert len(table) == 6
    for row in table.itertuples():
        est = radius if row.estimate == "radius_nm" else height
        ref_p, ref_s = stats.pearsonr(Z[row.latent], est), stats.spearmanr(Z[row.latent], est)
        np.testing.assert_allclose([row.pearson_r, row.pearson_p], [ref_p.statistic, ref_p.pvalue], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose([row.spearman_rho, row.spearman_p], [ref_s.statistic, ref_s.pvalue], rtol=1e-8, atol=1e-12)
    # a 2-D array of estimates, with names, and latents without names
    table2 = latent_correlation_table(Z.to_numpy(), np.c_[radius, height], estimate_names=["r", "h"])
    assert list(table2["latent"].unique()) == ["pcvae0", "pcvae1", "pcvae2"]
    assert list(table2["estimate"].unique()) == ["r", "h"]
    np.testing.assert_allclose(table2["spearman_rho"], table["spearman_rho"])


def test_table_constant_dimension_is_nan_and_estimator_output_accepted():
    X, radii = rings(30)
    est = RadiusEstimator().fit_transform(X)
    Z = RingLatents(constant_dim=True).fit_transform(X)
    table = latent_correlation_table(Z, {"radius_nm": est}, feature_names=["u", "v", "w"])
    assert list(table["latent"]) == ["u", "v", "w"]
    assert np.isnan(table.loc[1, ["pearson_r", "pearson_p", "spearman_rho", "spearman_p"]].astype(float)).all()
    assert table.loc[0, "spearman_rho"] > 0.9


def test_table_bad_input():
    Z = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="rows but the latents have 10"):
        latent_correlation_table(Z, {"r": np.arange(9.0)})
    with pytest.raises(ValueError, match="feature_names has 3 names"):
        latent_correlation_table(Z, {"r": np.arange(10.0)}, feature_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="different lengths"):
        latent_correlation_table(Z, {"r": np.arange(10.0), "h": np.arange(8.0)})
    with pytest.raises(ValueError, match="empty dict"):
        latent_correlation_table(Z, {})
    bad = Z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite value .* row 3, column 1"):
        latent_correlation_table(bad, {"r": np.arange(10.0)})
    with pytest.raises(ValueError, match="2 estimate name"):
        latent_correlation_table(Z, np.c_[np.arange(10.0)], estimate_names=["a", "b"])


def test_table_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="install pandas"):
        latent_correlation_table(np.zeros((4, 1)) + np.arange(4)[:, None], {"r": np.arange(4.0)})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_best_latent_dimension(seed, method):
    rng = np.random.default_rng(seed)
    n, k = 50, 5
    estimate = rng.uniform(40, 60, n)
    best = int(rng.integers(k))
    Z = rng.normal(size=(n, k))
    Z[:, best] = -estimate + rng.normal(0, 1, n)  # a negative correlation counts as well
    Z[:, (best + 1) % k] = 1.0  # a constant dimension is not picked
    assert best_latent_dimension(Z, estimate, method=method) == best
    assert best_latent_dimension(Z, np.c_[estimate, np.ones(n)], method=method) == best


def test_best_latent_dimension_errors():
    with pytest.raises(ValueError, match="method"):
        best_latent_dimension(np.zeros((3, 2)), np.zeros(3), method="kendall")
    with pytest.raises(ValueError, match="rows"):
        best_latent_dimension(np.zeros((3, 2)), np.zeros(4))


# ------------------------------------------------------------ scorer
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_scorer_is_largest_abs_correlation(seed, method):
    X, _ = rings(40, seed)
    model = RingLatents(noise=2.0).fit(X)
    scorer = latent_correlation_scorer(RadiusEstimator(), method=method)
    Z = model.transform(X)
    est = RadiusEstimator().fit_transform(X)[:, 0]
    ref = stats.spearmanr if method == "spearman" else stats.pearsonr
    expected = max(abs(ref(Z[:, j], est).statistic) for j in range(Z.shape[1]))
    assert scorer(model, X) == pytest.approx(expected, rel=1e-10)
    # column=1 scores against the precision instead
    prec = RadiusEstimator().fit_transform(X)[:, 1]
    expected1 = max(abs(ref(Z[:, j], prec).statistic) for j in range(Z.shape[1]))
    assert latent_correlation_scorer(RadiusEstimator(), method=method, column=1)(model, X) == pytest.approx(expected1)


def test_scorer_nan_safe_and_picklable():
    X, _ = rings(30)
    model = RingLatents(n_latent=2, constant_dim=True).fit(X)
    scorer = latent_correlation_scorer(RadiusEstimator())
    s = scorer(model, X)
    assert np.isfinite(s) and s > 0.9
    only_constant = RingLatents(n_latent=2, constant_dim=True, noise=0).fit(X)
    only_constant.transform = lambda X: np.ones((len(X), 2))
    assert scorer(only_constant, X) == 0.0
    # an estimate that does not vary, or too few particles: no correlation is defined, whatever the model
    same = [X[0]] * 5
    assert np.isnan(scorer(model, same))
    assert np.isnan(scorer(model, X[:2])) and np.isfinite(scorer(model, X[:3]))
    again = pickle.loads(pickle.dumps(scorer))
    assert again(model, X) == s
    assert "RadiusEstimator" in repr(scorer)


def test_scorer_uses_pipeline_up_to_vae_or_whole_pipeline():
    X, _ = rings(40)
    pipe = Pipeline([("latents", RingLatents(noise=1.0)), ("scale", StandardScaler())]).fit(X)
    scorer = latent_correlation_scorer(RadiusEstimator())
    # no PointCloudVAE in the pipeline: the whole pipeline's transform (scaling keeps correlations)
    assert scorer(pipe, X) == pytest.approx(scorer(pipe[0], X))
    # a binner at the end would change the score if it were used: ranks of 2 bins
    pipe_b = Pipeline([("latents", RingLatents(noise=1.0)), ("bin", LatentBinner(n_bins=2))]).fit(X)
    assert scorer(pipe_b, X) != pytest.approx(scorer(pipe_b[0], X))


def test_scorer_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        latent_correlation_scorer(RadiusEstimator(), method="kendall")
    with pytest.raises(TypeError, match="transformer"):
        latent_correlation_scorer(object())
    with pytest.raises(TypeError, match="column must be an int"):
        latent_correlation_scorer(RadiusEstimator(), column=0.5)
    X, _ = rings(10)
    with pytest.raises(ValueError, match="column=2 is out of range"):
        latent_correlation_scorer(RadiusEstimator(), column=2)(RingLatents().fit(X), X)
    with pytest.raises(TypeError, match="has no transform"):
        latent_correlation_scorer(RadiusEstimator())(object(), X)
    with pytest.raises(ValueError, match="needs 3D particles"):
        latent_correlation_scorer(HeightEstimator())(RingLatents().fit(X), X)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scorer_in_grid_search_picks_the_informative_model(seed):
    X, _ = rings(45, seed)
    scorer = latent_correlation_scorer(RadiusEstimator())
    grid = GridSearchCV(RingLatents(), {"noise": [0.0, 5.0, 300.0]}, scoring=scorer, cv=3).fit(X)
    assert grid.best_params_ == {"noise": 0.0}
    scores = grid.cv_results_["mean_test_score"]
    assert scores[0] > 0.9 and scores[0] > scores[1] > scores[2]


def test_scorer_dict_with_refit():
    X, _ = rings(45)
    scoring = {
        "spearman": latent_correlation_scorer(RadiusEstimator()),
        "pearson": latent_correlation_scorer(RadiusEstimator(), method="pearson"),
    }
    grid = GridSearchCV(RingLatents(), {"noise": [300.0, 0.0]}, scoring=scoring, refit="spearman", cv=3).fit(X)
    assert {"mean_test_spearman", "mean_test_pearson"} <= set(grid.cv_results_)
    assert grid.best_params_ == {"noise": 0.0}
    assert grid.best_estimator_.n_fit_ == len(X)
    assert np.isfinite(grid.cv_results_["mean_test_pearson"]).all()


# ------------------------------------------------------------ with the real PointCloudVAE
def _vae():
    from pcvae_sklearn.encode import PointCloudVAE
    from _helpers import TINY_VAE

    return PointCloudVAE, TINY_VAE


def test_scorer_takes_latents_from_the_vae_step_of_a_pipeline():
    PointCloudVAE, tiny = _vae()
    X, _ = rings(16, n_points=20)
    pipe = Pipeline([("vae", PointCloudVAE(**tiny, random_state=0)), ("bin", LatentBinner(n_bins=2))]).fit(X)
    scorer = latent_correlation_scorer(RadiusEstimator())
    assert scorer(pipe, X) == pytest.approx(scorer(pipe.named_steps["vae"], X))


def test_grid_search_over_vae_pipeline():
    PointCloudVAE, tiny = _vae()
    X, _ = rings(24, n_points=20)
    pipe = Pipeline([("vae", PointCloudVAE(**tiny, random_state=0)), ("bin", LatentBinner(n_bins=2))])
    scoring = {
        "spearman": latent_correlation_scorer(RadiusEstimator()),
        "pearson": latent_correlation_scorer(RadiusEstimator(), method="pearson"),
    }
    grid = GridSearchCV(
        pipe, {"vae__latent_dim": [2, 3], "vae__beta": [0.5, 1.0]}, scoring=scoring, refit="spearman", cv=3
    ).fit(X)
    for key in ("mean_test_spearman", "mean_test_pearson"):
        scores = grid.cv_results_[key]
        assert scores.shape == (4,) and np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert grid.best_estimator_.named_steps["vae"].latent_dim in (2, 3)
