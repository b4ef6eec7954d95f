"""The workflow (fit, bin, fuse, estimate) and the ``pcvae`` command line, on small data."""

import json
import warnings

import numpy as np
import pytest

from _helpers import TINY_VAE
from pcvae_sklearn import (
    HeightEstimator,
    LatentDirection,
    LatentUnmixer,
    PointCloudVAE,
    RadiusEstimator,
    analyse,
    as_particles,
)
from pcvae_sklearn.cli import main
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.estimate import OutOfPlaneWarning
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, TransformerMixin

import pandas as pd


@pytest.fixture(scope="module")
def npc():
    return make_npc_2d(60, random_state=3)


def test_analyse_bins_oriented_by_estimate(npc):
    X, truth = npc
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=4, random_state=0)
    # by default the 2 VAE axes, their 2 independent components and the latent direction of the radius
    assert res.latents.shape == (60, 5) and res.feature_names[-1] == "latent_radius_nm"
    assert res.estimates.shape == (60, 2)
    # bins are numbered 1..n_bins, in the result, its table and the fusion alike
    assert np.bincount(res.bins, minlength=5).tolist() == [0, 15, 15, 15, 15]
    assert res.bin_table["bin"].tolist() == [1, 2, 3, 4] and res.fusion.labels.tolist() == [1, 2, 3, 4]
    assert len(res.bin_table) == 4 and len(res.fusion) == 4
    rho = res.correlations["spearman_rho"].to_numpy()
    assert res.dimension == 4  # the direction
    # bins are oriented so that the estimate grows with the bin index
    assert res.orientation == np.sign(rho[res.dimension])
    z = res.orientation * res.latents[:, res.dimension]
    for b in range(1, 4):
        assert z[res.bins == b].max() <= z[res.bins == b + 1].min()
    assert {"super_particle_radius_nm", "super_particle_radius_precision_nm"} <= set(res.bin_table.columns)
    flagged = [int(f.flagged_.sum()) for f in res.fusion.fusers]
    assert res.bin_table["n_flagged"].tolist() == flagged
    pytest.importorskip("matplotlib")
    from pcvae_sklearn.show import BinRowDisplay

    display = BinRowDisplay.from_results(res).plot()
    assert f"{sum(flagged)} particle(s) flagged" in display.ax_.get_title()


def test_analyse_without_fusion_and_fixed_dimension(npc, tmp_path):
    from pcvae_sklearn.show import write_report

    X, _ = npc
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=3, dimension=1, fuse=False)
    assert res.dimension == 1 and res.fusion is None and res.dimension_given
    assert "super_particle_radius_nm" not in res.bin_table.columns
    # the report does not claim the fixed dimension was chosen for tracking the estimate best
    text = write_report(tmp_path / "report.html", res).read_text()
    assert "dimension 1 (pcvae1), as given" in text and "tracks the estimate best" not in text


def test_analyse_leaves_the_callers_encoder_and_pandas_output_alone(npc):
    """sklearn's contracts: a function clones the estimator it is given; transform_output="pandas" is honoured by
    estimators but must not break the workflow, which works on arrays."""
    import sklearn

    X, _ = npc
    vae = PointCloudVAE(**TINY_VAE, random_state=0)
    fast = dict(n_bins=3, fuse=False, n_null=5, n_bootstrap=10, n_seeds=1, random_state=0)
    first = analyse(X, vae=vae, **fast)
    assert not hasattr(vae, "module_") and first.vae is not vae
    Z = first.vae.transform(X)
    second = analyse(X[:40], vae=vae, **fast)
    assert second.vae is not first.vae
    np.testing.assert_array_equal(first.vae.transform(X), Z)  # an earlier result keeps its model
    assert first.heterogeneity["choice_agreement"] is None  # the documented key, also with one seed
    with sklearn.config_context(transform_output="pandas"):
        under_pandas = analyse(X, vae=vae, **fast)
    assert isinstance(under_pandas.latents, np.ndarray)
    np.testing.assert_allclose(under_pandas.latents, first.latents)


