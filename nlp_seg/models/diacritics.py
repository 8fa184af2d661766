"""Vietnamese typed without diacritics, given its diacritics back before the models read it.

Many Vietnamese reviews are typed on phones without tone marks ("pin tut nhanh qua"). The
frozen encoder reads that as another language: the sentiment label survived stripping on
under 60% of real reviews (docs/benchmarks.md). Restoring the marks first lets every model
read the text it was trained on.

The restorer is a syllable trigram language model with interpolated Kneser-Ney smoothing and
a Viterbi search over each syllable's known accented forms, counted on the train parts of the
Vietnamese review corpora (``scripts/train_diacritics.py``; ``models/diacritics_vi``). It is
stored as safetensors arrays plus a JSON vocabulary: no pickle. Only texts that look like
stripped Vietnamese are touched (:meth:`DiacriticRestorer.needs_restoring`): no Vietnamese
letter with a mark, and most syllables known stripped Vietnamese forms, so English,
Portuguese or a text with even a few marks pass through unchanged.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import NlpsegError

FORMAT = "nlpseg-diacritics/1"
BOS = "<s>"
UNK = "<unk>"
# A syllable: a run of letters (Latin letters with or without marks). Anything else (spaces,
# digits, punctuation, emoji) separates syllables and, when it is not a space, ends a phrase.
TOKEN_RE = re.compile(r"[^\W\d_]+|\s+|[^\s]", re.UNICODE)
PHRASE_BREAK = set(".,;:!?()[]{}\"'…\n/|-–—")
# Letters only Vietnamese (and a few rare words elsewhere) write with marks.
VI_MARKED = set("àáâãèéêìíòóôõùúýăđĩũơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
DISCOUNT = 0.75
MAX_CANDIDATES = 8
MIN_SYLLABLES = 2
MIN_VIETNAMESE_SHARE = 0.6
MAX_FOREIGN_SHARE = 0.1
# A stop word of another language is evidence against Vietnamese unless Vietnamese reviews use
# it this often (``ok``, ``shop``) in the training counts.
LOANWORD_COUNT = 30
FOREIGN_LANGUAGES = ("en", "es", "pt", "fr", "de", "it", "id", "nl")
# A letter typed three or more times in a row ("depppp", "nhaaaa"): no Vietnamese syllable has
# one, so it is read as the letter once and written back as typed.
ELONGATED_RE = re.compile(r"([^\W\d_])\1{2,}", re.UNICODE)
# What a Vietnamese syllable looks like typed without marks: onset, one to three vowels, coda.
SYLLABLE_RE = re.compile(
    r"^(ngh|ng|gh|gi|kh|nh|ph|qu|th|tr|ch|[bcdghklmnprstvx])?[aeiouy]{1,3}(ng|nh|ch|[cmnpt])?$"
)


def fold(syllable: str) -> str:
    """A syllable as typed without marks (``đ`` becomes ``d``), lower-cased."""
    decomposed = unicodedata.normalize("NFD", syllable.lower())
    out = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return out.replace("đ", "d")


def has_vietnamese_marks(text: str) -> bool:
    """Whether any letter of ``text`` carries a Vietnamese mark (then it was typed with them)."""
    return any(ch in VI_MARKED for ch in unicodedata.normalize("NFC", text.lower()))


def phrases(text: str) -> list[list[str]]:
    """The lower-cased syllables of ``text`` in phrases (split at punctuation, digits, emoji)."""
    out: list[list[str]] = [[]]
    for token in TOKEN_RE.findall(unicodedata.normalize("NFC", text)):
        if token.isspace():
            continue
        if token.isalpha():
            out[-1].append(token.lower())
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def squeeze(syllable: str) -> str:
    """``syllable`` with each letter typed three or more times in a row written once."""
    return ELONGATED_RE.sub(r"\1", syllable)


def _elongated_back(restored: str, typed: str) -> str:
    """``restored`` (the marks of ``squeeze(typed)``) with ``typed``'s repeated letters
    repeated again, each with the mark its first letter got (``depppp`` -> ``đẹpppp``)."""
    runs = [m.group(0) for m in re.finditer(r"(.)\1*", typed, re.DOTALL)]
    squeezed = [run if len(run) < 3 else run[0] for run in runs]
    if len("".join(squeezed)) != len(restored):
        return restored
    out, at = [], 0
    for run, short in zip(runs, squeezed, strict=True):
        piece = restored[at : at + len(short)]
        out.append(piece if len(run) < 3 else piece * len(run))
        at += len(short)
    return "".join(out)


def _with_case(restored: str, typed: str) -> str:
    """``restored``'s marks on ``typed``'s letter case (``Pin`` stays capitalised)."""
    if len(restored) != len(typed):
        return restored
    return "".join(r.upper() if t.isupper() else r for r, t in zip(restored, typed, strict=True))


class DiacriticRestorer:
    """Trigram (interpolated Kneser-Ney) restorer of Vietnamese diacritics.

    Built by :func:`train_restorer` or :meth:`load`; :meth:`restore` puts the marks back on a
    text, :meth:`needs_restoring` says whether a text looks like stripped Vietnamese.
    """

    def __init__(
        self,
        vocab: list[str],
        unigram: np.ndarray,
        bigram: np.ndarray,
        trigram: np.ndarray,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.vocab = list(vocab)
        self.record = dict(record or {})
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self.unigram_count_ = np.asarray(unigram, dtype=np.int64)
        self.bigram_rows_ = np.asarray(bigram, dtype=np.int64).reshape(-1, 3)
        self.trigram_rows_ = np.asarray(trigram, dtype=np.int64).reshape(-1, 4)
        self._lm: dict[str, Any] | None = None
        self.candidates_: dict[str, list[str]] = {}
        for i in np.argsort(-self.unigram_count_, kind="stable"):
            w = self.vocab[int(i)]
            if w in (BOS, UNK):
                continue
            forms = self.candidates_.setdefault(fold(w), [])
            if len(forms) < MAX_CANDIDATES:
                forms.append(w)
        folded_count: Counter[str] = Counter()
        for i, w in enumerate(self.vocab):
            folded_count[fold(w)] += int(self.unigram_count_[i])
        stops = _stop_words(FOREIGN_LANGUAGES)
        self.foreign_words_ = {
            w
            for w in stops
            if w.isalpha() and not SYLLABLE_RE.match(w) and folded_count[w] < LOANWORD_COUNT
        }
        # Stop words of other languages that are also stripped Vietnamese syllables (``no``,
        # ``de``, ``the``, ``con``): evidence for neither, so "No la recomiendo" stays Spanish.
        self.shared_words_ = {
            w for w in stops if w.isalpha() and SYLLABLE_RE.match(w) and w in self.candidates_
        }
        # Words Vietnamese reviews write as they are (``ok``, ``sp``, ``dc``, ``shop``, ``k``):
        # evidence for neither language, so "Kha ok" is read as the stripped "Khá ok". A stop
        # word of another language (``of``, ``like``, ``good``) is one only when Vietnamese
        # reviews use it ten times as often as a loanword needs (``ok``, ``k``, ``vs``).
        self.loanwords_ = {
            w
            for i, w in enumerate(self.vocab)
            if fold(w) == w
            and not SYLLABLE_RE.match(w)
            and int(self.unigram_count_[i]) >= LOANWORD_COUNT * (10 if w in stops else 1)
        }

    # -- the language model -------------------------------------------------------------
    def _tables(self) -> dict[str, Any]:
        """The Kneser-Ney tables, built on the first text to restore (a run with no stripped
        Vietnamese never pays for them): n-gram counts keyed by one integer, continuation
        probabilities, and per context its total count and number of distinct followers."""
        if self._lm is not None:
            return self._lm
        v = len(self.vocab)
        bi, tri = self.bigram_rows_, self.trigram_rows_
        bi_key = bi[:, 0] * v + bi[:, 1]
        pair_key = tri[:, 0] * v + tri[:, 1]
        continuation = np.bincount(bi[:, 1], minlength=v).astype(np.float64)
        pairs, pair_index = np.unique(pair_key, return_inverse=True)
        self._lm = {
            "v": v,
            "bigram": dict(zip(bi_key.tolist(), bi[:, 2].tolist(), strict=True)),
            "trigram": dict(
                zip((pair_key * v + tri[:, 2]).tolist(), tri[:, 3].tolist(), strict=True)
            ),
            "p_cont": (continuation + 0.5) / (max(1.0, continuation.sum()) + 0.5 * v),
            "ctx_total": np.bincount(bi[:, 0], weights=bi[:, 2], minlength=v),
            "ctx_types": np.bincount(bi[:, 0], minlength=v).astype(np.float64),
            "pair_total": dict(
                zip(
                    pairs.tolist(), np.bincount(pair_index, weights=tri[:, 3]).tolist(), strict=True
                )
            ),
            "pair_types": dict(zip(pairs.tolist(), np.bincount(pair_index).tolist(), strict=True)),
        }
        return self._lm

    def log_prob(self, a: int, b: int, c: int) -> float:
        """``log P(c | a b)``: interpolated Kneser-Ney, down to the continuation unigram."""
        lm = self._tables()
        v = lm["v"]
        lower = float(lm["p_cont"][c])
        total = lm["ctx_total"][b]
        if total > 0:
            n = lm["bigram"].get(b * v + c, 0)
            lower = max(n - DISCOUNT, 0.0) / total + DISCOUNT * lm["ctx_types"][b] / total * lower
        pair = a * v + b
        total = lm["pair_total"].get(pair, 0.0)
        if total <= 0:
            return math.log(lower)
        n = lm["trigram"].get(pair * v + c, 0)
        backoff = DISCOUNT * lm["pair_types"][pair] / total
        return math.log(max(n - DISCOUNT, 0.0) / total + backoff * lower)

    # -- restoring ------------------------------------------------------------------------
    def needs_restoring(self, text: str) -> bool:
        """Stripped Vietnamese: no marked letter, at least 2 words, and of the words that tell
        the languages apart, at least 60% known Vietnamese syllables and at most 10% stop words
        of other languages. Words that tell nothing: those Vietnamese reviews write as they are
        (:attr:`loanwords_`: ``ok``, ``sp``) and stop words that are also Vietnamese syllables
        (:attr:`shared_words_`: ``no``, ``the``); a letter typed over and over is read once
        (``depppp`` is ``dep``).

        Measured (``scripts/train_diacritics.py``): stripped UIT-ViSFD / ViSpamReviews dev
        texts 99.9% / 93.5% picked; English, German, Spanish, French, Portuguese and Italian
        reviews and tweets none of 5,000."""
        if has_vietnamese_marks(text):
            return False
        syllables = [squeeze(s) for p in phrases(text) for s in p]
        if len(syllables) < MIN_SYLLABLES:
            return False
        shared = sum(1 for s in syllables if s in self.shared_words_)
        known = sum(1 for s in syllables if s in self.candidates_ and SYLLABLE_RE.match(s))
        vietnamese = known - shared
        foreign = sum(1 for s in syllables if s in self.foreign_words_)
        telling = len(syllables) - shared - sum(1 for s in syllables if s in self.loanwords_)
        return (
            vietnamese > 0
            and vietnamese >= MIN_VIETNAMESE_SHARE * telling
            and foreign <= MAX_FOREIGN_SHARE * len(syllables)
        )

    def _decode(self, phrase: Sequence[str]) -> list[str]:
        """The most likely marked forms of one phrase (second-order Viterbi)."""
        options = [self.candidates_.get(s) or [s] for s in phrase]
        unknown = self._index[UNK]
        ids = [[self._index.get(w, unknown) for w in opts] for opts in options]
        # state: (index of previous option, index of current option) -> (score, back-pointer)
        beam: dict[tuple[int, int], tuple[float, tuple[int, int] | None]] = {}
        bos = self._index[BOS]
        for j, w in enumerate(ids[0]):
            beam[(-1, j)] = (self.log_prob(bos, bos, w), None)
        history = [beam]
        for t in range(1, len(ids)):
            nxt: dict[tuple[int, int], tuple[float, tuple[int, int] | None]] = {}
            for (i, j), (score, _) in beam.items():
                a = bos if i < 0 else ids[t - 2][i]
                b = ids[t - 1][j]
                for k, c in enumerate(ids[t]):
                    s = score + self.log_prob(a, b, c)
                    if (j, k) not in nxt or s > nxt[(j, k)][0]:
                        nxt[(j, k)] = (s, (i, j))
            beam = nxt
            history.append(beam)
        state = max(beam, key=lambda key: beam[key][0])
        picks = []
        for t in range(len(ids) - 1, -1, -1):
            picks.append(state[1])
            back = history[t][state][1]
            if back is None:
                break
            state = back
        picks.reverse()
        return [options[t][k] for t, k in enumerate(picks)]

    def restore(self, text: str) -> str:
        """``text`` with its Vietnamese marks restored (letter case, spacing and everything
        that is not a syllable kept as typed; decomposed input comes back composed)."""
        tokens = TOKEN_RE.findall(unicodedata.normalize("NFC", text))
        spans: list[list[int]] = [[]]
        for i, token in enumerate(tokens):
            if token.isspace():
                continue
            if token.isalpha():
                spans[-1].append(i)
            elif spans[-1]:
                spans.append([])
        for span in spans:
            if not span:
                continue
            marked = self._decode([squeeze(tokens[i].lower()) for i in span])
            for i, form in zip(span, marked, strict=True):
                tokens[i] = _with_case(_elongated_back(form, tokens[i].lower()), tokens[i])
        return "".join(tokens)

    def restore_many(self, texts: Iterable[str]) -> tuple[list[str], int]:
        """Each text restored when :meth:`needs_restoring`, else as it was; and how many were."""
        out, changed = [], 0
        for text in texts:
            if self.needs_restoring(text):
                fixed = self.restore(text)
                changed += fixed != text
                out.append(fixed)
            else:
                out.append(text)
        return out, changed

    # -- storage ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``counts.safetensors`` (syllable ids as uint16 while the vocabulary allows, counts
        as uint32) and ``config.json`` (format, vocabulary, training record)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        id_type = np.uint16 if len(self.vocab) <= np.iinfo(np.uint16).max else np.uint32
        arrays = {"unigram": self.unigram_count_.astype(np.uint32)}
        for name, rows in (("bigram", self.bigram_rows_), ("trigram", self.trigram_rows_)):
            arrays[f"{name}_ids"] = np.ascontiguousarray(rows[:, :-1], dtype=id_type)
            arrays[f"{name}_counts"] = np.ascontiguousarray(rows[:, -1], dtype=np.uint32)
        save_file(arrays, str(folder / "counts.safetensors"))
        config = {"format": FORMAT, "vocab": self.vocab, "record": self.record}
        (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), "utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DiacriticRestorer:
        """A restorer saved by :meth:`save`; a missing or tampered folder is one clear error."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text("utf-8"))
            arrays = load_file(str(folder / "counts.safetensors"))
        except Exception as exc:  # OSError, JSON errors, safetensors' own SafetensorError
            raise NlpsegError(f"diacritics model {folder} cannot be read: {exc}") from None
        vocab = config.get("vocab") if isinstance(config, dict) else None
        if config.get("format") != FORMAT or not isinstance(vocab, list) or vocab[:2] != [BOS, UNK]:
            raise NlpsegError(f"diacritics model {folder} is not a {FORMAT} model")
        expected = {"unigram": (1, None), "bigram_ids": (2, 2), "trigram_ids": (2, 3)}
        expected |= {"bigram_counts": (1, None), "trigram_counts": (1, None)}
        for name, (ndim, width) in expected.items():
            arr = arrays.get(name)
            if (
                arr is None
                or arr.ndim != ndim
                or arr.dtype.kind not in "iu"
                or (width is not None and arr.shape[1] != width)
            ):
                raise NlpsegError(f"diacritics model {folder}: {name} is missing or malformed")
        tables = []
        for name in ("bigram", "trigram"):
            ids, counts = arrays[f"{name}_ids"], arrays[f"{name}_counts"]
            if len(ids) != len(counts) or (ids.size and int(ids.max()) >= len(vocab)):
                raise NlpsegError(f"diacritics model {folder}: counts do not match its vocabulary")
            tables.append(np.hstack([ids.astype(np.int64), counts.astype(np.int64)[:, None]]))
        if len(arrays["unigram"]) != len(vocab):
            raise NlpsegError(f"diacritics model {folder}: counts do not match its vocabulary")
        return cls(vocab, arrays["unigram"], tables[0], tables[1], config.get("record"))


