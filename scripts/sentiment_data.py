"""Readers for the labelled sentiment corpora in ``../shared/data/sentiment`` (train / dev parts).

Shared by ``train_sentiment_head.py``, ``eval_sentiment.py`` and the real-data tests, so that
every one of them sees *the same* seeded held-out parts: AIVIVN 2019 ships only its training
file (a seeded 15% is held out as dev and never trained on) and MARC has no split here (a seeded
20% per language is held out). Labels are always 0 negative, 1 neutral, 2 positive.

The corpora are research data that must not be copied into the repository: they are read in
place, and nothing here writes them anywhere.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UMSAB_LANGS = (
    "arabic",
    "english",
    "french",
    "german",
    "hindi",
    "italian",
    "portuguese",
    "spanish",
)
MARC_LANGS = ("de", "en", "es", "fr", "ja", "zh")
SPLIT_SEED = 20190  # fixed: the held-out parts must never move between train and eval runs


@dataclass
class Part:
    """One dataset / language / split: texts and labels (0 neg, 1 neu, 2 pos)."""

    dataset: str
    lang: str
    split: str  # "train" or "dev"
    texts: list[str]
    labels: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.dataset}-{self.lang}-{self.split}"

    def fingerprint(self) -> str:
        """Content hash, so a cache of embeddings can never be paired with other texts."""
        h = hashlib.sha256()
        for t, y in zip(self.texts, self.labels.tolist(), strict=True):
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00" + str(y).encode() + b"\x01")
        return h.hexdigest()[:16]


def default_root() -> Path:
    """``NLPSEG_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("NLPSEG_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8-sig").splitlines()


