"""Renderings, Display objects, the report and the CLI's figures (pcvae_sklearn.show)."""

from __future__ import annotations

import base64
import io
import re
import sys

import awkward as ak
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from _helpers import TINY_VAE
from pcvae_sklearn import PointCloudVAE, analyse
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d
from pcvae_sklearn.fuse import ParticleFuser
from pcvae_sklearn.show import (
    BinRowDisplay,
    BinViolinDisplay,
    LatentEmbeddingDisplay,
    LatentScatterDisplay,
    SampleRatioDisplay,
    SuperParticleGridDisplay,
    TrainingCurveDisplay,
    localization_precision,
    render_particles,
    render_projections,
    scale_bar_length,
)

SEEDS = [0, 1, 2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_FUSER = ParticleFuser(n_components=16, n_restarts=1, max_iter=30)


def _particles(seed, n_particles=3, n_dims=2, precision=True):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, n_particles)
    parts = []
    for n in lengths:
        rec = {k: rng.uniform(-20, 20, n) for k in "xyz"[:n_dims]}
        if precision:
            rec["precision"] = rng.uniform(2.0, 5.0, n)
            if n_dims == 3:
                rec["precision_z"] = rng.uniform(4.0, 9.0, n)
        parts.append([dict(zip(rec, vals)) for vals in zip(*rec.values())])
    return ak.Array(parts)


def _naive_splat(X, pixel_size, extent, h=0, v=1):
    """Loop over particles, localizations and pixels: exact pixel integrals of every localization's Gaussian."""
    left, right, bottom, top = extent
    n_cols = int(round((right - left) / pixel_size))
    n_rows = int(round((top - bottom) / pixel_size))
    out = np.zeros((len(X), n_rows, n_cols))
    names = "xyz"
    for i, particle in enumerate(X.to_list()):
        cx = np.mean([loc[names[h]] for loc in particle])
        cy = np.mean([loc[names[v]] for loc in particle])
        for loc in particle:
            sh = loc["precision"] if h < 2 else loc["precision_z"]
            sv = loc["precision"] if v < 2 else loc["precision_z"]
            for r in range(n_rows):
                for c in range(n_cols):
                    x0, x1 = left + c * pixel_size, left + (c + 1) * pixel_size
                    y0, y1 = bottom + r * pixel_size, bottom + (r + 1) * pixel_size
                    px = 0.5 * (erf((x1 - loc[names[h]] + cx) / (np.sqrt(2) * sh)) - erf((x0 - loc[names[h]] + cx) / (np.sqrt(2) * sh)))
                    py = 0.5 * (erf((y1 - loc[names[v]] + cy) / (np.sqrt(2) * sv)) - erf((y0 - loc[names[v]] + cy) / (np.sqrt(2) * sv)))
                    out[i, r, c] += px * py
    return out


def _naive_histogram(X, pixel_size, extent, h=0, v=1):
    left, right, bottom, top = extent
    n_cols = int(round((right - left) / pixel_size))
    n_rows = int(round((top - bottom) / pixel_size))
    out = np.zeros((len(X), n_rows, n_cols))
    names = "xyz"
    for i, particle in enumerate(X.to_list()):
        cx = np.mean([loc[names[h]] for loc in particle])
        cy = np.mean([loc[names[v]] for loc in particle])
        for loc in particle:
            c = int(np.floor((loc[names[h]] - cx - left) / pixel_size))
            r = int(np.floor((loc[names[v]] - cy - bottom) / pixel_size))
            if 0 <= r < n_rows and 0 <= c < n_cols:
                out[i, r, c] += 1
    return out


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_dims, projection", [(2, "xy"), (3, "xy"), (3, "xz"), (3, "yz")])
def test_individual_splat_matches_naive(seed, n_dims, projection):
    X = _particles(seed, n_dims=n_dims)
    extent = (-30.0, 30.0, -24.0, 24.0)
    r = render_particles(X, blur="individual", pixel_size=3.0, extent=extent, projection=projection)
    h, v = "xyz".index(projection[0]), "xyz".index(projection[1])
    expected = _naive_splat(X, 3.0, extent, h, v)
    assert r.images.shape == expected.shape == (len(X), 16, 20)
    np.testing.assert_allclose(r.images, expected, atol=1e-4)  # splats are cut off at 4 sigma


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("blur", [3.0, (2.0, 5.0)])
def test_histogram_blur_matches_naive(seed, blur):
    X = _particles(seed)
    extent = (-32.0, 32.0, -32.0, 32.0)
    r = render_particles(X, blur=blur, pixel_size=2.0, extent=extent)
    sh, sv = (blur, blur) if np.ndim(blur) == 0 else blur
    expected = np.stack([gaussian_filter(img, (sv / 2.0, sh / 2.0), mode="constant", truncate=4.0)
                         for img in _naive_histogram(X, 2.0, extent)])
    np.testing.assert_allclose(r.images, expected, atol=1e-9)
    assert r.blur == (sh, sv)


