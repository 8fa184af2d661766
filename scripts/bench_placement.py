"""How well rows outside the fit sample are placed without UMAP's transform (no pickle).

Saved segmenters and the batch engine no longer keep the fitted UMAP and HDBSCAN objects
(they only had pickle as a format); rows outside the fit sample are placed by the vote of their
nearest fitted rows in the fused space (:class:`nlp_seg.stages.placement.FitNeighbours`). This
script measures, on real reviews from ``../shared/data`` encoded with the bundled models:

* held-back rows: the share placed in the same segment as the previous path (UMAP
  ``transform`` + HDBSCAN ``approximate_predict``, outliers to the nearest centre), target
  >= 95%;
* training rows re-assigned as new rows: the share that get their fitted segment back, target
  >= 99%;
* the seconds each path takes per 1,000 rows.

Usage::

    python scripts/bench_placement.py [--rows 6000] [--fit 4000] [--seeds 42,7]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "reviews"


def real_texts(n: int) -> list[str]:
    frames = [
        pd.read_csv(DATA / "uit-visfd" / "Train.csv")["comment"],
        pd.read_csv(DATA / "vispamreviews" / "train.csv")["Comment"],
    ]
    texts = pd.concat(frames).dropna().astype(str).drop_duplicates()
    return texts.sample(frac=1.0, random_state=0).head(n).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--fit", type=int, default=4000)
    ap.add_argument("--seeds", default="42,7")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from nlp_seg.normalize import STATUS_OK
    from nlp_seg.paths import nlpseg_home
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    texts = real_texts(args.rows)
    cache = str(nlpseg_home() / "cache")
    enc = Segmenter(SegmenterConfig(cache_dir=cache))
    clean, status, emb, probs = enc.encode_rows(texts)
    ok = status == STATUS_OK
    clean = [c for c, k in zip(clean, ok, strict=True) if k]
    emb, probs = emb[ok], probs[ok]
    fit_idx, rest_idx = np.arange(args.fit), np.arange(args.fit, len(clean))
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        seg = Segmenter(SegmenterConfig(seed=seed, fit_sample_size=args.fit))
        seg.fit_encoded(
            [clean[i] for i in fit_idx],
            np.full(len(fit_idx), STATUS_OK, dtype=object),
            emb[fit_idx],
            probs[fit_idx],
        )
        fused = seg.fuser_.transform(seg._fuse_blocks(emb[rest_idx], probs[rest_idx], None))
        t0 = time.perf_counter()
        old, _, _ = seg.clusterer_.predict(seg.reducer_.transform(fused))
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new, _, _ = seg.place_encoded(emb[rest_idx], probs[rest_idx])
        t_new = time.perf_counter() - t0
        again, _, _ = seg.place_encoded(emb[fit_idx], probs[fit_idx], new_rows=True)
        row = {
            "seed": seed,
            "fit_rows": len(fit_idx),
            "held_back_rows": len(rest_idx),
            "segments": int(len(set(seg.labels_.tolist()) - {-1})),
            "held_back_same_segment": round(float(np.mean(old == new)), 4),
            "training_rows_reassigned": round(float(np.mean(again == seg.labels_)), 4),
            "s_per_1k_umap_transform": round(t_old / len(rest_idx) * 1000, 3),
            "s_per_1k_neighbours": round(t_new / len(rest_idx) * 1000, 3),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
