"""What changed between two segmentations: drift, movers and their audiences.

Two runs are compared on their contract files (``segments.json``, ``assignments.parquet``,
``run.json``), so ``nlpseg refresh`` (a refit matched to the previous segmenter's ids) and
``nlpseg compare`` (any two finished runs) write the same ``drift.json`` and ``movers.csv``.

* **Segments** are compared by id when the later run kept the earlier one's ids (a refresh);
  otherwise by shared customers (Hungarian on member overlap, as a refresh does), and failing
  that by name and keywords.
* **Drift** per segment: size, share, mean sentiment score and complaint (negative) share
  before and after; ``new`` and ``gone`` segments; the complaint terms whose share among
  negative texts rose most; the share of new texts that fit no old segment (novelty) and a
  plain warning when a refit is due.
* **Movers**: customers (id column) whose segment, base sentiment or value/loyalty tier
  changed, with the change in sentiment and value; one audience per kind of move
  (``became-disappointed``, ``became-at-risk``, ...) in the hashed format of
  :mod:`nlp_seg.io.audiences`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.errors import InputError
from nlp_seg.stages.matching import match_segments

#: A refresh whose new rows are this novel (placed far from every old fitted row) says: refit.
REFIT_NOVELTY_SHARE = 0.3
#: ... or when this share of the new rows sits in segments the old model did not have.
REFIT_NEW_SEGMENT_SHARE = 0.3
#: Complaint terms listed in drift.json, and the least negative texts a term must be in.
COMPLAINT_TERMS = 10
COMPLAINT_MIN_TEXTS = 3
TIER_COLUMNS = ("value_tier", "loyalty_tier")
VALUE_COLUMNS = ("clv", "monetary")


@dataclass
class RunState:
    """One side of a comparison: a run's segments and (optionally) its output table."""

    segments: list[dict[str, Any]]
    table: pd.DataFrame | None = None
    text_col: str | None = None
    id_col: str | None = None
    label: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def load_run(folder: str | Path) -> RunState:
    """A finished ``analyze`` / ``refresh`` / ``batch`` output folder as a :class:`RunState`."""
    folder = Path(folder)
    seg_file = folder / "segments.json"
    if not seg_file.is_file():
        raise InputError(f"{folder} is not an nlpseg run folder (no segments.json)")
    try:
        segments = json.loads(seg_file.read_text(encoding="utf-8"))["segments"]
        info = (
            json.loads((folder / "run.json").read_text(encoding="utf-8"))
            if (folder / "run.json").is_file()
            else {}
        )
    except (ValueError, KeyError) as exc:
        raise InputError(f"{seg_file} is not a valid segments file ({exc})") from exc
    table = None
    parquet = folder / "assignments.parquet"
    if parquet.is_file():
        table = pd.read_parquet(parquet)
    cols = info.get("columns") or {}
    customer_unit = (info.get("behavior") or {}).get("unit") == "customer"
    id_col = "customer_id" if customer_unit else cols.get("id")
    text_col = cols.get("text")
    if table is not None:
        id_col = id_col if id_col in table.columns else None
        text_col = text_col if text_col in table.columns else None
    return RunState(segments, table, text_col, id_col, str(folder), info)


def segment_stats(segment: dict[str, Any]) -> dict[str, Any]:
    """The figures drift compares, from one segment profile of ``segments.json``."""
    sentiment = segment.get("sentiment") or {}
    return {
        "name": segment.get("name"),
        "size": int(segment.get("size") or 0),
        "share": _num(segment.get("share")),
        "mean_score": _num(sentiment.get("mean_score")),
        "negative_share": _num(sentiment.get("negative")),
    }


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if np.isfinite(v) else None


def _change(after: float | None, before: float | None) -> float | None:
    if after is None or before is None:
        return None
    return round(after - before, 4)


