"""Text normalisation: make equal texts byte-equal before any model sees them.

Vietnamese typed on different keyboards arrives in composed (NFC) or decomposed (NFD) form;
both must reach the encoder as the same string. URLs, e-mail addresses and @handles carry no
opinion and leak personal data into keywords, so they are masked. Emoji carry a lot of
sentiment in review data and are kept for the models.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
HANDLE_RE = re.compile(r"(?<![\w@])@\w{1,40}")
PHONE_CANDIDATE_RE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().\-]{6,22}\d(?![\w])")
THOUSANDS_RE = re.compile(r"^\d{1,3}([.,])\d{3}(\1\d{3})*$")
CONTROL_RE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")
SPACE_RE = re.compile(r"\s+")
LITERAL_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")

URL_TOKEN = "http"
EMAIL_TOKEN = "@email"
HANDLE_TOKEN = "@user"
PHONE_TOKEN = "@phone"

STATUS_OK = "ok"
STATUS_EMPTY = "empty_text"


@dataclass(frozen=True)
class NormalizedText:
    """A cleaned text and whether it can be scored."""

    text: str
    status: str


def normalize_text(raw: object, max_chars: int | None = None) -> NormalizedText:
    """Normalise one cell; ``None``/NaN/blank cells become ``status="empty_text"``.

    ``max_chars`` bounds what the *models* see (a pathological 5 MB cell would otherwise stall
    tokenisation); the original cell is kept whole in the outputs by the caller.
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return NormalizedText("", STATUS_EMPTY)
    text = str(raw)
    if LITERAL_ESCAPE_RE.search(text):
        text = _decode_literal_escapes(text)
    text = unicodedata.normalize("NFC", text)
    text = CONTROL_RE.sub(" ", text)
    text = URL_RE.sub(URL_TOKEN, text)
    text = HANDLE_RE.sub(HANDLE_TOKEN, text)  # before e-mails, so "@email" stays itself
    text = EMAIL_RE.sub(EMAIL_TOKEN, text)
    text = mask_phones(text)
    text = SPACE_RE.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars]
    if not text or text.lower() in {"nan", "none", "null", "n/a"}:
        return NormalizedText("", STATUS_EMPTY)
    return NormalizedText(text, STATUS_OK)


def _phone_or_same(match: re.Match[str]) -> str:
    candidate = match.group(0)
    digits = sum(ch.isdigit() for ch in candidate)
    if not 9 <= digits <= 15 or THOUSANDS_RE.match(candidate.strip()):
        return candidate
    return PHONE_TOKEN


def mask_phones(text: str) -> str:
    """Replace phone numbers with ``@phone`` (contacts never reach keywords, quotes or reports)."""
    if sum(ch.isdigit() for ch in text) < 9:
        return text
    return PHONE_CANDIDATE_RE.sub(_phone_or_same, text)


def mask_contacts(text: str) -> str:
    """E-mail addresses and phone numbers masked, the rest of the text as written: for text
    shown to people (report hover text, quotes) rather than fed to the models."""
    return mask_phones(EMAIL_RE.sub(EMAIL_TOKEN, text))


def _decode_literal_escapes(text: str) -> str:
    """Turn literal ``\\u2019`` escapes (common in scraped tweets) into the characters.

    Escaped surrogate pairs (an emoji written as ``\\ud83d\\ude0d``) are joined; a lone
    surrogate, which no encoder can take, is dropped rather than crashing the run later.
    """
    text = LITERAL_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\ufffd", "")


def normalize_texts(values: Iterable[object], max_chars: int | None = 2000) -> list[NormalizedText]:
    """Normalise a column of cells (see :func:`normalize_text`)."""
    return [normalize_text(v, max_chars) for v in values]


def strip_accents(text: str) -> str:
    """Lower-case, accent-free form used for rule matching across typing styles.

    Vietnamese reviewers often drop diacritics ("mong shop cai thien"); rules written with
    accents must still match, so both sides are compared in this folded form.
    """
    decomposed = unicodedata.normalize("NFD", text.lower())
    folded = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return folded.replace("đ", "d")


def strip_diacritics(text: str) -> str:
    """``text`` as typed without diacritics (Vietnamese ``đ`` becomes ``d``): how many people
    type on phones, and what the sentiment branch is also trained on."""
    decomposed = unicodedata.normalize("NFD", text)
    out = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", out.replace("đ", "d").replace("Đ", "D"))