def test_analyse_with_unmixed_axes(npc):
    X, _ = npc
    vae = PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0)
    res = analyse(X, vae=vae, n_bins=3, fuse=False, random_state=0, unmix=True, axis="single")
    k = res.unmixer.n_components_
    assert res.latents.shape == (60, k) and list(res.feature_names) == [f"ic{j}" for j in range(k)]
    np.testing.assert_allclose(res.latents, res.unmixer.transform(res.vae.transform(X)))
    np.testing.assert_allclose(res.encoder.transform(X), res.latents)
    assert list(res.correlations["latent"]) == list(res.feature_names)
    rho = res.correlations["spearman_rho"].to_numpy()
    assert len(rho) == k and res.dimension == int(np.argmax(np.abs(rho)))
    plain = analyse(X, vae=PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0), n_bins=3, fuse=False,
                    random_state=0, unmix=False, axis="single")
    assert plain.unmixer is None and list(plain.feature_names) == ["pcvae0", "pcvae1", "pcvae2"]
    assert plain.encoder is plain.vae


def test_analyse_unmixes_principal_directions_when_asked(npc):
    X, _ = npc
    vae = PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0)
    res = analyse(X, vae=vae, n_bins=3, fuse=False, random_state=0, unmix=True, unmix_components=2)
    assert res.unmixer.n_components == 2 and res.unmixer.n_components_ == 2
    assert res.latents.shape == (60, 3) and list(res.feature_names) == ["ic0", "ic1", "latent_radius_nm"]
    with pytest.raises(ValueError, match="unmix_components is set but unmix is False"):
        analyse(X, vae=vae, n_bins=3, fuse=False, unmix=False, unmix_components=2)
    for bad in (0, 4, 2.5, True):
        with pytest.raises(ValueError, match="from 1 to latent_dim=3"):
            analyse(X, vae=vae, n_bins=3, fuse=False, unmix=True, unmix_components=bad)


def test_analyse_single_axis_chooses_among_both_kinds(npc, tmp_path):
    from pcvae_sklearn.show import write_report

    X, _ = npc
    vae = PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0)
    res = analyse(X, vae=vae, n_bins=3, fuse=False, n_null=5, random_state=0, axis="single")
    unmixer = res.unmixer.named_transformers["unmixed"]
    assert unmixer.n_components_ == 3  # the default 4, capped at the latent's 3 dimensions
    assert list(res.feature_names) == ["pcvae0", "pcvae1", "pcvae2", "ic0", "ic1", "ic2"]
    Z = res.vae.transform(X)
    np.testing.assert_allclose(res.latents, np.c_[Z, unmixer.transform(Z)])
    np.testing.assert_allclose(res.encoder.transform(X), res.latents)
    # the second seed's axes are matched among their own kind: VAE axes to VAE axes, components to components
    columns = res.stability.columns[1]
    assert (columns[:3] < 3).all() and (columns[3:] >= 3).all()
    rho = res.correlations["spearman_rho"].to_numpy()
    allowed = np.flatnonzero(res.stability.reproducible)
    allowed = allowed if len(allowed) else np.arange(6)
    assert res.dimension == allowed[np.argmax(np.abs(rho[allowed]))]
    assert res.heterogeneity["dimension"] == res.dimension
    text = write_report(tmp_path / "report.html", res).read_text()
    assert "beside them, the independent components (LatentUnmixer) of the latent" in text
    two = analyse(X, vae=vae, n_bins=3, fuse=False, null=False, n_seeds=1, random_state=0, unmix="both",
                  unmix_components=2, axis="single")
    assert list(two.feature_names) == ["pcvae0", "pcvae1", "pcvae2", "ic0", "ic1"]
    for bad in ("yes", 1.0, None):
        with pytest.raises(ValueError, match='unmix must be True, False or "both"'):
            analyse(X, vae=vae, n_bins=3, fuse=False, unmix=bad)


