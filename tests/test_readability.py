"""What a reader sees: segment counts, merged look-alike segments, actions about the segment's
topic, names with keywords, Vietnamese keywords as whole words, labels that do not depend on
case, and a star rating used to check the sentiment rather than as behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from test_cli import nlpseg, tiny_args

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reviews.csv"


def test_small_files_get_a_readable_minimum_segment_size() -> None:
    from nlp_seg.stages.clustering import default_min_cluster_size

    assert default_min_cluster_size(172) == 8
    assert default_min_cluster_size(50) == 5
    assert default_min_cluster_size(10_000) == 100
    assert default_min_cluster_size(10**7) == 5000
    sizes = [default_min_cluster_size(n) for n in range(10, 20_000, 37)]
    assert sizes == sorted(sizes)  # never smaller for a larger file


def test_merger_joins_look_alike_segments_and_keeps_distinct_ones() -> None:
    from nlp_seg.stages.merging import SegmentMerger

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (40, 8))
    b = rng.normal(0, 1, (40, 8)) + 0.05  # same place, same spread: indistinguishable
    c = rng.normal(0, 1, (40, 8)) + 6.0  # far away
    x = np.vstack([a, b, c])
    labels = np.repeat([0, 1, 2], 40)
    merger = SegmentMerger().fit(x, labels)
    out = merger.transform(labels)
    assert set(out[:80]) == {0} and set(out[80:]) == {1}
    assert merger.merges_ == [(1, 0)]
    # disabled: nothing changes
    assert (SegmentMerger(enabled=False).fit(x, labels).transform(labels) == labels).all()
    # outliers (-1) stay outliers
    labels2 = labels.copy()
    labels2[:3] = -1
    assert (SegmentMerger().fit(x, labels2).transform(labels2)[:3] == -1).all()


def test_actions_name_the_segment_topic() -> None:
    from nlp_seg.stages.naming import load_playbook, quoted_topic, suggest_action

    pb = load_playbook()
    assert quoted_topic(["pin", "màn hình"]) == "“pin”, “màn hình”"
    a = suggest_action(pb, {"base": "disappointed"}, topic="pin, màn hình")
    b = suggest_action(pb, {"base": "disappointed"}, topic="giao hàng")
    assert "pin, màn hình" in a and "giao hàng" in b and a != b
    vi = suggest_action(pb, {"base": "satisfied"}, lang="vi", topic="")
    assert "{topic}" not in vi and "điều họ nhắc tới" in vi


def test_shared_names_get_keywords_not_numbers() -> None:
    from nlp_seg.stages.naming import disambiguate

    names = disambiguate(
        {0: "satisfied", 1: "satisfied", 2: "satisfied"},
        {0: ["giao hàng", "đóng gói"], 1: ["giao hàng", "đóng gói"], 2: []},
    )
    assert names[0] == "satisfied (giao hàng, đóng gói)"
    assert names[1].startswith("satisfied (giao hàng, đóng gói)")  # own keywords, made unique
    assert names[2] == "satisfied #2"  # no keyword at all: only then a number


def test_vietnamese_keywords_are_whole_words() -> None:
    from nlp_seg.stages.naming import analyze_tokens

    tokens = analyze_tokens("Shop cập nhật thêm hàng giống mô tả, máy đẹp mà pin không trâu")
    assert "cập nhật" in tokens and "mô tả" in tokens
    assert "shop cập" not in tokens and "giống mô" not in tokens and "nhật thêm" not in tokens
    assert "không trâu" in tokens  # a negation still starts a phrase


def test_bundled_labels_do_not_depend_on_case() -> None:
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    seg = Segmenter(SegmenterConfig())
    assert seg.encoder.lowercase  # both models bundled: the models read lower-cased text
    texts = ["great phone", "Great phone", "GREAT PHONE", "Pin tụt nhanh", "PIN TỤT NHANH"]
    out = seg.score(texts)
    assert out["sentiment_label"].iloc[0] == out["sentiment_label"].iloc[1]
    assert out["sentiment_label"].iloc[1] == out["sentiment_label"].iloc[2]
    assert out["sentiment_label"].iloc[3] == out["sentiment_label"].iloc[4]
    np.testing.assert_allclose(out["sentiment_score"].iloc[:3], out["sentiment_score"].iloc[0])
    # another model keeps the text's case unless asked
    other = Segmenter(SegmenterConfig(embedding_model="/some/folder"))
    assert not other.encoder.lowercase
    assert Segmenter(SegmenterConfig(lowercase=True, embedding_model="x")).encoder.lowercase


def test_rating_checks_the_sentiment_instead_of_splitting_segments(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = nlpseg("-q", "analyze", str(EXAMPLE), "--out", str(out), *tiny_args(tiny_models))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["columns"]["behavior"] == []
    check = run["rating_check"]
    assert check["column"] == "rating" and check["used_as"] == "check of the sentiment"
    assert check["rows"] == len(pd.read_csv(EXAMPLE))
    assert -1.0 <= check["spearman_with_sentiment_score"] <= 1.0
    # What the reader sees: each action quotes its segment's own top keywords, no keyword
    # is a request cue ("gostaria") and repeat writers are no warning.
    from nlp_seg.stages.naming import is_request_cue, quoted_topic

    segments = json.loads((out / "segments.json").read_text())["segments"]
    for s in segments:
        if s["id"] >= 0 and s["keywords"]:
            assert quoted_topic(s["keywords"][:2]) in s["action"], s
            assert not any(is_request_cue(k) for k in s["keywords"]), s["keywords"]
    assert not any("duplicate values" in w for w in run["warnings"])
    # named explicitly, it is behaviour, and run.json says so
    proc = nlpseg(
        "-q", "analyze", str(EXAMPLE), "--out", str(tmp_path / "b"), "--behavior-cols", "rating",
        *tiny_args(tiny_models),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["columns"]["behavior"] == ["rating"]
    assert run["rating_check"]["used_as"].startswith("behaviour")
