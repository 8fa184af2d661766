"""The fine-tuned sentiment branch: the shipped one loads offline and reproduces its recorded
outputs on real texts, training code and inference code compute the same thing, a tampered
branch is refused in one line, and ``train-sentiment --kind branch`` fine-tunes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import ModelUnavailableError
from nlp_seg.models.registry import BUNDLED_SENTIMENT_BRANCH, branch_head_path
from nlp_seg.models.sentiment import HeadSentimentScorer
from nlp_seg.models.sentiment_branch import BRANCH_FILE, SentimentBranch
from nlp_seg.models.sentiment_head import SentimentHead
from nlp_seg.normalize import strip_diacritics

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "data" / "branch_reference.json"


def _segmenter(**kw: object):
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    kw.setdefault("sentiment_model", BUNDLED_SENTIMENT_BRANCH)
    return Segmenter(SegmenterConfig(**kw))


@pytest.fixture(scope="module")
def shipped() -> SentimentHead:
    return SentimentHead.load(branch_head_path())


def test_shipped_branch_is_small_float16_and_attaches_below_the_top(
    shipped: SentimentHead,
) -> None:
    entry = shipped.config_["branch"]
    assert entry["dtype"] == "float16" and entry["pooling"] == "mean"
    assert 1 <= entry["layers"] <= 6 and entry["from_layer"] == 12 - entry["layers"]
    size = (branch_head_path() / BRANCH_FILE).stat().st_size
    # two BertLayers of e5-small in float16 are ~7 MB; the repo stays lean
    assert size < 2 * 1024 * 1024 * entry["layers"] * 2
    assert shipped.config_["lowercase"] is True
    branch = SentimentBranch.load(branch_head_path(), entry)
    assert branch.n_layers == entry["layers"]


def test_shipped_branch_reproduces_its_recorded_outputs_offline(monkeypatch) -> None:
    """Probabilities of real texts through the pipeline equal the ones recorded when the branch
    was written (scripts/train_sentiment_branch.py reference). The reference was recorded on the
    texts as typed, so the diacritics restorer stays off here (tests/test_diacritics.py covers
    it). It was recorded in fp32; the kernel ``auto`` picks on this CPU (bf16 where AMX is)
    must give the same labels."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    recorded = np.array(ref["probabilities"])
    seg = _segmenter(restore_diacritics=False, precision="fp32")
    probs = seg.encoder.encode(ref["texts"])[1]
    np.testing.assert_allclose(probs, recorded, atol=2e-3)
    assert probs.argmax(axis=1).tolist() == recorded.argmax(axis=1).tolist()
    assert seg.encoder.describe()["sentiment"]["kind"] == "fine-tuned-branch"
    auto = _segmenter(restore_diacritics=False).encoder.encode(ref["texts"])[1]
    assert auto.argmax(axis=1).tolist() == recorded.argmax(axis=1).tolist()
    np.testing.assert_allclose(auto, recorded, atol=2e-2)


def test_training_and_inference_code_agree(shipped: SentimentHead) -> None:
    """The states the trainer reads (``lower_states``, then the branch on them) are the
    features the pipeline computes inside its encoder pass: a head trained one way is applied
    the same way."""
    import torch

    from nlp_seg.models.branch_fit import lower_states

    texts = [
        "sản phẩm rất tốt, giao hàng nhanh 😊",
        "hàng lỗi, shop không trả lời tin nhắn",
        "the battery died after two days, very disappointed",
        "ok",
    ]
    seg = _segmenter(precision="fp32")  # the trainer reads fp32 states
    embedder = seg.encoder.get_embedder()
    branch = seg.encoder.get_sentiment().branch
    layers = shipped.input_layers
    _, feats = embedder.embed_with_layers(texts, layers, branch=branch)
    states, pooled = lower_states(
        embedder.load(), texts, shipped.config_["branch"]["from_layer"], pooled_layers=layers
    )
    n = 384 * len(layers)
    np.testing.assert_allclose(pooled, feats[:, :n], atol=1e-4)
    with torch.inference_mode():
        h, m = states.batch(np.arange(len(texts)))
        tuned = branch.pool(h, m).float().numpy()
    cos = (tuned * feats[:, n:]).sum(1) / (
        np.linalg.norm(tuned, axis=1) * np.linalg.norm(feats[:, n:], axis=1)
    )
    assert cos.min() > 0.999, cos  # float16 cached states: tiny rounding only
    assert feats.shape[1] == shipped.mean_.shape[0] - 6  # the width the head reads


