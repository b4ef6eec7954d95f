"""axis_stability: the matching against a brute-force search, then properties of the report."""

from __future__ import annotations

import itertools

import awkward as ak
import numpy as np
import pytest
from scipy.stats import spearmanr

from pcvae_sklearn import PointCloudVAE
from pcvae_sklearn.datasets import make_npc_2d
from pcvae_sklearn.validate import axis_stability, match_axes
from pcvae_sklearn.validate._stability import spearman_matrix

SEEDS = [0, 1, 2]


def brute_force_match(A, B):
    """The permutation of B's columns of largest total |Spearman| with A's, by trying all of them."""
    k = A.shape[1]
    rho = np.array([[spearmanr(A[:, i], B[:, j])[0] for j in range(k)] for i in range(k)])
    best = max(itertools.permutations(range(k)), key=lambda perm: sum(abs(rho[i, perm[i]]) for i in range(k)))
    return np.array(best), np.abs(rho[np.arange(k), best])


@pytest.mark.parametrize("seed", SEEDS)
def test_spearman_matrix_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(40, 3)), rng.normal(size=(40, 4))
    B[:, 1] = np.round(B[:, 1])  # ties
    expected = np.array([[spearmanr(A[:, i], B[:, j])[0] for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(spearman_matrix(A, B), expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_match_axes_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(60, 5))
    B = A[:, rng.permutation(5)] * rng.choice([-1, 1], 5) + rng.normal(0, 1.2, (60, 5))  # noisy, so the choice matters
    columns, _, corr = match_axes(A, B)
    best, best_corr = brute_force_match(A, B)
    assert corr.sum() == pytest.approx(best_corr.sum())
    np.testing.assert_array_equal(columns, best)


def test_match_axes_undoes_permutation_sign_and_monotone_maps():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 4))
    perm, sign = np.array([2, 0, 3, 1]), np.array([1, -1, -1, 1])
    B = np.empty_like(A)
    B[:, perm] = sign * np.sinh(A)  # a monotone map per axis, then shuffled
    columns, signs, corr = match_axes(A, B)
    np.testing.assert_array_equal(columns, perm)
    np.testing.assert_array_equal(signs, sign)
    np.testing.assert_allclose(corr, 1.0)


def particles(n, seed):
    X, truth = make_npc_2d(n, random_state=seed)
    return X, truth


def test_identical_fits_are_reproducible_and_independent_ones_are_not():
    X, truth = particles(80, 0)
    rng = np.random.default_rng(0)
    Z = np.c_[truth["radius"], rng.normal(size=(80, 3))]
    same = axis_stability(X, latents=[Z, Z[:, ::-1], -Z], n_seeds=3)
    np.testing.assert_allclose(same.reproducibility, 1.0)
    assert same.reproducible.all()
    other = axis_stability(X, latents=[Z] + [rng.normal(size=(80, 4)) for _ in range(2)], n_seeds=3)
    assert not other.reproducible.any()
    assert other.pair_correlation.shape == (4, 3, 3)
    np.testing.assert_allclose(other.pair_correlation, other.pair_correlation.transpose(0, 2, 1))


def test_stability_reports_what_each_axis_tracks():
    X, truth = particles(80, 1)
    counts = ak.to_numpy(ak.num(X)).astype(float)
    rng = np.random.default_rng(1)
    Z = np.c_[rng.normal(size=80), -truth["radius"], counts]
    result = axis_stability(X, latents=[Z, Z[:, [2, 0, 1]]], n_seeds=2, estimates={"radius": truth["radius"]})
    assert set(result.tracks) == {"radius", "n_localizations", "precision_nm"}
    np.testing.assert_allclose(result.tracks["radius"][:, 1], -1.0)  # signs align every seed to the reference
    np.testing.assert_allclose(result.tracks["n_localizations"][:, 2], 1.0)
    lines = result.describe()
    assert "tracks radius (Spearman -1.00, mean over the seeds)" in lines[1] and "tracks n_localizations" in lines[2]
    frame = result.to_frame()
    assert list(frame["latent"]) == ["pcvae0", "pcvae1", "pcvae2"] and "spearman_radius" in frame


def test_no_precision_field_means_no_precision_quantity():
    X, truth = particles(30, 2)
    X = ak.zip({"x": X.x, "y": X.y})
    Z = np.c_[truth["radius"], np.arange(30.0)]
    result = axis_stability(X, latents=[Z, Z], n_seeds=2)
    assert set(result.tracks) == {"n_localizations"}


def test_axis_stability_fits_clones_with_distinct_seeds():
    X, _ = particles(60, 3)
    vae = PointCloudVAE(n_epochs=1, latent_dim=3, batch_size=16, n_rotations=0)
    result = axis_stability(X, vae, n_seeds=2, random_state=0)
    assert len(result.latents) == 2 and result.latents[0].shape == (60, 3)
    assert result.seeds[0] != result.seeds[1]
    assert not hasattr(vae, "module_")  # the estimator given is cloned, not fitted
    again = axis_stability(X, vae, n_seeds=2, random_state=0)
    np.testing.assert_array_equal(result.seeds, again.seeds)
    np.testing.assert_allclose(result.latents[1], again.latents[1])


def test_axis_stability_refuses_bad_arguments():
    X, truth = particles(20, 4)
    Z = np.c_[truth["radius"], np.arange(20.0)]
    with pytest.raises(ValueError, match="n_seeds"):
        axis_stability(X, latents=[Z], n_seeds=1)
    with pytest.raises(ValueError, match=r"latents\[1\] has shape"):
        axis_stability(X, latents=[Z, Z[:10]], n_seeds=2)
    with pytest.raises(ValueError, match="estimate 'radius'"):
        axis_stability(X, latents=[Z, Z], n_seeds=2, estimates={"radius": np.ones(3)})
    with pytest.raises(ValueError, match="feature_names"):
        axis_stability(X, latents=[Z, Z], n_seeds=2, feature_names=["a"])


def test_axis_stability_display_draws_one_panel_per_quantity():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from pcvae_sklearn.show import AxisStabilityDisplay

    X, truth = particles(50, 5)
    rng = np.random.default_rng(5)
    Z = np.c_[truth["radius"], rng.normal(size=50)]
    other = np.c_[rng.normal(size=50), truth["radius"]]  # the radius axis comes back, the other does not
    result = axis_stability(X, latents=[Z, other, Z], n_seeds=3, estimates={"radius": truth["radius"]})
    display = AxisStabilityDisplay(stability=result).plot()
    assert len(display.axes_) == 3  # radius, localization count, precision
    labels = [t.get_text() for t in display.axes_[0].get_xticklabels()]
    assert labels[0] == "pcvae0\n1.00*" and not labels[1].endswith("*")
    image = display.axes_[0].get_images()[0].get_array()
    np.testing.assert_allclose(image, result.tracks["radius"])
    with pytest.raises(ValueError, match="no axis stability"):
        AxisStabilityDisplay(stability=None)


def brute_force_group_match(A, B, groups):
    """The permutation of B's columns, within each group, of largest total |Spearman| with A's."""
    k = A.shape[1]
    rho = np.abs([[spearmanr(A[:, i], B[:, j])[0] for j in range(k)] for i in range(k)])
    allowed = [p for p in itertools.permutations(range(k)) if all(groups[i] == groups[p[i]] for i in range(k))]
    return np.array(max(allowed, key=lambda perm: sum(rho[i, perm[i]] for i in range(k))))


@pytest.mark.parametrize("seed", range(6))
def test_match_axes_within_groups_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    groups = np.array([0, 0, 0, 1, 1])
    A = rng.normal(size=(60, 5))
    # B's group-1 columns resemble A's group-0 ones most: unconstrained, the assignment would cross groups
    B = np.c_[A[:, [3, 1, 0]], A[:, [2, 4]]] + rng.normal(0, 0.8, (60, 5))
    columns, _, _ = match_axes(A, B, groups)
    np.testing.assert_array_equal(columns, brute_force_group_match(A, B, groups))
    assert (groups[columns] == groups).all()
    assert (groups[match_axes(A, B)[0]] != groups).any()  # the constraint mattered


def test_axis_stability_matches_within_groups():
    X, truth = particles(80, 5)
    rng = np.random.default_rng(5)
    Z = np.c_[truth["radius"], rng.normal(size=(80, 2))]
    # seed 2 carries the radius in the other group: within groups it does not come back
    other = np.c_[rng.normal(size=(80, 2)), truth["radius"]]
    grouped = axis_stability(X, latents=[Z, other], n_seeds=2, groups=[0, 0, 1])
    assert not grouped.reproducible[0]
    assert axis_stability(X, latents=[Z, other], n_seeds=2).reproducible[0]
    with pytest.raises(ValueError, match="groups has shape"):
        axis_stability(X, latents=[Z, Z], n_seeds=2, groups=[0, 1])
    with pytest.raises(ValueError, match="groups has shape"):
        match_axes(Z, Z, groups=[0, 1])


def naive_choice_agreement(latents, columns, estimate, dimension, candidates):
    """The same rule written out: each later seed's matched axis of largest |Spearman| with the estimate."""
    out = []
    for s in range(1, len(latents)):
        matched = [latents[s][:, columns[s, j]] for j in candidates]
        pick = candidates[int(np.argmax([abs(spearmanr(m, estimate)[0]) for m in matched]))]
        out.append(abs(spearmanr(latents[0][:, dimension], latents[s][:, columns[s, pick]])[0]))
    return np.array(out)


@pytest.mark.parametrize("seed", range(8))
def test_choice_agreement_agrees_with_the_rule_written_out(seed):
    X, truth = particles(60, seed)
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(60, 4))
    latents = [shared[:, rng.permutation(4)] * rng.choice([-1, 1], 4) + rng.uniform(0.2, 1.5) * rng.normal(size=(60, 4))
               for _ in range(3)]
    estimate = shared @ rng.normal(size=4) + rng.normal(size=60)
    result = axis_stability(X, latents=latents, n_seeds=3, estimates={"e": estimate})
    for candidates in (np.arange(4), np.sort(rng.choice(4, 2, replace=False))):
        for dimension in candidates:
            expected = naive_choice_agreement(result.latents, result.columns, estimate, dimension, candidates)
            np.testing.assert_allclose(result.choice_agreement(dimension, "e", candidates), expected, atol=1e-12)


