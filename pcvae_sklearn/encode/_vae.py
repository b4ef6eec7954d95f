"""PointCloudVAE: the scikit-learn estimator around the PC-VAE networks."""

from __future__ import annotations

import inspect
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._input import as_particles
from .._ragged import Particles
from ._batching import (
    LOCALIZATION_BUDGET,
    PARTICLE_BUDGET,
    chunk_by_budget,
    model_coordinates,
    packed_to_device,
    rotate_about_z,
    rotate_tensor_about_z,
)
from ._chamfer import chamfer_distance, pad_packed
from ._fast_encode import FoldedEncoder
from ._networks import checked_device
from ._persistence import load_model, pickled_state, save_checkpoint, save_model, unpickled_state
from ._precision import padded_weights, precision_weights
from ._readout import distil_rotation_average
from ._settings import MODULE_KEYS, resolve_architecture, resolve_training
from ._training import diverged, new_run, resumed_run, split, train, vae_loss

__all__ = ["PointCloudVAE"]


class PointCloudVAE(TransformerMixin, BaseEstimator):
    """Point-cloud variational auto-encoder for SMLM particles (PC-VAE).

    Learns one latent vector per particle from its ragged list of 2D or 3D
    localizations, so that particles can be ordered, binned and fused along
    each latent dimension to reveal continuous structural heterogeneity
    (radius, height, labelling) that particle fusion averages away [1]_.

    The encoder is a PointNet [2]_ (a shared per-localization MLP with batch
    norm and ReLU, masked mean pooling, MLP heads to the mean and
    log-variance of a Gaussian posterior); the decoder is a tanh MLP, a skip
    connection of the global feature, two 1x1 convolutions and multi-head
    self-attention inside one particle. Training minimises the symmetric
    Chamfer distance plus ``beta`` times the KL divergence (warmed up by a
    sigmoid), plus two small penalties on the latent means, with Adam.
    :func:`~pcvae_sklearn.paper_recipe` gives the paper's settings; the
    defaults differ where measurements said so (see Notes).

    Parameters
    ----------
    latent_dim : int, default=8
        Dimension of the latent space.
    beta : float, default=0.003
        Weight of the KL term. The Chamfer distance is computed in units of
        the dataset scale ``scale_``, where a good reconstruction costs a few
        hundredths; from 0.01 up the KL term wins and the latent collapses.
    n_epochs : int, default=4
        Passes over the particles.
    batch_size : int or "auto", default="auto"
        Particles per optimisation step. "auto": 32 for 2D particles, 16
        for 3D ones.
    learning_rate : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam weight decay.
    kl_warmup_steps : int or "auto", default="auto"
        Steps over which the KL weight rises (a sigmoid) from ~0 to ``beta``.
        "auto" uses half of the fit's steps, so the warm-up ends inside the
        fit whatever the data size.
    max_points : int, None or "auto", default="auto"
        During training, particles with more localizations are randomly
        subsampled to ``max_points`` at every step (a new subset each time).
        "auto": 128 for 2D particles, 256 for 3D ones; None never
        subsamples.
        ``transform`` uses every localization: the pooling is a mean, so the
        latent does not depend on the count, and the work is chunked so
        memory stays bounded.
    n_rotations : int, default=8
        How the unknown in-plane angle of a picked particle is handled
        (PointNet is not rotation invariant). From 1 up, every training step
        rotates each particle by a fresh random angle about the optical axis
        (z; in 2D, in-plane), and :meth:`transform` returns the average of
        the latent means at ``n_rotations`` angles (golden-angle steps, which
        never coincide under a pore's 8-fold symmetry). From 2 up, ``fit``
        ends by distilling that average into a linear read-out of one
        encoder pass, which ``transform`` then uses: about ``n_rotations``
        times faster, and less dependent on the picking angle than the
        exact average. 0: no augmentation, one encoding as picked (the
        paper). If ``n_rotations`` is changed after the fit, ``transform``
        computes the exact average over the new number of angles.
    decorrelation : float, default=0.01
        Weight of ``sum_{i != j} corr(mu_i, mu_j)**2``, the squared
        correlations between the latent dimensions' means over the particles
        of a batch, added to the loss from the first step: the dimensions
        are pushed to carry different things. 0 turns it off.
    kurtosis : float, default=0.01
        Weight of ``sum_i mean(mu_i**4)`` over a batch, added like
        ``decorrelation``. For standardised, uncorrelated means this is the
        kurtosis contrast of ICA: each dimension is pushed to follow one
        parameter spread flat over the particles rather than a mixture of
        several. 0 turns it off.
    precision_weighted : bool or "auto", default="auto"
        Measure the Chamfer distance with each localization's precision:
        the squared distance between a localization and a decoded point is
        ``sum_k (x_k - p_k)**2 / s_k**2`` (times one dataset-level constant,
        ``reference_precision_**2``), a Mahalanobis distance with the
        localization's own lateral and, in 3D, axial precision ``s``, in the
        nearest-neighbour search and in the loss alike. A localization
        known to 20 nm along z then counts along z as much as one known to
        8 nm counts laterally; ``s`` is raised to ``precision_floor_``. It
        needs the ``precision`` field and, for 3D particles, ``precision_z``,
        finite and at least 0 nm. "auto" weighs when the data carry them and
        uses the Euclidean distance when they do not (and warns when some
        are not finite or below 0, or their median is 0 nm); True raises a
        ValueError without them; False is the paper's Euclidean distance.
        No precision is ever assumed: ``reference_precision_`` is None when
        the fit was Euclidean. ``reconstruction_error`` and ``score`` use
        the distance the model was trained with.
    architecture : dict or None, default=None
        The network, as a dict of some of these keys (the others keep their
        defaults, the way skorch's ``module__*`` parameters work); None is
        all defaults. The defaults depend on the particles' dimension: 2D
        particles get a lighter network (the three values after "2D:"
        below), which fits 5-6 times faster and follows the radius as well
        on the simulated 2D scenarios but for sparse labelling at 500
        particles; 3D particles need the capacity for their ring distance
        (see "The 2D network" in "Choosing parameters"). An unknown key or
        a bad value raises a ValueError in :meth:`fit`.

        - ``encoder_widths`` (default ``(64, 128, 1024)``; 2D:
          ``(64, 128, 256)``): widths of the shared per-localization MLP.
        - ``decoder_widths`` (``(256, 512, 1024)``): widths of the decoder's
          tanh MLP.
        - ``decoder_channels`` (256; 2D: 128; the paper: 1024): channels of
          the decoder's 1x1 convolutions and attention.
        - ``n_heads`` (4): attention heads; must divide ``decoder_channels``.
        - ``n_output_points`` (128; 2D: 32): points the decoder produces.
        - ``latent_batch_norm`` (True): end the head to the latent mean with
          a batch norm over the particles of the batch, without scale or
          shift [3]_, so every dimension's means spread with unit variance,
          as the prior does. ``transform`` normalises with the running
          statistics, so a latent never depends on the particles it is
          transformed with.
        - ``prior_shape`` (4): the shape ``s`` of the factorised prior of the
          KL term: 2 is the standard normal, an even ``s > 2`` the
          generalised normal of unit variance ``exp(-|z / a|**s)``, flatter
          than a Gaussian (the KL term stays exact).
        - ``compile`` (False): train through ``torch.compile(module,
          dynamic=True)``; the first steps pay the compilation (tens of
          seconds), so it pays off only for long fits. ``module_`` stays the
          plain module.

        ``latent_batch_norm``, ``prior_shape``, ``decorrelation`` and
        ``kurtosis`` together make the training loss do what ICA does; see
        Notes.
    device : str or torch.device, default="cpu"
        Where to train and encode ("cpu", "cuda", "cuda:1", ...).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batching, subsampling, augmentation and
        the reparameterisation noise. The same integer on the same machine
        (and the same number of threads) gives identical latents.
    verbose : int, default=0
        0: silent. 1: one line per epoch on stderr. 2: also a progress bar
        over steps when ``tqdm`` is installed.
    warm_start : bool, default=False
        When True, :meth:`fit` continues from the fitted model (or, on an
        unfitted estimator, from the file at ``checkpoint_path`` when it
        exists) and trains only the epochs still missing out of
        ``n_epochs``. The optimizer state and the random streams continue
        too, so a fit interrupted after epoch ``k`` and resumed gives the
        same model as an uninterrupted one. The network (``latent_dim`` and
        ``architecture``) must not change between the two calls.
    checkpoint_path : str, path-like or None, default=None
        When given, a checkpoint is written there after every epoch (to a
        temporary file renamed into place, so a fit killed at any moment
        leaves the previous checkpoint intact): a model file (see
        :meth:`save`) plus the optimizer state, the random streams and the
        counters. Resume with ``warm_start=True``, or :meth:`load` it and go
        on with :meth:`partial_fit`.
    validation_fraction : float in (0, 1) or None, default=None
        When given, this fraction of the particles (at least one) is held
        out of training; after every epoch the mean Chamfer distance of
        their reconstructions from the posterior mean (scaled units, no
        rotation) is recorded in ``history_`` as
        ``validation_reconstruction``. Ignored by :meth:`partial_fit`.
    n_iter_no_change : int or None, default=None
        With ``validation_fraction``, stop early when the validation
        reconstruction has not improved for this many epochs in a row; the
        weights of the last epoch trained are kept. None never stops early.
    compute_dtype : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the networks' matrix products. "bfloat16" runs the
        training forward pass under ``torch.autocast`` (the Chamfer
        distance, the KL term and the optimizer stay in float32) and the
        encoder's shared MLP in :meth:`transform` in bfloat16: about twice
        as fast on CPUs with AVX512-BF16 or AMX and on recent GPUs, slower
        on CPUs without them. Latents differ from float32 ones by ~0.5 % of
        their spread.

    Attributes
    ----------
    module_ : PCVAEModule
        The trained torch module (encoder + decoder), in eval mode; its
        ``config`` holds the resolved network settings.
    scale_ : float
        Dataset-level length scale (nm): the root-mean-square distance of
        localizations from their particle's centroid (outliers left out). Coordinates are
        centred per particle and divided by this one number; particles are
        never scaled individually, which would erase their size.
    n_features_in_ : int
        Spatial dimensions of the particles seen in ``fit`` (2 or 3).
    outlier_fraction_ : float
        Fraction of the localizations seen in the last ``fit`` that were
        outliers (see Notes) and left out.
    reference_precision_ : float or None
        When the fit weighed by precision (see ``precision_weighted``), the
        precision (nm) whose localization weighs 1 in the Chamfer distance:
        the root of the harmonic mean of the fitted localizations' variances
        over the axes, so the weights average 1. None when it was Euclidean.
    precision_floor_ : tuple of float or None
        The least precision (nm) a localization counts with, lateral (and
        axial): a tenth of the fitted median, so that precisions near 0 do
        not take all the weight. None when the fit was Euclidean.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss``, ``reconstruction`` (Chamfer,
        scaled units), ``kl``, ``beta`` (the KL weight at the epoch's end),
        ``steps`` and ``seconds``; with the penalties on, ``correlation`` and
        ``fourth_moment`` (their means over the steps, before their
        weights); with ``validation_fraction``,
        ``validation_reconstruction``. A loss with other terms (see Notes)
        records them too.
    n_steps_ : int
        Optimisation steps taken.
    n_iter_ : int
        Epochs trained, ``len(history_)`` (less than ``n_epochs`` after an
        early stop).
    readout_coef_ : ndarray of shape (encoder_widths[-1], latent_dim) or None
        The distilled rotation average: ``transform`` returns
        ``pooled @ readout_coef_ + readout_intercept_`` from the pooled
        features of one encoder pass. None when there is nothing to distil
        (``n_rotations`` below 2), and in a checkpoint written before the
        fit's end; ``transform`` then computes the exact average.
    readout_intercept_ : ndarray of shape (latent_dim,) or None
    readout_rotations_ : int
        The number of angles whose average the read-out reproduces
        (``n_rotations`` at fit time).
    readout_error_ : float or None
        Root-mean-square difference between the read-out and the exact
        average on the particles it was fitted on, as a fraction of the
        root-mean-square spread of the exact averages.

    See Also
    --------
    pcvae_sklearn.paper_recipe : the parameters of the paper's network and training.
    pcvae_sklearn.LatentUnmixer : independent components of the latents, when several parameters vary.
    pcvae_sklearn.LatentBinner : cut particles into equal-count bins along each latent dimension.
    pcvae_sklearn.ParticleFuser : fuse the particles of a bin into a super-particle.

    Notes
    -----
    **Defaults.** The paper's settings do not fit together (4 epochs of a
    few thousand particles at batch 8 are a few hundred steps, and its KL
    warm-up runs over 5000), so the defaults depart from them where a
    measurement on the simulators of :mod:`pcvae_sklearn.datasets` said so
    (the parameters above say how); ``docs/choosing_parameters.md`` gives
    each default with its figure and the command that measures it.

    **Outliers.** A localization more than 3 times its particle's median
    distance from the particle's trimmed centre (see
    :meth:`Particles.outliers <pcvae_sklearn.Particles.outliers>`) is an
    outlier: it is neither encoded nor used to centre the particle, in
    ``fit`` and ``transform`` alike, so one stray localization 300 nm away
    leaves the particle's latent where it was. The data are not changed;
    ``outlier_fraction_`` says how many of the fitted localizations were
    left out.

    **Determinism.** Training uses only deterministic CPU kernels: the same
    ``random_state`` on the same machine, torch version and number of
    threads gives identical latents, and pickling, :meth:`save` /
    :meth:`load` and resuming from a checkpoint keep them identical. Another
    thread count changes the last bits of floating-point sums, which
    training amplifies (the latents differ, their quality does not); a GPU
    draws other random numbers. A NaN or inf loss raises
    ``FloatingPointError`` and leaves the estimator as it was before the
    call (``docs/reliability.md``).

    **Extending.** An experiment with another training objective subclasses
    the estimator and overrides :meth:`_loss`, the one place the training
    loop turns a batch's outputs into the loss (its docstring gives the
    arguments and what to return); nothing else needs patching. Calling
    ``super()._loss(...)`` gives the default loss and its terms to build
    on; a subclass that adds parameters lists them in its own ``__init__``
    (``benchmarks/study_total_correlation.py`` is an example).

    References
    ----------
    .. [1] S. Haghparast, Y. Zhang, Q. Tao, S. Stallinga and B. Rieger,
       "Detecting continuous structural heterogeneity in single molecule
       localization microscopy data with a point cloud variational
       auto-encoder", Sci. Rep. (2025), doi:10.1038/s41598-025-31201-z.
    .. [2] C. R. Qi, H. Su, K. Mo and L. J. Guibas, "PointNet: deep learning
       on point sets for 3D classification and segmentation", CVPR (2017).
    .. [3] Q. Zhu et al., "A batch normalized inference network keeps the
       KL vanishing away", ACL (2020).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn import PointCloudVAE
    >>> rng = np.random.default_rng(0)
    >>> particles = [rng.normal(scale=50, size=(rng.integers(20, 40), 2)) for _ in range(16)]
    >>> small = {"encoder_widths": (16, 32), "decoder_widths": (16, 32), "decoder_channels": 32, "n_output_points": 16}
    >>> vae = PointCloudVAE(latent_dim=2, n_epochs=1, architecture=small, random_state=0)
    >>> vae.fit_transform(particles).shape
    (16, 2)
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "kl_warmup_steps": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "max_points": [Interval(Integral, 1, None, closed="left"), None, StrOptions({"auto"})],
        "n_rotations": [Interval(Integral, 0, None, closed="left")],
        "decorrelation": [Interval(Real, 0, None, closed="left")],
        "kurtosis": [Interval(Real, 0, None, closed="left")],
        "precision_weighted": ["boolean", StrOptions({"auto"})],
        "architecture": [dict, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "checkpoint_path": [str, os.PathLike, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "compute_dtype": [StrOptions({"float32", "bfloat16"})],
    }

    def __init__(
        self,
        *,
        latent_dim=8,
        beta=0.003,
        n_epochs=4,
        batch_size="auto",
        learning_rate=1e-3,
        weight_decay=1e-5,
        kl_warmup_steps="auto",
        max_points="auto",
        n_rotations=8,
        decorrelation=0.01,
        kurtosis=0.01,
        precision_weighted="auto",
        architecture=None,
        device="cpu",
        random_state=None,
        verbose=0,
        warm_start=False,
        checkpoint_path=None,
        validation_fraction=None,
        n_iter_no_change=None,
        compute_dtype="float32",
    ):
        self.latent_dim = latent_dim
        self.beta = beta
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.kl_warmup_steps = kl_warmup_steps
        self.max_points = max_points
        self.n_rotations = n_rotations
        self.decorrelation = decorrelation
        self.kurtosis = kurtosis
        self.precision_weighted = precision_weighted
        self.architecture = architecture
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.compute_dtype = compute_dtype

    @classmethod
    def _get_param_names(cls):
        """The constructor's parameters, with those a subclass's ``__init__(self, *, extra=..., **params)`` passes on."""
        names = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(klass.__init__).parameters.values()
            names += [p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD]
            if klass is PointCloudVAE or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return sorted(set(names))

    # ------------------------------------------------------------ extension point
    def _loss(self, decoded, target, lengths, mu, logvar, kl_weight, weights=None):
        """The training loss of one batch and its named terms (the documented extension point).

        Parameters
        ----------
        decoded : Tensor of shape (B, M, d)
            The decoder's points, from ``z`` drawn from the posterior.
        target : Tensor of shape (B, L, d)
            The batch's localizations (centred, scaled, rotated), zero-padded.
        lengths : Tensor of shape (B,)
            The real rows of each ``target``.
        mu, logvar : Tensor of shape (B, k)
            Posterior means and log-variances.
        kl_weight : float
            ``beta`` times the warm-up's fraction at this step.
        weights : Tensor of shape (B, L, d) or None
            The localizations' per-axis weights in the Chamfer distance
            (see ``precision_weighted``), padded like ``target``; None for
            the Euclidean distance.

        Returns
        -------
        loss : scalar Tensor
            What the step minimises; non-finite values stop the fit with a
            ``FloatingPointError``.
        terms : dict of str to scalar Tensor
            Recorded in ``history_`` as their means over the epoch;
            ``reconstruction`` and ``kl`` must be among them.
        """
        return vae_loss(
            decoded, target, lengths, mu, logvar, kl_weight=kl_weight,
            prior_shape=self._architecture(target.shape[-1])["prior_shape"],
            decorrelation=self.decorrelation, kurtosis=self.kurtosis, weights=weights,
        )

    # ------------------------------------------------------------ helpers
    def _architecture(self, n_dims: int) -> dict:
        """``architecture`` merged over the defaults for ``n_dims`` and validated (see ``_settings.resolve_architecture``)."""
        return resolve_architecture(self.architecture, n_dims)

    def _training_settings(self, n_dims: int) -> tuple:
        """``(batch_size, max_points)`` for particles of ``n_dims``, "auto" resolved."""
        return resolve_training(self.batch_size, self.max_points, n_dims)

    def _module_config(self, n_dims: int) -> dict:
        arch = self._architecture(n_dims)
        return {"in_dim": int(n_dims), "latent_dim": int(self.latent_dim), **{k: arch[k] for k in MODULE_KEYS}}

    def _inference_encoder(self, module=None) -> FoldedEncoder:
        """The trained encoder (of ``module_``, or of ``module``) with its batch norms folded (same latents, about twice as fast)."""
        dtype = torch.bfloat16 if self.compute_dtype == "bfloat16" else torch.float32
        return FoldedEncoder((self.module_ if module is None else module).encoder, dtype=dtype)

    def _check_particles(self, X, *, fitting: bool, continuing: bool = False) -> Particles:
        """Particles for fitting (at least 2) or encoding; their dimension must match a fitted model's.

        ``continuing``: fitting that goes on from the fitted model (``partial_fit``), so the dimension is checked too.
        The outliers of every particle are left out (see Notes); ``_outliers`` keeps their fraction for the fit to record.
        """
        p = as_particles(X, min_particles=2 if fitting else 1)
        if (not fitting or (continuing and hasattr(self, "module_"))) and p.n_dims != self.n_features_in_:
            raise ValueError(
                f"X holds {p.n_dims}D particles, but this PointCloudVAE was fitted on {self.n_features_in_}D particles."
            )
        outliers = p.outliers()
        if fitting:
            self._outliers = float(outliers.mean())
        return p.take_rows(~outliers) if outliers.any() else p

    # ------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the VAE on particles.

        With ``warm_start=True`` training continues from the fitted model or
        from the checkpoint at ``checkpoint_path`` and runs only the epochs
        still missing out of ``n_epochs``. The estimator changes only when the
        call succeeds: if training diverges (a ``FloatingPointError``) or is
        interrupted, the estimator keeps the state it had before the call.

        Parameters
        ----------
        X : awkward array, list of (n_i, d) arrays or object ndarray
            The particles, ``d`` in {2, 3}, coordinates in nm. At least 2.
        y : None
            Ignored.

        Returns
        -------
        self : PointCloudVAE

        Raises
        ------
        FloatingPointError
            When the loss or its gradient becomes NaN or inf; the message
            names the epoch and step and what to try.
        ValueError
            For bad particles, a bad ``architecture``, or a ``warm_start``
            onto a model of another network.
        """
        p = self._check_particles(X, fitting=True)
        run = self._start(p, resume=bool(self.warm_start), from_file=True)
        missing = int(self.n_epochs) - len(run.history)
        if missing <= 0:
            warnings.warn(
                f"warm_start: the model has already trained {len(run.history)} epoch(s) and n_epochs={self.n_epochs}; "
                "no epoch was trained. Raise n_epochs to train more.",
                UserWarning,
                stacklevel=3,
            )
        self._train_and_commit(run, p, missing, use_validation=True, keep_training_state=bool(self.warm_start))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one more epoch on ``X``.

        The first call starts a new model (or, with ``warm_start=True``,
        resumes from the checkpoint at ``checkpoint_path`` when it exists);
        later calls continue it, optimizer state and random streams
        included, so ``n_epochs`` calls give the same model as ``fit``. The
        dataset scale ``scale_`` is learned on the first call and kept.
        ``validation_fraction`` and ``n_iter_no_change`` are ignored. A
        checkpoint is written after the epoch when ``checkpoint_path`` is set.

        Parameters
        ----------
        X : awkward array, list of (n_i, d) arrays or object ndarray
            The particles, as for :meth:`fit`.
        y : None
            Ignored.

        Returns
        -------
        self : PointCloudVAE
        """
        p = self._check_particles(X, fitting=True, continuing=True)
        run = self._start(p, resume=True, from_file=bool(self.warm_start))
        self._train_and_commit(run, p, 1, use_validation=False, keep_training_state=True)
        return self

    def _start(self, p: Particles, *, resume: bool, from_file: bool):
        """The run to train: a resumed one, or a new one."""
        module_config = self._module_config(p.n_dims)  # validates the architecture first
        device = checked_device(self.device)
        run = resumed_run(self, p, module_config, device, from_file=from_file) if resume else None
        if run is None:
            run = new_run(self, p, p.centred().coords, module_config, device)
        run.outlier_fraction = self._outliers
        return run

    def _train_and_commit(self, run, p: Particles, n_epochs: int, *, use_validation: bool,
                          keep_training_state: bool) -> None:
        """Train, distil the rotation read-out, write the last checkpoint, and make the run the fitted state."""
        train_idx, val_idx = split(self, run, p.n_particles, use_validation=use_validation)
        coords = model_coordinates(p, run.scale, stacklevel=5)  # called by fit and partial_fit, as wrapped
        if run.history:  # training goes on: with the distance the model was trained with
            weights = (None if run.reference_precision is None else precision_weights(
                p, self.precision_weighted, (run.reference_precision, run.precision_floor), required=True)[0])
        else:
            weights, fitted = precision_weights(p, self.precision_weighted)
            run.reference_precision, run.precision_floor = fitted or (None, None)
        checkpoint = (lambda r: save_checkpoint(self, r)) if self.checkpoint_path is not None else (lambda r: None)
        train(self, run, p, coords, train_idx, val_idx, n_epochs, checkpoint, weights)
        run.readout = distil_rotation_average(self, run, p, coords, train_idx)
        checkpoint(run)  # the last checkpoint is the fitted model, read-out included
        for name, value in run.module.named_parameters():
            if not torch.isfinite(value).all():  # cannot happen after the checks in training; never hand out NaN weights
                raise diverged(self, f"the weight {name} became non-finite", len(run.history), run.step)
        run.module.eval()
        self.module_ = run.module
        for name, value in run.fitted_attributes().items():
            setattr(self, name, value)
        self._training_state = run.resumable_state() if keep_training_state else None

    # ------------------------------------------------------------ encoding
    def _readout_head(self, n_angles: int, device):
        """The distilled read-out as a head for :class:`FoldedEncoder`, or None when the exact average is due."""
        coef = getattr(self, "readout_coef_", None)
        if n_angles < 2 or coef is None or getattr(self, "readout_rotations_", None) != n_angles:
            return None
        weight = torch.from_numpy(np.asarray(coef, dtype=np.float32)).to(device)
        bias = torch.from_numpy(np.asarray(self.readout_intercept_, dtype=np.float32)).to(device)
        return lambda pooled: torch.addmm(bias, pooled, weight)

    def _encode_chunks(self, p: Particles, angle: float = 0.0):
        """Yield (start, stop, points, seg, lens) chunks of the particles in the network's units, turned by ``angle``
        about the optical axis first."""
        device = next(self.module_.parameters()).device
        coords = model_coordinates(p, self.scale_)
        if angle:
            coords = rotate_about_z(coords, p.lengths, np.full(p.n_particles, angle)).astype(np.float32)
        for start, stop in chunk_by_budget(p.lengths, PARTICLE_BUDGET, LOCALIZATION_BUDGET):
            rows = np.arange(p.offsets[start], p.offsets[stop])
            yield start, stop, *packed_to_device(coords[rows], p.lengths[start:stop], device)

    def _rotation_angles(self):
        # golden-angle steps: well spread within any symmetry period (evenly
        # spaced angles would all coincide for an 8-fold pore)
        n = max(int(self.n_rotations), 1)
        return np.mod(np.arange(n) * np.pi * (3.0 - np.sqrt(5.0)), 2.0 * np.pi)

    def transform(self, X):
        """Posterior mean of the latent of every particle.

        Every localization of every particle is used (no subsampling);
        particles are processed in chunks of bounded size. With
        ``n_rotations`` of 2 or more, the means at that many angles about the
        optical axis are averaged, so the latent depends less on the angle
        at which the particle was picked; the read-out fitted in ``fit``
        gives that average from one encoder pass.

        Parameters
        ----------
        X : awkward array, list of (n_i, d) arrays or object ndarray

        Returns
        -------
        ndarray of shape (n_particles, latent_dim)
        """
        check_is_fitted(self, "module_")
        p = self._check_particles(X, fitting=False)
        out = np.zeros((p.n_particles, self.module_.config["latent_dim"]), dtype=np.float64)
        angles = self._rotation_angles()
        encode = self._inference_encoder()  # batch norms folded: the same means, about twice as fast
        head = self._readout_head(len(angles), next(self.module_.parameters()).device)
        if head is not None:  # the distilled average: one pass
            encode.mu_head, angles = head, angles[:1]
        with torch.inference_mode():
            # normalise once, then every chunk at every angle: the working set is one chunk
            for start, stop, pts, seg, lens in self._encode_chunks(p):
                for angle in angles:
                    rotated = rotate_tensor_about_z(pts, angle) if angle else pts
                    out[start:stop] += encode(rotated, seg, lens).double().cpu().numpy()
        out /= len(angles)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():  # never hand out a NaN latent silently
            i = int(np.flatnonzero(bad)[0])
            raise FloatingPointError(
                f"the latent of {p.name(i)} is not finite ({int(bad.sum())} particle(s) in all); the model's weights or "
                "this particle's coordinates are out of range."
            )
        return out

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then return the posterior means of ``X``'s latents."""
        return self.fit(X, y, **fit_params).transform(X)

    def inverse_transform(self, X):
        """Decode latent vectors into point clouds (for latent traversals).

        Parameters
        ----------
        X : array-like of shape (n_samples, latent_dim)

        Returns
        -------
        awkward array ``n_samples * n_output_points * {x, y[, z]}``
            Decoded particles in nm, centred on the origin.
        """
        check_is_fitted(self, "module_")
        Z = np.asarray(X, dtype=np.float32)
        if Z.ndim == 1:
            Z = Z[None, :]
        k = self.module_.config["latent_dim"]
        if Z.ndim != 2 or Z.shape[1] != k:
            raise ValueError(f"expected latents of shape (n_samples, {k}); got {np.shape(X)}.")
        if not np.isfinite(Z).all():
            raise ValueError("latents contain NaN or inf.")
        device = next(self.module_.parameters()).device
        with torch.inference_mode():
            pts = self.module_.decoder(torch.from_numpy(Z).to(device)).double().cpu().numpy() * self.scale_
        n, m, d = pts.shape
        offsets = np.arange(n + 1, dtype=np.int64) * m
        return Particles(coords=pts.reshape(n * m, d), offsets=offsets).to_awkward()

    def reconstruction_error(self, X) -> np.ndarray:
        """Symmetric Chamfer distance (nm^2) between each particle and its decoded posterior mean.

        When the model was fitted with precision weights
        (``reference_precision_`` set), the distance it was trained on:
        squared distances in units of each localization's precision, times
        ``reference_precision_**2``; ``X`` must then carry the precisions.
        """
        check_is_fitted(self, "module_")
        p = self._check_particles(X, fitting=False)
        reference = getattr(self, "reference_precision_", None)
        weights = (None if reference is None else precision_weights(
            p, self.precision_weighted, (reference, self.precision_floor_), required=True)[0])
        out = np.empty(p.n_particles)
        with torch.inference_mode():
            for start, stop, pts, seg, lens in self._encode_chunks(p):
                mu, _ = self.module_.encoder(pts, seg, lens)
                target, _ = pad_packed(pts, lens)
                w = padded_weights(weights, slice(p.offsets[start], p.offsets[stop]), lens)
                cd = chamfer_distance(self.module_.decoder(mu), target, lens, weights=w)
                out[start:stop] = cd.double().cpu().numpy() * self.scale_**2
        return out

    def score(self, X, y=None):
        """Negative mean Chamfer distance (nm^2) of the reconstructions: higher is better.

        This is what ``GridSearchCV`` uses when no ``scoring`` is given.
        """
        return -float(np.mean(self.reconstruction_error(X)))

    def get_feature_names_out(self, input_features=None):
        """Names of the latent dimensions: ``pcvae0``, ``pcvae1``, ..."""
        check_is_fitted(self, "module_")
        return np.asarray([f"pcvae{i}" for i in range(self.module_.config["latent_dim"])], dtype=object)

    # ------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted model to one file that loads without running pickled code.

        The file is a dict of tensors and plain Python values, opened by
        ``torch.load(path, weights_only=True)``: the weights (on the CPU), the
        parameters (``get_params()``; a ``RandomState`` instance is stored as
        None), the fitted attributes (``scale_``, ``n_features_in_``,
        ``history_``, ...), the ``set_output`` configuration, the file format
        version and the versions of pcvae_sklearn and torch that wrote it.
        The optimizer state is not included; files written by
        ``checkpoint_path`` add it, so training can resume from them.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write (``.pt`` by convention). A path is written to a
            temporary file and renamed into place.

        See Also
        --------
        load : read such a file back.
        """
        check_is_fitted(self, "module_")
        save_model(self, path)

    @classmethod
    def load(cls, path, device="cpu"):
        """Read a model file written by :meth:`save` or a checkpoint.

        Opens the file with ``torch.load(path, weights_only=True)``, so no
        pickled code runs, and maps every tensor to ``device``: a model
        trained on a GPU loads on a CPU-only machine. The loaded model gives
        the same ``transform`` output as the one saved (on the same device).

        Parameters
        ----------
        path : str, path-like or binary file object
            A file written by :meth:`save` or by ``checkpoint_path``.
        device : str or torch.device, default="cpu"
            Where to put the model; also becomes the loaded estimator's
            ``device`` parameter.

        Returns
        -------
        PointCloudVAE
            Fitted. Loaded from a checkpoint, it also holds the training
            state, so ``fit`` with ``warm_start=True`` or ``partial_fit``
            continues the interrupted training exactly.

        Raises
        ------
        ValueError
            If the file is not a PointCloudVAE model file, does not load with
            ``weights_only=True``, or was written in another format version
            (by another pcvae_sklearn version): refit the model then.
        """
        return load_model(cls, path, device)

    def __getstate__(self):
        return pickled_state(super().__getstate__())

    def __setstate__(self, state):
        state, module = unpickled_state(state)
        super().__setstate__(state)
        if module is not None:
            self.module_ = module

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags
