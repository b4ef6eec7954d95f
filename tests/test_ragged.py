"""The input boundary: every accepted form gives the same Particles; bad input gives clear errors."""

import warnings

import awkward as ak
import numpy as np
import pytest
import scipy.sparse as sp

from pcvae_sklearn import Particles, as_particles
from pcvae_sklearn._ragged import apply_transforms, check_particle_labels, locate, range_rows, segment_sum, subsample_rows

SEEDS = range(5)


def _random_ragged(seed, n_dims=2, n=30):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 50, n)
    return [rng.normal(scale=40, size=(k, n_dims)) for k in lengths]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims", [2, 3])
def test_all_forms_agree(seed, n_dims):
    parts = _random_ragged(seed, n_dims)
    flat = np.concatenate(parts)
    lengths = [len(a) for a in parts]
    names = "xyz"[:n_dims]
    forms = {
        "list": parts,
        "tuple": tuple(parts),
        "object ndarray": np.array(parts + [np.zeros((0, n_dims))], dtype=object)[:-1],
        "awkward numbers": ak.unflatten(flat, lengths),
        "awkward records": ak.unflatten(ak.zip({c: flat[:, k] for k, c in enumerate(names)}), lengths),
        "awkward record of lists": ak.zip({c: ak.unflatten(flat[:, k], lengths) for k, c in enumerate(names)}, depth_limit=1),
        "list of lists": [a.tolist() for a in parts],
        "list of float32": [a.astype(np.float32) for a in parts],
        "cv fold of awkward": list(ak.unflatten(ak.zip({c: flat[:, k] for k, c in enumerate(names)}), lengths)),
        "cv fold of awkward record of lists": list(
            ak.zip({c: ak.unflatten(flat[:, k], lengths) for k, c in enumerate(names)}, depth_limit=1)),
    }
    for name, X in forms.items():
        p = as_particles(X)
        assert p.n_particles == len(parts), name
        assert p.n_dims == n_dims, name
        np.testing.assert_array_equal(p.lengths, lengths, err_msg=name)
        atol = 1e-5 * 40 if "float32" in name else 0
        np.testing.assert_allclose(p.coords, flat, atol=atol, err_msg=name)


def test_regular_3d_ndarray():
    X = np.random.default_rng(0).normal(size=(5, 7, 3))
    p = as_particles(X)
    assert p.n_particles == 5 and p.n_dims == 3
    np.testing.assert_array_equal(p.coords, X.reshape(-1, 3))


def test_extra_fields_travel():
    flat = np.arange(12.0).reshape(6, 2)
    arr = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1], "precision": np.arange(6.0), "frame": np.arange(6)}), [2, 4])
    p = as_particles(arr)
    assert set(p.fields) == {"precision", "frame"}
    np.testing.assert_array_equal(p.take([1]).fields["precision"], [2, 3, 4, 5])
    back = p.to_awkward()
    assert ak.to_list(back) == ak.to_list(arr)


def test_fields_travel_in_lists_of_records_as_in_awkward_arrays():
    """A CV fold of awkward records, a list of DataFrames or structured arrays: the same fields as the awkward array."""
    pd = pytest.importorskip("pandas")
    flat = np.arange(12.0).reshape(6, 2)
    arr = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1], "precision": np.arange(6.0), "frame": np.arange(6)}),
                       [2, 4])
    frames = [pd.DataFrame(ak.to_list(a)) for a in arr]
    structured = [np.array([tuple(r.values()) for r in ak.to_list(a)],
                           dtype=[("x", "f8"), ("y", "f8"), ("precision", "f8"), ("frame", "i8")]) for a in arr]
    want = as_particles(arr)
    for name, X in {"cv fold": list(arr), "DataFrames": frames, "structured": structured}.items():
        p = as_particles(X)
        assert set(p.fields) == {"precision", "frame"}, name
        for f in p.fields:
            np.testing.assert_array_equal(p.fields[f], want.fields[f], err_msg=f"{name}: {f}")
    # readers' particle ids travel as ids
    ids = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1], "particle_id": np.repeat([7, 9], [2, 4])}), [2, 4])
    np.testing.assert_array_equal(as_particles(list(ids)).ids, [7, 9])
    text = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1], "particle_id": np.repeat(["a", "b"], [2, 4])}),
                        [2, 4])
    for X in (text, list(text), [pd.DataFrame(ak.to_list(a)) for a in text]):
        p = as_particles(X)
        assert p.ids.tolist() == ["a", "b"] and p.fields == {} and p.name(1) == "particle 1 (id 'b')"
    assert ak.to_list(as_particles(text).to_awkward()) == ak.to_list(text)