def test_choice_agreement_sees_a_choice_that_moves_to_another_axis():
    """Both axes come back, but the second fit tracks the estimate better along the other one."""
    X, truth = particles(200, 3)
    rng = np.random.default_rng(3)
    a, b, noise = rng.normal(size=200), rng.normal(size=200), rng.normal(size=(200, 4))
    estimate = a + b
    first = np.c_[a + 0.1 * noise[:, 0], b + 0.5 * noise[:, 1]]          # tracks the estimate best along a
    second = np.c_[b + 0.1 * noise[:, 2], a + 0.5 * noise[:, 3]]         # ... along b
    result = axis_stability(X, latents=[first, second], n_seeds=2, estimates={"e": estimate}, threshold=0.8)
    assert result.reproducible.all()
    assert result.choice_agreement(0, "e")[0] == pytest.approx(abs(spearmanr(first[:, 0], second[:, 0])[0]))
    assert result.choice_agreement(0, "e")[0] < 0.3
    assert result.choice_agreement(0, "e", candidates=[0])[0] == pytest.approx(result.pair_correlation[0, 0, 1])
    with pytest.raises(ValueError, match="not one of the tracked"):
        result.choice_agreement(0, "radius")
    with pytest.raises(ValueError, match="axes in 0..1"):
        result.choice_agreement(2, "e")
    with pytest.raises(ValueError, match="axes in 0..1"):
        result.choice_agreement(0, "e", candidates=[])


def test_numbers_beside_a_threshold_never_round_across_it():
    """0.8998 printed as 0.90 beside 'below 0.9' (or 'not reproducible') reads as a contradiction."""
    from pcvae_sklearn.validate._stability import against

    assert against(0.8998, 0.9) == "0.8998" and against(0.9, 0.9) == "0.90" and against(0.9004, 0.9) == "0.90"
    assert against(0.87, 0.9) == "0.87" and against(0.8951, 0.9) == "0.8951" and against(0.95, 0.9) == "0.95"
