"""LatentUnmixer: ICA on the active latent dimensions, or on the top principal directions."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from _helpers import TINY_VAE, ragged_rings
from sklearn.base import clone
from sklearn.decomposition import FastICA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from pcvae_sklearn import LatentBinner, LatentUnmixer, PointCloudVAE

SEEDS = range(6)


def mixed_latents(seed, n=800, n_sources=2, n_dead=2):
    """Independent uniform and bimodal sources, randomly mixed, plus collapsed (near-constant) dimensions."""
    rng = np.random.default_rng(seed)
    sources = np.column_stack(
        [rng.uniform(-1, 1, n)] + [rng.choice([-1.0, 1.0], n) + 0.3 * rng.normal(size=n) for _ in range(n_sources - 1)]
    )
    mixing = rng.normal(size=(n_sources, n_sources)) + 2 * np.eye(n_sources)
    active = sources @ mixing.T
    dead = 1e-3 * rng.normal(size=(n, n_dead))
    Z = np.column_stack([active, dead])
    perm = rng.permutation(Z.shape[1])  # active dimensions anywhere among the dead ones
    return Z[:, perm] + rng.normal(size=Z.shape[1]), sources, perm < n_sources


@parametrize_with_checks([LatentUnmixer(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_sources", [2, 3])
def test_recovers_independent_sources_and_skips_dead_dimensions(seed, n_sources):
    Z, sources, active = mixed_latents(seed, n_sources=n_sources)
    unmixer = LatentUnmixer(random_state=seed).fit(Z)
    np.testing.assert_array_equal(unmixer.active_, active)
    S = unmixer.transform(Z)
    assert S.shape == (len(Z), n_sources)
    corr = np.abs(np.corrcoef(S.T, sources.T)[:n_sources, n_sources:])
    # every component follows exactly one source, and every source has its component
    assert (corr.max(axis=1) > 0.97).all()
    assert sorted(corr.argmax(axis=1)) == list(range(n_sources))
    np.testing.assert_allclose(S.std(axis=0), 1.0, rtol=0.05)


def _naive_negentropy(S):
    S = (S - S.mean(axis=0)) / S.std(axis=0)
    return sum((np.log(np.cosh(S[:, j])).mean() - 0.3745672075) ** 2 for j in range(S.shape[1]))


@pytest.mark.parametrize("n_init", [1, 4])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_fastica_up_to_order_and_sign(seed, n_init):
    """The naive reference: scikit-learn's FastICA on the active columns from the same seeds, least Gaussian run kept."""
    Z, _, active = mixed_latents(seed, n_sources=3)
    unmixer = LatentUnmixer(random_state=seed, n_init=n_init).fit(Z)
    ours = unmixer.transform(Z)
    rs = np.random.RandomState(seed)
    runs = [
        FastICA(n_components=3, whiten="unit-variance", max_iter=1000, tol=1e-4,
                random_state=int(rs.randint(np.iinfo(np.int32).max))).fit_transform(Z[:, active])
        for _ in range(n_init)
    ]
    scores = [_naive_negentropy(S) for S in runs]
    ref = runs[int(np.argmax(scores))]
    assert unmixer.negentropy_ == pytest.approx(max(scores), rel=1e-9)
    corr = np.corrcoef(ours.T, ref.T)[:3, 3:]
    np.testing.assert_allclose(np.sort(np.abs(corr), axis=1)[:, -1], 1.0, atol=1e-10)
    assert sorted(np.abs(corr).argmax(axis=1)) == [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_order_sign_and_round_trip(seed):
    Z, _, active = mixed_latents(seed, n_sources=3)
    unmixer = LatentUnmixer(random_state=seed).fit(Z)
    carried = (unmixer.mixing_**2).sum(axis=0)
    assert (np.diff(carried) <= 1e-12).all()  # largest latent variance first
    big = unmixer.mixing_[np.abs(unmixer.mixing_).argmax(axis=0), np.arange(3)]
    assert (big > 0).all()
    S = unmixer.transform(Z)
    back = unmixer.inverse_transform(S)
    np.testing.assert_allclose(back[:, active], Z[:, active], atol=1e-9)
    np.testing.assert_allclose(back[:, ~active], np.broadcast_to(Z[:, ~active].mean(axis=0), back[:, ~active].shape))
    np.testing.assert_allclose(unmixer.transform(back), S, atol=1e-9)
    again = LatentUnmixer(random_state=seed).fit(Z)
    np.testing.assert_array_equal(again.transform(Z), S)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(unmixer)).transform(Z), S)


