"""Segment keywords (c-TF-IDF, stop words, MMR), quotes about the top aspect, aspect audiences.

Keyword tests read real UIT-ViSFD phone reviews (skipped without ../shared/data); the MMR test
embeds words with the bundled encoder; the audience test runs ``nlpseg analyze --aspects
phones --audience-by aspect`` on real reviews.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import stopwordsiso

from nlp_seg.io.audiences import slugify
from nlp_seg.stages.keywords import (
    STOPWORDS,
    analyze_tokens,
    class_tfidf_keywords,
    ctfidf,
    keyword_embedder,
    mmr,
)
from nlp_seg.stages.naming import quote_aspect, representative_examples

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def topical(visfd_reviews: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Real reviews in three groups by what they talk about: battery (pin), camera, the rest.
    Every group talks about the phone itself ("máy"), so "máy" is common to all."""
    texts = [str(t) for t in visfd_reviews["comment"].dropna().tolist()[:3000]]
    low = [t.lower() for t in texts]
    labels = np.array(
        [
            0 if "pin" in t and "camera" not in t else 1 if "camera" in t and "pin" not in t else 2
            for t in low
        ]
    )
    assert min(np.bincount(labels)) > 150
    return texts, labels


def test_ctfidf_ranks_a_segment_word_above_a_word_every_segment_uses(topical) -> None:
    texts, labels = topical
    docs = [[tok for i in np.flatnonzero(labels == c) for tok in analyze_tokens(texts[i])]
            for c in range(3)]  # fmt: skip
    fitted = ctfidf(docs)
    assert fitted is not None
    terms, counts, scores = fitted
    col = {str(t): j for j, t in enumerate(terms)}
    may = col["máy"]
    assert (counts[:, may] > 0).all()  # every group says "máy"
    # In the battery group "máy" is said more often than "pin" is in the camera group, yet
    # "pin" scores above it there, and "camera" above it in the camera group.
    assert scores[0, col["pin"]] > scores[0, may]
    assert scores[1, col["camera"]] > scores[1, may]
    kws = class_tfidf_keywords(texts, labels, top_n=5)
    assert any("pin" in k.split() for k in kws[0]), kws[0]
    assert any("camera" in k.split() for k in kws[1]), kws[1]
    assert all("máy" not in v for v in kws.values()), kws


def test_stop_words_come_from_stopwords_iso_and_never_reach_keywords(topical) -> None:
    for lang in ("vi", "en", "pt", "id", "es"):
        assert {w.lower() for w in stopwordsiso.stopwords(lang)} <= STOPWORDS, lang
    assert {"và", "của", "the", "and", "que", "yang", "el"} <= STOPWORDS
    texts, labels = topical
    function_words = {"và", "của", "là", "thì", "mà", "được", "cho", "với", "này", "có", "rất"}
    for kws in class_tfidf_keywords(texts, labels, top_n=10).values():
        for k in kws:
            assert k not in STOPWORDS and not set(k.split()) & function_words, k
    mixed = analyze_tokens("The battery is great and the screen is bright, que bom, yang bagus")
    assert "battery" in mixed and not {"the", "and", "is", "que", "yang"} & set(mixed)


@pytest.fixture(scope="module")
def embed():
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    return keyword_embedder(Segmenter(SegmenterConfig(device="cpu")).encoder)


def test_mmr_on_encoder_embeddings_drops_near_duplicates(embed) -> None:
    words = ["giao hàng nhanh", "vận chuyển nhanh", "ship nhanh", "màn hình đẹp", "pin trâu"]
    # other segments' candidates: the centring below is over all of them, as in a run
    others = ["camera", "chụp ảnh", "nhân viên", "tư vấn", "giá rẻ", "loa to", "chơi game"]
    relevance = np.array([1.0, 0.95, 0.9, 0.7, 0.6])
    vec = np.asarray(embed(words + others))
    vec = (vec - vec.mean(axis=0))[: len(words)]  # as class_tfidf_keywords: off the cone
    plain = [words[i] for i in mmr(relevance, vec, top_n=2, diversity=0.0)]
    diverse = [words[i] for i in mmr(relevance, vec, top_n=3, diversity=0.3)]
    assert plain == ["giao hàng nhanh", "vận chuyển nhanh"]  # relevance alone: two synonyms
    assert diverse[0] == "giao hàng nhanh"
    assert "vận chuyển nhanh" not in diverse[:2] and "ship nhanh" not in diverse[:2]
    assert {"màn hình đẹp", "pin trâu"} & set(diverse[1:])