@pytest.mark.parametrize("seed", SEEDS)
def test_one_blur_and_individual_blur_agree_for_equal_precisions(seed):
    rng = np.random.default_rng(seed)
    X = [rng.normal(0, 15, (40, 2)) for _ in range(2)]
    X_prec = ak.Array([[{"x": a, "y": b, "precision": 4.0} for a, b in p] for p in X])
    one = render_particles(X_prec, blur=4.0, pixel_size=1.0, extent=60.0)
    ind = render_particles(X_prec, blur="individual", pixel_size=1.0, extent=60.0)
    np.testing.assert_allclose(one.images.sum(axis=(1, 2)), ind.images.sum(axis=(1, 2)), rtol=1e-3)
    # the histogram rounds every localization to its pixel: images agree up to that half-pixel shift
    rel = np.abs(one.images - ind.images).sum() / ind.images.sum()
    assert rel < 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_mass_is_kept_and_input_is_not_modified(seed):
    X = _particles(seed, n_particles=4)
    before = ak.to_list(X)
    for blur in (None, 3.0, "individual"):
        r = render_particles(X, blur=blur, extent=200.0)
        np.testing.assert_allclose(r.images.sum(axis=(1, 2)), ak.num(X).to_numpy(), rtol=1e-4)  # 4-sigma cut-off
    assert ak.to_list(X) == before


@pytest.mark.parametrize("seed", SEEDS)
def test_3d_projections_put_a_localization_where_it_is(seed):
    rng = np.random.default_rng(seed)
    x, y, z = rng.uniform(-30, 30, 3)
    particle = np.array([[x, y, z], [x, y, z]])
    views = render_projections([particle, particle], blur=2.0, pixel_size=1.0, extent=40.0, centre=False)
    assert sorted(views) == ["xy", "xz"]
    for proj, (a, b) in {"xy": (x, y), "xz": (x, z)}.items():
        r = views[proj]
        row, col = np.unravel_index(np.argmax(r.images[0]), r.images[0].shape)
        assert abs(r.extent[0] + (col + 0.5) * r.pixel_size - a) <= 1.0
        assert abs(r.extent[2] + (row + 0.5) * r.pixel_size - b) <= 1.0
    assert sorted(render_projections([particle[:, :2]] * 2)) == ["xy"]


