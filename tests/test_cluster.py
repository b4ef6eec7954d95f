"""Clustering of latents: sklearn clusterers after the VAE, choosing k, one super-particle per cluster."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pcvae_sklearn import HeightEstimator, ParticleFuser, PointCloudVAE, RadiusEstimator
from pcvae_sklearn.cluster import ClusterSelection, choose_n_clusters, fuse_clusters, plot_cluster_selection
from pcvae_sklearn.estimate import make_estimator

from _helpers import TINY_VAE, ragged_rings

SEEDS = [0, 1, 2]


# ------------------------------------------------------------- clustering in a pipeline
@pytest.mark.parametrize("clusterer", [KMeans(2, n_init=3, random_state=0), GaussianMixture(2, random_state=0)], ids=["kmeans", "gmm"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pipeline_fit_predict_and_predict_new_particles(clusterer, seed):
    X, _ = ragged_rings(30, seed=seed)
    new, _ = ragged_rings(7, seed=100 + seed)
    pipe = make_pipeline(PointCloudVAE(random_state=seed, **TINY_VAE), StandardScaler(), clusterer)
    labels = pipe.fit_predict(X)
    assert labels.shape == (30,) and set(np.unique(labels)) <= {0, 1}
    predicted = pipe.predict(new)
    assert predicted.shape == (7,) and set(np.unique(predicted)) <= {0, 1}
    # predict on the training particles agrees with the clusterer applied to the pipeline's own latents
    Zs = pipe[:-1].transform(X)
    np.testing.assert_array_equal(pipe.predict(X), pipe[-1].predict(Zs))


def test_pipeline_predict_on_3d_awkward_particles():
    from pcvae_sklearn.datasets import make_tetrahedron

    X, _ = make_tetrahedron(24, height=np.repeat([45.0, 95.0], 12), n_localizations=200, random_state=0)
    pipe = make_pipeline(PointCloudVAE(random_state=0, **TINY_VAE), StandardScaler(), KMeans(2, n_init=3, random_state=0))
    assert pipe.fit_predict(X).shape == (24,)
    assert pipe.predict(X[:5]).shape == (5,)


# ------------------------------------------------------------------- choosing k
def blobs(k, seed, n_per=60, dim=4):
    """k well-separated Gaussian blobs (unit spread, centres 10 apart on the axes), shuffled."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(dim)[:k]
    Z = np.concatenate([rng.normal(c, 1.0, (n_per, dim)) for c in centres])
    labels = np.repeat(np.arange(k), n_per)
    order = rng.permutation(len(Z))
    return Z[order], labels[order]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", SEEDS)
def test_choose_n_clusters_finds_the_number_of_blobs(k, seed):
    Z, _ = blobs(k, seed)
    result = choose_n_clusters(Z, range(1, 6), n_components=None, random_state=seed)
    assert isinstance(result, ClusterSelection)
    assert result.n_clusters == k
    assert result.k_values.tolist() == [1, 2, 3, 4, 5]
    assert np.isnan(result.silhouette[0]) and np.isfinite(result.silhouette[1:]).all()
    assert result.bic[result.k_values == k][0] == result.bic.min()
    if k >= 2:
        assert result.n_clusters_silhouette == k
    assert result.labels.shape == (len(Z),) and len(np.unique(result.labels)) == k
    frame = result.to_frame()
    assert list(frame.columns) == ["k", "bic", "silhouette", "chosen"] and frame["chosen"].sum() == 1


def test_choose_n_clusters_silhouette_sample_and_reproducible():
    Z, _ = blobs(3, 0, n_per=100)
    a = choose_n_clusters(Z, range(1, 5), silhouette_sample_size=50, random_state=3)
    b = choose_n_clusters(Z, range(1, 5), silhouette_sample_size=50, random_state=3)
    np.testing.assert_array_equal(a.bic, b.bic)
    np.testing.assert_array_equal(a.silhouette, b.silhouette)
    assert a.n_clusters == 3


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(k_range=[]), ValueError, "k_range is empty"),
        (dict(k_range=[0, 1]), ValueError, r"every k must be in \[1"),
        (dict(k_range=[1, 500]), ValueError, r"every k must be in \[1"),
        (dict(k_range="abc"), TypeError, "iterable of integers"),
        (dict(covariance_type="banana"), ValueError, "covariance_type"),
        (dict(n_init=0), ValueError, "n_init"),
        (dict(silhouette_sample_size=1), ValueError, "silhouette_sample_size"),
    ],
)
def test_choose_n_clusters_bad_arguments(kwargs, exc, match):
    Z, _ = blobs(2, 0)
    with pytest.raises(exc, match=match):
        choose_n_clusters(Z, **kwargs)


