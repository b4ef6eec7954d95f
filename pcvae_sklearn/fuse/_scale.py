"""Precisions that the file does not give: a lognormal scale of every localization's variance.

Without a ``precision`` field, a joint registration gives every
localization the same variance. Real localizations differ: their precision
falls with the photons of each blink, which vary several-fold. A
localization's precision is then unknown, but the spread of precisions is
not: the residuals about the fused model hold it. Here every
localization's variance is the model's times an unknown scale ``s**2``,
with ``log s`` normal of standard deviation ``spread`` about a median that
keeps the model's mean variance. ``spread`` is chosen by the marginal
likelihood at the fused poses, and the poses then move, against the fixed
centres, under every localization's variance given its residuals (the EM
of that scale mixture): localizations that sit close to a centre count
more, as a precise localization would.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._ragged import apply_transforms, gather_rows
from ._em import EMState, _register_each

#: the log-standard deviations of the localizations' precision tried, by likelihood
SPREAD_GRID = (0.0, 0.15, 0.3, 0.45, 0.6)
#: rounds of (each localization's variance given its residuals, then the poses)
N_ROUNDS = 3
#: localizations (whole particles, at most) on which the spread is chosen
SPREAD_POINTS = 20000


def _nodes(spread):
    """``(log_s, weights)``: Gauss-Hermite nodes of ``log s ~ N(0, spread**2)``, weights summing to 1.

    The wider the prior, the more nodes: ``max(9, int(35 * spread) | 1)``
    keeps every localization's ``E[1 / s**2 | residuals]`` within 2 % of
    its integral on a fine grid up to a spread of 0.6 (9 nodes at 0.6: 19 %,
    in the far tail of the residuals).
    """
    t, w = np.polynomial.hermite.hermgauss(max(9, int(35 * spread) | 1))
    return np.sqrt(2.0) * spread * t, w / w.sum()


def scaled_variances(variances, sigma2, factor):
    """The variances ``factor * (sigma2 + localization variance)``, to be used with a shared variance of 0.

    ``factor`` is a scalar or one value per localization; ``variances`` one
    of the EM's variance kinds, whose ``scaled`` method does it (a
    :class:`~pcvae_sklearn.fuse._symmetry.SymmetricTemplate` hands over its
    own: the centres stay fixed here).
    """
    if not hasattr(variances, "scaled"):
        raise TypeError(f"no scale mixture for variances of type {type(variances).__name__}")
    return variances.scaled(sigma2, np.reshape(np.asarray(factor, dtype=np.float64), (-1, 1)))


def node_loglik(registered, state, mixture, variances, spread):
    """``(log-density (m, nodes), log_s, weights)``: every localization at every node of the scale.

    The median variance is the model's times ``exp(-2 spread**2)``, so that
    the mean variance stays the model's.
    """
    log_s, weights = _nodes(spread)
    median = np.exp(-2.0 * spread**2)

    def at(factor):
        return scaled_variances(variances, state.sigma2, factor).e_step(registered, state.rotations, state.centres,
                                                                        0.0, mixture).loglik

    if spread == 0:  # every node is the model itself
        return np.repeat(at(1.0)[:, None], len(log_s), axis=1), log_s, weights
    return np.stack([at(median * np.exp(2.0 * ls)) for ls in log_s], axis=1), log_s, weights


def variance_factors(node_ll, log_s, weights, spread):
    """Every localization's variance over the model's, ``median / E[1 / s**2 | residuals]``, shape (m,)."""
    post = node_ll + np.log(weights)
    post = np.exp(post - post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return np.exp(-2.0 * spread**2) / (post @ np.exp(-2.0 * log_s))


def choose_spread(src, offsets, state, mixture, variances, spreads=SPREAD_GRID, *, max_points=SPREAD_POINTS,
                  rng=None):
    """The ``spread`` of ``spreads`` of highest marginal likelihood at the poses of ``state``.

    Scored on random whole particles of at most ``max_points``
    localizations together (all where there are fewer; ``rng`` a numpy
    Generator). Returns ``(spread, log-likelihood per localization)``;
    ``spread`` 0 is the model without a scale.
    """
    lengths = np.diff(offsets)
    if offsets[-1] > max_points:
        order = (rng if rng is not None else np.random.default_rng(0)).permutation(len(lengths))
        active = np.sort(order[: max(1, int(np.searchsorted(np.cumsum(lengths[order]), max_points, "right")))])
        rows, sub_lengths = gather_rows(offsets, active)
        sub_offsets = np.concatenate([[0], np.cumsum(sub_lengths)])
        src, variances, offsets = src[rows], variances.subset(rows, sub_offsets), sub_offsets
        state = replace(state, rotations=state.rotations[active], translations=state.translations[active])
    registered = apply_transforms(src, state.rotations, state.translations, np.diff(offsets))
    best, best_ll = 0.0, -np.inf
    for spread in spreads:
        node_ll, _, weights = node_loglik(registered, state, mixture, variances, spread)
        total = float(np.logaddexp.reduce(node_ll + np.log(weights), axis=1).mean())
        if total > best_ll:
            best, best_ll = float(spread), total
    return best, best_ll


def refine_poses(src, offsets, state, mixture, variances, spread, *, max_iter, tol, n_rounds=N_ROUNDS):
    """The poses of ``state`` moved under the scale mixture of log-SD ``spread``, the centres fixed.

    Each round gives every localization its variance given its residuals
    (:func:`variance_factors`), then registers every particle onto the
    fixed centres under those variances. Returns ``state`` with the new
    rotations and translations (centres and shared variance unchanged; the
    per-particle log-likelihoods dropped).
    """
    if spread <= 0:
        return state
    lengths = np.diff(offsets)
    for _ in range(n_rounds):
        registered = apply_transforms(src, state.rotations, state.translations, lengths)
        factors = variance_factors(*node_loglik(registered, state, mixture, variances, spread), spread)
        start = EMState(state.rotations, state.translations, state.centres, 0.0)
        end = _register_each(src, offsets, start, mixture, scaled_variances(variances, state.sigma2, factors),
                             max_iter=max_iter, tol=tol)
        state = replace(state, rotations=end.rotations, translations=end.translations, particle_ll=None)
    return state
