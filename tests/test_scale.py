"""Speed levers on one machine: length-sorted batches, the embedding cache, the numba warm-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def test_embedder_encodes_distinct_texts_in_length_order(tiny_models) -> None:
    """Repeats are encoded once, and the model sees texts shortest first (low padding)."""
    from nlp_seg.models.embedding import SentenceTransformerEmbedder, embedding_dimension

    emb = SentenceTransformerEmbedder(str(tiny_models["embedding"]), batch_size=2)
    st = emb.load()
    seen: list[str] = []
    real_encode = st.encode

    def recording_encode(texts: list[str], **kwargs: object) -> np.ndarray:
        seen.extend(texts)
        return real_encode(texts, **kwargs)

    st.encode = recording_encode  # a spy: the real model still encodes every text
    words = ["good", "bad", "phone", "battery", "very", "slow", "delivery", "tốt", "quá"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 40, size=300)]
    out = emb.embed(texts + texts[:50])
    assert out.shape == (350, embedding_dimension(st))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[300:], out[:50])
    assert sorted(seen) == sorted(set(texts))  # each distinct text once
    lengths = [len(t) for t in seen]
    assert lengths == sorted(lengths)


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
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    texts = pd.read_csv(_reviews(tmp_path))["review"].tolist()
    base = {
        "embedding_model": str(tiny_models["embedding"]),
        "sentiment_model": str(tiny_models["sentiment"]),
        "cache_dir": str(tmp_path / "cache"),
    }
    first = Segmenter(SegmenterConfig(**base)).fit(texts)
    distinct = first.embedder.describe()["cache"]["encoded"]
    assert distinct > 0 and first.embedder.describe()["cache"]["hits"] == 0
    second = Segmenter(SegmenterConfig(**base, min_cluster_size=40)).fit(texts)
    info = second.describe()
    assert info["embedding"]["loaded"] is False  # the encoder was never even loaded
    assert info["embedding"]["cache"] == {"dir": base["cache_dir"], "hits": distinct, "encoded": 0}
    # The separate sentiment transformer (two-model path) is served from the cache too.
    assert info["sentiment"]["cache"] == {"hits": distinct, "computed": 0}
    np.testing.assert_array_equal(first.embeddings_, second.embeddings_)
    np.testing.assert_array_equal(first.sentiment_proba_, second.sentiment_proba_)
    assert second.clusterer_.describe()["min_cluster_size"] == 40


def test_cli_rerun_skips_encoding(tmp_path: Path, tiny_models) -> None:
    """``nlpseg analyze`` twice with other clustering settings: run.json's counters show the
    second run encoded nothing and never loaded the encoder; its sentiment is unchanged."""
    path = _reviews(tmp_path)
    common = [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    runs = []
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
        runs.append(json.loads((out / "run.json").read_text()))
    first, second = (r["models"]["embedding"] for r in runs)
    assert first["loaded"] is True and first["cache"]["encoded"] > 0
    assert second["loaded"] is False
    assert second["cache"]["encoded"] == 0
    assert second["cache"]["hits"] == first["cache"]["encoded"]
    assert runs[1]["pipeline"]["sentiment"]["cache"]["computed"] == 0
    assert runs[1]["parameters"]["min_cluster_size"] == 30
    a, b = (pd.read_parquet(tmp_path / f"o{i}" / "assignments.parquet") for i in range(2))
    cols = ["sentiment_label", "sentiment_score", "sentiment_confidence", "status"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def _numba_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.nb[ic]")}


def test_warmup_compiles_once_then_loads(tmp_path: Path) -> None:
    """The first process fills NLPSEG_HOME/numba; a second loads it and compiles nothing
    (numba rewrites a cache index only when it compiles, so no file may change)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["NLPSEG_HOME"] = str(tmp_path / "home")
    folder = tmp_path / "home" / "numba"
    snapshots = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "nlp_seg", "warmup"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"numba cache: {folder}" in proc.stdout
        snapshots.append(_numba_files(folder))
    assert any("umap" in name for name in snapshots[0])  # umap's own functions, not only
    assert any("pynndescent" in name for name in snapshots[0])  # pynndescent's
    assert snapshots[1] == snapshots[0]
