"""Is a per-bin trend real? Bootstrap intervals per bin and the workflow's matched null."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from scipy.stats import t as student_t
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._input import as_particles
from .._ragged import Particles
from ..bin import bin_along_axis
from ..estimate import make_estimator
from ..estimate._names import quantity_name
from ._twins import TEMPLATE_MAX_ITER, _draw_twins, _template_fuser, _twin_model

__all__ = ["bin_bootstrap_intervals", "per_bin_statistic", "trend_null_test", "TrendNullResult"]

logger = logging.getLogger(__name__)

#: restarts of the template's fusion when none is given, by dimension. In 3D one restart too often leaves the template
#: of tilted tetrahedra mis-fused, and the twins then rise across the bins where the data do not; 2D keeps the one
#: with which its false-positive rates were measured ("EM iterations per run (fusion)" in docs/choosing_parameters.md)
TEMPLATE_RESTARTS = {2: 1, 3: "auto"}
#: twins drawn from a mis-fused template scatter far more than the data: over the per-particle estimates' 10-90 %
#: range, 4.0-5.7 times the data's, against at most about 2.2 for homogeneous data fused well (whose twins keep more
#: scatter than the data) and below 1 for varying data. Beyond this ratio the template is fused again with
#: TEMPLATE_RETRY_RESTARTS restarts (the first ones among them), and the template whose twins scatter less is kept
#: (same section)
TEMPLATE_SPREAD_LIMIT = 3.0
TEMPLATE_RETRY_RESTARTS = 6

_STATISTICS = ("median", "mean")
#: largest (resamples x particles) block drawn at once in the bootstrap
_BLOCK = 2_000_000


def _check_bins(values, bins, n_bins):
    v = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(bins).ravel()
    if b.shape != v.shape:
        raise ValueError(f"bins has {b.size} entries for {v.size} values.")
    if not np.isfinite(v).all():
        raise ValueError(f"values are not finite for particle(s) {np.flatnonzero(~np.isfinite(v))[:10].tolist()}.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}.")
    if b.size and (b.min() < 1 or b.max() > n_bins):
        raise ValueError(f"bins are numbered 1..{n_bins}; got values from {b.min()} to {b.max()}.")
    counts = np.bincount(b.astype(np.int64), minlength=n_bins + 1)[1:]
    if (counts == 0).any():
        raise ValueError(f"bin(s) {(np.flatnonzero(counts == 0) + 1).tolist()} hold no particle.")
    return v, b.astype(np.int64)


def per_bin_statistic(values, bins, n_bins, *, statistic="median"):
    """The median (or mean) of ``values`` in every bin ``1 .. n_bins``.

    Parameters
    ----------
    values : array-like of shape (n_particles,)
    bins : array-like of shape (n_particles,)
        Bin of every particle, numbered ``1 .. n_bins``.
    n_bins : int
    statistic : {"median", "mean"}, default="median"

    Returns
    -------
    ndarray of shape (n_bins,)
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}; got {statistic!r}.")
    v, b = _check_bins(values, bins, n_bins)
    f = np.median if statistic == "median" else np.mean
    return np.array([f(v[b == k]) for k in range(1, n_bins + 1)])  # a loop over bins


