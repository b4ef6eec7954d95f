"""LatentBinner: equal-count bins by rank along every latent dimension."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from pcvae_sklearn.bin import LatentBinner

SEEDS = [0, 1, 2, 3, 4, 5]


def naive_labels(Z, n_bins):
    """Rank every particle by (value, index) with Python sorting; bin = rank * n_bins // n."""
    n, k = Z.shape
    labels = np.empty((n, k), dtype=int)
    for j in range(k):
        ranked = sorted(range(n), key=lambda i: (Z[i, j], i))
        for r, i in enumerate(ranked):
            labels[i, j] = r * n_bins // n
    return labels


# LatentBinner takes a 2-D numeric array, so scikit-learn's own estimator checks apply.
@parametrize_with_checks([LatentBinner(n_bins=2)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [1, 2, 5, 20])
def test_equal_counts_and_monotone_edges(seed, n_bins):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2 * n_bins, 300))
    Z = rng.normal(size=(n, 3)) * [1.0, 100.0, 1e-3]
    b = LatentBinner(n_bins=n_bins).fit(Z)
    assert b.labels_.shape == (n, 3) and b.bin_edges_.shape == (n_bins + 1, 3)
    for j in range(3):
        counts = np.bincount(b.labels_[:, j], minlength=n_bins)
        np.testing.assert_array_equal(counts, b.bin_counts_)
        assert counts.max() - counts.min() <= 1 and counts.min() >= 2 and counts.sum() == n
        assert (np.diff(b.bin_edges_[:, j]) >= 0).all()
        assert b.bin_edges_[0, j] == Z[:, j].min() and b.bin_edges_[-1, j] == Z[:, j].max()
        # bins are ordered: every value of bin b lies within its edges, below every value of bin b+1
        for k in range(n_bins):
            v = Z[b.labels_[:, j] == k, j]
            assert b.bin_edges_[k, j] <= v.min() and v.max() <= b.bin_edges_[k + 1, j]
    np.testing.assert_array_equal(b.labels_, naive_labels(Z, n_bins))


@pytest.mark.parametrize("seed", SEEDS)
def test_ties_broken_by_particle_index(seed):
    rng = np.random.default_rng(seed)
    Z = rng.integers(0, 4, size=(40, 2)).astype(float)  # only 4 distinct values: many ties
    Z[:, 1] = 7.0  # one constant dimension
    b = LatentBinner(n_bins=5).fit(Z)
    np.testing.assert_array_equal(b.labels_, naive_labels(Z, 5))
    np.testing.assert_array_equal(b.labels_[:, 1], np.arange(40) * 5 // 40)
    np.testing.assert_array_equal(np.bincount(b.labels_[:, 0]), [8] * 5)
    # deterministic: refitting and transforming the training data give labels_
    np.testing.assert_array_equal(LatentBinner(n_bins=5).fit(Z).labels_, b.labels_)
    np.testing.assert_array_equal(b.transform(Z), b.labels_)
    np.testing.assert_array_equal(b.transform(Z.copy()), b.labels_)
    np.testing.assert_array_equal(LatentBinner(n_bins=5).fit_transform(Z), b.labels_)


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_follow_the_particles_under_permutation(seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(97, 4))
    perm = rng.permutation(len(Z))
    labels = LatentBinner(n_bins=7).fit(Z).labels_
    np.testing.assert_array_equal(LatentBinner(n_bins=7).fit(Z[perm]).labels_, labels[perm])


@pytest.mark.parametrize("seed", SEEDS)
def test_bin_indices(seed):
    rng = np.random.default_rng(seed)
    Z = np.round(rng.normal(size=(63, 3)), 1)  # some ties
    b = LatentBinner(n_bins=6).fit(Z)
    for j in range(3):
        seen = []
        for k in range(6):
            idx = b.bin_indices(k, dim=j)
            np.testing.assert_array_equal(np.sort(idx), np.flatnonzero(b.labels_[:, j] == k))
            keys = list(zip(Z[idx, j], idx))
            assert keys == sorted(keys)  # by value, ties by index
            seen.append(idx)
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(63))
    # the result is a copy
    b.bin_indices(0, 0)[:] = -1
    assert (b.bin_indices(0, 0) >= 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_transform_new_data_by_edges(seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(80, 2))
    b = LatentBinner(n_bins=8).fit(Z)
    new = rng.normal(0, 2, size=(500, 2))
    out = b.transform(new)
    for j in range(2):
        inner = b.bin_edges_[1:-1, j]
        expected = [int((v >= inner).sum()) for v in new[:, j]]
        np.testing.assert_array_equal(out[:, j], expected)
    assert out.min() >= 0 and out.max() <= 7
    # a subset of the training data (no ties) gets its training labels
    rows = rng.choice(80, 30, replace=False)
    np.testing.assert_array_equal(b.transform(Z[rows]), b.labels_[rows])


def test_feature_names_and_pandas_output():
    import pandas as pd
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(40, 2)), columns=["pcvae0", "pcvae1"])
    b = LatentBinner(n_bins=4).fit(df)
    np.testing.assert_array_equal(b.feature_names_in_, ["pcvae0", "pcvae1"])
    assert list(b.get_feature_names_out()) == ["pcvae0_bin", "pcvae1_bin"]
    out = clone(b).set_output(transform="pandas").fit_transform(df)
    assert list(out.columns) == ["pcvae0_bin", "pcvae1_bin"]
    np.testing.assert_array_equal(out.to_numpy(), b.labels_)
    assert list(LatentBinner(n_bins=4).fit(df.to_numpy()).get_feature_names_out()) == ["x0_bin", "x1_bin"]
    with pytest.warns(UserWarning, match="feature names"):
        b.transform(df.to_numpy())


