"""Naming and profiling: a name people understand, keywords, quotes and an action.

Names come from documented rules over each segment's sentiment mix, not from a model, so a CX
lead can predict and trust them:

``satisfied``
    mean score >= 0.3 and >= 55% positive, and few improvement requests (< 30%);
``disappointed``
    mean score <= -0.3 and >= 50% negative, and few improvement requests (< 30%);
``awaiting-improvement``
    otherwise, when >= 15% of the texts ask for a fix, a feature or an update ("mong shop cải
    thiện", "hope you add", "khi nào cập nhật") - typically mixed or neutral texts;
``satisfied`` / ``disappointed`` / ``neutral``
    otherwise by the sign of the mean score (beyond +/-0.1).

Segments sharing a name are told apart by their top keywords (:mod:`nlp_seg.stages.keywords`:
class-based TF-IDF, diversified by MMR on the encoder's embeddings).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.models.sentiment import LABELS, summarize
from nlp_seg.normalize import strip_accents
from nlp_seg.stages import aspects as _aspects
from nlp_seg.stages.keywords import (  # noqa: F401 - re-exported: naming's keyword API
    STOPWORDS,
    analyze_tokens,
    class_tfidf_keywords,
    vietnamese_words,
)

REQUEST_PATTERNS = [
    # Vietnamese (matched accent-free, so "mong shop cai thien" counts too)
    r"\bmong\b",
    r"\bhy vong\b",
    r"\bhi vong\b",
    r"\bcai thien\b",
    r"\bcap nhat\b",
    r"\bkhi nao\b",
    r"\bbao gio\b",
    r"\bbo sung\b",
    r"\bnang cap\b",
    r"\bkhac phuc\b",
    r"\buoc gi\b",
    r"\bgia ma\b",
    r"\bde nghi\b",
    r"\bnen (them|co|sua|cai|lam|ra)\b",
    r"\bsua (loi|lai)\b",
    r"\bthem (tinh nang|chuc nang)\b",
    r"\bcan (cai thien|sua|nang)\b",
    # English
    r"\bhope\b",
    r"\bwish\b",
    r"\bplease (add|fix|update|improve|make|bring)\b",
    r"\bwould (be|love) (nice|great|better|good|to see)\b",
    r"\bwould love\b",
    r"\bshould (add|have|fix|improve|be|make|update)\b",
    r"\bneeds? (to be )?(improv|fix|updat)",
    r"\b(fix|update|improve|add) (the|this|it|a|an|more|support)\b",
    r"\bwhen will\b",
    r"\bcould you\b",
    r"\bfeature request\b",
    r"\bsuggest",
    # Portuguese / Spanish
    r"\bespero\b",
    r"\bpoderi(a|am)\b",
    r"\bdeveri(a|am)\b",
    r"\bmelhor(ar|em|ia)\b",
    r"\batualiz",
    r"\bcorrig",
    r"\badicion",
    r"\bseria (bom|bueno|legal|otimo)\b",
    r"\bgostaria\b",
    r"\bquando (vai|vao|van)\b",
    r"\bojala\b",
    r"\bmejorar\b",
    r"\bactualiz",
    r"\banadir\b",
    r"\bagregar\b",
    # French / German
    r"\bj'?espere\b",
    r"\bdevrai(t|ent)\b",
    r"\bpourriez\b",
    r"\bameliorer\b",
    r"\bmise a jour\b",
    r"\bajouter\b",
    r"\bserait bien\b",
    r"\bhoffe\b",
    r"\bsollte\b",
    r"\bverbessern\b",
    r"\bhinzufugen\b",
    r"\bware schon\b",
    r"\bbeheben\b",
]
_REQUEST_RE = re.compile("|".join(REQUEST_PATTERNS))


BASE_NAMES = ("satisfied", "disappointed", "awaiting-improvement", "neutral", "silent")
#: Segments where fewer than this share of members wrote any text are named ``silent``: they
#: were grouped on behaviour alone (customers known only from their orders and events).
SILENT_TEXT_SHARE = 0.2


_REQUEST_WORD_RE = re.compile("(?:" + "|".join(REQUEST_PATTERNS) + r")\w*")
_LETTERS_RE = re.compile(r"[^\W\d_]{2,}")
#: Whom a request is addressed to: "mong shop cải thiện" still says nothing of what.
_ADDRESSEES = frozenset(["shop", "store", "seller", "loja", "tienda", "vendedor", "admin", "ad"])


@functools.lru_cache(maxsize=1 << 16)
def is_request_cue(term: str) -> bool:
    """Whether a keyword is only how people ask ("gostaria", "espero", "mong shop cải
    thiện"), not what they ask for ("cor", "cải thiện pin" keeps "pin"): no keyword."""
    rest = _REQUEST_WORD_RE.sub(" ", strip_accents(term.lower()))
    return not any(w not in _ADDRESSEES for w in _LETTERS_RE.findall(rest))


def asks_improvement(texts: Sequence[str]) -> np.ndarray:
    """Per text: does it ask for a fix, a feature or an update (any supported language)?"""
    return np.array([bool(_REQUEST_RE.search(strip_accents(t))) for t in texts], dtype=bool)


def base_name(mean_score: float, shares: Mapping[str, float], request_share: float) -> str:
    """The rule in the module docstring, as a pure function."""
    pos, neg = shares.get("positive", 0.0), shares.get("negative", 0.0)
    if mean_score >= 0.3 and pos >= 0.55 and request_share < 0.3:
        return "satisfied"
    if mean_score <= -0.3 and neg >= 0.5 and request_share < 0.3:
        return "disappointed"
    if request_share >= 0.15:
        return "awaiting-improvement"
    if mean_score >= 0.1:
        return "satisfied"
    if mean_score <= -0.1:
        return "disappointed"
    return "neutral"


def representative_examples(
    texts: Sequence[str],
    embeddings: np.ndarray,
    k: int = 5,
    max_similarity: float = 0.95,
    prefer: np.ndarray | None = None,
) -> list[str]:
    """Up to ``k`` texts closest to the segment's centre that are not near-copies of each other
    (same words once emoji and punctuation are ignored, or cosine > ``max_similarity``).

    ``prefer`` (a mask, e.g. the texts that complain about the segment's top complaint) puts
    those of the more central half first, so quotes show what the name says the segment is
    about; the others follow, most central first."""
    if len(texts) == 0:
        return []
    emb = np.asarray(embeddings, dtype=np.float64)
    centre = emb.mean(axis=0)
    centre /= np.linalg.norm(centre) + 1e-12
    closeness = emb @ centre
    order = np.argsort(-closeness, kind="stable")
    if prefer is not None and np.any(prefer):
        central = closeness >= np.median(closeness)
        first = np.asarray(prefer, dtype=bool)[order] & central[order]
        order = np.concatenate([order[first], order[~first]])
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        t = texts[i]
        # Emoji and punctuation do not make a different quote ("tốt quá 😍" = "tốt quá 👍").
        key = " ".join(re.sub(r"[\W_]+", " ", t.lower()).split())
        if key in seen or len(key) < 3:
            continue
        if chosen and (emb[chosen] @ emb[i]).max() > max_similarity:
            continue
        chosen.append(int(i))
        seen.add(key)
        if len(chosen) >= k:
            break
    if len(chosen) < min(3, k):
        # Near-identical embeddings (a very uniform segment): still show up to three distinct
        # texts, the most central first, rather than a single quote.
        for i in order:
            key = " ".join(re.sub(r"[\W_]+", " ", texts[i].lower()).split())
            if key in seen or len(key) < 3:
                continue
            chosen.append(int(i))
            seen.add(key)
            if len(chosen) >= min(3, k):
                break
    if not chosen:
        chosen = [int(order[0])]
    return [texts[i] for i in chosen]


def load_playbook(path: str | Path | None = None) -> dict[str, Any]:
    """The suggested-action rules: the shipped ``playbook.json`` or a user's edited copy."""
    from nlp_seg.errors import NlpsegError

    p = Path(path) if path else Path(__file__).resolve().parent.parent / "playbook.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NlpsegError(f"playbook not found: {p}") from exc
    except json.JSONDecodeError as exc:
        raise NlpsegError(f"playbook {p} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise NlpsegError(f"playbook {p} needs a top-level 'rules' list")
    return data


def quoted_topic(keywords: Sequence[str]) -> str:
    """A segment's top keywords as they appear in an action: quoted, since they are the
    customers' own words in their own language inside the playbook's sentence."""
    return ", ".join(f"“{k}”" for k in keywords)


#: What ``{topic}`` reads when a segment has no keywords.
NO_TOPIC = {"en": "what they mention", "vi": "điều họ nhắc tới"}


def suggest_action(
    playbook: Mapping[str, Any],
    segment: Mapping[str, Any],
    lang: str = "en",
    topic: str = "",
) -> str:
    """The first playbook rule whose ``when`` fields all match the segment, with ``{topic}``
    replaced by the segment's topic (its top keywords), so segments of one kind get actions
    about what their members actually say."""
    for rule in playbook.get("rules", []):
        when = rule.get("when", {})
        if all(segment.get(k) == v for k, v in when.items()):
            action = rule.get("action", "")
            if isinstance(action, dict):
                action = action.get(lang) or action.get("en") or next(iter(action.values()))
            fill = topic or NO_TOPIC.get(lang, NO_TOPIC["en"])
            return str(action).replace("{topic}", fill)
    return ""


def disambiguate(
    names: dict[int, str], keywords: dict[int, list[str]], described: Collection[int] = ()
) -> dict[int, str]:
    """Add the top keywords to every name that does not already say what its segment talks
    about ("satisfied · low-value" -> "satisfied · low-value (pin, camera)"), and to names
    shared by several segments; ``described`` are segments named after an aspect
    ("disappointed · battery"), which keep their name while it is their own."""
    out = dict(names)
    groups: dict[str, list[int]] = {}
    for sid, name in names.items():
        groups.setdefault(name, []).append(sid)
    for name, ids in groups.items():
        if len(ids) < 2 and (ids[0] in described or not keywords.get(ids[0])):
            continue
        used: set[str] = set()
        for sid in ids:
            own = keywords.get(sid, [])
            # Keywords no other segment of this name showed yet; else its own top ones.
            kws = [k for k in own if k not in used][:2] or own[:2]
            used.update(kws)
            out[sid] = f"{name} ({', '.join(kws)})" if kws else f"{name} #{sid}"
    # Guarantee uniqueness even when keywords coincide.
    seen: dict[str, int] = {}
    for sid in sorted(out):
        if out[sid] in seen:
            out[sid] = f"{out[sid]} #{sid}"
        seen[out[sid]] = sid
    return out


# --------------------------------------------------------------------------- tiers
# Value and loyalty tiers qualify the sentiment name ("disappointed · VIP · at-risk"). The
# thresholds are quantiles of this run's own customers (those with at least one purchase), so
# the rules adapt to any shop's scale and currency; they are written to segments.json.
NAME_SEPARATOR = " · "
#: The base-name rule, as written under ``naming_rules["base"]`` in segments.json.
BASE_RULE = (
    "see README: satisfied / disappointed / awaiting-improvement / neutral from the sentiment "
    "mix and improvement-request share; silent when under 20% of members wrote text"
)


def naming_rules(tier_rules: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The ``naming_rules`` object of segments.json: always an object (``base``, plus the tier
    thresholds and their reference date with ``--orders`` / ``--events``), so readers never
    have to check its type."""
    return {"base": BASE_RULE, **(tier_rules or {}), **extra}


VALUE_TIERS = ("VIP", "mid-value", "low-value", "no-orders")
LOYALTY_TIERS = ("new", "at-risk", "loyal", "regular", "no-orders")
#: Tiers that describe the middle of the distribution: true, but not worth a word in a name.
UNSHOWN_TIERS = ("mid-value", "regular", "mixed", "no-orders", "")
VIP_QUANTILE = 0.8
LOW_VALUE_QUANTILE = 0.3
NEW_TENURE_QUANTILE = 0.25
AT_RISK_RECENCY_QUANTILE = 0.75
LOYAL_FREQUENCY_QUANTILE = 0.75
SEGMENT_TIER_MIN_SHARE = 0.5


class TierRules:
    """Data-relative value and loyalty tiers per customer; fitted thresholds end with ``_``.

    Value (basis: ``clv`` when known, else ``monetary``), over customers with a purchase:

    * ``VIP``: value >= the 80th percentile (and > 0);
    * ``low-value``: value <= the 30th percentile;
    * ``mid-value``: in between; ``no-orders``: no purchase in the orders.

    Loyalty, tried in this order:

    * ``new``: first purchase no longer ago than the 25th percentile of tenure;
    * ``at-risk``: last purchase at least as long ago as the 75th percentile of recency;
    * ``loyal``: at least the 75th percentile of orders (and at least 2);
    * ``regular``: the rest; ``no-orders``: no purchase.

    Recency and tenure are counted in days back from the data's latest date, not from today.
    """

    def fit(self, features: Any) -> TierRules:
        import pandas as pd

        f = features
        buyers = f[pd.to_numeric(f.get("frequency"), errors="coerce").fillna(0) > 0]
        basis = "clv" if "clv" in f and f["clv"].notna().any() else "monetary"
        self.value_basis_ = basis
        value = pd.to_numeric(buyers.get(basis), errors="coerce").dropna()
        self.vip_min_ = float(value.quantile(VIP_QUANTILE)) if len(value) else float("inf")
        self.low_max_ = float(value.quantile(LOW_VALUE_QUANTILE)) if len(value) else float("-inf")
        ten = pd.to_numeric(buyers.get("tenure_days"), errors="coerce").dropna()
        rec = pd.to_numeric(buyers.get("recency_days"), errors="coerce").dropna()
        frq = pd.to_numeric(buyers.get("frequency"), errors="coerce").dropna()
        self.new_max_tenure_days_ = float(ten.quantile(NEW_TENURE_QUANTILE)) if len(ten) else -1.0
        self.at_risk_min_recency_days_ = (
            float(rec.quantile(AT_RISK_RECENCY_QUANTILE)) if len(rec) else float("inf")
        )
        self.loyal_min_frequency_ = max(
            2.0, float(frq.quantile(LOYAL_FREQUENCY_QUANTILE)) if len(frq) else 2.0
        )
        self.n_customers_ = len(buyers)
        return self

    def assign(self, features: Any) -> tuple[Any, Any]:
        """``(value_tier, loyalty_tier)`` string Series aligned with ``features``."""
        import pandas as pd

        f = features
        idx = f.index

        def col(name: str) -> pd.Series:
            if name in f:
                return pd.to_numeric(f[name], errors="coerce")
            return pd.Series(np.nan, index=idx)

        buyer = col("frequency").fillna(0) > 0
        v = col(self.value_basis_)
        value = np.where(
            ~buyer,
            "no-orders",
            np.where(
                (v >= self.vip_min_) & (v > 0),
                "VIP",
                np.where(v <= self.low_max_, "low-value", "mid-value"),
            ),
        )
        ten, rec, frq = col("tenure_days"), col("recency_days"), col("frequency")
        loyalty = np.select(
            [
                ~buyer,
                ten <= self.new_max_tenure_days_,
                rec >= self.at_risk_min_recency_days_,
                frq >= self.loyal_min_frequency_,
            ],
            ["no-orders", "new", "at-risk", "loyal"],
            default="regular",
        )
        return (
            pd.Series(value, index=idx, dtype="object"),
            pd.Series(loyalty, index=idx, dtype="object"),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TierRules:
        """Rules back from :meth:`to_dict` (a saved segmenter keeps them, so that ``nlpseg
        assign`` tiers new customers with the thresholds the segments were named with)."""

        def f(x: Any, missing: float) -> float:
            return missing if x is None else float(x)

        rules = cls()
        value, loyalty = d["value_tier"], d["loyalty_tier"]
        rules.value_basis_ = str(value["basis"])
        rules.vip_min_ = f(value.get("vip_min"), float("inf"))
        rules.low_max_ = f(value.get("low_value_max"), float("-inf"))
        rules.new_max_tenure_days_ = f(loyalty.get("new_max_tenure_days"), -1.0)
        rules.at_risk_min_recency_days_ = f(loyalty.get("at_risk_min_recency_days"), float("inf"))
        rules.loyal_min_frequency_ = f(loyalty.get("loyal_min_frequency"), 2.0)
        rules.n_customers_ = int(d.get("customers_with_orders", 0))
        return rules

    def to_dict(self) -> dict[str, Any]:
        """The thresholds, as written under ``naming_rules`` in segments.json."""

        def r(x: float) -> float | None:
            return round(float(x), 4) if np.isfinite(x) else None

        return {
            "value_tier": {
                "basis": self.value_basis_,
                "VIP": f"{self.value_basis_} >= {r(self.vip_min_)} (P{VIP_QUANTILE * 100:.0f})",
                "low-value": f"{self.value_basis_} <= {r(self.low_max_)} "
                f"(P{LOW_VALUE_QUANTILE * 100:.0f})",
                "mid-value": "in between",
                "no-orders": "no purchase in the orders",
                "vip_min": r(self.vip_min_),
                "low_value_max": r(self.low_max_),
            },
            "loyalty_tier": {
                "order": ["no-orders", "new", "at-risk", "loyal", "regular"],
                "new": f"tenure_days <= {r(self.new_max_tenure_days_)} "
                f"(P{NEW_TENURE_QUANTILE * 100:.0f})",
                "at-risk": f"recency_days >= {r(self.at_risk_min_recency_days_)} "
                f"(P{AT_RISK_RECENCY_QUANTILE * 100:.0f})",
                "loyal": f"frequency >= {r(self.loyal_min_frequency_)} "
                f"(P{LOYAL_FREQUENCY_QUANTILE * 100:.0f}, at least 2)",
                "regular": "the rest",
                "new_max_tenure_days": r(self.new_max_tenure_days_),
                "at_risk_min_recency_days": r(self.at_risk_min_recency_days_),
                "loyal_min_frequency": r(self.loyal_min_frequency_),
            },
            "segment_tier": f"the tier of at least {SEGMENT_TIER_MIN_SHARE:.0%} of the segment's "
            "members, else 'mixed'; names show VIP, low-value, new, at-risk and loyal",
            "customers_with_orders": self.n_customers_,
        }


def segment_tier(tiers: Sequence[str], min_share: float = SEGMENT_TIER_MIN_SHARE) -> str:
    """The tier most members share (at least ``min_share`` of them), else ``mixed``."""
    if len(tiers) == 0:
        return "mixed"
    values, counts = np.unique([str(t) for t in tiers], return_counts=True)
    top = int(np.argmax(counts))
    return str(values[top]) if counts[top] / len(tiers) >= min_share else "mixed"


def tier_shares(tiers: Sequence[str]) -> dict[str, float]:
    """Share of the segment's members in each tier (largest first)."""
    if len(tiers) == 0:
        return {}
    values, counts = np.unique([str(t) for t in tiers], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {str(values[i]): round(float(counts[i]) / len(tiers), 4) for i in order}


def qualified_name(base: str, value_tier: str | None, loyalty_tier: str | None) -> str:
    """``disappointed · VIP · at-risk``: the base name plus the tiers worth a word."""
    parts = [base] + [t for t in (value_tier, loyalty_tier) if t and t not in UNSHOWN_TIERS]
    return NAME_SEPARATOR.join(parts)


#: Awaiting improvement: mixed is the members' largest review class, or most members like the
#: product (satisfied or mixed), at least MIXED_SHARE are mixed and at least this share
#: complain about one same aspect.
AWAITING_COMPLAINT_SHARE = 0.25
MIXED_SHARE = 0.3


def aspect_base_name(
    classes: Sequence[str], mix: Mapping[str, Mapping[str, float]]
) -> tuple[str, str]:
    """The base name from members' review classes and the segment's aspect mix (module
    docstring), and the name with what it is about:
    ``awaiting-improvement · battery``, ``disappointed · delivery``,
    ``satisfied · camera, design``."""
    n = len(classes)
    share = {c: (sum(x == c for x in classes) / n if n else 0.0) for c in _aspects.REVIEW_CLASSES}
    complaint = _aspects.top_complaint(mix)
    likes = share["satisfied"] + share["mixed"]
    top = max(_aspects.REVIEW_CLASSES, key=lambda c: share[c])
    if top == "mixed" or (
        likes >= 0.5
        and share["mixed"] >= MIXED_SHARE
        and complaint is not None
        and mix[complaint]["complaining"] >= AWAITING_COMPLAINT_SHARE
    ):
        base, about = "awaiting-improvement", [complaint] if complaint else []
    else:
        base = top
        about = _aspects.top_praise(mix) if top == "satisfied" else [complaint] if complaint else []
        if top == "neutral":
            about = []
    return base, NAME_SEPARATOR.join([base, ", ".join(about)]) if about else base


def quote_aspect(base: str, mix: Mapping[str, Mapping[str, float]]) -> tuple[str, str] | None:
    """The ``(aspect, polarity)`` a segment's quotes should show: its top complaint when the
    segment is disappointed or awaiting improvement, its most praised aspect when satisfied,
    else its most talked-about aspect on its more frequent side; ``None`` without aspects."""
    if not mix:
        return None
    complaint = _aspects.top_complaint(mix)
    if base in ("disappointed", "awaiting-improvement") and complaint is not None:
        return complaint, "negative"
    praised = _aspects.top_praise(mix, k=1)
    if base == "satisfied" and praised:
        return praised[0], "positive"
    top = next(iter(mix))
    side = mix[top]
    return top, "negative" if side["complaining"] > side["praising"] else "positive"


def segment_qualifiers(
    row_info: Any, labels: np.ndarray, seg_mask: np.ndarray, seg_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Per segment: its value and loyalty tiers (for the name), and the profile fields
    ``value_tier``, ``loyalty_tier``, ``tier_shares`` and ``benefits`` (share of members whose
    texts mention each benefit) taken from the per-row ``row_info`` columns present."""
    from nlp_seg.behavior.benefits import benefit_shares

    out: dict[int, dict[str, Any]] = {}
    cols = set(row_info.columns)
    for sid in seg_ids:
        members = np.flatnonzero(seg_mask & (labels == sid))
        sub = row_info.iloc[members]
        fields: dict[str, Any] = {}
        vt = lt = ""
        if "value_tier" in cols:
            vt = segment_tier(sub["value_tier"].astype(str).tolist())
            fields["value_tier"] = vt
        if "loyalty_tier" in cols:
            lt = segment_tier(sub["loyalty_tier"].astype(str).tolist())
            fields["loyalty_tier"] = lt
        if "value_tier" in cols or "loyalty_tier" in cols:
            fields["tier_shares"] = {
                k: tier_shares(sub[k].astype(str).tolist())
                for k in ("value_tier", "loyalty_tier")
                if k in cols
            }
        if "benefit_sought" in cols:
            tags = [
                [t for t in str(v).split(";") if t] if isinstance(v, str) else []
                for v in sub["benefit_sought"].tolist()
            ]
            fields["benefits"] = benefit_shares(tags)
        tiers = (vt, lt) if sid >= 0 else ("", "")
        out[int(sid)] = {"tiers": tiers, "fields": fields}
    return out


def profile_segments(
    texts: list[str],
    scored: np.ndarray,
    seg_mask: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    embeddings: np.ndarray,
    behavior: pd.DataFrame | None,
    outlier: np.ndarray,
    row_info: Any = None,
    playbook: str | None = None,
    lang: str = "en",
    aspects: Sequence[object] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    aspect_fallback: bool = True,
    restore_diacritics: bool = False,
) -> list[dict[str, Any]]:
    """Size, sentiment mix, behaviour, keywords, quotes and a name for every segment.

    Text statistics use the rows that have text (``scored``); sizes and behaviour use
    every segmented row. With ``aspects`` (one ``aspect:polarity;...`` cell per row) each
    profile gets its aspect mix and top complaint, and the name comes from the members'
    review classes and what they praise or complain about (:func:`aspect_base_name`), and
    its quotes favour texts about that aspect (:func:`quote_aspect`). ``embed`` (the run's
    encoder, words in, vectors out) diversifies keywords by MMR (:mod:`.keywords`).
    ``aspect_fallback``: a text with no aspect takes its sentiment label as its review class
    (phrase taxonomies, which leave many texts without one); off for a joint head, whose
    decoding already weighed the review's class, so "no aspect" means neutral.
    """
    seg_ids = sorted(set(labels[seg_mask].tolist()))
    if not seg_ids:
        return []
    idx_txt = np.flatnonzero(scored & seg_mask)
    texts_txt = [texts[i] for i in idx_txt]
    lab_txt = labels[idx_txt]
    requests = asks_improvement(texts_txt)
    keywords = (
        class_tfidf_keywords(
            texts_txt,
            lab_txt,
            top_n=10,
            embed=embed,
            exclude=is_request_cue,
            restore_diacritics=restore_diacritics,
        )
        if len(idx_txt)
        else {}
    )
    playbook_rules = load_playbook(playbook)
    total = int(seg_mask.sum())
    profiles: list[dict[str, Any]] = []
    base: dict[int, str] = {}
    for sid in seg_ids:
        members = seg_mask & (labels == sid)
        m = lab_txt == sid
        p = probs[idx_txt[m]]
        if len(p):
            _, score, _ = summarize(p)
            shares = {lab: float(np.mean(p.argmax(axis=1) == i)) for i, lab in enumerate(LABELS)}
            mean_score = float(score.mean())
            req = float(requests[m].mean())
        else:
            shares = {lab: 0.0 for lab in LABELS}
            mean_score, req = 0.0, 0.0
        b = base_name(mean_score, shares, req) if sid >= 0 else "outliers"
        named = b
        aspect_fields: dict[str, Any] = {}
        prefer: np.ndarray | None = None
        if aspects is not None:
            cells = [aspects[i] for i in idx_txt[m]]
            mix = _aspects.segment_aspect_mix(cells)
            labels_txt = summarize(p)[0] if len(p) else []
            classes = [
                _aspects.review_class(
                    _aspects.parse_aspects(c), str(lab) if aspect_fallback else None
                )
                for c, lab in zip(cells, labels_txt, strict=True)
            ]
            aspect_fields = {
                "aspects": mix,
                "top_complaint": _aspects.top_complaint(mix),
                "review_classes": {
                    c: round(classes.count(c) / len(classes), 4) if classes else 0.0
                    for c in _aspects.REVIEW_CLASSES
                },
            }
            if sid >= 0 and len(cells):
                b, named = aspect_base_name(classes, mix)
                about = quote_aspect(b, mix)
                if about is not None:
                    pair = f"{about[0]}:{about[1]}"
                    prefer = np.array([pair in str(c).split(";") for c in cells], dtype=bool)
        if sid >= 0 and m.sum() < SILENT_TEXT_SHARE * members.sum():
            b = named = "silent"  # grouped on behaviour alone: too few members wrote anything
        base[sid] = named
        prof: dict[str, Any] = {
            "id": int(sid),
            "name": b,
            "base_name": b,
            "size": int(members.sum()),
            "share": round(float(members.sum()) / total, 4),
            "with_text": int(m.sum()),
            "sentiment": {
                **{k: round(v, 4) for k, v in shares.items()},
                # none without a text: a silent segment has no sentiment, not a neutral one
                "mean_score": round(mean_score, 4) if len(p) else None,
            },
            "improvement_request_share": round(req, 4),
            **aspect_fields,
            "outlier_share": round(float(outlier[members].mean()), 4),
            "keywords": keywords.get(sid, []),
            "examples": representative_examples(
                [t for t, k in zip(texts_txt, m, strict=True) if k],
                embeddings[idx_txt[m]],
                k=5,
                prefer=prefer,
            ),
        }
        if behavior is not None and behavior.shape[1] > 0:
            sub = behavior.loc[members]
            prof["behavior"] = {
                c: _finite_or_none(pd.to_numeric(sub[c], errors="coerce").mean())
                for c in behavior.columns
            }
        profiles.append(prof)
    awaiting = [p["id"] for p in profiles if p["base_name"] == "awaiting-improvement"]
    if awaiting and requests.any():
        # What an awaiting-improvement segment asks for is said in its requests, not in the
        # praise beside them ("embalado, chegou rápido"): their keywords come first.
        asked = class_tfidf_keywords(
            [t for t, r in zip(texts_txt, requests, strict=True) if r],
            lab_txt[requests],
            top_n=10,
            embed=embed,
            exclude=is_request_cue,
            restore_diacritics=restore_diacritics,
        )
        for prof in profiles:
            own = asked.get(prof["id"], [])
            if prof["id"] in awaiting and own:
                rest = [k for k in prof["keywords"] if k not in own]
                prof["keywords"] = (own + rest)[:10]
    qual = segment_qualifiers(row_info, labels, seg_mask, seg_ids) if row_info is not None else {}
    names = disambiguate(
        {
            s: qualified_name(base[s], *qual.get(s, {}).get("tiers", ("", "")))
            for s in seg_ids
            if s >= 0
        },
        {p["id"]: p["keywords"] for p in profiles},
        described={s for s in seg_ids if NAME_SEPARATOR in base[s]},
    )
    for prof in profiles:
        if prof["id"] >= 0:
            prof["name"] = names[prof["id"]]
        q = qual.get(prof["id"], {})
        prof.update(q.get("fields", {}))
        key = {"base": prof["base_name"], **q.get("fields", {})}
        prof["action"] = suggest_action(
            playbook_rules, key, lang=lang, topic=quoted_topic(prof["keywords"][:2])
        )
    return profiles


class SegmentNamer:
    """The naming stage: a profile and a name people understand for every segment.

    ``playbook`` (a path, or ``None`` for the shipped one) and ``lang`` choose the suggested
    actions; :meth:`fit` sets ``segments_``, the profiles written to ``segments.json``.
    """

    def __init__(
        self, playbook: str | None = None, lang: str = "en", restore_diacritics: bool = False
    ) -> None:
        self.playbook = playbook
        self.lang = lang
        #: keywords read Vietnamese typed without marks with its marks back ("nhiệt tình",
        #: not "nhiet tinh" beside it), so one word is one keyword, written as it should be
        self.restore_diacritics = restore_diacritics

    def fit(
        self,
        texts: list[str],
        labels: np.ndarray,
        probs: np.ndarray,
        embeddings: np.ndarray,
        *,
        scored: np.ndarray,
        segmented: np.ndarray,
        outlier: np.ndarray,
        behavior: Any = None,
        row_info: Any = None,
        aspects: Sequence[object] | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        aspect_fallback: bool = True,
    ) -> SegmentNamer:
        self.segments_ = profile_segments(
            texts,
            scored,
            segmented,
            labels,
            probs,
            embeddings,
            behavior,
            outlier,
            row_info=row_info,
            playbook=self.playbook,
            lang=self.lang,
            aspects=aspects,
            embed=embed,
            aspect_fallback=aspect_fallback,
            restore_diacritics=self.restore_diacritics,
        )
        describe = getattr(embed, "describe", None)
        self.keywords_info_ = describe() if callable(describe) else None
        return self


def _finite_or_none(x: float) -> float | None:
    return round(float(x), 4) if x is not None and np.isfinite(x) else None


def recount_profiles(
    segments: list[dict[str, Any]],
    labels: np.ndarray,
    scored: np.ndarray,
    segmented: np.ndarray,
    outlier: np.ndarray,
) -> list[dict[str, Any]]:
    """Profiles made on the fit sample with size, share, ``with_text`` and ``outlier_share``
    counted over every row (``sample_size`` keeps the sample's count). The rest of a profile
    (sentiment mix, keywords, quotes) estimates the whole from a uniform sample."""
    total = int(segmented.sum())
    out = []
    for s in segments:
        members = segmented & (labels == s["id"])
        size = int(members.sum())
        out.append(
            {
                **s,
                "size": size,
                "share": round(size / total, 4) if total else 0.0,
                "with_text": int((members & scored).sum()),
                "outlier_share": round(float(outlier[members].mean()), 4) if size else 0.0,
                "sample_size": s["size"],
            }
        )
    return out