def bin_bootstrap_intervals(values, bins, n_bins, *, statistic="median", n_bootstrap=1000, confidence=0.95,
                            random_state=None):
    """Percentile bootstrap interval of a per-bin statistic, resampling each bin's particles.

    For every bin the particles are drawn with replacement ``n_bootstrap``
    times (as many as the bin holds) and the statistic of their ``values``
    is recomputed; the interval is the central ``confidence`` range of those
    resampled statistics. Particles are the independent units here (the
    localizations of one particle are not: they come in bursts from a few
    dyes), so this interval carries the particle-to-particle scatter that
    the localization-level precision FWHM/sqrt(n) leaves out.

    Parameters
    ----------
    values : array-like of shape (n_particles,)
        A per-particle estimate (radius, height).
    bins : array-like of shape (n_particles,)
        Bin of every particle, numbered ``1 .. n_bins``; every bin holds at
        least one particle.
    n_bins : int
    statistic : {"median", "mean"}, default="median"
    n_bootstrap : int, default=1000
        Resamples per bin, at least 10.
    confidence : float, default=0.95
        In (0, 1).
    random_state : int, RandomState instance or None

    Returns
    -------
    low, high : ndarray of shape (n_bins,)

    References
    ----------
    .. [1] Efron, B. and Tibshirani, R. J. "An Introduction to the
       Bootstrap", Chapman & Hall (1993), ch. 13.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.validate import bin_bootstrap_intervals
    >>> rng = np.random.default_rng(0)
    >>> values, bins = rng.normal(50, 2, 300), np.repeat([1, 2, 3], 100)
    >>> low, high = bin_bootstrap_intervals(values, bins, 3, random_state=0)
    >>> bool(np.all((low < 50.5) & (high > 49.5)))
    True
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}; got {statistic!r}.")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 10:
        raise ValueError(f"n_bootstrap must be an integer of at least 10; got {n_bootstrap!r}.")
    if isinstance(confidence, bool) or not isinstance(confidence, Real) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}.")
    v, b = _check_bins(values, bins, n_bins)
    rng = check_random_state(random_state)
    f = np.median if statistic == "median" else np.mean
    q = 100.0 * np.array([(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    low, high = np.empty(n_bins), np.empty(n_bins)
    for k in range(1, n_bins + 1):  # a loop over bins; the resamples of a bin are one array
        vk = v[b == k]
        m = len(vk)
        stats = np.empty(n_bootstrap)
        step = max(1, _BLOCK // m)
        for start in range(0, n_bootstrap, step):  # memory blocks of resamples
            idx = rng.randint(0, m, size=(min(step, n_bootstrap - start), m))
            stats[start : start + len(idx)] = f(vk[idx], axis=1)
        low[k - 1], high[k - 1] = np.percentile(stats, q)
    return low, high


def _rise(curves):
    """Least-squares slope of each per-bin curve against the bin number, times (n_bins - 1): the rise, same unit."""
    curves = np.atleast_2d(curves)
    n_bins = curves.shape[1]
    x = np.arange(n_bins) - (n_bins - 1) / 2.0
    return (curves - curves.mean(axis=1, keepdims=True)) @ x / (x @ x) * (n_bins - 1)


def _format_p(p, alpha=None):
    """``p`` with 3 decimals, or more where those would print it as ``alpha``, the level it is compared with."""
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.{_digits(p, alpha, 3)}f}"


def _digits(a, b, digits):
    """The decimals, from ``digits`` up to 6, that print ``a`` apart from ``b`` (None: ``digits``)."""
    while b is not None and a != b and digits < 6 and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return digits


@dataclass
class TrendNullResult:
    """Result of :func:`trend_null_test`.

    Attributes
    ----------
    detected : bool
        ``p_value < alpha``.
    p_value : float
        One-sided p-value of the data's rise against the twins' rises (see
        :func:`trend_null_test`).
    p_value_rank : float
        ``(1 + #{twin rise >= data rise}) / (1 + n_replicates)``.
    alpha : float
    dimension : int
        The latent dimension of the data's curve (``n_dimensions``, the
        column after the latents, with ``direction``).
    feature_name : str
    verdict : str
        One line for a reader.
    rise : float
        The data's rise: least-squares slope of the per-bin curve against
        the bin number, times ``n_bins - 1`` (unit of the estimate).
    null_rises : ndarray of shape (n_replicates,)
    detectable_rise : float
        The smallest rise of the data that ``alpha`` would have called: the
        test's sensitivity on these data. Where the twins rise much more
        than the data, a "no heterogeneity" verdict says little: only
        variation beyond this rise could have shown.
    curve : ndarray of shape (n_bins,)
        The data's per-bin median estimate.
    null_curves : ndarray of shape (n_replicates, n_bins)
        The twins' per-bin median estimates, each along its own chosen and
        oriented dimension.
    null_dimensions : ndarray of shape (n_replicates,)
        The dimension each twin replicate chose.
    null_low, null_high : ndarray of shape (n_bins,)
        The band: the 2.5 and 97.5 % of the twins' curves, each centred on
        its own mean, placed at the mean of the data's curve.
    twin_spread_ratio : float
        The 10-90 % range of the twins' per-particle estimates over that of
        the data's. Homogeneous twins of a well fused template scatter about
        as much as the data (more where the twins keep more scatter than
        the data, as 2D pores' do), and varying data scatter more than
        their twins; a ratio of several means a template fused into a wrong
        structure, whose twins are far from homogeneous, and a test with
        little power (see ``detectable_rise``).
    fuser : ParticleFuser
        The fusion of all particles that defines the twins' structure.
    """

    detected: bool
    p_value: float
    p_value_rank: float
    alpha: float
    dimension: int
    feature_name: str
    verdict: str
    rise: float
    null_rises: np.ndarray
    detectable_rise: float
    curve: np.ndarray
    null_curves: np.ndarray
    null_dimensions: np.ndarray
    null_low: np.ndarray
    null_high: np.ndarray
    twin_spread_ratio: float
    fuser: object = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The scalar findings (for ``settings.json`` and ``WorkflowResult.heterogeneity``)."""
        return {
            "detected": bool(self.detected),
            "p_value": float(self.p_value),
            "p_value_rank": float(self.p_value_rank),
            "alpha": float(self.alpha),
            "dimension": int(self.dimension),
            "feature_name": self.feature_name,
            "verdict": self.verdict,
            "rise": float(self.rise),
            "null_rise_mean": float(np.mean(self.null_rises)),
            "null_rise_sd": float(np.std(self.null_rises, ddof=1)),
            "detectable_rise": float(self.detectable_rise),
            "twin_spread_ratio": float(self.twin_spread_ratio),
            "n_replicates": int(len(self.null_rises)),
        }


def trend_null_test(X, latents, estimates, *, encoder, estimate="radius", dimension=None, n_bins=20, n_replicates=19,
                    alpha=0.01, fuser=None, feature_names=None, candidates=None, direction=None, random_state=None):
    """Does the per-bin trend of the workflow exceed what a matched homogeneous null produces?

    The workflow picks the latent dimension that tracks the per-particle
    estimate best, orients it and bins along it. On perfectly homogeneous
    particles this alone produces a rising per-bin curve: the latent sees
    which particles happen to look larger (missing sites, a centroid off
    centre), and binning by it sorts them. This test runs the same steps on
    homogeneous twins of the data and asks whether the data's curve rises
    more than theirs.

    1. **Template.** All particles are fused once (``fuser``); the twins of
       :func:`make_homogeneous_null` are simulated from it: the same counts,
       labelling pattern and precisions as the data, one shared structure.
       A template fused into a wrong structure (a wrong basin of the joint
       registration) gives twins far from homogeneous: where their
       per-particle estimates scatter more than 3 times as widely as the
       data's (10-90 % range), the template is fused again with 6
       restarts, and the one whose twins scatter less is kept
       (``twin_spread_ratio``).
    2. **Replicates.** ``n_replicates`` sets of twins are drawn, encoded with
       the already fitted ``encoder`` (``transform`` only, no refit) and
       measured with the same estimate. On each, the same procedure as on
       the data picks a dimension (largest |Spearman|, unless ``dimension``
       is fixed), orients it and bins it (:func:`bin_along_axis`), and the
       per-bin median estimate gives the twins' curve. With ``direction``,
       data and twins are each binned along their own cross-fitted latent
       direction instead (:class:`~pcvae_sklearn.bin.LatentDirection`).
    3. **Statistic.** The *rise* of a curve: its least-squares slope
       against the bin number times ``n_bins - 1``. The p-value is that of
       the data's rise as one more draw from a normal distribution fitted
       to the twins' rises (Student's t prediction with ``n_replicates - 1``
       degrees of freedom); this allows small p-values from few replicates,
       which the rank p-value ``(1 + #) / (1 + n_replicates)`` (also given)
       cannot reach.

    Parameters
    ----------
    X : particles
        The data particles (anything :func:`as_particles` accepts).
    latents : array-like of shape (n_particles, n_dimensions)
        ``encoder.transform(X)``.
    estimates : array-like of shape (n_particles,) or (n_particles, 2)
        The per-particle estimate of ``X`` (its value column is used).
    encoder : fitted transformer
        What produced ``latents`` (a PointCloudVAE, or a Pipeline of it and
        a LatentUnmixer); applied to the twins with ``transform``.
    estimate : str or estimator, default="radius"
        As in :func:`pcvae_sklearn.analyse`.
    dimension : int, optional
        A fixed dimension for data and twins alike; by default each picks
        its own.
    n_bins : int, default=20
    n_replicates : int, default=19
        Twin sets; at least 5.
    alpha : float, default=0.01
        ``detected`` when ``p_value < alpha``.
    fuser : ParticleFuser, optional
        Settings of the template fusion; default ``ParticleFuser(max_iter=100)``
        with one restart for 2D particles and two for 3D ones, where one
        restart mis-fused the template of some sets of tilted tetrahedra.
        A template whose twins scatter too widely (step 1) is fused again
        with 6 restarts, a given fuser's too unless it tries as many.
    feature_names : list of str, optional
        Names of the latent dimensions, for the verdict.
    candidates : array-like of int, optional
        The dimensions the choice may take, for data and twins alike (see
        :func:`~pcvae_sklearn.bin.bin_along_axis`); default: all.
    direction : LatentDirection, optional
        Bin along the latent direction that predicts the estimate, refitted
        (``clone(direction).fit_transform``, cross-fitted) on the data and on
        every twin set, instead of one dimension; its axis is then the
        column after the latents (``dimension`` is ``n_dimensions``), and
        ``feature_names`` may name it with one more entry. Not with
        ``dimension`` or ``candidates``.
    random_state : int, RandomState instance or None

    Returns
    -------
    TrendNullResult

    Notes
    -----
    The VAE was fitted on the data and not on the twins, so data and twins
    are not exactly exchangeable; a data particle the VAE has learnt could
    sit more sharply on its dimension than a twin. ``alpha=0.01`` leaves a
    margin for that; ``benchmarks/bench_null.py`` measures the rate of
    false detections on homogeneous simulations. The twins carry the data's
    counts, labelling, poses (tilt included) and every localization's
    scatter about its site (see :func:`make_homogeneous_null`); they do not
    carry a structure that deforms rather than varies, a pick that holds
    two particles, or, where the file misstates its precisions, the right
    error for a site's mean.

    See Also
    --------
    heterogeneity_null_test : a joint fit of data and twins with a paired permutation test (costlier).
    make_homogeneous_null : the twins.
    """
    p: Particles = as_particles(X, min_particles=2, what="particles")
    Z = np.asarray(latents, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] != p.n_particles:
        raise ValueError(f"latents has shape {Z.shape}; expected ({p.n_particles}, n_dimensions), one row per particle.")
    E = np.asarray(estimates, dtype=np.float64)
    E = E[:, 0] if E.ndim == 2 else E
    if E.shape != (p.n_particles,):
        raise ValueError(f"estimates has shape {E.shape}; expected one value per particle, ({p.n_particles},).")
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, Integral) or n_replicates < 5:
        raise ValueError(f"n_replicates must be an integer of at least 5; got {n_replicates!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}.")
    names = [f"pcvae{j}" for j in range(Z.shape[1])] if feature_names is None else [str(f) for f in feature_names]
    if direction is not None:
        if dimension is not None or candidates is not None:
            raise ValueError("direction bins along the latent direction; it cannot be combined with dimension or "
                             "candidates.")
        names = names[:Z.shape[1] + 1]
        if len(names) == Z.shape[1]:
            names.append("latent_direction")
    rng = check_random_state(random_state)
    axis = _bin(Z, E, dimension, n_bins, candidates, direction)
    curve = per_bin_statistic(E, axis.bins, n_bins)
    rise = float(_rise(curve)[0])

    if fuser is None:
        from ..fuse import ParticleFuser

        fuser = ParticleFuser(n_restarts=TEMPLATE_RESTARTS[p.n_dims], max_iter=TEMPLATE_MAX_ITER)
    est = make_estimator(estimate, p.n_dims)
    template_fuser, fit_on = _template_fuser(p, fuser, rng)
    template = template_fuser.fit(fit_on)
    union, E0 = _replicates(p, template, est, n_replicates, rng)
    spread = _spread_ratio(E0, E)
    tried = template_fuser._restarts(template_fuser._mode(p.n_dims))  # the fuser's own rule for "auto"
    if spread > TEMPLATE_SPREAD_LIMIT and tried < TEMPLATE_RETRY_RESTARTS:
        retry = clone(template_fuser).set_params(n_restarts=TEMPLATE_RETRY_RESTARTS).fit(fit_on)
        union_retry, E0_retry = _replicates(p, retry, est, n_replicates, rng)
        spread_retry = _spread_ratio(E0_retry, E)
        logger.info("trend_null_test: the twins scatter %.1f times as widely as the data; with %d restarts of the "
                    "template, %.1f times", spread, TEMPLATE_RETRY_RESTARTS, spread_retry)
        if spread_retry < spread:
            template, union, E0, spread = retry, union_retry, E0_retry, spread_retry
    Z0 = np.asarray(encoder.transform(union), dtype=np.float64).reshape(n_replicates, p.n_particles, -1)
    null_curves = np.empty((n_replicates, n_bins))
    null_dims = np.empty(n_replicates, dtype=np.int64)
    for r in range(n_replicates):  # a loop over twin replicates: the same procedure as on the data
        ax0 = _bin(Z0[r], E0[r], dimension, n_bins, candidates, direction)
        null_curves[r] = per_bin_statistic(E0[r], ax0.bins, n_bins)
        null_dims[r] = ax0.dimension
    null_rises = _rise(null_curves)
    mu, sd = null_rises.mean(), null_rises.std(ddof=1)
    scale = sd * np.sqrt(1.0 + 1.0 / n_replicates)
    if sd > 0:
        p_value = float(student_t.sf((rise - mu) / scale, df=n_replicates - 1))
    else:
        p_value = 1.0 if rise <= mu else 0.0
    detectable = float(mu + student_t.isf(alpha, df=n_replicates - 1) * scale)
    p_rank = float((1 + np.sum(null_rises >= rise)) / (1 + n_replicates))
    centred = null_curves - null_curves.mean(axis=1, keepdims=True)
    low, high = np.percentile(centred, [2.5, 97.5], axis=0) + curve.mean()
    detected = bool(p_value < alpha)
    name = names[axis.dimension]
    feature = str(est.get_feature_names_out()[0])
    quantity = quantity_name(feature, est)  # a pore's height: its ring distance
    if detected:
        verdict = (f"{quantity} varies along {name} beyond what labelling and noise produce "
                   f"(p = {_format_p(p_value, alpha)})")
    else:
        unit = " nm" if feature.endswith("_nm") else ""
        k = _digits(rise, detectable, 1)
        verdict = (f"no heterogeneity beyond the matched null (p = {_format_p(p_value, alpha)}): the median "
                   f"{quantity} rises {rise:.{k}f}{unit} across the bins, and only a rise above {detectable:.{k}f}{unit} "
                   "would have been called")
    logger.info("trend_null_test: %s", verdict)
    return TrendNullResult(
        detected=detected, p_value=p_value, p_value_rank=p_rank, alpha=float(alpha), dimension=axis.dimension,
        feature_name=name, verdict=verdict, rise=rise, null_rises=null_rises, detectable_rise=detectable, curve=curve,
        null_curves=null_curves, null_dimensions=null_dims, null_low=low, null_high=high,
        twin_spread_ratio=spread, fuser=template,
    )