def test_cli_unmix_components_set_the_components_of_either_mode(tmp_path):
    def columns(out):
        return [c for c in pd.read_csv(out / "latents.csv").columns if c.startswith(("pcvae", "ic"))]

    common = ["--n-particles", "40", "--epochs", "1", "--latent-dim", "3", "--n-bins", "4", "--quiet", "--no-fusion",
              "--no-figures", "--n-null", "5", "--unmix-components", "2"]
    rc = main(["demo", "--out", str(tmp_path / "both"), *common])  # the default: both kinds of axes
    assert rc == 0
    assert columns(tmp_path / "both") == ["pcvae0", "pcvae1", "pcvae2", "ic0", "ic1"]
    settings = json.loads((tmp_path / "both" / "settings.json").read_text())
    assert settings["unmix"] == "both" and settings["unmix_components"] == 2
    assert 0 <= settings["choice_agreement"] <= 1  # the choice check, with or without the null
    # the saved unmixer maps the VAE's columns of latents.csv to its ic columns
    assert settings["unmixer"] == "unmixer.npz"
    latents = pd.read_csv(tmp_path / "both" / "latents.csv")
    unmixer = LatentUnmixer.load(tmp_path / "both" / "unmixer.npz")
    np.testing.assert_allclose(unmixer.transform(latents[["pcvae0", "pcvae1", "pcvae2"]].to_numpy()),
                               latents[["ic0", "ic1"]].to_numpy(), atol=1e-9)
    rc = main(["demo", "--out", str(tmp_path / "ic"), *common, "--unmix"])
    assert rc == 0
    assert columns(tmp_path / "ic") == ["ic0", "ic1"]
    assert json.loads((tmp_path / "ic" / "settings.json").read_text())["unmix"] is True
    rc = main(["demo", "--out", str(tmp_path / "no"), "--n-particles", "40", "--quiet", "--unmix", "no",
               "--unmix-components", "2"])
    assert rc == 2  # the raw axes asked for, and components to unmix: a contradiction, said before the fit
    rc = main(["demo", "--out", str(tmp_path / "no"), *common[:-2], "--unmix", "no", "--no-null"])
    assert rc == 0
    assert columns(tmp_path / "no") == ["pcvae0", "pcvae1", "pcvae2"]
    settings = json.loads((tmp_path / "no" / "settings.json").read_text())
    assert settings["unmixer"] is None and 0 <= settings["choice_agreement"] <= 1
    assert not (tmp_path / "no" / "unmixer.npz").exists()


def test_cli_run_with_unmix_writes_the_components(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "40", "--epochs", "1", "--latent-dim", "3", "--n-bins", "4",
               "--quiet", "--no-fusion", "--unmix", "--sample-ratios", "0.5,1"])
    assert rc == 0
    latents = pd.read_csv(out / "latents.csv")
    assert "ic0" in latents.columns and "pcvae0" not in latents.columns
    assert json.loads((out / "settings.json").read_text())["unmix"] is True
    assert "independent components (LatentUnmixer) of the active latent dimensions" in (out / "report.html").read_text()


def test_what_the_steps_warn_of_joins_the_results_warnings(tmp_path, capsys):
    """An estimator's doubt raised inside analyse is in result.warnings (so in the report and pcvae run), once."""
    import warnings

    import pandas as pd

    from pcvae_sklearn.datasets import make_tetrahedron

    X, _ = make_tetrahedron(40, n_localizations=200, rotation="3d", random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), estimate="tetrahedron", n_bins=3,
                      fuse=False, null=False, n_seeds=1)
    doubt = [m for m in res.warnings if "show no apex on their axis" in m]
    assert len(doubt) == 1, res.warnings
    assert sum("show no apex" in str(w.message) for w in caught) == 1  # warned once, after the run
    rows = [pd.DataFrame({"particle": i, "x": np.asarray(p.x), "y": np.asarray(p.y), "z": np.asarray(p.z)})
            for i, p in enumerate(X)]
    pd.concat(rows).to_csv(tmp_path / "tets.csv", index=False)
    rc = main(["run", str(tmp_path / "tets.csv"), "--estimate", "tetrahedron", "--n-bins", "3", "--no-fusion",
               "--no-null", "--stability-seeds", "1", "--epochs", "1", "--latent-dim", "2", "--quiet",
               "--no-figures", "--out", str(tmp_path / "out")])
    assert rc == 0
    assert "show no apex on their axis" in capsys.readouterr().out  # the summary's list of warnings


class _LoudRadius(RadiusEstimator):
    """A user's estimator that warns from outside the library."""

    def fit_transform(self, X, y=None):
        import warnings

        warnings.warn("a warning of the caller's own code", UserWarning)
        return super().fit_transform(X, y)


def test_warnings_from_outside_the_library_pass_as_they_came(npc):
    X, _ = npc
    with pytest.warns(UserWarning, match="the caller's own code"):
        res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), estimate=_LoudRadius(), n_bins=3,
                      fuse=False, null=False, n_seeds=1)
    assert not any("the caller's own code" in m for m in res.warnings)


