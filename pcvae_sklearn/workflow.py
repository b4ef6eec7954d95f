"""The paper's workflow in one call: encode, bin, fuse, estimate.

:func:`analyse` is what the ``pcvae`` command line runs; it is also the
shortest way to reproduce the paper's per-bin figures from Python.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn import config_context
from sklearn.base import clone

from ._diagnostics import check_bins, precision_caveat, workflow_warnings
from ._input import as_particles
from ._ragged import Particles, precision_sd
from .bin import LatentDirection, bin_along_axis
from .encode import LatentUnmixer, PointCloudVAE
from .estimate import OutOfPlaneWarning, latent_correlation_table, make_estimator
from .estimate._names import quantity_name
from .validate import axis_stability, bin_bootstrap_intervals, per_bin_statistic, trend_null_test
from .validate._stability import against

__all__ = ["WorkflowResult", "analyse"]

logger = logging.getLogger(__name__)

#: the library's own files: their warnings join a run's findings
_PACKAGE = Path(__file__).resolve().parent

#: how a detected trend's verdict ends where many particles look turned out of the plane (the remedy it names)
REGISTER_FIRST = ": register them first"

#: independent components beside the VAE's axes with ``analyse(unmix="both")``: on simulated 3D pores, 4
#: found both the radius and the ring distance most reliably (docs/choosing_parameters.md)
BOTH_COMPONENTS = 4


@dataclass
class WorkflowResult:
    """Everything :func:`analyse` produced.

    Attributes
    ----------
    vae : PointCloudVAE
        The fitted model.
    latents : ndarray of shape (n_particles, n_axes)
        By default (``analyse(..., unmix="both")``) the posterior means
        (``latent_dim`` columns) and, after them, their independent
        components; the means alone with ``unmix=False``, the components
        alone with ``unmix=True``. With ``axis="direction"`` (the default)
        a last column ``latent_<estimate>``: every particle's estimate as
        the other particles' latents predict it (``direction``).
    estimates : ndarray of shape (n_particles, 2)
        Per-particle estimate and its precision (nm).
    estimate_name : str
        ``"radius_nm"`` or ``"height_nm"``.
    estimator : RadiusEstimator or HeightEstimator
        The fitted estimator behind ``estimates``; a ``HeightEstimator``'s
        ``structure_`` says which height it measured ("pore": the distance
        between the two rings).
    correlations : pandas.DataFrame
        Pearson and Spearman of every latent dimension with the estimate.
    dimension : int
        The column of ``latents`` along which the bins were fused: the
        latent direction (the last column) by default, the axis with the
        largest |Spearman| with the estimate with ``axis="single"``, or the
        one given.
    dimension_given : bool
        Whether ``dimension`` was the caller's (``analyse(dimension=...)``)
        rather than chosen.
    orientation : {1.0, -1.0}
        The sign applied to the latent before binning, so that the estimate
        grows with the bin number (a latent dimension's sign is arbitrary;
        -1 means the axis was flipped).
    bins : ndarray of shape (n_particles,)
        Bin of every particle along ``orientation * latents[:, dimension]``,
        numbered ``1 .. n_bins`` as in the tables and figures.
    bin_table : pandas.DataFrame
        One row per bin (``bin`` = 1 .. n_bins): ``n_particles``,
        ``latent_mean``; ``particle_median_<estimate>``, the median
        per-particle estimate, with ``ci_low`` / ``ci_high``, its 95 %
        percentile bootstrap interval over the bin's particles (the interval
        is for this median, not for the super-particle); with fusion,
        ``super_particle_<estimate>`` and ``super_particle_<...>_precision_nm``,
        the localization-level precision FWHM/sqrt(n), which counts
        localizations as independent and so understates the uncertainty,
        and ``n_flagged``, the bin's particles its fusion flagged
        (``ParticleFuser.flagged_``: a registration score far below the
        bin's median);
        with the null, ``null_low`` / ``null_high``, the band the median
        curve stays in when the particles are homogeneous
        (:func:`pcvae_sklearn.validate.trend_null_test`).
    fusion : BinFusion or None
        The per-bin super-particles (None when fusion was skipped).
    seconds : dict
        Wall time of each step.
    unmixer : LatentUnmixer, FeatureUnion or None
        What follows the VAE: the fitted ``LatentUnmixer`` with
        ``unmix=True``; with ``unmix="both"``, a ``FeatureUnion`` that passes
        the VAE's axes through and appends the unmixer's components (its
        step ``"unmixed"``).
    warnings : list of str
        What the run found doubtful (few particles per bin, a diverging
        epoch, particles that are not rings for a radius, ...), and what
        its steps warned of (an estimator's doubt about the structure, a
        field left out, ...); each once, also issued as a
        :class:`UserWarning` (of the class it was raised with) when the run
        ends.
    heterogeneity : dict or None
        The null's verdict (None with ``null=False``): ``detected`` (bool),
        ``p_value``, ``dimension``, ``verdict`` (one line), and ``rise``,
        ``null_rise_mean``, ``null_rise_sd``, ``detectable_rise`` (the
        smallest rise the null would call), ``twin_spread_ratio``,
        ``p_value_rank``, ``alpha``, ``n_replicates`` (see
        :func:`pcvae_sklearn.validate.trend_null_test`), and
        ``reproducibility``: the binned axis's smallest |Spearman| with its
        matches in the other seeds, or for the latent direction with the
        other seeds' own directions (None with ``n_seeds=1``); below 0.9 the
        verdict says the axis is unconfirmed. And ``choice_agreement``, as
        the attribute of that name. A detected trend's verdict also says
        where the estimator warned that many particles look turned out of
        the plane (:class:`~pcvae_sklearn.estimate.OutOfPlaneWarning`).
    null : TrendNullResult or None
        The null's full result (the twins' curves and rises).
    stability : AxisStability or None
        Which axes of this fit come back with other seeds, and what each
        tracks (:func:`pcvae_sklearn.validate.axis_stability`); None with
        ``n_seeds=1``.
    direction : LatentDirection or None
        The fitted direction behind the ``latent_<estimate>`` column (None
        with ``axis="single"``).
    choice_agreement : float or None
        With the direction: its smallest |Spearman| with the direction each
        other seed's fit gives. With a single axis, whether the choice of
        axis comes back: the smallest |Spearman|, over
        the other seeds' fits, between the binned axis and the axis the same
        rule picks in that fit (:meth:`AxisStability.choice_agreement
        <pcvae_sklearn.validate.AxisStability.choice_agreement>`). An axis
        may come back while another seed's fit bins along another one that
        tracks the estimate better there; below 0.9 a warning, and the
        verdict, say the axis is unconfirmed. None when ``dimension`` was
        given or with ``n_seeds=1``.
    """

    vae: PointCloudVAE
    latents: np.ndarray
    estimates: np.ndarray
    estimate_name: str
    correlations: object
    dimension: int
    orientation: float
    bins: np.ndarray
    bin_table: object
    fusion: object = None
    seconds: dict = field(default_factory=dict)
    unmixer: object = None
    warnings: list = field(default_factory=list)
    heterogeneity: dict = None
    null: object = field(default=None, repr=False)
    stability: object = field(default=None, repr=False)
    dimension_given: bool = False
    choice_agreement: float = None
    direction: object = None
    estimator: object = None

    @property
    def feature_names(self) -> np.ndarray:
        """Names of the columns of ``latents``: ``pcvae0, ...``, ``ic0, ...`` or both, then ``latent_<estimate>``."""
        names = self.vae.get_feature_names_out()
        names = names if self.unmixer is None else self.unmixer.get_feature_names_out(names)
        if self.direction is not None:
            names = np.r_[names, [_direction_name(self.estimate_name)]].astype(object)
        return names

    @property
    def binned_direction(self) -> bool:
        """Whether the bins follow the latent direction (the last column of ``latents``)."""
        return self.direction is not None and self.dimension == self.latents.shape[1] - 1

    @property
    def latent_unmixer(self):
        """The fitted :class:`LatentUnmixer` behind the ``ic*`` columns (alone, or the union's ``"unmixed"`` step), or None."""
        if self.unmixer is None or isinstance(self.unmixer, LatentUnmixer):
            return self.unmixer
        return self.unmixer.named_transformers["unmixed"]

    @property
    def encoder(self):
        """What maps particles to ``latents``: the VAE, or a Pipeline of the VAE, the unmixer and the direction.

        The direction's column comes from the regression on all particles
        (``LatentDirection.transform``), which for the fitted particles is
        close to, but not the same as, ``latents``' cross-fitted column.
        """
        from sklearn.pipeline import FeatureUnion, make_pipeline

        steps = [self.vae] + ([] if self.unmixer is None else [self.unmixer])
        if self.direction is not None:
            steps.append(FeatureUnion([("latent", "passthrough"), ("direction", self.direction)]))
        return steps[0] if len(steps) == 1 else make_pipeline(*steps)


def analyse(X, *, vae=None, estimate="radius", n_bins=20, dimension=None, fuse=True, fuser=None, n_jobs=None,
            random_state=None, axis="direction", unmix="both", unmix_components=None, null=True, n_null=19,
            alpha=0.01, null_fuser=None, n_bootstrap=1000, n_seeds=2):
    """Fit a PC-VAE, bin along the latent direction (or axis) that tracks ``estimate``, fuse and estimate per bin.

    Parameters
    ----------
    X : particles
        Anything :func:`pcvae_sklearn.as_particles` accepts.
    vae : PointCloudVAE, optional
        The encoder's settings: it is cloned and the clone fitted
        (``result.vae``); ``PointCloudVAE(random_state=random_state)`` by
        default.
    estimate : {"radius", "height", "tetrahedron", "pore"}, default="radius"
        The model-based estimate used to pick the dimension and to describe
        each bin.
    n_bins : int, default=20
        Equal-count bins along the chosen dimension; every bin needs at
        least 2 particles, and fewer than about 10 per bin give noisy
        per-bin figures (a warning says so).
    dimension : int, optional
        Column of ``WorkflowResult.latents`` to bin along; by default the
        latent direction (``axis="direction"``) or the axis with the
        largest |Spearman| with the per-particle estimate (``axis="single"``).
    fuse : bool, default=True
        Fuse each bin into a super-particle (``ParticleFuser``) and estimate on
        it, as the paper does; otherwise only per-particle estimates are summarised.
    fuser : ParticleFuser, optional
        The fuser to clone for every bin.
    n_jobs : int, optional
        Bins fused in parallel (joblib).
    random_state : int or None
    axis : {"direction", "single"}, default="direction"
        What the bins follow. ``"direction"``: the direction in the latent
        space that predicts the estimate (:class:`~pcvae_sklearn.bin.LatentDirection`,
        cross-fitted so that no particle's bin comes from its own
        estimate), appended to ``latents`` as the column
        ``latent_<estimate>``. A VAE's single axes are not identifiable:
        another seed's fit can split or turn the axis that tracks the
        estimate, while the direction along which the estimate changes comes
        back (``docs/choosing_parameters.md``). ``"single"``: the paper's
        choice, one latent axis among ``unmix``'s candidates.
    unmix : {"both", False, True}, default="both"
        Which axes are candidates for the binned dimension with
        ``axis="single"`` (and, with ``axis="direction"``, the columns the
        direction is fitted on and the correlation table shows). ``"both"``: the
        VAE's axes and, beside them, the independent components
        (:class:`LatentUnmixer`) of the latent's top ``unmix_components``
        principal directions (4 when None); with ``n_seeds`` above 1 each
        kind is matched across seeds among its own kind. Where two
        parameters vary (a 3D pore's radius and ring distance) a component
        usually tracks each more closely than any VAE axis and comes back
        with other seeds more often; where one dominates (2D pores,
        tetrahedra) a VAE axis wins, and the bins are those of
        ``unmix=False`` (``docs/choosing_parameters.md``). False: the VAE's
        axes only.
        True: the components only, which harms one-parameter data (see
        ``LatentUnmixer``).
    unmix_components : int or None, default=None
        With ``unmix``, ``LatentUnmixer``'s ``n_components``. None unmixes
        the active latent dimensions (``unmix=True``), which with the VAE's
        default latent batch norm are all of them (``LatentUnmixer``
        warns), or the top 4 principal directions (``unmix="both"``). An
        integer k unmixes the k principal directions of the latent; on
        simulated 3D pores k=4 found both parameters most reliably
        (``docs/choosing_parameters.md``).
    null : bool, default=True
        Run the matched homogeneous null
        (:func:`pcvae_sklearn.validate.trend_null_test`): all particles
        fused once, ``n_null`` sets of homogeneous twins encoded by the
        fitted VAE (no refit) and binned by the same procedure. It adds the
        ``null_low`` / ``null_high`` band to ``bin_table`` and the verdict
        to ``heterogeneity``.
    n_null : int, default=19
        Twin replicates of the null (at least 5).
    alpha : float, default=0.01
        Level of the null's verdict: ``detected`` when ``p_value < alpha``.
        Stricter than 0.05 because data and twins are not exactly
        exchangeable (the VAE was fitted on the data).
    null_fuser : ParticleFuser, optional
        The fusion of all particles that defines the twins' structure;
        default ``ParticleFuser(max_iter=100)`` with one restart for 2D
        particles and two for 3D ones; a template whose twins scatter too
        widely is fused again with 6 restarts (see
        :func:`pcvae_sklearn.validate.trend_null_test`).
    n_bootstrap : int, default=1000
        Resamples of each bin's particles for ``ci_low`` / ``ci_high``.
    n_seeds : int, default=2
        The encoder is also fitted with ``n_seeds - 1`` other seeds, and
        :func:`~pcvae_sklearn.validate.axis_stability` says which axes of
        this fit come back (|Spearman| at least 0.9 between every pair of
        seeds). With ``axis="single"`` the dimension is then chosen among
        the reproducible axes only, for the data and the null's twins
        alike; if none is reproducible, among all, with a warning, and the
        verdict calls the axis unconfirmed. With ``axis="direction"`` every
        other seed's fit gives its own latent direction, and one that
        disagrees with this fit's (|Spearman| below 0.9) makes the verdict
        call the axis unconfirmed. Each seed costs one more fit; 1 skips
        the check, and more seeds make it stricter (the paper's VAE is not
        identifiable: two fits can split, merge or turn axes).

    Returns
    -------
    WorkflowResult

    Warns
    -----
    UserWarning
        For each doubtful finding, the run's own and its steps', once each
        when the run ends, also listed in ``WorkflowResult.warnings``.
    """
    # every step works on arrays, also where the caller set sklearn's transform_output="pandas"; what the steps
    # warn of (an estimator's doubt about the structure, a field left out, ...) joins the run's own findings, so
    # that result.warnings, the report and `pcvae run` hold all of it
    with config_context(transform_output="default"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _analyse(X, vae=vae, estimate=estimate, n_bins=n_bins, dimension=dimension, fuse=fuse, fuser=fuser,
                          n_jobs=n_jobs, random_state=random_state, axis=axis, unmix=unmix,
                          unmix_components=unmix_components, null=null, n_null=n_null, alpha=alpha,
                          null_fuser=null_fuser, n_bootstrap=n_bootstrap, n_seeds=n_seeds)
    category = {}  # each message's own class (OutOfPlaneWarning, ...), kept when it is issued again
    for w in caught:
        if issubclass(w.category, UserWarning) and Path(w.filename).resolve().is_relative_to(_PACKAGE):
            if str(w.message) not in result.warnings:  # once, though every seed's fit may say it again
                result.warnings.append(str(w.message))
                category[str(w.message)] = w.category
        else:  # another library's (torch's, scikit-learn's) warnings pass as they came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in result.warnings:
        warnings.warn(message, category.get(message, UserWarning), stacklevel=2)
    return result


def _analyse(X, *, vae=None, estimate="radius", n_bins=20, dimension=None, fuse=True, fuser=None, n_jobs=None,
             random_state=None, axis="direction", unmix="both", unmix_components=None, null=True, n_null=19,
             alpha=0.01, null_fuser=None, n_bootstrap=1000, n_seeds=2):
    """:func:`analyse` under scikit-learn's default output configuration."""
    import pandas as pd

    if axis not in ("direction", "single"):
        raise ValueError(f'axis must be "direction" or "single"; got {axis!r}.')
    if isinstance(unmix, str) and unmix != "both" or not isinstance(unmix, (bool, np.bool_, str)):
        raise ValueError(f'unmix must be True, False or "both"; got {unmix!r}.')
    if unmix_components is not None:  # checked before the (long) fit
        if not unmix:
            raise ValueError('unmix_components is set but unmix is False; pass unmix="both" or True to unmix the '
                             'latent axes.')
        latent_dim = PointCloudVAE().latent_dim if vae is None else vae.latent_dim
        if isinstance(unmix_components, bool) or not isinstance(unmix_components, (int, np.integer)) or not (
            1 <= unmix_components <= latent_dim
        ):
            raise ValueError(f"unmix_components must be an integer from 1 to latent_dim={latent_dim}; got {unmix_components!r}.")
    # the null's and the bootstrap's parameters, checked before the (long) fit
    if not isinstance(null, (bool, np.bool_)):
        raise ValueError(f"null must be True or False; got {null!r}.")
    if isinstance(n_null, bool) or not isinstance(n_null, (int, np.integer)) or n_null < 5:
        raise ValueError(f"n_null must be an integer of at least 5; got {n_null!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}.")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 10:
        raise ValueError(f"n_bootstrap must be an integer of at least 10; got {n_bootstrap!r}.")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds must be an integer of at least 1; got {n_seeds!r}.")
    seconds = {}
    p: Particles = as_particles(X, min_particles=2, what="particles")
    first = p.coords[: p.lengths[0]].ravel()
    if (p.lengths == p.lengths[0]).all() and (p.coords.reshape(p.n_particles, -1) == first).all():
        raise ValueError(f"all {p.n_particles} particles are the same localizations: there is no variation to find.")
    check_bins(p.n_particles, n_bins)
    est = make_estimator(estimate, p.n_dims)
    # what the encoder, the estimate and the null cannot use fails now, not after the (long) fit
    precision_sd(p, "; the encoder, the estimate and the null all use the precision field: correct those values, or "
                    "drop the field to analyse without precisions.")
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        E = est.fit_transform(p)
    for w in said:  # passed on as they came; analyse gathers them with the rest
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out_of_plane = any(issubclass(w.category, OutOfPlaneWarning) for w in said)
    name = str(est.get_feature_names_out()[0])
    quantity = quantity_name(name, est)  # as a reader says it: a pore's height is its ring distance
    if getattr(est, "structure", None) == "auto":  # the super-particles and the twins are measured as the data were
        estimate = clone(est).set_params(structure=est.structure_)
    seconds["estimate_and_bin"] = time.perf_counter() - t

    t = time.perf_counter()
    vae = PointCloudVAE(random_state=random_state) if vae is None else clone(vae)  # the caller's stays as it is
    Z = vae.fit(p).transform(p)
    unmixer = None
    names = vae.get_feature_names_out()
    groups = None
    if unmix == "both":
        from sklearn.pipeline import FeatureUnion

        k = min(BOTH_COMPONENTS, Z.shape[1]) if unmix_components is None else int(unmix_components)
        unmixer = FeatureUnion([("latent", "passthrough"),
                                ("unmixed", LatentUnmixer(n_components=k, random_state=random_state))],
                               verbose_feature_names_out=False).fit(Z)
        groups = np.r_[np.zeros(Z.shape[1], dtype=np.int64), np.ones(k, dtype=np.int64)]
        Z, names = unmixer.transform(Z), unmixer.get_feature_names_out(names)
    elif unmix:
        unmixer = LatentUnmixer(n_components=unmix_components, random_state=random_state).fit(Z)
        Z, names = unmixer.transform(Z), unmixer.get_feature_names_out()
    n_encoded = Z.shape[1]  # the encoder's columns; the direction, if any, follows them
    direction = None
    if axis == "direction":
        direction = LatentDirection(random_state=random_state)
        Z = np.c_[Z, direction.fit_transform(Z, E[:, 0])]
        names = np.r_[names, [_direction_name(name)]].astype(object)
    seconds["fit_transform"] = time.perf_counter() - t
    stability, candidates, found = None, None, []
    if n_seeds > 1:
        t = time.perf_counter()
        # every seed unmixes as many components as this fit did, so that their axes can be matched one to one
        if unmixer is None:
            template = clone(vae)
        elif groups is None:  # unmix=True: this fit's number of active dimensions, fixed
            template = _pipeline(clone(vae), clone(unmixer).set_params(n_components=unmixer.n_components_))
        else:  # unmix="both": the number is fixed already
            template = _pipeline(clone(vae), clone(unmixer))
        stability = axis_stability(p, template, n_seeds=n_seeds, latents=[Z[:, :n_encoded]],
                                   estimates={name: E[:, 0]}, feature_names=names[:n_encoded], groups=groups,
                                   random_state=random_state)
        candidates = np.flatnonzero(stability.reproducible)
        if direction is not None:
            candidates = None  # the single axes are described, not chosen from
        elif len(candidates) == 0:
            candidates = None
            found.append(f"no latent axis came back in all {n_seeds} seeds (|Spearman| >= {stability.threshold:g} "
                         "between every pair): the binned axis may not exist in another fit; treat its trend as "
                         "unconfirmed")
        seconds["stability"] = time.perf_counter() - t
    t = time.perf_counter()
    table = latent_correlation_table(Z, {name: E[:, 0]}, feature_names=names)
    binned = n_encoded if dimension is None and direction is not None else dimension
    axis = bin_along_axis(Z, E[:, 0], dimension=binned, n_bins=n_bins, candidates=candidates)
    bins = axis.bins
    on_direction = direction is not None and axis.dimension == n_encoded
    agreement = None
    if stability is not None and on_direction:  # another seed's fit has its own direction: does it agree?
        agreement = float(min(
            abs(spearmanr(Z[:, n_encoded], clone(direction).fit_transform(other, E[:, 0])[:, 0])[0])
            for other in stability.latents[1:]))
        if agreement < stability.threshold:
            found.append(f"the fit with another seed predicts the {quantity} along a different latent direction "
                         f"(|Spearman| {against(agreement, stability.threshold)} with {names[n_encoded]}): the axis "
                         "does not come back; treat its trend as unconfirmed")
    elif stability is not None and dimension is None:  # would another seed's fit, choosing the same way, agree?
        agreement = float(stability.choice_agreement(axis.dimension, name, candidates).min())
        if candidates is not None and agreement < stability.threshold:
            found.append(f"the fit with another seed, choosing the same way, bins along a different axis (|Spearman| "
                         f"{against(agreement, stability.threshold)} with {names[axis.dimension]}): the choice of "
                         "axis does not come back; treat its trend as unconfirmed")
    seconds["estimate_and_bin"] += time.perf_counter() - t

    counts = np.bincount(bins, minlength=n_bins + 1)[1:]
    ci_low, ci_high = bin_bootstrap_intervals(E[:, 0], bins, n_bins, statistic="median", n_bootstrap=n_bootstrap,
                                              random_state=random_state)
    rows = {
        "bin": np.arange(1, n_bins + 1),
        "n_particles": counts,
        "latent_mean": np.bincount(bins, weights=Z[:, axis.dimension], minlength=n_bins + 1)[1:] / counts,
        f"particle_median_{name}": per_bin_statistic(E[:, 0], bins, n_bins, statistic="median"),
        "ci_low": ci_low,
        "ci_high": ci_high,
    }
    fusion = None
    if fuse:
        from .fuse import fuse_bins

        t = time.perf_counter()
        fusion = fuse_bins(p, bins, fuser, n_jobs=n_jobs, random_state=random_state)
        seconds["fuse"] = time.perf_counter() - t
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sp_est = make_estimator(estimate, p.n_dims).fit_transform(fusion.super_particles)
        for w in caught:  # what the estimator says of "particles" here, it says of the bins' super-particles
            message = w.message
            if issubclass(w.category, UserWarning):
                message = f"the bins' super-particles (particle k is bin k + 1): {w.message}"
            warnings.warn_explicit(message, w.category, w.filename, w.lineno)
        rows[f"super_particle_{name}"] = sp_est[:, 0]
        rows[f"super_particle_{name.replace('_nm', '')}_precision_nm"] = sp_est[:, 1]
        rows["n_flagged"] = np.array([int(f.flagged_.sum()) for f in fusion.fusers])
    null_result, heterogeneity = None, None
    if null:
        t = time.perf_counter()
        encoder = vae if unmixer is None else _pipeline(vae, unmixer)
        if on_direction:  # data and twins alike along their own cross-fitted direction
            given = dict(direction=direction)
        else:
            given = dict(dimension=dimension, candidates=candidates)
        null_result = trend_null_test(p, Z[:, :n_encoded], E, encoder=encoder,
                                      estimate=estimate, n_bins=n_bins, n_replicates=n_null, alpha=alpha,
                                      fuser=null_fuser, feature_names=names, random_state=random_state, **given)
        rows["null_low"], rows["null_high"] = null_result.null_low, null_result.null_high
        heterogeneity = null_result.to_dict()
        heterogeneity["reproducibility"] = heterogeneity["choice_agreement"] = None
        if on_direction and stability is not None:
            heterogeneity["reproducibility"] = heterogeneity["choice_agreement"] = agreement
            if agreement < stability.threshold:
                heterogeneity["verdict"] += (
                    f"; but the fit with another seed predicts the {quantity} along a different latent "
                    f"direction (|Spearman| {against(agreement, stability.threshold)}), so the axis is unconfirmed")
        elif stability is not None and axis.dimension < n_encoded:
            reproducibility = float(stability.reproducibility[axis.dimension])
            heterogeneity["reproducibility"] = reproducibility
            heterogeneity["choice_agreement"] = agreement
            if reproducibility < stability.threshold:
                heterogeneity["verdict"] += (
                    f"; but {names[axis.dimension]} did not come back with another seed (|Spearman| "
                    f"{against(reproducibility, stability.threshold)} < {stability.threshold:g}), so the axis is "
                    "unconfirmed")
            elif agreement is not None and agreement < stability.threshold:
                heterogeneity["verdict"] += (
                    f"; but the fit with another seed bins along a different axis (|Spearman| "
                    f"{against(agreement, stability.threshold)} with {names[axis.dimension]}), so the axis is "
                    "unconfirmed")
        caveat = (precision_caveat(p, Z[:, axis.dimension], str(names[axis.dimension]), alpha)
                  if heterogeneity.get("detected") else None)
        if caveat is not None:
            heterogeneity["verdict"] += "; but " + caveat
            found.append(caveat)
        if out_of_plane and heterogeneity.get("detected"):
            heterogeneity["verdict"] += (
                f"; but many particles look turned out of the plane, where the {quantity} measures "
                f"their orientation as much as their structure (see the warning){REGISTER_FIRST}")
        seconds["null"] = time.perf_counter() - t
    bin_table = pd.DataFrame(rows)
    found = workflow_warnings(p, vae=vae, n_bins=n_bins, estimate_name=name) + found
    return WorkflowResult(
        vae=vae,
        latents=Z,
        estimates=E,
        estimate_name=name,
        correlations=table,
        dimension=axis.dimension,
        orientation=axis.orientation,
        bins=bins,
        bin_table=bin_table,
        fusion=fusion,
        seconds=seconds,
        unmixer=unmixer,
        warnings=found,
        heterogeneity=heterogeneity,
        null=null_result,
        stability=stability,
        dimension_given=dimension is not None,
        choice_agreement=agreement,
        direction=direction,
        estimator=est,
    )


def _direction_name(name):
    """The column of the latent direction of the estimate ``name``: ``"latent_radius_nm"``."""
    return f"latent_{name}"


def _pipeline(vae, unmixer):
    from sklearn.pipeline import make_pipeline

    return make_pipeline(vae, unmixer)
