"""The one internal form of a set of particles, and the kernels over its segments.

Every public entry point converts what the user passed exactly once
(:func:`pcvae_sklearn._input.as_particles`) into a :class:`Particles`: flat
coordinates plus offsets, the layout that pytorch3d calls "packed".
Everything downstream works on that form with vectorised numpy, never with
a Python loop over particles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Number

import numpy as np

from ._records import _COORD_NAMES, PARTICLE_ID, _offsets, locate

__all__ = [
    "Particles",
    "segment_sum",
    "range_rows",
    "gather_rows",
    "subsample_rows",
    "apply_transforms",
    "check_particle_labels",
    "precision_sd",
]

# a localization farther than this many times its particle's median distance from the
# (trimmed) centre is an outlier: three times the median keeps the whole of a pore, an
# origami or a tetrahedron together with the background of its pick
OUTLIER_FACTOR = 3.0


@dataclass(frozen=True, eq=False)
class Particles:
    """A ragged set of particles in packed form.

    Parameters
    ----------
    coords : ndarray of shape (n_localizations, n_dims)
        Coordinates of all localizations of all particles, particle after
        particle, in nm. ``n_dims`` is 2 or 3.
    offsets : ndarray of shape (n_particles + 1,)
        Particle ``i`` owns ``coords[offsets[i]:offsets[i + 1]]``.
    fields : dict of str to ndarray of shape (n_localizations,)
        Extra per-localization columns (precision, photons, frame, ...).
    ids : ndarray of shape (n_particles,) or None
        The user's particle identifiers (a Picasso ``group``, say). ``None``
        means the particles are numbered ``0 .. n_particles - 1``.
    """

    coords: np.ndarray
    offsets: np.ndarray
    fields: dict = field(default_factory=dict)
    ids: np.ndarray | None = None

    # ------------------------------------------------------------------ shape
    @property
    def n_particles(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_dims(self) -> int:
        return self.coords.shape[1]

    @property
    def n_localizations(self) -> int:
        return self.coords.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """Number of localizations per particle, shape (n_particles,)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.n_particles

    def particle_index(self) -> np.ndarray:
        """Particle number of every localization, shape (n_localizations,)."""
        return np.repeat(np.arange(self.n_particles), self.lengths)

    def particle(self, i: int) -> np.ndarray:
        """Coordinates of particle ``i`` (a read-only view)."""
        view = self.coords[self.offsets[i] : self.offsets[i + 1]]
        view.flags.writeable = False
        return view

    def locate(self, row: int) -> tuple[int, int]:
        """``(particle, localization within it)`` of the flat localization ``row``: how errors point at one."""
        return locate(self.offsets, row)

    def name(self, i: int) -> str:
        """How errors refer to particle ``i``."""
        if self.ids is None:
            return f"particle {i}"
        pid = self.ids[i]
        pid = pid.item() if isinstance(pid, np.generic) else pid
        return f"particle {i} (id {pid!r})"

    # ------------------------------------------------------------ reductions
    def segment_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum ``values`` (n_localizations, ...) over each particle (see :func:`segment_sum`)."""
        return segment_sum(values, self.offsets)

    def centroids(self) -> np.ndarray:
        """Mean position of every particle, shape (n_particles, n_dims)."""
        lengths = np.maximum(self.lengths, 1)[:, None]
        return self.segment_sum(self.coords) / lengths

    def quantiles(self, q) -> np.ndarray:
        """Quantiles of every coordinate of every particle.

        ``q`` is a number or a sequence of numbers in [0, 1]; the result has
        shape (n_particles, n_dims), or (len(q), n_particles, n_dims) for a
        sequence. Linear interpolation between order statistics, as
        ``np.quantile``'s default; one sort of all localizations per axis, no
        per-particle loop. The sort key (particle number times a stride plus
        the value) can swap two values of a particle that differ by less than
        about 1e-16 of the key's magnitude, so results match ``np.quantile``
        to that precision. Empty particles give 0.
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if qs.ndim != 1 or not ((qs >= 0.0) & (qs <= 1.0)).all():
            raise ValueError(f"q must be a number or a sequence of numbers in [0, 1]; got {q!r}.")
        n = self.lengths
        out = np.zeros((len(qs), self.n_particles, self.n_dims))
        nonempty = n > 0
        if nonempty.any():
            segment = self.particle_index()
            starts = self.offsets[:-1][nonempty]
            pos = qs[:, None] * (n[nonempty] - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, n[nonempty] - 1)
            frac = pos - lo
            for axis in range(self.n_dims):
                values = self.coords[:, axis]
                # one sort of (particle, value): the particle number times a
                # stride wider than the value range, plus the value
                low = float(values.min())
                stride = float(values.max()) - low + 1.0
                if np.isfinite(stride * self.n_particles):
                    values = values[np.argsort(segment * stride + (values - low))]
                else:  # a range near float64's limit: the (slower) exact two-key sort
                    values = values[np.lexsort((values, segment))]
                a, b = values[starts + lo], values[starts + hi]
                out[:, nonempty, axis] = a + (b - a) * frac
        return out if np.ndim(q) else out[0]

    def centres(self, method: str = "centroid") -> np.ndarray:
        """The centre of every particle, shape (n_particles, n_dims).

        ``"centroid"``: the mean position. ``"trimmed"``: the mean position of
        the localizations that are not outliers (see :meth:`outliers`), found
        from the coordinate-wise median in two steps; a localization 300 nm
        away does not move it, and it equals the centroid wherever no
        localization is an outlier.
        """
        if method == "centroid":
            return self.centroids()
        if method == "trimmed":
            return self._trimmed()[0]
        raise ValueError(f"unknown centring method {method!r}; expected 'centroid' or 'trimmed'.")

    def outliers(self) -> np.ndarray:
        """Boolean mask of the localizations far from their particle, shape (n_localizations,).

        A localization is an outlier when it lies more than ``3`` times its
        particle's median distance from the particle's trimmed centre (see
        :meth:`centres`): the stray localizations of real picks (31 of the
        306 real 3D Nup107 pores have one more than 150 nm from the centroid).
        """
        return self._trimmed()[1]

    def _trimmed(self):
        with np.errstate(over="ignore", invalid="ignore"):
            return self._trim()

    def _trim(self):
        centres = self.quantiles(0.5)
        for _ in range(3):
            dist = np.linalg.norm(self.coords - np.repeat(centres, self.lengths, axis=0), axis=1)
            median = np.repeat(self.replace(coords=dist[:, None]).quantiles(0.5)[:, 0], self.lengths)
            # a particle whose distances overflow is not trimmed: the checks downstream name it
            keep = (dist <= OUTLIER_FACTOR * median) | ~np.isfinite(median)
            count = self.segment_sum(keep.astype(np.int64)).astype(np.int64)
            centres = self.segment_sum(self.coords * keep[:, None]) / np.maximum(count, 1)[:, None]
        return centres, ~keep

    def centred(self, method: str = "centroid") -> "Particles":
        """A copy with every particle moved to its own centre (see :meth:`centres`)."""
        shift = np.repeat(self.centres(method), self.lengths, axis=0)
        return self.replace(coords=self.coords - shift)

    # ------------------------------------------------------------- selection
    def take(self, indices) -> "Particles":
        """The particles at ``indices``, in that order (vectorised gather)."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.intp, copy=False)
        rows, lengths = gather_rows(self.offsets, indices)
        return Particles(
            coords=self.coords[rows],
            offsets=_offsets(lengths),
            fields={k: v[rows] for k, v in self.fields.items()},
            ids=None if self.ids is None else self.ids[indices],
        )

    def take_rows(self, keep) -> "Particles":
        """The same particles with only the localizations where ``keep`` is true (fields follow)."""
        keep = np.asarray(keep, dtype=bool)
        lengths = self.segment_sum(keep.astype(np.int64)).astype(np.int64)
        return Particles(coords=self.coords[keep], offsets=_offsets(lengths),
                         fields={k: v[keep] for k, v in self.fields.items()}, ids=self.ids)

    def subsample(self, max_points: int, rng: np.random.Generator) -> "Particles":
        """The same particles with at most ``max_points`` random localizations each (see :func:`subsample_rows`)."""
        rows, lengths = subsample_rows(np.arange(self.n_localizations), self.lengths, max_points, rng)
        return Particles(coords=self.coords[rows], offsets=_offsets(lengths),
                         fields={k: v[rows] for k, v in self.fields.items()}, ids=self.ids)

    def replace(self, **changes) -> "Particles":
        """A copy with some attributes replaced (fields are shared)."""
        kwargs = dict(coords=self.coords, offsets=self.offsets, fields=dict(self.fields), ids=self.ids)
        kwargs.update(changes)
        return Particles(**kwargs)

    # ------------------------------------------------------------ conversion
    def to_list(self) -> list:
        """A list of ``(n_i, n_dims)`` arrays (copies)."""
        return np.split(self.coords.copy(), self.offsets[1:-1])

    def to_awkward(self):
        """An awkward array ``n * var * {x, y[, z], <fields>}``."""
        import awkward as ak

        columns = {name: self.coords[:, k] for k, name in enumerate(_COORD_NAMES[: self.n_dims])}
        columns.update(self.fields)
        if self.ids is not None:
            columns[PARTICLE_ID] = np.repeat(self.ids, self.lengths)
        return ak.unflatten(ak.zip(columns, depth_limit=1), self.lengths)

    def to_padded(self, max_points: int | None = None):
        """Padded coordinates and a validity mask.

        Returns
        -------
        padded : ndarray of shape (n_particles, max_points, n_dims)
        mask : ndarray of bool, shape (n_particles, max_points)
        """
        lengths = self.lengths
        width = int(lengths.max()) if max_points is None else int(max_points)
        mask = np.arange(width)[None, :] < lengths[:, None]
        padded = np.zeros((self.n_particles, width, self.n_dims), dtype=self.coords.dtype)
        keep = np.arange(self.n_localizations) - np.repeat(self.offsets[:-1], lengths) < width
        padded[mask] = self.coords[keep]
        return padded, mask


# ------------------------------------------------------- packed-array helpers
PRECISION_HINT = "; precisions must be finite and >= 0 nm (or pass use_precision=False)."


def precision_sd(p: Particles, hint: str = PRECISION_HINT) -> np.ndarray | None:
    """Per-localization, per-axis precision (m, d) in nm from the ``precision`` / ``precision_z`` fields.

    ``precision`` is the lateral one; ``precision_z``, where a 3D particle
    has it, the axial one. Without it the lateral one is given for z too,
    as the least the axial precision can be: a caller that models z must
    say so or estimate the rest (``ParticleFuser`` fits ``axial_excess_``).
    None where there is no ``precision`` field: nothing is assumed. A
    negative or non-finite value is a ``ValueError`` naming the particle and
    the localization, followed by ``hint``.
    """
    if "precision" not in p.fields:
        return None
    lateral = np.asarray(p.fields["precision"], dtype=np.float64)
    sd = np.repeat(lateral[:, None], p.n_dims, axis=1)
    if p.n_dims == 3 and "precision_z" in p.fields:
        sd[:, 2] = np.asarray(p.fields["precision_z"], dtype=np.float64)
    bad = ~(np.isfinite(sd) & (sd >= 0)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        i, j = p.locate(row)
        raise ValueError(f"{p.name(i)} has a negative or non-finite precision at localization {j}{hint}")
    return sd


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum ``values`` over every segment (particle) of a packed array.

    Parameters
    ----------
    values : ndarray of shape (n_rows, ...)
    offsets : ndarray of shape (n_segments + 1,)
        Segment ``i`` owns ``values[offsets[i]:offsets[i + 1]]``.

    Returns
    -------
    ndarray of shape (n_segments, ...)
        At least float64; zero for an empty segment.
    """
    values = np.asarray(values)
    lengths = np.diff(offsets)
    dtype = np.result_type(values, np.float64)
    nonempty = lengths > 0
    if values.shape[0] and nonempty.all():
        return np.add.reduceat(values, offsets[:-1], axis=0).astype(dtype, copy=False)
    out = np.zeros((len(lengths),) + values.shape[1:], dtype=dtype)
    if values.shape[0]:
        out[nonempty] = np.add.reduceat(values, offsets[:-1][nonempty], axis=0)
    return out


