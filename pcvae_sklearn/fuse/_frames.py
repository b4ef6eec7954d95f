"""The frames of a fusion: each localization's variance along the common frame's axes or its own, the output
frame's optical axis, and the registered particles handed back with their fields."""

from __future__ import annotations

import warnings

import numpy as np

from .._ragged import Particles, apply_transforms, precision_sd
from ._anisotropic import OwnFrameVariances
from ._em import CommonFrameVariances


def _loc_variance(p: Particles, use_precision: bool, mode: str):
    """Per-axis localization variance from the ``precision`` / ``precision_z`` fields.

    Returns ``(loc_var, own_var)``. ``loc_var`` (m, d) is the variance along
    the common frame's axes: exact in 2D and with ``rotation="z"``. Under full
    3D rotations the axis of the (usually worse) axial precision turns with
    the particle: ``loc_var`` is then the mean over the axes (used by the
    coarse orientation search) and ``own_var`` (m, 3) keeps the per-axis
    variance in each particle's own frame for the EM, whose anisotropic
    kernels turn it with the particle. ``own_var`` is None where the
    precision is isotropic or unknown.
    """
    m, d = p.coords.shape
    sd = precision_sd(p) if use_precision else None
    if sd is None:
        return np.zeros((m, d)), None
    var = sd**2
    own_var = None
    if d == 3:
        if mode == "3d":
            if not np.array_equal(var[:, 2], var[:, 0]):
                own_var = var.copy()
            var[:] = var.mean(axis=1, keepdims=True)
    return var, own_var


def _lateral_only(p: Particles, use_precision: bool) -> bool:
    """3D particles with a lateral ``precision`` but no ``precision_z``: their axial precision is unknown."""
    return bool(use_precision and p.n_dims == 3 and "precision" in p.fields and "precision_z" not in p.fields)


#: a particle turned more than this out of the plane (degrees) mixes its axial error into x-y noticeably
_TURNED_DEGREES = 20.0


def _registered(p: Particles, rotations, translations):
    """The particles turned and shifted as registered, as an awkward array; says where their precision fields,
    which stay as read, no longer lie along the registered axes."""
    if p.n_dims == 3 and "precision" in p.fields:
        turned = np.flatnonzero(np.abs(rotations[:, 2, 2]) < np.cos(np.radians(_TURNED_DEGREES)))
        if turned.size > 0.1 * p.n_particles:
            warnings.warn(
                f"ParticleFuser turned {turned.size} of {p.n_particles} particles (first: {p.name(int(turned[0]))}) "
                f"more than {_TURNED_DEGREES:.0f} degrees out of the plane. Their precision fields are carried as "
                "read, 'precision' for x-y and 'precision_z' for z of the original frame: in the registered frame "
                "their axial error lies partly along x and y, which whatever reads these fields next does not know.",
                UserWarning,
                stacklevel=4,  # the caller of transform or fit_transform, which scikit-learn's set_output wraps
            )
    return p.replace(coords=apply_transforms(p.coords, rotations, translations, p.lengths)).to_awkward()


def _optical_axis_alignment(rotations: np.ndarray) -> np.ndarray:
    """The smallest rotation turning the particles' mean registered optical axis onto ``e_z``.

    The axis of particle ``j`` in the common frame is ``a_j = R_j e_z``. A
    structure with a mirror symmetry (a pore's two rings) may register some
    particles upside down, so the mean is taken without sign: the leading
    eigenvector of ``mean_j a_j a_j^T``, pointing the way most ``a_j`` do.
    Returns the identity when the axes point every way (leading eigenvalue
    below 0.5; 1/3 for uniformly spread axes): nothing to preserve.
    """
    axes = rotations[:, :, 2]
    values, vectors = np.linalg.eigh(axes.T @ axes / len(axes))
    if values[-1] < 0.5:
        return np.eye(3)
    return _turn_onto_z(vectors[:, -1], axes)


def _turn_onto_z(a: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """The smallest rotation turning the unit vector ``a`` (or ``-a``, the way most ``axes`` point) onto ``e_z``."""
    if (axes @ a).sum() < 0:
        a = -a
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(a, z)
    c = float(a @ z)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _em_variances(loc_var, own_var, mode: str, offsets):
    """The variances of the EM: turning with the particles where ``own_var`` is given (see :func:`_loc_variance`)."""
    if own_var is not None:
        return OwnFrameVariances(own_var, offsets)
    return CommonFrameVariances(loc_var, "z" if mode == "z" else "full")