class _TurnedRadius(RadiusEstimator):
    """A radius estimator that says the particles look turned out of the plane."""

    def _fit(self, p):
        super()._fit(p)
        warnings.warn("many particles look turned out of the plane", OutOfPlaneWarning, stacklevel=2)


def test_a_trend_on_particles_turned_out_of_the_plane_is_qualified():
    """A detected trend whose estimate measured the particles' orientation as well says so in its verdict."""
    X, _ = make_npc_2d(150, random_state=3)
    kw = dict(vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=3, fuse=False, n_null=5, n_seeds=1,
              random_state=0)
    plain = analyse(X, **kw)
    with pytest.warns(OutOfPlaneWarning):
        turned = analyse(X, estimate=_TurnedRadius(), **kw)
    assert plain.heterogeneity["detected"] and turned.heterogeneity["detected"]
    assert "turned out of the plane" not in plain.heterogeneity["verdict"]
    assert turned.heterogeneity["verdict"] == (
        plain.heterogeneity["verdict"] + "; but many particles look turned out of the plane, where the radius "
        "measures their orientation as much as their structure (see the warning): register them first")


class _RecordingHeight(HeightEstimator):
    """HeightEstimator that records the structure of every fit."""

    structures = []

    def fit_transform(self, X, y=None):
        type(self).structures.append(self.structure)
        return super().fit_transform(X, y)


def test_turned_pores_are_named_once_for_the_data_and_apart_for_the_bins():
    """The twins repeat the data's doubt and stay quiet; the bins' super-particles are named as such; both are
    measured with the structure that "auto" chose on the data."""
    from pcvae_sklearn.datasets import make_npc_3d

    X, _ = make_npc_3d(60, rotation="3d", random_state=0)
    _RecordingHeight.structures.clear()
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), estimate=_RecordingHeight(), n_bins=3,
                  n_null=5, n_seeds=1, random_state=0)
    assert _RecordingHeight.structures == ["auto", "pore", "pore"]  # the data, the super-particles, the twins
    assert isinstance(res.estimator, _RecordingHeight) and res.estimator.structure_ == "pore"
    assert "ring distance (height)" in res.heterogeneity["verdict"]  # what a pore's height is, named as such
    turned = [m for m in res.warnings if "do not look like rings seen along z" in m]
    data = [m for m in turned if not m.startswith("the bins' super-particles")]
    assert len(data) == 1 and " of 60 particles" in data[0], turned
    assert all(m.startswith("the bins' super-particles (particle k is bin k + 1): ") for m in turned if m not in data)


def test_analyse_rejects_height_on_2d(npc):
    X, _ = npc
    with pytest.raises(ValueError, match="needs 3D particles"):
        analyse(X, vae=PointCloudVAE(**TINY_VAE), estimate="height")


def test_cli_demo_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "40", "--epochs", "1", "--latent-dim", "2", "--n-bins", "4", "--quiet", "--no-fusion"])
    assert rc == 0
    for name in ("latents.csv", "correlations.csv", "bins.csv", "model.pt", "settings.json"):
        assert (out / name).stat().st_size > 0, name
    # the saved model is a weights-only file that reproduces the latents
    import torch

    torch.load(out / "model.pt", weights_only=True)
    model = PointCloudVAE.load(out / "model.pt")
    assert model.latent_dim == 2
    latents = pd.read_csv(out / "latents.csv")
    assert len(latents) == 40 and {"pcvae0", "pcvae1", "radius_nm", "bin", "true_radius_nm"} <= set(latents.columns)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"]["latent_dim"] == 2 and "torch" in settings["versions"]
    printed = capsys.readouterr().out
    assert "Against the TRUE radius (known in simulations only)" in printed
    assert "Binned along latent_radius_nm: the latent direction that predicts the radius" in printed
    assert "The fit with another seed gives its own direction" in printed
    assert settings["axis"] == "direction" and settings["direction"]["column"] == "latent_radius_nm"
    # the direction's weights, as written, give latents.csv's column from the columns it was fitted on
    d = settings["direction"]
    predicted = latents[d["fitted_on"]].to_numpy() @ np.array(d["coef"]) + d["intercept"]
    assert np.corrcoef(predicted, latents["latent_radius_nm"])[0, 1] > 0.9  # theirs is cross-fitted
    assert sorted(latents["bin"].unique()) == [1, 2, 3, 4]
    assert pd.read_csv(out / "bins.csv")["bin"].tolist() == [1, 2, 3, 4]


