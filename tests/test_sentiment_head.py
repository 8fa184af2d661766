"""The sentiment head: the shipped one works, heads round-trip exactly, it beats chance by far
on real held-out reviews, and ``nlpseg train-sentiment`` writes a head ``nlpseg score`` uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import InputError
from nlp_seg.models.sentiment import HeadSentimentScorer, bundled_head_path, make_sentiment_scorer
from nlp_seg.models.sentiment_head import (
    BUNDLED_INPUT_LAYERS,
    EMOJI_FEATURES,
    SentimentHead,
    balanced_weights,
    bundled_lexicon,
    check_label_counts,
    emoji_features,
    parse_labels,
)

REPO = Path(__file__).resolve().parent.parent


def unit_rows(n: int, d: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def nlpseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


# --------------------------------------------------------------------------- shipped head


def test_shipped_head_loads_and_gives_probabilities() -> None:
    head = SentimentHead.load(bundled_head_path())
    cfg = head.config_
    assert cfg["labels"] == ["negative", "neutral", "positive"]
    assert cfg["embedding_model"] == "bundled:multilingual-e5-small"
    assert cfg["prefix"] == "query: "
    # it reads four layers' pooled hidden states of the 384-wide encoder, the last one first
    assert head.input_layers == BUNDLED_INPUT_LAYERS == (-1, -3, -5, -7)
    assert cfg["features"]["input_layers"] == [-1, -3, -5, -7]
    dim = cfg["features"]["embedding_dim"]
    assert dim == 384 * len(BUNDLED_INPUT_LAYERS)
    texts = ["ok"] * 7 + ["😍😍 :)", "😡 :(", ""]
    x = np.hstack([unit_rows(len(texts), seed=k) for k in range(4)])
    p = head.predict_proba(x, texts)
    assert p.shape == (len(texts), 3)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(p, head.predict_proba(x, texts))  # deterministic
    assert head.predict_proba(np.zeros((0, dim)), []).shape == (0, 3)


def test_shipped_head_is_what_the_pipeline_scorer_uses() -> None:
    scorer = make_sentiment_scorer("bundled:sentiment-head")
    assert isinstance(scorer, HeadSentimentScorer) and scorer.needs_embeddings
    assert scorer.trained_for == "bundled:multilingual-e5-small"
    assert scorer.input_layers == BUNDLED_INPUT_LAYERS
    x = unit_rows(4, d=384 * 4, seed=3)
    p = scorer.predict_proba(["a", "b", "c", "d"], embeddings=x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="1536"):
        scorer.predict_proba(["a"], embeddings=unit_rows(1, d=384))
    # the probability cache key follows the head's exact files
    assert scorer.cache_key == make_sentiment_scorer("bundled:sentiment-head").cache_key


def test_an_ensemble_is_the_average_of_its_members_logits() -> None:
    """``ensemble=k`` is stored as one wider MLP whose logits are the members' mean."""
    rng = np.random.default_rng(0)
    x = unit_rows(300, d=24, seed=1)
    y = (x[:, 0] > 0).astype(int) * 2
    y[rng.permutation(300)[:60]] = 1
    kw = dict(kind="mlp", hidden=8, use_emoji=False, calibrate=False, max_iter=60)
    both = SentimentHead(ensemble=2, seed=5, **kw).fit(x, None, y)
    one = SentimentHead(seed=5, **kw).fit(x, None, y)
    two = SentimentHead(seed=6, **kw).fit(x, None, y)
    assert both.layers_[0][0].shape == (24, 16)
    expected = (one._logits(x.astype(np.float64)) + two._logits(x.astype(np.float64))) / 2
    np.testing.assert_allclose(both._logits(x.astype(np.float64)), expected, atol=1e-5)
    assert not np.allclose(one._logits(x.astype(np.float64)), expected, atol=1e-3)