def range_rows(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the ranges ``[starts[i], starts[i] + lengths[i])``, one range after the other.

    Returns
    -------
    rows : ndarray of int64, shape (sum(lengths),)
    offsets : ndarray of int64, shape (len(lengths) + 1,)
        Range ``i`` is ``rows[offsets[i]:offsets[i + 1]]``.
    """
    offsets = _offsets(lengths)
    rows = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return rows, offsets


def gather_rows(offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the packed array that belong to particles ``idx``, in that order.

    Returns
    -------
    rows : ndarray of shape (sum(lengths[idx]),)
    lengths : ndarray of shape (len(idx),)
    """
    starts = offsets[:-1][idx]
    lengths = offsets[1:][idx] - starts
    rows, _ = range_rows(starts, lengths)
    return rows, lengths


def subsample_rows(rows: np.ndarray, lengths: np.ndarray, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Keep a uniformly random subset of at most ``max_points`` rows per particle.

    ``rows`` is grouped by particle (``lengths`` rows each). Particles with at
    most ``max_points`` rows keep all of them, in their order. The kept rows
    stay in their packed order, grouped by particle; the new lengths are
    ``minimum(lengths, max_points)``. (Used for the VAE's ``max_points`` and
    the fuser's orientation search; :func:`~pcvae_sklearn.estimate.subsample_localizations`
    keeps a fraction instead.)
    """
    if max_points is None or lengths.max(initial=0) <= max_points:
        return rows, lengths
    segment = np.repeat(np.arange(len(lengths)), lengths)
    keys = rng.random(len(rows))
    big = np.repeat(lengths > max_points, lengths)
    keys[~big] = 0.0  # small particles: keep every row, in order (stable sort)
    order = np.lexsort((keys, segment))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, lengths)
    keep = order[rank < max_points]
    keep.sort()  # back to packed order, grouped by particle
    return rows[keep], np.minimum(lengths, max_points)


def apply_transforms(coords, rotations, translations, lengths) -> np.ndarray:
    """Move every particle by its own rigid transform.

    Parameters
    ----------
    coords : ndarray of shape (n_localizations, d)
        Packed coordinates, particle after particle.
    rotations : ndarray of shape (n_particles, d, d)
    translations : ndarray of shape (n_particles, d)
    lengths : ndarray of shape (n_particles,)

    Returns
    -------
    ndarray of shape (n_localizations, d)
        ``coords_i @ rotations[j].T + translations[j]`` for every localization
        ``i`` of particle ``j``.
    """
    # one contiguous column at a time: gathering an (m, d, d) array of rotations costs 3-7x more
    coords = np.asarray(coords, dtype=np.float64)
    d = coords.shape[1]
    columns = [np.ascontiguousarray(coords[:, b]) for b in range(d)]
    out = np.empty((coords.shape[0], d))
    for a in range(d):
        acc = np.repeat(translations[:, a], lengths)
        for b in range(d):
            acc += np.repeat(rotations[:, a, b], lengths) * columns[b]
        out[:, a] = acc
    return out


# ---------------------------------------------------------------- the boundary
def check_particle_labels(labels, n_particles: int) -> np.ndarray:
    """Validate one label per particle (a bin or cluster); return them as a 1-D array.

    Parameters
    ----------
    labels : array-like of shape (n_particles,) or (n_particles, 1)
        Numbers or strings.
    n_particles : int

    Returns
    -------
    ndarray of shape (n_particles,)
        Object arrays and lists of integers become int64, of other numbers
        float64, of booleans bool; where any label is text, all are str.

    Raises
    ------
    TypeError
        For ``None``, labels that are neither numbers nor strings, and a
        number and a string that read alike (``1`` and ``"1"``); the message
        names the particle.
    ValueError
        For the wrong shape or length, or NaN / inf labels.
    """
    if labels is None:
        raise TypeError("labels is None; pass one bin label per particle (e.g. LatentBinner().fit_transform(Z)[:, j]).")
    # a list stays objects: numpy would turn [1, "1"] into text without a word
    labels = np.asarray(labels, dtype=object if isinstance(labels, (list, tuple)) else None)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"labels has shape {labels.shape}; expected one label per particle, shape ({n_particles},). "
            "For a LatentBinner output pick one latent dimension: labels[:, j]."
        )
    if len(labels) != n_particles:
        raise ValueError(f"labels has {len(labels)} entries but X holds {n_particles} particles; give one label per particle.")
    if labels.dtype == object:
        text = [isinstance(v, str) for v in labels]
        for i, v in enumerate(labels):
            if not (text[i] or isinstance(v, np.bool_) or (isinstance(v, Number) and not isinstance(v, complex))):
                raise TypeError(f"the label of particle {i} is {v!r}; labels must be numbers or strings.")
        if any(text):
            as_text = labels.astype(str)
            first = {}
            for i, (v, t) in enumerate(zip(labels, as_text)):  # a mix is read as text: 1 and "1" must not merge
                j = first.setdefault(t, i)
                if text[j] != text[i]:
                    raise TypeError(f"particle {j} has the label {labels[j]!r} and particle {i} the label {v!r}, "
                                    "which read alike as text; give every particle a label of one kind.")
            labels = as_text
        elif all(isinstance(v, (bool, np.bool_)) for v in labels):
            labels = labels.astype(bool)
        else:
            integral = all(isinstance(v, (int, np.integer)) for v in labels)
            labels = labels.astype(np.int64 if integral else np.float64)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("labels contains NaN or inf; every particle needs a bin label.")
    return labels
