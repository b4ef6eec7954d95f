"""A two-component 1-D Gaussian mixture fitted to every particle at once.

The tetrahedron height of Haghparast, Zhang et al. (2025) is the distance
between the means of a two-Gaussian fit of the localizations' z. Fitting
``sklearn.mixture.GaussianMixture(2)`` once per particle is a Python loop over
particles; here one EM runs on the packed form for all particles together:
the E-step is elementwise over localizations (parameters broadcast with
``np.repeat``) and the M-step is segment sums.

Every particle follows its own EM exactly as if it were fitted alone (it
stops when its own mean log-likelihood changes by less than ``tol``), so the
result for a particle does not depend on the other particles.
"""

from __future__ import annotations

import numpy as np

from .._ragged import range_rows, segment_sum

__all__ = ["two_gaussian_fit"]

_LOG_2PI = np.log(2.0 * np.pi)
# as in sklearn.mixture: keeps an emptied component from dividing by zero
_EPS_NK = 10.0 * np.finfo(np.float64).eps


def _m_step(z, r0, r1, offsets, lengths, reg_covar):
    """Weights, means and variances (each (n, 2)) from responsibilities."""
    nk = np.column_stack([segment_sum(r0, offsets), segment_sum(r1, offsets)]) + _EPS_NK
    means = np.column_stack([segment_sum(r0 * z, offsets), segment_sum(r1 * z, offsets)]) / nk
    d0 = z - np.repeat(means[:, 0], lengths)
    d1 = z - np.repeat(means[:, 1], lengths)
    var = np.column_stack([segment_sum(r0 * d0 * d0, offsets), segment_sum(r1 * d1 * d1, offsets)]) / nk + reg_covar
    weights = nk / lengths[:, None]
    return weights, means, var, nk


def _e_step(z, weights, means, var, lengths, log_background=None):
    """Responsibilities of both components and the log-likelihood of every value.

    ``log_background`` (n,): log of (background weight x uniform density) per
    particle, or None for no background term. The background's own
    responsibility is ``1 - r0 - r1``.
    """
    const = np.log(weights) - 0.5 * (_LOG_2PI + np.log(var))  # (n, 2)
    half_inv = 0.5 / var
    d = z - np.repeat(means[:, 0], lengths)
    a0 = np.repeat(const[:, 0], lengths) - d * d * np.repeat(half_inv[:, 0], lengths)
    d = z - np.repeat(means[:, 1], lengths)
    a1 = np.repeat(const[:, 1], lengths) - d * d * np.repeat(half_inv[:, 1], lengths)
    norm = np.logaddexp(a0, a1)
    if log_background is not None:
        norm = np.logaddexp(norm, np.repeat(log_background, lengths))
    return np.exp(a0 - norm), np.exp(a1 - norm), norm


