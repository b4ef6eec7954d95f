"""Honest per-bin figures: bootstrap intervals over particles and the workflow's matched null."""

import json
import re

import numpy as np
import pytest
from scipy.stats import t as student_t

from _helpers import TINY_VAE
from pcvae_sklearn import LatentDirection, ParticleFuser, PointCloudVAE, RadiusEstimator, analyse, as_particles
from pcvae_sklearn.bin import bin_along_axis
from pcvae_sklearn.cli import main
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.validate import bin_bootstrap_intervals, per_bin_statistic, trend_null_test

FAST_FUSER = ParticleFuser(n_components=16, n_restarts=1, max_iter=30)


# ------------------------------------------------------------ the bootstrap
@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_bootstrap_interval_covers_the_bin_truth_at_its_level(statistic):
    # per-bin truth known: values scatter symmetrically around each bin's centre
    covered = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        truth = np.linspace(40.0, 60.0, 10)
        bins = np.repeat(np.arange(1, 11), 40)
        values = truth[bins - 1] + rng.normal(0.0, 2.5, bins.size)
        low, high = bin_bootstrap_intervals(values, bins, 10, statistic=statistic, n_bootstrap=400, random_state=seed)
        assert np.all(low < high)
        covered.extend((low <= truth) & (truth <= high))
    assert 0.86 <= np.mean(covered) <= 0.99


def test_bootstrap_is_seeded_and_contains_the_statistic():
    rng = np.random.default_rng(0)
    values, bins = rng.normal(50, 3, 90), np.repeat([1, 2, 3], 30)
    a = bin_bootstrap_intervals(values, bins, 3, random_state=1)
    b = bin_bootstrap_intervals(values, bins, 3, random_state=1)
    np.testing.assert_array_equal(a, b)
    med = per_bin_statistic(values, bins, 3)
    assert np.all((a[0] <= med) & (med <= a[1]))
    np.testing.assert_allclose(med, [np.median(values[bins == k]) for k in (1, 2, 3)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_bootstrap": 5}, "n_bootstrap must be an integer of at least 10"),
        ({"confidence": 1.0}, r"confidence must lie in \(0, 1\)"),
        ({"statistic": "mode"}, "statistic must be one of"),
    ],
)
def test_bootstrap_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bin_bootstrap_intervals(np.arange(6.0), np.repeat([1, 2], 3), 2, **kwargs)


def test_bootstrap_rejects_bad_bins_and_values():
    with pytest.raises(ValueError, match="bins has 5 entries for 6 values"):
        bin_bootstrap_intervals(np.arange(6.0), np.ones(5, int), 2)
    with pytest.raises(ValueError, match=r"bin\(s\) \[2\] hold no particle"):
        bin_bootstrap_intervals(np.arange(6.0), np.ones(6, int), 2)
    with pytest.raises(ValueError, match=r"bins are numbered 1..2; got values from 0"):
        bin_bootstrap_intervals(np.arange(6.0), np.r_[0, 1, 1, 2, 2, 2], 2)
    with pytest.raises(ValueError, match=r"values are not finite for particle\(s\) \[3\]"):
        bin_bootstrap_intervals(np.r_[0.0, 1, 2, np.nan, 4, 5], np.repeat([1, 2], 3), 2)


# ------------------------------------------------------------ the null
class RadialEncoder:
    """A stand-in for a fitted VAE: mean radial distance of a particle plus noise, and pure noise."""

    def __init__(self, noise=0.5, seed=0):
        self.noise, self.seed = noise, seed

    def transform(self, X):
        p = as_particles(X)
        c = np.repeat(p.centroids(), p.lengths, axis=0)
        d = np.linalg.norm(p.coords[:, :2] - c[:, :2], axis=1)
        r = np.add.reduceat(d, p.offsets[:-1]) / p.lengths
        rng = np.random.default_rng(self.seed)
        return np.c_[r + rng.normal(0, self.noise, p.n_particles), rng.normal(size=p.n_particles)]


def _run(radius, seed, n=120, alpha=0.01, fuser=FAST_FUSER, **kw):
    X, _ = make_npc_2d(n, radius=radius, random_state=seed)
    enc = RadialEncoder(seed=seed)
    Z = enc.transform(X)
    E = RadiusEstimator().fit_transform(X)
    return trend_null_test(X, Z, E, encoder=enc, n_bins=6, n_replicates=9, alpha=alpha, fuser=fuser,
                           random_state=seed, **kw)


