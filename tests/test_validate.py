"""Is the heterogeneity real: the matched homogeneous null, the paired permutation test, the confound audit."""

import awkward as ak
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.utils import check_random_state

from pcvae_sklearn import ParticleFuser, PointCloudVAE, RadiusEstimator, as_particles
from pcvae_sklearn.bin import LatentBinner
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d
from pcvae_sklearn.validate import (
    NullTestResult,
    circular_linear_correlation,
    confound_audit,
    heterogeneity_null_test,
    make_homogeneous_null,
    paired_spread_test,
    principal_axis_angles,
)
from pcvae_sklearn.validate._null import _bin_layout, _systematic_variance

from _helpers import TINY_VAE, precision_spread_pores

SEEDS = [0, 1, 2, 3]


# ----------------------------------------------------------- synthetic latents
def exchangeable(seed, n=200, k=4):
    """Homogeneous data and twins: the same law for both. Dim 0 tracks the (noise-driven)
    estimate, dim 1 a count, the rest nothing; the first n rows are data, the next n twins."""
    rng = np.random.default_rng(seed)
    e = rng.normal(50, 2, 2 * n)
    count = rng.poisson(150, 2 * n)
    Z = np.c_[e + rng.normal(0, 1, 2 * n), count + rng.normal(0, 5, 2 * n), rng.normal(size=(2 * n, k - 2))]
    return Z[:n], Z[n:], e[:n], e[n:]


