"""Readers on real files written by Picasso, ThunderSTORM, rapidSTORM and SMAP.

The files live in ../shared/data (see its README.md for provenance and
licences); they are not shipped, so these tests skip where that folder is
absent. The expected values are computed here independently of the readers
(h5py, PyYAML, numpy text parsing).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

import h5py
import yaml

from pcvae_sklearn import as_particles  # noqa: E402
from pcvae_sklearn.io import (  # noqa: E402
    particle_ids,
    read_csv,
    read_parquet,
    read_particles,
    read_rapidstorm,
    read_smap,
    read_thunderstorm,
    sniff_format,
    write_parquet,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent (a fresh clone has no ../shared/data)")

PICASSO = DATA / "picasso" / "raw_movie_locs_picked.hdf5"
THUNDERSTORM = DATA / "locan" / "thunderstorm_dstorm_data.csv"
RAPIDSTORM = DATA / "locan" / "rapidstorm_dstorm_data.txt"
SMAP = DATA / "locan" / "smap_dstorm_data.mat"
NPC_CSV = DATA / "locan" / "npc_gp210_xy_nm.csv"
TETRAHEDRA = DATA / "fusion" / "tetrahedron_gt"


def round_trip(particles, tmp_path):
    path = tmp_path / "rt.parquet"
    write_parquet(particles, path)
    back = read_parquet(path)
    assert back.type == particles.type
    assert ak.array_equal(back, particles, dtype_exact=True)


def naive_picks(xy, centres, radius):
    """Rows within ``radius`` of each centre, pick by pick (reference for the KD-tree picking)."""
    return [np.flatnonzero(np.hypot(xy[:, 0] - c[0], xy[:, 1] - c[1]) <= radius) for c in centres]


def check_picks(particles, xy, centres, radius, precision=None):
    expected = naive_picks(xy, centres, radius)
    keep = [k for k, rows in enumerate(expected) if len(rows)]
    assert particle_ids(particles).tolist() == keep
    for part, k in zip(particles, keep):
        rows = expected[k]
        np.testing.assert_allclose(ak.to_numpy(part.x), xy[rows, 0], rtol=1e-6)
        np.testing.assert_allclose(ak.to_numpy(part.y), xy[rows, 1], rtol=1e-6)
        if precision is not None:
            np.testing.assert_allclose(ak.to_numpy(part.precision), precision[rows], rtol=1e-6)


# ------------------------------------------------------------------ Picasso
def test_picasso_sample_is_nine_particles_in_nm(tmp_path):
    with h5py.File(PICASSO, "r") as f:
        locs = f["locs"][...]
    pixel_size = [d["Pixelsize"] for d in yaml.safe_load_all(PICASSO.with_suffix(".yaml").read_text()) if isinstance(d, dict) and "Pixelsize" in d]
    assert len(set(pixel_size)) == 1
    px = float(pixel_size[0])

    assert sniff_format(PICASSO) == "picasso"
    particles = read_particles(PICASSO)
    assert len(particles) == 9
    groups, counts = np.unique(locs["group"], return_counts=True)
    assert particle_ids(particles).tolist() == groups.tolist()
    assert ak.num(particles).tolist() == counts.tolist()
    for k, g in enumerate(groups):
        sel = locs[locs["group"] == g]
        part = particles[k]
        for c in ("x", "y"):
            nm = ak.to_numpy(part[c])
            extent_nm = nm.max() - nm.min()
            extent_px = float(sel[c].max()) - float(sel[c].min())
            np.testing.assert_allclose(extent_nm, extent_px * px, rtol=1e-9)
            assert 20 < extent_nm < 200  # a DNA origami, 150 nm picks
        np.testing.assert_allclose(ak.to_numpy(part.precision_x), sel["lpx"].astype(float) * px)
        np.testing.assert_array_equal(ak.to_numpy(part.frame), sel["frame"])
    prec = ak.flatten(particles.precision).to_numpy()
    assert 0.5 < np.median(prec) < 20  # nm, DNA-PAINT
    p = as_particles(particles)
    assert p.n_particles == 9 and p.n_dims == 2
    round_trip(particles, tmp_path)


# ------------------------------------------------------------- ThunderSTORM
def _thunderstorm_table():
    data = np.loadtxt(THUNDERSTORM, delimiter=",", skiprows=1)
    return data[:, 2:4], data[:, 9]  # x [nm], y [nm]; uncertainty [nm]


def test_thunderstorm_sample_no_picks_then_picks(tmp_path):
    assert sniff_format(THUNDERSTORM) == "thunderstorm"
    with pytest.raises(ValueError, match=r"thunderstorm_dstorm_data\.csv' has no picks"):
        read_particles(THUNDERSTORM)
    xy, unc = _thunderstorm_table()
    centres, radius = xy[[0, 5, 10]], 2_000.0
    particles = read_thunderstorm(THUNDERSTORM, picks=centres, pick_radius=radius)
    check_picks(particles, xy, centres, radius, precision=unc)
    x = ak.flatten(particles.x).to_numpy()
    assert (x > 0).all() and (x < 40_000).all()  # nm on a ~30 um field
    assert 5 < np.median(ak.flatten(particles.precision).to_numpy()) < 100
    round_trip(particles, tmp_path)


# --------------------------------------------------------------- rapidSTORM
def test_rapidstorm_sample_no_picks_then_picks(tmp_path):
    assert sniff_format(RAPIDSTORM) == "rapidstorm"
    with pytest.raises(ValueError, match=r"rapidstorm_dstorm_data\.txt' has no picks"):
        read_particles(RAPIDSTORM)
    data = np.loadtxt(RAPIDSTORM, skiprows=1)
    xy = data[:, :2]
    centres, radius = xy[[0, 3, 8]], 3_000.0
    particles = read_rapidstorm(RAPIDSTORM, picks=centres, pick_radius=radius)
    check_picks(particles, xy, centres, radius)
    x = ak.flatten(particles.x).to_numpy()
    assert (x > 0).all() and (x < 32_716.5 + 1).all()  # header: max 3.27165e-005 m
    assert set(ak.fields(particles)) >= {"frame", "amplitude", "fit_residues", "background"}
    round_trip(particles, tmp_path)


# --------------------------------------------------------------------- SMAP
def test_smap_sample_no_picks_then_picks(tmp_path):
    assert sniff_format(SMAP) == "smap"
    with pytest.raises(ValueError, match=r"smap_dstorm_data\.mat' has no picks"):
        read_particles(SMAP)
    with h5py.File(SMAP, "r") as f:
        loc = f["saveloc/loc"]
        xy = np.column_stack([loc["xnm"][...].ravel(), loc["ynm"][...].ravel()]).astype(np.float64)
        prec = loc["locprecnm"][...].ravel().astype(np.float64)
        frames = loc["frame"][...].ravel()
    rng = np.random.default_rng(0)
    centres, radius = xy[rng.choice(len(xy), 5, replace=False)], 500.0
    particles = read_smap(SMAP, picks=centres, pick_radius=radius)
    check_picks(particles, xy, centres, radius, precision=prec)
    x = ak.flatten(particles.x).to_numpy()
    assert (x > 0).all() and (x < 30_000).all()
    f = ak.flatten(particles.frame).to_numpy()
    assert f.dtype.kind == "i" and f.min() >= frames.min() and f.max() <= frames.max()
    round_trip(particles, tmp_path)
    flat = read_smap(SMAP, picks=centres, pick_radius=radius, n_dims=2)
    assert "z" not in ak.fields(flat)


# -------------------------------------------------------------- other CSVs
def test_npc_csv_with_nm_suffix_columns(tmp_path):
    xy = np.loadtxt(NPC_CSV, delimiter=",", skiprows=1)
    centre = xy.mean(axis=0)
    particles = read_csv(NPC_CSV, picks=[centre], pick_radius=1_000.0)
    assert ak.num(particles).tolist() == [202]
    np.testing.assert_allclose(ak.to_numpy(particles[0].x), xy[:, 0])
    round_trip(particles, tmp_path)


def test_tetrahedron_csv_folder(tmp_path):
    particles = read_particles(TETRAHEDRA)
    assert particle_ids(particles).tolist() == list(range(100))
    # one particle per file, file i -> particle i (natural order, not smlm_sample10 before smlm_sample2)
    n_lines = [len((TETRAHEDRA / f"smlm_sample{i}.csv").read_text().strip().splitlines()) - 1 for i in range(100)]
    assert ak.num(particles).tolist() == n_lines
    first = np.loadtxt(TETRAHEDRA / "smlm_sample7.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(ak.to_numpy(particles[7].z), first[:, 2])
    np.testing.assert_allclose(ak.to_numpy(particles[7].precision), first[:, 3])  # sigma_xy
    round_trip(particles, tmp_path)
