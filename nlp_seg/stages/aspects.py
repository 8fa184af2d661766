"""Aspect-level sentiment: what a text praises and what it complains about.

One sentiment label per review cannot see the customer who likes the phone but not its
battery. Each text is split into clauses (:func:`split_clauses`), each clause goes through the
same encoder as the texts (embedding + sentiment in one pass, deduplicated and cached), and
gets an aspect from a taxonomy and a polarity from the sentiment head, so a review yields
``battery:negative;design:positive``.

Taxonomies (``--aspects``):

``general``
    e-commerce aspects (product quality, price/value, delivery, packaging, customer service,
    size/fit, authenticity, ...) described by short phrases in several languages
    (``aspects_general.json``), matched on the encoder's embeddings by the prototype matcher
    of :mod:`nlp_seg.behavior.benefits`;
``phones``
    the ten UIT-ViSFD smartphone categories, a small logistic head trained on the encoder's
    review embeddings (``models/aspects_phones``, ``scripts/train_aspect_head.py``);
``FILE.json``
    a user's own taxonomy: ``{"aspects": {"name": ["phrase", ...], ...}}`` in any language.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import InputError
from nlp_seg.io.aspect_cells import parse_aspects  # noqa: F401 - re-exported

POLARITIES = ("negative", "neutral", "positive")

#: Words that open a contrasting clause ("máy đẹp nhưng pin yếu"), per language. Matched as
#: whole words, case-insensitively; the clause is cut *before* the word.
CONTRAST_WORDS: dict[str, tuple[str, ...]] = {
    "vi": (
        "nhưng mà",
        "nhưng",
        "tuy nhiên",
        "tuy là",
        "tuy",
        "mỗi tội",
        "có điều",
        "chỉ tiếc",
        "hơi tiếc là",
        "hơi tiếc",
        "tiếc là",
        "ngặt nỗi",
        "duy chỉ",
        "song",
        "nhung",
        "tuy nhien",
        "moi toi",
        "co dieu",
    ),
    "en": ("but", "however", "although", "though", "except", "unfortunately", "whereas"),
    "pt": ("mas", "porém", "porem", "contudo", "entretanto", "embora"),
    "es": ("pero", "sin embargo", "aunque", "excepto"),
    "id": ("tapi", "tetapi", "namun", "meskipun", "walaupun", "sayangnya"),
}
_CONTRAST_ALTERNATION = "|".join(
    re.escape(w)
    for w in sorted({w for ws in CONTRAST_WORDS.values() for w in ws}, key=len, reverse=True)
)
_CONTRAST_RE = re.compile(rf"(?<!\w)(?:{_CONTRAST_ALTERNATION})(?!\w)", re.IGNORECASE)
#: Sentence ends (not a decimal point: "pin còn 88.5%") and line breaks.
_SENTENCE_RE = re.compile(r"(?:(?<!\d)[.](?!\d)|[!?…;。！？\n\r]|\.{2,})+")
#: Commas cut clauses too, but fragments shorter than this many words join a neighbour.
MIN_CLAUSE_WORDS = 2
_WORD_RE = re.compile(r"\w+", re.UNICODE)
#: Commas and the like (full-width ones included).
_COMMA_RE = re.compile(r"[,，、]+")


def _emoji_boundaries(text: str) -> str:
    """A line break after every run of emoji: the emoji stays with the clause it ends."""
    import emoji

    found = emoji.emoji_list(text)
    ends = {e["match_end"] for e in found} - {e["match_start"] for e in found}
    if not ends:
        return text
    return "".join(f"{ch}\n" if i + 1 in ends else ch for i, ch in enumerate(text))


def _words(fragment: str) -> int:
    return len(_WORD_RE.findall(fragment))


def _merge_short(parts: list[str]) -> list[str]:
    """Fragments with fewer than :data:`MIN_CLAUSE_WORDS` words join the previous one (the
    next one when they come first): "ok, pin trâu" is one clause, "pin trâu, camera đẹp" two."""
    out: list[str] = []
    for p in parts:
        if out and min(_words(p), _words(out[-1])) < MIN_CLAUSE_WORDS:
            out[-1] = f"{out[-1]}, {p}"
        else:
            out.append(p)
    return out


def split_clauses(text: str) -> list[str]:
    """The clauses of a text: cut at sentence punctuation, line breaks, emoji runs and
    contrast words (vi/en/pt/es/id), then at commas, fragments too short to stand alone
    joining a neighbour. Clauses without a word character (emoji only) join the previous one.
    """
    if not text or not text.strip():
        return []
    clauses: list[str] = []
    for sentence in _SENTENCE_RE.split(_emoji_boundaries(text)):
        pieces: list[str] = []
        start = 0
        for m in _CONTRAST_RE.finditer(sentence):
            if m.start() > start:
                pieces.append(sentence[start : m.start()])
            start = m.start()
        pieces.append(sentence[start:])
        for piece in pieces:
            parts = [p.strip(" \t-–—:\"'()") for p in _COMMA_RE.split(piece)]
            parts = [p for p in parts if p]
            if parts:
                clauses.extend(_merge_short(parts))
    out: list[str] = []
    for c in clauses:
        if not _WORD_RE.search(c) and out:
            out[-1] = f"{out[-1]} {c}"
        elif _WORD_RE.search(c):
            out.append(c)
    return out


# --------------------------------------------------------------------------- taxonomies
BUILTIN_TAXONOMIES = ("general", "phones")
#: Prototype matching (general and user taxonomies): a clause takes its best aspect when that
#: aspect's standardised score is at least ``threshold`` and beats the runner-up by ``margin``.
DEFAULT_THRESHOLD = 1.0
DEFAULT_MARGIN = 0.25


@dataclass
class Taxonomy:
    """Aspect names and how they are matched: example phrases (``kind="phrases"``), or a
    trained head's weights (``kind="head"``)."""

    name: str
    aspects: list[str]
    kind: str = "phrases"
    phrases: dict[str, list[str]] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    margin: float = DEFAULT_MARGIN
    source: str = ""
    head: dict[str, Any] = field(default_factory=dict)
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    #: texts whose overall sentiment is at least this confident are not split (all their
    #: aspects take the text's polarity): the encoder cost of clauses is paid where a text may
    #: be mixed. ``None``: every text of several clauses is split.
    clause_confidence: float | None = None
    #: a head's per-aspect polarity models ``(n_aspects, 3, d + 3)`` and review-class model
    #: ``(4, d + 3)`` (format 2), decoded jointly (:func:`decode_aspects`)
    polarity_weights: np.ndarray | None = None
    polarity_bias: np.ndarray | None = None
    class_weights: np.ndarray | None = None
    class_bias: np.ndarray | None = None

    @property
    def joint(self) -> bool:
        return self.polarity_weights is not None and self.class_weights is not None

    def joint_probabilities(
        self, embeddings: np.ndarray, probs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-aspect polarity and review-class probabilities of a format-2 head."""
        assert self.polarity_weights is not None and self.polarity_bias is not None
        assert self.class_weights is not None and self.class_bias is not None
        return head_probabilities(
            aspect_features(embeddings, probs),
            self.polarity_weights,
            self.polarity_bias,
            self.class_weights,
            self.class_bias,
        )

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "aspects": self.aspects,
            "source": self.source,
            "clause_confidence": self.clause_confidence,
        }
        if self.kind == "phrases":
            info["phrases_per_aspect"] = {a: len(self.phrases[a]) for a in self.aspects}
            info["rule"] = (
                f"clause -> best aspect by z-scored mean cosine to its phrases, >= "
                f"{self.threshold} and >= {self.margin} above the runner-up"
            )
        else:
            info["head"] = {k: v for k, v in self.head.items() if k != "metrics"}
        return info


def _package_file(name: str) -> Path:
    return Path(__file__).resolve().parent / name


def phones_head_path() -> Path:
    """The phones aspect head shipped in ``models/aspects_phones`` (``nlp_seg._models``)."""
    from importlib.resources import files

    here = Path(__file__).resolve().parents[2] / "models" / "aspects_phones"
    try:
        installed = Path(str(files("nlp_seg._models"))) / "aspects_phones"
    except ModuleNotFoundError:
        return here
    # a source checkout imported ahead of an installed copy reads its own models folder
    return installed if installed.is_dir() or not here.is_dir() else here


def parse_phrase_taxonomy(data: Any, source: str) -> Taxonomy:
    """A phrase taxonomy from parsed JSON; a malformed one is an :class:`InputError` that says
    what is wrong in one line."""
    where = f"aspect taxonomy {source}"
    if not isinstance(data, Mapping) or not isinstance(data.get("aspects"), Mapping):
        raise InputError(
            f'{where}: expected an object {{"aspects": {{"name": ["phrase", ...], ...}}}}'
        )
    phrases: dict[str, list[str]] = {}
    for name, value in data["aspects"].items():
        if isinstance(value, Mapping):  # {"description": ..., "phrases": {lang: [...]}} form
            value = value.get("phrases", [])
            if isinstance(value, Mapping):
                value = [p for ps in value.values() for p in (ps or [])]
        if not isinstance(value, list) or not value:
            raise InputError(f"{where}: aspect {name!r} needs a non-empty list of phrases")
        if not all(isinstance(p, str) and p.strip() for p in value):
            raise InputError(f"{where}: aspect {name!r} has a phrase that is not a text")
        if not str(name).strip() or any(c in str(name) for c in ";:"):
            raise InputError(f"{where}: aspect name {name!r} is empty or holds ';' or ':'")
        phrases[str(name).strip()] = [p.strip() for p in value]
    if len(phrases) < 2:
        raise InputError(f"{where}: needs at least two aspects")
    try:
        threshold = float(data.get("threshold", DEFAULT_THRESHOLD))
        margin = float(data.get("margin", DEFAULT_MARGIN))
        confidence = data.get("clause_confidence")
        confidence = None if confidence is None else float(confidence)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{where}: threshold, margin and clause_confidence must be numbers"
        ) from exc
    return Taxonomy(
        name=str(data.get("name") or Path(source).stem),
        aspects=list(phrases),
        phrases=phrases,
        threshold=threshold,
        margin=margin,
        source=source,
        clause_confidence=confidence,
    )


def _load_head(folder: Path) -> Taxonomy:
    from safetensors.numpy import load_file

    from nlp_seg.errors import ModelUnavailableError

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "head.safetensors"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"the aspect head in {folder} is missing or broken: {exc}"
        ) from exc

    def optional(key: str) -> np.ndarray | None:
        return np.asarray(tensors[key], dtype=np.float32) if key in tensors else None

    return Taxonomy(
        name=str(config.get("name", folder.name)),
        aspects=list(config["aspects"]),
        kind="head",
        source=str(folder),
        head=config,
        weights=np.asarray(tensors["weight"], dtype=np.float32),
        bias=np.asarray(tensors["bias"], dtype=np.float32),
        clause_confidence=config.get("clause_confidence"),
        polarity_weights=optional("polarity_weight"),
        polarity_bias=optional("polarity_bias"),
        class_weights=optional("class_weight"),
        class_bias=optional("class_bias"),
    )


@functools.cache
def _builtin(name: str) -> Taxonomy:
    if name == "phones":
        return _load_head(phones_head_path())
    data = json.loads(_package_file("aspects_general.json").read_text(encoding="utf-8"))
    return parse_phrase_taxonomy(data, "general")


def load_taxonomy(spec: str | Mapping[str, Any]) -> Taxonomy:
    """``general``, ``phones``, a JSON file's path, or an already-parsed phrase taxonomy (the
    form a saved segmenter keeps, so assign and serve use the same taxonomy)."""
    if isinstance(spec, Mapping):
        return parse_phrase_taxonomy(spec, str(spec.get("name", "saved")))
    if spec in BUILTIN_TAXONOMIES:
        return _builtin(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(
            f"--aspects {spec!r}: choose {', '.join(BUILTIN_TAXONOMIES)} or a JSON file's path"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"aspect taxonomy {path}: not readable JSON ({exc})") from exc
    return parse_phrase_taxonomy(data, str(path))


def taxonomy_fingerprint(spec: str | Mapping[str, Any] | None) -> str | None:
    """SHA-256 of a built-in taxonomy's files (the phones head folder, the general phrases), so
    a saved segmenter notices when the taxonomy it was fitted with has changed; ``None`` for a
    user taxonomy, whose content the segmenter keeps itself."""
    if not isinstance(spec, str) or spec not in BUILTIN_TAXONOMIES:
        return None
    from nlp_seg.models.store import file_sha256, folder_fingerprint

    if spec == "phones":
        return folder_fingerprint(phones_head_path())
    return file_sha256(_package_file("aspects_general.json"))


def taxonomy_state(spec: str | Mapping[str, Any] | None) -> str | dict[str, Any] | None:
    """What ``SegmenterConfig.aspects`` keeps: a built-in name, or a user file's content (the
    file may be gone or changed by the time the segmenter is loaded again)."""
    if spec is None or isinstance(spec, Mapping) or spec in BUILTIN_TAXONOMIES:
        return spec
    tax = load_taxonomy(spec)
    return {
        "name": tax.name,
        "aspects": tax.phrases,
        "threshold": tax.threshold,
        "margin": tax.margin,
        "clause_confidence": tax.clause_confidence,
    }


# --------------------------------------------------------------------------- scoring
@dataclass
class TextAspects:
    """One text's aspects: aspect -> polarity, in the order they appear."""

    pairs: dict[str, str]

    @property
    def cell(self) -> str:
        return format_aspects(self.pairs)

    @property
    def mixed(self) -> bool:
        return is_mixed(self.pairs)