def test_keywords_with_mmr_stay_relevant_and_differ_between_segments(topical, embed) -> None:
    texts, labels = topical
    kws = class_tfidf_keywords(texts, labels, top_n=5, embed=embed)
    assert any("pin" in k.split() for k in kws[0]), kws[0]
    assert any("camera" in k.split() for k in kws[1]), kws[1]
    tops = [set(v) for v in kws.values()]
    assert not set.intersection(*tops), kws  # no keyword in every segment's top five
    assert all(len(v) == 5 and len(set(v)) == 5 for v in kws.values())


def test_quotes_prefer_the_top_aspect() -> None:
    mix = {
        "battery": {"praising": 0.05, "complaining": 0.5},
        "camera": {"praising": 0.4, "complaining": 0.0},
    }
    assert quote_aspect("disappointed", mix) == ("battery", "negative")
    assert quote_aspect("satisfied", mix) == ("camera", "positive")
    assert quote_aspect("neutral", {}) is None
    emb = np.array([[1.0, 0, 0], [0.9, 0.43, 0], [0.92, 0, 0.4], [0.7, -0.7, 0], [0.1, 0, -1]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = ["máy ổn", "dùng tốt", "pin tụt nhanh", "giao hàng lâu", "pin yếu"]
    prefer = np.array([False, False, True, False, True])
    quotes = representative_examples(texts, emb, k=3, prefer=prefer)
    assert quotes[0] == "pin tụt nhanh"  # central and about the battery
    assert "pin yếu" not in quotes  # about the battery too, but far from the centre
    assert quotes[1:] == ["máy ổn", "dùng tốt"]
    assert representative_examples(texts, emb, k=3) == ["máy ổn", "dùng tốt", "pin tụt nhanh"]


# --------------------------------------------------------------------------- audiences
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def aspect_run(visfd_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_cli import nlpseg

    root = tmp_path_factory.mktemp("aspect_aud")
    df = visfd_reviews[["comment", "n_star"]].head(160).copy()
    df.insert(0, "customer_id", [f"C{i // 2:03d}" for i in range(len(df))])  # two texts each
    df["email"] = [f" Buyer.{i // 2}@Example.com " for i in range(len(df))]
    df.to_csv(root / "phones.csv", index=False)
    proc = nlpseg(
        "-q", "analyze", str(root / "phones.csv"), "--out", str(root / "out"),
        "--aspects", "phones", "--audience-by", "aspect", "--no-report", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_audience_by_aspect_writes_hashed_aspect_audiences(aspect_run: Path) -> None:
    out = aspect_run / "out"
    src = pd.read_csv(aspect_run / "phones.csv", dtype=str, keep_default_na=False)
    main = pd.read_csv(out / "assignments.csv", encoding="utf-8-sig", dtype=str)
    main["aspects"] = main["aspects"].fillna("")
    index = pd.read_csv(out / "audiences" / "aspect" / "index.csv", encoding="utf-8-sig")
    assert len(index) >= 3 and "battery-negative.csv" in set(index["file"])
    for _, row in index.iterrows():
        assert row["file"] == f"{slugify(row['aspect'])}-{row['polarity']}.csv"
        aud = pd.read_csv(out / "audiences" / "aspect" / row["file"], encoding="utf-8-sig")
        assert list(aud.columns[:5]) == ["customer_id", "audience", "aspect", "polarity", "rows"]
        assert "email_sha256" in aud.columns and "email" not in aud.columns
        pair = f"{row['aspect']}:{row['polarity']}"
        said = main[main["aspects"].str.split(";").apply(lambda c, p=pair: p in c)]
        # exactly the customers with a text saying so, each once, with their own hash
        assert set(aud["customer_id"]) == set(said["customer_id"])
        assert len(aud) == row["customers"] == aud["customer_id"].nunique()
        assert aud["rows"].sum() == len(said)
        for _, a in aud.iterrows():
            email = src.loc[src["customer_id"] == a["customer_id"], "email"].iloc[0]
            assert a["email_sha256"] == _sha(email.strip().lower())
    # the segment audiences are still written, as before
    assert list((out / "audiences").glob("segment_*.csv"))
    run = json.loads((out / "run.json").read_text())
    assert run["audiences"]["by_aspect"]["files"] == len(index)


def test_audience_by_aspect_without_aspects_is_one_line(tmp_path: Path) -> None:
    from test_cli import assert_one_line_error, nlpseg

    proc = nlpseg(
        "analyze", str(REPO / "examples" / "reviews.csv"), "--out", str(tmp_path / "o"),
        "--audience-by", "aspect",
    )  # fmt: skip
    assert_one_line_error(proc, "--audience-by aspect needs aspect-level sentiment")
    assert not (tmp_path / "o").exists()
    proc = nlpseg("analyze", str(REPO / "examples" / "reviews.csv"), "--audience-by", "topic")
    assert_one_line_error(proc, "unknown --audience-by")


def _example_groups() -> tuple[list[str], np.ndarray]:
    """The bundled example's reviews, grouped by what they say: not as described, fast
    delivery, helpful advice typed without diacritics, and the rest."""
    texts = pd.read_csv(REPO / "examples" / "reviews.csv")["review"].astype(str).tolist()
    low = [t.lower() for t in texts]
    labels = np.array(
        [
            1
            if "mô tả" in t
            else 2
            if "giao hàng nhanh" in t
            else 3
            if "nhiet tinh" in t or "nhiệt tình" in t
            else 0
            for t in low
        ]
    )
    return texts, labels


def test_a_keyword_is_the_whole_phrase_not_a_piece_of_it() -> None:
    """ "giống" and "mô tả" come from "không giống mô tả"; "hàng nhanh" from "giao hàng
    nhanh": each segment shows the phrase its members write, not a fragment of it."""
    texts, labels = _example_groups()
    kw = class_tfidf_keywords(texts, labels, top_n=5)
    assert "không giống mô tả" in kw[1], kw[1]
    assert not {"giống", "mô tả", "giống mô tả", "không giống"} & set(kw[1])
    assert "giao hàng nhanh" in kw[2] and "hàng nhanh" not in kw[2], kw[2]


def test_keywords_read_vietnamese_typed_without_marks_with_its_marks() -> None:
    texts, labels = _example_groups()
    plain = class_tfidf_keywords(texts, labels, top_n=6)[3]
    marked = class_tfidf_keywords(texts, labels, top_n=6, restore_diacritics=True)[3]
    assert any("nhiet tinh" in k for k in plain), plain
    assert any("nhiệt tình" in k for k in marked) and not any("nhiet" in k for k in marked)


def test_how_people_ask_is_no_keyword_what_they_ask_for_is() -> None:
    from nlp_seg.stages.naming import is_request_cue

    asks = ["gostaria", "espero", "melhorem", "adicionassem", "mong shop cải thiện", "hope"]
    assert all(is_request_cue(w) for w in asks)
    assert not any(is_request_cue(w) for w in ["cor", "opções", "cải thiện pin", "battery"])
    texts = pd.read_csv(REPO / "examples" / "reviews.csv")["review"].astype(str).tolist()
    labels = np.array([int("gostaria" in t.lower()) for t in texts])
    plain = class_tfidf_keywords(texts, labels, top_n=5)[1]
    kw = class_tfidf_keywords(texts, labels, top_n=5, exclude=is_request_cue)[1]
    assert "gostaria" in plain or "adicionassem" in plain, plain  # how they ask ranks high
    assert "opções de cor" in kw and not {"gostaria", "adicionassem"} & set(kw), kw
