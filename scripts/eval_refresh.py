"""Refresh on real reviews: are segment ids stable, and does a planted complaint show up?

UIT-ViSFD Train reviews (the bundled model, cold or warm cache) are sorted by their own
``date_time`` (relative dates counted from 2021-01-01). Period one is the first ``--p1`` reviews
without a pure battery complaint. Two refreshes of the period-one segmenter:

* **unchanged**: the same reviews, shuffled: share of rows that keep their segment id, new and
  gone segments, novelty share;
* **planted**: the next ``--p2`` reviews plus ``--plant`` real battery complaints: the segment
  whose share grew most, its complaint share, and where ``pin`` / ``sạc`` rank among the rising
  complaint terms.

    python scripts/eval_refresh.py --seeds 42,7
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from nlp_seg.io.read import parse_dates
from nlp_seg.runs.jobs import TimeOptions, analyze_file
from nlp_seg.runs.refresh import refresh_file
from nlp_seg.segmenter import SegmenterConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "reviews" / "uit-visfd"
REFERENCE = "2021-01-01"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p1", type=int, default=320)
    ap.add_argument("--p2", type=int, default=220)
    ap.add_argument("--plant", type=int, default=70)
    ap.add_argument("--seeds", default="42")
    args = ap.parse_args()
    df = pd.read_csv(DATA / "Train.csv")
    df["when"] = parse_dates(df["date_time"], pd.Timestamp(REFERENCE))
    labels = df["label"].astype(str)
    battery = labels.str.contains("BATTERY#Negative") & ~labels.str.contains("#Positive")
    rest = df[~battery].sort_values("when", kind="stable")
    cols = ["index", "comment", "n_star", "date_time"]
    options = TimeOptions(reference_date=REFERENCE)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            p1 = rest.iloc[: args.p1][cols]
            p1.to_csv(root / "p1.csv", index=False)
            p1.sample(frac=1.0, random_state=seed).to_csv(root / "again.csv", index=False)
            planted = pd.concat(
                [rest.iloc[args.p1 : args.p1 + args.p2], df[battery].iloc[: args.plant]]
            )[cols].sample(frac=1.0, random_state=seed)
            planted.to_csv(root / "p2.csv", index=False)
            t0 = time.perf_counter()
            analyze_file(
                root / "p1.csv", root / "r1", SegmenterConfig(seed=seed),
                save_model=root / "m1", time_options=options, report=False, audiences=False,
            )  # fmt: skip
            fit_s = time.perf_counter() - t0
            row = {"seed": seed, "fit_seconds": round(fit_s, 1)}
            for name, src in (("unchanged", "again.csv"), ("planted", "p2.csv")):
                t0 = time.perf_counter()
                refresh_file(
                    root / src, root / name, root / "m1", previous_run=root / "r1",
                    time_options=options, report=False, audiences=False,
                )  # fmt: skip
                row[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
                drift = json.loads((root / name / "drift.json").read_text(encoding="utf-8"))
                if name == "unchanged":
                    before = pd.read_parquet(root / "r1" / "assignments.parquet")
                    after = pd.read_parquet(root / name / "assignments.parquet")
                    b = before.set_index("index")["segment_id"]
                    a = after.set_index("index")["segment_id"]
                    row["unchanged_same_id"] = round(float((a == b.loc[a.index]).mean()), 4)
                    row["unchanged_new_gone"] = (drift["new"], drift["gone"])
                    row["unchanged_novelty"] = drift["novelty_share"]
                else:
                    grown = max(
                        (s for s in drift["segments"] if s["after"] is not None),
                        key=lambda s: s["change"]["share"] if s["change"]["share"] is not None
                        else s["after"]["share"],
                    )  # fmt: skip
                    row["planted_grown"] = {
                        "id": grown["id"],
                        "status": grown["status"],
                        "share_change": grown["change"]["share"],
                        "negative_share": grown["after"]["negative_share"],
                    }
                    terms = [t["term"] for t in drift["complaints_rising"]]
                    row["planted_battery_term_rank"] = min(
                        (terms.index(t) + 1 for t in ("pin", "sạc") if t in terms), default=None
                    )
            results.append(row)
            print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
