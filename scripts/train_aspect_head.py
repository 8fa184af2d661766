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


def encode_reviews(
    frame: pd.DataFrame, cache_dir: str | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows with text, their embeddings and sentiment through the segmenter's own
    encoder."""
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import SegmenterConfig
    from nlp_seg.stages.encoder import TextEncoder

    norm = normalize_texts(list(frame["comment"]))
    keep = np.array([n.status == "ok" for n in norm])
    enc = TextEncoder(SegmenterConfig(cache_dir=cache_dir))
    t0 = time.perf_counter()
    emb, probs = enc.encode([n.text for n, k in zip(norm, keep, strict=True) if k])
    print(f"encoded {keep.sum()} reviews in {time.perf_counter() - t0:.0f}s", flush=True)
    return frame[keep].reset_index(drop=True), emb, probs


def targets(frame: pd.DataFrame) -> np.ndarray:
    y = np.zeros((len(frame), len(ASPECTS)), dtype=int)
    for i, label in enumerate(frame["label"]):
        for a in gold_pairs(label):
            y[i, ASPECTS.index(a)] = 1
    return y


def polarity_targets(frame: pd.DataFrame) -> np.ndarray:
    """``(n, n_aspects)`` gold polarity index (POLARITIES order), -1 where not labelled."""
    from nlp_seg.stages.aspects import POLARITIES

    y = np.full((len(frame), len(ASPECTS)), -1, dtype=int)
    for i, label in enumerate(frame["label"]):
        for a, p in gold_pairs(label).items():
            y[i, ASPECTS.index(a)] = POLARITIES.index(p)
    return y


def class_targets(frame: pd.DataFrame) -> np.ndarray:
    from nlp_seg.stages.aspects import REVIEW_CLASSES, review_class

    return np.array([REVIEW_CLASSES.index(review_class(gold_pairs(x))) for x in frame["label"]])


def full_softmax(model, x: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """A multinomial model's weights over all ``n_classes`` (classes never seen in training
    get a very low bias, so they are never predicted)."""
    w = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    b = np.full(n_classes, -30.0, dtype=np.float32)
    classes = list(model.classes_)
    if len(classes) == 1:
        b[classes[0]] = 0.0
        return w, b
    coef, inter = model.coef_, model.intercept_
    if len(classes) == 2:  # sklearn keeps one row for two classes: expand to a softmax pair
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        inter = np.array([-inter[0] / 2, inter[0] / 2])
    for r, c in enumerate(classes):
        w[c], b[c] = coef[r], inter[r]
    return w, b


def main() -> None:
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from nlp_seg.stages.aspects import (
        POLARITIES,
        REVIEW_CLASSES,
        aspect_features,
        decode_aspects,
        head_probabilities,
        review_class,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train = pd.read_csv(DATA / "Train.csv")
    dev = pd.read_csv(DATA / "Dev.csv")
    train, e_train, p_train = encode_reviews(train, args.cache_dir)
    dev, e_dev, p_dev = encode_reviews(dev, args.cache_dir)
    x_train, x_dev = aspect_features(e_train, p_train), aspect_features(e_dev, p_dev)
    y_train, y_dev = targets(train), targets(dev)

    # 1. which aspects a review talks about: one-vs-rest on the sentence embedding
    best: tuple[float, float, float] | None = None
    for c in (3.0, 10.0, 30.0):
        probs = np.zeros(y_dev.shape)
        models = []
        for j in range(len(ASPECTS)):
            m = LogisticRegression(C=c, max_iter=3000)
            m.fit(e_train, y_train[:, j])
            models.append(m)
            probs[:, j] = m.predict_proba(e_dev)[:, 1]
        for thr in (0.3, 0.4, 0.5, 0.6):
            f1 = f1_score(y_dev, probs >= thr, average="micro")
            print(f"detect C={c} threshold={thr}: dev aspect micro-F1 {f1:.3f}", flush=True)
            if best is None or f1 > best[0]:
                best, chosen, det_dev = (f1, c, thr), models, probs
    assert best is not None
    det_f1, det_c, det_thr = best
    weight = np.stack([m.coef_[0] for m in chosen]).astype(np.float32)
    bias = np.array([m.intercept_[0] for m in chosen], dtype=np.float32)

    # 2. how each aspect is judged: a 3-way polarity model per aspect, on the reviews that
    #    talk about it (embedding + the sentiment head's probabilities)
    pol_train, pol_dev = polarity_targets(train), polarity_targets(dev)
    best_pol: tuple[float, float] | None = None
    for c in (3.0, 10.0, 30.0):
        w_all, b_all, hits, total = [], [], 0, 0
        for j in range(len(ASPECTS)):
            rows = pol_train[:, j] >= 0
            m = LogisticRegression(C=c, max_iter=3000)
            m.fit(x_train[rows], pol_train[rows, j])
            w, b = full_softmax(m, x_train, 3)
            w_all.append(w)
            b_all.append(b)
            d = pol_dev[:, j] >= 0
            pred = (x_dev[d] @ w.T + b).argmax(axis=1)
            hits += int((pred == pol_dev[d, j]).sum())
            total += int(d.sum())
        acc = hits / total
        print(f"polarity C={c}: dev accuracy on gold aspects {acc:.3f}", flush=True)
        if best_pol is None or acc > best_pol[0]:
            best_pol, pol_w, pol_b = (acc, c), np.stack(w_all), np.stack(b_all)
    assert best_pol is not None

    # 3. the review's class (satisfied / disappointed / mixed / neutral)
    cls_train, cls_dev = class_targets(train), class_targets(dev)
    best_cls: tuple[float, float, str] | None = None
    for balance in ("balanced", "none"):
        for c in (3.0, 10.0, 30.0):
            m = LogisticRegression(
                C=c, max_iter=3000, class_weight="balanced" if balance == "balanced" else None
            )
            m.fit(x_train, cls_train)
            w, b = full_softmax(m, x_train, len(REVIEW_CLASSES))
            f1 = f1_score(cls_dev, (x_dev @ w.T + b).argmax(axis=1), average="macro")
            print(f"class C={c} {balance}: dev macro-F1 {f1:.3f}", flush=True)
            if best_cls is None or f1 > best_cls[0]:
                best_cls, cls_w, cls_b = (f1, c, balance), w, b
    assert best_cls is not None

    # 4. aspects, polarities and class decoded jointly: the class model's weight and the
    #    presence threshold, on Dev pairs micro-F1 + review-class macro-F1
    pol_p_dev, cls_p_dev = head_probabilities(x_dev, pol_w, pol_b, cls_w, cls_b)
    gold = [gold_pairs(x) for x in dev["label"]]
    gold_cls = [review_class(g) for g in gold]
    best_joint: tuple[float, float, float, float] | None = None
    for lam in (0.0, 1.0, 2.0, 4.0):
        for thr in (0.4, 0.5):
            pred_pairs = []
            for i in range(len(dev)):
                found = decode_aspects(det_dev[i], pol_p_dev[i], cls_p_dev[i], lam, thr)
                pred_pairs.append({ASPECTS[j]: POLARITIES[p] for j, p in found})
            tp = sum(
                len(set(p.items()) & set(g.items())) for p, g in zip(pred_pairs, gold, strict=True)
            )
            f1 = 2 * tp / (sum(map(len, pred_pairs)) + sum(map(len, gold)))
            pred_cls = [review_class(p) for p in pred_pairs]
            cf1 = f1_score(gold_cls, pred_cls, labels=list(REVIEW_CLASSES), average="macro")
            print(f"joint weight={lam} threshold={thr}: dev pairs F1 {f1:.3f}, class {cf1:.3f}")
            if best_joint is None or f1 + cf1 > best_joint[0] + best_joint[2]:
                best_joint = (f1, lam, cf1, thr)
    assert best_joint is not None
    pairs_f1, lam, class_f1, det_thr = best_joint

    OUT.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "weight": weight,
            "bias": bias,
            "polarity_weight": pol_w.astype(np.float32),
            "polarity_bias": pol_b.astype(np.float32),
            "class_weight": cls_w.astype(np.float32),
            "class_bias": cls_b.astype(np.float32),
        },
        str(OUT / "head.safetensors"),
    )
    config = {
        "format": "nlpseg-aspect-head",
        "format_version": 2,
        "name": "phones",
        "aspects": list(ASPECTS),
        "kind": "logistic-ovr+polarity+class",
        "trained_for": "bundled:multilingual-e5-small",
        "input": (
            "detection: the encoder's sentence embedding; polarity and class: the embedding "
            "followed by the sentiment head's three probabilities"
        ),
        "review_threshold": det_thr,
        "clause_threshold": 0.75,
        "joint_class_weight": lam,
        "C": {"detection": det_c, "polarity": best_pol[1], "class": best_cls[1]},
        "class_weight": {"detection": "none", "polarity": "none", "class": best_cls[2]},
        "train": {"data": "UIT-ViSFD Train", "reviews": len(train), "seed": args.seed},
        "metrics": {
            "dev_review_aspect_micro_f1": round(float(det_f1), 4),
            "dev_polarity_accuracy_on_gold_aspects": round(float(best_pol[0]), 4),
            "dev_class_head_macro_f1": round(float(best_cls[0]), 4),
            "dev_pairs_micro_f1": round(float(pairs_f1), 4),
            "dev_review_class_macro_f1_from_pairs": round(float(class_f1), 4),
        },
        "licence": "trained on UIT-ViSFD, freely available for research purposes",
        "selection": {
            "detection": "Dev, review-level aspect micro-F1 over C and threshold",
            "polarity": "Dev, polarity accuracy on the gold aspects over C",
            "class": "Dev, review-class macro-F1 over C",
            "joint_class_weight_and_threshold": "Dev, pairs micro-F1 + class macro-F1",
        },
    }
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(config["metrics"]), flush=True)


if __name__ == "__main__":
    main()