def heterogeneous(seed, n=200):
    """Data radius 40-60 nm tracked by dim 0; twins all 50 nm; dims 1-2 unrelated."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(40, 60, n)
    est = radius + rng.normal(0, 2, n)
    null_est = 50 + rng.normal(0, 2, n)
    Z = np.c_[est + rng.normal(0, 1, n), rng.normal(size=(n, 2))]
    Z0 = np.c_[null_est + rng.normal(0, 1, n), rng.normal(size=(n, 2))]
    return Z, Z0, est, null_est


def test_paired_spread_test_is_calibrated_on_exchangeable_pairs():
    # 60 seeds, 4 dimensions: the family-wise error at 0.01 must stay near 0.01, and the raw
    # p-values must be uniform (P(X >= 4) under FWER 0.01 is 0.3 %)
    raw, any_significant = [], 0
    for seed in range(60):
        table = paired_spread_test(*exchangeable(seed), n_permutations=199, random_state=seed)
        raw.append(table["p_value"].to_numpy())
        any_significant += bool(table["significant"].any())
    raw = np.concatenate(raw)
    assert any_significant <= 3
    assert 0.03 <= (raw < 0.1).mean() <= 0.18
    assert 0.4 <= raw.mean() <= 0.6


@pytest.mark.parametrize("seed", SEEDS)
def test_paired_spread_test_finds_the_dimension_that_carries_the_heterogeneity(seed):
    table = paired_spread_test(*heterogeneous(seed), n_permutations=299, random_state=seed)
    assert table["significant"].tolist() == [True, False, False]
    assert table["p_value_adjusted"][0] == pytest.approx(1 / 300)
    # the radius axis: the data spread (about 5.8 nm, a 20 nm uniform range) is far above the twins (sd 2 nm)
    assert table["data_spread"][0] > 4.0 > 2.5 > table["null_spread"][0]
    assert table["data_bin_range"][0] > 12.0
    # unrelated dimensions: chance is subtracted, so no spurious excess
    assert (table["excess"][1:].abs() < 1.5).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_paired_spread_test_swapping_roles_negates_the_excess(seed):
    Z, Z0, e, e0 = heterogeneous(seed)
    a = paired_spread_test(Z, Z0, e, e0, n_permutations=9, random_state=0)
    b = paired_spread_test(Z0, Z, e0, e, n_permutations=9, random_state=0)
    np.testing.assert_allclose(a["excess"], -b["excess"], atol=1e-12)
    np.testing.assert_allclose(a["data_spread"], b["null_spread"])


def naive_statistic(Z, Z0, e, e0, j, n_bins):
    """Chance-corrected between-bin variance, data minus null, with LatentBinner and loops."""
    out = []
    for z, v in ((Z[:, j], e), (Z0[:, j], e0)):
        labels = LatentBinner(n_bins=n_bins).fit_transform(z[:, None])[:, 0]
        n = len(v)
        ssb = sum((labels == b).sum() * (v[labels == b].mean() - v.mean()) ** 2 for b in range(n_bins))
        sst = ((v - v.mean()) ** 2).sum()
        out.append((ssb - (n_bins - 1) * sst / (n - 1)) / n)
    return out[0] - out[1], out


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [40, 57])
def test_paired_spread_test_against_a_naive_reference(seed, n):
    Z, Z0, e, e0 = (a[:n] for a in heterogeneous(seed))
    n_bins, B = 5, 30
    table = paired_spread_test(Z, Z0, e, e0, n_bins=n_bins, n_permutations=B, random_state=seed)
    lo, hi = np.quantile(np.r_[e, e0], [0.005, 0.995])  # the test clips the pooled estimates
    e, e0 = np.clip(e, lo, hi), np.clip(e0, lo, hi)
    swaps = check_random_state(seed).random_sample((B, n)) < 0.5  # the draws the test makes
    perm = np.empty((B, Z.shape[1]))
    observed = np.empty(Z.shape[1])
    for j in range(Z.shape[1]):
        observed[j], (vd, vn) = naive_statistic(Z, Z0, e, e0, j, n_bins)
        assert table["data_spread"][j] == pytest.approx(np.sqrt(max(vd, 0)), abs=1e-9)
        assert table["null_spread"][j] == pytest.approx(np.sqrt(max(vn, 0)), abs=1e-9)
        for b in range(B):
            s = swaps[b]
            perm[b, j] = naive_statistic(
                np.where(s[:, None], Z0, Z), np.where(s[:, None], Z, Z0), np.where(s, e0, e), np.where(s, e, e0), j, n_bins
            )[0]
        medians = [np.median(e[LatentBinner(n_bins=n_bins).fit_transform(Z[:, [j]])[:, 0] == b]) for b in range(n_bins)]
        assert table["data_bin_range"][j] == pytest.approx(np.ptp(medians))
    expected_raw = (1 + (perm >= observed - 1e-9).sum(axis=0)) / (B + 1)
    expected_adj = (1 + (perm.max(axis=1)[:, None] >= observed - 1e-9).sum(axis=0)) / (B + 1)
    np.testing.assert_allclose(table["p_value"], expected_raw)
    np.testing.assert_allclose(table["p_value_adjusted"], expected_adj)


@pytest.mark.parametrize("n, n_bins", [(100, 10), (37, 4), (20, 2)])
def test_chance_correction_is_unbiased_under_random_order(n, n_bins):
    rng = np.random.default_rng(n)
    v = rng.exponential(5.0, n)  # any fixed values
    orders = np.argsort(rng.random((4000, n)), axis=1)
    sysvar = _systematic_variance(v[orders], _bin_layout(n, n_bins))
    assert abs(sysvar.mean()) < 4 * sysvar.std() / np.sqrt(len(sysvar))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_bins=1), "n_bins must be an integer"),
        (dict(n_bins=101), "n_bins must be an integer"),
        (dict(n_permutations=0), "n_permutations"),
        (dict(feature_names=["a"]), "feature_names has 1 names"),
    ],
)
def test_paired_spread_test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_spread_test(*heterogeneous(0), **kwargs)


def test_paired_spread_test_bad_inputs():
    Z, Z0, e, e0 = heterogeneous(0)
    with pytest.raises(ValueError, match="one twin per data particle"):
        paired_spread_test(Z, Z0[:-1], e, e0)
    with pytest.raises(ValueError, match="estimates has shape"):
        paired_spread_test(Z, Z0, e[:-1], e0)
    bad = Z.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        paired_spread_test(bad, Z0, e, e0)
    # an estimator's (value, precision) output is accepted
    table = paired_spread_test(Z, Z0, np.c_[e, e * 0 + 1], np.c_[e0, e0 * 0 + 1], n_permutations=5)
    assert len(table) == 3


# ----------------------------------------------------------- the homogeneous twins
def rings(seed, n=24, radii=(35.0, 65.0)):
    rng = np.random.default_rng(seed)
    out, radius = [], []
    for i in range(n):
        r = radii[i % 2]
        m = int(rng.integers(40, 80))
        phi = np.repeat(np.arange(8) * np.pi / 4 + rng.uniform(0, 2 * np.pi), -(-m // 8))[:m]
        out.append(r * np.c_[np.cos(phi), np.sin(phi)] + rng.normal(0, 2.0, (m, 2)) + rng.normal(0, 30.0, 2))
        radius.append(r)
    return out, np.array(radius)


@pytest.mark.parametrize("seed", [0, 1])
def test_homogeneous_null_keeps_counts_and_removes_the_heterogeneity(seed):
    X, radius = rings(seed)
    before = [x.copy() for x in X]
    # as many centres as the structure has sites: with more (16 here), centres on both rings can
    # fit the two classes and the twins would keep their class (see make_homogeneous_null's Notes)
    null, fuser = make_homogeneous_null(X, fuser=ParticleFuser(n_components=8, n_restarts=1), random_state=seed)
    assert ak.num(null, axis=1).tolist() == [len(x) for x in X]
    for a, b in zip(X, before):
        np.testing.assert_array_equal(a, b)
    est = RadiusEstimator()
    data_r = est.fit_transform(X)[:, 0]
    null_r = est.fit_transform(null)[:, 0]
    assert np.ptp(data_r) > 25.0  # two classes, 35 and 65 nm
    assert null_r.std() < 0.5 * data_r.std()
    # twins sit where the data particles were
    centroids = np.array([x.mean(axis=0) for x in X])
    null_centroids = np.c_[ak.mean(null.x, axis=1).to_numpy(), ak.mean(null.y, axis=1).to_numpy()]
    assert np.median(np.linalg.norm(centroids - null_centroids, axis=1)) < 15.0


def _pore_axes(particles):
    """Per particle, the unit axis of a pore: the covariance's eigenvector of smallest variance (its rings' normal)."""
    axes = []
    for a in particles:
        w, v = np.linalg.eigh(np.cov(np.asarray(a).T))
        axes.append(v[:, 0] * np.sign(v[2, 0] or 1.0))
    return np.array(axes)


def test_homogeneous_null_twins_keep_each_particles_tilt():
    """Tilted pores: every twin is tilted like its data particle (the registration inverted), not laid flat."""
    from pcvae_sklearn.datasets import make_npc_3d

    X, _ = make_npc_3d(30, radius=55.0, height=40.0, dol=1.0, tilt=25.0, background=0.0, random_state=0)
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    data = _pore_axes(as_particles(X).to_list())
    twin = _pore_axes(as_particles(null).to_list())
    tilt = np.degrees(np.arccos(np.abs(data[:, 2])))
    between = np.degrees(np.arccos(np.clip(np.abs((data * twin).sum(axis=1)), 0, 1)))
    assert np.median(tilt) > 10.0
    assert np.median(between) < 0.4 * np.median(tilt), (np.median(between), np.median(tilt))


def test_null_twins_carry_the_axial_spread_of_a_file_without_precisions():
    """3D pores under full rotations, 20 nm axial and 5 nm lateral error, no precision field: twins as wide along z."""
    from pcvae_sklearn._ragged import apply_transforms
    from pcvae_sklearn.datasets import make_npc_3d

    X, _ = make_npc_3d(30, rotation="3d", precision=5.0, precision_spread=0.0, z_ratio=4.0, precision_field=False,
                       background=0.0, random_state=1)
    null, fuser = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1, random_state=1), random_state=0)
    assert fuser.axial_excess_ > 0

    def own_frame_spread(particles):
        p = as_particles(particles)
        registered = apply_transforms(p.coords, fuser.rotations_, fuser.translations_, p.lengths)
        nearest = np.argmin(((registered[:, None, :] - fuser.centres_[None]) ** 2).sum(-1), axis=1)
        residual = registered - fuser.centres_[nearest]
        index = np.repeat(np.arange(p.n_particles), p.lengths)
        own = np.einsum("mab,ma->mb", fuser.rotations_[index], residual)  # back along the particle's own axes
        return own[:, :2].var(), own[:, 2].var()

    (data_xy, data_z), (twin_xy, twin_z) = own_frame_spread(X), own_frame_spread(null)
    assert data_z > 2 * data_xy
    assert twin_z > 2 * twin_xy, (twin_z, twin_xy)  # the twins keep the anisotropy, not only the axial spread
    assert 0.7 < twin_z / data_z < 1.4, (twin_z, data_z)


def test_null_background_beside_a_site_is_judged_by_the_lateral_error_not_the_axial():
    """3D pores, axial error 2.5 times the lateral: a localization 30 nm beside a site is background and stays put.

    Within reach of the axial error (a ball of the mean variance over the
    axes reaches 40 nm at the 99.9 % quantile) but beyond the lateral one's
    (24 nm): taken for the site's, it would pull its group's mean, and the
    site displacement of every twin with it.
    """
    from pcvae_sklearn.datasets import make_npc_3d

    X, truth = make_npc_3d(30, radius=50.0, height=55.0, sites_per_corner=1, dol=1.0, precision_spread=0.0,
                           z_ratio=2.5, background=0.0, random_state=2)
    parts = as_particles(X).to_list()
    stray = []
    for x, sites in zip(parts, truth["sites"]):
        centre = sites.mean(axis=0)
        out = (sites[0] - centre) * np.array([1.0, 1.0, 0.0])
        stray.append(sites[0] + 30.0 * out / np.linalg.norm(out))
    X = [np.vstack([x, s]) for x, s in zip(parts, stray)]
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1, random_state=0), random_state=0)
    twins = as_particles(null).to_list()
    moved = np.array([np.linalg.norm(t[-1] - x[-1]) for t, x in zip(twins, X)])
    assert np.median(moved) < 1e-9, np.round(moved, 2)
    # the sites' own localizations do move
    assert np.median([np.abs(t[:-1] - x[:-1]).max() for t, x in zip(twins, X)]) > 0.1


@pytest.mark.parametrize("maker", [make_npc_2d, make_npc_3d])
def test_twin_model_holds_nothing_random(maker):
    """Replicates drawn from one measured model are the twins that measuring it again for each would give."""
    from pcvae_sklearn.validate._twins import _draw_twins, _simulate_twins, _twin_model

    X, _ = maker(40, random_state=5)
    p = as_particles(X)
    before = p.coords.copy()
    fuser = ParticleFuser(n_restarts=1, random_state=0).fit(X)
    model = _twin_model(p, fuser)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        drawn, again = _draw_twins(model, a), _simulate_twins(p, fuser, b)
        np.testing.assert_array_equal(drawn.coords, again.coords)
        np.testing.assert_array_equal(drawn.offsets, p.offsets)
    assert not np.array_equal(drawn.coords, _draw_twins(model, a).coords)  # each draw is a new twin
    np.testing.assert_array_equal(p.coords, before)  # the data are untouched


def test_null_template_of_large_particles_is_fused_on_a_subset(monkeypatch):
    """Large particles: the template sees at most TEMPLATE_POINTS localizations each; the twins keep every one."""
    from pcvae_sklearn.validate import _twins

    X, _ = make_npc_2d(30, random_state=4)
    counts = ak.num(X).to_numpy()
    monkeypatch.setattr(_twins, "TEMPLATE_POINTS", 60)
    null, fuser = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    assert ak.num(null).to_numpy().tolist() == counts.tolist()
    assert len(fuser.super_particle_[0]) == np.minimum(counts, 60).sum() < counts.sum()
    # twins from the subset's template scatter as those from the template of every localization
    subset_sd = RadiusEstimator().fit_transform(null)[:, 0].std()
    monkeypatch.setattr(_twins, "TEMPLATE_POINTS", 10_000)
    full, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    full_sd = RadiusEstimator().fit_transform(full)[:, 0].std()
    assert 0.6 < subset_sd / full_sd < 1.6, (subset_sd, full_sd)
    assert subset_sd < 0.8 * RadiusEstimator().fit_transform(X)[:, 0].std()  # and below the heterogeneous data's


def _dyes(sites, n_per_dye, sd, rng):
    """Localizations of one dye per site (rows of ``sites``), ``n_per_dye`` each, Gaussian error ``sd``."""
    return np.repeat(sites, n_per_dye, axis=0) + rng.normal(0, sd, (len(sites) * n_per_dye, sites.shape[1]))


@pytest.mark.parametrize("seed", range(3))
def test_one_dye_sites_join_a_row_of_centres_that_one_moving_site_spreads(seed):
    """A site at a new height in every particle: the row of centres along its path is one site."""
    from pcvae_sklearn.validate._twins import _nearest_centre, _one_dye_sites

    rng = np.random.default_rng(seed)
    base = np.array([[-30.0, 0.0], [30.0, 0.0]])
    parts = [_dyes(np.vstack([base, [[0.0, h]]]), 60, 3.0, rng) for h in rng.uniform(20, 60, 120)]
    coords = np.vstack(parts)
    pidx = np.repeat(np.arange(len(parts)), [len(a) for a in parts])
    row = np.c_[np.zeros(6), np.linspace(22, 58, 6)]  # 7 nm apart: more than two errors
    centres = np.vstack([base, base + [0, 1.0], row])
    nearest, _ = _nearest_centre(coords, centres)
    site = _one_dye_sites(coords, nearest, pidx, centres, np.full(coords.shape, 9.0), np.tile(np.eye(2), (len(parts), 1, 1)),
                          0.0, 0.0)
    assert len(set(site[4:])) == 1  # the row
    assert site[0] == site[2] and site[1] == site[3]  # each base site with its close copy
    assert len(set(site)) == 3


def test_one_dye_sites_never_chain_two_rings_through_a_centre_between_them():
    """Two dyes 50 nm apart along z (20 nm error): a centre between them takes strays of both, joins one."""
    from pcvae_sklearn.validate._twins import _nearest_centre, _one_dye_sites

    rng = np.random.default_rng(0)
    sites = np.array([[0.0, 0.0, -1.25], [0.0, 0.0, 1.25]])
    parts = [_dyes(sites, 80, 1.0, rng) * [1, 1, 20] for _ in range(60)]  # unit error, z stretched to 20 nm
    coords = np.vstack(parts)
    pidx = np.repeat(np.arange(60), 160)
    own_var = np.tile([1.0, 1.0, 400.0], (len(coords), 1))
    centres = np.array([[0.0, 0.0, -25.0], [0.0, 0.0, 25.0], [0.0, 0.0, 0.0]])
    nearest, _ = _nearest_centre(coords, centres)
    site = _one_dye_sites(coords, nearest, pidx, centres, own_var, np.tile(np.eye(3), (60, 1, 1)), 0.0, 0.0)
    assert site[0] != site[1] and site[2] in (site[0], site[1])


def test_one_dye_sites_join_close_centres_on_which_no_particle_tells():
    """Sparse dyes: a corner's few localizations never reach two of its centres in one particle."""
    from pcvae_sklearn.validate._twins import _nearest_centre, _one_dye_sites

    rng = np.random.default_rng(0)
    corners = 50 * np.c_[np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)]
    parts = [_dyes(corners, 1, 6.0, rng) for _ in range(100)]  # one localization per corner
    coords = np.vstack(parts)
    pidx = np.repeat(np.arange(100), 8)
    centres = np.vstack([corners, corners + [3.0, 0.0]])  # two centres per corner, 3 nm apart
    nearest, _ = _nearest_centre(coords, centres)
    site = _one_dye_sites(coords, nearest, pidx, centres, np.full(coords.shape, 36.0),
                          np.tile(np.eye(2), (100, 1, 1)), 0.0, 0.0)
    np.testing.assert_array_equal(site[:8], site[8:])
    assert len(set(site)) == 8


