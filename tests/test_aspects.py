"""Aspect-level sentiment: clause splitting, the mixed rule, names that say what about, the
``aspects`` / ``sentiment_mixed`` columns, user taxonomy files (and malformed ones).

Real data: UIT-ViSFD reviews (``visfd_reviews``, skipped without ../shared/data); pipeline
plumbing with the tiny local models of conftest.py (real UMAP, HDBSCAN, files, CLI subprocess).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import InputError
from nlp_seg.segmenter import ASSIGNMENT_COLUMNS, Segmenter, SegmenterConfig, load_segmenter
from nlp_seg.stages.aspects import (
    format_aspects,
    is_mixed,
    load_taxonomy,
    parse_aspects,
    review_class,
    segment_aspect_mix,
    split_clauses,
    top_complaint,
)
from nlp_seg.stages.naming import NAME_SEPARATOR, aspect_base_name, qualified_name

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reviews.csv"

# Real UIT-ViSFD Train/Dev comments.
VI_MIXED = (
    "Mới mua Sài được 1 tháng thấy pin rất trâu, Sài bao mượt . Nhưng có 1 lỗi nhỏ là mình "
    "nghe nhạc bằng tai nghe nghe hơi lâu ko biết sao nó ko nghe được nữa"
)
VI_UPDATE = (
    "Mọi người cập nhật phần mềm lại , nó sẽ bớt tốn pin, mình đã thử rồi, mọi thứ cũng ok, "
    "nhưng vân tay ko nhạy"
)


# --------------------------------------------------------------------------- clauses
def test_vietnamese_contrast_and_sentence_boundaries() -> None:
    clauses = split_clauses(VI_MIXED)
    assert clauses[0] == "Mới mua Sài được 1 tháng thấy pin rất trâu"
    assert "Sài bao mượt" in clauses
    assert any(c.startswith("Nhưng có 1 lỗi nhỏ") for c in clauses)
    clauses = split_clauses(VI_UPDATE)
    assert clauses[-1] == "nhưng vân tay ko nhạy"
    assert "nó sẽ bớt tốn pin" in clauses


def test_issue_example_keeps_hoi_tiec_with_its_complaint() -> None:
    assert split_clauses("máy đẹp, mượt, hơi tiếc là pin không trâu") == [
        "máy đẹp, mượt",
        "hơi tiếc là pin không trâu",
    ]
    # "tuy" is a word of its own: "tuyệt" is not cut
    assert split_clauses("máy tuyệt vời tuy hơi nóng") == ["máy tuyệt vời", "tuy hơi nóng"]


def test_english_emoji_and_numbers() -> None:
    text = "Great camera but the battery dies fast. Screen is sharp 😍 delivery slow"
    assert split_clauses(text) == [
        "Great camera",
        "but the battery dies fast",
        "Screen is sharp 😍",
        "delivery slow",
    ]
    assert split_clauses("battery at 88.5% after a year, however it still works") == [
        "battery at 88.5% after a year",
        "however it still works",
    ]
    # a one-word fragment joins its neighbour; an emoji-only tail joins the clause it ends
    assert split_clauses("ok, the phone is fine 👍👍") == ["ok, the phone is fine 👍👍"]
    assert split_clauses("Produto bom, mas a entrega atrasou") == [
        "Produto bom",
        "mas a entrega atrasou",
    ]
    assert split_clauses("Barang bagus tapi pengiriman lama") == [
        "Barang bagus",
        "tapi pengiriman lama",
    ]
    assert split_clauses("") == [] and split_clauses("   ") == []


def test_clauses_of_real_reviews_lose_no_word(visfd_reviews: pd.DataFrame) -> None:
    """On 500 real reviews: every word of the text is in exactly the clauses, in order, and a
    review using "nhưng" as a word has a clause starting with it."""
    texts = visfd_reviews["comment"].astype(str).head(500).tolist()
    n_split = 0
    for text in texts:
        clauses = split_clauses(text)
        words = re.findall(r"\w+", text)
        assert re.findall(r"\w+", " ".join(clauses)) == words
        n_split += len(clauses) > 1
        if re.search(r"(?<!\w)nhưng(?!\w)", text, re.IGNORECASE):
            assert any(c.lower().startswith("nhưng") for c in clauses), text
    assert n_split > 250  # real reviews mostly hold several clauses


# --------------------------------------------------------------------------- rules
def test_mixed_rule_and_review_class() -> None:
    pairs = parse_aspects("battery:negative;design:positive;performance:positive")
    assert pairs == {"battery": "negative", "design": "positive", "performance": "positive"}
    assert format_aspects(pairs) == "battery:negative;design:positive;performance:positive"
    assert is_mixed(pairs) and review_class(pairs) == "mixed"
    assert not is_mixed({"camera": "positive", "price": "neutral"})
    assert review_class({"camera": "positive", "price": "neutral"}) == "satisfied"
    assert review_class({"delivery": "negative"}) == "disappointed"
    assert review_class({}, "positive") == "satisfied"
    assert review_class({}, "neutral") == "neutral"
    assert review_class({"price": "neutral"}, "negative") == "neutral"


def test_names_say_what_about() -> None:
    liked_but_battery = ["satisfied"] * 4 + ["mixed"] * 2
    mix = segment_aspect_mix(
        ["design:positive;battery:negative"] * 3 + ["design:positive"] * 2 + ["camera:positive"]
    )
    assert top_complaint(mix) == "battery"
    assert aspect_base_name(liked_but_battery, mix) == (
        "awaiting-improvement",
        f"awaiting-improvement{NAME_SEPARATOR}battery",
    )
    unhappy = segment_aspect_mix(["delivery:negative"] * 4 + ["price:positive"])
    assert aspect_base_name(["disappointed"] * 4 + ["satisfied"], unhappy)[1] == (
        "disappointed · delivery"
    )
    happy = segment_aspect_mix(["camera:positive;design:positive"] * 5 + ["price:positive"])
    assert aspect_base_name(["satisfied"] * 6, happy)[1] == "satisfied · camera, design"
    assert aspect_base_name(["neutral"] * 3, {})[1] == "neutral"
    # tiers are appended as before
    assert qualified_name("awaiting-improvement · battery", "VIP", "at-risk") == (
        "awaiting-improvement · battery · VIP · at-risk"
    )


# --------------------------------------------------------------------------- taxonomies
def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


USER_TAXONOMY = {
    "name": "shop",
    "aspects": {
        "delivery": ["giao hàng nhanh", "giao hàng chậm", "fast shipping", "entrega atrasou"],
        "quality": ["sản phẩm tốt", "hàng lỗi", "broke after a day", "produto com defeito"],
        "battery": ["pin trâu", "pin tụt nhanh", "battery drains fast"],
    },
    "threshold": 0.5,
    "margin": 0.1,
}


def test_builtin_taxonomies_load() -> None:
    general = load_taxonomy("general")
    assert {"quality", "price", "delivery", "packaging", "service", "size_fit"} <= set(
        general.aspects
    )
    assert all(len(general.phrases[a]) >= 10 for a in general.aspects)
    phones = load_taxonomy("phones")
    assert phones.kind == "head" and len(phones.aspects) == 10
    assert phones.weights is not None and phones.weights.shape[0] == 10
    # format 2: per-aspect polarity and review-class models on embedding + sentiment
    assert phones.joint and phones.polarity_weights is not None
    assert phones.class_weights is not None
    d = phones.weights.shape[1]
    assert phones.polarity_weights.shape == (10, 3, d + 3)
    assert phones.class_weights.shape == (4, d + 3)


def test_joint_decoding_follows_the_class_model() -> None:
    from nlp_seg.stages.aspects import decode_aspects

    found = np.array([0.9, 0.8, 0.01])  # two aspects present, a third unlikely
    # both lean positive on their own; the second only slightly
    pol = np.array([[0.05, 0.05, 0.9], [0.4, 0.1, 0.5], [0.1, 0.1, 0.8]])
    mixed = np.array([0.1, 0.1, 0.7, 0.1])  # satisfied, disappointed, mixed, neutral
    satisfied = np.array([0.8, 0.05, 0.1, 0.05])
    assert decode_aspects(found, pol, mixed, 0.0, 0.5) == [(0, 2), (1, 2)]  # per-aspect rule
    assert decode_aspects(found, pol, mixed, 2.0, 0.5) == [(0, 2), (1, 0)]  # less sure flips
    assert decode_aspects(found, pol, satisfied, 2.0, 0.5) == [(0, 2), (1, 2)]
    # a confident aspect is not flipped by a weak class signal
    sure = np.array([[0.01, 0.01, 0.98], [0.02, 0.01, 0.97], [0.1, 0.1, 0.8]])
    assert decode_aspects(found, sure, np.array([0.3, 0.2, 0.4, 0.1]), 1.0, 0.5) == [
        (0, 2),
        (1, 2),
    ]
    # an aspect under the threshold is added when the class model is sure the text is mixed
    weak = np.array([0.9, 0.4, 0.0])
    neg2 = np.array([[0.05, 0.05, 0.9], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    assert decode_aspects(weak, neg2, mixed, 0.0, 0.5) == [(0, 2)]
    assert decode_aspects(weak, neg2, np.array([0.02, 0.02, 0.94, 0.02]), 2.0, 0.5) == [
        (0, 2),
        (1, 0),
    ]
    assert decode_aspects(np.zeros(3), pol, mixed, 2.0, 0.5) == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not readable JSON"),
        ('{"aspects": ["a", "b"]}', "expected an object"),
        ('{"aspects": {"delivery": [], "price": ["cheap"]}}', "non-empty list"),
        ('{"aspects": {"delivery": ["fast"]}}', "at least two aspects"),
        ('{"aspects": {"a:b": ["x"], "c": ["y"]}}', "holds ';' or ':'"),
    ],
)
def test_malformed_taxonomy_is_one_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "tax.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(needle)):
        SegmenterConfig(aspects=str(path))
    with pytest.raises(InputError, match="choose general, phones"):
        SegmenterConfig(aspects=str(tmp_path / "missing.json"))


def test_cli_malformed_taxonomy_one_line(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"aspects": {"delivery": "fast"}}', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "analyze", str(EXAMPLE), "--out", str(tmp_path / "o")]
        + ["--embedding-model", str(tiny_models["embedding"])]
        + ["--sentiment-model", str(tiny_models["sentiment"]), "--aspects", str(bad)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ") and "non-empty list" in lines[-1]
    assert not (tmp_path / "o" / "assignments.csv").exists()


def test_phones_head_refuses_another_encoder(tiny_models: dict[str, Path]) -> None:
    from nlp_seg.errors import NlpsegError

    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        aspects="phones",
    )
    with pytest.raises(NlpsegError, match="aspect head was trained on"):
        Segmenter(cfg).fit(["pin trâu, camera đẹp", "giao hàng chậm"] * 20)


# --------------------------------------------------------------------------- columns
@pytest.fixture(scope="module")
def fitted(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("aspects")
    tax = _write(root / "shop.json", USER_TAXONOMY)
    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        aspects=str(tax),
        seed=3,
    )
    texts = pd.read_csv(EXAMPLE)["review"].tolist()
    seg = Segmenter(cfg).fit(texts)
    seg.save(root / "model")
    tax.unlink()  # the saved segmenter keeps the taxonomy itself
    return {"seg": seg, "texts": texts, "root": root}


def test_new_columns_and_segment_aspects(fitted: dict) -> None:
    seg = fitted["seg"]
    table = seg.assignments_
    assert list(table.columns) == list(ASSIGNMENT_COLUMNS)
    assert {"aspects", "sentiment_mixed"} <= set(table.columns)
    cells = table["aspects"].fillna("").tolist()
    assert any(cells), "no aspect found in any review"
    for cell, mixed, status in zip(cells, table["sentiment_mixed"], table["status"], strict=True):
        pairs = parse_aspects(cell)
        assert set(pairs) <= set(USER_TAXONOMY["aspects"])
        assert set(pairs.values()) <= {"positive", "negative", "neutral"}
        assert bool(mixed) == is_mixed(pairs)
        if status != "ok":
            assert cell == ""
    for s in seg.segments_:
        assert "aspects" in s and "top_complaint" in s
        for shares in s["aspects"].values():
            assert 0 <= shares["praising"] <= 1 and 0 <= shares["complaining"] <= 1
        if s["top_complaint"] is not None:
            assert s["aspects"][s["top_complaint"]]["complaining"] >= 0.15
    assert seg.describe()["aspects"]["name"] == "shop"
    assert "aspects" in seg.timings_
    # the aspect scores are a block of the fused vector (weight 1 with a taxonomy)
    fusion = seg.describe()["fusion"]
    assert "aspects" in fusion["blocks"] and fusion["dims"]["aspects"] == len(
        USER_TAXONOMY["aspects"]
    )


def test_aspect_block_weight_zero_leaves_it_out(tiny_models: dict[str, Path]) -> None:
    from nlp_seg.stages.fusion import parse_weights

    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        aspects="general",
        weights=parse_weights("aspects=0"),
    )
    seg = Segmenter(cfg).fit(pd.read_csv(EXAMPLE)["review"].tolist()[:80])
    assert "aspects" not in seg.describe()["fusion"]["blocks"]
    assert seg.assignments_["aspects"].fillna("").astype(bool).any()  # still scored


def test_saved_segmenter_assigns_the_same_aspects(fitted: dict) -> None:
    seg, texts = fitted["seg"], fitted["texts"]
    loaded = load_segmenter(fitted["root"] / "model")
    assert loaded.config.aspects["name"] == "shop"
    again = loaded.predict(texts[:40])
    before = seg.assignments_["aspects"].fillna("").tolist()[:40]
    assert again["aspects"].fillna("").tolist() == before
    assert np.array_equal(again["sentiment_mixed"], seg.assignments_["sentiment_mixed"][:40])


def test_without_taxonomy_the_columns_are_empty(tiny_models: dict[str, Path]) -> None:
    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        seed=3,
    )
    table = Segmenter(cfg).fit(pd.read_csv(EXAMPLE)["review"].tolist()).assignments_
    assert (table["aspects"].fillna("") == "").all()
    assert not table["sentiment_mixed"].any()


def test_cli_analyze_writes_the_columns(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    tax = _write(tmp_path / "shop.json", USER_TAXONOMY)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", "analyze", str(EXAMPLE), "--out", str(out)]
        + ["--embedding-model", str(tiny_models["embedding"]), "--no-report"]
        + ["--sentiment-model", str(tiny_models["sentiment"]), "--aspects", str(tax)]
        + ["--save-model", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "assignments.csv", keep_default_na=False)
    assert {"aspects", "sentiment_mixed"} <= set(table.columns)
    segments = json.loads((out / "segments.json").read_text(encoding="utf-8"))["segments"]
    assert all("top_complaint" in s for s in segments)
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", "assign", str(EXAMPLE)]
        + ["--model", str(tmp_path / "model"), "--out", str(tmp_path / "assigned")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assigned = pd.read_csv(tmp_path / "assigned" / "assignments.csv", keep_default_na=False)
    assert assigned["aspects"].tolist() == table["aspects"].tolist()


# --------------------------------------------------------------------------- real model
def test_phones_head_on_real_reviews() -> None:
    """The bundled encoder + the phones head on reviews written for the test: the mixed one
    gets a praised and a complained-about aspect."""
    seg = Segmenter(SegmenterConfig(aspects="phones"))
    texts = [
        "Máy đẹp, camera chụp rất nét nhưng pin tụt nhanh quá, một ngày sạc ba lần",
        "Pin rất trâu, dùng rất thích",
    ]
    clean, status, emb, probs = seg.encode_rows(texts)
    cells = seg.aspect_cells(clean, status, emb, probs)
    first, second = parse_aspects(cells[0]), parse_aspects(cells[1])
    assert first.get("battery") == "negative"
    assert "positive" in first.values() and is_mixed(first)
    assert second.get("battery") == "positive"


def test_cli_with_orders_keeps_the_columns(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """The behaviour path (--orders: fit and assign through runs.behavior_job) writes them too."""
    tax = _write(tmp_path / "shop.json", USER_TAXONOMY)
    models = ["--embedding-model", str(tiny_models["embedding"])]
    models += ["--sentiment-model", str(tiny_models["sentiment"])]
    orders = ["--orders", str(REPO / "examples" / "orders.csv")]
    run = [sys.executable, "-m", "nlp_seg", "-q"]
    proc = subprocess.run(
        [*run, "analyze", str(EXAMPLE), "--out", str(tmp_path / "out"), "--no-report"]
        + [*models, *orders, "--aspects", str(tax), "--save-model", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    fitted = pd.read_csv(tmp_path / "out" / "assignments.csv", keep_default_na=False)
    proc = subprocess.run(
        [*run, "assign", str(EXAMPLE), "--model", str(tmp_path / "model")]
        + [*orders, "--out", str(tmp_path / "assigned")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assigned = pd.read_csv(tmp_path / "assigned" / "assignments.csv", keep_default_na=False)
    assert any(fitted["aspects"])
    assert assigned["aspects"].tolist() == fitted["aspects"].tolist()
    assert assigned["sentiment_mixed"].tolist() == fitted["sentiment_mixed"].tolist()


def test_saved_segmenter_notices_a_changed_builtin_taxonomy(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A segmenter saved with an earlier version of a built-in taxonomy (its aspects shaped
    the segments) is refused with one clear message, not silently placed elsewhere."""
    from nlp_seg.models.store import MANIFEST_FILE, STATE_FILE, ModelFolderError, file_sha256
    from nlp_seg.segmenter import load_segmenter
    from nlp_seg.stages.aspects import taxonomy_fingerprint

    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        aspects="general",
    )
    seg = Segmenter(cfg).fit(pd.read_csv(EXAMPLE)["review"].tolist()[:80])
    folder = Path(seg.save(tmp_path / "model"))
    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    assert state["models"]["aspects"] == {
        "id": "general",
        "sha256": taxonomy_fingerprint("general"),
    }
    load_segmenter(folder)  # the same taxonomy: loads
    state["models"]["aspects"]["sha256"] = "0" * 64  # saved with another version of it
    (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"][STATE_FILE] = file_sha256(folder / STATE_FILE)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelFolderError, match="aspect taxonomy differs"):
        load_segmenter(folder)
