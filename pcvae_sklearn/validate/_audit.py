"""Confound audit: does a latent dimension track a nuisance instead of structure?"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .._input import as_particles
from .._latents import check_latents
from .._ragged import precision_sd

__all__ = ["confound_audit", "principal_axis_angles", "circular_linear_correlation"]


def principal_axis_angles(X):
    """In-plane angle of every particle's principal axis, in ``(-pi/2, pi/2]``.

    The angle of the major axis of the covariance of the particle's x, y
    coordinates (z is ignored): ``0.5 * atan2(2 s_xy, s_xx - s_yy)``. It is
    an axis, not a direction, so it is defined modulo pi; pass ``2 *
    angle`` to circular statistics. For a particle with (near) rotational
    symmetry the axis is set by noise and missing sites, which is exactly
    the pose a PointNet encoder can pick up.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays

    Returns
    -------
    ndarray of shape (n_particles,)

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.validate import principal_axis_angles
    >>> rod = np.array([[50.0, 5.0], [50.0, -5.0], [-50.0, 5.0], [-50.0, -5.0]])
    >>> c, s = np.cos(0.5), np.sin(0.5)
    >>> principal_axis_angles([rod, rod @ np.array([[c, -s], [s, c]]).T]).round(3).tolist()
    [0.0, 0.5]
    """
    p = as_particles(X)
    xy = p.coords[:, :2] - np.repeat(p.centroids()[:, :2], p.lengths, axis=0)
    sxx = p.segment_sum(xy[:, 0] ** 2)
    syy = p.segment_sum(xy[:, 1] ** 2)
    sxy = p.segment_sum(xy[:, 0] * xy[:, 1])
    return 0.5 * np.arctan2(2.0 * sxy, sxx - syy)


def circular_linear_correlation(x, angles):
    """Circular-linear correlation of linear variables with an angle, and its p-value.

    Mardia's coefficient: with ``r_xc``, ``r_xs``, ``r_cs`` the Pearson
    correlations of ``x`` with ``cos(angle)``, of ``x`` with
    ``sin(angle)`` and of ``cos`` with ``sin``,

    ``r^2 = (r_xc^2 + r_xs^2 - 2 r_xc r_xs r_cs) / (1 - r_cs^2)``,

    in ``[0, 1]``: the multiple correlation of ``x`` with ``cos`` and ``sin``.
    It detects any dependence of the form ``x ~ a cos(angle - b)``. Under
    independence ``n r^2`` is asymptotically chi-square with 2 degrees of
    freedom, which gives ``p = exp(-n r^2 / 2)``.

    Parameters
    ----------
    x : array-like of shape (n,) or (n, k)
        Linear variables (e.g. latent dimensions), one column each.
    angles : array-like of shape (n,)
        Angles in radians.

    Returns
    -------
    r : ndarray of shape (k,)
    p_value : ndarray of shape (k,)
        NaN where a column (or the angle's cos or sin) is constant.

    References
    ----------
    .. [1] Mardia, K. V. "Linear-circular correlation coefficients and
       rhythmometry." Biometrika 63, 403-405 (1976).
    .. [2] Mardia, K. V. and Jupp, P. E. "Directional Statistics", Wiley
       (2000), section 11.2.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.validate import circular_linear_correlation
    >>> a = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    >>> r, p = circular_linear_correlation(np.c_[np.cos(a - 1.0), np.ones(100)], a)
    >>> r.round(3).tolist()
    [1.0, nan]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    angles = np.asarray(angles, dtype=np.float64)
    n = x.shape[0]
    if angles.shape != (n,):
        raise ValueError(f"angles has shape {angles.shape}; expected ({n},), one per row of x.")
    if not (np.isfinite(x).all() and np.isfinite(angles).all()):
        raise ValueError("x and angles must be finite.")

    def corr(a, b):  # Pearson of every column of a with the vector b
        a = a - a.mean(axis=0)
        b = b - b.mean()
        den = np.sqrt((a**2).sum(axis=0) * (b**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b[:, None]).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)

    c, s = np.cos(angles), np.sin(angles)
    rxc, rxs = corr(x, c), corr(x, s)
    rcs = corr(c[:, None], s)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = (rxc**2 + rxs**2 - 2 * rxc * rxs * rcs) / (1 - rcs**2)
    r2 = np.where(np.isfinite(r2), np.clip(r2, 0.0, 1.0), np.nan)
    return np.sqrt(r2), np.exp(-n * r2 / 2)


def confound_audit(X, latents, *, angles=None, angle_symmetry=1, extra=None, threshold=0.3, alpha=0.01, feature_names=None):
    """Correlation of every latent dimension with nuisances, with flags.

    A latent dimension that orders particles by their number of
    localizations, their localization precision or the angle at which they
    were picked describes the measurement, not the structure; the per-bin
    super-particles along it would still differ (more localizations look
    "fuller"), and could be mistaken for heterogeneity. For every latent
    dimension this gives:

    - ``n_localizations``: Spearman correlation with the localization count;
    - ``mean_precision``: Spearman correlation with the particle's mean
      ``precision`` field (if the particles have one);
    - ``angle``: circular-linear correlation (Mardia) with the in-plane
      angle: ``angles`` if given (e.g. the rotation angles of a fitted
      :class:`~pcvae_sklearn.ParticleFuser`:
      ``np.arctan2(fuser.rotations_[:, 1, 0], fuser.rotations_[:, 0, 0])``),
      otherwise the angle of the particle's principal axis
      (:func:`principal_axis_angles`, an axis, so doubled);
    - one Spearman row per entry of ``extra`` (photons, frame, ...).

    A row is ``flagged`` when ``|correlation| >= threshold`` and
    ``p_value < alpha``: both a real effect size and more than chance.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        The particles the latents belong to.
    latents : array-like of shape (n_particles, n_latent)
    angles : array-like of shape (n_particles,), optional
        In-plane angle of every particle, radians.
    angle_symmetry : int, default=1
        Rotational symmetry of the structure (8 for a nuclear pore): the
        given ``angles`` are multiplied by it, since angles that differ by
        ``2 pi / angle_symmetry`` are the same pose. Not applied to the
        principal-axis angles (already doubled).
    extra : dict of str to array-like of shape (n_particles,), optional
        Further per-particle nuisances.
    threshold : float, default=0.3
        Smallest |correlation| that is flagged.
    alpha : float, default=0.01
        Largest p-value that is flagged.
    feature_names : list of str, optional
        Names of the latent dimensions (default ``pcvae0, ...``).

    Returns
    -------
    pandas.DataFrame
        One row per (latent dimension, nuisance): ``latent``, ``nuisance``,
        ``method`` (``"spearman"`` or ``"circular-linear"``),
        ``correlation``, ``p_value`` (two-sided Spearman; asymptotic
        chi-square for circular-linear) and ``flagged``. Correlations with a
        constant nuisance are NaN and never flagged.

    See Also
    --------
    heterogeneity_null_test : is the structural variation along a dimension real?
    pcvae_sklearn.latent_correlation_table : correlation with structure estimates.

    References
    ----------
    .. [1] Mardia, K. V. "Linear-circular correlation coefficients and
       rhythmometry." Biometrika 63, 403-405 (1976).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.validate import confound_audit
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(0, 30, (n, 2)) for n in rng.integers(20, 200, 100)]
    >>> counts = np.array([len(x) for x in X])
    >>> Z = np.c_[rng.normal(size=100), counts + rng.normal(0, 10, 100)]
    >>> audit = confound_audit(X, Z)
    >>> audit.loc[audit["flagged"], ["latent", "nuisance"]].values.tolist()
    [['pcvae1', 'n_localizations']]
    """
    import pandas as pd

    p = as_particles(X)
    n = p.n_particles
    if n < 3:
        raise ValueError(f"X holds {n} particle(s); a correlation needs at least 3.")
    Z = check_latents(latents, n)
    k = Z.shape[1]
    names = [f"pcvae{j}" for j in range(k)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != k:
        raise ValueError(f"feature_names has {len(names)} names for {k} latent dimensions.")
    if not (0 <= threshold <= 1):
        raise ValueError(f"threshold must be in [0, 1]; got {threshold!r}.")
    nuisances = {"n_localizations": p.lengths.astype(np.float64)}
    if "precision" in p.fields:
        lateral = precision_sd(p, "; the audit correlates the latents with each particle's mean precision: correct "
                                  "those values, or drop the field.")[:, 0]
        nuisances["mean_precision"] = p.segment_sum(lateral) / p.lengths
    for key, value in (extra or {}).items():
        v = np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float64)
        if v.shape != (n,) or not np.isfinite(v).all():
            raise ValueError(f"extra[{key!r}] must be {n} finite values, one per particle; got shape {v.shape}.")
        nuisances[str(key)] = v
    if angles is None:
        circ = 2.0 * principal_axis_angles(p)
    else:
        a = np.asarray(angles, dtype=np.float64)
        if a.shape != (n,) or not np.isfinite(a).all():
            raise ValueError(f"angles must be {n} finite values in radians, one per particle; got shape {a.shape}.")
        circ = angle_symmetry * a
    rows = []
    for name, v in nuisances.items():  # a loop over a handful of nuisances
        for j in range(k):
            if np.ptp(v) == 0 or np.ptp(Z[:, j]) == 0:
                rho, pv = np.nan, np.nan
            else:
                rho, pv = spearmanr(Z[:, j], v)
            rows.append((names[j], name, "spearman", float(rho), float(pv)))
    r, pv = circular_linear_correlation(Z, circ)
    rows += [(names[j], "angle", "circular-linear", float(r[j]), float(pv[j])) for j in range(k)]
    table = pd.DataFrame(rows, columns=["latent", "nuisance", "method", "correlation", "p_value"])
    corr = table["correlation"].to_numpy()
    pvals = table["p_value"].to_numpy()
    with np.errstate(invalid="ignore"):
        table["flagged"] = (np.abs(corr) >= threshold) & (pvals < alpha)
    return table
