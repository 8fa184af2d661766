"""Benchmark aspect-level sentiment on UIT-ViSFD Dev (the phones head never trained on it).

    python scripts/eval_aspects.py --cache-dir ~/.cache/nlpseg-eval [--cost 150]

Figures (docs/benchmarks.md):

* aspect-polarity pair micro-F1 with ``--aspects phones``: a review's predicted
  ``(aspect, polarity)`` pairs against its gold labels (UIT-ViSFD's ``{ASPECT#Polarity}``);
* review-level class macro-F1 (satisfied / disappointed / mixed / neutral; gold: only positive
  aspects -> satisfied, only negative -> disappointed, both -> mixed, else neutral);
* segment base names against the same gold class (awaiting-improvement counts as mixed,
  outliers as neutral), with aspects and without (the name rule before aspects);
* ``--cost N``: encoder time of clause scoring over the review encoding alone, on N reviews
  encoded fresh (no cache) in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_aspect_head import DATA, gold_pairs  # noqa: E402

NAME_TO_CLASS = {
    "satisfied": "satisfied",
    "disappointed": "disappointed",
    "awaiting-improvement": "mixed",
    "neutral": "neutral",
}


def pair_f1(pred: list[dict[str, str]], gold: list[dict[str, str]]) -> dict[str, float]:
    tp = sum(len(set(p.items()) & set(g.items())) for p, g in zip(pred, gold, strict=True))
    n_pred = sum(len(p) for p in pred)
    n_gold = sum(len(g) for g in gold)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": round(prec, 4), "recall": round(rec, 4), "micro_f1": round(f1, 4)}


def macro_f1(gold: list[str], pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    from nlp_seg.stages.aspects import REVIEW_CLASSES

    return round(float(f1_score(gold, pred, labels=list(REVIEW_CLASSES), average="macro")), 4)


def segment_classes(seg, n: int) -> list[str]:  # noqa: ANN001
    base = {s["id"]: s["base_name"] for s in seg.segments_}
    return [NAME_TO_CLASS.get(base.get(int(k), ""), "neutral") for k in seg.labels_[:n]]


def cost(n: int, aspects: str, clause_confidence: float | None) -> dict[str, float]:
    """Fresh (uncached) encoder seconds for n Dev reviews, and for their clauses."""
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import SegmenterConfig
    from nlp_seg.stages.aspects import AspectScorer, load_taxonomy
    from nlp_seg.stages.encoder import TextEncoder

    dev = pd.read_csv(DATA / "Dev.csv").sample(n + 20, random_state=1)
    texts = [x.text for x in normalize_texts(list(dev["comment"])) if x.status == "ok"]
    enc = TextEncoder(SegmenterConfig())
    enc.encode(texts[:20])  # load the models outside the timing
    t0 = time.perf_counter()
    emb, probs = enc.encode(texts[20:])
    t_reviews = time.perf_counter() - t0
    taxonomy = load_taxonomy(aspects)
    if clause_confidence is not None:
        taxonomy = replace(taxonomy, clause_confidence=clause_confidence)
    scorer = AspectScorer(taxonomy)
    scorer.clause_scores(enc, emb[:1])  # a phrase taxonomy embeds its phrases once, untimed
    t0 = time.perf_counter()
    scorer.analyze(enc, texts[20:], emb, probs)
    t_clauses = time.perf_counter() - t0
    return {
        "reviews": len(texts) - 20,
        "clauses_encoded": int(scorer.encoded_clauses_),
        "review_seconds": round(t_reviews, 2),
        "clause_seconds": round(t_clauses, 2),
        "ratio": round((t_reviews + t_clauses) / t_reviews, 3),
    }


def main() -> None:
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import Segmenter, SegmenterConfig
    from nlp_seg.stages.aspects import AspectScorer, load_taxonomy, parse_aspects, review_class

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--aspects", default="phones")
    ap.add_argument("--cost", type=int, default=0, help="reviews for the encoder-cost ratio")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument(
        "--aspect-weight",
        type=float,
        default=1.0,
        help="weight of the aspects block in the fused vector (--weights aspects=W; default 1)",
    )
    ap.add_argument(
        "--clause-confidence",
        type=float,
        default=None,
        help="do not split texts whose sentiment is at least this confident (default: the "
        "taxonomy's own; above 1: split every text)",
    )
    args = ap.parse_args()

    dev = pd.read_csv(DATA / "Dev.csv")
    texts = dev["comment"].tolist()
    gold = [gold_pairs(x) for x in dev["label"]]
    gold_class = [review_class(g) for g in gold]

    from nlp_seg.stages.fusion import parse_weights

    weights = parse_weights({"aspects": args.aspect_weight})
    seg = Segmenter(
        SegmenterConfig(aspects=args.aspects, cache_dir=args.cache_dir, seed=42, weights=weights)
    )
    taxonomy = load_taxonomy(args.aspects)
    if args.clause_confidence is not None:
        taxonomy = replace(taxonomy, clause_confidence=args.clause_confidence)
    seg.aspect_scorer_ = AspectScorer(taxonomy)
    t0 = time.perf_counter()
    seg.fit(texts)
    seconds = time.perf_counter() - t0
    table = seg.assignments_
    pred = [parse_aspects(c) for c in table["aspects"].fillna("")]
    fallback = not taxonomy.joint  # as the namer does (profile_segments' aspect_fallback)
    pred_class = [
        review_class(p, None if pd.isna(lab) or not fallback else str(lab))
        for p, lab in zip(pred, table["sentiment_label"], strict=True)
    ]
    # The same encodings segmented with the name rule before aspects (no second encoder pass).
    plain = Segmenter(SegmenterConfig(cache_dir=args.cache_dir, seed=42))
    plain.fit_encoded(
        [x.text for x in normalize_texts(texts, max_chars=seg.config.max_chars)],
        table["status"].to_numpy(dtype=object),
        seg.embeddings_,
        seg.sentiment_proba_,
    )
    out = {
        "data": "UIT-ViSFD Dev",
        "reviews": len(dev),
        "aspects": args.aspects,
        "clause_confidence": taxonomy.clause_confidence,
        "aspect_weight": args.aspect_weight,
        "pairs": pair_f1(pred, gold),
        "review_class_macro_f1": macro_f1(gold_class, pred_class),
        "segment_names_macro_f1": {
            "with_aspects": macro_f1(gold_class, segment_classes(seg, len(dev))),
            "without_aspects": macro_f1(gold_class, segment_classes(plain, len(dev))),
        },
        "segments": [s["name"] for s in seg.segments_],
        "mixed_share": {
            "gold": round(gold_class.count("mixed") / len(dev), 4),
            "predicted": round(float(table["sentiment_mixed"].mean()), 4),
        },
        "fit_seconds": round(seconds, 1),
        "timings": seg.timings_,
    }
    if args.cost:
        out["cost"] = cost(args.cost, args.aspects, args.clause_confidence)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