def test_homogeneous_null_twins_do_not_keep_a_site_that_moves_alone():
    """Three fixed sites and an apex at a new height (20-60 nm) in every particle, fused with the default 32 centres.

    Each twin's apex sat at its own centre of the row the fusion spread along the apex's path: the
    twins' apex heights tracked the data's at Spearman 0.999 on simulated tetrahedra.
    """
    rng = np.random.default_rng(1)
    base = np.array([[-40.0, 0.0], [40.0, 0.0], [0.0, -25.0]])
    heights = rng.uniform(20, 60, 100)
    X = []
    for h in heights:
        a = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        X.append(_dyes(np.vstack([base, [[0.0, h]]]), 60, 3.0, rng) @ rot.T + rng.normal(0, 5, 2))
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=2, random_state=0), random_state=0)

    def apex_height(particles):  # the apex dye's mean from the first two dyes' midpoint: rows 180-239 are the apex's
        return np.array([np.linalg.norm(a[180:].mean(0) - a[:120].mean(0)) for a in as_particles(particles).to_list()])

    data, twin = apex_height(X), apex_height(null)
    assert spearmanr(heights, data)[0] > 0.95
    assert abs(spearmanr(heights, twin)[0]) < 0.3, spearmanr(heights, twin)[0]


@pytest.mark.parametrize("n", [10, 199, 200, 350, 1000, 5000])
def test_precision_strata_are_ordered_equal_and_never_small(n):
    from pcvae_sklearn.validate._twins import _STRATA, _STRATUM_PARTICLES, _precision_strata

    level = np.random.default_rng(n).lognormal(size=n)
    stratum = _precision_strata(level)
    k = stratum.max() + 1
    assert k == min(max(n // _STRATUM_PARTICLES, 1), _STRATA)
    counts = np.bincount(stratum)
    assert counts.max() - counts.min() <= 1 and (k == 1 or counts.min() >= _STRATUM_PARTICLES)
    for a in range(k - 1):  # a dimmer stratum holds only dimmer particles
        assert level[stratum == a].max() < level[stratum == a + 1].min()


def test_null_twins_follow_how_the_radius_grows_with_the_error():
    """Homogeneous pores whose precision differs several-fold between particles (an independent simulator).

    A dim pore's radius comes out larger (its sites keep more background and strays). Twins placed
    where all particles' localizations of a site sit lost that: their dimmest third's median radius
    came out 1.1 nm below their brightest's where the data's rose 2.5 nm, and an axis that sorted
    the particles by precision beat the null.
    """
    X, _ = precision_spread_pores(600, 1)
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    mean_precision = ak.to_numpy(ak.mean(X.precision, axis=1))
    third = np.searchsorted(np.quantile(mean_precision, [1 / 3, 2 / 3]), mean_precision)

    def rise(particles):  # dimmest third's median radius less the brightest's
        r = RadiusEstimator().fit_transform(particles)[:, 0]
        return np.median(r[third == 2]) - np.median(r[third == 0])

    data, twins = rise(X), rise(null)
    assert data > 1.5
    assert twins > data - 1.0, (data, twins)


def test_null_twins_are_as_noisy_as_data_with_linkage_error():
    """A dye pushed off its site by linkage lands on several template centres; its burst keeps one offset."""
    from pcvae_sklearn.datasets import make_scenario

    X, _ = make_scenario("npc2d_linkage", 200, random_state=3, homogeneous=True)
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1), random_state=0)
    data_sd = RadiusEstimator().fit_transform(X)[:, 0].std()
    twin_sd = RadiusEstimator().fit_transform(null)[:, 0].std()
    # one displacement per template centre gave 1.94 against the data's 2.06 nm, and false detections
    assert 0.97 < twin_sd / data_sd < 1.3, (twin_sd, data_sd)


