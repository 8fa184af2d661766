"""Texts + orders + events -> review-level or customer-level segments with behaviour.

``nlpseg analyze reviews.csv --orders orders.csv [--events events.csv] --unit review|customer``
lands here (via :func:`nlp_seg.runs.jobs.analyze_file`). The steps:

1. read and clean the orders and events (:mod:`nlp_seg.behavior.tables`), join them to the texts by
   customer id, and report ids that match nothing;
2. normalise and encode the texts once (embedding + sentiment), tag benefits sought
   (:mod:`nlp_seg.behavior.benefits`);
3. per customer: order/event features, CLV (:mod:`nlp_seg.behavior.clv`), review features, value and
   loyalty tiers (:class:`nlp_seg.stages.naming.TierRules`);
4. ``--unit review``: every review row gets its customer's features; ``--unit customer``: a
   customer's texts are pooled (mean embedding re-normalised, mean sentiment probabilities)
   and every customer appears once, those without text segmented on behaviour alone
   (``status = no_text``);
5. :meth:`nlp_seg.segmenter.Segmenter.fit_encoded` fuses, reduces, clusters, names (with tier
   qualifiers) and profiles.

The in-memory entry point :func:`segment_with_behavior` takes already-encoded texts, so the
evaluation (scripts/eval_behavior.py) and the tests run exactly this code on precomputed
embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.behavior.tables import (
    BLOCK_FEATURES,
    EVENT_FEATURES,
    ORDER_FEATURES,
    REVIEW_FEATURES,
    customer_features,
    find_rating_column,
    id_keys,
    join_report,
    read_events,
    read_orders,
    review_features,
)
from nlp_seg.errors import InputError
from nlp_seg.io.read import ColumnSpec
from nlp_seg.normalize import STATUS_OK
from nlp_seg.progress import StageTimer
from nlp_seg.segmenter import ASSIGNMENT_COLUMNS, Segmenter

UNITS = ("review", "customer")
STATUS_NO_TEXT = "no_text"
#: Columns added before the contract's assignment columns, in this order.
CLV_COLUMNS = ("clv", "clv_method")
TIER_COLUMNS = ("value_tier", "loyalty_tier", "benefit_sought")


@dataclass
class BehaviorOptions:
    """Where the behaviour comes from and at which unit to segment."""

    orders: str | Path | None = None
    events: str | Path | None = None
    unit: str = "review"
    orders_id_col: str | None = None
    orders_date_col: str | None = None
    orders_amount_col: str | None = None
    #: Item / product / SKU id column of the orders (auto-detected): ``recommended_items``.
    orders_item_col: str | None = None
    #: ``popularity`` or ``als`` (see :mod:`nlp_seg.behavior.recommend`).
    recommender: str = "als"
    recommend_n: int = 10
    events_id_col: str | None = None
    events_type_col: str | None = None
    events_time_col: str | None = None
    encoding: str | None = None
    clv_horizon_days: int = 365
    benefits: bool = True
    #: Contact columns named on the command line (``--email-col`` / ``--phone-col``); else
    #: detected as the audiences do. ``--unit customer`` carries them per customer.
    email_col: str | None = None
    phone_col: str | None = None

    @property
    def active(self) -> bool:
        return self.orders is not None or self.events is not None or self.unit != "review"


@dataclass
class BehaviorResult:
    """What :func:`segment_with_behavior` produced: the output table and run metadata."""

    table: pd.DataFrame
    naming_rules: dict[str, Any]
    info: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: The cleaned orders (with ``item_id`` when found), for ``recommended_items``.
    orders: pd.DataFrame | None = None
    recommender: str = "als"
    recommend_n: int = 10
    #: The behaviour features each output row was placed with (NaN: unknown), for
    #: ``behavior_missing``; set by ``assign``.
    block: pd.DataFrame | None = None


def load_behavior(
    opts: BehaviorOptions,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any], list[str]]:
    """Read the orders and events files named in ``opts``."""
    from nlp_seg.io.database import input_record

    orders = events = None
    info: dict[str, Any] = {}
    warnings: list[str] = []
    if opts.orders is not None:
        orders, cols, w = read_orders(
            opts.orders,
            id_col=opts.orders_id_col,
            date_col=opts.orders_date_col,
            amount_col=opts.orders_amount_col,
            item_col=opts.orders_item_col,
            encoding=opts.encoding,
        )
        info["orders"] = {
            **input_record(opts.orders),
            "rows": len(orders),
            "purchases": int(orders["purchase"].sum()),
            "columns": cols,
        }
        warnings += w
    if opts.events is not None:
        events, cols, w = read_events(
            opts.events,
            id_col=opts.events_id_col,
            type_col=opts.events_type_col,
            time_col=opts.events_time_col,
            encoding=opts.encoding,
        )
        info["events"] = {
            **input_record(opts.events),
            "rows_used": len(events),
            "columns": cols,
        }
        if cols.get("schema") == "ga4_bigquery_export":
            info["events"]["schema"] = (
                "GA4 BigQuery export (detected by its columns): customer = "
                f"{cols['id']}, event_timestamp in microseconds, event names mapped"
            )
        warnings += w
    return orders, events, info, warnings


def segment_with_behavior(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    clean: list[str],
    status: np.ndarray,
    embeddings: np.ndarray,
    probs: np.ndarray,
    *,
    orders: pd.DataFrame | None,
    events: pd.DataFrame | None,
    unit: str = "review",
    benefit_embed: Any = None,
    clv_horizon_days: int = 365,
    text_file: str = "the texts",
    timer: StageTimer | None = None,
    contact_cols: tuple[str | None, ...] = (),
) -> BehaviorResult:
    """Fit ``seg`` on encoded texts joined with behaviour; returns the output table.

    ``benefit_embed`` (a function from texts to embedding rows, the same encoder as
    ``embeddings``) enables benefit tagging; ``None`` leaves ``benefit_sought`` empty.
    ``contact_cols`` (e-mail / phone columns of ``frame``) are carried into the
    customer-level table, first non-empty value per customer, so that customer audiences
    get hashed contacts; review-level tables keep every input column anyway.
    """
    timer = timer or StageTimer()
    if unit not in UNITS:
        raise InputError(f"unknown --unit {unit!r}; choose review or customer")
    if spec.id is None:
        raise InputError(
            "--orders, --events and --unit customer need a customer id column in "
            f"{text_file}; name it with --id-col"
        )
    warnings: list[str] = []
    keys = id_keys(frame[spec.id]).reset_index(drop=True)
    n_missing = int(keys.isna().sum())
    ok = np.asarray(status, dtype=object) == STATUS_OK

    with timer("behavior_features"):
        feats, ref, clv_info, w = customer_features(orders, events, horizon_days=clv_horizon_days)
        warnings += w
        for name, table in (("orders", orders), ("events", events)):
            if table is not None:
                tkeys = pd.Index(table["customer_key"].dropna().unique())
                if name == "orders":
                    tkeys = pd.Index(table.loc[table["purchase"], "customer_key"].unique())
                warnings += join_report(
                    keys, tkeys, source=f"the {name}", text_file=text_file, text_id_col=spec.id
                )
    if n_missing:
        warnings.append(
            f"{n_missing} rows in {text_file} have no customer id; they are kept "
            + (
                "without behaviour features"
                if unit == "review"
                else "each as a customer of its own (customer_id empty)"
            )
        )

    # Benefits per text.
    tags_per_row: list[list[str]] = [[] for _ in range(len(frame))]
    benefit_info: dict[str, Any] | None = None
    if benefit_embed is not None and ok.any():
        from nlp_seg.behavior.benefits import BenefitTagger

        with timer("benefits"):
            tagger = BenefitTagger().fit(benefit_embed, embeddings[ok])
            for i, t in zip(np.flatnonzero(ok), tagger.tags(embeddings[ok]), strict=True):
                tags_per_row[i] = t
            benefit_info = tagger.describe()

    rating_col = find_rating_column(frame, exclude=(spec.text, spec.id))
    rf = _review_block(frame, spec, keys, ok, probs, rating_col)

    if unit == "review":
        result = _review_unit(
            seg,
            frame,
            spec,
            clean,
            status,
            embeddings,
            probs,
            keys,
            feats,
            rf,
            tags_per_row,
            timer,
        )
    else:
        result = _customer_unit(
            seg,
            frame,
            spec,
            clean,
            status,
            embeddings,
            probs,
            keys,
            feats,
            rf,
            tags_per_row,
            timer,
            rating_col,
            [c for c in dict.fromkeys(contact_cols) if c is not None and c in frame.columns],
        )
    table, rules, n_customers, block_cols = result
    from nlp_seg.stages.naming import NAME_SEPARATOR, naming_rules

    naming = naming_rules(rules, reference_date=str(ref.date()), separator=NAME_SEPARATOR)
    info = {
        "unit": unit,
        "customers": n_customers,
        "reference_date": str(ref.date()),
        "rating_column": rating_col,
        "features": [c for c in table.columns if c in _ALL_FEATURES],
        "behavior_block": block_cols,
        "clv": clv_info,
        "tier_rules": rules,
        "benefits": benefit_info,
    }
    # What `nlpseg assign` needs to compute the same features for new rows (saved with
    # --save-model under "behavior" in segmenter.json).
    seg.behavior_setup_ = {
        "unit": unit,
        "sources": [k for k, v in (("orders", orders), ("events", events)) if v is not None],
        "clv_horizon_days": clv_horizon_days,
        "reference_date": str(ref.date()),
        "block_columns": block_cols,
        "rating_column": rating_col,
        "tier_rules": rules or None,
        "clv_params": clv_info.get("params") if clv_info.get("used") == "bgnbd_gg" else None,
    }
    return BehaviorResult(table, naming, info, warnings)


_ALL_FEATURES = (*ORDER_FEATURES, *EVENT_FEATURES, *REVIEW_FEATURES, *CLV_COLUMNS)


def _review_block(
    frame: pd.DataFrame,
    spec: ColumnSpec,
    keys: pd.Series,
    ok: np.ndarray,
    probs: np.ndarray,
    rating_col: str | None,
) -> pd.DataFrame:
    """Per-customer review features (count, rating, sentiment mean and trend) from the scored
    rows: one function for fit and assign, so a saved model sees the features it was fit on."""
    scores = np.where(ok, probs[:, 2] - probs[:, 0], np.nan)
    date_col = spec.date if spec.date in frame.columns else None
    return review_features(
        keys,
        scores,
        frame[rating_col] if rating_col else None,
        frame[date_col] if date_col else None,
    )


def _feature_table(feats: pd.DataFrame, rf: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Features in contract order for the customers in ``index`` (NaN where unknown)."""
    out = pd.DataFrame(index=index)
    for c in ORDER_FEATURES + EVENT_FEATURES:
        if c in feats.columns and feats[c].notna().any():
            out[c] = feats[c].reindex(index)
    for c in REVIEW_FEATURES:
        if c in rf.columns and rf[c].notna().any():
            out[c] = rf[c].reindex(index)
    if "review_count" in out:
        out["review_count"] = out["review_count"].fillna(0.0)
    if "frequency" in feats.columns:
        # A reviewer absent from the orders has bought nothing (as far as the orders know).
        for c in ("frequency", "monetary"):
            if c in out:
                out[c] = out[c].fillna(0.0)
    for c in CLV_COLUMNS:
        if c in feats.columns:
            out[c] = feats[c].reindex(index)
    if "clv" in out:
        out["clv"] = out["clv"].fillna(0.0)
        out["clv_method"] = out["clv_method"].fillna("no_orders")
    return out