def test_projections_of_a_pore_show_rings_from_above_and_two_layers_from_the_side():
    X, truth = make_npc_3d(20, random_state=0, dol=1.0)
    views = render_projections(X)
    xy = views["xy"].images.sum(axis=0)
    xz = views["xz"].images.sum(axis=0)
    # xz: the rows at the two ring heights hold more signal than the row at z = 0
    r = views["xz"]
    rows_z = r.extent[2] + (np.arange(xz.shape[0]) + 0.5) * r.pixel_size
    half = np.median(truth["height"]) / 2 if "height" in truth.dtype.names else 25.0
    mid = xz[np.argmin(np.abs(rows_z))].sum()
    top = xz[np.argmin(np.abs(rows_z - half))].sum()
    bottom = xz[np.argmin(np.abs(rows_z + half))].sum()
    assert top > mid and bottom > mid
    # xy: a ring, so the centre pixel is dimmer than the brightest pixels
    assert xy[xy.shape[0] // 2, xy.shape[1] // 2] < 0.5 * xy.max()


# ---------------------------------------------------------------- defaults
@pytest.mark.parametrize("seed", SEEDS)
def test_defaults_come_from_the_precision(seed):
    X = _particles(seed, n_dims=3)
    prec = ak.flatten(X.precision).to_numpy()
    prec_z = ak.flatten(X.precision_z).to_numpy()
    lateral, axial, estimated = localization_precision(X)
    assert (lateral, axial, estimated) == (np.median(prec), np.median(prec_z), False)
    xy = render_particles(X)
    assert xy.blur == (lateral, lateral)
    assert xy.pixel_size == pytest.approx(lateral / 2)
    xz = render_particles(X, projection="xz")
    assert xz.blur == (lateral, axial)


@pytest.mark.parametrize("seed", SEEDS)
def test_precision_is_estimated_without_a_precision_field(seed):
    rng = np.random.default_rng(seed)
    # clusters of repeated localizations (blinking) with 5 nm precision, 60 nm apart
    sites = np.array([[0.0, 0.0], [60.0, 0.0], [0.0, 60.0]])
    X = [np.repeat(sites, 6, axis=0) + rng.normal(0, 5.0, (18, 2)) for _ in range(5)]
    lateral, axial, estimated = localization_precision(X)
    assert estimated and axial is None
    assert 1.5 < lateral < 10.0
    r = render_particles(X)
    assert r.precision_estimated and r.blur == (lateral, lateral)


def test_pixel_size_is_capped_for_large_fields_of_view():
    r = render_particles([np.array([[0.0, 0.0], [1.0, 1.0]])] * 2, blur=1.0, extent=5000.0)
    assert max(r.images.shape[1:]) <= 512


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"blur": "wide"}, "blur must be"),
        ({"blur": -1.0}, "blur must be a positive"),
        ({"blur": (1.0, 2.0, 3.0)}, "pair"),
        ({"pixel_size": 0.0}, "pixel_size must be a positive"),
        ({"extent": (1.0, 0.0, -1.0, 1.0)}, "extent must be"),
        ({"projection": "xz"}, "needs 3D particles"),
        ({"projection": "ab"}, "projection must be one of"),
    ],
)
def test_bad_render_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_particles([np.zeros((3, 2)), np.ones((3, 2))], **kwargs)


def test_individual_blur_needs_a_precision_field():
    with pytest.raises(ValueError, match="needs a per-localization field 'precision'"):
        render_particles([np.zeros((3, 2)), np.ones((3, 2))], blur="individual")


@pytest.mark.parametrize("width", [7.0, 33.0, 100.0, 160.0, 999.0, 12345.0])
def test_scale_bar_is_round_and_about_a_quarter(width):
    length = scale_bar_length(width)
    mantissa = length / 10 ** np.floor(np.log10(length))
    assert round(mantissa, 9) in (1.0, 2.0, 5.0)
    assert width / 4 / 2.5 < length <= width / 4


# ---------------------------------------------------------------- displays
@pytest.fixture(scope="module")
def workflow_2d():
    X, truth = make_npc_2d(40, random_state=0)
    # one seed and a single axis: the displays' from_estimator bin along the best axis of all, as analyse does
    # then (its default direction is cross-fitted, which an encoder applied to particles cannot repeat)
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=4, fuser=FAST_FUSER, random_state=0,
                  n_seeds=1, axis="single")
    return X, res


def test_displays_from_a_result_binned_along_the_direction(plt):
    X, _ = make_npc_2d(40, random_state=0)
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=4, fuser=FAST_FUSER, random_state=0,
                  n_seeds=1, null=False)
    assert res.feature_names[res.dimension] == "latent_radius_nm"
    scatter = LatentScatterDisplay.from_results(res).plot()
    assert scatter.to_frame()["latent"].tolist() == [str(n) for n in res.feature_names]
    row = BinRowDisplay.from_results(res).plot()
    assert row.feature_name == "latent_radius_nm" and row.dimension == res.dimension
    # the PCA map is of the encoder's axes, without the direction's column in nm
    embedding = LatentEmbeddingDisplay.from_results(res)
    np.testing.assert_allclose(np.abs(embedding.embedding_),
                               np.abs(LatentEmbeddingDisplay(latents=res.latents[:, :-1]).embedding_), atol=1e-9)
    # the encoder gives the direction from the regression on all particles, close to the cross-fitted column
    Z = res.encoder.transform(X)
    assert Z.shape == res.latents.shape
    np.testing.assert_allclose(Z[:, :-1], res.latents[:, :-1])
    assert np.corrcoef(Z[:, -1], res.latents[:, -1])[0, 1] > 0.9


@pytest.fixture
def plt():
    import matplotlib as mpl
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _png_ok(fig):
    import matplotlib.image as mpimg

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    data = buf.getvalue()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    img = mpimg.imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.01  # something was drawn
    return img