def test_null_along_the_latent_direction_refits_it_on_every_twin_set():
    for seed in range(2):
        fixed = _run(50.0, seed, direction=LatentDirection(random_state=seed))
        varying = _run((40.0, 60.0), seed, direction=LatentDirection(random_state=seed),
                       feature_names=["pcvae0", "pcvae1", "latent_radius_nm"])
        assert not fixed.detected, fixed.verdict
        assert varying.detected and varying.p_value < 0.01
        assert varying.verdict.startswith("radius varies along latent_radius_nm beyond what")
        for res in (fixed, varying):
            # the axis is the column after the 2 latents, for the data and every twin set
            assert res.dimension == 2 and (res.null_dimensions == 2).all()
        # the data's curve is that of the bins along the data's own cross-fitted direction
        X, _ = make_npc_2d(120, radius=(40.0, 60.0), random_state=seed)
        Z, E = RadialEncoder(seed=seed).transform(X), RadiusEstimator().fit_transform(X)[:, 0]
        d = LatentDirection(random_state=seed).fit_transform(Z, E)
        axis = bin_along_axis(np.c_[Z, d], E, dimension=2, n_bins=6)
        np.testing.assert_allclose(varying.curve, per_bin_statistic(E, axis.bins, 6))
    X, _ = make_npc_2d(24, random_state=0)
    for kw in ({"dimension": 0}, {"candidates": [0]}):
        with pytest.raises(ValueError, match="cannot be combined with dimension or candidates"):
            trend_null_test(X, np.zeros((24, 2)), np.full(24, 50.0), encoder=RadialEncoder(), n_bins=3,
                            direction=LatentDirection(), **kw)


def test_null_detects_a_varying_radius_and_not_a_fixed_one():
    # the encoder sees every particle's size: on homogeneous pores this alone sorts
    # them by their noisy size, a rising curve that the twins must reproduce
    for seed in range(2):
        fixed = _run(50.0, seed)
        assert not fixed.detected, fixed.verdict
        assert fixed.rise > 0 and np.mean(fixed.null_rises) > 0  # selection on noise: both curves rise
        assert fixed.verdict.startswith("no heterogeneity beyond the matched null (p = ")
        varying = _run((40.0, 60.0), seed)
        assert varying.detected and varying.p_value < 0.01
        assert varying.verdict.startswith("radius varies along pcvae0 beyond what labelling and noise produce (p = ")
        assert varying.rise > np.max(varying.null_rises)
        assert varying.null_low.shape == (6,) and np.all(varying.null_low <= varying.null_high)
        for res in (fixed, varying):
            # the sensitivity: a rise is called exactly when it exceeds the smallest callable one
            assert res.detected == (res.rise > res.detectable_rise)
            assert np.mean(res.null_rises) < res.detectable_rise
            assert res.to_dict()["detectable_rise"] == pytest.approx(res.detectable_rise)
            assert res.to_dict()["twin_spread_ratio"] == pytest.approx(res.twin_spread_ratio)
        # homogeneous data scatter about as much as their twins (2D twins keep a little more);
        # varying data far more, since the twins share one structure
        assert 0.8 < fixed.twin_spread_ratio < 2.5 and varying.twin_spread_ratio < 0.7
        assert f"only a rise above {fixed.detectable_rise:.1f} nm would have been called" in fixed.verdict
        assert f"radius rises {fixed.rise:.1f} nm across the bins" in fixed.verdict


def test_smallest_callable_rise_grows_as_alpha_shrinks():
    loose, strict = (_run(50.0, 0, alpha=a) for a in (0.2, 0.001))
    np.testing.assert_allclose(loose.null_rises, strict.null_rises)  # same twins, only the level differs
    assert loose.detectable_rise < strict.detectable_rise
    # the p-value of a rise at the smallest callable one is alpha
    mu, sd, n = np.mean(loose.null_rises), np.std(loose.null_rises, ddof=1), len(loose.null_rises)
    t = (loose.detectable_rise - mu) / (sd * np.sqrt(1 + 1 / n))
    assert student_t.sf(t, df=n - 1) == pytest.approx(0.2)