def test_fields_that_cannot_travel_are_named():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [3.0, 1.0, 2.0], "precision": [1.0, 2.0, 3.0],
                          "label": ["a", "b", "c"]})
    with pytest.warns(UserWarning, match="'label' are not one number per localization"):
        p = as_particles([frame, frame])
    assert set(p.fields) == {"precision"} and list(frame.columns) == ["x", "y", "precision", "label"]
    text = ak.Array([[{"x": 1.0, "y": 2.0, "label": "a"}, {"x": 2.0, "y": 1.0, "label": "b"}]])
    with pytest.warns(UserWarning, match="'label' are not one number per localization"):
        assert as_particles(text).fields == {}
    with pytest.warns(UserWarning, match="'precision' are not in every particle \\(particle 1 has no 'precision'\\)"):
        assert as_particles([frame[["x", "y", "precision"]], frame[["x", "y"]]]).fields == {}


@pytest.mark.parametrize("as_list", [False, True])
def test_missing_field_values_are_kept_as_nan_and_named(as_list):
    """One None in a precision field neither drops the field nor passes unseen."""
    X = ak.Array([[{"x": 1.0, "y": 2.0, "precision": 1.0}, {"x": 2.0, "y": 1.0, "precision": 2.0}],
                  [{"x": 1.0, "y": 2.0, "precision": 3.0}, {"x": 2.0, "y": 1.0, "precision": None}]])
    with pytest.warns(UserWarning, match="'precision' is missing \\(None\\) at 1 localization\\(s\\), the first in "
                      "particle 1 at localization 1; they are kept as NaN"):
        p = as_particles(list(X) if as_list else X)
    np.testing.assert_array_equal(p.fields["precision"], [1.0, 2.0, 3.0, np.nan])


@pytest.mark.parametrize("column", ["nullable", "object"])
def test_missing_dataframe_values_are_kept_as_nan_and_named(column):
    """A gap in a DataFrame's Int64 or object column becomes NaN, said as in an awkward array; a float NaN is data."""
    pd = pytest.importorskip("pandas")
    gap = pd.array([1, None], dtype="Int64") if column == "nullable" else np.array([1.0, None], dtype=object)
    full = pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, 1.0], "frame": pd.array([3, 4], dtype="Int64")})
    X = [full, pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, 1.0], "frame": gap})]
    with pytest.warns(UserWarning, match="'frame' is missing \\(None\\) at 1 localization\\(s\\), the first in "
                      "particle 1 at localization 1; they are kept as NaN"):
        p = as_particles(X)
    np.testing.assert_array_equal(p.fields["frame"], [3.0, 4.0, 1.0, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_particles([full, full])
        as_particles([pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, 1.0], "frame": [1.0, np.nan]})])