def test_cli_reports_bad_input(tmp_path, capsys):
    rc = main(["run", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "pcvae: error" in capsys.readouterr().err


def test_analyse_with_several_seeds_bins_only_a_reproducible_axis(npc):
    X, _ = npc
    vae = PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0)
    res = analyse(X, vae=vae, n_bins=3, fuse=False, null=False, random_state=0, n_seeds=3, axis="single")
    stability = res.stability
    assert stability.reproducibility.shape == (6,) and len(stability.latents) == 3  # 3 VAE axes, 3 components
    np.testing.assert_allclose(stability.latents[0], res.latents)  # the fit being judged is the reference
    assert "stability" in res.seconds
    if stability.reproducible.any():
        assert stability.reproducible[res.dimension]
        rho = np.abs(res.correlations["spearman_rho"].to_numpy())
        assert res.dimension == np.flatnonzero(stability.reproducible)[np.argmax(rho[stability.reproducible])]
    else:
        assert any("no latent axis came back" in w for w in res.warnings)
    with pytest.raises(ValueError, match="n_seeds"):
        analyse(X, vae=vae, n_seeds=0)


def test_analyse_checks_the_single_axis_with_a_second_seed(npc):
    X, _ = npc
    vae = PointCloudVAE(**{**TINY_VAE, "latent_dim": 3}, random_state=0)
    res = analyse(X, vae=vae, n_bins=3, fuse=False, n_null=5, random_state=0, axis="single")
    assert len(res.stability.seeds) == 2
    reproducibility = res.stability.reproducibility[res.dimension]
    assert res.heterogeneity["reproducibility"] == pytest.approx(reproducibility)
    assert ("unconfirmed" in res.heterogeneity["verdict"]) == (reproducibility < 0.9)
    # an axis below the bar is named as unconfirmed in the verdict, whatever the null says
    res1 = analyse(X, vae=vae, n_bins=3, fuse=False, n_null=5, random_state=0, n_seeds=1, axis="single")
    assert res1.stability is None and res1.heterogeneity["reproducibility"] is None
    assert "unconfirmed" not in res1.heterogeneity["verdict"]
    for bad in ("latent", "Direction", None, 1):
        with pytest.raises(ValueError, match='axis must be "direction" or "single"'):
            analyse(X, vae=vae, n_bins=3, fuse=False, axis=bad)


def test_bin_along_axis_chooses_among_candidates():
    from pcvae_sklearn.bin import bin_along_axis

    rng = np.random.default_rng(0)
    radius = rng.uniform(40, 60, 90)
    Z = np.c_[radius, rng.normal(size=90), -radius + rng.normal(0, 3, 90)]
    assert bin_along_axis(Z, radius, n_bins=3).dimension == 0
    axis = bin_along_axis(Z, radius, n_bins=3, candidates=[1, 2])
    assert axis.dimension == 2 and axis.orientation == -1.0
    with pytest.raises(ValueError, match="candidates"):
        bin_along_axis(Z, radius, n_bins=3, candidates=[3])
    with pytest.raises(ValueError, match="candidates"):
        bin_along_axis(Z, radius, n_bins=3, candidates=[])


def test_cli_stability_seeds_reports_the_axes(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "40", "--epochs", "1", "--latent-dim", "3", "--n-bins", "4",
               "--no-fusion", "--no-null", "--no-figures", "--stability-seeds", "2", "--axis", "single"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Axes across 2 seeds:" in printed and "pcvae0:" in printed
    stability = json.loads((out / "settings.json").read_text())["stability"]
    among = ("of the axes that came back in all 2 seeds it tracks" if any(row["reproducible"] for row in stability)
             else "of all dimensions (none came back in all 2 seeds) it tracks")
    assert among in printed
    assert [row["latent"] for row in stability] == ["pcvae0", "pcvae1", "pcvae2", "ic0", "ic1", "ic2"]
    assert "Axes across seeds" in (out / "report.html").read_text()



class _NotToBeFitted(PointCloudVAE):
    def fit(self, X, y=None):
        raise AssertionError("the encoder was fitted before the input was checked")


@pytest.mark.parametrize("bad", [np.nan, -1.0, np.inf])
def test_analyse_rejects_bad_precisions_before_the_fit(npc, bad):
    import awkward as ak

    X, _ = npc
    precision = ak.to_list(X.precision)
    precision[4][2] = bad
    X = ak.with_field(X, ak.Array(precision), "precision")
    with pytest.raises(ValueError, match=r"particle 4 has a negative or non-finite precision at localization 2.*"
                                         r"drop the field"):
        analyse(X, vae=_NotToBeFitted(), random_state=0)


def test_analyse_names_identical_particles_before_the_fit():
    """Copies of one particle hold no variation; the fit would only end in an unmixer's puzzling error."""
    one = np.random.default_rng(0).normal(0, 30, (40, 2))
    with pytest.raises(ValueError, match="all 12 particles are the same localizations"):
        analyse([one] * 12, vae=_NotToBeFitted(), n_bins=3, random_state=0)
    with pytest.raises(AssertionError, match="fitted before"):  # one localization moved: data to analyse
        analyse([one] * 11 + [one + np.r_[[[1.0, 0.0]], np.zeros((39, 2))]], vae=_NotToBeFitted(), n_bins=3,
                random_state=0)


def test_analyse_rejects_a_particle_the_estimate_cannot_use_before_the_fit(npc):
    import awkward as ak

    X, _ = npc
    one = ak.Array([{"x": [1.0], "y": [2.0], "precision": [5.0]}])[0]
    X = ak.concatenate([X[:5], ak.Array([one]), X[5:]])
    with pytest.raises(ValueError, match="particle 5 has 1 localization"):
        analyse(X, vae=_NotToBeFitted(), random_state=0)


def test_precision_caveat_when_the_axis_orders_by_precision():
    from pcvae_sklearn import as_particles
    from pcvae_sklearn._diagnostics import precision_caveat

    rng = np.random.default_rng(0)
    X, _ = make_npc_2d(200, random_state=0)
    p = as_particles(X)
    mean_precision = p.segment_sum(np.asarray(p.fields["precision"])) / p.lengths
    tracking = -mean_precision + rng.normal(0, 0.5 * mean_precision.std(), len(mean_precision))
    message = precision_caveat(p, tracking, "pcvae3", alpha=0.01)
    assert message is not None and message.startswith("pcvae3 also orders the particles by their localization "
                                                      "precision (Spearman -0.")
    assert precision_caveat(p, rng.normal(size=len(mean_precision)), "pcvae3", alpha=0.01) is None
    # nothing to say without a precision field
    assert precision_caveat(as_particles([p.particle(i) for i in range(p.n_particles)]), tracking, "pcvae3", 0.01) is None


def test_cli_symmetry_reaches_every_fusion(tmp_path, capsys):
    from argparse import Namespace

    from pcvae_sklearn.cli import _fuser, _null_fuser

    # the centres come in orbits: the multiple of the order at or above 32
    assert _fuser(Namespace(symmetry=8)).get_params()["n_components"] == 32
    params = _fuser(Namespace(symmetry=3), n_restarts=1).get_params()
    assert (params["n_components"], params["symmetry"], params["n_restarts"]) == (33, 3, 1)
    assert _fuser(Namespace(symmetry=None)).get_params()["symmetry"] is None
    # the null's template: analyse's own template fuser (restarts, iterations), the symmetry imposed
    from pcvae_sklearn.validate._trend import TEMPLATE_MAX_ITER, TEMPLATE_RESTARTS

    for n_dims in (2, 3):
        params = _null_fuser(Namespace(symmetry=8), n_dims).get_params()
        assert (params["symmetry"], params["n_components"], params["n_restarts"], params["max_iter"]) == (
            8, 32, TEMPLATE_RESTARTS[n_dims], TEMPLATE_MAX_ITER)
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-particles", "40", "--epochs", "1", "--latent-dim", "2", "--n-bins", "4",
               "--quiet", "--n-null", "5", "--no-figures", "--stability-seeds", "1", "--symmetry", "8"])
    assert rc == 0
    assert json.loads((out / "settings.json").read_text())["symmetry"] == 8
    assert pd.read_csv(out / "bins.csv")["super_particle_radius_nm"].notna().all()
    rc = main(["demo", "--out", str(tmp_path / "bad"), "--n-particles", "40", "--quiet", "--symmetry", "1"])
    assert rc == 2
    assert "--symmetry must be 2 or more" in capsys.readouterr().err


