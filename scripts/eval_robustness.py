"""Do sentiment labels survive how people type? Case and missing diacritics.

Takes real reviews from ``../shared/data`` (UIT-ViSFD and ViSpamReviews for Vietnamese with
diacritics, MARC English, Spanish and French and Portuguese UMSAB for the Latin scripts),
makes three variants of each (lower-cased, upper-cased, diacritics stripped) and reports the
share of variants whose sentiment label equals the original's, per variant, with the default
bundled profile (the stripped variant twice: with the diacritics restorer, the default, and
without)::

    python scripts/eval_robustness.py [--per-source 150] [--json out.json]

Target (issue 16): >= 95% agreement on every variant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from nlp_seg.normalize import strip_diacritics

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def sources(n: int) -> dict[str, list[str]]:
    def pick(series: pd.Series) -> list[str]:
        s = series.dropna().astype(str)
        s = s[s.str.len().between(10, 300)].drop_duplicates()
        return s.sample(n=min(n, len(s)), random_state=0).tolist()

    umsab_pt = (DATA / "sentiment/umsab-xlmt/portuguese/val_text.txt").read_text().splitlines()
    return {
        "vi uit-visfd": pick(pd.read_csv(DATA / "reviews/uit-visfd/Dev.csv")["comment"]),
        "vi vispam": pick(pd.read_csv(DATA / "reviews/vispamreviews/dev.csv")["Comment"]),
        "en marc": pick(pd.read_csv(DATA / "sentiment/marc-amazon-multi/en.csv", header=None)[1]),
        "pt umsab": pick(pd.Series(umsab_pt)),
        "es marc": pick(pd.read_csv(DATA / "sentiment/marc-amazon-multi/es.csv", header=None)[1]),
        "fr marc": pick(pd.read_csv(DATA / "sentiment/marc-amazon-multi/fr.csv", header=None)[1]),
    }


def labels(seg: object, texts: list[str]) -> np.ndarray:
    """Each text's sentiment label, or its status where it has none (``low_information``):
    a text flagged as not a review in one variant and scored in another counts as changed."""
    scored = seg.score(texts)
    label = scored["sentiment_label"].astype(object)
    return label.where(label.notna(), scored["status"].astype(object)).astype(str).to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-source", type=int, default=150)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--sentiment-model",
        default="bundled:sentiment-head",
        help="head to test (bundled:sentiment-branch for the fine-tuned branch)",
    )
    args = ap.parse_args()

    from nlp_seg.models.sentiment import LABELS
    from nlp_seg.paths import nlpseg_home
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    def segmenter(restore: bool) -> Segmenter:
        return Segmenter(
            SegmenterConfig(
                cache_dir=str(nlpseg_home() / "cache"),
                sentiment_model=args.sentiment_model,
                restore_diacritics=restore,
            )
        )

    seg, as_typed = segmenter(True), segmenter(False)
    variants = {
        "lower": (str.lower, seg),
        "upper": (str.upper, seg),
        "no diacritics": (strip_diacritics, seg),
        "no diacritics, not restored": (strip_diacritics, as_typed),
    }
    rows = []
    for name, texts in sources(args.per_source).items():
        base = labels(seg, texts)
        row = {"source": name, "texts": len(texts)}
        for vname, (fn, scorer) in variants.items():
            changed = [fn(t) for t in texts]
            differs = np.array([c != t for c, t in zip(changed, texts, strict=True)])
            lab = labels(scorer, changed)
            agree = lab == base
            row[vname] = round(float(agree.mean()), 4)
            row[f"{vname} (changed texts)"] = (
                round(float(agree[differs].mean()), 4) if differs.any() else None
            )
        row["label mix"] = {lab: int((base == lab).sum()) for lab in LABELS}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
