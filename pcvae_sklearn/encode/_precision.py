"""The localizations' per-axis weights of the Chamfer distance, from their precisions (``precision_weighted``)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._ragged import Particles
from ._chamfer import pad_packed

__all__ = ["FLOOR_FRACTION", "padded_weights", "precision_weights"]

#: A precision counts as at least this fraction of the fitted data's median precision along its axis.
#: Weights of 1/precision**2 have no bounded mean when precisions reach down to 0 (a uniform spread,
#: as some simulators draw): a handful of localizations then carry nearly all the weight, and
#: training follows them. Lognormal precisions of log-spread 0.6 (the real TU Delft logos) are
#: practically untouched, of log-spread 1.0 1 % of them (docs/choosing_parameters.md).
FLOOR_FRACTION = 0.1


def precision_weights(p: Particles, setting, fitted: tuple | None = None, *, required: bool = False
                      ) -> tuple[np.ndarray | None, tuple | None]:
    """The localizations' per-axis Chamfer weights ``(reference / precision)**2`` (float32), and ``(reference, floor)``.

    ``setting`` is ``PointCloudVAE.precision_weighted``. ``(None, None)`` for
    the Euclidean distance: ``setting`` False, or "auto" on data without
    usable precisions (finite and at least 0 nm, with a median above 0).
    Every precision is first raised to its axis's floor
    (lateral, and axial in 3D; nm): ``FLOOR_FRACTION`` times the median of
    ``p``'s precisions along that axis. ``reference`` (nm) is then the root
    of the harmonic mean of the variances, so the weights average 1.
    ``fitted``: the ``(reference, floor)`` of a fit, used as they are.
    ``required``: the model was trained with weights, so they must be there.
    """
    auto = isinstance(setting, str)  # "auto"
    if not required and not auto and not setting:
        return None, None
    why = ("this model was fitted with precision weights (reference_precision_ is set)" if required
           else "precision_weighted=True")
    needed = ["precision"] + (["precision_z"] if p.n_dims == 3 else [])
    missing = [name for name in needed if name not in p.fields]
    if missing:
        if auto and not required:
            if missing == ["precision_z"]:
                warnings.warn(
                    "X has a 'precision' field but no 'precision_z': the axial precision of these 3D particles is "
                    "unknown and none is assumed, so this fit uses the Euclidean distance. Add the axial precision "
                    "as 'precision_z', or set precision_weighted=False to silence this.",
                    UserWarning,
                    stacklevel=5,
                )
            return None, None
        raise ValueError(
            f"{why} needs every localization's precision, but X has no {' or '.join(repr(m) for m in missing)} "
            f"field (it has {sorted(p.fields) or 'no fields'}); no precision is assumed. Add the field"
            + (" (for 3D data, the axial precision as 'precision_z')" if p.n_dims == 3 else "")
            + (", or fit the model again with precision_weighted=False." if required
               else ", or set precision_weighted=False.")
        )
    axes = [p.fields["precision"]] * 2 + ([p.fields["precision_z"]] if p.n_dims == 3 else [])
    sd = np.column_stack(axes).astype(np.float64)
    bad = ~(np.isfinite(sd) & (sd >= 0)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        i, j = p.locate(row)
        where = (f"{p.name(i)} has the precision {sd[row].tolist()} nm at localization {j} "
                 f"({int(bad.sum())} localization(s) in all)")
        if auto and not required:
            warnings.warn(
                f"{where}: precisions must be finite and at least 0 nm to weigh the Chamfer distance, so this fit "
                "uses the Euclidean distance. Correct the field, or set precision_weighted=False.",
                UserWarning,
                stacklevel=5,
            )
            return None, None
        raise ValueError(f"{where}; {why} needs finite precisions of at least 0 nm.")
    if fitted is None:
        floor = tuple(FLOOR_FRACTION * float(np.median(p.fields[name])) for name in needed)
        if min(floor) <= 0:  # a precision of 0 is raised to the floor, but a median of 0 leaves none
            zero = [name for name, f in zip(needed, floor) if f <= 0]
            message = (f"the median of {' and '.join(repr(z) for z in zero)} is 0 nm, so no precision floor can be set "
                       "and the Chamfer distance cannot be weighed by precision")
            if auto and not required:
                warnings.warn(f"{message}; this fit uses the Euclidean distance. Correct the field, or set "
                              "precision_weighted=False.", UserWarning, stacklevel=5)
                return None, None
            raise ValueError(f"{message}; {why} needs them.")
    else:
        reference, floor = fitted
    floors = np.array([floor[0]] * 2 + ([floor[1]] if p.n_dims == 3 else []))
    inverse = 1.0 / np.maximum(sd, floors) ** 2
    if fitted is None:
        reference = float(np.sqrt(1.0 / inverse.mean()))
    return (inverse * reference**2).astype(np.float32), (reference, floor)


def padded_weights(weights: np.ndarray | None, rows, lengths: torch.Tensor) -> torch.Tensor | None:
    """``weights[rows]`` (packed like a batch of ``lengths``) padded to ``(B, L, d)`` on ``lengths``' device; None stays None."""
    if weights is None:
        return None
    return pad_packed(torch.from_numpy(weights[rows]).to(lengths.device), lengths)[0]
