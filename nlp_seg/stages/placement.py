"""Placing new rows among the fitted rows, and flagging rows unlike anything fitted.

Labelling new rows (``Segmenter.predict``, ``nlpseg assign``) goes through the fitted rows'
neighbourhoods in the *fused* space rather than through UMAP's ``transform``: UMAP re-optimises
each new point's position stochastically, so re-assigning the very rows a segmenter was fitted
on moved a quarter of them to other segments on small data. Here a new row takes the
distance-weighted vote of its ``k`` nearest fitted rows' segments (the neighbourhood UMAP itself
starts from); a row identical to a fitted row gets that row's segment, so re-assigning the
training rows reproduces them.

UMAP would also place a row about something never seen among its nearest neighbours however far
they are. So a row farther from every fitted row than ``factor`` times the 99th percentile of
the fitted rows' own nearest-neighbour distances is flagged (``is_outlier``) and its
``segment_probability`` is lowered in proportion: flagged, not forced.

State is plain float32 / int arrays (saved as safetensors) and a few numbers (JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

RADIUS_SAMPLE_ROWS = 2000
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def row_keys(global_rows: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash (splitmix64) of each global row number: a uniform random key."""
    with np.errstate(over="ignore"):
        z = np.asarray(global_rows, dtype=np.uint64) + np.uint64(
            (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def fit_sample(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The fit sample: sorted, the ``size`` rows of ``rows`` with the smallest seeded keys.

    A bottom-k sample of a seeded hash of the row number is uniform, depends only on the seed
    and the row numbers, and can be taken in one streaming pass (``nlpseg batch`` keeps the
    running bottom k chunk by chunk), so ``analyze`` and ``batch`` fit on the same rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) <= size:
        return np.sort(rows)
    keep = np.lexsort((rows, row_keys(rows, seed)))[:size]
    return np.sort(rows[keep])


class FitNeighbours:
    """The fit sample's fused vectors with their segments, for neighbour placement."""

    def __init__(
        self, k: int = 15, quantile: float = 0.99, factor: float = 1.5, seed: int = 42
    ) -> None:
        self.k = k
        self.quantile = quantile
        self.factor = factor
        self.seed = seed

    def fit(self, fused: np.ndarray, labels: np.ndarray, outliers: np.ndarray) -> FitNeighbours:
        """Remember the fitted rows; learn the novelty radius on (a sample of) them."""
        self.reference_ = np.ascontiguousarray(fused, dtype=np.float32)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.outliers_ = np.asarray(outliers, dtype=bool)
        x = self.reference_
        if len(x) > RADIUS_SAMPLE_ROWS:
            rng = np.random.default_rng(self.seed)
            x = x[np.sort(rng.choice(len(x), size=RADIUS_SAMPLE_ROWS, replace=False))]
        self.radius_ = float("inf")
        if len(x) >= 3:
            d, _ = _knn(x, x, 1, exclude_self=True)
            positive = d[:, 0][d[:, 0] > 0]
            base = float(np.quantile(positive, self.quantile)) if len(positive) else 0.0
            if base > 0:
                self.radius_ = base * self.factor
        return self

    def place(
        self, fused: np.ndarray, novelty: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, strength, is_outlier)`` of rows from their nearest fitted rows.

        ``is_outlier`` is set where most of the neighbours' weight is on the fit's outliers,
        and, with ``novelty``, where the row is farther than the radius from every fitted row.
        """
        x = np.asarray(fused, dtype=np.float32)
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool)
        k = max(1, min(self.k, len(self.reference_)))
        dist, idx = _knn(x, self.reference_, k)
        # Inverse-distance weights; a (near-)identical fitted row dominates the vote.
        scale = self.radius_ if np.isfinite(self.radius_) else float(dist.mean() + 1e-6)
        w = 1.0 / (dist + 1e-6 * max(scale, 1e-12))
        w /= w.sum(axis=1, keepdims=True)
        neigh_labels = self.labels_[idx]
        labels = np.empty(n, dtype=np.int64)
        share = np.empty(n)
        for i in range(n):
            cand, inv = np.unique(neigh_labels[i], return_inverse=True)
            votes = np.bincount(inv, weights=w[i])
            j = int(votes.argmax())
            labels[i], share[i] = cand[j], votes[j]
        outlier_vote = (w * self.outliers_[idx]).sum(axis=1) > 0.5
        if not novelty:
            return labels, np.clip(share, 0.0, 1.0), outlier_vote
        novel = dist[:, 0] > self.radius_
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = np.where(novel, self.radius_ / np.maximum(dist[:, 0], 1e-12), 1.0)
        strength = np.clip(np.minimum(share, cap), 0.0, 1.0)
        return labels, strength, outlier_vote | novel

    def novel(self, fused: np.ndarray) -> np.ndarray:
        """Rows farther than the novelty radius from every fitted row: texts unlike any the
        segmenter was fitted on (what a refresh counts as novelty)."""
        x = np.asarray(fused, dtype=np.float32)
        if len(x) == 0 or not np.isfinite(self.radius_):
            return np.zeros(len(x), dtype=bool)
        dist, _ = _knn(x, self.reference_, 1)
        return dist[:, 0] > self.radius_

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-safe parameters and the arrays to store as safetensors."""
        params = {
            "k": self.k,
            "quantile": self.quantile,
            "factor": self.factor,
            "seed": self.seed,
            "radius": self.radius_ if np.isfinite(self.radius_) else None,
        }
        arrays = {
            "neighbours.reference": self.reference_,
            "neighbours.labels": self.labels_,
            "neighbours.outliers": self.outliers_.astype(np.uint8),
        }
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> FitNeighbours:
        obj = cls(
            int(params["k"]),
            float(params["quantile"]),
            float(params["factor"]),
            int(params["seed"]),
        )
        obj.reference_ = np.ascontiguousarray(arrays["neighbours.reference"], dtype=np.float32)
        obj.labels_ = np.asarray(arrays["neighbours.labels"], dtype=np.int64)
        obj.outliers_ = np.asarray(arrays["neighbours.outliers"]).astype(bool)
        r = params.get("radius")
        obj.radius_ = float("inf") if r is None else float(r)
        return obj


def _knn(
    x: np.ndarray, ref: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest rows of ``ref`` for each row of ``x``, in blocks so memory
    stays bounded (about 256 x len(ref) floats at a time). ``exclude_self`` when ``x is ref``."""
    ref64 = ref.astype(np.float64)
    ref_sq = (ref64**2).sum(axis=1)
    dist = np.empty((len(x), k))
    idx = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), 256):
        blk = x[start : start + 256].astype(np.float64)
        d2 = (blk**2).sum(axis=1)[:, None] + ref_sq[None, :]
        d2 -= 2.0 * (blk @ ref64.T)
        np.maximum(d2, 0.0, out=d2)
        if exclude_self:
            rows = np.arange(len(blk))
            d2[rows, start + rows] = np.inf
        part = (
            np.argpartition(d2, k - 1, axis=1)[:, :k]
            if d2.shape[1] > k
            else np.tile(np.arange(d2.shape[1]), (len(blk), 1))
        )
        pd2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd2, axis=1)
        idx[start : start + len(blk)] = np.take_along_axis(part, order, axis=1)
        dist[start : start + len(blk)] = np.sqrt(np.take_along_axis(pd2, order, axis=1))
    return dist, idx
