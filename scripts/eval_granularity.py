"""Benchmark segment granularity: how many segments the default settings give on real corpora.

    python scripts/eval_granularity.py --cache-dir ~/.cache/nlpseg-eval [--n 2000] [--json F]
        [--corpora aivivn,vispamreviews]

Issue 13 asks for 6-20 segments on 2k-10k reviews unless the data truly has fewer. For each
corpus a seeded sample of ``--n`` texts (dev and train parts: segmentation learns nothing
from labels, and some dev parts hold fewer than 2k texts) is segmented with the
defaults (seed 42) and the script prints the segment count, the share of rows HDBSCAN saw as
noise, the largest segment's share, HDBSCAN's settings and run.json's ``segments_note``.
Figures: docs/benchmarks.md, "Granularity".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentiment_data import default_root, load_aivivn, load_marc  # noqa: E402


def corpora(n: int) -> dict[str, list[str]]:
    root = default_root()
    rng = np.random.default_rng(0)

    def sample(texts: list[str]) -> list[str]:
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        idx = rng.permutation(len(texts))[:n]
        return [texts[i] for i in sorted(idx)]

    def frame_texts(folder: str, column: str) -> list[str]:
        return [
            t
            for f in sorted((root / "reviews" / folder).glob("*.csv"))
            for t in pd.read_csv(f)[column].tolist()
        ]

    return {
        "uit-visfd": sample(frame_texts("uit-visfd", "comment")),
        "vispamreviews": sample(frame_texts("vispamreviews", "Comment")),
        "aivivn": sample([t for p in load_aivivn(root) for t in p.texts]),
        "marc-en": sample([t for p in load_marc(root) if p.lang == "en" for t in p.texts]),
    }


def main() -> None:
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--corpora", default=None, help="comma-separated subset of the corpora")
    args = ap.parse_args()
    rows = []
    wanted = set(args.corpora.split(",")) if args.corpora else None
    for name, texts in corpora(args.n).items():
        if wanted is not None and name not in wanted:
            continue
        t0 = time.perf_counter()
        seg = Segmenter(SegmenterConfig(cache_dir=args.cache_dir, seed=42))
        seg.fit(texts)
        clusterer = seg.clusterer_
        sizes = pd.Series(seg.labels_).value_counts()
        note = seg.describe().get("segments_note")
        row = {
            "corpus": name,
            "texts": len(texts),
            "segments": len(seg.segments_),
            "noise_share": round(float(np.mean(clusterer.raw_labels_ < 0)), 3),
            "largest_share": round(float(sizes.max() / len(texts)), 3),
            "min_cluster_size": clusterer.min_cluster_size_,
            "min_samples": getattr(clusterer, "min_samples_", clusterer.min_samples),
            "max_cluster_size": getattr(clusterer, "max_cluster_size_", 0),
            "merges": len(getattr(seg.merger_, "merges_", [])),
            "names": [s["name"] for s in seg.segments_],
            "note": (note or {}).get("why"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
