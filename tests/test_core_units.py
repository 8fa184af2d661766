"""Pure pieces of the pipeline: fusion, naming, keywords, label mapping, CSV safety."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import NlpsegError
from nlp_seg.io.write import neutralize_cell, spreadsheet_safe
from nlp_seg.models.sentiment import label_mapping, summarize
from nlp_seg.stages.fusion import BlockFuser, parse_weights
from nlp_seg.stages.naming import (
    asks_improvement,
    base_name,
    class_tfidf_keywords,
    disambiguate,
    representative_examples,
)


def test_block_weight_not_dimension_sets_pull() -> None:
    rng = np.random.default_rng(0)
    blocks = {"text": rng.normal(size=(200, 384)), "sentiment": rng.normal(size=(200, 3))}
    fused = BlockFuser({"text": 1.0, "sentiment": 2.0}).fit_transform(blocks)
    text_var = fused[:, :384].var(axis=0).sum()
    sent_var = fused[:, 384:].var(axis=0).sum()
    assert text_var == pytest.approx(1.0, rel=1e-3)
    assert sent_var == pytest.approx(4.0, rel=1e-3)  # weight 2 -> variance 4


def test_fuser_round_trips_through_json() -> None:
    rng = np.random.default_rng(1)
    blocks = {"text": rng.normal(size=(50, 8)), "behavior": rng.normal(size=(50, 2))}
    f = BlockFuser(parse_weights("text=1,behavior=0.5")).fit(blocks)
    g = BlockFuser.from_dict(f.to_dict())
    np.testing.assert_allclose(f.transform(blocks), g.transform(blocks))


@pytest.mark.parametrize("bad", ["text", "colour=1", "text=abc", "text=-1"])
def test_bad_weights_are_clear_errors(bad: str) -> None:
    with pytest.raises(NlpsegError):
        parse_weights(bad)


def test_improvement_requests_in_several_languages_and_without_accents() -> None:
    texts = [
        "khi nào shop cập nhật thêm màu?",
        "mong shop cai thien pin",
        "hope you add dark mode",
        "espero que melhorem a bateria",
        "sản phẩm tốt",
        "great phone",
    ]
    assert asks_improvement(texts).tolist() == [True, True, True, True, False, False]


def test_base_names_follow_the_documented_rules() -> None:
    assert base_name(0.7, {"positive": 0.8, "negative": 0.1}, 0.05) == "satisfied"
    assert base_name(-0.6, {"positive": 0.1, "negative": 0.8}, 0.05) == "disappointed"
    assert base_name(0.0, {"positive": 0.4, "negative": 0.4}, 0.4) == "awaiting-improvement"
    assert base_name(0.02, {"positive": 0.3, "negative": 0.3}, 0.0) == "neutral"


def test_ctfidf_keywords_separate_classes_and_keep_phrases() -> None:
    texts = ["pin trâu dùng lâu", "pin trâu lắm", "pin trâu quá"] + [
        "giao hàng chậm",
        "giao hàng chậm quá",
        "giao hàng lâu",
    ]
    kw = class_tfidf_keywords(texts, np.array([0, 0, 0, 1, 1, 1]), top_n=3)
    assert "pin trâu" in kw[0]
    assert "giao hàng chậm" in kw[1]  # two of its three texts say the whole phrase
    assert not set(kw[0]) & set(kw[1])
    cjk = class_tfidf_keywords(["电池很好", "电池不错"] * 2, np.array([0, 0, 0, 0]))
    assert "电池" in cjk[0]


def test_examples_are_central_and_distinct() -> None:
    emb = np.array([[1, 0], [0.99, 0.01], [0.9, 0.1], [0, 1]], dtype=float)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = ["one one", "one one copy", "two two", "far away"]
    ex = representative_examples(texts, emb, k=2, max_similarity=0.99)
    assert ex[0] == "two two"  # the most central text comes first
    assert not {"one one", "one one copy"} <= set(ex)  # near-copies are not both shown


def test_duplicate_names_disambiguated() -> None:
    names = disambiguate(
        {0: "satisfied", 1: "satisfied", 2: "disappointed"},
        {0: ["pin", "camera"], 1: ["giao hàng"], 2: ["lỗi"]},
    )
    assert names == {
        0: "satisfied (pin, camera)",
        1: "satisfied (giao hàng)",
        2: "disappointed (lỗi)",  # unique, but a name says what its segment talks about
    }
    # named after an aspect, a unique name stays as it is; without keywords too
    kept = disambiguate(
        {0: "disappointed · battery", 1: "silent"}, {0: ["pin"], 1: []}, described={0}
    )
    assert kept == {0: "disappointed · battery", 1: "silent"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({0: "negative", 1: "neutral", 2: "positive"}, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        ({0: "LABEL_0", 1: "LABEL_1"}, [[1, 0, 0], [0, 0, 1]]),
        (
            {0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"},
            [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]],
        ),
        ({0: "POS", 1: "NEG"}, [[0, 0, 1], [1, 0, 0]]),
    ],
)
def test_label_mapping(labels: dict[int, str], expected: list[list[int]]) -> None:
    np.testing.assert_array_equal(label_mapping(labels), expected)


def test_unmappable_labels_fail_clearly() -> None:
    with pytest.raises(NlpsegError, match="cannot map"):
        label_mapping({0: "sports", 1: "politics", 2: "tech", 3: "x"})


def test_summary_score_and_confidence() -> None:
    labels, score, conf = summarize(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    assert labels == ["negative", "positive"]
    np.testing.assert_allclose(score, [-0.6, 0.7])
    np.testing.assert_allclose(conf, [0.7, 0.8])


def test_spreadsheet_safe_csv_cells() -> None:
    for bad in ('=HYPERLINK("x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert neutralize_cell(bad) == "'" + bad
    assert neutralize_cell("normal") == "normal"
    df = pd.DataFrame({"t": ["=1+1", "ok"], "score": [-0.5, 0.2]})
    safe = spreadsheet_safe(df)
    assert safe["t"].tolist() == ["'=1+1", "ok"]
    assert safe["score"].tolist() == [-0.5, 0.2]  # numbers untouched
