"""Benchmark of the not-a-review filter (``nlp_seg.stages.noise``), as the pipeline runs it.

    python scripts/eval_noise.py            # the shipped head in models/noise_head
    python scripts/eval_noise.py --head DIR

Reports, on ViSpamReviews dev: the share of ``SpamLabel == 3`` texts (irrelevant content)
flagged (target >= 50%) and the share of genuine reviews flagged (SpamLabel 0; 1 and 2, real
reviews of another kind, reported apart; target <= 3%); then the share flagged on real reviews
from other corpora and languages (UIT-ViSFD, AIVIVN, MARC, UMSAB dev parts: a seeded 400 rows
each), where every flag is a false alarm. Rows are encoded by the pipeline itself and cached
(see ``noise_data.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from noise_data import encoded, genuine_sets, vispam  # noqa: E402

from nlp_seg.normalize import STATUS_OK  # noqa: E402
from nlp_seg.stages.noise import NoiseFilter  # noqa: E402


def flags_of(flt: NoiseFilter, texts) -> tuple[np.ndarray, np.ndarray]:
    """Flags of the scorable rows and their labels (rows without text are left out)."""
    clean, status, emb = encoded(texts)
    ok = status == STATUS_OK
    kept = [c for c, k in zip(clean, ok, strict=True) if k]
    return flt.predict(kept, np.asarray(emb, dtype=np.float32)[ok]), texts.labels[ok]


def evaluate(flt: NoiseFilter, others: bool = True) -> list[tuple[str, int, float]]:
    """(set, rows, share flagged) for every benchmark set (``others``: the other corpora too)."""
    rows = []
    f, y = flags_of(flt, vispam("dev"))
    rows.append(
        (
            "ViSpamReviews dev, SpamLabel 3 (not a review): flagged",
            int((y == 3).sum()),
            float(f[y == 3].mean()),
        )
    )
    rows.append(
        (
            "ViSpamReviews dev, SpamLabel 0 (genuine): flagged",
            int((y == 0).sum()),
            float(f[y == 0].mean()),
        )
    )
    rows.append(
        (
            "ViSpamReviews dev, SpamLabel 1-2 (real reviews of another kind): flagged",
            int(np.isin(y, (1, 2)).sum()),
            float(f[np.isin(y, (1, 2))].mean()),
        )
    )
    for t in genuine_sets() if others else []:
        f, _ = flags_of(flt, t)
        rows.append((f"{t.name} (genuine): flagged", len(f), float(f.mean())))
    return rows


def table(rows: list[tuple[str, int, float]]) -> str:
    lines = ["| set | rows | flagged |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {n:,} | {share:.1%} |" for name, n, share in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", default=None, help="noise head folder (default: the shipped one)")
    ap.add_argument("--vispam-only", action="store_true", help="skip the other corpora")
    args = ap.parse_args(argv)
    print(table(evaluate(NoiseFilter.load(args.head), others=not args.vispam_only)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
