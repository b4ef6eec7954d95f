"""Vectorised per-particle (segment) statistics on the packed form.

A *segment* is one particle's run of localizations in the packed layout of
:class:`~pcvae_sklearn._ragged.Particles`: segment ``i`` owns
``values[offsets[i]:offsets[i + 1]]``. The helpers here compute statistics of
every segment at once with sorts and index arithmetic, never with a Python
loop over particles.
"""

from __future__ import annotations

import numpy as np

from .._ragged import range_rows, segment_sum

__all__ = [
    "segment_sort",
    "sorted_range_median",
    "segment_median",
    "segment_mean_std",
]


def _lengths(offsets):
    offsets = np.asarray(offsets, dtype=np.int64)
    return offsets, np.diff(offsets)


def segment_sort(values, offsets, *, return_order=False):
    """Sort ``values`` inside every segment.

    Parameters
    ----------
    values : ndarray of shape (n_values,)
        Packed per-localization values, finite.
    offsets : ndarray of shape (n_segments + 1,)
        Segment ``i`` owns ``values[offsets[i]:offsets[i + 1]]``.
    return_order : bool, default=False
        Also return the permutation.

    Returns
    -------
    sorted_values : ndarray of shape (n_values,)
        The values, sorted ascending inside each segment; segments stay in
        place.
    order : ndarray of shape (n_values,)
        Only if ``return_order``: the permutation with
        ``sorted_values = values[order]``; equal values keep their order.

    Notes
    -----
    Sorting many short rows of a 2-D array is far faster than one global
    sort by (segment, value) (``np.lexsort``), so the segments are grouped
    by length into power-of-two widths, each group is padded with ``+inf``
    into a 2-D array and sorted along its rows. The Python loop runs over
    the groups (at most ``log2`` of the longest segment), never over
    segments.
    """
    values = np.asarray(values, dtype=np.float64)
    offsets, lengths = _lengths(offsets)
    out = np.empty_like(values)
    order = np.empty(values.shape[0], dtype=np.int64) if return_order else None
    nonempty = lengths > 0
    width = np.zeros(len(lengths), dtype=np.int64)
    width[nonempty] = 1 << np.ceil(np.log2(lengths[nonempty])).astype(np.int64)
    for w in np.unique(width[nonempty]):
        seg = np.flatnonzero(width == w)
        seg_len = lengths[seg]
        mask = np.arange(w)[None, :] < seg_len[:, None]
        # packed rows of these segments, in row-major order of the mask
        rows, _ = range_rows(offsets[:-1][seg], seg_len)
        padded = np.full(mask.shape, np.inf)
        padded[mask] = values[rows]
        if return_order:
            idx = np.argsort(padded, axis=1, kind="stable")
            row_idx = np.zeros(mask.shape, dtype=np.int64)
            row_idx[mask] = rows
            order[rows] = np.take_along_axis(row_idx, idx, axis=1)[mask]
            out[rows] = values[order[rows]]
        else:
            padded.sort(axis=1)
            out[rows] = padded[mask]
    if return_order:
        return out, order
    return out


def sorted_range_median(sorted_values, starts, lengths):
    """Median of ranges of an array that is sorted inside each range.

    Parameters
    ----------
    sorted_values : ndarray of shape (n_values,)
    starts, lengths : ndarray of shape (n_ranges,)
        Range ``i`` is ``sorted_values[starts[i]:starts[i] + lengths[i]]``,
        already sorted ascending.

    Returns
    -------
    ndarray of shape (n_ranges,)
        The median of every range: its middle element, or the mean of its two
        middle elements for an even length. NaN for an empty range.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full(len(starts), np.nan)
    ok = lengths > 0
    lo = starts[ok] + (lengths[ok] - 1) // 2
    hi = starts[ok] + lengths[ok] // 2
    out[ok] = 0.5 * (sorted_values[lo] + sorted_values[hi])
    return out


def segment_median(values, offsets):
    """Median of every segment.

    Parameters
    ----------
    values, offsets : ndarray
        As in :func:`segment_sort`.

    Returns
    -------
    ndarray of shape (n_segments,)
        ``np.median`` of every segment, NaN for an empty one.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.estimate import segment_median
    >>> segment_median(np.array([3.0, 1.0, 2.0, 10.0, 20.0]), np.array([0, 3, 5]))
    array([ 2., 15.])
    """
    offsets, lengths = _lengths(offsets)
    sorted_values = segment_sort(values, offsets)
    return sorted_range_median(sorted_values, offsets[:-1], lengths)


def segment_mean_std(values, offsets):
    """Mean and (population) standard deviation of every segment.

    Two-pass (the deviations from the segment mean are summed), so large
    offsets in nm do not cancel digits.

    Parameters
    ----------
    values : ndarray of shape (n_values,)
        Packed per-localization values, finite.
    offsets : ndarray of shape (n_segments + 1,)
        Segment ``i`` owns ``values[offsets[i]:offsets[i + 1]]``, as in
        :func:`segment_sort`.

    Returns
    -------
    mean, std : ndarray of shape (n_segments,)
        NaN for an empty segment.
    """
    values = np.asarray(values, dtype=np.float64)
    offsets, lengths = _lengths(offsets)
    ok = lengths > 0
    sums = segment_sum(values, offsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, sums / np.maximum(lengths, 1), np.nan)
    dev = values - np.repeat(mean, lengths)
    sq = segment_sum(dev * dev, offsets)
    std = np.where(ok, np.sqrt(sq / np.maximum(lengths, 1)), np.nan)
    return mean, std