@pytest.mark.parametrize("name", ["X", "Z"])
def test_coordinates_named_in_other_letters_are_refused(name):
    """A 'Z' beside x and y would otherwise make a 3D particle 2D; DataFrames without x and y are never read whole."""
    pd = pytest.importorskip("pandas")
    cols = {"x": [1.0, 2.0], "y": [2.0, 1.0], name: [3.0, 4.0]}
    cols.pop(name.lower(), None)
    if name == "X":
        cols["y"] = [2.0, 1.0]
    rec = ak.Array([[dict(zip(cols, v)) for v in zip(*cols.values())]])
    for X in (rec, list(rec), [pd.DataFrame(cols)]):
        with pytest.raises(ValueError, match=f"field {name!r}, but coordinates must be named x, y, z"):
            as_particles(X)
    with pytest.raises(ValueError, match="DataFrame with columns \\['frame', 'x_nm', 'y_nm'\\] but no x and y"):
        as_particles([pd.DataFrame({"frame": [1, 2], "x_nm": [1.0, 2.0], "y_nm": [2.0, 1.0]})])
    # numbers written as text are refused in a DataFrame as in an array
    with pytest.raises(TypeError, match="particle 0 holds text"):
        as_particles([pd.DataFrame({"x": ["1", "2"], "y": ["2", "1"]})])
    # a missing value in a nullable column is named as missing, not as "not a number"
    with pytest.raises(ValueError, match="particle 0 has a missing \\(None / NA\\) coordinate at localization 1"):
        as_particles([pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64"), "y": [2.0, 1.0, 0.0]})])
    # a DataFrame made of an array (unnamed columns 0, 1[, 2]) is that array
    arr = np.array([[1.0, 2.0], [2.0, 1.0]])
    np.testing.assert_array_equal(as_particles([pd.DataFrame(arr)]).coords, arr)


def test_input_is_never_modified():
    parts = _random_ragged(1)
    before = [a.copy() for a in parts]
    p = as_particles(parts)
    assert not p.coords.flags.writeable
    for a, b in zip(parts, before):
        np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(a, p.coords)


@pytest.mark.parametrize("seed", SEEDS)
def test_locate_matches_naive(seed):
    """Every flat row maps to its particle and its place there, empty particles (offsets repeated) skipped."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, 40)
    lengths[0] = max(lengths[0], 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    naive = [(i, j) for i, k in enumerate(lengths) for j in range(k)]
    assert [locate(offsets, row) for row in range(offsets[-1])] == naive
    p = Particles(coords=rng.normal(size=(offsets[-1], 2)), offsets=offsets)
    assert [p.locate(row) for row in range(offsets[-1])] == naive


@pytest.mark.parametrize("seed", SEEDS)
def test_take_matches_naive(seed):
    parts = _random_ragged(seed)
    p = as_particles(parts)
    idx = np.random.default_rng(seed).integers(0, len(parts), 17)
    q = p.take(idx)
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(q.particle(j), parts[i])


@pytest.mark.parametrize("seed", SEEDS)
def test_centroids_and_padding_match_naive(seed):
    parts = _random_ragged(seed, 3)
    p = as_particles(parts)
    np.testing.assert_allclose(p.centroids(), [a.mean(axis=0) for a in parts], rtol=1e-12, atol=1e-12)
    padded, mask = p.to_padded()
    for i, a in enumerate(parts):
        np.testing.assert_array_equal(padded[i][mask[i]], a)
        assert not padded[i][~mask[i]].any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims", [2, 3])
def test_quantiles_match_numpy(seed, n_dims):
    """The one-sort segment quantiles against np.quantile particle by particle (offset particles, ties, q = 0 and 1)."""
    rng = np.random.default_rng(seed)
    parts = [a + rng.normal(scale=5000, size=n_dims) for a in _random_ragged(seed, n_dims)]
    parts[3] = np.round(parts[3])  # ties
    p = as_particles(parts)
    qs = [0.0, 0.05, 0.5, 0.73, 0.95, 1.0]
    got = p.quantiles(qs)
    assert got.shape == (len(qs), len(parts), n_dims)
    for k, q in enumerate(qs):
        want = np.array([np.quantile(a, q, axis=0) for a in parts])
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-9)
        np.testing.assert_allclose(p.quantiles(q), want, rtol=0, atol=1e-9)


def test_quantiles_empty_particle_and_bad_q():
    p = Particles(coords=np.array([[1.0, 2.0], [3.0, 4.0]]), offsets=np.array([0, 0, 2]))
    np.testing.assert_array_equal(p.quantiles(0.5), [[0.0, 0.0], [2.0, 3.0]])
    for bad in (-0.1, 1.5, [0.5, np.nan]):
        with pytest.raises(ValueError, match="q must be"):
            p.quantiles(bad)
    # a value range near float64's limit takes the exact two-key sort
    huge = [np.array([[0.0, 1.0], [1e300, -1e300], [-1e300, 5.0]]), np.array([[1.0, 2.0], [3.0, 4.0]])]
    for q in (0.05, 0.5, 0.95):
        np.testing.assert_array_equal(as_particles(huge).quantiles(q), [np.quantile(a, q, axis=0) for a in huge])
    with pytest.raises(ValueError, match="unknown centring method 'median'.*'trimmed'"):
        p.centres("median")


def naive_trimmed(a, factor=3.0):
    """The trimmed centre and outlier mask of one particle, written plainly."""
    c = np.median(a, axis=0)
    for _ in range(3):
        d = np.linalg.norm(a - c, axis=1)
        keep = d <= factor * np.median(d)
        c = a[keep].mean(axis=0)
    return c, ~keep


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims", [2, 3])
def test_trimmed_centres_and_outliers_match_naive(seed, n_dims):
    rng = np.random.default_rng(seed)
    parts = _random_ragged(seed, n_dims)
    for a in parts[::3]:  # some particles get a far localization
        a[0] += rng.choice([-1, 1], n_dims) * 400.0
    p = as_particles(parts)
    want = [naive_trimmed(a) for a in parts]
    np.testing.assert_allclose(p.centres("trimmed"), [c for c, _ in want], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(p.outliers(), np.concatenate([o for _, o in want]))
    before = p.coords.copy()
    c = p.centred("trimmed")
    np.testing.assert_array_equal(p.coords, before)
    for i, a in enumerate(parts):
        np.testing.assert_allclose(c.particle(i), a - want[i][0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_dims", [2, 3])
def test_trimmed_centre_ignores_a_far_localization(seed, n_dims):
    """On simulated pores, a localization 300 nm away is an outlier and leaves the centre exactly where it was."""
    from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d

    X, _ = (make_npc_2d if n_dims == 2 else make_npc_3d)(50, random_state=seed, background=0.0)
    clean = as_particles(X)
    assert not clean.outliers().any()
    np.testing.assert_array_equal(clean.centres("trimmed"), clean.centroids())
    rng = np.random.default_rng(seed)
    far = [np.r_[a, [a.mean(axis=0) + 300.0 * np.r_[np.cos(t), np.sin(t), [0.0] * (n_dims - 2)]]]
           for a, t in zip(clean.to_list(), rng.uniform(0, 6.3, 50))]
    p = as_particles(far)
    np.testing.assert_allclose(p.centres("trimmed"), clean.centroids(), rtol=0, atol=1e-9)
    assert p.outliers().sum() == 50
    assert np.all(p.outliers()[p.offsets[1:] - 1])
    # the centroid moves by 300 / n nm
    assert np.abs(p.centroids() - clean.centroids()).max() > 1.0


def test_take_rows_keeps_fields_and_ids():
    p = as_particles(ak.Array([[{"x": 0.0, "y": 1.0, "precision": 5.0}, {"x": 2.0, "y": 3.0, "precision": 6.0}],
                               [{"x": 4.0, "y": 5.0, "precision": 7.0}]]))
    q = p.take_rows(np.array([False, True, True]))
    np.testing.assert_array_equal(q.coords, [[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(q.lengths, [1, 1])
    np.testing.assert_array_equal(q.fields["precision"], [6.0, 7.0])


BAD_INPUT = [
    (None, TypeError, "X is None"),
    ("particles.csv", TypeError, "string"),
    (3.0, TypeError, "single number"),
    (sp.csr_matrix(np.ones((4, 2))), TypeError, "sparse"),
    ([sp.csr_matrix(np.ones((4, 2))), np.ones((3, 2))], TypeError, "particle 0 is a scipy sparse"),
    ([np.ones((3, 2)), np.zeros((0, 2))], ValueError, "particle 1 is empty"),
    ([np.ones((3, 2)), []], ValueError, r"particle 1 is empty \(shape \(0,\)\)"),
    ([np.ones((3, 2)), np.array([[0.0, np.nan]])], ValueError, "particle 1 has a non-finite"),
    ([np.ones((3, 2)), np.array([[0.0, np.inf]])], ValueError, "particle 1 has a non-finite"),
    ([np.ones((3, 2)), np.ones((3, 3))], ValueError, "particle 1 is 3D but particle 0 is 2D"),
    (np.ones(5), ValueError, "1-D array"),
    (np.ones((5, 2)), ValueError, "single 2-D array"),
    ([np.ones((3, 4))], ValueError, "particle 0 has 4 coordinate columns"),
    ([np.ones((3, 1))], ValueError, "particle 0 has 1 coordinate columns"),
    ([np.ones(3)], ValueError, r"particle 0 has shape \(3,\)"),
    ([np.array([["a", "b"]])], TypeError, "particle 0 has dtype"),
    ([np.ones((2, 2)), np.array([[1.0, "2"]], dtype=object)], TypeError, r"particle 1 holds text \('2'\)"),
    ([np.ones((2, 2)), None], TypeError, "particle 1 is None"),
    ([np.ones((2, 2)), "abc"], TypeError, "particle 1 is a string"),
    ([], ValueError, "no particles"),
    ({"x": [1, 2]}, TypeError, "dict"),
    (ak.Array([[1.0, 2.0], [3.0]]), ValueError, "one list of numbers per particle"),
    (ak.Array([[[1.0, 2.0]], [[3.0, 4.0, 5.0]]]), ValueError, "mix of 2D and 3D"),
    (ak.Array([[{"x": 1.0, "y": None}], [{"x": 1.0, "y": 2.0}]]), ValueError, "particle 0: coordinate 'y' is missing"),
    (ak.Array([[{"x": 1.0, "q": 2.0}]]), ValueError, "no x and y|at least x and y"),
]


@pytest.mark.parametrize("X, exc, match", BAD_INPUT)
def test_bad_input_errors(X, exc, match):
    with pytest.raises(exc, match=match):
        as_particles(X)


def test_too_few_particles_and_wrong_dims():
    with pytest.raises(ValueError, match="holds 1 particle"):
        as_particles([np.ones((3, 2))], min_particles=2)
    with pytest.raises(ValueError, match="3D particles were expected"):
        as_particles([np.ones((3, 2))], n_dims=3)


def test_error_names_particle_id():
    p = Particles(coords=np.array([[0.0, 0.0], [np.nan, 1.0]]), offsets=np.array([0, 1, 2]), ids=np.array([7, 42]))
    with pytest.raises(ValueError, match=r"particle 1 \(id 42\)"):
        as_particles(p)


def test_particle_ids_from_readers_round_trip():
    flat = np.arange(10.0).reshape(5, 2)
    arr = ak.unflatten(ak.zip({"x": flat[:, 0], "y": flat[:, 1], "particle_id": np.array([7, 7, 3, 3, 3])}), [2, 3])
    p = as_particles(arr)
    np.testing.assert_array_equal(p.ids, [7, 3])
    assert "particle_id" not in p.fields
    assert ak.to_list(p.to_awkward()) == ak.to_list(arr)
    assert ak.to_list(p.take([1]).to_awkward().particle_id) == [[3, 3, 3]]


# ------------------------------------------------------- packed-array helpers
def _ragged_offsets(rng, n=25, with_empty=True):
    lengths = rng.integers(0 if with_empty else 1, 9, n)
    return np.concatenate([[0], np.cumsum(lengths)]), lengths


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("with_empty", [False, True])
def test_segment_sum_matches_a_loop(seed, with_empty):
    rng = np.random.default_rng(seed)
    offsets, lengths = _ragged_offsets(rng, with_empty=with_empty)
    values = rng.normal(size=(offsets[-1], 3, 2))
    expected = np.array([values[offsets[i] : offsets[i + 1]].sum(axis=0) for i in range(len(lengths))])
    np.testing.assert_allclose(segment_sum(values, offsets), expected, rtol=1e-12, atol=1e-12)
    ints = rng.integers(0, 5, offsets[-1])
    out = segment_sum(ints, offsets)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [ints[offsets[i] : offsets[i + 1]].sum() for i in range(len(lengths))])
    # the method of Particles is the same function
    if not with_empty:
        p = Particles(coords=values[:, :, 0], offsets=offsets)
        np.testing.assert_array_equal(p.segment_sum(values), segment_sum(values, offsets))


def test_segment_sum_of_nothing():
    np.testing.assert_array_equal(segment_sum(np.zeros((0, 2)), np.array([0, 0, 0])), np.zeros((2, 2)))


@pytest.mark.parametrize("seed", SEEDS)
def test_range_rows_match_a_loop(seed):
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 100, 20)
    lengths = rng.integers(0, 7, 20)
    rows, offsets = range_rows(starts, lengths)
    np.testing.assert_array_equal(rows, np.concatenate([np.arange(a, a + n) for a, n in zip(starts, lengths)]))
    np.testing.assert_array_equal(np.diff(offsets), lengths)
    assert rows.dtype == offsets.dtype == np.int64


@pytest.mark.parametrize("seed", SEEDS)
def test_subsample_rows_keeps_at_most_the_cap_per_particle(seed):
    rng = np.random.default_rng(seed)
    offsets, lengths = _ragged_offsets(rng, with_empty=False)
    rows = np.arange(offsets[-1]) * 10
    kept, kept_lengths = subsample_rows(rows, lengths, 4, rng)
    np.testing.assert_array_equal(kept_lengths, np.minimum(lengths, 4))
    owner = np.searchsorted(offsets, kept // 10, side="right") - 1
    np.testing.assert_array_equal(np.bincount(owner, minlength=len(lengths)), kept_lengths)
    assert (np.diff(kept) > 0).all()
    small = np.repeat(lengths <= 4, lengths)
    assert set(rows[small]) <= set(kept)  # small particles keep every row


@pytest.mark.parametrize("seed", SEEDS)
def test_particles_subsample_matches_a_loop(seed):
    """Every particle keeps at most the cap, its rows in order, fields alongside; the rest is untouched."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=12)
    coords = rng.normal(size=(lengths.sum(), 3))
    p = Particles(coords=coords, offsets=np.concatenate([[0], np.cumsum(lengths)]),
                  fields={"precision": np.arange(lengths.sum(), dtype=float)}, ids=np.arange(12) + 100)
    before = coords.copy()
    q = p.subsample(10, np.random.default_rng(seed))
    np.testing.assert_array_equal(q.lengths, np.minimum(lengths, 10))
    np.testing.assert_array_equal(q.ids, p.ids)
    for i in range(p.n_particles):  # a loop over particles: the naive reference
        rows = q.fields["precision"][q.offsets[i]:q.offsets[i + 1]].astype(int)
        assert (np.diff(rows) > 0).all() and (rows >= p.offsets[i]).all() and (rows < p.offsets[i + 1]).all()
        np.testing.assert_array_equal(q.particle(i), coords[rows])
        if lengths[i] <= 10:
            np.testing.assert_array_equal(rows, np.arange(p.offsets[i], p.offsets[i + 1]))
    np.testing.assert_array_equal(p.coords, before)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims", [2, 3])
def test_apply_transforms_matches_a_loop(seed, n_dims):
    rng = np.random.default_rng(seed)
    parts = _random_ragged(seed, n_dims)
    p = as_particles(parts)
    rotations = np.linalg.qr(rng.normal(size=(len(parts), n_dims, n_dims)))[0]
    translations = rng.normal(size=(len(parts), n_dims))
    moved = apply_transforms(p.coords, rotations, translations, p.lengths)
    expected = np.concatenate([a @ r.T + t for a, r, t in zip(parts, rotations, translations)])
    np.testing.assert_allclose(moved, expected, rtol=1e-12, atol=1e-9)


def test_check_particle_labels():
    np.testing.assert_array_equal(check_particle_labels([[1], [2], [1]], 3), [1, 2, 1])
    assert check_particle_labels(np.array([1, 2], dtype=object), 2).dtype == np.int64
    assert check_particle_labels(np.array(["a", 2], dtype=object), 2).dtype.kind == "U"
    with pytest.raises(TypeError, match="labels is None"):
        check_particle_labels(None, 3)
    with pytest.raises(ValueError, match=r"labels has shape \(3, 2\)"):
        check_particle_labels(np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match="labels has 2 entries but X holds 3 particles"):
        check_particle_labels([0, 1], 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        check_particle_labels([0.0, np.nan], 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        check_particle_labels(np.array([0.0, np.nan], dtype=object), 2)


def test_check_particle_labels_never_turns_a_label_into_another():
    """numpy reads [1, "1"] as two equal strings and None as 'None': both would merge or invent bins."""
    with pytest.raises(TypeError, match="label of particle 1 is None"):
        check_particle_labels([0, None, 1], 3)
    with pytest.raises(TypeError, match="label of particle 0 is None"):
        check_particle_labels([None] * 3, 3)
    with pytest.raises(TypeError, match=r"particle 0 has the label 1 and particle 2 the label '1'"):
        check_particle_labels([1, 2, "1"], 3)
    with pytest.raises(TypeError, match=r"label of particle 1 is \[1\]"):
        check_particle_labels(np.array([0, [1], 2], dtype=object), 3)
    np.testing.assert_array_equal(check_particle_labels([1, "a", 2], 3), ["1", "a", "2"])
    np.testing.assert_array_equal(check_particle_labels((True, False), 2), [True, False])
    assert check_particle_labels([1, 2.5], 2).dtype == np.float64
    assert check_particle_labels([np.int32(1), 2], 2).dtype == np.int64


def test_column_counts_and_ragged_localizations_name_the_particle():
    with pytest.raises(ValueError, match="particle 0 has 4 coordinate columns"):
        as_particles(ak.Array([[[1.0, 2, 3, 4], [2.0, 3, 4, 5]]]))
    with pytest.raises(ValueError, match="particle 0 cannot be read as an .* same number of coordinates"):
        as_particles([[[1, 2], [3, 4, 5]], [[5, 6]]])