def test_pickle_and_clone():
    Z = np.random.default_rng(0).normal(size=(30, 2))
    b = LatentBinner(n_bins=3).fit(Z)
    again = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(again.transform(Z), b.labels_)
    np.testing.assert_array_equal(again.bin_indices(2, 1), b.bin_indices(2, 1))
    assert clone(b).get_params() == {"n_bins": 3}


class Spread(TransformerMixin, BaseEstimator):
    """A stand-in for PointCloudVAE: ragged particles -> (n, 2) features with names."""

    def fit(self, X, y=None):
        self.n_features_in_ = 2
        return self

    def transform(self, X):
        return np.array([[np.ptp(x[:, 0]), np.ptp(x[:, 1])] for x in X])

    def get_feature_names_out(self, input_features=None):
        return np.array(["pcvae0", "pcvae1"], dtype=object)


def _particles(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, rng.uniform(5, 50), (int(rng.integers(5, 30)), 2)) for _ in range(n)]


def test_pipeline_with_stand_in_encoder():
    X = _particles()
    pipe = Pipeline([("vae", Spread()), ("bin", LatentBinner(n_bins=5))])
    labels = pipe.fit_transform(X)
    np.testing.assert_array_equal(labels, LatentBinner(n_bins=5).fit_transform(Spread().fit_transform(X)))
    np.testing.assert_array_equal(pipe.transform(X), labels)
    assert list(pipe.get_feature_names_out()) == ["pcvae0_bin", "pcvae1_bin"]
    out = pipe.set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["pcvae0_bin", "pcvae1_bin"]


@pytest.mark.parametrize(
    "n_bins, n, match",
    [
        (20, 10, r"n_bins=20 is larger than the number of particles \(n_samples = 10\)"),
        (20, 39, "fewer than 2 particles in some bin"),
        (5, 9, "fewer than 2 particles in some bin"),
    ],
)
def test_too_few_particles(n_bins, n, match):
    with pytest.raises(ValueError, match=match):
        LatentBinner(n_bins=n_bins).fit(np.random.default_rng(0).normal(size=(n, 2)))


def test_bad_input_errors():
    Z = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidParameterError, match="n_bins"):
        LatentBinner(n_bins=0).fit(Z)
    with pytest.raises(InvalidParameterError, match="n_bins"):
        LatentBinner(n_bins=2.5).fit(Z)
    bad = Z.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LatentBinner(n_bins=2).fit(bad)
    with pytest.raises(ValueError, match="2D array"):
        LatentBinner(n_bins=2).fit(Z[:, 0])
    with pytest.raises(NotFittedError):
        LatentBinner().transform(Z)
    with pytest.raises(NotFittedError):
        LatentBinner().bin_indices(0)
    b = LatentBinner(n_bins=4).fit(Z)
    with pytest.raises(ValueError, match="has 3 features"):
        b.transform(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"bin 4 does not exist: bins are numbered 0 .. 3"):
        b.bin_indices(4)
    with pytest.raises(ValueError, match="bin -1 does not exist"):
        b.bin_indices(-1)
    with pytest.raises(ValueError, match="dimension 2 does not exist"):
        b.bin_indices(0, dim=2)
    with pytest.raises(TypeError, match="b must be an int"):
        b.bin_indices(1.0)
    with pytest.raises(TypeError, match="dim must be an int"):
        b.bin_indices(1, dim="pcvae0")


def test_pipeline_with_point_cloud_vae():
    from pcvae_sklearn.encode import PointCloudVAE
    from _helpers import TINY_VAE, ragged_rings

    X, _ = ragged_rings(16)
    pipe = Pipeline([("vae", PointCloudVAE(**TINY_VAE, random_state=0)), ("bin", LatentBinner(n_bins=4))])
    labels = pipe.fit_transform(X)
    assert labels.shape == (16, TINY_VAE["latent_dim"])
    np.testing.assert_array_equal(pipe.transform(X), labels)  # transform of the training particles = labels_
    np.testing.assert_array_equal(np.bincount(labels[:, 0]), [4, 4, 4, 4])
    assert list(pipe.get_feature_names_out()) == [f"pcvae{j}_bin" for j in range(TINY_VAE["latent_dim"])]
    df = pipe.set_output(transform="pandas").fit_transform(X)
    assert list(df.columns) == [f"pcvae{j}_bin" for j in range(TINY_VAE["latent_dim"])]
