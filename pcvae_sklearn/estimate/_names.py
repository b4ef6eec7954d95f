"""One way to turn an estimate's name into a fresh estimator, and an estimate's column into words."""

from __future__ import annotations

from sklearn.base import clone

from ._estimators import HeightEstimator, ParticleEstimator, RadiusEstimator

__all__ = ["ESTIMATES", "make_estimator"]

ESTIMATES = ("auto", "radius", "height", "tetrahedron", "pore")


def quantity_name(feature, estimator=None):
    """An estimate's column as a reader says it: ``"radius_nm"`` -> ``"radius"``.

    A pore's height (``estimator.structure_ == "pore"``) is the distance between its two rings, and says so.
    """
    name = feature.replace("_nm", "").replace("_", " ")
    if name == "height" and getattr(estimator, "structure_", None) == "pore":
        return "ring distance (height)"
    return name


def make_estimator(estimate="auto", n_dims=2):
    """A fresh, unfitted estimator for ``estimate``.

    Parameters
    ----------
    estimate : {"auto", "radius", "height", "tetrahedron", "pore"} or estimator, default="auto"
        ``"radius"``: :class:`RadiusEstimator`; ``"height"``:
        :class:`HeightEstimator` with ``structure="auto"``;
        ``"tetrahedron"`` / ``"pore"``: :class:`HeightEstimator` of that
        structure; ``"auto"``: the radius for 2D and the height for 3D
        particles; None is ``"auto"``. A particle estimator (such as
        ``RadiusEstimator(method="median")``) is cloned.
    n_dims : {2, 3}, default=2
        Dimensionality of the particles it will be fitted on.

    Returns
    -------
    estimator

    Raises
    ------
    ValueError
        For an unknown name, or a height on 2D particles.
    TypeError
        For anything that is neither a name nor a particle estimator.

    Examples
    --------
    >>> from pcvae_sklearn.estimate import make_estimator
    >>> make_estimator("tetrahedron", n_dims=3)
    HeightEstimator(structure='tetrahedron')
    >>> make_estimator("auto", n_dims=2)
    RadiusEstimator()
    """
    if estimate is None:
        estimate = "auto"
    if not isinstance(estimate, str):
        if not isinstance(estimate, ParticleEstimator):
            raise TypeError(
                f"the estimate must be one of {', '.join(map(repr, ESTIMATES))} or a particle estimator such as "
                f"RadiusEstimator() or HeightEstimator(); got {type(estimate).__name__}."
            )
        return clone(estimate)
    if estimate == "auto":
        estimate = "radius" if n_dims == 2 else "height"
    if estimate == "radius":
        return RadiusEstimator()
    if estimate in ("height", "tetrahedron", "pore"):
        if n_dims != 3:
            raise ValueError(f"the {estimate!r} estimate needs 3D particles; these are {n_dims}D. Use 'radius'.")
        return HeightEstimator(structure="auto" if estimate == "height" else estimate)
    raise ValueError(f"unknown estimate {estimate!r}; use one of {', '.join(map(repr, ESTIMATES))}.")
