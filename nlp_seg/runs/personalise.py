"""Personalisation of a run's output table: what to say to each customer.

Adds ``next_best_action`` and ``recommended_items`` to every output row
(:func:`personalise_table`), a ``next_best_action`` and a ``message`` draft (en + vi) to every
segment profile, ``OUT/messages.csv`` and, with plain contacts allowed (``--audience-plain``),
``OUT/audiences/email_campaign.csv`` for e-mail tools (:func:`write_personal_files`).
``analyze``, ``batch`` (through :func:`nlp_seg.runs.jobs.write_run_outputs`) and ``assign``
all go through here, so the columns are the same in each. The rules and texts are in the
playbook (:mod:`nlp_seg.stages.personalise`); the recommenders in
:mod:`nlp_seg.behavior.recommend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nlp_seg.behavior.recommend import DEFAULT_RECOMMENDER, ITEM_SEPARATOR, recommend_items
from nlp_seg.behavior.tables import id_keys
from nlp_seg.stages.personalise import (
    LANGS,
    greeting_name,
    load_personalisation,
    message_rule,
    next_best_action,
    render,
    segment_message,
    segment_values,
)

#: Columns added after the contract's assignment columns, in this order.
PERSONAL_COLUMNS = ("next_best_action", "recommended_items")
#: Names of a column holding the customer's (first) name, compared as audiences compare.
NAME_NAMES = (
    "first_name",
    "firstname",
    "given_name",
    "fname",
    "name",
    "full_name",
    "customer_name",
    "ten",
    "ho_ten",
    "ho_va_ten",
    "ten_khach_hang",
    "nome",
    "nombre",
)
EMAIL_CAMPAIGN_FILE = "email_campaign.csv"
MESSAGES_FILE = "messages.csv"
DEFAULT_RECOMMEND_N = 10


def detect_name_column(frame: pd.DataFrame) -> str | None:
    """The column of customers' names (``first_name``, ``name``, ``ho_ten``, ...), if any."""
    from nlp_seg.io.audiences import norm_column_name

    by_norm = {norm_column_name(c): str(c) for c in frame.columns}
    return next((by_norm[n] for n in NAME_NAMES if n in by_norm), None)