def test_homogeneous_null_copies_precisions_and_is_reproducible():
    X, _ = make_npc_2d(20, random_state=3)
    kw = dict(fuser=ParticleFuser(n_restarts=1), random_state=5)
    a, _ = make_homogeneous_null(X, **kw)
    b, _ = make_homogeneous_null(X, **kw)
    assert a.fields == ["x", "y", "precision"]
    np.testing.assert_array_equal(ak.flatten(a.precision).to_numpy(), ak.flatten(X.precision).to_numpy())
    np.testing.assert_array_equal(ak.flatten(a.x).to_numpy(), ak.flatten(b.x).to_numpy())
    with pytest.raises(TypeError, match="ParticleFuser"):
        make_homogeneous_null(X, fuser="fast")


def test_homogeneous_null_names_a_bad_precision():
    X, _ = make_npc_2d(10, random_state=0)
    p = ak.to_list(X)
    p[4][2]["precision"] = -1.0
    # the twins read the precision whatever the fuser does: the message says so, not "use_precision=False"
    with pytest.raises(ValueError, match="particle 4 has a negative or non-finite precision at localization 2; the "
                                         "null's twins are drawn with the precision field"):
        make_homogeneous_null(ak.Array(p), fuser=ParticleFuser(n_restarts=1, use_precision=False), random_state=0)


