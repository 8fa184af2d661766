"""``recommended_items``: products a customer has not bought yet, from the orders' item ids.

Two recommenders on the purchase lines of :func:`nlp_seg.behavior.tables.read_orders` (rows
with ``purchase`` and an ``item_id``):

* ``popularity``: the items most customers *of the customer's segment* bought,
  then the shop's best sellers to fill up, never one the customer already bought;
* ``als`` (default): implicit-feedback matrix factorisation (``implicit``'s alternating least
  squares, Hu, Koren & Volinsky 2008) on the customer x item purchase counts, with the same filter;
  customers it knows nothing about (no purchase with an item) get the popularity list, and
  a list ALS leaves short is topped up from it. ``factors`` and ``regularization`` are small /
  strong because a shop's customers buy a handful of items each (see the benchmark).

``scripts/eval_recommend.py`` measures both on a time split; the README has the figures.
Nothing is saved: recommendations are computed at run time from the orders given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.errors import InputError

RECOMMENDERS = ("popularity", "als")
#: ALS, measured better on the time split of scripts/eval_recommend.py (README).
DEFAULT_RECOMMENDER = "als"
#: Separator of the ids in the ``recommended_items`` cell.
ITEM_SEPARATOR = ";"


def check_recommender(name: str) -> str:
    """The recommender's name, or one line naming the choices (before any work is done)."""
    if name not in RECOMMENDERS:
        raise InputError(f"unknown --recommender {name!r}; choose one of {', '.join(RECOMMENDERS)}")
    return name


def purchase_lines(orders: pd.DataFrame | None) -> pd.DataFrame:
    """``customer_key, item_id`` of the purchases that name an item (empty without items)."""
    if orders is None or "item_id" not in orders or orders["item_id"].isna().all():
        return pd.DataFrame({"customer_key": [], "item_id": []}, dtype=object)
    keep = orders["purchase"] & orders["item_id"].notna() & orders["customer_key"].notna()
    return orders.loc[keep, ["customer_key", "item_id"]].reset_index(drop=True)


def _ranked(lines: pd.DataFrame) -> list[str]:
    """Items by number of distinct buyers, most first (ties by id, so runs repeat)."""
    if lines.empty:
        return []
    buyers = lines.drop_duplicates().groupby("item_id").size()
    frame = buyers.rename("n").reset_index().sort_values(["n", "item_id"], ascending=[False, True])
    return frame["item_id"].astype(str).tolist()


def _fill(ranked: list[str], bought: set[str], n: int, taken: list[str] | None = None) -> list[str]:
    out = list(taken or [])
    for item in ranked:
        if len(out) >= n:
            break
        if item not in bought and item not in out:
            out.append(item)
    return out


def popularity_recommend(
    lines: pd.DataFrame, segment_of: Mapping[str, Any], n: int = 10
) -> dict[str, list[str]]:
    """Per customer of ``segment_of`` (customer key -> segment id): the items most buyers of
    that segment bought, then the overall best sellers, leaving out what the customer bought."""
    bought = lines.groupby("customer_key")["item_id"].agg(set).to_dict() if len(lines) else {}
    overall = _ranked(lines)
    seg = pd.Series(segment_of, dtype=object)
    by_segment: dict[Any, list[str]] = {}
    if len(lines):
        in_seg = lines.assign(segment=lines["customer_key"].map(seg))
        for sid, group in in_seg.dropna(subset=["segment"]).groupby("segment"):
            by_segment[sid] = _ranked(group[["customer_key", "item_id"]])
    out: dict[str, list[str]] = {}
    for key, sid in seg.items():
        own = bought.get(key, set())
        picks = _fill(by_segment.get(sid, []), own, n)
        out[str(key)] = _fill(overall, own, n, picks)
    return out


def als_recommend(
    lines: pd.DataFrame,
    segment_of: Mapping[str, Any],
    n: int = 10,
    *,
    seed: int = 42,
    factors: int = 16,
    iterations: int = 20,
    regularization: float = 5.0,
) -> dict[str, list[str]]:
    """Per customer of ``segment_of``: ``implicit`` ALS recommendations (already-bought items
    filtered out), the popularity list for customers without a purchase line."""
    out = popularity_recommend(lines, segment_of, n)
    if lines.empty:
        return out
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    users = pd.Index(sorted(lines["customer_key"].astype(str).unique()))
    items = pd.Index(sorted(lines["item_id"].astype(str).unique()))
    counts = lines.groupby(["customer_key", "item_id"]).size()
    rows = users.get_indexer(counts.index.get_level_values(0).astype(str))
    cols = items.get_indexer(counts.index.get_level_values(1).astype(str))
    matrix = csr_matrix(
        (counts.to_numpy(dtype=np.float32), (rows, cols)), shape=(len(users), len(items))
    )
    wanted = [str(k) for k in segment_of if str(k) in users]
    if not wanted:
        return out
    # implicit runs its own threads; BLAS threads on top of them only oversubscribe the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=min(factors, max(len(items) - 1, 1)),
            iterations=iterations,
            regularization=regularization,
            random_state=seed,
            use_gpu=False,
        )
        model.fit(matrix, show_progress=False)
        ids = users.get_indexer(wanted)
        recs, _ = model.recommend(
            ids, matrix[ids], N=min(n, len(items)), filter_already_liked_items=True
        )
    for key, row in zip(wanted, np.atleast_2d(recs), strict=True):
        picks = [str(items[i]) for i in row if 0 <= i < len(items)]
        bought = set(lines.loc[lines["customer_key"].astype(str) == key, "item_id"].astype(str))
        picks = [p for p in picks if p not in bought]
        out[key] = _fill(out[key], bought, n, picks)  # top up a short list with popularity
    return out


def recommend_items(
    orders: pd.DataFrame | None,
    segment_of: Mapping[str, Any],
    *,
    method: str = DEFAULT_RECOMMENDER,
    n: int = 10,
    seed: int = 42,
) -> dict[str, list[str]]:
    """``recommended_items`` per customer key of ``segment_of`` with the named recommender;
    empty lists when the orders have no item column."""
    check_recommender(method)
    lines = purchase_lines(orders)
    if method == "als":
        return als_recommend(lines, segment_of, n, seed=seed)
    return popularity_recommend(lines, segment_of, n)
