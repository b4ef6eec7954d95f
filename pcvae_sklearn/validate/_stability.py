"""Axis stability: do the latent axes of one fit come back with another seed?"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._input import as_particles
from .._ragged import precision_sd, segment_sum

__all__ = ["AxisStability", "axis_stability", "match_axes"]

#: an axis is reproducible when its matched axes correlate at least this much (|Spearman|) between every pair of seeds
REPRODUCIBLE = 0.9


def against(value: float, threshold: float) -> str:
    """``value`` with 2 decimals, or 4 where 2 would round it across ``threshold`` (0.8998 is not "0.90 < 0.9")."""
    short = f"{value:.2f}"
    return short if (float(short) >= threshold) == (value >= threshold) else f"{value:.4f}"


def _ranks(Z: np.ndarray) -> np.ndarray:
    """Column ranks, centred and scaled so that their inner products over n are Spearman correlations."""
    R = rankdata(Z, axis=0)
    R = R - R.mean(axis=0)
    norm = np.sqrt((R**2).sum(axis=0))
    return R / np.where(norm > 0, norm, 1.0)  # a constant column correlates 0 with everything


def spearman_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Spearman correlation of every column of ``A`` with every column of ``B``, shape (a, b); 0 for a constant column."""
    return _ranks(A).T @ _ranks(B)


def match_axes(reference, other, groups=None):
    """Match the columns of ``other`` to those of ``reference`` by largest total |Spearman| (Hungarian assignment).

    Parameters
    ----------
    reference, other : array-like of shape (n_particles, k)
        Latents of the same particles from two fits.
    groups : array-like of shape (k,), optional
        A label per column: a column is matched only to a column of the same
        label (e.g. a VAE's axes and their independent components side by
        side, each matched among its own kind). None: one group.

    Returns
    -------
    columns : ndarray of shape (k,)
        ``other[:, columns[j]]`` is the axis matched to ``reference[:, j]``.
    signs : ndarray of shape (k,)
        +1 or -1: the sign that makes the matched axis correlate positively.
    correlations : ndarray of shape (k,)
        |Spearman| of each matched pair.
    """
    reference, other = np.asarray(reference, float), np.asarray(other, float)
    if reference.ndim != 2 or reference.shape != other.shape:
        raise ValueError(f"both latents must have the same shape (n_particles, k); got {reference.shape} and {other.shape}.")
    rho = spearman_matrix(reference, other)
    cost = -np.abs(rho)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (reference.shape[1],):
            raise ValueError(f"groups has shape {groups.shape}; expected one label per column, ({reference.shape[1]},).")
        cost[groups[:, None] != groups[None, :]] = np.inf  # |Spearman| <= 1, so no cross-group pair is ever chosen
    rows, columns = linear_sum_assignment(cost)
    columns = columns[np.argsort(rows)]
    matched = rho[np.arange(len(columns)), columns]
    return columns, np.where(matched < 0, -1, 1), np.abs(matched)