def test_heterogeneity_null_test_end_to_end_with_a_tiny_vae():
    X, _ = make_npc_2d(40, random_state=0)
    vae = PointCloudVAE(n_rotations=1, **TINY_VAE)
    result = heterogeneity_null_test(X, vae=vae, fuser=ParticleFuser(n_restarts=1), n_bins=4, n_permutations=49, random_state=0)
    assert isinstance(result, NullTestResult)
    assert result.latents.shape == (80, TINY_VAE["latent_dim"]) and result.estimates.shape == (80, 2)
    assert result.table["latent"].tolist() == ["pcvae0", "pcvae1"]
    assert ((result.table["p_value"] > 0) & (result.table["p_value"] <= 1)).all()
    assert len(result.null_particles) == 40
    assert vae.get_params()["random_state"] is None and not hasattr(vae, "module_")  # the given VAE is cloned
    assert result.significant_dimensions == result.table.loc[result.table["significant"], "latent"].tolist()
    with pytest.raises(ValueError, match="at least 8 are needed"):
        heterogeneity_null_test(X[:7], vae=vae, n_bins=4)


# ---------------------------------------------------------------- confound audit
def count_particles(seed, n=120):
    rng = np.random.default_rng(seed)
    counts = rng.integers(20, 200, n)
    X = [rng.normal(0, 30, (m, 2)) for m in counts]  # isotropic: the principal axis is random
    return X, counts, rng


