"""Streaming: Parquet partitions read and encoded one at a time, and bounded transform memory."""

import awkward as ak
import numpy as np
import pytest
from _helpers import TINY_VAE, ragged_rings

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.encode._batching import chunk_by_budget
from pcvae_sklearn.io import iter_parquet_particles, parquet_partitions, transform_parquet, write_parquet



@pytest.fixture(scope="module")
def fitted():
    X, _ = ragged_rings(60, seed=3)
    return PointCloudVAE(**TINY_VAE, n_rotations=2, random_state=0).fit(X), X


def write_partitions(X, folder, sizes, row_group_size=None):
    """Write consecutive slices of X as part.0, part.1, ... (ids = global position)."""
    arr = ak.with_field(
        ak.unflatten(ak.zip({"x": np.concatenate(X)[:, 0], "y": np.concatenate(X)[:, 1]}), [len(a) for a in X]),
        ak.unflatten(np.repeat(np.arange(len(X)), [len(a) for a in X]), [len(a) for a in X]),
        "particle_id",
    )
    start = 0
    for k, n in enumerate(sizes):
        ak.to_parquet(ak.to_packed(arr[start : start + n]), folder / f"part.{k}.parquet", row_group_size=row_group_size)
        start += n
    return arr


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("by, row_group_size", [("row_group", 7), ("row_group", None), ("file", 7)])
def test_transform_parquet_equals_in_memory_transform(fitted, tmp_path, seed, by, row_group_size):
    vae, X = fitted
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(X)), size=10, replace=False))
    sizes = np.diff(np.r_[0, cuts, len(X)])  # 11 partitions, some of them more than 9 (natural order)
    write_partitions(X, tmp_path, sizes, row_group_size)
    Z, ids = transform_parquet(vae, tmp_path, by=by, return_ids=True)
    np.testing.assert_array_equal(ids, np.arange(len(X)))
    np.testing.assert_allclose(Z, vae.transform(X), rtol=1e-5, atol=1e-6)


def test_partitions_in_natural_order_and_row_groups(tmp_path):
    X, _ = ragged_rings(30, seed=0)
    write_partitions(X, tmp_path, [3] * 10, row_group_size=2)
    files = parquet_partitions(tmp_path)
    assert [f.name for f in files] == [f"part.{k}.parquet" for k in range(10)]
    assert [len(p) for p in iter_parquet_particles(tmp_path)] == [2, 1] * 10
    assert [len(p) for p in iter_parquet_particles(tmp_path, by="file")] == [3] * 10
    assert [len(p) for p in iter_parquet_particles(files[:2])] == [2, 1, 2, 1]


def test_write_parquet_files_without_ids(fitted, tmp_path):
    vae, X = fitted
    write_parquet(X[:25], tmp_path / "a.parquet")
    write_parquet(X[25:], tmp_path / "b.parquet")  # particle_id restarts at 0 in each file
    Z, ids = transform_parquet(vae, tmp_path, return_ids=True)
    np.testing.assert_array_equal(ids, np.r_[np.arange(25), np.arange(len(X) - 25)])
    np.testing.assert_allclose(Z, vae.transform(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda d: d / "missing", FileNotFoundError, "does not exist"),
        (lambda d: d, ValueError, "holds no .parquet file"),
        (lambda d: 3.5, TypeError, "expected a Parquet file"),
        (lambda d: [d / "nope.parquet"], FileNotFoundError, "does not exist"),
    ],
)
def test_bad_sources(tmp_path, make, exc, match):
    with pytest.raises(exc, match=match):
        list(iter_parquet_particles(make(tmp_path)))


def test_not_particles_or_not_parquet(tmp_path):
    ak.to_parquet(ak.Array([{"a": 1}, {"a": 2}]), tmp_path / "flat.parquet")
    with pytest.raises(ValueError, match="does not hold particles"):
        list(iter_parquet_particles(tmp_path / "flat.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="cannot be read as Parquet"):
        list(iter_parquet_particles(tmp_path / "junk.parquet"))
    with pytest.raises(ValueError, match="by must be"):
        list(iter_parquet_particles(tmp_path, by="rows"))


@pytest.mark.parametrize("seed", range(5))
def test_transform_chunks_are_bounded(seed):
    """transform's working set: no chunk holds more than the budgets (a bigger particle is alone)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 3000, 400)
    lengths[rng.integers(400)] = 70_000  # one particle over the localization budget
    chunks = chunk_by_budget(lengths, 512, 65_536)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for start, stop in chunks:
        assert stop - start <= 512
        assert lengths[start:stop].sum() <= 65_536 or stop - start == 1
