"""Train the ``phones`` aspect head (models/aspects_phones) on UIT-ViSFD Train, select on Dev.

The head is one logistic regression per UIT-ViSFD category on the bundled encoder's review
embeddings (the vectors the segmenter already computes, so it costs no extra encoder pass).
Review-level labels: a review's aspects are the categories it has a label for. Every review
with a single labelled aspect is used (the cleanest signal for clause-level use), plus a seeded
sample of reviews with several (``--multi``), because the bundled encoder runs at a few reviews
a second on a shared CPU. Dev selects the regularisation and the review-level threshold.

    python scripts/train_aspect_head.py --cache-dir ~/.cache/nlpseg-eval

Writes ``models/aspects_phones/{head.safetensors,config.json}`` (no pickle); the model card is
``models/aspects_phones/README.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

ASPECTS = (
    "battery",
    "camera",
    "design",
    "features",
    "general",
    "performance",
    "price",
    "screen",
    "service_accessories",
    "storage",
)
#: UIT-ViSFD's label names -> ours (SER&ACC holds ';'/'&'-free in an aspects cell).
VISFD_NAMES = {
    "BATTERY": "battery",
    "CAMERA": "camera",
    "DESIGN": "design",
    "FEATURES": "features",
    "GENERAL": "general",
    "PERFORMANCE": "performance",
    "PRICE": "price",
    "SCREEN": "screen",
    "SER&ACC": "service_accessories",
    "STORAGE": "storage",
}
DATA = Path("/work/shared/data/reviews/uit-visfd")
OUT = Path(__file__).resolve().parents[1] / "models" / "aspects_phones"


def gold_pairs(label: str) -> dict[str, str]:
    """``{CAMERA#Positive};{OTHERS};...`` -> ``{"camera": "positive"}``."""
    return {
        VISFD_NAMES[a]: p.lower()
        for a, p in re.findall(r"\{([A-Z&]+)#(\w+)\}", str(label))
        if a in VISFD_NAMES
    }


def encode_reviews(frame: pd.DataFrame, cache_dir: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows with text and their embeddings through the segmenter's own encoder."""
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import SegmenterConfig
    from nlp_seg.stages.encoder import TextEncoder

    norm = normalize_texts(list(frame["comment"]))
    keep = np.array([n.status == "ok" for n in norm])
    enc = TextEncoder(SegmenterConfig(cache_dir=cache_dir))
    t0 = time.perf_counter()
    emb, _ = enc.encode([n.text for n, k in zip(norm, keep, strict=True) if k])
    print(f"encoded {keep.sum()} reviews in {time.perf_counter() - t0:.0f}s")
    return frame[keep].reset_index(drop=True), emb


def targets(frame: pd.DataFrame) -> np.ndarray:
    y = np.zeros((len(frame), len(ASPECTS)), dtype=int)
    for i, label in enumerate(frame["label"]):
        for a in gold_pairs(label):
            y[i, ASPECTS.index(a)] = 1
    return y


def main() -> None:
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--multi", type=int, default=571, help="multi-aspect train reviews sampled")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train = pd.read_csv(DATA / "Train.csv")
    dev = pd.read_csv(DATA / "Dev.csv")
    n_aspects = train["label"].map(lambda s: len(gold_pairs(s)))
    sub = pd.concat(
        [
            train[n_aspects == 1],
            train[n_aspects > 1].sample(args.multi, random_state=args.seed),
        ]
    )
    sub, x_train = encode_reviews(sub, args.cache_dir)
    dev, x_dev = encode_reviews(dev, args.cache_dir)
    y_train, y_dev = targets(sub), targets(dev)

    best: tuple[float, float, float] | None = None
    for c in (0.3, 1.0, 3.0, 10.0):
        probs = np.zeros(y_dev.shape)
        models = []
        for j in range(len(ASPECTS)):
            m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
            m.fit(x_train, y_train[:, j])
            models.append(m)
            probs[:, j] = m.predict_proba(x_dev)[:, 1]
        for thr in (0.4, 0.5, 0.6, 0.7, 0.8):
            f1 = f1_score(y_dev, probs >= thr, average="micro")
            print(f"C={c} threshold={thr}: dev aspect micro-F1 {f1:.3f}")
            if best is None or f1 > best[0]:
                best = (f1, c, thr)
                chosen = models
    assert best is not None
    f1, c, thr = best
    weight = np.stack([m.coef_[0] for m in chosen]).astype(np.float32)
    bias = np.array([m.intercept_[0] for m in chosen], dtype=np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight, "bias": bias}, str(OUT / "head.safetensors"))
    config = {
        "format": "nlpseg-aspect-head",
        "format_version": 1,
        "name": "phones",
        "aspects": list(ASPECTS),
        "kind": "logistic-ovr",
        "trained_for": "bundled:multilingual-e5-small",
        "input": "the encoder's sentence embedding (the segmenter's text vectors)",
        "review_threshold": thr,
        # chosen on Dev with scripts/eval_aspects.py (pair micro-F1 and encoder cost)
        "clause_threshold": 0.75,
        "clause_confidence": 0.7,
        "C": c,
        "class_weight": "balanced",
        "train": {
            "data": "UIT-ViSFD Train",
            "reviews": len(sub),
            "single_aspect_reviews": int((n_aspects == 1).sum()),
            "multi_aspect_sample": args.multi,
            "seed": args.seed,
        },
        "metrics": {"dev_review_aspect_micro_f1": round(float(f1), 4)},
        "licence": "trained on UIT-ViSFD, freely available for research purposes",
    }
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(config["metrics"]), "C", c, "threshold", thr)


if __name__ == "__main__":
    main()