def test_a_template_whose_twins_scatter_far_more_than_the_data_is_fused_again(monkeypatch, caplog):
    import pcvae_sklearn.validate._trend as trend

    first = _run(50.0, 0)
    assert first.twin_spread_ratio < trend.TEMPLATE_SPREAD_LIMIT and first.fuser.n_restarts == 1  # kept, no retry
    monkeypatch.setattr(trend, "TEMPLATE_SPREAD_LIMIT", 0.0)  # every template now looks mis-fused
    with caplog.at_level("INFO", logger="pcvae_sklearn.validate._trend"):
        again = _run(50.0, 0)
    logged = [r.getMessage() for r in caplog.records if "restarts of the template" in r.getMessage()]
    assert len(logged) == 1, logged
    before, after = (float(v) for v in re.findall(r"(\d+\.\d) times", logged[0]))
    assert before == pytest.approx(first.twin_spread_ratio, abs=0.05)
    # the template whose twins scatter less is kept, with its twins
    if after == before:  # a tie at the logged precision: either template may scatter less
        kept = again.fuser.n_restarts
        assert kept in (1, trend.TEMPLATE_RETRY_RESTARTS)
    else:
        kept = trend.TEMPLATE_RETRY_RESTARTS if after < before else 1
    assert again.fuser.n_restarts == kept
    assert again.twin_spread_ratio == pytest.approx(min(before, after), abs=0.05)
    if kept == 1:
        np.testing.assert_allclose(again.null_rises, first.null_rises)
    # a fuser that already tries as many restarts is not fused again
    caplog.clear()
    fuser = ParticleFuser(n_components=16, n_restarts=trend.TEMPLATE_RETRY_RESTARTS, max_iter=30)
    with caplog.at_level("INFO", logger="pcvae_sklearn.validate._trend"):
        res = _run(50.0, 1, n=60, fuser=fuser)
    assert not any("restarts of the template" in r.getMessage() for r in caplog.records)
    assert res.fuser.n_restarts == trend.TEMPLATE_RETRY_RESTARTS


def test_null_rejects_bad_parameters():
    X, _ = make_npc_2d(24, random_state=0)
    Z, E = np.zeros((24, 2)), np.full(24, 50.0)
    enc = RadialEncoder()
    with pytest.raises(ValueError, match="n_replicates must be an integer of at least 5"):
        trend_null_test(X, Z, E, encoder=enc, n_bins=3, n_replicates=2)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        trend_null_test(X, Z, E, encoder=enc, n_bins=3, alpha=1.5)
    with pytest.raises(ValueError, match=r"latents has shape \(23, 2\); expected \(24, n_dimensions\)"):
        trend_null_test(X, Z[:23], E, encoder=enc, n_bins=3)
    with pytest.raises(ValueError, match=r"estimates has shape \(20,\)"):
        trend_null_test(X, Z, E[:20], encoder=enc, n_bins=3)


# ------------------------------------------------------------ the workflow
@pytest.fixture(scope="module")
def result():
    X, _ = make_npc_2d(48, random_state=2)
    return analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=4, fuser=FAST_FUSER, null_fuser=FAST_FUSER,
                   n_null=5, n_bootstrap=200, random_state=0)


def test_analyse_reports_intervals_band_and_verdict(result):
    t = result.bin_table
    assert {"ci_low", "ci_high", "null_low", "null_high", "super_particle_radius_precision_nm"} <= set(t.columns)
    med = t["particle_median_radius_nm"]
    assert np.all((t["ci_low"] <= med) & (med <= t["ci_high"]))
    h = result.heterogeneity
    assert isinstance(h["detected"], bool) and 0 < h["p_value"] <= 1 and h["dimension"] == result.dimension
    assert h["verdict"] and h["n_replicates"] == 5
    assert "null" in result.seconds
    # the band is placed at the level of the data's curve
    np.testing.assert_allclose((t["null_low"] + t["null_high"]).mean() / 2, med.mean(), atol=np.ptp(med) + 1.0)


def test_analyse_without_null_has_no_band_and_no_verdict():
    X, _ = make_npc_2d(24, random_state=2)
    res = analyse(X, vae=PointCloudVAE(**TINY_VAE, random_state=0), n_bins=3, fuse=False, null=False, random_state=0)
    assert res.heterogeneity is None and res.null is None
    assert "null_low" not in res.bin_table.columns and "ci_low" in res.bin_table.columns


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_null": 3}, "n_null must be an integer of at least 5"),
        ({"alpha": 0.0}, r"alpha must lie in \(0, 1\)"),
        ({"null": "yes"}, "null must be True or False"),
        ({"n_bootstrap": 1}, "n_bootstrap must be an integer of at least 10"),
    ],
)
def test_analyse_rejects_bad_null_parameters_before_the_fit(kwargs, match):
    X, _ = make_npc_2d(12, random_state=0)
    vae = PointCloudVAE(**TINY_VAE)
    with pytest.raises(ValueError, match=match):
        analyse(X, vae=vae, n_bins=3, fuse=False, **kwargs)
    assert not hasattr(vae, "history_")  # nothing was fitted