def _row_fields(table: pd.DataFrame, segments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {int(s["id"]): s.get("base_name", "") for s in segments}
    ids = pd.to_numeric(table["segment_id"], errors="coerce").fillna(-1).astype(int).tolist()
    cols = {
        c: table[c].astype(object).tolist() if c in table else []
        for c in ("value_tier", "loyalty_tier", "sentiment_label")
    }
    out = []
    for i, sid in enumerate(ids):
        row = {"base": base.get(sid, "")}
        for c, values in cols.items():
            row[c] = values[i] if values and isinstance(values[i], str) else None
        out.append(row)
    return out


def personalise_table(
    table: pd.DataFrame,
    segments: Sequence[dict[str, Any]],
    *,
    id_col: str | None,
    orders: pd.DataFrame | None = None,
    playbook: str | None = None,
    recommender: str = DEFAULT_RECOMMENDER,
    n_items: int = DEFAULT_RECOMMEND_N,
    seed: int = 42,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``table`` with :data:`PERSONAL_COLUMNS` appended, and what was done (for run.json).

    ``next_best_action`` follows the playbook's rules on the row's segment and tiers;
    ``recommended_items`` lists up to ``n_items`` item ids (``;``-joined) for the row's
    customer (``id_col``), empty when the orders name no items or the row has no customer."""
    rules = load_personalisation(playbook)
    out = table.drop(columns=[c for c in PERSONAL_COLUMNS if c in table.columns])
    actions = [next_best_action(rules, f) for f in _row_fields(out, segments)]
    out["next_best_action"] = pd.array(actions, dtype="string")
    info: dict[str, Any] = {"recommender": recommender, "n": n_items}
    cells = [""] * len(out)
    has_items = orders is not None and "item_id" in orders and orders["item_id"].notna().any()
    if id_col is not None and id_col in out and has_items:
        keys = id_keys(out[id_col]).reset_index(drop=True)
        sids = pd.to_numeric(out["segment_id"], errors="coerce").fillna(-1).astype(int)
        known = keys.notna().to_numpy()
        # A customer's segment: the one most of their rows are in (one row at --unit customer).
        pairs = pd.DataFrame({"key": keys[known], "sid": sids.to_numpy()[known]})
        segment_of = (
            pairs.groupby("key")["sid"].agg(lambda s: s.value_counts().index[0]).to_dict()
            if len(pairs)
            else {}
        )
        recs = recommend_items(orders, segment_of, method=recommender, n=n_items, seed=seed)
        cells = [ITEM_SEPARATOR.join(recs.get(k, [])) if k else "" for k in keys.tolist()]
        info["customers_with_recommendations"] = sum(bool(v) for v in recs.values())
    else:
        info["customers_with_recommendations"] = 0
        if orders is None:
            why = "no --orders given"
        elif not has_items:
            why = "the orders have no item id column (name it with --orders-item-col)"
        else:
            why = "the output has no customer id column"
        info["note"] = f"recommended_items is empty: {why}"
    out["recommended_items"] = pd.array(cells, dtype="string")
    info["next_best_action_counts"] = {
        str(k): int(v) for k, v in out["next_best_action"].value_counts().items()
    }
    return out, info


def add_personal_columns(
    part: Any, segments: Sequence[dict[str, Any]], playbook: str | None = None
) -> Any:
    """An Arrow table of assignments (one part of ``nlpseg batch``) with
    :data:`PERSONAL_COLUMNS` appended; ``recommended_items`` empty (no orders there)."""
    import pyarrow as pa

    cols = [c for c in ("segment_id", "sentiment_label") if c in part.column_names]
    done, _ = personalise_table(
        part.select(cols).to_pandas(), segments, id_col=None, playbook=playbook
    )
    for c in PERSONAL_COLUMNS:
        part = part.append_column(c, pa.array(done[c].tolist(), type=pa.string()))
    return part


def personalise_segments(
    segments: Sequence[dict[str, Any]], playbook: str | None = None
) -> list[dict[str, Any]]:
    """Copies of the segment profiles with ``next_best_action`` (from the segment's base name
    and the tiers most of its members share) and ``message`` (``{en, vi}: {subject, body}``,
    ``{first_name}`` and ``{recommended_items}`` left for the per-customer fill)."""
    rules = load_personalisation(playbook)
    out = []
    for s in segments:
        action, drafts = segment_message(rules, s)
        out.append({**s, "next_best_action": action, "message": drafts})
    return out


def messages_table(segments: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``OUT/messages.csv``: one row per segment and language."""
    rows = [
        {
            "segment_id": s["id"],
            "segment_name": s["name"],
            "base_name": s.get("base_name", ""),
            "next_best_action": s["next_best_action"],
            "lang": lang,
            "subject": s["message"][lang]["subject"],
            "body": s["message"][lang]["body"],
        }
        for s in segments
        if "message" in s
        for lang in LANGS
    ]
    cols = ["segment_id", "segment_name", "base_name", "next_best_action", "lang"]
    return pd.DataFrame(rows, columns=[*cols, "subject", "body"])


def email_campaign_table(
    table: pd.DataFrame,
    segments: Sequence[dict[str, Any]],
    *,
    id_col: str | None,
    email_col: str,
    lang: str,
    playbook: str | None = None,
    gmail_strip_dots: bool = False,
) -> pd.DataFrame:
    """One row per valid e-mail (its customer's first row): the merge-field columns e-mail
    tools import (``Email Address``, ``First Name`` when the input has names, segment, action,
    topic, recommended items) and the subject and body in ``lang``, every field filled."""
    from nlp_seg.io.audiences import normalize_email

    rules = load_personalisation(playbook)
    by_id = {int(s["id"]): s for s in segments}
    name_col = detect_name_column(table)
    emails = [normalize_email(v, gmail_strip_dots) for v in table[email_col].tolist()]
    sids = pd.to_numeric(table["segment_id"], errors="coerce").fillna(-1).astype(int).tolist()
    keys = id_keys(table[id_col]).tolist() if id_col and id_col in table else [None] * len(table)
    fallback_name = greeting_name(rules, lang)
    no_items = (rules.get("no_recommendations") or {}).get(lang, "")
    rows = []
    seen: set[str] = set()
    for i, email in enumerate(emails):
        key = keys[i] or email
        if email is None or key in seen or email in seen:
            continue
        seen.update({key, email})
        segment = by_id.get(sids[i], {"id": sids[i], "name": "", "keywords": []})
        action = str(table["next_best_action"].iat[i])
        items = str(table["recommended_items"].iat[i] or "")
        first = table[name_col].iat[i] if name_col else None
        first = str(first).strip() if isinstance(first, str) and first.strip() else None
        values = segment_values(rules, segment, action, lang)
        values["first_name"] = first or fallback_name
        values["recommended_items"] = items.replace(ITEM_SEPARATOR, ", ") if items else no_items
        fields = {
            "base": segment.get("base_name", ""),
            "next_best_action": action,
            "value_tier": segment.get("value_tier"),
            "loyalty_tier": segment.get("loyalty_tier"),
        }
        draft = message_rule(rules, fields)[lang]
        row: dict[str, Any] = {"Email Address": email}
        if name_col:
            row["First Name"] = first or ""
        row.update(
            {
                "Customer ID": keys[i] or "",
                "Segment": segment.get("name", ""),
                "Next Best Action": action,
                "Top Topic": values["top_topic"],
                "Recommended Items": items,
                "Language": lang,
                "Subject": render(draft["subject"], values),
                "Body": render(draft["body"], values),
            }
        )
        rows.append(row)
    cols = ["Email Address", *(["First Name"] if name_col else [])]
    cols += ["Customer ID", "Segment", "Next Best Action", "Top Topic", "Recommended Items"]
    return pd.DataFrame(rows, columns=[*cols, "Language", "Subject", "Body"])


def write_personal_files(
    out: Path,
    table: pd.DataFrame,
    segments: Sequence[dict[str, Any]],
    *,
    id_col: str | None,
    lang: str,
    playbook: str | None = None,
    audiences: bool = True,
    audience_options: Any = None,
) -> tuple[list[Path], dict[str, Any]]:
    """``OUT/messages.csv`` always; ``OUT/audiences/email_campaign.csv`` only when plain
    contacts are allowed (``--audience-plain``) and the table has an e-mail column. Returns
    the files and the ``email_campaign`` entry for run.json (written, or why it was not)."""
    from nlp_seg.io.audiences import detect_contact_columns
    from nlp_seg.io.write import write_csv

    files = [out / MESSAGES_FILE]
    write_csv(messages_table(segments), files[0])
    path = out / "audiences" / EMAIL_CAMPAIGN_FILE
    plain = bool(getattr(audience_options, "include_plain", False))
    info: dict[str, Any] = {"file": f"audiences/{EMAIL_CAMPAIGN_FILE}", "written": False}
    if not audiences:
        info["reason"] = "audiences are off (--no-audiences)"
    elif not plain:
        info["reason"] = "it holds plain e-mail addresses: written only with --audience-plain"
    else:
        email_col, _ = detect_contact_columns(table, getattr(audience_options, "email_col", None))
        if email_col is None:
            info["reason"] = "no e-mail column found (name it with --email-col)"
        else:
            campaign = email_campaign_table(
                table,
                segments,
                id_col=id_col,
                email_col=email_col,
                lang=lang,
                playbook=playbook,
                gmail_strip_dots=bool(getattr(audience_options, "gmail_strip_dots", False)),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            write_csv(campaign, path)
            files.append(path)
            info.update({"written": True, "rows": len(campaign), "lang": lang})
            info.pop("reason", None)
    if not info["written"]:
        path.unlink(missing_ok=True)  # never leave an earlier run's plain e-mails behind
    return files, info
