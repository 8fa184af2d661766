"""Merging segments a reader could not tell apart.

HDBSCAN on a small file often cuts one kind of text into several dense groups (the same
praise written a dozen times, split by a stray emoji): a CX lead then reads three segments
with one name and one action. Two segments are merged when each one's centre lies well within the
other's typical spread in the fused space (the mean distance of its members to its centre):
no member-level difference a reader could see is left between them. Segments that differ in
sentiment or behaviour keep apart, since both are part of the fused space; hence ``factor``
(0.35): in the fused space a text block of hundreds of dimensions makes every spread large, and
segments one behaviour feature tells apart (low-value vs mid-value) must not merge.
"""

from __future__ import annotations

import numpy as np


class SegmentMerger:
    """Learns ``mapping_`` (old segment id -> merged id, contiguous from 0) on the fit sample."""

    def __init__(self, enabled: bool = True, factor: float = 0.35, max_rounds: int = 1000) -> None:
        self.enabled = enabled
        self.factor = factor
        self.max_rounds = max_rounds

    def fit(self, fused: np.ndarray, labels: np.ndarray) -> SegmentMerger:
        labels = np.asarray(labels, dtype=int)
        ids = sorted(int(k) for k in set(labels.tolist()) if k >= 0)
        groups = {k: np.flatnonzero(labels == k) for k in ids}
        merged_into = {k: k for k in ids}
        self.merges_: list[tuple[int, int]] = []
        x = np.asarray(fused, dtype=np.float64)
        for _ in range(self.max_rounds if self.enabled else 0):
            live = sorted(groups)
            if len(live) < 2:
                break
            centres = np.vstack([x[groups[k]].mean(axis=0) for k in live])
            spread = np.array(
                [
                    np.linalg.norm(x[groups[k]] - centres[i], axis=1).mean()
                    for i, k in enumerate(live)
                ]
            )
            d = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
            limit = self.factor * np.minimum(spread[:, None], spread[None, :])
            np.fill_diagonal(d, np.inf)
            eligible = d <= limit
            if not eligible.any():
                break
            i, j = np.unravel_index(np.argmin(np.where(eligible, d, np.inf)), d.shape)
            keep, drop = min(live[i], live[j]), max(live[i], live[j])
            groups[keep] = np.concatenate([groups[keep], groups.pop(drop)])
            for k, v in merged_into.items():
                if v == drop:
                    merged_into[k] = keep
            self.merges_.append((drop, keep))
        # Renumber 0..k-1 in order of the surviving ids, so ids stay stable and contiguous.
        survivors = sorted(set(merged_into.values()))
        rank = {k: r for r, k in enumerate(survivors)}
        self.mapping_ = {k: rank[v] for k, v in merged_into.items()}
        return self

    def transform(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=int)
        out = labels.copy()
        for old, new in self.mapping_.items():
            out[labels == old] = new
        return out
