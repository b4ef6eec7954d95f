"""How long reading localizations into particles takes.

Writes a synthetic picked Picasso HDF5 (+ YAML; rows sorted by group, as
Picasso saves picked localizations) and a CSV with a particle id column
(rows in random order: the grouping has to sort) to a temporary folder,
then times ``read_particles`` on each, ``write_parquet`` / ``read_parquet``,
and the conversion of the result with ``as_particles``.

    python benchmarks/bench_io.py            # 10 million localizations
    python benchmarks/bench_io.py --quick    # 1 million
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n_locs: int, locs_per_particle: int, seed: int = 0):
    import h5py
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import yaml

    rng = np.random.default_rng(seed)
    n_particles = max(1, n_locs // locs_per_particle)
    group = np.sort(rng.integers(0, n_particles, size=n_locs)).astype(np.int32)
    centres = rng.uniform(0, 250, size=(n_particles, 2))  # pixels
    xy = centres[group] + rng.normal(scale=0.5, size=(n_locs, 2))
    dtype = [("frame", "u4"), ("x", "f4"), ("y", "f4"), ("photons", "f4"), ("sx", "f4"), ("sy", "f4"), ("bg", "f4"),
             ("lpx", "f4"), ("lpy", "f4"), ("ellipticity", "f4"), ("net_gradient", "f4"), ("group", "i4")]
    locs = np.zeros(n_locs, dtype=dtype)
    locs["frame"] = rng.integers(0, 50_000, size=n_locs)
    locs["x"], locs["y"] = xy[:, 0], xy[:, 1]
    locs["photons"] = rng.uniform(500, 5000, size=n_locs)
    locs["sx"] = locs["sy"] = 1.0
    locs["lpx"] = locs["lpy"] = rng.uniform(0.01, 0.1, size=n_locs)
    locs["group"] = group
    h5 = folder / "synthetic_picked.hdf5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("locs", data=locs)
    with open(h5.with_suffix(".yaml"), "w") as fh:
        yaml.safe_dump_all([{"Width": 256, "Height": 256}, {"Pixelsize": 130}], fh)

    order = rng.permutation(n_locs)
    table = pa.table({
        "x [nm]": xy[order, 0] * 130.0,
        "y [nm]": xy[order, 1] * 130.0,
        "uncertainty [nm]": locs["lpx"][order].astype(np.float64) * 130.0,
        "intensity [photon]": locs["photons"][order].astype(np.float64),
        "frame": locs["frame"][order].astype(np.int64),
        "group": group[order].astype(np.int64),
    })
    csv = folder / "synthetic_locs.csv"
    pacsv.write_csv(table, csv)
    return h5, csv, n_particles


def timed(label, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    return out, dt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 million localizations instead of 10 million")
    parser.add_argument("--n-locs", type=int, default=None)
    parser.add_argument("--locs-per-particle", type=int, default=300)
    args = parser.parse_args(argv)
    n_locs = args.n_locs or (1_000_000 if args.quick else 10_000_000)

    import awkward as ak

    from pcvae_sklearn import as_particles
    from pcvae_sklearn.io import read_parquet, read_particles, write_parquet

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (h5, csv, n_particles), t_make = timed("make", make_files, folder, n_locs, args.locs_per_particle)
        print(f"{n_locs:,} localizations in {n_particles:,} particles (files written in {t_make:.1f} s: "
              f"HDF5 {h5.stat().st_size / 1e6:.0f} MB, CSV {csv.stat().st_size / 1e6:.0f} MB)")
        rows = []
        p, dt = timed("picasso", read_particles, h5)
        assert len(p) <= n_particles and int(ak.sum(ak.num(p))) == n_locs
        rows.append(("read_particles(Picasso HDF5, sorted groups)", dt))
        q, dt = timed("csv", read_particles, csv)
        assert int(ak.sum(ak.num(q))) == n_locs
        rows.append(("read_particles(CSV, rows in random order)", dt))
        pq = folder / "particles.parquet"
        _, dt = timed("write_parquet", write_parquet, p, pq)
        rows.append(("write_parquet", dt))
        r, dt = timed("read_parquet", read_parquet, pq)
        rows.append(("read_parquet (includes validation)", dt))
        _, dt = timed("as_particles", as_particles, p)
        rows.append(("as_particles(reader output)", dt))
        width = max(len(r[0]) for r in rows)
        for label, dt in rows:
            print(f"  {label:<{width}}  {dt:7.2f} s   {n_locs / dt / 1e6:6.1f} M localizations/s")


if __name__ == "__main__":
    main()