def _displays(X, res):
    return {
        "grid": SuperParticleGridDisplay.from_results(res, X, fuser=FAST_FUSER, register_bins=False, random_state=0),
        "row": BinRowDisplay.from_results(res),
        "scatter": LatentScatterDisplay.from_results(res),
        "violin": BinViolinDisplay.from_results(res),
        "ratio": SampleRatioDisplay.from_estimator(res.vae, X, ratios=(0.5, 1.0), random_state=0),
        "training": TrainingCurveDisplay.from_results(res),
        "embedding": LatentEmbeddingDisplay.from_results(res),
    }


def test_every_display_renders_a_valid_png(workflow_2d, plt):
    X, res = workflow_2d
    for name, display in _displays(X, res).items():
        out = display.plot()
        assert out is display
        assert display.figure_ is not None and display.ax_ is not None, name
        _png_ok(display.figure_)


def test_3d_displays_show_xy_and_xz(plt):
    X, _ = make_npc_3d(8, random_state=1)
    grid = SuperParticleGridDisplay(super_particles=X[:6], dimensions=(0, 1), bins=(1, 2, 3), n_bins=3,
                                    estimates=np.arange(6.0).reshape(2, 3), estimate_name="height_nm").plot()
    row = BinRowDisplay(super_particles=X[:4], estimates=np.arange(4.0), precisions=np.ones(4), estimate_name="height_nm").plot()
    _png_ok(grid.figure_)
    _png_ok(row.figure_)
    assert [t.get_text() for t in row.ax_.get_yticklabels()] == ["xy", "xz"]
    assert "xy | xz" in grid.ax_.get_title()
    # two projections side by side in every grid tile (2 rows x 3 columns): tiles twice as wide as high
    assert grid.mosaic_.shape[1] / 3 > 1.8 * grid.mosaic_.shape[0] / 2


def test_plot_uses_the_given_axes(workflow_2d, plt):
    X, res = workflow_2d
    displays = _displays(X, res)
    displays.pop("grid")  # costly, and drawn on one Axes like the row
    for name, display in displays.items():
        fig, ax = plt.subplots()
        if name == "scatter":
            fig, ax = plt.subplots(1, res.latents.shape[1])
        display.plot(ax=ax)
        assert display.figure_ is fig, name
        if name == "scatter":
            assert list(display.axes_) == list(ax)
        else:
            assert display.ax_ is ax, name


def test_scatter_needs_one_axes_per_dimension(workflow_2d, plt):
    _, res = workflow_2d
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="one per latent dimension"):
        LatentScatterDisplay.from_results(res).plot(ax=ax)


def test_from_estimator_and_from_results_agree(workflow_2d):
    X, res = workflow_2d
    # analyse's latents are its encoder's: the VAE's axes and their independent components
    a, b = LatentScatterDisplay.from_estimator(res.encoder, X), LatentScatterDisplay.from_results(res)
    np.testing.assert_allclose(a.spearman_, b.spearman_)
    np.testing.assert_allclose(a.pearson_, b.pearson_)
    np.testing.assert_allclose(a.spearman_, res.correlations["spearman_rho"])
    v = BinViolinDisplay.from_estimator(res.encoder, X, n_bins=4)
    np.testing.assert_array_equal(v.bins, res.bins)
    np.testing.assert_allclose(v.estimate, BinViolinDisplay.from_results(res).estimate)
    e1, e2 = LatentEmbeddingDisplay.from_estimator(res.encoder, X), LatentEmbeddingDisplay.from_results(res)
    np.testing.assert_allclose(np.abs(e1.embedding_), np.abs(e2.embedding_), atol=1e-9)
    np.testing.assert_allclose(e1.colour, e2.colour)
    t1, t2 = TrainingCurveDisplay.from_estimator(res.vae), TrainingCurveDisplay.from_results(res)
    np.testing.assert_allclose(t1.reconstruction, t2.reconstruction)
    row = BinRowDisplay.from_estimator(res.encoder, X, n_bins=4, fuser=FAST_FUSER, random_state=0)
    np.testing.assert_allclose(row.estimates, BinRowDisplay.from_results(res).estimates)
    assert row.dimension == res.dimension
    # the robustness curve at ratio 1 is the correlation of the full latents
    ratio = SampleRatioDisplay.from_estimator(res.encoder, X, ratios=(1.0,))
    np.testing.assert_allclose(ratio.correlations[0], b.spearman_)
    reused = SampleRatioDisplay.from_estimator(res.encoder, X, ratios=(1.0,), latents=res.latents)
    np.testing.assert_allclose(reused.correlations, ratio.correlations)
    ratio_frame = SampleRatioDisplay.from_results([1.0], ratio.correlations).to_frame()
    assert ratio_frame["best_abs"].iloc[0] == pytest.approx(np.abs(b.spearman_).max())