def test_shipped_files_are_data_not_code() -> None:
    """The head is a safetensors file of plain arrays whose shapes match its JSON config, a JSON
    lexicon and a model card: nothing in the folder can run code when loaded."""
    from safetensors.numpy import load_file

    folder = bundled_head_path()
    names = {p.name for p in folder.iterdir()}
    assert {"head.safetensors", "config.json", "README.md", "emoji_lexicon.json"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib", ".bin", ".pt"))]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "research" in card.lower() and "train-sentiment" in card

    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tensors = load_file(str(folder / "head.safetensors"))  # refuses anything but raw arrays
    n_in = cfg["features"]["embedding_dim"] + len(cfg["features"]["emoji_features"])
    hidden = cfg["hyperparameters"]["hidden"] * cfg["hyperparameters"]["ensemble"]
    assert cfg["n_layers"] == 2 and cfg["kind"] == "mlp"
    assert {k: v.shape for k, v in tensors.items()} == {
        "scaler.mean": (n_in,),
        "scaler.scale": (n_in,),
        "layer0.weight": (n_in, hidden),
        "layer0.bias": (hidden,),
        "layer1.weight": (hidden, 3),
        "layer1.bias": (3,),
    }
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in tensors.values())
    assert (tensors["scaler.scale"] > 0).all()
    lexicon = json.loads((folder / "emoji_lexicon.json").read_text(encoding="utf-8"))
    assert lexicon["columns"] == ["p_negative", "p_neutral", "p_positive"]
    assert len(lexicon["emoji"]) > 500
    assert all(len(v) == 3 and abs(sum(v) - 1) < 0.01 for v in lexicon["emoji"].values())
    # what load() builds is exactly these arrays
    head = SentimentHead.load(folder)
    np.testing.assert_array_equal(head.layers_[0][0], tensors["layer0.weight"])
    np.testing.assert_array_equal(head.mean_, tensors["scaler.mean"])


def _copy_head(tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a callable on the config dict
    import shutil

    folder = tmp_path / "head"
    shutil.copytree(bundled_head_path(), folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "edit",
    [
        # labels swapped: every review would read the wrong way round
        lambda c: c.update(labels=["positive", "neutral", "negative"]),
        lambda c: c.update(format="someone-elses-format"),
        lambda c: c.pop("labels"),
    ],
    ids=["labels-swapped", "format", "no-labels"],
)
def test_tampered_head_config_is_refused(tmp_path: Path, edit) -> None:  # noqa: ANN001
    from nlp_seg.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="not an nlpseg sentiment head"):
        SentimentHead.load(_copy_head(tmp_path, edit))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda c: c.update(n_layers=3), "disagree"),
        (lambda c: c["features"].update(embedding_dim=768), "input width"),
        (lambda c: c.update(classes_seen=[0, 1, 2, 3]), "outputs for 4 classes"),
    ],
)
def test_head_config_that_disagrees_with_its_arrays_is_refused(
    tmp_path: Path, edit, needle: str
) -> None:
    from nlp_seg.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match=needle):
        SentimentHead.load(_copy_head(tmp_path, edit))


# --------------------------------------------------------------------------- fit / save / load


def synthetic(n: int = 600, seed: int = 1) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = unit_rows(n, seed=seed).astype(np.float64)
    x[:, :3] += np.eye(3)[y] * 0.3  # a learnable signal
    texts = [["tệ quá 😡", "bình thường", "tuyệt vời 😍 :)"][c] for c in y]
    return x, texts, y


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_save_load_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    x, texts, y = synthetic()
    head = SentimentHead(kind=kind, C=0.5, hidden=32, lexicon=bundled_lexicon(), seed=0)
    head.fit(x, texts, y, balanced_weights(y))
    p = head.predict_proba(x, texts)
    assert (p.argmax(axis=1) == y).mean() > 0.9
    head.save(tmp_path / "h")
    again = SentimentHead.load(tmp_path / "h")
    assert np.array_equal(again.predict_proba(x, texts), p)
    assert again.config_["kind"] == kind
    # the same seed and data give the same head
    other = SentimentHead(kind=kind, C=0.5, hidden=32, lexicon=bundled_lexicon(), seed=0)
    assert np.array_equal(other.fit(x, texts, y, balanced_weights(y)).predict_proba(x, texts), p)


def test_two_class_data_gives_three_columns_with_no_neutral(tmp_path: Path) -> None:
    x, texts, y = synthetic()
    y = np.where(y == 1, 0, y)
    head = SentimentHead(C=0.5, use_emoji=False).fit(x, texts, y)
    p = head.predict_proba(x)
    assert p.shape == (len(y), 3) and p[:, 1].max() < 1e-6
    assert (p.argmax(axis=1) == y).mean() > 0.9


