"""Model selection and per-bin fusion on a dask.distributed cluster through joblib's dask backend."""

import re

import numpy as np
import pytest
from _helpers import TINY_VAE, ragged_rings
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

from pcvae_sklearn import ParticleFuser, PointCloudVAE, fuse_bins

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')")


@pytest.fixture(scope="module")
def client():
    # threads in this process: starting worker processes costs seconds and is fragile in CI sandboxes;
    # the joblib -> dask -> worker path is the same as on a real cluster
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def calls_run(tasks, function):
    """Calls of ``function`` that ran on the cluster (joblib groups calls into tasks ``batch_of_<f>_<n>_calls``)."""
    counts = [re.search(rf"batch_of_{function}_(\d+)_calls", t["key"]) for t in tasks.data]
    return sum(int(m.group(1)) for m in counts if m)


def search(X, n_jobs):
    return GridSearchCV(
        PointCloudVAE(**TINY_VAE, random_state=0),
        {"latent_dim": [1, 2], "beta": [0.0, 1e-3]},
        cv=2,
        n_jobs=n_jobs,
    ).fit(X)


def test_grid_search_runs_on_the_cluster(client):
    X, _ = ragged_rings(24, seed=0)
    with distributed.get_task_stream(client) as tasks, parallel_backend("dask"):
        on_dask = search(X, n_jobs=-1)
    assert calls_run(tasks, "_fit_and_score") == 4 * 2  # every (candidate, fold) fit went through the scheduler
    workers = {t["worker"] for t in tasks.data}
    assert workers <= set(client.scheduler_info()["workers"])
    serial = search(X, n_jobs=None)
    assert on_dask.best_params_ == serial.best_params_
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-4)
    assert on_dask.best_estimator_.transform(X).shape == (24, on_dask.best_params_["latent_dim"])


@pytest.mark.parametrize("seed", [0, 1])
def test_fuse_bins_runs_on_the_cluster(client, seed):
    X, radii = ragged_rings(18, seed=seed, min_points=30, max_points=50)
    labels = np.digitize(radii, np.quantile(radii, [1 / 3, 2 / 3]))  # 3 bins of 6 particles
    fuser = ParticleFuser(n_components=8, n_restarts=1)
    with distributed.get_task_stream(client) as tasks, parallel_backend("dask"):
        on_dask = fuse_bins(X, labels, fuser, n_jobs=-1, random_state=seed)
    assert calls_run(tasks, "_fit_bin") == 3  # every bin was fused on the cluster
    serial = fuse_bins(X, labels, fuser, random_state=seed)
    np.testing.assert_allclose(on_dask.rotations, serial.rotations, atol=1e-10)
    np.testing.assert_allclose(on_dask.translations, serial.translations, atol=1e-8)
    np.testing.assert_array_equal(on_dask.bin_sizes, [6, 6, 6])
