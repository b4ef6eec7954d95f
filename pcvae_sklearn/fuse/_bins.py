"""Per-bin fusion: one super-particle per bin, all in one frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._input import as_particles
from .._ragged import Particles, apply_transforms, check_particle_labels
from ._fuser import ParticleFuser

__all__ = ["BinFusion", "fuse_bins"]

#: localizations per super-particle (at most) on which the bins are registered into one frame
BIN_POINTS = 1000
#: restarts (at least) of that registration: a wrong frame for one bin spoils every comparison between bins, and a
#: restart costs little on at most ``BIN_POINTS`` localizations per bin (with 3, two bins of rings 44 and 54 nm
#: across ended 11 degrees apart in 1 of 24 seeds; with 10, in none; since the bins' own fusions search shifts
#: (2D), in 2 of 60, and with 20 in 1 of 60: the aligned frame is the likelier, but hard to find)
BIN_RESTARTS = 10


@dataclass
class BinFusion:
    """Result of :func:`fuse_bins`.

    Attributes
    ----------
    labels : ndarray of shape (n_bins,)
        The bin labels, sorted; bin ``b`` below is ``labels[b]``.
    super_particles : awkward.Array
        ``n_bins * var * {x, y[, z], <fields>, particle}``: the super-particle
        of every bin (in ``labels`` order), all in one common frame; field
        ``particle`` is the index of the input particle of each localization
        (where the input has a field of that name, its values are kept).
    rotations : ndarray of shape (n_particles, d, d)
    translations : ndarray of shape (n_particles, d)
        For every input particle: ``X_i @ rotations[i].T + translations[i]``
        puts it into the common frame.
    bin_rotations : ndarray of shape (n_bins, d, d)
    bin_translations : ndarray of shape (n_bins, d)
        The rigid transform that moved each bin's own fused frame into the
        common frame.
    bin_sizes : ndarray of shape (n_bins,)
        Number of particles per bin.
    fusers : list of ParticleFuser
        The fitted fuser of every bin (in its own frame).
    """

    labels: np.ndarray
    super_particles: object
    rotations: np.ndarray
    translations: np.ndarray
    bin_rotations: np.ndarray
    bin_translations: np.ndarray
    bin_sizes: np.ndarray
    fusers: list = field(repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def to_dataframe(self):
        """The super-particles as one table, one row per localization.

        Returns
        -------
        pandas.DataFrame
            Columns ``bin`` (the bin label), ``x``, ``y`` (and ``z``), the
            localizations' other fields (``precision``, ...) and
            ``particle`` (the input particle it came from), in the common frame.
        """
        import awkward as ak
        import pandas as pd

        sp = self.super_particles
        columns = {"bin": np.repeat(self.labels, ak.to_numpy(ak.num(sp, axis=1)))}
        for name in ak.fields(sp):
            columns[name] = ak.to_numpy(ak.flatten(sp[name], axis=1))
        return pd.DataFrame(columns)


def _fit_bin(fuser, p: Particles):
    return fuser.fit(p)


def fuse_bins(X, labels, fuser=None, *, n_jobs=None, register_bins=True, random_state=None):
    """Fuse every bin of particles into its own super-particle, all in one frame.

    Each bin (particles sharing a label) is fused by a clone of ``fuser``;
    bins are fused in parallel with joblib. Then the bins' super-particles
    are themselves registered jointly, each one treated as one particle, so
    that all bins share one frame, as in the per-bin figures of Haghparast,
    Zhang et al. (2025). That registration works on at most ``BIN_POINTS``
    (1000) localizations of every super-particle and takes the best of at
    least ``BIN_RESTARTS`` (10) restarts: it is cheap, and a wrong frame
    for one bin would spoil every comparison between bins. It searches no
    shifts (``search_shifts=False``): a super-particle is dense and centred
    on its structure.

    Parameters
    ----------
    X : awkward array or list of (n_i, d) arrays
        All particles.
    labels : array-like of shape (n_particles,)
        Bin label of every particle, e.g. one column of a
        :class:`~pcvae_sklearn.bin.LatentBinner` transform. Every bin needs
        at least 2 particles.
    fuser : ParticleFuser or None
        Settings for the fusion (cloned per bin, never fitted itself);
        ``None`` means ``ParticleFuser()``.
    n_jobs : int or None, default=None
        Bins fused in parallel with joblib (``None``: 1, ``-1``: all cores).
    register_bins : bool, default=True
        Register the super-particles into one common frame. ``False`` leaves
        every bin in its own frame (centred on its centroid).
    random_state : int, RandomState instance or None, default=None
        Seeds every bin's fusion (overriding the ``random_state`` of ``fuser``).

    Returns
    -------
    BinFusion
        Per-bin super-particles (in sorted label order) and the transform of
        every particle into the common frame.

    Raises
    ------
    ValueError
        For labels of the wrong length or shape, or a bin with fewer than 2
        particles (named by its label); the input checks of
        :func:`~pcvae_sklearn.as_particles` (NaN coordinates, ...).

    See Also
    --------
    ParticleFuser : the joint registration used for every bin.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.fuse import ParticleFuser, fuse_bins
    >>> rng = np.random.default_rng(0)
    >>> def ring(radius, angle):
    ...     phi = np.repeat(np.arange(8) * np.pi / 4 + angle, 8)
    ...     return radius * np.c_[np.cos(phi), np.sin(phi)] + rng.normal(0, 2, (64, 2))
    >>> X = [ring(40 + 10 * (i % 2), rng.uniform(0, 2 * np.pi)) for i in range(12)]
    >>> result = fuse_bins(X, np.arange(12) % 2, ParticleFuser(n_components=16, n_restarts=1), random_state=0)
    >>> result.labels, result.bin_sizes
    (array([0, 1]), array([6, 6]))
    >>> result.rotations.shape
    (12, 2, 2)
    """
    p = as_particles(X, min_particles=2)
    labels = check_particle_labels(labels, p.n_particles)
    if fuser is None:
        fuser = ParticleFuser()
    elif not isinstance(fuser, ParticleFuser):
        raise TypeError(f"fuser must be a ParticleFuser or None, got {type(fuser).__name__}.")
    bins, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    small = np.flatnonzero(sizes < 2)
    if small.size:
        listed = ", ".join(f"{np.asarray(bins[b]).item()!r} ({sizes[b]} particle)" for b in small[:5])
        raise ValueError(
            f"{small.size} bin(s) hold fewer than 2 particles: {listed}; a bin needs at least 2 particles to be "
            "fused. Use fewer bins or merge the small ones."
        )
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max, size=len(bins) + 1)
    members = [np.flatnonzero(inverse == b) for b in range(len(bins))]
    jobs = [(clone(fuser).set_params(random_state=int(seeds[b])), p.take(members[b])) for b in range(len(bins))]
    if n_jobs in (None, 1):
        fusers = [_fit_bin(f, sub) for f, sub in jobs]
    else:
        from joblib import Parallel, delayed

        fusers = Parallel(n_jobs=n_jobs)(delayed(_fit_bin)(f, sub) for f, sub in jobs)

    d = p.n_dims
    n_bins = len(bins)
    bin_rot = np.broadcast_to(np.eye(d), (n_bins, d, d)).copy()
    bin_trans = np.zeros((n_bins, d))
    supers = [as_particles(f.super_particle_) for f in fusers]
    if register_bins and n_bins > 1:
        # every bin's super-particle is one particle of a second joint registration
        stacked = Particles(
            coords=np.concatenate([s.coords for s in supers]),
            offsets=np.concatenate([[0], np.cumsum([s.n_localizations for s in supers])]),
            fields={k: np.concatenate([s.fields[k] for s in supers]) for k in supers[0].fields if k != "particle"},
        )
        restarts = max(fuser._restarts(fuser._mode(d)), BIN_RESTARTS)
        outer = clone(fuser).set_params(random_state=int(seeds[-1]), n_restarts=restarts, search_shifts=False)
        # on a subset of every super-particle: its pose needs no more, and the fit's cost grows with the
        # localizations (the transforms found apply to all of them)
        outer.fit(stacked.subsample(BIN_POINTS, np.random.default_rng(int(seeds[-1]))))
        bin_rot, bin_trans = outer.rotations_, outer.translations_

    rotations = np.empty((p.n_particles, d, d))
    translations = np.empty((p.n_particles, d))
    for b, f in enumerate(fusers):  # a loop over bins, not particles
        rotations[members[b]] = bin_rot[b] @ f.rotations_
        translations[members[b]] = f.translations_ @ bin_rot[b].T + bin_trans[b]
    # super-particles in the common frame, one entry per bin
    order = np.concatenate(members)
    gathered = p.take(order)
    coords = apply_transforms(gathered.coords, rotations[order], translations[order], gathered.lengths)
    fields = dict(gathered.fields)
    if "particle" not in fields:
        fields["particle"] = np.repeat(order, gathered.lengths).astype(np.int64)
    bin_lengths = np.array([p.lengths[m].sum() for m in members])
    super_particles = Particles(
        coords=coords, offsets=np.concatenate([[0], np.cumsum(bin_lengths)]), fields=fields
    ).to_awkward()
    return BinFusion(
        labels=bins,
        super_particles=super_particles,
        rotations=rotations,
        translations=translations,
        bin_rotations=bin_rot,
        bin_translations=bin_trans,
        bin_sizes=sizes,
        fusers=fusers,
    )