def _bin(Z, E, dimension, n_bins, candidates, direction):
    """The workflow's binning of one set: along a chosen (or given) dimension, or along its own latent direction."""
    if direction is None:
        return bin_along_axis(Z, E, dimension=dimension, n_bins=n_bins, candidates=candidates)
    d = clone(direction).fit_transform(Z, E)
    return bin_along_axis(np.c_[Z, d], E, dimension=Z.shape[1], n_bins=n_bins)


def _replicates(p: Particles, template, est, n_replicates: int, rng) -> tuple[Particles, np.ndarray]:
    """``n_replicates`` twin sets of ``p`` drawn from ``template``, as one set, and their estimates (replicate, particle)."""
    model = _twin_model(p, template)  # the sites and their displacement, measured once for all replicates
    twins = [_draw_twins(model, rng) for _ in range(n_replicates)]
    union = Particles(
        coords=np.concatenate([t.coords for t in twins]),
        offsets=np.concatenate([[0]] + [t.offsets[1:] + r * p.offsets[-1] for r, t in enumerate(twins)]),
        fields={k: np.concatenate([t.fields[k] for t in twins]) for k in twins[0].fields},
    )
    with warnings.catch_warnings():  # the twins repeat the data's doubts, which the data's own estimate said
        warnings.simplefilter("ignore", UserWarning)
        E0 = np.asarray(est.fit_transform(union), dtype=np.float64)[:, 0]
    return union, E0.reshape(n_replicates, p.n_particles)


def _spread_ratio(twin_estimates, estimates) -> float:
    """The 10-90 % range of the twins' estimates over that of the data's (inf where the data's is 0 and theirs not)."""
    twins = float(np.subtract(*np.percentile(twin_estimates, [90, 10])))
    data = float(np.subtract(*np.percentile(estimates, [90, 10])))
    if data > 0:
        return twins / data
    return 1.0 if twins == 0 else float("inf")