class SeedDependentLatents(TransformerMixin, BaseEstimator):
    """Test latents from two per-particle features: the radius r and the localization count c (standardised).

    Seed 0 gives (r + 0.7 c, r - c), any other seed (r + c, r - 0.7 c): each axis comes
    back in the other seed (|Spearman| about 0.98), but the axis that tracks
    the radius best is the first in seed 0 and the second in the others, and the
    two order the particles differently (about 0.3).
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def _features(self, X):
        p = as_particles(X)
        starts = p.offsets[:-1]
        centre = np.add.reduceat(p.coords, starts, axis=0) / p.lengths[:, None]
        distance = np.linalg.norm(p.coords - np.repeat(centre, p.lengths, axis=0), axis=1)
        return np.add.reduceat(distance, starts) / p.lengths, p.lengths.astype(float)

    def fit(self, X, y=None):
        r, c = self._features(X)
        self.stats_ = (r.mean(), r.std(), c.mean(), c.std())
        return self

    def transform(self, X):
        r, c = self._features(X)
        r, c = (r - self.stats_[0]) / self.stats_[1], (c - self.stats_[2]) / self.stats_[3]
        return np.c_[r + 0.7 * c, r - c] if self.random_state == 0 else np.c_[r + c, r - 0.7 * c]

    def get_feature_names_out(self, input_features=None):
        return np.array(["pcvae0", "pcvae1"], dtype=object)


def test_analyse_says_when_another_seed_would_bin_another_axis():
    X, truth = make_npc_2d(300, random_state=5)
    # both axes come back, and this fit bins pcvae0; the second seed's fit would bin its pcvae1
    with pytest.warns(UserWarning, match="bins along a different axis"):
        res = analyse(X, vae=SeedDependentLatents(random_state=0), n_bins=5, fuse=False, unmix=False,
                      random_state=0, n_null=5, axis="single")
    assert res.stability.reproducible.all() and res.dimension == 0
    expected = res.stability.choice_agreement(0, res.estimate_name, [0, 1]).min()
    assert res.choice_agreement == pytest.approx(expected) and res.choice_agreement < 0.6
    assert res.heterogeneity["choice_agreement"] == res.choice_agreement
    assert "the fit with another seed bins along a different axis" in res.heterogeneity["verdict"]
    assert "unconfirmed" in res.heterogeneity["verdict"]
    # a dimension the user gives is not a choice: nothing to agree on
    res = analyse(X, vae=SeedDependentLatents(random_state=0), n_bins=5, fuse=False, unmix=False, random_state=0,
                  null=False, dimension=1, axis="single")
    assert res.choice_agreement is None
    # the two fits turn their axes differently, but both predict the radius along the same direction
    res = analyse(X, vae=SeedDependentLatents(random_state=0), n_bins=5, fuse=False, unmix=False, random_state=0,
                  n_null=5)
    assert res.dimension == 2 and res.choice_agreement > 0.95
    assert not any("different" in w for w in res.warnings) and "unconfirmed" not in res.heterogeneity["verdict"]
    assert res.heterogeneity["reproducibility"] == res.heterogeneity["choice_agreement"] == res.choice_agreement


class OtherSeedForgetsTheRadius(SeedDependentLatents):
    """Seed 0 as above; any other seed encodes the count alone (c, c squared): its direction cannot find the radius."""

    def transform(self, X):
        if self.random_state == 0:
            return super().transform(X)
        _, c = self._features(X)
        c = (c - self.stats_[2]) / self.stats_[3]
        return np.c_[c, c ** 2]


def test_analyse_says_when_another_seed_has_another_direction():
    X, _ = make_npc_2d(300, random_state=5)
    with pytest.warns(UserWarning, match="along a different latent direction"):
        res = analyse(X, vae=OtherSeedForgetsTheRadius(random_state=0), n_bins=5, fuse=False, unmix=False,
                      random_state=0, n_null=5)
    other = res.stability.latents[1]
    expected = abs(spearmanr(res.latents[:, -1], LatentDirection(random_state=0).fit_transform(other, res.estimates)[:, 0])[0])
    assert res.choice_agreement == pytest.approx(expected) and res.choice_agreement < 0.5
    assert "unconfirmed" in res.heterogeneity["verdict"]