def test_grid_from_estimator_and_from_results_agree(workflow_2d):
    X, res = workflow_2d
    kw = dict(bins=(1, 4), dimensions=[res.dimension], fuser=FAST_FUSER, register_bins=False, random_state=0)
    a = SuperParticleGridDisplay.from_results(res, X, **kw)
    b = SuperParticleGridDisplay.from_estimator(res.vae, X, n_bins=4, **kw)
    assert a.estimates.shape == (1, 2)
    np.testing.assert_allclose(a.estimates, b.estimates)
    # oriented like the workflow: bin 1 has the smaller super-particle radius, like the workflow's bin table
    assert a.estimates[0, 0] < a.estimates[0, 1]
    table = res.bin_table["super_particle_radius_nm"].to_numpy()
    assert (table[0] < table[-1]) == (a.estimates[0, 0] < a.estimates[0, 1])


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_ratio_against_a_target(workflow_2d, seed):
    X, res = workflow_2d
    target = np.arange(len(X), dtype=float)
    d = SampleRatioDisplay.from_estimator(res.encoder, X, ratios=(0.5, 1.0), target=target, random_state=seed)
    assert d.correlations.shape == (2, res.latents.shape[1]) and d.reference_name == "truth"
    assert np.all(d.best_ <= 1.0)
    with pytest.raises(ValueError, match="ratios must be fractions"):
        SampleRatioDisplay.from_estimator(res.vae, X, ratios=(0.0, 1.0))


def test_bin_row_needs_fusion(workflow_2d):
    X, res = workflow_2d
    from dataclasses import replace

    with pytest.raises(ValueError, match="no super-particles"):
        BinRowDisplay.from_results(replace(res, fusion=None))


def test_plot_without_matplotlib_says_how_to_install(workflow_2d, monkeypatch):
    _, res = workflow_2d
    display = LatentScatterDisplay.from_results(res)  # the data needs no matplotlib
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=re.escape("pcvae-sklearn[plot]")):
        display.plot()


# --------------------------------------------------------------------- CLI
def _embedded_pngs(html_text):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)]


def test_cli_writes_figures_and_a_self_contained_report(tmp_path, plt, capsys):
    from pcvae_sklearn.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "24", "--epochs", "1", "--latent-dim", "2", "--n-bins", "4",
               "--quiet", "--sample-ratios", "0.5,1", "--estimator", "radius", "--dpi", "50"])
    assert rc == 0
    expected = {"super_particle_grid", "bin_row", "latent_scatter", "bin_violin", "sample_ratio", "training_curves",
                "latent_embedding", "axis_stability"}  # the stability check (two seeds) is on by default
    for name in expected:
        assert (out / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE), name
    text = (out / "report.html").read_text()
    pngs = _embedded_pngs(text)
    assert len(pngs) == len(expected)
    assert all(p.startswith(PNG_SIGNATURE) for p in pngs)
    assert sorted(pngs) == sorted((out / f"{n}.png").read_bytes() for n in expected)
    for needle in ("scikit-learn", "torch", "numpy", "pearson_r", "super_particle_radius_nm", "latent_dim",
                   "the VAE&#x27;s own axes"):
        assert needle in text
    # self-contained: nothing is fetched from elsewhere
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(?!data:)', text)


def test_cli_without_matplotlib_writes_tables_and_says_so(tmp_path, monkeypatch, capsys):
    from pcvae_sklearn.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "o"
    rc = main(["demo", "--out", str(out), "--n-particles", "24", "--epochs", "1", "--latent-dim", "2", "--n-bins", "4",
               "--no-fusion"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "pcvae-sklearn[plot]" in captured.out + captured.err
    text = (out / "report.html").read_text()
    assert "pcvae-sklearn[plot]" in text and not _embedded_pngs(text)
    assert (out / "bins.csv").exists() and not list(out.glob("*.png"))


def test_cli_rejects_bad_sample_ratios(tmp_path, capsys):
    from pcvae_sklearn.cli import main

    rc = main(["demo", "--out", str(tmp_path / "o"), "--n-particles", "24", "--epochs", "1", "--latent-dim", "2",
               "--n-bins", "4", "--no-fusion", "--quiet", "--sample-ratios", "2,x"])
    assert rc == 2
    assert "--sample-ratios" in capsys.readouterr().err
