"""How well `nlpseg assign` reproduces the segments `nlpseg analyze` gave the same rows.

Fits on INPUT (optionally with a fit sample smaller than the file, so some training rows were
placed by UMAP's transform and not clustered directly), saves the segmenter, re-assigns INPUT
with the saved folder and prints the share of rows that got their segment back, the outlier
counts and the seconds each step took.

    python scripts/check_assign.py ../shared/data/some.csv --fit-sample-size 500 \
        [--sentiment-model DIR] [--embedding-model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--fit-sample-size", type=int, default=50_000)
    ap.add_argument("--embedding-model")
    ap.add_argument("--sentiment-model")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    from nlp_seg import load_segmenter
    from nlp_seg.paths import nlpseg_home
    from nlp_seg.runs.jobs import analyze_file, assign_file
    from nlp_seg.segmenter import SegmenterConfig

    cache = str(nlpseg_home() / "cache")  # as the CLI: re-runs skip encoding

    work = Path(tempfile.mkdtemp(prefix="nlpseg_check_assign_"))
    cfg = SegmenterConfig(
        embedding_model=args.embedding_model,
        sentiment_model=args.sentiment_model,
        fit_sample_size=args.fit_sample_size,
        seed=args.seed,
        cache_dir=cache,
    )
    t0 = time.perf_counter()
    analyze_file(args.input, work / "fit", cfg, save_model=work / "model", report=False)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_segmenter(work / "model")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    assign_file(args.input, work / "model", work / "assign", cache_dir=cache)
    t_assign = time.perf_counter() - t0
    a = pd.read_parquet(work / "fit" / "assignments.parquet")
    b = pd.read_parquet(work / "assign" / "assignments.parquet")
    same = (a["segment_id"] == b["segment_id"]).to_numpy()
    print(f"rows {len(a)}, segments {a['segment_id'].nunique()}, fit sample {args.fit_sample_size}")
    print(f"same segment after assign: {same.mean():.1%}")
    print(f"is_outlier: analyze {int(a['is_outlier'].sum())}, assign {int(b['is_outlier'].sum())}")
    print(f"seconds: analyze {t_fit:.1f}, load_segmenter {t_load:.1f}, assign {t_assign:.1f}")


if __name__ == "__main__":
    main()
