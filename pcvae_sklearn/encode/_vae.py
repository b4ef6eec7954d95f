"""PointCloudVAE: the scikit-learn estimator around the PC-VAE networks."""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import threading
import time
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._ragged import Particles, as_particles
from .._version import __version__
from ._batching import (
    chunk_by_budget,
    gather_rows,
    packed_to_device,
    rotate_about_z,
    rotate_tensor_about_z,
    subsample_rows,
)
from ._chamfer import chamfer_distance, pad_packed
from ._fast_encode import FoldedEncoder
from ._networks import PCVAEModule, kl_divergence, latent_correlation
from ._readout import MAX_READOUT_PARTICLES, MAX_READOUT_POINTS, fit_rotation_readout

__all__ = ["PointCloudVAE"]

logger = logging.getLogger(__name__)

# transform/score work in chunks of at most this many localizations, so that a
# dataset of 5,000-localization particles never materialises an (N, 1024)
# feature map much larger than ~256 MB.
_LOCALIZATION_BUDGET = 65_536
_PARTICLE_BUDGET = 512

# Building a module draws its initial weights from torch's *global* generator
# (seeded under fork_rng). Fits running in threads of one process (joblib's
# threading backend, dask workers with processes=False) would interleave those
# draws and lose reproducibility; this lock serialises the few milliseconds of
# module construction.
_GLOBAL_RNG_LOCK = threading.Lock()

# Model files (PointCloudVAE.save / checkpoints): a dict of tensors and plain
# Python values that torch.load(..., weights_only=True) opens without running
# any pickled code. Bump _FORMAT_VERSION when the layout changes; load() reads
# the versions in _READABLE_FORMAT_VERSIONS.
_FORMAT = "pcvae_sklearn.PointCloudVAE"
_FORMAT_VERSION = 1
_READABLE_FORMAT_VERSIONS = (1,)


# Parameters added after models were first saved, with the value that gives the
# behaviour those models were trained with: a model file or pickle that lacks
# one gets this value, not the current default.
_BEFORE_THEY_EXISTED = {
    "latent_batch_norm": False,
    "decorrelation": 0.0,
    "kurtosis": 0.0,
    "prior_shape": 2,
    "penalty_warmup": True,
}


def _report(verbose: int, message: str) -> None:
    """The one place verbose output goes: a logger record, and stderr when asked."""
    logger.info(message)
    if verbose:
        print(message, file=sys.stderr, flush=True)


def _fitted_centring(model) -> str:
    """How ``model`` centres particles: ``centring_``, or "centroid" for models saved before it existed."""
    return getattr(model, "centring_", "centroid")


def _sigmoid_warmup(step: int, warmup_steps: int) -> float:
    """Fraction of beta in force at ``step``: a sigmoid rising over ``warmup_steps``."""
    if warmup_steps <= 0:
        return 1.0
    if step >= warmup_steps:
        return 1.0
    return 1.0 / (1.0 + math.exp(-12.0 * (step / warmup_steps - 0.5)))