def _copy_head(dst: Path) -> Path:
    import shutil

    shutil.copytree(branch_head_path(), dst)
    return dst


def test_tampered_branch_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = _copy_head(tmp_path / "head")
    (folder / BRANCH_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(ModelUnavailableError) as err:
        HeadSentimentScorer(str(folder)).branch  # noqa: B018
    assert "branch" in str(err.value) and "\n" not in str(err.value)

    folder2 = _copy_head(tmp_path / "head2")
    cfg = json.loads((folder2 / "config.json").read_text())
    cfg["branch"]["layers"] = cfg["branch"]["layers"] + 1  # config and file disagree
    (folder2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError, match="does not match"):
        HeadSentimentScorer(str(folder2)).branch  # noqa: B018

    folder3 = _copy_head(tmp_path / "head3")
    cfg = json.loads((folder3 / "config.json").read_text())
    cfg["branch"]["file"] = "../../etc/passwd"  # a path out of the folder is not followed
    (folder3 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError):
        HeadSentimentScorer(str(folder3)).branch  # noqa: B018


def test_missing_diacritics_change_fewer_labels_than_with_the_frozen_head(
    visfd_reviews: pd.DataFrame,
) -> None:
    """Vietnamese typed without diacritics: the branch (trained on stripped copies too) keeps
    the label more often than the frozen head. Measured on 120 UIT-ViSFD and ViSpam reviews
    (scripts/eval_robustness.py): 53-55% vs 43-48%, far from the 95% target (issue 16)."""
    texts = (
        visfd_reviews["comment"].astype(str).loc[lambda s: s.str.len().between(10, 300)].head(120)
    )
    texts = [t for t in texts if strip_diacritics(t) != t]
    stripped = [strip_diacritics(t) for t in texts]
    agree = {}
    for name in (BUNDLED_SENTIMENT_BRANCH, "bundled:sentiment-head"):
        seg = _segmenter(sentiment_model=name)
        a = seg.encoder.encode(texts)[1].argmax(axis=1)
        b = seg.encoder.encode(stripped)[1].argmax(axis=1)
        agree[name] = float((a == b).mean())
    assert agree[BUNDLED_SENTIMENT_BRANCH] >= agree["bundled:sentiment-head"] - 0.02, agree
    assert agree[BUNDLED_SENTIMENT_BRANCH] > 0.4, agree


def test_train_sentiment_kind_branch_fine_tunes_and_scores(tmp_path: Path, shared_data: Path):
    """Real labelled Vietnamese student feedback (UIT-VSFC train): fine-tune, then score."""
    base = shared_data / "sentiment" / "uit-vsfc" / "train"
    texts = (base / "sents.txt").read_text(encoding="utf-8").splitlines()[:160]
    labels = (base / "sentiments.txt").read_text(encoding="utf-8").splitlines()[:160]
    src = tmp_path / "labelled.csv"
    pd.DataFrame({"text": texts, "label": [int(x) for x in labels]}).to_csv(src, index=False)
    out = tmp_path / "my_branch"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nlp_seg",
            "-q",
            "train-sentiment",
            str(src),
            "--out",
            str(out),
            "--kind",
            "branch",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    assert "held-out macro-F1" in run.stdout
    head = SentimentHead.load(out)
    assert head.config_["branch"]["layers"] >= 1 and (out / BRANCH_FILE).exists()
    shipped_w = SentimentBranch.load(branch_head_path(), head.config_["branch"]).state_arrays()
    tuned_w = SentimentBranch.load(out, head.config_["branch"]).state_arrays()
    assert any(not np.array_equal(shipped_w[k], tuned_w[k]) for k in shipped_w)  # it trained
    scored = tmp_path / "scored.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nlp_seg",
            "-q",
            "score",
            str(src),
            "--sentiment-model",
            str(out),
            "--out",
            str(scored),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    df = pd.read_csv(scored)
    assert len(df) == len(texts)  # every row comes out, labelled or with the reason it is not
    labelled = df["status"] == "ok"
    assert df.loc[labelled, "sentiment_label"].notna().all()
    assert df.loc[~labelled, "sentiment_label"].isna().all()
    assert labelled.mean() > 0.5, df["status"].value_counts().to_dict()