@pytest.mark.parametrize("seed", SEEDS)
def test_n_components_does_not_depend_on_the_latent_orientation(seed):
    """Rotate the latent space at random: the dead dimensions' noise is in every axis, none is 'inactive'.

    The top principal directions still hold the sources, so ``n_components`` recovers them.
    """
    Z, sources, _ = mixed_latents(seed, n_sources=3, n_dead=3)
    q, _ = np.linalg.qr(np.random.default_rng(seed + 100).normal(size=(Z.shape[1], Z.shape[1])))
    Zr = Z @ q
    unmixer = LatentUnmixer(n_components=3, random_state=seed).fit(Zr)
    assert unmixer.active_.all() and unmixer.n_components_ == 3
    assert unmixer.components_.shape == (3, 6) and unmixer.mixing_.shape == (6, 3)
    S = unmixer.transform(Zr)
    corr = np.abs(np.corrcoef(S.T, sources.T)[:3, 3:])
    assert (corr.max(axis=1) > 0.97).all()
    assert sorted(corr.argmax(axis=1)) == [0, 1, 2]
    # inverse_transform gives the latent's projection onto the unmixed subspace: transforming it back is exact
    np.testing.assert_allclose(unmixer.transform(unmixer.inverse_transform(S)), S, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_n_components_matches_fastica_on_all_dimensions(seed):
    """The naive reference: FastICA(n_components=k) on every latent column (it whitens onto the top k directions)."""
    Z, _, _ = mixed_latents(seed, n_sources=2, n_dead=3)
    unmixer = LatentUnmixer(n_components=2, n_init=3, random_state=seed).fit(Z)
    rs = np.random.RandomState(seed)
    runs = [
        FastICA(n_components=2, whiten="unit-variance", max_iter=1000, tol=1e-4,
                random_state=int(rs.randint(np.iinfo(np.int32).max))).fit_transform(Z)
        for _ in range(3)
    ]
    ref = runs[int(np.argmax([_naive_negentropy(S) for S in runs]))]
    corr = np.corrcoef(unmixer.transform(Z).T, ref.T)[:2, 2:]
    np.testing.assert_allclose(np.sort(np.abs(corr), axis=1)[:, -1], 1.0, atol=1e-10)


def test_n_components_larger_than_the_latent_is_refused():
    Z, _, _ = mixed_latents(0, n_sources=2, n_dead=1)
    with pytest.raises(ValueError, match="n_components=4 is more than the 3 latent dimensions"):
        LatentUnmixer(n_components=4).fit(Z)
    with pytest.raises(InvalidParameterError):
        LatentUnmixer(n_components=0).fit(Z)


def test_threshold_controls_the_active_set():
    Z, _, active = mixed_latents(0, n_sources=2, n_dead=1)
    assert LatentUnmixer(activity_threshold=0.0).fit(Z).active_.all()
    assert LatentUnmixer().fit(Z).n_components_ == 2
    with pytest.raises(InvalidParameterError):
        LatentUnmixer(activity_threshold=1.0).fit(Z)


def test_in_a_pipeline_after_the_vae_with_names_and_pandas():
    X, _ = ragged_rings(40, seed=3)
    pipe = make_pipeline(PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0),
                         LatentUnmixer(activity_threshold=0.0, random_state=0), LatentBinner(n_bins=4))
    labels = pipe.fit_transform(X)
    assert labels.shape == (40, 3) and labels.min() == 0 and labels.max() == 3
    names = pipe[:-1].get_feature_names_out()
    assert list(names) == ["ic0", "ic1", "ic2"]
    frame = clone(pipe[:-1]).set_output(transform="pandas").fit_transform(X)
    assert list(frame.columns) == ["ic0", "ic1", "ic2"]
    # decode a traversal along the first independent component
    vae, unmixer = pipe[0], pipe[1]
    S = np.zeros((3, unmixer.n_components_))
    S[:, 0] = [-1.0, 0.0, 1.0]
    clouds = vae.inverse_transform(unmixer.inverse_transform(S))
    assert len(clouds) == 3


