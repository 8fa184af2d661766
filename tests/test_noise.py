"""Texts that are not reviews (keyboard mashing, one repeated character, links only, ads) get
``status = "low_information"`` and the segment ``-1`` named ``noise``, never a sentiment name,
in every command: analyze, batch, assign, score and the service's model thread.

Real examples come from ViSpamReviews dev (``shared_data``); the head is exercised with the
real bundled encoder, the plumbing with the tiny local models (there only the rules run, as
the head reads the bundled encoder's vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.segmenter import Segmenter, SegmenterConfig, load_segmenter
from nlp_seg.stages.noise import NOISE_SEGMENT_NAME, STATUS_LOW_INFORMATION, NoiseFilter

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reviews.csv"

#: Short real reviews, several languages: none of them may be flagged.
SHORT_GENUINE = [
    "ok",
    "good",
    "Ótimo!",
    "Muito bom",
    "Adorei 😍",
    "great phone",
    "bad",
    "not worth the money",
    "sehr gut",
    "Excelente producto",
    "Sản phẩm tốt",
    "hàng đẹp",
    "Giao hàng nhanh",
    "shop giao hàng nhanhhhhhhh",
    "tạm được",
    "10/10",
    "👍",
    "😡😡😡",
]
#: Texts no customer wrote about a purchase.
NOT_REVIEWS = [
    "Cjeidjfhdhd Hshdhfbfbb Bxbxbxbdbxbx",
    "Dhnxncbcncncncncnncncncnncncncncncncncnncncncjjnjn",
    "kkkkkkkkkkkkkkkk",
    "https://youtu.be/abc123 https://youtu.be/abc123",
    "www.example.com/khuyen-mai",
    "..... 1111111111",
]


def _vispam_dev(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "reviews" / "vispamreviews" / "dev.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return pd.read_csv(path, dtype={"Comment": str}).dropna(subset=["Comment"])


def _mashing_and_links(dev: pd.DataFrame) -> list[str]:
    """ViSpamReviews dev rows labelled irrelevant that are keyboard mashing or links only."""
    irrelevant = dev[dev["SpamLabel"] == 3]["Comment"]
    prefixes = ("Djjdjdjdjd", "Xhcfdugxbb", "Nndnxnxkxk", "Bshajakksk", "Hhhhhhhhhh", "Hzhxbdnzkz")
    mash = irrelevant[irrelevant.str.startswith(prefixes)].tolist()
    links = irrelevant[
        irrelevant.str.strip().str.startswith(("https://youtu.be/", "https://vt.tiktok"))
    ]
    assert len(mash) >= 6 and len(links) >= 1, "the ViSpamReviews dev examples moved"
    return mash + links.tolist()


# ------------------------------------------------------------------ the filter on its own
def test_rules_flag_real_mashing_and_links(shared_data: Path) -> None:
    from nlp_seg.normalize import normalize_texts

    texts = _mashing_and_links(_vispam_dev(shared_data))
    clean = [n.text for n in normalize_texts(texts)]
    flt = NoiseFilter()  # rules only: no head fitted, no embeddings
    flags = flt.predict(clean)
    assert flags.all(), [t[:40] for t, f in zip(clean, flags, strict=True) if not f]
    assert not flt.predict(SHORT_GENUINE).any()


def test_shipped_head_loads_without_pickle_and_is_small() -> None:
    from nlp_seg.stages.noise import bundled_noise_head_path

    folder = bundled_noise_head_path()
    assert {p.name for p in folder.iterdir()} == {"head.safetensors", "config.json", "README.md"}
    assert sum(p.stat().st_size for p in folder.iterdir()) < 64_000
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "research purposes" in card
    flt = NoiseFilter.load()
    assert flt.trained_for_ == "bundled:multilingual-e5-small"
    assert 0.0 < flt.threshold < 1.0


def test_head_on_the_bundled_encoder(shared_data: Path) -> None:
    """The real encoder's vectors: mashing / links / ads flagged, short real reviews in
    Vietnamese, English and Portuguese kept, and short genuine dev reviews kept."""
    dev = _vispam_dev(shared_data)
    noisy = _mashing_and_links(dev) + NOT_REVIEWS
    genuine_dev = dev[(dev["SpamLabel"] == 0) & (dev["Comment"].str.len() <= 40)]
    genuine_dev = genuine_dev["Comment"].sample(40, random_state=0).tolist()
    seg = Segmenter(SegmenterConfig(device="cpu"))
    status = seg.score(noisy + SHORT_GENUINE + genuine_dev)["status"].tolist()
    n1, n2 = len(noisy), len(noisy) + len(SHORT_GENUINE)
    assert status[:n1] == [STATUS_LOW_INFORMATION] * n1
    assert status[n1:n2] == ["ok"] * len(SHORT_GENUINE), list(
        zip(SHORT_GENUINE, status[n1:n2], strict=True)
    )
    assert status[n2:].count(STATUS_LOW_INFORMATION) <= 1, [
        t for t, s in zip(genuine_dev, status[n2:], strict=True) if s != "ok"
    ]
    # the head itself (not only the rules) catches ads / chat that look like prose
    ads = dev[(dev["SpamLabel"] == 3) & dev["Comment"].str.contains("Gboard")]["Comment"]
    assert len(ads) >= 2
    flags = seg.score(ads.tolist())["status"] == STATUS_LOW_INFORMATION
    assert flags.mean() >= 0.5


# ------------------------------------------------------------------ every command
@pytest.fixture(scope="module")
def noisy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example with not-a-review rows mixed in."""
    df = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    extra = pd.DataFrame(
        {
            "review_id": [f"N{i}" for i in range(len(NOT_REVIEWS))],
            "customer_id": [f"CN{i}" for i in range(len(NOT_REVIEWS))],
            "review": NOT_REVIEWS,
            "rating": ["5"] * len(NOT_REVIEWS),
            "date": ["2025-05-01"] * len(NOT_REVIEWS),
        }
    )
    out = pd.concat([df.iloc[:60], extra, df.iloc[60:]], ignore_index=True)
    path = tmp_path_factory.mktemp("noise") / "reviews.csv"
    out.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def analyzed(tiny_models: dict[str, Path], noisy_csv: Path, tmp_path_factory) -> dict:
    from nlp_seg.runs.jobs import analyze_file

    root = tmp_path_factory.mktemp("noise_run")
    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        seed=5,
    )
    analyze_file(noisy_csv, root / "out", cfg, save_model=root / "model")
    return {"root": root, "cfg": cfg, "out": root / "out", "model": root / "model"}


