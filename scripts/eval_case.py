"""Macro-F1 on the labelled dev splits with the texts as written and lower-cased.

Decides whether nlpseg may lower-case what the models read (so "Great phone", "great phone"
and "GREAT PHONE" get one label by construction) without losing accuracy::

    python scripts/eval_case.py [--per-part 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sentiment_data import load_all, seeded_order  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-part", type=int, default=200)
    args = ap.parse_args()
    from sklearn.metrics import f1_score

    from nlp_seg.paths import nlpseg_home
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    seg = Segmenter(SegmenterConfig(cache_dir=str(nlpseg_home() / "cache")))
    out = []
    for part in load_all():
        if part.split != "dev":
            continue
        idx = seeded_order(part)[: args.per_part]
        texts = [part.texts[i] for i in idx]
        y = part.labels[idx]
        row = {"part": part.key, "n": len(idx)}
        for name, variant in (("as written", texts), ("lower-cased", [t.lower() for t in texts])):
            lab = seg.score(variant)["sentiment_label"].to_numpy()
            pred = np.array([{"negative": 0, "neutral": 1, "positive": 2}.get(x, 1) for x in lab])
            labels = [0, 2] if part.dataset == "aivivn" else [0, 1, 2]
            if part.dataset == "aivivn":
                pred = np.where(pred == 1, 2, pred)
            row[name] = round(float(f1_score(y, pred, labels=labels, average="macro")), 4)
        print(json.dumps(row), flush=True)
        out.append(row)
    for name in ("as written", "lower-cased"):
        print(name, "mean macro-F1", round(float(np.mean([r[name] for r in out])), 4))


if __name__ == "__main__":
    main()