@pytest.mark.parametrize("seed", SEEDS)
def test_confound_audit_flags_a_dimension_that_tracks_the_count(seed):
    X, counts, rng = count_particles(seed)
    Z = np.c_[rng.normal(size=len(X)), counts + rng.normal(0, 20, len(X)), rng.normal(size=len(X))]
    audit = confound_audit(X, Z)
    flagged = audit.loc[audit["flagged"], ["latent", "nuisance"]].values.tolist()
    assert flagged == [["pcvae1", "n_localizations"]]
    assert set(audit["nuisance"]) == {"n_localizations", "angle"}  # no precision field
    assert list(audit.columns) == ["latent", "nuisance", "method", "correlation", "p_value", "flagged"]


@pytest.mark.parametrize("seed", SEEDS)
def test_confound_audit_flags_angle_precision_and_extra(seed):
    rng = np.random.default_rng(seed)
    n = 150
    counts = rng.integers(30, 60, n)
    angle = rng.uniform(-np.pi, np.pi, n)
    X = []
    precision = rng.uniform(3, 12, n)
    photons = rng.normal(1000, 100, n)
    for m, a in zip(counts, angle):
        pts = rng.normal(0, 1, (m, 2)) * [40.0, 10.0]
        c, s = np.cos(a), np.sin(a)
        X.append(pts @ np.array([[c, -s], [s, c]]).T)
    lengths = counts
    p_field = np.repeat(precision, lengths)
    coords = np.concatenate(X)
    particles = ak.unflatten(ak.zip({"x": coords[:, 0], "y": coords[:, 1], "precision": p_field}), lengths)
    Z = np.c_[np.sin(2 * angle) + rng.normal(0, 0.3, n), precision + rng.normal(0, 1, n), -photons, rng.normal(size=n)]
    audit = confound_audit(particles, Z, extra={"photons": photons})
    got = sorted(map(tuple, audit.loc[audit["flagged"], ["latent", "nuisance"]].values.tolist()))
    assert got == [("pcvae0", "angle"), ("pcvae1", "mean_precision"), ("pcvae2", "photons")]
    # given angles (with the structure's symmetry) instead of the principal axis
    audit2 = confound_audit(particles, np.c_[np.cos(4 * angle) + rng.normal(0, 0.3, n)], angles=angle / 2, angle_symmetry=8)
    assert audit2.loc[audit2["nuisance"] == "angle", "flagged"].item()


