"""The MATLAB files of the TU Delft particle-fusion tools (smlm_datafusion2d/3d, JRMPC).

Synthetic files are written here in both MATLAB versions: v5 with
``scipy.io.savemat`` and v7.3 with h5py, mimicking MATLAB's HDF5 layout (a
512-byte MATLAB header as the user block, cells as datasets of object
references into ``#refs#``, structs as groups, matrices stored transposed,
empty matrices as their dimensions with ``MATLAB_empty``). The real files in
../shared/data (see its README.md) are read where that folder exists; the
expected values there are computed with scipy.io.loadmat, independently of
the reader.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import scipy.io

h5py = pytest.importorskip("h5py")

from pcvae_sklearn.io import FORMATS, particle_ids, read_fusion_mat, read_particles, sniff_format  # noqa: E402

SEEDS = [0, 1, 2, 3, 4]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real data folder {DATA} is absent (a fresh clone has no ../shared/data)"
)
GP210 = DATA / "real" / "fig4e_304_2D_gp210.mat"
NUP_3D = DATA / "real" / "fig5k_306_3DNUP_PAINT.mat"
TUD_30 = DATA / "real" / "tud_dol30.mat"
TUD_50 = DATA / "real" / "tud_dol50_filtered.mat"
NUP107_SIM = DATA / "fusion" / "simulated_nup107_dol65.mat"
TUD_PIXEL_NM = 130.0  # the camera pixel of the TU Delft logo data (../shared/data/README.md)


# ====================================================================== writers
class Cell:
    """A MATLAB cell for the writers: its MATLAB shape and its elements in column-major order."""

    def __init__(self, items, shape=None):
        self.items = list(items)
        self.shape = shape if shape is not None else (1, len(self.items))


def _v5_value(value):
    if isinstance(value, Cell):
        out = np.empty(value.shape, dtype=object)
        for j, item in enumerate(value.items):
            out[np.unravel_index(j, value.shape, order="F")] = _v5_value(item)
        return out
    if isinstance(value, dict):
        return {k: _v5_value(v) for k, v in value.items()}
    return np.asarray(value, dtype=np.float64)


def write_v5(path, variables):
    scipy.io.savemat(path, {name: _v5_value(v) for name, v in variables.items()})


def _h5_put(f, group, name, value, names):
    if isinstance(value, Cell):
        refs = np.empty(tuple(reversed(value.shape)), dtype=h5py.ref_dtype)
        for j, item in enumerate(value.items):  # h5py sees MATLAB's shape reversed: C order is column-major
            refs.flat[j] = _h5_put(f, f["#refs#"], next(names), item, names).ref
        ds = group.create_dataset(name, data=refs)
        ds.attrs["MATLAB_class"] = np.bytes_(b"cell")
        return ds
    if isinstance(value, dict):
        g = group.create_group(name)
        g.attrs["MATLAB_class"] = np.bytes_(b"struct")
        field_names = np.empty(len(value), dtype=object)
        field_names[:] = [np.frombuffer(k.encode(), dtype="S1") for k in value]
        g.attrs.create("MATLAB_fields", data=field_names, dtype=h5py.vlen_dtype(np.dtype("S1")))
        for k, v in value.items():
            _h5_put(f, g, k, v, names)
        return g
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim < 2:
        arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr.reshape(1, 1)
    if arr.size == 0:
        ds = group.create_dataset(name, data=np.array(arr.shape, dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(b"double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        return ds
    ds = group.create_dataset(name, data=arr.T)  # MATLAB n x 2 is stored as 2 x n
    ds.attrs["MATLAB_class"] = np.bytes_(b"double")
    return ds


def write_v73(path, variables):
    """A MATLAB v7.3 file: HDF5 with a 512-byte MATLAB header, cells as references into ``#refs#``."""
    names = (f"{a}{b}" for a, b in itertools.product("abcdefghijklmnopqrstuvwxyz", [""] + list("abcdefghijklmnopqrstuvwxyz")))
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        empty = refs.create_dataset(next(names), data=np.array([0, 0], dtype=np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_(b"canonical empty")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        for name, value in variables.items():
            _h5_put(f, f, name, value, names)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".ljust(116))


WRITERS = {"v5": write_v5, "v7.3": write_v73}


# ====================================================================== truth
def make_points(seed, n_dims, n_particles=None):
    rng = np.random.default_rng(seed)
    n_particles = n_particles or int(rng.integers(2, 8))
    counts = rng.integers(1, 30, size=n_particles)
    points = [rng.normal(scale=0.4, size=(c, n_dims)) + rng.uniform(-5, 5, size=n_dims) for c in counts]
    return rng, points


def check_particles(particles, points, *, scale, lateral=None, axial=None):
    """The reader's output against the truth, particle by particle."""
    n_dims = points[0].shape[1]
    assert len(particles) == len(points)
    assert particle_ids(particles).tolist() == list(range(len(points)))
    expected_fields = ["x", "y", "z"][:n_dims] + ["particle_id"]
    expected_fields += ["precision"] if lateral is not None else []
    expected_fields += ["precision_z"] if axial is not None else []
    assert particles.fields == expected_fields
    for i, pts in enumerate(points):
        for k, c in enumerate("xyz"[:n_dims]):
            np.testing.assert_allclose(ak.to_numpy(particles[c][i]), pts[:, k] * scale, rtol=1e-12)
        if lateral is not None:
            np.testing.assert_allclose(ak.to_numpy(particles.precision[i]), lateral[i] * scale, rtol=1e-12)
        if axial is not None:
            np.testing.assert_allclose(ak.to_numpy(particles.precision_z[i]), axial[i] * scale, rtol=1e-12)


# ====================================================================== the particles layout
SIGMA_KINDS = {
    2: ["none", "n x 1"],
    3: ["none", "n x 1", "n x 2", "sigma + sigmaz"],
}


#: the pixel size each layout takes: the particles layout needs one, a cell of arrays (nm) refuses it
PIXELS = {"particles": {"pixel_size": 100}, "Superparticle": {}}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("n_dims,sigma_kind", [(d, k) for d in (2, 3) for k in SIGMA_KINDS[d]])
@pytest.mark.parametrize("orientation", ["1 x N", "N x 1"])
def test_particles_layout_reads_points_and_sigma_times_pixel_size(tmp_path, seed, version, n_dims, sigma_kind, orientation):
    rng, points = make_points(seed, n_dims)
    pixel_size = float(rng.uniform(60, 160))
    lateral = [rng.uniform(0.01, 0.2, size=len(p)) for p in points] if sigma_kind != "none" else None
    axial = [3 * lat for lat in lateral] if sigma_kind in ("n x 2", "sigma + sigmaz") else None
    structs = []
    for i, pts in enumerate(points):
        s = {"points": pts}
        if sigma_kind == "n x 1":
            s["sigma"] = lateral[i][:, None]
        elif sigma_kind == "n x 2":
            s["sigma"] = np.column_stack([lateral[i], axial[i]])
        elif sigma_kind == "sigma + sigmaz":
            s["sigma"] = lateral[i][:, None]
            s["sigmaz"] = axial[i][:, None]
        structs.append(s)
    shape = (1, len(structs)) if orientation == "1 x N" else (len(structs), 1)
    path = tmp_path / "particles.mat"
    WRITERS[version](path, {"particles": Cell(structs, shape)})
    assert sniff_format(path) == "fusion_mat"
    check_particles(read_particles(path, pixel_size=pixel_size), points, scale=pixel_size, lateral=lateral, axial=axial)
    # the same through the explicit reader, the older keyword spelling and a forced format
    check_particles(read_fusion_mat(path, pixel_size=pixel_size), points, scale=pixel_size, lateral=lateral, axial=axial)
    check_particles(read_particles(path, pixel_size=pixel_size), points, scale=pixel_size, lateral=lateral, axial=axial)
    check_particles(
        read_particles(path, format="fusion_mat", pixel_size=1), points, scale=1.0, lateral=lateral, axial=axial
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_extent_scales_with_pixel_size(tmp_path, seed, version):
    rng, points = make_points(seed, 2)
    path = tmp_path / "p.mat"
    WRITERS[version](path, {"particles": Cell([{"points": p} for p in points])})
    px = float(rng.uniform(50, 200))
    in_px = read_particles(path, pixel_size=1)
    in_nm = read_particles(path, pixel_size=px)
    extent = lambda p: ak.to_numpy(ak.max(p.x, axis=1, mask_identity=False) - ak.min(p.x, axis=1, mask_identity=False))  # noqa: E731
    np.testing.assert_allclose(extent(in_nm), px * extent(in_px), rtol=1e-12)
    assert "precision" not in in_nm.fields  # no sigma in the file: no precision is made up


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_particles_layout_keeps_per_localization_fields_and_warns_about_the_rest(tmp_path, version):
    _, points = make_points(7, 2, n_particles=3)
    frames = [np.arange(len(p), dtype=np.float64) + 10 * i for i, p in enumerate(points)]
    structs = [{"points": p, "frame": f, "angle": np.array([[0.3 * i]])} for i, (p, f) in enumerate(zip(points, frames))]
    if all(len(p) == 1 for p in points):  # an angle of a 1-localization particle would look per-localization
        pytest.skip("degenerate draw")
    path = tmp_path / "p.mat"
    WRITERS[version](path, {"particles": Cell(structs)})
    with pytest.warns(UserWarning, match=r"\['angle'\].*left out"):
        particles = read_fusion_mat(path, pixel_size=100)
    assert particles.fields == ["x", "y", "particle_id", "frame"]
    for i in range(3):
        np.testing.assert_array_equal(ak.to_numpy(particles.frame[i]), frames[i])


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_struct_array_is_read_like_a_cell_of_structs(tmp_path, version):
    _, points = make_points(3, 3, n_particles=4)
    path = tmp_path / "s.mat"
    if version == "v5":
        arr = np.empty((1, 4), dtype=[("points", object), ("sigma", object)])
        for i, p in enumerate(points):
            arr[0, i] = (p, np.full((len(p), 1), 0.1))
        scipy.io.savemat(path, {"particles": arr})
    else:  # a 1 x 4 struct array: each field an array of references
        with h5py.File(path, "w", userblock_size=512) as f:
            f.create_group("#refs#")
            g = f.create_group("particles")
            g.attrs["MATLAB_class"] = np.bytes_(b"struct")
            for field, values in (("points", points), ("sigma", [np.full((len(p), 1), 0.1) for p in points])):
                refs = np.empty((4, 1), dtype=h5py.ref_dtype)
                for i, v in enumerate(values):
                    ds = f["#refs#"].create_dataset(f"{field}{i}", data=np.asarray(v).T)
                    ds.attrs["MATLAB_class"] = np.bytes_(b"double")
                    refs[i, 0] = ds.ref
                g.create_dataset(field, data=refs)
        with open(path, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file".ljust(116))
    check_particles(read_particles(path, pixel_size=2.0), points, scale=2.0, lateral=[np.full(len(p), 0.1) for p in points])


# ====================================================================== the cell-of-arrays layout
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("n_dims", [2, 3])
@pytest.mark.parametrize("name", ["Superparticle", "registered"])
def test_cell_of_arrays_is_read_in_nm(tmp_path, seed, version, n_dims, name):
    _, points = make_points(seed, n_dims)
    points = [p * 40 for p in points]
    path = tmp_path / "super.mat"
    WRITERS[version](path, {name: Cell([p.T for p in points], (len(points), 1))})
    assert sniff_format(path) == "fusion_mat"
    check_particles(read_particles(path), points, scale=1.0)
    check_particles(read_particles(path, pixel_size=1), points, scale=1.0)
    with pytest.raises(ValueError, match=r"cell of arrays, which holds nm .* pixel_size=130 was given"):
        read_particles(path, pixel_size=130)  # never nm multiplied by a camera pixel in silence
    if n_dims == 3:
        flat = read_particles(path, n_dims=2)
        assert flat.fields == ["x", "y", "particle_id"]


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_variable_is_chosen_by_name_or_asked_for(tmp_path, version):
    _, points = make_points(1, 3, n_particles=3)
    rotations = Cell([np.eye(3) for _ in range(3)])
    path = tmp_path / "out.mat"
    WRITERS[version](path, {"Superparticle": Cell([p.T for p in points]), "R": rotations})
    check_particles(read_particles(path), points, scale=1.0)  # the fusion tools' name wins over a cell of rotations
    both = tmp_path / "both.mat"
    WRITERS[version](both, {"A": Cell([p.T for p in points]), "R": rotations})
    with pytest.raises(ValueError, match=r"both\.mat.*several cells or structs.*\(A, R\).*variable="):
        read_particles(both)
    check_particles(read_particles(both, variable="A"), points, scale=1.0)
    with pytest.raises(ValueError, match=r"both\.mat.*has no variable 'B'.*A \(1x3 cell\)"):
        read_particles(both, variable="B")


# ====================================================================== bad input
@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_a_mat_file_of_neither_layout(tmp_path, version):
    path = tmp_path / "foo.mat"
    WRITERS[version](path, {"foo": np.arange(12.0).reshape(3, 4)})
    if version == "v5":
        match = r"foo\.mat.*holds no particles in a layout of the TU Delft fusion tools.*it holds foo \(3x4 double\)"
    else:
        match = r"cannot tell the format of .*foo\.mat.*MATLAB cell or struct of particles"
    with pytest.raises(ValueError, match=match):
        read_particles(path)
    with pytest.raises(ValueError, match=r"foo\.mat.*holds no particles.*foo \(3x4 double\)"):
        read_fusion_mat(path)
    with pytest.raises(ValueError, match=r"foo\.mat.*holds no particles"):
        read_particles(path, format="fusion_mat")


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_a_cell_of_numbers_or_text_is_neither_layout(tmp_path, version):
    path = tmp_path / "c.mat"
    WRITERS[version](path, {"c": Cell([np.arange(3.0), Cell([np.ones((2, 3))])])})
    with pytest.raises(ValueError, match=r"c\.mat': variable 'c' is a 1x2 cell whose particle 1 \(0-based; cell element \{2\}"):
        read_particles(path)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_pixel_unit_particles_without_pixel_size(tmp_path, version):
    _, points = make_points(0, 2)
    path = tmp_path / "logos.mat"
    WRITERS[version](path, {"particles": Cell([{"points": p, "sigma": np.full((len(p), 1), 0.05)} for p in points])})
    for call in (lambda: read_particles(path), lambda: read_fusion_mat(path)):
        with pytest.raises(ValueError, match=r"logos\.mat.*camera\s+pixels.*does not say which unit.*pass pixel_size=.*"
                           r"\(command line: --pixel-size <nm>\), or pixel_size=1 if the values are already in nm"):
            call()
    for bad, err in ((0, ValueError), (-3.0, ValueError), (float("nan"), ValueError), ("abc", TypeError)):
        with pytest.raises(err, match=r"logos\.mat.*pixel_size must be.*--pixel-size"):
            read_particles(path, pixel_size=bad)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_cell_holding_a_4_row_array(tmp_path, version):
    path = tmp_path / "four.mat"
    WRITERS[version](path, {"Superparticle": Cell([np.ones((2, 5)), np.ones((4, 7)), np.ones((2, 3))])})
    with pytest.raises(ValueError, match=r"four\.mat': particle 1 \(0-based; cell element \{2\} in MATLAB\) of 'Superparticle' "
                       r"is a 4x7 double array; expected 2 or 3 rows"):
        read_particles(path)
    WRITERS[version](path, {"particles": Cell([{"points": np.ones((5, 2))}, {"points": np.ones((7, 4))}])})
    with pytest.raises(ValueError, match=r"four\.mat': particle 1 \(0-based.*'points' has shape 7x4; expected n x 2 or n x 3"):
        read_particles(path, pixel_size=100)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_cell_of_n_by_d_arrays_says_transpose(tmp_path, version):
    path = tmp_path / "t.mat"
    WRITERS[version](path, {"Superparticle": Cell([np.ones((9, 2)), np.ones((7, 2))])})
    with pytest.raises(ValueError, match=r"t\.mat': particle 0 \(0-based.*9x2.*one localization per row.*transpose"):
        read_particles(path)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("layout", ["particles", "Superparticle"])
def test_empty_particle_is_named(tmp_path, version, layout):
    entries = [np.ones((6, 2)), np.ones((5, 2)), np.zeros((0, 0)), np.ones((4, 2))]
    if layout == "particles":
        value = Cell([{"points": e} for e in entries])
    else:
        value = Cell([e.T for e in entries])
    path = tmp_path / "e.mat"
    WRITERS[version](path, {layout: value})
    with pytest.raises(ValueError, match=r"e\.mat': particle 2 \(0-based; cell element \{3\} in MATLAB\) of '" + layout + r"' is empty"):
        read_particles(path, **PIXELS[layout])


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("layout", ["particles", "Superparticle"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_coordinates_name_the_particle(tmp_path, version, layout, bad):
    entries = [np.ones((6, 3)), np.ones((5, 3)), np.ones((4, 3))]
    entries[1][3, 2] = bad
    value = Cell([{"points": e} for e in entries]) if layout == "particles" else Cell([e.T for e in entries])
    path = tmp_path / "n.mat"
    WRITERS[version](path, {layout: value})
    with pytest.raises(ValueError, match=r"n\.mat': particle 1 \(0-based; cell element \{2\} in MATLAB\) has 1 "
                       r"localization\(s\) with NaN or infinite coordinates, the first at row 3"):
        read_particles(path, **PIXELS[layout])


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_bad_sigma(tmp_path, version):
    pts = [np.ones((6, 2)), np.ones((5, 2))]
    path = tmp_path / "s.mat"
    cases = [
        ([{"points": pts[0], "sigma": np.ones((6, 1))}, {"points": pts[1], "sigma": np.ones((4, 1))}],
         r"particle 1 .*'sigma' has shape 4x1 for 5 2D localizations; expected 5 x 1 \(lateral\)\."),
        ([{"points": pts[0], "sigma": np.ones((6, 2))}, {"points": pts[1], "sigma": np.ones((5, 2))}],
         r"particle 0 .*'sigma' has shape 6x2 for 6 2D localizations"),
        ([{"points": pts[0], "sigma": np.ones((6, 1))}, {"points": pts[1]}],
         r"particle 1 .*has no 'sigma' field but particle 0 has one"),
        ([{"points": pts[0], "sigma": -np.ones((6, 1))}, {"points": pts[1], "sigma": np.ones((5, 1))}],
         r"particle 0 .*'sigma' must be finite and not negative, but is -1\.0 at row 0"),
        ([{"points": pts[0], "sigma": np.ones((6, 1))}, {"points": pts[1], "sigma": np.full((5, 1), np.nan)}],
         r"particle 1 .*'sigma' must be finite"),
        ([{"points": pts[0], "sigmaz": np.ones((6, 1))}, {"points": pts[1], "sigmaz": np.ones((5, 1))}],
         r"particle 0 .*'sigmaz' \(axial precision\) but 2D points"),
    ]
    for structs, match in cases:
        WRITERS[version](path, {"particles": Cell(structs)})
        with pytest.raises(ValueError, match=r"s\.mat': " + match):
            read_particles(path, pixel_size=100)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_mixed_dimensions_and_bad_cell_shapes(tmp_path, version):
    path = tmp_path / "m.mat"
    WRITERS[version](path, {"Superparticle": Cell([np.ones((2, 5)), np.ones((3, 5))])})
    with pytest.raises(ValueError, match=r"m\.mat': particle 1 .*has 3 rows \(coordinates\) but the particles before it have 2"):
        read_particles(path)
    WRITERS[version](path, {"particles": Cell([{"points": np.ones((5, 3))}, {"points": np.ones((5, 2))}])})
    with pytest.raises(ValueError, match=r"m\.mat': particle 1 .*has 2D points but the particles before it are 3D"):
        read_particles(path, pixel_size=1)
    WRITERS[version](path, {"Superparticle": Cell([np.ones((2, 5))] * 6, (2, 3))})
    with pytest.raises(ValueError, match=r"m\.mat': variable 'Superparticle' is a 2x3 cell; .*1 x N or N x 1"):
        read_particles(path)
    WRITERS[version](path, {"particles": Cell([{"coords": np.ones((5, 5))}])})
    with pytest.raises(ValueError, match=r"m\.mat': particle 0 .* has no 'points' field \(its fields: \['coords'\]\)"):
        read_particles(path, pixel_size=1)


def test_pixel_size_for_a_format_in_nm_and_an_unknown_format(tmp_path):
    path = tmp_path / "sml.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        loc = f.create_group("saveloc/loc")
        loc.create_dataset("xnm", data=np.ones((1, 3)))
        loc.create_dataset("ynm", data=np.ones((1, 3)))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116))
    assert sniff_format(path) == "smap"  # SMAP detection is unchanged
    with pytest.raises(ValueError, match=r"sml\.mat.*'smap' reader, whose coordinates are always in nm; leave out "
                       r"pixel_size="):
        read_particles(path, pixel_size=100)
    with pytest.raises(ValueError, match=r"unknown format 'matlab'.*fusion_mat"):
        read_particles(path, format="matlab")
    assert "fusion_mat" in FORMATS


def test_v5_smap_and_damaged_v5_files(tmp_path):
    path = tmp_path / "sml.mat"
    scipy.io.savemat(path, {"saveloc": {"loc": {"xnm": np.ones(3), "ynm": np.ones(3)}}})
    with pytest.raises(ValueError, match=r"sml\.mat' is a MATLAB v5 \.mat file with SMAP's 'saveloc'.*-v7\.3"):
        read_particles(path)
    _, points = make_points(0, 2)
    good = tmp_path / "good.mat"
    write_v5(good, {"Superparticle": Cell([p.T for p in points])})
    data = good.read_bytes()
    cut = tmp_path / "cut.mat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.mat.*MATLAB v5.*cannot be read.*truncated"):
        read_particles(cut)
    text = tmp_path / "x.mat"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match=r"x\.mat' is not a MATLAB \.mat file"):
        read_fusion_mat(text)


# ====================================================================== the real files
def _loadmat_cell(path, name):
    cell = scipy.io.loadmat(str(path))[name]
    return [cell.flat[i] for i in range(cell.size)]


@needs_data
def test_real_gp210_registered_pores():
    particles = read_particles(GP210)
    expected = [a.T for a in _loadmat_cell(GP210, "Superparticle")]
    check_particles(particles, expected, scale=1.0)
    counts = ak.to_numpy(ak.num(particles.x))
    assert (len(particles), counts.min(), counts.max()) == (304, 123, 677)
    radius = np.sqrt(ak.to_numpy(ak.flatten((particles.x - ak.mean(particles.x, axis=1)) ** 2
                                            + (particles.y - ak.mean(particles.y, axis=1)) ** 2)))
    assert 75 < np.median(radius) < 87  # gp210 ring radius in nm (measured 80.7)


@needs_data
def test_real_3d_nup107_registered_pores():
    particles = read_particles(NUP_3D)
    check_particles(particles, [a.T for a in _loadmat_cell(NUP_3D, "Superparticle")], scale=1.0)
    counts = ak.to_numpy(ak.num(particles.x))
    assert (len(particles), counts.min(), counts.max()) == (306, 33, 183)
    z = ak.to_numpy(ak.flatten(particles.z))
    lo, hi = np.percentile(z, [10, 90])
    assert 40 < hi - lo < 200  # two rings ~65 nm apart, in nm, not pixels or um


@needs_data
@pytest.mark.parametrize("path,n,lo,hi", [(TUD_30, 549, 186, 718), (TUD_50, 441, 59, 1072)])
def test_real_tud_logos_in_camera_pixels(path, n, lo, hi):
    with pytest.raises(ValueError, match=r"does not say which unit.*pixel_size=.*--pixel-size"):
        read_particles(path)
    in_nm = read_particles(path, pixel_size=TUD_PIXEL_NM)
    in_px = read_particles(path, pixel_size=1)
    structs = _loadmat_cell(path, "particles")
    check_particles(in_nm, [s["points"][0, 0] for s in structs], scale=TUD_PIXEL_NM,
                    lateral=[s["sigma"][0, 0][:, 0] for s in structs])
    counts = ak.to_numpy(ak.num(in_nm.x))
    assert (len(in_nm), counts.min(), counts.max()) == (n, lo, hi)
    extent = lambda p: np.maximum(ak.to_numpy(ak.max(p.x, axis=1, mask_identity=False) - ak.min(p.x, axis=1, mask_identity=False)),  # noqa: E731
                                  ak.to_numpy(ak.max(p.y, axis=1, mask_identity=False) - ak.min(p.y, axis=1, mask_identity=False)))
    np.testing.assert_allclose(extent(in_nm), TUD_PIXEL_NM * extent(in_px), rtol=1e-12)
    # a TU Delft logo on a DNA origami: its median largest extent is tens of nm (measured 86 and 66 nm)
    assert 50 < np.median(extent(in_nm)) < 150
    assert np.median(extent(in_px)) < 1.5  # the same in camera pixels: under a pixel or so


@needs_data
def test_real_tud_logos_read_the_same_from_v73(tmp_path):
    structs = _loadmat_cell(TUD_30, "particles")[:25]
    path = tmp_path / "tud73.mat"
    write_v73(path, {"particles": Cell([{"points": s["points"][0, 0], "sigma": s["sigma"][0, 0]} for s in structs])})
    from_v73 = read_particles(path, pixel_size=TUD_PIXEL_NM)
    from_v5 = read_particles(TUD_30, pixel_size=TUD_PIXEL_NM)[:25]
    assert ak.array_equal(from_v73, from_v5)


@needs_data
def test_real_jrmpc_demo_in_nm():
    particles = read_particles(NUP107_SIM, pixel_size=1)
    structs = _loadmat_cell(NUP107_SIM, "particles")
    sigma = [s["sigma"][0, 0] for s in structs]
    check_particles(particles, [s["points"][0, 0] for s in structs], scale=1.0,
                    lateral=[sg[:, 0] for sg in sigma], axial=[sg[:, 1] for sg in sigma])
    counts = ak.to_numpy(ak.num(particles.x))
    assert (len(particles), counts.min(), counts.max()) == (200, 12, 73)
    r = np.sqrt(ak.to_numpy(ak.flatten((particles.x - ak.mean(particles.x, axis=1)) ** 2
                                       + (particles.y - ak.mean(particles.y, axis=1)) ** 2
                                       + (particles.z - ak.mean(particles.z, axis=1)) ** 2)))
    assert 40 < np.median(r) < 100  # a Nup107 pore (radius ~50 nm, rings ~50 nm apart), rotated in 3D, in nm


@pytest.mark.parametrize("seed", SEEDS)
def test_pixel_size_reaches_the_readers_that_spell_it_pixelsize(tmp_path, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 50, size=(2, 12))
    group = np.repeat([3, 8, 5], 4)
    path = tmp_path / "locs.csv"
    path.write_text('"x [px]","y [px]","group"\n' + "".join(f"{float(a)!r},{float(b)!r},{g}\n" for a, b, g in zip(x, y, group)))
    px = float(rng.uniform(60, 160))
    with pytest.raises(ValueError, match=r"camera pixels"):
        read_particles(path, particle_column="group")
    particles = read_particles(path, particle_column="group", pixel_size=px)
    order = np.argsort(group, kind="stable")
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(particles.x)), x[order] * px, rtol=1e-12)
    assert particle_ids(particles).tolist() == [3, 5, 8]
