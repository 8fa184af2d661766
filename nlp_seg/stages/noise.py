"""Texts that are not reviews: keyboard mashing, one repeated character, links only, ads,
homework or chat pasted into a review box.

Such rows carry no opinion about a purchase, yet the sentiment model still gives them a label
and the clusterer a segment, so a segment of "Dhnxncbcncncnc" ends up named ``satisfied``.
:class:`NoiseFilter` flags them, and the segmenter gives flagged rows ``status =
"low_information"``: no sentiment, no clustering, segment ``-1`` named ``noise``.

Two parts, both cheap and both run in every command (the segmenter calls them):

* **rules** on the clean text: nothing but links / masked contacts, or one character repeated
  (``kkkkkkkk``), or a long letter string with almost no vowels (``Dhnxncbcncncnc``);
* a **head**: logistic regression on the sentence embedding the encoder already computed (no
  extra encoder pass) plus a few text-shape features (share of letters, vowel ratio, longest
  run of one character, distinct-character ratio, ...). It was trained on ViSpamReviews
  (``scripts/train_noise_head.py``) and is shipped as ``models/noise_head`` (safetensors +
  JSON, no pickle). It only means something on the vectors it was trained on, so with another
  embedding model only the rules run.
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.normalize import EMAIL_TOKEN, HANDLE_TOKEN, PHONE_TOKEN, URL_TOKEN

STATUS_LOW_INFORMATION = "low_information"
NOISE_SEGMENT_NAME = "noise"

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "config.json"
FEATURE_NAMES = (
    "letter_share",
    "vowel_ratio",
    "longest_run_log",
    "distinct_ratio",
    "log_chars",
    "max_word_log",
    "no_vowel_word_share",
    "symbol_share",
    "digit_share",
    "distinct_bigram_ratio",
)
_PLACEHOLDERS = {URL_TOKEN, EMAIL_TOKEN, HANDLE_TOKEN, PHONE_TOKEN}
_PUNCT = ".,;:!?()[]<>\"'-|/"
_VOWELS = set("aeiouy")
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)
_RUN_RE = re.compile(r"(.)\1*", re.DOTALL)
# Letters stretched for emphasis ("nhanhhhhhh", "tốtttttt") are one letter for the rules.
_STRETCH_RE = re.compile(r"(.)\1{2,}", re.DOTALL)
# A Latin-letter string this long with (almost) no vowels is no word in any language.
_MASH_MIN_LETTERS = 12
_MASH_MAX_VOWEL_RATIO = 0.12


def _fold(ch: str) -> str:
    """A letter without its accents (``ế`` -> ``e``), so Vietnamese vowels count as vowels."""
    base = unicodedata.normalize("NFD", ch)[0]
    return "d" if base == "đ" else base


def _is_latin(ch: str) -> bool:
    return ch.isalpha() and ("a" <= _fold(ch) <= "z")


def _longest_run(text: str) -> int:
    return max((len(m.group(0)) for m in _RUN_RE.finditer(text)), default=0)


def text_features(texts: Sequence[str]) -> np.ndarray:
    """``(n, len(FEATURE_NAMES))`` text-shape features of clean texts (lower-cased here)."""
    out = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)
    for i, raw in enumerate(texts):
        text = raw.lower()
        chars = [c for c in text if not c.isspace()]
        n = max(len(chars), 1)
        letters = [c for c in chars if c.isalpha()]
        latin = [_fold(c) for c in letters if _is_latin(c)]
        vowels = sum(c in _VOWELS for c in latin)
        words = [w for w in _WORD_RE.findall(text) if all(_is_latin(c) for c in w)]
        no_vowel = sum(1 for w in words if len(w) > 1 and not any(_fold(c) in _VOWELS for c in w))
        compact = "".join(chars)
        bigrams = [compact[j : j + 2] for j in range(len(compact) - 1)]
        out[i] = (
            len(letters) / n,
            vowels / len(latin) if latin else 0.4,  # non-Latin scripts: a typical ratio
            np.log1p(_longest_run(compact)),
            len(set(chars)) / n,
            np.log1p(len(chars)),
            np.log1p(max((len(w) for w in _WORD_RE.findall(text)), default=0)),
            no_vowel / len(words) if words else 0.0,
            sum(1 for c in chars if not c.isalnum()) / n,
            sum(c.isdigit() for c in chars) / n,
            len(set(bigrams)) / len(bigrams) if bigrams else 1.0,
        )
    return out


def rule_flags(texts: Sequence[str]) -> np.ndarray:
    """Texts that are certainly not reviews, by their shape alone (no model)."""
    flags = np.zeros(len(texts), dtype=bool)
    for i, raw in enumerate(texts):
        text = raw.lower()
        tokens = text.split()
        if any(t.strip(_PUNCT) in _PLACEHOLDERS for t in tokens):
            # links / masked contacts and at most a couple of letters or digits besides
            rest = "".join(t for t in tokens if t.strip(_PUNCT) not in _PLACEHOLDERS)
            if sum(c.isalnum() for c in rest) < 3:
                flags[i] = True
                continue
        alnum = [c for c in text if c.isalnum()]
        if len(alnum) >= 4 and len(set(alnum)) == 1:  # "kkkkkkkk", "1111111"
            flags[i] = True
            continue
        words = [w for w in _WORD_RE.findall(_STRETCH_RE.sub(r"\1", text)) if len(w) >= 5]
        latin_words = [w for w in words if all(_is_latin(c) for c in w)]
        vowelless = [w for w in latin_words if not any(_fold(c) in _VOWELS for c in w)]
        if latin_words and len(vowelless) * 2 >= len(latin_words) and len(vowelless) >= 1:
            flags[i] = True  # "hshdhfbfbb bxbxbxbdbxbx": words with no vowel at all
            continue
        for word in _WORD_RE.findall(_STRETCH_RE.sub(r"\1", text)):
            latin = [_fold(c) for c in word if _is_latin(c)]
            if (
                len(latin) >= _MASH_MIN_LETTERS
                and len(latin) == len(word)
                and sum(c in _VOWELS for c in latin) / len(latin) <= _MASH_MAX_VOWEL_RATIO
            ):
                flags[i] = True  # "dhnxncbcncncncnc": no word in any language
                break
    return flags


def bundled_noise_head_path() -> Path:
    """``models/noise_head`` (installed as ``nlp_seg._models/noise_head``)."""
    from importlib.resources import files

    candidates = []
    with contextlib.suppress(ModuleNotFoundError):
        candidates.append(Path(str(files("nlp_seg._models"))) / "noise_head")
    candidates.append(Path(__file__).resolve().parents[2] / "models" / "noise_head")
    for path in candidates:
        if (path / HEAD_CONFIG).is_file():
            return path
    from nlp_seg.errors import ModelUnavailableError

    raise ModelUnavailableError(f"the bundled noise head is missing ({candidates[-1]})")


class NoiseFilter:
    """Flags texts that are not reviews (scikit-learn style: ``fit`` learns the head,
    ``predict`` gives a boolean mask; learned state ends in ``_``).

    ``threshold`` is the head probability above which a row is flagged (chosen on
    ViSpamReviews dev, see the model card). ``predict`` takes the rows' sentence embeddings
    from the encoder; without them (another encoder, or none computed) only the rules run.
    """

    def __init__(
        self,
        C: float = 1.0,
        threshold: float = 0.5,
        use_rules: bool = True,
        min_words: int = 4,
    ) -> None:
        self.C = C
        self.threshold = threshold
        self.use_rules = use_rules
        #: the head leaves shorter texts to the rules: "ok", "good", "Ótimo!" are reviews
        self.min_words = min_words

    # --------------------------------------------------------------- learning
    def _design(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        feats = (text_features(texts) - self.feature_mean_) / self.feature_scale_
        return np.hstack([np.asarray(embeddings, dtype=np.float32), feats])

    def fit(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> NoiseFilter:
        """Learn the head from clean texts, their embeddings and 0/1 labels (1 = not a review)."""
        from sklearn.linear_model import LogisticRegression

        feats = text_features(texts)
        self.feature_mean_ = feats.mean(axis=0)
        self.feature_scale_ = np.where(feats.std(axis=0) > 1e-6, feats.std(axis=0), 1.0)
        model = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
        model.fit(self._design(texts, embeddings), np.asarray(y), sample_weight=sample_weight)
        self.coef_ = model.coef_[0].astype(np.float32)
        self.intercept_ = float(model.intercept_[0])
        self.trained_for_ = "bundled:multilingual-e5-small"
        self.lowercase_ = True
        return self

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """The head's probability that each row is not a review."""
        if not len(texts):
            return np.zeros(0)
        z = self._design(texts, embeddings) @ self.coef_.astype(np.float64) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of rows that are not reviews: the rules, or the head when
        ``embeddings`` are given (rows with all-zero embeddings, i.e. no text, are skipped)."""
        flags = rule_flags(texts) if self.use_rules else np.zeros(len(texts), dtype=bool)
        if embeddings is not None and hasattr(self, "coef_") and len(texts):
            emb = np.asarray(embeddings, dtype=np.float32)
            if emb.ndim == 2 and emb.shape[1] == len(self.coef_) - len(FEATURE_NAMES):
                long_enough = np.array([len(t.split()) >= self.min_words for t in texts])
                flags |= (self.predict_proba(texts, emb) >= self.threshold) & long_enough
        return flags

    # --------------------------------------------------------------- persistence
    def save(self, path: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
        """``head.safetensors`` (float32 arrays) + ``config.json``; no pickle."""
        from safetensors.numpy import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "coef": self.coef_.astype(np.float32),
                "intercept": np.array([self.intercept_], dtype=np.float32),
                "feature_mean": self.feature_mean_.astype(np.float32),
                "feature_scale": self.feature_scale_.astype(np.float32),
            },
            str(out / HEAD_WEIGHTS),
        )
        config = {
            "kind": "nlpseg-noise-head",
            "embedding_model": self.trained_for_,
            "lowercase": self.lowercase_,
            "features": list(FEATURE_NAMES),
            "threshold": self.threshold,
            "C": self.C,
            "min_words": self.min_words,
            **(extra_config or {}),
        }
        (out / HEAD_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path | None = None) -> NoiseFilter:
        """The head saved in ``path`` (default: the bundled one)."""
        from safetensors.numpy import load_file

        folder = Path(path) if path is not None else bundled_noise_head_path()
        config = json.loads((folder / HEAD_CONFIG).read_text(encoding="utf-8"))
        if list(config.get("features", [])) != list(FEATURE_NAMES):
            from nlp_seg.errors import ModelUnavailableError

            raise ModelUnavailableError(f"{folder} was trained on other text features")
        arrays = load_file(str(folder / HEAD_WEIGHTS))
        flt = cls(
            C=float(config.get("C", 1.0)),
            threshold=float(config["threshold"]),
            min_words=int(config.get("min_words", 4)),
        )
        flt.coef_ = arrays["coef"].astype(np.float32)
        flt.intercept_ = float(arrays["intercept"][0])
        flt.feature_mean_ = arrays["feature_mean"].astype(np.float32)
        flt.feature_scale_ = arrays["feature_scale"].astype(np.float32)
        flt.trained_for_ = str(config["embedding_model"])
        flt.lowercase_ = bool(config.get("lowercase", True))
        return flt

    def describe(self) -> dict[str, Any]:
        return {
            "rules": self.use_rules,
            "head": getattr(self, "trained_for_", None),
            "threshold": self.threshold,
            "min_words": self.min_words,
        }