def test_bad_input():
    Z, _, _ = mixed_latents(0)
    with pytest.raises(NotFittedError):
        LatentUnmixer().transform(Z)
    bad = Z.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LatentUnmixer().fit(bad)
    with pytest.raises(ValueError, match="nothing to unmix"):
        LatentUnmixer().fit(np.ones((10, 3)))
    unmixer = LatentUnmixer(random_state=0).fit(Z)
    with pytest.raises(ValueError, match="features"):
        unmixer.transform(Z[:, :2])
    with pytest.raises(ValueError, match="expected"):
        unmixer.inverse_transform(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="particle 1"):
        unmixer.inverse_transform(np.array([[0.0, 0.0], [np.inf, 0.0]]))


def test_warns_when_every_dimension_varies_alike():
    """Standardised latents (PointCloudVAE's latent_batch_norm) leave the activity rule nothing to drop."""
    rng = np.random.default_rng(0)
    Z = rng.uniform(-1, 1, size=(300, 4)) @ np.linalg.qr(rng.normal(size=(4, 4)))[0]
    Z /= Z.std(axis=0)
    with pytest.warns(UserWarning, match="pass n_components"):
        LatentUnmixer(random_state=0).fit(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LatentUnmixer(n_components=2, random_state=0).fit(Z)  # the advice given: no warning
        LatentUnmixer(random_state=0).fit(Z * [1.0, 1.0, 0.1, 0.01])  # dimensions that differ: no warning


@pytest.mark.parametrize("n_components", [None, 2])
def test_save_and_load_give_the_same_components(tmp_path, n_components):
    Z, _, _ = mixed_latents(1)
    unmixer = LatentUnmixer(n_components=n_components, random_state=np.random.RandomState(0)).fit(Z)
    unmixer.save(tmp_path / "unmixer.npz")
    with np.load(tmp_path / "unmixer.npz", allow_pickle=False) as f:  # plain arrays: no pickled code
        assert str(f["format"]) == "pcvae_sklearn.LatentUnmixer"
    loaded = LatentUnmixer.load(tmp_path / "unmixer.npz")
    np.testing.assert_array_equal(loaded.transform(Z), unmixer.transform(Z))
    S = unmixer.transform(Z[:5])
    np.testing.assert_array_equal(loaded.inverse_transform(S), unmixer.inverse_transform(S))
    assert loaded.get_params() == {**unmixer.get_params(), "random_state": None}  # a RandomState is not stored
    assert loaded.get_feature_names_out().tolist() == unmixer.get_feature_names_out().tolist()
    assert loaded.n_components_ == unmixer.n_components_ and loaded.negentropy_ == unmixer.negentropy_


def test_save_and_load_keep_the_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    Z, _, _ = mixed_latents(2)
    frame = pd.DataFrame(Z, columns=[f"pcvae{j}" for j in range(Z.shape[1])])
    unmixer = LatentUnmixer(random_state=0).fit(frame)
    unmixer.save(tmp_path / "u.npz")
    loaded = LatentUnmixer.load(tmp_path / "u.npz")
    assert loaded.feature_names_in_.tolist() == frame.columns.tolist() and loaded.random_state == 0
    np.testing.assert_array_equal(loaded.transform(frame), unmixer.transform(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.transform(frame.rename(columns={"pcvae0": "other"}))


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(NotFittedError):
        LatentUnmixer().save(tmp_path / "u.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a LatentUnmixer file"):
        LatentUnmixer.load(tmp_path / "other.npz")
    Z, _, _ = mixed_latents(0)
    LatentUnmixer(random_state=0).fit(Z).save(tmp_path / "u.npz")
    with np.load(tmp_path / "u.npz") as f:
        data = {k: f[k] for k in f.files}
    np.savez(tmp_path / "future.npz", **{**data, "format_version": np.asarray(99)})
    with pytest.raises(ValueError, match="format version 99"):
        LatentUnmixer.load(tmp_path / "future.npz")
    np.savez(tmp_path / "cut.npz", **{k: v for k, v in data.items() if k != "fitted.mixing_"})
    with pytest.raises(ValueError, match="incomplete LatentUnmixer file: it lacks fitted.mixing_"):
        LatentUnmixer.load(tmp_path / "cut.npz")