def train_restorer(
    texts: Iterable[str], min_count: int = 2, record: dict[str, Any] | None = None
) -> DiacriticRestorer:
    """Count syllable n-grams on texts typed *with* diacritics (texts where under a third of
    the syllables carry a mark are skipped: they were typed without, and would teach it that
    bare forms are right). N-grams seen fewer than ``min_count`` times are dropped."""
    uni: Counter[str] = Counter()
    bi: Counter[tuple[str, str]] = Counter()
    tri: Counter[tuple[str, str, str]] = Counter()
    used = 0
    for text in texts:
        parts = phrases(text)
        syllables = [s for p in parts for s in p]
        if not syllables or sum(has_vietnamese_marks(s) for s in syllables) < len(syllables) / 3:
            continue
        used += 1
        for p in parts:
            seq = [BOS, BOS, *p]
            uni.update(p)
            bi.update(zip(seq[1:], seq[2:], strict=False))
            tri.update(zip(seq, seq[1:], seq[2:], strict=False))
    vocab = [BOS, UNK] + sorted(w for w, c in uni.items() if c >= min_count)
    index = {w: i for i, w in enumerate(vocab)}
    unigram = np.array([0, 0] + [uni[w] for w in vocab[2:]], dtype=np.int64)
    bigram = np.array(
        [
            [index[a], index[b], c]
            for (a, b), c in bi.items()
            if c >= min_count and a in index and b in index
        ],
        dtype=np.int64,
    ).reshape(-1, 3)
    trigram = np.array(
        [
            [index[a], index[b], index[c], n]
            for (a, b, c), n in tri.items()
            if n >= min_count and a in index and b in index and c in index
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
    info = {"texts_used": used, "syllables": int(sum(uni.values())), "min_count": min_count}
    return DiacriticRestorer(vocab, unigram, bigram, trigram, {**info, **(record or {})})


class AccentRestorer:
    """Accents given back to Portuguese, Spanish, French, Italian or German typed without
    them ("nao gostei, voce" -> "não gostei, você"), one word at a time.

    In these languages most unaccented forms are not words at all, so a word-frequency list is
    enough where Vietnamese needs a language model: a word is replaced by its accented form only
    when that form is at least :data:`ACCENT_RATIO` times as frequent as the word typed ("esta"
    and "está" are both common and stay as typed). The language is the one whose stop words
    (accent-folded) the text uses most, if more than English's; the frequency lists are
    pyspellchecker's (MIT, from OpenSubtitles), loaded only for a text in that language.
    """

    LANGUAGES = ("pt", "es", "fr", "it", "de")

    def __init__(self) -> None:
        self._forms: dict[str, dict[str, str]] = {}
        self._stops = {
            lang: frozenset(fold(w) for w in _stop_words((lang,)) if w.isalpha())
            for lang in (*self.LANGUAGES, "en")
        }

    def language(self, text: str) -> str | None:
        """The language of an unaccented text, or ``None`` (English, Vietnamese, accented text,
        too few stop words to tell)."""
        if any(ord(ch) > 127 and ch.isalpha() for ch in text):
            return None
        words = [w for p in phrases(text) for w in p]
        hits = {lang: sum(w in stops for w in words) for lang, stops in self._stops.items()}
        best = max(self.LANGUAGES, key=lambda lang: hits[lang])
        return best if hits[best] >= 2 and hits[best] > hits["en"] else None

    def _accented(self, lang: str) -> dict[str, str]:
        """Unaccented word -> its dominant accented form, for one language (built once)."""
        if lang not in self._forms:
            import gzip
            from importlib.resources import files

            path = files("spellchecker") / "resources" / f"{lang}.json.gz"
            counts: dict[str, int] = json.loads(gzip.decompress(path.read_bytes()))
            best: dict[str, tuple[str, int]] = {}
            for word, n in counts.items():
                if word.isascii() or not word.isalpha():
                    continue
                key = fold(word)
                if key.isascii() and n > best.get(key, ("", 0))[1]:
                    best[key] = (word, n)
            self._forms[lang] = {
                key: word
                for key, (word, n) in best.items()
                if n >= ACCENT_RATIO * counts.get(key, 0) and len(word) == len(key)
            }
        return self._forms[lang]

    def restore(self, text: str, lang: str) -> str:
        """``text`` with each unaccented word of ``lang`` replaced by its dominant accented
        form, letter case kept."""
        forms = self._accented(lang)
        out = []
        for token in TOKEN_RE.findall(text):
            form = forms.get(token.lower()) if token.isalpha() else None
            out.append(_with_case(form, token) if form else token)
        return "".join(out)


ACCENT_RATIO = 10


def restore_texts(texts: Sequence[str]) -> tuple[list[str], int]:
    """Every text typed without its marks given them back: Vietnamese by the syllable model,
    Portuguese, Spanish, French, Italian and German word by word; other texts as they were.
    Returns the texts and how many changed."""
    out = [restore_text(text) for text in texts]
    return out, sum(fixed != text for fixed, text in zip(out, texts, strict=True))


#: Texts whose restoration is remembered: the encoder restores a run's texts and the keyword
#: stage reads up to 2,000 of each segment's again (a Vietnamese text costs ~10 ms to
#: decode), and reviews repeat ("hang dep", "ok"). About 1 KB a review (key and result), so
#: at most ~64 MB, which a long-running ``nlpseg serve`` keeps.
RESTORED_CACHE_TEXTS = 1 << 16


@lru_cache(maxsize=RESTORED_CACHE_TEXTS)
def restore_text(text: str) -> str:
    """One text with its marks given back (:func:`restore_texts`)."""
    vietnamese = load_restorer()
    if vietnamese.needs_restoring(text):
        return vietnamese.restore(text)
    latin = _accent_restorer()
    lang = latin.language(text)
    return latin.restore(text, lang) if lang is not None else text


@lru_cache(maxsize=1)
def _accent_restorer() -> AccentRestorer:
    return AccentRestorer()


@lru_cache(maxsize=1)
def _stop_words(languages: tuple[str, ...]) -> frozenset[str]:
    import stopwordsiso

    return frozenset(w for lang in languages for w in stopwordsiso.stopwords(lang))


@lru_cache(maxsize=2)
def load_restorer(folder: str | None = None) -> DiacriticRestorer:
    """The shipped Vietnamese restorer (``models/diacritics_vi``), or one in ``folder``."""
    if folder is None:
        from nlp_seg.models.registry import diacritics_model_path

        return DiacriticRestorer.load(diacritics_model_path())
    return DiacriticRestorer.load(folder)