def two_gaussian_fit(z, offsets, *, max_iter=100, tol=1e-6, reg_covar=1e-6, background=False):
    """Fit a two-Gaussian mixture to the values of every particle.

    Parameters
    ----------
    z : ndarray of shape (n_localizations,)
        Packed values (z in nm), particle after particle.
    offsets : ndarray of shape (n_particles + 1,)
        Particle ``i`` owns ``z[offsets[i]:offsets[i + 1]]``; every particle
        needs at least 2 values.
    max_iter : int, default=100
        EM iterations at most, per particle.
    tol : float, default=1e-6
        A particle stops when its mean log-likelihood per localization changes
        by less than ``tol`` (the rule of ``sklearn.mixture.GaussianMixture``).
    reg_covar : float, default=1e-6
        Added to every variance (nm²), as in scikit-learn.
    background : bool, default=False
        Add a third component, uniform over each particle's range of values,
        with its own weight (starting at 5 %), for background localizations.
        Without it, background can make "one narrow component plus one broad
        component over everything else" the most likely two-Gaussian fit.

    Returns
    -------
    result : dict of ndarray
        ``means`` and ``variances`` of shape (n_particles, 2), sorted so that
        ``means[:, 0] <= means[:, 1]``; ``weights`` (n_particles, 2);
        ``counts`` (n_particles, 2): the effective number of localizations of
        each component (sum of responsibilities); ``n_iter`` (n_particles,);
        ``converged`` (n_particles,) of bool; ``background`` (n_particles,):
        the background weight (zero without ``background``).

    Notes
    -----
    Initialisation (deterministic, no sort): every particle's values are
    split at their mean into a lower and an upper group, and one M-step on
    that hard split gives the starting weights, means and variances (a
    one-step k-means from mean -/+ spread). For two levels well separated
    compared with their spread the split falls between them, balanced or not (1:3 for a tetrahedron,
    1:1 for a pore). If all values are equal, both components start as the
    whole particle's distribution.
    """
    z = np.asarray(z, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    n = len(lengths)
    if n == 0:
        raise ValueError("no particles to fit.")
    if lengths.min() < 2:
        raise ValueError("every particle needs at least 2 localizations for a two-Gaussian fit.")

    # ---- deterministic initialisation: split every particle at its mean
    mean_all = segment_sum(z, offsets) / lengths
    upper = (z > np.repeat(mean_all, lengths)).astype(np.float64)
    weights, means, var, nk = _m_step(z, 1.0 - upper, upper, offsets, lengths, reg_covar)
    empty = nk < 0.5  # a component with no value at all (all values equal)
    if empty.any():
        dev = z - np.repeat(mean_all, lengths)
        var_all = segment_sum(dev * dev, offsets) / lengths + reg_covar
        rows = np.flatnonzero(empty.any(axis=1))
        means[rows] = mean_all[rows, None]
        var[rows] = var_all[rows, None]
        weights[rows] = 0.5
    if background:
        # a uniform component over each particle's range of values, 5 % of the weight to start with
        span = np.maximum.reduceat(z, offsets[:-1]) - np.minimum.reduceat(z, offsets[:-1])
        log_density = -np.log(np.where(span > 0, span, 1.0))
        weights *= 0.95
        bg_weight = np.full(n, 0.05)
    else:
        log_density = bg_weight = None

    def log_background(rows):
        if not background:
            return None
        return np.log(np.maximum(bg_weight[rows], 1e-300)) + log_density[rows]

    n_iter = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    lower_bound = np.full(n, -np.inf)
    active = np.arange(n)
    z_a, off_a, len_a = z, offsets, lengths
    for _ in range(max_iter):
        if active.size == 0:
            break
        # E-step
        r0, r1, norm = _e_step(z_a, weights[active], means[active], var[active], len_a, log_background(active))
        new_bound = segment_sum(norm, off_a) / len_a
        # M-step
        w, mu, v, counts = _m_step(z_a, r0, r1, off_a, len_a, reg_covar)
        alive = counts > _EPS_NK * 1e3  # keep an emptied component where it was
        weights[active] = w
        if background:
            bg_weight[active] = np.clip(1.0 - w.sum(axis=1), 0.0, 1.0)
        means[active] = np.where(alive, mu, means[active])
        var[active] = np.where(alive, v, var[active])
        n_iter[active] += 1
        done = np.abs(new_bound - lower_bound[active]) < tol
        lower_bound[active] = new_bound
        if done.any():
            converged[active[done]] = True
            active = active[~done]
            len_a = lengths[active]
            rows, off_a = range_rows(offsets[:-1][active], len_a)
            z_a = z[rows]

    # effective counts from the final parameters (one more E-step, as sklearn)
    r0, r1, _ = _e_step(z, weights, means, var, lengths, log_background(np.arange(n)))
    counts = np.column_stack([segment_sum(r0, offsets), segment_sum(r1, offsets)])
    swap = means[:, 0] > means[:, 1]
    for arr in (means, var, weights, counts):
        arr[swap] = arr[swap][:, ::-1]
    return {
        "means": means,
        "variances": var,
        "weights": weights,
        "counts": counts,
        "n_iter": n_iter,
        "converged": converged,
        "background": bg_weight if background else np.zeros(n),
    }
