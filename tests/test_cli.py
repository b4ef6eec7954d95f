"""The ``pcvae`` command line as a newcomer meets it: help, flags, small and odd inputs, outputs."""

import json
import warnings
import sys

import numpy as np
import pandas as pd
import pytest

from _helpers import SHARED_DATA, TINY_VAE
from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn._diagnostics import MAX_CENTRAL_FRACTION_OF_RINGS, central_fraction, check_bins, workflow_warnings
from pcvae_sklearn._input import as_particles
from pcvae_sklearn.cli import for_command_line, main
from pcvae_sklearn.datasets import make_npc_2d

FAST = ["--epochs", "1", "--latent-dim", "2", "--quiet", "--no-figures"]


def test_demo_offers_only_the_estimate_its_2d_pores_allow(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "{radius}" in text and "tetrahedron" not in text
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--out", str(tmp_path / "o"), "--estimate", "height"])
    assert exc.value.code == 2 and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert "{radius,height,tetrahedron,pore}" in capsys.readouterr().out


def test_help_is_plain_text_with_the_real_defaults(capsys):
    for argv in (["--help"], ["run", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "``" not in text and ":class:" not in text
    d = PointCloudVAE().get_params()
    assert f"(default {d['latent_dim']})" in text and f"(default {d['n_epochs']})" in text
    assert "PointCloudVAE's" not in text
    main_help = (main.__module__, None)  # the run subcommand lists every reader option
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    run_help = capsys.readouterr().out
    for flag in ("--format", "--pixel-size", "--particle-column", "--picks", "--pick-radius"):
        assert flag in run_help, flag
    assert main_help


@pytest.mark.parametrize(
    "message, expected",
    [
        ("pass pixel_size= (or pixel_size=)", "pass --pixel-size (or --pixel-size)"),
        ("choose estimate='pore' or 'tetrahedron' (command line: --estimate pore).",
         "choose --estimate 'pore' or 'tetrahedron'."),
        ("which takes no unit= option (its options: n_dims=, pixel_size=, variable=).",
         "which takes no --unit option (its options: --n-dims, --pixel-size, --variable)."),
        ("lower n_bins to 4 or fewer", "lower --n-bins to 4 or fewer"),
        ("pass particle_column=<name>, or picks=<centres> and pick_radius=<nm>.",
         "pass --particle-column <name>, or --picks <centres> and --pick-radius <nm>."),
        ("cannot tell the format of file 'a.txt'; pass format= one of csv", "cannot tell the format of file 'a.txt'; pass --format one of csv"),
        ("the file has no picks: none", "the file has no picks: none"),
        ("pass pixel_size=<nm> (command line: --pixel-size <nm>), or pixel_size=1", "pass --pixel-size <nm>, or --pixel-size 1"),
        ("unmix_components from 1 to latent_dim=8; use device='cpu'", "--unmix-components from 1 to --latent-dim 8; use --device 'cpu'"),
    ],
)
def test_messages_name_the_flags_not_the_keywords(message, expected):
    assert for_command_line(message) == expected


def test_too_few_particles_says_the_rule_and_the_flag_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["demo", "--out", str(out), "--n-particles", "9", *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert "9 particle(s)" in err and "at least 40" in err and "2 particles" in err
    assert "lower --n-bins to 4 or fewer" in err and "X holds" not in err
    assert not out.exists()


def test_a_failed_run_keeps_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    assert main(["demo", "--out", str(out), "--n-particles", "9", *FAST]) == 2
    assert out.is_dir()  # the user's (empty) folder, not this run's to remove


def test_a_folder_holding_files_is_refused_and_kept(tmp_path, capsys):
    """No file of an earlier run may pass for one of this run (a stale figure beside new tables)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["demo", "--out", str(out), "--n-particles", "9", *FAST]) == 2
    assert "already holds files (keep.txt)" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data" and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("n_particles, n_bins", [(3, 2), (39, 20), (1, 2)])
def test_check_bins_rejects_too_few(n_particles, n_bins):
    with pytest.raises(ValueError, match=f"{n_particles} particle"):
        check_bins(n_particles, n_bins)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "4"])
def test_check_bins_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="n_bins must be an integer of at least 2"):
        check_bins(100, bad)


def test_reader_errors_name_the_flags(tmp_path, capsys):
    path = tmp_path / "locs.csv"
    pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0)}).to_csv(path, index=False)
    rc = main(["run", str(path), "--out", str(tmp_path / "o"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--particle-column" in err and "--picks" in err and "--pick-radius" in err
    assert "particle_column=" not in err and "pick_radius=" not in err
    assert not (tmp_path / "o").exists()


def test_an_option_the_reader_does_not_take_is_named(tmp_path, capsys):
    path = tmp_path / "locs.parquet"
    pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0), "particle": np.repeat(np.arange(5), 10)}).to_parquet(path)
    rc = main(["run", str(path), "--pixel-size", "130", "--out", str(tmp_path / "o"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "'parquet'" in err and "--pixel-size" in err


def test_out_that_is_a_file_and_an_unused_pixel_size_are_named(tmp_path, capsys):
    path = tmp_path / "locs.csv"
    pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0), "particle": np.repeat(np.arange(5), 10)}).to_csv(
        path, index=False)
    (tmp_path / "afile").write_text("keep me")
    assert main(["run", str(path), "--out", str(tmp_path / "afile"), *FAST]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "keep me"
    # columns without a unit are nm: a pixel size would convert nothing, so it is refused, not recorded
    assert main(["run", str(path), "--pixel-size", "100", "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "no column is in camera pixels" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_outputs_carry_the_files_own_particle_ids(tmp_path, capsys):
    """Rows are numbered in the reader's order; the file's ids (here not 0..n-1, rows shuffled) sit beside them."""
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(1000, 1000 + 7 * 12, 7))
    sizes = {pid: 30 + k for k, pid in enumerate(ids)}  # every particle its own size, to follow it
    rows = []
    for pid in ids:
        angles = rng.uniform(0, 2 * np.pi, sizes[pid])
        rows.append(pd.DataFrame({"x": 50 * np.cos(angles), "y": 50 * np.sin(angles), "group": pid}))
    pd.concat(rows).sample(frac=1.0, random_state=0).to_csv(tmp_path / "locs.csv", index=False)
    out = tmp_path / "o"
    rc = main(["run", str(tmp_path / "locs.csv"), "--n-bins", "2", "--no-null", "--stability-seeds", "1",
               "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    latents = pd.read_csv(out / "latents.csv")
    assert sorted(latents["particle_id"]) == sorted(ids)
    fused = pd.read_parquet(out / "super_particles.parquet")
    counts = fused.groupby("particle_id").size()
    assert {int(k): int(v) for k, v in counts.items()} == {int(k): v for k, v in sizes.items()}
    per_row = fused.groupby("particle")["particle_id"].first()
    np.testing.assert_array_equal(per_row.loc[latents["particle"]].to_numpy(), latents["particle_id"].to_numpy())
    # a column of the data's own named 'particle' travels as a field and keeps its values; no ids are mapped onto it
    pd.read_csv(tmp_path / "locs.csv").assign(particle=lambda t: t["group"] + 5).to_csv(tmp_path / "own.csv", index=False)
    rc = main(["run", str(tmp_path / "own.csv"), "--particle-column", "group", "--n-bins", "2", "--no-null",
               "--stability-seeds", "1", "--out", str(tmp_path / "own"), *FAST])
    assert rc == 0, capsys.readouterr().err
    assert set(pd.read_parquet(tmp_path / "own" / "super_particles.parquet")["particle"]) == {int(i) + 5 for i in ids}


def test_the_readers_options_and_warnings_on_the_command_line(tmp_path, capsys):
    """A reader's warning is said at once in the flags' words and kept in the report; --n-dims and --variable
    reach the reader."""
    import scipy.io

    rng = np.random.default_rng(0)
    rings = []
    for i in range(8):
        angles = rng.uniform(0, 2 * np.pi, 40)
        rings.append(np.c_[50 * np.cos(angles), 50 * np.sin(angles), np.zeros(40)])
    table = pd.concat([pd.DataFrame({"x": r[:, 0], "y": r[:, 1], "z": r[:, 2], "particle": i})
                       for i, r in enumerate(rings)])
    table.to_csv(tmp_path / "flat.csv", index=False)
    quick = ["--n-bins", "2", "--no-null", "--no-fusion", "--stability-seeds", "1", *FAST]
    assert main(["run", str(tmp_path / "flat.csv"), "--estimate", "height", "--out", str(tmp_path / "h"), *quick]) == 2
    err = capsys.readouterr().err
    assert "read as 2D (--n-dims 3 keeps z)" in err and "--estimate height needs 3D particles" in err
    assert main(["run", str(tmp_path / "flat.csv"), "--out", str(tmp_path / "o"), *quick]) == 0
    capsys.readouterr()
    settings = json.loads((tmp_path / "o" / "settings.json").read_text())
    assert any(w.startswith("reading the file:") and "--n-dims 3" in w for w in settings["warnings"])
    assert settings["reading"]["precision"].startswith("none in the data; none is assumed")
    assert "reading the file:" in (tmp_path / "o" / "report.html").read_text()
    assert main(["run", str(tmp_path / "flat.csv"), "--n-dims", "3", "--out", str(tmp_path / "o3"), *quick]) == 0
    assert "read as 2D" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o3" / "settings.json").read_text())["reading"]["n_dims"] == 3
    # a MATLAB file with two cells: the error names --variable, which chooses one
    cells = np.empty((1, 8), dtype=object)
    for i, r in enumerate(rings):
        cells[0, i] = r[:, :2].T.copy()
    other = np.empty((1, 8), dtype=object)
    for i in range(8):
        other[0, i] = np.eye(2)
    scipy.io.savemat(tmp_path / "two.mat", {"A": cells, "B": other})
    assert main(["run", str(tmp_path / "two.mat"), "--out", str(tmp_path / "m"), *quick]) == 2
    assert "--variable <name> to choose one" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "two.mat"), "--variable", "A", "--out", str(tmp_path / "m"), *quick]) == 0


def test_what_converting_the_input_says_is_said_once_in_the_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    table = pd.concat([pd.DataFrame({"x": rng.normal(0, 50, 40), "y": rng.normal(0, 50, 40), "z": rng.normal(0, 20, 40),
                                     "precision_z": 10.0, "particle": i}) for i in range(8)])
    table.to_csv(tmp_path / "axial.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes as a raw Python warning
        rc = main(["run", str(tmp_path / "axial.csv"), "--n-bins", "2", "--no-null", "--no-fusion", "--stability-seeds",
                   "1", "--out", str(tmp_path / "o"), *FAST])
    assert rc == 0
    said = "the particles carry an axial precision ('precision_z') but no lateral one"
    assert capsys.readouterr().err.count(said) == 1
    assert sum(said in w for w in json.loads((tmp_path / "o" / "settings.json").read_text())["warnings"]) == 1


def test_semicolon_separated_csv_is_read_with_sep(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "locs.csv"
    angles = rng.uniform(0, 2 * np.pi, (8, 40))
    frame = pd.DataFrame({"x": (50 * np.cos(angles)).ravel(), "y": (50 * np.sin(angles)).ravel(),
                          "particle": np.repeat(np.arange(8), 40)})
    frame.to_csv(path, index=False, sep=";")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "separated by semicolons" in err and "--sep ';'" in err
    out = tmp_path / "o"
    rc = main(["run", str(path), "--sep", ";", "--n-bins", "2", "--no-fusion", "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    assert len(pd.read_csv(out / "latents.csv")) == 8
    assert json.loads((out / "settings.json").read_text())["reading"]["sep"] == ";"


def test_picks_file_and_radius_pick_the_particles(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 5000, (12, 2))
    locs = np.concatenate([c + rng.normal(0, 20, (30, 2)) for c in centres])
    path = tmp_path / "locs.csv"
    pd.DataFrame({"x": locs[:, 0], "y": locs[:, 1]}).to_csv(path, index=False)
    np.savetxt(tmp_path / "picks.csv", centres, delimiter=",")
    out = tmp_path / "o"
    rc = main(["run", str(path), "--picks", str(tmp_path / "picks.csv"), "--pick-radius", "100", "--n-bins", "3",
               "--no-fusion", "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    done = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Done in"))
    assert "latents.csv" in done and "super_particles.parquet" not in done and "*.png" not in done  # --no-fusion, -figures
    assert len(pd.read_csv(out / "latents.csv")) == 12
    reading = json.loads((out / "settings.json").read_text())["reading"]
    assert reading["pick_radius"] == 100 and "12 pick centres" in reading["picks"]


def test_bad_picks_file_is_named(tmp_path, capsys):
    path = tmp_path / "locs.csv"
    pd.DataFrame({"x": np.arange(5.0), "y": np.arange(5.0)}).to_csv(path, index=False)
    (tmp_path / "picks.csv").write_text("1,2,3\n4,5,6\n")
    rc = main(["run", str(path), "--picks", str(tmp_path / "picks.csv"), "--pick-radius", "50", "--out", str(tmp_path / "o"), *FAST])
    assert rc == 2 and "--picks" in capsys.readouterr().err


def _grid_particles(n, seed=0):
    """Origami-like particles: localizations spread over a filled 80 x 60 nm rectangle, not rings."""
    rng = np.random.default_rng(seed)
    return [rng.uniform([-40, -30], [40, 30], (int(rng.integers(60, 120)), 2)) for _ in range(n)]


def test_central_fraction_tells_rings_from_filled_shapes():
    rings, _ = make_npc_2d(50, random_state=0)
    assert np.median(central_fraction(as_particles(rings))) < 0.03
    assert np.median(central_fraction(as_particles(_grid_particles(50)))) > 2 * MAX_CENTRAL_FRACTION_OF_RINGS
    # against a direct computation, particle by particle
    p = as_particles(_grid_particles(7, seed=1))
    for i, pts in enumerate(p.to_list()):
        d = np.linalg.norm(pts[:, :2] - pts[:, :2].mean(axis=0), axis=1)
        assert central_fraction(p)[i] == pytest.approx(np.mean(d < 0.5 * np.median(d)))


def test_warnings_for_a_small_odd_run():
    p = as_particles(_grid_particles(9))

    class Diverged:
        history_ = [{"loss": 1.6}, {"loss": 38.0}]

    found = workflow_warnings(p, vae=Diverged(), n_bins=3, estimate_name="radius_nm")
    text = " ".join(found)
    assert "about 3 per bin" in text
    assert "computed on 9 particles" in text
    assert "jumped from 1.6 in epoch 1 to 38 in epoch 2" in text
    assert "do not look like rings" in text
    assert "--estimate pore" not in for_command_line(text)  # 2D particles: no 3D estimate to offer
    blobs = as_particles([np.random.default_rng(i).normal(0, 30, (60, 3)) for i in range(9)])
    rings = next(w for w in workflow_warnings(blobs, vae=Diverged(), n_bins=3, estimate_name="radius_nm")
                 if "do not look like rings" in w)
    assert "choose --estimate 'pore' or 'tetrahedron'" in for_command_line(rings)
    calm = workflow_warnings(as_particles(make_npc_2d(200, random_state=0)[0]), vae=PointCloudVAE(), n_bins=20,
                             estimate_name="radius_nm")
    assert calm == []


def test_coordinates_that_look_like_pixels_are_reported():
    X, _ = make_npc_2d(40, random_state=0)
    p = as_particles(X)
    in_pixels = p.replace(coords=p.coords / 130.0)  # a 130 nm camera pixel
    found = workflow_warnings(in_pixels, vae=PointCloudVAE(), n_bins=4, estimate_name="radius_nm")
    assert any("median RMS radius is 0.4" in w and "camera pixels" in w for w in found), found
    assert not any("camera pixels" in w for w in workflow_warnings(p, vae=PointCloudVAE(), n_bins=4,
                                                                   estimate_name="radius_nm"))
    units = for_command_line(next(w for w in found if "camera pixels" in w))
    assert "--pixel-size <nm per pixel>" in units and "--unit 'px' and --pixel-size" in units  # unitless columns
    # nm multiplied by a pixel size: far too large, also said
    scaled = p.replace(coords=p.coords * 130.0)
    big = workflow_warnings(scaled, vae=PointCloudVAE(), n_bins=4, estimate_name="radius_nm")
    assert any("far larger than the structures" in w for w in big), big
    assert not any("far larger" in w for w in workflow_warnings(p, vae=PointCloudVAE(), n_bins=4,
                                                                estimate_name="radius_nm"))
    # a pixel size the user gave is named beside the units warning (0.13 typed for 130 nm)
    from pcvae_sklearn.cli import _with_pixel_size

    said = _with_pixel_size(for_command_line(next(w for w in found if "camera pixels" in w)), 0.13)
    assert "--pixel-size 0.13 was given: it is nm per camera pixel" in said


def test_non_finite_loss_is_reported():
    class NaNLoss:
        history_ = [{"loss": 1.0}, {"loss": float("nan")}]

    found = workflow_warnings(as_particles(make_npc_2d(40, random_state=0)[0]), vae=NaNLoss(), n_bins=4,
                              estimate_name="height_nm")
    assert any("not finite in epoch 2" in w for w in found)


def test_demo_outputs_one_numbering_a_readable_table_and_its_warnings(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "24", "--n-bins", "3", "--sample-ratios", "none", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "pcvae: warning:" in captured.err and "use fewer bins (--n-bins)" in captured.err
    assert "Binned along latent_radius_nm: the latent direction" in captured.out
    assert "grows from bin 1 to bin 3" in captured.out
    bins = pd.read_csv(out / "bins.csv")
    assert bins["bin"].tolist() == [1, 2, 3]
    sp = pd.read_parquet(out / "super_particles.parquet")
    assert list(sp.columns[:3]) == ["bin", "x", "y"] and {"precision", "particle"} <= set(sp.columns)
    assert sorted(sp["bin"].unique()) == [1, 2, 3]
    assert sp.groupby("bin")["particle"].nunique().sum() == 24
    report = (out / "report.html").read_text()
    assert "Warnings" in report and "0.000<" not in report
    settings = json.loads((out / "settings.json").read_text())
    assert settings["warnings"] and settings["reading"]
    assert settings["reading"]["precision"].startswith("'precision' read (median ")  # the simulation's own


@pytest.mark.skipif(not (SHARED_DATA / "picasso").is_dir(), reason=f"{SHARED_DATA} is absent (a fresh clone has no ../shared)")
def test_nine_real_picks_get_guidance(tmp_path, capsys):
    path = SHARED_DATA / "picasso" / "raw_movie_locs_picked.hdf5"
    rc = main(["run", str(path), "--out", str(tmp_path / "a"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "9 particle(s)" in err and "lower --n-bins to 4 or fewer" in err
    assert not (tmp_path / "a").exists()
    rc = main(["run", str(path), "--n-bins", "3", "--out", str(tmp_path / "b"), *FAST])
    err = capsys.readouterr().err
    assert rc == 0
    assert "about 3 per bin" in err and "computed on 9 particles" in err and "do not look like rings" in err


def test_tiny_vae_params_still_build():  # the helpers used above stay valid
    assert PointCloudVAE(**TINY_VAE).latent_dim == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM ends a process at once on Windows")
def test_a_terminated_run_leaves_no_folder(tmp_path):
    """A run killed with SIGTERM (a job stopped, a session closed) cleans up like a failed one."""
    import signal
    import subprocess
    import time

    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "pcvae_sklearn.cli", "demo", "--n-particles", "200", "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.exists(), proc.stderr.read().decode()  # the run had started writing
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not out.exists()


@pytest.mark.parametrize("estimate", ["pore", "height"])  # "height": structure="auto", which chooses "pore"
def test_a_pore_run_names_the_ring_distance_and_prints_fixed_point(tmp_path, capsys, estimate):
    from pcvae_sklearn.datasets import make_npc_3d

    X, _ = make_npc_3d(24, random_state=0)
    rows = [pd.DataFrame({"particle": i, "x": np.asarray(p.x), "y": np.asarray(p.y), "z": np.asarray(p.z)})
            for i, p in enumerate(X)]
    path = tmp_path / "pores.csv"
    pd.concat(rows).to_csv(path, index=False)
    rc = main(["run", str(path), "--estimate", estimate, "--n-bins", "3", "--no-fusion", "--no-null",
               "--particle-column", "particle", "--out", str(tmp_path / "out"), *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "per-particle ring distance (height) estimate" in captured.out
    assert "height_nm (ring distance)" in (tmp_path / "out" / "report.html").read_text()
    assert "e-0" not in captured.out.split("Binned along")[0]  # no column in scientific notation


def test_after_register_the_remedy_is_not_offered_again():
    from types import SimpleNamespace

    from pcvae_sklearn.cli import _after_registering

    res = SimpleNamespace(
        warnings=["HeightEstimator(structure='tetrahedron'): 9 of 10 particles ... register rotated particles into a "
                  "frame with the apex along z before estimating their height.", "12 particles in 2 bins"],
        heterogeneity={"verdict": "height varies ...; but many particles look turned out of the plane, where the "
                                  "height measures their orientation as much as their structure (see the warning): "
                                  "register them first"})
    _after_registering(res)
    assert res.warnings[0].endswith("registered first (--register), and that did not put them upright: check "
                                    "--symmetry, or read the bins by their super-particles.")
    assert res.warnings[1] == "12 particles in 2 bins"
    assert res.heterogeneity["verdict"].endswith("(see the warning), even after --register")


def test_register_puts_turned_pores_upright_before_the_analysis(tmp_path, capsys):
    """--register: the pores turned out of the plane are registered first, and the ring distance follows the truth."""
    from scipy.stats import spearmanr

    from pcvae_sklearn.datasets import make_npc_3d

    X, truth = make_npc_3d(60, rotation="3d", random_state=0)
    rows = [pd.DataFrame({"particle": i, "x": np.asarray(p.x), "y": np.asarray(p.y), "z": np.asarray(p.z)})
            for i, p in enumerate(X)]
    path = tmp_path / "pores.csv"
    pd.concat(rows).to_csv(path, index=False)
    common = ["run", str(path), "--estimate", "pore", "--n-bins", "3", "--no-fusion", "--no-null",
              "--particle-column", "particle", *FAST]
    assert main([*common, "--register", "--out", str(tmp_path / "none")]) == 2
    assert "--register needs --symmetry with 3D particles" in capsys.readouterr().err
    rho = {}
    for name, extra in (("as read", []), ("registered", ["--register", "--symmetry", "8"])):
        out = tmp_path / name.replace(" ", "_")
        assert main([*common, *extra, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        turned = "do not look like rings seen along z" in err
        assert turned == (name == "as read"), err
        if turned:  # the remedy it names is this command's flag
            assert "(--register --symmetry 8 for nuclear pores)" in err, err
        height = pd.read_csv(out / "latents.csv")["height_nm"]
        rho[name] = abs(spearmanr(height, truth["height"])[0])
    assert json.loads((out / "settings.json").read_text())["register"] is True
    assert "registered first" in (out / "report.html").read_text()
    assert rho["registered"] > 0.6 > rho["as read"], rho


def test_summary_tables_stay_in_fixed_point():
    from pcvae_sklearn.cli import _fixed_table

    text = _fixed_table(pd.DataFrame({"latent": ["a", "b"], "pearson_r": [1.2e-5, 0.5]}))
    assert "0.000" in text and "0.500" in text and "e-05" not in text