@dataclass(frozen=True)
class AxisStability:
    """How reproducible each latent axis is across seeds, and what it tracks.

    The axes are those of the first seed (the reference); every other seed's
    axes are matched to them by :func:`match_axes`.

    Attributes
    ----------
    reproducibility : ndarray of shape (k,)
        For each reference axis, the smallest |Spearman| between its matched
        axes over every pair of seeds.
    reproducible : ndarray of bool, shape (k,)
        ``reproducibility >= threshold``.
    columns : ndarray of shape (n_seeds, k)
        The column of each seed matched to each reference axis (row 0 is
        ``0 .. k-1``).
    signs : ndarray of shape (n_seeds, k)
        The sign that turns each matched axis to agree with the reference.
    pair_correlation : ndarray of shape (k, n_seeds, n_seeds)
        |Spearman| of the matched axes for every pair of seeds.
    tracks : dict of str to ndarray of shape (n_seeds, k)
        For every quantity (the given estimates, the localization count,
        the mean precision where the data have one), the Spearman
        correlation of each seed's matched axis, turned by ``signs``.
    latents : list of ndarray
        Each seed's latents, as fitted.
    seeds : ndarray of shape (n_seeds,)
    threshold : float
    feature_names : ndarray of str
        Names of the reference axes.
    """

    reproducibility: np.ndarray
    columns: np.ndarray
    signs: np.ndarray
    pair_correlation: np.ndarray
    tracks: dict
    latents: list = field(repr=False)
    seeds: np.ndarray
    threshold: float
    feature_names: np.ndarray

    @property
    def reproducible(self) -> np.ndarray:
        return self.reproducibility >= self.threshold

    def choice_agreement(self, dimension, estimate, candidates=None) -> np.ndarray:
        """Whether every seed's fit would bin along the same axis as the reference fit does.

        :func:`pcvae_sklearn.analyse` bins along the reference axis
        ``dimension``: among ``candidates``, the one that tracks the
        estimate best. The same rule, applied to another seed's fit, picks
        that seed's matched axis with the largest |Spearman| with the
        estimate. Where that is the match of ``dimension``, the agreement is
        its reproducibility for that pair of seeds; where it is another
        axis, the agreement is how much that axis and the binned one order
        the particles alike, which may be little, though each axis comes
        back. This is what a user who reruns the analysis with another seed
        would meet.

        Parameters
        ----------
        dimension : int
            The reference axis binned.
        estimate : str
            A key of ``tracks`` (an estimate given to :func:`axis_stability`).
        candidates : array-like of int, optional
            The reference axes the choice may take; default: all.

        Returns
        -------
        ndarray of shape (n_seeds - 1,)
            For every seed after the reference, |Spearman| between the
            reference's axis ``dimension`` and the axis the rule picks in
            that seed's fit.
        """
        if estimate not in self.tracks:
            raise ValueError(f"estimate {estimate!r} is not one of the tracked quantities {sorted(self.tracks)}.")
        k = len(self.reproducibility)
        allowed = np.arange(k) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
        if len(allowed) == 0 or allowed.min() < 0 or allowed.max() >= k or not 0 <= dimension < k:
            raise ValueError(f"dimension and candidates must be axes in 0..{k - 1}; got {dimension!r}, {candidates!r}.")
        binned = self.latents[0][:, self.columns[0, dimension]]
        out = np.empty(len(self.latents) - 1)
        for s in range(1, len(self.latents)):
            track = np.abs(self.tracks[estimate][s, allowed])
            j = allowed[np.nanargmax(track)] if not np.all(np.isnan(track)) else dimension
            out[s - 1] = abs(spearman_matrix(binned[:, None], self.latents[s][:, [self.columns[s, j]]])[0, 0])
        return out

    def describe(self) -> list[str]:
        """One line per axis: its reproducibility and the quantity it tracks most (mean over seeds)."""
        lines = []
        for j, name in enumerate(self.feature_names):
            mean = {q: float(np.mean(v[:, j])) for q, v in self.tracks.items()}
            best = max(mean, key=lambda q: abs(mean[q])) if mean else None
            what = f"; tracks {best} (Spearman {mean[best]:+.2f}, mean over the seeds)" if best is not None else ""
            verdict = "reproducible" if self.reproducible[j] else "not reproducible"
            rho = against(self.reproducibility[j], self.threshold)
            lines.append(f"{name}: {verdict} across {len(self.seeds)} seeds (min |rho| {rho}){what}")
        return lines

    def to_frame(self):
        """A pandas DataFrame: one row per reference axis, its reproducibility and mean correlations."""
        import pandas as pd

        rows = {"latent": self.feature_names, "reproducibility": self.reproducibility,
                "reproducible": self.reproducible}
        for q, v in self.tracks.items():
            rows[f"spearman_{q}"] = v.mean(axis=0)
        return pd.DataFrame(rows)


def _quantities(p, estimates) -> dict:
    out = {}
    for name, value in (estimates or {}).items():
        value = np.asarray(value, dtype=float)
        value = value[:, 0] if value.ndim == 2 else value
        if value.shape != (p.n_particles,):
            raise ValueError(f"estimate {name!r} has shape {value.shape}; expected one value per particle ({p.n_particles},).")
        out[str(name)] = value
    out["n_localizations"] = p.lengths.astype(float)
    sd = precision_sd(p)
    if sd is not None:  # the lateral precision, averaged over each particle
        out["precision_nm"] = segment_sum(sd[:, 0], p.offsets) / p.lengths
    return out


