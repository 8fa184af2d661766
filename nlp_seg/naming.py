"""Stage 9, naming and profiling: a name people understand, keywords, quotes and an action.

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

Segments sharing a name are told apart by their top class-based TF-IDF keywords.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.normalize import strip_accents

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

STOPWORDS = set(
    [
        "và",
        "là",
        "của",
        "có",
        "không",
        "thì",
        "mà",
        "này",
        "cho",
        "với",
        "được",
        "rất",
        "cũng",
        "nhưng",
        "đã",
        "một",
        "những",
        "các",
        "khi",
        "lại",
        "ra",
        "vào",
        "nên",
        "mình",
        "em",
        "anh",
        "chị",
        "tôi",
        "bạn",
        "nó",
        "đó",
        "để",
        "từ",
        "như",
        "còn",
        "hơn",
        "quá",
        "lắm",
        "thấy",
        "ạ",
        "nha",
        "nhé",
        "luôn",
        "đi",
        "nữa",
        "vì",
        "do",
        "bị",
        "sẽ",
        "đang",
        "thế",
        "rồi",
        "ở",
        "trong",
        "ko",
        "k",
        "dc",
        "đc",
        "vs",
        "mik",
        "mk",
        "thi",
        "ma",
        "nay",
        "cho",
        "voi",
        "duoc",
        "rat",
        "cung",
        "nhung",
        "da",
        "mot",
        "nhung",
        "cac",
        "khi",
        "lai",
        "nen",
        "minh",
        "toi",
        "ban",
        "no",
        "de",
        "tu",
        "nhu",
        "con",
        "hon",
        "qua",
        "lam",
        "thay",
        "nua",
        "vi",
        "bi",
        "se",
        "dang",
        "the",
        "roi",
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "with",
        "it",
        "this",
        "that",
        "these",
        "those",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "my",
        "your",
        "our",
        "their",
        "me",
        "him",
        "her",
        "us",
        "them",
        "so",
        "very",
        "just",
        "not",
        "no",
        "yes",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "from",
        "as",
        "by",
        "about",
        "if",
        "then",
        "than",
        "too",
        "also",
        "can",
        "will",
        "would",
        "all",
        "any",
        "some",
        "more",
        "most",
        "de",
        "la",
        "le",
        "les",
        "des",
        "du",
        "un",
        "une",
        "et",
        "est",
        "en",
        "que",
        "qui",
        "pas",
        "pour",
        "sur",
        "au",
        "aux",
        "ce",
        "il",
        "elle",
        "je",
        "tu",
        "nous",
        "vous",
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "ein",
        "eine",
        "zu",
        "mit",
        "den",
        "von",
        "im",
        "es",
        "ich",
        "sie",
        "wir",
        "auf",
        "für",
        "dem",
        "o",
        "os",
        "as",
        "um",
        "uma",
        "e",
        "é",
        "da",
        "do",
        "das",
        "dos",
        "em",
        "no",
        "na",
        "nos",
        "nas",
        "que",
        "se",
        "não",
        "por",
        "para",
        "com",
        "muito",
        "mas",
        "foi",
        "el",
        "los",
        "las",
        "y",
        "es",
        "en",
        "un",
        "una",
        "que",
        "no",
        "por",
        "con",
        "para",
        "muy",
        "pero",
        "fue",
        "lo",
        "del",
        "al",
        "se",
        "su",
        "user",
        "http",
        "email",
    ]
)
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)

BASE_NAMES = ("satisfied", "disappointed", "awaiting-improvement", "neutral")


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


def analyze_tokens(text: str) -> list[str]:
    """Unigrams and bigrams of words (Vietnamese syllables pair into phrases such as
    "giao hàng"); CJK runs become character bigrams; stopwords and 1-letter tokens dropped."""
    text = text.lower()
    tokens: list[str] = []
    for run in CJK_RE.findall(text):
        tokens.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    text = CJK_RE.sub(" ", text)
    words = [w for w in WORD_RE.findall(text) if len(w) > 1]
    kept = [w for w in words if w not in STOPWORDS]
    tokens.extend(kept)
    for a, b in zip(words, words[1:], strict=False):
        if a not in STOPWORDS and b not in STOPWORDS:
            tokens.append(f"{a} {b}")
    return tokens


def class_tfidf_keywords(
    texts: Sequence[str], labels: np.ndarray, top_n: int = 10
) -> dict[int, list[str]]:
    """Top keywords per label by class-based TF-IDF (BERTopic's c-TF-IDF).

    A term scores high in a class when it is frequent there and rare across classes:
    ``tf(t, c) * log(1 + A / f(t))`` with ``A`` the mean word count per class.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    classes = sorted(set(int(v) for v in labels))
    joined: dict[int, list[str]] = {c: [] for c in classes}
    for t, lab in zip(texts, labels, strict=True):
        joined[int(lab)].append(t)
    docs = ["\n".join(joined[c]) for c in classes]
    vec = CountVectorizer(analyzer=analyze_tokens, min_df=1)
    try:
        counts = vec.fit_transform(docs).astype(np.float64).toarray()
    except ValueError:  # empty vocabulary
        return {c: [] for c in classes}
    terms = np.asarray(vec.get_feature_names_out())
    # Document frequency inside each class: a term used by one verbose reviewer is noise.
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    avg = counts.sum() / max(len(classes), 1)
    idf = np.log(1 + avg / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    out: dict[int, list[str]] = {}
    for i, c in enumerate(classes):
        order = np.argsort(-scores[i])
        picked: list[str] = []
        for j in order:
            if counts[i, j] < 2 and len(joined[c]) > 5:
                continue
            term = str(terms[j])
            # Prefer a phrase over its own words already listed, and vice versa.
            if any(term in p or p in term for p in picked):
                continue
            picked.append(term)
            if len(picked) >= top_n:
                break
        out[c] = picked
    return out


def representative_examples(
    texts: Sequence[str], embeddings: np.ndarray, k: int = 5, max_similarity: float = 0.95
) -> list[str]:
    """Up to ``k`` texts closest to the segment's centre that are not near-copies of each other."""
    if len(texts) == 0:
        return []
    emb = np.asarray(embeddings, dtype=np.float64)
    centre = emb.mean(axis=0)
    centre /= np.linalg.norm(centre) + 1e-12
    order = np.argsort(-(emb @ centre))
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        t = texts[i]
        key = t.strip().lower()
        if key in seen or len(key) < 3:
            continue
        if chosen and (emb[chosen] @ emb[i]).max() > max_similarity:
            continue
        chosen.append(int(i))
        seen.add(key)
        if len(chosen) >= k:
            break
    if not chosen:
        chosen = [int(order[0])]
    return [texts[i] for i in chosen]


def load_playbook(path: str | Path | None = None) -> dict[str, Any]:
    """The suggested-action rules: the shipped ``playbook.json`` or a user's edited copy."""
    from nlp_seg.errors import NlpsegError

    p = Path(path) if path else Path(__file__).with_name("playbook.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NlpsegError(f"playbook not found: {p}") from exc
    except json.JSONDecodeError as exc:
        raise NlpsegError(f"playbook {p} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise NlpsegError(f"playbook {p} needs a top-level 'rules' list")
    return data


def suggest_action(
    playbook: Mapping[str, Any], segment: Mapping[str, Any], lang: str = "en"
) -> str:
    """The first playbook rule whose ``when`` fields all match the segment."""
    for rule in playbook.get("rules", []):
        when = rule.get("when", {})
        if all(segment.get(k) == v for k, v in when.items()):
            action = rule.get("action", "")
            if isinstance(action, dict):
                return str(action.get(lang) or action.get("en") or next(iter(action.values())))
            return str(action)
    return ""


def disambiguate(names: dict[int, str], keywords: dict[int, list[str]]) -> dict[int, str]:
    """Add the top keywords to names shared by several segments ("satisfied (pin, camera)")."""
    out = dict(names)
    groups: dict[str, list[int]] = {}
    for sid, name in names.items():
        groups.setdefault(name, []).append(sid)
    for name, ids in groups.items():
        if len(ids) < 2:
            continue
        used: set[str] = set()
        for sid in ids:
            kws = [k for k in keywords.get(sid, []) if k not in used][:2]
            used.update(kws)
            out[sid] = f"{name} ({', '.join(kws)})" if kws else f"{name} #{sid}"
    # Guarantee uniqueness even when keywords coincide.
    seen: dict[str, int] = {}
    for sid in sorted(out):
        if out[sid] in seen:
            out[sid] = f"{out[sid]} #{sid}"
        seen[out[sid]] = sid
    return out