def format_aspects(pairs: Mapping[str, str]) -> str:
    """The ``aspects`` cell: ``battery:negative;design:positive`` (empty when none)."""
    return ";".join(f"{a}:{p}" for a, p in pairs.items())


def is_mixed(pairs: Mapping[str, str]) -> bool:
    """Mixed sentiment: at least one aspect praised and one complained about."""
    values = set(pairs.values())
    return "positive" in values and "negative" in values


REVIEW_CLASSES = ("satisfied", "disappointed", "mixed", "neutral")


def review_class(pairs: Mapping[str, str], fallback_label: str | None = None) -> str:
    """satisfied (only praise) / disappointed (only complaints) / mixed (both) / neutral; a
    text with no aspect falls back to its overall sentiment label."""
    values = set(pairs.values())
    pos, neg = "positive" in values, "negative" in values
    if pos and neg:
        return "mixed"
    if pos:
        return "satisfied"
    if neg:
        return "disappointed"
    if not pairs and fallback_label == "positive":
        return "satisfied"
    if not pairs and fallback_label == "negative":
        return "disappointed"
    return "neutral"


def _polarity(p: np.ndarray) -> str:
    return POLARITIES[int(np.argmax(p))]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def aspect_features(embeddings: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """What a head's polarity and class models read: the sentence embedding followed by the
    sentiment head's three probabilities (the same in training and at run time)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    p = np.nan_to_num(np.asarray(probs, dtype=np.float32).reshape(len(emb), -1))
    return np.hstack([emb, p])


def head_probabilities(
    x: np.ndarray,
    polarity_weights: np.ndarray,
    polarity_bias: np.ndarray,
    class_weights: np.ndarray,
    class_bias: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A format-2 head on :func:`aspect_features` rows: per-aspect polarity probabilities
    ``(n, n_aspects, 3)`` and review-class probabilities ``(n, 4)`` (training and run time)."""
    pol = _softmax(np.einsum("nd,kcd->nkc", x, polarity_weights) + polarity_bias)
    return pol, _softmax(x @ class_weights.T + class_bias)


#: Joint decoding enumerates every state (absent / negative / neutral / positive) of the text's
#: most likely aspects, up to this many (4**4 = 256 assignments); further aspects above the
#: threshold keep their own most likely polarity.
MAX_JOINT_ASPECTS = 4
#: Aspects less likely than this are never candidates.
MIN_CANDIDATE_SCORE = 0.05
_ABSENT = 3


@functools.cache
def _assignments(k: int) -> tuple[np.ndarray, np.ndarray]:
    """All states of ``k`` candidate aspects (0-2: POLARITIES, 3: absent) and the review class
    (REVIEW_CLASSES index) each assignment implies."""
    import itertools

    grid = np.array(list(itertools.product(range(4), repeat=k)), dtype=int).reshape(-1, k)
    pos = (grid == POLARITIES.index("positive")).any(axis=1)
    neg = (grid == POLARITIES.index("negative")).any(axis=1)
    cls = np.where(pos & neg, 2, np.where(pos, 0, np.where(neg, 1, 3)))
    return grid, cls


def decode_aspects(
    found_scores: np.ndarray,
    pol_probs: np.ndarray,
    class_probs: np.ndarray,
    weight: float,
    threshold: float,
) -> list[tuple[int, int]]:
    """A text's ``(aspect, polarity)`` pairs, chosen jointly with its review class.

    Each of the :data:`MAX_JOINT_ASPECTS` likeliest aspects is absent (``log(1 - p)``) or
    present with a polarity (``log p + log p(polarity) - logit(threshold)``: with ``weight=0``
    an aspect is kept when ``p`` clears the threshold by more than its polarity's doubt, so an
    unsure one needs more evidence); the assignment maximising the sum plus
    ``weight * log p(class it implies)`` wins. Per-aspect polarity rarely says "mixed" (each
    aspect leans to the text's overall tone); the class model sees the contrast, and the joint
    choice flips, or adds, the aspect it is least sure of. Further aspects (rare: five or more
    above the threshold) take the plain threshold rule. Ordered by aspect score. The threshold
    and weight in the head's config were chosen with this decoder."""
    det = np.asarray(found_scores, dtype=float)
    order = [int(j) for j in np.argsort(-det) if det[j] >= MIN_CANDIDATE_SCORE]
    cand, rest = order[:MAX_JOINT_ASPECTS], order[MAX_JOINT_ASPECTS:]
    pol = np.asarray(pol_probs, dtype=float)
    out: list[tuple[int, int]] = []
    if cand:
        d = np.clip(det[cand], 1e-6, 1 - 1e-6)
        t = float(np.clip(threshold, 1e-6, 1 - 1e-6))
        present = np.log(d) - np.log(t / (1 - t))
        table = np.hstack(
            [np.log(np.clip(pol[cand], 1e-6, 1.0)) + present[:, None], np.log(1 - d)[:, None]]
        )
        grid, cls = _assignments(len(cand))
        logc = np.log(np.clip(np.asarray(class_probs, dtype=float), 1e-6, 1.0))
        score = table[np.arange(len(cand))[None, :], grid].sum(axis=1) + weight * logc[cls]
        best = grid[int(np.argmax(score))]
        out = [(j, int(b)) for j, b in zip(cand, best, strict=True) if b != _ABSENT]
    out += [(j, int(np.argmax(pol[j]))) for j in rest if det[j] >= threshold]
    return out


class AspectScorer:
    """Aspects and polarities of clean texts, through a :class:`TextEncoder`.

    Texts of one clause reuse their own embedding and sentiment; the clauses of longer texts
    are encoded as more texts (deduplicated and cached by the encoder). ``clause_texts_`` /
    ``encoded_clauses_`` count what the last call added, for the cost figure in run.json.
    """

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._tagger: Any = None

    def check_encoder(self, encoder: Any) -> None:
        """A trained head only means something on the encoder it was trained on."""
        from nlp_seg.errors import NlpsegError

        trained_for = self.taxonomy.head.get("trained_for")
        if self.taxonomy.kind != "head" or not trained_for:
            return
        in_use, _ = encoder.config.resolved_models()
        if in_use != trained_for:
            raise NlpsegError(
                f"the {self.taxonomy.name!r} aspect head was trained on {trained_for!r} but the "
                f"encoder in use is {in_use!r}; use --aspects general or a taxonomy file"
            )

    def _matcher(self, encoder: Any) -> Any:
        """The benefits prototype matcher over this taxonomy's phrases, standardised on the
        phrases themselves (fixed, so one text alone is tagged as in a batch)."""
        if self._tagger is None:
            from nlp_seg.behavior.benefits import BenefitTagger

            tax = self.taxonomy
            phrases = [p for a in tax.aspects for p in tax.phrases[a]]
            proto = np.asarray(encoder.embed_plain(encoder.model_texts(phrases)), np.float32)
            tagger = BenefitTagger(tax.phrases).fit(lambda _texts: proto, corpus=proto)
            self._tagger = tagger
        return self._tagger

    def clause_scores(self, encoder: Any, embeddings: np.ndarray) -> np.ndarray:
        """``(n, n_aspects)`` scores: head probabilities, or relative prototype z-scores."""
        tax = self.taxonomy
        if tax.kind == "head":
            assert tax.weights is not None and tax.bias is not None
            logits = np.asarray(embeddings, np.float32) @ tax.weights.T + tax.bias
            return 1.0 / (1.0 + np.exp(-logits))
        return self._matcher(encoder).relative_scores(embeddings)

    def _clause_aspect(self, scores: np.ndarray) -> int:
        """Index of a clause's aspect, or -1 when none stands out."""
        tax = self.taxonomy
        order = np.argsort(-scores)
        best = float(scores[order[0]])
        if tax.kind == "head":
            return int(order[0]) if best >= float(tax.head.get("clause_threshold", 0.5)) else -1
        second = float(scores[order[1]]) if len(order) > 1 else -np.inf
        return int(order[0]) if best >= tax.threshold and best - second >= tax.margin else -1

    def analyze(
        self, encoder: Any, texts: Sequence[str], embeddings: np.ndarray, probs: np.ndarray
    ) -> list[TextAspects]:
        """Per clean text (with its embedding and sentiment), its aspects and polarities."""
        if self.taxonomy.joint:
            return self._analyze_joint(encoder, embeddings, probs)
        conf = self.taxonomy.clause_confidence
        sure = np.nan_to_num(np.asarray(probs, dtype=float)).max(axis=1) if len(texts) else []
        text_scores = self.clause_scores(encoder, embeddings) if len(texts) else np.zeros((0, 0))
        review_thr = float(self.taxonomy.head.get("review_threshold", 0.5))
        if self.taxonomy.kind == "head":  # one aspect found: the text's polarity is its polarity
            several = (text_scores >= review_thr).sum(axis=1) >= 2
        else:
            several = np.ones(len(texts), dtype=bool)
        clause_lists = [
            split_clauses(t) if several[i] and (conf is None or sure[i] < conf) else [t]
            for i, t in enumerate(texts)
        ]
        multi = sorted({c for cl in clause_lists if len(cl) > 1 for c in cl})
        self.clause_texts_ = sum(len(cl) for cl in clause_lists if len(cl) > 1)
        self.encoded_clauses_ = len(multi)
        c_emb = np.zeros((0, embeddings.shape[1] if embeddings.ndim == 2 else 0), np.float32)
        c_probs = np.zeros((0, 3))
        if multi:
            c_emb, c_probs = encoder.encode(multi)
        where = {c: i for i, c in enumerate(multi)}
        c_scores = self.clause_scores(encoder, c_emb) if multi else np.zeros((0, 0))
        aspects = self.taxonomy.aspects
        out = []
        for i, clauses in enumerate(clause_lists):
            if len(clauses) <= 1:
                rows_scores, rows_probs = text_scores[i : i + 1], probs[i : i + 1]
            else:
                idx = [where[c] for c in clauses]
                rows_scores, rows_probs = c_scores[idx], c_probs[idx]
            found: dict[int, list[np.ndarray]] = {}
            for s, p in zip(rows_scores, rows_probs, strict=True):
                j = self._clause_aspect(s)
                if j >= 0 and np.isfinite(p).all():
                    found.setdefault(j, []).append(p)
            if self.taxonomy.kind == "head":
                # The head was trained on whole reviews: it says best which aspects a review
                # talks about; the clause it scores highest for one says how.
                for j in np.flatnonzero(text_scores[i] >= review_thr):
                    if int(j) not in found:
                        best = int(np.argmax(rows_scores[:, j]))
                        found[int(j)] = [rows_probs[best]]
            order = sorted(found, key=lambda j: -max(float(s[j]) for s in rows_scores))
            pairs = {aspects[j]: _polarity(np.mean(found[j], axis=0)) for j in order}
            out.append(TextAspects(pairs))
        return out

    def _analyze_joint(
        self, encoder: Any, embeddings: np.ndarray, probs: np.ndarray
    ) -> list[TextAspects]:
        """A format-2 head: aspects found on the review's embedding, their polarities and the
        review's class from the same vector (plus its sentiment), decoded jointly. No clause is
        re-encoded: on UIT-ViSFD Dev this beats clause polarity from the sentiment head on
        pairs and class F1 at no extra encoder time (docs/benchmarks.md)."""
        tax = self.taxonomy
        self.clause_texts_ = 0
        self.encoded_clauses_ = 0
        if not len(embeddings):
            return []
        found_scores = self.clause_scores(encoder, embeddings)
        pol, cls = tax.joint_probabilities(embeddings, probs)
        thr = float(tax.head.get("review_threshold", 0.5))
        weight = float(tax.head.get("joint_class_weight", 1.0))
        out = []
        for i in range(len(found_scores)):
            found = decode_aspects(found_scores[i], pol[i], cls[i], weight, thr)
            out.append(TextAspects({tax.aspects[j]: POLARITIES[p] for j, p in found}))
        return out

    def aspect_block(self, encoder: Any, embeddings: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """What a text is about, as numbers for the fused vector (``--weights aspects=W``):
        for a format-2 head, its review-class probabilities and per aspect ``p(found) *
        (p(positive) - p(negative))``; for phrase taxonomies, the text's aspect scores. A pure
        function of the row's own vectors, so new rows are placed the same way."""
        tax = self.taxonomy
        if not len(embeddings):
            width = len(tax.aspects) + (4 if tax.joint else 0)
            return np.zeros((0, width), dtype=np.float32)
        found = np.asarray(self.clause_scores(encoder, embeddings), dtype=np.float32)
        if not tax.joint:
            return found
        pol, cls = tax.joint_probabilities(embeddings, probs)
        signed = found * (pol[:, :, 2] - pol[:, :, 0])
        return np.hstack([cls, signed]).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        info = self.taxonomy.describe()
        if hasattr(self, "clause_texts_"):
            info["clauses_encoded"] = int(self.encoded_clauses_)
        return info


# --------------------------------------------------------------------------- segments
#: A segment's top complaint must be shared by at least this share of its members with text.
TOP_COMPLAINT_MIN_SHARE = 0.15


def segment_aspect_mix(cells: Sequence[object]) -> dict[str, dict[str, float]]:
    """Per aspect, the share of members praising / complaining about it (most talked-about
    first)."""
    n = len(cells)
    if not n:
        return {}
    counts: dict[str, dict[str, int]] = {}
    for cell in cells:
        for aspect, pol in parse_aspects(cell).items():
            c = counts.setdefault(aspect, {"positive": 0, "negative": 0, "neutral": 0})
            c[pol] = c.get(pol, 0) + 1
    order = sorted(counts, key=lambda a: -sum(counts[a].values()))
    return {
        a: {
            "praising": round(counts[a]["positive"] / n, 4),
            "complaining": round(counts[a]["negative"] / n, 4),
        }
        for a in order
    }


def top_complaint(mix: Mapping[str, Mapping[str, float]]) -> str | None:
    """The aspect most members complain about, if enough of them do."""
    best = max(mix, key=lambda a: mix[a]["complaining"], default=None)
    if best is None or mix[best]["complaining"] < TOP_COMPLAINT_MIN_SHARE:
        return None
    return best


def top_praise(mix: Mapping[str, Mapping[str, float]], k: int = 2) -> list[str]:
    """The aspects most members praise (at least the top-complaint share rule's minimum)."""
    ranked = sorted(mix, key=lambda a: -mix[a]["praising"])
    return [a for a in ranked[:k] if mix[a]["praising"] >= TOP_COMPLAINT_MIN_SHARE]