def _with_seed(estimator, seed):
    """A clone of ``estimator`` with every (nested) ``random_state`` set to ``seed``."""
    est = clone(estimator)
    keys = [k for k in est.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")]
    return est.set_params(**{k: seed for k in keys})


def axis_stability(X, estimator=None, *, n_seeds=5, estimates=None, latents=None, threshold=REPRODUCIBLE,
                   feature_names=None, groups=None, random_state=0) -> AxisStability:
    """Fit the encoder with several seeds and say which latent axes come back.

    A latent axis found with one seed may not exist with the next: the
    paper's VAE is not identifiable, and its axes can split, merge or turn
    between fits. This fits ``n_seeds`` clones of ``estimator`` that differ
    only in their seed, matches every seed's axes to the first seed's by
    absolute Spearman correlation (Hungarian assignment), and reports for
    each axis how well its matches agree between every pair of seeds and
    what it tracks: its correlation with each estimate, the localization
    count and, where the data have one, the mean precision. An axis that
    correlates with the count or the precision sorts particles by their
    noise.

    Parameters
    ----------
    X : particles
        Anything :func:`pcvae_sklearn.as_particles` accepts.
    estimator : unfitted transformer, default=None
        A :class:`~pcvae_sklearn.PointCloudVAE` (or a Pipeline ending in a
        latent transform); cloned for every seed, with every
        ``random_state`` set to the seed. ``None``: ``PointCloudVAE()``.
    n_seeds : int, default=5
        At least 2.
    estimates : dict of str to array-like of shape (n_particles,), optional
        Per-particle estimates (e.g. ``{"radius_nm": RadiusEstimator().fit_transform(X)}``);
        a 2-D value uses its first column.
    latents : list of array-like, optional
        Latents already fitted for the first seeds (e.g. the fit being
        judged); only the remaining ``n_seeds - len(latents)`` seeds are fitted.
    threshold : float, default=0.9
        The |Spearman| every pair of seeds must reach for an axis to count
        as reproducible.
    feature_names : list of str, optional
        Names of the latent axes; default ``pcvae0, pcvae1, ...``.
    groups : array-like of shape (k,), optional
        A label per latent column; columns are matched only within their
        group (see :func:`match_axes`). For an encoder whose output puts
        different kinds of axes side by side, such as the VAE's axes and
        their independent components.
    random_state : int, RandomState instance or None, default=0
        Draws the seeds of the fits (the first ``len(latents)`` seeds are
        reported as -1: their seeds are not known here).

    Returns
    -------
    AxisStability

    Examples
    --------
    >>> from pcvae_sklearn import PointCloudVAE
    >>> from pcvae_sklearn.datasets import make_npc_2d
    >>> from pcvae_sklearn.validate import axis_stability
    >>> X, truth = make_npc_2d(200, random_state=0)
    >>> result = axis_stability(X, PointCloudVAE(n_epochs=1), n_seeds=2, estimates={"radius": truth["radius"]})
    >>> result.reproducibility.shape, result.tracks["radius"].shape
    ((8,), (2, 8))
    """
    from ..encode import PointCloudVAE

    p = as_particles(X, min_particles=2, what="particles")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer of at least 2; got {n_seeds!r}.")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1]; got {threshold!r}.")
    quantities = _quantities(p, estimates)
    given = [np.asarray(z, dtype=float) for z in (latents or [])]
    if len(given) > n_seeds:
        raise ValueError(f"{len(given)} latents given for n_seeds={n_seeds}.")
    for i, z in enumerate(given):
        if z.ndim != 2 or z.shape[0] != p.n_particles or (i and z.shape != given[0].shape):
            raise ValueError(f"latents[{i}] has shape {z.shape}; expected ({p.n_particles}, k), the same k for all.")
    if groups is not None and given and np.shape(groups) != (given[0].shape[1],):
        raise ValueError(f"groups has shape {np.shape(groups)}; expected one label per latent column, ({given[0].shape[1]},).")
    rng = check_random_state(random_state)
    seeds = [-1] * len(given)
    estimator = PointCloudVAE() if estimator is None else estimator
    Zs = list(given)
    for _ in range(n_seeds - len(given)):
        seed = int(rng.randint(np.iinfo(np.int32).max))
        seeds.append(seed)
        Zs.append(np.asarray(_with_seed(estimator, seed).fit(X).transform(X), dtype=float))
    if any(z.shape != Zs[0].shape for z in Zs):
        raise ValueError(f"the fits gave latents of different shapes: {[z.shape for z in Zs]}.")
    k = Zs[0].shape[1]
    columns, signs = np.zeros((n_seeds, k), dtype=np.int64), np.ones((n_seeds, k), dtype=np.int64)
    columns[0] = np.arange(k)
    for s in range(1, n_seeds):
        columns[s], signs[s], _ = match_axes(Zs[0], Zs[s], groups)
    aligned = [Zs[s][:, columns[s]] * signs[s] for s in range(n_seeds)]
    ranks = [_ranks(a) for a in aligned]
    pair = np.ones((k, n_seeds, n_seeds))
    for s in range(n_seeds):
        for t in range(s + 1, n_seeds):
            pair[:, s, t] = pair[:, t, s] = np.abs(np.sum(ranks[s] * ranks[t], axis=0))
    tracks = {q: np.stack([spearman_matrix(a, v[:, None])[:, 0] for a in aligned]) for q, v in quantities.items()}
    feature_names = np.asarray([f"pcvae{j}" for j in range(k)] if feature_names is None else feature_names, dtype=object)
    if feature_names.shape != (k,):
        raise ValueError(f"feature_names has {len(feature_names)} names for {k} latent axes.")
    return AxisStability(reproducibility=pair.min(axis=(1, 2)), columns=columns, signs=signs, pair_correlation=pair,
                         tracks=tracks, latents=Zs, seeds=np.asarray(seeds), threshold=float(threshold),
                         feature_names=feature_names)