def _to_plain(value, where: str):
    """``value`` as plain Python that ``torch.load(weights_only=True)`` accepts.

    None, bool, int, float and str pass; numpy scalars become Python scalars,
    numpy arrays lists, ``torch.device`` and paths strings; tuples, lists and
    dicts are converted element by element (tuples stay tuples). Anything else
    raises a TypeError naming ``where``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_to_plain(v, where) for v in value.tolist()]
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, tuple):
        return tuple(_to_plain(v, where) for v in value)
    if isinstance(value, list):
        return [_to_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {_to_plain(k, where): _to_plain(v, where) for k, v in value.items()}
    raise TypeError(f"{where} has a value of type {type(value).__name__} that a weights-only model file cannot hold.")


def _on_cpu(obj):
    """A copy of a nest of dicts / lists / tuples with every tensor moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def _atomic_save(payload: dict, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place.

    A process killed while writing leaves the previous file intact.
    """
    if not isinstance(path, (str, os.PathLike)):
        torch.save(payload, path)  # a file-like object
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class PointCloudVAE(TransformerMixin, BaseEstimator):
    """Point-cloud variational auto-encoder for SMLM particles (PC-VAE).

    Learns one latent vector per particle from its ragged list of 2D or 3D
    localizations, so that particles can be ordered, binned and fused along
    each latent dimension to reveal continuous structural heterogeneity
    (radius, height, labelling) that particle fusion averages away.

    The encoder is a PointNet (a shared per-localization MLP with batch norm
    and ReLU, masked mean pooling, MLP heads to the mean and log-variance of a
    Gaussian latent); the decoder is a tanh MLP, a skip connection of the global
    feature, two 1x1 convolutions and multi-head self-attention inside one
    particle, producing ``n_output_points`` coordinates. Training minimises the
    symmetric Chamfer distance plus ``beta`` times the KL divergence, with
    ``beta`` warmed up by a sigmoid over ``kl_warmup_steps`` steps, using Adam.

    Parameters
    ----------
    latent_dim : int, default=8
        Dimension of the latent space.
    beta : float, default=0.003
        Weight of the KL term. The Chamfer distance is computed in units of
        the dataset scale ``scale_``, where a good reconstruction costs a few
        hundredths; at ``beta >= 0.01`` the KL term wins and the latent
        collapses (KL ~ 0 nats, see Notes).
    n_epochs : int, default=4
        Passes over the particles.
    batch_size : int, default=16
        Particles per optimisation step.
    learning_rate : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam weight decay.
    kl_warmup_steps : int or "auto", default="auto"
        Steps over which the KL weight rises (a sigmoid) from ~0 to ``beta``.
        "auto" uses half of the fit's steps, so the warm-up ends inside the
        fit whatever the data size (the paper's 5000 steps never end in 4
        epochs of a few thousand particles).
    max_points : int or None, default=256
        During training, particles with more localizations are randomly
        subsampled to ``max_points`` at every step (a new subset each time).
        ``transform`` uses every localization: the pooling is a mean, so the
        latent does not depend on the count, and the work is chunked so memory
        stays bounded.
    n_output_points : int, default=128
        Points the decoder produces per particle.
    encoder_widths : tuple of int, default=(64, 128, 1024)
        Shared per-localization MLP widths.
    pooled_batch_norm : bool, default=False
        Start the heads to the mean and log-variance with a batch norm of the
        pooled features over the particles of the batch, as PointNet's
        classifier does after its pooling (the paper does not say). Measured
        on ``make_npc_3d`` (1000 particles, seeds 0-9, 2 threads,
        ``benchmarks/study_training_variants.py``; ``docs/defaults.md``): the
        best single dimension follows the ring distance better (|Spearman|
        0.54-0.82, mean 0.73, against 0.53-0.86, mean 0.66), but
        :class:`~pcvae_sklearn.LatentUnmixer` after it finds the ring
        distance worse (mean 0.74 against 0.77; at or above the model-based
        estimate on 2 seeds of 10 against 7) and the radius worse (0.86
        against 0.93). Neither gives the ring distance a raw axis as good as
        the estimate, so it is off by default: the VAE followed by
        ``LatentUnmixer`` is the better route for 3D pores. The 2D pores'
        radius (0.95-0.97) and the tetrahedra's height (0.998-0.999) are the
        same either way. In training a batch of one particle is normalised
        with the running statistics; ``transform`` normalises every particle
        with them, so a latent never depends on the particles it is
        transformed with. (Measured with the defaults before
        ``latent_batch_norm`` and the penalties below existed.)
    latent_batch_norm : bool, default=True
        End the head to the latent mean with a batch norm over the particles
        of the batch, without scale or shift (as in BN-VAE, Zhu et al. 2020):
        every latent dimension's means spread with unit variance, as the
        prior does. Without it they spread about ten times narrower than the
        prior, where neither the prior's shape nor the two penalties below
        have a hold. A training batch of one particle is normalised with the
        running statistics, and ``transform`` normalises every particle with
        them. Part of the training-time ICA (see Notes).
    decorrelation : float, default=0.01
        Weight of ``sum_{i != j} corr(mu_i, mu_j)**2``, the squared
        correlations between the latent dimensions' means over the particles
        of the batch. It is added to the loss (at full weight from the first
        step, see ``penalty_warmup``), and it makes the dimensions carry
        different things. 0 turns it off.
    kurtosis : float, default=0.01
        Weight of ``sum_i mean(mu_i**4)`` over the batch, added like
        ``decorrelation``. For means with unit variance that are uncorrelated,
        this is the kurtosis contrast of ICA. It prefers each dimension to
        follow one parameter spread flat over the particles rather than a
        mixture of several (a mixture is more Gaussian). 0 turns it off.
        Over 10 seeds of the 3D pores 0.003 and 0.01 gave steady
        ring-distance axes; 0.03 collapsed one seed's of 9 (see Notes).
    penalty_warmup : bool, default=False
        Whether ``decorrelation`` and ``kurtosis`` rise with the KL warm-up
        (True, as in the first version of the training-time ICA) or apply
        at full weight from the first step (False). The latent's axes form
        early in the fit; warmed up, the penalties reach full weight only
        half-way through it, when the axes have settled mixed. Models fitted
        before this parameter existed load with True.
    prior_shape : int, default=4
        Shape ``s`` of the factorised prior. 2 is the standard normal. An
        even ``s > 2`` is a generalised normal of unit variance,
        ``exp(-|z / a|**s)`` per dimension, flatter than a Gaussian. The KL
        term stays exact.
    decoder_widths : tuple of int, default=(256, 512, 1024)
        Widths of the decoder's tanh MLP.
    decoder_channels : int, default=256
        Channels of the decoder's 1x1 convolutions and attention (paper:
        1024; 256 costs 16 times less and loses nothing measurable, see Notes).
    n_heads : int, default=4
        Attention heads in the decoder.
    rotation_augmentation : bool, default=True
        Rotate every particle by a fresh random angle about the optical axis
        (z; in 2D, in-plane) at every training step. PointNet is not rotation
        invariant and picked particles arrive at random in-plane angles.
    transform_rotations : int, default=8
        With ``rotation_augmentation``, :meth:`transform` encodes every
        particle at this many angles about the optical axis (golden-angle
        steps, which never coincide under a pore's 8-fold symmetry) and
        averages the latent means (test-time augmentation; the decoder is not
        involved). 1 encodes each particle once,
        as picked. How the average is computed is ``rotation_average``'s choice.
    rotation_average : {"distilled", "exact"}, default="distilled"
        How :meth:`transform` computes the average over
        ``transform_rotations`` angles. "exact": it encodes every particle at
        every angle (``transform_rotations`` passes of the encoder over every
        localization). "distilled": at the end of ``fit`` a linear read-out
        (ridge regression) is fitted that maps the pooled features of *one*
        pass to the exact average, on up to 512 training particles (each
        subsampled to ``max_points``, at most 1024, localizations) at all
        the angles; ``transform`` then makes one pass per particle, about
        ``transform_rotations`` times faster, with the same quality (see
        Notes) and less dependence on the picking angle than the exact
        average. The fit costs about one more encoder pass over 512
        particles at every angle (about a second on 2 CPU cores). If
        ``transform_rotations`` is changed after the fit, or the model comes
        from a checkpoint written before the fit's end (only the last one
        holds the read-out), ``transform`` computes the exact average.
    centring : {"centroid", "midrange"}, default="centroid"
        The point every particle is centred on before encoding (its scale is
        never changed). "centroid": the mean position, as in the paper.
        "midrange": per coordinate, the midpoint of the particle's 5th and
        95th percentiles, the centre of its extent. Uneven labelling (a
        corner of a pore missing, one ring brighter than the other) and
        background pull the centroid off the structure's centre, by about
        9 nm laterally and 7 nm axially on the simulated pores, and the
        latent then has to encode that offset; the midrange moves 3-4 nm.
        Measured (``benchmarks/study_centring.py``, 1000 particles, seeds
        0-4): "midrange" gives a better radius axis on 2D pores (|Spearman|
        0.975-0.979 against 0.957-0.970) and 3D pores (0.92-0.95 against
        0.79-0.95), the same on tetrahedra, but a worse ring-distance axis
        on 3D pores, which is why it is not the default (measured with the
        defaults before the training-time ICA of 2026-11-26). The choice is
        stored in ``centring_`` at fit time and used by ``transform``.
    device : str or torch.device, default="cpu"
        Where to train and encode ("cpu", "cuda", "cuda:1", ...).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batching, subsampling, augmentation and
        the reparameterisation noise. The same integer on the same machine (and
        the same number of threads) gives identical latents.
    verbose : int, default=0
        0: silent. 1: one line per epoch on stderr. 2: also a progress bar
        over steps when ``tqdm`` is installed.
    warm_start : bool, default=False
        When True, :meth:`fit` continues from the fitted model (or, on an
        unfitted estimator, from the file at ``checkpoint_path`` when it
        exists) and trains only the epochs still missing out of ``n_epochs``:
        ``len(history_)`` ends at ``n_epochs``. The optimizer state and the
        random streams continue too, so a fit interrupted after epoch ``k``
        and resumed gives the same model as an uninterrupted one. The
        architecture parameters must not change between the two calls.
        When False, ``fit`` starts a new model.
    checkpoint_path : str, path-like or None, default=None
        When given, a checkpoint is written there after every epoch (written
        to a temporary file and renamed, so a fit killed at any moment leaves
        the previous checkpoint intact). It is a model file
        (see :meth:`save`) plus the optimizer state, the random streams and
        the epoch and step counters; ``torch.load(path, weights_only=True)``
        opens it. Resume with ``warm_start=True`` (or :meth:`load` it and go
        on with ``partial_fit``).
    validation_fraction : float in (0, 1) or None, default=None
        When given, this fraction of the particles (at least one) is held
        out of training; after every epoch the mean Chamfer distance of their
        reconstructions from the posterior mean (scaled units, no rotation)
        is recorded in ``history_`` as ``validation_reconstruction``.
        Ignored by :meth:`partial_fit`.
    n_iter_no_change : int or None, default=None
        With ``validation_fraction``, stop early when the validation
        reconstruction has not improved (decreased) for this many epochs in a
        row; the weights of the last epoch trained are kept. None never stops
        early.
    compute_dtype : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the networks' matrix products. "bfloat16" runs the
        training forward pass under ``torch.autocast`` (CPU or GPU; the
        Chamfer distance, the KL term and the optimizer stay in float32) and
        the encoder's shared MLP in :meth:`transform` in bfloat16: about twice
        as fast on CPUs with AVX512-BF16 or AMX and on recent GPUs, slower on
        CPUs without them. Latents differ from float32 ones by ~0.5 % of their
        spread; ``benchmarks/bench_speed_options.py`` compares the quality.
    compile : bool, default=False
        Train through ``torch.compile(module, dynamic=True)``. The first
        steps pay the compilation (tens of seconds, a C++ compiler is needed
        on CPU); it pays off only for long fits. ``module_`` stays the plain
        module, so pickling and :meth:`save` are unaffected.

    Attributes
    ----------
    module_ : PCVAEModule
        The trained torch module (encoder + decoder), in eval mode.
    scale_ : float
        Dataset-level length scale (nm) learned in ``fit``: the root-mean-square
        distance of localizations from their particle's centre. Coordinates
        are centred per particle and divided by this one number; particles are
        never scaled individually, which would erase their size.
    centring_ : str
        The ``centring`` the model was fitted with; ``transform`` centres the
        same way even if the parameter is changed later.
    n_features_in_ : int
        Spatial dimensions of the particles seen in ``fit`` (2 or 3).
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss``, ``reconstruction`` (Chamfer,
        scaled units), ``kl``, ``beta`` (KL weight at the epoch's end),
        ``steps`` and ``seconds``; with the penalties on, ``correlation``
        (the mean over steps of the batch's summed squared correlations
        between latent dimensions) and ``fourth_moment`` (of
        ``sum_i mean(mu_i**4)``), before their weights; with
        ``validation_fraction``, ``validation_reconstruction``.
    n_steps_ : int
        Optimisation steps taken.
    n_iter_ : int
        Epochs trained, ``len(history_)`` (less than ``n_epochs`` after an
        early stop).
    readout_coef_ : ndarray of shape (encoder_widths[-1], latent_dim) or None
        The distilled rotation read-out (``rotation_average="distilled"``):
        ``transform`` returns ``pooled @ readout_coef_ + readout_intercept_``
        from the pooled features of one encoder pass. None when there is
        nothing to distil (``rotation_average="exact"``, one rotation, or no
        rotation augmentation).
    readout_intercept_ : ndarray of shape (latent_dim,) or None
    readout_rotations_ : int
        The number of angles whose average the read-out reproduces
        (``transform_rotations`` at fit time).
    readout_error_ : float or None
        Root-mean-square difference between the read-out and the exact
        average on the particles it was fitted on, as a fraction of the
        root-mean-square spread of the exact averages: 0.08-0.17 on the
        simulated pores, 0.2-0.3 on the simulated tetrahedra (before the
        training-time ICA of 2026-11-26: 0.03-0.08 and 0.4-0.6), where the
        8-angle average itself still depends on the angle the particle was
        picked at and the read-out, fitted to give one answer for all angles,
        depends on it about 6 times less (``docs/scaling.md``).

    Notes
    -----
    **How the defaults were chosen.** The paper's settings are the starting
    point, but they do not fit together: 4 epochs of 218 particles at batch 8
    are about 112 steps, while its KL warm-up runs over 5000. We measured on
    ``make_npc_2d`` (1399 particles, 4 epochs, seeds 0-4; the whole table and
    the script are in ``docs/defaults.md``):

    - ``beta=0.003``: at 0.01 and above the latent collapses (KL < 1.5 nats or
      0); 0.001-0.003 work, 0.003 with augmentation best.
    - ``rotation_augmentation=True``: best-dimension |Spearman| with the true
      radius 0.91 on average, against 0.86 without.
    - ``decoder_channels=256``: as good as 512, 16 times cheaper than the
      paper's 1024 in the convolutions and attention; 128 loses quality.
    - ``batch_size=16, learning_rate=1e-3``: better than batch 8 at 5e-4
      (mean 0.91 against 0.85) and half the steps.
    - ``kl_warmup_steps="auto"`` (half the steps): no warm-up loses quality.
    - ``transform_rotations=8``: with a single encoding per particle the best
      dimension tracks the true radius with |Spearman| 0.89-0.92 over five
      seeds, since part of each latent depends on the angle the particle was
      picked at; averaging the encodings at 8 angles gives 0.937-0.971
      (mean 0.956), as much as 16 angles.
    - ``rotation_average="distilled"``: the 8-angle average from one encoder
      pass and a linear read-out fitted at the end of ``fit``. On held-out
      particles (``benchmarks/study_rotation_readout.py``, pores seeds 0-2,
      tetrahedra seeds 0-1) the best dimension's |Spearman| with the truth
      compares with the exact average's as follows:

      - on the 2D and 3D pores it differs by -0.001 to +0.015, while a
        single encoding loses 0.05-0.38;
      - on the tetrahedra it is as good (0.999 against 0.998-0.999).

      Rotating every particle moves the distilled latents 4.3-7 times less
      than the exact ones, and ``transform`` is 6-8 times faster. With the
      defaults before 2026-11-26 the figures were: -0.004 to +0.009, 0.07-0.35
      lost, and 3-6 times less.
    - ``latent_batch_norm=True, decorrelation=0.01, kurtosis=0.01,
      penalty_warmup=False, prior_shape=4`` (2026-11-26, the training-time
      ICA below). They were chosen on the 3D pores, where they lift the
      ring-distance axis. The first version warmed the penalties up with
      the KL term and weighted the kurtosis 0.001; applying them from the
      first step with kurtosis 0.01 raised the raw ring-distance axis from
      0.801 to 0.835 on average over 15 seeds (at or above the estimate on
      11 seeds instead of 7); kurtosis 0.03 collapsed one seed's axis to
      0.48.

      - Over 5 seeds of the 2D pores the best dimension gives
        0.937-0.969 (mean 0.958; 0.956 before the training-time ICA, 0.964
        with its first version).
      - The tetrahedra's height stays at 0.999.

    ``benchmarks/bench_vae.py`` compares speed and quality with the paper's
    recipe; ``benchmarks/bench_quality.py`` measures all three simulators.

    **Two parameters at once: training-time ICA.** On 3D pores both the
    radius and the ring distance vary. A plain VAE (``latent_batch_norm=False,
    decorrelation=0, kurtosis=0, prior_shape=2``, the settings before
    2026-11-26) gives the radius an axis but spreads the ring distance over
    several dimensions. Its latent means spread about ten times narrower
    than the prior, so nothing in the loss makes the dimensions differ.
    Over 15 seeds of ``make_npc_3d`` the best raw axis followed the ring
    distance with |Spearman| 0.61 on average (worst 0.37), against the
    model-based estimate's 0.82, and reached the estimate on 2 seeds.

    The defaults therefore make the training loss do what ICA does:

    - they standardise the means over each batch (``latent_batch_norm``);
    - they penalise the means' correlations (``decorrelation``) and fourth
      moments (``kurtosis``);
    - they use a flat prior (``prior_shape=4``).

    That separates parameters that vary independently and spread flat
    over the particles. Over the same 15 seeds the raw ring-distance axis
    reaches 0.835 on average (worst 0.79), against the estimate's 0.821,
    and meets the estimate on 11; the four misses are by 0.003-0.029. The
    radius axis reaches 0.89 (0.87 before). Screened before this were over 30
    training, architecture and loss variants: learning-rate schedules,
    beta, latent size, capacity annealing, longer training, rotation- or
    shift-invariant losses, rotation-invariant encoder inputs, a batch norm
    after pooling, a separate decoder for z, and a non-Gaussian prior
    alone. See ``docs/defaults.md`` and
    ``benchmarks/study_training_variants.py``.

    Putting :class:`~pcvae_sklearn.LatentUnmixer` (``n_components=3`` or
    ``4``) after the VAE can still help when more than one parameter is
    expected to vary: the ring distance then meets the estimate on 14 seeds
    of 15 (means 0.851 and 0.839), the radius reaches 0.93 with 4.

    **Determinism.** Training uses only deterministic CPU kernels; the same
    ``random_state`` on the same machine, torch version and number of threads
    gives identical latents, and pickling, :meth:`save` / :meth:`load` and
    resuming from a checkpoint keep them identical. Another thread count
    changes the last bits of floating-point sums, which training amplifies
    (latents differ slightly, quality does not); a GPU draws other random
    numbers and gives a different model of the same quality. See
    ``docs/reliability.md``.

    **Reliability.** :meth:`save` writes a file that
    ``torch.load(path, weights_only=True)`` opens; ``checkpoint_path`` with
    ``warm_start`` (or :meth:`partial_fit`) resumes an interrupted fit; a NaN
    or inf loss raises ``FloatingPointError`` and leaves the estimator as it
    was before the call.

    See Also
    --------
    pcvae_sklearn.LatentBinner : cut particles into equal-count bins along each latent dimension.
    pcvae_sklearn.ParticleFuser : fuse the particles of a bin into a super-particle.

    References
    ----------
    .. [1] Haghparast, Zhang et al., "Point cloud variational auto-encoder for
       continuous structural heterogeneity in single molecule localization
       microscopy", Sci. Rep. (2025).
    .. [2] Qi et al., "PointNet: deep learning on point sets for 3D
       classification and segmentation", CVPR (2017).

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn import PointCloudVAE
    >>> rng = np.random.default_rng(0)
    >>> particles = [rng.normal(scale=50, size=(rng.integers(20, 40), 2)) for _ in range(16)]
    >>> vae = PointCloudVAE(latent_dim=2, n_epochs=1, decoder_channels=32,
    ...                     encoder_widths=(16, 32), decoder_widths=(16, 32),
    ...                     n_output_points=16, random_state=0)
    >>> vae.fit_transform(particles).shape
    (16, 2)
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "kl_warmup_steps": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "max_points": [Interval(Integral, 1, None, closed="left"), None],
        "n_output_points": [Interval(Integral, 1, None, closed="left")],
        "encoder_widths": ["array-like"],
        "pooled_batch_norm": ["boolean"],
        "latent_batch_norm": ["boolean"],
        "decorrelation": [Interval(Real, 0, None, closed="left")],
        "kurtosis": [Interval(Real, 0, None, closed="left")],
        "penalty_warmup": ["boolean"],
        "prior_shape": [Interval(Integral, 2, None, closed="left")],
        "decoder_widths": ["array-like"],
        "decoder_channels": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "rotation_augmentation": ["boolean"],
        "transform_rotations": [Interval(Integral, 1, None, closed="left")],
        "rotation_average": [StrOptions({"distilled", "exact"})],
        "centring": [StrOptions({"centroid", "midrange"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "checkpoint_path": [str, os.PathLike, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "compute_dtype": [StrOptions({"float32", "bfloat16"})],
        "compile": ["boolean"],
    }

    def __init__(
        self,
        *,
        latent_dim=8,
        beta=0.003,
        n_epochs=4,
        batch_size=16,
        learning_rate=1e-3,
        weight_decay=1e-5,
        kl_warmup_steps="auto",
        max_points=256,
        n_output_points=128,
        encoder_widths=(64, 128, 1024),
        pooled_batch_norm=False,
        latent_batch_norm=True,
        decorrelation=0.01,
        kurtosis=0.01,
        penalty_warmup=False,
        prior_shape=4,
        decoder_widths=(256, 512, 1024),
        decoder_channels=256,
        n_heads=4,
        rotation_augmentation=True,
        transform_rotations=8,
        rotation_average="distilled",
        centring="centroid",
        device="cpu",
        random_state=None,
        verbose=0,
        warm_start=False,
        checkpoint_path=None,
        validation_fraction=None,
        n_iter_no_change=None,
        compute_dtype="float32",
        compile=False,
    ):
        self.latent_dim = latent_dim
        self.beta = beta
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.kl_warmup_steps = kl_warmup_steps
        self.max_points = max_points
        self.n_output_points = n_output_points
        self.encoder_widths = encoder_widths
        self.pooled_batch_norm = pooled_batch_norm
        self.latent_batch_norm = latent_batch_norm
        self.decorrelation = decorrelation
        self.kurtosis = kurtosis
        self.penalty_warmup = penalty_warmup
        self.prior_shape = prior_shape
        self.decoder_widths = decoder_widths
        self.decoder_channels = decoder_channels
        self.n_heads = n_heads
        self.rotation_augmentation = rotation_augmentation
        self.transform_rotations = transform_rotations
        self.rotation_average = rotation_average
        self.centring = centring
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.compute_dtype = compute_dtype
        self.compile = compile

    # ------------------------------------------------------------ helpers
    def _autocast(self, device: torch.device):
        """``torch.autocast`` to bfloat16 when ``compute_dtype="bfloat16"``, a no-op context otherwise."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.compute_dtype == "bfloat16")

    def _training_forward(self, module):
        """The callable a training step runs: the module, or ``torch.compile`` of it."""
        if not self.compile:
            return module
        return torch.compile(module, dynamic=True)

    def _inference_encoder(self, module=None) -> FoldedEncoder:
        """The trained encoder (of ``module_``, or of ``module``) with its batch norms folded (same latents, about twice as fast)."""
        dtype = torch.bfloat16 if self.compute_dtype == "bfloat16" else torch.float32
        return FoldedEncoder((self.module_ if module is None else module).encoder, dtype=dtype)

    def _torch_device(self) -> torch.device:
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} was asked for, but torch sees no CUDA GPU on this machine; use device='cpu'.")
        return device

    def _check_particles(self, X, *, fitting: bool, continuing: bool = False) -> Particles:
        """Particles for fitting (at least 2) or encoding; their dimension must match a fitted model's.

        ``continuing``: fitting that goes on from the fitted model (``partial_fit``), so the dimension is checked too.
        """
        p = as_particles(X, min_particles=2 if fitting else 1)
        if (not fitting or (continuing and hasattr(self, "module_"))) and p.n_dims != self.n_features_in_:
            raise ValueError(
                f"X holds {p.n_dims}D particles, but this PointCloudVAE was fitted on {self.n_features_in_}D particles."
            )
        return p

    def _normalised(self, p: Particles) -> np.ndarray:
        """Centre every particle (as in the fit, ``centring_``), divide by the dataset scale (float32)."""
        with np.errstate(over="ignore", invalid="ignore"):
            coords = (p.centred(_fitted_centring(self)).coords / self.scale_).astype(np.float32)
        finite = np.isfinite(coords).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            i = int(np.searchsorted(p.offsets, row, side="right") - 1)
            raise ValueError(
                f"{p.name(i)} has a localization too far from its centre to encode ({p.coords[row].tolist()} nm; "
                f"the model's scale is {self.scale_:.3g} nm); check the coordinates' units (nm expected)."
            )
        return coords

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
        """
        p = self._check_particles(X, fitting=True)
        self._check_architecture()
        device = self._torch_device()
        run = self._resumed_run(p, device) if self.warm_start else None
        if run is None:
            run = self._new_run(p, device)
        train_idx, val_idx = self._split(run, p)
        missing = int(self.n_epochs) - len(run["history"])
        if missing <= 0:
            warnings.warn(
                f"warm_start: the model has already trained {len(run['history'])} epoch(s) and n_epochs={self.n_epochs}; "
                "no epoch was trained. Raise n_epochs to train more.",
                UserWarning,
                stacklevel=2,
            )
        coords = self._scaled_coords(run, p)
        self._train(run, p, coords, train_idx, val_idx, missing)
        run["readout"] = self._distil_rotations(run, p, coords, train_idx)
        if self.checkpoint_path is not None:  # the last checkpoint is the fitted model, read-out included
            self._write_checkpoint(run)
        self._commit(run, keep_training_state=bool(self.warm_start))
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
            The particles, ``d`` in {2, 3}, coordinates in nm. At least 2.
        y : None
            Ignored.

        Returns
        -------
        self : PointCloudVAE
        """
        p = self._check_particles(X, fitting=True, continuing=True)
        self._check_architecture()
        device = self._torch_device()
        run = self._resumed_run(p, device, from_file=self.warm_start)
        if run is None:
            run = self._new_run(p, device)
        train_idx, _ = self._split(run, p, use_validation=False)
        coords = self._scaled_coords(run, p)
        self._train(run, p, coords, train_idx, None, 1)
        run["readout"] = self._distil_rotations(run, p, coords, train_idx)
        if self.checkpoint_path is not None:
            self._write_checkpoint(run)
        self._commit(run, keep_training_state=True)
        return self

    def _check_architecture(self):
        if int(self.prior_shape) % 2:
            raise ValueError(f"prior_shape must be an even integer (2, 4, 6, ...), got {self.prior_shape}.")
        if self.decoder_channels % self.n_heads:
            raise ValueError(f"decoder_channels={self.decoder_channels} must be divisible by n_heads={self.n_heads}.")
        if len(self.encoder_widths) < 1 or len(self.decoder_widths) < 1:
            raise ValueError("encoder_widths and decoder_widths must each name at least one layer width.")

    def _module_config(self, n_dims: int) -> dict:
        return dict(
            in_dim=int(n_dims),
            latent_dim=int(self.latent_dim),
            encoder_widths=tuple(int(w) for w in self.encoder_widths),
            decoder_widths=tuple(int(w) for w in self.decoder_widths),
            decoder_channels=int(self.decoder_channels),
            n_output_points=int(self.n_output_points),
            n_heads=int(self.n_heads),
            pooled_batch_norm=bool(self.pooled_batch_norm),
            latent_batch_norm=bool(self.latent_batch_norm),
        )

    def _new_optimizer(self, module):
        return torch.optim.Adam(module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def _new_run(self, p: Particles, device) -> dict:
        """A new training run: the dataset scale, a seeded module, optimizer and random streams."""
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(np.iinfo(np.int32).max))
        centred = p.centred(self.centring).coords
        with np.errstate(over="ignore"):
            scale = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
        if not np.isfinite(scale):
            raise ValueError(
                "the spread of the localizations about their particle's centre overflows float64; "
                "check the coordinates' units (nm expected) and remove outliers."
            )
        if scale <= 0:
            raise ValueError(
                "every particle has all its localizations at one point (zero spread); there is no structure to learn."
            )
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            module = PCVAEModule(**self._module_config(p.n_dims)).to(device)
        return {
            "module": module,
            "optimizer": self._new_optimizer(module),
            "rng": np.random.default_rng(seed),
            "generator": torch.Generator(device=device).manual_seed(seed),
            "scale": scale,
            "centring": self.centring,
            "centred": centred,  # handed to _scaled_coords, so a fit centres the particles once
            "n_features": p.n_dims,
            "history": [],
            "step": 0,
            "warmup": None,  # set by _split once the number of training particles is known
            "validation": None,
            "n_particles": p.n_particles,
            "best_validation": math.inf,
            "n_no_improvement": 0,
        }

    def _resumed_run(self, p: Particles, device, from_file: bool = True) -> dict | None:
        """A run continuing the fitted model, or the checkpoint file; None when there is neither."""
        if hasattr(self, "module_"):
            source = self
        elif from_file and self.checkpoint_path is not None and Path(self.checkpoint_path).exists():
            source = type(self).load(self.checkpoint_path, device=str(device))
            _report(self.verbose, f"[PointCloudVAE] resuming from {self.checkpoint_path} after epoch {len(source.history_)}")
        else:
            return None
        saved = source.module_.config
        wanted = self._module_config(source.n_features_in_)
        changed = [f"{k}: {saved[k]} -> {wanted[k]}" for k in wanted if k != "in_dim" and saved[k] != wanted[k]]
        source_centring = _fitted_centring(source)
        if source_centring != self.centring:
            changed.append(f"centring: {source_centring} -> {self.centring}")
        if changed:
            raise ValueError(
                "warm_start cannot continue a model whose architecture or centring changed (" + "; ".join(changed) + "); "
                "set warm_start=False to train a new model."
            )
        if p.n_dims != source.n_features_in_:
            raise ValueError(
                f"X holds {p.n_dims}D particles, but the model to continue was fitted on {source.n_features_in_}D particles."
            )
        module = copy.deepcopy(source.module_).to(device)  # the fitted model stays as it is until the fit succeeds
        optimizer = self._new_optimizer(module)
        state = getattr(source, "_training_state", None)
        run = {
            "module": module,
            "optimizer": optimizer,
            "scale": float(source.scale_),
            "centring": source_centring,
            "n_features": int(source.n_features_in_),
            "history": copy.deepcopy(list(source.history_)),
            "step": int(source.n_steps_),
            "n_particles": p.n_particles,
        }
        if state is None:
            warnings.warn(
                "warm_start: this model holds no training state (it was fitted with warm_start=False or saved with "
                "save()); training continues with a new optimizer and new random streams.",
                UserWarning,
                stacklevel=3,
            )
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            run.update(
                rng=np.random.default_rng(seed),
                generator=torch.Generator(device=device).manual_seed(seed),
                warmup=None,
                validation=None,
                best_validation=math.inf,
                n_no_improvement=0,
            )
            return run
        optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        for group in optimizer.param_groups:  # parameters changed with set_params apply from now on
            group["lr"] = self.learning_rate
            group["weight_decay"] = self.weight_decay
        rng = np.random.default_rng()
        rng.bit_generator.state = copy.deepcopy(state["numpy_rng"])
        generator = torch.Generator(device=device)
        try:
            generator.set_state(state["torch_rng"].clone())
        except (RuntimeError, TypeError, ValueError):  # saved on another kind of device
            generator.manual_seed(int(rng.integers(np.iinfo(np.int32).max)))
            logger.warning("the reparameterisation noise could not be resumed on %s; it was reseeded.", device)
        validation = state.get("validation")
        run.update(
            rng=rng,
            generator=generator,
            warmup=state.get("warmup"),
            validation=None if validation is None else np.asarray(validation, dtype=np.int64),
            best_validation=float(state.get("best_validation", math.inf)),
            n_no_improvement=int(state.get("n_no_improvement", 0)),
        )
        if state.get("n_particles") != p.n_particles:
            run["validation"] = None  # other data: a split drawn for it, if one is asked for
        return run

    def _split(self, run: dict, p: Particles, use_validation: bool = True):
        """Training and validation particle indices; draws the split once per run."""
        n = p.n_particles
        if self.validation_fraction is None or not use_validation:
            train_idx, val_idx = np.arange(n), None
        else:
            val_idx = run["validation"]
            if val_idx is None:
                n_val = min(max(int(round(self.validation_fraction * n)), 1), n - 2)
                if n_val < 1:
                    raise ValueError(
                        f"validation_fraction={self.validation_fraction} leaves no particle for validation out of {n}; "
                        "at least 3 particles are needed (2 to train, 1 to validate)."
                    )
                val_idx = np.sort(run["rng"].permutation(n)[:n_val])
            train_idx = np.setdiff1d(np.arange(n), val_idx, assume_unique=True)
        if use_validation:
            run["validation"] = val_idx
        if run["warmup"] is None:
            run["warmup"] = self._warmup_steps(math.ceil(len(train_idx) / self.batch_size) * int(self.n_epochs))
        return train_idx, val_idx

    @staticmethod
    def _scaled_coords(run: dict, p: Particles) -> np.ndarray:
        """The run's training coordinates: every particle centred (``run["centring"]``), divided by the scale (float32)."""
        centred = run.pop("centred", None)
        if centred is None:
            centred = p.centred(run["centring"]).coords
        coords = (centred / run["scale"]).astype(np.float32)
        if not np.isfinite(coords).all():
            raise ValueError(
                "coordinates divided by the dataset scale overflow float32; check the coordinates' units (nm expected)."
            )
        return coords

    def _train(self, run: dict, p: Particles, coords: np.ndarray, train_idx: np.ndarray, val_idx, n_epochs: int) -> None:
        """Train ``n_epochs`` more epochs (fewer after an early stop) on ``coords`` (``_scaled_coords``), checkpointing after each."""
        device = next(run["module"].parameters()).device
        steps_per_epoch = math.ceil(len(train_idx) / self.batch_size)
        bar = self._progress_bar(steps_per_epoch * max(n_epochs, 0))
        try:
            for _ in range(max(n_epochs, 0)):
                if self._stop_early(run):
                    _report(self.verbose, "[PointCloudVAE] stopped early: no validation improvement "
                            f"in {self.n_iter_no_change} epoch(s)")
                    break
                record = self._run_epoch(run, p, coords, train_idx, device, bar)
                if val_idx is not None:
                    record["validation_reconstruction"] = self._validation_loss(run, p, coords, val_idx, device)
                    if record["validation_reconstruction"] < run["best_validation"]:
                        run["best_validation"] = record["validation_reconstruction"]
                        run["n_no_improvement"] = 0
                    else:
                        run["n_no_improvement"] += 1
                run["history"].append(record)
                val = record.get("validation_reconstruction")
                _report(
                    self.verbose,
                    f"[PointCloudVAE] epoch {record['epoch'] + 1}/{self.n_epochs}: loss {record['loss']:.4f} "
                    f"(chamfer {record['reconstruction']:.4f}, KL {record['kl']:.3f}, beta {record['beta']:.3g}"
                    + ("" if val is None else f", validation chamfer {val:.4f}")
                    + f") in {record['seconds']:.1f} s",
                )
                if self.checkpoint_path is not None:
                    self._write_checkpoint(run)
        finally:
            if bar is not None:
                bar.close()

    def _stop_early(self, run: dict) -> bool:
        return (
            self.n_iter_no_change is not None
            and run["validation"] is not None
            and self.validation_fraction is not None
            and run["n_no_improvement"] >= self.n_iter_no_change
        )

    def _run_epoch(self, run: dict, p: Particles, coords: np.ndarray, train_idx: np.ndarray, device, bar) -> dict:
        module, optimizer, rng, generator = run["module"], run["optimizer"], run["rng"], run["generator"]
        forward = self._training_forward(module)
        epoch = len(run["history"])
        module.train()
        t0 = time.perf_counter()
        order = train_idx[rng.permutation(len(train_idx))]
        steps_per_epoch = math.ceil(len(train_idx) / self.batch_size)
        sums = np.zeros(3)
        correlation_sum = fourth_sum = 0.0
        taken = 0
        for b in range(steps_per_epoch):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            rows, lengths = gather_rows(p.offsets, idx)
            rows, lengths = subsample_rows(rows, lengths, self.max_points, rng)
            if len(rows) < 2:
                # batch norm cannot normalise one localization: a batch of one
                # single-localization particle (it carries no shape) is skipped
                if bar is not None:
                    bar.update(1)
                continue
            pts = coords[rows]
            if self.rotation_augmentation:
                pts = rotate_about_z(pts, lengths, rng.uniform(0.0, 2.0 * np.pi, len(lengths))).astype(np.float32)
            pts_t, seg, lens = packed_to_device(pts, lengths, device)
            with self._autocast(device):
                decoded, mu, logvar = forward(pts_t, seg, lens, generator=generator)
            target, _ = pad_packed(pts_t, lens)
            recon = chamfer_distance(decoded.float(), target, lens).mean()
            kl = kl_divergence(mu.float(), logvar.float(), int(self.prior_shape)).mean()
            warm = _sigmoid_warmup(run["step"], run["warmup"])
            loss = recon + self.beta * warm * kl
            penalty_weight = warm if self.penalty_warmup else 1.0
            if self.decorrelation > 0 and mu.shape[0] > 2:
                correlation = latent_correlation(mu.float())
                loss = loss + self.decorrelation * penalty_weight * correlation
                correlation_sum += correlation.item()
            if self.kurtosis > 0 and mu.shape[0] > 2:
                fourth = mu.float().pow(4).mean(dim=0).sum()
                loss = loss + self.kurtosis * penalty_weight * fourth
                fourth_sum += fourth.item()
            if not torch.isfinite(loss):
                raise self._diverged(f"the training loss became {loss.item()}", epoch, run["step"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), math.inf)
            if not torch.isfinite(grad_norm):
                raise self._diverged(f"the gradient of the training loss became {grad_norm.item()}", epoch, run["step"])
            optimizer.step()
            run["step"] += 1
            taken += 1
            sums += (loss.item(), recon.item(), kl.item())
            if bar is not None:
                bar.update(1)
        if taken == 0:
            raise ValueError(
                "no training step was possible: every batch held a single localization. Raise batch_size or "
                "remove the single-localization particles."
            )
        mean = sums / taken
        record = {
            "epoch": epoch,
            "loss": float(mean[0]),
            "reconstruction": float(mean[1]),
            "kl": float(mean[2]),
            "beta": float(self.beta * _sigmoid_warmup(run["step"] - 1, run["warmup"])),
            "steps": taken,
            "seconds": time.perf_counter() - t0,
        }
        if self.decorrelation > 0:
            record["correlation"] = correlation_sum / taken
        if self.kurtosis > 0:
            record["fourth_moment"] = fourth_sum / taken
        return record

    def _diverged(self, what: str, epoch: int, step: int) -> FloatingPointError:
        return FloatingPointError(
            f"{what} at epoch {epoch}, step {step} (counting from 0); training stopped and the estimator was left as "
            f"it was before this call. Try a lower learning_rate (now {self.learning_rate:g}), and check the input's "
            "scale: coordinates in nm, free of outliers far from their particle."
        )

    def _validation_loss(self, run: dict, p: Particles, coords: np.ndarray, val_idx: np.ndarray, device) -> float:
        """Mean Chamfer distance (scaled units) of the held-out particles' posterior-mean reconstructions."""
        module = run["module"]
        module.eval()
        rows, lengths = gather_rows(p.offsets, val_idx)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        total = 0.0
        with torch.inference_mode():
            for start, stop in chunk_by_budget(lengths, _PARTICLE_BUDGET, _LOCALIZATION_BUDGET):
                pts, seg, lens = packed_to_device(coords[rows[offsets[start] : offsets[stop]]], lengths[start:stop], device)
                mu, _ = module.encoder(pts, seg, lens)
                target, _ = pad_packed(pts, lens)
                total += float(chamfer_distance(module.decoder(mu), target, lens).double().sum())
        module.train()
        value = total / len(val_idx)
        if not math.isfinite(value):
            raise self._diverged(f"the validation reconstruction became {value}", len(run["history"]), run["step"])
        return value

    def _training_state_of(self, run: dict) -> dict:
        """What resuming needs besides the model: optimizer state (on the CPU), random streams, counters."""
        return {
            "optimizer": _on_cpu(run["optimizer"].state_dict()),
            "numpy_rng": run["rng"].bit_generator.state,
            "torch_rng": run["generator"].get_state(),
            "warmup": run["warmup"],
            "validation": run["validation"],
            "n_particles": run["n_particles"],
            "best_validation": run["best_validation"],
            "n_no_improvement": run["n_no_improvement"],
        }

    def _commit(self, run: dict, keep_training_state: bool) -> None:
        """Make the run the estimator's fitted state (only after a successful call)."""
        for name, value in run["module"].named_parameters():
            if not torch.isfinite(value).all():  # cannot happen after the checks above; never hand out NaN weights
                raise self._diverged(f"the weight {name} became non-finite", len(run["history"]), run["step"])
        run["module"].eval()
        self.module_ = run["module"]
        self.scale_ = run["scale"]
        self.centring_ = run["centring"]
        self.n_features_in_ = run["n_features"]
        self.history_ = run["history"]
        self.n_steps_ = run["step"]
        self.n_iter_ = len(run["history"])
        for name, value in run["readout"].items():
            setattr(self, name, value)
        self._training_state = self._training_state_of(run) if keep_training_state else None

    def _write_checkpoint(self, run: dict) -> None:
        fitted = {
            "scale_": run["scale"],
            "centring_": run["centring"],
            "n_features_in_": run["n_features"],
            "history_": run["history"],
            "n_steps_": run["step"],
            "n_iter_": len(run["history"]),
            **run.get("readout", {}),
        }
        _atomic_save(self._payload(run["module"], fitted, self._training_state_of(run)), self.checkpoint_path)

    def _distil_rotations(self, run: dict, p: Particles, coords: np.ndarray, train_idx: np.ndarray) -> dict:
        """Fit the linear read-out of the rotation average (see ``rotation_average``); the fitted attributes.

        Up to ``MAX_READOUT_PARTICLES`` training particles, evenly spaced,
        each subsampled to ``max_points`` localizations, at most
        ``MAX_READOUT_POINTS`` (after centring on all of them), by a fixed-seed generator, so the training random streams are
        untouched and a resumed fit distils exactly what an uninterrupted one does.
        """
        angles = self._rotation_angles()
        attrs = {"readout_coef_": None, "readout_intercept_": None, "readout_rotations_": len(angles), "readout_error_": None}
        if self.rotation_average != "distilled" or len(angles) < 2:
            return attrs
        t0 = time.perf_counter()
        n = min(MAX_READOUT_PARTICLES, len(train_idx))
        rows, lengths = gather_rows(p.offsets, train_idx[np.linspace(0, len(train_idx) - 1, n).round().astype(np.int64)])
        cap = MAX_READOUT_POINTS if self.max_points is None else min(int(self.max_points), MAX_READOUT_POINTS)
        rows, lengths = subsample_rows(rows, lengths, cap, np.random.default_rng(0))
        module = run["module"]
        module.eval()
        coef, intercept, error = fit_rotation_readout(
            self._inference_encoder(module), coords[rows], lengths, angles, next(module.parameters()).device
        )
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            warnings.warn(
                "the rotation read-out could not be fitted (non-finite values); transform computes the exact average "
                f"over {len(angles)} angles instead.",
                UserWarning,
                stacklevel=3,
            )
            return attrs
        _report(
            self.verbose,
            f"[PointCloudVAE] rotation average over {len(angles)} angles distilled into a linear read-out "
            f"({n} particles, relative error {error:.3f}) in {time.perf_counter() - t0:.1f} s",
        )
        attrs.update(readout_coef_=coef, readout_intercept_=intercept, readout_error_=error)
        return attrs

    def _readout_head(self, n_angles: int, device):
        """The distilled read-out as a head for :class:`FoldedEncoder`, or None when the exact average is due."""
        coef = getattr(self, "readout_coef_", None)
        if (
            self.rotation_average != "distilled"
            or n_angles < 2
            or coef is None
            or getattr(self, "readout_rotations_", None) != n_angles
        ):
            return None
        weight = torch.from_numpy(np.asarray(coef, dtype=np.float32)).to(device)
        bias = torch.from_numpy(np.asarray(self.readout_intercept_, dtype=np.float32)).to(device)
        return lambda pooled: torch.addmm(bias, pooled, weight)

    def _warmup_steps(self, n_steps: int) -> int:
        """KL warm-up length in steps: ``kl_warmup_steps``, or half the fit when "auto"."""
        if self.kl_warmup_steps == "auto":
            return max(n_steps // 2, 1)
        return int(self.kl_warmup_steps)

    def _progress_bar(self, total):
        if self.verbose < 2:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc="PointCloudVAE", unit="step")

    # ------------------------------------------------------------ encoding
    def _encode_chunks(self, p: Particles, angle: float = 0.0):
        """Yield (start, stop, points, seg, lens) chunks of the normalised particles.

        ``angle`` rotates every particle about the optical axis first.
        """
        device = next(self.module_.parameters()).device
        coords = self._normalised(p)
        if angle:
            coords = rotate_about_z(coords, p.lengths, np.full(p.n_particles, angle)).astype(np.float32)
        for start, stop in chunk_by_budget(p.lengths, _PARTICLE_BUDGET, _LOCALIZATION_BUDGET):
            rows = np.arange(p.offsets[start], p.offsets[stop])
            yield start, stop, *packed_to_device(coords[rows], p.lengths[start:stop], device)

    def _rotation_angles(self):
        # golden-angle steps: well spread within any symmetry period (evenly
        # spaced angles would all coincide for an 8-fold pore)
        n = int(self.transform_rotations) if self.rotation_augmentation else 1
        return np.mod(np.arange(n) * np.pi * (3.0 - np.sqrt(5.0)), 2.0 * np.pi)

    def transform(self, X):
        """Posterior mean of the latent of every particle.

        Every localization of every particle is used (no subsampling); particles
        are processed in chunks of bounded size. With ``rotation_augmentation``,
        the means at ``transform_rotations`` angles about the optical axis are
        averaged, so the latent depends less on the angle at
        which the particle was picked; with ``rotation_average="distilled"``
        (the default) one encoder pass and the read-out fitted in ``fit``
        give that average.

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
        """Symmetric Chamfer distance (nm^2) between each particle and its decoded posterior mean."""
        check_is_fitted(self, "module_")
        p = self._check_particles(X, fitting=False)
        out = np.empty(p.n_particles)
        with torch.inference_mode():
            for start, stop, pts, seg, lens in self._encode_chunks(p):
                mu, _ = self.module_.encoder(pts, seg, lens)
                target, _ = pad_packed(pts, lens)
                cd = chamfer_distance(self.module_.decoder(mu), target, lens)
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
    def _payload(self, module, fitted: dict, training: dict | None) -> dict:
        """The model-file dict: tensors and plain Python only (see :meth:`save`)."""
        params = {}
        for name, value in self.get_params(deep=False).items():
            if isinstance(value, (np.random.RandomState, np.random.Generator)):
                value = None  # a generator object is not a setting; the fitted model does not need it
            params[name] = _to_plain(value, f"parameter {name!r}")
        plain, arrays = {}, {}
        for name, value in fitted.items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                arrays[name] = torch.from_numpy(np.ascontiguousarray(value))
            else:
                plain[name] = _to_plain(value, f"attribute {name!r}")
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "library_version": __version__,
            "torch_version": str(torch.__version__),
            "params": params,
            "module_config": _to_plain(dict(module.config), "the module configuration"),
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "fitted": plain,
            "fitted_arrays": arrays,
            "output_config": _to_plain(dict(getattr(self, "_sklearn_output_config", {})), "the set_output configuration"),
        }
        if training is not None:
            training = dict(training)
            validation = training.pop("validation")
            training["validation"] = None if validation is None else torch.from_numpy(np.asarray(validation, dtype=np.int64))
            payload["training"] = training
        return payload

    def _fitted_attributes(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_") and k != "module_"}

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
        _atomic_save(self._payload(self.module_, self._fitted_attributes(), None), path)

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
            ``weights_only=True``, or has a format version this pcvae_sklearn
            cannot read.
        """
        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA GPU on this machine; use device='cpu'.")
        try:
            payload = torch.load(path, map_location=target, weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... from a foreign or damaged file
            raise ValueError(
                f"{path} is not a model file that loads safely with torch.load(weights_only=True) ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); PointCloudVAE.load reads files written by "
                "PointCloudVAE.save or checkpoint_path."
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a PointCloudVAE model file (it has no {_FORMAT!r} format tag).")
        version = payload.get("format_version")
        if version not in _READABLE_FORMAT_VERSIONS:
            raise ValueError(
                f"{path} is a PointCloudVAE model file of format version {version!r} (written by pcvae_sklearn "
                f"{payload.get('library_version')}), but this pcvae_sklearn ({__version__}) reads format version(s) "
                f"{', '.join(map(str, _READABLE_FORMAT_VERSIONS))}; load it with a matching pcvae_sklearn version."
            )
        names = set(cls._get_param_names())
        unknown = sorted(set(payload["params"]) - names)
        if unknown:
            logger.warning("%s: ignoring parameters this pcvae_sklearn does not know: %s", path, unknown)
        params = {k: v for k, v in payload["params"].items() if k in names}
        for name, value in _BEFORE_THEY_EXISTED.items():
            params.setdefault(name, value)
        params["device"] = device
        est = cls(**params)
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):  # building the module must not touch the global RNG
            module = PCVAEModule(**payload["module_config"])
        module.load_state_dict(payload["state_dict"])
        est.module_ = module.to(target).eval()
        for name, value in payload["fitted"].items():
            setattr(est, name, value)
        for name, value in payload.get("fitted_arrays", {}).items():
            setattr(est, name, value.cpu().numpy())
        if payload.get("output_config"):
            est._sklearn_output_config = dict(payload["output_config"])
        training = payload.get("training")
        if training is not None:
            training = dict(training)
            validation = training.get("validation")
            training["validation"] = None if validation is None else validation.cpu().numpy()
            training["torch_rng"] = training["torch_rng"].cpu()
            est._training_state = training
        return est

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ may return the live __dict__
        module = state.pop("module_", None)
        if module is not None:
            state["_module_state"] = {
                "config": dict(module.config),
                "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            }
        return state

    def __setstate__(self, state):
        saved = state.pop("_module_state", None)
        # a pickle from an older version lacks the parameters added since: they take the
        # value it was trained with (_BEFORE_THEY_EXISTED), or else their defaults
        import inspect

        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if param.kind is param.KEYWORD_ONLY and name not in state:
                state[name] = _BEFORE_THEY_EXISTED.get(name, param.default)
        super().__setstate__(state)
        if saved is not None:
            with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):  # building the module must not touch the global RNG
                module = PCVAEModule(**saved["config"])
            module.load_state_dict(saved["state_dict"])
            module.eval()
            device = torch.device(self.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")  # a GPU-trained model still loads on a CPU-only machine
            self.module_ = module.to(device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags
