"""The EM of the JRMPC-style joint registration: E-step, M-step and the loop.

All particles share one Gaussian mixture: ``K`` centres, one isotropic
variance ``sigma2`` to which each localization's own precision is added, and
a uniform outlier term. Every kernel works on the packed form of
:class:`~pcvae_sklearn._ragged.Particles` (flat coordinates plus offsets):
one E-step is a few ``(n_localizations, K)`` matrix products and one
``exp``; the M-step is segment sums plus one batched SVD over all particles.
Nothing here loops over particles in Python.

The kernels here take each localization's variance along the common frame's
axes (:class:`CommonFrameVariances`); those of
:mod:`~pcvae_sklearn.fuse._anisotropic` turn it with the particle
(:class:`~pcvae_sklearn.fuse._anisotropic.OwnFrameVariances`). :func:`run_em`
runs either.

Notation (shapes lead):

- ``src`` (m, d): localizations in their particle's own frame, centred on
  the particle's centroid;
- ``offsets`` (n + 1,): particle ``j`` owns rows ``offsets[j]:offsets[j+1]``;
- ``rotations`` (n, d, d), ``translations`` (n, d): registered localization is
  ``src @ R_j.T + t_j``;
- ``loc_var`` (m, d): each localization's own variance per axis (nm^2), zero
  where no precision is known;
- ``centres`` (K, d), ``sigma2`` (float).

References
----------
Evangelidis, G. D. and Horaud, R., "Joint alignment of multiple point sets
with batch and incremental expectation-maximization", IEEE TPAMI 40 (2018).

Wang, W., Heydarian, H., Huijben, T. A. P. M., Stallinga, S. and Rieger, B.,
"Joint registration of multiple point clouds for fast particle fusion in
localization microscopy", Bioinformatics 38 (2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._ragged import apply_transforms, gather_rows, segment_sum

__all__ = [
    "EMState",
    "Responsibilities",
    "CommonFrameVariances",
    "e_step",
    "weighted_procrustes",
    "centre_sums",
    "update_centres",
    "update_sigma2",
    "run_em",
    "particle_loglik",
]

# log(2 pi)
_LOG_2PI = float(np.log(2.0 * np.pi))
#: the dtype of the dense (m, K) responsibilities. The log densities are formed in float64 and only their exp and the
#: products with it run in float32, half the memory traffic of the E-step and M-step (the exp is ~3.5x faster);
#: responsibilities then carry a relative error of about 1e-6, far below anything EM resolves.
WEIGHTS_DTYPE = np.float32
#: a row whose Gaussian terms sum below this (relative to its upper bound) is redone with its own maximum as the
#: shift, so that no term a float32 exp would flush to zero (below about exp(-87)) carries weight beside it
_LOST = {np.dtype(np.float32): 1e-26, np.dtype(np.float64): 1e-250}
#: the E-step forms the log densities in float64 blocks of about this many bytes
_BLOCK_BYTES = 1 << 20


# ----------------------------------------------------------------- E-step
@dataclass
class Responsibilities:
    """Responsibilities in factored form: ``resp = weights * scale[:, None]``.

    Keeping the row scale apart saves a pass over the ``(m, K)`` matrix:
    products with ``resp`` are products with ``weights``, rescaled per row.
    """

    weights: np.ndarray  # (m, K), unnormalised, in WEIGHTS_DTYPE
    scale: np.ndarray  # (m,)
    owned: np.ndarray  # (m,) sum over centres of resp (1 minus the outlier share)
    loglik: np.ndarray  # (m,) log-density of every localization

    def dense(self) -> np.ndarray:
        """The normalised ``(m, K)`` responsibilities."""
        return self.weights * self.scale[:, None]

    def times(self, right: np.ndarray) -> np.ndarray:
        """``resp @ right`` for ``right`` of shape (K, c)."""
        return (self.weights @ right.astype(self.weights.dtype)) * self.scale[:, None]

    def transposed_times(self, right: np.ndarray) -> np.ndarray:
        """``resp.T @ right`` for ``right`` of shape (m, c)."""
        return (self.weights.T @ (right * self.scale[:, None]).astype(self.weights.dtype)).astype(np.float64)


def e_step(registered, loc_var, centres, sigma2, mixture, dtype=WEIGHTS_DTYPE) -> Responsibilities:
    """Responsibilities of every centre for every localization.

    Parameters
    ----------
    registered : ndarray of shape (m, d)
        Localizations in the common frame.
    loc_var : ndarray of shape (m, d)
        Per-axis localization variance added to ``sigma2``.
    centres : ndarray of shape (K, d)
    sigma2 : float
    mixture : tuple of float
        ``(log(1 - w), log(w / volume))`` for outlier weight ``w``; the
        second is ``-inf`` for no outlier term. Each centre has mixture
        weight ``(1 - w) / K``.
    dtype : numpy dtype, default=WEIGHTS_DTYPE
        Of the dense responsibilities (see ``WEIGHTS_DTYPE``).

    Returns
    -------
    Responsibilities
        ``resp[i, k]`` is the posterior probability of centre ``k`` for
        localization ``i``; ``loglik`` the log-density of each localization.

    Notes
    -----
    The log-density of localization ``i`` under centre ``k`` is, up to a
    per-localization constant, linear in ``[x_k, x_k**2, 1]``: the whole
    ``(m, K)`` matrix is one matrix product. It is shifted by its upper bound
    (the value at zero distance) instead of its row maximum, which avoids a
    reduction over the rows; rows where every term underflows (points very
    far from every centre) are redone with the exact row maximum.
    """
    m, d = registered.shape
    n_comp = centres.shape[0]
    var = sigma2 + loc_var  # (m, d)
    left = np.empty((m, 2 * d + 1))
    inv = left[:, d : 2 * d]
    np.divide(1.0, var, out=inv)
    np.multiply(inv, registered, out=left[:, :d])
    # sums over the d axes column by column: numpy's reductions along a short last axis are several times slower
    det, quad = var[:, 0].copy(), left[:, 0] * registered[:, 0]
    for a in range(1, d):
        det *= var[:, a]
        quad += left[:, a] * registered[:, a]
    np.multiply(quad, -0.5, out=left[:, 2 * d])
    top = (mixture[0] - np.log(n_comp) - 0.5 * d * _LOG_2PI) - 0.5 * np.log(det)
    right = np.empty((2 * d + 1, n_comp))
    right[:d] = centres.T
    right[d : 2 * d] = -0.5 * (centres**2).T
    right[2 * d] = 1.0
    return _responsibilities(left, right, top, mixture, dtype)


def _responsibilities(left, right, top, mixture, dtype=WEIGHTS_DTYPE) -> Responsibilities:
    """Shared tail of the E-steps: ``left @ right`` is the log density minus ``top``.

    The log densities are formed in float64 (the expansion in ``[x, x**2, 1]``
    cancels large terms); the exp and the weights are in ``dtype``.
    """
    m, n_comp = len(left), right.shape[1]
    dtype = np.dtype(dtype)
    # log density minus ``top`` (<= 0 up to rounding), in row blocks of ~1 MB: the float64 block stays in cache
    weights = np.empty((m, n_comp), dtype)
    step = max(256, _BLOCK_BYTES // (8 * n_comp))
    floor = np.log(np.finfo(dtype).tiny) + 7.0
    block = np.empty((min(step, m), n_comp))
    for start in range(0, m, step):
        stop = min(start + step, m)
        out = block[: stop - start]
        np.matmul(left[start:stop], right, out=out)
        rows = weights[start:stop]
        rows[...] = out
        # in ``dtype`` (a float32 exp is several times faster than a float64 one), from above the subnormal range
        # (slow, and below the ``_LOST`` cut anyway)
        np.maximum(rows, floor, out=rows)
        np.exp(rows, out=rows)
    gauss = (weights @ np.ones(n_comp, dtype)).astype(np.float64)
    lost = np.flatnonzero(gauss < _LOST[dtype])
    if lost.size:
        redo = left[lost] @ right
        shift = redo.max(axis=1)
        if np.isfinite(mixture[1]):
            np.maximum(shift, mixture[1] - top[lost], out=shift)
        weights[lost] = np.exp(redo - shift[:, None])
        top[lost] += shift
        gauss[lost] = weights[lost].sum(axis=1, dtype=np.float64)
    total = gauss.copy()
    if np.isfinite(mixture[1]):
        total += np.exp(mixture[1] - top)
    scale = 1.0 / total
    return Responsibilities(weights, scale, gauss * scale, top + np.log(total))


# ----------------------------------------------------------------- M-step
def weighted_procrustes(src, dst, weights, offsets, mode="full"):
    """Per-particle rigid transform minimising a weighted squared distance, batched.

    Finds, for every particle ``j``, ``R_j`` and ``t_j`` minimising
    ``sum_i sum_a weights[i, a] * (R_j src_i + t_j - dst_i)_a**2``.

    Parameters
    ----------
    src, dst : ndarray of shape (m, d)
    weights : ndarray of shape (m, d)
        Non-negative. With ``mode="full"`` only the first column is used
        (isotropic weights: the closed form needs them). With ``mode="z"``
        (3D only) the rotation acts in the xy plane with the weights of
        column 0 and the z translation uses column 2.
    offsets : ndarray of shape (n + 1,)
    mode : {"full", "z"}

    Returns
    -------
    rotations : ndarray of shape (n, d, d)
        Proper rotations (determinant +1).
    translations : ndarray of shape (n, d)
    total_weight : ndarray of shape (n,)
        Sum of the (first-column) weights of each particle; zero means the
        particle is unconstrained and its transform is meaningless.
    """
    d = src.shape[1]
    lengths = np.diff(offsets)
    if mode == "z":
        rot2, t2, total = weighted_procrustes(src[:, :2], dst[:, :2], weights[:, :2], offsets, "full")
        n = len(lengths)
        rotations = np.zeros((n, 3, 3))
        rotations[:, :2, :2] = rot2
        rotations[:, 2, 2] = 1.0
        wz = weights[:, 2]
        wz_sum = segment_sum(wz, offsets)
        tz = segment_sum(wz * (dst[:, 2] - src[:, 2]), offsets) / np.where(wz_sum > 0, wz_sum, 1.0)
        translations = np.concatenate([t2, tz[:, None]], axis=1)
        return rotations, translations, total
    # one segment sum of every product needed: the weight, the weighted coordinates and the weighted
    # products dst_a * src_b; the cross-covariance of the centred points follows from these (src is centred on
    # each particle's centroid, so no large terms cancel)
    w = weights[:, 0]
    columns = np.empty((1 + 2 * d + d * d, len(w)))
    columns[0] = w
    np.multiply(w, src.T, out=columns[1 : 1 + d])
    np.multiply(w, dst.T, out=columns[1 + d : 1 + 2 * d])
    for a in range(d):
        np.multiply(columns[1 + d + a], src.T, out=columns[1 + 2 * d + a * d : 1 + 2 * d + (a + 1) * d])
    sums = segment_sum(columns.T, offsets)
    total = sums[:, 0]
    safe = np.where(total > 0, total, 1.0)
    mu_src = sums[:, 1 : 1 + d] / safe[:, None]
    mu_dst = sums[:, 1 + d : 1 + 2 * d] / safe[:, None]
    # cross-covariance M_j = sum_i w_i (dst_i - mu_dst)(src_i - mu_src)^T, shape (n, d, d)
    cross = sums[:, 1 + 2 * d :].reshape(-1, d, d) - total[:, None, None] * mu_dst[:, :, None] * mu_src[:, None, :]
    u, _, vt = np.linalg.svd(cross)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    sign[sign == 0] = 1.0
    u[:, :, d - 1] *= sign[:, None]
    rotations = u @ vt
    translations = mu_dst - np.einsum("nab,nb->na", rotations, mu_src)
    return rotations, translations, total



def centre_sums(registered, loc_var, resp, sigma2):
    """The normal equations of the centres, per axis: ``(num, den)``, each of shape (K, d).

    ``num[k, a] = sum_i r_ik y_ia / (sigma2 + s_ia)`` and ``den[k, a] = sum_i r_ik / (sigma2 + s_ia)``;
    the unconstrained centre is ``num / den``.
    """
    d = registered.shape[1]
    inv = 1.0 / (sigma2 + loc_var)
    both = resp.transposed_times(np.concatenate([inv * registered, inv], axis=1))
    return both[:, :d], both[:, d:]


def update_centres(registered, loc_var, resp, sigma2, old_centres):
    """Precision-weighted mean of the registered localizations for every centre, shape (K, d).

    A centre that owns (almost) no localization keeps its old position.
    """
    num, den = centre_sums(registered, loc_var, resp, sigma2)
    ok = den > 1e-12 * max(float(den.max()), 1e-300)
    return np.where(ok, num / np.where(ok, den, 1.0), old_centres)


def update_sigma2(registered, loc_var, resp, centres, sigma2, floor, n_fixed_point=5):
    """Maximise the expected log-likelihood over the shared variance.

    With no localization variance this is the closed form
    ``sum_ik r_ik |y_i - x_k|^2 / (d sum_ik r_ik)``; with it, a few
    fixed-point steps of the stationarity condition
    ``sum_ia (A_ia - r_i (sigma2 + s_ia)) / (sigma2 + s_ia)^2 = 0``.
    """
    d = registered.shape[1]
    owned = resp.owned  # (m,)
    both = resp.times(np.concatenate([centres, centres**2], axis=1))
    # A_ia = sum_k r_ik (y_ia - x_ka)^2
    spread = owned[:, None] * registered
    spread -= 2.0 * both[:, :d]
    spread *= registered
    spread += both[:, d:]
    np.maximum(spread, 0.0, out=spread)
    return _sigma2_fixed_point(spread, owned, loc_var, sigma2, floor, n_fixed_point)


def _sigma2_fixed_point(spread, owned, loc_var, sigma2, floor, n_fixed_point):
    """Fixed-point steps of ``sum_ia (A_ia - r_i (sigma2 + s_ia)) / (sigma2 + s_ia)^2 = 0``."""
    d = spread.shape[1]
    total = owned.sum()
    if total <= 0:
        return sigma2
    if not loc_var.any():
        return max(float(spread.sum() / (d * total)), floor)
    s2 = sigma2
    excess = spread - owned[:, None] * loc_var
    w2 = np.empty_like(excess)
    for _ in range(n_fixed_point):
        np.add(loc_var, s2, out=w2)
        np.square(w2, out=w2)
        np.reciprocal(w2, out=w2)
        num = np.vdot(w2, excess)
        den = (owned @ w2).sum()
        s2 = max(float(num / den), floor)
    return s2


class CommonFrameVariances:
    """Localization variances fixed along the common frame's axes: the kernels of this module.

    Exact in 2D and for 3D particles that turn about the optical (z) axis
    only, where the axes of every localization's variance do not turn; under
    full 3D rotations exact only for isotropic precision. :func:`run_em`
    and :func:`particle_loglik` call these methods; the same methods of
    :class:`~pcvae_sklearn.fuse._anisotropic.OwnFrameVariances` turn the
    variances with the particles.

    Parameters
    ----------
    loc_var : ndarray of shape (m, d)
        Per-axis localization variance (nm^2), zero where no precision is known.
    mode : {"full", "z"}, default="full"
        The rotations searched by :func:`weighted_procrustes`.
    """

    def __init__(self, loc_var, mode="full"):
        self.loc_var = loc_var
        self.mode = mode

    def subset(self, rows, offsets):
        """The variances of the localizations ``rows`` (whole particles, packed by ``offsets``)."""
        return CommonFrameVariances(self.loc_var[rows], self.mode)

    def scaled(self, sigma2, factor):
        """``factor * (sigma2 + loc_var)``, ``factor`` (m, 1) or a scalar, for a shared variance of 0 (see ``_scale``)."""
        return CommonFrameVariances(np.ascontiguousarray(np.broadcast_to(factor * (sigma2 + self.loc_var),
                                                                         self.loc_var.shape)), self.mode)

    def e_step(self, registered, rotations, centres, sigma2, mixture) -> Responsibilities:
        """:func:`e_step` (``rotations`` are not needed)."""
        return e_step(registered, self.loc_var, centres, sigma2, mixture)

    def transforms(self, src, target, owned, offsets, rotations, translations, sigma2):
        """Every particle's rigid transform onto its virtual targets: :func:`weighted_procrustes`."""
        weights = owned[:, None] / (sigma2 + self.loc_var)
        return weighted_procrustes(src, target, weights, offsets, self.mode)

    def update(self, registered, rotations, resp, centres, sigma2, floor):
        """The centres, then the shared variance: ``(centres, sigma2)``."""
        centres = update_centres(registered, self.loc_var, resp, sigma2, centres)
        return centres, update_sigma2(registered, self.loc_var, resp, centres, sigma2, floor)

    def centre_equations(self, registered, rotations, resp, sigma2):
        """The centres' normal equations ``mat[k] @ x_k = rhs[k]``: shapes (K, d, d) and (K, d) (diagonal here)."""
        num, den = centre_sums(registered, self.loc_var, resp, sigma2)
        mat = np.zeros(den.shape + den.shape[-1:])
        idx = np.arange(den.shape[1])
        mat[:, idx, idx] = den
        return mat, num

    def update_sigma2(self, registered, rotations, resp, centres, sigma2, floor):
        """The shared variance given the centres: :func:`update_sigma2`."""
        return update_sigma2(registered, self.loc_var, resp, centres, sigma2, floor)


