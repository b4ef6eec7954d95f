"""Checks of a workflow run that a user must hear about: too few particles, divergence, wrong model."""

from __future__ import annotations

import numpy as np

from ._ragged import Particles
from .estimate._ring import central_fraction

__all__ = ["check_bins", "workflow_warnings", "central_fraction"]

# fewer particles than this per bin give noisy per-bin estimates and super-particles
MIN_PER_BIN = 10
# below this many particles a correlation's chance level is large; the warning gives it
MIN_FOR_CORRELATION = 30
# rings leave their centre empty: the median particle of a ring structure has
# at most this fraction of its localizations within half its median radial
# distance (simulated pores: about 0.006, real gp210 and Nup107 pores 0.02-0.03; DNA-origami grids 0.10-0.17; a filled disc 0.125)
MAX_CENTRAL_FRACTION_OF_RINGS = 0.06
# a median RMS radius (nm) of the particles below this is below any structure localization microscopy resolves:
# coordinates in camera pixels (a 50 nm pore is 0.4 pixels of 130 nm) or micrometres, not nm
MIN_SPREAD_NM = 2.0
# ... and above this, in Angstrom or scaled twice (a 50 nm pore times a 130 nm pixel is 6500 nm)
MAX_SPREAD_NM = 2000.0


def check_bins(n_particles: int, n_bins) -> None:
    """Raise when ``n_bins`` is not an integer >= 2 or the particles cannot fill every bin with 2."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer of at least 2; got {n_bins!r}.")
    if n_particles < 2 * n_bins:
        most = n_particles // 2
        fix = f"lower n_bins to {most} or fewer" if most >= 2 else "at least 4 particles are needed for 2 bins"
        raise ValueError(
            f"the data hold {n_particles} particle(s), and {n_bins} bins need at least {2 * n_bins} "
            f"(every bin needs 2 particles to fuse): {fix}."
        )


#: the binned axis "tracks the precision" at |Spearman| with each particle's mean precision at least this, with
#: p below the test's alpha: ``confound_audit``'s flag
PRECISION_TRACKING = 0.3


def precision_caveat(p: Particles, axis_values: np.ndarray, axis_name: str, alpha: float) -> str | None:
    """What to add to a verdict of variation when the binned axis orders particles by their precision; else None.

    The null's twins place their sites per stratum of precision. On
    independently simulated homogeneous pores (precision log-SD 0.8
    between particles, ``benchmarks/bench_null_precision.py``) the null
    held in 8 of 8 data sets, but a third of them by precision, analysed
    on its own, was called heterogeneous in 1 of 24; along an axis that
    orders the particles by precision, the verdict is the one that
    depends most on the twins matching the data stratum by stratum.
    """
    if "precision" not in p.fields or p.n_particles < 3:
        return None
    from .validate import confound_audit

    audit = confound_audit(p, np.asarray(axis_values)[:, None], threshold=PRECISION_TRACKING, alpha=alpha,
                           feature_names=[axis_name])
    row = audit[audit["nuisance"] == "mean_precision"].iloc[0]
    if not row["flagged"]:
        return None
    rho = row["correlation"]
    return (f"{axis_name} also orders the particles by their localization precision (Spearman {rho:.2f} with each "
            "particle's mean precision). The null's twins are matched to the data per stratum of precision, but "
            "along such an axis the verdict rests most on that match: before acting on the trend, analyse the "
            "particles of similar precision on their own (for example each third by mean precision) and see "
            "whether it holds")


def _training_warnings(history) -> list:
    out = []
    loss = np.array([h.get("loss", np.nan) for h in history], dtype=np.float64)
    if loss.size and not np.all(np.isfinite(loss)):
        bad = int(np.flatnonzero(~np.isfinite(loss))[0]) + 1
        return [f"the training loss is not finite in epoch {bad}: the fit diverged; lower the learning rate or check "
                "the data for far outliers."]
    for e in range(1, loss.size):
        if loss[e] > 2.0 * loss[e - 1] and loss[e] - loss[e - 1] > 1e-3:
            out.append(
                f"the training loss jumped from {loss[e - 1]:.3g} in epoch {e} to {loss[e]:.3g} in epoch {e + 1}: "
                "the fit may have diverged (few particles, far outliers or a learning rate too high); look at the "
                "training curves before trusting the latents."
            )
            break
    return out


def workflow_warnings(p: Particles, *, vae, n_bins: int, estimate_name: str) -> list:
    """Messages for everything doubtful in a run of :func:`pcvae_sklearn.analyse`."""
    out = []
    n = p.n_particles
    per_bin = n // n_bins
    if per_bin < MIN_PER_BIN:
        out.append(
            f"{n} particles in {n_bins} bins is about {per_bin} per bin; per-bin estimates and super-particles from "
            f"fewer than {MIN_PER_BIN} particles are noisy: use fewer bins (n_bins) or more particles."
        )
    if n < MIN_FOR_CORRELATION:
        chance = 1.96 / np.sqrt(n - 1)
        out.append(
            f"the correlations of the latent dimensions with the estimate are computed on {n} particles: "
            f"a |Spearman| up to about {min(chance, 1.0):.2f} arises by chance (p = 0.05)."
        )
    out += _training_warnings(getattr(vae, "history_", []))
    centred = p.coords - np.repeat(p.centroids(), p.lengths, axis=0)
    spread = float(np.median(np.sqrt(p.segment_sum((centred**2).sum(axis=1)) / np.maximum(p.lengths, 1))))
    if spread < MIN_SPREAD_NM:
        out.append(
            f"the particles' median RMS radius is {spread:.3g} nm, below any structure localization microscopy "
            "resolves: are the coordinates in camera pixels or micrometres? Everything here expects nm, and every "
            "figure in nm is then wrong. read_particles converts them: columns named with their unit ('x [px]') "
            "with pixel_size=<nm per pixel>, and columns without one with unit='px' and pixel_size=<nm per pixel>, "
            "or unit='um'."
        )
    elif spread > MAX_SPREAD_NM:
        out.append(
            f"the particles' median RMS radius is {spread:.3g} nm, far larger than the structures particle "
            "averaging is for (tens to hundreds of nm): are the coordinates in Angstrom, or were nm multiplied by a "
            "pixel size? Everything here expects nm, and every figure in nm is then wrong."
        )
    if estimate_name.startswith("radius"):
        frac = float(np.median(central_fraction(p)))
        if frac > MAX_CENTRAL_FRACTION_OF_RINGS:
            out.append(
                f"the particles do not look like rings: a median {100 * frac:.0f}% of each particle's localizations "
                f"lie within half its median radius of its centre (rings: under {100 * MAX_CENTRAL_FRACTION_OF_RINGS:.0f}%), "
                "so the ring radius estimate measures their spread, not a radius. "
                + ("For 3D pores or tetrahedra choose estimate='pore' or 'tetrahedron' (command line: --estimate "
                   "pore). " if p.n_dims == 3 else "")
                + "For other structures (an origami) none of the estimates fits: "
                "read the bins by their super-particles, or pass a measure of your own as the estimate (in Python, "
                "RadiusEstimator(method='median') gives each particle's median distance from its centre)."
            )
    return out
