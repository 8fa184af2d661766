"""The tiny interfaces every stage slot keeps (BERTopic style), and helpers shared by stages.

A slot takes any object with these methods: a cuML reducer or clusterer, a user's own
embedder. Parameters live in ``__init__``; learned state in attributes ending in ``_``, set
only by ``fit`` (or when a saved segmenter is loaded), as in scikit-learn.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

ProgressFn = Callable[[int], None]


@runtime_checkable
class Embedder(Protocol):
    """Texts to L2-normalised vectors."""

    model_id: str

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class SentimentScorer(Protocol):
    """Texts (and, for a head, their encoder features) to ``(n, 3)`` probabilities
    (negative, neutral, positive)."""

    needs_embeddings: bool

    def predict_proba(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Reducer(Protocol):
    """Fused vectors to a few dimensions for clustering."""

    def fit_transform(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Clusterer(Protocol):
    """Reduced vectors to segments: sets ``labels_``, ``probabilities_``, ``outlier_mask_``."""

    labels_: np.ndarray
    probabilities_: np.ndarray
    outlier_mask_: np.ndarray

    def fit(self, x: np.ndarray) -> Any: ...


def clone_stage(stage: Any) -> Any:
    """An unfitted copy of a stage passed in a slot, so fitting never changes the slot itself."""
    if hasattr(stage, "get_params"):
        try:
            return type(stage)(**stage.get_params())
        except TypeError:
            pass
    return copy.deepcopy(stage)
