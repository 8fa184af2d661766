"""How distinct are segments' keywords? Fits the pipeline on real reviews and measures overlap.

For each segment's top-5 keywords: the share that also appear in the top-5 of *every* other
segment (``common_to_all``: keywords that say nothing about the segment, such as ``máy, mua,
dùng`` everywhere) and the share that appear in at least one other segment's top-5
(``shared_with_any``). Lower is better for both.

    python scripts/eval_keywords.py --data uit-visfd --data marc-en --cache-dir /tmp/kw-cache

The "before" figure in docs/benchmarks.md is the same command with ``PYTHONPATH`` pointing at
a checkout of the commit before the change (the script only uses ``Segmenter``), so both fit
the very same segments (same seed, same cached embeddings) and differ only in keywords.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path("/work/shared/data")
SETS = {
    "uit-visfd": (DATA / "reviews/uit-visfd/Train.csv", "comment", 0),
    "marc-en": (DATA / "sentiment/marc-amazon-multi/en.csv", 1, None),
}


def load(name: str) -> list[str]:
    """The texts of a named data set, read in place."""
    path, col, header = SETS[name]
    if not path.exists():
        sys.exit(f"error: {path} not found (the shared data folder is needed)")
    frame = pd.read_csv(path, header=header, dtype=str, keep_default_na=False)
    return frame[col].astype(str).tolist()


def overlap(keywords: dict[int, list[str]], k: int = 5) -> dict[str, float]:
    """``common_to_all`` and ``shared_with_any`` over the segments' top-``k`` keywords."""
    tops = {s: kws[:k] for s, kws in keywords.items() if s >= 0}
    pairs = common = shared = 0
    for s, kws in tops.items():
        others = [set(v) for o, v in tops.items() if o != s]
        for w in kws:
            pairs += 1
            common += bool(others) and all(w in o for o in others)
            shared += any(w in o for o in others)
    return {
        "segments": len(tops),
        "keywords": pairs,
        "common_to_all": round(common / pairs, 4) if pairs else 0.0,
        "shared_with_any": round(shared / pairs, 4) if pairs else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", choices=sorted(SETS), help="data set(s)")
    ap.add_argument("--cache-dir", default="/tmp/kw-cache", help="embedding cache")
    ap.add_argument("--limit", type=int, default=0, help="first N texts only (0: all)")
    ap.add_argument("--min-cluster-size", type=int, help="HDBSCAN's (default: the pipeline's)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    results = {}
    for name in args.data or sorted(SETS):
        texts = load(name)
        if args.limit:
            texts = texts[: args.limit]
        cfg = SegmenterConfig(
            cache_dir=args.cache_dir, device="cpu", min_cluster_size=args.min_cluster_size
        )
        seg = Segmenter(cfg)
        t0 = time.perf_counter()
        seg.fit(texts)
        kws = {int(s["id"]): list(s["keywords"]) for s in seg.segments_}
        res = {
            "texts": len(texts),
            **overlap(kws),
            "naming_s": round(float(seg.timings_.get("naming", np.nan)), 2),
            "segments_note": seg.describe().get("segments_note"),
            "total_s": round(time.perf_counter() - t0, 1),
            "top5": {str(s): v[:5] for s, v in kws.items()},
        }
        results[name] = res
        print(f"== {name}: {len(texts)} texts, {res['segments']} segments")
        for s, v in kws.items():
            print(f"  {s:>3}: {', '.join(v[:5])}")
        print(
            f"  common_to_all={res['common_to_all']:.3f} "
            f"shared_with_any={res['shared_with_any']:.3f} naming={res['naming_s']}s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
