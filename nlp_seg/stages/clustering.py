"""Clustering: HDBSCAN on the reduced vectors, then outliers placed or kept.

HDBSCAN finds segments of any shape and marks rows that belong to none (-1). A remarketing
team needs every customer in an audience, so by default an outlier is reassigned to the segment
it is closest to (by HDBSCAN's soft membership, else the nearest centre) and flagged with
``is_outlier``; ``keep_outliers=True`` leaves them at -1. The clusterer is a slot: cuML's
HDBSCAN drops in on a GPU machine.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def default_min_cluster_size(n: int) -> int:
    """About 1% of the rows (at most 5,000), and at least ``0.6 * sqrt(n)`` and 5: a small file
    gets a readable handful of segments (172 rows: 8) and 2k-10k reviews the 6-20 a CX team can
    act on (at 2% most real corpora gave 2-4; docs/benchmarks.md, "Granularity")."""
    return int(max(5, round(0.6 * n**0.5), min(5000, round(0.01 * n))))


def default_min_samples(min_cluster_size: int) -> int:
    """A quarter of ``min_cluster_size`` (at least 8, at most it): HDBSCAN's default (equal to
    it) calls 41-59% of real reviews noise and merges neighbouring topics; a smaller
    neighbourhood keeps them apart without the speckle of ``min_samples=1``."""
    return int(min(min_cluster_size, max(8, min_cluster_size // 4)))


#: From this many rows no segment may hold more than :data:`MAX_CLUSTER_SHARE` of them by
#: default: one "everyone who liked it" segment of half the file tells a CX team nothing.
MAX_CLUSTER_MIN_ROWS = 1000
MAX_CLUSTER_SHARE = 0.25


#: The cap is dropped when it leaves at least this share of rows as noise and this much more
#: than the fit without it.
CAP_MAX_NOISE = 0.65
CAP_EXTRA_NOISE = 0.2


def default_max_cluster_size(n: int) -> int:
    """0 (no limit) below :data:`MAX_CLUSTER_MIN_ROWS` rows, else a quarter of them."""
    return int(MAX_CLUSTER_SHARE * n) if n >= MAX_CLUSTER_MIN_ROWS else 0


class HdbscanClusterer:
    """HDBSCAN with prediction data kept, so new rows can be placed later."""

    def __init__(
        self,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        keep_outliers: bool = False,
        backend: str = "auto",
        cluster_selection_method: str = "eom",
        max_cluster_size: int | None = None,
    ) -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.max_cluster_size = max_cluster_size
        self.keep_outliers = keep_outliers
        self.backend = backend
        self.cluster_selection_method = cluster_selection_method

    def fit(self, x: np.ndarray) -> HdbscanClusterer:
        n = len(x)
        mcs = self.min_cluster_size or default_min_cluster_size(n)
        self.min_cluster_size_ = int(mcs)
        self.min_samples_ = int(self.min_samples or default_min_samples(mcs))
        self.max_cluster_size_ = int(
            default_max_cluster_size(n) if self.max_cluster_size is None else self.max_cluster_size
        )
        if self.max_cluster_size is None and self.max_cluster_size_ < 2 * mcs:
            self.max_cluster_size_ = 0  # a cap this close to the smallest segment leaves none
        self.note_: str | None = None
        if n < 2 * mcs or n < 6:
            # Fewer rows than two segments need: one segment, said plainly.
            self.model_ = None
            self.raw_labels_ = np.zeros(n, dtype=int)
            self.probabilities_ = np.ones(n)
            self.centers_ = x.mean(axis=0, keepdims=True)
            self.note_ = (
                f"only {n} rows: fewer than two segments of min_cluster_size={mcs} need, "
                "so all rows form a single segment"
            )
        else:
            self._fit_model(x, mcs)
            if self.max_cluster_size_:
                self._drop_cap_if_it_costs(x, mcs)
            if (self.raw_labels_ < 0).all():
                self.note_ = "HDBSCAN found no dense group; all rows form a single segment"
                self.model_ = None
                self.raw_labels_ = np.zeros(n, dtype=int)
                self.probabilities_ = np.ones(n)
            ids = sorted(set(self.raw_labels_.tolist()) - {-1})
            self.centers_ = np.vstack([x[self.raw_labels_ == k].mean(axis=0) for k in ids])
        self.labels_, self.probabilities_, self.outlier_mask_ = self._place_outliers(
            x, self.raw_labels_, self.probabilities_
        )
        return self

    def _drop_cap_if_it_costs(self, x: np.ndarray, mcs: int) -> None:
        """The size cap splits broad groups (their borders become noise, 40-50% of real
        reviews, placed afterwards), but a group that cannot be split (hundreds of identical
        texts: "ok", "tốt") becomes noise whole under it: when the capped fit leaves most rows
        as noise, the fit without the cap is kept if it leaves far fewer."""
        capped_noise = float(np.mean(self.raw_labels_ < 0))
        if capped_noise < CAP_MAX_NOISE:
            return
        capped = (self.model_, self.raw_labels_, self.probabilities_)
        cap, self.max_cluster_size_ = self.max_cluster_size_, 0
        self._fit_model(x, mcs)
        free_noise = float(np.mean(self.raw_labels_ < 0))
        if capped_noise < 1.0 and capped_noise - free_noise < CAP_EXTRA_NOISE:
            self.model_, self.raw_labels_, self.probabilities_ = capped
            self.max_cluster_size_ = cap
            return
        self.note_ = (
            f"max_cluster_size={cap} dropped: it left {capped_noise:.0%} of rows as noise "
            f"against {free_noise:.0%} without it"
        )

    def _fit_model(self, x: np.ndarray, mcs: int) -> None:
        n = len(x)
        self.model_ = self._make(mcs)
        try:
            self.model_.fit(x)
            self.raw_labels_ = np.asarray(self.model_.labels_, dtype=int)
            self.probabilities_ = np.asarray(self.model_.probabilities_, dtype=float)
        except ValueError as exc:  # degenerate geometry (all rows alike): one segment
            log.debug("HDBSCAN failed: %s", exc)
            self.raw_labels_ = np.full(n, -1, dtype=int)
            self.probabilities_ = np.zeros(n)

    def _make(self, mcs: int) -> Any:
        self.backend_ = "hdbscan"
        if self.backend in ("auto", "cuml"):
            from nlp_seg.stages.reduction import cuml_available

            if self.backend == "cuml" or cuml_available():
                from cuml.cluster import HDBSCAN as CumlHDBSCAN

                self.backend_ = "cuml"
                return CumlHDBSCAN(
                    min_cluster_size=mcs,
                    min_samples=self.min_samples_,
                    max_cluster_size=self.max_cluster_size_,
                    cluster_selection_method=self.cluster_selection_method,
                    prediction_data=True,
                )
        import hdbscan

        return hdbscan.HDBSCAN(
            min_cluster_size=mcs,
            min_samples=self.min_samples_,
            max_cluster_size=self.max_cluster_size_,
            cluster_selection_method=self.cluster_selection_method,
            prediction_data=True,
            core_dist_n_jobs=1,
        )

    def _soft(self, x: np.ndarray | None) -> np.ndarray | None:
        """Soft membership of training rows (``x is None``) or new rows, if available."""
        if self.model_ is None:
            return None
        try:
            if self.backend_ == "cuml":
                from cuml.cluster import hdbscan as ch

                if x is None:
                    return np.asarray(ch.all_points_membership_vectors(self.model_))
                return np.asarray(ch.membership_vector(self.model_, x))
            import hdbscan

            if x is None:
                return np.asarray(hdbscan.all_points_membership_vectors(self.model_))
            return np.asarray(hdbscan.membership_vector(self.model_, x))
        except Exception as exc:  # noqa: BLE001 - fall back to nearest centre
            log.debug("soft membership unavailable: %s", exc)
            return None

    def _nearest_center(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.linalg.norm(x[:, None, :] - self.centers_[None, :, :], axis=2)
        nearest = d.argmin(axis=1)
        # A distance-based confidence in (0, 1]: 1 at the centre, falling with distance.
        spread = np.median(d.min(axis=1)) + 1e-9
        return nearest, np.exp(-d.min(axis=1) / (3 * spread))

    def _place_outliers(
        self, x: np.ndarray, labels: np.ndarray, probs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outliers = labels < 0
        labels = labels.copy()
        probs = probs.copy()
        if self.keep_outliers or not outliers.any():
            return labels, probs, outliers
        soft = self._soft(None)
        if soft is not None and soft.ndim == 2 and soft.shape[0] == len(x) and soft.shape[1]:
            labels[outliers] = soft[outliers].argmax(axis=1)
            probs[outliers] = soft[outliers].max(axis=1)
        else:
            nearest, conf = self._nearest_center(x[outliers])
            labels[outliers] = nearest
            probs[outliers] = conf
        return labels, np.clip(probs, 0, 1), outliers

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, strengths and an "unlike anything seen" mask for new rows."""
        if len(x) == 0:
            return np.zeros(0, dtype=int), np.zeros(0), np.zeros(0, dtype=bool)
        if self.model_ is None:
            nearest, conf = self._nearest_center(x)
            return nearest, conf, np.zeros(len(x), dtype=bool)
        if self.backend_ == "cuml":
            from cuml.cluster import hdbscan as ch

            labels, strengths = ch.approximate_predict(self.model_, x)
        else:
            import hdbscan

            labels, strengths = hdbscan.approximate_predict(self.model_, x)
        labels = np.asarray(labels, dtype=int)
        strengths = np.asarray(strengths, dtype=float)
        outliers = labels < 0
        if outliers.any() and not self.keep_outliers:
            nearest, conf = self._nearest_center(x[outliers])
            labels[outliers] = nearest
            strengths[outliers] = conf
        return labels, np.clip(strengths, 0, 1), outliers

    def describe(self) -> dict[str, Any]:
        return {
            "backend": getattr(self, "backend_", self.backend),
            "min_cluster_size": getattr(self, "min_cluster_size_", self.min_cluster_size),
            "min_samples": getattr(self, "min_samples_", self.min_samples),
            "max_cluster_size": getattr(self, "max_cluster_size_", self.max_cluster_size),
            "keep_outliers": self.keep_outliers,
            "cluster_selection_method": self.cluster_selection_method,
            "note": getattr(self, "note_", None),
        }
