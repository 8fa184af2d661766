"""Count the Vietnamese diacritics restorer (``models/diacritics_vi``) and measure it.

    python scripts/train_diacritics.py [--out models/diacritics_vi] [--min-count 2]

Counts syllable n-grams on the *train* parts of the Vietnamese corpora in ``../shared/data``
(UIT-VSFC, VLSP 2016, AIVIVN 2019, ViSpamReviews, UIT-ViSFD; texts typed without diacritics
are skipped by :func:`nlp_seg.models.diacritics.train_restorer`), then reports syllable
accuracy on the dev parts of UIT-ViSFD and ViSpamReviews with their marks stripped, and how
often a text of other languages would be touched (``needs_restoring``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from nlp_seg.models.diacritics import phrases, train_restorer
from nlp_seg.normalize import strip_diacritics

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def train_texts() -> dict[str, list[str]]:
    """Every Vietnamese train-part text, by corpus."""
    vlsp = (DATA / "sentiment/vlsp2016-sa/SA-2016.train").read_text("utf-8-sig").splitlines()
    return {
        "uit-vsfc": (DATA / "sentiment/uit-vsfc/train/sents.txt").read_text("utf-8").splitlines(),
        "vlsp2016": [line.split("\t")[0] for line in vlsp],
        "aivivn": pd.read_csv(DATA / "sentiment/aivivn-2019/train.csv")["text"].dropna().tolist(),
        "vispam": pd.read_csv(DATA / "reviews/vispamreviews/train.csv")["Comment"]
        .dropna()
        .tolist(),
        "uit-visfd": pd.read_csv(DATA / "reviews/uit-visfd/Train.csv")["comment"].dropna().tolist(),
    }


def dev_texts() -> dict[str, list[str]]:
    return {
        "uit-visfd dev": pd.read_csv(DATA / "reviews/uit-visfd/Dev.csv")["comment"]
        .dropna()
        .tolist(),
        "vispam dev": pd.read_csv(DATA / "reviews/vispamreviews/dev.csv")["Comment"]
        .dropna()
        .tolist(),
    }


def other_languages() -> dict[str, list[str]]:
    out = {}
    for lang in ("en", "de", "es", "fr"):
        frame = pd.read_csv(DATA / f"sentiment/marc-amazon-multi/{lang}.csv", header=None)
        out[f"marc {lang}"] = frame[1].dropna().astype(str).tolist()[:1000]
    for lang in ("portuguese", "spanish", "english", "italian"):
        path = DATA / f"sentiment/umsab-xlmt/{lang}/val_text.txt"
        out[f"umsab {lang}"] = path.read_text("utf-8").splitlines()
    return out


def syllable_accuracy(restorer, texts: list[str]) -> dict[str, float]:
    right = total = ambiguous_right = ambiguous = 0
    t0 = time.perf_counter()
    for text in texts:
        gold = [s for p in phrases(text) for s in p]
        got = [s for p in phrases(restorer.restore(strip_diacritics(text))) for s in p]
        if len(gold) != len(got):
            continue
        for g, r in zip(gold, got, strict=True):
            total += 1
            right += g == r
            if len(restorer.candidates_.get(strip_diacritics(g), [])) > 1:
                ambiguous += 1
                ambiguous_right += g == r
    seconds = time.perf_counter() - t0
    return {
        "syllable_accuracy": round(right / max(total, 1), 4),
        "ambiguous_accuracy": round(ambiguous_right / max(ambiguous, 1), 4),
        "syllables": total,
        "ms_per_text": round(1000 * seconds / max(len(texts), 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "diacritics_vi")
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--dev-cap", type=int, default=1000)
    args = ap.parse_args()

    corpora = train_texts()
    t0 = time.perf_counter()
    record = {"corpora": {k: len(v) for k, v in corpora.items()}}
    restorer = train_restorer(
        (t for texts in corpora.values() for t in texts), args.min_count, record
    )
    restorer.record["count_seconds"] = round(time.perf_counter() - t0, 1)
    report = {"record": restorer.record, "vocab": len(restorer.vocab)}
    for name, texts in dev_texts().items():
        texts = texts[: args.dev_cap]
        report[name] = syllable_accuracy(restorer, texts)
        report[name]["touched_as_typed"] = round(
            sum(restorer.needs_restoring(t) for t in texts) / len(texts), 4
        )
        stripped = [strip_diacritics(t) for t in texts]
        report[name]["touched_stripped"] = round(
            sum(restorer.needs_restoring(t) for t in stripped) / len(texts), 4
        )
    report["other languages touched"] = {
        name: round(sum(restorer.needs_restoring(t) for t in texts) / len(texts), 4)
        for name, texts in other_languages().items()
    }
    restorer.record["dev"] = {k: v for k, v in report.items() if k.endswith("dev")}
    restorer.record["other_languages_touched"] = report["other languages touched"]
    restorer.save(args.out)
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
