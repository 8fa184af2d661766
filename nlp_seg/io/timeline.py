"""Segments over time: each segment's volume and sentiment per week, month or quarter.

As BERTopic's topics over time, but on the run's own output table: the texts' date column
(``--time-col``, or found by name), parsed once with relative dates counted back from the
run's reference date, and bucketed by ``--period`` (default picked from the span so a chart has
several points per line).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: ``--period`` values and their pandas period codes.
PERIODS = {"week": "W", "month": "M", "quarter": "Q"}


def time_period(dates: pd.Series) -> str:
    """The period a time chart aggregates by, from the span: weeks up to ~4 months, months up
    to ~3 years, quarters beyond, so a chart has several points per line, not single dots."""
    span = (dates.max() - dates.min()).days if len(dates) else 0
    if span <= 120:
        return "W"
    return "M" if span <= 1100 else "Q"


def period_code(period: str | None, dates: pd.Series) -> str:
    """The pandas code of ``period`` (``week``/``month``/``quarter``; ``auto``/``None``: from
    the span of ``dates``)."""
    if period in (None, "auto"):
        return time_period(dates.dropna())
    return PERIODS[period]


def period_name(code: str) -> str:
    return {v: k for k, v in PERIODS.items()}[code]


def over_time(
    dates: pd.Series, table: pd.DataFrame, code: str
) -> tuple[dict[int, list[dict[str, Any]]], list[str]]:
    """Per segment id, one entry per period with rows: ``period`` (its first day),
    ``rows``, ``share`` (of that period's segmented rows), ``mean_score`` and
    ``negative_share``; plus the list of periods. ``table`` holds ``segment_id``,
    ``sentiment_score`` and ``sentiment_label``, one row per entry of ``dates``."""
    seg = pd.to_numeric(table["segment_id"], errors="coerce").to_numpy()
    ok = dates.notna().to_numpy() & (seg >= 0)
    if not ok.any():
        return {}, []
    starts = dates[ok].dt.to_period(code).dt.start_time.dt.strftime("%Y-%m-%d").to_numpy()
    d = pd.DataFrame(
        {
            "period": starts,
            "sid": seg[ok].astype(int),
            "score": pd.to_numeric(table["sentiment_score"], errors="coerce").to_numpy()[ok],
            "negative": (table["sentiment_label"].astype("string") == "negative")
            .fillna(False)
            .to_numpy()[ok],
        }
    )
    totals = d.groupby("period").size()
    g = d.groupby(["sid", "period"]).agg(
        rows=("score", "size"), mean_score=("score", "mean"), negative_share=("negative", "mean")
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for (sid, period), r in g.iterrows():
        out.setdefault(int(sid), []).append(
            {
                "period": period,
                "rows": int(r["rows"]),
                "share": round(float(r["rows"] / totals[period]), 4),
                "mean_score": _round(r["mean_score"]),
                "negative_share": _round(r["negative_share"]),
            }
        )
    return out, sorted(totals.index)


def _round(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None