def _tiers(features: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    from nlp_seg.stages.naming import TierRules

    if "frequency" not in features:
        return pd.DataFrame(index=features.index), {}
    rules = TierRules().fit(features)
    vt, lt = rules.assign(features)
    return pd.DataFrame({"value_tier": vt, "loyalty_tier": lt}), rules.to_dict()


def _block(features: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """The behaviour block: order/event features and CLV, plus the texts' own behaviour
    columns (e.g. a star rating); all-missing columns are left out."""
    cols = [c for c in BLOCK_FEATURES if c in features and features[c].notna().any()]
    block = features[cols].astype(float).reset_index(drop=True)
    if extra is not None:
        for c in extra.columns:
            if c not in block and pd.to_numeric(extra[c], errors="coerce").notna().any():
                block[c] = pd.to_numeric(extra[c], errors="coerce").to_numpy()
    return block


def _review_unit(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    clean: list[str],
    status: np.ndarray,
    embeddings: np.ndarray,
    probs: np.ndarray,
    keys: pd.Series,
    feats: pd.DataFrame,
    rf: pd.DataFrame,
    tags: list[list[str]],
    timer: StageTimer,
) -> tuple[pd.DataFrame, dict[str, Any], int, list[str]]:
    from nlp_seg.behavior.benefits import join_tags

    customers = pd.Index(sorted(set(keys.dropna()) | set(feats.index)))
    per_customer = _feature_table(feats, rf, customers)
    tiers, rules = _tiers(per_customer)
    per_customer = per_customer.join(tiers)
    rows = per_customer.reindex(keys.where(keys.notna(), "\0missing")).reset_index(drop=True)
    for c in ("value_tier", "loyalty_tier"):
        if c in rows:
            rows[c] = rows[c].fillna("unknown")
    rows["benefit_sought"] = [join_tags(t) for t in tags]
    extra = frame[list(spec.behavior)].reset_index(drop=True) if spec.behavior else None
    block = _block(rows, extra)
    seg.fit_encoded(
        clean,
        status,
        embeddings,
        probs,
        behavior=block if block.shape[1] else None,
        timer=timer,
        row_info=rows[[c for c in (*TIER_COLUMNS,) if c in rows]],
    )
    from nlp_seg.io.write import merge_input_and_assignments

    added = rows.reset_index(drop=True)
    base = frame.reset_index(drop=True)
    base = base.rename(columns={c: f"input_{c}" for c in base.columns if c in added.columns})
    left = pd.concat([base, added], axis=1)
    table = merge_input_and_assignments(left, seg.assignments_, ASSIGNMENT_COLUMNS)
    return table, rules, len(customers), list(block.columns)


def _customer_owners(keys: pd.Series, extra_customers: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The customers in output order (those of the texts first, in order of appearance, then
    ``extra_customers`` known only from the orders/events) and each text row's customer
    position; a row without id is a customer of its own (key ``"\\0row<i>"``)."""
    owner = keys.copy()
    missing = owner.isna()
    owner[missing] = [f"\0row{i}" for i in np.flatnonzero(missing)]
    first_seen = list(dict.fromkeys(owner.tolist()))
    order = first_seen + sorted(set(extra_customers) - set(first_seen))
    pos = pd.Series(np.arange(len(order)), index=pd.Index(order))
    return order, pos.reindex(owner).to_numpy()


def _pool_customers(
    row_owner: np.ndarray, m: int, embeddings: np.ndarray, probs: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: pooled embedding (mean, re-normalised), mean sentiment probabilities
    (NaN without text), the probabilities to fuse (the text customers' mean without text) and
    whether the customer wrote anything. Customers without text get a zero text vector: the
    same point for all of them, at the same distance from every writer (writers' vectors have
    unit length), so they form segments of their own (named ``silent``) told apart by their
    behaviour, and a customer's place does not depend on who else is in the batch."""
    dim = embeddings.shape[1]
    emb = np.zeros((m, dim), np.float32)
    prob = np.zeros((m, 3))
    count = np.zeros(m)
    if ok.any():
        np.add.at(emb, row_owner[ok], embeddings[ok])
        np.add.at(prob, row_owner[ok], probs[ok])
        np.add.at(count, row_owner[ok], 1)
    has_text = count > 0
    if dim:
        emb[has_text] /= np.maximum(np.linalg.norm(emb[has_text], axis=1, keepdims=True), 1e-12)
    prob[has_text] /= count[has_text, None]
    prob[~has_text] = np.nan
    probs_fit = prob.copy()
    if has_text.any():
        probs_fit[~has_text] = prob[has_text].mean(axis=0)
    return emb, prob, probs_fit, has_text


def _customer_unit(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    clean: list[str],
    status: np.ndarray,
    embeddings: np.ndarray,
    probs: np.ndarray,
    keys: pd.Series,
    feats: pd.DataFrame,
    rf: pd.DataFrame,
    tags: list[list[str]],
    timer: StageTimer,
    rating_col: str | None = None,
    contacts: list[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], int, list[str]]:
    from nlp_seg.behavior.benefits import join_tags, pool_tags

    n = len(frame)
    # Customer of each row: its id, or a customer of its own when the id is missing.
    order, row_owner = _customer_owners(keys, list(feats.index))
    index = pd.Index(order)
    m = len(order)

    ok = np.asarray(status, dtype=object) == STATUS_OK
    emb, prob, probs_fit, has_text = _pool_customers(row_owner, m, embeddings, probs, ok)
    cust_status = np.where(has_text, STATUS_OK, STATUS_NO_TEXT).astype(object)

    texts_by_owner: list[list[str]] = [[] for _ in range(m)]
    rows_by_owner: list[list[str]] = [[] for _ in range(m)]
    for i in range(n):
        rows_by_owner[row_owner[i]].append(str(i))
        if ok[i]:
            texts_by_owner[row_owner[i]].append(clean[i])
    joined = [" | ".join(t) for t in texts_by_owner]

    feat_keys = pd.Index([k if not str(k).startswith("\0row") else None for k in order])
    per_customer = _feature_table(feats, rf, feat_keys)
    per_customer.index = index
    if "review_count" in per_customer:
        per_customer["review_count"] = [float(len(r)) for r in rows_by_owner]
    tiers, rules = _tiers(per_customer)
    per_customer = per_customer.join(tiers)
    pooled = pool_tags([tags[i] for i in range(n)], list(row_owner))
    per_customer["benefit_sought"] = [join_tags(pooled.get(j, [])) for j in range(m)]

    extra = None
    # The texts' own behaviour columns, averaged per customer; a star rating is already
    # there as avg_rating.
    extra_cols = [c for c in spec.behavior if c != rating_col]
    if extra_cols:
        num = frame[extra_cols].apply(pd.to_numeric, errors="coerce")
        extra = num.groupby(row_owner).mean().reindex(range(m)).reset_index(drop=True)
    block = _block(per_customer, extra)
    if rating_col in spec.behavior and "avg_rating" in per_customer:
        block["avg_rating"] = per_customer["avg_rating"].to_numpy(dtype=float)
    seg.fit_encoded(
        joined,
        cust_status,
        emb,
        probs_fit if has_text.any() else np.zeros((m, 3)),
        behavior=block if block.shape[1] else None,
        segmentable=np.ones(m, dtype=bool),
        timer=timer,
        row_info=per_customer[[c for c in TIER_COLUMNS if c in per_customer]].reset_index(
            drop=True
        ),
    )
    ids = [None if str(k).startswith("\0row") else k for k in order]
    out = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            spec.text: pd.array([j if j else None for j in joined], dtype="string"),
            "review_rows": pd.array(
                [";".join(r) if r else None for r in rows_by_owner], dtype="string"
            ),
        }
    )
    for c in contacts or []:
        # First non-empty value per customer, as read (a phone read as a number stays one).
        vals = frame[c].reset_index(drop=True)
        filled = vals.astype("string").str.strip().fillna("") != ""
        first = vals.where(filled).groupby(row_owner).first().reindex(range(m))
        out[c] = first.to_numpy()
    feats_out = per_customer.reset_index(drop=True)
    if extra is not None:
        for c in extra.columns:
            if c not in feats_out:
                feats_out[c] = extra[c].to_numpy()
    table = pd.concat([out, feats_out, seg.assignments_.reset_index(drop=True)], axis=1)
    return table, rules, m, list(block.columns)


def run_behavior_job(
    seg: Segmenter, frame: pd.DataFrame, spec: ColumnSpec, opts: BehaviorOptions, text_file: str
) -> BehaviorResult:
    """The file-level run behind ``nlpseg analyze --orders/--events/--unit``: read the
    behaviour files, encode the texts once, segment (see :func:`run_behavior_job_encoded`)."""
    check_behavior_inputs(spec, opts, text_file)
    timer = StageTimer()
    with timer("read_behavior"):
        loaded = load_behavior(opts)
    encoded = seg.encode_rows(frame[spec.text].tolist(), timer)
    return run_behavior_job_encoded(
        seg, frame, spec, opts, text_file, encoded, loaded=loaded, timer=timer
    )


def text_only_warning(setup: dict[str, Any], refused: bool = False) -> str:
    """Why ``nlpseg assign`` without the behaviour files places rows on text alone, or
    (``refused``) why it will not unless told to."""
    flags = " / ".join(f"--{s}" for s in setup.get("sources") or ["orders"])
    computed = [c for c in setup.get("block_columns") or [] if c in BLOCK_FEATURES]
    unit = setup.get("unit", "review")
    if refused:
        at_median = (
            f" (the features {', '.join(computed)} at the fitted median)" if computed else ""
        )
        return (
            f"this segmenter was fitted with {flags} (unit {unit}) but none was given: pass "
            f"{flags} to place with behaviour, or --allow-missing-behavior to place on text "
            f"alone{at_median}"
        )
    return (
        f"this segmenter was fitted with {flags} (unit {unit}) but none was given: placement "
        f"is text-only, the features {', '.join(computed)} count as missing (the fitted "
        "median)"
        + ("" if unit == "review" else " and rows are placed one by one, not per customer")
        + f"; pass {flags} to place with behaviour"
    )


@dataclass
class BehaviorAssignment:
    """What :func:`assign_behavior_encoded` produced: one row per placed unit (an input row at
    the review unit, a customer at the customer unit), in output order."""

    #: The output table, as ``nlpseg assign`` writes it.
    table: pd.DataFrame
    #: The behaviour features the rows were placed with (the model's behaviour columns, before
    #: scaling); NaN where unknown, which placement reads as the fitted median.
    block: pd.DataFrame
    #: Positions of the input rows behind each output row.
    rows: list[list[int]]
    #: Whether each output row had text to place.
    has_text: np.ndarray
    info: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def assign_behavior_encoded(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    clean: list[str],
    status: np.ndarray,
    embeddings: np.ndarray,
    probs: np.ndarray,
    *,
    orders: pd.DataFrame | None,
    events: pd.DataFrame | None,
    orders_of: Any = None,
    events_of: Any = None,
    frame_fills: bool = False,
    reference_date: pd.Timestamp | None = None,
    timer: StageTimer | None = None,
) -> BehaviorAssignment:
    """Place already-encoded rows with a segmenter saved from a behaviour run: the core of
    ``nlpseg assign --orders/--events`` (files) and of ``nlpseg serve`` (request JSON).

    ``frame`` holds the rows (``spec.id`` the customer id; a rating or other behaviour columns
    the model uses, by name); ``clean``, ``status``, ``embeddings``, ``probs`` are what
    :meth:`Segmenter.encode_rows` gives for its texts; ``orders`` / ``events`` are in the shape
    :func:`~nlp_seg.behavior.tables.read_orders` / ``read_events`` return. The features have
    the fit's definitions (CLV from the *saved* BG/NBD + Gamma-Gamma parameters, tiers from the
    *saved* thresholds), are computed at the saved unit (a customer's rows pooled at the
    customer unit) and placed with the fitted fuser and neighbours.

    A file's orders and events are taken as the whole history: a customer absent from them
    has bought nothing. ``orders_of`` / ``events_of`` (customer keys) say instead whose orders
    / events are known at all; the others' order / event features are unknown (NaN: the fitted
    median) and their tiers ``unknown``. ``frame_fills`` lets behaviour columns of ``frame``
    named like a computed feature (``frequency``, ``clv``, ``avg_rating``...) fill what the
    orders / events leave unknown. ``reference_date`` measures recency and tenure from that
    date instead of the data's latest one.
    """
    from nlp_seg.segmenter import build_assignments
    from nlp_seg.stages.naming import TierRules

    setup: dict[str, Any] = getattr(seg, "behavior_setup_", None) or {}
    timer = timer or StageTimer()
    unit = str(setup.get("unit", "review"))
    warnings: list[str] = []
    with timer("behavior_features"):
        feats, ref, clv_info, w = customer_features(
            orders,
            events,
            horizon_days=int(setup.get("clv_horizon_days", 365)),
            clv_params=setup.get("clv_params"),
            ref=reference_date,
        )
        warnings += w
    keys = id_keys(frame[spec.id]).reset_index(drop=True)
    n = len(frame)
    wanted = list(seg.behavior_scaler_.columns_) if seg.behavior_scaler_ is not None else []
    ok = np.asarray(status, dtype=object) == STATUS_OK
    rating_col = setup.get("rating_column")
    rating_col = rating_col if rating_col in frame.columns else None
    rf = _review_block(frame, spec, keys, ok, probs, rating_col)
    rules = TierRules.from_dict(setup["tier_rules"]) if setup.get("tier_rules") else None
    extra_cols = [c for c in wanted if c in frame.columns and c not in BLOCK_FEATURES]
    given = None
    if frame_fills:
        given = frame.reindex(columns=wanted).reset_index(drop=True)
        given = given.apply(pd.to_numeric, errors="coerce").astype(float)

    def features(index: pd.Index) -> pd.DataFrame:
        """Features and tiers of the customers in ``index``, unknown where not given."""
        table = _feature_table(feats, rf, index)
        no_orders = ~index.isin(list(orders_of)) if orders_of is not None else None
        if no_orders is not None:
            for c in ("frequency", "monetary", "clv"):  # known to have bought nothing: 0
                table[c] = table[c].fillna(0.0) if c in table else 0.0
            table["clv_method"] = (
                table["clv_method"].astype(object).fillna("no_orders")
                if "clv_method" in table
                else "no_orders"
            )
            for c in (*ORDER_FEATURES, "clv"):
                if c in table:
                    table.loc[no_orders, c] = np.nan
            table.loc[no_orders, "clv_method"] = None
        if events_of is not None:
            no_events = ~index.isin(list(events_of))
            for c in EVENT_FEATURES:
                if c in table:
                    table.loc[no_events, c] = np.nan
        if rules is not None:
            vt, lt = rules.assign(table)
            table = table.assign(value_tier=vt, loyalty_tier=lt)
            if no_orders is not None:
                table.loc[no_orders, ["value_tier", "loyalty_tier"]] = "unknown"
        return table

    names = {s["id"]: s["name"] for s in seg.segments_}
    if unit == "review":
        customers = pd.Index(sorted(set(keys.dropna()) | set(feats.index)))
        per_customer = features(customers)
        rows = per_customer.reindex(keys.where(keys.notna(), "\0missing")).reset_index(drop=True)
        for c in ("value_tier", "loyalty_tier"):
            if c in rows:
                rows[c] = rows[c].fillna("unknown")
        extra = frame[extra_cols].reset_index(drop=True) if extra_cols else None
        block = _block(rows, extra).reindex(columns=wanted)
        if given is not None:
            block = block.fillna(given)
        labels = np.full(n, -1, dtype=int)
        strength = np.zeros(n)
        outlier = np.zeros(n, dtype=bool)
        if ok.any():
            with timer("assign"):
                lab, st, out = seg.place_encoded(
                    embeddings[ok], probs[ok], block.loc[ok].reset_index(drop=True), new_rows=True
                )
            labels[ok], strength[ok], outlier[ok] = lab, st, out
        aspects = seg.aspect_cells(clean, status, embeddings, probs, timer)
        assignments = build_assignments(
            labels, strength, outlier, probs, status, names, aspects=aspects
        )
        from nlp_seg.io.write import merge_input_and_assignments

        base = frame.reset_index(drop=True)
        base = base.rename(columns={c: f"input_{c}" for c in base.columns if c in rows.columns})
        table = merge_input_and_assignments(
            pd.concat([base, rows], axis=1), assignments, ASSIGNMENT_COLUMNS
        )
        n_customers = len(customers)
        row_groups = [[i] for i in range(n)]
        has_text = ok
    else:
        order, row_owner = _customer_owners(keys, list(feats.index))
        m = len(order)
        pemb, prob, probs_fit, has_text = _pool_customers(row_owner, m, embeddings, probs, ok)
        cust_status = np.where(has_text, STATUS_OK, STATUS_NO_TEXT).astype(object)
        feat_keys = pd.Index([None if str(k).startswith("\0row") else k for k in order])
        row_groups = [[] for _ in range(m)]
        texts_by_owner: list[list[str]] = [[] for _ in range(m)]
        for i in range(n):
            row_groups[row_owner[i]].append(i)
            if ok[i]:
                texts_by_owner[row_owner[i]].append(clean[i])
        per_customer = features(feat_keys)
        if "review_count" in per_customer:
            per_customer["review_count"] = [float(len(r)) for r in row_groups]
        per_customer = per_customer.reset_index(drop=True)
        extra = None
        if extra_cols:
            num = frame[extra_cols].apply(pd.to_numeric, errors="coerce")
            extra = num.groupby(row_owner).mean().reindex(range(m)).reset_index(drop=True)
        block = _block(per_customer, extra)
        if "avg_rating" in wanted and "avg_rating" in per_customer:
            block["avg_rating"] = per_customer["avg_rating"].to_numpy(dtype=float)
        block = block.reindex(columns=wanted)
        if given is not None:
            block = block.fillna(given.groupby(row_owner).mean().reindex(range(m)))
        if not has_text.any():  # nobody wrote anything: the fitted text centre is unknown
            probs_fit = np.zeros((m, 3))
        with timer("assign"):
            labels, strength, outlier = seg.place_encoded(pemb, probs_fit, block, new_rows=True)
        assignments = build_assignments(
            labels, strength, outlier, prob, cust_status, names, segmented=np.ones(m, bool)
        )
        joined = [" | ".join(t) for t in texts_by_owner]
        table = pd.concat(
            [
                pd.DataFrame(
                    {
                        "customer_id": pd.array(list(feat_keys), dtype="string"),
                        spec.text: pd.array([j or None for j in joined], dtype="string"),
                        "review_rows": pd.array(
                            [";".join(map(str, r)) if r else None for r in row_groups],
                            dtype="string",
                        ),
                    }
                ),
                per_customer,
                assignments,
            ],
            axis=1,
        )
        n_customers = m
    info = {
        "unit": unit,
        "customers": n_customers,
        "reference_date": str(ref.date()),
        "fit_reference_date": setup.get("reference_date"),
        "behavior_block": wanted,
        "clv": clv_info,
        "tier_rules": "saved with the model" if rules is not None else None,
    }
    return BehaviorAssignment(table, block, row_groups, np.asarray(has_text), info, warnings)


def assign_with_behavior(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    opts: BehaviorOptions,
    text_file: str,
    timer: StageTimer | None = None,
) -> BehaviorResult:
    """``nlpseg assign NEW --model DIR --orders ... [--events ...]`` for a segmenter saved from
    a behaviour run: read the files, check the join, encode the texts and place them with
    :func:`assign_behavior_encoded` (the same features as at fit time, recency and tenure from
    the new data's latest date, at the saved unit). Returns the output table (review unit: one
    row per input row; customer unit: one row per customer) and run metadata."""
    timer = timer or StageTimer()
    if spec.id is None:
        raise InputError(
            f"--orders / --events need a customer id column in {text_file}; name it with --id-col"
        )
    orders, events, files_info, warnings = load_behavior(opts)
    keys = id_keys(frame[spec.id]).reset_index(drop=True)
    for name, table in (("orders", orders), ("events", events)):
        if table is not None:
            tkeys = pd.Index(table["customer_key"].dropna().unique())
            warnings += join_report(
                keys, tkeys, source=f"the {name}", text_file=text_file, text_id_col=spec.id
            )
    clean, status, emb, probs = seg.encode_rows(frame[spec.text].tolist(), timer)
    placed = assign_behavior_encoded(
        seg, frame, spec, clean, status, emb, probs, orders=orders, events=events, timer=timer
    )
    warnings += placed.warnings
    block = placed.block
    missing = [c for c in block.columns if block[c].isna().all()]
    if missing:
        warnings.append(
            f"behaviour features {', '.join(missing)} could not be computed from the files "
            "given; they count as missing (the fitted median)"
        )
    return BehaviorResult(
        placed.table,
        {},
        {**files_info, **placed.info},
        warnings,
        orders=orders,
        recommender=opts.recommender,
        recommend_n=opts.recommend_n,
        block=block,
    )


def check_behavior_inputs(spec: ColumnSpec, opts: BehaviorOptions, text_file: str) -> None:
    """Refuse an unknown unit or texts without a customer id column (before any encoding)."""
    if opts.unit not in UNITS:
        raise InputError(f"unknown --unit {opts.unit!r}; choose review or customer")
    if spec.id is None:
        raise InputError(
            "--orders, --events and --unit customer need a customer id column in "
            f"{text_file}; name it with --id-col"
        )


def run_behavior_job_encoded(
    seg: Segmenter,
    frame: pd.DataFrame,
    spec: ColumnSpec,
    opts: BehaviorOptions,
    text_file: str,
    encoded: tuple[list[str], np.ndarray, np.ndarray, np.ndarray],
    *,
    loaded: tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any], list[str]]
    | None = None,
    timer: StageTimer | None = None,
) -> BehaviorResult:
    """:func:`run_behavior_job` on texts that are already encoded.

    ``encoded`` is what :meth:`Segmenter.encode_rows` gives for ``frame[spec.text]`` (clean
    texts, statuses, embeddings, probabilities; one row per row of ``frame``); ``loaded`` is
    what :func:`load_behavior` gives for ``opts`` (read here when ``None``). ``nlpseg analyze``
    encodes the whole file and ``nlpseg batch`` hands over the chunks of its pass 1: both then
    segment with this one function.

    The embeddings are rounded to float16 first (and computed in float32 from there): that is
    how ``nlpseg batch`` stores them, and encoding in other batches (a file at once, or chunk
    by chunk) moves a float32 vector by ~1e-8, which UMAP can turn into other segments;
    rounded, both commands segment the same vectors (``tests/test_batch_behavior.py``). The
    rounding moves a vector by ~1e-4 relative, far below what tells texts apart.
    """
    check_behavior_inputs(spec, opts, text_file)
    timer = timer or StageTimer()
    if loaded is None:
        with timer("read_behavior"):
            loaded = load_behavior(opts)
    orders, events, files_info, warnings = loaded
    clean, status, emb, probs = encoded
    emb = np.asarray(emb, dtype=np.float16).astype(np.float32)
    embed = None
    if opts.benefits and emb.shape[1]:
        embed = seg.encoder.embed_plain

    contacts: tuple[str | None, ...] = ()
    if opts.unit == "customer":
        from nlp_seg.io.audiences import detect_contact_columns
        from nlp_seg.runs.personalise import detect_name_column

        # the customer's name rides along with the contacts, for the e-mail merge fields
        contacts = (
            *detect_contact_columns(frame, opts.email_col, opts.phone_col),
            next((c for c in [detect_name_column(frame)] if c not in (spec.text, spec.id)), None),
        )
    result = segment_with_behavior(
        seg,
        frame,
        spec,
        clean,
        status,
        emb,
        probs,
        contact_cols=contacts,
        orders=orders,
        events=events,
        unit=opts.unit,
        benefit_embed=embed,
        clv_horizon_days=opts.clv_horizon_days,
        text_file=text_file,
        timer=timer,
    )
    result.warnings[:0] = warnings
    result.info = {**files_info, **result.info}
    result.orders, result.recommender, result.recommend_n = (
        orders,
        opts.recommender,
        opts.recommend_n,
    )
    seg.behavior_setup_["columns"] = {k: files_info[k]["columns"] for k in files_info}
    return result
