"""Macro-F1 of a sentiment head per dataset and language on the dev splits, and its speed.

    python scripts/eval_sentiment.py                       # the shipped head, cached embeddings
    python scripts/eval_sentiment.py --head DIR --max-per-part 400 --markdown
    python scripts/eval_sentiment.py --throughput 200      # also time encoder + head

Dev splits (none of them trained on): UMSAB ``val`` per language, UIT-VSFC ``dev``, VLSP 2016
``dev``, the seeded 15% of AIVIVN held out by ``sentiment_data`` and the seeded 20% of MARC per
language. ``--max-per-part`` evaluates a seeded prefix of each part (embedding the corpora on a
shared 2-core machine is slow); the number of texts behind every figure is printed beside it.

AIVIVN is binary (positive / negative): the 3-class head is read as negative when
P(negative) > P(positive). Its figures are the F1 of the negative class (the challenge's
metric: label 1) and the binary macro-F1.

The head's input features (the bundled encoder's pooled hidden states, computed by the
pipeline's own embedder) are cached under ``NLPSEG_SENT_EMB`` (default /tmp/sent_emb).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiment_data import Part, embed_prefix, load_all  # noqa: E402

DEV_CAPS = {"umsab": None, "uit-vsfc": None, "vlsp2016": None, "aivivn": None, "marc": None}


def dev_parts(max_per_part: int | None = None, caps: dict | None = None):
    """Every dev part with how many of its (seeded) rows to use: ``caps`` per dataset, at most
    ``max_per_part``; ``None`` means all."""
    caps = dict(DEV_CAPS if caps is None else caps)
    for part in load_all():
        if part.split != "dev":
            continue
        cap = caps.get(part.dataset)
        if max_per_part is not None:
            cap = max_per_part if cap is None else min(cap, max_per_part)
        yield part, cap


def dev_sets(
    max_per_part: int | None = None, encode: bool = True, caps: dict | None = None
) -> list[tuple[Part, np.ndarray, np.ndarray, list[str]]]:
    """Every dev part with its embeddings, labels and normalised texts (seeded prefixes)."""
    out = []
    for part, cap in dev_parts(max_per_part, caps):
        x, y, t = embed_prefix(part, cap, encode=encode)
        if len(y):
            out.append((part, x, y, t))
    return out


def evaluate(head, devs) -> dict:
    """Per-part and per-dataset scores of ``head`` on ``devs`` (from :func:`dev_sets`)."""
    return evaluate_probs([(part, head.predict_proba(x, t), y) for part, x, y, t in devs])


def pipeline_dev(head_dir: str, max_per_part: int | None, caps: dict | None = None) -> list:
    """``(part, probabilities, labels)`` per dev part through the pipeline's own encoder stage
    (lower-casing, length cap, one pass with the branch): what ``nlpseg analyze`` computes.
    Probabilities are cached in the nlpseg cache folder, so a rerun is quick."""
    from sentiment_data import prepared_texts, seeded_order

    from nlp_seg.paths import nlpseg_home
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    seg = Segmenter(
        SegmenterConfig(sentiment_model=head_dir, cache_dir=str(nlpseg_home() / "cache"))
    )
    out = []
    for part, cap in dev_parts(max_per_part, caps):
        texts, keep = prepared_texts(part)
        order = seeded_order(part)[: cap or None]
        order = order[keep[order]]
        if not len(order):
            continue
        probs = seg.encoder.encode([texts[i] for i in order])[1]
        out.append((part, probs, part.labels[order]))
    return out


def evaluate_probs(devs) -> dict:
    """Per-part and per-dataset scores from ``(part, probabilities, labels)`` triples."""
    from sklearn.metrics import f1_score

    rows = []
    for part, p, y in devs:
        if part.dataset == "aivivn":
            pred = np.where(p[:, 0] > p[:, 2], 0, 2)
            f1 = f1_score(y, pred, labels=[0, 2], average="macro")
            f1_neg = f1_score(y, pred, labels=[0], average="macro")
            rows.append(
                {
                    "dataset": part.dataset,
                    "lang": part.lang,
                    "n": len(y),
                    "macro_f1": float(f1),
                    "f1_negative": float(f1_neg),
                }
            )
        else:
            pred = p.argmax(axis=1)
            f1 = f1_score(y, pred, labels=[0, 1, 2], average="macro")
            rows.append(
                {"dataset": part.dataset, "lang": part.lang, "n": len(y), "macro_f1": float(f1)}
            )
    summary = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == ds]
        summary[ds] = {
            "macro_f1": float(np.mean([r["macro_f1"] for r in rs])),
            "n": int(sum(r["n"] for r in rs)),
        }
        if ds == "aivivn":
            summary[ds]["f1_negative"] = rs[0]["f1_negative"]
    return {"parts": rows, "datasets": summary}


FLOORS = {"umsab": 0.60, "uit-vsfc": 0.75, "aivivn": 0.85, "marc": 0.55}
ANCHORS = {"umsab": "XLM-T 0.694", "uit-vsfc": "PhoBERT ~0.83"}


def table(result: dict, markdown: bool = False) -> str:
    """The result as a plain or Markdown table (per language, then per-dataset averages)."""
    lines = []
    if markdown:
        lines += [
            "| dataset | language | dev texts | macro-F1 | floor / anchor |",
            "| --- | --- | ---: | ---: | --- |",
        ]
    fmt = "| {} | {} | {} | {} | {} |" if markdown else "{:<10} {:<11} {:>6} {:>9}  {}"
    for r in result["parts"]:
        score = f"{r['macro_f1']:.3f}"
        note = ""
        if r["dataset"] == "aivivn":
            note = f"binary; F1(negative) {r['f1_negative']:.3f}"
        lines.append(fmt.format(r["dataset"], r["lang"], r["n"], score, note))
    for ds, s in result["datasets"].items():
        bits = []
        if ds in FLOORS:
            bits.append(f"floor {FLOORS[ds]:.2f}")
        if ds in ANCHORS:
            bits.append(ANCHORS[ds])
        label = "**average**" if markdown else "AVERAGE"
        score = f"**{s['macro_f1']:.3f}**" if markdown else f"{s['macro_f1']:.3f}"
        lines.append(fmt.format(ds, label, s["n"], score, "; ".join(bits)))
    return "\n".join(lines)


def throughput(head_dir: str, n: int) -> dict:
    """Texts per second of the pipeline's one pass (bundled encoder with the head's layer
    features, then the head) against the encoder alone, and of the head alone."""
    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.sentiment_head import SentimentHead
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import SegmenterConfig

    head = SentimentHead.load(head_dir)
    devs = [p for p in load_all() if p.split == "dev" and p.dataset in ("umsab", "aivivn", "marc")]
    rng = np.random.default_rng(0)
    texts = []
    for p in devs:
        idx = rng.permutation(len(p.texts))[: max(1, n // len(devs))]
        texts += [p.texts[i] for i in idx]
    texts = [t.text or "." for t in normalize_texts(texts)]
    out: dict = {"n_texts": len(texts)}
    emb = SentenceTransformerEmbedder(device="cpu", max_seq_length=SegmenterConfig().max_seq_length)

    def encoder_only() -> None:
        emb.embed(texts)

    branch = None
    if head.config_.get("branch"):
        from nlp_seg.models.sentiment_branch import SentimentBranch

        branch = SentimentBranch.load(head_dir, head.config_["branch"])
        texts = [t.lower() for t in texts]

    def features() -> np.ndarray:
        if branch is not None:
            return emb.embed_with_layers(texts, head.input_layers, branch=branch)[1]
        if head.input_layers:
            return emb.embed_with_layers(texts, head.input_layers)[1]
        return emb.embed(texts)

    def one_pass() -> None:
        head.predict_proba(features(), texts)

    encoder_only()  # load the model and warm both paths outside the timing
    one_pass()
    times: dict[str, list[float]] = {"encoder_only": [], "one_pass_encoder_plus_head": []}
    for _ in range(3):  # interleaved, median: the machine is shared and noisy
        for name, fn in (("encoder_only", encoder_only), ("one_pass_encoder_plus_head", one_pass)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        out[f"{name}_texts_per_s"] = len(texts) / float(np.median(ts))
    feats = features()
    t0 = time.perf_counter()
    head.predict_proba(feats, texts)
    out["head_only_texts_per_s"] = len(texts) / max(time.perf_counter() - t0, 1e-9)
    out["embedding_dim"] = int(emb.dimension)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--head", default=str(Path(__file__).resolve().parent.parent / "models" / "sentiment_head")
    )
    ap.add_argument(
        "--max-per-part",
        type=int,
        default=None,
        help="evaluate at most this many texts per dataset-language (seeded)",
    )
    ap.add_argument("--cached-only", action="store_true", help="use only cached embeddings")
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="score through the pipeline's encoder stage (always for a head with a branch)",
    )
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", default=None, help="also write the scores to this file")
    ap.add_argument(
        "--throughput",
        type=int,
        default=0,
        metavar="N",
        help="time encoder + head on N dev texts (0: skip)",
    )
    args = ap.parse_args(argv)

    from nlp_seg.models.sentiment_head import SentimentHead

    head = SentimentHead.load(args.head)
    if args.pipeline or head.config_.get("branch"):
        result = evaluate_probs(pipeline_dev(args.head, args.max_per_part))
        result["through"] = "pipeline (nlp_seg.stages.encoder.TextEncoder.encode)"
    else:
        devs = dev_sets(args.max_per_part, encode=not args.cached_only)
        result = evaluate(head, devs)
    print(table(result, markdown=args.markdown))
    if args.throughput:
        result["throughput"] = throughput(args.head, args.throughput)
        for k, v in result["throughput"].items():
            print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