@pytest.mark.parametrize("seed", SEEDS)
def test_confound_audit_flags_nothing_on_unrelated_latents(seed):
    X, _, rng = count_particles(seed)
    audit = confound_audit(X, rng.normal(size=(len(X), 4)))
    assert not audit["flagged"].any()


def test_confound_audit_bad_input():
    X, counts, rng = count_particles(0)
    Z = rng.normal(size=(len(X), 2))
    with pytest.raises(ValueError, match="expected \\(120, n_latent\\)"):
        confound_audit(X, Z[:-1])
    with pytest.raises(ValueError, match="angles must be 120 finite values"):
        confound_audit(X, Z, angles=np.zeros(3))
    with pytest.raises(ValueError, match="extra\\['photons'\\] must be 120"):
        confound_audit(X, Z, extra={"photons": np.zeros(5)})
    lengths = [len(a) for a in X]
    coords = np.concatenate(X)
    precision = np.full(len(coords), 5.0)
    for bad in (np.nan, -1.0):  # one bad value would make the whole mean_precision row NaN, and unflagged
        precision[lengths[0] + 3] = bad
        particles = ak.unflatten(ak.zip({"x": coords[:, 0], "y": coords[:, 1], "precision": precision}), lengths)
        with pytest.raises(ValueError, match="particle 1 has a negative or non-finite precision at localization 3"):
            confound_audit(particles, Z)
    with pytest.raises(ValueError, match="threshold"):
        confound_audit(X, Z, threshold=2.0)
    with pytest.raises(ValueError, match="particle 1 is empty"):
        confound_audit([X[0], np.zeros((0, 2)), X[2]], Z[:3])
    table = confound_audit(X, np.c_[np.ones(len(X)), Z[:, 0]])  # a constant dimension: NaN, never flagged
    const = table[table["latent"] == "pcvae0"]
    assert const["correlation"].isna().all() and not const["flagged"].any()