def test_choose_n_clusters_bad_latents():
    Z, _ = blobs(2, 0)
    Z[5, 1] = np.nan
    with pytest.raises(ValueError, match="particle 5 contain NaN"):
        choose_n_clusters(Z)
    with pytest.raises(ValueError, match="expected \\(n_particles, n_latent\\)"):
        choose_n_clusters(np.zeros((4, 3, 2)))


def test_plot_cluster_selection():
    import matplotlib as mpl
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    Z, _ = blobs(2, 0)
    result = choose_n_clusters(Z, range(1, 4), random_state=0)
    ax = result.plot()
    assert len(ax.lines) == 2 and len(ax.right_ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    fig, given = plt.subplots()
    assert plot_cluster_selection(result, ax=given) is given
    with pytest.raises(TypeError, match="ClusterSelection"):
        plot_cluster_selection({"bic": [1]})
    plt.close("all")


# ------------------------------------------------------------ one super-particle per cluster
def two_ring_classes(seed, n_per=8, radii=(40.0, 60.0)):
    rng = np.random.default_rng(seed)
    X, labels = [], []
    for c, r in enumerate(radii):
        for _ in range(n_per):
            phi = np.repeat(np.arange(8) * np.pi / 4 + rng.uniform(0, 2 * np.pi), 6)
            X.append(r * np.c_[np.cos(phi), np.sin(phi)] + rng.normal(0, 2.0, (48, 2)) + rng.normal(0, 50, 2))
            labels.append(c)
    order = rng.permutation(len(X))
    return [X[i] for i in order], np.array(labels)[order]


@pytest.mark.parametrize("seed", SEEDS)
def test_fuse_clusters_estimates_each_cluster(seed):
    X, labels = two_ring_classes(seed)
    names = np.where(labels == 0, "small", "large")
    out = fuse_clusters(X, names, fuser=ParticleFuser(n_components=16, n_restarts=1), random_state=seed)
    table = out.table
    assert table["cluster"].tolist() == ["large", "small"]
    assert table["n_particles"].tolist() == [8, 8]
    np.testing.assert_allclose(table["super_particle_radius_nm"], [60.0, 40.0], atol=2.0)
    assert (table["super_particle_radius_precision_nm"] > 0).all()
    # per-cluster medians against a naive loop
    naive = [np.median(out.estimates[names == c, 0]) for c in ["large", "small"]]
    np.testing.assert_allclose(table["particle_median_radius_nm"], naive)
    assert len(out.super_particles) == 2
    assert out.fusion.rotations.shape == (16, 2, 2)


def test_fuse_clusters_errors_and_estimator_choice():
    X, labels = two_ring_classes(0)
    with pytest.raises(ValueError, match="labels has 15 entries"):
        fuse_clusters(X, labels[:-1])
    lone = labels.copy()
    lone[0] = 7
    with pytest.raises(ValueError, match="fewer than 2 particles"):
        fuse_clusters(X, lone)
    with pytest.raises(TypeError, match="particle estimator"):
        fuse_clusters(X, labels, estimator=KMeans(2))
    with pytest.raises(ValueError, match="HeightEstimator needs 3D"):
        fuse_clusters(X, labels, estimator=HeightEstimator())
    assert isinstance(make_estimator(None, 2), RadiusEstimator) and isinstance(make_estimator(None, 3), HeightEstimator)


def test_fuse_clusters_does_not_modify_input():
    X, labels = two_ring_classes(1)
    before = [x.copy() for x in X]
    fuse_clusters(X, labels, fuser=ParticleFuser(n_components=16, n_restarts=1), random_state=0)
    for a, b in zip(X, before):
        np.testing.assert_array_equal(a, b)


def test_choose_n_clusters_principal_components():
    # three classes along one informative axis, plus seven small non-Gaussian nuisance axes
    rng = np.random.default_rng(0)
    informative = np.repeat([-1.0, 0.0, 1.0], 80) + rng.normal(0, 0.1, 240)
    nuisance = 0.03 * rng.standard_t(2, (240, 7))
    Z = np.c_[informative, nuisance]
    result = choose_n_clusters(Z, range(1, 6), random_state=0)
    assert result.n_components == 1 and result.n_clusters == 3
    assert choose_n_clusters(Z, range(1, 3), n_components=None, random_state=0).n_components == 8
    with pytest.raises(ValueError, match="n_components must be in"):
        choose_n_clusters(Z, n_components=9)
    with pytest.raises(ValueError, match="n_components must be None"):
        choose_n_clusters(Z, n_components=1.5)