def test_displays_draw_band_and_intervals(result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from pcvae_sklearn.show import BinRowDisplay, BinViolinDisplay

    try:
        row = BinRowDisplay.from_results(result).plot()
        title = row.ax_.get_title()
        assert row.profile_ax_ is not None and result.heterogeneity["verdict"] in title.replace("\n", " ")
        # the verdict is wrapped to the figure's width, not clipped at its edges
        chars = max(40, int(row.figure_.get_figwidth() * 72 / (0.6 * 9)))
        assert all(len(line) <= chars for line in title.splitlines()[1:]), title
        assert any(isinstance(c, PolyCollection) for c in row.profile_ax_.collections)  # the shaded band
        labels = row.profile_ax_.get_legend_handles_labels()[1]
        assert any("bootstrap" in s for s in labels) and any("localization-level" in s for s in labels)
        violin = BinViolinDisplay.from_results(result).plot()
        assert violin.ax_.get_title() == result.heterogeneity["verdict"]
        assert any("matched null" in s for s in violin.ax_.get_legend_handles_labels()[1])
        with pytest.raises(ValueError, match="null_low and null_high must be given together"):
            BinViolinDisplay(estimate=np.ones(4), bins=[1, 1, 2, 2], null_low=[0.0, 1.0])
        with pytest.raises(ValueError, match="ci_low has 3 values for 2 bins"):
            BinViolinDisplay(estimate=np.ones(4), bins=[1, 1, 2, 2], medians=[1.0, 1.0], ci_low=[0.0] * 3, ci_high=[2.0] * 3)
    finally:
        plt.close("all")


def test_cli_prints_and_records_the_verdict_and_skips_with_no_null(tmp_path, capsys):
    fast = ["--epochs", "1", "--latent-dim", "2", "--quiet", "--no-figures", "--no-fusion", "--n-particles", "24",
            "--n-bins", "3", "--sample-ratios", "none"]
    out = tmp_path / "a"
    assert main(["demo", "--out", str(out), "--n-null", "5", *fast]) == 0
    text = capsys.readouterr().out
    settings = json.loads((out / "settings.json").read_text())
    assert f"Verdict: {settings['null']['verdict']}" in text
    assert f"a rise above {settings['null']['detectable_rise']:.2f} nm would be called" in text
    assert settings["null"]["n_replicates"] == 5 and "bootstrap" in settings["intervals"]["ci_low/ci_high"]
    assert "Verdict:" in (out / "report.html").read_text()
    out = tmp_path / "b"
    assert main(["demo", "--out", str(out), "--no-null", *fast]) == 0
    assert "the null was skipped, --no-null" in capsys.readouterr().out
    assert json.loads((out / "settings.json").read_text())["null"] == "skipped (--no-null)"
    assert "null_low" not in (out / "bins.csv").read_text()
    assert main(["demo", "--out", str(tmp_path / "c"), "--n-null", "2", *fast]) == 2
    assert "--n-null must be an integer of at least 5" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(5))
def test_printed_figures_never_read_as_their_threshold(seed):
    """A p of 0.01006 against alpha 0.01 (a rise of 7.0398 against 7.0413) must not print as the same number."""
    from pcvae_sklearn.validate._trend import _digits, _format_p

    rng = np.random.default_rng(seed)
    for _ in range(200):
        alpha = float(rng.choice([0.01, 0.05, 0.001]))
        p = alpha + float(rng.choice([-1, 1])) * 10.0 ** rng.uniform(-7, -3)
        if p >= 1e-3 and abs(p - alpha) >= 1e-6:
            assert float(_format_p(p, alpha)) != alpha, (p, alpha, _format_p(p, alpha))
        a, b = float(rng.uniform(0, 20)), float(rng.uniform(0, 20))
        b = a + (b - a) * 10.0 ** rng.uniform(-6, 0)
        k = _digits(a, b, 1)
        if abs(a - b) >= 1e-5:
            assert f"{a:.{k}f}" != f"{b:.{k}f}", (a, b, k)
    assert _format_p(0.0123) == "0.012" and _format_p(0.01006, 0.01) == "0.0101" and _digits(7.0398, 7.0413, 1) == 3
