"""Segment identity across refits: which new segment is which old one.

A refresh fits segments anew on new data, then places the same rows with the previous
segmenter. Segments that share most of their members are the same segment: the pairs are
chosen by optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) on the
Jaccard overlap of members, and a pair is kept only when its overlap reaches ``min_overlap``.
Matched segments keep the old id; the others get fresh ids above every id used before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentMatch:
    """The outcome of matching new segments to old ones (all ids are segment ids)."""

    #: new (fitted) id -> id it carries from now on (the old id when matched)
    id_map: dict[int, int]
    #: new id -> old id, for matched pairs only
    matched: dict[int, int]
    #: ids (after mapping) of segments no old segment matched
    new: list[int] = field(default_factory=list)
    #: old ids no new segment matched
    gone: list[int] = field(default_factory=list)
    #: Jaccard overlap of each matched pair, keyed by the kept id
    overlap: dict[int, float] = field(default_factory=dict)


def overlap_matrix(
    new_labels: np.ndarray, old_labels: np.ndarray, new_ids: list[int], old_ids: list[int]
) -> np.ndarray:
    """Jaccard overlap ``|A ∩ B| / |A ∪ B|`` of rows labelled ``new_ids[i]`` and ``old_ids[j]``."""
    new_labels = np.asarray(new_labels)
    old_labels = np.asarray(old_labels)
    jac = np.zeros((len(new_ids), len(old_ids)))
    new_sizes = np.array([(new_labels == k).sum() for k in new_ids], dtype=float)
    old_sizes = np.array([(old_labels == k).sum() for k in old_ids], dtype=float)
    for i, k in enumerate(new_ids):
        members = old_labels[new_labels == k]
        for j, o in enumerate(old_ids):
            both = float((members == o).sum())
            union = new_sizes[i] + old_sizes[j] - both
            jac[i, j] = both / union if union else 0.0
    return jac


def match_segments(
    new_labels: np.ndarray,
    old_labels: np.ndarray,
    old_ids: list[int],
    min_overlap: float = 0.3,
    next_id: int | None = None,
) -> SegmentMatch:
    """Match the segments of ``new_labels`` (a fresh fit) to those of ``old_labels`` (the
    previous segmenter's placement of the same rows); ``old_ids`` are every id the previous
    segmenter knew (so a segment none of the rows reach is ``gone``); ``next_id`` is the
    first id never used by any earlier segmentation (default: one above ``old_ids``), so an
    id once gone is never given to another segment. Outliers (-1) stay -1."""
    from scipy.optimize import linear_sum_assignment

    new_ids = sorted(int(k) for k in np.unique(new_labels) if k >= 0)
    old_ids = sorted(int(k) for k in old_ids if k >= 0)
    jac = overlap_matrix(new_labels, old_labels, new_ids, old_ids)
    matched: dict[int, int] = {}
    overlap: dict[int, float] = {}
    if jac.size:
        rows, cols = linear_sum_assignment(jac, maximize=True)
        for i, j in zip(rows, cols, strict=True):
            if jac[i, j] >= min_overlap:
                matched[new_ids[i]] = old_ids[j]
                overlap[old_ids[j]] = round(float(jac[i, j]), 4)
    next_id = max([*old_ids, -1, (next_id or 0) - 1]) + 1
    id_map: dict[int, int] = {-1: -1}
    new: list[int] = []
    for k in new_ids:
        if k in matched:
            id_map[k] = matched[k]
        else:
            id_map[k] = next_id
            new.append(next_id)
            next_id += 1
    gone = [o for o in old_ids if o not in matched.values()]
    return SegmentMatch(id_map=id_map, matched=matched, new=new, gone=gone, overlap=overlap)