def match_runs(before: RunState, after: RunState) -> tuple[dict[int, int], str]:
    """``after`` id -> ``before`` id for segments that are the same, and how it was decided."""
    before_ids = [int(s["id"]) for s in before.segments]
    after_ids = [int(s["id"]) for s in after.segments]
    if (after.info.get("refresh") or {}).get("ids_kept_from") is not None:
        return {k: k for k in after_ids if k in before_ids}, "ids kept by refresh"
    shared = _customer_segments(before, after)
    if shared is not None:
        b, a = shared
        m = match_segments(a.to_numpy(), b.to_numpy(), before_ids)
        return dict(m.matched), f"shared customers ({len(a)})"
    sim = np.zeros((len(after_ids), len(before_ids)))
    for i, sa in enumerate(after.segments):
        for j, sb in enumerate(before.segments):
            ka, kb = set(sa.get("keywords") or []), set(sb.get("keywords") or [])
            jac = len(ka & kb) / len(ka | kb) if ka | kb else 0.0
            sim[i, j] = jac + (0.5 if sa.get("base_name") == sb.get("base_name") else 0.0)
    matched: dict[int, int] = {}
    if sim.size:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(sim, maximize=True)
        for i, j in zip(rows, cols, strict=True):
            if sim[i, j] >= 0.7:  # same base name and some keywords in common
                matched[after_ids[i]] = before_ids[j]
    return matched, "names and keywords"


def _customer_segments(before: RunState, after: RunState) -> tuple[pd.Series, pd.Series] | None:
    """Each shared customer's segment before and after (their most common one), or ``None``
    when the runs share fewer than 20 customers."""
    if before.table is None or after.table is None or not before.id_col or not after.id_col:
        return None

    def per_customer(state: RunState) -> pd.Series:
        seg = _per_customer(state)["segment_id"]
        return seg[seg >= 0]

    b, a = per_customer(before), per_customer(after)
    common = b.index.intersection(a.index)
    if len(common) < 20:
        return None
    return b.loc[common], a.loc[common]


def complaint_terms(
    before_texts: Sequence[str], after_texts: Sequence[str], top: int = COMPLAINT_TERMS
) -> list[dict[str, Any]]:
    """Terms of negative texts whose share of those texts rose most from before to after."""
    from nlp_seg.stages.naming import analyze_tokens

    def shares(texts: Sequence[str]) -> tuple[dict[str, int], int]:
        counts: dict[str, int] = {}
        for t in texts:
            for tok in set(analyze_tokens(str(t))):
                counts[tok] = counts.get(tok, 0) + 1
        return counts, max(len(texts), 1)

    b, nb = shares(before_texts)
    a, na = shares(after_texts)
    rows = []
    for term, count in a.items():
        if count < COMPLAINT_MIN_TEXTS:
            continue
        before_share = b.get(term, 0) / nb
        after_share = count / na
        rows.append(
            {
                "term": term,
                "share_before": round(before_share, 4),
                "share_after": round(after_share, 4),
                "change": round(after_share - before_share, 4),
                "texts_after": count,
            }
        )
    rows.sort(key=lambda r: (-r["change"], r["term"]))
    return [r for r in rows if r["change"] > 0][:top]


def _negative_texts(state: RunState) -> list[str] | None:
    t = state.table
    if t is None or not state.text_col or "sentiment_label" not in t:
        return None
    return t.loc[t["sentiment_label"] == "negative", state.text_col].astype(str).tolist()