def _holdout(n: int, frac: float, salt: str) -> np.ndarray:
    """A seeded boolean mask of held-out rows (same for every caller)."""
    seed = int.from_bytes(hashlib.sha256(f"{SPLIT_SEED}-{salt}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * frac))]] = True
    return mask


def load_umsab(root: Path) -> list[Part]:
    base = root / "sentiment" / "umsab-xlmt"
    parts = []
    for lang in UMSAB_LANGS:
        for split, name in (("train", "train"), ("dev", "val")):
            texts = _lines(base / lang / f"{name}_text.txt")
            labels = np.array([int(x) for x in _lines(base / lang / f"{name}_labels.txt")])
            parts.append(Part("umsab", lang, split, texts, labels))
    return parts


def load_uit_vsfc(root: Path) -> list[Part]:
    base = root / "sentiment" / "uit-vsfc"
    parts = []
    for split, name in (("train", "train"), ("dev", "dev")):
        texts = _lines(base / name / "sents.txt")
        labels = np.array([int(x) for x in _lines(base / name / "sentiments.txt")])
        parts.append(Part("uit-vsfc", "vi", split, texts, labels))
    return parts


def load_vlsp(root: Path) -> list[Part]:
    base = root / "sentiment" / "vlsp2016-sa"
    mapping = {"NEG": 0, "NEU": 1, "POS": 2}
    parts = []
    for split, name in (("train", "train"), ("dev", "dev")):
        texts, labels = [], []
        for line in _lines(base / f"SA-2016.{name}"):
            if not line.strip():
                continue
            text, _, lab = line.rpartition("\t")
            texts.append(text.lstrip("\ufeff"))
            labels.append(mapping[lab.strip()])
        parts.append(Part("vlsp2016", "vi", split, texts, np.array(labels)))
    return parts


def load_aivivn(root: Path) -> list[Part]:
    import pandas as pd

    df = pd.read_csv(root / "sentiment" / "aivivn-2019" / "train.csv", dtype={"text": str})
    df["text"] = df["text"].fillna("")
    labels = np.where(df["label"].to_numpy() == 1, 0, 2)  # 0 positive, 1 negative in the file
    dev = _holdout(len(df), 0.15, "aivivn")
    texts = df["text"].tolist()
    return [
        Part(
            "aivivn", "vi", split, [t for t, m in zip(texts, mask, strict=True) if m], labels[mask]
        )
        for split, mask in (("train", ~dev), ("dev", dev))
    ]


def load_marc(root: Path) -> list[Part]:
    import pandas as pd

    parts = []
    for lang in MARC_LANGS:
        df = pd.read_csv(
            root / "sentiment" / "marc-amazon-multi" / f"{lang}.csv",
            header=None,
            names=["row_index", "review_body", "stars"],
            dtype={"review_body": str},
        )
        df["review_body"] = df["review_body"].fillna("")
        stars = df["stars"].to_numpy()
        labels = np.where(stars <= 2, 0, np.where(stars == 3, 1, 2))
        dev = _holdout(len(df), 0.20, f"marc-{lang}")
        texts = df["review_body"].tolist()
        for split, mask in (("train", ~dev), ("dev", dev)):
            parts.append(
                Part(
                    "marc",
                    lang,
                    split,
                    [t for t, m in zip(texts, mask, strict=True) if m],
                    labels[mask],
                )
            )
    return parts


def load_all(root: Path | None = None) -> list[Part]:
    """Every part of every corpus, train and dev."""
    root = root or default_root()
    return (
        load_umsab(root)
        + load_uit_vsfc(root)
        + load_vlsp(root)
        + load_aivivn(root)
        + load_marc(root)
    )


def seeded_order(part: Part, seed: int = 0) -> np.ndarray:
    """A fixed permutation of a part: a prefix of it is a seeded, unbiased subsample."""
    salt = int.from_bytes(hashlib.sha256(f"{seed}-{part.key}".encode()).digest()[:4], "little")
    return np.random.default_rng(salt).permutation(len(part.texts))


# --------------------------------------------------------------------------- embeddings cache

CHUNK = 200


def cache_dir() -> Path:
    """Where embeddings of the corpora are cached: outside the repository, never committed."""
    return Path(os.environ.get("NLPSEG_SENT_EMB", "/tmp/sent_emb"))


class _Features:
    """The head's input features from the pipeline's own embedder: the bundled encoder's
    mean-pooled hidden states of ``layers`` (see ``SentenceTransformerEmbedder.embed_with_layers``),
    with the pipeline's default length cap, so training sees exactly what ``analyze`` computes."""

    def __init__(self, layers: tuple[int, ...]) -> None:
        from nlp_seg.models.embedding import SentenceTransformerEmbedder
        from nlp_seg.segmenter import SegmenterConfig

        self.layers = layers
        self.embedder = SentenceTransformerEmbedder(
            device="cpu", max_seq_length=SegmenterConfig().max_seq_length
        )

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_with_layers(texts, self.layers)[1]


_ENCODERS: dict[tuple[int, ...], _Features] = {}


def _encoder(layers: tuple[int, ...]) -> _Features:
    if layers not in _ENCODERS:
        _ENCODERS[layers] = _Features(layers)
    return _ENCODERS[layers]


def prepared_texts(part: Part) -> tuple[list[str], np.ndarray]:
    """Texts as the pipeline normalises them, and which rows survive (non-empty)."""
    from nlp_seg.normalize import STATUS_OK, normalize_texts

    norm = normalize_texts(part.texts)
    keep = np.array([n.status == STATUS_OK for n in norm], dtype=bool)
    return [n.text for n in norm], keep


def default_layers() -> tuple[int, ...]:
    """Hidden states the shipped head reads (``sentiment_head.BUNDLED_INPUT_LAYERS``)."""
    from nlp_seg.models.sentiment_head import BUNDLED_INPUT_LAYERS

    return tuple(BUNDLED_INPUT_LAYERS)


def embed_prefix(
    part: Part,
    n: int | None,
    encode: bool = True,
    seed: int = 0,
    layers: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Head features, labels and texts of the first ``n`` rows of the part's seeded order.

    Works chunk by chunk, each chunk cached as ``.npy`` keyed by the part's content hash, so
    reruns are instant and a larger ``n`` only encodes the new chunks. With ``encode=False``
    only chunks already cached are returned (for training on what is there so far).
    """
    layers = default_layers() if layers is None else tuple(layers)
    tag = "L" + ".".join(str(i) for i in layers)
    order = seeded_order(part, seed)
    n = len(order) if n is None else min(n, len(order))
    texts, keep = prepared_texts(part)
    fp = part.fingerprint()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    xs, ys, ts = [], [], []
    for c in range((n + CHUNK - 1) // CHUNK):
        idx = order[c * CHUNK : min((c + 1) * CHUNK, n)]
        idx = idx[keep[idx]]
        size = min((c + 1) * CHUNK, n) - c * CHUNK
        path = root / f"{part.key}-{fp}-{tag}-s{seed}-c{c}-n{size}.npy"
        if path.exists():
            emb = np.load(path)
        elif encode:
            emb = np.asarray(_encoder(layers)([texts[i] for i in idx]), dtype=np.float32)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, emb)
            tmp.replace(path)
        else:
            break
        xs.append(emb)
        ys.append(part.labels[idx])
        ts.extend(texts[i] for i in idx)
    if not xs:
        return np.zeros((0, 384 * len(layers)), np.float32), np.zeros(0, int), []
    return np.concatenate(xs), np.concatenate(ys), ts
