"""Speed levers on one machine: length-sorted batches, the embedding cache, the numba warm-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


class _FakeST:
    """Records what each ``encode`` call receives; returns one-hot-ish vectors."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
        self.calls.append(list(texts))
        return np.ones((len(texts), 4), dtype=np.float32) / 2

    def get_sentence_embedding_dimension(self) -> int:
        return 4


def test_embedder_encodes_distinct_texts_in_length_order() -> None:
    from nlp_seg.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder("unused", batch_size=2)
    fake = _FakeST()
    emb._st = fake
    rng = np.random.default_rng(0)
    texts = ["x" * int(n) for n in rng.integers(1, 400, size=700)]
    out = emb.embed(texts + texts[:50])  # repeats are encoded once
    assert out.shape == (750, 4)
    seen = [t for call in fake.calls for t in call]
    assert len(seen) == len(set(texts))
    lengths = [len(t) for t in seen]
    assert lengths == sorted(lengths)  # padding stays low in every batch


def _reviews(tmp: Path) -> Path:
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "scripts"))
    from make_example import make_reviews

    path = tmp / "reviews.csv"
    make_reviews(n_customers=200, seed=9).to_csv(path, index=False)
    return path


def test_rerun_with_other_clustering_reads_embeddings_from_the_cache(
    tmp_path: Path, tiny_models
) -> None:
    from nlp_seg.pipeline import Segmenter, SegmenterConfig

    texts = pd.read_csv(_reviews(tmp_path))["review"].tolist()
    base = {
        "embedding_model": str(tiny_models["embedding"]),
        "sentiment_model": str(tiny_models["sentiment"]),
        "cache_dir": str(tmp_path / "cache"),
    }
    first = Segmenter(SegmenterConfig(**base)).fit(texts)
    second = Segmenter(SegmenterConfig(**base, min_cluster_size=40)).fit(texts)
    assert second.embedder._st is None  # the encoder was never even loaded
    np.testing.assert_array_equal(first.embeddings_, second.embeddings_)
    assert second.timings_["embedding"] < max(0.5, first.timings_["embedding"])


def test_cli_rerun_skips_encoding(tmp_path: Path, tiny_models) -> None:
    path = _reviews(tmp_path)
    common = [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    seconds = []
    for i, extra in enumerate(([], ["--min-cluster-size", "30"])):
        out = tmp_path / f"o{i}"
        proc = subprocess.run(
            [sys.executable, "-m", "nlp_seg", "-q", "analyze", str(path), "--out", str(out)]
            + common
            + extra,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds.append(json.loads((out / "run.json").read_text())["seconds"])
    assert seconds[1]["pipeline.embedding"] < 1.0
    assert seconds[1]["pipeline.embedding"] <= seconds[0]["pipeline.embedding"]


def test_warmup_compiles_the_numba_cache() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "warmup"],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "numba cache:" in proc.stdout
    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(os.environ["NLPSEG_HOME"]) / "numba")
    assert any(folder.rglob("*.nbi"))