def _noise_rows(frame: pd.DataFrame) -> pd.Series:
    return frame["review_id"].astype(str).str.startswith("N")


def test_analyze_marks_noise_rows(analyzed: dict) -> None:
    a = pd.read_parquet(analyzed["out"] / "assignments.parquet")
    noise = _noise_rows(a)
    assert noise.sum() == len(NOT_REVIEWS)
    flagged = a[noise]
    assert (flagged["status"] == STATUS_LOW_INFORMATION).all()
    assert (flagged["segment_id"] == -1).all()
    assert (flagged["segment_name"] == NOISE_SEGMENT_NAME).all()
    assert flagged["sentiment_label"].isna().all() and flagged["sentiment_score"].isna().all()
    assert flagged["segment_probability"].isna().all()
    rest = a[~noise]
    assert (rest["status"] == "ok").all()  # the example's real reviews are all kept
    assert not (rest["segment_name"] == NOISE_SEGMENT_NAME).any()
    segments = json.loads((analyzed["out"] / "segments.json").read_text())["segments"]
    assert all(s["name"] != NOISE_SEGMENT_NAME for s in segments)
    assert sum(s["size"] for s in segments) <= len(rest)  # noise rows joined no segment
    run = json.loads((analyzed["out"] / "run.json").read_text())
    assert run["status_counts"][STATUS_LOW_INFORMATION] == len(NOT_REVIEWS)