# --------------------------------------------------------------- the loop
@dataclass
class EMState:
    """Parameters of the joint registration (one restart)."""

    rotations: np.ndarray  # (n, d, d)
    translations: np.ndarray  # (n, d)
    centres: np.ndarray  # (K, d)
    sigma2: float
    objective: float = -np.inf  # mean log-likelihood per localization
    n_iter: int = 0
    #: every particle's log-likelihood at this state, shape (n,), where the run that made it knew them
    particle_ll: np.ndarray | None = None


def run_em(src, offsets, state, mixture, variances, *, max_iter, tol, floor, fit_centres=True, anneal=None,
           logger=None):
    """Run EM from ``state`` until the mean log-likelihood gains less than ``tol``.

    Parameters
    ----------
    src : ndarray of shape (m, d)
    offsets : ndarray of shape (n + 1,)
    state : EMState
    mixture : tuple of float
        See :func:`e_step`.
    variances : CommonFrameVariances or OwnFrameVariances
        How each localization's own variance enters, and with it the
        kernels: along the common frame's axes, or fixed in each particle's
        own frame and turning with it (3D, full rotations; the axial
        precision worse than the lateral one).
    max_iter : int
    tol : float
    floor : float
        Lower bound of the shared variance.
    fit_centres : bool
        ``False`` keeps ``centres`` and ``sigma2`` fixed and only moves the
        particles (registration onto a fitted model). The particles are then
        independent, and each stops on its own: when its log-likelihood per
        localization gains less than ``tol`` (see :func:`_register_each`).
    anneal : float in (0, 1) or None
        Deterministic annealing: the variance may not fall below
        ``sigma2_start * anneal**iteration``, so the mixture stays smooth
        while the particles find a common orientation, and cannot split into
        several interleaved copies of the structure early on. The run does
        not stop on ``tol`` while this bound is active.
    logger : logging.Logger or None
        Gets the objective of every iteration (DEBUG).

    Returns
    -------
    EMState
        A new state; ``objective`` is the mean log-likelihood per
        localization at the returned parameters.
    """
    if not fit_centres:
        return _register_each(src, offsets, state, mixture, variances, max_iter=max_iter, tol=tol, logger=logger)
    lengths = np.diff(offsets)
    rot, trans = state.rotations.copy(), state.translations.copy()
    centres, sigma2 = state.centres.copy(), float(state.sigma2)
    m = src.shape[0]
    obj = -np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        registered = apply_transforms(src, rot, trans, lengths)
        resp = variances.e_step(registered, rot, centres, sigma2, mixture)
        new_obj = float(resp.loglik.sum() / m)
        if logger is not None:
            logger.debug("EM iteration %d: objective %.6f, sigma2 %.4g", n_iter, new_obj, sigma2)
        gain = new_obj - obj
        obj = new_obj
        # while the annealing bound holds the variance up, a small gain does not mean convergence
        annealing = anneal is not None and state.sigma2 * anneal ** (n_iter - 1) > floor
        if gain < tol and not annealing:
            converged = True
            break
        # M-step 1: every particle's rigid transform, onto its virtual targets
        owned = resp.owned
        target = resp.times(centres) / np.maximum(owned, 1e-300)[:, None]
        new_rot, new_trans, total = variances.transforms(src, target, owned, offsets, rot, trans, sigma2)
        keep = total > 1e-300
        rot[keep], trans[keep] = new_rot[keep], new_trans[keep]
        # M-step 2 and 3: the centres, then the shared variance
        registered = apply_transforms(src, rot, trans, lengths)
        bound = floor if anneal is None else max(floor, state.sigma2 * anneal**n_iter)
        centres, sigma2 = variances.update(registered, rot, resp, centres, sigma2, bound)
    if not converged:
        registered = apply_transforms(src, rot, trans, lengths)
        obj = float(variances.e_step(registered, rot, centres, sigma2, mixture).loglik.sum() / m)
    return EMState(rot, trans, centres, sigma2, objective=obj, n_iter=n_iter)