def drift_report(
    before: RunState,
    after: RunState,
    *,
    matched: dict[int, int] | None = None,
    matched_by: str = "ids kept by refresh",
    novelty_share: float | None = None,
) -> dict[str, Any]:
    """``drift.json``: every segment before and after, new and gone segments, rising complaint
    terms, novelty, and whether to refit. ``matched`` maps ``after`` ids to ``before`` ids
    (default: :func:`match_runs`)."""
    if matched is None:
        matched, matched_by = match_runs(before, after)
    old = {int(s["id"]): s for s in before.segments}
    rows: list[dict[str, Any]] = []
    for s in after.segments:
        sid = int(s["id"])
        prev = old.get(matched[sid]) if sid in matched else None
        now = segment_stats(s)
        was = segment_stats(prev) if prev is not None else None
        rows.append(
            {
                "id": sid,
                "name": s.get("name"),
                "status": "kept" if prev is not None else "new",
                "previous_id": int(prev["id"]) if prev is not None else None,
                "previous_name": prev.get("name") if prev is not None else None,
                "before": was,
                "after": now,
                "change": {
                    k: _change(now[k], was[k] if was else None)
                    for k in ("share", "mean_score", "negative_share")
                }
                | {"size": now["size"] - was["size"] if was else None},
            }
        )
    gone_ids = sorted(set(old) - set(matched.values()))
    for oid in gone_ids:
        was = segment_stats(old[oid])
        rows.append(
            {
                "id": oid,
                "name": old[oid].get("name"),
                "status": "gone",
                "previous_id": oid,
                "previous_name": old[oid].get("name"),
                "before": was,
                "after": None,
                "change": {"share": _change(0.0, was["share"]), "size": -was["size"]},
            }
        )
    new_share = sum((r["after"] or {}).get("share") or 0.0 for r in rows if r["status"] == "new")
    warnings = []
    if novelty_share is not None and novelty_share > REFIT_NOVELTY_SHARE:
        warnings.append(
            f"{novelty_share:.0%} of the new texts fit no old segment (more than "
            f"{REFIT_NOVELTY_SHARE:.0%}): refit the segmenter (nlpseg analyze --save-model) "
            "rather than only assigning new rows to it"
        )
    if new_share > REFIT_NEW_SEGMENT_SHARE:
        warnings.append(
            f"{new_share:.0%} of the rows are in segments that did not exist before: the "
            "customer base has changed; review the new segments and refit the saved model"
        )
    before_neg, after_neg = _negative_texts(before), _negative_texts(after)
    return {
        "before": before.label,
        "after": after.label,
        "matched_by": matched_by,
        "segments": rows,
        "new": [r["id"] for r in rows if r["status"] == "new"],
        "gone": gone_ids,
        "kept": sorted(r["id"] for r in rows if r["status"] == "kept"),
        "new_segment_share": round(new_share, 4),
        "novelty_share": novelty_share,
        "complaints_rising": complaint_terms(before_neg, after_neg)
        if before_neg is not None and after_neg is not None
        else None,
        "refit_advised": bool(warnings),
        "warnings": warnings,
    }


def _base(name: Any) -> str:
    from nlp_seg.stages.naming import NAME_SEPARATOR

    text = str(name or "")
    return text.split(NAME_SEPARATOR)[0].split(" (")[0].strip()


def movers(before: RunState, after: RunState, matched: dict[int, int]) -> pd.DataFrame:
    """One row per customer in both runs whose segment, base sentiment or tier changed.

    Columns: ``customer_id``, ``from_segment_id`` / ``from_segment_name`` (the earlier run's),
    ``to_segment_id`` / ``to_segment_name``, ``from_`` / ``to_`` value and loyalty tiers when
    the runs have them, ``sentiment_before`` / ``sentiment_after`` / ``sentiment_change``
    (mean sentiment score of the customer's texts), ``value_before`` / ``value_after`` /
    ``value_change`` (CLV, else monetary), and ``moves`` (``;``-joined, e.g.
    ``became-disappointed;became-at-risk``).
    """
    columns = [
        "customer_id",
        "from_segment_id",
        "from_segment_name",
        "to_segment_id",
        "to_segment_name",
        "sentiment_before",
        "sentiment_after",
        "sentiment_change",
        "moves",
    ]
    if before.table is None or after.table is None or before.id_col is None or after.id_col is None:
        return pd.DataFrame(columns=columns)
    b, a = _per_customer(before), _per_customer(after)
    common = b.index.intersection(a.index)
    b, a = b.loc[common], a.loc[common]
    back = {v: k for k, v in matched.items()}  # before id -> after id
    same_segment = b["segment_id"].map(lambda k: back.get(int(k), -2)) == a["segment_id"]
    out = pd.DataFrame(
        {
            "customer_id": pd.array(common, dtype="string"),
            "from_segment_id": b["segment_id"].to_numpy(),
            "from_segment_name": b["segment_name"].to_numpy(),
            "to_segment_id": a["segment_id"].to_numpy(),
            "to_segment_name": a["segment_name"].to_numpy(),
        }
    )
    changed = ~same_segment.to_numpy()
    moves = [[] for _ in range(len(out))]
    from_base = b["segment_name"].map(_base).to_numpy()
    to_base = a["segment_name"].map(_base).to_numpy()
    for i in range(len(out)):
        if from_base[i] != to_base[i] and to_base[i] not in ("", "outlier"):
            moves[i].append(f"became-{to_base[i]}")
    for col in TIER_COLUMNS:
        if col in b and col in a:
            out[f"from_{col}"] = b[col].to_numpy()
            out[f"to_{col}"] = a[col].to_numpy()
            diff = (b[col].astype(str) != a[col].astype(str)).to_numpy()
            changed |= diff
            for i in np.flatnonzero(diff):
                to = str(a[col].iloc[i])
                if to not in ("unknown", "nan", "None", ""):
                    moves[i].append(f"became-{to.lower()}")
    out["sentiment_before"] = b["sentiment_score"].round(4).to_numpy()
    out["sentiment_after"] = a["sentiment_score"].round(4).to_numpy()
    out["sentiment_change"] = (a["sentiment_score"] - b["sentiment_score"]).round(4).to_numpy()
    value = next((c for c in VALUE_COLUMNS if c in b and c in a), None)
    if value is not None:
        out["value_before"] = b[value].round(2).to_numpy()
        out["value_after"] = a[value].round(2).to_numpy()
        out["value_change"] = (a[value] - b[value]).round(2).to_numpy()
    out["moves"] = pd.array([";".join(m) for m in moves], dtype="string")
    out = out[changed | (out["moves"] != "").to_numpy()]
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)


