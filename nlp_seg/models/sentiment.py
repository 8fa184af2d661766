"""Sentiment: every text gets negative / neutral / positive, a score and a confidence.

Two kinds of scorer share one slot:

* :class:`HeadSentimentScorer` reads the *embedding* (the bundled profile): a small trained head
  on the encoder's output, so the encoder runs once per text for both sentiment and clustering.
* :class:`TransformerSentimentScorer` runs any Hugging Face sequence-classification model, by
  hub id or local folder, and maps its labels (``negative``, ``LABEL_2``, ``4 stars``...) onto
  the three classes.

Both return probabilities ordered ``[negative, neutral, positive]``; ``score = P(pos) - P(neg)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nlp_seg.errors import ModelUnavailableError
from nlp_seg.models.registry import (
    BUNDLED_SENTIMENT,
    BUNDLED_SENTIMENT_BRANCH,
    branch_head_path,
    bundled_head_path,
    load_with_fallback,
    pick_device,
    quiet_hf,
    resolve_local,
)
from nlp_seg.models.sentiment_head import LABELS

ProgressFn = Callable[[int], None]


class SentimentScorer(Protocol):
    """The sentiment slot: texts (and their embeddings) in, ``(n, 3)`` probabilities out."""

    model_id: str
    needs_embeddings: bool

    def predict_proba(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def summarize(probs: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, scores in [-1, 1] and confidences in [0, 1] from ``(n, 3)`` probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0:
        return [], np.zeros(0), np.zeros(0)
    labels = [LABELS[i] for i in probs.argmax(axis=1)]
    score = np.clip(probs[:, 2] - probs[:, 0], -1.0, 1.0)
    confidence = np.clip(probs.max(axis=1), 0.0, 1.0)
    return labels, score, confidence


_STAR_RE = re.compile(r"^\s*([1-5])\s*(star|stars|sao|estrela|estrelas|estrella|étoile)?s?\s*$")


def label_mapping(id2label: Mapping[int, str]) -> np.ndarray:
    """A ``(n_model_labels, 3)`` 0/1 matrix folding a model's classes onto neg/neu/pos.

    Understands names (negative/neutral/positive and common abbreviations in several
    languages), 1-5 star labels (1-2 negative, 3 neutral, 4-5 positive) and anonymous
    ``LABEL_i`` heads with 2 (neg, pos) or 3 (neg, neu, pos) classes.
    """
    n = len(id2label)
    names = [str(id2label[i]).strip().lower() for i in range(n)]
    m = np.zeros((n, 3), dtype=np.float64)
    for i, name in enumerate(names):
        star = _STAR_RE.match(name)
        if star:
            s = int(star.group(1))
            m[i, 0 if s <= 2 else 1 if s == 3 else 2] = 1
        elif name.startswith(("neg", "bad", "tiêu cực", "tieu cuc", "negativ")):
            m[i, 0] = 1
        elif name.startswith(("neu", "neutral", "trung", "mixed", "other")):
            m[i, 1] = 1
        elif name.startswith(("pos", "good", "tích cực", "tich cuc", "positiv")):
            m[i, 2] = 1
    if (m.sum(axis=1) == 1).all():
        return m
    if all(re.fullmatch(r"label_\d+", nm) for nm in names) and n in (2, 3):
        m = np.zeros((n, 3))
        for i in range(n):
            m[i, [0, 2][i] if n == 2 else i] = 1
        return m
    raise ModelUnavailableError(
        f"cannot map the sentiment model's labels {names} onto negative/neutral/positive; "
        "use a model whose labels name the sentiment"
    )


class TransformerSentimentScorer:
    """Any Hugging Face sequence-classification model, by hub id or local folder."""

    needs_embeddings = False

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._tok: Any = None
        self._net: Any = None
        self._map: np.ndarray | None = None
        self._device: str = "cpu"

    @property
    def model_id(self) -> str:
        return self.model

    def load(self) -> None:
        if self._net is not None:
            return
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_hf()
        self._device = pick_device(self.device)
        local = resolve_local(self.model)
        try:
            if local is not None:
                tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
                net = AutoModelForSequenceClassification.from_pretrained(
                    str(local), local_files_only=True
                )
            else:
                tok = load_with_fallback(
                    AutoTokenizer.from_pretrained, self.model, "--sentiment-model", "sentiment"
                )
                net = load_with_fallback(
                    AutoModelForSequenceClassification.from_pretrained,
                    self.model,
                    "--sentiment-model",
                    "sentiment",
                )
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelUnavailableError(
                f"cannot load sentiment model {self.model!r}: {exc}".splitlines()[0]
            ) from exc
        self._map = label_mapping(net.config.id2label)
        # Never exceed the model's position table (RoBERTa-style models reserve two slots).
        limits = [self.max_length, (getattr(net.config, "max_position_embeddings", 0) or 10**9) - 2]
        if 0 < getattr(tok, "model_max_length", 10**9) < 10**6:
            limits.append(int(tok.model_max_length))
        self._max_len = max(8, min(limits))
        net.eval().to(self._device)
        if self._device.startswith("cuda"):
            net = net.half()
        self._tok, self._net = tok, net

    def predict_proba(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, 3))
        self.load()
        assert self._map is not None
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), 3))
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._tok(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self._max_len,
                    return_tensors="pt",
                ).to(self._device)
                logits = self._net(**enc).logits.float()
                probs = torch.softmax(logits, dim=-1).cpu().numpy()
                out[idx] = probs @ self._map
                if progress:
                    progress(len(idx))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": "sequence-classification",
            "max_length": self.max_length,
        }


class HeadSentimentScorer:
    """The bundled sentiment head (or a user-trained one) applied to the shared embedding."""

    needs_embeddings = True

    def __init__(self, head: str = BUNDLED_SENTIMENT) -> None:
        self.head = head
        self._head: Any = None
        self._path: Path | None = None
        self._cache_key: str | None = None
        self._branch: Any = None

    @property
    def model_id(self) -> str:
        return self.head

    def load(self) -> Any:
        if self._head is None:
            from nlp_seg.models.sentiment_head import SentimentHead

            if self.head == BUNDLED_SENTIMENT:
                path = bundled_head_path()
            elif self.head == BUNDLED_SENTIMENT_BRANCH:
                path = branch_head_path()
            else:
                path = Path(self.head)
            if not path.is_dir():
                raise ModelUnavailableError(f"sentiment head folder not found: {path}")
            self._head = SentimentHead.load(path)
            self._path = path
        return self._head

    @property
    def trained_for(self) -> str | None:
        """The embedding model the head expects, from its config."""
        head = self.load()
        cfg = getattr(head, "config_", None) or {}
        return cfg.get("embedding_model") if isinstance(cfg, dict) else None

    @property
    def input_layers(self) -> tuple[int, ...]:
        """Encoder hidden states the head reads (empty: the sentence embedding)."""
        return tuple(self.load().input_layers)

    @property
    def reads_lowercase(self) -> bool:
        """The head was trained on lower-cased text (``"lowercase": true`` in its config)."""
        return bool((getattr(self.load(), "config_", None) or {}).get("lowercase", False))

    @property
    def branch(self) -> Any:
        """The fine-tuned branch the head reads (``None`` for a head on frozen states)."""
        head = self.load()
        entry = (getattr(head, "config_", None) or {}).get("branch")
        if entry and self._branch is None:
            from nlp_seg.models.sentiment_branch import SentimentBranch

            assert self._path is not None
            self._branch = SentimentBranch.load(self._path, entry)
        return self._branch

    @property
    def cache_key(self) -> str:
        """A fingerprint of the head's files, so cached probabilities follow its exact weights."""
        import hashlib

        if self._cache_key is None:
            self.load()
            assert self._path is not None
            h = hashlib.sha256()
            for name in ("config.json", "head.safetensors", "branch.safetensors"):
                if (self._path / name).exists():
                    h.update((self._path / name).read_bytes())
            self._cache_key = h.hexdigest()[:16]
        return self._cache_key

    def predict_proba(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Probabilities from ``embeddings``: the sentence embeddings, or the layer features
        of :attr:`input_layers` when the head reads hidden states."""
        if embeddings is None:
            raise ValueError("the sentiment head needs the text embeddings")
        head = self.load()
        probs = np.asarray(head.predict_proba(embeddings, list(texts)), dtype=np.float64)
        if progress:
            progress(len(texts))
        return probs

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": self.head,
            "kind": "embedding-head",
            "path": str(self._path),
        }
        entry = (getattr(self._head, "config_", None) or {}).get("branch")
        if entry:
            info["kind"] = "fine-tuned-branch"
            info["branch"] = {k: entry.get(k) for k in ("from_layer", "layers", "dtype")}
        return info


def make_sentiment_scorer(model: str, device: str = "auto", batch_size: int = 32) -> Any:
    """The right scorer for a model name: a head folder, ``bundled:...``, or a transformer."""
    if model in (BUNDLED_SENTIMENT, BUNDLED_SENTIMENT_BRANCH):
        return HeadSentimentScorer(model)
    local = resolve_local(model) if not model.startswith("bundled:") else None
    if model.startswith("bundled:"):
        raise ModelUnavailableError(f"unknown bundled sentiment model {model!r}")
    if local is not None and (local / "head.safetensors").exists():
        return HeadSentimentScorer(str(local))
    return TransformerSentimentScorer(model, device=device, batch_size=batch_size)