# ------------------------------------------------------------- circular statistics
@pytest.mark.parametrize("seed", SEEDS)
def test_circular_linear_correlation_is_the_multiple_correlation_on_cos_and_sin(seed):
    rng = np.random.default_rng(seed)
    n = 80
    a = rng.uniform(0, 2 * np.pi, n)
    x = np.c_[np.cos(a - 0.7) + rng.normal(0, 1, n), rng.normal(size=n)]
    r, p = circular_linear_correlation(x, a)
    design = np.c_[np.ones(n), np.cos(a), np.sin(a)]
    for j in range(2):
        fit = design @ np.linalg.lstsq(design, x[:, j], rcond=None)[0]
        r2 = 1 - ((x[:, j] - fit) ** 2).sum() / ((x[:, j] - x[:, j].mean()) ** 2).sum()
        assert r[j] == pytest.approx(np.sqrt(r2))
        assert p[j] == pytest.approx(np.exp(-n * r2 / 2))
    with pytest.raises(ValueError, match="angles has shape"):
        circular_linear_correlation(x, a[:-1])


@pytest.mark.parametrize("seed", SEEDS)
def test_principal_axis_angles_against_eigenvectors(seed):
    rng = np.random.default_rng(seed)
    X = [rng.normal(0, 1, (int(m), 3)) * [30.0, 8.0, 5.0] @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T for m in rng.integers(10, 50, 20)]
    got = principal_axis_angles(X)
    for x, g in zip(X, got):
        w, v = np.linalg.eigh(np.cov(x[:, :2].T))
        major = v[:, -1]
        expected = np.arctan2(major[1], major[0])
        diff = (g - expected + np.pi / 2) % np.pi - np.pi / 2  # an axis: modulo pi
        assert abs(diff) < 1e-8
    assert ((got > -np.pi / 2) & (got <= np.pi / 2)).all()


def test_null_twins_keep_how_each_particles_localizations_split_between_its_rings():
    """3D pores, 24 nm axial error: a twin keeps its localizations' scatter about their sites.

    Snapping every localization to its nearest centre and drawing its error anew moved the ones that
    had strayed towards the other ring back to it and evened out the two rings' counts: the share
    above the mid-plane scattered 17 % less over the twins than over the data (ratio 0.83), their ring
    distance scattered less too, and the null reported trends on homogeneous pores.
    """
    from pcvae_sklearn.datasets import make_npc_3d

    X, truth = make_npc_3d(60, radius=52.5, height=55.0, z_ratio=4.0, background=0.0, random_state=0)
    # the fuser of the workflow's null (``trend_null_test``'s default)
    null, _ = make_homogeneous_null(X, fuser=ParticleFuser(n_restarts=1, max_iter=100), random_state=0)

    def share_above(particles):
        return np.array([np.mean(a[:, 2] > z0) for a, z0 in zip(as_particles(particles).to_list(), truth["offset"][:, 2])])

    data, twin = share_above(X), share_above(null)
    assert 0.9 < twin.std() / data.std() < 1.2, (twin.std(), data.std())
    assert np.corrcoef(data, twin)[0, 1] > 0.9


def test_null_twins_without_precisions_carry_each_particles_noise_level():
    """Rings of two noise levels (particles at two depths, say), read without a precision field."""
    from pcvae_sklearn._ragged import apply_transforms

    rng = np.random.default_rng(2)
    sites = 50 * np.c_[np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)]
    noise = np.where(np.arange(80) % 2, 6.0, 2.0)
    X = []
    for sd in noise:
        a = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        X.append((np.repeat(sites, 12, axis=0) + rng.normal(0, sd, (96, 2))) @ rot.T + rng.normal(0, 5, 2))
    null, fuser = make_homogeneous_null(X, fuser=ParticleFuser(n_components=8, n_restarts=1, random_state=0),
                                        random_state=0)
    q = as_particles(null)
    reg = apply_transforms(q.coords, fuser.rotations_, fuser.translations_, q.lengths)
    d2 = ((reg[:, None, :] - fuser.centres_[None]) ** 2).sum(-1).min(axis=1)
    spread = q.segment_sum(d2) / q.lengths
    ratio = spread[noise == 6].mean() / spread[noise == 2].mean()
    assert 5 < ratio < 13, ratio  # 9 in the data; one noise level for all twins gives 1
