"""Segment keywords: class-based TF-IDF over words and phrases, diversified by MMR.

What a CX lead reads next to a segment's name must say what *this* segment talks about, not
what every review of the shop says ("máy, mua, dùng" everywhere). So:

1. **candidates**: each text is cut into words (Vietnamese by underthesea's word segmenter,
   CJK as character bigrams) and 2- and 3-word phrases, without the stop words of the Stopwords ISO
   lists (``stopwordsiso``) for the languages reviews mix; a negation still starts a phrase
   ("không tốt", "not working");
2. **c-TF-IDF** (BERTopic's): a segment's texts form one document; ``tf`` is a term's count over
   the segment's word count and ``idf = log(1 + A / f(t))``, ``A`` the mean word count per
   segment and ``f(t)`` the term's count over all segments;
3. **words every segment uses are damped**: a term's score is multiplied by how unevenly the
   segments use it (one minus the normalised entropy of its per-segment frequencies, to a
   power), so a word used alike everywhere falls behind a word this segment says more;
4. **phrases over their pieces**: a word or phrase that mostly occurs inside a longer phrase is
   shown as that phrase ("màn" -> "màn hình", "hàng nhanh" -> "giao hàng nhanh") when at
   least half its occurrences are in the phrase and the phrase scores at least half as much;
5. **diversity**: of the top :data:`CANDIDATES` candidates per segment, the keywords are picked
   by maximal marginal relevance (BERTopic's ``MaximalMarginalRelevance``, diversity 0.3) on
   the run's own encoder's embeddings of the candidates (one batched call for all segments),
   so near-synonyms ("giao hàng nhanh", "ship nhanh") do not fill a list.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Languages whose stopword lists (from the ``stopwordsiso`` package, the Stopwords ISO
#: collection) are removed from keywords; reviews mix languages, so all are applied at once.
STOPWORD_LANGS = ("vi", "en", "pt", "es", "fr", "de", "id", "zh", "ja", "ko")
#: What the lists miss in reviews: Vietnamese written without diacritics or in teencode
#: ("ko", "dc", "mik"), and web noise. Kept short on purpose: c-TF-IDF's IDF already mutes a
#: word every segment uses.
EXTRA_STOPWORDS = frozenset(
    str.split(
        "ko k kg khong dc đc duoc vs mik mk mjk t m thi ma nay cho voi rat cung nhung da mot cac "
        "khi lai nen minh toi ban no de tu nhu con hon qua lam thay nua vi bi se dang roi va la co "
        "cua thi nha nhe a ah ạ ak ok oke user http https www com email"
    )
)
#: Negations are stopwords alone but start a phrase worth keeping: "không tốt", "not working",
#: "não recomendo".
NEGATIONS = frozenset(
    str.split(
        "không khong ko chưa chua chẳng chả đừng not no never don't doesn't didn't isn't wasn't "
        "won't can't cannot não nao nem nunca sem jamais pas nicht kein keine tidak"
    )
)


def _load_stopwords() -> frozenset[str]:
    import stopwordsiso

    words = {w.lower() for w in stopwordsiso.stopwords(list(STOPWORD_LANGS))}
    return frozenset(words | EXTRA_STOPWORDS)


STOPWORDS = _load_stopwords()
#: Single Chinese/Japanese characters that are stopwords (的, 了, 是, 很, ...): CJK runs are
#: cut at them (Hangul syllables are not: Korean particles are part of the word).
_CJK_STOP_CHARS = frozenset(w for w in STOPWORDS if len(w) == 1 and 0x3040 <= ord(w) <= 0x9FFF)
_CJK_STOP_RE = re.compile("[" + "".join(sorted(_CJK_STOP_CHARS)) + "]")
#: Clause boundaries: a bigram never spans one ("tốt, giao" is not a phrase).
_CLAUSE_RE = re.compile(r"[.,;:!?()\[\]{}\n\r\t\"“”…/|+=*&#@~<>。，、；：！？]+")
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
#: A CJK run split by script: hiragana, katakana (with the long-vowel mark), Han, Hangul.
_SCRIPT_RUN_RE = re.compile(
    r"[\u3040-\u309f]+|[\u30a0-\u30ff]+|[\u3400-\u4dbf\u4e00-\u9fff]+|[\uac00-\ud7af]+"
)
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
#: Words and short numbers: a number is never a keyword alone, but may end a phrase
#: ("atendimento nota 10").
_WORD_OR_NUMBER_RE = re.compile(WORD_RE.pattern + r"|(?<![\d.,])\d{1,3}(?!\d|[.,]\d)")
#: Stop words that may join the two words of a 3-word phrase ("opções de cor", "quality of
#: service"), where a phrase of the first two ("opções de") would mean nothing.
PHRASE_LINKS = frozenset(["de", "do", "da", "dos", "das", "of", "del", "di", "du", "des"])


#: Letters only Vietnamese uses (with its tone marks): a clause holding one is segmented into
#: words, so keywords are whole words ("cập nhật", "mô tả"), not syllable pairs across two
#: words ("shop cập", "giống mô").
VI_RE = re.compile("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]")


#: underthesea modules its package __init__ imports eagerly but word segmentation does not
#: need: its translation model pulls in torch and transformers (about 10 s cold).
_UNDERTHESEA_UNUSED = (
    "underthesea.pipeline.classification",
    "underthesea.pipeline.sentiment",
    "underthesea.pipeline.lang_detect",
    "underthesea.pipeline.dependency_parse",
    "underthesea.pipeline.translate",
    "underthesea.agent",
    "underthesea.address",
)


@functools.cache
def _word_tokenizer() -> Any:
    """underthesea's ``word_tokenize``, imported without its optional pipelines (the package
    skips a pipeline whose import fails; a ``None`` in ``sys.modules`` makes it fail), or
    ``None`` when the package is missing."""
    import sys

    blocked = [m for m in _UNDERTHESEA_UNUSED if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        from underthesea import word_tokenize
    except ImportError:  # pragma: no cover
        return None
    finally:
        for m in blocked:
            if sys.modules.get(m) is None:
                del sys.modules[m]
    return word_tokenize


@functools.lru_cache(maxsize=65536)
def vietnamese_words(clause: str) -> tuple[str, ...]:
    """Vietnamese words of a clause (multi-syllable words joined by a space), by
    underthesea's CRF word segmenter (bundled with the package, offline); syllables when the
    package is missing."""
    word_tokenize = _word_tokenizer()
    if word_tokenize is None:  # pragma: no cover - a dependency; kept working without it
        return tuple(WORD_RE.findall(clause))
    out = []
    for token in word_tokenize(clause):
        syllables = token.lower().split()
        if syllables and all(WORD_RE.fullmatch(x) for x in syllables):
            out.append(" ".join(syllables))
    return tuple(out)


def analyze_tokens(text: str) -> list[str]:
    """Keyword candidates of one text: word unigrams and bigrams (Vietnamese syllables pair
    into phrases such as "giao hàng"), CJK runs as character bigrams (cut at stopword
    characters such as 的), without stopwords, stopword phrases ("bao giờ") or 1-letter words.
    A negation starts a kept bigram ("không tốt", "not working", "não recomendo")."""
    text = text.lower()
    tokens: list[str] = []
    for run in CJK_RE.findall(text):
        for piece in _CJK_STOP_RE.split(run) if _CJK_STOP_CHARS else [run]:
            for script_run in _SCRIPT_RUN_RE.findall(piece):
                first = script_run[0]
                if "\u3040" <= first <= "\u309f":
                    continue  # hiragana: Japanese grammar (ます, ました), not a topic
                if "\u30a0" <= first <= "\u30ff":
                    if len(script_run) >= 2:  # katakana: loanwords, kept whole (バッテリー)
                        tokens.append(script_run)
                    continue
                tokens.extend(
                    bg
                    for bg in (script_run[i : i + 2] for i in range(len(script_run) - 1))
                    if bg not in STOPWORDS
                )
    for clause in _CLAUSE_RE.split(CJK_RE.sub(" ", text)):
        words = (
            vietnamese_words(clause) if VI_RE.search(clause) else _WORD_OR_NUMBER_RE.findall(clause)
        )
        tokens.extend(w for w in words if len(w) > 1 and w not in STOPWORDS and not w.isdigit())
        for i, (a, b) in enumerate(zip(words, words[1:], strict=False)):
            if a.isdigit() or len(a) < 2 or (len(b) < 2 and not b.isdigit()):
                continue
            if a in STOPWORDS and a not in NEGATIONS:
                continue
            if b.isdigit() or (b not in STOPWORDS and f"{a} {b}" not in STOPWORDS):
                tokens.append(f"{a} {b}")  # a number may end one ("nota 10")
            elif b not in PHRASE_LINKS:
                continue
            # and the phrase it may be cut from ("giao hàng nhanh", "không giống mô tả",
            # "opções de cor"): shown instead of its pieces only where it is what they say
            c = words[i + 2] if i + 2 < len(words) else ""
            if len(c) > 1 and (c.isdigit() or c not in STOPWORDS) and not b.isdigit():
                tokens.append(f"{a} {b} {c}")
    return tokens


#: Texts per segment the keywords are counted on (evenly spaced when a segment has more).
KEYWORD_TEXTS_PER_SEGMENT = 2000

#: A keyword word is replaced by its strongest phrase when the phrase scores at least this
#: share of the word's score in the segment.
PHRASE_RATIO = 0.5
#: Candidates per segment that reach the diversity step (by c-TF-IDF score).
CANDIDATES = 30
#: MMR's trade-off between relevance and novelty (BERTopic's MaximalMarginalRelevance).
DIVERSITY = 0.3
#: How hard a word used alike by every segment is damped: score * (1 - evenness) ** this.
COMMON_DAMPING = 1.0


def ctfidf(
    docs: Sequence[Sequence[str]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Terms, counts ``(classes, terms)`` and c-TF-IDF scores of one token list per class, with
    words common to every class damped (module docstring, steps 2-3); ``None`` when there is
    no term at all."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(analyzer=lambda toks: toks, min_df=1)
    try:
        counts = vec.fit_transform(docs).astype(np.float64).toarray()
    except ValueError:  # empty vocabulary
        return None
    terms = np.asarray(vec.get_feature_names_out())
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    avg = counts.sum() / max(len(docs), 1)
    idf = np.log(1 + avg / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    if len(docs) > 1:
        # Evenness of a term over the classes: the entropy of its per-class frequencies
        # (relative to each class's length, so big segments do not count more), over the
        # entropy of a term used alike everywhere. The IDF barely moves with a handful of
        # segments; this is what sends "máy", "mua" behind what a segment says more.
        share = tf / np.maximum(tf.sum(axis=0, keepdims=True), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(share > 0, share * np.log(share), 0.0), axis=0)
        evenness = ent / np.log(len(docs))
        scores = scores * np.clip(1.0 - evenness, 0.0, 1.0) ** COMMON_DAMPING
    return terms, counts, scores


def mmr(
    relevance: np.ndarray, vectors: np.ndarray, top_n: int, diversity: float = DIVERSITY
) -> list[int]:
    """Maximal marginal relevance: indices of ``top_n`` items, each the one with the best
    ``(1 - diversity) * relevance - diversity * (max cosine to those already picked)``."""
    if len(relevance) == 0:
        return []
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    rel = np.asarray(relevance, dtype=np.float64)
    picked = [int(np.argmax(rel))]
    rest = [i for i in range(len(rel)) if i != picked[0]]
    while rest and len(picked) < top_n:
        value = (1 - diversity) * rel[rest] - diversity * sim[np.ix_(rest, picked)].max(axis=1)
        best = rest[int(np.argmax(value))]
        picked.append(best)
        rest.remove(best)
    return picked


def _candidates(
    terms: np.ndarray,
    counts: np.ndarray,
    scores: np.ndarray,
    n_words: np.ndarray,
    phrases_with: dict[str, np.ndarray],
    min_count: int,
    limit: int,
) -> list[tuple[str, float]]:
    """A class's best terms, ``(term, score)``, highest first: a word mostly said inside one
    phrase shown as that phrase, and no term overlapping one already listed."""
    # Highest score first; on a tie the phrase ("pin trâu") before its words ("pin").
    order = np.lexsort((-n_words, -np.round(scores, 12)))
    picked: list[tuple[str, float]] = []
    for j in order:
        if counts[j] < min_count or (scores[j] <= 0 and picked):
            continue
        term, score, at = str(terms[j]), float(scores[j]), j
        while term in phrases_with:
            # A syllable or phrase that mostly occurs inside a longer phrase is shown as that
            # phrase ("màn" -> "màn hình", "giống" -> "giống mô tả" -> "không giống mô tả").
            cand = phrases_with[term]
            best = cand[np.lexsort((n_words[cand], np.round(scores[cand], 12)))[-1]]
            if (
                counts[best] < max(min_count, PHRASE_RATIO * counts[at])  # mostly inside it
                or scores[best] < PHRASE_RATIO * scores[at]
            ):
                break
            term, score, at = str(terms[best]), max(score, float(scores[best])), best
        # Prefer a phrase over its own words already listed, and vice versa; skip a phrase
        # overlapping a listed one ("gói cẩn" after "cẩn thận": a pair across two words).
        words = set(term.split())
        if any(term in p or p in term or words & set(p.split()) for p, _ in picked):
            continue
        if CJK_RE.fullmatch(term) and any(
            CJK_RE.fullmatch(p) and (p[-1] == term[0] or p[0] == term[-1]) for p, _ in picked
        ):
            continue  # "马逊" after "亚马": two bigrams of one word (亚马逊)
        picked.append((term, score))
        if len(picked) >= limit:
            break
    return picked


def class_tfidf_keywords(
    texts: Sequence[str],
    labels: np.ndarray,
    top_n: int = 10,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    diversity: float = DIVERSITY,
    exclude: Callable[[str], bool] | None = None,
    restore_diacritics: bool = False,
) -> dict[int, list[str]]:
    """Top keywords per label (module docstring). ``embed`` (the run's encoder: words in,
    vectors out) turns on the MMR diversity step; without it the c-TF-IDF order is kept.
    ``exclude`` drops terms that are no keyword (naming's request cues: "gostaria");
    ``restore_diacritics`` reads texts typed without their marks with the marks back
    (:func:`nlp_seg.models.diacritics.restore_texts`), so "nhiet tinh" and "nhiệt tình" are
    one keyword, and whole words ("sản phẩm tốt", not "pham tot")."""
    classes = sorted(set(int(v) for v in labels))
    joined: dict[int, list[str]] = {c: [] for c in classes}
    for t, lab in zip(texts, labels, strict=True):
        joined[int(lab)].append(t)
    for c, members in joined.items():
        if len(members) > KEYWORD_TEXTS_PER_SEGMENT:
            # Evenly spaced members (deterministic): word counts of a few thousand texts
            # already rank the top keywords; tokenising every text of a large segment (word
            # segmentation costs ~0.7 ms a Vietnamese text) would not change them.
            step = len(members) / KEYWORD_TEXTS_PER_SEGMENT
            joined[c] = [members[int(i * step)] for i in range(KEYWORD_TEXTS_PER_SEGMENT)]
    if restore_diacritics:
        from nlp_seg.models.diacritics import restore_texts

        joined = {c: restore_texts(members)[0] for c, members in joined.items()}
    docs = [
        [tok for t in joined[c] for tok in analyze_tokens(t) if exclude is None or not exclude(tok)]
        for c in classes
    ]
    fitted = ctfidf(docs)
    if fitted is None:
        return {c: [] for c in classes}
    terms, counts, scores = fitted
    n_words = np.array([t.count(" ") + 1 for t in terms])
    # Each phrase under the words it starts or ends with ("mô tả" and "không giống" ->
    # "không giống mô tả"), so a fragment can be shown as the phrase it comes from.
    known = {str(t): j for j, t in enumerate(terms)}
    grouped: dict[str, list[int]] = {}
    for j in np.flatnonzero(n_words >= 2):
        parts = str(terms[j]).split()
        for k in range(1, len(parts)):
            for piece in (" ".join(parts[:k]), " ".join(parts[k:])):
                if piece in known:
                    grouped.setdefault(piece, []).append(int(j))
    phrases_with = {w: np.array(js) for w, js in grouped.items()}
    limit = max(CANDIDATES, top_n) if embed is not None else top_n
    cands = {
        c: _candidates(
            terms,
            counts[i],
            scores[i],
            n_words,
            phrases_with,
            min_count=2 if len(joined[c]) > 5 else 1,
            limit=limit,
        )
        for i, c in enumerate(classes)
    }
    if embed is None:
        return {c: [t for t, _ in cands[c]] for c in classes}
    words = sorted({t for v in cands.values() for t, _ in v})
    if not words:
        return {c: [] for c in classes}
    vectors = np.asarray(embed(words), dtype=np.float64)
    # Sentence encoders put every short text in a narrow cone (cosines of unrelated words
    # ~0.8); centring on the candidates' mean leaves what tells them apart, so MMR's
    # similarity term separates near-synonyms from unrelated words.
    vectors = vectors - vectors.mean(axis=0, keepdims=True)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {w: i for i, w in enumerate(words)}
    out: dict[int, list[str]] = {}
    for c in classes:
        if not cands[c]:
            out[c] = []
            continue
        names = [t for t, _ in cands[c]]
        vec = vectors[[row[t] for t in names]]
        score = np.array([s for _, s in cands[c]])
        # Relevance: the c-TF-IDF score (scaled to the best candidate) and the closeness to
        # the segment's topic, the score-weighted mean of its candidates (BERTopic compares
        # with the embedded topic words; this is that without a second encoder call).
        weight = score / max(score.max(), 1e-12)
        topic = (weight[:, None] * vec).sum(axis=0)
        topic /= max(float(np.linalg.norm(topic)), 1e-12)
        closeness = vec @ topic
        span = closeness.max() - closeness.min()
        closeness = (closeness - closeness.min()) / span if span > 0 else np.ones(len(names))
        relevance = 0.5 * weight + 0.5 * closeness
        out[c] = [names[i] for i in mmr(relevance, vec, top_n, diversity)]
    return out


class KeywordEmbedder:
    """Words in, vectors out, through the run's encoder: the step-5 ``embed`` of
    :func:`class_tfidf_keywords`.

    It embeds with a shallow copy of the encoder stage's embedder (the same model, the
    loaded weights shared when they are loaded, the same on-disk cache) that keeps its own
    counters: run.json's ``models.embedding`` figures (``loaded``, cache ``hits`` /
    ``encoded``) keep counting the texts, so they still show that a re-run read every text
    from the cache, while :meth:`describe` says what the keyword candidates cost (a re-run
    whose segments differ embeds their new candidates, a few hundred short words)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self._embedder: Any = None
        self.words_ = 0

    def __call__(self, words: list[str]) -> np.ndarray:
        import copy

        if self._embedder is None:
            self._embedder = copy.copy(self.encoder.get_embedder())
            for counter in ("cache_hits_", "encoded_"):
                if hasattr(self._embedder, counter):
                    setattr(self._embedder, counter, 0)
        self.words_ += len(words)
        vectors = self._embedder.embed(self.encoder.model_texts(words))
        return np.asarray(vectors, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """The keyword method and what its embeddings cost (``keywords`` in run.json)."""
        emb = self._embedder
        return {
            "method": "c-TF-IDF (BERTopic), common words damped, MMR on the encoder",
            "candidates_per_segment": CANDIDATES,
            "diversity": DIVERSITY,
            "words_embedded": self.words_,
            "cache": {
                "hits": int(getattr(emb, "cache_hits_", 0)),
                "encoded": int(getattr(emb, "encoded_", 0)),
            },
        }


def keyword_embedder(encoder: Any) -> KeywordEmbedder:
    """The keyword candidates' embedder for the run's encoder stage (:class:`KeywordEmbedder`)."""
    return KeywordEmbedder(encoder)
