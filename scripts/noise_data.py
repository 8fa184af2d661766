"""Data for the not-a-review filter: ViSpamReviews and the genuine-review corpora, encoded once.

Shared by ``train_noise_head.py`` and ``eval_noise.py`` so both see the same rows and the same
vectors. The vectors are what the pipeline itself computes for a row (``Segmenter.encode``:
normalised, lower-cased for the bundled models, float16-rounded sentence embeddings), so the
head is trained on exactly what it reads at run time. They are cached as ``.npy`` under
``/tmp/noise_emb`` (``NLPSEG_NOISE_EMB``), keyed by a hash of the texts, so reruns are instant.

Labels: ViSpamReviews ``SpamLabel == 3`` (irrelevant content: mashing, ads, homework, chat) is
"not a review" (1); ``SpamLabel`` 0, 1 (fake or misleading) and 2 (about the brand / seller /
delivery only) are real reviews a customer wrote about a purchase (0): a template review or a
delivery-only review still says something about the customer, so it must keep its sentiment.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from sentiment_data import default_root, load_aivivn, load_marc, load_umsab  # noqa: E402

#: seeded train subsample (stated in the model card): every SpamLabel-3 row, this many others
TRAIN_GENUINE_CAP = 4000
SEED = 13


@dataclass
class Texts:
    """A named set of raw texts with 0/1 labels (1 = not a review)."""

    name: str
    texts: list[str]
    labels: np.ndarray


def vispam(split: str, root: Path | None = None, cap: int | None = None) -> Texts:
    """ViSpamReviews ``split``; ``cap`` keeps every SpamLabel-3 row and a seeded ``cap`` others."""
    import pandas as pd

    root = root or default_root()
    df = pd.read_csv(root / "reviews" / "vispamreviews" / f"{split}.csv", dtype={"Comment": str})
    df["Comment"] = df["Comment"].fillna("")
    if cap is not None:
        rng = np.random.default_rng(SEED)
        other = np.flatnonzero(df["SpamLabel"].to_numpy() != 3)
        keep = np.sort(
            np.concatenate(
                [
                    np.flatnonzero(df["SpamLabel"].to_numpy() == 3),
                    rng.choice(other, min(cap, len(other)), replace=False),
                ]
            )
        )
        df = df.iloc[keep]
    return Texts(
        f"vispam-{split}",
        df["Comment"].tolist(),
        df["SpamLabel"].to_numpy().astype(int),  # the raw SpamLabel; callers map 3 -> 1
    )


def genuine_sets(root: Path | None = None, per_set: int = 400) -> list[Texts]:
    """Real reviews from other corpora (all genuine): a seeded ``per_set`` of each dev part."""
    import pandas as pd

    root = root or default_root()
    out = []
    visfd = pd.read_csv(root / "reviews" / "uit-visfd" / "Dev.csv", dtype={"comment": str})
    out.append(("uit-visfd-dev", visfd["comment"].fillna("").tolist()))
    for part in load_aivivn(root):
        if part.split == "dev":
            out.append(("aivivn-dev", part.texts))
    for part in load_marc(root):
        if part.split == "dev" and part.lang in {"en", "de", "es", "fr", "ja"}:
            out.append((f"marc-{part.lang}-dev", part.texts))
    for part in load_umsab(root):
        if part.split == "dev" and part.lang in {"english", "portuguese", "spanish"}:
            out.append((f"umsab-{part.lang}-dev", part.texts))
    sets = []
    for name, texts in out:
        rng = np.random.default_rng(SEED)
        idx = np.sort(rng.permutation(len(texts))[:per_set])
        picked = [texts[i] for i in idx]
        sets.append(Texts(name, picked, np.zeros(len(picked), dtype=int)))
    return sets


def extra_genuine_train(root: Path | None = None) -> Texts:
    """Real reviews from the *train* parts of other corpora (never the dev parts the benchmark
    reads): a seeded 500 AIVIVN rows (Vietnamese typed without diacritics, teencode) and 100
    each of UMSAB English, Portuguese and Spanish tweets, so that the head does not take
    text unlike ViSpamReviews' for noise."""
    root = root or default_root()
    picked: list[str] = []
    parts = [(p, 500) for p in load_aivivn(root) if p.split == "train"]
    parts += [
        (p, 100)
        for p in load_umsab(root)
        if p.split == "train" and p.lang in {"english", "portuguese", "spanish"}
    ]
    for part, n in parts:
        rng = np.random.default_rng(SEED)
        picked += [part.texts[i] for i in np.sort(rng.permutation(len(part.texts))[:n])]
    return Texts("extra-genuine-train", picked, np.zeros(len(picked), dtype=int))


def extra_marc_train(root: Path | None = None, per_lang: int = 80) -> Texts:
    """A seeded ``per_lang`` Amazon reviews of each MARC language from its *train* part (the
    benchmark reads the held-out part), so that a review in German or Japanese is not taken
    for noise (ViSpamReviews' irrelevant texts are often foreign-language paragraphs)."""
    root = root or default_root()
    picked: list[str] = []
    for part in load_marc(root):
        if part.split == "train":
            rng = np.random.default_rng(SEED)
            idx = np.sort(rng.permutation(len(part.texts))[:per_lang])
            picked += [part.texts[i] for i in idx]
    return Texts("extra-marc-train", picked, np.zeros(len(picked), dtype=int))


def cache_dir() -> Path:
    return Path(os.environ.get("NLPSEG_NOISE_EMB", "/tmp/noise_emb"))


_SEGMENTER = None


def encoded(texts: Texts) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Clean texts, statuses and pipeline embeddings (zeros where no text), cached."""
    global _SEGMENTER
    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    h = hashlib.sha256("\x00".join(texts.texts).encode("utf-8", "surrogatepass")).hexdigest()
    path = cache_dir() / f"{texts.name}-{h[:16]}.npy"
    norm = normalize_texts(texts.texts, max_chars=SegmenterConfig().max_chars)
    clean = [n.text for n in norm]
    status = np.array([n.status for n in norm], dtype=object)
    if path.exists():
        return clean, status, np.load(path)
    if _SEGMENTER is None:
        _SEGMENTER = Segmenter(SegmenterConfig(device="cpu"))
    _, _, emb, _ = _SEGMENTER.encoder.encode_rows(texts.texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, emb.astype(np.float16))
    tmp.replace(path)
    return clean, status, emb.astype(np.float16)


if __name__ == "__main__":  # encode everything once (what the two scripts read)
    import time

    for t in [vispam("dev"), vispam("train", cap=TRAIN_GENUINE_CAP), *genuine_sets()]:
        t0 = time.perf_counter()
        _, _, e = encoded(t)
        took = time.perf_counter() - t0
        print(f"{t.name}: {len(t.texts)} rows, {e.shape}, {took:.0f}s", flush=True)
