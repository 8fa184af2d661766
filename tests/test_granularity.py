"""Default cluster sizes: segments a CX team can act on (6-20 on 2k-10k reviews, measured in
scripts/eval_granularity.py), and what the clusterer records about them."""

from __future__ import annotations

import numpy as np

from nlp_seg.stages.clustering import (
    HdbscanClusterer,
    default_max_cluster_size,
    default_min_cluster_size,
    default_min_samples,
)


def test_defaults_scale_with_the_file() -> None:
    assert default_min_cluster_size(2000) == 27  # 0.6 * sqrt(2000) beats 1%
    assert default_min_cluster_size(50_000) == 500  # 1%
    assert default_min_samples(27) == 8 and default_min_samples(500) == 125
    assert default_min_samples(5) == 5  # never above min_cluster_size
    assert default_max_cluster_size(999) == 0  # no cap on small files
    assert default_max_cluster_size(4000) == 1000


def _blobs(sizes: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 12, (len(sizes), 5))
    return np.vstack([rng.normal(c, 1.0, (n, 5)) for c, n in zip(centres, sizes, strict=True)])


def test_defaults_find_every_group_and_record_settings() -> None:
    x = _blobs([150] * 8)
    c = HdbscanClusterer().fit(x)
    assert len(set(c.labels_.tolist())) == 8
    info = c.describe()
    assert info["min_samples"] == default_min_samples(info["min_cluster_size"])
    assert info["max_cluster_size"] == 300  # a quarter of 1,200 rows


def test_no_segment_swallows_half_the_file() -> None:
    # one broad group of 1,500 rows made of three close sub-groups, and two small ones: the cap
    # makes HDBSCAN pick the sub-groups instead of one segment of 75% of the rows
    rng = np.random.default_rng(1)
    broad = np.vstack([rng.normal((d, 0, 0, 0, 0), 0.6, (500, 5)) for d in (0.0, 3.0, 6.0)])
    x = np.vstack([broad, _blobs([250, 250], seed=2) + 40])
    capped = HdbscanClusterer().fit(x)
    uncapped = HdbscanClusterer(max_cluster_size=0).fit(x)
    share = np.bincount(capped.raw_labels_[capped.raw_labels_ >= 0]).max() / len(x)
    assert share <= 0.25 + 1e-9
    assert len(set(capped.labels_.tolist())) > len(set(uncapped.labels_.tolist()))


def test_cap_is_dropped_when_identical_rows_would_all_be_noise() -> None:
    # three groups of 400 identical rows (a third of the file each: "ok", "tốt", "good"):
    # under a cap of 300 none can be a segment; without it each is one
    x = np.zeros((1200, 3))
    x[:, 0] = np.arange(1200) % 3
    c = HdbscanClusterer().fit(x)
    assert c.max_cluster_size_ == 0 and "dropped" in (c.note_ or "")
    assert len(set(c.raw_labels_.tolist())) == 3 and (c.raw_labels_ >= 0).all()


def test_no_cap_close_to_the_smallest_segment() -> None:
    # --min-cluster-size 300 on 1,200 rows: a cap of 300 would leave no selectable segment
    c = HdbscanClusterer(min_cluster_size=300).fit(_blobs([600, 600], seed=4))
    assert c.max_cluster_size_ == 0 and c.note_ is None
    assert len(set(c.labels_.tolist())) == 2
