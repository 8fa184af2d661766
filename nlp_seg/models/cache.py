"""On-disk cache of per-text vectors, keyed by model fingerprint and text hash.

Re-running a segmentation with other clustering parameters must not re-encode millions of
texts. SQLite (standard library, safe under concurrent readers, one file per model) holds one
row per distinct text: ``sha1(text) -> float32 bytes``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class VectorCache:
    """A persistent ``text -> vector`` map for one model configuration (``namespace``)."""

    def __init__(self, folder: str | Path, namespace: str) -> None:
        self.folder = Path(folder)
        self.namespace = namespace
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = hashlib.sha1(namespace.encode()).hexdigest()[:16]
        self.path = self.folder / f"{safe}.sqlite"
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS vec (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('namespace', ?)", (namespace,))
        self._conn.commit()

    def get_many(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Vectors already cached, by position in ``texts``."""
        found: dict[int, np.ndarray] = {}
        keys = [text_key(t) for t in texts]
        pos_by_key: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            pos_by_key.setdefault(k, []).append(i)
        uniq = list(pos_by_key)
        for start in range(0, len(uniq), 900):
            chunk = uniq[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for k, blob in self._conn.execute(f"SELECT k, v FROM vec WHERE k IN ({marks})", chunk):
                vec = np.frombuffer(blob, dtype=np.float32)
                for i in pos_by_key[k]:
                    found[i] = vec
        return found

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (text_key(t), np.asarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        self._conn.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)", rows)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def cached_rows(
    folder: str | Path | None,
    namespace: str,
    texts: Sequence[str],
    compute: Callable[[list[str]], np.ndarray],
) -> tuple[np.ndarray, int, int]:
    """``compute(texts)`` row by row through the cache: ``(rows, served_from_cache, computed)``.

    ``texts`` should be distinct. With ``folder=None`` it only computes. Used for sentiment
    probabilities from a separate transformer (the two-model path), which cost as much as the
    embeddings to recompute; the bundled head reads the (cached) embedding instead.
    """
    texts = list(texts)
    if folder is None or not texts:
        # Rounded to float32 as the cache stores them, so results with and without the cache
        # are identical (UMAP can amplify even a 1e-8 difference into other segments).
        rows = np.asarray(compute(texts), dtype=np.float32).astype(np.float64)
        return rows, 0, len(texts)
    cache = VectorCache(Path(folder), namespace)
    try:
        hits = cache.get_many(texts)
        todo = [i for i in range(len(texts)) if i not in hits]
        fresh = None
        if todo:  # rounded as stored, so a first run and a cached re-run agree exactly
            fresh = np.asarray(compute([texts[i] for i in todo]), dtype=np.float32)
        width = fresh.shape[1] if fresh is not None else len(next(iter(hits.values())))
        out = np.zeros((len(texts), width), dtype=np.float64)
        for i, v in hits.items():
            out[i] = v
        if fresh is not None:
            out[todo] = fresh
            cache.put_many([texts[i] for i in todo], fresh)
        return out, len(hits), len(todo)
    finally:
        cache.close()
