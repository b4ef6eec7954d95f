"""Study: training and architecture variants against the 3D pores' ring-distance axis.

On ``make_npc_3d`` the default latent of the time followed the radius well,
but the ring distance (the pore's height) was spread over several
dimensions; on most seeds no single dimension followed it as well as the
model-based estimate (``docs/defaults.md``). This script screens variants of
``PointCloudVAE`` for a single dimension that does, without losing the
radius (2D and 3D). Its presets start from the defaults before 2026-11-26
(``BEFORE_LATENT_ICA``), when the winner of the ``latent-ica`` preset became
the default, except ``penalty-schedule``, which starts from that winner
(``FIRST_LATENT_ICA``; its best variant became the default the same day);
``--variant`` runs start from the current defaults:

* plain settings: ``--variant 'name={"beta": 0.005}'`` passes the JSON as
  keyword arguments to ``PointCloudVAE``;
* variants that patch the library for the duration of one fit (not options of
  the library), named with a leading underscore in the JSON:

  - ``"_particles": n``: fit on n particles instead of 1000;
  - ``"_nested_dropout": true``: during training each particle's latent keeps
    only its first m dimensions, m uniform in 1..latent_dim (nested dropout,
    Rippel et al. 2014: ordered latents, the first carrying the most);
  - ``"_data": {...}``: keyword arguments for the simulator (another range of
    heights, say), to see how the data, not the model, changes the latent;
  - ``"_cosine": true``: the learning rate rises linearly over the first 10 %
    of the steps, then follows a cosine down to 1 % of ``learning_rate``;
  - ``"_capacity": [C, gamma]``: the KL term becomes ``gamma * |KL - C(t)|``
    with a capacity C(t) rising linearly from 0 to C nats over the first 80 %
    of the steps (Burgess et al. 2018, "Understanding disentangling in
    beta-VAE"); no KL warm-up;
  - ``"_polar": true``: the encoder sees ``(r, 0, z)``, with ``r`` the
    distance from the particle's centre in the focal plane, instead of
    ``(x, y, z)`` (invariant to rotation about the optical axis; the decoder
    still reconstructs ``(x, y, z)``);
  - ``"_radius_channel": true``: the encoder sees ``(x, y, z, r)``;
  - ``"_z_stretch": s``: the data's z is multiplied by s before fitting
    (equivalent to scaling z separately from x and y);
  - ``"_rotation_min": K``: the Chamfer distance is taken at the best of K
    rotations of the decoded points about the optical axis (the loss of
    ``study_rotation_loss.py``), so the latent need not encode the angle at
    which a particle was picked;
  - ``"_axial_dims": k``: in 3D, two decoders: one sees only the first
    ``latent_dim - k`` latent dimensions and gives the decoded points' x and
    y, the other sees only the last k and gives their z (so the axial
    structure, the ring distance, must be encoded in those k dimensions);
  - ``"_prior": p``: the prior becomes a factorised generalised normal of
    even shape p with unit variance, ``exp(-|z / a|**p)`` per dimension
    (p = 2 is the standard normal). The KL term stays analytic. An isotropic
    Gaussian prior is the same under every rotation of the latent space, so
    nothing but the diagonal posterior ties a structural parameter to one
    axis; a factorised non-Gaussian prior is not (as in ICA): with p > 2
    (flatter than a Gaussian, like a uniform spread of radii) it costs less
    when independent, flat-distributed parameters lie along the axes than
    when they are mixed. Measured as a patch; now the library's
    ``prior_shape``, the same KL;
  - ``"_latent_bn": true``: the head to the latent mean ends in a batch norm
    without scale or shift (the means of every dimension standardised over
    the particles of the batch, running statistics in ``transform``; BN-VAE,
    Zhu et al. 2020), so the means fill the prior instead of staying ~10 times
    narrower, and the prior's shape (``"_prior"``) can act on them. Measured
    as a patch; now ``latent_batch_norm=True``, the same layer;
  - ``"_decorrelation": lam``: adds ``lam * sum_{i != j} corr(mu_i, mu_j)**2``
    over the particles of the batch to the loss, warmed up with the KL term.
    With ``"_latent_bn"`` and a flat prior (``"_prior": 4``) this is ICA at
    training time: whitened means (unit variance, uncorrelated) whose
    marginals the prior prefers flat;
  - ``"_kurtosis": kap``: with ``"_decorrelation"``, also adds ``kap * sum_i
    mean(mu_i**4)`` over the batch (warmed up the same way): the kurtosis
    contrast of ICA, which prefers flat (uniform-like) marginals, as a spread
    of radii or ring distances is, to their more Gaussian mixtures. The
    library's ``kurtosis`` parameter since these measurements;
  - ``"_average_angles": R``: with ``"_decorrelation"`` (and ``"_kurtosis"``),
    the penalties see the mean of every particle's latent means at its
    training angle and R - 1 more random angles about the optical axis
    (R - 1 more encoder passes per step), as ``transform``'s rotation average
    does, instead of the training angle's alone;
  - ``"_decorrelation_two_angles": lam``: the same penalty on the correlations
    between every particle's means at its training angle and at a second,
    independent random angle about the optical axis (one more encoder pass):
    the part of a latent that follows the angle at which the particle was
    picked or rotated does not correlate between the two, so the encoder
    cannot lower the penalty by encoding the angle (which it does with
    ``"_decorrelation"`` under rotation augmentation: on small test data the
    8-angle-averaged latents came out *more* correlated with the penalty);
  - ``"_running_correlation": m``: the ``decorrelation`` penalty is taken on
    a running covariance of the latent means (each step: ``(1 - m)`` times
    the running one plus ``m`` times the batch's) instead of the batch's
    alone; its gradient still comes from the batch's covariance (the
    running part is a constant), so the correlations that the gradient
    reduces are estimated over about ``1 / m`` batches instead of one batch
    of 16 particles;
  - ``"_shift_invariant": true``: the Chamfer distance is taken after the
    translation that best aligns the decoded points with the particle (three
    ICP steps on the nearest neighbours, without gradient), so the latent
    need not encode how far the centre misses the structure's true centre.

For each variant, data set and seed it fits on ``make_<data set>(1000,
random_state=500 + seed)`` with ``random_state=seed`` (the data and seeds of
``bench_quality.py``) and prints the best latent dimension's |Spearman| with
each true parameter, the model-based estimate's, and ``LatentUnmixer``'s best
component (``--unmix-components k`` for its ``n_components``); then a summary
per variant. Fits run in separate processes
(``--jobs``), each patched only while it fits.

    python benchmarks/study_training_variants.py --variant 'default={}' 'pooled={"pooled_batch_norm": true}' \\
        --datasets npc3d --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 1    # the pooled batch norm in docs/defaults.md
    python benchmarks/study_training_variants.py --preset screen --device cuda --jobs 8    # the tables in docs/defaults.md
    python benchmarks/study_training_variants.py --preset follow-up --datasets npc3d --jobs 2
    python benchmarks/study_training_variants.py --preset data --datasets npc3d --jobs 2
    python benchmarks/study_training_variants.py --preset latent-ica --datasets npc3d --jobs 1
    python benchmarks/study_training_variants.py --preset penalty-schedule --datasets npc3d \\
        --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 1
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import math
import multiprocessing
import os
import time
from unittest import mock

import numpy as np
import torch
from _common import best_abs_spearman, rotation_min_chamfer

import pcvae_sklearn.encode._fast_encode as fast_module
import pcvae_sklearn.encode._networks as net_module
import pcvae_sklearn.encode._vae as vae_module
from pcvae_sklearn import HeightEstimator, LatentUnmixer, PointCloudVAE, RadiusEstimator
from pcvae_sklearn.datasets import make_npc_2d, make_npc_3d, make_tetrahedron

DATASETS = {
    "npc2d": (make_npc_2d, {"radius": RadiusEstimator()}),
    "npc3d": (make_npc_3d, {"radius": RadiusEstimator(), "height": HeightEstimator(structure="pore")}),
    "tetra": (make_tetrahedron, {"height": HeightEstimator(structure="tetrahedron")}),
}

# the screen recorded in docs/defaults.md (on one H100, --device cuda --jobs 8)
SCREEN = {
    "default": {},
    "lr 3e-3": {"learning_rate": 3e-3},
    "cosine lr 1e-3": {"_cosine": True},
    "cosine lr 3e-3": {"_cosine": True, "learning_rate": 3e-3},
    "batch 8": {"batch_size": 8},
    "beta 0.002": {"beta": 0.002},
    "beta 0.005": {"beta": 0.005},
    "latent_dim 6": {"latent_dim": 6},
    "latent_dim 12": {"latent_dim": 12},
    "capacity 10, gamma 0.01": {"_capacity": [10, 0.01]},
    "capacity 20, gamma 0.01": {"_capacity": [20, 0.01]},
    "capacity 10, gamma 0.03": {"_capacity": [10, 0.03]},
    "capacity 5, gamma 0.1": {"_capacity": [5, 0.1]},
    "capacity 10, gamma 0.1": {"_capacity": [10, 0.1]},
    "512 decoder channels": {"decoder_channels": 512},
    "weight decay 0": {"weight_decay": 0.0},
    "8 epochs": {"n_epochs": 8},
    "2000 particles": {"_particles": 2000},
    "3000 particles": {"_particles": 3000},
    "z stretched 1.5": {"_z_stretch": 1.5},
    "z stretched 2": {"_z_stretch": 2.0},
    "polar input": {"_polar": True},
    "polar input, midrange": {"_polar": True, "centring": "midrange"},
    "radius channel": {"_radius_channel": True},
    "radius channel, midrange": {"_radius_channel": True, "centring": "midrange"},
    "pooled batch norm": {"pooled_batch_norm": True},
}

# the follow-up on the CPU recorded in docs/defaults.md (--datasets npc3d --jobs 2)
FOLLOW_UP = {
    "default": {},
    "pooled batch norm": {"pooled_batch_norm": True},
    "pooled batch norm, capacity 10, gamma 0.03": {"pooled_batch_norm": True, "_capacity": [10, 0.03]},
    "pooled batch norm, capacity 20, gamma 0.03": {"pooled_batch_norm": True, "_capacity": [20, 0.03]},
    "pooled batch norm, capacity 10, gamma 0.1": {"pooled_batch_norm": True, "_capacity": [10, 0.1]},
    "pooled batch norm, capacity 5, gamma 0.03": {"pooled_batch_norm": True, "_capacity": [5, 0.03]},
    "pooled batch norm, beta 0.005": {"pooled_batch_norm": True, "beta": 0.005},
    "beta 0.01": {"beta": 0.01},
    "pooled batch norm, beta 0.01": {"pooled_batch_norm": True, "beta": 0.01},
    "axial decoder, 2 dims": {"_axial_dims": 2},
    "axial decoder, 3 dims": {"_axial_dims": 3},
    "shift-invariant loss": {"_shift_invariant": True},
    "shift-invariant loss, axial decoder 2 dims": {"_shift_invariant": True, "_axial_dims": 2},
    "z stretched 3": {"_z_stretch": 3.0},
    "z stretched 0.5": {"_z_stretch": 0.5},
    "loss at the best of 32 rotations": {"_rotation_min": 32},
    "nested dropout": {"_nested_dropout": True},
    "prior p=4": {"_prior": 4},
    "prior p=8": {"_prior": 8},
    "prior p=4, beta 0.01": {"_prior": 4, "beta": 0.01},
    "prior p=4, pooled batch norm": {"_prior": 4, "pooled_batch_norm": True},
    "prior p=8, pooled batch norm, capacity 10, gamma 0.03": {"_prior": 8, "pooled_batch_norm": True, "_capacity": [10, 0.03]},
}

# training-time ICA recorded in docs/defaults.md (--datasets npc3d --jobs 1, 2 threads)
LATENT_ICA = {
    "latent batch norm, prior p=4": {"_latent_bn": True, "_prior": 4},
    "latent batch norm, decorrelation 0.01": {"_latent_bn": True, "_decorrelation": 0.01},
    "latent batch norm, decorrelation 0.01, prior p=4": {"_latent_bn": True, "_decorrelation": 0.01, "_prior": 4},
    "latent batch norm, decorrelation 0.02, prior p=4": {"_latent_bn": True, "_decorrelation": 0.02, "_prior": 4},
    "latent batch norm, decorrelation 0.03, prior p=4": {"_latent_bn": True, "_decorrelation": 0.03, "_prior": 4},
    "latent batch norm, decorrelation 0.1, prior p=4": {"_latent_bn": True, "_decorrelation": 0.1, "_prior": 4},
    "latent batch norm, decorrelation 0.01, prior p=8": {"_latent_bn": True, "_decorrelation": 0.01, "_prior": 8},
    "pooled and latent batch norm, decorrelation 0.01, prior p=4": {
        "pooled_batch_norm": True, "_latent_bn": True, "_decorrelation": 0.01, "_prior": 4},
    "latent batch norm, two-angle decorrelation 0.01, prior p=4": {
        "_latent_bn": True, "_decorrelation_two_angles": 0.01, "_prior": 4},
    "latent batch norm, decorrelation 0.01, prior p=4, kurtosis 0.001": {
        "_latent_bn": True, "_decorrelation": 0.01, "_prior": 4, "_kurtosis": 0.001},
    "latent batch norm, decorrelation 0.01, prior p=4, kurtosis 0.003": {
        "_latent_bn": True, "_decorrelation": 0.01, "_prior": 4, "_kurtosis": 0.003},
    "latent batch norm, decorrelation 0.01, prior p=4, kurtosis 0.001, penalties on the 4-angle mean": {
        "_latent_bn": True, "_decorrelation": 0.01, "_prior": 4, "_kurtosis": 0.001, "_average_angles": 4},
}

# the schedule and strength of the penalties, from the first training-time ICA
# defaults (--datasets npc3d --seeds 0 ... 9 --jobs 1; seeds 10-14 for the
# chosen variants; seeds 0-4 for the last two, which fit twice as long)
PENALTY_SCHEDULE = {
    "first training-time ICA (the defaults of the time)": {},
    "running correlation 0.1": {"_running_correlation": 0.1},
    "running correlation 0.03": {"_running_correlation": 0.03},
    "batch 32": {"batch_size": 32},
    "penalties from the first step": {"penalty_warmup": False},
    "penalties from the first step, running correlation 0.1": {"penalty_warmup": False, "_running_correlation": 0.1},
    "penalties from the first step, kurtosis 0.003": {"penalty_warmup": False, "kurtosis": 0.003},
    "penalties from the first step, kurtosis 0.01": {"penalty_warmup": False, "kurtosis": 0.01},
    "penalties from the first step, kurtosis 0.03": {"penalty_warmup": False, "kurtosis": 0.03},
    "penalties from the first step, decorrelation 0.03, kurtosis 0.003": {
        "penalty_warmup": False, "decorrelation": 0.03, "kurtosis": 0.003},
    "8 epochs": {"n_epochs": 8},
    "2000 particles": {"_particles": 2000},
}
# the defaults between the two changes of 2026-11-26: the penalties warmed up with the KL term
FIRST_LATENT_ICA = {"penalty_warmup": True, "kurtosis": 0.001}

# the data, not the model: other ranges of ring distances (--datasets npc3d)
DATA = {
    "heights 40-70 nm (default)": {},
    "heights 40-100 nm": {"_data": {"height": [40, 100]}},
    "heights 50-60 nm": {"_data": {"height": [50, 60]}},
}
# The presets were measured before the defaults gained the training-time ICA
# (2026-11-26); their variants start from the defaults of that time, so the
# commands reproduce the tables in docs/defaults.md. "penalty-schedule" starts
# from the first training-time ICA (FIRST_LATENT_ICA).
BEFORE_LATENT_ICA = dict(vae_module._BEFORE_THEY_EXISTED)
PRESETS = {
    name: {variant: {**BEFORE_LATENT_ICA, **cfg} for variant, cfg in preset.items()}
    for name, preset in {"screen": SCREEN, "follow-up": FOLLOW_UP, "data": DATA, "latent-ica": LATENT_ICA}.items()
}
PRESETS["penalty-schedule"] = {variant: {**FIRST_LATENT_ICA, **cfg} for variant, cfg in PENALTY_SCHEDULE.items()}


def _encoder_features(polar: bool):
    """The per-localization encoder input: (r, 0[, z]) when ``polar``, else (x, y[, z], r)."""

    def features(points):
        r = torch.hypot(points[:, 0], points[:, 1])
        if polar:
            return torch.stack([r, torch.zeros_like(r)] + ([points[:, 2]] if points.shape[1] == 3 else []), 1)
        return torch.cat([points, r[:, None]], 1)

    return features


def _patched_pool(cls, features):
    original = cls.pool

    def pool(self, points, segment, lengths):
        return original(self, features(points), segment, lengths)

    return mock.patch.object(cls, "pool", pool)


def _shift_invariant_chamfer(chamfer_distance, n_steps: int = 3):
    """``chamfer_distance`` after the least-squares shift of the prediction onto its nearest neighbours, iterated."""
    from pcvae_sklearn.encode._chamfer import nearest_neighbours

    def chamfer(pred, target, lengths, **kwargs):
        valid = torch.arange(target.shape[1], device=target.device)[None, :] < lengths[:, None]
        n_valid = lengths.clamp(min=1).to(pred.dtype)[:, None]
        shift = torch.zeros_like(pred[:, :1, :])
        with torch.no_grad():
            for _ in range(n_steps):
                moved = pred + shift
                to_pred, to_target = nearest_neighbours(moved, target, valid)
                near_pred = moved.gather(1, to_pred[:, :, None].expand(-1, -1, pred.shape[-1]))
                near_target = target.gather(1, to_target[:, :, None].expand(-1, -1, pred.shape[-1]))
                from_target = ((target - near_pred) * valid[:, :, None]).sum(1) / n_valid
                from_pred = (near_target - moved).mean(1)
                shift = shift + 0.5 * (from_target + from_pred)[:, None, :]
        return chamfer_distance(pred + shift, target, lengths, **kwargs)

    return chamfer


class _SplitDecoder(torch.nn.Module):
    """x, y of the decoded points from the lateral latent dimensions, z from the last ``n_axial`` ones."""

    def __init__(self, lateral, axial, latent_dim: int, n_axial: int):
        super().__init__()
        self.lateral, self.axial = lateral, axial
        mask = torch.zeros(latent_dim)
        mask[latent_dim - n_axial :] = 1.0
        self.register_buffer("axial_mask", mask)

    def forward(self, z):
        xy = self.lateral(z * (1.0 - self.axial_mask))[..., :2]
        return torch.cat([xy, self.axial(z * self.axial_mask)[..., 2:]], -1)


def _turned_about_z(points, segment, n_particles: int, generator):
    """Packed points (N, d), every particle turned by its own random angle about z (drawn from ``generator``)."""
    angle = torch.rand(n_particles, generator=generator, dtype=points.dtype) * (2 * math.pi)
    c, s = torch.cos(angle)[segment], torch.sin(angle)[segment]
    turned = points.clone()
    turned[:, 0] = c * points[:, 0] - s * points[:, 1]
    turned[:, 1] = s * points[:, 0] + c * points[:, 1]
    return turned


def _decorrelation_patch(cfg: dict, beta: float) -> contextlib.ExitStack:
    """The KL term in force plus the (cross-angle) decorrelation penalty of the latent means over the batch."""
    stack = contextlib.ExitStack()
    kl_plain, two_angles = vae_module.kl_divergence, bool(cfg.get("_decorrelation_two_angles"))
    kurtosis = float(cfg.get("_kurtosis", 0.0))
    lam = float(cfg.get("_decorrelation_two_angles") or cfg.get("_decorrelation"))
    stash = {}
    n_angles = int(cfg.get("_average_angles", 1))
    if n_angles > 1:
        forward_avg_plain = net_module.PCVAEModule.forward

        def forward_avg(self, points, segment, lengths, generator=None):
            out = forward_avg_plain(self, points, segment, lengths, generator=generator)
            if self.training:  # the penalties see the mean of the means at n_angles angles
                total = out[1]
                for _ in range(n_angles - 1):
                    turned = _turned_about_z(points, segment, lengths.shape[0], generator)
                    total = total + self.encoder(turned, segment, lengths)[0]
                stash["average"] = total / n_angles
            return out

        stack.enter_context(mock.patch.object(net_module.PCVAEModule, "forward", forward_avg))
    if two_angles:
        forward_plain = net_module.PCVAEModule.forward

        def forward(self, points, segment, lengths, generator=None):
            out = forward_plain(self, points, segment, lengths, generator=generator)
            if self.training:  # the same particles at independent random angles about z
                turned = _turned_about_z(points, segment, lengths.shape[0], generator)
                stash["mu2"] = self.encoder(turned, segment, lengths)[0]
            return out

        stack.enter_context(mock.patch.object(net_module.PCVAEModule, "forward", forward))

    def kl(mu, logvar, *prior):
        out = kl_plain(mu, logvar, *prior)
        if not torch.is_grad_enabled() or mu.shape[0] <= 2:
            return out
        if n_angles > 1 and "average" in stash:
            mu = stash.pop("average").float()  # the KL above keeps the training angle's
        if kurtosis:
            out = out + (kurtosis / beta) * mu.pow(4).mean(0).sum()
        if two_angles:
            if "mu2" not in stash:
                return out
            mu2 = stash.pop("mu2").float()
            a, b = mu - mu.mean(0), mu2 - mu2.mean(0)
            cx = a.T @ b / (mu.shape[0] - 1)
            cx = 0.5 * (cx + cx.T)
            d = cx.diagonal().clamp(min=0) + 0.05  # the shared (angle-free) variance, kept off zero
            r = cx / torch.sqrt(d[:, None] * d[None, :])
            penalty = r.pow(2).sum() - r.diagonal().pow(2).sum()
        else:
            penalty = net_module.latent_correlation(mu)
        # the estimator multiplies this by the warmed-up beta
        return out + (lam / beta) * penalty

    stack.enter_context(mock.patch.object(vae_module, "kl_divergence", kl))
    return stack


def _running_correlation_patch(momentum: float):
    """The library's decorrelation penalty on a running (EMA) covariance of the latent means.

    The value comes from the running covariance, updated with the batch's; the
    gradient from the batch's covariance alone (straight through), so the
    penalty's gradient is ``2 r dcov`` with r estimated over ~1/momentum batches
    instead of one batch of 16.
    """
    state = {}

    def running(mu):
        n, k = mu.shape
        if n < 3 or k < 2:
            return mu.new_zeros(())
        cov_b = net_module.latent_covariance(mu)
        if torch.is_grad_enabled():
            s = state.get("cov")
            s = cov_b.detach() if s is None else (1 - momentum) * s + momentum * cov_b.detach()
            state["cov"] = s
        else:
            s = state.get("cov", cov_b.detach())
        return net_module.squared_correlations(s + (cov_b - cov_b.detach()))

    return mock.patch.object(vae_module, "latent_correlation", running)


def _patches(cfg: dict, total_steps: int, learning_rate: float, beta: float) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    if cfg.get("_running_correlation"):
        stack.enter_context(_running_correlation_patch(float(cfg["_running_correlation"])))
    if cfg.get("_cosine"):

        class CosineAdam(torch.optim.Adam):
            def step(self, *args, **kwargs):
                t = getattr(self, "_t", 0)
                self._t = t + 1
                f, warm = t / total_steps, 0.1
                cos = 0.5 * (1 + math.cos(math.pi * min(1.0, (f - warm) / (1 - warm))))
                lr = learning_rate * (f / warm if f < warm else 0.01 + 0.99 * cos)
                for group in self.param_groups:
                    group["lr"] = max(lr, 0.01 * learning_rate)
                return super().step(*args, **kwargs)

        stack.enter_context(mock.patch.object(torch.optim, "Adam", CosineAdam))
    if cfg.get("_decorrelation") or cfg.get("_decorrelation_two_angles"):
        stack.enter_context(_decorrelation_patch(cfg, beta))
    if cfg.get("_capacity"):
        c_max, gamma = cfg["_capacity"]
        kl_plain, state = vae_module.kl_divergence, {"t": 0}

        def kl_capacity(mu, logvar, *prior):
            kl = kl_plain(mu, logvar, *prior)
            if not torch.is_grad_enabled():
                return kl
            c = c_max * min(1.0, state["t"] / (0.8 * total_steps))
            state["t"] += 1
            # the estimator multiplies this by beta: divide it out, so the penalty is gamma * |KL - C|
            return ((kl.mean() - c).abs() * (gamma / beta)).expand_as(kl)

        stack.enter_context(mock.patch.object(vae_module, "kl_divergence", kl_capacity))
    if cfg.get("_rotation_min"):
        loss = rotation_min_chamfer(vae_module.chamfer_distance, int(cfg["_rotation_min"]))
        stack.enter_context(mock.patch.object(vae_module, "chamfer_distance", loss))
    if cfg.get("_shift_invariant"):
        # composes with the rotation search above: the patched distance in force is the one wrapped
        loss = _shift_invariant_chamfer(vae_module.chamfer_distance)
        stack.enter_context(mock.patch.object(vae_module, "chamfer_distance", loss))
    if cfg.get("_polar") or cfg.get("_radius_channel"):
        features = _encoder_features(polar=bool(cfg.get("_polar")))
        # training (the module) and transform / the rotation read-out (the folded encoder) see the same input
        stack.enter_context(_patched_pool(net_module.PointNetEncoder, features))
        stack.enter_context(_patched_pool(fast_module.FoldedEncoder, features))
    if cfg.get("_radius_channel"):
        init = net_module.PointNetEncoder.__init__

        def patched_init(self, in_dim, *args, **kwargs):
            init(self, in_dim + 1, *args, **kwargs)

        stack.enter_context(mock.patch.object(net_module.PointNetEncoder, "__init__", patched_init))
    if cfg.get("_axial_dims"):
        module_init, n_axial = net_module.PCVAEModule.__init__, int(cfg["_axial_dims"])

        def split_init(self, in_dim, latent_dim, encoder_widths, decoder_widths, decoder_channels, n_output_points, n_heads, **kw):
            module_init(self, in_dim, latent_dim, encoder_widths, decoder_widths, decoder_channels, n_output_points, n_heads, **kw)
            if in_dim == 3:
                axial = net_module.AttentionDecoder(latent_dim, in_dim, decoder_widths, decoder_channels, n_output_points, n_heads)
                self.decoder = _SplitDecoder(self.decoder, axial, latent_dim, n_axial)

        stack.enter_context(mock.patch.object(net_module.PCVAEModule, "__init__", split_init))
    if cfg.get("_nested_dropout"):

        def nested_forward(self, points, segment, lengths, generator=None):
            mu, logvar = self.encoder(points, segment, lengths)
            logvar = logvar.clamp(-20.0, 10.0)
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
            if self.training:
                n, k = z.shape
                keep = torch.randint(1, k + 1, (n,), generator=generator, device=z.device)
                z = z * (torch.arange(k, device=z.device)[None, :] < keep[:, None]).to(z.dtype)
            return self.decoder(z), mu, logvar

        stack.enter_context(mock.patch.object(net_module.PCVAEModule, "forward", nested_forward))
    return stack


def run_one(
    name: str, cfg: dict, dataset: str, seed: int, device: str, threads: int, n_particles: int = 1000, unmix_components=None
) -> dict:
    torch.set_num_threads(threads)
    cfg = dict(cfg)
    n = int(cfg.get("_particles", n_particles))
    params = {k: v for k, v in cfg.items() if not k.startswith("_")}
    # measured as patches; the same layer and the same KL are now the library's parameters
    if cfg.get("_latent_bn"):
        params["latent_batch_norm"] = True
    if cfg.get("_prior"):
        params["prior_shape"] = int(cfg["_prior"])
    if cfg.get("_capacity"):
        params["kl_warmup_steps"] = 0
    vae = PointCloudVAE(random_state=seed, device=device, **params)
    total_steps = vae.n_epochs * math.ceil(n / vae.batch_size)
    make, estimators = DATASETS[dataset]
    # JSON has no tuples: a [low, high] pair is the simulator's uniform range
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("_data", {}).items()}
    X, truth = make(n, random_state=500 + seed, **data)
    if cfg.get("_z_stretch"):
        import awkward as ak

        X = ak.with_field(X, X["z"] * cfg["_z_stretch"], "z")
    t0 = time.perf_counter()
    with _patches(cfg, total_steps, vae.learning_rate, vae.beta):
        Z = vae.fit_transform(X)
    out = {"variant": name, "dataset": dataset, "seed": seed, "fit_s": round(time.perf_counter() - t0, 1)}
    S = LatentUnmixer(n_components=unmix_components, random_state=seed).fit_transform(Z)
    for param, est in estimators.items():
        out[param] = round(best_abs_spearman(Z, truth[param]), 3)
        out[param + "_estimator"] = round(best_abs_spearman(est.fit_transform(X), truth[param]), 3)
        out[param + "_unmixed"] = round(best_abs_spearman(S, truth[param]), 3)
    return out


def _parse_variant(text: str) -> tuple[str, dict]:
    name, _, cfg = text.partition("=")
    return name, json.loads(cfg or "{}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", nargs="+", default=[], help="NAME=JSON (see above)")
    ap.add_argument("--preset", choices=list(PRESETS), help="the variants of a table in docs/defaults.md")
    ap.add_argument("--datasets", nargs="+", default=["npc3d", "npc2d"], choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--seeds-2d", type=int, nargs="+", default=[0, 1, 2], help="seeds for npc2d and tetra")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="fits at a time, each in its own process")
    ap.add_argument("--n-particles", type=int, default=1000, help="particles per fit, where a variant does not set _particles")
    ap.add_argument("--unmix-components", type=int, default=None,
                    help="LatentUnmixer's n_components for the 'unmixed' figures (default: the active dimensions)")
    args = ap.parse_args(argv)
    variants = dict(_parse_variant(v) for v in args.variant)
    if args.preset:
        variants = {**PRESETS[args.preset], **variants}
    if not variants:
        variants = {"default": {}}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    tasks = [
        (name, cfg, ds, seed)
        for ds in args.datasets
        for seed in (args.seeds if ds == "npc3d" else args.seeds_2d)
        for name, cfg in variants.items()
        if not (cfg.get("_z_stretch") and ds == "npc2d")  # 2D data has no z to stretch
    ]
    results = []
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = [pool.submit(run_one, *task, args.device, threads, args.n_particles, args.unmix_components) for task in tasks]
        for future in cf.as_completed(futures):
            results.append(future.result())
            print(json.dumps(results[-1]), flush=True)
    print("\nvariant                      dataset  param   best latent |rho| per seed (mean, min)   estimator mean   unmixed mean")
    for name in variants:
        for ds in args.datasets:
            rows = sorted((r for r in results if r["variant"] == name and r["dataset"] == ds), key=lambda r: r["seed"])
            if not rows:
                continue
            for param in DATASETS[ds][1]:
                v = np.array([r[param] for r in rows])
                per_seed = " ".join(f"{x:.2f}" for x in v)
                print(f"{name:28s} {ds:7s}  {param:6s}  {per_seed} ({v.mean():.3f}, {v.min():.2f})   "
                      f"{np.mean([r[param + '_estimator'] for r in rows]):.3f}   {np.mean([r[param + '_unmixed'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
