"""Where UMAP's time goes on 10k fused vectors, and what a change costs in segment agreement.

Loads stored real embeddings + sentiment probabilities (the ``emb.npy`` / ``probs.npy`` chunks
that ``nlpseg batch`` writes, e.g. from scripts/bench.py's 10k run), fuses them the way the
pipeline does, then times UMAP variants in one process (so the ratios are comparable on a
shared machine) and clusters each with nlpseg's HDBSCAN defaults to report ARI against the
current settings. Usage::

    nice python scripts/bench_umap.py /tmp/h3bench10k/batch_10000/_work/chunks [variant ...]
    nice python scripts/bench_umap.py CHUNKS --pipeline   # Segmenter.fit_encoded, 3 fits in order

``--pipeline`` times whole in-process fits (warm-up, a 300-row fit, then fused, text-only and
fused again), which shows what a fresh process pays for compiling the neighbour search.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    embs, probs = [], []
    for chunk in sorted(p for p in folder.iterdir() if (p / "emb.npy").exists()):
        embs.append(np.load(chunk / "emb.npy").astype(np.float32))
        probs.append(np.load(chunk / "probs.npy").astype(np.float32))
    return np.vstack(embs), np.vstack(probs)


def pipeline(folder: Path) -> None:
    import pandas as pd

    from nlp_seg.normalize import STATUS_OK
    from nlp_seg.progress import StageTimer
    from nlp_seg.runs.warmup import warm_up
    from nlp_seg.segmenter import Segmenter, SegmenterConfig
    from nlp_seg.stages.fusion import parse_weights

    warm_up()
    emb, probs = load(folder)
    chunks = sorted(p for p in folder.iterdir() if (p / "clean.parquet").exists())
    texts = [str(t) for c in chunks for t in pd.read_parquet(c / "clean.parquet").iloc[:, 0]]
    status = np.full(len(texts), STATUS_OK, dtype=object)
    Segmenter(SegmenterConfig()).fit_encoded(texts[:300], status[:300], emb[:300], probs[:300])
    labels = []
    for name, cfg in (
        ("fused, 1st 10k fit in process", SegmenterConfig()),
        ("text only", SegmenterConfig(weights=parse_weights("sentiment=0"))),
        ("fused again", SegmenterConfig()),
    ):
        timer = StageTimer()
        t0 = time.perf_counter()
        seg = Segmenter(cfg).fit_encoded(texts, status, emb, probs, timer=timer)
        print(f"{name}: {time.perf_counter() - t0:.1f} s {timer.seconds}", flush=True)
        labels.append(seg.labels_)
    print("two fused fits identical:", bool(np.array_equal(labels[0], labels[2])))


def main() -> None:
    if "--pipeline" in sys.argv:
        pipeline(Path(sys.argv[1]))
        return
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    from nlp_seg.stages.clustering import HdbscanClusterer
    from nlp_seg.stages.fusion import BlockFuser
    from nlp_seg.stages.reduction import configure_numba_cache

    configure_numba_cache()
    import umap
    from umap.umap_ import nearest_neighbors

    emb, probs = load(Path(sys.argv[1]))
    score = (probs[:, 2] - probs[:, 0])[:, None]
    fused = BlockFuser().fit_transform({"text": emb, "sentiment": np.hstack([probs, score])})
    text = BlockFuser().fit_transform({"text": emb, "sentiment": None})
    print(f"rows {len(fused):,}, fused dims {fused.shape[1]}", flush=True)

    def pca(x: np.ndarray, k: int = 50, seed: int = 42) -> np.ndarray:
        return PCA(k, random_state=seed).fit_transform(x).astype(np.float32)

    def fit(x: np.ndarray, seed: int = 42, **kw: object) -> np.ndarray:
        args = dict(
            n_components=5,
            n_neighbors=15,
            min_dist=0.0,
            metric="euclidean",
            random_state=seed,
            init="pca",
            low_memory=True,
            transform_seed=seed,
            n_epochs=200,
        )
        args.update(kw)
        return umap.UMAP(**args).fit_transform(x)

    variants = {
        "current (euclid, low_memory, 200 ep)": lambda: fit(fused),
        "current, seed 43 (noise baseline)": lambda: fit(fused, seed=43),
        "low_memory=False": lambda: fit(fused, low_memory=False),
        "PCA 50 (seeded) -> current": lambda: fit(pca(fused)),
        "PCA 50 -> low_memory=False": lambda: fit(pca(fused), low_memory=False),
        "cosine on fused": lambda: fit(fused, metric="cosine"),
        "BERTopic defaults (cosine, low_memory=False, 500 ep)": lambda: fit(
            fused, metric="cosine", low_memory=False, n_epochs=None
        ),
        "text block only, current": lambda: fit(text),
    }
    only = sys.argv[2:]
    # Warm the JIT (both metrics, both memory modes) so no variant pays a compile.
    small = fused[:5000]
    fit(small[:600])
    fit(small[:600], metric="cosine", low_memory=False)
    for name, x in (("nn fused", fused), ("nn PCA50", pca(fused))):
        for lm in (True, False):
            nearest_neighbors(small, 15, "euclidean", {}, False, 42, low_memory=lm)
            t = time.perf_counter()
            nearest_neighbors(x, 15, "euclidean", {}, False, 42, low_memory=lm)
            print(f"{name} low_memory={lm}: {time.perf_counter() - t:.1f} s", flush=True)
    rows = []
    base = None
    for name, run in variants.items():
        if only and not any(o in name for o in only):
            continue
        t = time.perf_counter()
        red = run()
        secs = time.perf_counter() - t
        labels = HdbscanClusterer().fit(np.asarray(red, dtype=np.float32)).labels_
        if base is None:
            base = labels
        ari = adjusted_rand_score(base, labels)
        rows.append(
            {
                "variant": name,
                "umap_s": round(secs, 1),
                "segments": int(labels.max() + 1),
                "ari_vs_current": round(float(ari), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
