"""Benchmark of ``recommended_items``: segment popularity vs implicit ALS on a time split.

Train on the purchases before a cutoff date (a quantile of the order dates), then ask each
recommender for the top ``k`` items of every customer who bought before *and* after the
cutoff; the truth is the items bought after the cutoff that the customer had not bought
before (a recommender never proposes what was bought). Metrics over those customers:

* hit-rate@k: share of customers with at least one truth item in their top k;
* recall@k: mean of |top k ∩ truth| / |truth|.

Usage::

    python scripts/eval_recommend.py ORDERS.csv [--item-col COL] [--assignments OUT/assignments.csv]
    python scripts/eval_recommend.py examples/orders.csv --synthesize-items  # see below

``--assignments`` (an ``nlpseg analyze --unit customer`` output) gives each customer's segment
for the popularity baseline; without it every customer is in one segment (shop best sellers).
The real corpora in ../shared/data have no item ids; ``--synthesize-items`` gives each order
of a file an item id drawn from a seeded generator (Zipf popularity, customers in taste
groups with their own favourite items, repeat purchases), so the numbers measure the code on
a plausible shape, not real shoppers: say so wherever they are quoted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlp_seg.behavior.recommend import RECOMMENDERS, purchase_lines, recommend_items  # noqa: E402
from nlp_seg.behavior.tables import id_keys, read_orders  # noqa: E402


def synthesize_items(
    orders: pd.DataFrame, n_items: int = 60, n_tastes: int = 4, seed: int = 0
) -> pd.DataFrame:
    """Orders with a seeded ``item_id``: every customer has a taste group (its own favourite
    items) and re-buys a favourite now and then; otherwise a Zipf-popular item."""
    rng = np.random.default_rng(seed)
    customers = sorted(orders["customer_key"].dropna().unique())
    taste = dict(zip(customers, rng.integers(0, n_tastes, len(customers)), strict=True))
    favourites = {t: rng.choice(n_items, size=8, replace=False) for t in range(n_tastes)}
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1
    popularity /= popularity.sum()
    items = []
    for key in orders["customer_key"].tolist():
        if key is None:
            items.append(None)
            continue
        roll = rng.random()
        if roll < 0.55:
            items.append(f"P{int(rng.choice(favourites[taste[key]])):03d}")
        else:
            items.append(f"P{int(rng.choice(n_items, p=popularity)):03d}")
    return orders.assign(item_id=items)


def evaluate(
    orders: pd.DataFrame,
    segment_of: dict[str, int],
    k: int = 10,
    cutoff_quantile: float = 0.8,
    seed: int = 42,
) -> dict[str, object]:
    lines = orders.loc[orders["purchase"] & orders["item_id"].notna()]
    cutoff = lines["order_date"].quantile(cutoff_quantile)
    train = orders.loc[orders["order_date"] < cutoff]
    test = lines.loc[lines["order_date"] >= cutoff]
    bought_before = purchase_lines(train).groupby("customer_key")["item_id"].agg(set).to_dict()
    truth: dict[str, set[str]] = {}
    for key, group in test.groupby("customer_key"):
        if key in bought_before:
            new = set(group["item_id"]) - bought_before[key]
            if new:
                truth[key] = new
    segments = {key: segment_of.get(key, 0) for key in bought_before}
    results: dict[str, object] = {
        "cutoff": str(pd.Timestamp(cutoff).date()),
        "train_lines": int(len(purchase_lines(train))),
        "test_customers": len(truth),
        "items": int(lines["item_id"].nunique()),
        "k": k,
    }
    for method in RECOMMENDERS:
        t0 = time.perf_counter()
        recs = recommend_items(train, segments, method=method, n=k, seed=seed)
        seconds = time.perf_counter() - t0
        hits = [len(set(recs.get(key, [])[:k]) & items) for key, items in truth.items()]
        sizes = [len(items) for items in truth.values()]
        results[method] = {
            f"hit_rate@{k}": round(float(np.mean([h > 0 for h in hits])), 4) if hits else None,
            f"recall@{k}": round(float(np.mean(np.divide(hits, sizes))), 4) if hits else None,
            "seconds": round(seconds, 3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("orders", type=Path)
    parser.add_argument("--item-col")
    parser.add_argument("--assignments", type=Path, help="customer-unit assignments.csv")
    parser.add_argument("--synthesize-items", action="store_true")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cutoff-quantile", type=float, default=0.8)
    parser.add_argument("--seeds", type=int, default=3, help="synthetic corpora to average")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    orders, _, _ = read_orders(args.orders, item_col=args.item_col)
    segment_of: dict[str, int] = {}
    if args.assignments is not None:
        table = pd.read_csv(args.assignments, dtype={"customer_id": str})
        keys = id_keys(table["customer_id"])
        segment_of = dict(zip(keys, table["segment_id"].astype(int), strict=True))
    runs = []
    seeds = range(args.seeds) if args.synthesize_items else [0]
    for seed in seeds:
        data = synthesize_items(orders, seed=seed) if args.synthesize_items else orders
        if data["item_id"].isna().all():
            raise SystemExit(f"{args.orders} has no item id column: name it with --item-col")
        runs.append(evaluate(data, segment_of, args.k, args.cutoff_quantile))
    report = {
        "orders": str(args.orders),
        "synthetic_items": bool(args.synthesize_items),
        "segments_from": str(args.assignments) if args.assignments else "one segment",
        "runs": runs,
    }
    for method in RECOMMENDERS:
        for metric in (f"hit_rate@{args.k}", f"recall@{args.k}"):
            vals = [r[method][metric] for r in runs if r[method][metric] is not None]
            report.setdefault("mean", {}).setdefault(method, {})[metric] = (
                round(float(np.mean(vals)), 4) if vals else None
            )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
