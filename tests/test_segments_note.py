"""run.json's ``segments_note``: why a run on many texts ended with few segments."""

from __future__ import annotations

import numpy as np

from nlp_seg.stages.segments_note import segments_note


def test_note_says_min_cluster_size_noise_and_merges() -> None:
    raw = np.array([0] * 1500 + [1] * 1200 + [2] * 300 + [-1] * 2000)
    note = segments_note(
        n_texts=5000,
        n_segments=2,
        min_cluster_size=100,
        default_min_cluster_size=True,
        raw_labels=raw,
        merges=1,
    )
    assert note is not None
    assert note["dense_groups"] == 3 and note["merges"] == 1
    assert note["noise_share"] == 0.4 and note["min_cluster_size"] == 100
    why = note["why"]
    assert why.startswith("2 segments on 5,000 texts")
    assert "min_cluster_size=100 rows (the default" in why and "40%" in why
    assert "1 segment was merged" in why and "--min-cluster-size 33" in why


def test_no_note_with_enough_segments_or_few_texts() -> None:
    raw = np.arange(3000) % 8
    args = {"min_cluster_size": 60, "default_min_cluster_size": True, "merges": 0}
    assert segments_note(n_texts=3000, n_segments=8, raw_labels=raw, **args) is None
    assert segments_note(n_texts=900, n_segments=2, raw_labels=raw[:900], **args) is None
