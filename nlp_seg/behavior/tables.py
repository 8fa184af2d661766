"""Behaviour tables: orders and events joined to the texts by customer id, per-customer features.

Sentiment alone is not a segment: a disappointed VIP and a disappointed one-time buyer need
different treatment. This module reads an orders table (customer id, order date, amount and
optionally status, channel, items) and an events table (customer id, event type, timestamp),
cleans them (dates in ISO, ``dd/mm/yyyy`` or epoch; currency strings such as ``"1.234.000 ₫"``,
``"$12.50"``, ``"R$ 10,00"`` to plain numbers) and turns them into one row of features per
customer: recency, frequency, monetary value, tenure, average order value, order trend, cart
abandonment, engagement rates, review count, average rating, sentiment mean and trend, and a
customer lifetime value (:mod:`nlp_seg.behavior.clv`).

Nothing is dropped silently: rows that cannot be used (no date, no id, a negative amount, an
id that matches no text) are counted and reported as warnings, and a join that matches nothing
at all is an error, because it almost always means the wrong id column.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.errors import InputError
from nlp_seg.io.database import source_name
from nlp_seg.io.read import ID_COLUMN_NAMES, find_by_name, parse_dates, read_table, require_column

log = logging.getLogger(__name__)

DAY = pd.Timedelta(days=1)
MONTH_DAYS = 30.44

ORDER_DATE_NAMES = (
    "order_date",
    "ordered_at",
    "order_time",
    "order_datetime",
    "purchase_date",
    "purchased_at",
    "transaction_date",
    "date",
    "created_at",
    "created",
    "datetime",
    "date_time",
    "timestamp",
    "time",
    "ngay",
    "ngày",
    "data",
)
AMOUNT_NAMES = (
    "amount",
    "order_amount",
    "total",
    "order_total",
    "total_amount",
    "grand_total",
    "order_value",
    "value",
    "revenue",
    "sales",
    "gmv",
    "spend",
    "price",
    "payment",
    "paid",
    "so_tien",
    "số tiền",
    "tong_tien",
    "tổng tiền",
    "valor",
)
STATUS_NAMES = ("status", "order_status", "state", "trang_thai")
CHANNEL_NAMES = ("channel", "sales_channel", "order_channel", "source", "platform", "kenh")
ITEMS_NAMES = ("items", "n_items", "num_items", "item_count", "quantity", "qty", "so_luong")
#: Which product an order line is (``items`` above is a COUNT): read for ``recommended_items``.
ITEM_ID_NAMES = (
    "product_id",
    "item_id",
    "sku",
    "sku_id",
    "product",
    "product_code",
    "item_code",
    "article_id",
    "ma_san_pham",
    "ma_sp",
    "ma_hang",
    "san_pham",
)
EVENT_TYPE_NAMES = ("event_type", "event", "type", "action", "event_name", "name", "kind")
EVENT_TIME_NAMES = (
    "timestamp",
    "event_time",
    "event_date",
    "occurred_at",
    "time",
    "datetime",
    "date",
    "created_at",
    "ts",
)
RATING_NAMES = ("rating", "stars", "star", "n_star", "n_stars", "score", "rate", "nota", "so_sao")

# Order statuses that are not a purchase (kept in the file, left out of the features).
NOT_PURCHASED = {
    "cancelled",
    "canceled",
    "cancel",
    "refunded",
    "refund",
    "returned",
    "return",
    "failed",
    "void",
    "voided",
    "rejected",
    "huy",
    "da huy",
    "hoan",
    "tra hang",
    "cancelado",
    "devolvido",
    "reembolsado",
    "estornado",
}

# Event type synonyms -> canonical type.
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "email_send": ("email_send", "email_sent", "send", "sent", "email_delivered", "delivered"),
    "email_open": ("email_open", "email_opened", "open", "opened", "mail_open"),
    "click": ("click", "clicked", "email_click", "link_click"),
    "session": ("session", "session_start", "visit", "page_view", "pageview", "app_open", "view"),
    "cart_add": ("cart_add", "add_to_cart", "addtocart", "cart", "add_cart"),
    "cart_abandon": (
        "cart_abandon",
        "cart_abandoned",
        "abandoned_cart",
        "abandon",
        "checkout_abandon",
    ),
}
_EVENT_LOOKUP = {syn: canon for canon, syns in EVENT_TYPES.items() for syn in syns}

#: Columns that make an events table a GA4 BigQuery export (``events_YYYYMMDD``).
GA4_COLUMNS = ("event_name", "event_timestamp", "user_pseudo_id")
#: GA4's recommended and automatic event names -> the canonical types above. A session is
#: GA4's ``session_start`` (``page_view`` / ``screen_view`` stand in for it only in an export
#: without any); e-mail events as CRM tools send them to GA4. Other names (``purchase``,
#: ``begin_checkout``, ``view_item``, ...) are kept and reported as unused by the features.
GA4_EVENT_TYPES = {
    "session_start": "session",
    "add_to_cart": "cart_add",
    "email_open": "email_open",
    "email_opened": "email_open",
    "open_email": "email_open",
    "email_click": "click",
    "email_clicked": "click",
    "click_email": "click",
    "email_send": "email_send",
    "email_sent": "email_send",
    "email_delivered": "email_send",
    "cart_abandon": "cart_abandon",
    "abandon_cart": "cart_abandon",
}
GA4_PAGE_EVENTS = ("page_view", "screen_view")

#: Features written per customer (the README's output contract), in output order.
ORDER_FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_order_value",
    "order_trend",
)
EVENT_FEATURES = (
    "cart_abandon_rate",
    "email_open_rate",
    "click_rate",
    "sessions_per_month",
    "days_since_last_event",
)
REVIEW_FEATURES = ("review_count", "avg_rating", "sentiment_mean", "sentiment_trend")
#: Features that enter the fused vector's behaviour block (sentiment has its own block).
BLOCK_FEATURES = (*ORDER_FEATURES, *EVENT_FEATURES, "clv")

TREND_WINDOW_DAYS = 90


@dataclass
class BehaviorTables:
    """Cleaned orders and events, with the column roles found and what was wrong with them."""

    orders: pd.DataFrame | None
    events: pd.DataFrame | None
    columns: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing
def id_keys(values: pd.Series) -> pd.Series:
    """Customer ids as comparable strings (``123``, ``123.0`` and ``" 123"`` are one customer).

    Ids typed with leading zeros stay text when read, so ``00123`` keeps its zeros.
    """

    def one(v: object) -> str | None:
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None

    return pd.Series([one(v) for v in values], index=values.index, dtype="object")


_NEG_RE = re.compile(r"^\s*(?:\(.*\)|[^\d]*-)")


def parse_amounts(values: pd.Series) -> pd.Series:
    """Currency strings to plain numbers: ``"1.234.000 ₫"`` -> 1234000, ``"$12.50"`` -> 12.5,
    ``"R$ 10,00"`` -> 10.0, ``"-5"`` or ``"(5.00)"`` -> -5.

    Thousands and decimal separators are told apart by `price-parser` (Zyte's library for
    exactly this); only the sign, which it drops, is read here. Unparseable cells become NaN.
    """
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype(float)
    from price_parser import Price

    cache: dict[str, float] = {}

    def one(v: object) -> float:
        if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
            return float("nan")
        if isinstance(v, (int, float, np.integer, np.floating)):
            return float(v)
        s = str(v)
        if s not in cache:
            amount = Price.fromstring(s).amount
            if amount is None:
                cache[s] = float("nan")
            else:
                cache[s] = -float(amount) if _NEG_RE.match(s) else float(amount)
        return cache[s]

    return pd.Series([one(v) for v in values], index=values.index, dtype=float)


def _canon_status(values: pd.Series) -> pd.Series:
    from nlp_seg.normalize import strip_accents

    return values.map(
        lambda v: strip_accents(str(v)).strip().lower() if isinstance(v, str) else "",
        na_action="ignore",
    ).fillna("")


def _canon_event(values: pd.Series) -> pd.Series:
    def one(v: object) -> str:
        key = re.sub(r"[\s\-]+", "_", str(v).strip().lower())
        return _EVENT_LOOKUP.get(key, key)

    return values.map(one, na_action="ignore")


# --------------------------------------------------------------------------- reading
def _pick(frame: pd.DataFrame, given: str | None, names: tuple[str, ...], role: str) -> str | None:
    if given:
        return require_column(frame, given, role)
    return find_by_name(list(map(str, frame.columns)), names)


def read_orders(
    path: str | Path,
    *,
    id_col: str | None = None,
    date_col: str | None = None,
    amount_col: str | None = None,
    item_col: str | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, dict[str, str | None], list[str]]:
    """Read and clean an orders file.

    Returns one row per order (or order line) with ``customer_key``, ``order_date``,
    ``amount``, ``status``, ``channel``, ``items`` (a count), ``item_id`` (which product,
    when an item/product/SKU column is found or named with ``item_col``) and ``purchase``
    (counts as a purchase: has an id and a date, a
    non-negative amount and a status that is not cancelled/refunded), the columns found, and
    warnings about rows that could not be used.
    """
    raw = read_table(path, encoding=encoding)
    name = source_name(path)
    cols: dict[str, str | None] = {
        "id": _pick(raw, id_col, ID_COLUMN_NAMES, "orders id"),
        "date": _pick(raw, date_col, ORDER_DATE_NAMES, "orders date"),
        "amount": _pick(raw, amount_col, AMOUNT_NAMES, "orders amount"),
        "status": find_by_name(list(raw.columns), STATUS_NAMES),
        "channel": find_by_name(list(raw.columns), CHANNEL_NAMES),
        "items": find_by_name(list(raw.columns), ITEMS_NAMES),
        "item_id": _pick(raw, item_col, ITEM_ID_NAMES, "orders item id"),
    }
    for role, flag in (("id", "--orders-id-col"), ("date", "--orders-date-col")):
        if cols[role] is None:
            raise InputError(
                f"no customer {role} column found in {name}; name it with {flag} "
                f"(columns: {', '.join(map(str, raw.columns))})"
            )
    orders, warnings = _clean_orders(raw, cols, name)
    return orders, cols, warnings


def _clean_orders(
    raw: pd.DataFrame, cols: dict[str, str | None], name: str, *, strict_dates: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """The cleaning of :func:`read_orders` on a raw table whose column roles are ``cols``
    (also :func:`orders_from_records`); ``strict_dates`` refuses a table without any readable
    date (a file's wrong date column)."""
    warnings: list[str] = []
    orders = pd.DataFrame(index=raw.index)
    orders["customer_key"] = id_keys(raw[cols["id"]])
    orders["order_date"] = parse_dates(raw[cols["date"]])
    if cols["amount"] is not None:
        orders["amount"] = parse_amounts(raw[cols["amount"]])
    else:
        orders["amount"] = np.nan
        warnings.append(f"{name}: no amount column found; monetary value and CLV are unknown")
    orders["status"] = _canon_status(raw[cols["status"]]) if cols["status"] else ""
    orders["channel"] = raw[cols["channel"]] if cols["channel"] else None
    orders["items"] = (
        pd.to_numeric(raw[cols["items"]], errors="coerce") if cols["items"] else np.nan
    )
    item_col = cols.get("item_id")
    orders["item_id"] = id_keys(raw[item_col]) if item_col else None
    no_id = orders["customer_key"].isna()
    no_date = orders["order_date"].isna()
    if strict_dates and no_date.all():
        raise InputError(
            f"no order date in {name} could be read (column {cols['date']!r}); dates must be ISO "
            "(2025-03-31), dd/mm/yyyy or Unix epoch, or name the column with --orders-date-col"
        )
    bad_amount = orders["amount"].isna() & raw[cols["amount"]].notna() if cols["amount"] else None
    negative = orders["amount"] < 0
    cancelled = orders["status"].isin(NOT_PURCHASED)
    if no_id.any():
        warnings.append(f"{name}: {int(no_id.sum())} orders without a customer id are left out")
    if no_date.any():
        warnings.append(
            f"{name}: {int(no_date.sum())} orders without a readable date are left out of the "
            "features (dates must be ISO, dd/mm/yyyy or epoch)"
        )
    if negative.any():
        warnings.append(
            f"{name}: {int(negative.sum())} orders have negative amounts; they are read as "
            "refunds (subtracted from monetary value, not counted as orders)"
        )
    if bad_amount is not None and bad_amount.any():
        warnings.append(
            f"{name}: {int(bad_amount.sum())} amounts could not be read as numbers; those orders "
            "count for frequency but not for monetary value"
        )
    if cancelled.any():
        warnings.append(
            f"{name}: {int(cancelled.sum())} cancelled/refunded/returned orders are not counted "
            "as purchases"
        )
    orders["purchase"] = ~no_id & ~no_date & ~negative & ~cancelled
    orders["refund"] = ~no_id & ~no_date & negative
    return orders, warnings


def read_events(
    path: str | Path,
    *,
    id_col: str | None = None,
    type_col: str | None = None,
    time_col: str | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, dict[str, str | None], list[str]]:
    """Read and clean an events file: ``customer_key``, ``event`` (canonical type), ``time``.

    A GA4 BigQuery export (``event_name``, ``event_timestamp``, ``user_pseudo_id``) is
    recognised by its columns and read as one (:func:`ga4_events`) unless columns are named.
    """
    cols: dict[str, str | None]
    raw = read_table(path, encoding=encoding)
    name = source_name(path)
    if is_ga4_export(raw) and not (id_col or type_col or time_col):
        raw, cols = ga4_events(raw)
        events, warnings = _clean_events(raw, cols, name)
        return events, cols, warnings
    cols = {
        "id": _pick(raw, id_col, ID_COLUMN_NAMES, "events id"),
        "type": _pick(raw, type_col, EVENT_TYPE_NAMES, "events type"),
        "time": _pick(raw, time_col, EVENT_TIME_NAMES, "events time"),
    }
    for role, flag in (
        ("id", "--events-id-col"),
        ("type", "--events-type-col"),
        ("time", "--events-time-col"),
    ):
        if cols[role] is None:
            raise InputError(
                f"no event {role} column found in {name}; name it with {flag} "
                f"(columns: {', '.join(map(str, raw.columns))})"
            )
    events, warnings = _clean_events(raw, cols, name)
    return events, cols, warnings


def _clean_events(
    raw: pd.DataFrame, cols: dict[str, str | None], name: str, *, strict_dates: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """The cleaning of :func:`read_events` on a raw table whose column roles are ``cols``
    (also :func:`events_from_records`); ``strict_dates`` as in :func:`_clean_orders`."""
    events = pd.DataFrame(index=raw.index)
    events["customer_key"] = id_keys(raw[cols["id"]])
    events["event"] = _canon_event(raw[cols["type"]])
    events["time"] = parse_dates(raw[cols["time"]])
    warnings: list[str] = []
    if strict_dates and events["time"].isna().all():
        raise InputError(
            f"no event time in {name} could be read (column {cols['time']!r}); use ISO, "
            "dd/mm/yyyy or epoch, or name the column with --events-time-col"
        )
    bad = events["customer_key"].isna() | events["time"].isna() | events["event"].isna()
    if bad.any():
        warnings.append(
            f"{name}: {int(bad.sum())} events without a customer id, type or readable time "
            "are left out"
        )
    known = set(EVENT_TYPES)
    unknown = sorted(set(events.loc[~bad, "event"]) - known)
    if unknown:
        warnings.append(
            f"{name}: event types not used by any feature: {', '.join(map(str, unknown[:8]))}"
            + (" ..." if len(unknown) > 8 else "")
        )
    return events.loc[~bad].reset_index(drop=True), warnings


def is_ga4_export(raw: pd.DataFrame) -> bool:
    """Whether a table is GA4's BigQuery export schema (by its column names)."""
    return all(c in raw.columns for c in GA4_COLUMNS)


def ga4_events(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """A GA4 export as an events table: the customer is ``user_id`` when the export has any
    (the site's own login id, the one reviews and orders carry; rows without it are left out
    and counted), else ``user_pseudo_id`` (the browser); ``event_timestamp`` is microseconds
    since the epoch (an integer, or its text in JSON exports); event names mapped by
    :data:`GA4_EVENT_TYPES`. Nested columns (``event_params``, ``device``, ...) are ignored."""
    has_user_id = "user_id" in raw.columns and raw["user_id"].notna().any()
    id_col = "user_id" if has_user_id else "user_pseudo_id"
    names = raw["event_name"].astype("string").str.strip().str.lower()
    lookup = dict(GA4_EVENT_TYPES)
    # Page views within recorded sessions are not sessions (the generic synonyms would count
    # each as one): they keep a GA4 name no feature reads.
    page = "session" if not names.eq("session_start").any() else None
    lookup.update({n: page or f"ga4_{n}" for n in GA4_PAGE_EVENTS})
    micros = pd.to_numeric(raw["event_timestamp"], errors="coerce")
    frame = pd.DataFrame(
        {
            id_col: raw[id_col],
            "event_name": names.map(lambda n: lookup.get(n, n), na_action="ignore"),
            "event_timestamp": pd.to_datetime(micros, unit="us", errors="coerce"),
        },
        index=raw.index,
    )
    cols: dict[str, str | None] = {
        "schema": "ga4_bigquery_export",
        "id": id_col,
        "type": "event_name",
        "time": "event_timestamp",
    }
    return frame, cols


#: Fields of one order / event record (the service's request lists), in column order.
ORDER_RECORD_FIELDS = ("customer_id", "date", "amount", "status", "channel", "items")
EVENT_RECORD_FIELDS = ("customer_id", "type", "time")


def orders_from_records(
    records: Sequence[Mapping[str, Any]], *, name: str = "the request"
) -> tuple[pd.DataFrame, list[str]]:
    """Orders given as records (``customer_id``, ``date``, ``amount`` and optionally
    ``status``, ``channel``, ``items``; what ``nlpseg serve`` receives) cleaned as
    :func:`read_orders` cleans a file: the same frame, the same warnings (``name`` stands for
    the file name). An empty list gives an empty frame (customers known to have no orders)."""
    raw = pd.DataFrame.from_records(list(records), columns=list(ORDER_RECORD_FIELDS))
    cols: dict[str, str | None] = {
        "id": "customer_id",
        "date": "date",
        "amount": "amount",
        "status": "status",
        "channel": "channel",
        "items": "items",
    }
    return _clean_orders(raw, cols, name, strict_dates=False)


def events_from_records(
    records: Sequence[Mapping[str, Any]], *, name: str = "the request"
) -> tuple[pd.DataFrame, list[str]]:
    """Events given as records (``customer_id``, ``type``, ``time``) cleaned as
    :func:`read_events` cleans a file."""
    raw = pd.DataFrame.from_records(list(records), columns=list(EVENT_RECORD_FIELDS))
    cols: dict[str, str | None] = {"id": "customer_id", "type": "type", "time": "time"}
    return _clean_events(raw, cols, name, strict_dates=False)


# --------------------------------------------------------------------------- features
def reference_date(orders: pd.DataFrame | None, events: pd.DataFrame | None) -> pd.Timestamp:
    """The data's latest date: recency and tenure are measured from it, not from today, so a
    re-run next year gives the same features."""
    dates = []
    if orders is not None:
        dates.append(orders.loc[orders["purchase"] | orders["refund"], "order_date"].max())
    if events is not None and len(events):
        dates.append(events["time"].max())
    dates = [d for d in dates if pd.notna(d)]
    return max(dates) if dates else pd.Timestamp.now().normalize()


def order_features(
    orders: pd.DataFrame, ref: pd.Timestamp, trend_window_days: int = TREND_WINDOW_DAYS
) -> pd.DataFrame:
    """Recency, frequency, monetary, tenure, average order value and order trend per customer.

    ``order_trend`` compares the number of orders in the last ``trend_window_days`` before the
    reference date with the window before it: ``(recent - prior) / (recent + prior)``, in
    [-1, 1]; 0 when neither window has an order.
    """
    buy = orders[orders["purchase"]]
    g = buy.groupby("customer_key", sort=True)
    first = g["order_date"].min()
    last = g["order_date"].max()
    out = pd.DataFrame(index=first.index)
    out["recency_days"] = (ref - last) / DAY
    out["frequency"] = g.size().astype(float)
    gross = g["amount"].sum(min_count=1)
    refunds = orders[orders["refund"]].groupby("customer_key")["amount"].sum()
    out["monetary"] = (gross.fillna(0.0) + refunds.reindex(out.index).fillna(0.0)).clip(lower=0)
    out.loc[gross.isna(), "monetary"] = np.nan
    out["tenure_days"] = (ref - first) / DAY
    out["avg_order_value"] = g["amount"].mean()
    age = (ref - buy["order_date"]) / DAY
    recent = (age <= trend_window_days).groupby(buy["customer_key"]).sum()
    prior = (
        ((age > trend_window_days) & (age <= 2 * trend_window_days))
        .groupby(buy["customer_key"])
        .sum()
    )
    tot = (recent + prior).reindex(out.index).fillna(0)
    diff = (recent - prior).reindex(out.index).fillna(0)
    out["order_trend"] = np.where(tot > 0, diff / tot.where(tot > 0, 1), 0.0)
    return out


def event_features(
    events: pd.DataFrame, ref: pd.Timestamp, orders_per_customer: pd.Series | None = None
) -> pd.DataFrame:
    """Engagement per customer from typed events.

    * ``cart_abandon_rate``: abandoned carts / carts added (or / (abandoned + orders) when no
      cart-add events are recorded), in [0, 1];
    * ``email_open_rate``: opens / emails sent (only when sends are recorded);
    * ``click_rate``: clicks / email opens, in [0, 1];
    * ``sessions_per_month``: sessions over the months since the customer's first event;
    * ``days_since_last_event``: days from the last event to the reference date.
    """
    counts = pd.crosstab(events["customer_key"], events["event"])
    for t in EVENT_TYPES:
        if t not in counts.columns:
            counts[t] = 0
    g = events.groupby("customer_key")["time"]
    first, last = g.min(), g.max()
    out = pd.DataFrame(index=counts.index)
    orders_n = (
        orders_per_customer.reindex(out.index).fillna(0)
        if orders_per_customer is not None
        else pd.Series(0.0, index=out.index)
    )
    aband = counts["cart_abandon"].astype(float)
    denom = counts["cart_add"].where(counts["cart_add"] > 0, aband + orders_n).astype(float)
    out["cart_abandon_rate"] = (aband / denom.where(denom > 0)).clip(0, 1)
    sends = counts["email_send"].astype(float)
    out["email_open_rate"] = (counts["email_open"] / sends.where(sends > 0)).clip(0, 1)
    opens = counts["email_open"].astype(float)
    out["click_rate"] = (counts["click"] / opens.where(opens > 0)).clip(0, 1)
    months = (((ref - first) / DAY) / MONTH_DAYS).clip(lower=1.0)
    out["sessions_per_month"] = counts["session"] / months
    out["days_since_last_event"] = (ref - last) / DAY
    return out


def review_features(
    keys: pd.Series,
    scores: np.ndarray,
    ratings: pd.Series | None = None,
    dates: pd.Series | None = None,
) -> pd.DataFrame:
    """Review count, average rating, sentiment mean and trend per customer.

    ``sentiment_trend`` is the mean sentiment score of a customer's later half of reviews
    minus that of the earlier half (by review date when known, else file order): positive when
    they are warming up, negative when souring; 0 with a single review.
    """
    df = pd.DataFrame({"key": keys.to_numpy(), "score": np.asarray(scores, dtype=float)})
    df["order"] = np.arange(len(df))
    if dates is not None:
        df["date"] = parse_dates(dates.reset_index(drop=True)).to_numpy()
    else:
        df["date"] = pd.NaT
    if ratings is not None:
        df["rating"] = pd.to_numeric(ratings.reset_index(drop=True), errors="coerce").to_numpy()
    df = df[df["key"].notna()]
    g = df.groupby("key", sort=True)
    out = pd.DataFrame(index=g.size().index)
    out["review_count"] = g.size().astype(float)
    out["avg_rating"] = g["rating"].mean() if ratings is not None else np.nan
    out["sentiment_mean"] = g["score"].mean()

    def trend(sub: pd.DataFrame) -> float:
        s = sub.dropna(subset=["score"]).sort_values(["date", "order"], na_position="last")
        n = len(s)
        if n < 2:
            return 0.0
        half = n // 2
        return float(s["score"].iloc[n - half :].mean() - s["score"].iloc[:half].mean())

    out["sentiment_trend"] = [trend(sub) for _, sub in g]
    return out


def customer_features(
    orders: pd.DataFrame | None,
    events: pd.DataFrame | None,
    *,
    horizon_days: int = 365,
    seed: int = 0,
    clv_params: dict[str, Any] | None = None,
    ref: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.Timestamp, dict[str, Any], list[str]]:
    """Order, event and CLV features for every customer seen in the orders or events.

    Returns the features (index: customer key), the reference date, a description of the CLV
    model, and warnings. ``clv_params`` predicts CLV with an already-fitted model (see
    :func:`nlp_seg.behavior.clv.estimate_clv`). ``ref`` measures recency and tenure from that
    date instead of the data's latest one (:func:`reference_date`).
    """
    from nlp_seg.behavior.clv import estimate_clv

    ref = reference_date(orders, events) if ref is None else pd.Timestamp(ref)
    parts: list[pd.DataFrame] = []
    clv_info: dict[str, Any] = {}
    warnings: list[str] = []
    freq = None
    if orders is not None:
        of = order_features(orders, ref)
        freq = of["frequency"]
        clv, clv_info, w = estimate_clv(orders, ref, horizon_days=horizon_days, params=clv_params)
        warnings.extend(w)
        of = of.join(clv, how="left")
        parts.append(of)
    if events is not None and len(events):
        ef = event_features(events, ref, freq)
        parts.append(ef)
    if not parts:
        return pd.DataFrame(), ref, clv_info, warnings
    feats = pd.concat(parts, axis=1, sort=True)
    if orders is not None:
        # A customer seen only in the events has bought nothing: zero, not unknown.
        for c in ("frequency", "monetary", "clv"):
            if c in feats:
                feats[c] = feats[c].fillna(0.0)
        if "clv_method" in feats:
            feats["clv_method"] = feats["clv_method"].fillna("no_orders")
    return feats, ref, clv_info, warnings


def join_report(
    text_keys: pd.Series,
    feature_keys: pd.Index,
    *,
    source: str,
    text_file: str,
    text_id_col: str | None,
) -> list[str]:
    """Warnings about ids that match nothing; an error when no id matches at all."""
    have = set(k for k in text_keys.dropna().unique())
    other = set(feature_keys)
    if not have or not other:
        return []
    matched = have & other
    if not matched:
        sample_a = ", ".join(sorted(map(str, have))[:3])
        sample_b = ", ".join(sorted(map(str, other))[:3])
        raise InputError(
            f"none of the {len(have):,} customer ids in {text_file} (column {text_id_col!r}, "
            f"e.g. {sample_a}) appear in {source} (e.g. {sample_b}); check --id-col and the "
            f"{source} id column"
        )
    warnings = []
    if len(have - other):
        warnings.append(
            f"{len(have - other):,} of {len(have):,} customers in {text_file} have no rows in "
            f"{source}"
        )
    if len(other - have):
        warnings.append(
            f"{len(other - have):,} of {len(other):,} customers in {source} wrote no text in "
            f"{text_file}"
        )
    return warnings


def find_rating_column(frame: pd.DataFrame, exclude: tuple[str | None, ...] = ()) -> str | None:
    """A numeric star-rating column in the texts' file, if there is one."""
    col = find_by_name([c for c in map(str, frame.columns) if c not in exclude], RATING_NAMES)
    if col is not None and pd.to_numeric(frame[col], errors="coerce").notna().any():
        return col
    return None