def test_keep_noise_leaves_rows_ok(analyzed: dict, noisy_csv: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from nlp_seg.runs.jobs import analyze_file

    cfg = replace(analyzed["cfg"], noise_filter=False)
    analyze_file(noisy_csv, tmp_path / "out", cfg, save_model=tmp_path / "model")
    a = pd.read_parquet(tmp_path / "out" / "assignments.parquet")
    assert (a["status"] == "ok").all()
    assert (a.loc[_noise_rows(a), "segment_id"] >= 0).all()
    state = json.loads((tmp_path / "model" / "segmenter.json").read_text())
    assert state["config"]["noise_filter"] is False
    # assign with that segmenter keeps them too: it uses what the segmenter was fit with
    out = load_segmenter(tmp_path / "model").predict(NOT_REVIEWS)
    assert (out["status"] == "ok").all()


def test_assign_and_score_give_the_same_status(analyzed: dict, noisy_csv: Path, tmp_path) -> None:
    from nlp_seg.runs.jobs import assign_file, score_file

    state = json.loads((analyzed["model"] / "segmenter.json").read_text())
    assert state["config"]["noise_filter"] is True
    trained = pd.read_parquet(analyzed["out"] / "assignments.parquet")
    assign_file(noisy_csv, analyzed["model"], tmp_path / "assign")
    again = pd.read_parquet(tmp_path / "assign" / "assignments.parquet")
    assert again["status"].tolist() == trained["status"].tolist()
    flagged = again[_noise_rows(again)]
    assert (flagged["segment_name"] == NOISE_SEGMENT_NAME).all()
    assert (flagged["segment_id"] == -1).all()

    seg = load_segmenter(analyzed["model"])
    out = seg.predict(["great phone, fast delivery", *NOT_REVIEWS, ""])
    assert out["status"].tolist() == ["ok"] + [STATUS_LOW_INFORMATION] * len(NOT_REVIEWS) + [
        "empty_text"
    ]
    assert out["segment_name"].iloc[0] != NOISE_SEGMENT_NAME

    score_file(noisy_csv, tmp_path / "scores.csv", analyzed["cfg"])
    scores = pd.read_csv(tmp_path / "scores.csv", encoding="utf-8-sig", dtype={"review_id": str})
    assert scores["status"].tolist() == trained["status"].tolist()
    assert scores.loc[_noise_rows(scores), "sentiment_label"].isna().all()


def test_service_model_thread_gives_the_same_status(analyzed: dict) -> None:
    from nlp_seg.service.batching import AssignPayload, ModelRunner

    runner = ModelRunner(load_segmenter(analyzed["model"]))
    texts = ["great phone", NOT_REVIEWS[0], None, NOT_REVIEWS[3]]
    expected = ["ok", STATUS_LOW_INFORMATION, "empty_text", STATUS_LOW_INFORMATION]
    (scored,) = runner.score_batch([texts])
    assert scored["status"].tolist() == expected
    (placed,) = runner.assign_batch([AssignPayload(texts)])
    assert placed.assignments["status"].tolist() == expected
    assert placed.assignments["segment_name"].tolist()[1] == NOISE_SEGMENT_NAME


def test_batch_flags_the_same_rows(analyzed: dict, noisy_csv: Path, tmp_path: Path) -> None:
    from nlp_seg.runs.batch import BatchOptions, run_batch

    run_batch(
        [noisy_csv],
        tmp_path / "out",
        analyzed["cfg"],
        BatchOptions(chunk_size=50),
        audiences=False,
        report=False,
    )
    b = pd.read_parquet(tmp_path / "out" / "assignments.parquet")
    trained = pd.read_parquet(analyzed["out"] / "assignments.parquet")
    assert b["status"].tolist() == trained["status"].tolist()
    assert (b.loc[_noise_rows(b), "segment_name"] == NOISE_SEGMENT_NAME).all()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status_counts"][STATUS_LOW_INFORMATION] == len(NOT_REVIEWS)
    assert np.isnan(b.loc[_noise_rows(b), "sentiment_score"]).all()