def _register_each(src, offsets, state, mixture, variances, *, max_iter, tol, logger=None):
    """:func:`run_em` with the centres and variance fixed: every particle stops on its own.

    Given the centres the particles do not interact, so a particle whose
    log-likelihood per localization gains less than ``tol`` keeps its
    transform and leaves the loop, and the E- and M-steps run on the
    particles still moving only. (One global criterion would keep all of
    them iterating until the slowest one converged.)
    """
    lengths = np.diff(offsets)
    rot, trans = state.rotations.copy(), state.translations.copy()
    centres, sigma2 = state.centres, float(state.sigma2)
    # every particle's log-likelihood per localization at its current transform
    last = np.full(len(lengths), -np.inf)
    moving = lengths > 0
    stale = moving.copy()  # particles whose transform changed since ``last`` was computed
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if not moving.any():
            break
        active = np.flatnonzero(moving)
        ll, resp, sub = _subset_loglik(src, offsets, active, rot, trans, centres, sigma2, mixture,
                                       variances)
        gained = ll - last[active] >= tol
        last[active] = ll
        stale[active] = False
        if logger is not None:
            logger.debug("EM iteration %d: %d particle(s) still moving", n_iter, int(gained.sum()))
        moving[active[~gained]] = False
        if not gained.any():
            break
        sub_src, sub_var, sub_offsets = sub
        owned = resp.owned
        target = resp.times(centres) / np.maximum(owned, 1e-300)[:, None]
        new_rot, new_trans, total = sub_var.transforms(sub_src, target, owned, sub_offsets, rot[active],
                                                       trans[active], sigma2)
        step = gained & (total > 1e-300)
        rot[active[step]], trans[active[step]] = new_rot[step], new_trans[step]
        stale[active[step]] = True
    if stale.any():  # the last iteration moved these particles: score them where they ended
        active = np.flatnonzero(stale)
        last[active] = _subset_loglik(src, offsets, active, rot, trans, centres, sigma2, mixture,
                                      variances)[0]
    particle_ll = np.zeros(len(lengths))
    particle_ll[lengths > 0] = last[lengths > 0] * lengths[lengths > 0]
    return EMState(rot, trans, centres, sigma2, objective=float(particle_ll.sum() / src.shape[0]), n_iter=n_iter,
                   particle_ll=particle_ll)


def _subset_loglik(src, offsets, active, rot, trans, centres, sigma2, mixture, variances):
    """E-step on the particles ``active`` only: their log-likelihood per localization, the responsibilities,
    and ``(src, variances, offsets)`` of the subset."""
    rows, sub_lengths = gather_rows(offsets, active)
    sub_offsets = np.concatenate([[0], np.cumsum(sub_lengths)])
    sub_src, sub_var = src[rows], variances.subset(rows, sub_offsets)
    registered = apply_transforms(sub_src, rot[active], trans[active], sub_lengths)
    resp = sub_var.e_step(registered, rot[active], centres, sigma2, mixture)
    ll = segment_sum(resp.loglik, sub_offsets) / sub_lengths
    return ll, resp, (sub_src, sub_var, sub_offsets)


def particle_loglik(src, offsets, state, mixture, variances):
    """Log-likelihood of every particle at ``state``, shape (n,) (``variances`` as in :func:`run_em`)."""
    registered = apply_transforms(src, state.rotations, state.translations, np.diff(offsets))
    resp = variances.e_step(registered, state.rotations, state.centres, state.sigma2, mixture)
    return segment_sum(resp.loglik, offsets)
