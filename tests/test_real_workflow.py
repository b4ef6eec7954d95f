"""The whole workflow on small subsets of the real published particles in ../shared/data/real.

The data are not shipped (see ../shared/data/README.md for sources and
licences); these tests skip where that folder is absent. The full-size runs
and their figures are in docs/user_guide.md ("Your own data").
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from pcvae_sklearn import ParticleFuser, PointCloudVAE, analyse, as_particles, read_particles
from pcvae_sklearn.cli import main
from pcvae_sklearn.io import write_parquet

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} is absent (a fresh clone has no ../shared/data)")

SMALL_VAE = dict(latent_dim=3, n_epochs=1, architecture=dict(encoder_widths=(16, 32), decoder_widths=(16, 32),
                                                              decoder_channels=32, n_output_points=32))


def turned(particles, seed):
    """Every particle of a registered set at its own random angle about the optical axis."""
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(particles))
    c, s = np.cos(angle), np.sin(angle)
    out = ak.with_field(particles, c * particles.x - s * particles.y, "x")
    return ak.with_field(out, s * particles.x + c * particles.y, "y")


def test_cli_run_on_real_gp210_pores(tmp_path, capsys):
    pores = turned(read_particles(REAL / "fig4e_304_2D_gp210.mat")[:60], seed=0)
    path = tmp_path / "gp210.parquet"
    write_parquet(pores, path)
    out = tmp_path / "run"
    rc = main(["run", str(path), "--out", str(out), "--epochs", "1", "--latent-dim", "2", "--n-bins", "4",
               "--n-null", "5", "--no-fusion", "--no-figures", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    bins = pd.read_csv(out / "bins.csv")
    assert bins["bin"].tolist() == [1, 2, 3, 4]
    assert {"ci_low", "ci_high", "null_low", "null_high"} <= set(bins.columns)
    # gp210 rings: the per-bin median ring radius lies in the published range (about 80 nm)
    assert bins["particle_median_radius_nm"].between(60, 100).all(), bins["particle_median_radius_nm"].tolist()
    assert len(pd.read_csv(out / "latents.csv")) == 60
    assert json.loads((out / "settings.json").read_text())["model"]["latent_dim"] == 2


def test_analyse_on_real_3d_nup107_pores():
    everything = read_particles(REAL / "fig5k_306_3DNUP_PAINT.mat")
    # 4 of the 306 pores carry a localization beyond 3 times their median distance (~180 nm): outliers, not encoded
    assert (as_particles(everything).outliers().sum(), as_particles(everything[:60]).outliers().sum()) == (6, 0)
    pores = turned(everything[:60], seed=1)
    vae = PointCloudVAE(**SMALL_VAE, random_state=0)
    # turned about the optical axis only: the null's template need not search 3D rotations
    result = analyse(pores, vae=vae, estimate="pore", n_bins=4, fuse=False, n_null=5, random_state=0,
                     null_fuser=ParticleFuser(rotation="z", n_restarts=1))
    assert result.vae.outlier_fraction_ == 0.0
    table = result.bin_table
    assert len(table) == 4 and table["ci_low"].le(table["ci_high"]).all()
    lo, hi = 40, 90  # Nup107: rings about 65 nm apart
    median = table[[c for c in table.columns if c.startswith("particle_median_")][0]]
    assert median.between(lo, hi).all(), median.tolist()
    assert set(result.heterogeneity) >= {"detected", "p_value", "dimension", "verdict"}


def test_cli_run_on_raw_tu_delft_logos_needs_the_pixel_size(tmp_path, capsys):
    path = REAL / "tud_dol30.mat"
    rc = main(["run", str(path), "--out", str(tmp_path / "none"), "--quiet"])
    assert rc == 2
    assert "pixel" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