def _per_customer(state: RunState) -> pd.DataFrame:
    """Per customer id: the most common segment (and its name), the latest tiers, the mean
    sentiment score and value."""
    t = state.table
    assert t is not None and state.id_col is not None
    t = t[t[state.id_col].notna()]
    ids = t[state.id_col].astype("string").str.strip()
    g = t.groupby(ids, sort=True)
    segs = t[t["segment_id"] >= 0]
    seg_ids = segs.groupby(ids[segs.index])["segment_id"].agg(lambda s: s.value_counts().index[0])
    names = dict(zip(t["segment_id"], t["segment_name"], strict=False))
    out = pd.DataFrame(index=g.size().index)
    out["segment_id"] = seg_ids.reindex(out.index).fillna(-1).astype("int64")
    out["segment_name"] = out["segment_id"].map(names).fillna("")
    score = pd.to_numeric(t["sentiment_score"], errors="coerce")
    out["sentiment_score"] = score.groupby(ids).mean()
    for col in TIER_COLUMNS:
        if col in t:
            out[col] = g[col].last()
    for col in VALUE_COLUMNS:
        if col in t:
            out[col] = pd.to_numeric(t[col], errors="coerce").groupby(ids).last()
    return out


def write_drift_outputs(
    out: Path,
    drift: dict[str, Any],
    moved: pd.DataFrame,
    after: RunState,
    audience_options: Any = None,
) -> list[Path]:
    """``OUT/drift.json``, ``OUT/movers.csv`` and ``OUT/audiences/movers/<move>.csv``; adds
    the ``movers`` counts to ``drift``."""
    from nlp_seg.io.audiences import write_group_audiences
    from nlp_seg.io.write import write_csv, write_json

    out.mkdir(parents=True, exist_ok=True)
    drift["movers"] = {
        "customers": len(moved),
        "by_move": move_counts(moved),
    }
    files = [out / "drift.json", out / "movers.csv"]
    write_json(drift, files[0])
    write_csv(moved, files[1])
    if after.table is not None and after.id_col is not None and len(moved):
        groups = {
            move: moved.loc[moved["moves"].str.split(";").map(lambda m, x=move: x in m)][
                "customer_id"
            ].tolist()
            for move in drift["movers"]["by_move"]
        }
        files.extend(
            write_group_audiences(
                after.table, after.id_col, groups, out / "audiences" / "movers", audience_options
            )
        )
    return files


def move_counts(moved: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in moved["moves"].fillna("") if len(moved) else []:
        for move in filter(None, str(m).split(";")):
            counts[move] = counts.get(move, 0) + 1
    return dict(sorted(counts.items()))


def compare_runs(a: str | Path | RunState, b: str | Path | RunState) -> tuple[dict, pd.DataFrame]:
    """Drift and movers from run ``a`` (earlier) to run ``b`` (later): the ``drift.json``
    entries and the ``movers.csv`` table."""
    before = a if isinstance(a, RunState) else load_run(a)
    after = b if isinstance(b, RunState) else load_run(b)
    matched, how = match_runs(before, after)
    drift = drift_report(before, after, matched=matched, matched_by=how)
    return drift, movers(before, after, matched)