def test_load_refuses_a_folder_that_is_not_a_head(tmp_path: Path) -> None:
    from nlp_seg.errors import ModelUnavailableError

    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "head.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailableError):
        SentimentHead.load(tmp_path)


def test_emoji_features_read_polarity_and_ignore_urls() -> None:
    lex = bundled_lexicon()
    assert len(lex) > 500
    f = emoji_features(
        ["tuyệt vời 😍❤️", "thất vọng 😡😞", "http://x.y/a:b plain", ":) :D", ":("], lex
    )
    assert f.shape == (5, len(EMOJI_FEATURES))
    assert f[0, 1] > 0.3 and f[1, 1] < -0.1  # mean emoji score: love positive, anger negative
    assert np.all(f[2] == 0)  # nothing in a URL or plain text counts
    assert f[3, 4] > 0 and f[3, 5] == 0 and f[4, 5] > 0


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("values", "expected", "scheme"),
    [
        (["negative", "Neutral", "POSITIVE", "neg"], [0, 1, 2, 0], "names"),
        ([0, 1, 2, "2"], [0, 1, 2, 2], "0/1/2"),
        ([1, 2, 3, 4, 5, 5.0], [0, 0, 1, 2, 2, 2], "1-5 stars"),
    ],
)
def test_parse_labels_schemes(values: list, expected: list[int], scheme: str) -> None:
    labels, got = parse_labels(values)
    assert labels.tolist() == expected and got == scheme


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        (["positive", "great"], "unknown sentiment labels 'great'"),
        ([0, 1, 7], "neither 0/1/2 nor 1-5 stars"),
        (["positive", None], "have no label"),
        ([1.5, 2], "unknown sentiment labels"),
    ],
)
def test_parse_labels_refuses_bad_labels(values: list, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_labels(values)


def test_too_few_rows_are_refused() -> None:
    with pytest.raises(InputError, match="too few labelled rows"):
        check_label_counts(np.array([0, 2] * 5))
    with pytest.raises(InputError, match="need two classes"):
        check_label_counts(np.zeros(40, dtype=int))
    with pytest.raises(InputError, match="neutral"):
        check_label_counts(np.array([0] * 20 + [2] * 20 + [1] * 2))


# --------------------------------------------------------------------------- real data


def _real_features(texts: list[str], layers: tuple[int, ...]) -> np.ndarray:
    """What the pipeline feeds the head: the bundled encoder's pooled hidden states."""
    from nlp_seg.models.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(device="cpu", max_seq_length=256)
    return np.asarray(emb.embed_with_layers(texts, layers)[1])


def test_real_heldout_reviews_far_above_chance(shared_data: Path) -> None:
    """300 held-out texts (AIVIVN dev hold-out + UIT-VSFC dev + UMSAB val), never trained on."""
    sys.path.insert(0, str(REPO / "scripts"))
    from sentiment_data import load_all, prepared_texts, seeded_order
    from sklearn.metrics import f1_score

    from nlp_seg.models.sentiment import bundled_head_path as head_path

    picks = {
        ("aivivn", "vi"): 100,
        ("uit-vsfc", "vi"): 100,
        ("umsab", "english"): 50,
        ("umsab", "portuguese"): 50,
    }
    texts: list[str] = []
    labels: list[int] = []
    sources: list[str] = []
    for part in load_all(shared_data):
        n = picks.get((part.dataset, part.lang))
        if part.split != "dev" or not n:
            continue
        norm, keep = prepared_texts(part)
        idx = [i for i in seeded_order(part, seed=7) if keep[i]][:n]
        texts += [norm[i] for i in idx]
        labels += part.labels[idx].tolist()
        sources += [part.dataset] * len(idx)
    head = SentimentHead.load(head_path())
    p = head.predict_proba(_real_features(texts, head.input_layers), texts)
    y = np.array(labels)
    src = np.array(sources)
    three = src != "aivivn"
    f1_three = f1_score(y[three], p[three].argmax(axis=1), average="macro")
    binary = np.where(p[~three, 0] > p[~three, 2], 0, 2)
    f1_binary = f1_score(y[~three], binary, average="macro")
    # measured with the shipped head (v3: 54k texts, four layers, three MLPs): 0.781 (3-class)
    # and 0.870 (binary); the 39k-text v2 had 0.675 / 0.838; chance ~0.33 / ~0.5
    assert f1_three > 0.70, f1_three
    assert f1_binary > 0.80, f1_binary


def _labelled_sample(shared_data: Path, n: int = 160) -> pd.DataFrame:
    df = pd.read_csv(shared_data / "sentiment" / "aivivn-2019" / "train.csv").dropna()
    df = df.sample(n=n, random_state=3)
    return pd.DataFrame(
        {"review": df["text"], "label": np.where(df["label"] == 1, "negative", "positive")}
    )


def test_cli_train_sentiment_writes_a_head_score_uses(
    shared_data: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    data = _labelled_sample(shared_data)
    src = tmp_path / "labelled.csv"
    data.to_csv(src, index=False)
    head_dir = tmp_path / "my_head"
    tiny = str(tiny_models["embedding"])
    proc = nlpseg("train-sentiment", str(src), "--out", str(head_dir), "--embedding-model", tiny)
    assert proc.returncode == 0, proc.stderr
    assert "trained on 160 rows" in proc.stdout and "labels read as names" in proc.stdout
    cfg = json.loads((head_dir / "config.json").read_text())
    assert Path(cfg["embedding_model"]) == Path(tiny).resolve()  # the encoder it was trained on
    assert cfg["training"]["class_counts"] == data["label"].value_counts().to_dict()
    SentimentHead.load(head_dir)

    new = tmp_path / "new.csv"
    pd.DataFrame({"review": data["review"].head(25).tolist() + [""]}).to_csv(new, index=False)
    out = tmp_path / "scores.csv"
    proc = nlpseg(
        "score",
        str(new),
        "--out",
        str(out),
        "--embedding-model",
        tiny,
        "--sentiment-model",
        str(head_dir),
        "--no-cache",
    )
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert len(scored) == 26
    assert set(scored["sentiment_label"][:25]) <= {"negative", "positive"}  # no neutral seen
    assert scored["status"].tolist() == ["ok"] * 25 + ["empty_text"]
    run = json.loads((tmp_path / "scores.run.json").read_text())
    assert str(head_dir) in json.dumps(run)


def test_cli_train_sentiment_bad_labels_one_line_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    pd.DataFrame(
        {"text": ["good", "bad", "meh"] * 20, "label": ["pos", "neg", "so-so"] * 20}
    ).to_csv(src, index=False)
    proc = nlpseg("train-sentiment", str(src), "--out", str(tmp_path / "h"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1] == (
        "error: unknown sentiment labels 'so-so'; use negative/neutral/positive, 0/1/2 or 1-5 stars"
    )
    assert not (tmp_path / "h").exists()

    few = tmp_path / "few.csv"
    pd.DataFrame({"text": ["good", "bad"] * 5, "label": [5, 1] * 5}).to_csv(few, index=False)
    proc = nlpseg("train-sentiment", str(few), "--out", str(tmp_path / "h"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: too few labelled rows")

    nolabel = tmp_path / "nolabel.csv"
    pd.DataFrame({"text": ["good", "bad"] * 20, "x": [1, 2] * 20}).to_csv(nolabel, index=False)
    proc = nlpseg("train-sentiment", str(nolabel), "--out", str(tmp_path / "h"))
    assert proc.returncode == 2 and "no label column found" in proc.stderr


# --------------------------------------------------------------------------- head vs encoder


def test_head_on_another_encoder_is_refused_before_embedding(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A head's probabilities mean nothing on another encoder's vectors, even of the same size."""
    from nlp_seg.errors import NlpsegError
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    tiny = str(tiny_models["embedding"])
    dim = (
        Segmenter(SegmenterConfig(embedding_model=tiny))
        .encoder.get_embedder()
        .embed(["x"])
        .shape[1]
    )
    y = np.arange(90) % 3
    x = unit_rows(90, d=dim, seed=2)
    head_dir = tmp_path / "head"
    SentimentHead(C=0.5, use_emoji=False).fit(x, ["t"] * 90, y).save(
        head_dir, extra_config={"embedding_model": "intfloat/some-other-encoder"}
    )
    seg = Segmenter(SegmenterConfig(embedding_model=tiny, sentiment_model=str(head_dir)))
    with pytest.raises(NlpsegError) as err:
        seg.encode(["good phone", "bad battery"])
    msg = str(err.value)
    assert "\n" not in msg and "intfloat/some-other-encoder" in msg and tiny in msg
    assert "--embedding-model" in msg and "nlpseg train-sentiment" in msg
    assert seg.embedder.encoded_ == 0  # refused before any text was embedded

    # the same head recorded as trained on this very encoder (spelt as a relative path: the
    # same folder counts as the same model) is applied
    cfg = json.loads((head_dir / "config.json").read_text())
    cfg["embedding_model"] = os.path.relpath(tiny)
    (head_dir / "config.json").write_text(json.dumps(cfg))
    _, probs = Segmenter(
        SegmenterConfig(embedding_model=tiny, sentiment_model=str(head_dir))
    ).encode(["good phone", "bad battery"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)


def test_cli_shipped_head_with_another_encoder_one_line_error(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"review": ["good phone", "bad battery"]}).to_csv(src, index=False)
    tiny = str(tiny_models["embedding"])
    proc = nlpseg("score", str(src), "--out", str(tmp_path / "o.csv"), "--embedding-model", tiny)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: sentiment head 'bundled:sentiment-head'")
    assert "bundled:multilingual-e5-small" in lines[0] and tiny in lines[0]
    assert not (tmp_path / "o.csv").exists()


# --------------------------------------------------------------------------- one pass, layers


def test_a_head_on_hidden_states_runs_in_one_pass_and_its_probabilities_are_cached(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``embed_with_layers`` gives the embedding and the pooled hidden states from one pass; the
    pipeline feeds a layer-reading head those features, caches its probabilities, and a re-run
    gets embeddings and probabilities back without loading the encoder."""
    from conftest import VOCAB_WORDS

    import nlp_seg.stages.encoder as encoder_module
    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    tiny = str(tiny_models["embedding"])
    rng = np.random.default_rng(4)
    texts = [" ".join(rng.choice(VOCAB_WORDS, size=rng.integers(2, 9))) for _ in range(60)]
    layers = (-1, 1)
    embedder = SentenceTransformerEmbedder(tiny, device="cpu")
    plain = embedder.embed(texts)
    vecs, feats = embedder.embed_with_layers(texts, layers)
    d = plain.shape[1]
    assert feats.shape == (len(texts), 2 * d)
    np.testing.assert_allclose(vecs, plain, atol=1e-5)
    np.testing.assert_allclose(feats[:, :d], plain, atol=1e-5)  # last layer pooled = embedding
    np.testing.assert_allclose(np.linalg.norm(feats[:, d:], axis=1), 1.0, atol=1e-5)
    assert np.abs(feats[:, d:] - plain).max() > 1e-3  # layer 1 is another view

    y = (feats[:, d] > np.median(feats[:, d])).astype(int) * 2
    head = SentimentHead(kind="logreg", use_emoji=False, input_layers=layers).fit(feats, None, y)
    head.save(tmp_path / "head", extra_config={"embedding_model": str(Path(tiny).resolve())})
    cfg = SegmenterConfig(
        embedding_model=tiny,
        sentiment_model=str(tmp_path / "head"),
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
        # the random word salad is compared with the embedder reading it as is; some of it
        # ("love mong") reads as stripped Vietnamese and would be restored first
        restore_diacritics=False,
    )
    first = Segmenter(cfg)
    e1, p1 = first.encode(texts)
    n_distinct = len(set(texts))
    np.testing.assert_allclose(p1, head.predict_proba(feats), atol=1e-5)
    assert first.encoder.sentiment_cache_ == {"hits": 0, "computed": n_distinct}
    assert first.encoder.get_embedder().encoded_ == n_distinct  # one pass: each text encoded once

    again = Segmenter(cfg)
    e2, p2 = again.encode(texts)
    assert np.array_equal(e1, e2) and np.array_equal(p1, p2)
    assert again.encoder.sentiment_cache_ == {"hits": n_distinct, "computed": 0}
    assert again.encoder.get_embedder()._st is None  # the encoder was not even loaded

    # large inputs are encoded in slices (bounded memory for the layer features): same result
    monkeypatch.setattr(encoder_module, "LAYER_SLICE", 7)
    sliced = Segmenter(SegmenterConfig(**{**cfg.__dict__, "cache_dir": None}))
    e3, p3 = sliced.encode(texts)
    np.testing.assert_allclose(e3, e1, atol=1e-5)
    np.testing.assert_allclose(p3, p1, atol=1e-5)
    assert sliced.encoder.sentiment_cache_ == {"hits": 0, "computed": n_distinct}
